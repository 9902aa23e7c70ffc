package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/regdns/regdns/internal/config"
	"github.com/regdns/regdns/internal/redistest"
)

// cmdUnderTest is one subcommand (register, watch) running in-process, as
// `regdns <cmd>` runs it, until stop or the end of the test.
type cmdUnderTest struct {
	stdout, stderr *lockedBuffer
	cancel         context.CancelFunc
	done           chan error
	stopped        bool
}

type subcommand func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error

func startCmd(t *testing.T, cmd subcommand, args []string, env map[string]string) *cmdUnderTest {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &cmdUnderTest{stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() { c.done <- cmd(ctx, args, func(k string) string { return env[k] }, c.stdout, c.stderr) }()
	t.Cleanup(func() {
		if !c.stopped {
			if err := c.stop(t); err != nil && !errors.Is(err, context.Canceled) {
				t.Logf("command ended with: %v", err)
			}
		}
		if t.Failed() {
			t.Logf("command stdout:\n%s\ncommand stderr:\n%s", c.stdout, c.stderr)
		}
	})
	return c
}

// stop cancels the command's context, as SIGTERM does, and returns what it
// returned.
func (c *cmdUnderTest) stop(t *testing.T) error {
	t.Helper()
	c.stopped = true
	c.cancel()
	select {
	case err := <-c.done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("command did not stop within 10s\nstderr:\n%s", c.stderr)
		return nil
	}
}

// lines returns the non-empty lines written to stdout so far.
func (c *cmdUnderTest) lines() []string {
	return strings.Fields(c.stdout.String())
}

var uuid4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// waitID waits until register has printed n instance ids and returns the nth.
func (c *cmdUnderTest) waitID(t *testing.T, n int) string {
	t.Helper()
	require.Eventually(t, func() bool { return len(c.lines()) >= n }, 15*time.Second, 5*time.Millisecond,
		"register printed %d ids, want %d", len(c.lines()), n)
	ids := c.lines()
	require.Len(t, ids, n, "one id per registration")
	return ids[n-1]
}

// nextEvent returns the next registry event received on events.
func nextEvent(t *testing.T, events <-chan *redis.Message) (event, id string) {
	t.Helper()
	select {
	case m := <-events:
		var ev struct {
			Event      string `json:"event"`
			InstanceID string `json:"instance_id"`
		}
		require.NoError(t, json.Unmarshal([]byte(m.Payload), &ev), m.Payload)
		return ev.Event, ev.InstanceID
	case <-time.After(10 * time.Second):
		t.Fatal("no registry event within 10s")
		return "", ""
	}
}

// subscribeEvents PSUBSCRIBEs the event channels and returns once Redis has
// confirmed the subscription, so no later event is missed.
func subscribeEvents(t *testing.T, client *redis.Client) <-chan *redis.Message {
	t.Helper()
	ps := client.PSubscribe(context.Background(), "services:*:events")
	t.Cleanup(func() { _ = ps.Close() })
	_, err := ps.Receive(context.Background())
	require.NoError(t, err)
	return ps.Channel()
}

// instanceDoc reads an instance key as the reference reader does
// (json.loads), numbers kept as written.
func instanceDoc(t *testing.T, client *redis.Client, key string) map[string]any {
	t.Helper()
	raw, err := client.Get(context.Background(), key).Bytes()
	require.NoError(t, err, key)
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var doc map[string]any
	require.NoError(t, d.Decode(&doc), string(raw))
	return doc
}

func number(t *testing.T, v any) float64 {
	t.Helper()
	n, ok := v.(json.Number)
	require.True(t, ok, "%v (%T) is not a JSON number", v, v)
	f, err := n.Float64()
	require.NoError(t, err)
	return f
}

// The sidecar's whole life against a real redis-server and a real regdns:
// the reference document, event and set; heartbeats past the TTL; a new id
// when the key vanishes; deregistration on SIGTERM.
func TestRegisterHeartbeatsReregistersAndDeregisters(t *testing.T) {
	rs := redistest.Start(t)
	client := rs.Client(t)
	ctx := context.Background()
	events := subscribeEvents(t, client)
	r := startRegdns(t, rs.URL(), func(c *config.Config) { c.Health.Mode = "healthy_or_unknown" })

	c := startCmd(t, registerCmd, []string{
		"-redis", rs.URL(), "-service", "sidecar", "-host", "127.0.0.7", "-port", "9000",
		"-meta", "weight=3", "-meta", "version=1.0.0", "-meta", "canary=true", "-meta", `build="42"`,
		"-ttl", "2s",
	}, nil)
	id := c.waitID(t, 1)
	require.Regexp(t, uuid4, id, "a random UUID v4, as uuid.uuid4()")
	ev, evID := nextEvent(t, events)
	require.Equal(t, []string{"registered", id}, []string{ev, evID})

	// The reference document: exactly the ServiceInstance fields.
	key := "services:sidecar:instances:" + id
	doc := instanceDoc(t, client, key)
	require.ElementsMatch(t, []string{"service_name", "instance_id", "host", "port", "metadata", "registered_at", "last_heartbeat"},
		keysOfMap(doc))
	require.Equal(t, "sidecar", doc["service_name"])
	require.Equal(t, id, doc["instance_id"])
	require.Equal(t, "127.0.0.7", doc["host"])
	require.Equal(t, json.Number("9000"), doc["port"])
	require.Equal(t, map[string]any{"weight": json.Number("3"), "version": "1.0.0", "canary": true, "build": "42"}, doc["metadata"])
	registeredAt := number(t, doc["registered_at"])
	require.InDelta(t, float64(time.Now().UnixNano())/1e9, registeredAt, 10)
	require.Equal(t, registeredAt, number(t, doc["last_heartbeat"]))
	ttl, err := client.PTTL(ctx, key).Result()
	require.NoError(t, err)
	require.True(t, ttl > 0 && ttl <= 2*time.Second, "TTL %v", ttl)
	require.True(t, client.SIsMember(ctx, "services:sidecar", id).Val())

	// regdns serves it.
	r.waitFor(t, "sidecar.service.local.", dns.TypeSRV, 5*time.Second, hasTarget(id, "sidecar"))
	srv := r.query(t, "udp", "sidecar.service.local.", dns.TypeSRV, 0).Answer[0].(*dns.SRV)
	require.Equal(t, []uint16{3, 9000}, []uint16{srv.Weight, srv.Port})

	// Heartbeats keep the key alive past its 2s TTL: last_heartbeat moves on
	// beyond the TTL while the id stays the same.
	require.Eventually(t, func() bool {
		doc := instanceDoc(t, client, key)
		return number(t, doc["last_heartbeat"])-number(t, doc["registered_at"]) > 2.5
	}, 10*time.Second, 50*time.Millisecond, "heartbeats past the TTL")
	require.Len(t, c.lines(), 1, "no re-registration while heartbeats succeed")
	require.Equal(t, registeredAt, number(t, instanceDoc(t, client, key)["registered_at"]))
	require.True(t, hasTarget(id, "sidecar")(r.query(t, "udp", "sidecar.service.local.", dns.TypeSRV, 0)))

	// The key vanishes (expired, or Redis lost it): the next heartbeat finds
	// it gone and registers again under a new id, as the reference does.
	require.NoError(t, client.Del(ctx, key).Err())
	id2 := c.waitID(t, 2)
	require.Regexp(t, uuid4, id2)
	require.NotEqual(t, id, id2)
	ev, evID = nextEvent(t, events)
	require.Equal(t, []string{"registered", id2}, []string{ev, evID})
	key2 := "services:sidecar:instances:" + id2
	require.Equal(t, "127.0.0.7", instanceDoc(t, client, key2)["host"])
	require.True(t, client.SIsMember(ctx, "services:sidecar", id2).Val())
	require.True(t, client.SIsMember(ctx, "services:sidecar", id).Val(), "the old id stays in the set, as the reference leaves it")
	r.waitFor(t, "sidecar.service.local.", dns.TypeSRV, 5*time.Second, hasTarget(id2, "sidecar"))

	// SIGTERM: deregistered, with the event.
	require.NoError(t, c.stop(t))
	ev, evID = nextEvent(t, events)
	require.Equal(t, []string{"deregistered", id2}, []string{ev, evID})
	require.Zero(t, client.Exists(ctx, key2).Val())
	require.False(t, client.SIsMember(ctx, "services:sidecar", id2).Val())
	r.waitFor(t, "sidecar.service.local.", dns.TypeSRV, 5*time.Second, not(hasTarget(id2, "sidecar")))
	require.Contains(t, c.stderr.String(), "deregistered")
}

// What the sidecar writes is what the reference writers read: the Python
// ServiceRegistry.heartbeat (json.loads, then SETEX) accepts it, and a
// given -id is used for the first registration.
func TestRegisterDocumentIsReadByTheReferenceWriter(t *testing.T) {
	rs := redistest.Start(t)
	client := rs.Client(t)
	c := startCmd(t, registerCmd, []string{
		"-redis", rs.URL(), "-service", "py-peer", "-host", "10.9.0.1", "-port", "7000", "-id", "fixed-1",
	}, nil)
	require.Equal(t, "fixed-1", c.waitID(t, 1))
	require.Eventually(t, func() bool {
		return client.Exists(context.Background(), "services:py-peer:instances:fixed-1").Val() == 1
	}, 5*time.Second, 5*time.Millisecond)
	ttl := client.TTL(context.Background(), "services:py-peer:instances:fixed-1").Val()
	require.True(t, ttl > 25*time.Second && ttl <= 30*time.Second, "default -ttl 30s, got %v", ttl)
	ref := redistest.Reference{URL: rs.URL()}
	require.True(t, ref.Heartbeat(t, "py-peer", "fixed-1"))
	doc := instanceDoc(t, client, "services:py-peer:instances:fixed-1")
	require.Equal(t, "10.9.0.1", doc["host"])
	require.Equal(t, map[string]any{}, doc["metadata"], "no -meta: an empty object, as metadata or {}")
	require.NoError(t, c.stop(t))
	require.Zero(t, client.Exists(context.Background(), "services:py-peer:instances:fixed-1").Val())
}

// Redis goes away: the sidecar logs and keeps going, and when Redis comes
// back empty it registers again (under a new id, since the key is gone).
func TestRegisterRidesOutARedisOutage(t *testing.T) {
	rs := redistest.Start(t)
	client := rs.Client(t)
	ctx := context.Background()
	env := map[string]string{"REGDNS_REDIS_TIMEOUT": "300ms"}
	c := startCmd(t, registerCmd, []string{"-redis", rs.URL(), "-service", "flaky", "-host", "10.0.0.1", "-port", "80", "-ttl", "1s"}, env)
	id := c.waitID(t, 1)
	require.Eventually(t, func() bool { return client.Exists(ctx, "services:flaky:instances:"+id).Val() == 1 },
		5*time.Second, 5*time.Millisecond)

	rs.Kill(t)
	require.Eventually(t, func() bool { return strings.Contains(c.stderr.String(), "heartbeat failed") },
		10*time.Second, 10*time.Millisecond)
	rs.Restart(t)
	id2 := c.waitID(t, 2)
	require.NotEqual(t, id, id2)
	require.Eventually(t, func() bool { return client.Exists(ctx, "services:flaky:instances:"+id2).Val() == 1 },
		10*time.Second, 10*time.Millisecond)
	require.True(t, client.SIsMember(ctx, "services:flaky", id2).Val())
	require.NoError(t, c.stop(t))
	require.Zero(t, client.Exists(ctx, "services:flaky:instances:"+id2).Val())
}

// Redis down when the sidecar starts: it prints its id, keeps trying the
// same id, and registers it once Redis answers.
func TestRegisterWaitsForRedisAtStart(t *testing.T) {
	rs := redistest.Start(t)
	rs.Kill(t)
	env := map[string]string{"REGDNS_REDIS_TIMEOUT": "300ms"}
	c := startCmd(t, registerCmd, []string{"-redis", rs.URL(), "-service", "early", "-host", "10.0.0.2", "-port", "80", "-ttl", "1s"}, env)
	id := c.waitID(t, 1)
	require.Eventually(t, func() bool { return strings.Contains(c.stderr.String(), "registration failed") },
		10*time.Second, 10*time.Millisecond)
	rs.Restart(t)
	client := rs.Client(t)
	require.Eventually(t, func() bool {
		return client.Exists(context.Background(), "services:early:instances:"+id).Val() == 1
	}, 10*time.Second, 10*time.Millisecond)
	require.Len(t, c.lines(), 1, "the first id is kept until it is registered")
	require.NoError(t, c.stop(t))
}

func TestRegisterRejectsBadFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no service", []string{"-port", "80"}, "-service is required"},
		{"no port", []string{"-service", "s"}, "-port 0"},
		{"port too big", []string{"-service", "s", "-port", "70000"}, "-port 70000"},
		{"ttl below a second", []string{"-service", "s", "-port", "80", "-ttl", "500ms"}, "-ttl 500ms"},
		{"ttl not whole seconds", []string{"-service", "s", "-port", "80", "-ttl", "1500ms"}, "whole seconds"},
		{"meta without value", []string{"-service", "s", "-port", "80", "-meta", "weight"}, "want key=value"},
		{"id with colon", []string{"-service", "s", "-port", "80", "-id", "a:b"}, "must not contain ':'"},
		{"positional", []string{"-service", "s", "-port", "80", "extra"}, "unexpected arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut lockedBuffer
			code := run(context.Background(), append([]string{"register"}, tc.args...), func(string) string { return "" }, &out, &errOut)
			require.Equal(t, 1, code, errOut.String())
			require.Contains(t, errOut.String(), tc.want)
			require.Empty(t, out.String(), "nothing registered")
		})
	}
}

