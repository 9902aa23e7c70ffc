package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Run fills the view and keeps it current until ctx ends. It subscribes to
// the registry's event channels and to keyspace notifications, re-reads
// everything after every (re)subscription and every MaxAge, and removes
// instances whose TTL ran out without waiting for Redis's lazy "expired"
// event. Redis outages never empty the view: it keeps the last snapshots and
// reports Synced() == false until a full re-read succeeds.
func (v *View) Run(ctx context.Context) error {
	ctx = context.WithValue(ctx, statsKey{}, v.stats) // its Redis calls are counted (stats.go)
	keyspace := fmt.Sprintf("__keyspace@%d__:", v.opts.DB)
	ksPatterns := []string{keyspace + v.opts.Keys.SetPattern(), keyspace + v.opts.Keys.HealthPattern()}
	patterns := []string{v.opts.Keys.EventsPattern()}
	var nodes *nodeSubs
	if cluster, ok := v.opts.Client.(*redis.ClusterClient); ok {
		// Keyspace notifications are per node: see cluster.go.
		nodes = newNodeSubs(cluster, ksPatterns)
		defer nodes.close()
	} else {
		patterns = append(patterns, ksPatterns...)
	}
	w := &watcher{v: v, keyspacePrefix: keyspace, patterns: len(patterns), patternList: patterns, nodes: nodes, held: map[string]time.Time{}}
	w.subscribe(ctx) // see failover.go
	defer func() { _ = w.ps.Close() }()
	return w.loop(ctx)
}

// watcher is the state of one Run: everything here is touched only by the
// Run goroutine.
type watcher struct {
	v              *View
	keyspacePrefix string
	patterns       int
	patternList    []string
	// ps is the subscription, msgs its messages; both are replaced when
	// the server behind the client changes (failover.go).
	ps   *redis.PubSub
	msgs <-chan any
	// resubscribedFor is the run_id that made the last such replacement.
	resubscribedFor string
	// polling is set while keyspace notifications are unavailable.
	polling    bool
	pollWarned bool
	// failures counts consecutive failed full syncs, for backoff.
	failures int
	// subscribed counts complete (re)subscriptions seen.
	subscribed int
	// nodes are the per-master keyspace subscriptions in Cluster mode.
	nodes *nodeSubs
	// runID is Redis's run_id at the last full read; held are the services
	// kept after Redis came back without them (see outage.go).
	runID string
	held  map[string]time.Time
}

func (w *watcher) loop(ctx context.Context) error {
	v := w.v
	expiryTimer := time.NewTimer(time.Hour)
	defer expiryTimer.Stop()
	retry := time.NewTimer(0) // the first full sync runs at once
	defer retry.Stop()
	maxAge := time.NewTicker(v.opts.MaxAge)
	defer maxAge.Stop()
	poll := time.NewTicker(v.opts.PollInterval)
	defer poll.Stop()
	ping := time.NewTicker(time.Second)
	defer ping.Stop()
	var nodeMsgs <-chan nodeMsg // nil (never ready) unless Cluster
	if w.nodes != nil {
		nodeMsgs = w.nodes.merged
	}

	for {
		w.armExpiry(expiryTimer)
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-w.msgs:
			if !ok {
				return nil
			}
			w.handle(ctx, m, retry)
		case nm := <-nodeMsgs:
			w.handleNode(ctx, nm, retry)
		case <-expiryTimer.C:
			w.expire(ctx)
		case <-retry.C:
			w.resync(ctx, retry)
		case <-maxAge.C:
			w.resync(ctx, retry)
		case <-poll.C:
			if w.polling {
				w.resync(ctx, retry)
			}
		case <-ping.C:
			w.ping(ctx, retry)
		}
	}
}

// armExpiry points the timer at the earliest TTL deadline.
func (w *watcher) armExpiry(t *time.Timer) {
	at, ok := w.v.expiry.next()
	d := time.Hour
	if ok {
		d = max(at.Sub(w.v.opts.Now()), 0)
	}
	t.Reset(d)
}

