package main

// Reliability tests of interoperability (../shared/RELIABILITY-TESTS.md
// R23, R24): resolvers in front of regdns (glibc getaddrinfo in a private
// namespace, unbound with a stub-zone), and Knot DNS as a reference
// authoritative server given the same records in a zone file. CoreDNS is
// not packaged in Debian, so it is not among the resolvers here
// (docs/RELIABILITY.md says so).

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/regdns/regdns/internal/config"
	"github.com/regdns/regdns/internal/loadtest"
	"github.com/regdns/regdns/internal/redistest"
	"github.com/regdns/regdns/registry"
)

// knotInstance is one instance of the registry both servers are given.
type knotInstance struct {
	service, id, host string
	port              int
	meta              map[string]any
}

// knotRegistry: web (3), wide (60: more than a UDP reply holds), mixed (a
// TCP and a UDP instance), v6 (an IPv6 instance with weight and priority).
func knotRegistry() []knotInstance {
	var out []knotInstance
	for i := range 3 {
		out = append(out, knotInstance{"web", fmt.Sprintf("w%d", i+1), fmt.Sprintf("10.10.0.%d", i+1), 80, nil})
	}
	for i := range 60 {
		out = append(out, knotInstance{"wide", fmt.Sprintf("n%02d", i), fmt.Sprintf("10.11.0.%d", i+1), 9000 + i, nil})
	}
	out = append(out,
		knotInstance{"mixed", "m-tcp", "10.12.0.1", 80, nil},
		knotInstance{"mixed", "m-udp", "10.12.0.2", 53, map[string]any{"protocol": "udp"}},
		knotInstance{"v6", "s1", "2001:db8::1", 443, map[string]any{"weight": 5, "priority": 2}},
	)
	return out
}

// knotZone writes the zone file of the registry: the records regdns
// answers, as a static zone (SOA as regdns serves it, NS with glue,
// <service> SRV/A/AAAA, <id>.<service> A/AAAA/TXT, RFC 2782 and RFC 6763
// names).
func knotZone(soa dns.RR, insts []knotInstance) string {
	const ttl = 5
	var b strings.Builder
	rr := func(name, typ, data string) { fmt.Fprintf(&b, "%s %d IN %s %s\n", name, ttl, typ, data) }
	b.WriteString(soa.String() + "\n")
	rr("service.local.", "NS", "ns.service.local.")
	rr("ns.service.local.", "A", "127.0.0.1")
	protos := map[string]map[string]bool{}
	for _, in := range insts {
		svc := in.service + ".service.local."
		target := in.id + "." + svc
		addrType := "A"
		if strings.Contains(in.host, ":") {
			addrType = "AAAA"
		}
		prio, weight := 1, 1
		if v, ok := in.meta["priority"].(int); ok {
			prio = v
		}
		if v, ok := in.meta["weight"].(int); ok {
			weight = v
		}
		proto := "tcp"
		if p, ok := in.meta["protocol"].(string); ok {
			proto = p
		}
		srv := fmt.Sprintf("%d %d %d %s", prio, weight, in.port, target)
		rr(svc, "SRV", srv)
		rr(svc, addrType, in.host)
		rr(target, addrType, in.host)
		var txt []string
		for _, k := range slices.Sorted(func(yield func(string) bool) {
			for k := range in.meta {
				if !yield(k) {
					return
				}
			}
		}) {
			txt = append(txt, fmt.Sprintf("%q", fmt.Sprintf("%s=%v", k, in.meta[k])))
		}
		if len(txt) > 0 {
			rr(target, "TXT", strings.Join(txt, " "))
		}
		typeName := "_" + in.service + "._" + proto + ".service.local."
		rr(typeName, "SRV", srv)
		rr(typeName, "PTR", in.id+"."+typeName)
		rr(in.id+"."+typeName, "SRV", srv)
		if len(txt) == 0 {
			txt = []string{`""`}
		}
		rr(in.id+"."+typeName, "TXT", strings.Join(txt, " "))
		if protos[in.service] == nil {
			protos[in.service] = map[string]bool{}
		}
		if !protos[in.service][proto] {
			protos[in.service][proto] = true
			rr("_services._dns-sd._udp.service.local.", "PTR", typeName)
		}
	}
	return b.String()
}

