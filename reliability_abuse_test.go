package main

// Reliability tests of abuse (../shared/RELIABILITY-TESTS.md R16, R17, R18,
// R19b): a UDP flood from one source with response rate limiting on and
// off, slowloris TCP connections, a TCP connection flood, and mutated
// packets at a bounded rate. Each runs the regdns binary as deployed
// (startRegdnsProc), so its file descriptors, memory and survival are its
// own, and measures the clients that are not attacking.
//
// Sizes: CI runs seconds of each attack at a fraction of the table's
// counts (each test's abuseSizes says both); REGDNS_RELIABILITY=full runs
// the table's (1,000 slow connections, 1,000,000 mutated packets).

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
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
	"github.com/stretchr/testify/require"

	"github.com/regdns/regdns/internal/loadtest"
	"github.com/regdns/regdns/internal/redistest"
	"github.com/regdns/regdns/registry"
)

// abuseFixture runs redis-server with the conformance fixture (web: 3
// instances, wide: 60, mixed, tcponly; all healthy) and the regdns binary
// over it with settings, ready to answer.
func abuseFixture(t *testing.T, settings map[string]string) *regdnsProc {
	t.Helper()
	rs := redistest.Start(t)
	writeFixture(t, registry.NewWriter(rs.Client(t), registry.DefaultKeys()))
	p := startRegdnsProc(t, rs.URL(), settings)
	r := p.client()
	for _, name := range []string{"web", "wide"} {
		r.waitFor(t, name+".service.local.", dns.TypeA, 10*time.Second, func(m *dns.Msg) bool { return len(m.Answer) > 0 })
	}
	waitSynced(t, r, "service.local.")
	return p
}

// probe is a well-behaved client measured while an attack runs: one
// question at a time, at a fixed rate, over UDP (one socket, from local when
// set) or TCP (a new connection per question, as a resolver retrying after
// TC does; a connection the server closes before answering is tried once
// more on a new one, as RFC 7766 clients do, since a server under a
// connection flood may close it: the retry counts in the latency). Its
// outcomes go to a loadtest.Result.
type probe struct {
	network, addr string
	local         string // source IP ("" any)
	q             *dns.Msg
	ok            func(*dns.Msg) bool
	rate          int
	timeout       time.Duration

	mu      sync.Mutex
	res     loadtest.Result
	lat     []time.Duration
	retried int // TCP questions asked again after the server closed the connection
}

// closedByServer reports whether err is the server closing the connection
// before its answer (EOF, reset, or a broken pipe on the write).
func closedByServer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// run probes until ctx ends.
func (p *probe) run(ctx context.Context) {
	tick := time.NewTicker(time.Second / time.Duration(p.rate))
	defer tick.Stop()
	var udp net.Conn
	defer func() {
		if udp != nil {
			udp.Close()
		}
	}()
	var id uint16
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		id++
		q := p.q.Copy()
		q.Id = id
		start := time.Now()
		var m *dns.Msg
		var err error
		if p.network == "udp" {
			if udp == nil {
				udp, err = dialFrom("udp", p.local, p.addr)
			}
			if err == nil {
				m, err = exchangeOn(udp, false, q, p.timeout)
			}
		} else {
			for try := range 2 {
				var c net.Conn
				if c, err = dialFrom("tcp", p.local, p.addr); err == nil {
					m, err = exchangeOn(c, true, q, p.timeout)
					c.Close()
				}
				if try > 0 || !closedByServer(err) {
					break
				}
				p.mu.Lock()
				p.retried++
				p.mu.Unlock()
			}
		}
		p.record(m, err, time.Since(start))
	}
}

func (p *probe) record(m *dns.Msg, err error, took time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.res.Sent++
	switch {
	case err != nil:
		p.res.Timeouts++
		if len(p.res.Failures) < 10 {
			p.res.Failures = append(p.res.Failures, err.Error())
		}
		return
	case m.Rcode == dns.RcodeServerFailure:
		p.res.ServFail++
	case m.Rcode == dns.RcodeNameError:
		p.res.NXDomain++
	case m.Rcode != dns.RcodeSuccess:
		p.res.OtherRcode++
	case p.ok != nil && !p.ok(m):
		p.res.Wrong++
	default:
		p.res.Answered++
	}
	p.lat = append(p.lat, took)
}

