package dns

// Tests of the "smarter answers" (issue 4): tags and metadata in the name,
// metadata TXT, DNS-SD enumeration and browsing, _explain, health tiers,
// draining, lease-bound TTLs, locality and sticky order, with the
// statistical checks that weighted, locality and sticky orders keep their
// proportions over many queries.

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/regdns/regdns/internal/balance"
	"github.com/regdns/regdns/internal/dnstest"
	"github.com/regdns/regdns/registry"
)

// smartTagged returns in carrying tags, as DecodeInstance reads metadata "tags".
func smartTagged(in registry.Instance, tags ...string) registry.Instance {
	in.Tags = tags
	m := in.Meta.Map()
	b, _ := json.Marshal(tags)
	m["tags"] = string(b)
	in.Meta = registry.MetadataOf(m)
	return in
}

// smartStatus returns in with the health status s.
func smartStatus(in registry.Instance, s registry.Status) registry.Instance {
	in.Health.Status = s
	return in
}

// smartOptions are testOptions with the config defaults of the health
// priorities.
func smartOptions() Options {
	o := testOptions()
	o.UnknownPriority, o.UnhealthyPriority = 10, 20
	return o
}

// fillSmart loads the services of TestSmartNames.
func fillSmart(c testCatalog) {
	c.Update("web", svcServing("web", []registry.Instance{
		smartTagged(inst("w1", "10.0.0.1", 8080, "version", "1.0.0", "region", "us-east-1"), "primary", "v2"),
		smartTagged(inst("w2", "10.0.0.2", 8080, "version", "1.0.0", "Region", "eu-west-1"), "Primary"),
		smartTagged(inst("w3", "2001:db8::3", 8080, "version", "2.0.0"), "primary", "v2"),
		smartStatus(smartTagged(inst("w4", "10.0.0.4", 8080, "version", "0.9.0"), "canary", "legacy"), registry.StatusUnhealthy),
		smartTagged(inst("w5", "10.0.0.6", 8080), "canary"),
		// An instance whose id is spelled like w5's tag.
		inst("canary", "10.0.0.5", 8080, "owner", "team-x"),
	}, []string{"w4"}))
	long := strings.Repeat("x", 600)
	c.Update("txt", svc("txt",
		inst("t1", "10.0.1.1", 80, "b", "2", "a", "1", "k=ey", "v", "back`tick", "x", "long", long, "zz", "1"),
		inst("t2", "10.0.1.2", 80),
	))
	c.Update("dns", svc("dns",
		inst("d1", "10.0.2.1", 53, "protocol", "udp"),
		inst("d2", "10.0.2.2", 53, "protocol", "tcp"),
	))
	c.Update("idle", svcServing("idle", []registry.Instance{
		smartStatus(inst("i1", "10.0.3.1", 80), registry.StatusUnhealthy),
	}, []string{"i1"}))
	c.Update("drain", svc("drain",
		inst("a", "10.0.4.1", 80),
		inst("d", "10.0.4.2", 80, "draining", "true"),
		smartStatus(inst("e", "10.0.4.3", 80), registry.StatusDraining),
	))
	c.Update("drained", svc("drained", inst("only", "10.0.5.1", 80, "draining", "TRUE")))
}