// markDirty records that the view may have missed a change: it is out of
// sync until the next full re-read, which is scheduled with backoff.
func (w *watcher) markDirty(retry *time.Timer, err error) {
	v := w.v
	v.stats.subscribed.Store(false) // until the subscription shows it is alive
	if v.synced.Swap(false) {
		v.markStale()
		v.log.Warn().Err(err).Msg("registry unreachable: serving the last view until Redis answers")
	}
	w.failures++
	// Capped exponential backoff with jitter: 100ms, 200ms, ... 5s.
	d := min(100*time.Millisecond<<min(w.failures-1, 6), 5*time.Second)
	d = d/2 + rand.N(d/2+1)
	retry.Reset(d)
}

func (w *watcher) ping(ctx context.Context, retry *time.Timer) {
	w.v.stats.begin(causeMaxStale, time.Time{})
	w.dropStale()
	if w.failures > 0 {
		return // a re-read is already scheduled
	}
	cctx, cancel := w.v.ctx(ctx)
	defer cancel()
	if err := w.v.store.Ping(cctx); err != nil && ctx.Err() == nil {
		w.markDirty(retry, fmt.Errorf("ping: %w", err))
		return
	}
	w.followTopology(ctx, retry) // Cluster: see cluster.go
	w.followServer(ctx)          // Sentinel: see failover.go
}

// resync re-reads every service and replaces what changed.
func (w *watcher) resync(ctx context.Context, retry *time.Timer) {
	v := w.v
	v.stats.beginResync(w.polling)
	if v.opts.KeyspaceEvents {
		w.ensureKeyspaceEvents(ctx)
	} else {
		w.polling = true
	}
	if w.nodes != nil {
		if err := w.nodes.sync(ctx); err != nil && ctx.Err() == nil {
			v.stats.resynced(ctx, err)
			w.markDirty(retry, err)
			return
		}
	}
	start := v.opts.Now()
	n, err := w.readAll(ctx)
	v.stats.resynced(ctx, err)
	if err != nil {
		if ctx.Err() == nil {
			w.markDirty(retry, err)
		}
		return
	}
	if w.failures > 0 || !v.synced.Load() {
		v.log.Info().Int("services", n).Dur("took", v.opts.Now().Sub(start)).Msg("registry in sync")
	}
	w.failures = 0
	retry.Stop()
	v.markSynced()
}

func (w *watcher) readAll(ctx context.Context) (int, error) {
	v := w.v
	// A full read of a large registry takes longer than one command.
	cctx, cancel := context.WithTimeout(ctx, 10*v.opts.Timeout)
	defer cancel()
	names, scanned, err := v.store.scanServices(cctx)
	if err != nil {
		return 0, err
	}
	if w.nodes != nil {
		w.nodes.scanned = scanned
	}
	// Asked before the services are applied, not after: once the last one
	// is published, the view is marked in sync with nothing left to ask
	// Redis in between, so a name that answers comes with NXDOMAIN for the
	// names that do not exist (rather than SERVFAIL for a round trip).
	restarted := w.restarted(cctx)
	// Read and apply a chunk of services at a time, so a large registry is
	// never held in memory twice (the view plus a whole raw copy). The next
	// chunk is read while this one is applied: Redis and the decoding work
	// at the same time.
	seen := make(map[string]bool, len(names))
	var next <-chan chunkRead
	if len(names) > 0 {
		next = w.readChunk(cctx, names, 0)
	}
	for start := 0; start < len(names); start += resyncChunk {
		chunk := <-next
		if chunk.err != nil {
			return 0, chunk.err
		}
		if start+resyncChunk < len(names) {
			next = w.readChunk(cctx, names, start+resyncChunk)
		}
		all, skipped, readAt := chunk.all, chunk.skipped, chunk.readAt
		for name, err := range skipped {
			v.warnOnce(v.opts.Keys.Set(name), err.Error())
		}
		for name, entries := range all {
			seen[name] = true
			delete(w.held, name)
			st := &serviceState{entries: make(map[string]*entryState, len(entries))}
			if old := v.services[name]; old != nil {
				st.snap = old.snap
				// Keep what heartbeats taught us about the lease, and which
				// expiry items are queued.
				for _, e := range entries {
					if oe, ok := old.entries[e.ID]; ok {
						st.entries[e.ID] = oe // apply reads it, then replaces it
					}
				}
			}
			for _, e := range entries {
				v.apply(name, st, e, readAt)
			}
			v.services[name] = st
			v.publish(name)
		}
	}
	for name := range v.services {
		if !seen[name] && !w.hold(name, restarted) {
			delete(v.services, name)
			v.publish(name)
		}
	}
	return len(seen), nil
}

