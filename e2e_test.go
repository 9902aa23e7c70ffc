package main

// End-to-end tests: a real redis-server started by the test, the real
// regdns server (serve, as `regdns serve` runs it) on a loopback port, the
// registry written the reference way, and queries over real UDP and TCP.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/regdns/regdns/internal/config"
	"github.com/regdns/regdns/internal/redistest"
	"github.com/regdns/regdns/registry"
)

// lockedBuffer collects a server's log for printing when a test fails.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// regdnsUnderTest is one running serve().
type regdnsUnderTest struct {
	addr string
	// http is the admin HTTP server's address ("" when off).
	http string
	log  *lockedBuffer
}

// startRegdns runs serve() against redisURL on a free loopback port until the
// test ends.
func startRegdns(t *testing.T, redisURL string, mutate func(*config.Config)) *regdnsUnderTest {
	t.Helper()
	cfg := config.Default()
	cfg.DNS.Listen = "127.0.0.1:0"
	cfg.Redis.URL = redisURL
	cfg.Log.Level = "debug"
	cfg.HTTP.Listen = "127.0.0.1:0"
	if mutate != nil {
		mutate(&cfg)
	}
	require.NoError(t, cfg.Validate())
	r := &regdnsUnderTest{log: &lockedBuffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan [2]string, 1)
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, cfg, r.log, func(dnsAddr, httpAddr string) { started <- [2]string{dnsAddr, httpAddr} })
	}()
	select {
	case addrs := <-started:
		r.addr, r.http = addrs[0], addrs[1]
	case err := <-done:
		cancel()
		t.Fatalf("serve exited before serving: %v\n%s", err, r.log)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatalf("serve did not start\n%s", r.log)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("serve did not stop within 10s")
		}
		if t.Failed() {
			t.Logf("regdns log:\n%s", r.log)
		}
	})
	return r
}

// query sends one question over network ("udp" or "tcp").
func (r *regdnsUnderTest) query(t *testing.T, network, name string, qtype uint16, edns uint16) *dns.Msg {
	t.Helper()
	m, err := r.exchange(network, name, qtype, edns)
	require.NoError(t, err, "query %s %s over %s", dns.TypeToString[qtype], name, network)
	return m
}

func (r *regdnsUnderTest) exchange(network, name string, qtype uint16, edns uint16) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	if edns > 0 {
		q.SetEdns0(edns, false)
	}
	c := &dns.Client{Net: network, Timeout: 2 * time.Second, UDPSize: 65535}
	m, _, err := c.Exchange(q, r.addr)
	return m, err
}

// waitFor polls name until ok holds and returns how long that took.
func (r *regdnsUnderTest) waitFor(t *testing.T, name string, qtype uint16, within time.Duration, ok func(*dns.Msg) bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(within)
	var last *dns.Msg
	for time.Now().Before(deadline) {
		m, err := r.exchange("udp", name, qtype, 4096)
		if err == nil && ok(m) {
			return time.Since(start)
		}
		last = m
		time.Sleep(time.Millisecond) // polling interval of a condition wait, not a fixed delay
	}
	t.Fatalf("%s %s: condition not met within %v; last answer:\n%v", dns.TypeToString[qtype], name, within, last)
	return 0
}

// targets returns the SRV targets of m, sorted.
func targets(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		if srv, ok := rr.(*dns.SRV); ok {
			out = append(out, srv.Target)
		}
	}
	slices.Sort(out)
	return out
}

func hasTarget(id, svc string) func(*dns.Msg) bool {
	want := id + "." + svc + ".service.local."
	return func(m *dns.Msg) bool { return slices.Contains(targets(m), strings.ToLower(want)) }
}

func not(f func(*dns.Msg) bool) func(*dns.Msg) bool { return func(m *dns.Msg) bool { return !f(m) } }

// Freshness bounds from the core issue's "Done when".
const (
	changeBound = 100 * time.Millisecond // registration, deregistration, health flip
	expiryBound = 500 * time.Millisecond // after the key's TTL ran out
)