// startKnot runs knotd in the foreground on a free loopback port, serving
// zone as service.local., until the test ends.
func startKnot(t *testing.T, zone string) string {
	t.Helper()
	bin := lookPath(t, "knotd", "/usr/sbin/knotd")
	dir := t.TempDir()
	port := redistest.FreePort(t)
	zoneFile := filepath.Join(dir, "service.local.zone")
	require.NoError(t, os.WriteFile(zoneFile, []byte(zone), 0o600))
	conf := fmt.Sprintf(`server:
    listen: 127.0.0.1@%d
    rundir: %q
log:
  - target: stderr
    any: info
database:
    storage: %q
template:
  - id: default
    storage: %q
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: service.local
    file: %q
`, port, dir, dir, dir, zoneFile)
	confFile := filepath.Join(dir, "knot.conf")
	require.NoError(t, os.WriteFile(confFile, []byte(conf), 0o600))
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-c", confFile)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("knotd output:\n%s", out)
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	loadtest.WaitFor(t, 10*time.Second, 20*time.Millisecond, "knotd answers SOA", func() bool {
		m, _, err := (&dns.Client{Timeout: 200 * time.Millisecond}).Exchange(newQuery("service.local.", dns.TypeSOA), addr)
		return err == nil && m.Rcode == dns.RcodeSuccess
	})
	return addr
}

// knotCase is one query sent to both servers.
type knotCase struct {
	name    string
	network string
	pkt     []byte
	// differs lists the fields of the reply (knotView) in which regdns
	// differs from Knot on purpose, each with its reason; docs/RELIABILITY.md
	// ("R24: differences from Knot DNS") says the same.
	differs map[string]string
}

// knotView is what is compared of a reply: header, sections (each sorted,
// TTLs included), OPT.
func knotView(m *dns.Msg) map[string]string {
	if m == nil {
		return map[string]string{"reply": "none"}
	}
	section := func(rrs []dns.RR) string {
		var out []string
		for _, rr := range rrs {
			if rr.Header().Rrtype == dns.TypeOPT {
				continue
			}
			out = append(out, strings.ReplaceAll(rr.String(), "\t", " "))
		}
		slices.Sort(out)
		return strings.Join(out, "\n")
	}
	flags := func(names ...string) string {
		return strings.Join(slices.DeleteFunc(names, func(s string) bool { return s == "" }), " ")
	}
	on := func(b bool, s string) string {
		if b {
			return s
		}
		return ""
	}
	v := map[string]string{
		"rcode":      dns.RcodeToString[m.Rcode],
		"opcode":     dns.OpcodeToString[m.Opcode],
		"flags":      flags(on(m.Response, "qr"), on(m.Authoritative, "aa"), on(m.Truncated, "tc"), on(m.RecursionDesired, "rd"), on(m.RecursionAvailable, "ra"), on(m.AuthenticatedData, "ad"), on(m.CheckingDisabled, "cd")),
		"question":   fmt.Sprint(m.Question),
		"answer":     section(m.Answer),
		"authority":  section(m.Ns),
		"additional": section(m.Extra),
		"opt":        "none",
	}
	if opt := m.IsEdns0(); opt != nil {
		v["opt"] = fmt.Sprintf("version %d, udp %d, do %t, options %d", opt.Version(), opt.UDPSize(), opt.Do(), len(opt.Option))
	}
	return v
}

// askRaw sends pkt over network and returns the reply (nil after silence).
func askRaw(t *testing.T, network, addr string, pkt []byte) *dns.Msg {
	t.Helper()
	c := dialWire(t, network, addr)
	require.NoError(t, c.send(pkt))
	b, err := c.recv(silenceWait)
	if err != nil {
		return nil
	}
	m := new(dns.Msg)
	require.NoError(t, m.Unpack(b), "reply from %s does not parse", addr)
	return m
}

// TestReliabilityR24KnotReference: the same questions to regdns and to
// finalSOA returns the zone's SOA once its serial can no longer move. The
// serial is the second of the last change, and a change made in the second
// the serial already names moves it to the next second once that comes
// (dns/catalog.go): a serial read in a later second than its own is final,
// as long as the registry does not change.
func finalSOA(t *testing.T, r *regdnsUnderTest) dns.RR {
	t.Helper()
	var soa dns.RR
	require.Eventually(t, func() bool {
		before := time.Now().Unix()
		m, err := r.exchange("udp", "service.local.", dns.TypeSOA, 0)
		if err != nil || len(m.Answer) != 1 {
			return false
		}
		soa = m.Answer[0]
		s, ok := soa.(*dns.SOA)
		return ok && int64(s.Serial) < before
	}, 10*time.Second, 20*time.Millisecond, "the SOA serial never settled")
	return soa
}

