package main

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/regdns/regdns/internal/redistest"
	"github.com/regdns/regdns/registry"
)

// startWatch runs `regdns watch args...` and returns once it is subscribed.
func startWatch(t *testing.T, args ...string) *cmdUnderTest {
	t.Helper()
	c := startCmd(t, watchCmd, args, map[string]string{"REGDNS_LOG_FORMAT": "json"})
	require.Eventually(t, func() bool { return strings.Contains(c.stderr.String(), "watching the registry") },
		10*time.Second, 5*time.Millisecond, "watch never subscribed")
	return c
}

// waitLine waits until watch has printed the line
// `<time>  <service>  <event>  <id>[  <detail>]`, detail a regexp ("" for
// none), and returns it.
func (c *cmdUnderTest) waitLine(t *testing.T, service, event, id, detail string) string {
	t.Helper()
	pattern := `(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\S*  ` + regexp.QuoteMeta(service) + ` +` +
		regexp.QuoteMeta(event) + ` +` + regexp.QuoteMeta(id)
	if detail != "" {
		pattern += `  ` + detail
	}
	re := regexp.MustCompile(pattern + `$`)
	var line string
	require.Eventually(t, func() bool {
		line = re.FindString(c.stdout.String())
		return line != ""
	}, 10*time.Second, 5*time.Millisecond, "no line matching %s", re)
	return line
}

// The reference Python writers' events, as they happen, one line each.
func TestWatchFollowsReferenceWriterEvents(t *testing.T) {
	rs := redistest.Start(t) // keyspace notifications off, as Redis ships
	all := startWatch(t, "-redis", rs.URL())
	one := startWatch(t, "-redis", rs.URL(), "user-service")
	require.Contains(t, all.stderr.String(), "keyspace notifications are off")

	ref := redistest.Reference{URL: rs.URL()}
	id := ref.Register(t, "user-service", "127.0.0.5", 8080, map[string]any{"weight": 3}, 30)
	other := ref.Register(t, "billing", "10.0.0.9", 9090, nil, 30)
	all.waitLine(t, "user-service", "registered", id, `127\.0\.0\.5:8080`)
	all.waitLine(t, "billing", "registered", other, `10\.0\.0\.9:9090`)
	one.waitLine(t, "user-service", "registered", id, `127\.0\.0\.5:8080`)

	ref.Deregister(t, "user-service", id)
	ref.Deregister(t, "billing", other)
	all.waitLine(t, "user-service", "deregistered", id, "")
	all.waitLine(t, "billing", "deregistered", other, "")
	one.waitLine(t, "user-service", "deregistered", id, "")

	require.NoError(t, one.stop(t))
	require.NotContains(t, one.stdout.String(), "billing", "watch SERVICE shows that service only")
	require.Len(t, strings.Split(strings.TrimSpace(one.stdout.String()), "\n"), 2, one.stdout.String())
	require.NoError(t, all.stop(t))
	require.Len(t, strings.Split(strings.TrimSpace(all.stdout.String()), "\n"), 4, "no keyspace lines: %s", all.stdout)
}