func TestE2ERegistrationDeregistrationAndHealthFlips(t *testing.T) {
	rs := redistest.Start(t)
	w := registry.NewWriter(rs.Client(t), registry.DefaultKeys())
	ctx := context.Background()
	require.NoError(t, w.Register(ctx, "user-service", "a1", "10.0.0.1", 8080, nil, 30*time.Second))
	require.NoError(t, w.SetHealth(ctx, "user-service", "a1", registry.StatusHealthy, 10*time.Second))
	r := startRegdns(t, rs.URL(), nil) // health.mode = healthy
	r.waitFor(t, "user-service.service.local.", dns.TypeSRV, 5*time.Second, hasTarget("a1", "user-service"))

	// A registration shows once its health key says healthy.
	require.NoError(t, w.Register(ctx, "user-service", "b2", "10.0.0.2", 8081, map[string]any{"weight": 7}, 30*time.Second))
	require.NoError(t, w.SetHealth(ctx, "user-service", "b2", registry.StatusHealthy, 10*time.Second))
	took := r.waitFor(t, "user-service.service.local.", dns.TypeSRV, 2*time.Second, hasTarget("b2", "user-service"))
	require.LessOrEqual(t, took, changeBound, "registration visible after %v", took)
	t.Logf("registration visible after %v", took)

	m := r.query(t, "udp", "user-service.service.local.", dns.TypeSRV, 0)
	require.True(t, m.Authoritative)
	require.Len(t, m.Answer, 2)
	for _, rr := range m.Answer {
		srv := rr.(*dns.SRV)
		switch srv.Target {
		case "b2.user-service.service.local.":
			require.Equal(t, []uint16{1, 7, 8081}, []uint16{srv.Priority, srv.Weight, srv.Port})
		case "a1.user-service.service.local.":
			require.Equal(t, []uint16{1, 1, 8080}, []uint16{srv.Priority, srv.Weight, srv.Port})
		}
	}
	require.Len(t, m.Extra, 2, "glue A records for both targets")

	// Health flips both ways.
	require.NoError(t, w.SetHealth(ctx, "user-service", "b2", registry.StatusUnhealthy, 10*time.Second))
	took = r.waitFor(t, "user-service.service.local.", dns.TypeSRV, 2*time.Second, not(hasTarget("b2", "user-service")))
	require.LessOrEqual(t, took, changeBound, "unhealthy flip visible after %v", took)
	t.Logf("unhealthy flip visible after %v", took)
	require.NoError(t, w.SetHealth(ctx, "user-service", "b2", registry.StatusHealthy, 10*time.Second))
	took = r.waitFor(t, "user-service.service.local.", dns.TypeSRV, 2*time.Second, hasTarget("b2", "user-service"))
	require.LessOrEqual(t, took, changeBound, "healthy flip visible after %v", took)
	t.Logf("healthy flip visible after %v", took)

	// A health key that disappears means unknown: not served in healthy mode.
	require.NoError(t, rs.Client(t).Del(ctx, "health:user-service:b2").Err())
	r.waitFor(t, "user-service.service.local.", dns.TypeSRV, 2*time.Second, not(hasTarget("b2", "user-service")))
	require.NoError(t, w.SetHealth(ctx, "user-service", "b2", registry.StatusHealthy, 10*time.Second))

	// Deregistration.
	r.waitFor(t, "user-service.service.local.", dns.TypeSRV, 2*time.Second, hasTarget("b2", "user-service"))
	require.NoError(t, w.Deregister(ctx, "user-service", "b2"))
	took = r.waitFor(t, "user-service.service.local.", dns.TypeSRV, 2*time.Second, not(hasTarget("b2", "user-service")))
	require.LessOrEqual(t, took, changeBound, "deregistration visible after %v", took)
	t.Logf("deregistration visible after %v", took)

	// The last instance leaves: the set is gone, so is the name.
	require.NoError(t, w.Deregister(ctx, "user-service", "a1"))
	r.waitFor(t, "user-service.service.local.", dns.TypeSRV, 2*time.Second, func(m *dns.Msg) bool {
		return m.Rcode == dns.RcodeNameError
	})
}

