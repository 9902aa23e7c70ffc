package dns

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/regdns/regdns/internal/dnstest"
)

// The tests in this file start real sockets on loopback. They are not
// parallel: the parallel tests of the package run only after them, so the
// goroutine check sees their goroutines alone.

// serverGoroutines returns the stacks of goroutines that run a DNS server.
// The idea is miekg/dns leak_test.go's goroutineLeaked.
func serverGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "github.com/miekg/dns.(*Server)") ||
			strings.Contains(g, "github.com/regdns/regdns/dns.(*Server).Start.func") {
			out = append(out, g)
		}
	}
	return out
}

// newTestServer returns a server of the TestAnswer services and "big" (60
// instances) on addr, not started.
func newTestServer(t *testing.T, addr string) *Server {
	t.Helper()
	c := bigCatalog(t, 60)
	fillLookup(c)
	return NewServer(ServerOptions{Addr: addr, Handler: NewHandler(c.Catalog, testOptions())})
}

func TestServer(t *testing.T) {
	require.Empty(t, serverGoroutines(), "server goroutines before the test")
	s := newTestServer(t, "127.0.0.1:0")
	require.NoError(t, s.Start())
	addr := s.Addr()
	require.True(t, strings.HasPrefix(addr, "127.0.0.1:"), addr)
	require.NotEqual(t, "127.0.0.1:0", addr)
	require.NotEmpty(t, serverGoroutines(), "the goroutine check sees a running server")

	tc := dnstest.Case{
		Qname: "u2.user-service.service.local.", Qtype: dns.TypeA, Authoritative: true,
		Answer: dnstest.RRs(t, "u2.user-service.service.local. 5 IN A 10.0.0.2"),
	}
	for _, network := range []string{"udp", "tcp"} {
		dnstest.Check(t, dnstest.Exchange(t, addr, tc.Msg(), network), tc)
	}

	// The big answer is truncated over UDP and whole over TCP.
	q := new(dns.Msg).SetQuestion("big.service.local.", dns.TypeSRV)
	resp := dnstest.Exchange(t, addr, q, "udp")
	require.True(t, resp.Truncated)
	require.Less(t, len(resp.Answer), 60)
	resp = dnstest.Exchange(t, addr, q, "tcp")
	require.False(t, resp.Truncated)
	require.Len(t, resp.Answer, 60)
	require.Len(t, resp.Extra, 60)

	// A second server cannot take the same address.
	s2 := newTestServer(t, addr)
	err := s2.Start()
	require.Error(t, err)
	require.ErrorContains(t, err, addr)
	require.ErrorContains(t, err, "address already in use")
	require.NoError(t, s2.Shutdown(context.Background()), "shutdown of a server that never started")

	// The first one still serves.
	dnstest.Check(t, dnstest.Exchange(t, addr, tc.Msg(), "udp"), tc)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, s.Shutdown(ctx))
	select {
	case err := <-s.Err():
		t.Fatalf("serving error after a clean shutdown: %v", err)
	default:
	}

	// Nothing is left running, and the address is free again.
	require.Eventually(t, func() bool { return len(serverGoroutines()) == 0 }, 5*time.Second, 10*time.Millisecond,
		"server goroutines left after Shutdown:\n%s", strings.Join(serverGoroutines(), "\n\n"))
	s3 := newTestServer(t, addr)
	require.NoError(t, s3.Start())
	dnstest.Check(t, dnstest.Exchange(t, addr, tc.Msg(), "tcp"), tc)
	require.NoError(t, s3.Shutdown(ctx))
	require.Eventually(t, func() bool { return len(serverGoroutines()) == 0 }, 5*time.Second, 10*time.Millisecond)
}

func TestServerBadAddress(t *testing.T) {
	for _, addr := range []string{"no-port", "127.0.0.1:99999", "[::1"} {
		s := newTestServer(t, addr)
		err := s.Start()
		require.Error(t, err, addr)
		require.ErrorContains(t, err, "listen", addr)
		require.NoError(t, s.Shutdown(context.Background()))
	}
	require.Empty(t, serverGoroutines())
}

func TestServerDefaults(t *testing.T) {
	s := NewServer(ServerOptions{})
	require.Equal(t, "127.0.0.1:8053", s.opts.Addr)
	require.Equal(t, 2*time.Second, s.opts.ReadTimeout)
	require.Equal(t, 2*time.Second, s.opts.WriteTimeout)
	require.Equal(t, 10*time.Second, s.opts.IdleTimeout)
	require.Empty(t, s.Addr(), "no address before Start")
}