// result returns the counts with the latency percentiles.
func (p *probe) result() loadtest.Result {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.res
	if len(p.lat) > 0 {
		l := slices.Clone(p.lat)
		slices.Sort(l)
		at := func(q float64) time.Duration { return l[min(int(float64(len(l))*q), len(l)-1)] }
		r.P50, r.P99, r.Max = at(0.5), at(0.99), l[len(l)-1]
	}
	return r
}

// dialFrom connects to addr from the IP local ("" lets the kernel choose).
func dialFrom(network, local, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: time.Second}
	if local != "" {
		ip := net.ParseIP(local)
		if network == "udp" {
			d.LocalAddr = &net.UDPAddr{IP: ip}
		} else {
			d.LocalAddr = &net.TCPAddr{IP: ip}
		}
	}
	return d.Dial(network, addr)
}

// exchangeOn sends q on c and reads until the reply with its ID comes or
// timeout passes.
func exchangeOn(c net.Conn, tcp bool, q *dns.Msg, timeout time.Duration) (*dns.Msg, error) {
	b, err := q.Pack()
	if err != nil {
		return nil, err
	}
	wc := &wireConn{Conn: c, tcp: tcp}
	deadline := time.Now().Add(timeout)
	_ = c.SetWriteDeadline(deadline)
	if err := wc.send(b); err != nil {
		return nil, err
	}
	for {
		reply, err := wc.recv(time.Until(deadline))
		if err != nil {
			return nil, err
		}
		m := new(dns.Msg)
		if m.Unpack(reply) == nil && m.Id == q.Id {
			return m, nil
		}
	}
}

// ---------------------------------------------------------------------------
// R17: slowloris.