func TestE2EExpiredHeartbeatLeavesWithinBound(t *testing.T) {
	rs := redistest.Start(t)
	client := rs.Client(t)
	w := registry.NewWriter(client, registry.DefaultKeys())
	ctx := context.Background()
	r := startRegdns(t, rs.URL(), func(c *config.Config) { c.Health.Mode = "healthy_or_unknown" })
	require.NoError(t, w.Register(ctx, "orders", "keep", "10.0.1.1", 80, nil, 30*time.Second))
	require.NoError(t, w.Register(ctx, "orders", "dies", "10.0.1.2", 80, nil, 2*time.Second))
	written := time.Now()
	r.waitFor(t, "orders.service.local.", dns.TypeSRV, 2*time.Second, hasTarget("dies", "orders"))
	// The writer stops heartbeating; the key's TTL runs out 2s after it was
	// written (PTTL tells exactly when, read from Redis).
	r.waitFor(t, "orders.service.local.", dns.TypeSRV, 5*time.Second, not(hasTarget("dies", "orders")))
	lag := time.Since(written) - 2*time.Second
	require.LessOrEqual(t, lag, expiryBound+changeBound, "expired instance left the answers %v after its TTL ran out", lag)
	t.Logf("expired instance left the answers %v after its TTL ran out", lag)
	require.True(t, hasTarget("keep", "orders")(r.query(t, "udp", "orders.service.local.", dns.TypeSRV, 0)))
	// Redis still lists the id in the set: the reader never writes.
	require.True(t, client.SIsMember(ctx, "services:orders", "dies").Val())
}

// commandCounts returns Redis's per-command call counters (INFO commandstats).
func commandCounts(t *testing.T, c *redis.Client) map[string]int {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	require.NoError(t, err)
	out := map[string]int{}
	for line := range strings.SplitSeq(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok {
			continue
		}
		n, _ := strconv.Atoi(strings.SplitN(rest, ",", 2)[0])
		out[strings.TrimPrefix(name, "cmdstat_")] = n
	}
	return out
}

func TestE2ESteadyStateIssuesNoRedisCommandsPerQueryOrHeartbeat(t *testing.T) {
	rs := redistest.Start(t)
	client := rs.Client(t)
	w := registry.NewWriter(client, registry.DefaultKeys())
	ctx := context.Background()
	for i := range 3 {
		id := fmt.Sprintf("i%d", i)
		require.NoError(t, w.Register(ctx, "cart", id, fmt.Sprintf("10.0.2.%d", i+1), 80, nil, 3*time.Second))
		require.NoError(t, w.SetHealth(ctx, "cart", id, registry.StatusHealthy, 10*time.Second))
	}
	r := startRegdns(t, rs.URL(), nil)
	r.waitFor(t, "cart.service.local.", dns.TypeSRV, 5*time.Second, func(m *dns.Msg) bool { return len(m.Answer) == 3 })

	// Reads are GET, PTTL, SMEMBERS and SCAN; writers use SETEX. Heartbeats
	// here are bare SETEX rewrites (as the reference heartbeat's write is).
	reads := func() int {
		c := commandCounts(t, client)
		return c["get"] + c["pttl"] + c["smembers"] + c["scan"]
	}
	before := reads()
	doc, err := client.Get(ctx, "services:cart:instances:i0").Result() // one read of ours, counted below
	require.NoError(t, err)
	deadline := time.Now().Add(4 * time.Second) // longer than the 3s TTL: heartbeats must keep it alive
	queries := 0
	for time.Now().Before(deadline) {
		for i := range 3 {
			require.NoError(t, client.SetEx(ctx, fmt.Sprintf("services:cart:instances:i%d", i), doc, 3*time.Second).Err())
		}
		for range 100 {
			m := r.query(t, "udp", "cart.service.local.", dns.TypeSRV, 0)
			require.Len(t, m.Answer, 3, "every heartbeating instance stays served")
			queries++
		}
	}
	require.Equal(t, before+1, reads(), "Redis reads during %d queries and heartbeats (only the test's own GET)", queries)
}

