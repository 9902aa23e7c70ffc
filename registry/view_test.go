package registry

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

const (
	// waitFor bounds every wait for the view to catch up. Generous, because
	// -race and parallel packages slow everything down; a passing run waits
	// only as long as the view needs.
	waitFor = 10 * time.Second
	tick    = 5 * time.Millisecond
	// never is a poll interval or max age that no test lives to see, to show
	// that a change arrived by push.
	never = time.Hour
)

// changeLog records the view's OnChange calls, which come from the view's
// own goroutine.
type changeLog struct {
	mu    sync.Mutex
	calls []viewChange
}

type viewChange struct {
	name string
	svc  *Service
}

func (l *changeLog) record(name string, svc *Service) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, viewChange{name, svc})
}

// last returns the last snapshot reported for name, and whether any was.
func (l *changeLog) last(name string) (*Service, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.calls) - 1; i >= 0; i-- {
		if l.calls[i].name == name {
			return l.calls[i].svc, true
		}
	}
	return nil, false
}

// count returns how many changes of name were reported.
func (l *changeLog) count(name string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.calls {
		if c.name == name {
			n++
		}
	}
	return n
}

// cmdCounter counts the commands a client sends, by name. A pipeline made
// only of PTTLs, which only the view's expiry check sends, counts as
// "pttl-pipeline".
type cmdCounter struct {
	mu sync.Mutex
	n  map[string]int
}

var _ redis.Hook = (*cmdCounter)(nil)

func (h *cmdCounter) add(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == nil {
		h.n = map[string]int{}
	}
	h.n[name]++
}

func (h *cmdCounter) get(name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n[name]
}

func (h *cmdCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *cmdCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.add(cmd.Name())
		return next(ctx, cmd)
	}
}

func (h *cmdCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 && !slices.ContainsFunc(cmds, func(c redis.Cmder) bool { return c.Name() != "pttl" }) {
			h.add("pttl-pipeline")
		}
		return next(ctx, cmds)
	}
}

// viewFixture is a running view over a miniredis, with what tests need to
// drive and observe it.
type viewFixture struct {
	*View
	mr      *miniredis.Miniredis
	w       *Writer
	changes *changeLog
	cmds    *cmdCounter
}

// startView runs a view over mr until the test ends. opts.Client and
// opts.OnChange are set here; PollInterval defaults to 50ms. Keyspace
// notifications stay off: miniredis has no CONFIG, so the view polls.
func startView(t *testing.T, mr *miniredis.Miniredis, opts Options) *viewFixture {
	t.Helper()
	return startViewAt(t, mr, mr.Addr(), opts)
}

// startViewAt is startView for a miniredis that may be closed, which cannot
// tell its address.
func startViewAt(t *testing.T, mr *miniredis.Miniredis, addr string, opts Options) *viewFixture {
	t.Helper()
	f := &viewFixture{mr: mr, changes: &changeLog{}, cmds: &cmdCounter{}}
	c := newClient(t, addr)
	c.AddHook(f.cmds)
	// The writer has its own connection, as a registering service would.
	f.w = NewWriter(newClient(t, addr), DefaultKeys())
	opts.Client = c
	opts.OnChange = f.changes.record
	opts.KeyspaceEvents = false
	if opts.PollInterval == 0 {
		opts.PollInterval = 50 * time.Millisecond
	}
	opts.Logger = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
	f.View = NewView(opts)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	// Registered after the client's cleanup, so it runs before it: the view
	// stops before its client closes.
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err, "Run")
		case <-time.After(waitFor):
			t.Error("View.Run did not return after its context ended")
		}
	})
	return f
}

// waitReady waits until the view is in sync and subscribed to the event
// channels, so that an event published from now on is not lost.
func (f *viewFixture) waitReady(t *testing.T) {
	t.Helper()
	require.Eventually(t, f.Synced, waitFor, tick, "view never synced")
	require.Eventually(t, func() bool { return f.mr.PubSubNumPat() == 3 }, waitFor, tick, "view never subscribed")
}

// waitService waits until the snapshot of name satisfies ok.
func (f *viewFixture) waitService(t *testing.T, name string, ok func(*Service) bool, msg string) *Service {
	t.Helper()
	var svc *Service
	require.Eventually(t, func() bool {
		s, found := f.Service(name)
		if found && ok(s) {
			svc = s
			return true
		}
		return false
	}, waitFor, tick, "service %q: %s", name, msg)
	return svc
}