// TestReliabilityR17Slowloris: connections that send a query one octet at a
// time, slower than the read timeout, and half-open ones that connect and
// send nothing, twice as many together as dns.max_tcp_connections, each
// reconnecting when the server drops it (on its next round, as slowloris
// tools restore their count). Normal UDP and TCP clients keep p99 < 50 ms; every slow
// connection is closed within dns.tcp_read_timeout; the process never
// holds more connections than dns.max_tcp_connections.
func TestReliabilityR17Slowloris(t *testing.T) {
	var (
		maxConns    = loadtest.Size(200, 1000)
		slow        = maxConns // one octet per slowEvery
		halfOpen    = maxConns // connect, send nothing
		duration    = loadtest.Size(5*time.Second, 30*time.Second)
		readTimeout = 500 * time.Millisecond
		slowEvery   = time.Second // slower than the read timeout: every slow query times out
		p99Bound    = 50 * time.Millisecond
		// closeSlack: time between the server's deadline passing and the
		// attacker seeing the FIN, on a machine the attack keeps busy.
		closeSlack = 250 * time.Millisecond
	)
	p := abuseFixture(t, map[string]string{
		"dns.max_tcp_connections": strconv.Itoa(maxConns),
		"dns.tcp_read_timeout":    readTimeout.String(),
		"dns.tcp_idle_timeout":    "1s",
	})
	baseFDs := p.fds(t)

	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		lifetime []time.Duration // of connections the server closed
		opened   atomic.Int64
	)
	query := tcpFrame(packQuery(t, "web.service.local.", dns.TypeA, 0))
	attacker := func(slowly bool) {
		defer wg.Done()
		// One connection attempt per slowEvery at most, as slowloris tools
		// restore their count on each round.
		pace := time.NewTicker(slowEvery)
		defer pace.Stop()
		for ctx.Err() == nil {
			select {
			case <-ctx.Done():
				return
			case <-pace.C:
			}
			c, err := net.DialTimeout("tcp", p.addr, time.Second)
			if err != nil {
				continue // the backlog is full: try again
			}
			opened.Add(1)
			start := time.Now()
			closed := false
			for i := 0; ctx.Err() == nil; i++ {
				if slowly && i < len(query)-1 { // never the last octet: the query never completes
					if _, err := c.Write(query[i : i+1]); err != nil {
						closed = true
						break
					}
				}
				_ = c.SetReadDeadline(time.Now().Add(slowEvery))
				var b [1]byte
				if _, err := c.Read(b[:]); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
					closed = true // EOF or reset: the server closed it
					break
				}
			}
			if closed {
				mu.Lock()
				lifetime = append(lifetime, time.Since(start))
				mu.Unlock()
			}
			c.Close()
		}
	}
	for range slow {
		wg.Add(1)
		go attacker(true)
	}
	for range halfOpen {
		wg.Add(1)
		go attacker(false)
	}

	// The clients that are not attacking: UDP and TCP, 50 qps each; TCP
	// asks the 60-instance SRV that does not fit UDP.
	udpProbe := &probe{network: "udp", addr: p.addr, q: newQuery("web.service.local.", dns.TypeA), rate: 50, timeout: time.Second,
		ok: func(m *dns.Msg) bool { return len(m.Answer) == 3 }}
	tcpProbe := &probe{network: "tcp", addr: p.addr, q: newQuery("wide.service.local.", dns.TypeSRV), rate: 50, timeout: time.Second,
		ok: func(m *dns.Msg) bool { return len(m.Answer) == 60 }}
	// fds of the process, sampled while the attack runs.
	maxFDs := 0
	wg.Add(3)
	go func() { defer wg.Done(); udpProbe.run(ctx) }()
	go func() { defer wg.Done(); tcpProbe.run(ctx) }()
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for ctx.Err() == nil {
			if n, err := p.fdCount(); err == nil && n > maxFDs {
				maxFDs = n
			}
			<-tick.C
		}
	}()
	wg.Wait()
	p.requireAlive(t)

	udp, tcp := udpProbe.result(), tcpProbe.result()
	mu.Lock()
	slices.Sort(lifetime)
	longest := lifetime[len(lifetime)-1]
	closedCount := len(lifetime)
	mu.Unlock()
	t.Logf("attack: %d slow + %d half-open connections kept up for %v (dns.max_tcp_connections %d, read timeout %v): %d opened, %d closed by the server, longest lived %v; process fds %d at most (%d before)",
		slow, halfOpen, duration, maxConns, readTimeout, opened.Load(), closedCount, longest.Round(time.Millisecond), maxFDs, baseFDs)
	t.Logf("UDP client: %v", udp)
	tcpProbe.mu.Lock()
	t.Logf("TCP client: %v; asked again after the server closed the connection: %d", tcp, tcpProbe.retried)
	tcpProbe.mu.Unlock()
	require.LessOrEqual(t, longest, readTimeout+closeSlack, "slow connections closed within dns.tcp_read_timeout")
	require.LessOrEqual(t, maxFDs, baseFDs+maxConns+2, "open connections bounded by dns.max_tcp_connections (+1 being refused)")
	require.GreaterOrEqual(t, udp.Answered, udp.Sent*99/100, "UDP client: %v", udp)
	require.Less(t, udp.P99, p99Bound, "UDP client p99")
	require.GreaterOrEqual(t, tcp.Answered, tcp.Sent*99/100, "TCP client: %v", tcp)
	require.Less(t, tcp.P99, p99Bound, "TCP client p99")
	res := udp
	res.Sent += tcp.Sent
	res.Answered += tcp.Answered
	res.Timeouts += tcp.Timeouts
	res.ServFail += tcp.ServFail
	res.P50, res.P99 = max(udp.P50, tcp.P50), max(udp.P99, tcp.P99)
	loadtest.Record(t, res.Line("R17", fmt.Sprintf("slowloris: %d slow + %d half-open TCP connections for %v, max_tcp_connections %d, read timeout %v; UDP + TCP clients 50 qps each (binary)",
		slow, halfOpen, duration, maxConns, readTimeout)))
}

// ---------------------------------------------------------------------------
// R18: TCP connection flood.