func TestE2ERoundRobinWeightsAndTruncation(t *testing.T) {
	rs := redistest.Start(t)
	w := registry.NewWriter(rs.Client(t), registry.DefaultKeys())
	ctx := context.Background()
	for i := range 60 {
		require.NoError(t, w.Register(ctx, "big", fmt.Sprintf("n%02d", i), fmt.Sprintf("10.1.0.%d", i+1), 9000+i, nil, 30*time.Second))
	}
	for i := range 3 {
		require.NoError(t, w.Register(ctx, "rr", fmt.Sprintf("r%d", i), fmt.Sprintf("10.2.0.%d", i+1), 80, map[string]any{"weight": "3"}, 30*time.Second))
	}
	r := startRegdns(t, rs.URL(), func(c *config.Config) { c.Health.Mode = "any" })
	r.waitFor(t, "big.service.local.", dns.TypeSRV, 5*time.Second, func(m *dns.Msg) bool { return len(m.Answer) == 60 || m.Truncated })
	r.waitFor(t, "rr.service.local.", dns.TypeA, 5*time.Second, func(m *dns.Msg) bool { return len(m.Answer) == 3 })

	// Round robin: each response rotates the list by one.
	var firsts []string
	for range 3 {
		m := r.query(t, "udp", "rr.service.local.", dns.TypeA, 0)
		firsts = append(firsts, m.Answer[0].(*dns.A).A.String())
	}
	slices.Sort(firsts)
	require.Equal(t, []string{"10.2.0.1", "10.2.0.2", "10.2.0.3"}, firsts)
	m := r.query(t, "udp", "rr.service.local.", dns.TypeSRV, 0)
	require.Equal(t, uint16(3), m.Answer[0].(*dns.SRV).Weight, `metadata "weight": "3" read as 3`)

	// 60 SRV records do not fit 512 octets: TC set, then TCP answers in full.
	udp := r.query(t, "udp", "big.service.local.", dns.TypeSRV, 0)
	require.True(t, udp.Truncated)
	udp.Compress = true // as sent: names compressed
	packed, err := udp.Pack()
	require.NoError(t, err)
	require.LessOrEqual(t, len(packed), 512)
	edns := r.query(t, "udp", "big.service.local.", dns.TypeSRV, 4096)
	require.True(t, edns.Truncated, "60 SRV + glue exceed the 1232 cap too")
	edns.Compress = true
	packed, err = edns.Pack()
	require.NoError(t, err)
	require.LessOrEqual(t, len(packed), 1232)
	require.NotNil(t, edns.IsEdns0(), "OPT in the reply to an EDNS query")
	tcp := r.query(t, "tcp", "big.service.local.", dns.TypeSRV, 0)
	require.False(t, tcp.Truncated)
	require.Len(t, tcp.Answer, 60)
}

func TestE2ERcodes(t *testing.T) {
	rs := redistest.Start(t)
	w := registry.NewWriter(rs.Client(t), registry.DefaultKeys())
	require.NoError(t, w.Register(context.Background(), "web", "w1", "10.3.0.1", 80, nil, 30*time.Second))
	r := startRegdns(t, rs.URL(), func(c *config.Config) { c.Health.Mode = "healthy_or_unknown" })
	r.waitFor(t, "web.service.local.", dns.TypeA, 5*time.Second, func(m *dns.Msg) bool { return len(m.Answer) == 1 })
	waitSynced(t, r, "service.local.") // NXDOMAIN needs the whole registry read
	for _, tc := range []struct {
		network, name string
		qtype         uint16
		rcode         int
		aa, soa       bool
		answers       int
	}{
		{"udp", "web.service.local.", dns.TypeA, dns.RcodeSuccess, true, false, 1},
		{"tcp", "WeB.Service.Local.", dns.TypeA, dns.RcodeSuccess, true, false, 1},
		{"udp", "web.service.local.", dns.TypeAAAA, dns.RcodeSuccess, true, true, 0}, // NODATA
		{"udp", "web.service.local.", dns.TypeTXT, dns.RcodeSuccess, true, true, 0},  // NODATA
		{"udp", "nope.service.local.", dns.TypeA, dns.RcodeNameError, true, true, 0}, // NXDOMAIN
		{"tcp", "x.w1.web.service.local.", dns.TypeA, dns.RcodeNameError, true, true, 0},
		{"udp", "w1.web.service.local.", dns.TypeA, dns.RcodeSuccess, true, false, 1},
		{"udp", "service.local.", dns.TypeSOA, dns.RcodeSuccess, true, false, 1},
		{"udp", "service.local.", dns.TypeNS, dns.RcodeSuccess, true, false, 1},
		{"udp", "example.com.", dns.TypeA, dns.RcodeRefused, false, false, 0},
	} {
		t.Run(tc.network+" "+dns.TypeToString[tc.qtype]+" "+tc.name, func(t *testing.T) {
			m := r.query(t, tc.network, tc.name, tc.qtype, 0)
			require.Equal(t, dns.RcodeToString[tc.rcode], dns.RcodeToString[m.Rcode])
			require.Equal(t, tc.aa, m.Authoritative)
			require.Len(t, m.Answer, tc.answers)
			require.Equal(t, tc.name, m.Question[0].Name, "question echoed with its case")
			if tc.soa {
				require.Len(t, m.Ns, 1)
				soa := m.Ns[0].(*dns.SOA)
				require.Equal(t, uint32(5), soa.Minttl, "negative TTL")
			}
		})
	}
}

