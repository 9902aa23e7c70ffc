package registry

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/regdns/regdns/internal/histogram"
)

// Counters of a View, kept with atomics where things happen and read by
// Snapshot (at scrape time). Per-change state (the cause being handled) is
// owned by the Run goroutine, as the rest of the view's state is.

// Causes of invalidations: what made the view publish a change.
const (
	causeRegistryEvent = iota // a message on services:<name>:events
	causeKeyspaceEvent        // a keyspace notification
	causeExpiry               // a key's TTL ran out (the view's own timer)
	causeResync               // a full re-read (start, resubscription, cache.max_age, recovery)
	causePoll                 // a full re-read while keyspace notifications are unavailable
	causeMaxStale             // the view or a held service dropped after cache.max_stale
	numCauses
)

// CauseNames names the invalidation causes, in cause order.
var CauseNames = [numCauses]string{"registry_event", "keyspace_event", "expiry", "resync", "poll", "max_stale"}

// Reasons registry entries are skipped.
const (
	skipWrongType   = iota // a key of another Redis type
	skipBadInstance        // an instance document that does not decode (JSON, fields)
	skipBadHealth          // a health document that does not decode
	numSkips
)

// SkipNames names the skip reasons, in reason order.
var SkipNames = [numSkips]string{"wrong_type", "bad_instance", "bad_health"}

// LatencyBounds are the upper bounds of the view's duration histograms
// (Redis round trips, event-to-answer lag).
var LatencyBounds = [...]time.Duration{
	50 * time.Microsecond, 100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second,
}

// Histogram is a snapshot of a duration histogram.
type Histogram = histogram.Snapshot

// Stats are the counters of one View.
type Stats struct {
	v *View

	invalidations           [numCauses]atomic.Uint64
	resyncs, resyncFailures atomic.Uint64
	redisCalls, redisErrors atomic.Uint64
	redisLatency            histogram.Durations
	subscribed              atomic.Bool
	subscriptions           atomic.Uint64
	skipped                 [numSkips]atomic.Uint64
	eventLag                histogram.Durations

	// Owned by the Run goroutine: what is being handled, and when the
	// message that caused it arrived (zero: no message).
	cause   int
	eventAt time.Time
}

// StatsSnapshot is a copy of a view's counters and state: plain values.
type StatsSnapshot struct {
	// Synced: the view reflects Redis. EverSynced: a full read succeeded
	// once. StaleFor is how long the view has been out of sync (0 in sync).
	Synced, EverSynced bool
	StaleFor           time.Duration
	// Subscribed: the last sign from the pub/sub subscription (a complete
	// (re)subscription, or a message) is newer than the last Redis failure.
	Subscribed bool
	// Subscriptions counts complete (re)subscriptions.
	Subscriptions uint64
	// Invalidations counts published changes by cause (CauseNames).
	Invalidations map[string]uint64
	// Resyncs counts full re-reads that succeeded, ResyncFailures those
	// that failed.
	Resyncs, ResyncFailures uint64
	// RedisCalls counts the commands and pipelines the view sent, and
	// RedisErrors those that failed (a missing key or WRONGTYPE is no
	// failure of Redis);
	// RedisLatency is their round-trip time.
	RedisCalls, RedisErrors uint64
	RedisLatency            Histogram
	// Skipped counts malformed entries skipped, by reason (SkipNames), once
	// per key and reason, as they are logged.
	Skipped map[string]uint64
	// Panics counts the times a service entered panic mode.
	Panics uint64
	// EventLag is the time from taking a pub/sub message off the
	// subscription to the change it caused being published (OnChange
	// returned: answers follow it).
	EventLag Histogram
	// Services is the number of services in the view.
	Services int
}

// Stats returns the view's counters.
func (v *View) Stats() *Stats { return v.stats }

// Snapshot copies the counters.
func (s *Stats) Snapshot() StatsSnapshot {
	v := s.v
	out := StatsSnapshot{
		Synced:         v.Synced(),
		EverSynced:     v.EverSynced(),
		StaleFor:       v.StaleFor(),
		Subscribed:     s.subscribed.Load(),
		Subscriptions:  s.subscriptions.Load(),
		Invalidations:  make(map[string]uint64, numCauses),
		Resyncs:        s.resyncs.Load(),
		ResyncFailures: s.resyncFailures.Load(),
		RedisCalls:     s.redisCalls.Load(),
		RedisErrors:    s.redisErrors.Load(),
		RedisLatency:   s.redisLatency.Snapshot(LatencyBounds[:]),
		Skipped:        make(map[string]uint64, numSkips),
		Panics:         v.PanicCount(),
		EventLag:       s.eventLag.Snapshot(LatencyBounds[:]),
	}
	for i := range s.invalidations {
		out.Invalidations[CauseNames[i]] = s.invalidations[i].Load()
	}
	for i := range s.skipped {
		out.Skipped[SkipNames[i]] = s.skipped[i].Load()
	}
	v.mu.RLock()
	out.Services = len(v.snaps)
	v.mu.RUnlock()
	return out
}

