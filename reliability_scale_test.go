package main

// Reliability tests of scale (../shared/RELIABILITY-TESTS.md R13, R14, R15):
// a registry of 100,000 instances, registration churn, a random-subdomain
// flood. Memory and CPU are the regdns process's own, so these run the
// binary as deployed (go build, then `regdns serve` as a child process with
// REGDNS_* settings and JSON logs), which the helpers below start and
// measure through /proc.
//
// Sizes: R13 runs the table's sizes (1,000 x 100 and 1 x 10,000) in CI too
// (about 20 s). R14 and R15 run CI-sized rates and durations by default
// (100 changes/s and 2,000 random names/s for 8 s); REGDNS_RELIABILITY=full
// runs the table's (1,000 changes/s with 2,000 qps, 10,000 random names/s,
// each for 60 s).

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/regdns/regdns/internal/loadtest"
	"github.com/regdns/regdns/internal/redistest"
	"github.com/regdns/regdns/registry"
)

// regdnsBuild is the regdns binary, built once per test process with go
// build; each test gets its own copy, so nothing outlives the test's temp
// directory.
var regdnsBuild struct {
	once sync.Once
	data []byte
	err  error
}

// regdnsBinary returns the path of a fresh copy of the regdns binary in the
// test's temp directory.
func regdnsBinary(t *testing.T) string {
	t.Helper()
	regdnsBuild.once.Do(func() {
		dir, err := os.MkdirTemp("", "regdns-build-")
		if err != nil {
			regdnsBuild.err = err
			return
		}
		defer os.RemoveAll(dir)
		bin := filepath.Join(dir, "regdns")
		if out, err := exec.Command(goTool(t), "build", "-buildvcs=false", "-o", bin, ".").CombinedOutput(); err != nil {
			regdnsBuild.err = fmt.Errorf("go build regdns: %v\n%s", err, out)
			return
		}
		regdnsBuild.data, regdnsBuild.err = os.ReadFile(bin)
	})
	require.NoError(t, regdnsBuild.err)
	path := filepath.Join(t.TempDir(), "regdns")
	require.NoError(t, os.WriteFile(path, regdnsBuild.data, 0o755))
	return path
}

// regdnsProc is one `regdns serve` child process.
type regdnsProc struct {
	// addr is the DNS address (UDP and TCP), http the admin server's.
	addr, http string
	pid        int
	log        *lockedBuffer
	exited     chan struct{} // closed once the process has exited
	waitErr    error         // its exit status, once exited is closed
}

// startRegdnsProc runs the regdns binary against redisURL on free loopback
// ports, with JSON logs and the given settings (config keys such as
// "dns.tcp_read_timeout", passed as REGDNS_* variables), until the test
// ends; it returns once the DNS and admin servers are bound.
func startRegdnsProc(t *testing.T, redisURL string, settings map[string]string) *regdnsProc {
	t.Helper()
	all := map[string]string{
		"dns.listen": "127.0.0.1:0", "http.listen": "127.0.0.1:0", "redis.url": redisURL,
		"log.format": "json", "log.level": "info",
	}
	for k, v := range settings {
		all[k] = v
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range all {
		env = append(env, "REGDNS_"+strings.ToUpper(strings.ReplaceAll(k, ".", "_"))+"="+v)
	}
	bin := regdnsBinary(t)
	p := &regdnsProc{log: &lockedBuffer{}, exited: make(chan struct{})}
	cmd := exec.Command(bin, "serve")
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = p.log, p.log
	var err error
	for range 5 { // ETXTBSY: a process forked elsewhere may hold the copy open for writing a moment
		if err = cmd.Start(); !errors.Is(err, syscall.ETXTBSY) {
			break
		}
		time.Sleep(20 * time.Millisecond) // retry interval of a transient fork race, not a wait for a condition
		cmd = exec.Command(bin, "serve")
		cmd.Env, cmd.Stdout, cmd.Stderr = env, p.log, p.log
	}
	require.NoError(t, err)
	p.pid = cmd.Process.Pid
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.exited:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-p.exited
				t.Error("regdns did not exit within 10s of SIGTERM")
			}
		}
		if t.Failed() {
			t.Logf("regdns log:\n%s", p.log)
		}
	})
	serving := p.waitLog(t, "regdns serving (udp+tcp)", 20*time.Second)
	p.addr, _ = serving["listen"].(string)
	if admin := p.logLines("admin http: /metrics /healthz /readyz /debug/services/"); len(admin) > 0 {
		p.http, _ = admin[0]["listen"].(string)
	}
	require.NotEmpty(t, p.addr)
	return p
}

