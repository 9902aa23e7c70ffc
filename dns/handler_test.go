package dns

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/regdns/regdns/internal/balance"
	"github.com/regdns/regdns/internal/dnstest"
	"github.com/regdns/regdns/registry"
)

// bigCatalog serves "big" with n instances, 10.1.x.y.
func bigCatalog(t *testing.T, n int) testCatalog {
	t.Helper()
	c := newTestCatalog(t)
	ins := make([]registry.Instance, n)
	for i := range ins {
		ins[i] = inst(fmt.Sprintf("instance-%02d", i), fmt.Sprintf("10.1.%d.%d", i/256, i%256), 8080)
	}
	c.Update("big", svc("big", ins...))
	return c
}

// packedLen packs m as it goes on the wire and returns its size.
func packedLen(t *testing.T, m *dns.Msg) int {
	t.Helper()
	b, err := m.Pack()
	require.NoError(t, err)
	return len(b)
}

func TestReplyTruncation(t *testing.T) {
	t.Parallel()
	c := bigCatalog(t, 60)
	h := NewHandler(c.Catalog, testOptions())
	q := func(edns uint16) *dns.Msg {
		m := new(dns.Msg).SetQuestion("big.service.local.", dns.TypeSRV)
		if edns != 0 {
			m.SetEdns0(edns, false)
		}
		return m
	}

	t.Run("udp without EDNS", func(t *testing.T) {
		m := h.reply(q(0), false, netip.Addr{})
		require.True(t, m.Truncated)
		require.LessOrEqual(t, packedLen(t, m), dns.MinMsgSize)
		require.NotEmpty(t, m.Answer, "as many answers as fit")
		require.Less(t, len(m.Answer), 60)
		require.Nil(t, m.IsEdns0())
		require.True(t, m.Authoritative)
		require.Equal(t, dns.RcodeSuccess, m.Rcode)
	})
	t.Run("udp with EDNS 4096 is capped at MaxUDPSize", func(t *testing.T) {
		m := h.reply(q(4096), false, netip.Addr{})
		require.True(t, m.Truncated)
		n := packedLen(t, m)
		require.LessOrEqual(t, n, 1232)
		require.Greater(t, n, dns.MinMsgSize)
		require.NotNil(t, m.IsEdns0(), "OPT kept when truncating")
		require.EqualValues(t, 1232, m.IsEdns0().UDPSize())
	})
	t.Run("udp with EDNS below 512 gets 512", func(t *testing.T) {
		m := h.reply(q(100), false, netip.Addr{})
		require.True(t, m.Truncated)
		n := packedLen(t, m)
		require.LessOrEqual(t, n, dns.MinMsgSize)
		require.Greater(t, n, 400)
	})
	t.Run("udp with a raised MaxUDPSize", func(t *testing.T) {
		opts := testOptions()
		opts.MaxUDPSize = 4096
		m := NewHandler(c.Catalog, opts).reply(q(4096), false, netip.Addr{})
		require.False(t, m.Truncated)
		require.Len(t, m.Answer, 60)
		require.Len(t, m.Extra, 61) // glue and OPT
	})
	for _, edns := range []uint16{0, 4096} {
		t.Run(fmt.Sprintf("tcp, EDNS %d", edns), func(t *testing.T) {
			m := h.reply(q(edns), true, netip.Addr{})
			require.False(t, m.Truncated)
			require.Len(t, m.Answer, 60)
			require.Len(t, m.Extra, 60+btoi(edns != 0))
			require.Greater(t, packedLen(t, m), 1232)
		})
	}
	t.Run("small answers are not truncated", func(t *testing.T) {
		small := bigCatalog(t, 3)
		m := NewHandler(small.Catalog, testOptions()).reply(q(0), false, netip.Addr{})
		require.False(t, m.Truncated)
		require.Len(t, m.Answer, 3)
		require.Len(t, m.Extra, 3)
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestReplyEDNS(t *testing.T) {
	t.Parallel()
	c := newTestCatalog(t)
	fillLookup(c)
	h := NewHandler(c.Catalog, testOptions())

	// Every reply to an EDNS query carries an OPT with our size and the DO
	// bit echoed, whatever the rcode; replies to plain queries carry none.
	for _, tc := range []struct {
		qname string
		qtype uint16
		rcode int
	}{
		{"user-service.service.local.", dns.TypeSRV, dns.RcodeSuccess},
		{"user-service.service.local.", dns.TypeTXT, dns.RcodeSuccess},
		{"nope.service.local.", dns.TypeA, dns.RcodeNameError},
		{"example.com.", dns.TypeA, dns.RcodeRefused},
	} {
		for _, do := range []bool{false, true} {
			r := new(dns.Msg).SetQuestion(tc.qname, tc.qtype)
			r.SetEdns0(4096, do)
			m := h.reply(r, false, netip.Addr{})
			require.Equal(t, tc.rcode, m.Rcode, "%s %s", tc.qname, dns.TypeToString[tc.qtype])
			opt := m.IsEdns0()
			require.NotNil(t, opt, "%s %s: OPT", tc.qname, dns.TypeToString[tc.qtype])
			require.EqualValues(t, 1232, opt.UDPSize())
			require.Equal(t, do, opt.Do())
			require.EqualValues(t, 0, opt.Version())
			packedLen(t, m)

			m = h.reply(new(dns.Msg).SetQuestion(tc.qname, tc.qtype), false, netip.Addr{})
			require.Nil(t, m.IsEdns0())
			require.Equal(t, tc.rcode, m.Rcode)
		}
	}
}

// TestReplyBadVers: an EDNS version we do not speak is BADVERS (RFC 6891
// 6.1.3), with an OPT of version 0 carrying the upper bits of the rcode.
func TestReplyBadVers(t *testing.T) {
	t.Parallel()
	h := NewHandler(newTestCatalog(t).Catalog, testOptions())
	r := new(dns.Msg).SetQuestion("service.local.", dns.TypeSOA)
	r.SetEdns0(4096, false)
	r.IsEdns0().SetVersion(1)

	m := h.reply(r, false, netip.Addr{})
	require.Equal(t, dns.RcodeBadVers, m.Rcode)
	require.Empty(t, m.Answer)
	require.NotNil(t, m.IsEdns0())
	require.EqualValues(t, 0, m.IsEdns0().Version())

	b, err := m.Pack()
	require.NoError(t, err)
	var got dns.Msg
	require.NoError(t, got.Unpack(b))
	require.Equal(t, dns.RcodeBadVers, got.Rcode)
	require.Equal(t, r.Id, got.Id)
	require.Equal(t, r.Question, got.Question)
}

// recorder is a dns.ResponseWriter that keeps the message written.
type recorder struct {
	local net.Addr
	msg   *dns.Msg
}

func (r *recorder) LocalAddr() net.Addr {
	if r.local == nil {
		return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}
	}
	return r.local
}
func (r *recorder) RemoteAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 40212}
}
func (r *recorder) WriteMsg(m *dns.Msg) error   { r.msg = m; return nil }
func (r *recorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *recorder) Close() error                { return nil }
func (r *recorder) TsigStatus() error           { return nil }
func (r *recorder) TsigTimersOnly(bool)         {}
func (r *recorder) Hijack()                     {}