// resyncChunk is how many services a full read reads and applies at once.
const resyncChunk = 500

// chunkRead is what a full read read of one chunk of services.
type chunkRead struct {
	all     map[string][]Entry
	skipped map[string]error
	readAt  time.Time
	err     error
}

// readChunk reads the chunk of names that begins at start in a goroutine
// of its own, which ends when the read does (ctx bounds it): the channel
// has room for its one result, whether or not anyone takes it.
func (w *watcher) readChunk(ctx context.Context, names []string, start int) <-chan chunkRead {
	out := make(chan chunkRead, 1)
	go func() {
		all, skipped, err := w.v.store.Snapshot(ctx, names[start:min(start+resyncChunk, len(names))])
		out <- chunkRead{all: all, skipped: skipped, readAt: w.v.opts.Now(), err: err}
	}()
	return out
}

// ensureKeyspaceEvents turns on the keyspace notifications the view needs
// (K: keyspace channel; g: del/expire; $: string set; s: set commands;
// x: expired). Redis forgets them on restart, so this runs on every resync.
func (w *watcher) ensureKeyspaceEvents(ctx context.Context) {
	v := w.v
	cctx, cancel := v.ctx(ctx)
	defer cancel()
	var err error
	if w.nodes != nil {
		err = enableOnMasters(cctx, w.nodes.cluster)
	} else {
		err = enableKeyspaceEvents(cctx, v.opts.Client)
	}
	if err == nil {
		if w.polling {
			v.log.Info().Msg("keyspace notifications on: push invalidation restored")
		}
		w.polling, w.pollWarned = false, false
		return
	}
	w.polling = true
	if !w.pollWarned && ctx.Err() == nil {
		w.pollWarned = true
		v.log.Warn().Err(err).Dur("poll_interval", v.opts.PollInterval).
			Msg("cannot enable Redis keyspace notifications (notify-keyspace-events); health changes and expiries are found by polling")
	}
}

func enableKeyspaceEvents(ctx context.Context, c redis.UniversalClient) error {
	cur, err := c.ConfigGet(ctx, "notify-keyspace-events").Result()
	if err != nil {
		return fmt.Errorf("read notify-keyspace-events: %w", err)
	}
	flags := cur["notify-keyspace-events"]
	want := flags
	if !strings.Contains(want, "K") {
		want += "K"
	}
	for _, f := range "g$sx" {
		if !strings.ContainsRune(want, f) && !strings.ContainsRune(want, 'A') {
			want += string(f)
		}
	}
	if want == flags {
		return nil
	}
	if err := c.ConfigSet(ctx, "notify-keyspace-events", want).Err(); err != nil {
		return fmt.Errorf("set notify-keyspace-events %q: %w", want, err)
	}
	return nil
}

