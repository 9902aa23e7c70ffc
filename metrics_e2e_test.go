package main

// End-to-end test of the admin HTTP server: a real redis-server, serve()
// with http.listen on a free port, /metrics scraped and parsed by the
// Prometheus text parser while queries are sent and the registry changes.

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/regdns/regdns/internal/config"
	"github.com/regdns/regdns/internal/redistest"
	"github.com/regdns/regdns/registry"
)

// metrics is one parsed scrape.
type metrics map[string]*dto.MetricFamily

func (r *regdnsUnderTest) scrape(t *testing.T) metrics {
	t.Helper()
	resp, err := http.Get("http://" + r.http + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return families
}

// get returns the status and body of an admin endpoint.
func (r *regdnsUnderTest) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + r.http + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// value is the value of the sample of name whose labels include the given
// ones ("k", "v", ...); 0 when there is none (a counter not yet moved).
// For a histogram it is the sample count.
func (m metrics) value(name string, labels ...string) float64 {
	f, ok := m[name]
	if !ok {
		return 0
	}
	total := 0.0
next:
	for _, s := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range s.Label {
				found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
			}
			if !found {
				continue next
			}
		}
		switch {
		case s.Counter != nil:
			total += s.Counter.GetValue()
		case s.Gauge != nil:
			total += s.Gauge.GetValue()
		case s.Histogram != nil:
			total += float64(s.Histogram.GetSampleCount())
		}
	}
	return total
}