// TestSmartNames: every name shape of issue 4, and the rules of what each
// answers.
func TestSmartNames(t *testing.T) {
	t.Parallel()
	c := newTestCatalog(t)
	fillSmart(c)
	h := NewHandler(c.Catalog, smartOptions())
	rrs := func(lines ...string) []dns.RR { return dnstest.RRs(t, lines...) }
	SOA := dnstest.RR(t, soa(c.Serial()))
	long := strings.Repeat("x", 600)
	// The 605-octet "long=xxx..." cut in 255-octet character-strings.
	longTXT := fmt.Sprintf(`"long=%s" "%s" "%s"`, long[:250], long[250:505], long[505:])

	cases := []dnstest.Case{
		// <tag>.<service>: instances whose metadata tags hold the tag, case-insensitively.
		{
			Qname: "primary.web.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
			Answer: rrs(
				"primary.web.service.local. 5 IN SRV 1 1 8080 w1.web.service.local.",
				"primary.web.service.local. 5 IN SRV 1 1 8080 w2.web.service.local.",
				"primary.web.service.local. 5 IN SRV 1 1 8080 w3.web.service.local.",
			),
			Extra: rrs(
				"w1.web.service.local. 5 IN A 10.0.0.1",
				"w2.web.service.local. 5 IN A 10.0.0.2",
				"w3.web.service.local. 5 IN AAAA 2001:db8::3",
			),
		},
		{
			Qname: "primary.web.service.local.", Qtype: dns.TypeA, Authoritative: true,
			Answer: rrs("primary.web.service.local. 5 IN A 10.0.0.1", "primary.web.service.local. 5 IN A 10.0.0.2"),
		},
		{
			Qname: "PRIMARY.Web.service.local.", Qtype: dns.TypeAAAA, Authoritative: true,
			Answer: rrs("PRIMARY.Web.service.local. 5 IN AAAA 2001:db8::3"),
		},
		{
			Qname: "primary.web.service.local.", Qtype: dns.TypeTXT, Authoritative: true,
			Ns: []dns.RR{SOA},
		},
		// <tag1>.<tag2>.<service>: every tag, in any order.
		{
			Qname: "v2.primary.web.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
			Answer: rrs(
				"v2.primary.web.service.local. 5 IN SRV 1 1 8080 w1.web.service.local.",
				"v2.primary.web.service.local. 5 IN SRV 1 1 8080 w3.web.service.local.",
			),
			Extra: rrs("w1.web.service.local. 5 IN A 10.0.0.1", "w3.web.service.local. 5 IN AAAA 2001:db8::3"),
		},
		{
			Qname: "PRIMARY.v2.web.service.local.", Qtype: dns.TypeA, Authoritative: true,
			Answer: rrs("PRIMARY.v2.web.service.local. 5 IN A 10.0.0.1"),
		},
		{
			Qname: "primary.v2.web.service.local.", Qtype: dns.TypeAAAA, Authoritative: true,
			Answer: rrs("primary.v2.web.service.local. 5 IN AAAA 2001:db8::3"),
		},
		// A tag no live instance has does not exist; one only a
		// non-serving instance has exists, without data.
		{
			Qname: "nosuch.web.service.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Authoritative: true,
			Ns: []dns.RR{SOA},
		},
		{
			Qname: "legacy.primary.web.service.local.", Qtype: dns.TypeSRV, Rcode: dns.RcodeNameError, Authoritative: true,
			Ns: []dns.RR{SOA},
		},
		{
			Qname: "legacy.web.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
			Ns: []dns.RR{SOA},
		},
		{
			Qname: "legacy.web.service.local.", Qtype: dns.TypeA, Authoritative: true,
			Ns: []dns.RR{SOA},
		},
		// An instance id wins over a tag spelled the same.
		{
			Qname: "canary.web.service.local.", Qtype: dns.TypeA, Authoritative: true,
			Answer: rrs("canary.web.service.local. 5 IN A 10.0.0.5"),
		},
		{
			Qname: "CANARY.web.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
			Ns: []dns.RR{SOA},
		},
		{
			Qname: "canary.web.service.local.", Qtype: dns.TypeTXT, Authoritative: true,
			Answer: rrs(`canary.web.service.local. 5 IN TXT "owner=team-x"`),
		},
		{
			// Nothing lives below an instance, nor is a tag selection under it.
			Qname: "v2.canary.web.service.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Authoritative: true,
			Ns: []dns.RR{SOA},
		},
		// <value>.<key>.meta.<service>, '.' in values written '-'.
		{
			Qname: "1-0-0.version.meta.web.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
			Answer: rrs(
				"1-0-0.version.meta.web.service.local. 5 IN SRV 1 1 8080 w1.web.service.local.",
				"1-0-0.version.meta.web.service.local. 5 IN SRV 1 1 8080 w2.web.service.local.",
			),
			Extra: rrs("w1.web.service.local. 5 IN A 10.0.0.1", "w2.web.service.local. 5 IN A 10.0.0.2"),
		},
		{
			Qname: "1-0-0.VERSION.Meta.web.service.local.", Qtype: dns.TypeA, Authoritative: true,
			Answer: rrs(
				"1-0-0.VERSION.Meta.web.service.local. 5 IN A 10.0.0.1",
				"1-0-0.VERSION.Meta.web.service.local. 5 IN A 10.0.0.2",
			),
		},
		{
			Qname: "2-0-0.version.meta.web.service.local.", Qtype: dns.TypeAAAA, Authoritative: true,
			Answer: rrs("2-0-0.version.meta.web.service.local. 5 IN AAAA 2001:db8::3"),
		},
		{
			Qname: "2-0-0.version.meta.web.service.local.", Qtype: dns.TypeA, Authoritative: true,
			Ns: []dns.RR{SOA},
		},
		{
			// Keys compare case-insensitively too ("Region" in w2's metadata).
			Qname: "eu-west-1.region.meta.web.service.local.", Qtype: dns.TypeA, Authoritative: true,
			Answer: rrs("eu-west-1.region.meta.web.service.local. 5 IN A 10.0.0.2"),
		},
		{
			Qname: "us-east-1.region.meta.web.service.local.", Qtype: dns.TypeA, Authoritative: true,
			Answer: rrs("us-east-1.region.meta.web.service.local. 5 IN A 10.0.0.1"),
		},
		{
			Qname: "0-9-0.version.meta.web.service.local.", Qtype: dns.TypeA, Authoritative: true,
			Ns: []dns.RR{SOA}, // only the unhealthy w4
		},
		{
			Qname: "3-0-0.version.meta.web.service.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Authoritative: true,
			Ns: []dns.RR{SOA},
		},
		{
			Qname: "1-0-0.nokey.meta.web.service.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Authoritative: true,
			Ns: []dns.RR{SOA},
		},
		// <id>.<service> TXT: sorted key=value, RFC 1464 quoting of '=' and
		// '`' in keys, long values in 255-octet strings.
		{
			Qname: "t1.txt.service.local.", Qtype: dns.TypeTXT, Authoritative: true,
			Answer: rrs(`t1.txt.service.local. 5 IN TXT "a=1" "b=2" "back` + "``" + `tick=x" "k` + "`" + `=ey=v" ` + longTXT + ` "zz=1"`),
		},
		{
			Qname: "T1.txt.service.local.", Qtype: dns.TypeA, Authoritative: true,
			Answer: rrs("T1.txt.service.local. 5 IN A 10.0.1.1"),
		},
		{
			// No metadata: no data (outside DNS-SD).
			Qname: "t2.txt.service.local.", Qtype: dns.TypeTXT, Authoritative: true,
			Ns: []dns.RR{SOA},
		},
		// DNS-SD enumeration: one PTR per service type with serving,
		// non-draining instances; the protocol from metadata "protocol".
		{
			Qname: "_services._dns-sd._udp.service.local.", Qtype: dns.TypePTR, Authoritative: true,
			Answer: rrs(
				"_services._dns-sd._udp.service.local. 5 IN PTR _dns._tcp.service.local.",
				"_services._dns-sd._udp.service.local. 5 IN PTR _dns._udp.service.local.",
				"_services._dns-sd._udp.service.local. 5 IN PTR _drain._tcp.service.local.",
				"_services._dns-sd._udp.service.local. 5 IN PTR _txt._tcp.service.local.",
				"_services._dns-sd._udp.service.local. 5 IN PTR _web._tcp.service.local.",
			),
		},
		{
			Qname: "_services._dns-sd._udp.service.local.", Qtype: dns.TypeTXT, Authoritative: true,
			Ns: []dns.RR{SOA},
		},
		// Empty non-terminals exist, without data.
		{Qname: "_dns-sd._udp.service.local.", Qtype: dns.TypePTR, Authoritative: true, Ns: []dns.RR{SOA}},
		{Qname: "_tcp.service.local.", Qtype: dns.TypePTR, Authoritative: true, Ns: []dns.RR{SOA}},
		{Qname: "_udp.service.local.", Qtype: dns.TypeSRV, Authoritative: true, Ns: []dns.RR{SOA}},
		// Browsing: one PTR per serving, non-draining instance.
		{
			Qname: "_web._tcp.service.local.", Qtype: dns.TypePTR, Authoritative: true,
			Answer: rrs(
				"_web._tcp.service.local. 5 IN PTR canary._web._tcp.service.local.",
				"_web._tcp.service.local. 5 IN PTR w1._web._tcp.service.local.",
				"_web._tcp.service.local. 5 IN PTR w2._web._tcp.service.local.",
				"_web._tcp.service.local. 5 IN PTR w3._web._tcp.service.local.",
				"_web._tcp.service.local. 5 IN PTR w5._web._tcp.service.local.",
			),
		},
		{
			Qname: "_dns._udp.service.local.", Qtype: dns.TypePTR, Authoritative: true,
			Answer: rrs("_dns._udp.service.local. 5 IN PTR d1._dns._udp.service.local."),
		},
		{
			Qname: "_dns._tcp.service.local.", Qtype: dns.TypePTR, Authoritative: true,
			Answer: rrs("_dns._tcp.service.local. 5 IN PTR d2._dns._tcp.service.local."),
		},
		{
			Qname: "_web._udp.service.local.", Qtype: dns.TypePTR, Authoritative: true,
			Ns: []dns.RR{SOA},
		},
		{
			Qname: "_idle._tcp.service.local.", Qtype: dns.TypePTR, Authoritative: true,
			Ns: []dns.RR{SOA},
		},
		{
			Qname: "_nope._tcp.service.local.", Qtype: dns.TypePTR, Rcode: dns.RcodeNameError, Authoritative: true,
			Ns: []dns.RR{SOA},
		},
		// The browsed instance: SRV with glue, TXT.
		{
			Qname: "d1._dns._udp.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
			Answer: rrs("d1._dns._udp.service.local. 5 IN SRV 1 1 53 d1.dns.service.local."),
			Extra:  rrs("d1.dns.service.local. 5 IN A 10.0.2.1"),
		},
		{
			Qname: "d1._dns._udp.service.local.", Qtype: dns.TypeTXT, Authoritative: true,
			Answer: rrs(`d1._dns._udp.service.local. 5 IN TXT "protocol=udp"`),
		},
		{
			Qname: "w3._web._tcp.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
			Answer: rrs("w3._web._tcp.service.local. 5 IN SRV 1 1 8080 w3.web.service.local."),
			Extra:  rrs("w3.web.service.local. 5 IN AAAA 2001:db8::3"),
		},
		{
			// RFC 6763 6.1: a TXT record even without metadata, one empty string.
			Qname: "t2._txt._tcp.service.local.", Qtype: dns.TypeTXT, Authoritative: true,
			Answer: rrs(`t2._txt._tcp.service.local. 5 IN TXT ""`),
		},
		{
			Qname: "t2._txt._tcp.service.local.", Qtype: dns.TypeA, Authoritative: true,
			Ns: []dns.RR{SOA},
		},
		{
			Qname: "d1._dns._tcp.service.local.", Qtype: dns.TypeSRV, Rcode: dns.RcodeNameError, Authoritative: true,
			Ns: []dns.RR{SOA}, // d1 serves udp
		},
		{
			Qname: "nope._web._tcp.service.local.", Qtype: dns.TypeSRV, Rcode: dns.RcodeNameError, Authoritative: true,
			Ns: []dns.RR{SOA},
		},
		// Draining: SRV weight 0, out of A/AAAA and of browsing.
		{
			Qname: "drain.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
			Answer: rrs(
				"drain.service.local. 5 IN SRV 1 1 80 a.drain.service.local.",
				"drain.service.local. 5 IN SRV 1 0 80 d.drain.service.local.",
				"drain.service.local. 5 IN SRV 1 0 80 e.drain.service.local.",
			),
			Extra: rrs(
				"a.drain.service.local. 5 IN A 10.0.4.1",
				"d.drain.service.local. 5 IN A 10.0.4.2",
				"e.drain.service.local. 5 IN A 10.0.4.3",
			),
		},
		{
			Qname: "drain.service.local.", Qtype: dns.TypeA, Authoritative: true,
			Answer: rrs("drain.service.local. 5 IN A 10.0.4.1"),
		},
		{
			Qname: "_drain._tcp.service.local.", Qtype: dns.TypePTR, Authoritative: true,
			Answer: rrs("_drain._tcp.service.local. 5 IN PTR a._drain._tcp.service.local."),
		},
		{
			Qname: "e._drain._tcp.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
			Answer: rrs("e._drain._tcp.service.local. 5 IN SRV 1 0 80 e.drain.service.local."),
			Extra:  rrs("e.drain.service.local. 5 IN A 10.0.4.3"),
		},
		{
			Qname: "drained.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
			Answer: rrs("drained.service.local. 5 IN SRV 1 0 80 only.drained.service.local."),
			Extra:  rrs("only.drained.service.local. 5 IN A 10.0.5.1"),
		},
		{
			Qname: "drained.service.local.", Qtype: dns.TypeA, Authoritative: true,
			Ns: []dns.RR{SOA},
		},
		{
			Qname: "_drained._tcp.service.local.", Qtype: dns.TypePTR, Authoritative: true,
			Ns: []dns.RR{SOA},
		},
		// _explain is off by default: the name is a tag nobody has.
		{
			Qname: "_explain.web.service.local.", Qtype: dns.TypeTXT, Rcode: dns.RcodeNameError, Authoritative: true,
			Ns: []dns.RR{SOA},
		},
	}
	run(t, h, cases)

	// MaxTXT bounds the metadata TXT: keys in order while they fit, the
	// rest left out.
	o := smartOptions()
	o.MaxTXT = 300
	small := NewHandler(c.Catalog, o)
	run(t, small, []dnstest.Case{{
		Name:  "max_txt 300",
		Qname: "t1.txt.service.local.", Qtype: dns.TypeTXT, Authoritative: true,
		Answer: rrs(`t1.txt.service.local. 5 IN TXT "a=1" "b=2" "back` + "``" + `tick=x" "k` + "`" + `=ey=v"`),
	}})
	m := h.Answer(new(dns.Msg).SetQuestion("t1.txt.service.local.", dns.TypeTXT))
	txt := m.Answer[0].(*dns.TXT)
	for _, s := range txt.Txt {
		require.LessOrEqual(t, len(s), 255)
	}
	b, err := m.Pack()
	require.NoError(t, err, "the split strings pack")
	require.Greater(t, len(b), 600)
}