// waitPolls waits until the view has started n more full re-reads, which
// proves that the previous ones finished.
func (f *viewFixture) waitPolls(t *testing.T, n int) {
	t.Helper()
	base := f.cmds.get("scan")
	require.Eventually(t, func() bool { return f.cmds.get("scan") >= base+n }, waitFor, tick, "view stopped polling")
}

func ids(in []*Instance) []string {
	out := make([]string, 0, len(in))
	for _, i := range in {
		out = append(out, i.ID)
	}
	return out
}

// has returns a predicate true when a service's instances and serving
// instances have exactly the given ids.
func has(instances, serving []string) func(*Service) bool {
	return func(s *Service) bool {
		return slices.Equal(ids(s.Instances), instances) && slices.Equal(ids(s.Serving), serving)
	}
}

var none = []string{}

func TestViewInitialSync(t *testing.T) {
	mr := miniredis.RunT(t)
	ctx := t.Context()
	w := NewWriter(newClient(t, mr.Addr()), DefaultKeys())
	require.NoError(t, w.Register(ctx, "user-service", "a2", "10.0.0.2", 8080, nil, 30*time.Second))
	require.NoError(t, w.Register(ctx, "user-service", "a1", "10.0.0.1", 8080, map[string]any{"weight": "3"}, 30*time.Second))
	require.NoError(t, w.SetHealth(ctx, "user-service", "a1", StatusHealthy, 10*time.Second))
	require.NoError(t, w.Register(ctx, "team:api", "b1", "2001:db8::1", 443, nil, 30*time.Second))
	require.NoError(t, w.SetHealth(ctx, "team:api", "b1", StatusUnhealthy, 10*time.Second))
	require.NoError(t, mr.Set("mesh:routes:a:b", "x"))

	v := startView(t, mr, Options{Mode: ModeHealthyOrUnknown})
	require.Eventually(t, v.Synced, waitFor, tick)

	require.Equal(t, []string{"team:api", "user-service"}, v.Services())
	us, ok := v.Service("user-service")
	require.True(t, ok)
	require.Equal(t, "user-service", us.Name)
	require.Equal(t, []string{"a1", "a2"}, ids(us.Instances), "sorted by id")
	require.Equal(t, []string{"a1", "a2"}, ids(us.Serving), "healthy and unknown serve")
	a1, ok := us.Instance("a1")
	require.True(t, ok)
	require.Equal(t, StatusHealthy, a1.Health.Status)
	require.Equal(t, uint16(3), a1.Weight)
	require.Equal(t, uint16(8080), a1.Port)
	a2, ok := us.Instance("a2")
	require.True(t, ok)
	require.Equal(t, StatusUnknown, a2.Health.Status)
	_, ok = us.Instance("a3")
	require.False(t, ok)

	api, ok := v.Service("team:api")
	require.True(t, ok)
	require.Equal(t, []string{"b1"}, ids(api.Instances))
	require.Empty(t, api.Serving, "unhealthy does not serve")

	// OnChange reported each service, with the snapshot the view serves.
	got, ok := v.changes.last("user-service")
	require.True(t, ok)
	require.Same(t, us, got)
	got, ok = v.changes.last("team:api")
	require.True(t, ok)
	require.Same(t, api, got)
	_, ok = v.Service("mesh:routes:a:b")
	require.False(t, ok)

	// Re-reads that find nothing new report nothing.
	n := v.changes.count("user-service")
	v.waitPolls(t, 3)
	require.Equal(t, n, v.changes.count("user-service"), "a poll without change is not a change")
	got, _ = v.Service("user-service")
	require.Same(t, us, got, "an unchanged service keeps its snapshot")
}

func TestViewEmptyRegistry(t *testing.T) {
	v := startView(t, miniredis.RunT(t), Options{})
	require.Eventually(t, v.Synced, waitFor, tick)
	require.Empty(t, v.Services())
	_, ok := v.Service("anything")
	require.False(t, ok)
}

