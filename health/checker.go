package health

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/regdns/regdns/registry"
)

// Options configure a Checker. Zero values take the documented defaults.
type Options struct {
	// Client is the registry's Redis: a *redis.Client (standalone, Sentinel)
	// or a *redis.ClusterClient. Required.
	Client redis.UniversalClient
	// Keys is the registry key layout (default registry.DefaultKeys()).
	Keys registry.Keys
	// Interval is how often every instance is probed; health keys are
	// written with a TTL of 3 x Interval in whole seconds, at least 1s, as
	// the reference HealthChecker's check_interval * 3 (default 10s).
	Interval time.Duration
	// Timeout bounds one probe: connect, request and response (default 2s).
	Timeout time.Duration
	// Rise is how many consecutive healthy results flip an unhealthy
	// instance to healthy (default 1).
	Rise int
	// Fall is how many consecutive failed results flip a healthy instance to
	// unhealthy (default 1).
	Fall int
	// Concurrency bounds the probes in flight (default 64). A round of N
	// instances whose probes all time out takes N / Concurrency x Timeout.
	Concurrency int
	// Services lists the services to check; empty means every service in
	// the registry, found by SCAN at the start of each round (default empty).
	Services []string
	// LeaseKey is the Redis key of the leader lease (default
	// "<HealthPrefix>-checker:<Prefix>:lease", "health-checker:services:lease"
	// for the default layout). Checkers that should share the work share the
	// key; checkers with different Services need different keys.
	LeaseKey string
	// LeaseTTL is the lease period: the holder renews every third of it,
	// and a crashed holder is replaced within it (default 15s).
	LeaseTTL time.Duration
	// RedisTimeout bounds each health write and lease call; listing the
	// instances at the start of a round may take max(RedisTimeout, Interval)
	// (default 2s).
	RedisTimeout time.Duration
	// CleanupExpired removes ids whose instance key has expired from their
	// service's set (SREM), as the reference discover() does (default false:
	// the registry is left as the writers left it).
	CleanupExpired bool
	// Probe probes one instance (default NewProber().Probe); tests inject
	// their own.
	Probe ProbeFunc
	// Logger receives flips (info), Redis trouble and malformed data (warn).
	// The zero Logger discards.
	Logger zerolog.Logger
	// Now is the clock of checked_at (default time.Now).
	Now func() time.Time
}

