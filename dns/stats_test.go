package dns

import (
	"bytes"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/ipv4"

	"github.com/regdns/regdns/internal/balance"
	"github.com/regdns/regdns/registry"
)

// queryCounts indexes a snapshot's counts by "transport qtype rcode path".
func queryCounts(s StatsSnapshot) map[string]uint64 {
	out := map[string]uint64{}
	for _, q := range s.Queries {
		path := "full"
		if q.Fast {
			path = "fast"
		}
		out[q.Transport+" "+q.Qtype+" "+q.Rcode+" "+path] += q.N
	}
	return out
}

// udpBatch answers the questions as one UDP batch of w, as the socket loop
// does, and says it took d.
func answerBatch(t *testing.T, w *batchWriter, d time.Duration, qs ...*dns.Msg) []ipv4.Message {
	t.Helper()
	from := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 5353}
	var out []ipv4.Message
	for _, q := range qs {
		pkt, err := q.Pack()
		require.NoError(t, err)
		buf := make([]byte, dns.MaxMsgSize)
		if n := w.answer(pkt, buf, from); n > 0 {
			out = append(out, ipv4.Message{Buffers: [][]byte{buf[:n]}, Addr: from})
		}
	}
	w.batchDone(out, d)
	return out
}

func TestStatsCountUDPBatches(t *testing.T) {
	t.Parallel()
	h := packedFixture(t, balance.RoundRobin)
	warm(h, new(dns.Msg).SetQuestion("user-service.service.local.", dns.TypeA),
		new(dns.Msg).SetQuestion("user-service.service.local.", dns.TypeSRV))
	w := newBenchWriter(h)
	out := answerBatch(t, w, 3*time.Millisecond,
		new(dns.Msg).SetQuestion("user-service.service.local.", dns.TypeA),                       // packed
		new(dns.Msg).SetQuestion("user-service.service.local.", dns.TypeA).SetEdns0(1232, false), // packed, OPT after the question
		new(dns.Msg).SetQuestion("USER-service.service.local.", dns.TypeSRV),                     // packed, any case
		new(dns.Msg).SetQuestion("nope.service.local.", dns.TypeA),                               // full: NXDOMAIN
		new(dns.Msg).SetQuestion("example.com.", dns.TypeMX),                                     // full: REFUSED
		&dns.Msg{MsgHdr: dns.MsgHdr{Id: 1}},                                                      // no question: FORMERR
	)
	require.Len(t, out, 6)
	answerBatch(t, w, 20*time.Microsecond, new(dns.Msg).SetQuestion("service.local.", dns.TypeSOA))

	s := h.Stats().Snapshot()
	require.Equal(t, map[string]uint64{
		"udp A NOERROR fast":     2,
		"udp SRV NOERROR fast":   1,
		"udp A NXDOMAIN full":    1,
		"udp other REFUSED full": 1,
		"udp other FORMERR full": 1,
		"udp SOA NOERROR full":   1,
	}, queryCounts(s))
	require.EqualValues(t, 3, s.FastPath)
	require.EqualValues(t, 4, s.FullPath)

	// Every reply of a batch took the batch's time.
	lat := s.Latency["udp"]
	require.EqualValues(t, 7, lat.Count)
	require.Equal(t, 6*3*time.Millisecond+20*time.Microsecond, lat.Sum)
	require.Len(t, lat.Counts, len(lat.Bounds)+1)
	require.EqualValues(t, 1, lat.Counts[1], "20µs: the 25µs bucket")
	require.EqualValues(t, 6, lat.Counts[8], "3ms: the 5ms bucket")
	require.Equal(t, 5*time.Millisecond, lat.Bounds[8])
	require.Zero(t, s.Latency["tcp"].Count)
}

func TestStatsCountTCPAndPanics(t *testing.T) {
	t.Parallel()
	h := packedFixture(t, balance.RoundRobin)
	warm(h, new(dns.Msg).SetQuestion("user-service.service.local.", dns.TypeSRV))
	tcp := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}
	for _, q := range []*dns.Msg{
		new(dns.Msg).SetQuestion("user-service.service.local.", dns.TypeSRV), // packed
		new(dns.Msg).SetQuestion("nope.service.local.", dns.TypeAAAA),        // full
	} {
		h.ServeDNS(&recorder{local: tcp}, q)
	}
	s := h.Stats().Snapshot()
	require.Equal(t, map[string]uint64{"tcp SRV NOERROR fast": 1, "tcp AAAA NXDOMAIN full": 1}, queryCounts(s))
	require.EqualValues(t, 2, s.Latency["tcp"].Count)
	require.Positive(t, s.Latency["tcp"].Sum)

	// A panic is a SERVFAIL reply, counted (over UDP here: the packed TCP
	// answer would not draw from the panicking source).
	c := newTestCatalog(t)
	c.Update("w", svc("w", inst("a", "10.0.0.1", 1), inst("b", "10.0.0.2", 1)))
	opts := testOptions()
	opts.Strategy, opts.Rand = balance.Weighted, panicRand{}
	ph := NewHandler(c.Catalog, opts)
	ph.ServeDNS(&recorder{}, new(dns.Msg).SetQuestion("w.service.local.", dns.TypeSRV))
	require.Equal(t, map[string]uint64{"udp SRV SERVFAIL full": 1}, queryCounts(ph.Stats().Snapshot()))
}

