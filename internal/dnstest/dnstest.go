// Package dnstest holds test-only helpers for DNS tests, in the manner of
// CoreDNS's plugin/test: a [Case] is one query and the reply expected, with
// records written as zone-file lines ([RR]), [Check] compares a reply with it
// section by section, and [Exchange] sends a query to a real server. Only
// _test.go files may import it; production code never does.
package dnstest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"
)

// DefaultUDPSize is the EDNS payload size a Case advertises when it asks for
// EDNS (Do set) without naming a size.
const DefaultUDPSize = 4096

// Case is one query and the reply expected to it.
type Case struct {
	// Name names the subtest (default "<qname> <qtype>").
	Name  string
	Qname string
	Qtype uint16
	// Qclass of the question (default IN).
	Qclass uint16
	// Do asks for DNSSEC records: the query carries an OPT record with the DO
	// bit set.
	Do bool
	// UDPSize, when not zero, makes the query carry an OPT record advertising
	// that payload size (Do alone advertises DefaultUDPSize).
	UDPSize uint16

	// Rcode expected (dns.RcodeSuccess is zero).
	Rcode int
	// Authoritative is the AA bit expected; it is always checked.
	Authoritative bool
	// Answer, Ns and Extra are the records expected in each section, in any
	// order. The OPT record of an EDNS reply is not part of Extra.
	Answer, Ns, Extra []dns.RR
}

// String returns the name of the case for t.Run.
func (c Case) String() string {
	if c.Name != "" {
		return c.Name
	}
	s := c.Qname + " " + dns.TypeToString[c.Qtype]
	if c.Qclass != 0 && c.Qclass != dns.ClassINET {
		s += " " + dns.ClassToString[c.Qclass]
	}
	return s
}

// Msg returns the query of the case.
func (c Case) Msg() *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(c.Qname, c.Qtype)
	if c.Qclass != 0 {
		m.Question[0].Qclass = c.Qclass
	}
	if c.Do || c.UDPSize != 0 {
		size := c.UDPSize
		if size == 0 {
			size = DefaultUDPSize
		}
		m.SetEdns0(size, c.Do)
	}
	return m
}

// RR parses one record in zone-file syntax, such as
// "web.service.local. 5 IN A 10.0.0.1". Names must be fully qualified.
func RR(t testing.TB, s string) dns.RR {
	t.Helper()
	rr, err := dns.NewRR(s)
	require.NoError(t, err, "parse record %q", s)
	require.NotNil(t, rr, "no record in %q", s)
	return rr
}

// RRs parses one record per line.
func RRs(t testing.TB, lines ...string) []dns.RR {
	t.Helper()
	out := make([]dns.RR, len(lines))
	for i, s := range lines {
		out[i] = RR(t, s)
	}
	return out
}

// Check fails t unless resp answers the question of tc with its rcode, AA
// bit and records. The three sections are compared as sorted sets of
// zone-file lines, so order does not matter; the failure lists every record
// missing or unexpected in every section, then the whole reply.
func Check(t testing.TB, resp *dns.Msg, tc Case) {
	t.Helper()
	require.NotNil(t, resp, "%s: no response", tc)
	var problems []string
	if resp.Rcode != tc.Rcode {
		problems = append(problems, fmt.Sprintf("rcode: got %s, want %s",
			dns.RcodeToString[resp.Rcode], dns.RcodeToString[tc.Rcode]))
	}
	if resp.Authoritative != tc.Authoritative {
		problems = append(problems, fmt.Sprintf("aa: got %t, want %t", resp.Authoritative, tc.Authoritative))
	}
	if !resp.Response {
		problems = append(problems, "qr: not set")
	}
	want := tc.Msg().Question
	if !slices.Equal(resp.Question, want) {
		problems = append(problems, fmt.Sprintf("question: got %v, want %v (echoed unchanged)", resp.Question, want))
	}
	problems = append(problems, diffSection("answer", resp.Answer, tc.Answer)...)
	problems = append(problems, diffSection("authority", resp.Ns, tc.Ns)...)
	problems = append(problems, diffSection("additional", withoutOPT(resp.Extra), tc.Extra)...)
	if len(problems) > 0 {
		require.FailNow(t, fmt.Sprintf("%s: reply does not match", tc),
			"%s\n\nreply:\n%s", strings.Join(problems, "\n"), resp)
	}
}

// Strings returns the zone-file lines of rrs in their order, for tests that
// check the order of a section.
func Strings(rrs []dns.RR) []string {
	out := make([]string, len(rrs))
	for i, rr := range rrs {
		out[i] = rr.String()
	}
	return out
}

// diffSection describes the records missing from got and the unexpected ones.
func diffSection(section string, got, want []dns.RR) []string {
	g, w := Strings(got), Strings(want)
	slices.Sort(g)
	slices.Sort(w)
	var problems []string
	i, j := 0, 0
	for i < len(g) || j < len(w) {
		switch {
		case j == len(w) || i < len(g) && g[i] < w[j]:
			problems = append(problems, fmt.Sprintf("%s: unexpected %s", section, g[i]))
			i++
		case i == len(g) || w[j] < g[i]:
			problems = append(problems, fmt.Sprintf("%s: missing    %s", section, w[j]))
			j++
		default:
			i++
			j++
		}
	}
	return problems
}

func withoutOPT(rrs []dns.RR) []dns.RR {
	return slices.DeleteFunc(slices.Clone(rrs), func(rr dns.RR) bool {
		_, ok := rr.(*dns.OPT)
		return ok
	})
}

// ExchangeTimeout bounds one Exchange.
const ExchangeTimeout = 5 * time.Second

// Exchange sends m to addr over network ("udp" or "tcp") and returns the
// reply, failing t on any error (a timeout included).
func Exchange(t testing.TB, addr string, m *dns.Msg, network string) *dns.Msg {
	t.Helper()
	require.Contains(t, []string{"udp", "tcp"}, network, "network")
	c := &dns.Client{Net: network, Timeout: ExchangeTimeout}
	resp, _, err := c.Exchange(m, addr)
	require.NoError(t, err, "exchange %s over %s with %s", m.Question, network, addr)
	return resp
}
