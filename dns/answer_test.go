package dns

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/regdns/regdns/internal/balance"
	"github.com/regdns/regdns/internal/dnstest"
	"github.com/regdns/regdns/registry"
)

// fillLookup loads the services of TestAnswer.
func fillLookup(c testCatalog) {
	c.Update("user-service", svcServing("user-service", []registry.Instance{
		inst("u1", "10.0.0.1", 8080),
		inst("u2", "10.0.0.2", 8080),
		inst("u3", "10.0.0.1", 9090), // same address as u1
		inst("u6", "2001:db8::6", 8080),
		inst("u9", "10.0.0.9", 8080), // live but unhealthy: not serving
	}, []string{"u9"}))
	c.Update("db", svc("db", inst("primary", "db1.example.net", 5432)))
	c.Update("dns-svc", svc("dns-svc",
		inst("a", "10.0.1.1", 53, "protocol", "udp"),
		inst("b", "10.0.1.2", 53, "protocol", "tcp"),
		inst("c", "10.0.1.3", 53),
		inst("d", "10.0.1.4", 53, "protocol", "UDP"),
	))
	c.Update("empty", svc("empty"))
	c.Update("Web", svc("Web", inst("W1", "10.0.3.1", 80)))
	// Not valid labels: never served.
	c.Update("bad.name", svc("bad.name", inst("x", "10.9.9.9", 1)))
	c.Update("has space", svc("has space", inst("x", "10.9.9.9", 1)))
	c.Update("skips", svc("skips", inst("ok", "10.0.4.1", 1), inst("not.ok", "10.0.4.2", 1)))
}

