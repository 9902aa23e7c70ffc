package main

// Fault tests R1-R10 and lifecycle tests R20-R22 of
// ../shared/RELIABILITY-TESTS.md: real redis-server processes on loopback
// ports, the real regdns (serve() in-process, or the built binary where
// signals and exit codes matter), a query load from internal/loadtest
// checked answer by answer against a truth oracle that reads Redis
// directly. Each test records its docs/RELIABILITY.md line with
// loadtest.Record (REGDNS_RELIABILITY_OUT=FILE collects them).
//
// Sizes. By default every test runs scaled for the 2-core CI machine under
// -race: 500 qps instead of 2,000, and fault windows of seconds instead of
// minutes (R1: 15 s with the kill at 3 s and the restart at 10 s instead of
// 90 s, 10 s and 70 s); each test's relSizes value says its two sizes.
// REGDNS_RELIABILITY=full runs the table's sizes. R22 (1 h soak) runs only
// with REGDNS_SOAK=1. Waits for a state poll with deadlines; the only fixed
// durations are those of the load and of the fault windows.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/regdns/regdns/internal/config"
	"github.com/regdns/regdns/internal/loadtest"
	"github.com/regdns/regdns/internal/redistest"
	"github.com/regdns/regdns/registry"
)

const (
	// relServices x relPerService is the known registry of every test: the
	// table's 100 services, 3 healthy instances each.
	relServices   = 100
	relPerService = 3
	// relMaxAnswers is dns.max_answers in these tests, above any set they
	// make, so answers are compared whole.
	relMaxAnswers = 32
	// relTimeout is redis.timeout: every Redis call of the view is bounded
	// by it (a full re-read by 10x).
	relTimeout = 500 * time.Millisecond
	// relNegativeTTL is dns.negative_ttl: the grace after losing Redis
	// before unknown names turn from NXDOMAIN to SERVFAIL.
	relNegativeTTL = time.Second
	// relResyncBound is the table's "within a few seconds": changes made
	// while regdns was away are visible this long after Redis is back.
	relResyncBound = 5 * time.Second
	// relUnknown is a name no test registers.
	relUnknown = "no-such-service.service.local."
)

// relSize picks the CI or the full size (REGDNS_RELIABILITY=full).
func relSize[T any](ci, full T) T { return loadtest.Size(ci, full) }

// relP99Limit is the bound of a p99 that must stay "unchanged" against a
// baseline: 1.5x the baseline's p99, but never below relLatencyFloor
// (2 ms; more under -race, see reliability_race_test.go), since a baseline
// p99 of a few hundred microseconds on a shared 2-core machine moves by
// more than half with scheduling noise alone.
func relP99Limit(base time.Duration) time.Duration {
	return max(base*3/2, relLatencyFloor)
}

// relEnv is one test's registry, regdns and load.
type relEnv struct {
	rs     *redistest.Server
	rc     *redis.Client // the test's own client, straight to Redis
	w      *registry.Writer
	fleet  *loadtest.Fleet
	oracle *loadtest.Oracle
	r      *regdnsUnderTest
}

// relConfig is the configuration of the reliability tests, then mutate.
func relConfig(mutate func(*config.Config)) func(*config.Config) {
	return func(c *config.Config) {
		c.DNS.MaxAnswers = relMaxAnswers
		c.DNS.NegativeTTL = config.Duration{Duration: relNegativeTTL}
		c.Redis.Timeout = config.Duration{Duration: relTimeout}
		c.Cache.MaxAge = config.Duration{Duration: 10 * time.Minute} // no periodic re-read unless a test wants one
		c.Log.Level = "info"
		if mutate != nil {
			mutate(c)
		}
	}
}

// relStart writes the known registry into rs, starts regdns against
// regdnsURL (rs's URL, or a proxy's) and waits until it answers every
// service as the oracle says.
func relStart(t *testing.T, rs *redistest.Server, regdnsURL string, mutate func(*config.Config)) *relEnv {
	t.Helper()
	e := &relEnv{rs: rs, rc: rs.Client(t), fleet: loadtest.NewFleet(relServices, relPerService)}
	e.w = registry.NewWriter(e.rc, registry.DefaultKeys())
	e.oracle = &loadtest.Oracle{Client: e.rc}
	require.NoError(t, e.fleet.Register(context.Background(), e.w))
	e.r = startRegdns(t, regdnsURL, relConfig(mutate))
	e.waitInSync(t, e.fleet.Services, 10*time.Second, "initial sync")
	return e
}

// load is a load over the known services at qps for d, expecting the
// oracle's sets as they are now.
func (e *relEnv) load(t *testing.T, qps int, d time.Duration) *loadtest.Load {
	t.Helper()
	want, err := e.oracle.Want(context.Background(), e.fleet.Services)
	require.NoError(t, err)
	return &loadtest.Load{
		Addr: e.r.addr, Rate: qps, Duration: d, Names: e.fleet.Names(""),
		Expect: loadtest.NewExpect(want), MaxAnswers: relMaxAnswers,
	}
}

// inSync compares regdns's SRV and A answers for services with the oracle;
// it returns "" when they all match, else the first difference.
func (e *relEnv) inSync(services []string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range services {
		want, err := e.oracle.Expect(ctx, s)
		if err != nil {
			return "oracle: " + err.Error()
		}
		for _, qt := range []uint16{dns.TypeSRV, dns.TypeA} {
			m, err := e.r.exchange("udp", e.oracle.Name(s), qt, 4096)
			if err != nil {
				return fmt.Sprintf("%s %s: %v", dns.TypeToString[qt], s, err)
			}
			if m.Rcode != dns.RcodeSuccess {
				return fmt.Sprintf("%s %s: %s", dns.TypeToString[qt], s, dns.RcodeToString[m.Rcode])
			}
			if got := loadtest.Records(m); !loadtest.Matches(got, want.For(qt), relMaxAnswers) {
				return fmt.Sprintf("%s %s: %v, oracle %v", dns.TypeToString[qt], s, got, want.For(qt))
			}
		}
	}
	return ""
}

// inSyncWith compares regdns's SRV and A answers for services with what
// exp expects now (when the oracle cannot read Redis).
func (e *relEnv) inSyncWith(exp *loadtest.Expect, services []string) string {
	for _, s := range services {
		for _, qt := range []uint16{dns.TypeSRV, dns.TypeA} {
			want, ok := exp.Get(loadtest.Question{Name: e.oracle.Name(s), Qtype: qt})
			if !ok {
				return fmt.Sprintf("%s %s: not expected", dns.TypeToString[qt], s)
			}
			m, err := e.r.exchange("udp", e.oracle.Name(s), qt, 4096)
			if err != nil {
				return fmt.Sprintf("%s %s: %v", dns.TypeToString[qt], s, err)
			}
			if got := loadtest.Records(m); m.Rcode != dns.RcodeSuccess || !loadtest.Matches(got, want, relMaxAnswers) {
				return fmt.Sprintf("%s %s: %s %v, want %v", dns.TypeToString[qt], s, dns.RcodeToString[m.Rcode], got, want)
			}
		}
	}
	return ""
}

// waitInSync polls until regdns answers services as the oracle does and
// returns how long that took.
func (e *relEnv) waitInSync(t *testing.T, services []string, within time.Duration, what string) time.Duration {
	t.Helper()
	var last string
	took, ok := loadtest.Within(within, 20*time.Millisecond, func() bool {
		last = e.inSync(services)
		return last == ""
	})
	require.True(t, ok, "%s: view differs from the oracle after %v: %s", what, within, last)
	return took
}

// metrics scrapes regdns's /metrics.
func (e *relEnv) metrics(t *testing.T) loadtest.Metrics {
	t.Helper()
	m, err := loadtest.Scrape(context.Background(), e.r.http)
	require.NoError(t, err)
	return m
}

// up is regdns_registry_up of the primary zone.
func (e *relEnv) up(t *testing.T) float64 {
	t.Helper()
	return e.metrics(t).Sum("regdns_registry_up")
}

// resyncs is the number of successful full re-reads so far.
func (e *relEnv) resyncs(t *testing.T) float64 {
	t.Helper()
	return e.metrics(t).Sum("regdns_registry_resyncs_total", "result", "ok")
}

// waitUp polls /readyz (cheap, unlike a /metrics scrape, which the DNS
// latencies under test would feel on a 2-core machine) until the view is
// in sync (want 1: "ready") or serving its last view (want 0: "stale"),
// then checks regdns_registry_up says the same.
func (e *relEnv) waitUp(t *testing.T, want float64, within time.Duration, what string) time.Duration {
	t.Helper()
	state := map[float64]string{0: "stale", 1: "ready"}[want]
	took := loadtest.WaitFor(t, within, 20*time.Millisecond, what, func() bool {
		_, body := e.r.get(t, "/readyz")
		return strings.HasPrefix(body, state+"\n")
	})
	require.Equal(t, want, e.up(t), "%s: regdns_registry_up", what)
	return took
}

// rcode asks name once and returns the rcode (-1 on no answer).
func (e *relEnv) rcode(name string, qtype uint16) int {
	m, err := e.r.exchange("udp", name, qtype, 4096)
	if err != nil {
		return -1
	}
	return m.Rcode
}

// retry runs a write until Redis takes it (a client that just saw Redis die
// needs a moment to dial again).
func relRetry(t *testing.T, what string, f func(ctx context.Context) error) {
	t.Helper()
	var last error
	loadtest.WaitFor(t, 10*time.Second, 50*time.Millisecond, what, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		last = f(ctx)
		return last == nil
	})
	require.NoError(t, last)
}

