package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	regdns "github.com/regdns/regdns/dns"
	"github.com/regdns/regdns/internal/config"
	"github.com/regdns/regdns/registry"
)

// SIGHUP: a good configuration changes the answers at once; a broken one is
// rejected with one log line and the running one kept.
func TestApplyReload(t *testing.T) {
	cat := regdns.NewCatalog(func() bool { return true }, zerolog.Nop())
	a := &registry.Instance{Service: "svc", ID: "a", Host: "x.example.", Port: 80, Weight: 1, Priority: 1}
	cat.Update("svc", &registry.Service{Name: "svc", Instances: []*registry.Instance{a}, Serving: []*registry.Instance{a}})
	running := config.Default()
	opts, err := handlerOptions(running)
	require.NoError(t, err)
	h := regdns.NewHandler(cat, opts)
	ttl := func() uint32 {
		m := h.Answer(new(dns.Msg).SetQuestion("svc.service.local.", dns.TypeSRV))
		require.Len(t, m.Answer, 1)
		return m.Answer[0].Header().Ttl
	}
	require.Equal(t, uint32(5), ttl())

	var logs bytes.Buffer
	log := zerolog.New(&logs)
	next := config.Default()
	next.DNS.TTL = config.Duration{Duration: 9 * time.Second}
	next.Health.Mode = "any"
	applyReload(running, func() (config.Config, error) { return next, next.Validate() }, h, log)
	require.Equal(t, uint32(9), ttl(), "answer settings apply at once")
	require.Contains(t, logs.String(), "config reloaded")
	require.Contains(t, logs.String(), "health.mode", "settings that need a restart are named")

	logs.Reset()
	broken := next
	broken.DNS.TTL = config.Duration{}
	applyReload(running, func() (config.Config, error) { return broken, broken.Validate() }, h, log)
	require.Equal(t, uint32(9), ttl(), "the running configuration is kept")
	require.Equal(t, 1, bytes.Count(logs.Bytes(), []byte("\n")), "one log line")
	require.Contains(t, logs.String(), "config reload rejected")
}