// TestReliabilityR18ConnectionFlood: twice dns.max_tcp_connections opened
// at once and held, first connections that send nothing, then connections
// that each asked one question and stay open. Connections stay bounded;
// the excess is closed at once, never left waiting: for silent ones the
// oldest give way (so a new client is still answered), answered ones are
// kept and a newcomer is closed. UDP answers as before throughout, and when
// the flood goes TCP answers again at once.
func TestReliabilityR18ConnectionFlood(t *testing.T) {
	var (
		maxConns = loadtest.Size(200, 1000)
		p99Bound = 50 * time.Millisecond
		// closedBound: how soon a connection over the bound is closed.
		closedBound = time.Second
		// duringFlood: UDP queries the probe must have sent while each
		// flood is held.
		duringFlood = 100
	)
	p := abuseFixture(t, map[string]string{
		"dns.max_tcp_connections": strconv.Itoa(maxConns),
		// Longer than the test: the held connections are not closed for
		// idleness while it counts them.
		"dns.tcp_read_timeout": "30s",
		"dns.tcp_idle_timeout": "30s",
	})
	baseFDs := p.fds(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	udpProbe := &probe{network: "udp", addr: p.addr, q: newQuery("web.service.local.", dns.TypeA), rate: 100, timeout: time.Second,
		ok: func(m *dns.Msg) bool { return len(m.Answer) == 3 }}
	probeDone := make(chan struct{})
	go func() { defer close(probeDone); udpProbe.run(ctx) }()
	webA := packQuery(t, "web.service.local.", dns.TypeA, 0)

	// flood opens n connections (each asking one question first when ask)
	// and returns them with a channel on which their readers report how long
	// after connecting the server closed them.
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	flood := func(n int, ask bool) <-chan time.Duration {
		closedAfter := make(chan time.Duration, n)
		for range n {
			c, err := net.DialTimeout("tcp", p.addr, time.Second)
			require.NoError(t, err)
			conns = append(conns, c)
			start := time.Now()
			wc := &wireConn{Conn: c, tcp: true}
			if ask {
				if wc.send(webA) != nil {
					closedAfter <- time.Since(start)
					continue
				}
			}
			go func() {
				for {
					_, err := wc.recv(30 * time.Second)
					if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed) {
						return // the test closed it
					}
					if err != nil {
						closedAfter <- time.Since(start) // EOF or reset: the server closed it
						return
					}
				}
			}()
		}
		return closedAfter
	}
	// waitClosed waits for n closes, each within closedBound of connecting.
	waitClosed := func(closedAfter <-chan time.Duration, n int) time.Duration {
		slowest := time.Duration(0)
		deadline := time.After(closedBound + 500*time.Millisecond)
		for i := 0; i < n; i++ {
			select {
			case d := <-closedAfter:
				slowest = max(slowest, d)
			case <-deadline:
				t.Fatalf("%d of %d connections over the bound closed within %v", i, n, closedBound)
			}
		}
		require.LessOrEqual(t, slowest, closedBound)
		return slowest
	}
	holdFor := func(what string) {
		n := udpProbe.result().Sent + duringFlood
		loadtest.WaitFor(t, 10*time.Second, 10*time.Millisecond, what, func() bool { return udpProbe.result().Sent >= n })
	}

	// 1. Silent connections: the oldest give way to the newest; a new
	// client is answered at once.
	slowestSilent := waitClosed(flood(2*maxConns, false), maxConns)
	fdsSilent := p.fds(t)
	require.LessOrEqual(t, fdsSilent, baseFDs+maxConns+1, "open connections bounded by dns.max_tcp_connections")
	m, err := askTCP(p.addr, newQuery("web.service.local.", dns.TypeA), time.Second)
	require.NoError(t, err, "a new client is answered: the oldest silent connection gives way")
	require.Len(t, m.Answer, 3)
	holdFor("UDP queries during the flood of silent connections")
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	require.Eventually(t, func() bool { return p.fds(t) <= baseFDs+2 }, 5*time.Second, 10*time.Millisecond, "connections released")

	// 2. Answered connections: kept; the newcomers over the bound are
	// closed at once, a new client too.
	answered := flood(maxConns, true)
	loadtest.WaitFor(t, 10*time.Second, 10*time.Millisecond, "held connections answered", func() bool {
		return p.fds(t) >= baseFDs+maxConns
	})
	slowestBusy := waitClosed(flood(maxConns, false), maxConns)
	select {
	case d := <-answered:
		t.Fatalf("an answered connection was closed %v after connecting", d)
	default:
	}
	fdsBusy := p.fds(t)
	require.LessOrEqual(t, fdsBusy, baseFDs+maxConns+1)
	_, err = askTCP(p.addr, newQuery("web.service.local.", dns.TypeA), time.Second)
	require.Error(t, err, "every slot holds an answered client: a newcomer is closed, not queued")
	holdFor("UDP queries during the flood of answered connections")

	// The flood goes; TCP answers again at once.
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	var recovered time.Duration
	start := time.Now()
	require.Eventually(t, func() bool {
		m, err := askTCP(p.addr, newQuery("web.service.local.", dns.TypeA), time.Second)
		recovered = time.Since(start)
		return err == nil && len(m.Answer) == 3
	}, 5*time.Second, 5*time.Millisecond)
	require.Less(t, recovered, time.Second, "TCP answers again within a second of the flood going")
	require.Eventually(t, func() bool { return p.fds(t) <= baseFDs+2 }, 5*time.Second, 10*time.Millisecond, "connections released")
	cancel()
	<-probeDone
	udp := udpProbe.result()
	t.Logf("2 x %d connections (bound %d): silent ones: %d closed, the slowest %v after connecting, fds %d; answered ones: %d newcomers closed, the slowest after %v, fds %d (before %d); TCP again after %v; UDP client: %v",
		maxConns, maxConns, maxConns, slowestSilent.Round(time.Millisecond), fdsSilent, maxConns, slowestBusy.Round(time.Millisecond), fdsBusy, baseFDs, recovered.Round(time.Millisecond), udp)
	require.GreaterOrEqual(t, udp.Answered, udp.Sent*99/100, "UDP unaffected: %v", udp)
	require.Less(t, udp.P99, p99Bound, "UDP p99")
	p.requireAlive(t)
	loadtest.Record(t, udp.Line("R18", fmt.Sprintf("TCP connection flood, 2 x max_tcp_connections (%d) held, silent then answered: excess closed within %v, TCP back within %v; UDP client 100 qps (binary)",
		maxConns, max(slowestSilent, slowestBusy).Round(time.Millisecond), recovered.Round(time.Millisecond))))
}