// Knot DNS serving the same records from a zone file; every field of every
// reply is equal, or the difference is one regdns makes on purpose, listed
// with its reason.
func TestReliabilityR24KnotReference(t *testing.T) {
	rs := redistest.Start(t)
	w := registry.NewWriter(rs.Client(t), registry.DefaultKeys())
	ctx := context.Background()
	insts := knotRegistry()
	for _, in := range insts {
		require.NoError(t, w.Register(ctx, in.service, in.id, in.host, in.port, in.meta, 5*time.Minute))
		require.NoError(t, w.SetHealth(ctx, in.service, in.id, registry.StatusHealthy, time.Minute))
	}
	r := startRegdns(t, rs.URL(), func(c *config.Config) { c.Log.Level = "info" })
	for _, svc := range []string{"web", "wide", "mixed", "v6"} {
		r.waitFor(t, svc+".service.local.", dns.TypeSRV, 10*time.Second, func(m *dns.Msg) bool { return len(m.Answer) > 0 })
	}
	waitSynced(t, r, "service.local.")
	knot := startKnot(t, knotZone(finalSOA(t, r), insts))

	q := func(name string, qtype uint16, edit ...func(*dns.Msg)) []byte {
		m := newQuery(name, qtype)
		m.Id = 0x2424
		for _, e := range edit {
			e(m)
		}
		return packMsg(t, m)
	}
	edns := func(size uint16, do bool) func(*dns.Msg) { return func(m *dns.Msg) { m.SetEdns0(size, do) } }
	const (
		whyANY = "RFC 8482 4.2: both give a minimal answer to ANY; regdns the synthesized HINFO \"RFC8482\" (4.2 first option), Knot one RRset of the name (4.2 second option)"
		whyCap = "deliberate: A/AAAA answers carry at most dns.max_answers (8) records, chosen by the balancing order, so they fit 512 octets and never need TC; " +
			"this departs from RFC 2181 5.1 (whole RRsets) the way DNS load balancers do (Route 53 multivalue answers: 8)"
		whyTC     = "both set TC (RFC 1035 4.2.1, RFC 6891 7); regdns keeps the records that fit, Knot sends none: which records a truncated reply carries is the server's choice (RFC 2181 9: the client ignores them and retries over TCP)"
		whyProto  = "regdns answers _<service>._tcp and _<service>._udp for every service, NODATA for the protocol no instance uses (README); a zone file has only the names it lists, so Knot says NXDOMAIN (both are consistent: no name exists below either)"
		whyCD     = "RFC 4035 3.1.6: a name server MUST copy the CD bit from the query into the response; regdns does, Knot 3.2 clears it in a zone without DNSSEC"
		whyAXFR   = "RFC 1035 4.1.1: REFUSED is the rcode for a zone transfer refused by policy; Knot answers NOTAUTH (TSIG's \"not authorized\", RFC 8945) when no ACL allows the client"
		whyOpcode = "regdns has no secondaries to notify and takes no updates: NOTIMP (RFC 1035 4.1.1; RFC 1996 and RFC 2136 leave a server free not to implement them); Knot knows the opcodes and answers NOTAUTH (no ACL allows the client)"
		whyOpRD   = "regdns copies RD only for QUERY (miekg SetReply): in UPDATE that bit is Z, zero in every response (RFC 2136 2.2); Knot copies it for every opcode"
		whyQD2    = "RFC 9619 4: a QUERY with QDCOUNT > 1 is malformed, and a response to it MUST be FORMERR; regdns sends it (with OPT when the query has one, RFC 6891 7), Knot drops the packet (no response is also allowed)"
	)
	cases := []knotCase{
		{name: "SOA apex", network: "udp", pkt: q("service.local.", dns.TypeSOA)},
		{name: "NS apex (glue)", network: "udp", pkt: q("service.local.", dns.TypeNS)},
		{name: "A ns", network: "udp", pkt: q("ns.service.local.", dns.TypeA)},
		{name: "A service", network: "udp", pkt: q("web.service.local.", dns.TypeA)},
		{name: "SRV service (glue)", network: "udp", pkt: q("web.service.local.", dns.TypeSRV)},
		{name: "NODATA AAAA", network: "udp", pkt: q("web.service.local.", dns.TypeAAAA)},
		{name: "NODATA TXT", network: "udp", pkt: q("web.service.local.", dns.TypeTXT)},
		{name: "NXDOMAIN", network: "udp", pkt: q("nope.service.local.", dns.TypeA)},
		{name: "NXDOMAIN below an instance", network: "udp", pkt: q("x.w1.web.service.local.", dns.TypeA)},
		{name: "A instance", network: "udp", pkt: q("w1.web.service.local.", dns.TypeA)},
		{name: "AAAA service", network: "udp", pkt: q("v6.service.local.", dns.TypeAAAA)},
		{name: "SRV weight and priority", network: "udp", pkt: q("v6.service.local.", dns.TypeSRV)},
		{name: "TXT instance metadata", network: "udp", pkt: q("s1.v6.service.local.", dns.TypeTXT)},
		{name: "ANY service", network: "udp", pkt: q("web.service.local.", dns.TypeANY), differs: map[string]string{"answer": whyANY}},
		{name: "ANY over TCP", network: "tcp", pkt: q("w1.web.service.local.", dns.TypeANY), differs: map[string]string{"answer": whyANY}},
		{name: "SRV 60 over UDP: TC", network: "udp", pkt: q("wide.service.local.", dns.TypeSRV), differs: map[string]string{"answer": whyTC}},
		{name: "SRV 60 over UDP EDNS 1232: TC", network: "udp", pkt: q("wide.service.local.", dns.TypeSRV, edns(1232, false)), differs: map[string]string{"answer": whyTC}},
		{name: "SRV 60 over TCP", network: "tcp", pkt: q("wide.service.local.", dns.TypeSRV)},
		{name: "A 60 over UDP", network: "udp", pkt: q("wide.service.local.", dns.TypeA), differs: map[string]string{"answer": whyCap, "flags": whyCap}},
		{name: "A 60 over TCP", network: "tcp", pkt: q("wide.service.local.", dns.TypeA), differs: map[string]string{"answer": whyCap}},
		{name: "EDNS 1232 DO", network: "udp", pkt: q("web.service.local.", dns.TypeA, edns(1232, true))},
		{name: "EDNS 4096", network: "udp", pkt: q("web.service.local.", dns.TypeSRV, edns(4096, false))},
		{name: "EDNS version 1: BADVERS", network: "udp", pkt: q("web.service.local.", dns.TypeA, edns(1232, false), func(m *dns.Msg) { m.IsEdns0().SetVersion(1) })},
		{name: "case echoed (0x20)", network: "udp", pkt: q("WeB.SeRvIcE.LoCaL.", dns.TypeA)},
		{name: "case echoed over TCP", network: "tcp", pkt: q("W1.wEb.SERVICE.local.", dns.TypeA)},
		{name: "out of zone", network: "udp", pkt: q("example.com.", dns.TypeA)},
		{name: "class CH", network: "udp", pkt: q("web.service.local.", dns.TypeA, func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS })},
		{name: "RFC 2782 SRV", network: "udp", pkt: q("_web._tcp.service.local.", dns.TypeSRV)},
		{name: "RFC 2782 other protocol", network: "udp", pkt: q("_web._udp.service.local.", dns.TypeSRV), differs: map[string]string{"rcode": whyProto}},
		{name: "RFC 2782 UDP instance", network: "udp", pkt: q("_mixed._udp.service.local.", dns.TypeSRV)},
		{name: "DNS-SD enumeration", network: "udp", pkt: q("_services._dns-sd._udp.service.local.", dns.TypePTR)},
		{name: "DNS-SD browsing", network: "udp", pkt: q("_web._tcp.service.local.", dns.TypePTR)},
		{name: "DNS-SD instance SRV", network: "udp", pkt: q("w1._web._tcp.service.local.", dns.TypeSRV)},
		{name: "DNS-SD instance TXT", network: "udp", pkt: q("w1._web._tcp.service.local.", dns.TypeTXT)},
		{name: "empty non-terminal", network: "udp", pkt: q("_tcp.service.local.", dns.TypeA)},
		{name: "empty non-terminal DNS-SD", network: "udp", pkt: q("_dns-sd._udp.service.local.", dns.TypePTR)},
		{name: "RD echoed", network: "udp", pkt: q("web.service.local.", dns.TypeA, func(m *dns.Msg) { m.RecursionDesired = true })},
		{name: "CD echoed", network: "udp", pkt: q("web.service.local.", dns.TypeA, func(m *dns.Msg) { m.CheckingDisabled = true }), differs: map[string]string{"flags": whyCD}},
		{name: "AXFR not allowed", network: "tcp", pkt: q("service.local.", dns.TypeAXFR), differs: map[string]string{"rcode": whyAXFR}},
		{name: "NOTIFY", network: "udp", pkt: q("service.local.", dns.TypeSOA, func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify }), differs: map[string]string{"rcode": whyOpcode, "flags": whyOpRD}},
		{name: "UPDATE", network: "udp", pkt: q("service.local.", dns.TypeSOA, func(m *dns.Msg) { m.Opcode = dns.OpcodeUpdate }), differs: map[string]string{"rcode": whyOpcode, "flags": whyOpRD}},
		{name: "QDCOUNT 0", network: "udp", pkt: rawHeader(0x2424, 0, 0, 0, 0, 0)},
		{name: "QDCOUNT 2", network: "udp", pkt: joinBytes(rawHeader(0x2424, 0, 2, 0, 0, 0), rawQuestion(t, "web.service.local.", dns.TypeA, dns.ClassINET), rawQuestion(t, "web.service.local.", dns.TypeA, dns.ClassINET)), differs: map[string]string{"reply": whyQD2}},
		{name: "QR set: no reply", network: "udp", pkt: joinBytes(rawHeader(0x2424, flagQR, 1, 0, 0, 0), rawQuestion(t, "web.service.local.", dns.TypeA, dns.ClassINET))},
	}
	var report []string
	seen := map[string]bool{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.NotContains(t, seen, tc.name)
			seen[tc.name] = true
			got := knotView(askRaw(t, tc.network, r.addr, tc.pkt))
			ref := knotView(askRaw(t, tc.network, knot, tc.pkt))
			var differs []string
			for _, field := range slices.Sorted(func(yield func(string) bool) {
				for k := range ref {
					if !yield(k) {
						return
					}
				}
			}) {
				if got[field] != ref[field] {
					differs = append(differs, field)
					report = append(report, fmt.Sprintf("%s %s: regdns %q, Knot %q", tc.name, field, knotClip(got[field]), knotClip(ref[field])))
				}
			}
			var documented []string
			for field := range tc.differs {
				documented = append(documented, field)
			}
			slices.Sort(documented)
			if !slices.Equal(differs, documented) {
				for _, f := range differs {
					t.Logf("%s:\n  regdns: %s\n  Knot:   %s", f, got[f], ref[f])
				}
			}
			require.Equal(t, documented, differs, "fields that differ from Knot (the documented ones only)")
			if tc.network == "udp" && got["reply"] == "" && len(tc.pkt) >= 2 {
				m := askRaw(t, "udp", r.addr, tc.pkt)
				require.Equal(t, binary.BigEndian.Uint16(tc.pkt), m.Id)
			}
		})
	}
	for _, line := range report {
		t.Log(line)
	}
	differing := map[string]bool{}
	for _, tc := range cases {
		if len(tc.differs) > 0 {
			differing[tc.name] = true
		}
	}
	loadtest.Record(t, (loadtest.Result{Sent: len(cases), Answered: len(cases)}).Line("R24",
		fmt.Sprintf("conformance against Knot DNS %s given the same records (60-instance service included): %d queries over UDP and TCP, %d equal in every field, %d with %d documented differences (section below)",
			knotVersion(t), len(cases), len(cases)-len(differing), len(differing), len(report))))
}

