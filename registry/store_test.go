package registry

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// newRedis starts a miniredis for one test and a client connected to it.
// Both are closed when the test ends.
func newRedis(t *testing.T) (*miniredis.Miniredis, *redis.Client) {
	t.Helper()
	mr := miniredis.RunT(t)
	return mr, newClient(t, mr.Addr())
}

// newClient returns a client of the Redis at addr that fails fast when it
// is down: no command retries and a single dial attempt.
func newClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{
		Addr:          addr,
		MaxRetries:    -1,
		DialerRetries: 1,
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// byID sorts entries by instance id: SMEMBERS has no order.
func byID(entries []Entry) []Entry {
	slices.SortFunc(entries, func(a, b Entry) int { return strings.Compare(a.ID, b.ID) })
	return entries
}

func TestStoreService(t *testing.T) {
	mr, c := newRedis(t)
	ctx := t.Context()
	w := NewWriter(c, DefaultKeys())
	require.NoError(t, w.Register(ctx, "user-service", "id-1", "10.0.0.1", 8080, map[string]any{"weight": 3}, 30*time.Second))
	require.NoError(t, w.Register(ctx, "user-service", "id-2", "10.0.0.2", 8081, nil, 10*time.Second))
	require.NoError(t, w.SetHealth(ctx, "user-service", "id-1", StatusHealthy, 10*time.Second))
	mr.FastForward(time.Second)

	s := NewStore(c, DefaultKeys())
	require.Equal(t, DefaultKeys(), s.Keys())
	entries, err := s.Service(ctx, "user-service")
	require.NoError(t, err)
	entries = byID(entries)
	require.Len(t, entries, 2)

	e := entries[0]
	require.Equal(t, "id-1", e.ID)
	require.False(t, e.WrongType)
	in, err := DecodeInstance("user-service", e.ID, e.Data)
	require.NoError(t, err)
	require.Equal(t, "10.0.0.1", in.Host)
	require.Equal(t, uint16(8080), in.Port)
	require.Equal(t, uint16(3), in.Weight)
	require.Equal(t, 29*time.Second, e.TTL)
	require.NotNil(t, e.HealthData)
	h, err := DecodeHealth(e.HealthData)
	require.NoError(t, err)
	require.Equal(t, StatusHealthy, h.Status)
	require.Equal(t, 29*time.Second, e.HealthTTL, "health TTL is 3 x interval")

	e = entries[1]
	require.Equal(t, "id-2", e.ID)
	in, err = DecodeInstance("user-service", e.ID, e.Data)
	require.NoError(t, err)
	require.Equal(t, "10.0.0.2", in.Host)
	require.Equal(t, 9*time.Second, e.TTL)
	require.Nil(t, e.HealthData, "no health key")
	require.Zero(t, e.HealthTTL)
}

func TestStoreServiceMissingAndWrongType(t *testing.T) {
	mr, c := newRedis(t)
	ctx := t.Context()
	k := DefaultKeys()
	w := NewWriter(c, k)
	require.NoError(t, w.Register(ctx, "svc", "good", "10.0.0.1", 80, nil, 30*time.Second))
	// A member whose instance key expired (or was never written).
	_, err := mr.SAdd(k.Set("svc"), "expired")
	require.NoError(t, err)
	// A member whose instance key holds a hash, and whose health key a list.
	_, err = mr.SAdd(k.Set("svc"), "hash")
	require.NoError(t, err)
	mr.HSet(k.Instance("svc", "hash"), "host", "10.0.0.3")
	_, err = mr.Push(k.Health("svc", "hash"), "healthy")
	require.NoError(t, err)
	// A member whose instance key has no TTL.
	_, err = mr.SAdd(k.Set("svc"), "persistent")
	require.NoError(t, err)
	require.NoError(t, mr.Set(k.Instance("svc", "persistent"), `{"host":"10.0.0.4","port":80}`))

	entries, err := NewStore(c, k).Service(ctx, "svc")
	require.NoError(t, err, "missing and WRONGTYPE keys fail only their own entry")
	entries = byID(entries)
	require.Len(t, entries, 4)

	require.Equal(t, Entry{ID: "expired"}, entries[0], "missing instance key: Data nil, no TTL")

	require.Equal(t, "good", entries[1].ID)
	require.NotNil(t, entries[1].Data)
	require.Equal(t, 30*time.Second, entries[1].TTL)

	require.Equal(t, "hash", entries[2].ID)
	require.True(t, entries[2].WrongType)
	require.Nil(t, entries[2].Data)
	require.Nil(t, entries[2].HealthData, "a WRONGTYPE health key reads as no health")

	require.Equal(t, "persistent", entries[3].ID)
	require.NotNil(t, entries[3].Data)
	require.Zero(t, entries[3].TTL, "no TTL")
}

func TestStoreMembers(t *testing.T) {
	mr, c := newRedis(t)
	ctx := t.Context()
	s := NewStore(c, DefaultKeys())

	ids, err := s.Members(ctx, "nothing")
	require.NoError(t, err, "a missing set is an empty service")
	require.Empty(t, ids)

	_, err = mr.SAdd("services:svc", "b", "a")
	require.NoError(t, err)
	ids, err = s.Members(ctx, "svc")
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"a", "b"}, ids)

	require.NoError(t, mr.Set("services:string", "not a set"))
	_, err = s.Members(ctx, "string")
	require.ErrorIs(t, err, ErrMalformed)
	_, err = s.Service(ctx, "string")
	require.ErrorIs(t, err, ErrMalformed)

	mr.HSet("services:hash", "a", "b")
	_, err = s.Members(ctx, "hash")
	require.ErrorIs(t, err, ErrMalformed)
}