// askTCP sends q on a new TCP connection.
func askTCP(addr string, q *dns.Msg, timeout time.Duration) (*dns.Msg, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return exchangeOn(c, true, q, timeout)
}

// ---------------------------------------------------------------------------
// R19b: mutated packets, black box.

// fuzzSeeds reads the packets of dns/testdata/fuzz/FuzzServeRaw, the corpus
// of the raw-packet fuzzer (one `go test fuzz v1` file per packet).
func fuzzSeeds(t *testing.T) [][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("dns", "testdata", "fuzz", "FuzzServeRaw", "*"))
	require.NoError(t, err)
	var seeds [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		for line := range strings.SplitSeq(string(b), "\n") {
			if q, ok := strings.CutPrefix(line, "[]byte("); ok {
				s, err := strconv.Unquote(strings.TrimSuffix(q, ")"))
				require.NoError(t, err, "%s", f)
				seeds = append(seeds, []byte(s))
			}
		}
	}
	require.NotEmpty(t, seeds)
	return seeds
}

// mutate returns a copy of seed with one to four random edits: a bit
// flipped, an octet replaced, inserted or deleted, a tail cut, a block
// duplicated, a compression pointer planted.
func mutate(rng *rand.Rand, seed []byte) []byte {
	b := slices.Clone(seed)
	for range 1 + rng.IntN(4) {
		if len(b) == 0 {
			b = append(b, byte(rng.IntN(256)))
			continue
		}
		i := rng.IntN(len(b))
		switch rng.IntN(7) {
		case 0:
			b[i] ^= 1 << rng.IntN(8)
		case 1:
			b[i] = byte(rng.IntN(256))
		case 2:
			b = slices.Insert(b, i, byte(rng.IntN(256)))
		case 3:
			b = slices.Delete(b, i, i+1)
		case 4:
			b = b[:i]
		case 5:
			j := i + rng.IntN(len(b)-i)
			b = slices.Insert(b, j, b[i:j]...)
		case 6:
			if i+1 < len(b) {
				b[i], b[i+1] = 0xC0|byte(rng.IntN(4)), byte(rng.IntN(256))
			}
		}
	}
	return b
}

// replyLimit is the largest reply allowed to pkt over UDP: 512 octets,
// or the advertised size capped at dns.max_udp_size when the query parses
// with an OPT record.
func replyLimit(pkt []byte, maxUDP int) int {
	m := new(dns.Msg)
	if m.Unpack(pkt) != nil {
		return dns.MinMsgSize
	}
	if opt := m.IsEdns0(); opt != nil {
		return max(dns.MinMsgSize, min(int(opt.UDPSize()), maxUDP))
	}
	return dns.MinMsgSize
}

