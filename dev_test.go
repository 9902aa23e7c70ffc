package main

import (
	"context"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/regdns/regdns/internal/redistest"
)

// `regdns dev` as a newcomer runs it: demo services answered, and a service
// registered by the reference Python writers against the embedded registry
// shows up.
func TestDevModeServesDemoAndReferenceWriters(t *testing.T) {
	redisAddr := fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr := &lockedBuffer{}, &lockedBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"dev", "-listen", "127.0.0.1:0", "-http", "127.0.0.1:0", "-redis-listen", redisAddr}, func(string) string { return "" }, stdout, stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			require.Zero(t, code, stderr.String())
		case <-time.After(10 * time.Second):
			t.Error("regdns dev did not stop")
		}
	})
	dnsAt := regexp.MustCompile(`DNS at (\S+) `)
	var addr string
	require.Eventually(t, func() bool {
		m := dnsAt.FindStringSubmatch(stdout.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	}, 10*time.Second, 5*time.Millisecond, "dev never said where DNS is: %s", stderr)
	require.Contains(t, stdout.String(), "dig -p ")
	r := &regdnsUnderTest{addr: addr, log: stderr}

	// user-3 is unhealthy in the demo: two of three are served.
	r.waitFor(t, "user-service.service.local.", dns.TypeSRV, 5*time.Second, func(m *dns.Msg) bool { return len(m.Answer) == 2 })

	ref := redistest.Reference{URL: "redis://" + redisAddr + "/0"}
	id := ref.Register(t, "py-service", "127.0.0.9", 7000, map[string]any{"version": "2"}, 30)
	r.waitFor(t, "py-service.service.local.", dns.TypeSRV, 5*time.Second, hasTarget(id, "py-service"))
	ref.Deregister(t, "py-service", id)
	r.waitFor(t, "py-service.service.local.", dns.TypeSRV, 5*time.Second, func(m *dns.Msg) bool { return m.Rcode == dns.RcodeNameError })
}
