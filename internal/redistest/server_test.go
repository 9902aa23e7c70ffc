package redistest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// waitTimeout bounds every wait for an asynchronous effect in these tests.
const waitTimeout = 10 * time.Second

func TestStartWriteRead(t *testing.T) {
	t.Parallel()
	s := Start(t)
	if want := "127.0.0.1:" + strconv.Itoa(s.Port); s.Addr != want {
		t.Fatalf("Addr = %q, want %q", s.Addr, want)
	}
	if want := fmt.Sprintf("redis://127.0.0.1:%d/0", s.Port); s.URL() != want {
		t.Fatalf("URL() = %q, want %q", s.URL(), want)
	}
	ctx := t.Context()
	c := s.Client(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	// Read back through a client built from URL(), the way regdns connects.
	opts, err := redis.ParseURL(s.URL())
	if err != nil {
		t.Fatalf("ParseURL(%q): %v", s.URL(), err)
	}
	byURL := redis.NewClient(opts)
	t.Cleanup(func() { _ = byURL.Close() })
	if got, err := byURL.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET k = %q, %v; want \"v\"", got, err)
	}
}

func TestTwoServersAreIndependent(t *testing.T) {
	t.Parallel()
	a, b := Start(t), Start(t)
	if a.Port == b.Port {
		t.Fatalf("both servers on port %d", a.Port)
	}
	ctx := t.Context()
	if err := a.Client(t).Set(ctx, "only-a", "1", 0).Err(); err != nil {
		t.Fatalf("SET on a: %v", err)
	}
	if err := b.Client(t).Get(ctx, "only-a").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET only-a on b: err = %v, want redis.Nil", err)
	}
}

func TestKillRestartLosesData(t *testing.T) {
	t.Parallel()
	s := Start(t)
	ctx := t.Context()
	c := s.Client(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	port := s.Port

	s.Kill(t)
	s.Kill(t) // a second kill must be a harmless no-op
	assertDown(t, s.Addr)

	s.Restart(t)
	if s.Port != port {
		t.Fatalf("Restart moved the server from port %d to %d", port, s.Port)
	}
	// The same client reconnects by itself.
	if err := c.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET k after restart: err = %v, want redis.Nil (no persistence)", err)
	}
}

func TestStopAndRestartRunning(t *testing.T) {
	t.Parallel()
	s := Start(t)
	ctx := t.Context()
	c := s.Client(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	// Restart of a running server kills it first.
	s.Restart(t)
	if err := c.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET k after restart: err = %v, want redis.Nil", err)
	}
	s.Stop(t)
	s.Stop(t)
	s.Kill(t)
	assertDown(t, s.Addr)
	s.Restart(t)
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after restart: %v", err)
	}
}

