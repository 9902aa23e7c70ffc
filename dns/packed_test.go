package dns

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/regdns/regdns/internal/balance"
	"github.com/regdns/regdns/registry"
)

// sortedRRs renders a section as sorted lower-case zone-file lines, so
// replies whose order was drawn differently compare equal. Case is folded
// because packed replies compress names against the question as asked, so
// an owner may take the asker's case: names compare case-insensitively.
func sortedRRs(rrs []dns.RR) []string {
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		if rr.Header().Rrtype != dns.TypeOPT {
			out = append(out, strings.ToLower(rr.String()))
		}
	}
	slices.Sort(out)
	return out
}

func packedFixture(t *testing.T, strategy balance.Strategy) *Handler {
	c := newTestCatalog(t)
	fillLookup(c)
	var many []registry.Instance
	for i := range 60 {
		many = append(many, inst(fmt.Sprintf("m%02d", i), fmt.Sprintf("10.5.0.%d", i+1), uint16(7000+i)))
	}
	c.Update("many", svc("many", many...))
	opts := testOptions()
	opts.Strategy = strategy
	return NewHandler(c.Catalog, opts)
}

// The fast path answers exactly what the full handler answers: same rcode,
// flags, question as asked, and the same records (in some order of the
// strategy), for every name shape, qtype, size class and case.
func TestFastReplyMatchesHandler(t *testing.T) {
	t.Parallel()
	for _, strategy := range []balance.Strategy{balance.RoundRobin, balance.Weighted, balance.Random} {
		h := packedFixture(t, strategy)
		names := []string{
			"user-service.service.local.", "USER-service.Service.LOCAL.", "_user-service._tcp.service.local.",
			"_dns-svc._udp.service.local.", "u1.user-service.service.local.", "U6.user-service.service.local.",
			"primary.db.service.local.", "db.service.local.", "empty.service.local.", "web.service.local.",
			"many.service.local.", "m07.many.service.local.", "nope.service.local.", "service.local.", "example.com.",
		}
		qtypes := []uint16{dns.TypeSRV, dns.TypeA, dns.TypeAAAA, dns.TypeTXT, dns.TypeMX, dns.TypeANY, dns.TypeCNAME}
		fast, checked := 0, 0
		out, key := make([]byte, 65535), make([]byte, 512)
		for _, name := range names {
			for _, qt := range qtypes {
				for _, edns := range []uint16{0, 1232, 4096} {
					for _, rd := range []bool{false, true} {
						q := new(dns.Msg)
						q.SetQuestion(name, qt)
						q.RecursionDesired = rd
						q.Id = 4242
						if edns > 0 {
							q.SetEdns0(edns, qt == dns.TypeA)
						}
						pkt, err := q.Pack()
						require.NoError(t, err)
						n := fastAfterFirst(h, pkt, out, key)
						checked++
						if n == 0 {
							continue
						}
						fast++
						got := new(dns.Msg)
						require.NoError(t, got.Unpack(out[:n]), "%s %s", name, dns.TypeToString[qt])
						want := h.reply(q, false, netip.Addr{})
						desc := fmt.Sprintf("%v %s %s edns=%d", strategy, name, dns.TypeToString[qt], edns)
						require.Equal(t, want.MsgHdr, got.MsgHdr, desc)
						require.Equal(t, q.Question, got.Question, desc)
						if want.Truncated || len(want.Answer) == h.opts.Load().MaxAnswers {
							// A cut answer keeps the subset its order put first.
							require.Len(t, got.Answer, len(want.Answer), desc)
						} else {
							require.Equal(t, sortedRRs(want.Answer), sortedRRs(got.Answer), desc)
							require.Equal(t, sortedRRs(want.Ns), sortedRRs(got.Ns), desc)
							require.Equal(t, sortedRRs(want.Extra), sortedRRs(got.Extra), desc)
						}
						require.Equal(t, want.IsEdns0() != nil, got.IsEdns0() != nil, desc)
						if o := got.IsEdns0(); o != nil {
							require.Equal(t, want.IsEdns0().String(), o.String(), desc)
						}
						if edns == 0 {
							require.LessOrEqual(t, n, 512, desc)
						} else {
							require.LessOrEqual(t, n, 1232, desc)
						}
					}
				}
			}
		}
		t.Logf("%v: %d of %d queries took the fast path", strategy, fast, checked)
		require.Greater(t, fast, checked/3)
	}
}

