package health_test

// Integration tests: a real redis-server per test, instances registered by
// the reference Python writer, real local HTTP and TCP backends.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/regdns/regdns/health"
	"github.com/regdns/regdns/internal/redistest"
	"github.com/regdns/regdns/registry"
)

// backend is a local HTTP service whose /hz answers 200, or 503 while down.
type backend struct {
	host string
	port int
	down atomic.Bool
	// oks and fails count the answers given.
	oks, fails atomic.Int64
}

func newBackend(t *testing.T) *backend {
	t.Helper()
	b := &backend{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path != "/hz":
			w.WriteHeader(http.StatusNotFound)
		case b.down.Load():
			b.fails.Add(1)
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			b.oks.Add(1)
		}
	}))
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().(*net.TCPAddr)
	b.host, b.port = addr.IP.String(), addr.Port
	return b
}

// running is one Checker.Run in its own goroutine.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

// start runs a checker until stop or the end of the test.
func start(t *testing.T, opts health.Options) *running {
	t.Helper()
	opts.Logger = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
	c, err := health.New(opts)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels the checker and waits for Run to return; idempotent.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok {
			require.NoError(t, err)
			close(r.done)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Checker.Run did not return within 10s of its context ending")
	}
}

// status reads the status in a health key; "" when there is none.
func status(t *testing.T, c *redis.Client, service, id string) string {
	t.Helper()
	data, err := c.Get(context.Background(), "health:"+service+":"+id).Bytes()
	if errors.Is(err, redis.Nil) {
		return ""
	}
	require.NoError(t, err)
	var doc struct {
		Status string `json:"status"`
	}
	require.NoError(t, json.Unmarshal(data, &doc), "health document %s", data)
	return doc.Status
}

// events PSUBSCRIBEs the event channels of every service.
func events(t *testing.T, c *redis.Client) <-chan *redis.Message {
	t.Helper()
	ps := c.PSubscribe(context.Background(), "services:*:events")
	t.Cleanup(func() { _ = ps.Close() })
	_, err := ps.Receive(context.Background()) // the subscription confirmation
	require.NoError(t, err)
	return ps.Channel()
}

type event struct {
	Event      string `json:"event"`
	InstanceID string `json:"instance_id"`
	Status     string `json:"status"`
}

// healthEventsSoFar returns every health_changed event published before it
// was called: it publishes a marker of its own and reads up to it, since
// Redis delivers one subscription's messages in order.
func healthEventsSoFar(t *testing.T, c *redis.Client, ch <-chan *redis.Message) []event {
	t.Helper()
	require.NoError(t, c.Publish(context.Background(), "services:marker:events", `{"event": "marker"}`).Err())
	var out []event
	deadline := time.After(5 * time.Second)
	for {
		select {
		case m := <-ch:
			var ev event
			require.NoError(t, json.Unmarshal([]byte(m.Payload), &ev), "event %s", m.Payload)
			switch ev.Event {
			case "marker":
				return out
			case "health_changed":
				out = append(out, ev)
			}
		case <-deadline:
			t.Fatal("own marker not received within 5s")
		}
	}
}

// nextHealthEvent returns the next health_changed event, skipping the
// reference writer's registered/deregistered ones.
func nextHealthEvent(t *testing.T, ch <-chan *redis.Message, within time.Duration) event {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case m := <-ch:
			var ev event
			require.NoError(t, json.Unmarshal([]byte(m.Payload), &ev), "event %s", m.Payload)
			if ev.Event == "health_changed" {
				return ev
			}
		case <-deadline:
			t.Fatalf("no health_changed event within %v", within)
		}
	}
}

var checkedAtNumber = regexp.MustCompile(`"checked_at": [0-9.]+`)

