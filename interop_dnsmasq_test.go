package main

// Interoperability with dnsmasq (Debian package dnsmasq-base, installed by
// scripts/install-test-deps.sh) forwarding the zone to regdns, as
// docs/INTEGRATIONS.md documents: server=/service.local/127.0.0.1#PORT.

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/regdns/regdns/internal/config"
	"github.com/regdns/regdns/internal/redistest"
	"github.com/regdns/regdns/registry"
)

// startDnsmasq runs dnsmasq in the foreground on a free loopback port with
// only service.local forwarded, to regdnsAddr, until the test ends.
func startDnsmasq(t *testing.T, regdnsAddr string) string {
	t.Helper()
	bin := lookPath(t, "dnsmasq", "/usr/sbin/dnsmasq")
	host, port, err := net.SplitHostPort(regdnsAddr)
	require.NoError(t, err)
	listen := redistest.FreePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin,
		"--keep-in-foreground",
		"--log-facility=-", // log to stderr, not syslog
		"--log-queries",
		"--conf-file=/dev/null", // no /etc/dnsmasq.conf, no /etc/dnsmasq.d
		"--no-resolv",           // no upstream but regdns
		"--no-hosts",
		"--no-poll",
		"--pid-file=", // none
		"--user=root", // stay as we are
		"--listen-address=127.0.0.1",
		"--bind-interfaces",
		fmt.Sprintf("--port=%d", listen),
		fmt.Sprintf("--server=/service.local/%s#%s", host, port),
	)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("dnsmasq output:\n%s", out)
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", listen)
	require.Eventually(t, func() bool {
		q := new(dns.Msg)
		q.SetQuestion("service.local.", dns.TypeSOA)
		q.RecursionDesired = true
		m, _, err := (&dns.Client{Timeout: 200 * time.Millisecond}).Exchange(q, addr)
		return err == nil && m.Rcode == dns.RcodeSuccess
	}, 10*time.Second, 20*time.Millisecond, "dnsmasq did not start:\n%s", out)
	return addr
}

func TestInteropDnsmasqServer(t *testing.T) {
	rs := redistest.Start(t)
	ctx := context.Background()
	// user-service the way real services register, with the Python writer.
	id := redistest.Reference{URL: rs.URL()}.Register(t, "user-service", "10.8.0.1", 8080, nil, 60)
	w := registry.NewWriter(rs.Client(t), registry.DefaultKeys())
	for i := range 60 {
		require.NoError(t, w.Register(ctx, "wide", fmt.Sprintf("w%02d", i), fmt.Sprintf("10.7.0.%d", i+1), 8000+i, nil, time.Minute))
	}
	r := startRegdns(t, rs.URL(), func(c *config.Config) { c.Health.Mode = "healthy_or_unknown" })
	r.waitFor(t, "user-service.service.local.", dns.TypeA, 5*time.Second, func(m *dns.Msg) bool { return len(m.Answer) == 1 })
	dm := startDnsmasq(t, r.addr)

	target := id + ".user-service.service.local."
	m := resolve(t, "udp", dm, "user-service.service.local.", dns.TypeSRV)
	require.Equal(t, dns.RcodeSuccess, m.Rcode)
	require.Len(t, m.Answer, 1)
	srv := m.Answer[0].(*dns.SRV)
	require.Equal(t, target, srv.Target)
	require.Equal(t, uint16(8080), srv.Port)

	for _, name := range []string{"user-service.service.local.", target} {
		a := resolve(t, "udp", dm, name, dns.TypeA)
		require.Equal(t, dns.RcodeSuccess, a.Rcode, name)
		require.Len(t, a.Answer, 1, name)
		require.Equal(t, "10.8.0.1", a.Answer[0].(*dns.A).A.String(), name)
	}

	// NODATA: the name exists, no AAAA.
	aaaa := resolve(t, "udp", dm, "user-service.service.local.", dns.TypeAAAA)
	require.Equal(t, dns.RcodeSuccess, aaaa.Rcode)
	require.Empty(t, aaaa.Answer)

	// NXDOMAIN, passed through with the zone's SOA for negative caching.
	nx := resolve(t, "udp", dm, "nope.service.local.", dns.TypeA)
	require.Equal(t, dns.RcodeNameError, nx.Rcode)
	require.Len(t, nx.Ns, 1)
	require.Equal(t, dns.TypeSOA, nx.Ns[0].Header().Rrtype)

	// 60 SRV records: over UDP dnsmasq passes regdns's TC on; the client
	// retries over TCP and dnsmasq fetches the whole set over TCP.
	udp := resolve(t, "udp", dm, "wide.service.local.", dns.TypeSRV)
	require.True(t, udp.Truncated, "TC over UDP")
	wide := resolve(t, "tcp", dm, "wide.service.local.", dns.TypeSRV)
	require.Equal(t, dns.RcodeSuccess, wide.Rcode)
	require.Len(t, wide.Answer, 60)
}
