package registry

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

func TestStatsCountWhatTheViewDoes(t *testing.T) {
	mr := miniredis.RunT(t)
	k := DefaultKeys()
	// Malformed entries present at start: skipped, counted once each
	// however often they are re-read.
	require.NoError(t, mr.Set(k.Instance("bad", "json"), `{"host": "10.0.0.9", "port":`))
	require.NoError(t, mr.Set(k.Instance("bad", "port"), `{"host": "10.0.0.9", "port": 0}`))
	mr.HSet(k.Instance("bad", "hash"), "host", "x")
	require.NoError(t, mr.Set(k.Health("bad", "json"), `not json`))
	_, err := mr.SAdd(k.Set("bad"), "json", "port", "hash")
	require.NoError(t, err)
	require.NoError(t, mr.Set(k.Set("notaset"), "x"))

	v := startView(t, mr, Options{Mode: ModeAny, MaxAge: never})
	v.waitReady(t)
	v.waitPolls(t, 3)
	s := v.Stats().Snapshot()
	require.True(t, s.Synced)
	require.True(t, s.EverSynced)
	require.Zero(t, s.StaleFor)
	require.True(t, s.Subscribed)
	require.EqualValues(t, 1, s.Subscriptions)
	require.Equal(t, map[string]uint64{"wrong_type": 1, "bad_instance": 2, "bad_health": 1}, s.Skipped)
	require.GreaterOrEqual(t, s.Resyncs, uint64(3))
	require.Zero(t, s.ResyncFailures)
	require.Equal(t, 1, s.Services, "bad: a service with no live instance is still a service")
	// The first full read is a resync; keyspace notifications are off
	// (miniredis), so the re-reads after it are polls, which found nothing new.
	require.EqualValues(t, 1, s.Invalidations["resync"], "the initial sync published bad")
	require.Zero(t, s.Invalidations["poll"])
	require.Positive(t, s.RedisCalls)
	// (RedisErrors is not zero here: miniredis refuses INFO server.)
	require.Equal(t, s.RedisCalls, s.RedisLatency.Count, "every call timed")
	require.Len(t, s.RedisLatency.Counts, len(s.RedisLatency.Bounds)+1)
	require.Zero(t, s.EventLag.Count)

	// A registration arrives as an event: an invalidation by that cause,
	// with its lag from the message.
	require.NoError(t, v.w.Register(t.Context(), "svc", "a1", "10.0.0.1", 80, nil, 30*time.Second))
	v.waitService(t, "svc", has([]string{"a1"}, []string{"a1"}), "registration")
	require.Eventually(t, func() bool { return v.Stats().Snapshot().Invalidations["registry_event"] == 1 }, waitFor, tick)
	s = v.Stats().Snapshot()
	require.EqualValues(t, 1, s.EventLag.Count)
	require.Positive(t, s.EventLag.Sum)
	require.Less(t, s.EventLag.Sum, time.Second)
	require.Equal(t, 2, s.Services)

	// Redis goes away: out of sync, stale, no subscription, failures counted.
	mr.Close()
	require.Eventually(t, func() bool {
		s := v.Stats().Snapshot()
		return !s.Synced && !s.Subscribed && s.ResyncFailures > 0 && s.RedisErrors > 0 && s.StaleFor > 0
	}, waitFor, tick, "%+v", v.Stats().Snapshot())
	s = v.Stats().Snapshot()
	require.True(t, s.EverSynced)
	require.Equal(t, 2, s.Services, "the last view is kept")

	// Back: in sync and subscribed again.
	require.NoError(t, mr.Restart())
	require.Eventually(t, func() bool {
		s := v.Stats().Snapshot()
		return s.Synced && s.Subscribed && s.Subscriptions >= 2 && s.StaleFor == 0
	}, waitFor, tick, "%+v", v.Stats().Snapshot())
}

// Views may share a client: each counts the Redis calls of its own Run only.
func TestStatsCountOnlyTheViewsOwnRedisCalls(t *testing.T) {
	mr := miniredis.RunT(t)
	c := newClient(t, mr.Addr())
	v := NewView(Options{Client: c})
	require.NoError(t, c.Ping(t.Context()).Err())
	_, err := c.Pipelined(t.Context(), func(p redis.Pipeliner) error {
		p.Get(t.Context(), "x")
		return nil
	})
	require.ErrorIs(t, err, redis.Nil)
	s := v.Stats().Snapshot()
	require.Zero(t, s.RedisCalls)
	require.False(t, s.Synced)
	require.False(t, s.Subscribed)

	// Its own calls: counted. A missing key or a key of another type is no
	// failure of Redis; an error reply is.
	ctx := context.WithValue(t.Context(), statsKey{}, v.stats) // as Run tags its context
	require.NoError(t, c.Ping(ctx).Err())
	require.ErrorIs(t, c.Get(ctx, "missing").Err(), redis.Nil)
	mr.HSet("hash", "a", "b")
	require.Error(t, c.Get(ctx, "hash").Err())
	s = v.Stats().Snapshot()
	require.EqualValues(t, 3, s.RedisCalls)
	require.Zero(t, s.RedisErrors)
	require.Error(t, c.Do(ctx, "NOSUCHCOMMAND").Err())
	s = v.Stats().Snapshot()
	require.EqualValues(t, 4, s.RedisCalls)
	require.EqualValues(t, 1, s.RedisErrors)
	require.EqualValues(t, 4, s.RedisLatency.Count)
}

// An instance key whose TTL runs out leaves by the view's own expiry check:
// an invalidation by expiry, not by poll.
func TestStatsCountExpiry(t *testing.T) {
	mr := miniredis.RunT(t)
	v := startView(t, mr, Options{Mode: ModeAny, MaxAge: never, PollInterval: never})
	v.waitReady(t)
	require.NoError(t, v.w.Register(t.Context(), "svc", "short", "10.0.0.2", 80, nil, time.Second))
	v.waitService(t, "svc", has([]string{"short"}, []string{"short"}), "registration")
	mr.FastForward(2 * time.Second) // miniredis's clock; the view's deadline comes in real time
	require.Eventually(t, func() bool { return v.Stats().Snapshot().Invalidations["expiry"] == 1 }, waitFor, tick)
	s := v.Stats().Snapshot()
	require.EqualValues(t, 1, s.Invalidations["registry_event"])
	require.Zero(t, s.Invalidations["poll"]+s.Invalidations["resync"], "nothing re-read: %v", s.Invalidations)
}