// The checker writes what the reference HealthChecker writes: the same
// document, byte for byte but for the time, and the same TTL.
func TestWritesTheReferenceFormat(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	client := rs.Client(t)
	ref := redistest.Reference{URL: rs.URL()}
	b := newBackend(t)
	id := ref.Register(t, "user-service", b.host, b.port, map[string]any{"health_path": "/hz", "weight": 3}, 30)
	refID := ref.Register(t, "user-service", b.host, b.port, map[string]any{"health_check": "none"}, 30)
	ref.SetHealth(t, "user-service", refID, "healthy", 2) // the reference checker, check_interval 2

	fixed := time.Unix(1764090000, 500_000_000)
	start(t, health.Options{Client: client, Interval: 2 * time.Second, Now: func() time.Time { return fixed }})
	require.Eventually(t, func() bool { return status(t, client, "user-service", id) == "healthy" }, 5*time.Second, 5*time.Millisecond)

	ctx := context.Background()
	ours, err := client.Get(ctx, "health:user-service:"+id).Result()
	require.NoError(t, err)
	require.Equal(t, `{"status": "healthy", "checked_at": 1764090000.5}`, ours)
	theirs, err := client.Get(ctx, "health:user-service:"+refID).Result()
	require.NoError(t, err)
	require.Equal(t, checkedAtNumber.ReplaceAllString(theirs, "T"), checkedAtNumber.ReplaceAllString(ours, "T"),
		"same document as the reference's json.dumps")
	h, err := registry.DecodeHealth([]byte(ours))
	require.NoError(t, err)
	require.Equal(t, fixed, h.CheckedAt)

	for _, key := range []string{"health:user-service:" + id, "health:user-service:" + refID} {
		ttl, err := client.PTTL(ctx, key).Result()
		require.NoError(t, err)
		require.InDelta(t, 6, ttl.Seconds(), 1, "TTL of %s: 3 x interval, as the reference's check_interval * 3", key)
	}
	// health_check "none": the reference's key stays as the reference wrote it.
	require.Equal(t, theirs, client.Get(ctx, "health:user-service:"+refID).Val())
}

// A flapping backend flips to unhealthy after exactly Fall failures and back
// after exactly Rise successes, and each flip (only each flip) is published.
func TestFlappingBackendFlipsAfterThresholds(t *testing.T) {
	const rise, fall = 2, 3
	const interval = 200 * time.Millisecond
	rs := redistest.Start(t)
	client := rs.Client(t)
	evs := events(t, client)
	ref := redistest.Reference{URL: rs.URL()}
	b := newBackend(t)
	id := ref.Register(t, "orders", b.host, b.port, map[string]any{"health_path": "/hz"}, 30)
	start(t, health.Options{Client: client, Interval: interval, Rise: rise, Fall: fall, Timeout: time.Second})

	// The first result is written as it is, and announced (unknown -> healthy).
	ev := nextHealthEvent(t, evs, 5*time.Second)
	require.Equal(t, event{"health_changed", id, "healthy"}, ev)
	require.Equal(t, "healthy", status(t, client, "orders", id))

	b.down.Store(true)
	ev = nextHealthEvent(t, evs, 5*time.Second)
	fails := b.fails.Load() // the next probe is an interval away: fall+1 only if this test ran late
	require.Equal(t, event{"health_changed", id, "unhealthy"}, ev)
	require.GreaterOrEqual(t, fails, int64(fall), "failures answered when the flip to unhealthy was published")
	require.LessOrEqual(t, fails, int64(fall+1), "failures answered when the flip to unhealthy was published")
	require.Equal(t, "unhealthy", status(t, client, "orders", id))

	oks := b.oks.Load()
	b.down.Store(false)
	ev = nextHealthEvent(t, evs, 5*time.Second)
	oks = b.oks.Load() - oks
	require.Equal(t, event{"health_changed", id, "healthy"}, ev)
	require.GreaterOrEqual(t, oks, int64(rise), "successes answered when the flip to healthy was published")
	require.LessOrEqual(t, oks, int64(rise+1), "successes answered when the flip to healthy was published")
	require.Equal(t, "healthy", status(t, client, "orders", id))

	// Steady: keys keep being rewritten, and nothing more is published.
	oks = b.oks.Load()
	require.Eventually(t, func() bool { return b.oks.Load() >= oks+3 }, 5*time.Second, 5*time.Millisecond)
	require.Empty(t, healthEventsSoFar(t, client, evs), "published without a flip")
}

