package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// fakeDNS is a DNS whose counters the test sets.
type fakeDNS struct {
	mu    sync.Mutex
	stats DNSStats
}

// fakeDNS implements DNS.
var _ DNS = (*fakeDNS)(nil)

func (f *fakeDNS) DNSStats() DNSStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

// fakeZone is a Zone of callbacks.
type fakeZone struct {
	name      string
	OnStats   func() RegistryStats
	services  []string
	health    map[string]map[string]int
	OnService func(name string) (Service, bool)
}

// fakeZone implements Zone.
var _ Zone = (*fakeZone)(nil)

func (f *fakeZone) Name() string                 { return f.name }
func (f *fakeZone) RegistryStats() RegistryStats { return f.OnStats() }
func (f *fakeZone) Services() []string           { return f.services }
func (f *fakeZone) InstanceHealth(s string) map[string]int {
	return f.health[s]
}
func (f *fakeZone) Service(name string) (Service, bool) {
	if f.OnService == nil {
		return Service{}, false
	}
	return f.OnService(name)
}

func syncedStats() RegistryStats {
	return RegistryStats{
		Synced: true, EverSynced: true, Subscribed: true,
		Invalidations: map[string]uint64{"registry_event": 3, "keyspace_event": 2, "resync": 1},
		Resyncs:       4, ResyncFailures: 1, RedisCalls: 10, RedisErrors: 2,
		RedisLatency: Histogram{Bounds: []float64{0.001, 0.01}, Counts: []uint64{7, 2, 1}, Sum: 0.05},
		Skipped:      map[string]uint64{"wrong_type": 1},
		Panics:       1,
		EventLag:     Histogram{Bounds: []float64{0.001, 0.01}, Counts: []uint64{3, 0, 0}, Sum: 0.0015},
		Services:     2,
	}
}

// scrape fetches /metrics and parses it with the Prometheus text parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return families
}

// value finds the sample of a family with the given labels ("k", "v", ...).
func value(t *testing.T, families map[string]*dto.MetricFamily, name string, labels ...string) *dto.Metric {
	t.Helper()
	f, ok := families[name]
	require.True(t, ok, "no metric %s", name)
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.Label {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		return m
	}
	t.Fatalf("%s has no sample with labels %v", name, labels)
	return nil
}