// expectService tells the load what the oracle says of service now,
// accepting the sets it replaces as stale until Settle.
func (e *relEnv) expectService(t *testing.T, exp *loadtest.Expect, service string) {
	t.Helper()
	want, err := e.oracle.Want(context.Background(), []string{service})
	require.NoError(t, err)
	exp.ChangeAll(want)
}

// relSleepUntil waits for a point of a test's fixed schedule (the load's
// and the fault windows' durations), measured from start.
func relSleepUntil(start time.Time, at time.Duration) {
	if d := time.Until(start.Add(at)); d > 0 {
		time.Sleep(d) // a scheduled fault time, not a wait for a condition
	}
}

// relAOF starts a redis-server that keeps its data across Kill/Restart
// (appendfsync always), as a production Redis with persistence does.
func relAOF(t *testing.T, extra ...string) *redistest.Server {
	return redistest.Start(t, append([]string{"--appendonly", "yes", "--appendfsync", "always"}, extra...)...)
}

// relRecord checks the sum of the outcome counts and records the line.
func relRecord(t *testing.T, id, scenario string, res loadtest.Result) {
	t.Helper()
	t.Logf("%s %s: %v", id, scenario, res)
	for name, ph := range res.Phases {
		t.Logf("  phase %q: %v", name, ph)
	}
	require.Positive(t, res.Sent, "the load sent nothing")
	require.Equal(t, res.Sent, res.Answered+res.Failed())
	loadtest.Record(t, res.Line(id, scenario))
}

// ---------------------------------------------------------------------------
// R1: Redis SIGKILL mid-load.

type r1Sizes struct {
	qps                     int
	duration, kill, restart time.Duration
}

func TestReliabilityR1RedisKilled(t *testing.T) {
	sz := relSize(r1Sizes{500, 15 * time.Second, 3 * time.Second, 10 * time.Second},
		r1Sizes{2000, 90 * time.Second, 10 * time.Second, 70 * time.Second})
	rs := relAOF(t)
	// regdns reaches Redis through a proxy, so the test can restart Redis
	// and change the registry before regdns can reconnect.
	proxy := loadtest.StartProxy(t, rs.Addr)
	e := relStart(t, rs, proxy.URL(0), nil)
	ctx := context.Background()

	l := e.load(t, sz.qps, sz.duration)
	l.Phase("baseline")
	start := time.Now()
	run := l.Start(ctx)
	t.Cleanup(func() { run.Stop() })

	// Baseline process stats, once the load is warm.
	relSleepUntil(start, sz.kill/2)
	base := loadtest.Self()
	relSleepUntil(start, sz.kill)

	rs.Kill(t)
	killed := time.Now()
	l.Phase("outage")
	l.SetStale(true)
	e.waitUp(t, 0, 3*time.Second, "registry_up = 0 after the kill")
	stale1 := e.metrics(t).Sum("regdns_registry_stale_seconds")
	// Unknown names: NXDOMAIN during the negative-TTL grace, SERVFAIL after.
	loadtest.WaitFor(t, relNegativeTTL+3*time.Second, 20*time.Millisecond, "unknown name SERVFAIL", func() bool {
		return e.rcode(relUnknown, dns.TypeA) == dns.RcodeServerFailure
	})
	servfailAfter := time.Since(killed)
	require.GreaterOrEqual(t, servfailAfter, relNegativeTTL, "SERVFAIL for an unknown name before the negative TTL ran out")
	var outageGoroutines int
	relSleepUntil(start, (sz.kill+sz.restart)/2)
	outageGoroutines = loadtest.Self().Goroutines
	stale2 := e.metrics(t).Sum("regdns_registry_stale_seconds")
	require.Greater(t, stale2, stale1, "regdns_registry_stale_seconds must grow during the outage")
	relSleepUntil(start, sz.restart)

	// Redis comes back with its data (AOF) but unreachable for regdns,
	// while one instance registers and one deregisters.
	require.Equal(t, dns.RcodeServerFailure, e.rcode(relUnknown, dns.TypeA), "unknown names stay SERVFAIL during the outage")
	proxy.Refuse()
	rs.Restart(t)
	newID, gone := "r1new", e.fleet.Instances[3] // svc-001's first instance
	relRetry(t, "register while regdns is away", func(ctx context.Context) error {
		if err := e.w.Register(ctx, "svc-000", newID, "10.0.0.99", 9999, nil, 5*time.Minute); err != nil {
			return err
		}
		return e.w.SetHealth(ctx, "svc-000", newID, registry.StatusHealthy, 100*time.Second)
	})
	relRetry(t, "deregister while regdns is away", func(ctx context.Context) error {
		return e.w.Deregister(ctx, gone.Service, gone.ID)
	})
	l.Phase("recovery")
	e.expectService(t, l.Expect, "svc-000")
	e.expectService(t, l.Expect, gone.Service)
	proxy.Heal()
	took := e.waitInSync(t, []string{"svc-000", gone.Service}, 2*relResyncBound, "both changes after Redis is back")
	require.LessOrEqual(t, took, relResyncBound, "changes made while regdns was away visible %v after Redis was reachable", took)
	e.waitUp(t, 1, relResyncBound, "registry_up = 1")
	l.SetStale(false)
	l.Phase("after")
	l.Expect.Settle()
	require.Empty(t, e.inSync(e.fleet.Services))
	after := loadtest.Self()
	res := run.Wait()

	out, baseline := res.Phase("outage"), res.Phase("baseline")
	t.Logf("outage: unknown name SERVFAIL %v after the kill; changes visible %v after Redis was reachable; goroutines %d -> %d (outage) -> %d, RSS %d -> %d MiB",
		servfailAfter.Round(time.Millisecond), took.Round(time.Millisecond), base.Goroutines, outageGoroutines, after.Goroutines, base.RSS>>20, after.RSS>>20)
	relRecord(t, "R1", fmt.Sprintf("Redis SIGKILL mid-load (%d qps, %v, kill at %v, restart at %v)", sz.qps, sz.duration, sz.kill, sz.restart), res)
	require.Zero(t, out.ServFail+out.Timeouts+out.NXDomain+out.Wrong+out.OtherRcode, "known names during the outage: %v", out)
	require.Equal(t, out.Answered, out.Stale, "every outage answer is the last good set")
	require.Zero(t, res.Failed(), "failed answers: %v", res)
	require.LessOrEqual(t, out.P99, relP99Limit(baseline.P99), "outage p99 %v, baseline p99 %v", out.P99, baseline.P99)
	require.LessOrEqual(t, max(outageGoroutines, after.Goroutines), base.Goroutines+max(base.Goroutines/10, 10), "goroutines grew")
	require.LessOrEqual(t, after.RSS, base.RSS+max(base.RSS/10, relRSSSlack), "RSS grew from %d to %d", base.RSS, after.RSS)
}

// ---------------------------------------------------------------------------
// R2: Redis down at startup.

