package dns

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"

	"github.com/regdns/regdns/internal/balance"
	"github.com/regdns/regdns/registry"
)

// FuzzServeRaw feeds arbitrary bytes to the query path, as they arrive from
// a socket: unpacked and answered by Handler.reply for UDP and TCP, written
// by ServeDNS to a fake connection, and answered by the batched UDP server's
// own raw path (packed fast path, then the full one). Nothing may panic, and
// every reply must pack, be a response with the query's ID, echo a single
// question, and fit its transport: 512 octets over UDP without EDNS, the
// advertised size (capped at MaxUDPSize) with it. The corpus is
// testdata/fuzz/FuzzServeRaw; CI fuzzes for a bounded time (scripts/test.sh).
func FuzzServeRaw(f *testing.F) {
	for _, seed := range serveRawSeeds(f) {
		f.Add(seed.pkt)
	}
	panics := new(panicDetector)
	handlers := fuzzHandlers(f, panics)
	f.Fuzz(func(t *testing.T, raw []byte) {
		before := panics.n.Load()
		q := new(dns.Msg)
		parsed := q.Unpack(raw) == nil
		for _, h := range handlers {
			if parsed {
				for _, tcp := range []bool{false, true} {
					for _, from := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("2001:db8::7")} {
						m := h.reply(q.Copy(), tcp, from)
						b, err := m.Pack()
						if err != nil {
							t.Fatalf("reply (tcp=%t) does not pack: %v\nquery:\n%v\nreply:\n%v", tcp, err, q, m)
						}
						checkReply(t, q, raw, b, limitOf(h, q, tcp), false)
					}
					w := &fuzzWriter{tcp: tcp}
					h.ServeDNS(w, q.Copy())
					if len(w.out) == 0 {
						t.Fatalf("ServeDNS (tcp=%t) wrote nothing\nquery:\n%v", tcp, q)
					}
					for _, b := range w.out {
						checkReply(t, q, raw, b, limitOf(h, q, tcp), false)
					}
				}
			}
			// The UDP server's raw path sees the bytes before any parsing.
			bw := &batchWriter{h: h, key: make([]byte, 512)}
			buf := make([]byte, dns.MaxMsgSize)
			from := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}
			n := bw.answer(raw, buf, from)
			switch {
			case len(raw) < 12 || raw[2]&0x80 != 0:
				if n != 0 {
					t.Fatalf("a reply to a packet that is not a query: % x", buf[:n])
				}
			case n > 0 && parsed:
				// Counts too large for a query are rejected unparsed, with
				// a bare header, even when the message would parse.
				checkReply(t, q, raw, buf[:n], limitOf(h, q, false), true)
			case n > 0:
				// Not a message: at most a bare header saying so.
				m := new(dns.Msg)
				if err := m.Unpack(buf[:n]); err != nil {
					t.Fatalf("reply does not parse: %v: % x", err, buf[:n])
				}
				if !isBare(m) {
					t.Fatalf("reply to an unparsable query:\n%v", m)
				}
				if !m.Response || m.Id != binary.BigEndian.Uint16(raw) {
					t.Fatalf("reply to an unparsable query: QR %t, ID %d, want %d", m.Response, m.Id, binary.BigEndian.Uint16(raw))
				}
			}
		}
		if panics.n.Load() != before {
			t.Fatalf("the handler panicked (recovered into SERVFAIL):\n%s\nquery: % x", panics.last.Load(), raw)
		}
	})
}

// limitOf is the largest reply the transport carries for q.
func limitOf(h *Handler, q *dns.Msg, tcp bool) int {
	switch opt := q.IsEdns0(); {
	case tcp:
		return dns.MaxMsgSize
	case opt == nil:
		return dns.MinMsgSize
	default:
		return int(max(min(opt.UDPSize(), h.opts.Load().MaxUDPSize), dns.MinMsgSize))
	}
}

// isBare reports whether m is a header-only rejection: FORMERR or NOTIMP
// and nothing else.
func isBare(m *dns.Msg) bool {
	return (m.Rcode == dns.RcodeFormatError || m.Rcode == dns.RcodeNotImplemented) &&
		len(m.Question)+len(m.Answer)+len(m.Ns)+len(m.Extra) == 0
}