// knotClip shortens a field for the report.
func knotClip(s string) string {
	s = strings.ReplaceAll(s, "\n", "; ")
	if len(s) > 160 {
		return s[:160] + "..."
	}
	return s
}

// knotVersion is knotd's version ("3.2.6").
func knotVersion(t *testing.T) string {
	out, err := exec.Command(lookPath(t, "knotd", "/usr/sbin/knotd"), "--version").Output()
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(out))
	return f[len(f)-1]
}

// ---------------------------------------------------------------------------
// R23: resolver interop.

// TestReliabilityR23UnboundStub: unbound with a stub-zone for service.local
// pointing at regdns. A 60-instance SRV answer that does not fit UDP goes
// TC, then TCP, from unbound to regdns; an NXDOMAIN is cached for the SOA
// MINIMUM (dns.negative_ttl) and no longer; and with Redis killed (R1's
// fault) every question through unbound is still answered.
func TestReliabilityR23UnboundStub(t *testing.T) {
	const (
		ttl    = time.Second     // dns.ttl: unbound must come back to regdns during the outage
		negTTL = 2 * time.Second // dns.negative_ttl = SOA MINIMUM
	)
	rs := redistest.Start(t)
	client := rs.Client(t)
	w := registry.NewWriter(client, registry.DefaultKeys())
	ctx := context.Background()
	for i := range 60 {
		require.NoError(t, w.Register(ctx, "wide", fmt.Sprintf("w%02d", i), fmt.Sprintf("10.7.0.%d", i+1), 8000+i, nil, 10*time.Minute))
	}
	for i := range 3 {
		require.NoError(t, w.Register(ctx, "web", fmt.Sprintf("u%d", i), fmt.Sprintf("10.8.0.%d", i+1), 8080, nil, 10*time.Minute))
	}
	r := startRegdns(t, rs.URL(), func(c *config.Config) {
		c.Log.Level = "info"
		c.Health.Mode = "healthy_or_unknown"
		c.DNS.TTL = config.Duration{Duration: ttl}
		c.DNS.NegativeTTL = config.Duration{Duration: negTTL}
		c.Redis.Timeout = config.Duration{Duration: 300 * time.Millisecond}
	})
	r.waitFor(t, "wide.service.local.", dns.TypeA, 5*time.Second, func(m *dns.Msg) bool { return len(m.Answer) == 8 })
	waitSynced(t, r, "service.local.")
	ub := startUnbound(t, r.addr)

	// TC -> TCP: the 60 SRV records with glue exceed regdns's 1232-octet
	// UDP limit; unbound retries over TCP and has the whole set.
	tcpBefore := r.scrape(t).value("regdns_dns_queries_total", "transport", "tcp")
	wide := resolve(t, "tcp", ub, "wide.service.local.", dns.TypeSRV)
	require.Equal(t, dns.RcodeSuccess, wide.Rcode)
	require.Len(t, wide.Answer, 60)
	// The reply is counted after it is written: poll for the count.
	var tcpQueries float64
	loadtest.WaitFor(t, 2*time.Second, 10*time.Millisecond, "unbound asked regdns over TCP after TC", func() bool {
		tcpQueries = r.scrape(t).value("regdns_dns_queries_total", "transport", "tcp") - tcpBefore
		return tcpQueries > 0
	})

	// Negative caching: NXDOMAIN, cached by unbound for the SOA MINIMUM
	// although regdns knows the name a moment later.
	nx := resolve(t, "udp", ub, "late.service.local.", dns.TypeA)
	nxAt := time.Now()
	require.Equal(t, dns.RcodeNameError, nx.Rcode)
	require.Len(t, nx.Ns, 1)
	soa := nx.Ns[0].(*dns.SOA)
	require.Equal(t, uint32(negTTL/time.Second), soa.Minttl, "SOA MINIMUM = dns.negative_ttl")
	require.LessOrEqual(t, soa.Hdr.Ttl, uint32(negTTL/time.Second))
	require.NoError(t, w.Register(ctx, "late", "l1", "10.9.0.1", 80, nil, 10*time.Minute))
	r.waitFor(t, "late.service.local.", dns.TypeA, 2*time.Second, func(m *dns.Msg) bool { return len(m.Answer) == 1 })
	regdnsKnew := time.Since(nxAt)
	cached, ok := loadtest.Within(negTTL+2*time.Second, 10*time.Millisecond, func() bool {
		q := newQuery("late.service.local.", dns.TypeA)
		m, _, err := (&dns.Client{Timeout: time.Second}).Exchange(q, ub)
		return err == nil && m.Rcode == dns.RcodeSuccess && len(m.Answer) == 1
	})
	cached += time.Since(nxAt) - cached // from the NXDOMAIN, not from the poll's start
	require.True(t, ok, "unbound answers the new name once the negative TTL has passed")
	t.Logf("TC -> TCP: %v TCP queries from unbound to regdns for the 60-record SRV; NXDOMAIN cached by unbound for %v (SOA MINIMUM %v; regdns knew the name after %v)",
		tcpQueries, cached.Round(10*time.Millisecond), negTTL, regdnsKnew.Round(time.Millisecond))
	// unbound keeps expiry times in whole seconds: an entry lives between
	// TTL-1 and TTL+1 seconds.
	require.GreaterOrEqual(t, cached, negTTL-time.Second, "unbound keeps the NXDOMAIN for the SOA MINIMUM")
	require.LessOrEqual(t, cached, negTTL+1500*time.Millisecond, "and not longer")

	// R1 through unbound: Redis killed under load; every known name stays
	// answered through the resolver (regdns serves its last view).
	oracle := &loadtest.Oracle{Client: client, Mode: registry.ModeHealthyOrUnknown}
	want, err := oracle.Want(ctx, []string{"web", "wide"})
	require.NoError(t, err)
	// wide's A answer is capped at dns.max_answers and its SRV is not; the
	// load's MaxAnswers applies to every type, so wide is asked SRV only.
	load := &loadtest.Load{Addr: ub, Rate: 100, Duration: loadtest.Size(4*time.Second, 30*time.Second), MaxAnswers: 100,
		Questions: []loadtest.Question{
			{Name: "web.service.local.", Qtype: dns.TypeA}, {Name: "web.service.local.", Qtype: dns.TypeSRV},
			{Name: "web.service.local.", Qtype: dns.TypeAAAA}, {Name: "wide.service.local.", Qtype: dns.TypeSRV},
		},
		Expect: loadtest.NewExpect(want)}
	running := load.Start(ctx)
	t.Cleanup(func() { running.Stop() })
	loadtest.WaitFor(t, 5*time.Second, 10*time.Millisecond, "load under way", func() bool { return running.Load().Progress().Sent >= 50 })
	running.Load().Phase("redis killed")
	queriesBefore := r.scrape(t).value("regdns_dns_queries_total")
	rs.Kill(t)
	res := running.Wait()
	// dns.ttl is 1 s: unbound went back to regdns during the outage.
	refetched := r.scrape(t).value("regdns_dns_queries_total") - queriesBefore
	require.GreaterOrEqual(t, refetched, 4.0, "unbound asked regdns again while Redis was down")
	t.Logf("through unbound, Redis killed: %v; phase after the kill: %v; %v queries from unbound reached regdns after the kill", res, res.Phase("redis killed"), refetched)
	require.Positive(t, res.Phase("redis killed").Sent)
	require.Zero(t, res.Failed(), "through unbound: %.2000s", res)
	loadtest.Record(t, res.Line("R23", fmt.Sprintf("unbound stub-zone: TC -> TCP for 60 SRV (%v TCP queries upstream), NXDOMAIN cached %v for SOA MINIMUM %v, Redis SIGKILL under 100 qps through unbound",
		tcpQueries, cached.Round(100*time.Millisecond), negTTL)))
}

