package main

// Topology tests (R11 in ../shared/RELIABILITY-TESTS.md): the real regdns
// against a real Redis Cluster and a real Sentinel deployment, started from
// redis-server processes on loopback ports by internal/redistest, under a
// light query load from a DNS client goroutine that counts every answer that
// is not exactly the expected one. Plus: two regdns replicas against one
// registry answer identically.

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
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

const (
	// topoQPS is the light query load kept up through every topology change.
	topoQPS = 200
	// topoChangeBound is how soon a change must show while the topology is
	// stable. The periodic full re-read is set to topoNoReread, so anything
	// seen within this bound came from pub/sub or keyspace notifications.
	topoChangeBound = 3 * time.Second
	// topoNoReread is cache.max_age in these tests: long enough that no
	// periodic full re-read happens during a test.
	topoNoReread = 10 * time.Minute
	// topoFailoverBound is R11's bound: changes made after a failover are
	// visible at most this long after the new master is reachable.
	topoFailoverBound = 5 * time.Second
	// topoWriteTimeout bounds retrying one registry write while the client
	// finds the new topology.
	topoWriteTimeout = 10 * time.Second
)

// topoQuestion is one question of the load mix.
type topoQuestion struct {
	name  string
	qtype uint16
}

func (q topoQuestion) String() string { return dns.TypeToString[q.qtype] + " " + q.name }

// topoStats counts the load's answers. A failure is anything but NOERROR
// with exactly the expected records.
type topoStats struct {
	Sent, Answered, ServFail, NXDomain, OtherRcode, Timeouts, Wrong int
	latencies                                                       []time.Duration
	failures                                                        []string // the first few
}

func (s *topoStats) failed() int {
	return s.ServFail + s.NXDomain + s.OtherRcode + s.Timeouts + s.Wrong
}

func (s *topoStats) percentile(p float64) time.Duration {
	if len(s.latencies) == 0 {
		return 0
	}
	l := slices.Clone(s.latencies)
	slices.Sort(l)
	return l[min(int(float64(len(l))*p), len(l)-1)]
}

func (s *topoStats) String() string {
	return fmt.Sprintf("sent %d, answered correctly %d, SERVFAIL %d, NXDOMAIN %d, other rcode %d, timeouts %d, wrong records %d, p50 %v, p99 %v",
		s.Sent, s.Answered, s.ServFail, s.NXDomain, s.OtherRcode, s.Timeouts, s.Wrong,
		s.percentile(0.50).Round(10*time.Microsecond), s.percentile(0.99).Round(10*time.Microsecond))
}

// topoLoad sends the questions of want in turn at a fixed rate from one
// goroutine and checks every answer against want.
type topoLoad struct {
	stop chan struct{}
	done chan struct{}
	once sync.Once
	mu   sync.Mutex
	st   topoStats
}

// topoLoadMax bounds a load's duration, whatever happens to the test.
const topoLoadMax = 2 * time.Minute

// startTopoLoad starts the load against r at qps queries per second. want
// maps each question to the records every answer must hold exactly (see
// topoRecords); the mix is the harness's: 70% A, 20% SRV, 10% AAAA, over
// the services of want.
func startTopoLoad(t *testing.T, r *regdnsUnderTest, want map[topoQuestion][]string, qps int) *topoLoad {
	t.Helper()
	var mix []topoQuestion
	for q := range want {
		weight := map[uint16]int{dns.TypeA: 7, dns.TypeSRV: 2, dns.TypeAAAA: 1}[q.qtype]
		require.NotZero(t, weight, "load question %v: A, SRV or AAAA", q)
		for range weight {
			mix = append(mix, q)
		}
	}
	slices.SortFunc(mix, func(a, b topoQuestion) int { return strings.Compare(a.String(), b.String()) })
	// Shuffled (the same way every run), so every name and type is asked
	// throughout.
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(mix), func(i, j int) { mix[i], mix[j] = mix[j], mix[i] })
	l := &topoLoad{stop: make(chan struct{}), done: make(chan struct{})}
	go l.run(r.addr, mix, want, qps)
	t.Cleanup(func() { l.Stop() })
	return l
}

func (l *topoLoad) run(addr string, order []topoQuestion, want map[topoQuestion][]string, qps int) {
	defer close(l.done)
	client := &dns.Client{Net: "udp", Timeout: time.Second, UDPSize: 4096}
	tick := time.NewTicker(time.Second / time.Duration(qps))
	defer tick.Stop()
	end := time.NewTimer(topoLoadMax)
	defer end.Stop()
	for i := 0; ; i++ {
		select {
		case <-l.stop:
			return
		case <-end.C:
			return
		case <-tick.C:
		}
		q := order[i%len(order)]
		msg := new(dns.Msg)
		msg.SetQuestion(q.name, q.qtype)
		msg.SetEdns0(4096, false)
		start := time.Now()
		m, _, err := client.Exchange(msg, addr)
		took := time.Since(start)
		l.record(q, m, err, took, want[q])
	}
}