// checkReply fails t unless b is a packed reply to q (from raw) within
// limit; bareOK accepts a header-only rejection too.
func checkReply(t *testing.T, q *dns.Msg, raw, b []byte, limit int, bareOK bool) {
	t.Helper()
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		t.Fatalf("reply does not parse: %v\nquery:\n%v\nreply: % x", err, q, b)
	}
	switch {
	case !m.Response:
		t.Fatalf("QR not set\nquery:\n%v\nreply:\n%v", q, m)
	case m.Id != q.Id:
		t.Fatalf("ID %d, want %d\nquery:\n%v\nreply:\n%v", m.Id, q.Id, q, m)
	case len(b) > limit:
		t.Fatalf("reply of %d octets, the limit is %d\nquery:\n%v\nreply:\n%v", len(b), limit, q, m)
	case len(q.Question) == 1 && !slices.Equal(m.Question, q.Question) && !(bareOK && isBare(m)):
		t.Fatalf("question %v, want %v echoed\nquery: % x\nreply:\n%v", m.Question, q.Question, raw, m)
	}
}

// fuzzHandlers are the handlers under test: one in sync and one out of it,
// each with a second zone, over a few services that exercise every kind of
// answer (SRV truncation, AAAA, host names, protocols, weights, duplicates).
func fuzzHandlers(f *testing.F, panics *panicDetector) []*Handler {
	var out []*Handler
	for _, synced := range []bool{true, false} {
		c := newTestCatalog(f)
		big := make([]registry.Instance, 60)
		for i := range big {
			big[i] = inst(fmt.Sprintf("b%02d", i), fmt.Sprintf("10.1.0.%d", i+1), uint16(9000+i))
		}
		c.Update("big", svc("big", big...))
		c.Update("web", svcServing("web", []registry.Instance{
			inst("w1", "10.0.0.1", 80), inst("w2", "10.0.0.2", 80, "protocol", "udp"),
			weighted(inst("w3", "10.0.0.3", 8080), 10), inst("down", "10.0.0.4", 80),
		}, []string{"down"}))
		c.Update("v6", svc("v6", inst("a", "2001:db8::1", 443), inst("b", "2001:db8::2", 443)))
		c.Update("docs", svc("docs", inst("d1", "docs.example.org", 443), inst("d2", "192.0.2.8", 443)))
		c.Update("dup", svc("dup", inst("x", "10.2.0.1", 53), inst("y", "10.2.0.1", 53)))
		c.Update("User", svc("User", inst("U1", "10.3.0.1", 80)))
		internal := newTestCatalog(f)
		internal.Update("api", svc("api", inst("i1", "10.4.0.1", 80)))
		for _, cat := range []testCatalog{c, internal} {
			cat.log = zerolog.New(panics) // the fuzz target may not log to f
			cat.synced.Store(synced)
		}
		opts := testOptions()
		opts.ExtraZones = []Zone{{Name: "service.internal.", Catalog: internal.Catalog}}
		opts.TransferFrom = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		opts.Strategies = map[string]balance.Strategy{"web": balance.Weighted}
		out = append(out, NewHandler(c.Catalog, opts))
	}
	return out
}

// panicDetector is the handlers' log: it counts recovered panics.
type panicDetector struct {
	n    atomic.Int64
	last atomic.Value // string
}

func (p *panicDetector) Write(b []byte) (int, error) {
	if bytes.Contains(b, []byte("panicked")) {
		p.last.Store(string(b))
		p.n.Add(1)
	}
	return len(b), nil
}

// fuzzWriter is a dns.ResponseWriter on a loopback UDP or TCP connection
// that keeps every reply, packed as it would go on the wire.
type fuzzWriter struct {
	tcp bool
	out [][]byte
	err error
}

func (w *fuzzWriter) LocalAddr() net.Addr {
	if w.tcp {
		return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}
	}
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}
}

func (w *fuzzWriter) RemoteAddr() net.Addr {
	if w.tcp {
		return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	}
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}

// WriteMsg packs m as miekg's server does.
func (w *fuzzWriter) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		// Keep something that fails checkReply, with the reason in view.
		b = []byte(fmt.Sprintf("pack: %v", err))
	}
	w.out = append(w.out, b)
	return nil
}