func TestRegisterMetaValues(t *testing.T) {
	for in, want := range map[string]any{
		"3":       json.Number("3"),
		"-1.5":    json.Number("-1.5"),
		"true":    true,
		"false":   false,
		`"3"`:     "3",
		"1.0.0":   "1.0.0",
		"us-east": "us-east",
		"null":    "null",
		"[1]":     "[1]",
		`{"a":1}`: `{"a":1}`,
		"1 2":     "1 2",
		"":        "",
		"/health": "/health",
	} {
		require.Equal(t, want, metaValue(in), "metaValue(%q)", in)
	}
	m := metaFlag{}
	require.NoError(t, m.Set("health_path=/ready"))
	require.NoError(t, m.Set("url=http://x/?a=b"))
	require.NoError(t, m.Set("weight=2"))
	require.NoError(t, m.Set("weight=5"))
	require.Equal(t, metaFlag{"health_path": "/ready", "url": "http://x/?a=b", "weight": json.Number("5")}, m)
	require.Error(t, m.Set("=v"))
}

func TestRegisterInstanceIDsAreUUID4(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := newInstanceID()
		require.Regexp(t, uuid4, id)
		require.False(t, seen[id])
		seen[id] = true
	}
}

func TestRegisterDefaultHostIsTheHostNamesAddress(t *testing.T) {
	ctx := context.Background()
	log := zerolog.Nop()
	hostname := func() (string, error) { return "box", nil }
	lookup := func(_ context.Context, network, host string) ([]net.IP, error) {
		require.Equal(t, "ip4", network, "gethostbyname is IPv4 only")
		require.Equal(t, "box", host)
		return []net.IP{net.ParseIP("10.1.2.3"), net.ParseIP("10.1.2.4")}, nil
	}
	require.Equal(t, "10.1.2.3", localHostIP(ctx, hostname, lookup, log))
	fail := func(context.Context, string, string) ([]net.IP, error) { return nil, errors.New("no such host") }
	require.Equal(t, "127.0.0.1", localHostIP(ctx, hostname, fail, log))
	noName := func() (string, error) { return "", errors.New("no hostname") }
	require.Equal(t, "127.0.0.1", localHostIP(ctx, noName, lookup, log))
}

func keysOfMap(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