// TestSmartTXTQuoting: RFC 1464 quoting of the characters reserved in an
// attribute name, and TXT escapes for '"' and '\'.
func TestSmartTXTQuoting(t *testing.T) {
	t.Parallel()
	c := newTestCatalog(t)
	c.Update("q", svc("q", inst("i", "10.0.0.1", 1, " lead", "1", "trail ", "2", "mid dle", "3", `quo"te`, `back\slash`)))
	h := NewHandler(c.Catalog, testOptions())
	m := h.Answer(new(dns.Msg).SetQuestion("i.q.service.local.", dns.TypeTXT))
	require.Len(t, m.Answer, 1)
	b, err := m.Pack()
	require.NoError(t, err)
	got := new(dns.Msg)
	require.NoError(t, got.Unpack(b))
	// On the wire (unpacked, then unescaped) the strings are exactly these.
	var wire []string
	for _, s := range got.Answer[0].(*dns.TXT).Txt {
		wire = append(wire, strings.NewReplacer(`\"`, `"`, `\\`, `\`).Replace(s))
	}
	require.Equal(t, []string{"` lead=1", "mid dle=3", `quo"te=back\slash`, "trail` =2"}, wire)
}

// TestSmartExplain: _explain.<service> TXT, only when Options.Explain: one
// string per live instance with its id, address, health, heartbeat age,
// weight and why it is or is not served; TTL 0, never packed.
func TestSmartExplain(t *testing.T) {
	t.Parallel()
	c := newTestCatalog(t)
	beat := func(in registry.Instance, age time.Duration) registry.Instance {
		in.LastHeartbeat = testEpoch.Add(-age)
		return in
	}
	c.Update("ex", svcServing("ex", []registry.Instance{
		beat(weighted(inst("h1", "10.0.6.1", 80), 3), 3*time.Second),
		smartStatus(inst("u1", "10.0.6.2", 80), registry.StatusUnknown),
		smartStatus(inst("x1", "10.0.6.3", 80), registry.StatusUnhealthy),
		inst("d1", "10.0.6.4", 80, "draining", "true"),
		inst("bad.id", "10.0.6.5", 80),
	}, []string{"u1", "x1"}))
	pan := svcServing("pan", []registry.Instance{
		inst("p1", "10.0.7.1", 80),
		smartStatus(inst("p2", "10.0.7.2", 80), registry.StatusUnhealthy),
		smartStatus(inst("p3", "10.0.7.3", 80), registry.StatusUnhealthy),
	}, nil)
	pan.Panic = true
	c.Update("pan", pan)
	c.Update("none", svc("none"))
	opts := smartOptions()
	opts.Explain = true
	opts.Now = func() time.Time { return testEpoch }
	h := NewHandler(c.Catalog, opts)

	explain := func(name string) []string {
		t.Helper()
		m := h.Answer(new(dns.Msg).SetQuestion(name, dns.TypeTXT))
		require.Equal(t, dns.RcodeSuccess, m.Rcode)
		require.True(t, m.Authoritative)
		require.Len(t, m.Answer, 1)
		require.Zero(t, m.Answer[0].Header().Ttl, "it explains the present: not cached")
		return m.Answer[0].(*dns.TXT).Txt
	}
	require.Equal(t, []string{
		"id=bad.id addr=10.0.6.5:80 health=healthy heartbeat_age=unknown weight=1 served=no reason=instance id is not a DNS label",
		"id=d1 addr=10.0.6.4:80 health=healthy heartbeat_age=unknown weight=1 served=yes reason=draining: in SRV with weight 0, not in A/AAAA",
		"id=h1 addr=10.0.6.1:80 health=healthy heartbeat_age=3s weight=3 served=yes reason=health healthy is served in this health mode",
		"id=u1 addr=10.0.6.2:80 health=unknown heartbeat_age=unknown weight=1 served=no reason=health unknown is not served in this health mode",
		"id=x1 addr=10.0.6.3:80 health=unhealthy heartbeat_age=unknown weight=1 served=no reason=unhealthy",
	}, explain("_explain.EX.service.local."))
	got := explain("_explain.pan.service.local.")
	require.Len(t, got, 3)
	for i, s := range got {
		require.True(t, strings.HasPrefix(s, fmt.Sprintf("id=p%d ", i+1)), s)
		require.Contains(t, s, "served=yes reason=panic mode")
	}
	require.Equal(t, []string{"no live instance"}, explain("_explain.none.service.local."))

	// Other types: no data; unknown service: no such name.
	m := h.Answer(new(dns.Msg).SetQuestion("_explain.ex.service.local.", dns.TypeA))
	require.Equal(t, dns.RcodeSuccess, m.Rcode)
	require.Empty(t, m.Answer)
	m = h.Answer(new(dns.Msg).SetQuestion("_explain.nope.service.local.", dns.TypeTXT))
	require.Equal(t, dns.RcodeNameError, m.Rcode)

	// Never on the fast path.
	require.Zero(t, smartFastLen(t, h, "_explain.ex.service.local.", dns.TypeTXT))

	// Off: the name does not exist.
	off := NewHandler(c.Catalog, smartOptions())
	m = off.Answer(new(dns.Msg).SetQuestion("_explain.ex.service.local.", dns.TypeTXT))
	require.Equal(t, dns.RcodeNameError, m.Rcode)
}

// smartFastLen is the length of the packed fast-path reply to a plain UDP query
// (0: not on the fast path).
func smartFastLen(t *testing.T, h *Handler, name string, qtype uint16) int {
	t.Helper()
	pkt, err := new(dns.Msg).SetQuestion(name, qtype).Pack()
	require.NoError(t, err)
	return fastAfterFirst(h, pkt, make([]byte, 65535), make([]byte, 512))
}

// TestSmartHealthTiers: healthy instances first. In SRV the unknown ones get
// UnknownPriority more, unhealthy ones (served in panic or "any" mode)
// UnhealthyPriority more, relative to the best tier answered, so nothing
// changes when all are alike; A/AAAA list healthy ones first.
func TestSmartHealthTiers(t *testing.T) {
	t.Parallel()
	c := newTestCatalog(t)
	unknown := func(in registry.Instance) registry.Instance { return smartStatus(in, registry.StatusUnknown) }
	unhealthy := func(in registry.Instance) registry.Instance { return smartStatus(in, registry.StatusUnhealthy) }
	c.Update("mixed", svc("mixed",
		inst("h1", "10.0.3.1", 80),
		unknown(inst("u1", "10.0.3.3", 80)),
		inst("h2", "10.0.3.2", 80),
		unknown(inst("u2", "10.0.3.4", 80)),
		unknown(inst("u3", "10.0.3.5", 80)),
	))
	c.Update("alike", svc("alike", unknown(inst("a1", "10.0.4.1", 80)), unknown(inst("a2", "10.0.4.2", 80))))
	c.Update("panicky", svc("panicky",
		inst("h1", "10.0.5.1", 80), unknown(inst("u1", "10.0.5.2", 80)), unhealthy(inst("x1", "10.0.5.3", 80))))
	c.Update("nohealthy", svc("nohealthy", unknown(inst("u1", "10.0.6.1", 80)), unhealthy(inst("x1", "10.0.6.2", 80))))
	// A registered priority near the top must not wrap around when the
	// tier's step is added.
	lastResort := unknown(inst("lr", "10.0.7.2", 80))
	lastResort.Priority = 65530
	c.Update("lastresort", svc("lastresort", inst("h1", "10.0.7.1", 80), lastResort))
	h := NewHandler(c.Catalog, smartOptions())
	rrs := func(lines ...string) []dns.RR { return dnstest.RRs(t, lines...) }

	run(t, h, []dnstest.Case{
		{
			Qname: "mixed.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
			Answer: rrs(
				"mixed.service.local. 5 IN SRV 1 1 80 h1.mixed.service.local.",
				"mixed.service.local. 5 IN SRV 1 1 80 h2.mixed.service.local.",
				"mixed.service.local. 5 IN SRV 11 1 80 u1.mixed.service.local.",
				"mixed.service.local. 5 IN SRV 11 1 80 u2.mixed.service.local.",
				"mixed.service.local. 5 IN SRV 11 1 80 u3.mixed.service.local.",
			),
			Extra: rrs(
				"h1.mixed.service.local. 5 IN A 10.0.3.1",
				"h2.mixed.service.local. 5 IN A 10.0.3.2",
				"u1.mixed.service.local. 5 IN A 10.0.3.3",
				"u2.mixed.service.local. 5 IN A 10.0.3.4",
				"u3.mixed.service.local. 5 IN A 10.0.3.5",
			),
		},
		{
			Qname: "alike.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
			Answer: rrs(
				"alike.service.local. 5 IN SRV 1 1 80 a1.alike.service.local.",
				"alike.service.local. 5 IN SRV 1 1 80 a2.alike.service.local.",
			),
			Extra: rrs("a1.alike.service.local. 5 IN A 10.0.4.1", "a2.alike.service.local. 5 IN A 10.0.4.2"),
		},
		{
			Qname: "panicky.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
			Answer: rrs(
				"panicky.service.local. 5 IN SRV 1 1 80 h1.panicky.service.local.",
				"panicky.service.local. 5 IN SRV 11 1 80 u1.panicky.service.local.",
				"panicky.service.local. 5 IN SRV 21 1 80 x1.panicky.service.local.",
			),
			Extra: rrs(
				"h1.panicky.service.local. 5 IN A 10.0.5.1",
				"u1.panicky.service.local. 5 IN A 10.0.5.2",
				"x1.panicky.service.local. 5 IN A 10.0.5.3",
			),
		},
		{
			// The best tier answered is unknown: unhealthy is 20-10 behind.
			Qname: "nohealthy.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
			Answer: rrs(
				"nohealthy.service.local. 5 IN SRV 1 1 80 u1.nohealthy.service.local.",
				"nohealthy.service.local. 5 IN SRV 11 1 80 x1.nohealthy.service.local.",
			),
			Extra: rrs("u1.nohealthy.service.local. 5 IN A 10.0.6.1", "x1.nohealthy.service.local. 5 IN A 10.0.6.2"),
		},
		{
			Qname: "lastresort.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
			Answer: rrs(
				"lastresort.service.local. 5 IN SRV 1 1 80 h1.lastresort.service.local.",
				"lastresort.service.local. 5 IN SRV 65535 1 80 lr.lastresort.service.local.",
			),
			Extra: rrs("h1.lastresort.service.local. 5 IN A 10.0.7.1", "lr.lastresort.service.local. 5 IN A 10.0.7.2"),
		},
		// The DNS-SD instance SRV carries the same priority.
		{
			Qname: "u2._mixed._tcp.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
			Answer: rrs("u2._mixed._tcp.service.local. 5 IN SRV 11 1 80 u2.mixed.service.local."),
			Extra:  rrs("u2.mixed.service.local. 5 IN A 10.0.3.4"),
		},
		{
			Qname: "h1._mixed._tcp.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
			Answer: rrs("h1._mixed._tcp.service.local. 5 IN SRV 1 1 80 h1.mixed.service.local."),
			Extra:  rrs("h1.mixed.service.local. 5 IN A 10.0.3.1"),
		},
	})

	// Priorities configured out of order, and an instance's own DNS-SD name
	// when it is not among those served: nothing wraps around.
	c.Update("gone", svcServing("gone", []registry.Instance{unknown(inst("u1", "10.0.8.1", 80))}, []string{"u1"}))
	o := smartOptions()
	o.UnknownPriority, o.UnhealthyPriority = 30, 20
	reversed := NewHandler(c.Catalog, o)
	run(t, reversed, []dnstest.Case{
		{
			Name:  "reversed priorities",
			Qname: "nohealthy.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
			Answer: rrs(
				"nohealthy.service.local. 5 IN SRV 1 1 80 u1.nohealthy.service.local.",
				"nohealthy.service.local. 5 IN SRV 1 1 80 x1.nohealthy.service.local.",
			),
			Extra: rrs("u1.nohealthy.service.local. 5 IN A 10.0.6.1", "x1.nohealthy.service.local. 5 IN A 10.0.6.2"),
		},
		{
			Name:  "reversed priorities with healthy",
			Qname: "panicky.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
			Answer: rrs(
				"panicky.service.local. 5 IN SRV 1 1 80 h1.panicky.service.local.",
				"panicky.service.local. 5 IN SRV 31 1 80 u1.panicky.service.local.",
				"panicky.service.local. 5 IN SRV 21 1 80 x1.panicky.service.local.",
			),
			Extra: rrs(
				"h1.panicky.service.local. 5 IN A 10.0.5.1",
				"u1.panicky.service.local. 5 IN A 10.0.5.2",
				"x1.panicky.service.local. 5 IN A 10.0.5.3",
			),
		},
	})
	run(t, h, []dnstest.Case{{
		Qname: "u1._gone._tcp.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
		Answer: rrs("u1._gone._tcp.service.local. 5 IN SRV 1 1 80 u1.gone.service.local."),
		Extra:  rrs("u1.gone.service.local. 5 IN A 10.0.8.1"),
	}})

	// A: the two healthy addresses first on every round-robin turn, and the
	// rotation still spreads clients over them and over the rest.
	healthy := []string{"10.0.3.1", "10.0.3.2"}
	firsts, thirds := map[string]int{}, map[string]int{}
	for turn := range 30 {
		m := h.reply(new(dns.Msg).SetQuestion("mixed.service.local.", dns.TypeA), false, netip.MustParseAddr("192.0.2.1"))
		require.Len(t, m.Answer, 5)
		got := smartAddrs(m)
		require.ElementsMatch(t, healthy, got[:2], "turn %d: %v", turn, got)
		firsts[got[0]]++
		thirds[got[2]]++
	}
	require.Len(t, firsts, 2, "both healthy instances come first in turn")
	require.Len(t, thirds, 3, "the unknown ones rotate behind them")

	// Every order strategy keeps the tiers.
	for _, st := range []balance.Strategy{balance.Weighted, balance.Random, balance.Sticky} {
		o := smartOptions()
		o.Strategy = st
		o.Rand = rand.New(rand.NewPCG(1, 2))
		hs := NewHandler(c.Catalog, o)
		for i := range 50 {
			from := netip.AddrFrom4([4]byte{10, byte(i), 0, 1})
			got := smartAddrs(hs.reply(new(dns.Msg).SetQuestion("mixed.service.local.", dns.TypeA), false, from))
			require.ElementsMatch(t, healthy, got[:2], "%v: %v", st, got)
			require.Equal(t, []string{"10.0.5.1", "10.0.5.2", "10.0.5.3"},
				smartAddrs(hs.reply(new(dns.Msg).SetQuestion("panicky.service.local.", dns.TypeA), false, from)), "%v", st)
		}
	}
}

// smartAddrs returns the addresses of the A and AAAA records of m, in order.
func smartAddrs(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		}
	}
	return out
}

// smartTargets returns the SRV targets of m, in order, cut to their first label.
func smartTargets(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		if srv, ok := rr.(*dns.SRV); ok {
			out = append(out, strings.SplitN(srv.Target, ".", 2)[0])
		}
	}
	return out
}

