// Package admin is regdns's HTTP side: /metrics in the Prometheus text
// format, /healthz, /readyz and /debug/services/<name>. It reads the DNS
// server and the registry views through the small interfaces below, which
// main adapts; it imports none of regdns's other packages.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// DNS is the DNS server as admin reads it.
type DNS interface {
	// DNSStats returns the DNS counters.
	DNSStats() DNSStats
}

// Zone is one registry view and the DNS zone it answers.
type Zone interface {
	// Name is the zone, fully qualified ("service.local.").
	Name() string
	// RegistryStats returns the view's counters and state.
	RegistryStats() RegistryStats
	// Services lists the services in the view, sorted.
	Services() []string
	// InstanceHealth counts the live instances of a service by health
	// status ("healthy", "unhealthy", "unknown", "draining").
	InstanceHealth(service string) map[string]int
	// Service is the view of one service, every live instance with whether
	// DNS serves it and why; false when the view does not know it.
	Service(name string) (Service, bool)
}

// Histogram is a snapshot of a histogram of durations.
type Histogram struct {
	// Bounds are the buckets' upper bounds in seconds, ascending.
	Bounds []float64
	// Counts per bucket, not cumulative: len(Bounds)+1, the last one above
	// every bound.
	Counts []uint64
	// Sum of every observation, in seconds.
	Sum float64
}

// QueryCount is the number of DNS replies of one kind.
type QueryCount struct {
	Qtype, Rcode, Transport string
	Fast                    bool
	N                       uint64
}

// DNSStats are the DNS counters.
type DNSStats struct {
	Queries []QueryCount
	// FastPath counts replies from the packed table.
	FastPath uint64
	// Latency is the request duration by transport ("udp", "tcp").
	Latency map[string]Histogram
	// Forwarded counts queries forwarded upstream, ForwardErrors those
	// that failed.
	Forwarded, ForwardErrors uint64
	// RRLDropped and RRLSlipped count responses response rate limiting
	// dropped or sent truncated.
	RRLDropped, RRLSlipped uint64
}

// RegistryStats are a registry view's counters and state.
type RegistryStats struct {
	// Synced: in sync with Redis. EverSynced: the initial sync is done.
	Synced, EverSynced bool
	// StaleFor is how long the view has been out of sync (0 in sync).
	StaleFor time.Duration
	// Subscribed: the pub/sub subscription is live.
	Subscribed bool
	// Invalidations by cause.
	Invalidations map[string]uint64
	// Resyncs and ResyncFailures count full re-reads.
	Resyncs, ResyncFailures uint64
	// RedisCalls, RedisErrors and RedisLatency: the view's Redis round trips.
	RedisCalls, RedisErrors uint64
	RedisLatency            Histogram
	// Skipped malformed entries by reason.
	Skipped map[string]uint64
	// Panics counts services entering panic mode.
	Panics uint64
	// EventLag: from a pub/sub message to the change it caused in the answers.
	EventLag Histogram
	// Services is the number of services in the view.
	Services int
}

// Service is the view of one service as regdns sees it (JSON of
// /debug/services/<name>).
type Service struct {
	Zone       string `json:"zone"`
	Name       string `json:"service"`
	HealthMode string `json:"health_mode"`
	// Panic: too few healthy instances, every live one is served.
	Panic bool `json:"panic"`
	// Served is false when DNS answers nothing of the service; Reason says why.
	Served    bool       `json:"served"`
	Reason    string     `json:"reason,omitempty"`
	Instances []Instance `json:"instances"`
}

// Instance is one live instance of a Service.
type Instance struct {
	ID       string            `json:"id"`
	Host     string            `json:"host"`
	Port     uint16            `json:"port"`
	Health   string            `json:"health"`
	Weight   uint16            `json:"weight"`
	Priority uint16            `json:"priority"`
	Metadata map[string]string `json:"metadata"`
	// LastHeartbeat is the document's last_heartbeat (zero: none);
	// HeartbeatAge is filled from it when the page is served.
	LastHeartbeat time.Time `json:"-"`
	HeartbeatAge  *float64  `json:"heartbeat_age_seconds"`
	// LeaseEnds is set when the instance key's TTL runs out soon without a
	// heartbeat.
	LeaseEnds *time.Time `json:"lease_ends,omitempty"`
	Served    bool       `json:"served"`
	Reason    string     `json:"reason"`
}

