package registry

import (
	"context"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Outages: what the view does when Redis is away or comes back empty.
//
//   - While Redis does not answer, every snapshot stays (stale, not wrong)
//     for up to MaxStale; after that the view empties, so its consumer stops
//     answering from data that old.
//   - When Redis comes back as a new process (its run_id changed) and a
//     service it had is missing, the data may have been lost rather than the
//     service deregistered: the view holds the service's last snapshot until
//     its writers register it again (the reference client re-registers when
//     a heartbeat finds its key gone), for up to MaxStale. Deregistrations
//     seen as events are never held.

// StaleFor is how long the view has been out of sync with Redis (0 while it
// is in sync or has never been).
func (v *View) StaleFor() time.Duration {
	since := v.staleSince.Load()
	if since == 0 {
		return 0
	}
	return v.opts.Now().Sub(time.Unix(0, since))
}

// EverSynced reports whether a full read of the registry ever succeeded.
func (v *View) EverSynced() bool { return v.everSynced.Load() }

// markStale records that the view just went out of sync.
func (v *View) markStale() {
	v.staleSince.CompareAndSwap(0, v.opts.Now().UnixNano())
}

// markSynced records a successful full read.
func (v *View) markSynced() {
	v.staleSince.Store(0)
	v.everSynced.Store(true)
	v.synced.Store(true)
}

// maxStale is the configured bound, or 0 for "forever".
func (v *View) maxStale() time.Duration {
	if v.opts.MaxStale < 0 {
		return 0
	}
	return v.opts.MaxStale
}

// dropStale empties the view once it has been out of sync longer than
// MaxStale, and releases held services older than that.
func (w *watcher) dropStale() {
	v, limit := w.v, w.v.maxStale()
	if limit == 0 {
		return
	}
	now := v.opts.Now()
	if stale := v.StaleFor(); stale > limit && len(v.services) > 0 {
		v.log.Warn().Dur("stale_for", stale).Dur("max_stale", limit).
			Msg("registry unreachable for longer than cache.max_stale: no longer answering from the last view")
		for name := range v.services {
			delete(v.services, name)
			v.publish(name)
		}
		clear(w.held)
	}
	for name, since := range w.held {
		if now.Sub(since) > limit {
			delete(w.held, name)
			delete(v.services, name)
			v.publish(name)
		}
	}
}

// restarted reports whether Redis is a different process than at the last
// full read (its run_id changed): its data may have been lost.
func (w *watcher) restarted(ctx context.Context) bool {
	// A Sentinel failover changes run_id too (the Sentinel client is a
	// *redis.Client): holding is the safe side there as well, since
	// replication is asynchronous and a promoted replica may lack the last
	// writes. Cluster: run_id is per node and not tracked.
	c, ok := w.v.opts.Client.(*redis.Client)
	if !ok {
		return false
	}
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return false
	}
	var id string
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "run_id:"); ok {
			id = v
		}
	}
	changed := w.runID != "" && id != w.runID
	w.runID = id
	return changed
}

// hold keeps a service missing from a full read, when Redis restarted or
// the service is held already; it reports whether it did.
func (w *watcher) hold(name string, restarted bool) bool {
	if _, held := w.held[name]; !restarted && !held {
		return false
	}
	if _, held := w.held[name]; !held {
		w.held[name] = w.v.opts.Now()
		w.v.log.Warn().Str("service", name).
			Msg("service missing after Redis restarted: serving its last view until its writers register again")
	}
	// Its keys are gone with the data: its deadlines mean nothing now.
	if st := w.v.services[name]; st != nil {
		for _, es := range st.entries {
			es.armed, es.healthArmed = time.Time{}, time.Time{}
		}
	}
	return true
}