func TestE2ERedisRestartServesStaleThenFollowsTheNewRegistry(t *testing.T) {
	rs := redistest.Start(t)
	ctx := context.Background()
	w := registry.NewWriter(rs.Client(t), registry.DefaultKeys())
	require.NoError(t, w.Register(ctx, "api", "old", "10.4.0.1", 80, nil, 30*time.Second))
	require.NoError(t, w.SetHealth(ctx, "api", "old", registry.StatusHealthy, 10*time.Second))
	r := startRegdns(t, rs.URL(), func(c *config.Config) { c.Redis.Timeout = config.Duration{Duration: 300 * time.Millisecond} })
	r.waitFor(t, "api.service.local.", dns.TypeSRV, 5*time.Second, hasTarget("old", "api"))

	rs.Kill(t)
	// Known names keep answering from the last view; unknown names are
	// SERVFAIL once the view knows it is out of sync, never NXDOMAIN.
	r.waitFor(t, "never-seen.service.local.", dns.TypeA, 10*time.Second, func(m *dns.Msg) bool {
		return m.Rcode == dns.RcodeServerFailure
	})
	for range 20 {
		require.True(t, hasTarget("old", "api")(r.query(t, "udp", "api.service.local.", dns.TypeSRV, 0)))
	}

	rs.Restart(t) // empty: the data is lost
	w = registry.NewWriter(rs.Client(t), registry.DefaultKeys())
	// Back in sync with the new, empty Redis (a service registered now
	// shows up), the lost service is held: its last view keeps answering
	// rather than NXDOMAIN, until its writers register it again.
	require.NoError(t, w.Register(ctx, "probe", "p", "10.4.0.9", 80, nil, 30*time.Second))
	r.waitFor(t, "probe.service.local.", dns.TypeA, 10*time.Second, func(m *dns.Msg) bool { return m.Rcode == dns.RcodeSuccess }) // NODATA: exists, no health key
	r.waitFor(t, "never-seen.service.local.", dns.TypeA, 10*time.Second, func(m *dns.Msg) bool { return m.Rcode == dns.RcodeNameError })
	require.True(t, hasTarget("old", "api")(r.query(t, "udp", "api.service.local.", dns.TypeSRV, 0)), "held after the data loss")
	// The writer re-registers (as the reference client does when its
	// heartbeat finds the key gone): the new instance replaces the held
	// one, and keyspace notifications were turned on again (health flips
	// work).
	require.NoError(t, w.Register(ctx, "api", "new", "10.4.0.2", 80, nil, 30*time.Second))
	require.NoError(t, w.SetHealth(ctx, "api", "new", registry.StatusHealthy, 10*time.Second))
	took := r.waitFor(t, "api.service.local.", dns.TypeSRV, 2*time.Second, hasTarget("new", "api"))
	require.False(t, hasTarget("old", "api")(r.query(t, "udp", "api.service.local.", dns.TypeSRV, 0)), "the held instance is dropped")
	require.LessOrEqual(t, took, changeBound, "registration after restart visible after %v", took)
	t.Logf("registration after restart visible after %v", took)
	require.NoError(t, w.SetHealth(ctx, "api", "new", registry.StatusUnhealthy, 10*time.Second))
	took = r.waitFor(t, "api.service.local.", dns.TypeSRV, 2*time.Second, not(hasTarget("new", "api")))
	require.LessOrEqual(t, took, changeBound, "health flip after restart visible after %v", took)
	t.Logf("health flip after restart visible after %v", took)
}

