package dns

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"
)

func TestRRLLimitsPerPrefixAndSlips(t *testing.T) {
	t.Parallel()
	r := newRRL(RRLOptions{Rate: 10, Burst: 5, Slip: 2})
	now := time.Unix(1_700_000_000, 0)
	r.now = func() time.Time { return now }
	flood := netip.MustParseAddr("192.0.2.7")
	neighbour := netip.MustParseAddr("192.0.2.200") // same /24
	other := netip.MustParseAddr("198.51.100.1")

	var sent, slipped, dropped int
	for range 25 {
		switch r.check(flood) {
		case rrlSend:
			sent++
		case rrlSlip:
			slipped++
		case rrlDrop:
			dropped++
		}
	}
	require.Equal(t, 5, sent, "the burst")
	require.Equal(t, 10, slipped, "every second limited response is truncated")
	require.Equal(t, 10, dropped)
	require.NotEqual(t, rrlSend, r.check(neighbour), "the /24 shares the bucket")
	require.Equal(t, rrlSend, r.check(other), "another prefix is answered")

	now = now.Add(time.Second / 2) // 5 tokens back
	for range 5 {
		require.Equal(t, rrlSend, r.check(flood))
	}
	require.NotEqual(t, rrlSend, r.check(flood))
}

func TestRRLOffAndBounded(t *testing.T) {
	t.Parallel()
	require.Nil(t, newRRL(RRLOptions{}))
	r := newRRL(RRLOptions{Rate: 1, MaxEntries: 160})
	for i := range 10_000 {
		r.check(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1}))
	}
	total := 0
	for i := range r.shards {
		total += len(r.shards[i].buckets)
	}
	require.LessOrEqual(t, total, 160, "a flood of sources keeps the table bounded")
}

func TestSlipReply(t *testing.T) {
	t.Parallel()
	m := new(dns.Msg).SetQuestion("user-service.service.local.", dns.TypeSRV)
	m.Response = true
	m.Answer = []dns.RR{newSRV("user-service.service.local.", 5, 1, 1, 80, "a.user-service.service.local.")}
	m.SetEdns0(1232, false)
	buf, err := m.Pack()
	require.NoError(t, err)
	n := slipReply(buf, len(buf))
	require.NotZero(t, n)
	got := new(dns.Msg)
	require.NoError(t, got.Unpack(buf[:n]))
	require.True(t, got.Truncated)
	require.Empty(t, got.Answer)
	require.Empty(t, got.Extra)
	require.Equal(t, m.Question, got.Question)
	require.Equal(t, m.Id, got.Id)
}

// Over real sockets: a source flooding past the rate gets mostly silence
// and every second limited reply truncated; another source is answered.
func TestRRLOnTheWire(t *testing.T) {
	t.Parallel()
	c := newTestCatalog(t)
	c.Update("svc", svc("svc", inst("a", "10.0.0.1", 80)))
	s := NewServer(ServerOptions{Addr: "127.0.0.1:0", Handler: NewHandler(c.Catalog, testOptions()),
		RRL: RRLOptions{Rate: 5, Burst: 5, Slip: 2}})
	require.NoError(t, s.Start())
	t.Cleanup(func() { require.NoError(t, s.Shutdown(context.Background())) })

	ask := func(from string, n int) (answered, truncated int) {
		conn, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(from)}, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(s.Addr())))
		require.NoError(t, err)
		defer conn.Close()
		q := new(dns.Msg).SetQuestion("svc.service.local.", dns.TypeA)
		for i := range n {
			q.Id = uint16(i)
			pkt, err := q.Pack()
			require.NoError(t, err)
			_, err = conn.Write(pkt)
			require.NoError(t, err)
		}
		buf := make([]byte, 512)
		for {
			require.NoError(t, conn.SetReadDeadline(time.Now().Add(300*time.Millisecond)))
			l, err := conn.Read(buf)
			if err != nil {
				return answered, truncated // nothing more within the deadline
			}
			m := new(dns.Msg)
			require.NoError(t, m.Unpack(buf[:l]))
			if m.Truncated {
				truncated++
				require.Empty(t, m.Answer)
			} else {
				answered++
			}
		}
	}
	answered, truncated := ask("127.0.0.2", 200)
	require.LessOrEqual(t, answered, 15, "the flood is limited to about the burst")
	require.Greater(t, truncated, 50, "every second limited reply slips as TC")
	answered, _ = ask("127.0.1.3", 3) // another /24
	require.Equal(t, 3, answered, "another client is still answered")
	require.Positive(t, s.opts.Handler.Stats().Snapshot().RRLDropped)
}