func TestReferenceRegisterHeartbeatHealthDeregister(t *testing.T) {
	t.Parallel()
	s := Start(t)
	ctx := t.Context()
	c := s.Client(t)
	ref := Reference{URL: s.URL()}

	ps := c.PSubscribe(ctx, "services:*:events")
	t.Cleanup(func() { _ = ps.Close() })
	// Wait for the subscription confirmation, or the event could be missed.
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatalf("PSUBSCRIBE: %v", err)
	}

	meta := map[string]any{"version": "1.0.0", "weight": 3, "health_path": "/healthz"}
	id := ref.Register(t, "user-service", "10.0.0.12", 8080, meta, 7)
	instKey := "services:user-service:instances:" + id

	raw, err := c.Get(ctx, instKey).Result()
	if err != nil {
		t.Fatalf("GET %s: %v", instKey, err)
	}
	// Byte format of Python's json.dumps: ", " and ": " separators, dataclass field order.
	wantKeys := []string{"service_name", "instance_id", "host", "port", "metadata", "registered_at", "last_heartbeat"}
	if got := topLevelKeys(t, raw); !reflect.DeepEqual(got, wantKeys) {
		t.Fatalf("instance JSON keys = %v, want %v\n%s", got, wantKeys, raw)
	}
	if want := `{"service_name": "user-service", "instance_id": "` + id + `", "host": "10.0.0.12", "port": 8080, "metadata": {`; !strings.HasPrefix(raw, want) {
		t.Fatalf("instance JSON = %s\nwant prefix %s", raw, want)
	}
	inst := decodeInstance(t, raw)
	if inst.Metadata["version"] != "1.0.0" || inst.Metadata["weight"] != float64(3) || inst.Metadata["health_path"] != "/healthz" {
		t.Fatalf("metadata = %v, want %v", inst.Metadata, meta)
	}
	if inst.RegisteredAt <= 0 || inst.LastHeartbeat != inst.RegisteredAt {
		t.Fatalf("registered_at = %v, last_heartbeat = %v; want equal and positive", inst.RegisteredAt, inst.LastHeartbeat)
	}
	assertTTL(t, c, instKey, 7*time.Second)
	if ok, err := c.SIsMember(ctx, "services:user-service", id).Result(); err != nil || !ok {
		t.Fatalf("SISMEMBER services:user-service %s = %v, %v; want true", id, ok, err)
	}
	expectEvent(t, ps, "services:user-service:events", `{"event": "registered", "instance_id": "`+id+`"}`)

	if !ref.HeartbeatTTL(t, "user-service", id, 7) {
		t.Fatal("heartbeat of a live instance returned false")
	}
	after := decodeInstance(t, c.Get(ctx, instKey).Val())
	if after.LastHeartbeat < inst.LastHeartbeat || after.RegisteredAt != inst.RegisteredAt ||
		after.Host != inst.Host || after.Port != inst.Port {
		t.Fatalf("after heartbeat %+v, before %+v", after, inst)
	}
	assertTTL(t, c, instKey, 7*time.Second)
	if !ref.Heartbeat(t, "user-service", id) {
		t.Fatal("heartbeat of a live instance returned false")
	}
	if ttl := c.TTL(ctx, instKey).Val(); ttl <= 7*time.Second {
		t.Fatalf("TTL after default heartbeat = %v, want the 30 s writer default", ttl)
	}

	healthKey := "health:user-service:" + id
	for _, status := range []string{"healthy", "unhealthy", "unknown"} {
		ref.SetHealth(t, "user-service", id, status, 5)
		var h struct {
			Status    string  `json:"status"`
			CheckedAt float64 `json:"checked_at"`
		}
		rawHealth := c.Get(ctx, healthKey).Val()
		if err := json.Unmarshal([]byte(rawHealth), &h); err != nil {
			t.Fatalf("health JSON %q: %v", rawHealth, err)
		}
		if h.Status != status || h.CheckedAt <= 0 {
			t.Fatalf("health = %s, want status %q and checked_at set", rawHealth, status)
		}
		assertTTL(t, c, healthKey, 15*time.Second)
	}

	ref.Deregister(t, "user-service", id)
	if n := c.Exists(ctx, instKey).Val(); n != 0 {
		t.Fatalf("%s still exists after deregister", instKey)
	}
	if ok := c.SIsMember(ctx, "services:user-service", id).Val(); ok {
		t.Fatalf("%s still in services:user-service after deregister", id)
	}
	expectEvent(t, ps, "services:user-service:events", `{"event": "deregistered", "instance_id": "`+id+`"}`)
	if ref.Heartbeat(t, "user-service", id) {
		t.Fatal("heartbeat of a deregistered instance returned true")
	}
}

func TestReferenceCommandSequence(t *testing.T) {
	t.Parallel()
	s := Start(t)
	mon := startMonitor(t, s.Addr)
	ref := Reference{URL: s.URL()}

	// Nothing but the reference writer talks to the server from here on, so
	// the MONITOR stream is exactly what it sent.
	id := ref.Register(t, "svc", "10.0.0.1", 80, nil, 0)
	ref.Heartbeat(t, "svc", id)
	ref.SetHealth(t, "svc", id, "healthy", 0)
	ref.Deregister(t, "svc", id)

	want := [][]string{
		{"MULTI"},
		{"SETEX", "services:svc:instances:" + id, "30"},
		{"SADD", "services:svc", id},
		{"PUBLISH", "services:svc:events"},
		{"EXEC"},
		{"GET", "services:svc:instances:" + id},
		{"SETEX", "services:svc:instances:" + id, "30"},
		{"SETEX", "health:svc:" + id, "30"},
		{"MULTI"},
		{"DEL", "services:svc:instances:" + id},
		{"SREM", "services:svc", id},
		{"PUBLISH", "services:svc:events"},
		{"EXEC"},
	}
	for i, w := range want {
		got := mon.next(t)
		if len(got) < len(w) || !reflect.DeepEqual(got[:len(w)], w) {
			t.Fatalf("command %d = %q, want prefix %q", i, got, w)
		}
	}
}

// assertDown checks that nothing listens on addr any more. It dials directly
// because a go-redis client would retry with back-off and log every attempt.
func assertDown(t *testing.T, addr string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, waitTimeout)
	if err == nil {
		_ = conn.Close()
		t.Fatalf("%s still accepts connections", addr)
	}
}