func TestReliabilityR2RedisDownAtStartup(t *testing.T) {
	down := relSize(3*time.Second, 20*time.Second)
	// regdns is configured with the proxy's address, which has nothing
	// behind it until Redis starts.
	proxy := loadtest.StartProxy(t, fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t)))
	proxy.Refuse()
	begin := time.Now()
	r := startRegdns(t, proxy.URL(0), relConfig(nil))
	e := &relEnv{r: r}
	// The apex answers at once, from the configuration alone.
	for _, qt := range []uint16{dns.TypeSOA, dns.TypeNS} {
		m := r.query(t, "udp", "service.local.", qt, 0)
		require.Equal(t, dns.RcodeSuccess, m.Rcode, dns.TypeToString[qt])
		require.NotEmpty(t, m.Answer, dns.TypeToString[qt])
	}
	require.Less(t, time.Since(begin), time.Second, "SOA/NS answered %v after start", time.Since(begin))

	rs := redistest.Start(t)
	fleet := loadtest.NewFleet(relServices, relPerService)
	w := registry.NewWriter(rs.Client(t), registry.DefaultKeys())
	require.NoError(t, fleet.Register(context.Background(), w))
	e.rs, e.rc, e.w, e.fleet, e.oracle = rs, rs.Client(t), w, fleet, &loadtest.Oracle{Client: rs.Client(t)}
	l := &loadtest.Load{Addr: r.addr, Rate: 200, Duration: 2 * time.Minute, Names: fleet.Names(""), MaxAnswers: relMaxAnswers}
	l.Phase("down")
	run := l.Start(context.Background())
	t.Cleanup(func() { run.Stop() })

	// While Redis is away: service names SERVFAIL, never NXDOMAIN; not ready.
	code, body := r.get(t, "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code, body)
	relSleepUntil(begin, down)
	code, body = r.get(t, "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code, body)
	require.Equal(t, dns.RcodeServerFailure, e.rcode(relUnknown, dns.TypeA))

	// Redis arrives (with the registry already written).
	proxy.SetTarget(rs.Addr)
	proxy.Heal()
	l.Phase("up")
	upAt := time.Now()
	ready := loadtest.WaitFor(t, 10*time.Second, 10*time.Millisecond, "readyz 200", func() bool {
		code, _ := r.get(t, "/readyz")
		return code == http.StatusOK
	})
	correct := e.waitInSync(t, fleet.Services, 10*time.Second, "answers after Redis is up")
	correctAt := time.Since(upAt)
	relSleepUntil(time.Now(), time.Second) // a second of load once in sync
	res := run.Stop()
	t.Logf("ready %v and correct %v after Redis was up (%v down)", ready.Round(time.Millisecond), correctAt.Round(time.Millisecond), down)
	relRecord(t, "R2", fmt.Sprintf("Redis down at startup for %v, 200 qps", down), res)
	d := res.Phase("down")
	require.Zero(t, d.NXDomain, "NXDOMAIN while Redis was never reached: %v", d)
	require.Zero(t, d.Answered, "answers without a registry: %v", d)
	require.Equal(t, d.Sent, d.ServFail, "service names SERVFAIL while not synced: %v", d)
	require.Zero(t, res.Phase("up").NXDomain)
	require.LessOrEqual(t, correctAt, 2*time.Second, "ready and correct %v after Redis was up (ready %v, answers %v)", correctAt, ready, correct)
}

// ---------------------------------------------------------------------------
// R3: Redis restarted empty under load; the writers refill it.

func TestReliabilityR3RestartWithDataLoss(t *testing.T) {
	qps, window := relSize(500, 2000), relSize(10*time.Second, 60*time.Second)
	rs := redistest.Start(t) // no persistence: Restart comes back empty
	e := relStart(t, rs, rs.URL(), nil)
	ctx := context.Background()

	t.Run("reference re-registration", func(t *testing.T) {
		// The reference ServiceClient heartbeats every few seconds and
		// registers again when the heartbeat finds its key gone.
		l := e.load(t, qps, window)
		l.Phase("before")
		start := time.Now()
		run := l.Start(ctx)
		t.Cleanup(func() { run.Stop() })
		relSleepUntil(start, window/5)
		rs.Restart(t)
		l.Phase("empty")
		l.SetStale(true)
		// Half a heartbeat interval later the writers notice and refill.
		relSleepUntil(start, 2*window/5)
		l.Phase("refill")
		// The view follows the registry as it refills, instance by
		// instance: part of a service's set is a correct answer meanwhile.
		l.Expect.AcceptSubsets(true)
		var n int
		relRetry(t, "refill", func(ctx context.Context) error {
			var err error
			n, err = e.fleet.Refill(ctx, e.w)
			return err
		})
		took := e.waitInSync(t, e.fleet.Services, 30*time.Second, "view after the refill")
		l.SetStale(false)
		l.Expect.AcceptSubsets(false)
		l.Phase("after")
		res := run.Wait()
		t.Logf("%d instances registered again; view equals the oracle %v after the refill", n, took.Round(time.Millisecond))
		relRecord(t, "R3", fmt.Sprintf("Redis restarted empty, writers re-register (%d qps, %v)", qps, window), res)
		require.Equal(t, len(e.fleet.Instances), n)
		require.Zero(t, res.NXDomain, "NXDOMAIN for services that existed: %v", res)
		require.Zero(t, res.Failed(), "failed answers: %v", res)
		require.Zero(t, res.Phase("after").Stale, "answers once in sync are the oracle's")
		require.LessOrEqual(t, took, 15*time.Second, "view equals the oracle %v after the refill", took)
	})

	t.Run("heartbeat-only refill", func(t *testing.T) {
		// A writer that only heartbeats (SETEX of its key, as the reference
		// heartbeat does when it finds the key) never re-adds the set
		// member: after data loss, SETEX alone brings back a key no set
		// lists. regdns holds the service (its last view) until the set
		// is written again, bounded by cache.max_stale; the instance key
		// alone does not make it come back.
		l := e.load(t, qps/2, window/2)
		l.Phase("before")
		run := l.Start(ctx)
		t.Cleanup(func() { run.Stop() })
		rs.Restart(t)
		l.SetStale(true)
		l.Phase("empty")
		// regdns reads the empty registry and holds every service.
		e.waitUp(t, 1, 10*time.Second, "in sync with the empty Redis")
		require.Contains(t, e.r.log.String(), "service missing after Redis restarted")
		l.Phase("keys only")
		relRetry(t, "heartbeat-only refill", func(ctx context.Context) error {
			for _, in := range e.fleet.Instances {
				doc := fmt.Sprintf(`{"service_name": %q, "instance_id": %q, "host": %q, "port": %d, "metadata": {}, "registered_at": 1, "last_heartbeat": 2}`,
					in.Service, in.ID, in.Host, in.Port)
				if err := e.rc.SetEx(ctx, "services:"+in.Service+":instances:"+in.ID, doc, time.Minute).Err(); err != nil {
					return err
				}
			}
			return nil
		})
		// Still the held view: every known name answered, none NXDOMAIN,
		// for a while of load.
		relSleepUntil(time.Now(), window/10)
		require.Empty(t, e.inSyncWith(l.Expect, e.fleet.Services), "held view")
		mid := l.Progress()
		require.Zero(t, mid.NXDomain+mid.ServFail, "held services: %v", mid)
		// The writers' next register (SADD + PUBLISH) and health check.
		l.Phase("re-register")
		l.Expect.AcceptSubsets(true)
		relRetry(t, "re-register", func(ctx context.Context) error {
			_, err := e.fleet.Refill(ctx, e.w) // heartbeats succeed now ...
			if err != nil {
				return err
			}
			for _, in := range e.fleet.Instances { // ... so register explicitly, as a restarted client does
				if err := e.w.Register(ctx, in.Service, in.ID, in.Host, in.Port, nil, e.fleet.TTL); err != nil {
					return err
				}
				if err := e.w.SetHealth(ctx, in.Service, in.ID, registry.StatusHealthy, e.fleet.HealthInterval); err != nil {
					return err
				}
			}
			return nil
		})
		took := e.waitInSync(t, e.fleet.Services, 30*time.Second, "view after the re-registration")
		l.SetStale(false)
		l.Expect.AcceptSubsets(false)
		res := run.Wait()
		t.Logf("view equals the oracle %v after the re-registration", took.Round(time.Millisecond))
		relRecord(t, "R3", "Redis restarted empty, heartbeat-only refill (keys without set members), then re-register", res)
		require.Zero(t, res.NXDomain, "NXDOMAIN for services that existed: %v", res)
		require.Zero(t, res.Failed(), "failed answers: %v", res)
		require.LessOrEqual(t, took, 15*time.Second)
	})
}

// ---------------------------------------------------------------------------
// R4: pub/sub connection killed repeatedly while a writer churns.

// relChurn registers and deregisters instances of service at perSecond
// from a pool of ids until stop is closed; it returns the number of writes.
func (e *relEnv) churn(t *testing.T, service string, perSecond int, stop <-chan struct{}) <-chan int {
	done := make(chan int, 1)
	go func() {
		rng := rand.New(rand.NewPCG(4, 2))
		tick := time.NewTicker(time.Second / time.Duration(perSecond))
		defer tick.Stop()
		n := 0
		defer func() { done <- n }()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			i := rng.IntN(10)
			id := fmt.Sprintf("c%d", i)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			var err error
			if rng.IntN(2) == 0 {
				if err = e.w.Register(ctx, service, id, fmt.Sprintf("10.200.0.%d", i+1), 7000+i, nil, 5*time.Minute); err == nil {
					err = e.w.SetHealth(ctx, service, id, registry.StatusHealthy, 100*time.Second)
				}
			} else {
				err = e.w.Deregister(ctx, service, id)
			}
			cancel()
			if err == nil {
				n++
			}
		}
	}()
	return done
}

func TestReliabilityR4PubSubKilled(t *testing.T) {
	every, kills := relSize(time.Second, 5*time.Second), relSize(6, 12)
	qps := relSize(500, 2000)
	rs := redistest.Start(t)
	e := relStart(t, rs, rs.URL(), nil)
	ctx := context.Background()
	l := e.load(t, qps, time.Duration(kills+3)*every+10*time.Second)
	run := l.Start(ctx)
	t.Cleanup(func() { run.Stop() })
	stop := make(chan struct{})
	churned := e.churn(t, "churn", 20, stop)
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
	}()

	before := e.resyncs(t)
	var killed int64
	tick := time.NewTicker(every)
	for range kills {
		<-tick.C
		n, err := e.rc.ClientKillByFilter(ctx, "TYPE", "pubsub").Result()
		require.NoError(t, err)
		killed += n
		// Each kill is followed by exactly one resubscription and re-read;
		// wait for it before the next kill so they are counted apart.
		want := before + float64(killed)
		loadtest.WaitFor(t, every+5*time.Second, 10*time.Millisecond, "resync after the kill", func() bool {
			return e.resyncs(t) >= want
		})
	}
	tick.Stop()
	lastKill := time.Now()
	close(stop)
	writes := <-churned
	took := e.waitInSync(t, append([]string{"churn"}, e.fleet.Services...), 10*time.Second, "view after the last kill")
	sinceKill := time.Since(lastKill)
	after := e.resyncs(t)
	res := run.Stop()
	t.Logf("%d kills (%d pub/sub connections), %d churn writes; %v resyncs; view equals the oracle %v after the last kill",
		kills, killed, writes, after-before, sinceKill.Round(time.Millisecond))
	relRecord(t, "R4", fmt.Sprintf("CLIENT KILL TYPE pubsub every %v x %d, 20 writes/s, %d qps", every, kills, qps), res)
	require.Equal(t, int64(kills), killed, "one regdns subscription killed each time")
	require.Equal(t, float64(kills), after-before, "one resync per kill")
	require.LessOrEqual(t, sinceKill, relResyncBound, "view equals the oracle %v after the last kill (took %v)", sinceKill, took)
	require.Zero(t, res.Failed(), "failed answers: %v", res)
}