// A failure streak shorter than Fall never reaches Redis.
func TestShortOutageBelowFallIsNotWritten(t *testing.T) {
	rs := redistest.Start(t)
	client := rs.Client(t)
	evs := events(t, client)
	ref := redistest.Reference{URL: rs.URL()}
	b := newBackend(t)
	id := ref.Register(t, "cart", b.host, b.port, map[string]any{"health_path": "/hz"}, 30)
	start(t, health.Options{Client: client, Interval: 200 * time.Millisecond, Fall: 3})
	require.Equal(t, event{"health_changed", id, "healthy"}, nextHealthEvent(t, evs, 5*time.Second))

	b.down.Store(true)
	fails := b.fails.Load()
	// Two failures, one short of Fall; the third probe is an interval away.
	require.Eventually(t, func() bool { return b.fails.Load() >= fails+2 }, 5*time.Second, time.Millisecond)
	b.down.Store(false)
	oks := b.oks.Load()
	// A round ends before the next begins: once a later probe succeeded,
	// whatever the failing rounds published has been published.
	require.Eventually(t, func() bool { return b.oks.Load() > oks }, 5*time.Second, time.Millisecond)
	require.Empty(t, healthEventsSoFar(t, client, evs), "no flip for a streak shorter than Fall")
	require.Equal(t, "healthy", status(t, client, "cart", id))
}

// TCP probes, instances that opt out, unknown probe kinds and a panicking
// probe, all in one registry.
func TestProbeKindsAgainstRealBackends(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	client := rs.Client(t)
	ref := redistest.Reference{URL: rs.URL()}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var accepted atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			_ = c.Close()
		}
	})
	t.Cleanup(wg.Wait)
	t.Cleanup(func() { _ = l.Close() })
	port := l.Addr().(*net.TCPAddr).Port

	tcpID := ref.Register(t, "db", "127.0.0.1", port, map[string]any{"health_check": "tcp"}, 30)
	noneID := ref.Register(t, "db", "127.0.0.1", port, map[string]any{"health_check": "none"}, 30)
	grpcID := ref.Register(t, "db", "127.0.0.1", port, map[string]any{"health_check": "grpc"}, 30)
	start(t, health.Options{Client: client, Interval: 100 * time.Millisecond})
	require.Eventually(t, func() bool { return status(t, client, "db", tcpID) == "healthy" }, 5*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { return status(t, client, "db", grpcID) == "unknown" }, 5*time.Second, 5*time.Millisecond,
		"a probe kind regdns does not know is unknown, as a reference check that raises")
	n := accepted.Load()
	require.Eventually(t, func() bool { return accepted.Load() >= n+3 }, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, "", status(t, client, "db", noneID), `health_check "none" is never written`)

	require.NoError(t, l.Close())
	require.Eventually(t, func() bool { return status(t, client, "db", tcpID) == "unhealthy" }, 5*time.Second, 5*time.Millisecond)

	// A probe that panics yields unknown and the checker goes on.
	rs2 := redistest.Start(t)
	client2 := rs2.Client(t)
	id := redistest.Reference{URL: rs2.URL()}.Register(t, "web", "127.0.0.1", 1, nil, 30)
	var calls atomic.Int64
	start(t, health.Options{Client: client2, Interval: 100 * time.Millisecond,
		Probe: func(context.Context, health.Kind, registry.Instance) error { calls.Add(1); panic("probe bug") }})
	require.Eventually(t, func() bool { return status(t, client2, "web", id) == "unknown" && calls.Load() >= 3 }, 5*time.Second, 5*time.Millisecond)
}