func TestViewRegisterIsPushed(t *testing.T) {
	mr := miniredis.RunT(t)
	v := startView(t, mr, Options{Mode: ModeAny, PollInterval: never, MaxAge: never})
	v.waitReady(t)
	ctx := t.Context()

	require.NoError(t, v.w.Register(ctx, "svc", "id-1", "10.0.0.1", 80, nil, 30*time.Second))
	svc := v.waitService(t, "svc", has([]string{"id-1"}, []string{"id-1"}), "registered instance never appeared")
	in, _ := svc.Instance("id-1")
	require.Equal(t, "10.0.0.1", in.Host)
	last, ok := v.changes.last("svc")
	require.True(t, ok)
	require.Same(t, svc, last)

	require.NoError(t, v.w.Register(ctx, "svc", "id-2", "10.0.0.2", 80, nil, 30*time.Second))
	v.waitService(t, "svc", has([]string{"id-1", "id-2"}, []string{"id-1", "id-2"}), "second instance never appeared")

	require.NoError(t, v.w.Deregister(ctx, "svc", "id-1"))
	v.waitService(t, "svc", has([]string{"id-2"}, []string{"id-2"}), "deregistered instance stayed")

	require.NoError(t, v.w.Deregister(ctx, "svc", "id-2"))
	require.Eventually(t, func() bool { _, ok := v.Service("svc"); return !ok }, waitFor, tick, "service without instances stayed")
	last, ok = v.changes.last("svc")
	require.True(t, ok)
	require.Nil(t, last, "OnChange reports a service that is gone as nil")
	require.Equal(t, 1, v.cmds.get("scan"), "only the initial sync scanned: the changes were pushed")
}

// TestViewOtherEvents: events that are not register/deregister make the view
// re-read what they name, still without polling.
func TestViewOtherEvents(t *testing.T) {
	mr := miniredis.RunT(t)
	v := startView(t, mr, Options{Mode: ModeHealthy, PollInterval: never, MaxAge: never})
	v.waitReady(t)
	ctx := t.Context()
	k := DefaultKeys()
	pub := newClient(t, mr.Addr())

	// An instance written without the writer's event, then an event of a
	// shape the view does not know: it re-reads the set.
	require.NoError(t, mr.Set(k.Instance("svc", "id-1"), `{"host":"10.0.0.1","port":80}`))
	_, err := mr.SAdd(k.Set("svc"), "id-1")
	require.NoError(t, err)
	require.NoError(t, pub.Publish(ctx, k.Events("svc"), "not json").Err())
	v.waitService(t, "svc", has([]string{"id-1"}, none), "garbage event did not re-read the set")

	require.NoError(t, mr.Set(k.Instance("svc", "id-2"), `{"host":"10.0.0.2","port":80}`))
	_, err = mr.SAdd(k.Set("svc"), "id-2")
	require.NoError(t, err)
	require.NoError(t, pub.Publish(ctx, k.Events("svc"), `{"event":"updated","instance_id":"id-2"}`).Err())
	v.waitService(t, "svc", has([]string{"id-1", "id-2"}, none), "unknown event did not re-read the set")

	// health_changed re-reads one health key.
	require.NoError(t, v.w.SetHealth(ctx, "svc", "id-2", StatusHealthy, 10*time.Second))
	require.NoError(t, v.w.PublishHealthChanged(ctx, "svc", "id-2", StatusHealthy))
	v.waitService(t, "svc", has([]string{"id-1", "id-2"}, []string{"id-2"}), "health_changed was not read")
	require.NoError(t, v.w.SetHealth(ctx, "svc", "id-1", StatusHealthy, 10*time.Second))
	require.NoError(t, pub.Publish(ctx, k.Events("svc"), `{"event":"health_changed","instance_id":"id-1"}`).Err())
	v.waitService(t, "svc", has([]string{"id-1", "id-2"}, []string{"id-1", "id-2"}), "health_changed without status was not read")
	require.NoError(t, v.w.SetHealth(ctx, "svc", "id-1", StatusUnhealthy, 10*time.Second))
	require.NoError(t, v.w.PublishHealthChanged(ctx, "svc", "id-1", StatusUnhealthy))
	v.waitService(t, "svc", has([]string{"id-1", "id-2"}, []string{"id-2"}), "health_changed to unhealthy was not read")

	// A registered event for an instance already known reads nothing new.
	require.NoError(t, pub.Publish(ctx, k.Events("svc"), `{"event":"registered","instance_id":"id-2"}`).Err())
	// A deregistered event for a service the view does not know is ignored.
	require.NoError(t, pub.Publish(ctx, k.Events("other"), `{"event":"deregistered","instance_id":"x"}`).Err())
	// Messages on channels of other kinds are ignored.
	require.NoError(t, pub.Publish(ctx, "services:x:instances:events", "x").Err())

	require.NoError(t, v.w.Deregister(ctx, "svc", "id-1"))
	v.waitService(t, "svc", has([]string{"id-2"}, []string{"id-2"}), "deregister after other events")
	_, ok := v.Service("other")
	require.False(t, ok)
	require.Equal(t, 1, v.cmds.get("scan"), "all of it without a full re-read")
}