// fuzzCheck checks the replies of one stream of mutated packets: each must
// parse, have QR set and the ID of a packet sent on the stream, and fit.
type fuzzCheck struct {
	mu      sync.Mutex
	limit   map[uint16]int // by ID: the size allowed to its reply
	sent    int
	replies int
	bad     []string
}

func (f *fuzzCheck) sentPkt(id uint16, limit int) {
	f.mu.Lock()
	f.limit[id] = limit
	f.sent++
	f.mu.Unlock()
}

func (f *fuzzCheck) reply(b []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replies++
	bad := func(format string, args ...any) {
		if len(f.bad) < 20 {
			f.bad = append(f.bad, fmt.Sprintf(format, args...)+fmt.Sprintf(": % x", b[:min(len(b), 64)]))
		}
	}
	if len(b) < 12 {
		bad("reply of %d octets", len(b))
		return
	}
	id := binary.BigEndian.Uint16(b)
	limit, ok := f.limit[id]
	switch {
	case !ok:
		bad("reply with an ID %#04x no query had", id)
	case b[2]&0x80 == 0:
		bad("reply without QR")
	case len(b) > limit:
		bad("reply of %d octets, limit %d", len(b), limit)
	}
	if err := new(dns.Msg).Unpack(b); err != nil {
		bad("reply does not parse: %v", err)
	}
}

// TestReliabilityR19bMutatedPackets sends packets mutated from the raw
// fuzzer's corpus over UDP and TCP at a bounded rate. No crash, no
// recovered panic; every reply is a response with the query's ID, within
// 512 octets without EDNS; the server answers SOA afterwards; RSS flat.
func TestReliabilityR19bMutatedPackets(t *testing.T) {
	var (
		total = loadtest.Size(50_000, 1_000_000)
		rate  = 5000 // packets per second, UDP and TCP together
		// tcpShare of the packets go over TCP.
		tcpShare = 5
		// rssSlack: RSS growth allowed (the process's own, not the test's).
		rssSlack = int64(16 * mib)
	)
	p := abuseFixture(t, nil)
	r := p.client()
	// Warm up: every path once, so RSS before is the serving process's.
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{"web.service.local.", dns.TypeA}, {"wide.service.local.", dns.TypeSRV}, {"service.local.", dns.TypeSOA}, {"nope.service.local.", dns.TypeA}} {
		r.query(t, "udp", q.name, q.qtype, 0)
		r.query(t, "tcp", q.name, q.qtype, 1232)
	}
	rssBefore := p.rss(t)
	seeds := fuzzSeeds(t)
	rng := rand.New(rand.NewPCG(19, 2))
	// Mutations are drawn up front (deterministic for the seed), sent by
	// two goroutines.
	udpCheck := &fuzzCheck{limit: map[uint16]int{}}
	tcpCheck := &fuzzCheck{limit: map[uint16]int{}}

	udp, err := net.Dial("udp", p.addr)
	require.NoError(t, err)
	defer udp.Close()
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		buf := make([]byte, 65535)
		for {
			_ = udp.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, err := udp.Read(buf)
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed) {
					return // quiet for 2 s after the last packet: done
				}
				continue // ICMP-induced errors on a connected UDP socket
			}
			udpCheck.reply(slices.Clone(buf[:n]))
		}
	}()

	// TCP: one connection at a time, replies read by a goroutine; a
	// connection the server closes (garbage it will not frame) is replaced.
	type tcpConn struct {
		c    net.Conn
		done chan struct{}
	}
	openTCP := func() tcpConn {
		c, err := net.DialTimeout("tcp", p.addr, time.Second)
		require.NoError(t, err)
		tc := tcpConn{c: c, done: make(chan struct{})}
		go func() {
			defer close(tc.done)
			wc := &wireConn{Conn: c, tcp: true}
			for {
				b, err := wc.recv(10 * time.Second)
				if err != nil {
					return
				}
				tcpCheck.reply(b)
			}
		}()
		return tc
	}
	tcp := openTCP()
	tcpConns := 1

	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var id uint16
	for sent := 0; sent < total; {
		<-tick.C
		owed := min(int(time.Since(start).Seconds()*float64(rate))-sent, total-sent)
		for ; owed > 0; owed-- {
			pkt := mutate(rng, seeds[rng.IntN(len(seeds))])
			sent++
			if len(pkt) >= 2 {
				id++
				binary.BigEndian.PutUint16(pkt, id)
			}
			if sent%tcpShare == 0 {
				if len(pkt) >= 2 {
					tcpCheck.sentPkt(id, dns.MaxMsgSize)
				}
				if err := (&wireConn{Conn: tcp.c, tcp: true}).send(pkt); err != nil {
					tcp.c.Close()
					<-tcp.done
					tcp = openTCP()
					tcpConns++
				}
				continue
			}
			if len(pkt) >= 2 {
				udpCheck.sentPkt(id, replyLimit(pkt, 1232))
			}
			_, _ = udp.Write(pkt)
		}
	}
	took := time.Since(start)
	// Let the last replies come, then close.
	require.Eventually(t, func() bool {
		select {
		case <-readerDone:
			return true
		default:
			return false
		}
	}, 10*time.Second, 10*time.Millisecond)
	tcp.c.Close()
	<-tcp.done

	p.requireAlive(t)
	soa := r.query(t, "udp", "service.local.", dns.TypeSOA, 0)
	require.Equal(t, dns.RcodeSuccess, soa.Rcode)
	require.Len(t, soa.Answer, 1)
	soa = r.query(t, "tcp", "service.local.", dns.TypeSOA, 0)
	require.Len(t, soa.Answer, 1)
	rssAfter := p.rss(t)
	t.Logf("%d mutated packets in %v (%d UDP, %d TCP over %d connections): %d UDP and %d TCP replies; RSS %d -> %d KiB",
		total, took.Round(time.Millisecond), udpCheck.sent, tcpCheck.sent, tcpConns, udpCheck.replies, tcpCheck.replies, rssBefore>>10, rssAfter>>10)
	require.Empty(t, udpCheck.bad, "UDP replies")
	require.Empty(t, tcpCheck.bad, "TCP replies")
	require.Positive(t, udpCheck.replies)
	require.Positive(t, tcpCheck.replies)
	require.LessOrEqual(t, rssAfter, rssBefore+rssSlack, "RSS flat")
	// Not a load test: the line says what was sent and answered.
	res := loadtest.Result{Sent: udpCheck.sent + tcpCheck.sent, Answered: udpCheck.replies + tcpCheck.replies}
	loadtest.Record(t, res.Line("R19b", fmt.Sprintf("%d mutated packets (corpus of FuzzServeRaw) at %d pps, 1 in %d over TCP: 0 crashes, 0 panics, every reply QR=1 with the query's ID and within its size (answered = replies; silence is allowed); RSS %+d KiB (binary)",
		total, rate, tcpShare, (rssAfter-rssBefore)>>10)))
}