// A health key that says "draining" is an operator's: the checker neither
// probes nor overwrites it, and takes the instance back once it is gone.
func TestDrainingIsLeftAlone(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	client := rs.Client(t)
	ref := redistest.Reference{URL: rs.URL()}
	b := newBackend(t)
	meta := map[string]any{"health_path": "/hz"}
	drained := ref.Register(t, "api", b.host, b.port, meta, 30)
	other := ref.Register(t, "api", b.host, b.port, meta, 30)
	ctx := context.Background()
	drain := `{"status": "draining", "checked_at": 1764090000.0}`
	require.NoError(t, client.Set(ctx, "health:api:"+drained, drain, 0).Err())
	var probed sync.Map
	probe := health.NewProber().Probe
	start(t, health.Options{Client: client, Interval: 100 * time.Millisecond,
		Probe: func(ctx context.Context, k health.Kind, in registry.Instance) error {
			n, _ := probed.LoadOrStore(in.ID, new(atomic.Int64))
			n.(*atomic.Int64).Add(1)
			return probe(ctx, k, in)
		}})
	probes := func(id string) int64 {
		n, ok := probed.Load(id)
		if !ok {
			return 0
		}
		return n.(*atomic.Int64).Load()
	}
	require.Eventually(t, func() bool { return probes(other) >= 3 }, 5*time.Second, 5*time.Millisecond)
	require.Zero(t, probes(drained))
	require.Equal(t, drain, client.Get(ctx, "health:api:"+drained).Val())

	require.NoError(t, client.Del(ctx, "health:api:"+drained).Err())
	require.Eventually(t, func() bool { return status(t, client, "api", drained) == "healthy" }, 5*time.Second, 5*time.Millisecond)
}

// Only the configured services are checked; expired ids are removed from
// their set only when CleanupExpired is on.
func TestServicesAndCleanupExpired(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	client := rs.Client(t)
	ref := redistest.Reference{URL: rs.URL()}
	b := newBackend(t)
	meta := map[string]any{"health_path": "/hz"}
	live := ref.Register(t, "api", b.host, b.port, meta, 30)
	other := ref.Register(t, "other", b.host, b.port, meta, 30)
	gone := ref.Register(t, "api", b.host, b.port, meta, 1) // never heartbeats
	ctx := context.Background()
	require.Eventually(t, func() bool { return client.Exists(ctx, "services:api:instances:"+gone).Val() == 0 }, 5*time.Second, 10*time.Millisecond)

	// Cleanup off (the default): the expired id stays, as the reader expects.
	var probes atomic.Int64
	probe := health.NewProber().Probe
	counting := func(ctx context.Context, k health.Kind, in registry.Instance) error {
		probes.Add(1)
		return probe(ctx, k, in)
	}
	r := start(t, health.Options{Client: client, Interval: 100 * time.Millisecond, Services: []string{"api"}, Probe: counting})
	require.Eventually(t, func() bool { return probes.Load() >= 3 }, 5*time.Second, 5*time.Millisecond)
	require.True(t, client.SIsMember(ctx, "services:api", gone).Val())
	require.Equal(t, "healthy", status(t, client, "api", live))
	require.Equal(t, "", status(t, client, "other", other), "a service not listed is not checked")
	require.Equal(t, int64(0), client.Exists(ctx, "health:api:"+gone).Val())
	r.stop(t)

	start(t, health.Options{Client: client, Interval: 100 * time.Millisecond, Services: []string{"api"}, CleanupExpired: true})
	require.Eventually(t, func() bool { return !client.SIsMember(ctx, "services:api", gone).Val() }, 5*time.Second, 5*time.Millisecond)
	require.True(t, client.SIsMember(ctx, "services:api", live).Val())
}

// inFlight counts probes in flight across checkers, and their maximum.
type inFlight struct {
	cur, max atomic.Int64
}

func (f *inFlight) enter() {
	n := f.cur.Add(1)
	for m := f.max.Load(); n > m && !f.max.CompareAndSwap(m, n); m = f.max.Load() {
	}
}

func (f *inFlight) leave() { f.cur.Add(-1) }

