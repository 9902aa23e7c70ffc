package registry

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// fixedClock returns a clock that always reads t.
func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

// subscribe subscribes to channel and returns once Redis confirmed it.
func subscribe(t *testing.T, c *redis.Client, channel string) *redis.PubSub {
	t.Helper()
	ps := c.Subscribe(t.Context(), channel)
	t.Cleanup(func() { _ = ps.Close() })
	_, err := ps.Receive(t.Context()) // the subscription confirmation
	require.NoError(t, err)
	return ps
}

func receive(t *testing.T, ps *redis.PubSub) *redis.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	m, err := ps.ReceiveMessage(ctx)
	require.NoError(t, err)
	return m
}

func TestWriterRegister(t *testing.T) {
	mr, c := newRedis(t)
	ctx := t.Context()
	w := NewWriter(c, DefaultKeys())
	w.now = fixedClock(time.Unix(1764090000, 5e8)) // exact in a float64
	ps := subscribe(t, c, "services:user-service:events")

	meta := map[string]any{"version": "1.0.0", "weight": 3}
	require.NoError(t, w.Register(ctx, "user-service", "id-1", "10.0.0.12", 8080, meta, 30*time.Second))

	got, err := mr.Get("services:user-service:instances:id-1")
	require.NoError(t, err)
	// Field for field and in order, what the reference writer's json.dumps
	// leaves (modulo its ", " and ": " separators).
	require.Equal(t, `{"service_name":"user-service","instance_id":"id-1","host":"10.0.0.12","port":8080,`+
		`"metadata":{"version":"1.0.0","weight":3},"registered_at":1764090000.5,"last_heartbeat":1764090000.5}`, got)
	require.Equal(t, 30*time.Second, mr.TTL("services:user-service:instances:id-1"))
	members, err := mr.Members("services:user-service")
	require.NoError(t, err)
	require.Equal(t, []string{"id-1"}, members)

	m := receive(t, ps)
	require.Equal(t, "services:user-service:events", m.Channel)
	require.JSONEq(t, `{"event":"registered","instance_id":"id-1"}`, m.Payload)

	// Without metadata the reference still writes an empty object.
	require.NoError(t, w.Register(ctx, "user-service", "id-2", "10.0.0.13", 80, nil, 0))
	got, err = mr.Get("services:user-service:instances:id-2")
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, json.Unmarshal([]byte(got), &doc))
	require.Equal(t, map[string]any{}, doc["metadata"])
	require.Equal(t, time.Second, mr.TTL("services:user-service:instances:id-2"), "TTLs are at least 1 s")
}

func TestWriterRegisterUnencodable(t *testing.T) {
	_, c := newRedis(t)
	err := NewWriter(c, DefaultKeys()).Register(t.Context(), "svc", "id", "10.0.0.1", 80,
		map[string]any{"bad": make(chan int)}, time.Second)
	require.Error(t, err)
}

func TestWriterDeregister(t *testing.T) {
	mr, c := newRedis(t)
	ctx := t.Context()
	w := NewWriter(c, DefaultKeys())
	require.NoError(t, w.Register(ctx, "svc", "id-1", "10.0.0.1", 80, nil, 30*time.Second))
	require.NoError(t, w.Register(ctx, "svc", "id-2", "10.0.0.2", 80, nil, 30*time.Second))
	ps := subscribe(t, c, "services:svc:events")

	require.NoError(t, w.Deregister(ctx, "svc", "id-1"))
	require.False(t, mr.Exists("services:svc:instances:id-1"))
	members, err := mr.Members("services:svc")
	require.NoError(t, err)
	require.Equal(t, []string{"id-2"}, members)
	m := receive(t, ps)
	require.JSONEq(t, `{"event":"deregistered","instance_id":"id-1"}`, m.Payload)

	require.NoError(t, w.Deregister(ctx, "svc", "id-2"))
	require.False(t, mr.Exists("services:svc"), "Redis deletes an empty set")
}