// instance mirrors the reference ServiceInstance for assertions.
type instance struct {
	ServiceName   string         `json:"service_name"`
	InstanceID    string         `json:"instance_id"`
	Host          string         `json:"host"`
	Port          int            `json:"port"`
	Metadata      map[string]any `json:"metadata"`
	RegisteredAt  float64        `json:"registered_at"`
	LastHeartbeat float64        `json:"last_heartbeat"`
}

func decodeInstance(t *testing.T, raw string) instance {
	t.Helper()
	var in instance
	if err := json.Unmarshal([]byte(raw), &in); err != nil {
		t.Fatalf("instance JSON %q: %v", raw, err)
	}
	return in
}

// topLevelKeys returns the keys of a JSON object in document order.
func topLevelKeys(t *testing.T, raw string) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatalf("JSON %q: %v", raw, err)
	}
	var keys []string
	dec := json.NewDecoder(strings.NewReader(raw))
	if _, err := dec.Token(); err != nil { // opening brace
		t.Fatalf("JSON %q: %v", raw, err)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("JSON %q: %v", raw, err)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatalf("JSON %q: %v", raw, err)
		}
	}
	return keys
}

func assertTTL(t *testing.T, c *redis.Client, key string, max time.Duration) {
	t.Helper()
	ttl, err := c.TTL(t.Context(), key).Result()
	if err != nil || ttl <= 0 || ttl > max {
		t.Fatalf("TTL %s = %v, %v; want in (0, %v]", key, ttl, err, max)
	}
}

func expectEvent(t *testing.T, ps *redis.PubSub, channel, payload string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	msg, err := ps.ReceiveMessage(ctx)
	if err != nil {
		t.Fatalf("waiting for %s on %s: %v", payload, channel, err)
	}
	if msg.Channel != channel || msg.Payload != payload {
		t.Fatalf("event on %s = %s; want on %s: %s", msg.Channel, msg.Payload, channel, payload)
	}
}

// monitor reads the MONITOR stream over a raw connection; go-redis's
// MonitorCmd would add goroutines for no benefit here.
type monitor struct {
	conn net.Conn
	r    *bufio.Reader
}

func startMonitor(t *testing.T, addr string) *monitor {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, waitTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	m := &monitor{conn: conn, r: bufio.NewReader(conn)}
	if _, err := conn.Write([]byte("MONITOR\r\n")); err != nil {
		t.Fatalf("MONITOR: %v", err)
	}
	if line := m.line(t); line != "+OK" {
		t.Fatalf("MONITOR answered %q", line)
	}
	return m
}

// next returns the arguments of the next monitored command, skipping the
// connection set-up newer redis-py versions send (CLIENT SETINFO, HELLO...).
func (m *monitor) next(t *testing.T) []string {
	t.Helper()
	for {
		line := m.line(t)
		// +1764090000.123456 [0 127.0.0.1:51234] "SETEX" "key" "30" "{...}"
		_, cmdline, ok := strings.Cut(line, "] ")
		if !ok {
			t.Fatalf("unexpected MONITOR line %q", line)
		}
		args := monitorArgs(t, cmdline)
		switch strings.ToUpper(args[0]) {
		case "CLIENT", "HELLO", "SELECT", "AUTH":
			continue
		}
		args[0] = strings.ToUpper(args[0])
		return args
	}
}

func (m *monitor) line(t *testing.T) string {
	t.Helper()
	if err := m.conn.SetReadDeadline(time.Now().Add(waitTimeout)); err != nil {
		t.Fatalf("set deadline: %v", err)
	}
	line, err := m.r.ReadString('\n')
	if err != nil {
		t.Fatalf("read MONITOR: %v", err)
	}
	return strings.TrimRight(line, "\r\n")
}

// monitorArgs splits `"A" "b c" "d\"e"` into its quoted arguments; Redis
// escapes them like Go string literals for everything the registry writes.
func monitorArgs(t *testing.T, s string) []string {
	t.Helper()
	var args []string
	for s != "" {
		q, err := strconv.QuotedPrefix(s)
		if err != nil {
			t.Fatalf("MONITOR arguments %q: %v", s, err)
		}
		arg, err := strconv.Unquote(q)
		if err != nil {
			t.Fatalf("MONITOR argument %q: %v", q, err)
		}
		args = append(args, arg)
		s = strings.TrimPrefix(s[len(q):], " ")
	}
	return args
}