func (w *fuzzWriter) Write(b []byte) (int, error) {
	w.out = append(w.out, bytes.Clone(b))
	return len(b), nil
}

func (w *fuzzWriter) Close() error        { return nil }
func (w *fuzzWriter) TsigStatus() error   { return nil }
func (w *fuzzWriter) TsigTimersOnly(bool) {}
func (w *fuzzWriter) Hijack()             {}

// fuzzWriter implements dns.ResponseWriter.
var _ dns.ResponseWriter = (*fuzzWriter)(nil)

type rawSeed struct {
	name string
	pkt  []byte
}

// serveRawSeeds are the seed corpus: real queries of every shape the zone
// answers, packed by miekg, and packets built by hand that a library would
// not send. testdata/fuzz/FuzzServeRaw holds the same packets as files.
func serveRawSeeds(tb testing.TB) []rawSeed {
	q := func(name string, qtype uint16, edit ...func(*dns.Msg)) []byte {
		m := new(dns.Msg).SetQuestion(name, qtype)
		m.Id = 0x1234
		for _, e := range edit {
			e(m)
		}
		b, err := m.Pack()
		if err != nil {
			tb.Fatalf("seed %s: %v", name, err)
		}
		return b
	}
	edns := func(size uint16, do bool, opts ...dns.EDNS0) func(*dns.Msg) {
		return func(m *dns.Msg) {
			m.SetEdns0(size, do)
			m.IsEdns0().Option = opts
		}
	}
	version := func(v uint8) func(*dns.Msg) { return func(m *dns.Msg) { m.IsEdns0().SetVersion(v) } }
	class := func(c uint16) func(*dns.Msg) { return func(m *dns.Msg) { m.Question[0].Qclass = c } }
	opcode := func(o int) func(*dns.Msg) { return func(m *dns.Msg) { m.Opcode = o } }
	ecs := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.IPv4(192, 0, 2, 0).To4()}
	header := func(id, flags, qd, an, ns, ar uint16) []byte {
		var b []byte
		for _, v := range []uint16{id, flags, qd, an, ns, ar} {
			b = binary.BigEndian.AppendUint16(b, v)
		}
		return b
	}
	webA := q("web.service.local.", dns.TypeA)
	question := webA[12:]
	opt := []byte{0, 0, 41, 4, 208, 0, 0, 0, 0, 0, 0} // OPT, size 1232

	return []rawSeed{
		{"a", webA},
		{"a-edns", q("web.service.local.", dns.TypeA, edns(1232, false))},
		{"a-edns-4096-do", q("web.service.local.", dns.TypeA, edns(4096, true))},
		{"a-0x20", q("WeB.SeRvIcE.LoCaL.", dns.TypeA)},
		{"aaaa", q("v6.service.local.", dns.TypeAAAA)},
		{"srv-big-udp", q("big.service.local.", dns.TypeSRV)},
		{"srv-big-edns-700", q("big.service.local.", dns.TypeSRV, edns(700, false))},
		{"srv-big-edns-100", q("big.service.local.", dns.TypeSRV, edns(100, false))},
		{"srv-web-weighted", q("web.service.local.", dns.TypeSRV)},
		{"srv-rfc2782-tcp", q("_web._tcp.service.local.", dns.TypeSRV)},
		{"srv-rfc2782-udp", q("_web._udp.service.local.", dns.TypeSRV)},
		{"srv-hostname", q("docs.service.local.", dns.TypeSRV)},
		{"srv-dup", q("dup.service.local.", dns.TypeSRV)},
		{"cname-instance", q("d1.docs.service.local.", dns.TypeA)},
		{"a-instance", q("b07.big.service.local.", dns.TypeA)},
		{"aaaa-instance", q("a.v6.service.local.", dns.TypeAAAA)},
		{"nodata", q("web.service.local.", dns.TypeTXT)},
		{"nxdomain", q("nope.service.local.", dns.TypeA, edns(1232, false))},
		{"nxdomain-deep", q("x.y.w1.web.service.local.", dns.TypeA)},
		{"case-folded-service", q("user.service.local.", dns.TypeSRV)},
		{"any", q("big.service.local.", dns.TypeANY)},
		{"soa", q("service.local.", dns.TypeSOA)},
		{"ns", q("service.local.", dns.TypeNS, edns(1232, false))},
		{"ns-glue", q("ns.service.local.", dns.TypeAAAA)},
		{"second-zone", q("api.service.internal.", dns.TypeSRV)},
		{"second-zone-soa", q("service.internal.", dns.TypeSOA)},
		{"refused", q("example.com.", dns.TypeA)},
		{"root", q(".", dns.TypeNS)},
		{"axfr", q("service.local.", dns.TypeAXFR)},
		{"ixfr", q("service.local.", dns.TypeIXFR, func(m *dns.Msg) {
			m.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: "service.local.", Rrtype: dns.TypeSOA, Class: dns.ClassINET},
				Ns: "ns.service.local.", Mbox: "hostmaster.service.local.", Serial: 1}}
		})},
		{"axfr-second-zone", q("service.internal.", dns.TypeAXFR)},
		{"badvers", q("web.service.local.", dns.TypeA, edns(1232, false), version(1))},
		{"ecs", q("web.service.local.", dns.TypeA, edns(1232, false, ecs))},
		{"unknown-option", q("web.service.local.", dns.TypeA, edns(1232, false, &dns.EDNS0_LOCAL{Code: 65001, Data: []byte{1, 2, 3}}))},
		{"cookie", q("web.service.local.", dns.TypeA, edns(1232, false, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0123456789abcdef"}))},
		{"class-ch", q("version.bind.", dns.TypeTXT, class(dns.ClassCHAOS))},
		{"class-any", q("web.service.local.", dns.TypeA, class(dns.ClassANY))},
		{"notify", q("service.local.", dns.TypeSOA, opcode(dns.OpcodeNotify))},
		{"update", q("service.local.", dns.TypeSOA, opcode(dns.OpcodeUpdate), edns(1232, false))},
		{"opcode-15", q("web.service.local.", dns.TypeA, opcode(15))},
		{"empty", []byte{}},
		{"short", []byte{0x12, 0x34, 0x01}},
		{"header-only", header(0x1234, 0x0100, 0, 0, 0, 0)},
		{"header-qd1", header(0x1234, 0x0100, 1, 0, 0, 0)},
		{"qd0-opt", append(header(0x1234, 0x0100, 0, 0, 0, 1), opt...)},
		{"qd2", slices.Concat(header(0x1234, 0x0100, 2, 0, 0, 0), question, question)},
		{"qd2-opt", slices.Concat(header(0x1234, 0x0100, 2, 0, 0, 1), question, question, opt)},
		{"qr-set", slices.Concat(header(0x1234, 0x8100, 1, 0, 0, 0), question)},
		{"two-opt", slices.Concat(header(0x1234, 0x0100, 1, 0, 0, 2), question, opt, opt)},
		{"opt-in-answer", slices.Concat(header(0x1234, 0x0100, 1, 1, 0, 0), question, opt)},
		{"truncated-name", webA[:20]},
		{"truncated-opt", slices.Concat(header(0x1234, 0x0100, 1, 0, 0, 1), question, opt[:6])},
		{"compression-loop", slices.Concat(header(0x1234, 0, 1, 0, 0, 0), []byte{0xC0, 12, 0, 1, 0, 1})},
		{"compression-forward", slices.Concat(header(0x1234, 0, 1, 0, 0, 0), []byte{0xC0, 18, 0, 1, 0, 1, 3, 'w', 'e', 'b', 0})},
		{"label-64", slices.Concat(header(0x1234, 0, 1, 0, 0, 0), []byte{64}, bytes.Repeat([]byte{'a'}, 64), []byte{0, 0, 1, 0, 1})},
		{"dot-in-label", slices.Concat(header(0x1234, 0, 1, 0, 0, 0), []byte{5, 'w', '.', 'e', 'b', '\\', 7}, []byte("service"), []byte{5}, []byte("local"), []byte{0, 0, 33, 0, 1})},
		{"trailing-garbage", append(slices.Clone(webA), 0xde, 0xad)},
		{"huge-counts", slices.Concat(header(0x1234, 0x0100, 0xffff, 0xffff, 0xffff, 0xffff), question)},
	}
}