func TestStoreEntriesChunked(t *testing.T) {
	_, c := newRedis(t)
	ctx := t.Context()
	w := NewWriter(c, DefaultKeys())
	var ids []string
	for i := range 10 {
		id := "id-" + string(rune('a'+i))
		ids = append(ids, id)
		require.NoError(t, w.Register(ctx, "svc", id, "10.0.0.1", 80+i, nil, 30*time.Second))
	}
	s := NewStore(c, DefaultKeys())
	s.chunk = 8 // two entries per pipeline
	entries, err := s.Entries(ctx, "svc", ids)
	require.NoError(t, err)
	require.Len(t, entries, 10)
	for i, e := range entries {
		require.Equal(t, ids[i], e.ID, "entries come back in the order asked")
		in, err := DecodeInstance("svc", e.ID, e.Data)
		require.NoError(t, err)
		require.Equal(t, uint16(80+i), in.Port)
	}

	entries, err = s.Entries(ctx, "svc", nil)
	require.NoError(t, err)
	require.Empty(t, entries)
}

func TestStoreServiceNames(t *testing.T) {
	mr, c := newRedis(t)
	ctx := t.Context()
	w := NewWriter(c, DefaultKeys())
	require.NoError(t, w.Register(ctx, "user-service", "id-1", "10.0.0.1", 80, nil, 30*time.Second))
	require.NoError(t, w.Register(ctx, "team:api", "id-2", "10.0.0.2", 80, nil, 30*time.Second))
	require.NoError(t, w.SetHealth(ctx, "user-service", "id-1", StatusHealthy, 10*time.Second))
	// Other data sharing the database.
	require.NoError(t, mr.Set("mesh:routes:a:b", "x"))
	_, err := mr.SAdd("mesh:members", "x")
	require.NoError(t, err)
	mr.HSet("mesh:metrics:user-service", "rps", "3")
	require.NoError(t, mr.Set("services:not-a-set", "x"))
	_, err = mr.SAdd("health:sets-are-not-services", "x")
	require.NoError(t, err)

	names, err := NewStore(c, DefaultKeys()).ServiceNames(ctx)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"user-service", "team:api"}, names,
		"only sets are services: instance keys, health keys and mesh:* are ignored")
}