// TestViewMembersRemovedWithoutEvent: the reference discover() removes the
// ids of expired instances from the set with SREM and publishes nothing;
// the view finds out by polling.
func TestViewMembersRemovedWithoutEvent(t *testing.T) {
	mr := miniredis.RunT(t)
	v := startView(t, mr, Options{Mode: ModeAny})
	v.waitReady(t)
	ctx := t.Context()
	require.NoError(t, v.w.Register(ctx, "svc", "a", "10.0.0.1", 80, nil, 30*time.Second))
	require.NoError(t, v.w.Register(ctx, "svc", "b", "10.0.0.2", 80, nil, 30*time.Second))
	v.waitService(t, "svc", has([]string{"a", "b"}, []string{"a", "b"}), "registered")
	require.NoError(t, v.w.RemoveMembers(ctx, "svc", "a"))
	v.waitService(t, "svc", has([]string{"b"}, []string{"b"}), "member removed from the set stayed")
}

func TestViewHealthModes(t *testing.T) {
	tests := []struct {
		mode HealthMode
	}{{ModeHealthy}, {ModeHealthyOrUnknown}, {ModeAny}}
	for _, tc := range tests {
		t.Run(tc.mode.String(), func(t *testing.T) {
			mr := miniredis.RunT(t)
			v := startView(t, mr, Options{Mode: tc.mode})
			v.waitReady(t)
			ctx := t.Context()

			serving := func(s Status) []string {
				if tc.mode.Serves(s) {
					return []string{"id"}
				}
				return none
			}
			withStatus := func(s Status) func(*Service) bool {
				return func(svc *Service) bool {
					return has([]string{"id"}, serving(s))(svc) && svc.Instances[0].Health.Status == s
				}
			}

			// No health key: unknown.
			require.NoError(t, v.w.Register(ctx, "svc", "id", "10.0.0.1", 80, nil, 30*time.Second))
			v.waitService(t, "svc", withStatus(StatusUnknown), "instance without health key")

			// Health keys are written without an event: polling finds them.
			require.NoError(t, v.w.SetHealth(ctx, "svc", "id", StatusUnhealthy, 10*time.Second))
			v.waitService(t, "svc", withStatus(StatusUnhealthy), "instance set unhealthy")

			require.NoError(t, v.w.SetHealth(ctx, "svc", "id", StatusHealthy, 10*time.Second))
			v.waitService(t, "svc", withStatus(StatusHealthy), "instance set healthy")

			// A malformed health document counts as unknown.
			require.NoError(t, mr.Set("health:svc:id", "{"))
			v.waitService(t, "svc", withStatus(StatusUnknown), "malformed health document")
		})
	}
}

// TestViewHealthGone: a health key that runs out or is deleted (no event
// either way) makes the instance unknown again.
func TestViewHealthGone(t *testing.T) {
	mr := miniredis.RunT(t)
	v := startView(t, mr, Options{Mode: ModeHealthy})
	v.waitReady(t)
	ctx := t.Context()
	require.NoError(t, v.w.Register(ctx, "svc", "id", "10.0.0.1", 80, nil, time.Minute))
	require.NoError(t, v.w.SetHealth(ctx, "svc", "id", StatusHealthy, 10*time.Second))
	v.waitService(t, "svc", has([]string{"id"}, []string{"id"}), "healthy instance")

	mr.FastForward(31 * time.Second) // past the health TTL of 3 x 10 s
	svc := v.waitService(t, "svc", has([]string{"id"}, none), "instance whose health ran out still serves")
	require.Equal(t, StatusUnknown, svc.Instances[0].Health.Status)

	require.NoError(t, v.w.SetHealth(ctx, "svc", "id", StatusHealthy, 10*time.Second))
	v.waitService(t, "svc", has([]string{"id"}, []string{"id"}), "healthy again")
	require.True(t, mr.Del("health:svc:id"))
	v.waitService(t, "svc", has([]string{"id"}, none), "instance whose health key was deleted still serves")
}

func TestViewInstanceExpires(t *testing.T) {
	mr := miniredis.RunT(t)
	v := startView(t, mr, Options{Mode: ModeAny})
	v.waitReady(t)
	ctx := t.Context()
	require.NoError(t, v.w.Register(ctx, "svc", "short", "10.0.0.1", 80, nil, time.Second))
	require.NoError(t, v.w.Register(ctx, "svc", "long", "10.0.0.2", 80, nil, 30*time.Second))
	v.waitService(t, "svc", has([]string{"long", "short"}, []string{"long", "short"}), "registered")

	mr.FastForward(2 * time.Second)
	v.waitService(t, "svc", has([]string{"long"}, []string{"long"}), "expired instance stayed")
}