func TestE2EReferencePythonWriters(t *testing.T) {
	rs := redistest.Start(t)
	ref := redistest.Reference{URL: rs.URL()}
	r := startRegdns(t, rs.URL(), nil)
	id := ref.Register(t, "user-service", "127.0.0.5", 8080, map[string]any{"version": "1.0.0", "region": "us-east-1", "weight": 3}, 30)
	ref.SetHealth(t, "user-service", id, "healthy", 10)
	r.waitFor(t, "user-service.service.local.", dns.TypeSRV, 2*time.Second, hasTarget(id, "user-service"))
	m := r.query(t, "tcp", id+".user-service.service.local.", dns.TypeA, 0)
	require.Len(t, m.Answer, 1)
	require.Equal(t, "127.0.0.5", m.Answer[0].(*dns.A).A.String())
	require.True(t, ref.Heartbeat(t, "user-service", id))
	ref.SetHealth(t, "user-service", id, "unhealthy", 10)
	r.waitFor(t, "user-service.service.local.", dns.TypeSRV, 2*time.Second, not(hasTarget(id, "user-service")))
	ref.SetHealth(t, "user-service", id, "healthy", 10)
	r.waitFor(t, "user-service.service.local.", dns.TypeSRV, 2*time.Second, hasTarget(id, "user-service"))
	ref.Deregister(t, "user-service", id)
	r.waitFor(t, "user-service.service.local.", dns.TypeSRV, 2*time.Second, not(hasTarget(id, "user-service")))
}

func TestE2EHostNameInstance(t *testing.T) {
	rs := redistest.Start(t)
	w := registry.NewWriter(rs.Client(t), registry.DefaultKeys())
	ctx := context.Background()
	require.NoError(t, w.Register(ctx, "docs", "d1", "docs.example.org", 443, nil, 30*time.Second))
	require.NoError(t, w.Register(ctx, "docs", "d2", "2001:db8::2", 443, nil, 30*time.Second))
	r := startRegdns(t, rs.URL(), func(c *config.Config) { c.Health.Mode = "healthy_or_unknown" })
	r.waitFor(t, "docs.service.local.", dns.TypeSRV, 5*time.Second, func(m *dns.Msg) bool { return len(m.Answer) == 2 })
	require.Equal(t, []string{"d2.docs.service.local.", "docs.example.org."}, targets(r.query(t, "udp", "docs.service.local.", dns.TypeSRV, 0)))
	require.Empty(t, r.query(t, "udp", "docs.service.local.", dns.TypeA, 0).Answer, "a host name is not an A record")
	aaaa := r.query(t, "udp", "docs.service.local.", dns.TypeAAAA, 0)
	require.Len(t, aaaa.Answer, 1)
	cname := r.query(t, "udp", "d1.docs.service.local.", dns.TypeA, 0)
	require.Len(t, cname.Answer, 1)
	require.Equal(t, "docs.example.org.", cname.Answer[0].(*dns.CNAME).Target)
}