func TestAnswer(t *testing.T) {
	t.Parallel()
	c := newTestCatalog(t)
	fillLookup(c)
	h := NewHandler(c.Catalog, testOptions())
	rr := func(s string) dns.RR { return dnstest.RR(t, s) }
	rrs := func(lines ...string) []dns.RR { return dnstest.RRs(t, lines...) }
	SOA := rr(soa(c.Serial()))

	cases := []dnstest.Case{
		// The apex.
		{
			Qname: "service.local.", Qtype: dns.TypeSOA, Authoritative: true,
			Answer: []dns.RR{SOA},
		},
		{
			Qname: "service.local.", Qtype: dns.TypeNS, Authoritative: true,
			Answer: rrs("service.local. 5 IN NS ns.service.local."),
			Extra:  rrs("ns.service.local. 5 IN A 192.0.2.53", "ns.service.local. 5 IN AAAA 2001:db8::53"),
		},
		{
			// RFC 8482: ANY gets one small synthesized HINFO, never everything.
			Qname: "service.local.", Qtype: dns.TypeANY, Authoritative: true,
			Answer: rrs(`service.local. 5 IN HINFO "RFC8482" ""`),
		},
		{
			Qname: "service.local.", Qtype: dns.TypeA, Authoritative: true,
			Ns: []dns.RR{SOA},
		},
		{
			Qname: "ns.service.local.", Qtype: dns.TypeA, Authoritative: true,
			Answer: rrs("ns.service.local. 5 IN A 192.0.2.53"),
		},
		{
			Qname: "ns.service.local.", Qtype: dns.TypeAAAA, Authoritative: true,
			Answer: rrs("ns.service.local. 5 IN AAAA 2001:db8::53"),
		},
		{
			Qname: "ns.service.local.", Qtype: dns.TypeTXT, Authoritative: true,
			Ns: []dns.RR{SOA},
		},
		// A service: SRV for the serving instances with glue, A and AAAA
		// without duplicates.
		{
			Qname: "user-service.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
			Answer: rrs(
				"user-service.service.local. 5 IN SRV 1 1 8080 u1.user-service.service.local.",
				"user-service.service.local. 5 IN SRV 1 1 8080 u2.user-service.service.local.",
				"user-service.service.local. 5 IN SRV 1 1 9090 u3.user-service.service.local.",
				"user-service.service.local. 5 IN SRV 1 1 8080 u6.user-service.service.local.",
			),
			Extra: rrs(
				"u1.user-service.service.local. 5 IN A 10.0.0.1",
				"u2.user-service.service.local. 5 IN A 10.0.0.2",
				"u3.user-service.service.local. 5 IN A 10.0.0.1",
				"u6.user-service.service.local. 5 IN AAAA 2001:db8::6",
			),
		},
		{
			Qname: "user-service.service.local.", Qtype: dns.TypeANY, Authoritative: true,
			Answer: rrs(`user-service.service.local. 5 IN HINFO "RFC8482" ""`),
		},
		{
			Qname: "user-service.service.local.", Qtype: dns.TypeA, Authoritative: true,
			Answer: rrs(
				"user-service.service.local. 5 IN A 10.0.0.1",
				"user-service.service.local. 5 IN A 10.0.0.2",
			),
		},
		{
			Qname: "user-service.service.local.", Qtype: dns.TypeAAAA, Authoritative: true,
			Answer: rrs("user-service.service.local. 5 IN AAAA 2001:db8::6"),
		},
		{
			Qname: "user-service.service.local.", Qtype: dns.TypeTXT, Authoritative: true,
			Ns: []dns.RR{SOA},
		},
		// Instances, the unhealthy one included: it is live.
		{
			Qname: "u1.user-service.service.local.", Qtype: dns.TypeA, Authoritative: true,
			Answer: rrs("u1.user-service.service.local. 5 IN A 10.0.0.1"),
		},
		{
			Qname: "u1.user-service.service.local.", Qtype: dns.TypeAAAA, Authoritative: true,
			Ns: []dns.RR{SOA},
		},
		{
			Qname: "u6.user-service.service.local.", Qtype: dns.TypeAAAA, Authoritative: true,
			Answer: rrs("u6.user-service.service.local. 5 IN AAAA 2001:db8::6"),
		},
		{
			Qname: "u6.user-service.service.local.", Qtype: dns.TypeANY, Authoritative: true,
			Answer: rrs(`u6.user-service.service.local. 5 IN HINFO "RFC8482" ""`),
		},
		{
			Qname: "u9.user-service.service.local.", Qtype: dns.TypeA, Authoritative: true,
			Answer: rrs("u9.user-service.service.local. 5 IN A 10.0.0.9"),
		},
		{
			Qname: "u99.user-service.service.local.", Qtype: dns.TypeA, Authoritative: true,
			Rcode: dns.RcodeNameError, Ns: []dns.RR{SOA},
		},
		{
			Qname: "x.u1.user-service.service.local.", Qtype: dns.TypeA, Authoritative: true,
			Rcode: dns.RcodeNameError, Ns: []dns.RR{SOA},
		},
		// A host-name instance: the SRV target is the host, no glue, and
		// <id>.<service> is an alias of it.
		{
			Qname: "db.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
			Answer: rrs("db.service.local. 5 IN SRV 1 1 5432 db1.example.net."),
		},
		{
			Qname: "db.service.local.", Qtype: dns.TypeA, Authoritative: true,
			Ns: []dns.RR{SOA},
		},
		{
			Qname: "primary.db.service.local.", Qtype: dns.TypeA, Authoritative: true,
			Answer: rrs("primary.db.service.local. 5 IN CNAME db1.example.net."),
		},
		{
			Qname: "primary.db.service.local.", Qtype: dns.TypeCNAME, Authoritative: true,
			Answer: rrs("primary.db.service.local. 5 IN CNAME db1.example.net."),
		},
		// _service._tcp and _service._udp by metadata "protocol".
		{
			Qname: "_dns-svc._udp.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
			Answer: rrs(
				"_dns-svc._udp.service.local. 5 IN SRV 1 1 53 a.dns-svc.service.local.",
				"_dns-svc._udp.service.local. 5 IN SRV 1 1 53 d.dns-svc.service.local.",
			),
			Extra: rrs(
				"a.dns-svc.service.local. 5 IN A 10.0.1.1",
				"d.dns-svc.service.local. 5 IN A 10.0.1.4",
			),
		},
		{
			Qname: "_dns-svc._tcp.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
			Answer: rrs(
				"_dns-svc._tcp.service.local. 5 IN SRV 1 1 53 b.dns-svc.service.local.",
				"_dns-svc._tcp.service.local. 5 IN SRV 1 1 53 c.dns-svc.service.local.",
			),
			Extra: rrs(
				"b.dns-svc.service.local. 5 IN A 10.0.1.2",
				"c.dns-svc.service.local. 5 IN A 10.0.1.3",
			),
		},
		{
			Qname: "dns-svc.service.local.", Qtype: dns.TypeA, Authoritative: true,
			Answer: rrs(
				"dns-svc.service.local. 5 IN A 10.0.1.1",
				"dns-svc.service.local. 5 IN A 10.0.1.2",
				"dns-svc.service.local. 5 IN A 10.0.1.3",
				"dns-svc.service.local. 5 IN A 10.0.1.4",
			),
		},
		{
			Qname: "_dns-svc._udp.service.local.", Qtype: dns.TypeA, Authoritative: true,
			Ns: []dns.RR{SOA},
		},
		{
			Qname: "_user-service._udp.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
			Ns: []dns.RR{SOA},
		},
		{
			Qname: "_user-service._tcp.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
			Answer: rrs(
				"_user-service._tcp.service.local. 5 IN SRV 1 1 8080 u1.user-service.service.local.",
				"_user-service._tcp.service.local. 5 IN SRV 1 1 8080 u2.user-service.service.local.",
				"_user-service._tcp.service.local. 5 IN SRV 1 1 9090 u3.user-service.service.local.",
				"_user-service._tcp.service.local. 5 IN SRV 1 1 8080 u6.user-service.service.local.",
			),
			Extra: rrs(
				"u1.user-service.service.local. 5 IN A 10.0.0.1",
				"u2.user-service.service.local. 5 IN A 10.0.0.2",
				"u3.user-service.service.local. 5 IN A 10.0.0.1",
				"u6.user-service.service.local. 5 IN AAAA 2001:db8::6",
			),
		},
		{
			Qname: "_tcp.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
			Ns: []dns.RR{SOA},
		},
		{
			Qname: "_nope._tcp.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
			Rcode: dns.RcodeNameError, Ns: []dns.RR{SOA},
		},
		// A service without serving instances exists: NODATA.
		{
			Qname: "empty.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
			Ns: []dns.RR{SOA},
		},
		{
			Qname: "empty.service.local.", Qtype: dns.TypeA, Authoritative: true,
			Ns: []dns.RR{SOA},
		},
		// Names that do not exist.
		{
			Qname: "nope.service.local.", Qtype: dns.TypeA, Authoritative: true,
			Rcode: dns.RcodeNameError, Ns: []dns.RR{SOA},
		},
		{
			Qname: "a.b.c.service.local.", Qtype: dns.TypeA, Authoritative: true,
			Rcode: dns.RcodeNameError, Ns: []dns.RR{SOA},
		},
		// Registry names that are not valid labels are skipped; the rest of
		// their service is served.
		{
			Qname: "bad.name.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
			Rcode: dns.RcodeNameError, Ns: []dns.RR{SOA},
		},
		{
			Qname: "has\\032space.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
			Rcode: dns.RcodeNameError, Ns: []dns.RR{SOA},
		},
		{
			Qname: "skips.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
			Answer: rrs("skips.service.local. 5 IN SRV 1 1 1 ok.skips.service.local."),
			Extra:  rrs("ok.skips.service.local. 5 IN A 10.0.4.1"),
		},
		{
			Qname: "not.ok.skips.service.local.", Qtype: dns.TypeA, Authoritative: true,
			Rcode: dns.RcodeNameError, Ns: []dns.RR{SOA},
		},
		// Case-insensitive matching; the question (and so the owner of the
		// answers) keeps the case it was asked in. SRV targets are the
		// lower-case names.
		{
			Qname: "USER-Service.Service.LOCAL.", Qtype: dns.TypeA, Authoritative: true,
			Answer: rrs(
				"USER-Service.Service.LOCAL. 5 IN A 10.0.0.1",
				"USER-Service.Service.LOCAL. 5 IN A 10.0.0.2",
			),
		},
		{
			Qname: "U2.user-SERVICE.service.local.", Qtype: dns.TypeA, Authoritative: true,
			Answer: rrs("U2.user-SERVICE.service.local. 5 IN A 10.0.0.2"),
		},
		{
			Qname: "_DNS-svc._UDP.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
			Answer: rrs(
				"_DNS-svc._UDP.service.local. 5 IN SRV 1 1 53 a.dns-svc.service.local.",
				"_DNS-svc._UDP.service.local. 5 IN SRV 1 1 53 d.dns-svc.service.local.",
			),
			Extra: rrs(
				"a.dns-svc.service.local. 5 IN A 10.0.1.1",
				"d.dns-svc.service.local. 5 IN A 10.0.1.4",
			),
		},
		{
			Qname: "web.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
			Answer: rrs("web.service.local. 5 IN SRV 1 1 80 w1.web.service.local."),
			Extra:  rrs("w1.web.service.local. 5 IN A 10.0.3.1"),
		},
		{
			Qname: "w1.WEB.service.local.", Qtype: dns.TypeA, Authoritative: true,
			Answer: rrs("w1.WEB.service.local. 5 IN A 10.0.3.1"),
		},
		{
			Qname: "Service.Local.", Qtype: dns.TypeNS, Authoritative: true,
			Answer: rrs("Service.Local. 5 IN NS ns.service.local."),
			Extra:  rrs("ns.service.local. 5 IN A 192.0.2.53", "ns.service.local. 5 IN AAAA 2001:db8::53"),
		},
		// Outside the zone, or not class IN: REFUSED, not authoritative.
		{Qname: "example.com.", Qtype: dns.TypeA, Rcode: dns.RcodeRefused},
		{Qname: "local.", Qtype: dns.TypeSOA, Rcode: dns.RcodeRefused},
		{Qname: "xservice.local.", Qtype: dns.TypeA, Rcode: dns.RcodeRefused},
		{Qname: "user-service.service.local.example.com.", Qtype: dns.TypeA, Rcode: dns.RcodeRefused},
		{Qname: "version.bind.", Qtype: dns.TypeTXT, Qclass: dns.ClassCHAOS, Rcode: dns.RcodeRefused},
		{Qname: "user-service.service.local.", Qtype: dns.TypeA, Qclass: dns.ClassCHAOS, Rcode: dns.RcodeRefused},
		// Classes other than IN are refused, ANY included.
		{Qname: "u2.user-service.service.local.", Qtype: dns.TypeA, Qclass: dns.ClassANY, Rcode: dns.RcodeRefused},
	}
	run(t, h, cases)
}