// TestViewExpiryTimer: with neither polling nor keyspace notifications, the
// view's own TTL deadlines find an expired instance (and a health key that
// ran out), asking Redis with PTTL when a deadline comes due.
func TestViewExpiryTimer(t *testing.T) {
	mr := miniredis.RunT(t)
	v := startView(t, mr, Options{Mode: ModeHealthy, PollInterval: never, MaxAge: never})
	v.waitReady(t)
	ctx := t.Context()

	// Health keys are written before the registered event makes the view
	// read the instance: the view reads them only then. a's health key lives
	// 1 s (3 x 1/3 s), b's instance key 1 s; c lives on.
	require.NoError(t, v.w.SetHealth(ctx, "svc", "a", StatusHealthy, time.Second/3))
	require.NoError(t, v.w.Register(ctx, "svc", "a", "10.0.0.1", 80, nil, 30*time.Second))
	require.NoError(t, v.w.Register(ctx, "svc", "b", "10.0.0.2", 80, nil, time.Second))
	require.NoError(t, v.w.SetHealth(ctx, "svc", "c", StatusHealthy, 10*time.Second))
	require.NoError(t, v.w.Register(ctx, "svc", "c", "10.0.0.3", 80, nil, 30*time.Second))
	v.waitService(t, "svc", has([]string{"a", "b", "c"}, []string{"a", "c"}), "registered")

	// The deadlines (1 s of wall clock) come due while miniredis's clock
	// stands still: PTTL says the keys live on, and nothing changes.
	require.Eventually(t, func() bool { return v.cmds.get("pttl-pipeline") >= 1 }, waitFor, tick, "no TTL check")
	svc, _ := v.Service("svc")
	require.True(t, has([]string{"a", "b", "c"}, []string{"a", "c"})(svc), "keys that live on are kept: %v", ids(svc.Instances))

	// Now they run out: b's instance key and a's health key go.
	mr.FastForward(2 * time.Second)
	svc = v.waitService(t, "svc", has([]string{"a", "c"}, []string{"c"}), "expired instance or health stayed")
	a, _ := svc.Instance("a")
	require.Equal(t, StatusUnknown, a.Health.Status)
	last, _ := v.changes.last("svc")
	require.Same(t, svc, last)
	require.Equal(t, 1, v.cmds.get("scan"), "found without a full re-read")
}

// TestViewHeartbeatIsNotAChange: a heartbeat rewrites the instance key with
// a new last_heartbeat and nothing else; consumers must not hear of it.
func TestViewHeartbeatIsNotAChange(t *testing.T) {
	mr := miniredis.RunT(t)
	v := startView(t, mr, Options{Mode: ModeAny})
	v.waitReady(t)
	ctx := t.Context()
	require.NoError(t, v.w.Register(ctx, "svc", "id", "10.0.0.1", 80, nil, 30*time.Second))
	before := v.waitService(t, "svc", has([]string{"id"}, []string{"id"}), "registered")
	n := v.changes.count("svc")

	v.w.now = func() time.Time { return time.Now().Add(10 * time.Second) }
	ok, err := v.w.Heartbeat(ctx, "svc", "id", 30*time.Second)
	require.NoError(t, err)
	require.True(t, ok)
	v.waitPolls(t, 2)
	require.Equal(t, n, v.changes.count("svc"), "a heartbeat was reported as a change")
	after, _ := v.Service("svc")
	require.Same(t, before, after)
}

func TestViewSkipsMalformedInstances(t *testing.T) {
	mr := miniredis.RunT(t)
	ctx := t.Context()
	k := DefaultKeys()
	w := NewWriter(newClient(t, mr.Addr()), k)
	require.NoError(t, w.Register(ctx, "svc", "good", "10.0.0.1", 80, nil, 30*time.Second))
	bad := map[string]string{
		"invalid-json": `{"host": "10.0.0.2", "port": 80`,
		"port-zero":    `{"host": "10.0.0.3", "port": 0}`,
		"bad-host":     `{"host": "not a host!", "port": 80}`,
		"array":        `[1, 2, 3]`,
	}
	for id, data := range bad {
		require.NoError(t, mr.Set(k.Instance("svc", id), data))
		_, err := mr.SAdd(k.Set("svc"), id)
		require.NoError(t, err)
	}
	mr.HSet(k.Instance("svc", "hash"), "host", "10.0.0.4")
	_, err := mr.SAdd(k.Set("svc"), "hash", "missing")
	require.NoError(t, err)
	require.NoError(t, mr.Set("services:string-not-set", "x"))

	v := startView(t, mr, Options{Mode: ModeAny})
	v.waitReady(t)
	svc, ok := v.Service("svc")
	require.True(t, ok)
	require.Equal(t, []string{"good"}, ids(svc.Instances), "malformed instances are skipped")
	require.Equal(t, []string{"good"}, ids(svc.Serving), "the rest of the service keeps serving")
	require.Equal(t, []string{"svc"}, v.Services())

	// Mending a document brings the instance back.
	require.NoError(t, mr.Set(k.Instance("svc", "port-zero"), `{"host": "10.0.0.3", "port": 8080}`))
	v.waitService(t, "svc", has([]string{"good", "port-zero"}, []string{"good", "port-zero"}), "mended instance")
}

