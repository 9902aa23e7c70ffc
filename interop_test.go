package main

// Interoperability with real resolvers and tools from Debian packages
// (installed by scripts/install-test-deps.sh): unbound with a stub-zone
// pointing at regdns, and kdig for TCP, EDNS, +nsid and +cookie.

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/regdns/regdns/internal/config"
	"github.com/regdns/regdns/internal/redistest"
	"github.com/regdns/regdns/registry"
)

func lookPath(t *testing.T, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
		if _, err := os.Stat(n); err == nil {
			return n
		}
	}
	t.Fatalf("%s not installed: run scripts/install-test-deps.sh", names[0])
	return ""
}

// startUnbound runs unbound on a free loopback port with service.local
// stubbed to regdns, until the test ends.
func startUnbound(t *testing.T, regdnsAddr string) string {
	t.Helper()
	bin := lookPath(t, "unbound", "/usr/sbin/unbound")
	host, port, err := net.SplitHostPort(regdnsAddr)
	require.NoError(t, err)
	dir := t.TempDir()
	listen := redistest.FreePort(t)
	conf := fmt.Sprintf(`server:
  interface: 127.0.0.1
  port: %d
  do-daemonize: no
  use-syslog: no
  logfile: ""
  chroot: ""
  username: ""
  directory: %q
  pidfile: ""
  do-not-query-localhost: no
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
  domain-insecure: "service.local"
  local-zone: "local." nodefault
  verbosity: 1
stub-zone:
  name: "service.local"
  stub-addr: %s@%s
`, listen, dir, host, port)
	path := filepath.Join(dir, "unbound.conf")
	require.NoError(t, os.WriteFile(path, []byte(conf), 0o600))
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-d", "-c", path)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("unbound output:\n%s", out)
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", listen)
	require.Eventually(t, func() bool {
		q := new(dns.Msg)
		q.SetQuestion("service.local.", dns.TypeSOA)
		_, _, err := (&dns.Client{Timeout: 200 * time.Millisecond}).Exchange(q, addr)
		return err == nil
	}, 10*time.Second, 20*time.Millisecond, "unbound did not start:\n%s", out)
	return addr
}

func resolve(t *testing.T, network, server, name string, qtype uint16) *dns.Msg {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.RecursionDesired = true
	q.SetEdns0(1232, false)
	m, _, err := (&dns.Client{Net: network, Timeout: 5 * time.Second}).Exchange(q, server)
	require.NoError(t, err)
	return m
}

func TestInteropUnboundStubZone(t *testing.T) {
	rs := redistest.Start(t)
	w := registry.NewWriter(rs.Client(t), registry.DefaultKeys())
	ctx := context.Background()
	for i := range 60 {
		require.NoError(t, w.Register(ctx, "wide", fmt.Sprintf("w%02d", i), fmt.Sprintf("10.7.0.%d", i+1), 8000+i, nil, time.Minute))
	}
	require.NoError(t, w.Register(ctx, "user-service", "u1", "10.8.0.1", 8080, nil, time.Minute))
	r := startRegdns(t, rs.URL(), func(c *config.Config) { c.Health.Mode = "healthy_or_unknown" })
	r.waitFor(t, "user-service.service.local.", dns.TypeA, 5*time.Second, func(m *dns.Msg) bool { return len(m.Answer) == 1 })
	ub := startUnbound(t, r.addr)

	m := resolve(t, "udp", ub, "user-service.service.local.", dns.TypeSRV)
	require.Equal(t, dns.RcodeSuccess, m.Rcode)
	require.Len(t, m.Answer, 1)
	require.Equal(t, "u1.user-service.service.local.", m.Answer[0].(*dns.SRV).Target)

	a := resolve(t, "udp", ub, "u1.user-service.service.local.", dns.TypeA)
	require.Len(t, a.Answer, 1)

	// NXDOMAIN through the resolver, cacheable for the SOA minimum (RFC 2308).
	nx := resolve(t, "udp", ub, "nope.service.local.", dns.TypeA)
	require.Equal(t, dns.RcodeNameError, nx.Rcode)
	require.Len(t, nx.Ns, 1)
	require.LessOrEqual(t, nx.Ns[0].Header().Ttl, uint32(5))

	// 60 SRV records do not fit UDP: unbound gets TC from regdns, retries over
	// TCP, and hands the client the whole set over TCP.
	wide := resolve(t, "tcp", ub, "wide.service.local.", dns.TypeSRV)
	require.Equal(t, dns.RcodeSuccess, wide.Rcode)
	require.Len(t, wide.Answer, 60)
}

func TestInteropKdig(t *testing.T) {
	kdig := lookPath(t, "kdig")
	rs := redistest.Start(t)
	w := registry.NewWriter(rs.Client(t), registry.DefaultKeys())
	require.NoError(t, w.Register(context.Background(), "kd", "k1", "10.9.0.1", 53, nil, time.Minute))
	r := startRegdns(t, rs.URL(), func(c *config.Config) { c.Health.Mode = "healthy_or_unknown" })
	r.waitFor(t, "kd.service.local.", dns.TypeSRV, 5*time.Second, func(m *dns.Msg) bool { return len(m.Answer) == 1 })
	host, port, _ := net.SplitHostPort(r.addr)
	for _, opts := range [][]string{
		{"+tcp"},
		{"+edns=0", "+bufsize=4096"},
		{"+nsid"},
		{"+cookie"},
		{"+tcp", "+nsid", "+cookie"},
		{"+noedns"},
	} {
		t.Run(strings.Join(opts, " "), func(t *testing.T) {
			args := append([]string{"-p", port, "@" + host, "SRV", "kd.service.local.", "+timeout=2", "+retry=0"}, opts...)
			out, err := exec.Command(kdig, args...).CombinedOutput()
			require.NoError(t, err, "%s", out)
			require.Contains(t, string(out), "status: NOERROR", "%s", out)
			require.Contains(t, string(out), "k1.kd.service.local.", "%s", out)
		})
	}
}