func TestStoreServiceNamesMany(t *testing.T) {
	mr, c := newRedis(t)
	var want []string
	for i := range 2500 { // more than one SCAN page of 1000
		name := "svc-" + strconv.Itoa(i)
		want = append(want, name)
		_, err := mr.SAdd("services:"+name, "id")
		require.NoError(t, err)
		require.NoError(t, mr.Set("services:"+name+":instances:id", "{}"))
	}
	names, err := NewStore(c, DefaultKeys()).ServiceNames(t.Context())
	require.NoError(t, err)
	require.ElementsMatch(t, want, names)
}

func TestStoreServiceNamesUnsupportedClient(t *testing.T) {
	mr, _ := newRedis(t)
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": mr.Addr()}})
	t.Cleanup(func() { _ = ring.Close() })
	_, err := NewStore(ring, DefaultKeys()).ServiceNames(t.Context())
	require.ErrorContains(t, err, "unsupported redis client")
}

func TestStoreSnapshot(t *testing.T) {
	for _, chunk := range []int{8192, 4} { // 4: one SMEMBERS and one entry per pipeline
		t.Run("chunk "+strconv.Itoa(chunk), func(t *testing.T) {
			mr, c := newRedis(t)
			ctx := t.Context()
			k := DefaultKeys()
			w := NewWriter(c, k)
			require.NoError(t, w.Register(ctx, "a", "a1", "10.0.0.1", 80, nil, 30*time.Second))
			require.NoError(t, w.Register(ctx, "a", "a2", "10.0.0.2", 80, nil, 30*time.Second))
			require.NoError(t, w.Register(ctx, "b:c", "b1", "2001:db8::1", 443, nil, 30*time.Second))
			require.NoError(t, w.SetHealth(ctx, "b:c", "b1", StatusUnhealthy, 10*time.Second))
			_, err := mr.SAdd(k.Set("a"), "gone")
			require.NoError(t, err)
			require.NoError(t, mr.Set(k.Set("broken"), "not a set"))

			s := NewStore(c, k)
			s.chunk = chunk
			out, skipped, err := s.Snapshot(ctx, []string{"a", "b:c", "broken", "missing"})
			require.NoError(t, err)

			require.Len(t, skipped, 1)
			require.ErrorIs(t, skipped["broken"], ErrMalformed)
			require.NotContains(t, out, "broken")
			require.Empty(t, out["missing"], "a service without a set has no entries")

			a := byID(out["a"])
			require.Len(t, a, 3)
			require.Equal(t, []string{"a1", "a2", "gone"}, []string{a[0].ID, a[1].ID, a[2].ID})
			require.NotNil(t, a[0].Data)
			require.NotNil(t, a[1].Data)
			require.Nil(t, a[2].Data)

			bc := out["b:c"]
			require.Len(t, bc, 1)
			in, err := DecodeInstance("b:c", bc[0].ID, bc[0].Data)
			require.NoError(t, err)
			require.Equal(t, "2001:db8::1", in.Host)
			h, err := DecodeHealth(bc[0].HealthData)
			require.NoError(t, err)
			require.Equal(t, StatusUnhealthy, h.Status)
		})
	}
}

func TestStoreSnapshotEmpty(t *testing.T) {
	_, c := newRedis(t)
	out, skipped, err := NewStore(c, DefaultKeys()).Snapshot(t.Context(), nil)
	require.NoError(t, err)
	require.Empty(t, out)
	require.Empty(t, skipped)
}

func TestStoreTTLs(t *testing.T) {
	mr, c := newRedis(t)
	require.NoError(t, mr.Set("persistent", "x"))
	require.NoError(t, mr.Set("leased", "x"))
	mr.SetTTL("leased", 1500*time.Millisecond)
	mr.HSet("hash-leased", "f", "v")
	mr.SetTTL("hash-leased", 10*time.Second)

	ttls, err := NewStore(c, DefaultKeys()).TTLs(t.Context(), []string{"missing", "persistent", "leased", "hash-leased"})
	require.NoError(t, err)
	require.Equal(t, []time.Duration{-1, 0, 1500 * time.Millisecond, 10 * time.Second}, ttls)

	ttls, err = NewStore(c, DefaultKeys()).TTLs(t.Context(), nil)
	require.NoError(t, err)
	require.Empty(t, ttls)
}