// r23Script runs as root inside `unshare --net --mount --pid --fork`: Redis
// and regdns on 127.0.0.1:53 with resolv.conf pointing there, then glibc's
// getaddrinfo (getent ahosts). It prints lines the Go side parses; every
// wait is a bounded polling loop.
const r23Script = `
set -euo pipefail
pids=()
cleanup() { local p; for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap 'rc=$?; if [ "$rc" -ne 0 ]; then echo "--- regdns log"; cat "$WORK/regdns.log" 2>/dev/null || true; fi; cleanup' EXIT
until_ok() {
	local secs=$1 what=$2; shift 2
	local end=$(( $(date +%s%N) + secs * 1000000000 ))
	until "$@"; do
		if (( $(date +%s%N) > end )); then echo "FAIL $what: not within ${secs}s"; return 1; fi
		sleep 0.05
	done
}
ip link set lo up
{ grep -vE '^[[:space:]]*hosts:' /etc/nsswitch.conf 2>/dev/null || true; echo "hosts: files dns"; } >"$WORK/nsswitch.conf"
mount --bind "$WORK/nsswitch.conf" /etc/nsswitch.conf
for d in /run/nscd /var/run/nscd; do if [ -d "$d" ]; then mount -t tmpfs tmpfs "$d"; fi; done
printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:2\n' >"$WORK/resolv.conf"
mount --bind "$WORK/resolv.conf" /etc/resolv.conf

mkdir -p "$WORK/redis"
"$REDIS_SERVER" --bind 127.0.0.1 --port 6379 --save '' --appendonly no --protected-mode no --dir "$WORK/redis" >"$WORK/redis.log" 2>&1 &
redis_pid=$!
pids+=($redis_pid)
until_ok 10 "redis answers" "$REDIS_CLI" ping
now=$(date +%s)
reg() { # service id host port
	"$REDIS_CLI" setex "services:$1:instances:$2" 600 "{\"service_name\":\"$1\",\"instance_id\":\"$2\",\"host\":\"$3\",\"port\":$4,\"metadata\":{},\"registered_at\":$now,\"last_heartbeat\":$now}" >/dev/null
	"$REDIS_CLI" sadd "services:$1" "$2" >/dev/null
}
for i in $(seq 0 59); do reg wide "w$i" "10.21.0.$((i + 1))" $((9000 + i)); done
for i in 1 2 3; do reg user-service "u$i" "10.20.0.$i" 8080; done

# dns.max_answers 60: the A answer of wide (60 records) does not fit 512
# octets, so glibc gets TC and retries over TCP. Every query is logged.
REGDNS_DNS_MAX_ANSWERS=60 REGDNS_LOG_QUERIES=1 REGDNS_LOG_FORMAT=json REGDNS_DNS_NEGATIVE_TTL=2s REGDNS_REDIS_TIMEOUT=300ms \
	"$REGDNS" serve -listen 127.0.0.1:53 -http off -zone service.internal -health-mode healthy_or_unknown \
	-redis redis://127.0.0.1:6379/0 >"$WORK/regdns.log" 2>&1 &
pids+=($!)
count() { getent ahosts "$1" | awk '{print $1}' | sort -u | wc -l; }
has() { [ "$(count "$1")" = "$2" ]; }
until_ok 20 "getent ahosts user-service.service.internal lists 3" has user-service.service.internal 3

echo "WIDE $(count wide.service.internal)"
echo "WIDE-TCP $(grep -c '"qname":"wide.service.internal.".*"transport":"tcp"' "$WORK/regdns.log" || true)"
echo "WIDE-UDP-TC $(grep -c '"qname":"wide.service.internal.".*"transport":"udp"' "$WORK/regdns.log" || true)"

# glibc has no cache of its own: a name registered after an NXDOMAIN
# resolves at the next call.
rc=0; getent ahosts late.service.internal >/dev/null || rc=$?
echo "LATE-BEFORE $rc"
reg late l1 10.22.0.1 80
until_ok 5 "late.service.internal resolves" has late.service.internal 1
echo "LATE-AFTER 0"

# R1 through glibc: Redis SIGKILLed; every lookup still answered.
kill -9 "$redis_pid"
ok=0; failed=0
for i in $(seq 1 30); do
	if has user-service.service.internal 3 && has wide.service.internal 60; then ok=$((ok + 1)); else failed=$((failed + 1)); fi
done
echo "OUTAGE $ok $failed"
echo "DONE"
`

