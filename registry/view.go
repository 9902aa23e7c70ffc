package registry

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// Options configure a View. Zero values take the documented defaults.
type Options struct {
	// Client reads the registry: a *redis.Client (standalone, Sentinel) or a
	// *redis.ClusterClient.
	Client redis.UniversalClient
	// DB is the database number, needed to name keyspace notification channels.
	DB int
	// Keys is the key layout (default DefaultKeys()).
	Keys Keys
	// Mode decides which health statuses are served (default ModeHealthy).
	Mode HealthMode
	// KeyspaceEvents turns Redis keyspace notifications on with CONFIG SET
	// when they are off. When Redis refuses, the view logs one warning and
	// polls every PollInterval instead.
	KeyspaceEvents bool
	// MaxAge is how often every service is re-read in full, because push
	// events can be lost (default 30s).
	MaxAge time.Duration
	// PollInterval is the full re-read period when keyspace notifications are
	// unavailable (default 2s).
	PollInterval time.Duration
	// Timeout bounds every Redis call the view makes (default 2s).
	Timeout time.Duration
	// PanicThreshold: when fewer than this share of a service's live
	// instances are healthy, serve all of them rather than overload the few
	// (Envoy's panic mode). 0 turns it off (the default).
	PanicThreshold float64
	// LeaseWarning: an instance whose key's TTL runs out within this without
	// a heartbeat is reported with Instance.LeaseEnds set (0: off).
	LeaseWarning time.Duration
	// MaxStale bounds how long the last view is served while Redis is
	// unreachable, and how long a service lost with Redis's data is held
	// (default 1h; negative: forever). See outage.go.
	MaxStale time.Duration
	// OnChange is called, from the view's own goroutine, after a service
	// changed; svc is nil when the service no longer exists. It must not block.
	OnChange func(name string, svc *Service)
	// Logger receives warnings about malformed data and Redis trouble.
	Logger zerolog.Logger
	// Now is the clock (default time.Now); tests replace it.
	Now func() time.Time
}