// Round-robin on the fast path rotates by one per response, like the
// handler, sharing its counter.
func TestFastReplyRoundRobin(t *testing.T) {
	t.Parallel()
	c := newTestCatalog(t)
	c.Update("rr", svc("rr", inst("a", "10.0.0.1", 80), inst("b", "10.0.0.2", 80), inst("c", "10.0.0.3", 80)))
	h := NewHandler(c.Catalog, testOptions())
	q := new(dns.Msg).SetQuestion("rr.service.local.", dns.TypeA)
	pkt, err := q.Pack()
	require.NoError(t, err)
	out, key := make([]byte, 512), make([]byte, 512)
	warm(h, q)
	var firsts []string
	for range 4 {
		n := h.fastReply(pkt, out, key)
		require.NotZero(t, n)
		m := new(dns.Msg)
		require.NoError(t, m.Unpack(out[:n]))
		firsts = append(firsts, m.Answer[0].(*dns.A).A.String())
	}
	require.Equal(t, firsts[0], firsts[3], "three addresses: the fourth answer starts where the first did")
	require.NotEqual(t, firsts[0], firsts[1])
	require.NotEqual(t, firsts[1], firsts[2])
}

// A change repacks the service, and the SOA serial of packed negative
// answers follows the catalog.
func TestFastReplyFollowsChanges(t *testing.T) {
	t.Parallel()
	c := newTestCatalog(t)
	c.Update("svc", svc("svc", inst("a", "10.0.0.1", 80)))
	h := NewHandler(c.Catalog, testOptions())
	ask := func(name string, qt uint16) *dns.Msg {
		pkt, err := new(dns.Msg).SetQuestion(name, qt).Pack()
		require.NoError(t, err)
		out := make([]byte, 512)
		n := fastAfterFirst(h, pkt, out, make([]byte, 512))
		require.NotZero(t, n, "%s fast", name)
		m := new(dns.Msg)
		require.NoError(t, m.Unpack(out[:n]))
		return m
	}
	require.Len(t, ask("svc.service.local.", dns.TypeA).Answer, 1)
	c.Update("svc", svc("svc", inst("a", "10.0.0.1", 80), inst("b", "10.0.0.2", 80)))
	require.Len(t, ask("svc.service.local.", dns.TypeA).Answer, 2)
	require.Len(t, ask("b.svc.service.local.", dns.TypeA).Answer, 1)
	c.Update("other", svc("other", inst("x", "10.0.0.3", 80)))
	nodata := ask("svc.service.local.", dns.TypeTXT)
	require.Equal(t, c.Serial(), nodata.Ns[0].(*dns.SOA).Serial)
	c.Update("svc", nil)
	pkt, _ := new(dns.Msg).SetQuestion("svc.service.local.", dns.TypeA).Pack()
	require.Zero(t, h.fastReply(pkt, make([]byte, 512), make([]byte, 512)), "gone: the full handler says NXDOMAIN")
}

func BenchmarkFastReply(b *testing.B) {
	h := packedFixture(&testing.T{}, balance.RoundRobin)
	for _, tc := range []struct {
		name string
		q    *dns.Msg
	}{
		{"SRV", new(dns.Msg).SetQuestion("user-service.service.local.", dns.TypeSRV)},
		{"A", new(dns.Msg).SetQuestion("user-service.service.local.", dns.TypeA)},
		{"A-edns", new(dns.Msg).SetQuestion("User-Service.service.local.", dns.TypeA).SetEdns0(1232, false)},
	} {
		pkt, _ := tc.q.Pack()
		out, key := make([]byte, 1232), make([]byte, 512)
		warm(h, tc.q)
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if h.fastReply(pkt, out, key) == 0 {
					b.Fatal("not answered by the fast path")
				}
			}
		})
	}
	b.Run("fallthrough-NXDOMAIN", func(b *testing.B) {
		q := new(dns.Msg).SetQuestion(strings.Repeat("x", 10)+".service.local.", dns.TypeA)
		b.ReportAllocs()
		for b.Loop() {
			_ = h.reply(q, false, netip.Addr{})
		}
	})
}