// TestReliabilityClusterLateRegistryEvent: in Cluster mode a registry
// event (PUBLISH, through the cluster client's subscription) and the
// keyspace notifications of the set (from the set's master, on another
// connection) arrive in no order. A "registered" taken off its subscription
// after the SREM that followed it was handled must not bring the removed
// member back (before the fix it did, until the next full re-read: seen as
// a rare failure of TestTopologyClusterEveryMaster's "SREM without event"
// step under load).
func TestReliabilityClusterLateRegistryEvent(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	cc := cl.Client(t)
	cr := clusterRegistry{c: cc, keys: registry.DefaultKeys()}
	ctx := context.Background()
	cr.setHealth(t, "lateevt", "keep", registry.StatusHealthy)
	cr.register(t, "lateevt", topoInstance{"keep", "10.9.0.1", 80}, 30*time.Second)
	r := startRegdns(t, "", clusterConfig(cl))
	r.waitFor(t, srvName("lateevt"), dns.TypeSRV, 10*time.Second, hasTarget("keep", "lateevt"))

	// Registered without its event yet (SETEX + SADD), then removed from
	// the set (SREM, no event), then the "registered" event arrives.
	cr.setHealth(t, "lateevt", "late", registry.StatusHealthy)
	require.NoError(t, cc.SetEx(ctx, cr.keys.Instance("lateevt", "late"), `{"host": "10.9.0.2", "port": 81}`, 30*time.Second).Err())
	require.NoError(t, cc.SAdd(ctx, cr.keys.Set("lateevt"), "late").Err())
	r.waitFor(t, srvName("lateevt"), dns.TypeSRV, 2*time.Second, hasTarget("late", "lateevt"))
	require.NoError(t, cc.SRem(ctx, cr.keys.Set("lateevt"), "late").Err())
	r.waitFor(t, srvName("lateevt"), dns.TypeSRV, 2*time.Second, not(hasTarget("late", "lateevt")))
	cr.publish(t, "lateevt", "registered", "late")
	// Absence cannot be waited for: watch the answers for a while instead.
	_, back := loadtest.Within(500*time.Millisecond, 5*time.Millisecond, func() bool {
		m, err := r.exchange("udp", srvName("lateevt"), dns.TypeSRV, 4096)
		return err == nil && hasTarget("late", "lateevt")(m)
	})
	require.False(t, back, "the removed member came back with the late event")

	// A late "deregistered" must not drop an instance registered again.
	require.NoError(t, cc.SAdd(ctx, cr.keys.Set("lateevt"), "late").Err())
	r.waitFor(t, srvName("lateevt"), dns.TypeSRV, 2*time.Second, hasTarget("late", "lateevt"))
	cr.publish(t, "lateevt", "deregistered", "late")
	_, gone := loadtest.Within(500*time.Millisecond, 5*time.Millisecond, func() bool {
		m, err := r.exchange("udp", srvName("lateevt"), dns.TypeSRV, 4096)
		return err == nil && !hasTarget("late", "lateevt")(m)
	})
	require.False(t, gone, "a member was dropped by a late deregistered event")
}

// ---------------------------------------------------------------------------
// R5: silent event loss: the subscriber is disconnected for being slow.

func TestReliabilityR5SubscriberOverflow(t *testing.T) {
	burst := 10000
	rs := redistest.Start(t)
	e := relStart(t, rs, rs.URL(), nil)
	ctx := context.Background()
	// The load asks the services the burst does not touch, whose answers
	// must not move; the burst flips health of the first half.
	touched, stable := e.fleet.Services[:relServices/2], e.fleet.Services[relServices/2:]
	want, err := e.oracle.Want(ctx, stable)
	require.NoError(t, err)
	// The load runs 1 s before the burst and until 4 s after it started.
	l := &loadtest.Load{Addr: e.r.addr, Rate: 500, Duration: 5 * time.Second, Expect: loadtest.NewExpect(want),
		Names: e.fleet.Names("")[relServices/2:], MaxAnswers: relMaxAnswers}
	start := time.Now()
	run := l.Start(ctx)
	t.Cleanup(func() { run.Stop() })
	relSleepUntil(start, time.Second)

	require.NoError(t, e.rc.ConfigSet(ctx, "client-output-buffer-limit", "pubsub 1kb 0 0").Err())
	clientID := func() string {
		list, err := e.rc.ClientList(ctx).Result()
		require.NoError(t, err)
		var ids []string
		for line := range strings.SplitSeq(list, "\n") {
			if strings.Contains(line, "psub=3") {
				ids = append(ids, strings.Fields(line)[0])
			}
		}
		return strings.Join(ids, ",")
	}
	subBefore := clientID()
	require.NotEmpty(t, subBefore, "regdns's subscription")
	before := e.resyncs(t)

	// 10,000 health writes to the first half's instances, each a keyspace
	// notification (set + expire): far beyond 1 kB of unread messages.
	// The last write of each instance decides: every third unhealthy.
	var ins []loadtest.Instance
	for _, in := range e.fleet.Instances {
		if in.Service < stable[0] {
			ins = append(ins, in)
		}
	}
	p := e.rc.Pipeline()
	for i := range burst {
		in := ins[i%len(ins)]
		status := "healthy"
		if (i/len(ins))%2 == 0 || (i%3 == 0 && i >= burst-len(ins)) {
			status = "unhealthy"
		}
		if i >= burst-len(ins) && i%3 != 0 {
			status = "healthy"
		}
		p.SetEx(ctx, "health:"+in.Service+":"+in.ID, fmt.Sprintf(`{"status": %q, "checked_at": %d}`, status, i), 300*time.Second)
		if p.Len() >= 1000 {
			_, err := p.Exec(ctx)
			require.NoError(t, err)
		}
	}
	_, err = p.Exec(ctx)
	require.NoError(t, err)
	burstEnd := time.Now()
	took := e.waitInSync(t, touched, 10*time.Second, "view after the burst")
	took = time.Since(burstEnd)
	loadtest.WaitFor(t, 5*time.Second, 20*time.Millisecond, "resync counted", func() bool { return e.resyncs(t) > before })
	subAfter := clientID()
	res := run.Wait()
	t.Logf("subscription %s -> %s; %v resyncs; view equals the oracle %v after the burst", subBefore, subAfter, e.resyncs(t)-before, took.Round(time.Millisecond))
	relRecord(t, "R5", fmt.Sprintf("pubsub output buffer 1 kB, burst of %d health writes, 500 qps", burst), res)
	require.NotEqual(t, subBefore, subAfter, "Redis disconnected the slow subscriber and regdns subscribed again")
	require.LessOrEqual(t, took, relResyncBound)
	require.Zero(t, res.Failed(), "failed answers: %v", res)
	require.Empty(t, e.inSync(e.fleet.Services))
}

// ---------------------------------------------------------------------------
// R6: changes with no event at all.

// relNoEventChanges makes four changes without PUBLISH, as redis-cli would,
// and returns how long each took to show: SREM of a member, DEL of an
// instance key, SETEX + SADD of a new instance, and an instance whose key
// expires (its heartbeats stopped), measured from its TTL's end.
func relNoEventChanges(t *testing.T, e *relEnv, tag string, bound time.Duration) []time.Duration {
	t.Helper()
	ctx := context.Background()
	var took []time.Duration
	visible := func(what, service string) {
		t.Helper()
		start := time.Now()
		e.waitInSync(t, []string{service}, bound+5*time.Second, what)
		d := time.Since(start)
		t.Logf("%s %s: visible after %v", tag, what, d.Round(time.Millisecond))
		require.LessOrEqual(t, d, bound, "%s %s", tag, what)
		took = append(took, d)
	}
	s := func(i int) string { return e.fleet.Services[i] }
	in := func(svc, n int) loadtest.Instance { return e.fleet.Instances[svc*relPerService+n] }

	a := in(10, 0)
	require.NoError(t, e.rc.SRem(ctx, "services:"+a.Service, a.ID).Err())
	visible("SREM", s(10))
	b := in(11, 0)
	require.NoError(t, e.rc.Del(ctx, "services:"+b.Service+":instances:"+b.ID).Err())
	visible("DEL instance key", s(11))
	id := "noevent-" + strings.ReplaceAll(tag, " ", "-")
	doc := fmt.Sprintf(`{"service_name": %q, "instance_id": %q, "host": "10.99.0.1", "port": 9000, "metadata": {}, "registered_at": 1, "last_heartbeat": 1}`, s(12), id)
	require.NoError(t, e.rc.SetEx(ctx, "services:"+s(12)+":instances:"+id, doc, 5*time.Minute).Err())
	require.NoError(t, e.rc.SetEx(ctx, "health:"+s(12)+":"+id, `{"status": "healthy", "checked_at": 1}`, 5*time.Minute).Err())
	require.NoError(t, e.rc.SAdd(ctx, "services:"+s(12), id).Err())
	visible("SETEX + SADD", s(12))

	// Heartbeats stop: the key expires 2 s after it was written.
	c := in(13, 0)
	ttl := 2 * time.Second
	ok, err := e.w.Heartbeat(ctx, c.Service, c.ID, ttl)
	require.NoError(t, err)
	require.True(t, ok)
	written := time.Now()
	loadtest.WaitFor(t, ttl+bound+5*time.Second, 5*time.Millisecond, tag+" expired instance leaves", func() bool {
		m, err := e.r.exchange("udp", e.oracle.Name(c.Service), dns.TypeSRV, 4096)
		return err == nil && m.Rcode == dns.RcodeSuccess && !slices.ContainsFunc(loadtest.Records(m), func(r string) bool {
			return strings.HasPrefix(r, c.ID+".")
		})
	})
	gone := time.Since(written)
	t.Logf("%s expired instance left %v after its heartbeat (TTL %v)", tag, gone.Round(time.Millisecond), ttl)
	require.LessOrEqual(t, gone, ttl+bound, "%s: expired instance left after %v (TTL %v + reconcile %v)", tag, gone, ttl, bound)
	took = append(took, gone-ttl)
	require.Empty(t, e.inSync(e.fleet.Services))
	return took
}