func (l *topoLoad) record(q topoQuestion, m *dns.Msg, err error, took time.Duration, want []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := &l.st
	s.Sent++
	var failure string
	switch {
	case err != nil:
		s.Timeouts++
		failure = err.Error()
	case m.Rcode == dns.RcodeServerFailure:
		s.ServFail++
		failure = "SERVFAIL"
	case m.Rcode == dns.RcodeNameError:
		s.NXDomain++
		failure = "NXDOMAIN"
	case m.Rcode != dns.RcodeSuccess:
		s.OtherRcode++
		failure = dns.RcodeToString[m.Rcode]
	default:
		s.latencies = append(s.latencies, took)
		if got := topoRecords(m); !slices.Equal(got, want) {
			s.Wrong++
			failure = fmt.Sprintf("records %v, want %v", got, want)
		} else {
			s.Answered++
		}
	}
	if failure != "" && len(s.failures) < 10 {
		s.failures = append(s.failures, fmt.Sprintf("%s %v: %s", time.Now().Format("15:04:05.000"), q, failure))
	}
}

// Stop ends the load and returns its counts.
func (l *topoLoad) Stop() *topoStats {
	l.once.Do(func() { close(l.stop) })
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.st
	return &st
}

// requireNoFailures stops the load and fails the test on any failed answer.
func (l *topoLoad) requireNoFailures(t *testing.T, what string) {
	t.Helper()
	st := l.Stop()
	t.Logf("load %s: %v", what, st)
	require.Positive(t, st.Sent)
	require.Zero(t, st.failed(), "failed answers for known names %s: %v; first: %v", what, st, st.failures)
}

// topoRecords is what an answer says, sorted: SRV targets with their port,
// A and AAAA addresses.
func topoRecords(m *dns.Msg) []string {
	out := []string{}
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.SRV:
			out = append(out, fmt.Sprintf("%s:%d", rr.Target, rr.Port))
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		}
	}
	slices.Sort(out)
	return out
}

// topoInstance is a test instance: its id, IPv4 address and port.
type topoInstance struct {
	id, host string
	port     int
}

// topoWant is the load's expectation for a service whose healthy instances
// are insts (IPv4 only: AAAA is NODATA).
func topoWant(want map[topoQuestion][]string, service string, insts ...topoInstance) {
	name := service + ".service.local."
	var srv, a []string
	for _, in := range insts {
		srv = append(srv, fmt.Sprintf("%s.%s:%d", in.id, name, in.port))
		a = append(a, in.host)
	}
	slices.Sort(srv)
	slices.Sort(a)
	want[topoQuestion{name, dns.TypeSRV}] = srv
	want[topoQuestion{name, dns.TypeA}] = a
	want[topoQuestion{name, dns.TypeAAAA}] = []string{}
}