// logLines returns every JSON log line whose message is msg, decoded.
func (p *regdnsProc) logLines(msg string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(p.log.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) == nil && line["message"] == msg {
			out = append(out, line)
		}
	}
	return out
}

// waitLog waits for the first log line with message msg.
func (p *regdnsProc) waitLog(t *testing.T, msg string, within time.Duration) map[string]any {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if lines := p.logLines(msg); len(lines) > 0 {
			return lines[0]
		}
		select {
		case <-p.exited:
			t.Fatalf("regdns exited (%v) before logging %q:\n%s", p.waitErr, msg, p.log)
		case <-time.After(5 * time.Millisecond): // polling interval of a condition wait
		}
	}
	t.Fatalf("regdns did not log %q within %v:\n%s", msg, within, p.log)
	return nil
}

// requireAlive fails the test if the process has exited (crashed) or logged
// a recovered panic.
func (p *regdnsProc) requireAlive(t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
		t.Fatalf("regdns exited: %v", p.waitErr)
	default:
	}
	require.NotContains(t, p.log.String(), "panicked", "a recovered panic was logged")
}

// rss is the process's resident set size (VmRSS).
func (p *regdnsProc) rss(t *testing.T) int64 { return p.status(t, "VmRSS:") }

// peakRSS is the largest resident set size the process has had (VmHWM).
func (p *regdnsProc) peakRSS(t *testing.T) int64 { return p.status(t, "VmHWM:") }

// status reads a memory field (in kB) of /proc/<pid>/status, in bytes.
func (p *regdnsProc) status(t *testing.T, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
	require.NoError(t, err)
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/<pid>/status", field)
	return 0
}

// cpu is the CPU time (user + system) the process has used.
func (p *regdnsProc) cpu(t *testing.T) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid))
	require.NoError(t, err)
	// The command name, in parentheses, may hold spaces: fields count from
	// after its closing parenthesis (utime and stime are fields 14 and 15).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, err := strconv.ParseInt(f[11], 10, 64)
	require.NoError(t, err)
	stime, err := strconv.ParseInt(f[12], 10, 64)
	require.NoError(t, err)
	const clockTicks = 100 // USER_HZ, 100 on every Linux architecture Go runs on
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// fds is the number of open file descriptors of the process.
func (p *regdnsProc) fds(t *testing.T) int {
	t.Helper()
	n, err := p.fdCount()
	require.NoError(t, err)
	return n
}

// fdCount is fds for goroutines other than the test's.
func (p *regdnsProc) fdCount() (int, error) {
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.pid))
	return len(entries), err
}

// client returns the DNS and metrics helpers of the in-process tests for this process.
func (p *regdnsProc) client() *regdnsUnderTest {
	return &regdnsUnderTest{addr: p.addr, http: p.http, log: p.log}
}

const mib = 1 << 20