// seed writes n instances of service straight into Redis, in the reference
// document format, in a few pipelines.
func seed(t *testing.T, c *redis.Client, service string, n int) {
	t.Helper()
	ctx := context.Background()
	for start := 0; start < n; start += 1000 {
		_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := start; i < min(start+1000, n); i++ {
				id := fmt.Sprintf("i%05d", i)
				doc := fmt.Sprintf(`{"service_name": %q, "instance_id": %q, "host": "10.%d.%d.%d", "port": 8080, "metadata": {}, "registered_at": 1.0, "last_heartbeat": 1.0}`,
					service, id, i>>16&255, i>>8&255, i&255)
				p.SetEx(ctx, "services:"+service+":instances:"+id, doc, time.Minute)
				p.SAdd(ctx, "services:"+service, id)
			}
			return nil
		})
		require.NoError(t, err)
	}
}

// The pool is filled to the bound and never beyond it, with a real registry.
func TestConcurrencyBoundNeverExceeded(t *testing.T) {
	t.Parallel()
	const limit = 8
	rs := redistest.Start(t)
	client := rs.Client(t)
	seed(t, client, "wide", 300)
	var f inFlight
	gate := make(chan struct{})
	start(t, health.Options{Client: client, Interval: time.Second, Concurrency: limit,
		Probe: func(ctx context.Context, _ health.Kind, _ registry.Instance) error {
			f.enter()
			defer f.leave()
			select {
			case <-gate:
			case <-ctx.Done():
			}
			return nil
		}})
	require.Eventually(t, func() bool { return f.cur.Load() == limit }, 5*time.Second, time.Millisecond)
	close(gate)
	require.Eventually(t, func() bool { return client.Exists(context.Background(), "health:wide:i00299").Val() == 1 }, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, int64(limit), f.max.Load(), "most probes in flight")
}

// 10,000 instances are probed and written within one interval.
func TestTenThousandInstancesEveryInterval(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 instances")
	}
	const n = 10_000
	const interval = 5 * time.Second
	rs := redistest.Start(t)
	client := rs.Client(t)
	seed(t, client, "fleet", n)
	var probes atomic.Int64
	begin := time.Now()
	start(t, health.Options{Client: client, Interval: interval,
		Probe: func(context.Context, health.Kind, registry.Instance) error { probes.Add(1); return nil }})
	ctx := context.Background()
	require.Eventually(t, func() bool {
		return client.DBSize(ctx).Val() >= 2*n+2 // instances, their health keys, the set, the lease
	}, interval, 10*time.Millisecond, "10,000 health keys within one interval")
	took := time.Since(begin)
	t.Logf("%d instances probed and written in %v (interval %v)", n, took, interval)
	require.Equal(t, int64(n), probes.Load(), "one probe per instance in the first round")
}

// Two checkers on one Redis: only the lease holder probes; when it stops,
// the other takes over within one lease period.
func TestTwoCheckersOneProbes(t *testing.T) {
	const leaseTTL = 600 * time.Millisecond
	rs := redistest.Start(t)
	seed(t, rs.Client(t), "api", 50)
	var f inFlight
	var probes [2]atomic.Int64
	checkers := make([]*running, 2)
	for i := range checkers {
		checkers[i] = start(t, health.Options{
			Client: rs.Client(t), Interval: 100 * time.Millisecond, LeaseTTL: leaseTTL, Concurrency: 4,
			Probe: func(ctx context.Context, _ health.Kind, _ registry.Instance) error {
				f.enter()
				defer f.leave()
				probes[i].Add(1)
				return nil
			},
		})
	}
	// Several rounds (and lease renewals) pass: one checker probes, the other never.
	require.Eventually(t, func() bool { return probes[0].Load()+probes[1].Load() >= 50*8 }, 10*time.Second, 5*time.Millisecond)
	holder, standby := 0, 1
	if probes[1].Load() > 0 {
		holder, standby = 1, 0
	}
	require.Zero(t, probes[standby].Load(), "the standby never probes while the holder lives")
	require.LessOrEqual(t, f.max.Load(), int64(4), "probes in flight across both checkers")

	checkers[holder].stop(t) // releases the lease
	stopped := time.Now()
	before := probes[holder].Load()
	require.Eventually(t, func() bool { return probes[standby].Load() > 0 }, 5*time.Second, time.Millisecond)
	took := time.Since(stopped)
	t.Logf("standby took over %v after the holder stopped (lease %v)", took, leaseTTL)
	require.LessOrEqual(t, took, leaseTTL, "takeover within one lease period")
	require.Equal(t, before, probes[holder].Load(), "a stopped checker probes no more")
	require.LessOrEqual(t, f.max.Load(), int64(4), "probes in flight across both checkers")
}

