package registry

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis Cluster delivers keyspace notifications only on the node that holds
// the key, while PUBLISH reaches every node. So in Cluster mode the view
// subscribes to the registry's event channels once, through the cluster
// client, and to keyspace notifications on every master, following the
// topology: masters are listed again on every full re-read, and a master
// that joined gets a subscription, one that left loses it; and once a
// second (with the ping), where a change of masters, or masters the last
// re-read did not scan (its view of the topology lagged a failover),
// triggers that re-read.

// nodeMsg is a message from one master's keyspace subscription.
type nodeMsg struct {
	node string
	msg  any
}

// nodeSub is the keyspace subscription on one master.
type nodeSub struct {
	ps         *redis.PubSub
	subscribed int // complete (re)subscriptions seen
}

// nodeSubs are the per-master subscriptions of one Run, with the goroutines
// that forward their messages into merged.
type nodeSubs struct {
	cluster  *redis.ClusterClient
	patterns []string
	merged   chan nodeMsg
	subs     map[string]*nodeSub
	// scanned are the masters the last full read listed services on. The
	// client's topology can lag a failover, so a read may scan fewer
	// masters than are subscribed: their services were not read.
	scanned map[string]bool
	wg      sync.WaitGroup
}

func newNodeSubs(cluster *redis.ClusterClient, patterns []string) *nodeSubs {
	return &nodeSubs{cluster: cluster, patterns: patterns, merged: make(chan nodeMsg, 1024), subs: map[string]*nodeSub{}}
}

// sync subscribes on masters that have none and drops the subscriptions of
// nodes that are no longer masters. It reports whether a new subscription
// was made (whose events the caller's full re-read covers).
func (n *nodeSubs) sync(ctx context.Context) error {
	masters, err := n.masters(ctx)
	if err != nil {
		return err
	}
	for addr, s := range n.subs {
		if masters[addr] == nil {
			s.ps.Close() // its forwarder ends when the channel closes
			delete(n.subs, addr)
		}
	}
	for addr, node := range masters {
		if n.subs[addr] != nil {
			continue
		}
		// Subscribe with a context of the Run, not of this call: the
		// subscription outlives it.
		ps := node.PSubscribe(context.WithoutCancel(ctx), n.patterns...)
		n.subs[addr] = &nodeSub{ps: ps}
		ch := ps.ChannelWithSubscriptions(redis.WithChannelSize(10000), redis.WithChannelHealthCheckInterval(time.Second))
		n.wg.Add(1)
		go n.forward(ctx, addr, ch)
	}
	return nil
}

// masters lists the cluster's masters now (ForEachMaster reloads the
// topology first).
func (n *nodeSubs) masters(ctx context.Context) (map[string]*redis.Client, error) {
	masters := map[string]*redis.Client{}
	var mu sync.Mutex
	err := n.cluster.ForEachMaster(ctx, func(_ context.Context, node *redis.Client) error {
		mu.Lock()
		masters[node.Options().Addr] = node
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list cluster masters: %w", err)
	}
	return masters, nil
}

// changed reports whether the masters are no longer the subscribed ones,
// or not the ones the last full read scanned.
func (n *nodeSubs) changed(ctx context.Context) (bool, error) {
	masters, err := n.masters(ctx)
	if err != nil {
		return false, err
	}
	if len(masters) != len(n.subs) || (n.scanned != nil && len(masters) != len(n.scanned)) {
		return true, nil
	}
	for addr := range masters {
		if n.subs[addr] == nil || (n.scanned != nil && !n.scanned[addr]) {
			return true, nil
		}
	}
	return false, nil
}

// followTopology re-reads everything when the masters changed (a replica
// was promoted after its master failed, a master was added or removed):
// the new master has neither a keyspace subscription nor notifications
// turned on, and nothing else may tell, since a dead master's subscription
// just keeps reconnecting and pings can go to live nodes only. The re-read
// subscribes on the new masters and turns their notifications on first.
func (w *watcher) followTopology(ctx context.Context, retry *time.Timer) {
	if w.nodes == nil {
		return
	}
	cctx, cancel := w.v.ctx(ctx)
	defer cancel()
	changed, err := w.nodes.changed(cctx)
	switch {
	case err != nil:
		if ctx.Err() == nil {
			w.markDirty(retry, err)
		}
	case changed:
		w.v.log.Info().Msg("cluster masters changed: subscribing on the new ones and re-reading the registry")
		w.resync(ctx, retry)
	}
}

// forward passes one master's messages on until its subscription is closed
// or the Run ends.
func (n *nodeSubs) forward(ctx context.Context, addr string, ch <-chan any) {
	defer n.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			select {
			case n.merged <- nodeMsg{addr, m}:
			case <-ctx.Done():
				return
			}
		}
	}
}

// close ends every subscription and waits for the forwarders.
func (n *nodeSubs) close() {
	for _, s := range n.subs {
		s.ps.Close()
	}
	n.wg.Wait()
}

// enableOnMasters turns keyspace notifications on on every master.
func enableOnMasters(ctx context.Context, c *redis.ClusterClient) error {
	return c.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		if err := enableKeyspaceEvents(ctx, node); err != nil {
			return fmt.Errorf("master %s: %w", node.Options().Addr, err)
		}
		return nil
	})
}