// writeScaleRegistry writes services s0000... with perService instances
// each (ids i000...), as the writers do (instance JSON with SETEX, SADD),
// in pipelines of about 1,000 commands.
func writeScaleRegistry(t *testing.T, client *redis.Client, services, perService int) {
	t.Helper()
	ctx := context.Background()
	keys := registry.DefaultKeys()
	now := float64(time.Now().UnixNano()) / 1e9
	per := max(1, 1000/perService) // services per pipeline
	for start := 0; start < services; start += per {
		_, err := client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for s := start; s < min(start+per, services); s++ {
				svc := fmt.Sprintf("s%04d", s)
				ids := make([]any, 0, perService)
				for i := range perService {
					id := fmt.Sprintf("i%03d", i)
					doc, err := json.Marshal(map[string]any{
						"service_name": svc, "instance_id": id, "host": scaleHost(s, i),
						"port": 8000 + i, "metadata": map[string]any{"version": "1.0.0"},
						"registered_at": now, "last_heartbeat": now,
					})
					if err != nil {
						return err
					}
					p.SetEx(ctx, keys.Instance(svc, id), doc, 10*time.Minute)
					ids = append(ids, id)
				}
				p.SAdd(ctx, keys.Set(svc), ids...)
			}
			return nil
		})
		require.NoError(t, err)
	}
}

// scaleHost is the address of instance i of service s: 10.<1+s/250>.<s%250>.<i+1>.
func scaleHost(s, i int) string { return fmt.Sprintf("10.%d.%d.%d", 1+s/250, s%250, i%250+1) }