// handle applies one message from the subscription.
func (w *watcher) handle(ctx context.Context, m any, retry *time.Timer) {
	v := w.v
	switch m := m.(type) {
	case *redis.Subscription:
		if m.Count < w.patterns {
			return
		}
		w.subscribed++
		v.stats.resubscribed()
		// The first subscription was made before the first full read; every
		// later one follows a reconnect, and events may have been lost.
		if w.subscribed > 1 || !v.synced.Load() {
			w.resync(ctx, retry)
		}
	case *redis.Message:
		var err error
		if key, ok := strings.CutPrefix(m.Channel, w.keyspacePrefix); ok {
			err = w.keyspaceEvent(ctx, key, m.Payload)
		} else if svc, ok := v.opts.Keys.ServiceOfChannel(m.Channel); ok {
			err = w.registryEvent(ctx, svc, m.Payload)
		}
		if err != nil && ctx.Err() == nil {
			w.markDirty(retry, err)
		}
	}
}

// handleNode applies a message from one master's keyspace subscription
// (Cluster mode). A resubscription after the first means that master's
// events may have been lost.
func (w *watcher) handleNode(ctx context.Context, nm nodeMsg, retry *time.Timer) {
	switch m := nm.msg.(type) {
	case *redis.Subscription:
		s := w.nodes.subs[nm.node]
		if s == nil || m.Count < len(w.nodes.patterns) {
			return
		}
		s.subscribed++
		if s.subscribed > 1 {
			w.resync(ctx, retry)
		}
	case *redis.Message:
		if key, ok := strings.CutPrefix(m.Channel, w.keyspacePrefix); ok {
			if err := w.keyspaceEvent(ctx, key, m.Payload); err != nil && ctx.Err() == nil {
				w.markDirty(retry, err)
			}
		}
	}
}

// registryEvent handles a message on services:<name>:events.
func (w *watcher) registryEvent(ctx context.Context, service, payload string) error {
	w.v.stats.event(causeRegistryEvent)
	var ev struct {
		Event      string `json:"event"`
		InstanceID string `json:"instance_id"`
	}
	if _, held := w.held[service]; held {
		// Its writers are back after Redis lost the data: read it afresh,
		// dropping the instances that were only held.
		delete(w.held, service)
		return w.refreshMembers(ctx, service)
	}
	if err := json.Unmarshal([]byte(payload), &ev); err != nil || ev.InstanceID == "" {
		return w.refreshMembers(ctx, service) // unknown shape: re-read the set
	}
	st := w.v.services[service]
	if w.nodes != nil && (ev.Event == "registered" || ev.Event == "deregistered") {
		return w.memberEvent(ctx, service, ev.InstanceID)
	}
	switch ev.Event {
	case "registered":
		if st != nil {
			if es, ok := st.entries[ev.InstanceID]; ok && es.present {
				return nil // already seen through keyspace notifications
			}
		}
		return w.readEntries(ctx, service, []string{ev.InstanceID})
	case "deregistered":
		if st != nil {
			delete(st.entries, ev.InstanceID)
			w.v.publish(service)
		}
		return nil
	case "health_changed":
		return w.readHealth(ctx, service, ev.InstanceID)
	}
	return w.refreshMembers(ctx, service)
}

// memberEvent handles a registered or deregistered event in Cluster mode.
// There the keyspace notifications of the set come from the set's master,
// on another connection than the event, in no order with it: a
// "registered" taken off the subscription after the SREM that followed it
// (seen as a keyspace notification already) would bring the instance back,
// a late "deregistered" would drop one registered again since. So the
// event only says which id to look at; the set says what holds now.
func (w *watcher) memberEvent(ctx context.Context, service, id string) error {
	cctx, cancel := w.v.ctx(ctx)
	member, err := w.v.store.IsMember(cctx, service, id)
	cancel()
	if errors.Is(err, ErrMalformed) {
		return w.refreshMembers(ctx, service) // logs the set once
	}
	if err != nil {
		return err
	}
	if !member {
		if st := w.v.services[service]; st != nil && st.entries[id] != nil {
			delete(st.entries, id)
			w.v.publish(service)
		}
		return nil
	}
	if st := w.v.services[service]; st != nil {
		if es, ok := st.entries[id]; ok && es.present {
			return nil // seen through keyspace notifications already
		}
	}
	return w.readEntries(ctx, service, []string{id})
}