func (o *Options) setDefaults() {
	if o.Keys == (registry.Keys{}) {
		o.Keys = registry.DefaultKeys()
	}
	if o.Interval <= 0 {
		o.Interval = 10 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.Rise <= 0 {
		o.Rise = 1
	}
	if o.Fall <= 0 {
		o.Fall = 1
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 64
	}
	if o.LeaseKey == "" {
		o.LeaseKey = o.Keys.HealthPrefix + "-checker:" + o.Keys.Prefix + ":lease"
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = 15 * time.Second
	}
	if o.RedisTimeout <= 0 {
		o.RedisTimeout = 2 * time.Second
	}
	if o.Probe == nil {
		o.Probe = NewProber().Probe
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Checker probes the registered instances and writes their health keys. Its
// state is owned by the goroutine calling [Checker.Run].
type Checker struct {
	opts   Options
	store  *registry.Store
	writer *registry.Writer
	lease  *lease
	log    zerolog.Logger

	// state remembers each instance between rounds; during a round each
	// target carries its own copy, touched only by the worker probing it.
	state map[instanceKey]state
	// warned holds the keys warned about in the last round, so a bad key
	// is logged once, not once per round; warnedNext collects this round's.
	warned, warnedNext map[string]bool
}

// New returns a Checker. Call Run to start it.
func New(opts Options) (*Checker, error) {
	if opts.Client == nil {
		return nil, errors.New("health: Options.Client is required")
	}
	opts.setDefaults()
	log := opts.Logger
	return &Checker{
		opts:   opts,
		store:  registry.NewStore(opts.Client, opts.Keys),
		writer: registry.NewWriter(opts.Client, opts.Keys),
		lease: &lease{
			client: opts.Client, key: opts.LeaseKey, token: newToken(),
			ttl: opts.LeaseTTL, timeout: opts.RedisTimeout, log: log,
		},
		log:    log,
		state:  map[instanceKey]state{},
		warned: map[string]bool{},
	}, nil
}

// Run checks until ctx ends, then returns nil. It probes only while it holds
// the lease; otherwise it waits to take it over. Every goroutine it starts
// has ended when it returns, and a lease it holds is released.
func (c *Checker) Run(ctx context.Context) error {
	c.log.Info().Str("lease", c.lease.key).Str("token", c.lease.token).
		Dur("interval", c.opts.Interval).Int("rise", c.opts.Rise).Int("fall", c.opts.Fall).
		Int("concurrency", c.opts.Concurrency).Msg("health checker started")
	redisDown := false
	for {
		until, retry, err := c.lease.acquire(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			if !redisDown { // once per outage, not once per attempt
				c.log.Warn().Err(err).Msg("health lease unavailable, retrying")
			}
			redisDown = true
		case !until.IsZero():
			redisDown = false
			c.lead(ctx, until)
			retry = c.lease.renewEvery()
		default:
			redisDown = false
		}
		t := time.NewTimer(retry)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// lead probes round after round while the lease is ours.
func (c *Checker) lead(ctx context.Context, until time.Time) {
	c.log.Info().Str("lease", c.lease.key).Msg("health lease acquired, probing")
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		defer cancel() // no lease, no probes
		defer c.recoverPanic("health lease keeper")
		c.lease.keep(lctx, until)
	})
	c.rounds(lctx)
	cancel()
	wg.Wait()
	c.lease.release(ctx)
	// Another checker may write from now on: what we remember goes stale.
	// Should the lease come back, the statuses are read from Redis again.
	clear(c.state)
	c.log.Info().Str("lease", c.lease.key).Msg("health lease given up, probing stopped")
}

// rounds runs a round at once and then every Interval until ctx ends. A
// round that overruns the interval delays the next one (ticks are dropped).
func (c *Checker) rounds(ctx context.Context) {
	tick := time.NewTicker(c.opts.Interval)
	defer tick.Stop()
	for {
		c.round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (c *Checker) recoverPanic(what string) {
	if r := recover(); r != nil {
		c.log.Error().Interface("panic", r).Msg(what + " panicked")
	}
}

// instanceKey names one instance.
type instanceKey struct{ service, id string }

// target is one instance to probe in this round.
type target struct {
	key     instanceKey
	in      registry.Instance
	kind    Kind
	kindErr error
	state   state
}

// roundStats counts a round's outcomes across workers.
type roundStats struct {
	healthy, unhealthy, unknown, flips, failed atomic.Int64
	mu                                         sync.Mutex
	firstErr                                   error
}

func (s *roundStats) fail(err error) {
	s.failed.Add(1)
	s.mu.Lock()
	if s.firstErr == nil {
		s.firstErr = err
	}
	s.mu.Unlock()
}

// round probes every target once, at most Concurrency at a time, and writes
// each result as soon as it is known.
func (c *Checker) round(ctx context.Context) {
	start := time.Now()
	c.warnedNext = map[string]bool{}
	targets, err := c.discover(ctx)
	if err != nil {
		if ctx.Err() == nil {
			c.log.Warn().Err(err).Msg("health round: list instances")
		}
		c.warned = c.warnedNext
		return
	}
	var stats roundStats
	forEach(ctx, c.opts.Concurrency, len(targets), func(ctx context.Context, i int) {
		c.check(ctx, targets[i], &stats)
	}, func(r any) {
		c.log.Error().Interface("panic", r).Msg("health check panicked")
	})
	next := make(map[instanceKey]state, len(targets))
	for _, t := range targets {
		if t.state.status != registry.StatusUnknown || t.state.announce {
			next[t.key] = t.state
		}
	}
	c.state = next
	c.warned = c.warnedNext
	if ctx.Err() != nil {
		return
	}
	took := time.Since(start)
	if n := stats.failed.Load(); n > 0 {
		c.log.Warn().Err(stats.firstErr).Int64("failed", n).Msg("health round: writes failed")
	}
	c.log.Debug().Int("instances", len(targets)).Int64("healthy", stats.healthy.Load()).
		Int64("unhealthy", stats.unhealthy.Load()).Int64("unknown", stats.unknown.Load()).
		Int64("flips", stats.flips.Load()).Dur("took", took).Msg("health round")
	if took > c.opts.Interval {
		c.log.Warn().Int("instances", len(targets)).Dur("took", took).Dur("interval", c.opts.Interval).
			Msg("health round took longer than the interval: raise health.concurrency or lower health.timeout")
	}
}

// discover lists this round's targets: every live, decodable instance of
// the services checked, except those with health_check "none" and those
// whose health key says "draining" (an operator's, left as it is). An instance
// not remembered from the last round starts from the status its health key
// holds, so hysteresis carries over from the checker that wrote it.
func (c *Checker) discover(ctx context.Context) ([]*target, error) {
	ctx, cancel := context.WithTimeout(ctx, max(c.opts.RedisTimeout, c.opts.Interval))
	defer cancel()
	names := c.opts.Services
	if len(names) == 0 {
		var err error
		if names, err = c.store.ServiceNames(ctx); err != nil {
			return nil, err
		}
	}
	entries, skipped, err := c.store.Snapshot(ctx, names)
	if err != nil {
		return nil, err
	}
	for svc, err := range skipped {
		c.warnOnce(c.opts.Keys.Set(svc), err)
	}
	var targets []*target
	for svc, es := range entries {
		var expired []string
		for _, e := range es {
			key := c.opts.Keys.Instance(svc, e.ID)
			switch {
			case e.WrongType:
				c.warnOnce(key, fmt.Errorf("%w: not a string", registry.ErrMalformed))
				continue
			case e.Data == nil:
				expired = append(expired, e.ID)
				continue
			}
			var stored registry.Status
			if e.HealthData != nil {
				if h, err := registry.DecodeHealth(e.HealthData); err == nil {
					stored = h.Status
				}
			}
			if stored == registry.StatusDraining {
				continue // set by an operator: finishing its connections; not ours to overwrite
			}
			in, err := registry.DecodeInstance(svc, e.ID, e.Data)
			if err != nil {
				c.warnOnce(key, err)
				continue
			}
			kind, kindErr := KindOf(in)
			if kind == KindNone {
				continue
			}
			if kindErr != nil {
				c.warnOnce(key, kindErr)
			}
			t := &target{key: instanceKey{svc, e.ID}, in: in, kind: kind, kindErr: kindErr}
			if st, ok := c.state[t.key]; ok {
				t.state = st
			} else {
				t.state.status = stored
			}
			targets = append(targets, t)
		}
		if c.opts.CleanupExpired && len(expired) > 0 {
			if err := c.writer.RemoveMembers(ctx, svc, expired...); err != nil {
				c.log.Warn().Err(err).Msg("remove expired instances")
			} else {
				c.log.Info().Str("service", svc).Strs("ids", expired).Msg("removed expired instances from the service set")
			}
		}
	}
	return targets, nil
}

// warnOnce logs a problem with a Redis key the first round it is seen.
func (c *Checker) warnOnce(key string, err error) {
	if !c.warned[key] {
		c.log.Warn().Err(err).Str("key", key).Msg("health: skipping")
	}
	c.warnedNext[key] = true
}

// check probes one target and writes the outcome.
func (c *Checker) check(ctx context.Context, t *target, stats *roundStats) {
	result := c.probe(ctx, t)
	checkedAt := c.opts.Now()
	if ctx.Err() != nil {
		return // the lease was lost or the checker stops: the result means nothing
	}
	next, changed := t.state.next(result, c.opts.Rise, c.opts.Fall)
	next.announce = t.state.announce || changed
	switch next.status {
	case registry.StatusHealthy:
		stats.healthy.Add(1)
	case registry.StatusUnhealthy:
		stats.unhealthy.Add(1)
	default:
		stats.unknown.Add(1)
	}
	svc, id := t.key.service, t.key.id
	if changed {
		stats.flips.Add(1)
		// A first status (from unknown) is routine at start-up: debug. A
		// flip between known statuses is news: info.
		level := zerolog.InfoLevel
		if t.state.status == registry.StatusUnknown {
			level = zerolog.DebugLevel
		}
		c.log.WithLevel(level).Str("service", svc).Str("id", id).Str("host", t.in.Host).Uint16("port", t.in.Port).
			Str("from", t.state.status.String()).Str("status", next.status.String()).Msg("health changed")
	}
	t.state = next
	wctx, cancel := context.WithTimeout(ctx, c.opts.RedisTimeout)
	defer cancel()
	if err := c.writer.SetHealthAt(wctx, svc, id, next.status, checkedAt, c.opts.Interval); err != nil {
		stats.fail(err)
		return
	}
	if !t.state.announce {
		return
	}
	if err := c.writer.PublishHealthChanged(wctx, svc, id, next.status); err != nil {
		stats.fail(err)
		return // announced with the next write
	}
	t.state.announce = false
}

// probe runs the probe of t with the timeout. A probe that panics or cannot
// run yields unknown, as the reference's check_instance when its check raises.
func (c *Checker) probe(ctx context.Context, t *target) (status registry.Status) {
	if t.kindErr != nil {
		return registry.StatusUnknown
	}
	defer func() {
		if r := recover(); r != nil {
			c.log.Error().Interface("panic", r).Str("service", t.key.service).Str("id", t.key.id).Msg("health probe panicked")
			status = registry.StatusUnknown
		}
	}()
	pctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	if err := c.opts.Probe(pctx, t.kind, t.in); err != nil {
		c.log.Debug().Err(err).Str("service", t.key.service).Str("id", t.key.id).Msg("health probe failed")
		return registry.StatusUnhealthy
	}
	return registry.StatusHealthy
}

// state is what the checker remembers of one instance.
type state struct {
	// status is the status last written (or found in Redis); unknown when
	// there is none, and then the next result is taken as it is.
	status registry.Status
	// streak counts consecutive results that contradict status.
	streak int
	// announce is set while a change of status is not yet published.
	announce bool
}

// next applies one probe result with hysteresis: a status flips after rise
// healthy or fall unhealthy results in a row. An unknown result, or no
// status yet, is taken at once. changed reports whether the status changed.
func (s state) next(result registry.Status, rise, fall int) (next state, changed bool) {
	switch {
	case result == registry.StatusUnknown || s.status == registry.StatusUnknown:
		return state{status: result}, result != s.status
	case result == s.status:
		return state{status: s.status}, false
	}
	need := fall
	if result == registry.StatusHealthy {
		need = rise
	}
	if s.streak+1 >= need {
		return state{status: result}, true
	}
	return state{status: s.status, streak: s.streak + 1}, false
}

// forEach calls fn for 0 <= i < n on at most limit goroutines and returns
// when every call has returned. Items not started when ctx ends are skipped.
// A panicking call is recovered and reported to onPanic; its worker goes on.
func forEach(ctx context.Context, limit, n int, fn func(ctx context.Context, i int), onPanic func(any)) {
	var (
		nextItem atomic.Int64
		wg       sync.WaitGroup
	)
	call := func(i int) {
		defer func() {
			if r := recover(); r != nil {
				onPanic(r)
			}
		}()
		fn(ctx, i)
	}
	for range min(limit, n) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(nextItem.Add(1)) - 1
				if i >= n {
					return
				}
				call(i)
			}
		})
	}
	wg.Wait()
}