// udpThroughput sends the packets round robin, closed loop, from workers
// sockets for d, and returns the replies per second (a reply counts when its
// ID is the query's).
func udpThroughput(t *testing.T, addr string, pkts [][]byte, workers int, d time.Duration) float64 {
	t.Helper()
	var answered atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	for w := range workers {
		conn, err := net.Dial("udp", addr)
		require.NoError(t, err)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			buf := make([]byte, 4096)
			q := make([]byte, 0, 512)
			for i := w; time.Now().Before(deadline); i++ {
				q = append(q[:0], pkts[i%len(pkts)]...)
				id := uint16(i)
				binary.BigEndian.PutUint16(q, id)
				if _, err := conn.Write(q); err != nil {
					return
				}
				_ = conn.SetReadDeadline(time.Now().Add(time.Second))
				for {
					n, err := conn.Read(buf)
					if err != nil {
						break // lost: the next query
					}
					if n >= 2 && binary.BigEndian.Uint16(buf) == id {
						answered.Add(1)
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	return float64(answered.Load()) / d.Seconds()
}

// packQuery packs a query for name and qtype (EDNS with size edns when not 0).
func packQuery(t *testing.T, name string, qtype uint16, edns uint16) []byte {
	t.Helper()
	q := newQuery(name, qtype)
	if edns > 0 {
		q.SetEdns0(edns, false)
	}
	return packMsg(t, q)
}

// R13: 1,000 services x 100 instances and 1 service x 10,000. Cold sync
// within 10 s, RSS within 500 MB, cached answers as fast as with 100
// instances, and the 10,000-instance answer within every transport's limit.
func TestReliabilityR13HundredThousandInstances(t *testing.T) {
	const (
		services, perService = 1000, 100
		huge                 = 10_000
		syncBound            = 10 * time.Second
		rssBound             = 500 * mib
	)
	rs := redistest.Start(t)
	client := rs.Client(t)
	writeStart := time.Now()
	writeScaleRegistry(t, client, services, perService)
	registerBulk(t, client, registry.DefaultKeys(), "huge", huge)
	wrote := time.Since(writeStart)

	start := time.Now()
	p := startRegdnsProc(t, rs.URL(), map[string]string{"health.mode": "any", "cache.max_age": "10m"})
	line := p.waitLog(t, "registry in sync", 30*time.Second)
	wall := time.Since(start)
	tookMS, ok := line["took"].(float64)
	require.True(t, ok, "took in %v", line)
	took := time.Duration(tookMS * float64(time.Millisecond))
	require.EqualValues(t, services+1, line["services"])
	require.LessOrEqual(t, took, syncBound, "cold sync of %d instances", services*perService+huge)
	rssSynced := p.rss(t)
	require.LessOrEqual(t, rssSynced, int64(rssBound))
	t.Logf("wrote %d instances in %v; cold sync took %v (process start to in sync %v); RSS %d MiB",
		services*perService+huge, wrote.Round(time.Millisecond), took.Round(time.Millisecond), wall.Round(time.Millisecond), rssSynced/mib)

	r := p.client()
	// Every service whole: a sample over TCP (SRV) and UDP (A, capped at dns.max_answers).
	for _, s := range []int{0, 1, 499, 998, 999} {
		name := fmt.Sprintf("s%04d.service.local.", s)
		m := r.query(t, "tcp", name, dns.TypeSRV, 0)
		require.Len(t, m.Answer, perService, name)
		a := r.query(t, "udp", name, dns.TypeA, 0)
		require.Len(t, a.Answer, 8, name)
	}

	// The 10,000-instance answer: TC within each UDP limit; over TCP a valid
	// message of at most 65,535 octets, cut to what fits.
	for _, tc := range []struct {
		name  string
		edns  uint16
		limit int
	}{
		{"UDP without EDNS", 0, 512},
		{"UDP EDNS 1232", 1232, 1232},
		{"UDP EDNS 4096 (capped at dns.max_udp_size)", 4096, 1232},
	} {
		m, size := askOnce(t, "udp", r.addr, withEDNSIf(newQuery("huge.service.local.", dns.TypeSRV), tc.edns))
		require.True(t, m.Truncated, tc.name)
		require.LessOrEqual(t, size, tc.limit, tc.name)
		require.Equal(t, dns.RcodeSuccess, m.Rcode, tc.name)
		t.Logf("huge SRV, %s: TC, %d records in %d octets", tc.name, len(m.Answer), size)
	}
	hugeTCP := 0
	for _, edns := range []uint16{0, 4096} {
		m, size := askOnce(t, "tcp", r.addr, withEDNSIf(newQuery("huge.service.local.", dns.TypeSRV), edns))
		require.Equal(t, dns.RcodeSuccess, m.Rcode)
		require.LessOrEqual(t, size, dns.MaxMsgSize)
		require.Greater(t, len(m.Answer), 1000, "a capped subset, not nothing")
		for _, rr := range m.Answer {
			require.IsType(t, &dns.SRV{}, rr)
		}
		t.Logf("huge SRV over TCP (EDNS %d): %d records in %d octets, TC %t", edns, len(m.Answer), size, m.Truncated)
		hugeTCP = size
	}
	m := r.query(t, "udp", "huge.service.local.", dns.TypeA, 0)
	require.Len(t, m.Answer, 8)
	require.NotContains(t, p.log.String(), "pack", "no pack error logged")

	// Cached answers are as fast with 100,000 instances as with 100: the
	// same closed-loop client against a regdns whose registry is one
	// service of 100 (s0000), the same questions to both. Measured twice,
	// interleaved, best of each, since the machine is shared with the
	// client. Two kinds of answer: "few" (8 instances) comes from the
	// packed table, which allocates nothing; s0000's round robin over 100
	// instances is built per query by the full handler (more than
	// maxVariants orders), whose garbage makes the Go GC mark the larger
	// heap: that ratio is measured and reported, not held to the bound.
	small := redistest.Start(t)
	writeScaleRegistry(t, small.Client(t), 1, perService)
	for _, c := range []*redis.Client{client, small.Client(t)} {
		writeFew(t, c)
	}
	ps := startRegdnsProc(t, small.URL(), map[string]string{"health.mode": "any", "cache.max_age": "10m"})
	for _, rr := range []*regdnsUnderTest{r, ps.client()} {
		rr.waitFor(t, "few.service.local.", dns.TypeSRV, 10*time.Second, func(m *dns.Msg) bool { return len(m.Answer) == 8 })
		rr.waitFor(t, "s0000.service.local.", dns.TypeA, 10*time.Second, func(m *dns.Msg) bool { return len(m.Answer) == 8 })
	}
	measure := func(pkts [][]byte) (big, small float64) {
		for range 3 {
			small = max(small, udpThroughput(t, ps.addr, pkts, 4, time.Second))
			big = max(big, udpThroughput(t, p.addr, pkts, 4, time.Second))
		}
		return big, small
	}
	bigFast, smallFast := measure([][]byte{packQuery(t, "few.service.local.", dns.TypeA, 0), packQuery(t, "few.service.local.", dns.TypeSRV, 1232)})
	bigFull, smallFull := measure([][]byte{packQuery(t, "s0000.service.local.", dns.TypeA, 0), packQuery(t, "s0000.service.local.", dns.TypeSRV, 1232)})
	t.Logf("cached qps, closed loop, 4 sockets, registry of 100 vs %d instances: packed answers %.0f vs %.0f (ratio %.2f); "+
		"full-handler answers (round robin over 100) %.0f vs %.0f (ratio %.2f)",
		services*perService+huge, smallFast, bigFast, bigFast/smallFast, smallFull, bigFull, bigFull/smallFull)
	// The slack is for measuring on a 2-core machine shared with the
	// client (and, in CI, with other test packages).
	require.GreaterOrEqual(t, bigFast, 0.8*smallFast, "packed answers' qps with 100k instances vs 100")

	rssEnd, peak := p.rss(t), p.peakRSS(t)
	require.LessOrEqual(t, rssEnd, int64(rssBound))
	p.requireAlive(t)
	t.Logf("RSS after the queries %d MiB, peak %d MiB", rssEnd/mib, peak/mib)
	loadtest.Record(t, (loadtest.Result{}).Line("R13", fmt.Sprintf(
		"%d services x %d + 1 x %d instances: cold sync %v, RSS %d MiB after sync, %d MiB after the queries (peak %d MiB); 10,000-instance SRV: TC within 512/1232 over UDP, %d octets over TCP; cached qps vs a 100-instance registry: packed answers %.2fx, full-handler answers %.2fx (binary; no load, so no counts)",
		services, perService, huge, took.Round(10*time.Millisecond), rssSynced/mib, rssEnd/mib, peak/mib, hugeTCP, bigFast/smallFast, bigFull/smallFull)))
}

// writeFew registers service "few": 8 instances, 10.250.0.1-8.
func writeFew(t *testing.T, c *redis.Client) {
	t.Helper()
	w := registry.NewWriter(c, registry.DefaultKeys())
	for i := range 8 {
		require.NoError(t, w.Register(context.Background(), "few", fmt.Sprintf("f%d", i), fmt.Sprintf("10.250.0.%d", i+1), 80, nil, 10*time.Minute))
	}
}

// withEDNSIf adds OPT with size when size is not 0.
func withEDNSIf(m *dns.Msg, size uint16) *dns.Msg {
	if size > 0 {
		m.SetEdns0(size, false)
	}
	return m
}

// ---------------------------------------------------------------------------
// R14: churn.

// freshness collects how long changes took to show in the answers.
type freshness struct {
	mu     sync.Mutex
	took   []time.Duration
	missed []string // changes not visible within the probe's deadline
}

func (f *freshness) add(d time.Duration, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		if len(f.missed) < 10 {
			f.missed = append(f.missed, err.Error())
		}
		return
	}
	f.took = append(f.took, d)
}

func (f *freshness) percentile(q float64) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.took) == 0 {
		return 0
	}
	l := slices.Clone(f.took)
	slices.Sort(l)
	return l[min(int(float64(len(l))*q), len(l)-1)]
}

// visibleWithin polls name over UDP every millisecond until ok holds, for
// at most within, and returns how long after since it held.
func visibleWithin(addr, name string, since time.Time, within time.Duration, ok func(*dns.Msg) bool) (time.Duration, error) {
	c := &dns.Client{Net: "udp", Timeout: 500 * time.Millisecond}
	q := newQuery(name, dns.TypeA)
	for time.Since(since) < within {
		if m, _, err := c.Exchange(q, addr); err == nil && ok(m) {
			return time.Since(since), nil
		}
		time.Sleep(time.Millisecond) // polling interval of a condition wait
	}
	return 0, fmt.Errorf("%s: not within %v", name, within)
}

// TestReliabilityR14Churn: instances of one service registered and
// deregistered at a steady rate (the reference way: MULTI/EXEC with
// PUBLISH) while the load asks the known services. Each sampled change is
// in the answers within 100 ms (p99), the load's answers stay correct,
// regdns uses less than one core, and when the churn stops its view equals
// the oracle within a second.
func TestReliabilityR14Churn(t *testing.T) {
	var (
		rate     = loadtest.Size(100, 1000) // registrations (and as many deregistrations) per second
		duration = loadtest.Size(8*time.Second, 60*time.Second)
		qps      = loadtest.Size(500, 2000)
		// keepLive: churn instances alive at a time; the oldest goes as a
		// new one comes.
		keepLive = 50
		// sampleEvery: one change in this many is timed end to end.
		sampleEvery   = loadtest.Size(4, 20)
		freshBound    = 100 * time.Millisecond
		convergeBound = time.Second
	)
	rs := redistest.Start(t)
	client := rs.Client(t)
	ctx := context.Background()
	fleet := loadtest.NewFleet(100, 3)
	w := registry.NewWriter(client, registry.DefaultKeys())
	require.NoError(t, fleet.Register(ctx, w))
	// An anchor keeps the churned service in existence throughout.
	require.NoError(t, w.Register(ctx, "churn", "anchor", "10.99.255.1", 80, nil, 10*time.Minute))
	p := startRegdnsProc(t, rs.URL(), map[string]string{"health.mode": "healthy_or_unknown", "cache.max_age": "10m"})
	r := p.client()
	waitSynced(t, r, "service.local.")
	oracle := &loadtest.Oracle{Client: client, Mode: registry.ModeHealthyOrUnknown}
	want, err := oracle.Want(ctx, fleet.Services)
	require.NoError(t, err)
	load := &loadtest.Load{Addr: p.addr, Rate: qps, Duration: duration, Names: fleet.Names(""), Expect: loadtest.NewExpect(want)}

	fresh := &freshness{}
	var probes sync.WaitGroup
	probeSlots := make(chan struct{}, 64) // probes in flight, bounded
	probeChange := func(name string, since time.Time, ok func(*dns.Msg) bool) {
		select {
		case probeSlots <- struct{}{}:
		default:
			return // too many in flight: this one is not sampled
		}
		probes.Add(1)
		go func() {
			defer probes.Done()
			defer func() { <-probeSlots }()
			fresh.add(visibleWithin(p.addr, name, since, 2*time.Second, ok))
		}()
	}

	cpuBefore, wallStart := p.cpu(t), time.Now()
	running := load.Start(ctx)
	t.Cleanup(func() { running.Stop() })
	var live []string
	registered, deregistered := 0, 0
	tick := time.NewTicker(10 * time.Millisecond)
	for start := time.Now(); time.Since(start) < duration; {
		<-tick.C
		for owed := int(time.Since(start).Seconds()*float64(rate)) - registered; owed > 0; owed-- {
			id := fmt.Sprintf("c%06d", registered)
			host := fmt.Sprintf("10.99.%d.%d", registered/250%250, registered%250+1)
			require.NoError(t, w.Register(ctx, "churn", id, host, 9000, nil, 10*time.Minute))
			registered++
			if registered%sampleEvery == 0 {
				probeChange(id+".churn.service.local.", time.Now(), func(m *dns.Msg) bool {
					return m.Rcode == dns.RcodeSuccess && slices.Equal(answerAddrs(m), []string{host})
				})
			}
			live = append(live, id)
			if len(live) > keepLive {
				gone := live[0]
				live = live[1:]
				require.NoError(t, w.Deregister(ctx, "churn", gone))
				deregistered++
				if deregistered%sampleEvery == 0 {
					probeChange(gone+".churn.service.local.", time.Now(), func(m *dns.Msg) bool { return m.Rcode == dns.RcodeNameError })
				}
			}
		}
	}
	tick.Stop()
	churnEnd := time.Now()
	cpu := p.cpu(t) - cpuBefore
	cores := cpu.Seconds() / churnEnd.Sub(wallStart).Seconds()
	res := running.Wait()
	probes.Wait()

	// After the churn, the view equals the oracle within a second.
	wantChurn, err := oracle.Expect(ctx, "churn")
	require.NoError(t, err)
	var got []string
	converged, ok := loadtest.Within(convergeBound, 5*time.Millisecond, func() bool {
		m, err := r.exchange("tcp", "churn.service.local.", dns.TypeSRV, 0)
		if err != nil {
			return false
		}
		got = loadtest.Records(m)
		return slices.Equal(got, wantChurn.SRV)
	})
	p.requireAlive(t)
	p50, p99 := fresh.percentile(0.5), fresh.percentile(0.99)
	t.Logf("churn: %d registrations and %d deregistrations in %v (%d/s each), %d sampled: freshness p50 %v, p99 %v; regdns CPU %.2f cores; converged %v after the churn stopped",
		registered, deregistered, churnEnd.Sub(wallStart).Round(time.Millisecond), rate, len(fresh.took), p50, p99, cores, converged.Round(time.Millisecond))
	t.Logf("load: %v", res)
	require.True(t, ok, "view equals the oracle within %v of the churn stopping: got %d records, want %d", convergeBound, len(got), len(wantChurn.SRV))
	require.Empty(t, fresh.missed, "changes never seen")
	require.NotEmpty(t, fresh.took)
	require.Less(t, p99, freshBound, "freshness p99")
	require.Less(t, cores, 1.0, "regdns CPU, cores on average")
	require.Zero(t, res.Failed(), "load: %v", res)
	loadtest.Record(t, res.Line("R14", fmt.Sprintf("churn: %d register + %d deregister/s for %v, %d qps: freshness p50 %s p99 %s (%d sampled), CPU %.2f cores, converged in %v (binary)",
		rate, rate, duration, qps, loadtest.FormatLatency(p50), loadtest.FormatLatency(p99), len(fresh.took), cores, converged.Round(time.Millisecond))))
}

// ---------------------------------------------------------------------------
// R15: random-subdomain flood.

// randomNames sends questions for random names in the zone at rate per
// second until ctx ends, and counts the replies by rcode.
type randomNames struct {
	sent    atomic.Int64
	byRcode [16]atomic.Int64
}

func (f *randomNames) run(ctx context.Context, c net.Conn, known []string, rate int) {
	defer c.Close()
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 4096)
		for {
			_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			n, err := c.Read(buf)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				continue
			}
			if n >= 4 {
				f.byRcode[buf[3]&0xF].Add(1)
			}
		}
	}()
	rng := rand.New(rand.NewPCG(15, 15))
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	label := func() string {
		b := make([]byte, 6+rng.IntN(10))
		for i := range b {
			b[i] = letters[rng.IntN(len(letters))]
		}
		return string(b)
	}
	qtypes := []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV}
	start := time.Now()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for sent := 0; ctx.Err() == nil; {
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
		for owed := int(time.Since(start).Seconds()*float64(rate)) - sent; owed > 0 && ctx.Err() == nil; owed-- {
			// Half random service names, half random labels under a
			// known service (a tag no instance has), as water-torture
			// floods vary them.
			name := label() + ".service.local."
			if sent%2 == 1 {
				name = label() + "." + known[rng.IntN(len(known))]
			}
			q := newQuery(name, qtypes[sent%len(qtypes)])
			q.Id = uint16(sent)
			if b, err := q.Pack(); err == nil {
				if _, err := c.Write(b); err == nil {
					f.sent.Add(1)
				}
			}
			sent++
		}
	}
	<-readDone
}

