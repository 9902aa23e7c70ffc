package main

import (
	"context"
	"strings"
	"time"

	"github.com/rs/zerolog"

	regdns "github.com/regdns/regdns/dns"
	"github.com/regdns/regdns/internal/admin"
	"github.com/regdns/regdns/internal/config"
	"github.com/regdns/regdns/registry"
)

// The admin HTTP server reads the DNS handler and the registry views
// through admin's own small interfaces; the adapters below are the only
// place that knows both sides.

// startAdmin starts the admin HTTP server on http.listen; nil when it is
// off.
func startAdmin(ctx context.Context, cfg config.Config, log zerolog.Logger, h *regdns.Handler, zones []admin.Zone) (*admin.Server, error) {
	if !cfg.HTTP.Enabled() {
		return nil, nil
	}
	s := admin.New(admin.Options{
		Addr:   cfg.HTTP.Listen,
		Pprof:  cfg.HTTP.Pprof,
		DNS:    dnsStats{h},
		Zones:  zones,
		Logger: log.With().Str("component", "http").Logger(),
	})
	if err := s.Start(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// dnsStats adapts the handler's counters to admin.DNS.
type dnsStats struct{ h *regdns.Handler }

// dnsStats implements admin.DNS.
var _ admin.DNS = dnsStats{}

func (d dnsStats) DNSStats() admin.DNSStats {
	s := d.h.Stats().Snapshot()
	out := admin.DNSStats{
		Queries:       make([]admin.QueryCount, len(s.Queries)),
		FastPath:      s.FastPath,
		Latency:       make(map[string]admin.Histogram, len(s.Latency)),
		Forwarded:     s.Forwarded,
		ForwardErrors: s.ForwardErrors,
		RRLDropped:    s.RRLDropped,
		RRLSlipped:    s.RRLSlipped,
	}
	for i, q := range s.Queries {
		out.Queries[i] = admin.QueryCount{Qtype: q.Qtype, Rcode: q.Rcode, Transport: q.Transport, Fast: q.Fast, N: q.N}
	}
	for t, h := range s.Latency {
		out.Latency[t] = histogramOf(h.Bounds, h.Counts, h.Sum)
	}
	return out
}

// zoneView adapts one registry view, and the handler answering its zone,
// to admin.Zone.
type zoneView struct {
	name string // fully qualified, lower case
	view *registry.View
	h    *regdns.Handler
	mode registry.HealthMode
}

// zoneView implements admin.Zone.
var _ admin.Zone = zoneView{}

func newZoneView(name string, view *registry.View, h *regdns.Handler, mode registry.HealthMode) zoneView {
	return zoneView{name: strings.ToLower(strings.TrimSuffix(name, ".")) + ".", view: view, h: h, mode: mode}
}

func (z zoneView) Name() string { return z.name }

func (z zoneView) RegistryStats() admin.RegistryStats {
	s := z.view.Stats().Snapshot()
	return admin.RegistryStats{
		Synced: s.Synced, EverSynced: s.EverSynced, StaleFor: s.StaleFor, Subscribed: s.Subscribed,
		Invalidations: s.Invalidations, Resyncs: s.Resyncs, ResyncFailures: s.ResyncFailures,
		RedisCalls: s.RedisCalls, RedisErrors: s.RedisErrors,
		RedisLatency: histogramOf(s.RedisLatency.Bounds, s.RedisLatency.Counts, s.RedisLatency.Sum),
		Skipped:      s.Skipped, Panics: s.Panics,
		EventLag: histogramOf(s.EventLag.Bounds, s.EventLag.Counts, s.EventLag.Sum),
		Services: s.Services,
	}
}

func (z zoneView) Services() []string { return z.view.Services() }

func (z zoneView) InstanceHealth(service string) map[string]int {
	out := map[string]int{}
	if svc, ok := z.view.Service(service); ok {
		for _, in := range svc.Instances {
			out[in.Health.Status.String()]++
		}
	}
	return out
}

// Service joins the view's snapshot (every live instance) with what the
// DNS side serves of it and why (the reasons of _explain TXT).
func (z zoneView) Service(name string) (admin.Service, bool) {
	svc, ok := z.view.Service(name)
	if !ok {
		return admin.Service{}, false
	}
	status, _ := z.h.Explain(z.name, name)
	why := make(map[string]regdns.InstanceStatus, len(status.Instances))
	for _, in := range status.Instances {
		why[in.ID] = in
	}
	out := admin.Service{
		Zone: z.name, Name: name, HealthMode: z.mode.String(), Panic: svc.Panic,
		Served: status.Served, Reason: status.Reason, Instances: make([]admin.Instance, 0, len(svc.Instances)),
	}
	for _, in := range svc.Instances {
		ai := admin.Instance{
			ID: in.ID, Host: in.Host, Port: in.Port, Health: in.Health.Status.String(),
			Weight: in.Weight, Priority: in.Priority, Metadata: in.Meta.Map(), LastHeartbeat: in.LastHeartbeat,
		}
		if !in.LeaseEnds.IsZero() {
			ends := in.LeaseEnds
			ai.LeaseEnds = &ends
		}
		switch st, ok := why[in.ID]; {
		case !status.Served:
			ai.Reason = "service not served: " + status.Reason
		case ok:
			ai.Served, ai.Reason = st.Served, st.Reason
		default:
			ai.Reason = "not in the DNS answers yet (the view changed a moment ago)"
		}
		out.Instances = append(out.Instances, ai)
	}
	return out, true
}

// histogramOf converts a histogram of durations to admin's, in seconds.
func histogramOf(bounds []time.Duration, counts []uint64, sum time.Duration) admin.Histogram {
	h := admin.Histogram{Bounds: make([]float64, len(bounds)), Counts: counts, Sum: sum.Seconds()}
	for i, b := range bounds {
		h.Bounds[i] = b.Seconds()
	}
	return h
}