func TestReliabilityR6ChangesWithoutEvents(t *testing.T) {
	// The reconcile period: cache.max_age with keyspace notifications (a
	// full re-read), cache.poll_interval without. Small here so "within
	// the reconcile period" is quick to test; a change may land just after
	// a re-read, so the bound is one period plus the re-read itself
	// (relReadSlack).
	const maxAge, poll = 3 * time.Second, 500 * time.Millisecond
	fast := func(c *config.Config) {
		c.Cache.MaxAge = config.Duration{Duration: maxAge}
		c.Cache.PollInterval = config.Duration{Duration: poll}
	}
	qps := relSize(300, 2000)

	t.Run("no PUBLISH", func(t *testing.T) {
		rs := redistest.Start(t)
		e := relStart(t, rs, rs.URL(), fast)
		l := e.load(t, qps, 2*time.Minute)
		l.Names = e.fleet.Names("")[20:] // the changes touch svc-010..013
		run := l.Start(context.Background())
		t.Cleanup(func() { run.Stop() })
		relNoEventChanges(t, e, "keyspace on", maxAge+relReadSlack)
		res := run.Stop()
		relRecord(t, "R6", fmt.Sprintf("SREM/DEL/SETEX/expiry without PUBLISH, keyspace notifications on (max_age %v)", maxAge), res)
		require.Zero(t, res.Failed(), "failed answers: %v", res)
	})

	t.Run("keyspace notifications off and CONFIG renamed", func(t *testing.T) {
		rs := redistest.Start(t, "--rename-command", "CONFIG", "relcfg-secret", "--notify-keyspace-events", "")
		e := relStart(t, rs, rs.URL(), fast)
		l := e.load(t, qps, 2*time.Minute)
		l.Names = e.fleet.Names("")[20:]
		run := l.Start(context.Background())
		t.Cleanup(func() { run.Stop() })
		relNoEventChanges(t, e, "polling", poll+relReadSlack)
		flags, err := e.rc.Do(context.Background(), "relcfg-secret", "GET", "notify-keyspace-events").Result()
		require.NoError(t, err)
		require.Equal(t, map[any]any{"notify-keyspace-events": ""}, flags, "regdns could not turn them on")
		require.Contains(t, e.r.log.String(), "cannot enable Redis keyspace notifications")
		res := run.Stop()
		relRecord(t, "R6", fmt.Sprintf("same, notify-keyspace-events \"\" and CONFIG renamed (poll_interval %v)", poll), res)
		require.Zero(t, res.Failed(), "failed answers: %v", res)
	})

	t.Run("after a restart that reset notifications", func(t *testing.T) {
		rs := relAOF(t)
		e := relStart(t, rs, rs.URL(), fast)
		ctx := context.Background()
		flags := func() string {
			v, err := e.rc.ConfigGet(ctx, "notify-keyspace-events").Result()
			if err != nil {
				return "?"
			}
			return v["notify-keyspace-events"]
		}
		require.Contains(t, flags(), "K", "regdns turned keyspace notifications on")
		l := e.load(t, qps, 2*time.Minute)
		l.Names = e.fleet.Names("")[20:]
		run := l.Start(ctx)
		t.Cleanup(func() { run.Stop() })
		rs.Restart(t) // AOF keeps the data; CONFIG SET is forgotten
		l.SetStale(true)
		loadtest.WaitFor(t, 10*time.Second, 20*time.Millisecond, "regdns re-enables keyspace notifications", func() bool {
			return strings.Contains(flags(), "K")
		})
		e.waitUp(t, 1, 10*time.Second, "in sync after the restart")
		l.SetStale(false)
		relNoEventChanges(t, e, "after restart", maxAge+relReadSlack)
		res := run.Stop()
		relRecord(t, "R6", "same, after a Redis restart that reset notify-keyspace-events", res)
		require.Zero(t, res.Failed(), "failed answers: %v", res)
	})
}

// ---------------------------------------------------------------------------
// R7: health flips.

func TestReliabilityR7HealthFlip(t *testing.T) {
	const poll = 500 * time.Millisecond
	flips := relSize(20, 100)
	measure := func(t *testing.T, e *relEnv, n int, bound time.Duration) []time.Duration {
		ctx := context.Background()
		in := e.fleet.Instances[0]
		var took []time.Duration
		for i := range n {
			status := registry.StatusUnhealthy
			if i%2 == 1 {
				status = registry.StatusHealthy
			}
			require.NoError(t, e.w.SetHealth(ctx, in.Service, in.ID, status, 100*time.Second))
			d := e.r.waitFor(t, e.oracle.Name(in.Service), dns.TypeSRV, bound+5*time.Second, func(m *dns.Msg) bool {
				return hasTarget(in.ID, in.Service)(m) == (status == registry.StatusHealthy)
			})
			took = append(took, d)
		}
		slices.Sort(took)
		return took
	}
	p99 := func(d []time.Duration) time.Duration { return d[min(len(d)*99/100, len(d)-1)] }

	t.Run("keyspace notifications on", func(t *testing.T) {
		rs := redistest.Start(t)
		e := relStart(t, rs, rs.URL(), nil)
		// 3 s of load (the flips take a fraction of it).
		l := e.load(t, 500, 3*time.Second)
		l.Names = e.fleet.Names("")[1:]
		run := l.Start(context.Background())
		t.Cleanup(func() { run.Stop() })
		took := measure(t, e, flips, 100*time.Millisecond)
		// One flip through the real Python HealthChecker too.
		ref := redistest.Reference{URL: rs.URL()}
		in := e.fleet.Instances[0]
		ref.SetHealth(t, in.Service, in.ID, "unhealthy", 100)
		pyTook := e.r.waitFor(t, e.oracle.Name(in.Service), dns.TypeSRV, 5*time.Second, not(hasTarget(in.ID, in.Service)))
		res := run.Wait()
		t.Logf("%d flips: p50 %v, p99 %v, max %v; reference HealthChecker flip %v", len(took), took[len(took)/2], p99(took), took[len(took)-1], pyTook)
		relRecord(t, "R7", fmt.Sprintf("health flips x %d, keyspace notifications on (flip p99 %v)", flips, p99(took).Round(100*time.Microsecond)), res)
		require.Less(t, p99(took), 100*time.Millisecond)
		require.Less(t, pyTook, 100*time.Millisecond)
		require.Zero(t, res.Failed(), "failed answers: %v", res)
	})

	t.Run("keyspace notifications off", func(t *testing.T) {
		rs := redistest.Start(t)
		e := relStart(t, rs, rs.URL(), func(c *config.Config) {
			c.Redis.KeyspaceEvents = false
			c.Cache.PollInterval = config.Duration{Duration: poll}
		})
		l := e.load(t, 500, 2*time.Minute)
		l.Names = e.fleet.Names("")[1:]
		run := l.Start(context.Background())
		t.Cleanup(func() { run.Stop() })
		took := measure(t, e, 6, poll+relReadSlack)
		res := run.Stop()
		t.Logf("%d flips by polling: max %v", len(took), took[len(took)-1])
		relRecord(t, "R7", fmt.Sprintf("health flips x 6, keyspace notifications off (poll %v; flip max %v)", poll, took[len(took)-1].Round(time.Millisecond)), res)
		require.LessOrEqual(t, took[len(took)-1], poll+relReadSlack)
		require.Zero(t, res.Failed(), "failed answers: %v", res)
	})
}

// ---------------------------------------------------------------------------
// R8: network partition between regdns and Redis.

