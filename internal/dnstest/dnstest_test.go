package dnstest

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"
)

// fakeT records failures instead of ending the test, so Check itself can be
// tested.
type fakeT struct {
	testing.TB
	errors []string
	failed bool
}

func (f *fakeT) Helper() {}

func (f *fakeT) Name() string { return "fake" }

func (f *fakeT) Errorf(format string, args ...any) {
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}

func (f *fakeT) FailNow() { f.failed = true }

func TestCaseMsg(t *testing.T) {
	t.Parallel()
	m := Case{Qname: "a.example.org.", Qtype: dns.TypeSRV}.Msg()
	require.Len(t, m.Question, 1)
	require.Equal(t, dns.Question{Name: "a.example.org.", Qtype: dns.TypeSRV, Qclass: dns.ClassINET}, m.Question[0])
	require.Nil(t, m.IsEdns0())

	m = Case{Qname: "a.example.org.", Qtype: dns.TypeA, Qclass: dns.ClassCHAOS, Do: true}.Msg()
	require.EqualValues(t, dns.ClassCHAOS, m.Question[0].Qclass)
	require.NotNil(t, m.IsEdns0())
	require.True(t, m.IsEdns0().Do())
	require.EqualValues(t, DefaultUDPSize, m.IsEdns0().UDPSize())

	m = Case{Qname: "a.example.org.", Qtype: dns.TypeA, UDPSize: 1232}.Msg()
	require.NotNil(t, m.IsEdns0())
	require.False(t, m.IsEdns0().Do())
	require.EqualValues(t, 1232, m.IsEdns0().UDPSize())

	require.Equal(t, "a.example.org. A CH", Case{Qname: "a.example.org.", Qtype: dns.TypeA, Qclass: dns.ClassCHAOS}.String())
	require.Equal(t, "named", Case{Name: "named"}.String())
}

func TestCheck(t *testing.T) {
	t.Parallel()
	tc := Case{
		Qname: "a.example.org.", Qtype: dns.TypeA, Do: true, Authoritative: true,
		Answer: RRs(t, "a.example.org. 5 IN A 192.0.2.1", "a.example.org. 5 IN A 192.0.2.2"),
		Extra:  RRs(t, "b.example.org. 5 IN AAAA 2001:db8::1"),
	}
	resp := new(dns.Msg)
	resp.SetReply(tc.Msg())
	resp.Authoritative = true
	// Order does not matter; OPT in Extra is ignored.
	resp.Answer = RRs(t, "a.example.org. 5 IN A 192.0.2.2", "a.example.org. 5 IN A 192.0.2.1")
	resp.Extra = RRs(t, "b.example.org. 5 IN AAAA 2001:db8::1")
	resp.SetEdns0(1232, true)

	ft := &fakeT{}
	Check(ft, resp, tc)
	require.False(t, ft.failed, "%v", ft.errors)

	bad := resp.Copy()
	bad.Rcode = dns.RcodeNameError
	bad.Authoritative = false
	bad.Question[0].Name = "A.example.org."
	bad.Answer = RRs(t, "a.example.org. 5 IN A 192.0.2.1", "a.example.org. 5 IN A 192.0.2.3")
	bad.Ns = RRs(t, "example.org. 5 IN NS ns.example.org.")
	ft = &fakeT{}
	Check(ft, bad, tc)
	require.True(t, ft.failed)
	msg := strings.Join(ft.errors, "\n")
	for _, want := range []string{
		"rcode: got NXDOMAIN, want NOERROR",
		"aa: got false, want true",
		"question: got",
		"answer: unexpected a.example.org.\t5\tIN\tA\t192.0.2.3",
		"answer: missing    a.example.org.\t5\tIN\tA\t192.0.2.2",
		"authority: unexpected example.org.\t5\tIN\tNS\tns.example.org.",
	} {
		require.Contains(t, msg, want)
	}
	require.NotContains(t, msg, "additional:")
}

func TestRRs(t *testing.T) {
	t.Parallel()
	rrs := RRs(t, "x.example.org. 300 IN SRV 10 100 8080 t.example.org.", "x.example.org. 300 IN CNAME t.example.org.")
	require.Equal(t, []string{
		"x.example.org.\t300\tIN\tSRV\t10 100 8080 t.example.org.",
		"x.example.org.\t300\tIN\tCNAME\tt.example.org.",
	}, Strings(rrs))
}

func TestExchange(t *testing.T) {
	t.Parallel()
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Answer = []dns.RR{&dns.TXT{
			Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 1},
			Txt: []string{w.LocalAddr().Network()},
		}}
		_ = w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(2)
	udp := &dns.Server{PacketConn: pc, Handler: handler, NotifyStartedFunc: wg.Done}
	tcp := &dns.Server{Listener: l, Handler: handler, NotifyStartedFunc: wg.Done}
	for _, s := range []*dns.Server{udp, tcp} {
		go func() { _ = s.ActivateAndServe() }()
		t.Cleanup(func() { _ = s.Shutdown() })
	}
	wg.Wait()

	q := Case{Qname: "a.example.org.", Qtype: dns.TypeTXT}.Msg()
	resp := Exchange(t, pc.LocalAddr().String(), q, "udp")
	require.Equal(t, "a.example.org.\t1\tIN\tTXT\t\"udp\"", resp.Answer[0].String())
	resp = Exchange(t, l.Addr().String(), q, "tcp")
	require.Equal(t, "a.example.org.\t1\tIN\tTXT\t\"tcp\"", resp.Answer[0].String())
}