// TestSmartLeaseTTL: an answer's TTL is cut to the time left on the
// shortest lease running out, never below TTLFloor; such answers depend on
// the time and are never packed, while the others are.
func TestSmartLeaseTTL(t *testing.T) {
	t.Parallel()
	c := newTestCatalog(t)
	leased := func(in registry.Instance, left time.Duration) registry.Instance {
		in.LeaseEnds = testEpoch.Add(left)
		return in
	}
	c.Update("lease", svc("lease",
		leased(inst("l1", "10.0.8.1", 80, "k", "v"), 2*time.Second),
		inst("l2", "10.0.8.2", 80, "k", "v"),
		leased(inst("l3", "10.0.8.3", 80), 2900*time.Millisecond),
	))
	c.Update("expired", svc("expired", leased(inst("e1", "10.0.9.1", 80), -time.Second)))
	c.Update("steady", svc("steady", inst("s1", "10.0.10.1", 80), inst("s2", "10.0.10.2", 80)))
	opts := smartOptions()
	opts.Now = func() time.Time { return testEpoch }
	h := NewHandler(c.Catalog, opts)
	rrs := func(lines ...string) []dns.RR { return dnstest.RRs(t, lines...) }

	run(t, h, []dnstest.Case{
		{
			Qname: "lease.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
			Answer: rrs(
				"lease.service.local. 2 IN SRV 1 1 80 l1.lease.service.local.",
				"lease.service.local. 2 IN SRV 1 1 80 l2.lease.service.local.",
				"lease.service.local. 2 IN SRV 1 1 80 l3.lease.service.local.",
			),
			Extra: rrs(
				"l1.lease.service.local. 2 IN A 10.0.8.1",
				"l2.lease.service.local. 2 IN A 10.0.8.2",
				"l3.lease.service.local. 2 IN A 10.0.8.3",
			),
		},
		{
			Qname: "lease.service.local.", Qtype: dns.TypeA, Authoritative: true,
			Answer: rrs("lease.service.local. 2 IN A 10.0.8.1", "lease.service.local. 2 IN A 10.0.8.2", "lease.service.local. 2 IN A 10.0.8.3"),
		},
		{Qname: "l1.lease.service.local.", Qtype: dns.TypeA, Authoritative: true, Answer: rrs("l1.lease.service.local. 2 IN A 10.0.8.1")},
		{Qname: "l1.lease.service.local.", Qtype: dns.TypeTXT, Authoritative: true, Answer: rrs(`l1.lease.service.local. 2 IN TXT "k=v"`)},
		{Qname: "l2.lease.service.local.", Qtype: dns.TypeA, Authoritative: true, Answer: rrs("l2.lease.service.local. 5 IN A 10.0.8.2")},
		{Qname: "l3.lease.service.local.", Qtype: dns.TypeA, Authoritative: true, Answer: rrs("l3.lease.service.local. 2 IN A 10.0.8.3")},
		{
			Qname: "l1._lease._tcp.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
			Answer: rrs("l1._lease._tcp.service.local. 2 IN SRV 1 1 80 l1.lease.service.local."),
			Extra:  rrs("l1.lease.service.local. 2 IN A 10.0.8.1"),
		},
		// Past its lease (the key not yet seen gone): the floor.
		{Qname: "expired.service.local.", Qtype: dns.TypeA, Authoritative: true, Answer: rrs("expired.service.local. 1 IN A 10.0.9.1")},
		{Qname: "steady.service.local.", Qtype: dns.TypeA, Authoritative: true,
			Answer: rrs("steady.service.local. 5 IN A 10.0.10.1", "steady.service.local. 5 IN A 10.0.10.2")},
	})

	// A higher floor wins over the time left.
	o := opts
	o.TTLFloor = 3
	floor := NewHandler(c.Catalog, o)
	run(t, floor, []dnstest.Case{
		{Name: "floor 3 expired", Qname: "expired.service.local.", Qtype: dns.TypeA, Authoritative: true,
			Answer: rrs("expired.service.local. 3 IN A 10.0.9.1")},
		{Name: "floor 3 lease", Qname: "l1.lease.service.local.", Qtype: dns.TypeA, Authoritative: true,
			Answer: rrs("l1.lease.service.local. 3 IN A 10.0.8.1")},
	})

	// The clock moves on: the TTL follows it without any registry change.
	now := testEpoch
	o = opts
	o.Now = func() time.Time { return now }
	moving := NewHandler(c.Catalog, o)
	for _, step := range []struct {
		at  time.Duration
		ttl uint32
	}{{0, 2}, {500 * time.Millisecond, 1}, {1900 * time.Millisecond, 1}, {5 * time.Second, 1}} {
		now = testEpoch.Add(step.at)
		m := moving.Answer(new(dns.Msg).SetQuestion("l1.lease.service.local.", dns.TypeA))
		require.Equal(t, step.ttl, m.Answer[0].Header().Ttl, "at %v", step.at)
	}

	// Lease-bound answers are never packed; the others are.
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"lease.service.local.", dns.TypeSRV}, {"lease.service.local.", dns.TypeA},
		{"_lease._tcp.service.local.", dns.TypeSRV}, {"l1.lease.service.local.", dns.TypeA},
		{"l1.lease.service.local.", dns.TypeTXT}, {"expired.service.local.", dns.TypeA},
	} {
		require.Zero(t, smartFastLen(t, h, q.name, q.qtype), "%s %s is lease-bound: not packed", q.name, dns.TypeToString[q.qtype])
	}
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"steady.service.local.", dns.TypeA}, {"steady.service.local.", dns.TypeSRV},
		{"l2.lease.service.local.", dns.TypeA}, {"_lease._tcp.service.local.", dns.TypePTR},
	} {
		require.NotZero(t, smartFastLen(t, h, q.name, q.qtype), "%s %s is packed", q.name, dns.TypeToString[q.qtype])
	}

	// A heartbeat (the lease no longer running out) puts it back on the fast path.
	c.Update("lease", svc("lease", inst("l1", "10.0.8.1", 80, "k", "v"), inst("l2", "10.0.8.2", 80, "k", "v")))
	require.NotZero(t, smartFastLen(t, h, "lease.service.local.", dns.TypeA))
	require.NotZero(t, smartFastLen(t, h, "l1.lease.service.local.", dns.TypeA))
}