func TestE2EMetricsAndHealthEndpoints(t *testing.T) {
	rs := redistest.Start(t)
	ctx := context.Background()
	w := registry.NewWriter(rs.Client(t), registry.DefaultKeys())
	require.NoError(t, w.Register(ctx, "web", "w1", "10.7.0.1", 80, nil, 30*time.Second))
	r := startRegdns(t, rs.URL(), func(c *config.Config) {
		c.Health.Mode = "healthy_or_unknown"
		c.Redis.Timeout = config.Duration{Duration: 300 * time.Millisecond}
	})
	require.NotEmpty(t, r.http, "serve reports the admin address")

	code, body := r.get(t, "/healthz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok\n", body)
	require.Eventually(t, func() bool {
		code, body := r.get(t, "/readyz")
		return code == http.StatusOK && strings.HasPrefix(body, "ready\n")
	}, 10*time.Second, 5*time.Millisecond, "never ready")
	answered := 0.0
	require.Eventually(t, func() bool {
		m, err := r.exchange("udp", "web.service.local.", dns.TypeA, 0)
		if err == nil {
			answered++
		}
		return err == nil && len(m.Answer) == 1
	}, 10*time.Second, 5*time.Millisecond, "web never answered")

	// The first query of a name is answered by the full handler, which
	// packs the answer for the next ones: ask SRV once too.
	require.Len(t, r.query(t, "udp", "web.service.local.", dns.TypeSRV, 0).Answer, 1)
	answered++

	// Queries move their counters, by qtype, rcode and transport, exactly.
	// A reply is counted and timed once written, so the client may read
	// it before the counters move: the baseline waits until every query
	// asked so far is counted and timed.
	var before metrics
	require.Eventually(t, func() bool {
		before = r.scrape(t)
		return before.value("regdns_dns_queries_total") >= answered &&
			before.value("regdns_dns_request_duration_seconds") == before.value("regdns_dns_queries_total")
	}, 5*time.Second, 5*time.Millisecond, "queries asked before the baseline never counted")
	for range 5 {
		require.Len(t, r.query(t, "udp", "web.service.local.", dns.TypeA, 0).Answer, 1)
	}
	for range 3 {
		require.Equal(t, dns.RcodeNameError, r.query(t, "udp", "nope.service.local.", dns.TypeSRV, 0).Rcode)
	}
	require.Len(t, r.query(t, "tcp", "web.service.local.", dns.TypeSRV, 0).Answer, 1)
	require.Equal(t, dns.RcodeRefused, r.query(t, "udp", "example.org.", dns.TypeAAAA, 0).Rcode)
	var after metrics
	delta := func(name string, labels ...string) float64 {
		return after.value(name, labels...) - before.value(name, labels...)
	}
	const q = "regdns_dns_queries_total"
	// A reply is counted and timed once written: the client may read it
	// first.
	require.Eventually(t, func() bool {
		after = r.scrape(t)
		return delta(q) >= 10 && delta("regdns_dns_request_duration_seconds") >= 10
	}, 5*time.Second, 5*time.Millisecond)
	require.InDelta(t, 5, delta(q, "qtype", "A", "rcode", "NOERROR", "transport", "udp"), 0)
	require.InDelta(t, 3, delta(q, "qtype", "SRV", "rcode", "NXDOMAIN", "transport", "udp"), 0)
	require.InDelta(t, 1, delta(q, "qtype", "SRV", "rcode", "NOERROR", "transport", "tcp"), 0)
	require.InDelta(t, 1, delta(q, "qtype", "AAAA", "rcode", "REFUSED", "transport", "udp"), 0)
	require.InDelta(t, 10, delta(q), 0, "nothing else was asked")
	require.InDelta(t, 6, delta("regdns_dns_fast_path_total"), 0, "web A and SRV are packed answers")
	require.InDelta(t, 9, delta("regdns_dns_request_duration_seconds", "transport", "udp"), 0)
	require.InDelta(t, 1, delta("regdns_dns_request_duration_seconds", "transport", "tcp"), 0)

	zone := []string{"zone", "service.local."}
	require.InDelta(t, 1, after.value("regdns_registry_up", zone...), 0)
	require.InDelta(t, 1, after.value("regdns_registry_subscribed", zone...), 0)
	require.InDelta(t, 0, after.value("regdns_registry_stale_seconds", zone...), 0)
	require.Positive(t, after.value("regdns_redis_requests_total", zone...))
	require.Positive(t, after.value("regdns_redis_request_duration_seconds", zone...))
	require.Positive(t, after.value("regdns_registry_resyncs_total", append(zone, "result", "ok")...))
	require.InDelta(t, 1, after.value("regdns_instances", append(zone, "service", "web", "health", "unknown")...), 0)
	require.Contains(t, after, "go_goroutines")

	// A registration is pushed: invalidations by event, its lag observed,
	// and the new service's instances appear.
	events := func(m metrics) float64 {
		return m.value("regdns_registry_invalidations_total", append(zone, "cause", "registry_event")...) +
			m.value("regdns_registry_invalidations_total", append(zone, "cause", "keyspace_event")...)
	}
	require.NoError(t, w.Register(ctx, "api", "a1", "10.7.0.2", 8080, map[string]any{"version": "2", "weight": 4}, 30*time.Second))
	require.NoError(t, w.SetHealth(ctx, "api", "a1", registry.StatusHealthy, 10*time.Second))
	require.Eventually(t, func() bool {
		m := r.scrape(t)
		return m.value("regdns_instances", append(zone, "service", "api", "health", "healthy")...) == 1
	}, 5*time.Second, 5*time.Millisecond, "api never counted healthy")
	changed := r.scrape(t)
	require.Greater(t, events(changed), events(after), "invalidations by event moved")
	require.Greater(t, changed.value("regdns_event_to_answer_seconds", zone...), after.value("regdns_event_to_answer_seconds", zone...))
	require.InDelta(t, 2, changed.value("regdns_registry_services", zone...), 0)

	// The debug view of the service lists the instance, served, and why.
	code, body = r.get(t, "/debug/services/api")
	require.Equal(t, http.StatusOK, code, body)
	var svc struct {
		Service   string `json:"service"`
		Served    bool   `json:"served"`
		Instances []struct {
			ID           string            `json:"id"`
			Host         string            `json:"host"`
			Port         int               `json:"port"`
			Health       string            `json:"health"`
			Weight       int               `json:"weight"`
			Metadata     map[string]string `json:"metadata"`
			HeartbeatAge *float64          `json:"heartbeat_age_seconds"`
			Served       bool              `json:"served"`
			Reason       string            `json:"reason"`
		} `json:"instances"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &svc), body)
	require.Equal(t, "api", svc.Service)
	require.True(t, svc.Served)
	require.Len(t, svc.Instances, 1)
	a1 := svc.Instances[0]
	require.Equal(t, "a1", a1.ID)
	require.Equal(t, "10.7.0.2", a1.Host)
	require.Equal(t, 8080, a1.Port)
	require.Equal(t, "healthy", a1.Health)
	require.Equal(t, 4, a1.Weight)
	require.Equal(t, "2", a1.Metadata["version"])
	require.NotNil(t, a1.HeartbeatAge)
	require.True(t, a1.Served)
	require.Equal(t, "health healthy is served in this health mode", a1.Reason)
	code, _ = r.get(t, "/debug/services/nope")
	require.Equal(t, http.StatusNotFound, code)

	// Redis dies: the view is down and stale, and still ready (serving the
	// last view).
	rs.Kill(t)
	require.Eventually(t, func() bool {
		m := r.scrape(t)
		return m.value("regdns_registry_up", zone...) == 0 && m.value("regdns_registry_subscribed", zone...) == 0
	}, 10*time.Second, 5*time.Millisecond, "registry never reported down")
	require.Eventually(t, func() bool {
		return r.scrape(t).value("regdns_registry_stale_seconds", zone...) > 0
	}, 10*time.Second, 5*time.Millisecond)
	code, body = r.get(t, "/readyz")
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, "stale")
	require.True(t, strings.HasPrefix(body, "stale\n"), body)
	require.Eventually(t, func() bool {
		down := r.scrape(t)
		return down.value("regdns_redis_errors_total", zone...) > 0 &&
			down.value("regdns_registry_resyncs_total", append(zone, "result", "failed")...) > 0
	}, 10*time.Second, 5*time.Millisecond, "Redis errors and failed re-reads never counted")
	require.Len(t, r.query(t, "udp", "web.service.local.", dns.TypeA, 0).Answer, 1, "the last view keeps answering")
}

func TestE2EHTTPListenOffAndInUse(t *testing.T) {
	rs := redistest.Start(t)
	r := startRegdns(t, rs.URL(), func(c *config.Config) { c.HTTP.Listen = "off" })
	require.Empty(t, r.http)

	// A port in use is a clear startup error.
	on := startRegdns(t, rs.URL(), nil)
	var out, errOut lockedBuffer
	code := run(context.Background(), []string{"serve", "-listen", "127.0.0.1:0", "-http", on.http, "-redis", rs.URL()},
		func(string) string { return "" }, &out, &errOut)
	require.Equal(t, 1, code)
	require.Contains(t, errOut.String(), "http listen "+on.http)
	require.Contains(t, errOut.String(), "address already in use")
}