func TestReliabilityR8Partition(t *testing.T) {
	hole, qps := relSize(5*time.Second, 60*time.Second), relSize(500, 2000)
	const pingEvery = time.Second // the view's ping and the subscription's health check

	run := func(t *testing.T, fault string, inject, heal func(p *loadtest.Proxy)) {
		rs := redistest.Start(t)
		proxy := loadtest.StartProxy(t, rs.Addr)
		e := relStart(t, rs, proxy.URL(0), nil)
		ctx := context.Background()
		l := e.load(t, qps, 2*time.Minute)
		l.Phase("baseline")
		start := time.Now()
		r := l.Start(ctx)
		t.Cleanup(func() { r.Stop() })
		relSleepUntil(start, 2*time.Second)
		// The proxy runs in this process too: its goroutines (one per
		// connection held by the blackhole) are not regdns's.
		regdnsGoroutines := func() int { return loadtest.Self().Goroutines - proxy.Goroutines() }
		base := regdnsGoroutines()

		inject(proxy)
		cut := time.Now()
		l.Phase("partition")
		l.SetStale(true)
		detected := e.waitUp(t, 0, 4*pingEvery, "partition detected")
		// A change regdns cannot see yet.
		relRetry(t, "register during the partition", func(ctx context.Context) error {
			if err := e.w.Register(ctx, "svc-000", "r8new", "10.0.0.88", 8888, nil, 5*time.Minute); err != nil {
				return err
			}
			return e.w.SetHealth(ctx, "svc-000", "r8new", registry.StatusHealthy, 100*time.Second)
		})
		peak := 0
		for time.Since(cut) < hole {
			peak = max(peak, regdnsGoroutines())
			time.Sleep(100 * time.Millisecond) // sampling interval of the goroutine count during a fixed fault window
		}
		heal(proxy)
		healed := time.Now()
		l.Phase("heal")
		e.expectService(t, l.Expect, "svc-000")
		took := e.waitInSync(t, []string{"svc-000"}, 3*relResyncBound, "change after the heal")
		e.waitUp(t, 1, relResyncBound, "registry_up after the heal")
		l.SetStale(false)
		l.Expect.Settle()
		l.Phase("after")
		res := r.Stop()
		// Every call is bounded by redis.timeout, a full re-read by 10x:
		// nothing may sit in the histogram above that.
		over := relHistogramAbove(t, e.r.http, "regdns_redis_request_duration_seconds", 10*relTimeout)
		over2 := relHistogramAbove(t, e.r.http, "regdns_redis_request_duration_seconds", 2*relTimeout)
		t.Logf("Redis calls over 2x redis.timeout: %v", over2)
		t.Logf("%s: detected %v after the cut; change visible %v after the heal (%v since); goroutines %d, peak %d; calls over %v: %v",
			fault, detected.Round(time.Millisecond), took.Round(time.Millisecond), time.Since(healed).Round(time.Millisecond),
			base, peak, 10*relTimeout, over)
		relRecord(t, "R8", fmt.Sprintf("%s %v, %d qps", fault, hole, qps), res)
		part, baseline := res.Phase("partition"), res.Phase("baseline")
		require.Zero(t, res.Failed(), "failed answers: %v", res)
		require.LessOrEqual(t, part.P99, relP99Limit(baseline.P99), "p99 during the partition %v, baseline %v", part.P99, baseline.P99)
		require.LessOrEqual(t, detected, 2*pingEvery, "dead link detected after %v", detected)
		require.LessOrEqual(t, peak-base, 100, "goroutine growth")
		require.Zero(t, over, "Redis calls longer than their deadline")
		require.LessOrEqual(t, took, relResyncBound, "resync %v after the heal", took)
	}

	t.Run("blackhole", func(t *testing.T) {
		run(t, "blackhole (no RST)", (*loadtest.Proxy).Blackhole, (*loadtest.Proxy).Heal)
	})
	t.Run("reset", func(t *testing.T) {
		// Connections reset, and every new one reset too, for the window.
		run(t, "connections reset", (*loadtest.Proxy).Refuse, (*loadtest.Proxy).Heal)
	})
}

// relHistogramAbove is the number of observations of histogram name above
// bound (bound must be one of its bucket bounds).
func relHistogramAbove(t *testing.T, httpAddr, name string, bound time.Duration) float64 {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	var total, below float64
	sc := bufio.NewScanner(resp.Body)
	le := strconv.FormatFloat(bound.Seconds(), 'g', -1, 64)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"_bucket{") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		require.NoError(t, err)
		switch {
		case strings.Contains(line, `le="+Inf"`):
			total += v
		case strings.Contains(line, `le="`+le+`"`):
			below += v
		}
	}
	require.NoError(t, sc.Err())
	return total - below
}

// ---------------------------------------------------------------------------
// R9: slow Redis.

func TestReliabilityR9SlowRedis(t *testing.T) {
	sleep, pause := relSize(2, 5), relSize(3*time.Second, 10*time.Second)
	rs := redistest.Start(t, "--enable-debug-command", "local")
	e := relStart(t, rs, rs.URL(), nil)
	ctx := context.Background()
	l := e.load(t, relSize(500, 2000), 2*time.Minute)
	l.Phase("baseline")
	start := time.Now()
	run := l.Start(ctx)
	t.Cleanup(func() { run.Stop() })
	relSleepUntil(start, 2*time.Second)
	base := loadtest.Self()
	peak := 0
	sample := func(until time.Time) {
		for time.Now().Before(until) {
			peak = max(peak, loadtest.Self().Goroutines)
			time.Sleep(100 * time.Millisecond) // sampling interval during a fixed fault window
		}
	}
	slow := redis.NewClient(&redis.Options{Addr: rs.Addr, ReadTimeout: -1, DisableIdentity: true})
	defer slow.Close()

	l.Phase("DEBUG SLEEP")
	l.SetStale(true)
	began := time.Now()
	done := make(chan error, 1)
	go func() { done <- slow.Do(ctx, "DEBUG", "SLEEP", strconv.Itoa(sleep)).Err() }()
	sample(began.Add(time.Duration(sleep) * time.Second))
	require.NoError(t, <-done)
	e.waitUp(t, 1, relResyncBound, "in sync after DEBUG SLEEP")
	l.SetStale(false)

	l.Phase("CLIENT PAUSE")
	l.SetStale(true)
	require.NoError(t, slow.Do(ctx, "CLIENT", "PAUSE", strconv.Itoa(int(pause.Milliseconds()))).Err())
	sample(time.Now().Add(pause))
	// Changes after the pause show.
	require.NoError(t, e.w.Register(ctx, "svc-000", "r9new", "10.0.0.9", 9009, nil, 5*time.Minute))
	require.NoError(t, e.w.SetHealth(ctx, "svc-000", "r9new", registry.StatusHealthy, 100*time.Second))
	l.Phase("after")
	e.expectService(t, l.Expect, "svc-000")
	took := e.waitInSync(t, e.fleet.Services, 2*relResyncBound, "after the pause")
	e.waitUp(t, 1, relResyncBound, "in sync after CLIENT PAUSE")
	l.SetStale(false)
	res := run.Stop()
	t.Logf("goroutines %d, peak %d; change after the pause visible in %v", base.Goroutines, peak, took.Round(time.Millisecond))
	relRecord(t, "R9", fmt.Sprintf("DEBUG SLEEP %d s, then CLIENT PAUSE %v, %d qps", sleep, pause, l.Rate), res)
	baseline := res.Phase("baseline")
	for _, ph := range []string{"DEBUG SLEEP", "CLIENT PAUSE"} {
		r := res.Phase(ph)
		require.Zero(t, r.Timeouts, "%s: %v", ph, r)
		require.LessOrEqual(t, r.P99, relP99Limit(baseline.P99), "%s p99 %v, baseline %v", ph, r.P99, baseline.P99)
	}
	require.Zero(t, res.Failed(), "failed answers: %v", res)
	// The view makes one Redis call at a time; the pool and the
	// subscription add a few goroutines, not one per query.
	require.LessOrEqual(t, peak-base.Goroutines, 20, "in-flight Redis calls piled up")
}

// ---------------------------------------------------------------------------
// R10: Redis errors that are not "empty".