// smartQuery builds a question, with an EDNS Client Subnet option when ecs is
// not empty.
func smartQuery(t *testing.T, name string, qtype uint16, ecs string) *dns.Msg {
	t.Helper()
	m := new(dns.Msg).SetQuestion(name, qtype)
	if ecs != "" {
		p := netip.MustParsePrefix(ecs)
		m.SetEdns0(1232, false)
		o := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: uint8(p.Bits()), Address: net.IP(p.Addr().AsSlice())}
		if p.Addr().Is6() {
			o.Family = 2
		}
		m.IsEdns0().Option = append(m.IsEdns0().Option, o)
	}
	return m
}

// smartScope returns the scope of the ECS option of m (-1: none).
func smartScope(m *dns.Msg) int {
	if opt := m.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if ecs, ok := o.(*dns.EDNS0_SUBNET); ok {
				return int(ecs.SourceScope)
			}
		}
	}
	return -1
}

func smartLocalityOptions() Options {
	o := smartOptions()
	o.LocalityKey = "zone"
	o.ClientZones = []ClientZone{
		{Prefix: netip.MustParsePrefix("10.1.0.0/16"), Zone: "a"},
		{Prefix: netip.MustParsePrefix("10.2.0.0/16"), Zone: "b"},
		{Prefix: netip.MustParsePrefix("10.2.3.0/24"), Zone: "A"}, // more specific wins; zones compare case-insensitively
		{Prefix: netip.MustParsePrefix("2001:db8:a::/48"), Zone: "a"},
	}
	return o
}