// Counting is safe from many goroutines, as UDP sockets and TCP
// connections count at once.
func TestStatsConcurrent(t *testing.T) {
	t.Parallel()
	h := packedFixture(t, balance.RoundRobin)
	warm(h, new(dns.Msg).SetQuestion("user-service.service.local.", dns.TypeA))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			w := newBenchWriter(h)
			for range 50 {
				answerBatch(t, w, time.Microsecond, new(dns.Msg).SetQuestion("user-service.service.local.", dns.TypeA))
				h.ServeDNS(&recorder{}, new(dns.Msg).SetQuestion("nope.service.local.", dns.TypeA))
				_ = h.Stats().Snapshot()
			}
		})
	}
	wg.Wait()
	s := h.Stats().Snapshot()
	require.EqualValues(t, 400, s.FastPath)
	require.EqualValues(t, 400, s.FullPath)
	require.EqualValues(t, 800, s.Latency["udp"].Count)
}

func TestQueryLogSamplesByCount(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	var mu sync.Mutex
	c := NewCatalog(func() bool { return true }, zerolog.New(zerolog.SyncWriter(&lockedWriter{&mu, &logs})))
	c.Update("web", svc("web", inst("a", "10.0.0.1", 80)))
	opts := testOptions()
	opts.QueryLog = 0.5 // every second query
	h := NewHandler(c, opts)
	w := newBenchWriter(h)
	q := new(dns.Msg).SetQuestion("Web.service.local.", dns.TypeA)
	warm(h, q)
	answerBatch(t, w, time.Millisecond, q, q, q, new(dns.Msg).SetQuestion("nope.service.local.", dns.TypeTXT))
	h.ServeDNS(&recorder{local: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}, q)
	h.ServeDNS(&recorder{local: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}, q)

	mu.Lock()
	lines := bytes.Split(bytes.TrimSpace(logs.Bytes()), []byte("\n"))
	mu.Unlock()
	require.Len(t, lines, 3, "two of four UDP queries, one of two TCP ones:\n%s", logs.String())
	require.Contains(t, string(lines[0]), `"client":"192.0.2.7","qname":"Web.service.local.","qtype":"A","rcode":"NOERROR","path":"fast","transport":"udp"`)
	require.Contains(t, string(lines[1]), `"qname":"nope.service.local.","qtype":"TXT","rcode":"NXDOMAIN","path":"full","transport":"udp"`)
	require.Contains(t, string(lines[2]), `"client":"192.0.2.1","qname":"Web.service.local.","qtype":"A","rcode":"NOERROR","path":"fast","transport":"tcp"`)
	require.Contains(t, string(lines[2]), `"message":"query"`)

	// Off: nothing sampled, nothing logged.
	require.Equal(t, queryLog{}, newQueryLog(0))
	require.EqualValues(t, 1, newQueryLog(1).every)
	require.EqualValues(t, 1, newQueryLog(7).every, "above 1 is every query")
	require.EqualValues(t, 100, newQueryLog(0.01).every)
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestWireQtype(t *testing.T) {
	t.Parallel()
	pkt, err := new(dns.Msg).SetQuestion("a.b.", dns.TypeSRV).Pack()
	require.NoError(t, err)
	require.Equal(t, dns.TypeSRV, wireQtype(pkt))
	for name, b := range map[string][]byte{
		"short":       pkt[:11],
		"cut name":    pkt[:14],
		"cut qtype":   pkt[:len(pkt)-3],
		"no question": append([]byte{0, 1, 0x81, 0, 0, 0}, make([]byte, 6)...),
		"pointer":     append(append([]byte{}, pkt[:12]...), 0xC0, 12, 0, 1, 0, 1),
	} {
		require.Zero(t, wireQtype(b), name)
	}
}

func TestExplain(t *testing.T) {
	t.Parallel()
	c := newTestCatalog(t)
	unhealthy := inst("x1", "10.0.0.3", 80)
	unhealthy.Health.Status = registry.StatusUnhealthy
	c.Update("Web", svcServing("Web", []registry.Instance{
		inst("a1", "10.0.0.1", 80), inst("A1", "10.0.0.2", 80), unhealthy, inst("bad.id", "10.0.0.4", 80),
	}, []string{"x1"}))
	c.Update("web", svc("web", inst("z", "10.0.0.9", 80))) // "Web" sorts first: it owns the label
	h := NewHandler(c.Catalog, testOptions())

	_, ok := h.Explain("other.zone.", "web")
	require.False(t, ok)
	got, ok := h.Explain("SERVICE.local", "web")
	require.True(t, ok)
	require.False(t, got.Served)
	require.Contains(t, got.Reason, "differs only in case")
	got, _ = h.Explain("service.local.", "not a label")
	require.Equal(t, ServiceStatus{Reason: "service name is not a DNS label"}, got)
	got, _ = h.Explain("service.local.", "gone")
	require.False(t, got.Served)

	got, ok = h.Explain("service.local.", "Web")
	require.True(t, ok)
	require.True(t, got.Served)
	require.Equal(t, []InstanceStatus{
		{ID: "A1", Served: true, Reason: "health healthy is served in this health mode"},
		{ID: "a1", Served: false, Reason: "another instance id differing only in case owns its name"},
		{ID: "bad.id", Served: false, Reason: "instance id is not a DNS label"},
		{ID: "x1", Served: false, Reason: "unhealthy"},
	}, got.Instances)
}