// recorder implements dns.ResponseWriter.
var _ dns.ResponseWriter = (*recorder)(nil)

func TestServeDNS(t *testing.T) {
	t.Parallel()
	c := bigCatalog(t, 60)
	h := NewHandler(c.Catalog, testOptions())
	q := new(dns.Msg).SetQuestion("big.service.local.", dns.TypeSRV)

	// Over UDP the reply is cut to 512 octets...
	w := &recorder{}
	h.ServeDNS(w, q)
	require.NotNil(t, w.msg)
	require.True(t, w.msg.Truncated)
	require.LessOrEqual(t, packedLen(t, w.msg), dns.MinMsgSize)

	// ...and a TCP connection carries it whole.
	w = &recorder{local: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}}
	h.ServeDNS(w, q)
	require.NotNil(t, w.msg)
	require.False(t, w.msg.Truncated)
	require.Len(t, w.msg.Answer, 60)

	tc := dnstest.Case{
		Qname: "instance-07.big.service.local.", Qtype: dns.TypeA, Authoritative: true,
		Answer: dnstest.RRs(t, "instance-07.big.service.local. 5 IN A 10.1.0.7"),
	}
	w = &recorder{}
	h.ServeDNS(w, tc.Msg())
	dnstest.Check(t, w.msg, tc)
}

// panicRand panics when drawn from, to make the handler panic mid-answer.
type panicRand struct{}

func (panicRand) IntN(int) int { panic("dice fell off the table") }

// TestServeDNSPanic: a panic while answering is SERVFAIL and a log line, not
// a dead server.
func TestServeDNSPanic(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	c := NewCatalog(func() bool { return true }, zerolog.New(&logs))
	c.Update("w", svc("w", inst("a", "10.0.0.1", 1), inst("b", "10.0.0.2", 1)))
	opts := testOptions()
	opts.Strategy = balance.Weighted
	opts.Rand = panicRand{}
	h := NewHandler(c, opts)

	w := &recorder{}
	q := new(dns.Msg).SetQuestion("w.service.local.", dns.TypeSRV)
	require.NotPanics(t, func() { h.ServeDNS(w, q) })
	require.NotNil(t, w.msg)
	require.Equal(t, dns.RcodeServerFailure, w.msg.Rcode)
	require.Equal(t, q.Id, w.msg.Id)
	require.Equal(t, q.Question, w.msg.Question)
	require.Contains(t, logs.String(), "dice fell off the table")
}