// TestSmartLocality: with LocalityKey and ClientZones, instances in the
// client's zone come first, from the client's address or, when present,
// its EDNS Client Subnet, which is then echoed with a scope.
func TestSmartLocality(t *testing.T) {
	t.Parallel()
	c := newTestCatalog(t)
	c.Update("geo", svc("geo",
		inst("a1", "10.0.4.1", 80, "zone", "a"),
		inst("b1", "10.0.4.3", 80, "zone", "b"),
		inst("a2", "10.0.4.2", 80, "zone", "a"),
		inst("n1", "10.0.4.5", 80),
		inst("b2", "10.0.4.4", 80, "zone", "b"),
	))
	h := NewHandler(c.Catalog, smartLocalityOptions())
	inA, inB := []string{"10.0.4.1", "10.0.4.2"}, []string{"10.0.4.3", "10.0.4.4"}
	ask := func(from, ecs string, qtype uint16) *dns.Msg {
		t.Helper()
		var addr netip.Addr
		if from != "" {
			addr = netip.MustParseAddr(from)
		}
		m := h.reply(smartQuery(t, "geo.service.local.", qtype, ecs), false, addr)
		require.Equal(t, dns.RcodeSuccess, m.Rcode)
		return m
	}
	for _, tc := range []struct {
		name, from, ecs string
		first           []string
		scope           int
	}{
		{"address in a", "10.1.0.7", "", inA, -1},
		{"address in b", "10.2.0.7", "", inB, -1},
		{"most specific network", "10.2.3.7", "", inA, -1},
		{"ipv6 address in a", "2001:db8:a::1", "", inA, -1},
		{"ECS wins over the address", "10.1.0.7", "10.2.0.0/24", inB, 24},
		{"ECS from a resolver outside every zone", "192.0.2.1", "10.1.9.0/24", inA, 24},
		{"ECS ipv6", "10.2.0.7", "2001:db8:a:100::/56", inA, 56},
	} {
		t.Run(tc.name, func(t *testing.T) {
			firsts := map[string]bool{}
			for range 10 { // every round-robin turn
				m := ask(tc.from, tc.ecs, dns.TypeA)
				got := smartAddrs(m)
				require.Len(t, got, 5)
				require.ElementsMatch(t, tc.first, got[:2], "%v", got)
				firsts[got[0]] = true
				require.Equal(t, tc.scope, smartScope(m))
			}
			require.Len(t, firsts, 2, "round-robin still turns within the zone")
			// SRV answers are ordered the same way.
			want := map[string]string{"10.0.4.1": "a1", "10.0.4.2": "a2", "10.0.4.3": "b1", "10.0.4.4": "b2"}
			got := smartTargets(ask(tc.from, tc.ecs, dns.TypeSRV))
			require.ElementsMatch(t, []string{want[tc.first[0]], want[tc.first[1]]}, got[:2])
		})
	}

	// A client in no zone gets the plain rotation: every instance comes first in turn.
	firsts := map[string]bool{}
	for range 5 {
		firsts[smartAddrs(ask("192.0.2.1", "", dns.TypeA))[0]] = true
	}
	require.Len(t, firsts, 5)

	// Locality answers depend on the client: not packed. Without locality
	// the same answers are, and an ECS option is echoed with scope 0.
	require.Zero(t, smartFastLen(t, h, "geo.service.local.", dns.TypeA))
	plain := NewHandler(c.Catalog, smartOptions())
	require.NotZero(t, smartFastLen(t, plain, "geo.service.local.", dns.TypeA))
	m := plain.reply(smartQuery(t, "geo.service.local.", dns.TypeA, "10.2.0.0/24"), false, netip.MustParseAddr("10.1.0.7"))
	require.Equal(t, 0, smartScope(m))
}