// TestAnswerNotSynced: while the view is out of sync, a name the catalog does
// not know may exist, so it is SERVFAIL, never NXDOMAIN; known names are
// still answered.
func TestAnswerNotSynced(t *testing.T) {
	t.Parallel()
	c := newTestCatalog(t)
	c.Update("user-service", svc("user-service", inst("u1", "10.0.0.1", 8080)))
	c.synced.Store(false)
	h := NewHandler(c.Catalog, testOptions())
	SOA := dnstest.RR(t, soa(c.Serial()))

	run(t, h, []dnstest.Case{
		{Qname: "nope.service.local.", Qtype: dns.TypeA, Rcode: dns.RcodeServerFailure},
		{Qname: "_nope._tcp.service.local.", Qtype: dns.TypeSRV, Rcode: dns.RcodeServerFailure},
		{Qname: "x.nope.service.local.", Qtype: dns.TypeA, Rcode: dns.RcodeServerFailure},
		{
			Qname: "user-service.service.local.", Qtype: dns.TypeA, Authoritative: true,
			Answer: dnstest.RRs(t, "user-service.service.local. 5 IN A 10.0.0.1"),
		},
		{
			Qname: "u1.user-service.service.local.", Qtype: dns.TypeA, Authoritative: true,
			Answer: dnstest.RRs(t, "u1.user-service.service.local. 5 IN A 10.0.0.1"),
		},
		{Qname: "user-service.service.local.", Qtype: dns.TypeTXT, Authoritative: true, Ns: []dns.RR{SOA}},
		{Qname: "service.local.", Qtype: dns.TypeSOA, Authoritative: true, Answer: []dns.RR{SOA}},
		{Qname: "example.com.", Qtype: dns.TypeA, Rcode: dns.RcodeRefused},
	})

	c.synced.Store(true)
	run(t, h, []dnstest.Case{
		{Qname: "nope.service.local.", Qtype: dns.TypeA, Authoritative: true, Rcode: dns.RcodeNameError, Ns: []dns.RR{SOA}},
	})
}