// TestViewOnlyMalformedInstances: a service whose members are all
// unservable still exists, with no instances.
func TestViewOnlyMalformedInstances(t *testing.T) {
	mr := miniredis.RunT(t)
	k := DefaultKeys()
	require.NoError(t, mr.Set(k.Instance("svc", "bad"), "{"))
	_, err := mr.SAdd(k.Set("svc"), "bad")
	require.NoError(t, err)
	v := startView(t, mr, Options{Mode: ModeAny})
	v.waitReady(t)
	svc, ok := v.Service("svc")
	require.True(t, ok, "the set exists")
	require.Empty(t, svc.Instances)
	require.Empty(t, svc.Serving)
}

func TestViewServiceRemoved(t *testing.T) {
	mr := miniredis.RunT(t)
	ctx := t.Context()
	w := NewWriter(newClient(t, mr.Addr()), DefaultKeys())
	require.NoError(t, w.Register(ctx, "a", "a1", "10.0.0.1", 80, nil, 30*time.Second))
	require.NoError(t, w.Register(ctx, "b", "b1", "10.0.0.2", 80, nil, 30*time.Second))
	v := startView(t, mr, Options{Mode: ModeAny})
	v.waitReady(t)
	require.Equal(t, []string{"a", "b"}, v.Services())
	b, _ := v.Service("b")

	// The set goes without any event (a cleanup script, FLUSH of one key).
	require.True(t, mr.Del("services:a"))
	require.Eventually(t, func() bool { _, ok := v.Service("a"); return !ok }, waitFor, tick, "removed service stayed")
	last, ok := v.changes.last("a")
	require.True(t, ok)
	require.Nil(t, last, "OnChange(name, nil) for a removed service")
	require.Equal(t, []string{"b"}, v.Services())
	got, _ := v.Service("b")
	require.Same(t, b, got, "other services are untouched")
}

// TestViewOutage: while Redis is away the view keeps serving its last
// snapshots and says it is out of sync; when Redis is back it catches up
// with what changed meanwhile (RELIABILITY R1, R2).
func TestViewOutage(t *testing.T) {
	mr := miniredis.RunT(t)
	ctx := t.Context()
	k := DefaultKeys()
	w := NewWriter(newClient(t, mr.Addr()), k)
	require.NoError(t, w.Register(ctx, "svc", "a1", "10.0.0.1", 80, nil, 30*time.Second))
	require.NoError(t, w.Register(ctx, "svc", "a2", "10.0.0.2", 80, nil, 30*time.Second))
	v := startView(t, mr, Options{Mode: ModeAny})
	v.waitReady(t)
	before, ok := v.Service("svc")
	require.True(t, ok)

	mr.Close()
	require.Eventually(t, func() bool { return !v.Synced() }, waitFor, tick, "view still claims to be in sync")
	got, ok := v.Service("svc")
	require.True(t, ok, "the last snapshot is kept through an outage")
	require.Same(t, before, got)
	require.Equal(t, []string{"svc"}, v.Services())

	// Changes made while the view cannot see them (miniredis's direct API
	// works while its server is closed).
	require.True(t, mr.Del(k.Instance("svc", "a1")))
	_, err := mr.SRem(k.Set("svc"), "a1")
	require.NoError(t, err)
	require.NoError(t, mr.Set(k.Instance("svc", "a3"), `{"host":"10.0.0.3","port":80}`))
	_, err = mr.SAdd(k.Set("svc"), "a3")
	require.NoError(t, err)
	require.NoError(t, mr.Set(k.Instance("new", "n1"), `{"host":"10.0.0.4","port":80}`))
	_, err = mr.SAdd(k.Set("new"), "n1")
	require.NoError(t, err)

	require.NoError(t, mr.Restart())
	require.Eventually(t, v.Synced, waitFor, tick, "view never synced again")
	v.waitService(t, "svc", has([]string{"a2", "a3"}, []string{"a2", "a3"}), "changes made during the outage")
	v.waitService(t, "new", has([]string{"n1"}, []string{"n1"}), "service created during the outage")

	// The subscription came back too: events are pushed again.
	require.Eventually(t, func() bool { return mr.PubSubNumPat() == 3 }, waitFor, tick, "view never resubscribed")
	require.NoError(t, v.w.Deregister(ctx, "svc", "a2"))
	v.waitService(t, "svc", has([]string{"a3"}, []string{"a3"}), "deregister after the outage")
}