// TestSmartSticky: the sticky strategy orders by a weighted rendezvous hash
// of the client subnet: one subnet keeps its order, subnets spread.
func TestSmartSticky(t *testing.T) {
	t.Parallel()
	c := newTestCatalog(t)
	three := []registry.Instance{
		weighted(inst("s1", "10.0.5.1", 80), 1),
		weighted(inst("s2", "10.0.5.2", 80), 2),
		weighted(inst("s3", "10.0.5.3", 80), 7),
	}
	c.Update("sticky", svc("sticky", three...))
	c.Update("rr", svc("rr", three...))
	opts := smartOptions()
	opts.Strategy = balance.Sticky
	opts.Strategies = map[string]balance.Strategy{"rr": balance.RoundRobin}
	h := NewHandler(c.Catalog, opts)
	order := func(name, from, ecs string) []string {
		t.Helper()
		m := h.reply(smartQuery(t, name, dns.TypeA, ecs), false, netip.MustParseAddr(from))
		require.Equal(t, dns.RcodeSuccess, m.Rcode)
		return smartAddrs(m)
	}

	// One /24 (or one /56), one order, every time; SRV follows it.
	for _, from := range []string{"10.9.8.7", "2001:db8:1:2::1"} {
		first := order("sticky.service.local.", from, "")
		sibling := netip.MustParseAddr(from).Next()
		for range 20 {
			require.Equal(t, first, order("sticky.service.local.", from, ""))
			require.Equal(t, first, order("sticky.service.local.", sibling.String(), ""))
		}
		srv := h.reply(smartQuery(t, "sticky.service.local.", dns.TypeSRV, ""), false, netip.MustParseAddr(from))
		byID := map[string]string{"s1": "10.0.5.1", "s2": "10.0.5.2", "s3": "10.0.5.3"}
		var srvOrder []string
		for _, id := range smartTargets(srv) {
			srvOrder = append(srvOrder, byID[id])
		}
		require.Equal(t, first, srvOrder)
	}

	// The ECS subnet is the client: it orders as a client in that subnet,
	// and the reply says so with its scope.
	require.Equal(t, order("sticky.service.local.", "10.50.1.5", ""), order("sticky.service.local.", "10.9.8.7", "10.50.1.0/24"))
	m := h.reply(smartQuery(t, "sticky.service.local.", dns.TypeA, "10.50.1.0/24"), false, netip.MustParseAddr("10.9.8.7"))
	require.Equal(t, 24, smartScope(m))

	// Different subnets spread over every instance.
	firsts := map[string]int{}
	for i := range 256 {
		firsts[order("sticky.service.local.", fmt.Sprintf("10.77.%d.1", i), "")[0]]++
	}
	require.Len(t, firsts, 3, "%v", firsts)

	// The per-service strategy overrides: "rr" rotates for the same client
	// and is packed; "sticky" is not.
	rrFirsts := map[string]bool{}
	for range 3 {
		rrFirsts[order("rr.service.local.", "10.9.8.7", "")[0]] = true
	}
	require.Len(t, rrFirsts, 3)
	require.NotZero(t, smartFastLen(t, h, "rr.service.local.", dns.TypeA))
	require.Zero(t, smartFastLen(t, h, "sticky.service.local.", dns.TypeA))

	// And the other way round: sticky for one service only.
	opts.Strategy = balance.RoundRobin
	opts.Strategies = map[string]balance.Strategy{"sticky": balance.Sticky}
	h = NewHandler(c.Catalog, opts)
	first := order("sticky.service.local.", "10.9.8.7", "")
	rrFirsts = map[string]bool{}
	for range 3 {
		require.Equal(t, first, order("sticky.service.local.", "10.9.8.7", ""))
		rrFirsts[order("rr.service.local.", "10.9.8.7", "")[0]] = true
	}
	require.Len(t, rrFirsts, 3)
}

// Statistical tests: orders keep their proportions over many answers. The
// random source is a seeded PCG, so they are reproducible. The tolerance of
// 0.02 is about 6 standard deviations of a share near 0.5 over 20,000
// answers, 3 over 5,000.

const smartTolerance = 0.02

// requireSmartShares checks that counts (out of n) are shares of want.
func requireSmartShares(t *testing.T, counts map[string]int, n int, want map[string]float64, what string) {
	t.Helper()
	for k, w := range want {
		got := float64(counts[k]) / float64(n)
		t.Logf("%s: %s %.4f (want %.2f)", what, k, got, w)
		require.InDelta(t, w, got, smartTolerance, "%s: share of %s", what, k)
	}
	require.Len(t, counts, len(want), "%s: %v", what, counts)
}

// TestSmartWeightedShares: with weights 1/2/7, each instance comes first in
// 10/20/70% of answers, through the handler (SRV and A), and comes second
// as often as drawing without replacement says.
func TestSmartWeightedShares(t *testing.T) {
	t.Parallel()
	c := newTestCatalog(t)
	c.Update("w", svc("w",
		weighted(inst("a", "10.0.0.1", 80), 1),
		weighted(inst("b", "10.0.0.2", 80), 2),
		weighted(inst("c", "10.0.0.3", 80), 7),
		weighted(inst("z", "10.0.0.4", 80), 0),
	))
	opts := smartOptions()
	opts.Strategy = balance.Weighted
	opts.Rand = rand.New(rand.NewPCG(42, 1))
	h := NewHandler(c.Catalog, opts)
	const n = 20_000
	first := map[string]float64{"10.0.0.1": 0.1, "10.0.0.2": 0.2, "10.0.0.3": 0.7}
	// P(second = x) = sum over y != x of P(first = y) * w_x / (10 - w_y).
	second := map[string]float64{
		"10.0.0.1": 0.2*1/8 + 0.7*1/3,
		"10.0.0.2": 0.1*2/9 + 0.7*2/3,
		"10.0.0.3": 0.1*7/9 + 0.2*7/8,
	}
	for _, qtype := range []uint16{dns.TypeA, dns.TypeSRV} {
		firsts, seconds := map[string]int{}, map[string]int{}
		for range n {
			m := h.reply(new(dns.Msg).SetQuestion("w.service.local.", qtype), false, netip.MustParseAddr("192.0.2.1"))
			var got []string
			if qtype == dns.TypeA {
				got = smartAddrs(m)
			} else {
				got = smartAddrs(&dns.Msg{Answer: m.Extra}) // glue follows the SRV order
			}
			require.Len(t, got, 4)
			require.Equal(t, "10.0.0.4", got[3], "weight 0 comes last")
			firsts[got[0]]++
			seconds[got[1]]++
		}
		requireSmartShares(t, firsts, n, first, dns.TypeToString[qtype]+" first")
		requireSmartShares(t, seconds, n, second, dns.TypeToString[qtype]+" second")
	}
}