// topoRetry runs write until it succeeds, for at most topoWriteTimeout:
// right after a failover a client may need a few tries to find the new
// master. The writes retried are idempotent.
func topoRetry(t *testing.T, what string, write func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(topoWriteTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := write(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		<-tick.C
	}
}

// clusterRegistry writes the registry as Cluster users must: the reference
// MULTI/EXEC spans the slots of two keys, so each command goes on its own
// (SETEX, SADD, PUBLISH; DEL, SREM, PUBLISH), in the reference order.
type clusterRegistry struct {
	c    *redis.ClusterClient
	keys registry.Keys
}

func (cr clusterRegistry) register(t *testing.T, service string, in topoInstance, ttl time.Duration) {
	t.Helper()
	now := float64(time.Now().UnixNano()) / 1e9
	doc, err := json.Marshal(struct {
		ServiceName   string         `json:"service_name"`
		InstanceID    string         `json:"instance_id"`
		Host          string         `json:"host"`
		Port          int            `json:"port"`
		Metadata      map[string]any `json:"metadata"`
		RegisteredAt  float64        `json:"registered_at"`
		LastHeartbeat float64        `json:"last_heartbeat"`
	}{service, in.id, in.host, in.port, map[string]any{}, now, now})
	require.NoError(t, err)
	topoRetry(t, "SETEX "+cr.keys.Instance(service, in.id), func(ctx context.Context) error {
		return cr.c.SetEx(ctx, cr.keys.Instance(service, in.id), doc, ttl).Err()
	})
	topoRetry(t, "SADD "+cr.keys.Set(service), func(ctx context.Context) error {
		return cr.c.SAdd(ctx, cr.keys.Set(service), in.id).Err()
	})
	cr.publish(t, service, "registered", in.id)
}

func (cr clusterRegistry) deregister(t *testing.T, service, id string) {
	t.Helper()
	topoRetry(t, "DEL "+cr.keys.Instance(service, id), func(ctx context.Context) error {
		return cr.c.Del(ctx, cr.keys.Instance(service, id)).Err()
	})
	topoRetry(t, "SREM "+cr.keys.Set(service), func(ctx context.Context) error {
		return cr.c.SRem(ctx, cr.keys.Set(service), id).Err()
	})
	cr.publish(t, service, "deregistered", id)
}

func (cr clusterRegistry) publish(t *testing.T, service, event, id string) {
	t.Helper()
	// As the reference's json.dumps writes it.
	payload := fmt.Sprintf(`{"event": %q, "instance_id": %q}`, event, id)
	topoRetry(t, "PUBLISH "+cr.keys.Events(service), func(ctx context.Context) error {
		return cr.c.Publish(ctx, cr.keys.Events(service), payload).Err()
	})
}

// setHealth is HealthChecker.check_instance: one SETEX, no event.
func (cr clusterRegistry) setHealth(t *testing.T, service, id string, status registry.Status) {
	t.Helper()
	w := registry.NewWriter(cr.c, cr.keys)
	topoRetry(t, "health of "+service+"/"+id, func(ctx context.Context) error {
		return w.SetHealth(ctx, service, id, status, 10*time.Second)
	})
}

// removeMember is the reference discover() cleanup: SREM alone, no event.
func (cr clusterRegistry) removeMember(t *testing.T, service, id string) {
	t.Helper()
	w := registry.NewWriter(cr.c, cr.keys)
	topoRetry(t, "SREM "+cr.keys.Set(service), func(ctx context.Context) error {
		return w.RemoveMembers(ctx, service, id)
	})
}

// topoShard is what a test puts on one master: a stable service the load
// asks for, and a service that changes, with an instance whose health key
// lives on that master too.
type topoShard struct {
	master         string
	stable, change string
	stableInsts    []topoInstance
	flip           topoInstance // health key on master
	fresh          topoInstance // registered later
}

// clusterShards picks, for every master, service names whose set key that
// master serves, and an instance id whose health key it serves too, so that
// changes on every master are exercised.
func clusterShards(t *testing.T, cc *redis.ClusterClient, masters []string, tag int) []topoShard {
	t.Helper()
	keys := registry.DefaultKeys()
	ctx := context.Background()
	masterOf := func(key string) string {
		m, err := cc.MasterForKey(ctx, key)
		require.NoError(t, err)
		return m.Options().Addr
	}
	pick := func(master string, name func(i int) string) string {
		for i := range 10000 {
			if n := name(i); masterOf(n) == master {
				return n
			}
		}
		t.Fatalf("no key of 10000 hashes to master %s", master)
		return ""
	}
	var out []topoShard
	for k, m := range masters {
		sh := topoShard{master: m}
		sh.stable = strings.TrimPrefix(pick(m, func(i int) string { return keys.Set(fmt.Sprintf("stable%d-%d", k, i)) }), keys.Prefix+":")
		sh.change = strings.TrimPrefix(pick(m, func(i int) string { return keys.Set(fmt.Sprintf("change%d-%d", k, i)) }), keys.Prefix+":")
		flip := pick(m, func(i int) string { return keys.Health(sh.change, fmt.Sprintf("h%d", i)) })
		sh.flip = topoInstance{id: flip[strings.LastIndexByte(flip, ':')+1:], host: fmt.Sprintf("10.%d.%d.1", tag, k), port: 8000}
		sh.fresh = topoInstance{id: "new", host: fmt.Sprintf("10.%d.%d.2", tag, k), port: 8001}
		sh.stableInsts = []topoInstance{
			{id: "s1", host: fmt.Sprintf("10.%d.%d.11", tag, k), port: 9001},
			{id: "s2", host: fmt.Sprintf("10.%d.%d.12", tag, k), port: 9002},
		}
		out = append(out, sh)
	}
	return out
}

// requireKeyspaceEventsOnEveryMaster checks that regdns turned keyspace
// notifications on on every master, and is not polling instead.
func requireKeyspaceEventsOnEveryMaster(t *testing.T, cc *redis.ClusterClient, r *regdnsUnderTest) {
	t.Helper()
	var mu sync.Mutex
	seen := map[string]string{}
	require.NoError(t, cc.ForEachMaster(context.Background(), func(ctx context.Context, node *redis.Client) error {
		cur, err := node.ConfigGet(ctx, "notify-keyspace-events").Result()
		mu.Lock()
		defer mu.Unlock()
		seen[node.Options().Addr] = cur["notify-keyspace-events"]
		return err
	}))
	for addr, flags := range seen {
		require.Contains(t, flags, "K", "notify-keyspace-events on master %s", addr)
	}
	// While a master is down, CONFIG SET on it fails and regdns polls
	// (every cache.poll_interval, 2 s) until a re-read turns notifications
	// on everywhere: it must be back to push by then.
	require.Eventually(t, func() bool {
		log := r.log.String()
		i := strings.LastIndex(log, "cannot enable Redis keyspace notifications")
		return i < 0 || strings.Contains(log[i:], "keyspace notifications on: push invalidation restored")
	}, 5*time.Second, 10*time.Millisecond, "regdns still polling instead of keyspace notifications")
}

func clusterConfig(cl *redistest.Cluster) func(*config.Config) {
	return func(c *config.Config) {
		c.Redis.URL = "redis://" // credentials and database only: none here
		c.Redis.Addrs = cl.Addrs()
		c.Redis.Cluster = true
		c.Cache.MaxAge = config.Duration{Duration: topoNoReread}
	}
}

func srvName(service string) string { return service + ".service.local." }

// TestTopologyClusterEveryMaster: on a 3-master Cluster written without
// transactions, registrations, deregistrations, health flips, SREM-only
// removals and expiries on every master show within topoChangeBound, which
// with no periodic re-read means keyspace notifications arrive from every
// master.
func TestTopologyClusterEveryMaster(t *testing.T) {
	started := time.Now()
	cl := redistest.StartCluster(t, 3)
	t.Logf("3-master cluster up in %v", time.Since(started).Round(time.Millisecond))
	cc := cl.Client(t)
	masters := cl.Masters(t)
	require.Len(t, masters, 3)
	cr := clusterRegistry{c: cc, keys: registry.DefaultKeys()}
	shards := clusterShards(t, cc, masters, 1)
	want := map[topoQuestion][]string{}
	for _, sh := range shards {
		for _, in := range sh.stableInsts {
			cr.setHealth(t, sh.stable, in.id, registry.StatusHealthy)
			cr.register(t, sh.stable, in, 30*time.Second)
		}
		topoWant(want, sh.stable, sh.stableInsts...)
		cr.setHealth(t, sh.change, sh.flip.id, registry.StatusHealthy)
		cr.register(t, sh.change, sh.flip, 30*time.Second)
	}

	r := startRegdns(t, "", clusterConfig(cl))
	for _, sh := range shards {
		r.waitFor(t, srvName(sh.stable), dns.TypeSRV, 10*time.Second, func(m *dns.Msg) bool { return len(m.Answer) == 2 })
		r.waitFor(t, srvName(sh.change), dns.TypeSRV, 5*time.Second, hasTarget(sh.flip.id, sh.change))
	}
	requireKeyspaceEventsOnEveryMaster(t, cc, r)
	load := startTopoLoad(t, r, want, topoQPS)

	visible := func(what string, sh topoShard, ok func(*dns.Msg) bool) {
		t.Helper()
		took := r.waitFor(t, srvName(sh.change), dns.TypeSRV, topoChangeBound, ok)
		t.Logf("master %s: %s visible after %v", sh.master, what, took.Round(100*time.Microsecond))
	}
	for _, sh := range shards {
		// Health keys have no event: only the keyspace notification of
		// the master holding the key tells.
		cr.setHealth(t, sh.change, sh.flip.id, registry.StatusUnhealthy)
		visible("health flip to unhealthy", sh, not(hasTarget(sh.flip.id, sh.change)))
		cr.setHealth(t, sh.change, sh.flip.id, registry.StatusHealthy)
		visible("health flip to healthy", sh, hasTarget(sh.flip.id, sh.change))

		cr.setHealth(t, sh.change, sh.fresh.id, registry.StatusHealthy)
		cr.register(t, sh.change, sh.fresh, 30*time.Second)
		visible("registration", sh, hasTarget(sh.fresh.id, sh.change))
		// SREM with no event (discover()'s cleanup): the set key's
		// keyspace notification, from this master.
		cr.removeMember(t, sh.change, sh.fresh.id)
		visible("SREM without event", sh, not(hasTarget(sh.fresh.id, sh.change)))
		cr.deregister(t, sh.change, sh.flip.id)
		visible("deregistration", sh, not(hasTarget(sh.flip.id, sh.change)))
	}

	// A missed heartbeat: instances with a 2 s TTL that nobody renews leave
	// the answers after their keys expire, on every master.
	const ttl = 2 * time.Second
	written := map[string]time.Time{}
	for _, sh := range shards {
		dies := topoInstance{id: "dies", host: sh.fresh.host, port: 7000}
		cr.setHealth(t, sh.change, dies.id, registry.StatusHealthy)
		cr.register(t, sh.change, dies, ttl)
		written[sh.change] = time.Now()
		r.waitFor(t, srvName(sh.change), dns.TypeSRV, topoChangeBound, hasTarget(dies.id, sh.change))
	}
	for _, sh := range shards {
		r.waitFor(t, srvName(sh.change), dns.TypeSRV, ttl+topoChangeBound+expiryBound, not(hasTarget("dies", sh.change)))
		lag := time.Since(written[sh.change]) - ttl
		t.Logf("master %s: expired instance left the answers %v after its TTL ran out", sh.master, lag.Round(time.Millisecond))
		require.LessOrEqual(t, lag, expiryBound+changeBound)
	}
	load.requireNoFailures(t, "through changes on every master")
	t.Logf("test took %v", time.Since(started).Round(time.Millisecond))
}

// TestTopologyClusterMasterKilled (R11): a master of a 3-master Cluster with
// one replica each is SIGKILLed under query load. Every answer for a known
// name stays correct through the failover (the slots of the dead master are
// served from the last view), and changes made after the replica took over,
// on its slots and on the others, are answered within 5 s of the cluster
// being reachable again.
func TestTopologyClusterMasterKilled(t *testing.T) {
	started := time.Now()
	cl := redistest.StartClusterWithReplicas(t, 3, 1)
	t.Logf("3-master 3-replica cluster up in %v", time.Since(started).Round(time.Millisecond))
	cc := cl.Client(t)
	masters := cl.Masters(t)
	require.Len(t, masters, 3)
	cr := clusterRegistry{c: cc, keys: registry.DefaultKeys()}
	shards := clusterShards(t, cc, masters, 2)
	want := map[topoQuestion][]string{}
	for _, sh := range shards {
		for _, in := range sh.stableInsts {
			cr.setHealth(t, sh.stable, in.id, registry.StatusHealthy)
			cr.register(t, sh.stable, in, time.Minute)
		}
		topoWant(want, sh.stable, sh.stableInsts...)
		cr.setHealth(t, sh.change, sh.flip.id, registry.StatusHealthy)
		cr.register(t, sh.change, sh.flip, time.Minute)
	}
	r := startRegdns(t, "", clusterConfig(cl))
	for _, sh := range shards {
		r.waitFor(t, srvName(sh.stable), dns.TypeSRV, 10*time.Second, func(m *dns.Msg) bool { return len(m.Answer) == 2 })
		r.waitFor(t, srvName(sh.change), dns.TypeSRV, 5*time.Second, hasTarget(sh.flip.id, sh.change))
	}
	requireKeyspaceEventsOnEveryMaster(t, cc, r)
	load := startTopoLoad(t, r, want, topoQPS)

	victim, survivor := shards[0], shards[1]
	cl.KillNode(t, victim.master)
	took := cl.WaitOK(t)
	reachable := time.Now()
	now := cl.Masters(t)
	require.Len(t, now, 3)
	require.NotContains(t, now, victim.master)
	promoted := cl.MasterOf(t, cr.keys.Set(victim.change))
	require.NotEqual(t, victim.master, promoted)
	t.Logf("master %s killed; replica %s serves its slots, cluster_state ok on every node %v after the kill",
		victim.master, promoted, took.Round(time.Millisecond))

	// Changes after the failover: on the promoted replica's slots (a health
	// flip, which only its keyspace notifications tell, a registration and a
	// deregistration) and on a surviving master's.
	cr = clusterRegistry{c: cl.Client(t), keys: registry.DefaultKeys()}
	afterFailover := func(what string, sh topoShard, ok func(*dns.Msg) bool) {
		t.Helper()
		r.waitFor(t, srvName(sh.change), dns.TypeSRV, time.Until(reachable.Add(topoFailoverBound)), ok)
		t.Logf("%s visible %v after the cluster was reachable", what, time.Since(reachable).Round(time.Millisecond))
	}
	// First a change that nothing but the promoted replica's keyspace
	// notifications tell: regdns must have found the new master by itself.
	cr.setHealth(t, victim.change, victim.flip.id, registry.StatusUnhealthy)
	afterFailover("health flip on the promoted replica", victim, not(hasTarget(victim.flip.id, victim.change)))
	cr.setHealth(t, victim.change, victim.fresh.id, registry.StatusHealthy)
	cr.register(t, victim.change, victim.fresh, time.Minute)
	afterFailover("registration on the promoted replica", victim, hasTarget(victim.fresh.id, victim.change))
	cr.deregister(t, survivor.change, survivor.flip.id)
	afterFailover("deregistration on a surviving master", survivor, not(hasTarget(survivor.flip.id, survivor.change)))
	// And later changes keep flowing through notifications.
	cr.setHealth(t, victim.change, victim.flip.id, registry.StatusHealthy)
	r.waitFor(t, srvName(victim.change), dns.TypeSRV, topoChangeBound, hasTarget(victim.flip.id, victim.change))
	requireKeyspaceEventsOnEveryMaster(t, cl.Client(t), r)
	load.requireNoFailures(t, fmt.Sprintf("through the kill of master %s (cluster ok again %v after it)", victim.master, took.Round(time.Millisecond)))
	t.Logf("test took %v", time.Since(started).Round(time.Millisecond))
}

// sentinelFixture is a Sentinel deployment (master, replica, 3 sentinels)
// holding a registry written the reference way (MULTI/EXEC on the master)
// through a go-redis Sentinel client: "users" (2 instances) and "orders" (1)
// that the load asks for, and "cart" (c1) that changes.
type sentinelFixture struct {
	sn   *redistest.Sentinel
	w    *registry.Writer
	want map[topoQuestion][]string
	cart []topoInstance
}

func startSentinelFixture(t *testing.T) *sentinelFixture {
	t.Helper()
	started := time.Now()
	sn := redistest.StartSentinel(t)
	t.Logf("master, replica and 3 sentinels up in %v", time.Since(started).Round(time.Millisecond))
	f := &sentinelFixture{
		sn:   sn,
		w:    registry.NewWriter(sn.Client(t), registry.DefaultKeys()),
		want: map[topoQuestion][]string{},
		cart: []topoInstance{{"c1", "10.7.2.1", 80}, {"c2", "10.7.2.2", 80}, {"c3", "10.7.2.3", 80}},
	}
	users := []topoInstance{{"u1", "10.7.0.1", 8080}, {"u2", "10.7.0.2", 8080}}
	orders := []topoInstance{{"o1", "10.7.1.1", 9090}}
	for _, in := range users {
		f.register(t, f.w, "users", in)
	}
	f.register(t, f.w, "orders", orders[0])
	f.register(t, f.w, "cart", f.cart[0])
	topoWant(f.want, "users", users...)
	topoWant(f.want, "orders", orders...)
	return f
}

// register writes a healthy instance: health key, then the reference
// register transaction.
func (f *sentinelFixture) register(t *testing.T, w *registry.Writer, service string, in topoInstance) {
	t.Helper()
	topoRetry(t, "health of "+service+"/"+in.id, func(ctx context.Context) error {
		return w.SetHealth(ctx, service, in.id, registry.StatusHealthy, 10*time.Second)
	})
	topoRetry(t, "register "+service+"/"+in.id, func(ctx context.Context) error {
		return w.Register(ctx, service, in.id, in.host, in.port, nil, time.Minute)
	})
}

// regdns starts a regdns following the master set through the sentinels
// and waits until it answers from the registry.
func (f *sentinelFixture) regdns(t *testing.T, readFromReplicas bool, maxAge time.Duration) *regdnsUnderTest {
	t.Helper()
	r := startRegdns(t, "", func(c *config.Config) {
		c.Redis.URL = "redis://" // credentials and database only: none here
		c.Redis.Addrs = f.sn.SentinelAddrs()
		c.Redis.MasterName = f.sn.MasterName()
		c.Redis.ReadFromReplicas = readFromReplicas
		c.Cache.MaxAge = config.Duration{Duration: maxAge}
	})
	r.waitFor(t, srvName("users"), dns.TypeSRV, 10*time.Second, func(m *dns.Msg) bool { return len(m.Answer) == 2 })
	r.waitFor(t, srvName("cart"), dns.TypeSRV, 5*time.Second, hasTarget("c1", "cart"))
	return r
}

// changeOnNewMaster writes, with a plain client of the new master, a
// registration (c3), a health flip (c1 unhealthy: a keyspace notification
// only) and a deregistration (c2). It returns the condition that shows all
// three in the answers.
func (f *sentinelFixture) changeOnNewMaster(t *testing.T, newMaster string) func(*dns.Msg) bool {
	t.Helper()
	nc := redis.NewClient(&redis.Options{Addr: newMaster, DisableIdentity: true})
	t.Cleanup(func() { _ = nc.Close() })
	nw := registry.NewWriter(nc, registry.DefaultKeys())
	ctx := context.Background()
	f.register(t, nw, "cart", f.cart[2])
	require.NoError(t, nw.SetHealth(ctx, "cart", "c1", registry.StatusUnhealthy, 10*time.Second))
	require.NoError(t, nw.Deregister(ctx, "cart", "c2"))
	return func(m *dns.Msg) bool { return slices.Equal(targets(m), []string{"c3.cart.service.local."}) }
}

const (
	// sentinelReplicaMaxAge is cache.max_age of the regdns reading from
	// replicas: see TestTopologySentinelFailover.
	sentinelReplicaMaxAge = 3 * time.Second
	// sentinelDemoteBound covers Sentinel turning the old master into a
	// replica of the new one after a forced failover: it notices the old
	// master still reporting role master at its next INFO (every 10 s).
	sentinelDemoteBound = 12 * time.Second
)

// TestTopologySentinelFailover (R11): two regdns follow the master set
// through the sentinels, one reading from replicas. Registrations show on
// both despite replica lag. A forced failover (SENTINEL FAILOVER) under
// query load: no failed answer for a known name on either; changes written
// to the new master are answered within 5 s by the regdns reading from the
// master.
//
// Reading from replicas has a weaker bound after a failover: go-redis takes
// its replicas from Sentinel, which lists the old master as a replica at
// once but demotes it only up to 10 s later; until then reads may go to a
// master nobody writes to any more, and a view filled from it is corrected
// by the next periodic full re-read after the demotion (cache.max_age).
func TestTopologySentinelFailover(t *testing.T) {
	started := time.Now()
	f := startSentinelFixture(t)
	type replica struct {
		what string
		r    *regdnsUnderTest
		load *topoLoad
	}
	fromMaster := &replica{what: "master reads", r: f.regdns(t, false, topoNoReread)}
	fromReplica := &replica{what: "replica reads", r: f.regdns(t, true, sentinelReplicaMaxAge)}
	both := []*replica{fromMaster, fromReplica}

	// Replica lag: registrations written to the master show on the regdns
	// whose reads go to the replica too, one after the other.
	var slowest time.Duration
	for i := range 20 {
		in := topoInstance{fmt.Sprintf("l%d", i), fmt.Sprintf("10.7.3.%d", i+1), 80}
		f.register(t, f.w, "lag", in)
		for _, rr := range both {
			slowest = max(slowest, rr.r.waitFor(t, srvName("lag"), dns.TypeSRV, topoChangeBound, hasTarget(in.id, "lag")))
		}
	}
	t.Logf("20 registrations visible on both (master and replica reads) after at most %v", slowest.Round(100*time.Microsecond))
	f.register(t, f.w, "cart", f.cart[1])
	for _, rr := range both {
		rr.r.waitFor(t, srvName("cart"), dns.TypeSRV, topoChangeBound, hasTarget("c2", "cart"))
		rr.load = startTopoLoad(t, rr.r, f.want, topoQPS/2)
	}

	old := f.sn.MasterAddr(t)
	newMaster, took := f.sn.Failover(t)
	reachable := time.Now()
	t.Logf("forced failover %s -> %s took %v", old, newMaster, took.Round(time.Millisecond))
	changed := f.changeOnNewMaster(t, newMaster)
	written := time.Since(reachable)
	for _, rr := range both {
		bound := topoFailoverBound
		if rr == fromReplica {
			bound = sentinelDemoteBound + sentinelReplicaMaxAge + topoFailoverBound
		}
		rr.r.waitFor(t, srvName("cart"), dns.TypeSRV, time.Until(reachable.Add(bound)), changed)
		t.Logf("%s: registration, health flip and deregistration on the new master visible %v after it was reachable (writes took %v; bound %v)",
			rr.what, time.Since(reachable).Round(time.Millisecond), written.Round(time.Millisecond), bound)
	}
	for _, rr := range both {
		rr.load.requireNoFailures(t, rr.what+" through the forced failover")
	}
	t.Logf("test took %v", time.Since(started).Round(time.Millisecond))
}

// TestTopologySentinelMasterKilled (R11): the master is SIGKILLed under
// query load; the sentinels promote the replica. No failed answer for a
// known name, and changes written to the new master are answered within 5 s
// of it being reachable.
func TestTopologySentinelMasterKilled(t *testing.T) {
	started := time.Now()
	f := startSentinelFixture(t)
	r := f.regdns(t, false, topoNoReread)
	f.register(t, f.w, "cart", f.cart[1])
	r.waitFor(t, srvName("cart"), dns.TypeSRV, topoChangeBound, hasTarget("c2", "cart"))
	load := startTopoLoad(t, r, f.want, topoQPS)

	killed := time.Now()
	old := f.sn.KillMaster(t)
	newMaster := f.sn.WaitMasterChange(t, old)
	reachable := time.Now()
	t.Logf("master %s killed; sentinels promoted %s after %v", old, newMaster, reachable.Sub(killed).Round(time.Millisecond))
	changed := f.changeOnNewMaster(t, newMaster)
	r.waitFor(t, srvName("cart"), dns.TypeSRV, time.Until(reachable.Add(topoFailoverBound)), changed)
	t.Logf("registration, health flip and deregistration on the new master visible %v after it was reachable",
		time.Since(reachable).Round(time.Millisecond))
	load.requireNoFailures(t, "through the kill of the master")
	t.Logf("test took %v", time.Since(started).Round(time.Millisecond))
}

// TestTopologyReplicasAnswerIdentically: two regdns against one registry
// share nothing and give the same answers, before and after a change.
func TestTopologyReplicasAnswerIdentically(t *testing.T) {
	rs := redistest.Start(t)
	ctx := context.Background()
	w := registry.NewWriter(rs.Client(t), registry.DefaultKeys())
	type inst struct {
		service, id, host string
		port              int
		meta              map[string]any
		status            registry.Status // StatusUnknown: no health key
	}
	insts := []inst{
		{"web", "w1", "10.8.0.1", 80, map[string]any{"weight": 3}, registry.StatusHealthy},
		{"web", "w2", "10.8.0.2", 80, nil, registry.StatusHealthy},
		{"web", "w3", "10.8.0.3", 80, nil, registry.StatusUnhealthy},
		{"web", "w4", "10.8.0.4", 80, nil, registry.StatusUnknown},
		{"api", "a1", "10.8.1.1", 8443, map[string]any{"version": "2.1.0"}, registry.StatusHealthy},
		{"api", "a2", "2001:db8::12", 8443, nil, registry.StatusHealthy},
		{"docs", "d1", "docs.example.org", 443, nil, registry.StatusHealthy},
		{"down", "x1", "10.8.2.1", 80, nil, registry.StatusUnhealthy},
	}
	for _, in := range insts {
		require.NoError(t, w.Register(ctx, in.service, in.id, in.host, in.port, in.meta, time.Minute))
		if in.status != registry.StatusUnknown {
			require.NoError(t, w.SetHealth(ctx, in.service, in.id, in.status, 10*time.Second))
		}
	}
	a := startRegdns(t, rs.URL(), nil)
	b := startRegdns(t, rs.URL(), nil)
	var questions []topoQuestion
	for _, name := range []string{"web", "api", "docs", "down", "nope", "w1.web", "w3.web", "a2.api", "d1.docs", "x.w1.web"} {
		for _, qt := range []uint16{dns.TypeSRV, dns.TypeA, dns.TypeAAAA, dns.TypeTXT} {
			questions = append(questions, topoQuestion{name + ".service.local.", qt})
		}
	}
	questions = append(questions, topoQuestion{"service.local.", dns.TypeSOA}, topoQuestion{"service.local.", dns.TypeNS},
		topoQuestion{"example.com.", dns.TypeA})

	compare := func(when string) {
		t.Helper()
		for _, q := range questions {
			for _, network := range []string{"udp", "tcp"} {
				ma := topoComparable(a.query(t, network, q.name, q.qtype, 1232))
				mb := topoComparable(b.query(t, network, q.name, q.qtype, 1232))
				require.Equal(t, ma, mb, "%s: %v over %s answered differently", when, q, network)
			}
		}
	}
	for _, r := range []*regdnsUnderTest{a, b} {
		r.waitFor(t, srvName("web"), dns.TypeSRV, 5*time.Second, func(m *dns.Msg) bool { return len(m.Answer) == 2 })
		r.waitFor(t, srvName("api"), dns.TypeSRV, 5*time.Second, func(m *dns.Msg) bool { return len(m.Answer) == 2 })
	}
	compare("in sync")
	n := topoComparable(a.query(t, "udp", srvName("web"), dns.TypeSRV, 0))
	require.Equal(t, dns.RcodeToString[dns.RcodeSuccess], n.Rcode)
	require.Len(t, n.Answer, 2, "healthy mode: w1 and w2")

	require.NoError(t, w.SetHealth(ctx, "web", "w3", registry.StatusHealthy, 10*time.Second))
	require.NoError(t, w.Deregister(ctx, "web", "w1"))
	require.NoError(t, w.Register(ctx, "new", "n1", "10.8.3.1", 80, nil, time.Minute))
	require.NoError(t, w.SetHealth(ctx, "new", "n1", registry.StatusHealthy, 10*time.Second))
	questions = append(questions, topoQuestion{"new.service.local.", dns.TypeSRV}, topoQuestion{"new.service.local.", dns.TypeA})
	for _, r := range []*regdnsUnderTest{a, b} {
		r.waitFor(t, srvName("web"), dns.TypeSRV, topoChangeBound, func(m *dns.Msg) bool {
			return slices.Equal(targets(m), []string{"w2.web.service.local.", "w3.web.service.local."})
		})
		r.waitFor(t, srvName("new"), dns.TypeSRV, topoChangeBound, hasTarget("n1", "new"))
	}
	compare("after changes")
}

// topoView is what must be equal between replicas: rcode, flags and every
// section's records sorted, with TTLs and the SOA serial (the time of the
// process's last view change, so per process) left out.
type topoView struct {
	Rcode                string
	Authoritative, TC    bool
	Answer, Ns, Extra    []string
	QuestionName, QClass string
}

func topoComparable(m *dns.Msg) topoView {
	section := func(rrs []dns.RR) []string {
		out := []string{}
		for _, rr := range rrs {
			if _, ok := rr.(*dns.OPT); ok {
				continue
			}
			rr = dns.Copy(rr)
			rr.Header().Ttl = 0
			if soa, ok := rr.(*dns.SOA); ok {
				soa.Serial = 0
			}
			out = append(out, rr.String())
		}
		slices.Sort(out)
		return out
	}
	return topoView{
		Rcode: dns.RcodeToString[m.Rcode], Authoritative: m.Authoritative, TC: m.Truncated,
		Answer: section(m.Answer), Ns: section(m.Ns), Extra: section(m.Extra),
		QuestionName: m.Question[0].Name, QClass: dns.ClassToString[m.Question[0].Qclass],
	}
}