// TestAnswerDefaults: zero Options serve service.local. with ns.service.local.
// and no glue.
func TestAnswerDefaults(t *testing.T) {
	t.Parallel()
	c := newTestCatalog(t)
	h := NewHandler(c.Catalog, Options{})
	require.Equal(t, "service.local.", h.Zone())
	run(t, h, []dnstest.Case{
		{
			Qname: "service.local.", Qtype: dns.TypeNS, Authoritative: true,
			Answer: dnstest.RRs(t, "service.local. 5 IN NS ns.service.local."),
		},
		{
			Qname: "ns.service.local.", Qtype: dns.TypeA, Authoritative: true,
			Rcode: dns.RcodeNameError, Ns: dnstest.RRs(t, soa(c.Serial())),
		},
	})

	// The zone is canonicalised; an NS outside the zone gets no glue.
	h = NewHandler(c.Catalog, Options{
		Zone: "Example.ORG", NS: "ns1.example.net", TTL: 60, NegativeTTL: 30,
		NSAddrs: testOptions().NSAddrs,
	})
	require.Equal(t, "example.org.", h.Zone())
	run(t, h, []dnstest.Case{
		{
			Qname: "example.org.", Qtype: dns.TypeNS, Authoritative: true,
			Answer: dnstest.RRs(t, "example.org. 60 IN NS ns1.example.net."),
		},
		{
			Qname: "example.org.", Qtype: dns.TypeSOA, Authoritative: true,
			Answer: dnstest.RRs(t, fmt.Sprintf(
				"example.org. 30 IN SOA ns1.example.net. hostmaster.example.org. %d 3600 600 86400 30", c.Serial())),
		},
		{Qname: "service.local.", Qtype: dns.TypeSOA, Rcode: dns.RcodeRefused},
	})
}