// A holder that dies without releasing (here: its Redis connection is cut,
// so it can neither renew nor release) is replaced within one lease period,
// and never probes after its replacement has started.
func TestCrashedHolderIsReplacedWithinOneLeasePeriod(t *testing.T) {
	const leaseTTL = 900 * time.Millisecond
	rs := redistest.Start(t)
	seed(t, rs.Client(t), "api", 20)
	type stamp struct {
		mu          sync.Mutex
		first, last time.Time
		n           int
	}
	var stamps [2]stamp
	clients := []*redis.Client{rs.Client(t), rs.Client(t)}
	for i := range clients {
		start(t, health.Options{
			Client: clients[i], Interval: 50 * time.Millisecond, LeaseTTL: leaseTTL,
			Probe: func(context.Context, health.Kind, registry.Instance) error {
				s := &stamps[i]
				s.mu.Lock()
				defer s.mu.Unlock()
				now := time.Now()
				if s.n == 0 {
					s.first = now
				}
				s.last = now
				s.n++
				return nil
			},
		})
	}
	count := func(i int) int { stamps[i].mu.Lock(); defer stamps[i].mu.Unlock(); return stamps[i].n }
	require.Eventually(t, func() bool { return count(0)+count(1) >= 20*3 }, 10*time.Second, 5*time.Millisecond)
	holder, standby := 0, 1
	if count(1) > 0 {
		holder, standby = 1, 0
	}
	require.Zero(t, count(standby))

	require.NoError(t, clients[holder].Close()) // the crash, as Redis sees it
	crashed := time.Now()
	require.Eventually(t, func() bool { return count(standby) > 0 }, 5*time.Second, time.Millisecond)
	took := time.Since(crashed)
	t.Logf("standby took over %v after the holder lost Redis (lease %v)", took, leaseTTL)
	require.LessOrEqual(t, took, leaseTTL+leaseTTL/10, "takeover within one lease period (plus a round trip)")

	stamps[holder].mu.Lock()
	lastOld := stamps[holder].last
	stamps[holder].mu.Unlock()
	stamps[standby].mu.Lock()
	firstNew := stamps[standby].first
	stamps[standby].mu.Unlock()
	require.True(t, lastOld.Before(firstNew), "the old holder stopped probing (last %v) before the new one started (first %v)",
		lastOld.Format(time.StampMicro), firstNew.Format(time.StampMicro))
}

// Run returns promptly when its context ends and leaves no goroutine behind.
func TestRunLeavesNoGoroutines(t *testing.T) {
	rs := redistest.Start(t)
	client := rs.Client(t)
	ref := redistest.Reference{URL: rs.URL()}
	b := newBackend(t)
	id := ref.Register(t, "api", b.host, b.port, map[string]any{"health_path": "/hz"}, 30)
	require.NoError(t, client.Ping(context.Background()).Err()) // the pool's goroutines exist before counting
	before := runtime.NumGoroutine()
	r := start(t, health.Options{Client: client, Interval: 50 * time.Millisecond})
	require.Eventually(t, func() bool { return status(t, client, "api", id) == "healthy" }, 5*time.Second, 5*time.Millisecond)
	r.stop(t)
	// Polled here rather than with require.Eventually, whose condition runs
	// on a goroutine of its own.
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > before && time.Now().Before(deadline); {
		runtime.Gosched()
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines: %d before, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
	require.Equal(t, int64(0), client.Exists(context.Background(), "health-checker:services:lease").Val(), "the lease is released")
}