// ---------------------------------------------------------------------------
// R16: UDP flood from one source.

// flood sends q from local to addr at rate packets per second until ctx
// ends, and counts the replies: full ones, and truncated ones (slips).
type flood struct {
	sent, full, slipped, other atomic.Int64
	sending                    time.Duration // how long it sent, once run returns
}

func (f *flood) run(ctx context.Context, c net.Conn, q []byte, rate int) {
	defer c.Close()
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 4096)
		for {
			_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			n, err := c.Read(buf)
			if err != nil {
				if ctx.Err() != nil && errors.Is(err, os.ErrDeadlineExceeded) {
					return
				}
				continue
			}
			m := new(dns.Msg)
			switch {
			case m.Unpack(buf[:n]) != nil:
				f.other.Add(1)
			case m.Truncated && len(m.Answer) == 0:
				f.slipped.Add(1)
			case !m.Truncated && len(m.Answer) > 0:
				f.full.Add(1)
			default:
				f.other.Add(1)
			}
		}
	}()
	pkt := slices.Clone(q)
	start := time.Now()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for sent := 0; ctx.Err() == nil; {
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
		for owed := int(time.Since(start).Seconds()*float64(rate)) - sent; owed > 0 && ctx.Err() == nil; owed-- {
			binary.BigEndian.PutUint16(pkt, uint16(sent))
			if _, err := c.Write(pkt); err == nil {
				f.sent.Add(1)
			}
			sent++
		}
	}
	f.sending = time.Since(start)
	<-readDone
}