// TestViewStartsWithRedisDown: a view started while Redis is away is out of
// sync and empty, then syncs when Redis comes (RELIABILITY R2).
func TestViewStartsWithRedisDown(t *testing.T) {
	mr := miniredis.RunT(t)
	addr := mr.Addr()
	w := NewWriter(newClient(t, addr), DefaultKeys())
	require.NoError(t, w.Register(t.Context(), "svc", "id", "10.0.0.1", 80, nil, 30*time.Second))
	mr.Close()

	v := startViewAt(t, mr, addr, Options{Mode: ModeAny})
	require.Eventually(t, func() bool { return v.cmds.get("scan") >= 2 }, waitFor, tick, "view never tried to sync")
	require.False(t, v.Synced())
	require.Empty(t, v.Services())

	require.NoError(t, mr.Restart())
	require.Eventually(t, v.Synced, waitFor, tick, "view never synced")
	v.waitService(t, "svc", has([]string{"id"}, []string{"id"}), "registered before the view started")

	// The subscription that failed at start is made once Redis is there.
	require.Eventually(t, func() bool { return mr.PubSubNumPat() == 3 }, waitFor, tick, "view never subscribed")
	require.NoError(t, v.w.Register(t.Context(), "svc", "id-2", "10.0.0.2", 80, nil, 30*time.Second))
	v.waitService(t, "svc", has([]string{"id", "id-2"}, []string{"id", "id-2"}), "register after start")
}

// TestViewCustomKeys: the view reads the layout it is given, and nothing
// else.
func TestViewCustomKeys(t *testing.T) {
	mr := miniredis.RunT(t)
	keys := Keys{Prefix: "reg", HealthPrefix: "hc"}
	ctx := t.Context()
	other := NewWriter(newClient(t, mr.Addr()), DefaultKeys())
	require.NoError(t, other.Register(ctx, "default-layout", "x", "10.0.0.9", 80, nil, 30*time.Second))

	v := startView(t, mr, Options{Keys: keys, Mode: ModeHealthy, PollInterval: never, MaxAge: never})
	v.waitReady(t)
	w := NewWriter(newClient(t, mr.Addr()), keys)
	require.NoError(t, w.SetHealth(ctx, "svc", "id", StatusHealthy, 10*time.Second))
	require.NoError(t, w.Register(ctx, "svc", "id", "10.0.0.1", 80, nil, 30*time.Second))
	v.waitService(t, "svc", has([]string{"id"}, []string{"id"}), "registered under custom keys")
	require.Equal(t, []string{"svc"}, v.Services())
}

// TestViewNoChangeForUnknownService: OnChange(name, nil) means "the service
// you were told about is gone"; a service never reported must not be.
func TestViewNoChangeForUnknownService(t *testing.T) {
	mr := miniredis.RunT(t)
	v := startView(t, mr, Options{Mode: ModeAny, PollInterval: never, MaxAge: never})
	v.waitReady(t)
	pub := newClient(t, mr.Addr())
	require.NoError(t, pub.Publish(t.Context(), "services:ghost:events", "not json").Err())
	require.NoError(t, v.w.Register(t.Context(), "marker", "id", "10.0.0.1", 80, nil, 30*time.Second))
	// Events are handled in order: once marker is seen, ghost's was handled.
	v.waitService(t, "marker", has([]string{"id"}, []string{"id"}), "marker")
	_, reported := v.changes.last("ghost")
	require.False(t, reported, "OnChange called for a service that never existed")
}