// Options configure a Server.
type Options struct {
	// Addr is the host:port served (e.g. "127.0.0.1:9153"; port 0 picks one).
	Addr string
	// DNS is the DNS server whose counters are exported.
	DNS DNS
	// Zones are the registry views, the primary zone first.
	Zones []Zone
	// Pprof serves Go's profiles under /debug/pprof/.
	Pprof bool
	// MaxServices bounds the services per zone exported in regdns_instances,
	// the first in name order, so the label cardinality stays bounded
	// (default 1000).
	MaxServices int
	// Logger receives serving errors.
	Logger zerolog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Server serves the admin endpoints.
type Server struct {
	opts    Options
	handler http.Handler
	srv     *http.Server
	addr    string
	errs    chan error
	wg      sync.WaitGroup
}

// New returns a Server; Start binds it. opts.DNS must not be nil.
func New(opts Options) *Server {
	if opts.MaxServices <= 0 {
		opts.MaxServices = 1000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{opts: opts, errs: make(chan error, 1)}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		&collector{dns: opts.DNS, zones: opts.Zones, maxServices: opts.MaxServices},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: promLogger{opts.Logger}, ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /debug/services/{name...}", s.debugService)
	if opts.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	s.handler = mux
	return s
}

// Handler is the server's HTTP handler, for tests and embedding.
func (s *Server) Handler() http.Handler { return s.handler }

// Start binds opts.Addr and serves in the background until Shutdown;
// request contexts derive from ctx. A port in use is an error here.
func (s *Server) Start(ctx context.Context) error {
	l, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("http listen %s: %w", s.opts.Addr, err)
	}
	s.addr = l.Addr().String()
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.errs <- err
		}
	}()
	return nil
}

// Addr is the bound address (host:port), valid after Start.
func (s *Server) Addr() string { return s.addr }

// Err delivers a serving error after Start.
func (s *Server) Err() <-chan error { return s.errs }

// Shutdown stops accepting connections and waits, until ctx ends, for the
// requests in flight.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	err := s.srv.Shutdown(ctx)
	s.wg.Wait()
	return err
}

// readyz is 200 when every zone's view finished its initial sync: in sync
// with Redis ("ready"), or serving its last view while Redis is away
// ("stale"); 503 before the initial sync.
func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	var b strings.Builder
	code, overall := http.StatusOK, "ready"
	for _, z := range s.opts.Zones {
		st := z.RegistryStats()
		switch {
		case st.Synced:
			fmt.Fprintf(&b, "%s: ready: in sync with Redis\n", z.Name())
		case st.EverSynced:
			if overall == "ready" {
				overall = "stale"
			}
			fmt.Fprintf(&b, "%s: stale: Redis unreachable for %s, serving the last view\n",
				z.Name(), st.StaleFor.Round(time.Millisecond))
		default:
			code, overall = http.StatusServiceUnavailable, "not ready"
			fmt.Fprintf(&b, "%s: not ready: initial sync with Redis not done\n", z.Name())
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprintf(w, "%s\n%s", overall, b.String())
}

// debugService serves /debug/services/<name>[?zone=Z]: one service as the
// view sees it, or with no name the services of the zone.
func (s *Server) debugService(w http.ResponseWriter, r *http.Request) {
	z, ok := s.zone(r.URL.Query().Get("zone"))
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such zone: " + r.URL.Query().Get("zone")})
		return
	}
	name := r.PathValue("name")
	if name == "" {
		writeJSON(w, http.StatusOK, map[string]any{"zone": z.Name(), "services": nonNil(z.Services())})
		return
	}
	svc, ok := z.Service(name)
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no service %q in zone %s", name, z.Name())})
		return
	}
	now := s.opts.Now()
	for i := range svc.Instances {
		if in := &svc.Instances[i]; !in.LastHeartbeat.IsZero() {
			age := now.Sub(in.LastHeartbeat).Seconds()
			in.HeartbeatAge = &age
		}
	}
	if svc.Instances == nil {
		svc.Instances = []Instance{}
	}
	writeJSON(w, http.StatusOK, svc)
}

// zone finds a zone by name (any case, dot or not); "" is the primary one.
func (s *Server) zone(name string) (Zone, bool) {
	if len(s.opts.Zones) == 0 {
		return nil, false
	}
	if name == "" {
		return s.opts.Zones[0], true
	}
	want := strings.ToLower(strings.TrimSuffix(name, "."))
	for _, z := range s.opts.Zones {
		if strings.ToLower(strings.TrimSuffix(z.Name(), ".")) == want {
			return z, true
		}
	}
	return nil, false
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // a client gone away is not our error
}

// promLogger sends promhttp's errors to zerolog.
type promLogger struct{ log zerolog.Logger }

func (l promLogger) Println(v ...any) { l.log.Error().Msg(fmt.Sprint(v...)) }