// TestStoreTTLsLastMillisecond: PTTL answers 0 for a key in the last
// millisecond of its life. That is "about to expire", not "no expiry".
func TestStoreTTLsLastMillisecond(t *testing.T) {
	mr, c := newRedis(t)
	require.NoError(t, mr.Set("dying", "x"))
	mr.SetTTL("dying", 500*time.Microsecond)
	ttls, err := NewStore(c, DefaultKeys()).TTLs(t.Context(), []string{"dying"})
	require.NoError(t, err)
	require.NotZero(t, ttls[0], "a key with a TTL must not read as a key without one")
}

func TestStoreHealth(t *testing.T) {
	mr, c := newRedis(t)
	ctx := t.Context()
	w := NewWriter(c, DefaultKeys())
	s := NewStore(c, DefaultKeys())

	data, ttl, err := s.Health(ctx, "svc", "id")
	require.NoError(t, err)
	require.Nil(t, data)
	require.Zero(t, ttl)

	require.NoError(t, w.SetHealth(ctx, "svc", "id", StatusUnhealthy, 5*time.Second))
	data, ttl, err = s.Health(ctx, "svc", "id")
	require.NoError(t, err)
	h, err := DecodeHealth(data)
	require.NoError(t, err)
	require.Equal(t, StatusUnhealthy, h.Status)
	require.Equal(t, 15*time.Second, ttl)

	require.True(t, mr.Del("health:svc:id"))
	mr.HSet("health:svc:id", "status", "healthy")
	data, _, err = s.Health(ctx, "svc", "id")
	require.NoError(t, err, "a WRONGTYPE health key reads as no health")
	require.Nil(t, data)
}

// TestStoreRedisDown: "Redis did not answer" must never look like "no
// instances" (RELIABILITY R10).
func TestStoreRedisDown(t *testing.T) {
	mr, c := newRedis(t)
	w := NewWriter(c, DefaultKeys())
	ctx := t.Context()
	require.NoError(t, w.Register(ctx, "svc", "id", "10.0.0.1", 80, nil, 30*time.Second))
	mr.Close()

	s := NewStore(c, DefaultKeys())
	_, err := s.Members(ctx, "svc")
	require.Error(t, err)
	require.NotErrorIs(t, err, ErrMalformed)
	_, err = s.Service(ctx, "svc")
	require.Error(t, err)
	_, err = s.Entries(ctx, "svc", []string{"id"})
	require.Error(t, err)
	_, err = s.ServiceNames(ctx)
	require.Error(t, err)
	_, _, err = s.Snapshot(ctx, []string{"svc"})
	require.Error(t, err)
	_, err = s.TTLs(ctx, []string{"services:svc"})
	require.Error(t, err)
	_, _, err = s.Health(ctx, "svc", "id")
	require.Error(t, err)
	require.Error(t, s.Ping(ctx))
}

// TestStoreErrorReplyFailsRead: an error reply other than WRONGTYPE (here
// LOADING, as Redis answers while it loads its dataset) is an error, not an
// empty service.
func TestStoreErrorReplyFailsRead(t *testing.T) {
	mr, c := newRedis(t)
	_, err := mr.SAdd("services:svc", "id")
	require.NoError(t, err)
	mr.SetError("LOADING Redis is loading the dataset in memory")
	_, err = NewStore(c, DefaultKeys()).Service(t.Context(), "svc")
	require.ErrorContains(t, err, "LOADING")
	require.NotErrorIs(t, err, ErrMalformed)
	_, _, err = NewStore(c, DefaultKeys()).Snapshot(t.Context(), []string{"svc"})
	require.ErrorContains(t, err, "LOADING")
}