// TestAnswerQuestionCount: a query must carry exactly one question.
func TestAnswerQuestionCount(t *testing.T) {
	t.Parallel()
	h := NewHandler(newTestCatalog(t).Catalog, testOptions())
	m := h.Answer(new(dns.Msg))
	require.Equal(t, dns.RcodeFormatError, m.Rcode)

	r := new(dns.Msg)
	r.SetQuestion("service.local.", dns.TypeSOA)
	r.Question = append(r.Question, r.Question[0])
	m = h.Answer(r)
	require.Equal(t, dns.RcodeFormatError, m.Rcode)
	require.Empty(t, m.Answer)
}

// srvTargets returns the targets of the SRV answer to qname, in order.
func srvTargets(t *testing.T, h *Handler, qname string) []string {
	t.Helper()
	m := h.Answer(new(dns.Msg).SetQuestion(qname, dns.TypeSRV))
	require.Equal(t, dns.RcodeSuccess, m.Rcode)
	var out []string
	for _, rr := range m.Answer {
		srv, ok := rr.(*dns.SRV)
		require.True(t, ok, "not an SRV: %s", rr)
		out = append(out, srv.Target)
	}
	// Glue follows the order of the answers.
	require.Len(t, m.Extra, len(out))
	for i, rr := range m.Extra {
		require.Equal(t, out[i], rr.Header().Name)
	}
	return out
}