// TestReliabilityR23Glibc: glibc's getaddrinfo (getent ahosts) with
// resolv.conf pointing at regdns on port 53, in a private network and mount
// namespace (as sysresolver_test.go). TC -> TCP works through glibc, glibc
// caches nothing (a name registered after an NXDOMAIN resolves at once),
// and with Redis killed every lookup is still answered.
func TestReliabilityR23Glibc(t *testing.T) {
	unshare := requireNamespaces(t)
	redisServer := lookPath(t, "redis-server")
	redisCLI := lookPath(t, "redis-cli")
	lookPath(t, "getent")
	lookPath(t, "ip", "/usr/sbin/ip", "/sbin/ip")
	bin := regdnsBinary(t)
	work := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, unshare, "--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc", "--", "/bin/bash", "-c", r23Script)
	cmd.Env = append(os.Environ(), "WORK="+work, "REDIS_SERVER="+redisServer, "REDIS_CLI="+redisCLI, "REGDNS="+bin)
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("namespace script output:\n%s", out)
		}
	})
	require.NoError(t, err)
	o := parseSysOutput(t, string(out))
	require.Empty(t, o.lines["FAIL"])
	require.NotEmpty(t, o.lines["DONE"])
	field := func(prefix string) []string {
		require.Len(t, o.lines[prefix], 1, prefix)
		return o.lines[prefix][0]
	}
	require.Equal(t, []string{"60"}, field("WIDE"), "getent ahosts wide: all 60 addresses")
	require.NotEqual(t, []string{"0"}, field("WIDE-TCP"), "glibc retried over TCP after TC")
	require.Equal(t, []string{"2"}, field("LATE-BEFORE"), "not found before the registration")
	require.Equal(t, []string{"0"}, field("LATE-AFTER"))
	outage := field("OUTAGE")
	require.Equal(t, "0", outage[1], "lookups failed with Redis killed")
	t.Logf("getent ahosts wide: 60 addresses, %s TCP and %s UDP queries for it; glibc caches no NXDOMAIN; Redis killed: %s of %s lookups answered",
		field("WIDE-TCP")[0], field("WIDE-UDP-TC")[0], outage[0], outage[0])
	n := 0
	fmt.Sscan(outage[0], &n)
	loadtest.Record(t, (loadtest.Result{Sent: 2 * n, Answered: 2 * n}).Line("R23",
		"glibc getent ahosts: TC -> TCP (60 A records), no negative cache in glibc, Redis SIGKILL: every lookup answered (lookups, no latencies)"))
}