// begin records what the Run goroutine handles next: changes published
// until the next begin are counted under cause, and when eventAt is set,
// their lag from it.
func (s *Stats) begin(cause int, eventAt time.Time) {
	s.cause, s.eventAt = cause, eventAt
}

// event begins handling a pub/sub message that arrived now; it is also a
// sign of a live subscription.
func (s *Stats) event(cause int) {
	s.begin(cause, s.v.opts.Now())
	s.subscribed.Store(true)
}

// changed wraps Options.OnChange: it counts the change under the current
// cause, and the lag from the message that caused it.
func (s *Stats) changed(onChange func(string, *Service)) func(string, *Service) {
	return func(name string, svc *Service) {
		onChange(name, svc)
		s.invalidations[s.cause].Add(1)
		if !s.eventAt.IsZero() {
			s.eventLag.Observe(LatencyBounds[:], s.v.opts.Now().Sub(s.eventAt), 1)
		}
	}
}

// resynced counts a full re-read; one cut short by ctx (shutdown) is not
// counted.
func (s *Stats) resynced(ctx context.Context, err error) {
	switch {
	case err == nil:
		s.resyncs.Add(1)
	case ctx.Err() == nil:
		s.resyncFailures.Add(1)
	}
}

// skip counts an entry skipped for reason (as warnOnce logs it).
func (s *Stats) skip(key, reason string) {
	kind, _, _ := s.v.opts.Keys.Parse(key)
	switch {
	case strings.Contains(reason, "is not a string") || strings.Contains(reason, "is not a set"):
		s.skipped[skipWrongType].Add(1)
	case kind == KindHealth:
		s.skipped[skipBadHealth].Add(1)
	default:
		s.skipped[skipBadInstance].Add(1)
	}
}

// statsKey tags the contexts of a view's Run, so the Redis hook counts that
// view's calls only (views may share a client).
type statsKey struct{}

// redisHook counts and times the Redis calls of one view.
type redisHook struct{ s *Stats }

// redisHook implements redis.Hook.
var _ redis.Hook = redisHook{}

func (h redisHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h redisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if ctx.Value(statsKey{}) != h.s || connSetup(cmd) {
			return next(ctx, cmd)
		}
		start := time.Now()
		err := next(ctx, cmd)
		h.s.redisCall(time.Since(start), err)
		return err
	}
}

func (h redisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if ctx.Value(statsKey{}) != h.s || len(cmds) == 0 || connSetup(cmds[0]) {
			return next(ctx, cmds)
		}
		start := time.Now()
		err := next(ctx, cmds)
		h.s.redisCall(time.Since(start), err)
		return err
	}
}

// connSetup reports whether cmd is part of go-redis setting up a new
// connection (HELLO, AUTH, SELECT, CLIENT SETINFO...), which runs through
// the hooks with the context of the call that needed the connection. Its
// failures are expected on older servers and go-redis ignores them; the
// view itself sends none of these.
func connSetup(cmd redis.Cmder) bool {
	switch cmd.Name() {
	case "hello", "auth", "select", "client":
		return true
	}
	return false
}

func (s *Stats) redisCall(d time.Duration, err error) {
	s.redisCalls.Add(1)
	s.redisLatency.Observe(LatencyBounds[:], d, 1)
	// A missing key is no failure, nor a key of another type (that is
	// malformed data, counted as skipped).
	if err != nil && !errors.Is(err, redis.Nil) && !isWrongType(err) {
		s.redisErrors.Add(1)
	}
}

// newStats returns the stats of v, and hooks them into its client.
func newStats(v *View) *Stats {
	s := &Stats{v: v}
	if v.opts.Client != nil {
		v.opts.Client.AddHook(redisHook{s})
	}
	return s
}

// beginResync begins a full re-read: a poll while keyspace notifications
// are unavailable, a resync otherwise.
func (s *Stats) beginResync(polling bool) {
	if polling {
		s.begin(causePoll, time.Time{})
	} else {
		s.begin(causeResync, time.Time{})
	}
}

// resubscribed records a complete (re)subscription.
func (s *Stats) resubscribed() {
	s.subscriptions.Add(1)
	s.subscribed.Store(true)
}