func TestReliabilityR10ErrorsAreNotEmpty(t *testing.T) {
	ctx := context.Background()
	// holds asserts that the known services keep their last answers (not
	// NODATA, not NXDOMAIN) while regdns reports the registry down.
	check := func(t *testing.T, e *relEnv, l *loadtest.Load, what string) {
		t.Helper()
		e.waitUp(t, 0, 5*time.Second, what+": registry_up = 0")
		require.Empty(t, e.inSync(e.fleet.Services[1:]), what)
	}

	t.Run("ACL denial on health keys", func(t *testing.T) {
		rs := redistest.Start(t)
		admin := rs.Client(t)
		require.NoError(t, admin.Do(ctx, "ACL", "SETUSER", "regdns", "on", ">secret", "~*", "&*", "+@all").Err())
		url := fmt.Sprintf("redis://regdns:secret@%s/0", rs.Addr)
		e := relStart(t, rs, url, func(c *config.Config) { c.Cache.MaxAge = config.Duration{Duration: time.Second} })
		l := e.load(t, 500, 2*time.Minute)
		l.Names = e.fleet.Names("")[1:]
		run := l.Start(ctx)
		t.Cleanup(func() { run.Stop() })
		// regdns loses read access to health:*; the next full re-read
		// fails with NOPERM.
		require.NoError(t, admin.Do(ctx, "ACL", "SETUSER", "regdns", "resetkeys", "~services:*").Err())
		l.SetStale(true)
		check(t, e, l, "NOPERM")
		// A registration is now unreadable too; answers stay the last view.
		require.NoError(t, e.w.Register(ctx, "svc-000", "r10", "10.0.0.10", 1010, nil, 5*time.Minute))
		require.NoError(t, e.w.SetHealth(ctx, "svc-000", "r10", registry.StatusHealthy, 100*time.Second))
		require.Eventually(t, func() bool { return strings.Contains(e.r.log.String(), "NOPERM") }, 5*time.Second, 20*time.Millisecond)
		require.NoError(t, admin.Do(ctx, "ACL", "SETUSER", "regdns", "~*").Err())
		e.waitUp(t, 1, 5*time.Second, "access back")
		l.SetStale(false)
		e.waitInSync(t, e.fleet.Services, relResyncBound, "after access is back")
		res := run.Stop()
		relRecord(t, "R10", "ACL denial (NOPERM) on health:*, 500 qps", res)
		require.Zero(t, res.Failed(), "failed answers: %v", res)
	})

	t.Run("ACL denial at startup", func(t *testing.T) {
		rs := redistest.Start(t)
		admin := rs.Client(t)
		require.NoError(t, admin.Do(ctx, "ACL", "SETUSER", "regdns", "on", ">secret", "~services:*", "&*", "+@all").Err())
		e := &relEnv{rs: rs, rc: admin, fleet: loadtest.NewFleet(relServices, relPerService)}
		e.w, e.oracle = registry.NewWriter(admin, registry.DefaultKeys()), &loadtest.Oracle{Client: admin}
		require.NoError(t, e.fleet.Register(ctx, e.w))
		e.r = startRegdns(t, fmt.Sprintf("redis://regdns:secret@%s/0", rs.Addr), relConfig(nil))
		l := &loadtest.Load{Addr: e.r.addr, Rate: 200, Duration: 3 * time.Second, Names: e.fleet.Names(""), MaxAnswers: relMaxAnswers}
		res := l.Run(ctx)
		relRecord(t, "R10", "ACL denial at startup (never synced), 200 qps", res)
		require.Equal(t, res.Sent, res.ServFail, "unavailable, so SERVFAIL: never NXDOMAIN or NODATA: %v", res)
		code, _ := e.r.get(t, "/readyz")
		require.Equal(t, http.StatusServiceUnavailable, code)
	})

	t.Run("OOM", func(t *testing.T) {
		// Redis out of memory refuses writes, not reads: regdns, which only
		// reads, stays in sync and keeps answering; the writers get OOM.
		rs := redistest.Start(t)
		e := relStart(t, rs, rs.URL(), func(c *config.Config) { c.Cache.MaxAge = config.Duration{Duration: time.Second} })
		l := e.load(t, 500, 2*time.Minute)
		run := l.Start(ctx)
		t.Cleanup(func() { run.Stop() })
		before := e.resyncs(t)
		require.NoError(t, e.rc.ConfigSet(ctx, "maxmemory", "1").Err())
		// The reference writer's MULTI/EXEC is aborted (EXECABORT after the
		// queued SETEX met OOM); a plain write says OOM.
		require.Error(t, e.w.Register(ctx, "svc-000", "r10oom", "10.0.0.11", 1011, nil, time.Minute))
		require.ErrorContains(t, e.rc.Set(ctx, "services:svc-000:instances:r10oom", "{}", time.Minute).Err(), "OOM")
		loadtest.WaitFor(t, 5*time.Second, 50*time.Millisecond, "resyncs go on", func() bool { return e.resyncs(t) >= before+2 })
		require.Equal(t, float64(1), e.up(t))
		require.NoError(t, e.rc.ConfigSet(ctx, "maxmemory", "0").Err())
		res := run.Stop()
		relRecord(t, "R10", "OOM (maxmemory 1): writes refused, reads served, 500 qps", res)
		require.Zero(t, res.Failed(), "failed answers: %v", res)
	})

	t.Run("LOADING", func(t *testing.T) {
		// A restart that loads a large dataset answers -LOADING for a
		// while: key-load-delay (µs per key) stretches the load of 20,000
		// filler keys to 2-4 s, and a small loading-process-events-interval
		// makes Redis answer (-LOADING) in between instead of not at all.
		rs := redistest.Start(t, "--key-load-delay", "100", "--loading-process-events-interval-bytes", "1024")
		e := relStart(t, rs, rs.URL(), nil)
		p := e.rc.Pipeline()
		for i := range 20000 {
			p.Set(ctx, "filler:"+strconv.Itoa(i), "x", 0)
		}
		_, err := p.Exec(ctx)
		require.NoError(t, err)
		require.NoError(t, e.rc.Save(ctx).Err())
		l := e.load(t, 500, 2*time.Minute)
		l.Phase("before")
		run := l.Start(ctx)
		t.Cleanup(func() { run.Stop() })
		rs.Restart(t) // returns as soon as INFO answers: during the load
		l.Phase("restart")
		l.SetStale(true)
		loading := false
		for range 50 {
			info, err := e.rc.Info(ctx, "persistence").Result()
			if err == nil && strings.Contains(info, "\nloading:1") {
				loading = true
				break
			}
			time.Sleep(20 * time.Millisecond) // poll interval of a bounded condition wait
		}
		require.True(t, loading, "Redis is LOADING after the restart")
		// The oracle cannot read either now: the load checks the answers
		// against the sets from before the restart.
		l.Phase("LOADING")
		err = e.rc.Get(ctx, "services:svc-000").Err()
		require.ErrorContains(t, err, "LOADING")
		e.waitUp(t, 0, 5*time.Second, "LOADING: registry_up = 0")
		loadtest.WaitFor(t, 30*time.Second, 20*time.Millisecond, "loaded", func() bool {
			info, err := e.rc.Info(ctx, "persistence").Result()
			return err == nil && strings.Contains(info, "\nloading:0") // not async_loading
		})
		l.Phase("loaded")
		upAfter := e.waitUp(t, 1, 10*time.Second, "in sync after loading")
		t.Logf("in sync %v after Redis finished loading", upAfter.Round(time.Millisecond))
		require.LessOrEqual(t, upAfter, relResyncBound, "in sync after loading")
		l.SetStale(false)
		e.waitInSync(t, e.fleet.Services, relResyncBound, "after loading")
		res := run.Stop()
		require.Contains(t, e.r.log.String(), "LOADING")
		relRecord(t, "R10", "LOADING after a restart (20,000 keys, key-load-delay), 500 qps", res)
		require.Positive(t, res.Phase("LOADING").Answered, "answers while Redis said LOADING")
		require.Zero(t, res.Failed(), "failed answers: %v", res)
	})
}

// ---------------------------------------------------------------------------
// R20-R22: the binary as deployed.

// relProc is one `regdns serve -config FILE` child process.
type relProc struct {
	cmd     *exec.Cmd
	log     *lockedBuffer
	exited  chan struct{}
	waitErr error
}

// relStartProc runs the regdns binary bin with the config file path until
// the test ends (SIGKILL in cleanup if still running).
func relStartProc(t *testing.T, bin, path string) *relProc {
	t.Helper()
	p := &relProc{log: &lockedBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, "serve", "-config", path)
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	var err error
	for range 5 { // ETXTBSY: a concurrent fork may hold the fresh copy open a moment
		if err = p.cmd.Start(); !errors.Is(err, syscall.ETXTBSY) {
			break
		}
		time.Sleep(20 * time.Millisecond) // retry interval of a transient fork race
		p.cmd = exec.Command(bin, "serve", "-config", path)
		p.cmd.Env, p.cmd.Stdout, p.cmd.Stderr = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, p.log, p.log
	}
	require.NoError(t, err)
	go func() { p.waitErr = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("regdns log:\n%s", p.log)
		}
	})
	return p
}

// relConfigFile writes a config file for the binary.
func relConfigFile(t *testing.T, path, dnsAddr, httpAddr, redisURL string, ttl time.Duration) {
	t.Helper()
	body := fmt.Sprintf(`[dns]
listen = %q
ttl = %q
max_answers = %d

[redis]
url = %q
timeout = "500ms"

[http]
listen = %q

[log]
format = "json"
level = "info"
`, dnsAddr, ttl.String(), relMaxAnswers, redisURL, httpAddr)
	require.NoError(t, os.WriteFile(path, []byte(body), 0o644))
}

// relBinEnv is the binary, its config and a registry.
type relBinEnv struct {
	bin, cfg       string
	dnsAddr, http  string
	e              *relEnv // r.addr is the binary's DNS address
	redisURL       string
	answerTTL      time.Duration
	firstAnswerMax time.Duration
}

func relStartBinEnv(t *testing.T) *relBinEnv {
	t.Helper()
	rs := redistest.Start(t)
	b := &relBinEnv{bin: regdnsBinary(t), cfg: filepath.Join(t.TempDir(), "regdns.toml"), redisURL: rs.URL(), answerTTL: 5 * time.Second}
	b.dnsAddr = fmt.Sprintf("127.0.0.1:%d", relFreeUDPTCPPort(t))
	b.http = fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))
	relConfigFile(t, b.cfg, b.dnsAddr, b.http, rs.URL(), b.answerTTL)
	e := &relEnv{rs: rs, rc: rs.Client(t), fleet: loadtest.NewFleet(relServices, relPerService)}
	e.w, e.oracle = registry.NewWriter(e.rc, registry.DefaultKeys()), &loadtest.Oracle{Client: e.rc}
	require.NoError(t, e.fleet.Register(context.Background(), e.w))
	e.r = &regdnsUnderTest{addr: b.dnsAddr, http: b.http}
	b.e = e
	return b
}

// relFreeUDPTCPPort is a loopback port free for both UDP and TCP a moment
// ago.
func relFreeUDPTCPPort(t *testing.T) int {
	t.Helper()
	for range 20 {
		port := redistest.FreePort(t)
		pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			_ = pc.Close()
			return port
		}
	}
	t.Fatal("no free UDP+TCP port")
	return 0
}

// serving waits until the binary answers every service as the oracle does.
func (b *relBinEnv) serving(t *testing.T, within time.Duration) time.Duration {
	t.Helper()
	return b.e.waitInSync(t, b.e.fleet.Services, within, "binary serving")
}