func TestE2EKeyspaceNotificationsRefusedFallsBackToPolling(t *testing.T) {
	// CONFIG renamed away: regdns cannot turn notifications on.
	rs := redistest.Start(t, "--rename-command", "CONFIG", "")
	w := registry.NewWriter(rs.Client(t), registry.DefaultKeys())
	ctx := context.Background()
	require.NoError(t, w.Register(ctx, "poll", "p1", "10.5.0.1", 80, nil, 30*time.Second))
	require.NoError(t, w.SetHealth(ctx, "poll", "p1", registry.StatusHealthy, 10*time.Second))
	r := startRegdns(t, rs.URL(), func(c *config.Config) { c.Cache.PollInterval = config.Duration{Duration: 200 * time.Millisecond} })
	r.waitFor(t, "poll.service.local.", dns.TypeSRV, 5*time.Second, hasTarget("p1", "poll"))
	require.Contains(t, r.log.String(), "cannot enable Redis keyspace notifications")
	// A health flip has no event of its own: polling finds it.
	require.NoError(t, w.SetHealth(ctx, "poll", "p1", registry.StatusUnhealthy, 10*time.Second))
	r.waitFor(t, "poll.service.local.", dns.TypeSRV, 3*time.Second, not(hasTarget("p1", "poll")))
	require.Equal(t, 1, strings.Count(r.log.String(), "cannot enable Redis keyspace notifications"), "one warning, not one per poll")
}

func TestE2EMalformedEntriesAreSkipped(t *testing.T) {
	rs := redistest.Start(t)
	client := rs.Client(t)
	w := registry.NewWriter(client, registry.DefaultKeys())
	ctx := context.Background()
	require.NoError(t, w.Register(ctx, "mixed", "good", "10.6.0.1", 80, nil, 30*time.Second))
	for id, doc := range map[string]string{
		"badjson": `{"host": "10.6.0.2", "port":`,
		"port0":   `{"host": "10.6.0.3", "port": 0, "metadata": {}}`,
		"badhost": `{"host": "not a host!", "port": 80, "metadata": {}}`,
	} {
		require.NoError(t, client.SetEx(ctx, "services:mixed:instances:"+id, doc, 30*time.Second).Err())
		require.NoError(t, client.SAdd(ctx, "services:mixed", id).Err())
	}
	require.NoError(t, client.HSet(ctx, "services:mixed:instances:hash", "host", "x").Err())
	require.NoError(t, client.SAdd(ctx, "services:mixed", "hash", "Not A Label").Err())
	require.NoError(t, client.SAdd(ctx, "services:bad name", "x").Err())
	r := startRegdns(t, rs.URL(), func(c *config.Config) { c.Health.Mode = "any" })
	r.waitFor(t, "mixed.service.local.", dns.TypeSRV, 5*time.Second, func(m *dns.Msg) bool { return len(m.Answer) > 0 })
	require.Equal(t, []string{"good.mixed.service.local."}, targets(r.query(t, "udp", "mixed.service.local.", dns.TypeSRV, 0)))
	require.Eventually(t, func() bool { return strings.Contains(r.log.String(), "not a valid DNS label") }, 5*time.Second, 5*time.Millisecond)
}

func TestRunRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := dir + "/bad.toml"
	require.NoError(t, writeFile(bad, "[dns]\nlisten = 5\n"))
	typo := dir + "/typo.toml"
	require.NoError(t, writeFile(typo, "[dns]\nlisen = \"127.0.0.1:1\"\n"))
	busy, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"bad config file", []string{"serve", "-config", bad}, "parse config"},
		{"unknown key", []string{"serve", "-config", typo}, "unknown keys: dns.lisen"},
		{"missing config file", []string{"serve", "-config", dir + "/none.toml"}, "read config"},
		{"unparsable redis url", []string{"serve", "-redis", "http://x"}, "redis.url"},
		{"bad health mode", []string{"serve", "-health-mode", "sometimes"}, "health.mode"},
		{"bad strategy", []string{"serve", "-strategy", "fastest"}, "balance.strategy"},
		{"port in use", []string{"serve", "-listen", busy.LocalAddr().String(), "-redis", "redis://127.0.0.1:1/0"}, "address already in use"},
		{"unknown command", []string{"frobnicate"}, "unknown command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut lockedBuffer
			code := run(context.Background(), tc.args, func(string) string { return "" }, &out, &errOut)
			require.NotZero(t, code)
			require.Contains(t, errOut.String(), tc.want)
		})
	}
}

func writeFile(path, content string) error {
	return os.WriteFile(path, []byte(content), 0o600)
}