func newTestServer(t *testing.T, opts Options) *httptest.Server {
	t.Helper()
	opts.Logger = zerolog.New(zerolog.NewTestWriter(t))
	srv := httptest.NewServer(New(opts).Handler())
	t.Cleanup(srv.Close)
	return srv
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	dns := &fakeDNS{stats: DNSStats{
		Queries: []QueryCount{
			{Qtype: "A", Rcode: "NOERROR", Transport: "udp", Fast: true, N: 5},
			{Qtype: "A", Rcode: "NOERROR", Transport: "udp", N: 2}, // same series as the fast ones
			{Qtype: "SRV", Rcode: "NXDOMAIN", Transport: "tcp", N: 1},
		},
		FastPath: 5,
		Latency: map[string]Histogram{
			"udp": {Bounds: []float64{0.0001, 0.001}, Counts: []uint64{4, 3, 0}, Sum: 0.002},
			"tcp": {Bounds: []float64{0.0001, 0.001}, Counts: []uint64{0, 0, 1}, Sum: 0.5},
		},
		Forwarded: 3, ForwardErrors: 1, RRLDropped: 4, RRLSlipped: 2,
	}}
	many := make([]string, 1500)
	for i := range many {
		many[i] = fmt.Sprintf("svc-%04d", i)
	}
	zones := []Zone{
		&fakeZone{name: "service.local.", OnStats: syncedStats, services: []string{"api", "web"}, health: map[string]map[string]int{
			"api": {"healthy": 2, "unknown": 1},
			"web": {"unhealthy": 1},
		}},
		&fakeZone{name: "big.internal.", OnStats: func() RegistryStats {
			return RegistryStats{EverSynced: true, StaleFor: 1500 * time.Millisecond, Services: len(many)}
		}, services: many, health: map[string]map[string]int{}},
	}
	srv := newTestServer(t, Options{DNS: dns, Zones: zones, MaxServices: 1000})
	f := scrape(t, srv.URL)

	require.InDelta(t, 7, value(t, f, "regdns_dns_queries_total", "qtype", "A", "rcode", "NOERROR", "transport", "udp").GetCounter().GetValue(), 0)
	require.InDelta(t, 1, value(t, f, "regdns_dns_queries_total", "qtype", "SRV", "rcode", "NXDOMAIN", "transport", "tcp").GetCounter().GetValue(), 0)
	require.Len(t, f["regdns_dns_queries_total"].Metric, 2)
	require.InDelta(t, 5, value(t, f, "regdns_dns_fast_path_total").GetCounter().GetValue(), 0)
	require.InDelta(t, 3, value(t, f, "regdns_dns_forwarded_total").GetCounter().GetValue(), 0)
	require.InDelta(t, 1, value(t, f, "regdns_dns_forward_errors_total").GetCounter().GetValue(), 0)
	require.InDelta(t, 4, value(t, f, "regdns_dns_rrl_total", "action", "dropped").GetCounter().GetValue(), 0)
	require.InDelta(t, 2, value(t, f, "regdns_dns_rrl_total", "action", "slipped").GetCounter().GetValue(), 0)

	udp := value(t, f, "regdns_dns_request_duration_seconds", "transport", "udp").GetHistogram()
	require.EqualValues(t, 7, udp.GetSampleCount())
	require.InDelta(t, 0.002, udp.GetSampleSum(), 1e-12)
	require.Len(t, udp.Bucket, 3, "two bounds and +Inf")
	require.EqualValues(t, 4, udp.Bucket[0].GetCumulativeCount(), "le 0.0001")
	require.EqualValues(t, 7, udp.Bucket[1].GetCumulativeCount(), "le 0.001: cumulative")
	require.EqualValues(t, 1, value(t, f, "regdns_dns_request_duration_seconds", "transport", "tcp").GetHistogram().GetSampleCount())

	z := []string{"zone", "service.local."}
	require.InDelta(t, 3, value(t, f, "regdns_registry_invalidations_total", append(z, "cause", "registry_event")...).GetCounter().GetValue(), 0)
	require.InDelta(t, 4, value(t, f, "regdns_registry_resyncs_total", append(z, "result", "ok")...).GetCounter().GetValue(), 0)
	require.InDelta(t, 1, value(t, f, "regdns_registry_resyncs_total", append(z, "result", "failed")...).GetCounter().GetValue(), 0)
	require.InDelta(t, 10, value(t, f, "regdns_redis_requests_total", z...).GetCounter().GetValue(), 0)
	require.InDelta(t, 2, value(t, f, "regdns_redis_errors_total", z...).GetCounter().GetValue(), 0)
	require.EqualValues(t, 10, value(t, f, "regdns_redis_request_duration_seconds", z...).GetHistogram().GetSampleCount())
	require.InDelta(t, 1, value(t, f, "regdns_registry_subscribed", z...).GetGauge().GetValue(), 0)
	require.InDelta(t, 1, value(t, f, "regdns_registry_up", z...).GetGauge().GetValue(), 0)
	require.InDelta(t, 0, value(t, f, "regdns_registry_stale_seconds", z...).GetGauge().GetValue(), 0)
	require.InDelta(t, 1, value(t, f, "regdns_registry_skipped_total", append(z, "reason", "wrong_type")...).GetCounter().GetValue(), 0)
	require.InDelta(t, 1, value(t, f, "regdns_registry_panic_total", z...).GetCounter().GetValue(), 0)
	require.EqualValues(t, 3, value(t, f, "regdns_event_to_answer_seconds", z...).GetHistogram().GetSampleCount())
	require.InDelta(t, 2, value(t, f, "regdns_registry_services", z...).GetGauge().GetValue(), 0)
	require.InDelta(t, 2, value(t, f, "regdns_instances", append(z, "service", "api", "health", "healthy")...).GetGauge().GetValue(), 0)
	require.InDelta(t, 1, value(t, f, "regdns_instances", append(z, "service", "api", "health", "unknown")...).GetGauge().GetValue(), 0)
	require.InDelta(t, 0, value(t, f, "regdns_instances", append(z, "service", "api", "health", "unhealthy")...).GetGauge().GetValue(), 0,
		"every status of every service is a series, 0 included")
	require.InDelta(t, 1, value(t, f, "regdns_instances", append(z, "service", "web", "health", "unhealthy")...).GetGauge().GetValue(), 0)

	big := []string{"zone", "big.internal."}
	require.InDelta(t, 0, value(t, f, "regdns_registry_up", big...).GetGauge().GetValue(), 0)
	require.InDelta(t, 0, value(t, f, "regdns_registry_subscribed", big...).GetGauge().GetValue(), 0)
	require.InDelta(t, 1.5, value(t, f, "regdns_registry_stale_seconds", big...).GetGauge().GetValue(), 1e-9)
	require.InDelta(t, 1500, value(t, f, "regdns_registry_services", big...).GetGauge().GetValue(), 0)
	bigServices := map[string]bool{}
	for _, m := range f["regdns_instances"].Metric {
		for _, l := range m.Label {
			if l.GetName() == "zone" && l.GetValue() == "big.internal." {
				for _, l := range m.Label {
					if l.GetName() == "service" {
						bigServices[l.GetValue()] = true
					}
				}
			}
		}
	}
	require.Len(t, bigServices, 1000, "regdns_instances is capped at MaxServices services per zone")
	require.True(t, bigServices["svc-0999"])
	require.False(t, bigServices["svc-1000"])

	// The Go and process collectors are there too, on this registry alone.
	require.Contains(t, f, "go_goroutines")
	require.Contains(t, f, "process_start_time_seconds")
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestHealthzAndReadyz(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	state := RegistryStats{}
	zone := &fakeZone{name: "service.local.", OnStats: func() RegistryStats {
		mu.Lock()
		defer mu.Unlock()
		return state
	}}
	set := func(s RegistryStats) {
		mu.Lock()
		defer mu.Unlock()
		state = s
	}
	srv := newTestServer(t, Options{DNS: &fakeDNS{}, Zones: []Zone{zone}})

	code, body := get(t, srv.URL+"/healthz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok\n", body)

	code, body = get(t, srv.URL+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code, "before the initial sync")
	require.True(t, strings.HasPrefix(body, "not ready\n"), body)
	require.Contains(t, body, "initial sync")

	set(RegistryStats{Synced: true, EverSynced: true})
	code, body = get(t, srv.URL+"/readyz")
	require.Equal(t, http.StatusOK, code)
	require.True(t, strings.HasPrefix(body, "ready\n"), body)
	require.Contains(t, body, "service.local.: ready: in sync with Redis")

	set(RegistryStats{EverSynced: true, StaleFor: 3 * time.Second})
	code, body = get(t, srv.URL+"/readyz")
	require.Equal(t, http.StatusOK, code, "serving stale is ready")
	require.True(t, strings.HasPrefix(body, "stale\n"), body)
	require.Contains(t, body, "Redis unreachable for 3s, serving the last view")
}

func TestDebugService(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_100, 0)
	lease := now.Add(2 * time.Second)
	zone := &fakeZone{name: "service.local.", OnStats: syncedStats, services: []string{"api"},
		OnService: func(name string) (Service, bool) {
			if name != "api" {
				return Service{}, false
			}
			return Service{Zone: "service.local.", Name: "api", HealthMode: "healthy", Served: true, Instances: []Instance{
				{ID: "a1", Host: "10.0.0.1", Port: 80, Health: "healthy", Weight: 3, Priority: 1,
					Metadata: map[string]string{"version": "2"}, LastHeartbeat: now.Add(-4 * time.Second),
					Served: true, Reason: "health healthy is served in this health mode"},
				{ID: "a2", Host: "10.0.0.2", Port: 80, Health: "unhealthy", Weight: 1, Priority: 1, LeaseEnds: &lease,
					Reason: "unhealthy"},
			}}, true
		}}
	other := &fakeZone{name: "other.internal.", OnStats: syncedStats, OnService: func(name string) (Service, bool) {
		return Service{Zone: "other.internal.", Name: name}, true
	}}
	srv := newTestServer(t, Options{DNS: &fakeDNS{}, Zones: []Zone{zone, other}, Now: func() time.Time { return now }})

	resp, err := http.Get(srv.URL + "/debug/services/api")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	var got map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
	require.Equal(t, "api", got["service"])
	require.Equal(t, "healthy", got["health_mode"])
	require.Equal(t, true, got["served"])
	ins := got["instances"].([]any)
	require.Len(t, ins, 2)
	a1 := ins[0].(map[string]any)
	require.Equal(t, map[string]any{
		"id": "a1", "host": "10.0.0.1", "port": float64(80), "health": "healthy", "weight": float64(3),
		"priority": float64(1), "metadata": map[string]any{"version": "2"}, "heartbeat_age_seconds": float64(4),
		"served": true, "reason": "health healthy is served in this health mode",
	}, a1)
	a2 := ins[1].(map[string]any)
	require.Nil(t, a2["heartbeat_age_seconds"], "no heartbeat known: null")
	require.Equal(t, false, a2["served"])
	require.Equal(t, "unhealthy", a2["reason"])
	require.Equal(t, lease.UTC().Format(time.RFC3339), a2["lease_ends"].(string)[:20])

	code, body := get(t, srv.URL+"/debug/services/nope")
	require.Equal(t, http.StatusNotFound, code)
	require.Contains(t, body, `no service \"nope\" in zone service.local.`)

	code, body = get(t, srv.URL+"/debug/services/x?zone=OTHER.internal")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `"zone": "other.internal."`)
	code, _ = get(t, srv.URL+"/debug/services/x?zone=nope.")
	require.Equal(t, http.StatusNotFound, code)

	code, body = get(t, srv.URL+"/debug/services/")
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"zone": "service.local.", "services": ["api"]}`, body)
}

func TestStartShutdownAndPortInUse(t *testing.T) {
	t.Parallel()
	s := New(Options{Addr: "127.0.0.1:0", DNS: &fakeDNS{}, Logger: zerolog.Nop()})
	require.NoError(t, s.Start(t.Context()))
	code, body := get(t, "http://"+s.Addr()+"/healthz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok\n", body)

	// A second server on the same address fails at Start, naming it.
	busy := New(Options{Addr: s.Addr(), DNS: &fakeDNS{}, Logger: zerolog.Nop()})
	err := busy.Start(t.Context())
	require.ErrorContains(t, err, "address already in use")
	require.ErrorContains(t, err, s.Addr())

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, s.Shutdown(ctx))
	_, err = net.Dial("tcp", s.Addr())
	require.Error(t, err, "nothing listens after Shutdown")
	select {
	case err := <-s.Err():
		t.Fatalf("serving error after a clean shutdown: %v", err)
	default:
	}
}

func TestPprofOnlyWhenAsked(t *testing.T) {
	t.Parallel()
	for _, on := range []bool{false, true} {
		srv := newTestServer(t, Options{DNS: &fakeDNS{}, Pprof: on})
		resp, err := http.Get(srv.URL + "/debug/pprof/heap?debug=1")
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if on {
			require.Equal(t, http.StatusOK, resp.StatusCode)
			require.Contains(t, string(body), "heap profile")
		} else {
			require.Equal(t, http.StatusNotFound, resp.StatusCode)
		}
	}
}