// TestSmartLocalityShares: with locality, same-zone instances come first in
// every answer, and weights hold within each zone's group.
func TestSmartLocalityShares(t *testing.T) {
	t.Parallel()
	c := newTestCatalog(t)
	c.Update("geo", svc("geo",
		weighted(inst("a1", "10.0.4.1", 80, "zone", "a"), 1),
		weighted(inst("a2", "10.0.4.2", 80, "zone", "a"), 3),
		weighted(inst("b1", "10.0.4.3", 80, "zone", "b"), 2),
		weighted(inst("b2", "10.0.4.4", 80, "zone", "b"), 6),
		weighted(inst("b3", "10.0.4.5", 80, "zone", "b"), 2),
	))
	opts := smartLocalityOptions()
	opts.Strategy = balance.Weighted
	opts.Rand = rand.New(rand.NewPCG(7, 7))
	h := NewHandler(c.Catalog, opts)
	const n = 20_000
	firsts, thirds := map[string]int{}, map[string]int{}
	sameZoneFirst := 0
	for i := range n {
		// Clients all over zone a's network, some through ECS.
		from, ecs := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), ""
		if i%2 == 1 {
			from, ecs = netip.MustParseAddr("192.0.2.1"), fmt.Sprintf("10.1.%d.0/24", i%256)
		}
		got := smartAddrs(h.reply(smartQuery(t, "geo.service.local.", dns.TypeA, ecs), false, from))
		require.Len(t, got, 5)
		if slices.Contains([]string{"10.0.4.1", "10.0.4.2"}, got[0]) && slices.Contains([]string{"10.0.4.1", "10.0.4.2"}, got[1]) {
			sameZoneFirst++
		}
		firsts[got[0]]++
		thirds[got[2]]++
	}
	require.Equal(t, n, sameZoneFirst, "same-zone instances first in 100% of answers")
	requireSmartShares(t, firsts, n, map[string]float64{"10.0.4.1": 0.25, "10.0.4.2": 0.75}, "first (zone a, weights 1/3)")
	requireSmartShares(t, thirds, n, map[string]float64{"10.0.4.3": 0.2, "10.0.4.4": 0.6, "10.0.4.5": 0.2}, "third (zone b, weights 2/6/2)")
}

// TestSmartStickyShares: over 5,000 distinct client subnets, the sticky
// first pick follows the weights 1/2/7.
func TestSmartStickyShares(t *testing.T) {
	t.Parallel()
	c := newTestCatalog(t)
	c.Update("sticky", svc("sticky",
		weighted(inst("s1", "10.0.5.1", 80), 1),
		weighted(inst("s2", "10.0.5.2", 80), 2),
		weighted(inst("s3", "10.0.5.3", 80), 7),
	))
	opts := smartOptions()
	opts.Strategy = balance.Sticky
	h := NewHandler(c.Catalog, opts)
	want := map[string]float64{"10.0.5.1": 0.1, "10.0.5.2": 0.2, "10.0.5.3": 0.7}
	for _, family := range []string{"ipv4 /24", "ipv6 /56"} {
		const n = 5_000
		firsts := map[string]int{}
		for i := range n {
			var from netip.Addr
			if family == "ipv4 /24" {
				from = netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1}) // one client per /24
			} else {
				from = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 8), byte(i), 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
			}
			q := new(dns.Msg).SetQuestion("sticky.service.local.", dns.TypeA)
			got := smartAddrs(h.reply(q, false, from))
			require.Len(t, got, 3)
			firsts[got[0]]++
			// Sticky: asking again changes nothing.
			require.Equal(t, got[0], smartAddrs(h.reply(q, false, from))[0])
		}
		requireSmartShares(t, firsts, n, want, family+" first")
	}
}

// TestSmartNegativeAnswers: a service that exists with no serving instance
// answers NODATA with the negative TTL, an unknown one NXDOMAIN; the fast
// path's negative answer is replaced the moment an instance registers.
func TestSmartNegativeAnswers(t *testing.T) {
	t.Parallel()
	c := newTestCatalog(t)
	c.Update("down", svcServing("down", []registry.Instance{smartStatus(inst("x", "10.0.0.1", 80), registry.StatusUnhealthy)}, []string{"x"}))
	c.Update("empty", svc("empty")) // set members, no live instance key
	opts := smartOptions()
	opts.NegativeTTL = 7
	h := NewHandler(c.Catalog, opts)
	SOA := fmt.Sprintf("service.local. 7 IN SOA ns.service.local. hostmaster.service.local. %d 3600 600 86400 7", c.Serial())
	var cases []dnstest.Case
	for _, name := range []string{"down.service.local.", "empty.service.local.", "_down._tcp.service.local."} {
		for _, qt := range []uint16{dns.TypeSRV, dns.TypeA, dns.TypeAAAA} {
			cases = append(cases, dnstest.Case{Qname: name, Qtype: qt, Authoritative: true, Ns: dnstest.RRs(t, SOA)})
		}
	}
	cases = append(cases,
		dnstest.Case{Qname: "_down._tcp.service.local.", Qtype: dns.TypePTR, Authoritative: true, Ns: dnstest.RRs(t, SOA)},
		dnstest.Case{Qname: "unknown.service.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Authoritative: true, Ns: dnstest.RRs(t, SOA)},
		dnstest.Case{Qname: "_unknown._tcp.service.local.", Qtype: dns.TypeSRV, Rcode: dns.RcodeNameError, Authoritative: true, Ns: dnstest.RRs(t, SOA)},
	)
	run(t, h, cases)

	fast := func(name string) *dns.Msg {
		t.Helper()
		pkt, err := new(dns.Msg).SetQuestion(name, dns.TypeA).Pack()
		require.NoError(t, err)
		out := make([]byte, 512)
		n := fastAfterFirst(h, pkt, out, make([]byte, 512))
		require.NotZero(t, n, "%s on the fast path", name)
		m := new(dns.Msg)
		require.NoError(t, m.Unpack(out[:n]))
		return m
	}
	m := fast("down.service.local.")
	require.Empty(t, m.Answer)
	require.EqualValues(t, 7, m.Ns[0].(*dns.SOA).Minttl)
	c.Update("down", svc("down", inst("x", "10.0.0.1", 80)))
	require.Equal(t, []string{"10.0.0.1"}, smartAddrs(fast("down.service.local.")), "no stale negative answer")
	c.Update("unknown", svc("unknown", inst("u", "10.0.0.2", 80)))
	require.Equal(t, []string{"10.0.0.2"}, smartAddrs(fast("unknown.service.local.")))
}