func TestRoundRobin(t *testing.T) {
	t.Parallel()
	c := newTestCatalog(t)
	c.Update("rr", svc("rr", inst("a", "10.0.0.1", 1), inst("b", "10.0.0.2", 1), inst("c", "10.0.0.3", 1)))
	h := NewHandler(c.Catalog, testOptions())
	const a, b, cc = "a.rr.service.local.", "b.rr.service.local.", "c.rr.service.local."

	// Each response rotates by one.
	require.Equal(t, []string{a, b, cc}, srvTargets(t, h, "rr.service.local."))
	require.Equal(t, []string{b, cc, a}, srvTargets(t, h, "rr.service.local."))
	require.Equal(t, []string{cc, a, b}, srvTargets(t, h, "rr.service.local."))
	require.Equal(t, []string{a, b, cc}, srvTargets(t, h, "rr.service.local."))

	// A and SRV responses share the turn, and so does _rr._tcp.
	m := h.Answer(new(dns.Msg).SetQuestion("rr.service.local.", dns.TypeA))
	require.Equal(t, []string{
		"rr.service.local.\t5\tIN\tA\t10.0.0.2",
		"rr.service.local.\t5\tIN\tA\t10.0.0.3",
		"rr.service.local.\t5\tIN\tA\t10.0.0.1",
	}, dnstest.Strings(m.Answer))
	require.Equal(t, []string{cc, a, b}, srvTargets(t, h, "_rr._tcp.service.local."))

	// An update keeps the rotation turning.
	c.Update("rr", svc("rr", inst("a", "10.0.0.1", 1), inst("b", "10.0.0.2", 1), inst("c", "10.0.0.3", 1)))
	require.Equal(t, []string{a, b, cc}, srvTargets(t, h, "rr.service.local."))
	require.Equal(t, []string{b, cc, a}, srvTargets(t, h, "rr.service.local."))
}

func TestWeightedOrder(t *testing.T) {
	t.Parallel()
	c := newTestCatalog(t)
	c.Update("w", svc("w",
		weighted(inst("a", "10.0.0.1", 1), 10),
		weighted(inst("b", "10.0.0.2", 1), 0),
		weighted(inst("c", "10.0.0.3", 1), 30),
	))
	rnd := &fakeRand{t: t}
	opts := testOptions()
	opts.Strategy = balance.Weighted
	opts.Rand = rnd
	h := NewHandler(c.Catalog, opts)

	// Draw 15 of 40: past a (10), b (0), into c (30). Then 0 of the 10
	// left: a. b, of weight 0, comes last.
	rnd.values = []int{15, 0, 0}
	require.Equal(t, []string{"c.w.service.local.", "a.w.service.local.", "b.w.service.local."},
		srvTargets(t, h, "w.service.local."))
	require.Equal(t, []int{40, 10, 1}, rnd.asked)

	// Draw 9 of 40: a; then c.
	rnd.values, rnd.asked = []int{9, 29, 0}, nil
	require.Equal(t, []string{"a.w.service.local.", "c.w.service.local.", "b.w.service.local."},
		srvTargets(t, h, "w.service.local."))
	require.Equal(t, []int{40, 30, 1}, rnd.asked)
}