// TestViewExpiryQueueBounded: re-reading a service whose deadlines did not
// move must not pile up deadlines.
func TestViewExpiryQueueBounded(t *testing.T) {
	mr := miniredis.RunT(t)
	w := NewWriter(newClient(t, mr.Addr()), DefaultKeys())
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		require.NoError(t, w.Register(t.Context(), "svc", id, "10.0.0.1", 80, nil, 30*time.Second))
		require.NoError(t, w.SetHealth(t.Context(), "svc", id, StatusHealthy, 10*time.Second))
	}
	var v *viewFixture
	t.Run("polling", func(t *testing.T) {
		v = startView(t, mr, Options{Mode: ModeAny, PollInterval: 10 * time.Millisecond})
		v.waitReady(t)
		v.waitPolls(t, 50)
	})
	// The view has stopped (the subtest's cleanup waited for Run to
	// return): its queue can be read without a race.
	require.LessOrEqual(t, len(v.expiry), 4*10, "deadlines queued for 10 keys after 50 polls")
}

func TestViewOptionsDefaults(t *testing.T) {
	var o Options
	o.setDefaults()
	require.Equal(t, DefaultKeys(), o.Keys)
	require.Equal(t, ModeHealthy, o.Mode)
	require.Equal(t, 30*time.Second, o.MaxAge)
	require.Equal(t, 2*time.Second, o.PollInterval)
	require.Equal(t, 2*time.Second, o.Timeout)
	require.NotNil(t, o.Now)
	require.NotNil(t, o.OnChange)
	o.OnChange("x", nil) // the default callback does nothing

	o = Options{Keys: Keys{Prefix: "p", HealthPrefix: "h"}, MaxAge: time.Minute, PollInterval: time.Second, Timeout: time.Second}
	o.setDefaults()
	require.Equal(t, Keys{Prefix: "p", HealthPrefix: "h"}, o.Keys)
	require.Equal(t, time.Minute, o.MaxAge)
	require.Equal(t, time.Second, o.PollInterval)
	require.Equal(t, time.Second, o.Timeout)
}

// TestViewSharesUnchangedInstances: a snapshot holds the instances that did
// not change by the same pointers as the one before (a re-read or another
// instance's change copies nothing), instances of a service with equal
// metadata share one copy of it, and a published instance is never
// modified: a change replaces it.
func TestViewSharesUnchangedInstances(t *testing.T) {
	mr := miniredis.RunT(t)
	v := startView(t, mr, Options{Mode: ModeAny})
	v.waitReady(t)
	ctx := t.Context()
	meta := map[string]any{"region": "eu", "version": "1.0.0"}
	require.NoError(t, v.w.Register(ctx, "svc", "a", "10.0.0.1", 80, meta, 30*time.Second))
	require.NoError(t, v.w.Register(ctx, "svc", "b", "10.0.0.2", 80, meta, 30*time.Second))
	before := v.waitService(t, "svc", has([]string{"a", "b"}, []string{"a", "b"}), "registered")
	a, b := before.Instances[0], before.Instances[1]
	require.Equal(t, "eu", a.Meta.Get("region"))
	require.Same(t, &a.Meta[0], &b.Meta[0], "equal metadata is held once per service")

	v.waitPolls(t, 2) // full re-reads of unchanged documents
	require.NoError(t, v.w.Register(ctx, "svc", "c", "10.0.0.3", 80, meta, 30*time.Second))
	after := v.waitService(t, "svc", has([]string{"a", "b", "c"}, []string{"a", "b", "c"}), "c registered")
	require.Same(t, a, after.Instances[0])
	require.Same(t, b, after.Instances[1])

	// A heartbeat's new time, then a health change: a is replaced, and
	// the instance the earlier snapshots hold stays as it was.
	v.w.now = func() time.Time { return time.Now().Add(10 * time.Second) }
	ok, err := v.w.Heartbeat(ctx, "svc", "a", 30*time.Second)
	require.NoError(t, err)
	require.True(t, ok)
	v.waitPolls(t, 2)
	require.NoError(t, v.w.SetHealth(ctx, "svc", "a", StatusUnhealthy, 30*time.Second))
	changed := v.waitService(t, "svc", func(s *Service) bool {
		return len(s.Instances) == 3 && s.Instances[0].Health.Status == StatusUnhealthy
	}, "a unhealthy")
	require.NotSame(t, a, changed.Instances[0])
	require.True(t, changed.Instances[0].LastHeartbeat.After(a.LastHeartbeat), "the heartbeat's time came with the change")
	require.Equal(t, StatusUnknown, a.Health.Status, "a published instance was modified")
	require.Same(t, b, changed.Instances[1])
	require.Same(t, &a.Meta[0], &changed.Instances[0].Meta[0], "the copy shares the metadata")
}