// TestReliabilityR15RandomSubdomainFlood: random names in the zone at a
// high rate, plus the normal load on the known services. Every random name
// is NXDOMAIN from the view's list of services: Redis sees no command per
// query (INFO commandstats), regdns's RSS stays within 50 MB of where it
// started, and the known names keep p99 < 5 ms.
func TestReliabilityR15RandomSubdomainFlood(t *testing.T) {
	var (
		floodRate = loadtest.Size(2000, 10_000)
		duration  = loadtest.Size(8*time.Second, 60*time.Second)
		qps       = loadtest.Size(500, 2000)
		rssBound  = int64(50 * mib)
		p99Bound  = 5 * time.Millisecond
	)
	rs := redistest.Start(t)
	client := rs.Client(t)
	ctx := context.Background()
	fleet := loadtest.NewFleet(100, 3)
	require.NoError(t, fleet.Register(ctx, registry.NewWriter(client, registry.DefaultKeys())))
	// No periodic full re-read during the test: any Redis read would be
	// the flood's.
	p := startRegdnsProc(t, rs.URL(), map[string]string{"cache.max_age": "10m"})
	r := p.client()
	waitSynced(t, r, "service.local.")
	oracle := &loadtest.Oracle{Client: client}
	want, err := oracle.Want(ctx, fleet.Services)
	require.NoError(t, err)
	// Warm up the answers the load asks, so RSS before is the serving
	// process's.
	warm := &loadtest.Load{Addr: p.addr, Rate: 1000, Duration: time.Second, Names: fleet.Names(""), Expect: loadtest.NewExpect(want)}
	require.Zero(t, warm.Run(ctx).Failed())
	rssBefore := p.rss(t)
	cmdsBefore := commandCounts(t, client)

	fctx, cancel := context.WithTimeout(ctx, duration)
	defer cancel()
	f := &randomNames{}
	conn, err := net.Dial("udp", p.addr)
	require.NoError(t, err)
	floodDone := make(chan struct{})
	go func() { defer close(floodDone); f.run(fctx, conn, fleet.Names(""), floodRate) }()
	load := &loadtest.Load{Addr: p.addr, Rate: qps, Duration: duration, Names: fleet.Names(""), Expect: loadtest.NewExpect(want)}
	res := load.Run(ctx)
	<-floodDone
	rssAfter := p.rss(t)
	cmdsAfter := commandCounts(t, client)
	p.requireAlive(t)

	// Redis commands during the flood: regdns's once-a-second PING and
	// this test's INFO only.
	perQuery := map[string]int{}
	for cmd, n := range cmdsAfter {
		if d := n - cmdsBefore[cmd]; d > 0 && cmd != "ping" && cmd != "info" {
			perQuery[cmd] = d
		}
	}
	nx := f.byRcode[dns.RcodeNameError].Load()
	t.Logf("random names: %d sent in %v, %d NXDOMAIN, %d other replies; Redis commands besides PING: %v; RSS %d -> %d KiB",
		f.sent.Load(), duration, nx, sumOthers(&f.byRcode, dns.RcodeNameError), perQuery, rssBefore>>10, rssAfter>>10)
	t.Logf("known names: %v", res)
	require.Empty(t, perQuery, "no Redis command per query")
	require.Zero(t, sumOthers(&f.byRcode, dns.RcodeNameError), "every random name is NXDOMAIN")
	require.Greater(t, nx, f.sent.Load()*9/10, "the flood is answered")
	require.Less(t, rssAfter-rssBefore, rssBound, "RSS growth")
	require.Zero(t, res.Failed(), "known names: %v", res)
	require.Less(t, res.P99, p99Bound, "known names p99")
	loadtest.Record(t, res.Line("R15", fmt.Sprintf("random-subdomain flood %d qps for %v (%d NXDOMAIN) + %d qps known names: 0 Redis commands per query, RSS %+d KiB (binary)",
		floodRate, duration, nx, qps, (rssAfter-rssBefore)>>10)))
}

// sumOthers adds the counts of every rcode but except.
func sumOthers(byRcode *[16]atomic.Int64, except int) int64 {
	var n int64
	for i := range byRcode {
		if i != except {
			n += byRcode[i].Load()
		}
	}
	return n
}