// keyspaceEvent handles a keyspace notification: key changed by op.
func (w *watcher) keyspaceEvent(ctx context.Context, key, op string) error {
	v := w.v
	v.stats.event(causeKeyspaceEvent)
	kind, service, id := v.opts.Keys.Parse(key)
	switch kind {
	case KindSet:
		delete(w.held, service) // written again: no longer held
		return w.refreshMembers(ctx, service)
	case KindInstance:
		st := v.services[service]
		var es *entryState
		if st != nil {
			es = st.entries[id]
		}
		switch op {
		case "set", "expire":
			if es == nil {
				return nil // not (yet) a member: the SADD that follows reads it
			}
			if es.present && es.lease > 0 {
				// A heartbeat: same document, new TTL. No read, no change.
				now := v.opts.Now()
				es.lastSeen = now
				changed := v.setExpires(es, now.Add(es.lease), now)
				v.arm(service, id, es, false) // queues nothing while an earlier item is armed
				if changed {
					v.publish(service) // a late heartbeat: the lease is no longer ending
				}
				return nil
			}
			return w.readEntries(ctx, service, []string{id})
		case "del", "expired", "evicted", "rename_from":
			if es != nil && es.present {
				es.present = false
				v.publish(service)
			}
			return nil
		}
		return w.readEntries(ctx, service, []string{id})
	case KindHealth:
		st := v.services[service]
		if st == nil || st.entries[id] == nil {
			return nil // health of an instance we do not serve
		}
		if op == "del" || op == "expired" || op == "evicted" {
			w.setHealth(service, id, Health{}, time.Time{})
			return nil
		}
		return w.readHealth(ctx, service, id)
	}
	return nil
}

// refreshMembers re-reads the set of service and reads only the members that
// are new: at most two round trips.
func (w *watcher) refreshMembers(ctx context.Context, service string) error {
	v := w.v
	cctx, cancel := v.ctx(ctx)
	defer cancel()
	ids, err := v.store.Members(cctx, service)
	if errors.Is(err, ErrMalformed) {
		v.warnOnce(v.opts.Keys.Set(service), err.Error())
		ids, err = nil, nil
	}
	if err != nil {
		return err
	}
	st := v.services[service]
	if st == nil {
		st = &serviceState{entries: map[string]*entryState{}}
		v.services[service] = st
	}
	member := make(map[string]bool, len(ids))
	var fresh []string
	for _, id := range ids {
		member[id] = true
		if _, ok := st.entries[id]; !ok {
			fresh = append(fresh, id)
		}
	}
	for id := range st.entries {
		if !member[id] {
			delete(st.entries, id)
		}
	}
	if len(fresh) == 0 {
		v.publish(service)
		return nil
	}
	return w.readEntries(ctx, service, fresh)
}

// readEntries reads the given members of service in one round trip.
func (w *watcher) readEntries(ctx context.Context, service string, ids []string) error {
	v := w.v
	cctx, cancel := v.ctx(ctx)
	defer cancel()
	entries, err := v.store.Entries(cctx, service, ids)
	if err != nil {
		return err
	}
	readAt := v.opts.Now()
	st := v.services[service]
	if st == nil {
		st = &serviceState{entries: map[string]*entryState{}}
		v.services[service] = st
	}
	for _, e := range entries {
		v.apply(service, st, e, readAt)
	}
	v.publish(service)
	return nil
}

func (w *watcher) readHealth(ctx context.Context, service, id string) error {
	v := w.v
	cctx, cancel := v.ctx(ctx)
	defer cancel()
	data, ttl, err := v.store.Health(cctx, service, id)
	if err != nil {
		return err
	}
	var h Health
	hkey := v.opts.Keys.Health(service, id)
	if data != nil {
		if h, err = DecodeHealth(data); err != nil {
			v.warnOnce(hkey, err.Error())
		} else {
			v.warnOnce(hkey, "")
		}
	}
	var expires time.Time
	if ttl > 0 {
		expires = v.opts.Now().Add(ttl)
	}
	w.setHealth(service, id, h, expires)
	return nil
}