// With keyspace notifications on, watch also shows what has no event of its
// own: heartbeats, health writes, expiries, set cleanups. It reads the
// server's setting and never changes it.
func TestWatchShowsKeyspaceEventsWhenRedisHasThemOn(t *testing.T) {
	rs := redistest.Start(t, "--notify-keyspace-events", "K$gsx")
	client := rs.Client(t)
	ctx := context.Background()
	w := startWatch(t, "-redis", rs.URL(), "pay")
	require.Contains(t, w.stderr.String(), `"keyspace_events":true`)

	ref := redistest.Reference{URL: rs.URL()}
	id := ref.Register(t, "pay", "10.0.0.1", 80, nil, 1)
	w.waitLine(t, "pay", "instance:set", id, "")
	w.waitLine(t, "pay", "set:sadd", "-", "")
	w.waitLine(t, "pay", "registered", id, `(10\.0\.0\.1:80|\(key already gone\))`)
	ref.SetHealth(t, "pay", id, "unhealthy", 10)
	w.waitLine(t, "pay", "health:set", id, "unhealthy")
	// The health checker's health_changed event carries the status.
	require.NoError(t, client.Publish(ctx, "services:pay:events",
		fmt.Sprintf(`{"event": "health_changed", "instance_id": %q, "status": "healthy"}`, id)).Err())
	w.waitLine(t, "pay", "health_changed", id, "healthy")
	// No heartbeat: the 1 s key runs out, and Redis says so.
	w.waitLine(t, "pay", "instance:expired", id, "")
	// A reader's cleanup (the reference discover()): SREM, no event.
	require.NoError(t, client.SRem(ctx, "services:pay", id).Err())
	w.waitLine(t, "pay", "set:srem", "-", "")
	// Other services' keys are not shown; neither is anything outside the registry.
	require.NoError(t, registry.NewWriter(client, registry.DefaultKeys()).Register(ctx, "payroll", "p1", "10.0.0.2", 80, nil, 30*time.Second))
	require.NoError(t, client.Set(ctx, "mesh:routes:pay:x", "{}", 0).Err())
	require.NoError(t, client.Publish(ctx, "services:pay:events", "not json").Err())
	w.waitLine(t, "pay", "unknown-event", "-", `"not json"`)
	require.NoError(t, w.stop(t))
	out := w.stdout.String()
	require.NotContains(t, out, "payroll")
	require.NotContains(t, out, "mesh")
	require.NotContains(t, out, "instance:expire ", "a SETEX is one line, not set + expire")
	require.ElementsMatch(t, []rune("K$gsx"), []rune(configFlags(t, rs)), "watch leaves the server's configuration alone")
}

// When CONFIG is refused (renamed, ACL), watch shows the events it can.
func TestWatchWithoutConfigShowsEventsOnly(t *testing.T) {
	rs := redistest.Start(t, "--rename-command", "CONFIG", "")
	w := startWatch(t, "-redis", rs.URL())
	require.Contains(t, w.stderr.String(), "cannot read notify-keyspace-events")
	ref := redistest.Reference{URL: rs.URL()}
	id := ref.Register(t, "svc", "10.0.0.3", 80, nil, 30)
	w.waitLine(t, "svc", "registered", id, `10\.0\.0\.3:80`)
	require.NoError(t, w.stop(t))
}

// A sidecar's life as watch sees it: the register/watch round trip.
func TestWatchSeesARegisterSidecar(t *testing.T) {
	rs := redistest.Start(t)
	w := startWatch(t, "-redis", rs.URL())
	c := startCmd(t, registerCmd, []string{"-redis", rs.URL(), "-service", "side", "-host", "10.8.0.2", "-port", "82"}, nil)
	id := c.waitID(t, 1)
	w.waitLine(t, "side", "registered", id, `10\.8\.0\.2:82`)
	require.NoError(t, c.stop(t))
	w.waitLine(t, "side", "deregistered", id, "")
}

func TestWatchRejectsBadInput(t *testing.T) {
	env := func(k string) string {
		if k == "REGDNS_REDIS_TIMEOUT" {
			return "200ms"
		}
		return ""
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"two services", []string{"a", "b"}, "at most one SERVICE"},
		{"redis unreachable", []string{"-redis", "redis://127.0.0.1:1/0"}, "redis redis://127.0.0.1:1/0"},
		{"unknown flag", []string{"-x"}, "flag provided but not defined"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut lockedBuffer
			code := run(context.Background(), append([]string{"watch"}, tc.args...), env, &out, &errOut)
			require.Equal(t, 1, code)
			require.Contains(t, errOut.String(), tc.want)
		})
	}
}

func TestWatchPatternsQuoteServiceNames(t *testing.T) {
	k := registry.DefaultKeys()
	require.Equal(t, []string{"services:*:events"}, watchPatterns(k, "", "__keyspace@0__:", false))
	require.Equal(t, []string{"services:*:events", "__keyspace@3__:services:*", "__keyspace@3__:health:*"},
		watchPatterns(k, "", "__keyspace@3__:", true))
	require.Equal(t, []string{
		`services:a\*b\?\[c\]:events`,
		`__keyspace@0__:services:a\*b\?\[c\]`,
		`__keyspace@0__:services:a\*b\?\[c\]:instances:*`,
		`__keyspace@0__:health:a\*b\?\[c\]:*`,
	}, watchPatterns(k, "a*b?[c]", "__keyspace@0__:", true))
}

func configFlags(t *testing.T, rs *redistest.Server) string {
	t.Helper()
	v, err := rs.Client(t).ConfigGet(context.Background(), "notify-keyspace-events").Result()
	require.NoError(t, err)
	return v["notify-keyspace-events"]
}
