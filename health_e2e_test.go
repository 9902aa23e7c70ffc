package main

// End-to-end: `regdns health` in-process and the DNS server, against one
// real redis-server, instances registered by the reference Python writer and
// real local backends. The DNS answers follow the backends' health.

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/regdns/regdns/internal/redistest"
)

// startHealth runs healthCmd until the test ends.
func startHealth(t *testing.T, args []string, env map[string]string) *lockedBuffer {
	t.Helper()
	out := &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- healthCmd(ctx, args, func(k string) string { return env[k] }, out, out) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("regdns health did not stop within 10s")
		}
		if t.Failed() {
			t.Logf("regdns health log:\n%s", out)
		}
	})
	return out
}

func TestE2EHealthCheckerDrivesTheAnswers(t *testing.T) {
	rs := redistest.Start(t)
	ref := redistest.Reference{URL: rs.URL()}
	var down atomic.Bool
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path != "/hz":
			w.WriteHeader(http.StatusNotFound)
		case down.Load():
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(backend.Close)
	port := backend.Listener.Addr().(*net.TCPAddr).Port
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	deadPort := closed.Addr().(*net.TCPAddr).Port
	require.NoError(t, closed.Close())

	web := ref.Register(t, "shop", "127.0.0.1", port, map[string]any{"health_path": "/hz", "version": "1.0.0"}, 30)
	dead := ref.Register(t, "shop", "127.0.0.1", deadPort, map[string]any{"health_check": "tcp"}, 30)
	r := startRegdns(t, rs.URL(), nil) // health.mode = healthy: nothing served before a checker says so
	m := r.query(t, "udp", "shop.service.local.", dns.TypeSRV, 0)
	require.Empty(t, m.Answer, "no health keys yet")

	startHealth(t, []string{"-redis", rs.URL(), "-interval", "100ms"}, map[string]string{
		"REGDNS_HEALTH_FALL":      "2",
		"REGDNS_HEALTH_LEASE_TTL": "1s",
		"REGDNS_LOG_LEVEL":        "debug",
	})
	took := r.waitFor(t, "shop.service.local.", dns.TypeSRV, 5*time.Second, hasTarget(web, "shop"))
	t.Logf("healthy backend served %v after the checker started", took)
	require.False(t, hasTarget(dead, "shop")(r.query(t, "udp", "shop.service.local.", dns.TypeSRV, 0)),
		"an instance whose port refuses connections is not served")

	down.Store(true)
	took = r.waitFor(t, "shop.service.local.", dns.TypeSRV, 5*time.Second, not(hasTarget(web, "shop")))
	t.Logf("backend down: left the answers after %v (interval 100ms, fall 2)", took)
	require.Equal(t, dns.RcodeSuccess, r.query(t, "udp", "shop.service.local.", dns.TypeA, 0).Rcode, "NODATA, the service still exists")

	down.Store(false)
	took = r.waitFor(t, "shop.service.local.", dns.TypeA, 5*time.Second, func(m *dns.Msg) bool {
		return len(m.Answer) == 1 && m.Answer[0].(*dns.A).A.String() == "127.0.0.1"
	})
	t.Logf("backend up: back in the answers after %v (interval 100ms, rise 1)", took)
	require.True(t, hasTarget(web, "shop")(r.query(t, "tcp", "shop.service.local.", dns.TypeSRV, 0)))
}

func TestHealthCommandRejectsBadSettings(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"zero interval", []string{"health", "-interval", "0s"}, nil, "health.interval"},
		{"bad interval", []string{"health", "-interval", "often"}, nil, "health.interval"},
		{"zero fall", []string{"health"}, map[string]string{"REGDNS_HEALTH_FALL": "0"}, "health.fall"},
		{"stray argument", []string{"health", "now"}, nil, "unexpected arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut lockedBuffer
			code := run(context.Background(), tc.args, func(k string) string { return tc.env[k] }, &out, &errOut)
			require.Equal(t, 1, code)
			require.Contains(t, errOut.String(), tc.want)
		})
	}
	var out, errOut lockedBuffer
	require.Zero(t, run(context.Background(), []string{"health", "-h"}, func(string) string { return "" }, &out, &errOut))
	require.Contains(t, errOut.String(), "-interval")
}