// Over TCP the packed answers are whole: no TC, every record.
func TestPackedReplyTCP(t *testing.T) {
	t.Parallel()
	h := packedFixture(t, balance.Weighted)
	out, key := make([]byte, dns.MaxMsgSize), make([]byte, 512)
	for _, edns := range []uint16{0, 512, 4096} {
		q := new(dns.Msg).SetQuestion("Many.service.local.", dns.TypeSRV)
		if edns > 0 {
			q.SetEdns0(edns, false)
		}
		pkt, err := q.Pack()
		require.NoError(t, err)
		warm(h, q)
		n := h.packedReply(pkt, out, key, true)
		require.NotZero(t, n)
		got := new(dns.Msg)
		require.NoError(t, got.Unpack(out[:n]))
		want := h.reply(q, true, netip.Addr{})
		require.False(t, got.Truncated)
		require.Equal(t, want.MsgHdr, got.MsgHdr)
		require.Equal(t, q.Question, got.Question)
		require.Equal(t, sortedRRs(want.Answer), sortedRRs(got.Answer))
		require.Len(t, got.Answer, 60)
		require.Equal(t, want.IsEdns0() != nil, got.IsEdns0() != nil)
	}
}

// warm answers each query once through the full handler and packs it, as
// the first query of a name does in the servers, so the next one takes the
// fast path.
func warm(h *Handler, qs ...*dns.Msg) {
	for _, q := range qs {
		h.learn(q, h.reply(q, false, netip.Addr{}))
	}
}

// fastAfterFirst is fastReply for a query asked once before.
func fastAfterFirst(h *Handler, pkt, out, key []byte) int {
	if n := h.fastReply(pkt, out, key); n > 0 {
		return n
	}
	q := new(dns.Msg)
	if q.Unpack(pkt) != nil {
		return 0
	}
	warm(h, q)
	return h.fastReply(pkt, out, key)
}

// The first query of a name takes the full handler and packs its answer;
// a registry change forgets what was packed for the service.
func TestPackedLazily(t *testing.T) {
	t.Parallel()
	c := newTestCatalog(t)
	c.Update("svc", svc("svc", inst("a", "10.0.0.1", 80)))
	h := NewHandler(c.Catalog, testOptions())
	q := new(dns.Msg).SetQuestion("svc.service.local.", dns.TypeA)
	pkt, err := q.Pack()
	require.NoError(t, err)
	out, key := make([]byte, 512), make([]byte, 512)
	require.Zero(t, h.fastReply(pkt, out, key), "nothing packed before the first query")
	warm(h, q)
	require.NotZero(t, h.fastReply(pkt, out, key))
	c.Update("svc", svc("svc", inst("a", "10.0.0.1", 80), inst("b", "10.0.0.2", 80)))
	require.Zero(t, h.fastReply(pkt, out, key), "a change forgets the service's answers")
	warm(h, q)
	n := fastAfterFirst(h, pkt, out, key)
	m := new(dns.Msg)
	require.NoError(t, m.Unpack(out[:n]))
	require.Len(t, m.Answer, 2)

	// An NXDOMAIN is never packed; the table stays bounded per service.
	nx := new(dns.Msg).SetQuestion("nope.service.local.", dns.TypeA)
	warm(h, nx)
	pkt, _ = nx.Pack()
	require.Zero(t, h.fastReply(pkt, out, key))
	for qt := range uint16(500) {
		warm(h, new(dns.Msg).SetQuestion("a.svc.service.local.", qt+1))
	}
	h.packed.mu.RLock()
	defer h.packed.mu.RUnlock()
	require.LessOrEqual(t, len(h.packed.m), 2+maxPackedPerService, "queries of many types at one name stay bounded")
}