func (w *watcher) setHealth(service, id string, h Health, expires time.Time) {
	v := w.v
	st := v.services[service]
	if st == nil {
		return
	}
	es := st.entries[id]
	if es == nil {
		return
	}
	es.setHealth(h)
	es.healthExpires = expires
	v.arm(service, id, es, true)
	v.publish(service)
}

// expire handles TTL deadlines that came due. Redis deletes expired keys
// lazily and its "expired" event can lag, so the view asks for the TTL of
// each due key (PTTL makes Redis expire it on access) instead of waiting.
// A heartbeat moves the deadline without a read, so this costs commands only
// when a key really runs out, or when a lease was guessed short.
func (w *watcher) expire(ctx context.Context) {
	v := w.v
	v.stats.begin(causeExpiry, time.Time{})
	now := v.opts.Now()
	var due []expiryItem
	warned := map[string]bool{}
	defer func() {
		for svc := range warned {
			v.publish(svc)
		}
	}()
	for _, it := range v.expiry.popDue(now) {
		es := w.entry(it.service, it.id)
		if es == nil {
			continue
		}
		deadline, armed := v.alarm(es), &es.armed
		if it.health {
			deadline, armed = es.healthExpires, &es.healthArmed
		}
		if !it.at.Equal(*armed) {
			continue // superseded by an earlier item
		}
		*armed = time.Time{}
		switch {
		case deadline.IsZero() || (!it.health && !es.present):
		case deadline.After(now):
			v.arm(it.service, it.id, es, it.health) // moved by a heartbeat: wait for it
		case !it.health && es.expires.After(now):
			// Lease warning: report the lease ending, then wait for the end.
			if v.setExpires(es, es.expires, now) {
				warned[it.service] = true
			}
			v.arm(it.service, it.id, es, false)
		default:
			due = append(due, it)
		}
	}
	if len(due) == 0 {
		return
	}
	keys := make([]string, len(due))
	for i, it := range due {
		if it.health {
			keys[i] = v.opts.Keys.Health(it.service, it.id)
		} else {
			keys[i] = v.opts.Keys.Instance(it.service, it.id)
		}
	}
	cctx, cancel := v.ctx(ctx)
	defer cancel()
	ttls, err := v.store.TTLs(cctx, keys)
	if err != nil {
		// Redis is away: keep serving what we have (stale, not wrong) and
		// look again shortly.
		for _, it := range due {
			it.at = now.Add(time.Second)
			w.setDeadline(it)
		}
		return
	}
	now = v.opts.Now()
	changed := map[string]bool{}
	for i, it := range due {
		es := w.entry(it.service, it.id)
		switch ttl := ttls[i]; {
		case ttl < 0: // gone
			if it.health {
				es.setHealth(Health{})
				es.healthExpires = time.Time{}
			} else {
				es.present, es.expires = false, time.Time{}
			}
			changed[it.service] = true
		case ttl == 0: // persisted: no deadline any more
			if it.health {
				es.healthExpires = time.Time{}
			} else if v.setExpires(es, time.Time{}, now) {
				changed[it.service] = true
			}
		default: // renewed by a write we did not see (or a lease guessed short)
			if !it.health && !es.lastSeen.IsZero() {
				es.lease = ceilSecond(now.Sub(es.lastSeen) + ttl)
			}
			it.at = now.Add(ttl)
			w.setDeadline(it)
		}
	}
	for svc := range changed {
		v.publish(svc)
	}
}

func (w *watcher) setDeadline(it expiryItem) {
	es := w.entry(it.service, it.id)
	if it.health {
		es.healthExpires = it.at
	} else if w.v.setExpires(es, it.at, w.v.opts.Now()) {
		defer w.v.publish(it.service)
	}
	w.v.arm(it.service, it.id, es, it.health)
}

func (w *watcher) entry(service, id string) *entryState {
	st := w.v.services[service]
	if st == nil {
		return nil
	}
	return st.entries[id]
}