func TestWriterHeartbeat(t *testing.T) {
	mr, c := newRedis(t)
	ctx := t.Context()
	w := NewWriter(c, DefaultKeys())
	w.now = fixedClock(time.Unix(1764090000, 0))
	require.NoError(t, w.Register(ctx, "svc", "id", "10.0.0.1", 80, map[string]any{"weight": 2}, 30*time.Second))
	mr.FastForward(20 * time.Second)

	w.now = fixedClock(time.Unix(1764090020, 0))
	ok, err := w.Heartbeat(ctx, "svc", "id", 30*time.Second)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, 30*time.Second, mr.TTL("services:svc:instances:id"), "the TTL is renewed")
	got, err := mr.Get("services:svc:instances:id")
	require.NoError(t, err)
	in, err := DecodeInstance("svc", "id", []byte(got))
	require.NoError(t, err)
	require.Equal(t, time.Unix(1764090000, 0), in.RegisteredAt)
	require.Equal(t, time.Unix(1764090020, 0), in.LastHeartbeat)
	require.Equal(t, uint16(2), in.Weight, "a heartbeat keeps the metadata")

	mr.FastForward(31 * time.Second)
	ok, err = w.Heartbeat(ctx, "svc", "id", 30*time.Second)
	require.NoError(t, err)
	require.False(t, ok, "an expired instance must register again")

	require.NoError(t, mr.Set("services:svc:instances:bad", "{"))
	_, err = w.Heartbeat(ctx, "svc", "bad", 30*time.Second)
	require.Error(t, err)
}

func TestWriterSetHealth(t *testing.T) {
	mr, c := newRedis(t)
	w := NewWriter(c, DefaultKeys())
	w.now = fixedClock(time.Unix(1764090000, 5e8))
	require.NoError(t, w.SetHealth(t.Context(), "svc", "id", StatusUnhealthy, 10*time.Second))
	got, err := mr.Get("health:svc:id")
	require.NoError(t, err)
	require.JSONEq(t, `{"status":"unhealthy","checked_at":1764090000.5}`, got)
	require.Equal(t, 30*time.Second, mr.TTL("health:svc:id"), "3 x interval")
}

func TestTTLSeconds(t *testing.T) {
	require.Equal(t, time.Second, ttlSeconds(0))
	require.Equal(t, time.Second, ttlSeconds(-time.Minute))
	require.Equal(t, time.Second, ttlSeconds(400*time.Millisecond))
	require.Equal(t, 2*time.Second, ttlSeconds(1500*time.Millisecond))
	require.Equal(t, 30*time.Second, ttlSeconds(30*time.Second))
}

func TestWriterPublishHealthChanged(t *testing.T) {
	_, c := newRedis(t)
	ps := subscribe(t, c, "services:svc:events")
	require.NoError(t, NewWriter(c, DefaultKeys()).PublishHealthChanged(t.Context(), "svc", "id", StatusUnhealthy))
	m := receive(t, ps)
	require.JSONEq(t, `{"event":"health_changed","instance_id":"id","status":"unhealthy"}`, m.Payload)
}

func TestWriterRemoveMembers(t *testing.T) {
	mr, c := newRedis(t)
	ctx := t.Context()
	w := NewWriter(c, DefaultKeys())
	_, err := mr.SAdd("services:svc", "a", "b", "c")
	require.NoError(t, err)
	require.NoError(t, w.RemoveMembers(ctx, "svc"), "nothing to remove")
	require.NoError(t, w.RemoveMembers(ctx, "svc", "a", "c", "unknown"))
	members, err := mr.Members("services:svc")
	require.NoError(t, err)
	require.Equal(t, []string{"b"}, members)
}

func TestWriterSetHealthAt(t *testing.T) {
	mr, c := newRedis(t)
	w := NewWriter(c, DefaultKeys())
	ctx := t.Context()
	require.NoError(t, w.SetHealthAt(ctx, "svc", "id", StatusHealthy, time.Unix(1764090000, 5e8), 10*time.Second))
	got, err := mr.Get("health:svc:id")
	require.NoError(t, err)
	require.Equal(t, `{"status": "healthy", "checked_at": 1764090000.5}`, got, "byte for byte as json.dumps")
	require.Equal(t, 30*time.Second, mr.TTL("health:svc:id"))

	require.NoError(t, w.SetHealthAt(ctx, "svc", "id", StatusUnknown, time.Unix(1764090000, 0), time.Second))
	got, err = mr.Get("health:svc:id")
	require.NoError(t, err)
	require.Equal(t, `{"status": "unknown", "checked_at": 1764090000.0}`, got, "a whole float keeps its .0")
	h, err := DecodeHealth([]byte(got))
	require.NoError(t, err)
	require.Equal(t, time.Unix(1764090000, 0), h.CheckedAt)
}