func TestReliabilityR20SigtermUnderLoad(t *testing.T) {
	qps := relSize(500, 2000)
	b := relStartBinEnv(t)
	p := relStartProc(t, b.bin, b.cfg)
	b.serving(t, 15*time.Second)
	l := b.e.load(t, qps, 2*time.Minute)
	l.Phase("serving")
	start := time.Now()
	run := l.Start(context.Background())
	t.Cleanup(func() { run.Stop() })
	relSleepUntil(start, relSize(3*time.Second, 10*time.Second))

	l.Phase("stopping")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	termAt := time.Now()
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		t.Fatalf("regdns still running 5 s after SIGTERM")
	}
	exitIn := time.Since(termAt)
	require.NoError(t, p.waitErr, "exit status")
	require.Equal(t, 0, p.cmd.ProcessState.ExitCode())
	require.Contains(t, p.log.String(), "regdns stopped")
	l.Phase("stopped")

	// Restart on the same port: serving again within 2 s.
	again := time.Now()
	p2 := relStartProc(t, b.bin, b.cfg)
	_ = p2
	served := b.serving(t, 10*time.Second)
	servedIn := time.Since(again)
	l.Phase("restarted")
	relSleepUntil(time.Now(), time.Second)
	res := run.Stop()
	t.Logf("exit 0 %v after SIGTERM; the new process served %v after its start (first sync %v)", exitIn.Round(time.Millisecond), servedIn.Round(time.Millisecond), served.Round(time.Millisecond))
	relRecord(t, "R20", fmt.Sprintf("SIGTERM under %d qps, restart (exit 0 in %v, serving again in %v)", qps, exitIn.Round(time.Millisecond), servedIn.Round(time.Millisecond)), res)
	require.Zero(t, res.Phase("serving").Failed(), "queries before SIGTERM: %v", res.Phase("serving"))
	stopping := res.Phase("stopping")
	// In flight: every query sent between SIGTERM and the exit was
	// answered, or refused by a closed port; none silently dropped.
	require.Equal(t, stopping.Refused, stopping.Timeouts, "queries dropped during shutdown: %v", stopping)
	require.Zero(t, stopping.ServFail+stopping.NXDomain+stopping.Wrong+stopping.OtherRcode, "%v", stopping)
	require.Zero(t, res.Phase("restarted").Failed(), "after the restart: %v", res.Phase("restarted"))
	require.LessOrEqual(t, servedIn, 2*time.Second, "serving again %v after the restart", servedIn)
}

func TestReliabilityR21SighupBrokenConfig(t *testing.T) {
	b := relStartBinEnv(t)
	p := relStartProc(t, b.bin, b.cfg)
	b.serving(t, 15*time.Second)
	// 5 s of load: the reloads at 1 s, 2 s and 3 s.
	l := b.e.load(t, 500, 5*time.Second)
	start := time.Now()
	run := l.Start(context.Background())
	t.Cleanup(func() { run.Stop() })
	ttl := func() uint32 {
		m := b.e.r.query(t, "udp", "svc-000.service.local.", dns.TypeA, 0)
		require.NotEmpty(t, m.Answer)
		return m.Answer[0].Header().Ttl
	}
	require.Equal(t, uint32(b.answerTTL.Seconds()), ttl())
	countLog := func(msg string) int {
		n := 0
		for line := range strings.SplitSeq(p.log.String(), "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && rec["message"] == msg {
				n++
			}
		}
		return n
	}

	// A broken file: not TOML at all, plus an invalid value.
	relSleepUntil(start, time.Second)
	require.NoError(t, os.WriteFile(b.cfg, []byte("[dns\nttl = \"soon\"\n"), 0o644))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	loadtest.WaitFor(t, 5*time.Second, 10*time.Millisecond, "reload rejected", func() bool {
		return countLog("config reload rejected: keeping the running configuration") > 0
	})
	// Valid TOML, invalid value.
	relSleepUntil(start, 2*time.Second)
	require.NoError(t, os.WriteFile(b.cfg, []byte("[dns]\nttl = \"0s\"\n"), 0o644))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	loadtest.WaitFor(t, 5*time.Second, 10*time.Millisecond, "second reload rejected", func() bool {
		return countLog("config reload rejected: keeping the running configuration") > 1
	})
	require.Equal(t, uint32(b.answerTTL.Seconds()), ttl(), "old config kept")
	mid := l.Progress()

	// A valid file takes: the new TTL is served.
	relSleepUntil(start, 3*time.Second)
	relConfigFile(t, b.cfg, b.dnsAddr, b.http, b.redisURL, 7*time.Second)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	loadtest.WaitFor(t, 5*time.Second, 10*time.Millisecond, "reloaded", func() bool { return countLog("config reloaded") > 0 })
	require.Equal(t, uint32(7), ttl())
	res := run.Wait()
	errLines := 0
	for line := range strings.SplitSeq(p.log.String(), "\n") {
		if strings.Contains(line, `"level":"error"`) {
			errLines++
		}
	}
	relRecord(t, "R21", "SIGHUP with a broken config (x2), then a valid one, 500 qps", res)
	require.Equal(t, 2, countLog("config reload rejected: keeping the running configuration"), "one line per rejected reload")
	require.Equal(t, 2, errLines, "error log lines: one per rejected reload")
	require.Zero(t, mid.Failed(), "dropped queries around the broken reloads: %v", mid)
	require.Zero(t, res.Failed(), "failed answers: %v", res)
	select {
	case <-p.exited:
		t.Fatal("regdns exited")
	default:
	}
}

// R22: soak, on demand (REGDNS_SOAK=1; REGDNS_SOAK_DURATION overrides 1h).
func TestReliabilityR22Soak(t *testing.T) {
	if os.Getenv("REGDNS_SOAK") != "1" {
		t.Skip("R22 soak runs on demand: REGDNS_SOAK=1 (1 h at 1,000 qps with 10 changes/s; REGDNS_SOAK_DURATION=10m to shorten)")
	}
	d := time.Hour
	if v := os.Getenv("REGDNS_SOAK_DURATION"); v != "" {
		var err error
		d, err = time.ParseDuration(v)
		require.NoError(t, err)
	}
	b := relStartBinEnv(t)
	p := relStartProc(t, b.bin, b.cfg)
	b.serving(t, 15*time.Second)
	l := b.e.load(t, 1000, d)
	l.Names = b.e.fleet.Names("")[1:] // svc-000 churns
	run := l.Start(context.Background())
	t.Cleanup(func() { run.Stop() })
	stop := make(chan struct{})
	churned := b.e.churn(t, "svc-000", 10, stop)
	// The writers' heartbeats and health checks, every minute (the keys
	// live 5 min): the fleet stays registered however long the soak.
	renewed := make(chan error, 1)
	go func() {
		tick := time.NewTicker(time.Minute)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				renewed <- nil
				return
			case <-tick.C:
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				err := b.e.fleet.Renew(ctx, b.e.w)
				cancel()
				if err != nil {
					renewed <- err
					return
				}
			}
		}
	}()

	// RSS and goroutines of the process: after a warm-up, then every minute.
	pid := p.cmd.Process.Pid
	goroutines := func() int {
		resp, err := http.Get("http://" + b.http + "/metrics")
		if err != nil {
			return -1
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
				n, _ := strconv.ParseFloat(v, 64)
				return int(n)
			}
		}
		return -1
	}
	// RSS and goroutines are sampled every 10 s after a warm-up (packed
	// answers, buffers and the heap reach their size first). RSS moves by
	// a few MiB with every GC cycle, so drift compares the median of the
	// first quarter of the samples with the median of the last quarter.
	warm := min(d/5, 5*time.Minute)
	relSleepUntil(time.Now(), warm)
	type sample struct {
		rss int64
		g   int
	}
	var samples []sample
	tick := time.NewTicker(min(10*time.Second, d/60))
	logEvery := max(1, int(min(time.Minute, d/10)/min(10*time.Second, d/60)))
	end := time.NewTimer(d - warm)
	for done := false; !done; {
		select {
		case <-tick.C:
			rss, err := loadtest.RSS(pid)
			require.NoError(t, err)
			samples = append(samples, sample{rss, goroutines()})
			if len(samples)%logEvery == 0 {
				t.Logf("soak: RSS %d MiB, goroutines %d, %v", rss>>20, samples[len(samples)-1].g, l.Progress())
			}
		case <-end.C:
			done = true
		}
	}
	tick.Stop()
	res := run.Wait()
	close(stop)
	<-churned
	require.NoError(t, <-renewed, "heartbeats")
	b.e.waitInSync(t, b.e.fleet.Services, 10*time.Second, "view at the end of the soak")
	require.GreaterOrEqual(t, len(samples), 4)
	median := func(ss []sample) sample {
		rss, g := make([]int64, len(ss)), make([]int, len(ss))
		for i, s := range ss {
			rss[i], g[i] = s.rss, s.g
		}
		slices.Sort(rss)
		slices.Sort(g)
		return sample{rss[len(ss)/2], g[len(ss)/2]}
	}
	q := len(samples) / 4
	first, last := median(samples[:q]), median(samples[len(samples)-q:])
	t.Logf("soak %v: %d samples; median RSS %d -> %d MiB, goroutines %d -> %d", d, len(samples), first.rss>>20, last.rss>>20, first.g, last.g)
	relRecord(t, "R22", fmt.Sprintf("soak %v at 1,000 qps with 10 changes/s, RSS %d -> %d MiB, goroutines %d -> %d (binary)",
		d, first.rss>>20, last.rss>>20, first.g, last.g), res)
	require.Zero(t, res.ServFail, "SERVFAIL: %v", res)
	require.Zero(t, res.Failed(), "failed answers: %v", res)
	require.LessOrEqual(t, float64(last.rss), float64(first.rss)*1.05, "RSS drift")
	require.LessOrEqual(t, last.g, first.g+5, "goroutines flat")
}