func (o *Options) setDefaults() {
	if o.Keys == (Keys{}) {
		o.Keys = DefaultKeys()
	}
	if o.MaxAge <= 0 {
		o.MaxAge = 30 * time.Second
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 2 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.MaxStale == 0 {
		o.MaxStale = time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.OnChange == nil {
		o.OnChange = func(string, *Service) {}
	}
}

// View is the in-memory view of the registry. Its state is owned by the
// goroutine running [View.Run]; readers get immutable snapshots.
type View struct {
	opts  Options
	store *Store
	log   zerolog.Logger

	synced atomic.Bool
	// staleSince is when the view went out of sync (unix ns; 0: in sync).
	staleSince atomic.Int64
	everSynced atomic.Bool
	// panics counts the times a service entered panic mode.
	panics atomic.Uint64
	stats  *Stats // see stats.go
	// mu guards snaps, the published snapshots read by other goroutines.
	mu    sync.RWMutex
	snaps map[string]*Service

	// Owned by the Run goroutine.
	services map[string]*serviceState
	expiry   expiryQueue
	warned   map[string]string // redis key -> last reason logged
}

type serviceState struct {
	entries map[string]*entryState // by instance id: every member of the set
	snap    *Service
	// meta and tags are the last decoded instance's: the instances of a
	// service mostly carry the same metadata, and share one copy of it.
	meta Metadata
	tags []string
}

// share makes in use the service's copy of its metadata and tags when they
// are equal, and makes them the service's copy otherwise.
func (st *serviceState) share(in *Instance) {
	if slices.Equal(in.Meta, st.meta) {
		in.Meta = st.meta
	} else {
		st.meta = in.Meta
	}
	if slices.Equal(in.Tags, st.tags) {
		in.Tags = st.tags
	} else {
		st.tags = in.Tags
	}
}

// entryState is one member of a service set.
type entryState struct {
	// inst is shared with published snapshots, so it is never modified
	// once published: a change replaces it (see update). private is set
	// while no snapshot holds it yet.
	inst    *Instance
	private bool
	present bool   // instance key exists and decodes
	bad     string // why the key is not served, when it exists but is malformed
	// expires is when the instance key's TTL runs out, as far as we know;
	// heartbeats move it. lease is the writer's TTL, learned from PTTL.
	expires time.Time
	lease   time.Duration
	// lastSeen is when the last heartbeat (a write to the known key) was
	// seen; zero when none was seen since the key was read.
	lastSeen time.Time
	// healthExpires is when the health key's TTL runs out.
	healthExpires time.Time
	// warned is set once LeaseEnds was reported for the current deadline.
	warned bool
	// armed and healthArmed are the times of the one queued expiry item of
	// each key (zero: none). Deadlines that move later (heartbeats, re-reads)
	// queue nothing: the armed item re-arms itself when it comes due, which
	// keeps the queue at about one item per key.
	armed, healthArmed time.Time
}

// update changes the entry's instance with f: in place while no snapshot
// holds it, otherwise on a copy, leaving the one that snapshots share as it
// was. The copy shares the metadata map and tags, which nothing modifies.
func (es *entryState) update(f func(in *Instance)) {
	if !es.private {
		c := *es.inst
		es.inst, es.private = &c, true
	}
	f(es.inst)
}

// setHealth records the instance's health, copying the instance only when
// it changes.
func (es *entryState) setHealth(h Health) {
	if es.inst.Health.Status != h.Status || !es.inst.Health.CheckedAt.Equal(h.CheckedAt) {
		es.update(func(in *Instance) { in.Health = h })
	}
}

// setLeaseEnds records when the instance's lease ends (zero: not soon),
// copying the instance only when it changes.
func (es *entryState) setLeaseEnds(at time.Time) {
	if !es.inst.LeaseEnds.Equal(at) {
		es.update(func(in *Instance) { in.LeaseEnds = at })
	}
}

// arm makes sure an expiry item is queued no later than the entry's
// deadline of the instance key (health false) or the health key.
func (v *View) arm(service, id string, es *entryState, health bool) {
	at, armed := v.alarm(es), &es.armed
	if health {
		at, armed = es.healthExpires, &es.healthArmed
	}
	if at.IsZero() || (!armed.IsZero() && !at.Before(*armed)) {
		return
	}
	*armed = at
	v.expiry.push(expiryItem{at: at, service: service, id: id, health: health})
}

// NewView returns a view over the registry. Call Run to fill it.
func NewView(opts Options) *View {
	opts.setDefaults()
	v := &View{
		opts:     opts,
		store:    NewStore(opts.Client, opts.Keys),
		log:      opts.Logger,
		snaps:    map[string]*Service{},
		services: map[string]*serviceState{},
		warned:   map[string]string{},
	}
	// Counting Redis calls adds a hook to the client; changes are counted
	// by cause as they are published.
	v.stats = newStats(v)
	v.opts.OnChange = v.stats.changed(v.opts.OnChange)
	return v
}

// Synced reports whether the view reflects Redis: the last full sync
// succeeded and Redis has answered since. While false, a name the view does
// not know may exist.
func (v *View) Synced() bool { return v.synced.Load() }

// Service returns the current snapshot of a service.
func (v *View) Service(name string) (*Service, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	s, ok := v.snaps[name]
	return s, ok
}

// Services returns the names of every known service, sorted.
func (v *View) Services() []string {
	v.mu.RLock()
	names := make([]string, 0, len(v.snaps))
	for n := range v.snaps {
		names = append(names, n)
	}
	v.mu.RUnlock()
	slices.Sort(names)
	return names
}

// apply replaces the entries of one member from what Redis returned.
// readAt is when the reply arrived, so TTL deadlines are never early by more
// than a round trip.
func (v *View) apply(service string, st *serviceState, e Entry, readAt time.Time) {
	es := &entryState{inst: &Instance{Service: service, ID: e.ID}, private: true}
	old := st.entries[e.ID]
	if old != nil {
		es.lease, es.armed, es.healthArmed = old.lease, old.armed, old.healthArmed
	}
	key := v.opts.Keys.Instance(service, e.ID)
	switch {
	case e.WrongType:
		es.bad = "instance key is not a string"
	case e.Data != nil:
		inst, err := DecodeInstance(service, e.ID, e.Data)
		switch {
		case err != nil:
			es.bad = err.Error()
		case old != nil && old.present && old.inst.sameDocument(&inst):
			// Unchanged but for its heartbeat: keep the instance the
			// published snapshot shares (or a copy of it with the new
			// heartbeat time, which still shares its strings and metadata
			// map), so a re-read does not hold the registry twice.
			es.inst, es.present, es.private = old.inst, true, old.private
			if !old.inst.LastHeartbeat.Equal(inst.LastHeartbeat) {
				es.update(func(in *Instance) { in.LastHeartbeat = inst.LastHeartbeat })
			}
		default:
			st.share(&inst)
			es.inst, es.present, es.private = &inst, true, true
		}
	}
	v.warnOnce(key, es.bad)
	if es.present && e.TTL > 0 {
		at := readAt.Add(e.TTL)
		if old != nil && !old.expires.IsZero() && at.Sub(old.expires).Abs() < expirySlack {
			// The same deadline, read again: keep it, and the item queued
			// for it, rather than queue one a few milliseconds off.
			at = old.expires
		}
		v.setExpires(es, at, readAt)
		es.lease = max(es.lease, ceilSecond(e.TTL))
		v.arm(service, e.ID, es, false)
	} else {
		es.setLeaseEnds(time.Time{}) // no deadline, no lease to end
	}
	// What was read is the health: none (or a malformed one) is unknown.
	var health Health
	if e.HealthData != nil {
		h, err := DecodeHealth(e.HealthData)
		hkey := v.opts.Keys.Health(service, e.ID)
		if err != nil {
			v.warnOnce(hkey, err.Error())
		} else {
			v.warnOnce(hkey, "")
			health = h
		}
		if e.HealthTTL > 0 {
			es.healthExpires = readAt.Add(e.HealthTTL)
			v.arm(service, e.ID, es, true)
		}
	}
	es.setHealth(health)
	st.entries[e.ID] = es
}

// alarm is when the instance key next needs attention: LeaseWarning before
// its deadline (to report LeaseEnds), then at the deadline.
func (v *View) alarm(es *entryState) time.Time {
	if es.expires.IsZero() || v.opts.LeaseWarning <= 0 || es.warned {
		return es.expires
	}
	return es.expires.Add(-v.opts.LeaseWarning)
}

// setExpires moves the instance key's deadline, renewing a reported
// LeaseEnds when the new deadline is far enough; it reports whether the
// snapshot changed.
func (v *View) setExpires(es *entryState, at, now time.Time) bool {
	es.expires = at
	if v.opts.LeaseWarning > 0 && !at.IsZero() && at.Sub(now) <= v.opts.LeaseWarning {
		changed := !es.warned
		es.warned = true
		es.setLeaseEnds(at)
		return changed
	}
	changed := es.warned
	es.warned = false
	es.setLeaseEnds(time.Time{})
	return changed
}

// PanicCount is how many times a service entered panic mode.
func (v *View) PanicCount() uint64 { return v.panics.Load() }

// expirySlack is how far apart two readings of one key's deadline may be
// and still be the same deadline (they differ by the round trip of the
// read). An early deadline only costs a PTTL check.
const expirySlack = 250 * time.Millisecond

// ceilSecond rounds d up to whole seconds: writers set TTLs in seconds
// (SETEX), and a lease guessed short only costs an early TTL check.
func ceilSecond(d time.Duration) time.Duration {
	return (d + time.Second - 1).Truncate(time.Second)
}

// warnOnce logs why key is not served, once per distinct reason.
func (v *View) warnOnce(key, reason string) {
	if reason == "" {
		delete(v.warned, key)
		return
	}
	if v.warned[key] == reason {
		return
	}
	v.warned[key] = reason
	v.stats.skip(key, reason)
	v.log.Warn().Str("key", key).Str("reason", reason).Msg("skipping malformed registry entry")
}

// publish rebuilds the snapshot of service and reports it when it answers
// differently from the last one. A service with no set members is gone.
func (v *View) publish(service string) {
	st := v.services[service]
	if st == nil || len(st.entries) == 0 {
		delete(v.services, service)
		if v.hasSnap(service) { // report only what was reported before
			v.mu.Lock()
			delete(v.snaps, service)
			v.mu.Unlock()
			v.opts.OnChange(service, nil)
		}
		return
	}
	snap := &Service{Name: service}
	for _, es := range st.entries {
		if es.present {
			es.private = false
			snap.Instances = append(snap.Instances, es.inst)
		}
	}
	slices.SortFunc(snap.Instances, func(a, b *Instance) int { return cmp.Compare(a.ID, b.ID) })
	healthy := 0
	for _, in := range snap.Instances {
		if in.Health.Status == StatusHealthy {
			healthy++
		}
		if v.opts.Mode.Serves(in.Health.Status) {
			snap.Serving = append(snap.Serving, in)
		}
	}
	if len(snap.Serving) == len(snap.Instances) {
		snap.Serving = snap.Instances // every one served: one copy, not two
	}
	if t := v.opts.PanicThreshold; t > 0 && len(snap.Instances) > 0 && float64(healthy) < t*float64(len(snap.Instances)) {
		snap.Panic, snap.Serving = true, snap.Instances
	}
	wasPanic := st.snap != nil && st.snap.Panic
	if snap.Panic != wasPanic {
		ev := v.log.Warn()
		if snap.Panic {
			v.panics.Add(1)
		} else {
			ev = v.log.Info()
		}
		ev.Str("service", service).Bool("panic", snap.Panic).Int("healthy", healthy).
			Int("live", len(snap.Instances)).Float64("threshold", v.opts.PanicThreshold).
			Msg("panic mode: too few healthy instances, serving every live one")
	}
	if st.snap != nil && sameService(st.snap, snap) {
		return
	}
	st.snap = snap
	v.mu.Lock()
	v.snaps[service] = snap
	v.mu.Unlock()
	v.opts.OnChange(service, snap)
}

func (v *View) hasSnap(service string) bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	_, ok := v.snaps[service]
	return ok
}

func sameService(a, b *Service) bool {
	if len(a.Instances) != len(b.Instances) || len(a.Serving) != len(b.Serving) || a.Panic != b.Panic {
		return false
	}
	for i := range a.Instances {
		if !a.Instances[i].sameServing(b.Instances[i]) {
			return false
		}
	}
	return true
}

// ctx returns a context bounded by the configured Redis timeout.
func (v *View) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, v.opts.Timeout)
}