// TestStrategyPerService: Options.Strategies overrides Options.Strategy by
// registry name.
func TestStrategyPerService(t *testing.T) {
	t.Parallel()
	c := newTestCatalog(t)
	three := []registry.Instance{
		weighted(inst("a", "10.0.0.1", 1), 1),
		weighted(inst("b", "10.0.0.2", 1), 1),
		weighted(inst("c", "10.0.0.3", 1), 1),
	}
	c.Update("Rotated", svc("Rotated", three...))
	c.Update("weighted", svc("weighted", three...))
	c.Update("shuffled", svc("shuffled", three...))
	rnd := &fakeRand{t: t}
	opts := testOptions()
	opts.Strategy = balance.RoundRobin
	opts.Strategies = map[string]balance.Strategy{"weighted": balance.Weighted, "shuffled": balance.Random}
	opts.Rand = rnd
	h := NewHandler(c.Catalog, opts)

	// Round-robin (the default) draws nothing.
	require.Equal(t, []string{"a.rotated.service.local.", "b.rotated.service.local.", "c.rotated.service.local."},
		srvTargets(t, h, "rotated.service.local."))
	require.Equal(t, []string{"b.rotated.service.local.", "c.rotated.service.local.", "a.rotated.service.local."},
		srvTargets(t, h, "rotated.service.local."))
	require.Empty(t, rnd.asked)

	// Weighted, all weights 1: 2 of 3 picks c, then 1 of 2 (a, b left,
	// in that order after the swap) picks a, then b.
	rnd.values = []int{2, 1, 0}
	require.Equal(t, []string{"c.weighted.service.local.", "a.weighted.service.local.", "b.weighted.service.local."},
		srvTargets(t, h, "weighted.service.local."))
	require.Equal(t, []int{3, 2, 1}, rnd.asked)

	// Random: an inside-out Fisher-Yates shuffle; draws 0 of 1, 1 of 2 and
	// 0 of 3 put index 2 first and 0 last.
	rnd.values, rnd.asked = []int{0, 1, 0}, nil
	require.Equal(t, []string{"c.shuffled.service.local.", "b.shuffled.service.local.", "a.shuffled.service.local."},
		srvTargets(t, h, "shuffled.service.local."))
	require.Equal(t, []int{1, 2, 3}, rnd.asked)
}

// TestConcurrentQueries runs queries against updates; -race reports any
// shared data written while read.
func TestConcurrentQueries(t *testing.T) {
	t.Parallel()
	c := newTestCatalog(t)
	fillLookup(c)
	opts := testOptions()
	opts.Strategies = map[string]balance.Strategy{"dns-svc": balance.Weighted, "db": balance.Random}
	h := NewHandler(c.Catalog, opts)
	names := []string{
		"user-service.service.local.", "_dns-svc._udp.service.local.", "db.service.local.",
		"u1.user-service.service.local.", "nope.service.local.",
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				for _, qt := range []uint16{dns.TypeSRV, dns.TypeA} {
					m := h.reply(new(dns.Msg).SetQuestion(names[(g+i)%len(names)], qt), i%2 == 0, netip.Addr{})
					if m.Rcode != dns.RcodeSuccess && m.Rcode != dns.RcodeNameError {
						t.Errorf("rcode %s", dns.RcodeToString[m.Rcode])
					}
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 200 {
			c.Update("user-service", svc("user-service",
				inst("u1", "10.0.0.1", 8080), inst(fmt.Sprintf("n%d", i), "10.0.0.2", uint16(i+1))))
			c.Update("dns-svc", nil)
			fillLookup(c)
		}
	})
	wg.Wait()
}

// TestAnswerNoDuplicateSRV: instances registered with the same host name and
// port give the same SRV record; an RRset holds it once (RFC 2181 5).
func TestAnswerNoDuplicateSRV(t *testing.T) {
	t.Parallel()
	c := newTestCatalog(t)
	c.Update("db", svc("db",
		inst("p1", "db1.example.net", 5432),
		inst("p2", "db1.example.net", 5432),
		inst("p3", "db1.example.net", 5433),
		inst("p4", "10.0.0.1", 5432),
		inst("p5", "10.0.0.1", 5432),
	))
	h := NewHandler(c.Catalog, testOptions())
	run(t, h, []dnstest.Case{{
		Qname: "db.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
		Answer: dnstest.RRs(t,
			"db.service.local. 5 IN SRV 1 1 5432 db1.example.net.",
			"db.service.local. 5 IN SRV 1 1 5433 db1.example.net.",
			"db.service.local. 5 IN SRV 1 1 5432 p4.db.service.local.",
			"db.service.local. 5 IN SRV 1 1 5432 p5.db.service.local.",
		),
		Extra: dnstest.RRs(t,
			"p4.db.service.local. 5 IN A 10.0.0.1",
			"p5.db.service.local. 5 IN A 10.0.0.1",
		),
	}})
}
