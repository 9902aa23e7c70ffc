package registry

import (
	"context"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinel failover. A go-redis Sentinel client (NewFailoverClient) sends
// its commands to the new master as soon as the sentinels announce it, but
// a subscription it made stays connected to the old master: after a forced
// failover the old master lives on, demoted only later, and neither events
// nor keyspace notifications of the new master reach the view. So the view
// watches which server its commands reach (run_id, once a second with the
// ping), and subscribes again when that server changed; the subscription
// message that follows triggers the full re-read, which also turns the new
// master's keyspace notifications on.

// subscribe (re)makes the view's subscription through the client, closing
// the previous one.
func (w *watcher) subscribe(ctx context.Context) {
	if w.ps != nil {
		_ = w.ps.Close()
	}
	w.ps = w.v.opts.Client.PSubscribe(ctx, w.patternList...)
	w.msgs = w.ps.ChannelWithSubscriptions(
		redis.WithChannelSize(10000),
		// A dead subscription is found by its pings, and go-redis then
		// reconnects and resubscribes; the *Subscription messages that follow
		// tell us to re-read what we may have missed.
		redis.WithChannelHealthCheckInterval(time.Second),
	)
}

// followServer subscribes again when the server behind a (non-Cluster)
// client is no longer the one of the last full read. Standalone, that is a
// restart, whose dropped connections resubscribe anyway: one more
// subscription then, no harm.
func (w *watcher) followServer(ctx context.Context) {
	c, ok := w.v.opts.Client.(*redis.Client)
	if !ok || w.runID == "" {
		return
	}
	cctx, cancel := w.v.ctx(ctx)
	defer cancel()
	id, err := runID(cctx, c)
	if err != nil || id == "" || id == w.runID || id == w.resubscribedFor {
		return // the ping said whether Redis answers; this only looks for a new server
	}
	w.resubscribedFor = id
	w.v.log.Info().Msg("Redis behind the client changed (Sentinel failover): subscribing on the new master and re-reading the registry")
	w.subscribe(ctx)
}

// runID is the run_id of the server c's commands reach.
func runID(ctx context.Context, c *redis.Client) (string, error) {
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return "", err
	}
	var id string
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "run_id:"); ok {
			id = v
		}
	}
	return id, nil
}