// TestReliabilityR16UDPFloodOneSource: a flood from 127.0.0.2 while a normal
// client on 127.0.0.3 asks at its usual pace. With RRL on, the normal
// client is answered (>= 99%) and the flooding source gets its configured
// rate of answers plus one truncated reply in every dns.rrl.slip of the
// rest; with RRL off, regdns survives the flood with flat memory.
func TestReliabilityR16UDPFloodOneSource(t *testing.T) {
	const (
		floodRate = 10_000 // packets per second from 127.0.0.2
		rrlRate   = 100    // dns.rrl.rate: responses per second per prefix
		slip      = 2
		normalQPS = 50 // the normal client, under rrlRate
	)
	duration := loadtest.Size(3*time.Second, 30*time.Second)
	// 127.0.0.2 and 127.0.0.3 share a /24, the default prefix: RRL would
	// count them as one client. /32 tells them apart here.
	settings := map[string]string{"dns.rrl.ipv4_prefix": "32", "dns.rrl.slip": strconv.Itoa(slip)}
	for _, rrl := range []bool{true, false} {
		name := "RRL off"
		if rrl {
			name = "RRL on"
			settings["dns.rrl.rate"] = strconv.Itoa(rrlRate)
		} else {
			settings["dns.rrl.rate"] = "0"
		}
		t.Run(name, func(t *testing.T) {
			p := abuseFixture(t, settings)
			rssBefore := p.rss(t)
			ctx, cancel := context.WithTimeout(context.Background(), duration)
			defer cancel()
			normal := &probe{network: "udp", addr: p.addr, local: "127.0.0.3", q: newQuery("web.service.local.", dns.TypeA),
				rate: normalQPS, timeout: time.Second, ok: func(m *dns.Msg) bool { return len(m.Answer) == 3 && !m.Truncated }}
			f := &flood{}
			floodConn, err := dialFrom("udp", "127.0.0.2", p.addr)
			require.NoError(t, err)
			floodQuery := packQuery(t, "web.service.local.", dns.TypeA, 0)
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); normal.run(ctx) }()
			go func() { defer wg.Done(); f.run(ctx, floodConn, floodQuery, floodRate) }()
			wg.Wait()
			elapsed := f.sending
			p.requireAlive(t)
			res := normal.result()
			sent, full, slipped := f.sent.Load(), f.full.Load(), f.slipped.Load()
			rssAfter := p.rss(t)
			t.Logf("%s: flood from 127.0.0.2 for %v: %d sent, %d answered, %d truncated (slip), %d other; RSS %d -> %d KiB",
				name, elapsed.Round(time.Millisecond), sent, full, slipped, f.other.Load(), rssBefore>>10, rssAfter>>10)
			t.Logf("%s: normal client on 127.0.0.3: %v", name, res)
			require.Zero(t, f.other.Load())
			require.LessOrEqual(t, rssAfter, rssBefore+int64(16*mib), "RSS flat")
			if !rrl {
				loadtest.Record(t, res.Line("R16", fmt.Sprintf("UDP flood %d pps from 127.0.0.2 for %v, RRL off: %d of %d flood queries answered, no crash, RSS %+d KiB; normal client 127.0.0.3 %d qps (binary)",
					floodRate, duration, full, sent, (rssAfter-rssBefore)>>10, normalQPS)))
				return
			}
			// The normal client is answered.
			require.GreaterOrEqual(t, res.Answered, res.Sent*99/100, "normal client: %v", res)
			// The flooding source: its rate (plus the burst, = rate) in
			// full answers, then 1 in slip of the rest truncated.
			allowed := float64(rrlRate)*elapsed.Seconds() + rrlRate
			require.LessOrEqual(t, float64(full), allowed*1.1, "answers to the flooding source")
			require.GreaterOrEqual(t, float64(full), allowed*0.8, "answers to the flooding source")
			limited := float64(sent - full)
			require.InDelta(t, limited/slip, float64(slipped), limited/slip*0.1+10, "every %dth limited response truncated", slip)
			loadtest.Record(t, res.Line("R16", fmt.Sprintf("UDP flood %d pps from 127.0.0.2 for %v, RRL %d/s slip %d (/32): flood got %d answers + %d TC of %d; normal client 127.0.0.3 %d qps (binary)",
				floodRate, duration, rrlRate, slip, full, slipped, sent, normalQPS)))
		})
	}
}
