package redistest

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

const (
	// clusterNodeTimeout is --cluster-node-timeout: how long a master may be
	// unreachable before it is marked failing and its replica takes over.
	clusterNodeTimeout = 2 * time.Second
	// clusterReadyTimeout bounds waiting for a freshly created cluster, or for
	// a failover, to reach cluster_state:ok on every node.
	clusterReadyTimeout = 30 * time.Second
	// clusterCreateTimeout bounds `redis-cli --cluster create`, which waits
	// for the nodes to agree on the configuration by itself.
	clusterCreateTimeout = 60 * time.Second
	// clusterPollInterval is how often cluster state is re-read while waiting.
	clusterPollInterval = 20 * time.Millisecond
)

// Cluster is a Redis Cluster of redis-server child processes on loopback
// ports, owned by one test: masters with slots spread by redis-cli, and
// optionally one replica per master. Each node has its own working directory
// holding its cluster config file (nodes.conf). Every process is killed in
// t.Cleanup.
type Cluster struct {
	nodes []*Server

	mu      sync.Mutex
	killed  map[string]bool
	clients map[string]*redis.Client
}

// StartCluster starts a cluster of masters (at least 3, as redis-cli
// requires) without replicas, and waits until every node reports
// cluster_state:ok. It calls t.Fatal if redis-server or redis-cli is missing.
func StartCluster(t testing.TB, masters int) *Cluster {
	t.Helper()
	return StartClusterWithReplicas(t, masters, 0)
}

// StartClusterWithReplicas starts masters + masters*replicas nodes and lets
// `redis-cli --cluster create --cluster-replicas replicas` assign slots and
// replicas. It waits (at most 30 s, polling) until every node reports
// cluster_state:ok, knows every other node, and every replica's link to its
// master is up, so that a failover can promote it.
func StartClusterWithReplicas(t testing.TB, masters, replicas int) *Cluster {
	t.Helper()
	if masters < 3 {
		t.Fatalf("redistest: a Redis Cluster needs at least 3 masters, not %d", masters)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redistest: redis-cli (Debian package redis-tools, a dependency of redis-server) not found on PATH (%v); %s", err, installHint)
	}
	c := &Cluster{killed: map[string]bool{}, clients: map[string]*redis.Client{}}
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, cl := range c.clients {
			_ = cl.Close()
		}
	})
	total := masters * (1 + replicas)
	args := []string{"--cluster", "create"}
	for range total {
		// The config file name is relative to the node's own --dir, so each
		// node writes a file of its own.
		s := Start(t,
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.Itoa(int(clusterNodeTimeout/time.Millisecond)),
			// A replica's first sync starts at once, not after 5 s.
			"--repl-diskless-sync-delay", "0",
		)
		c.nodes = append(c.nodes, s)
		args = append(args, s.Addr)
	}
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")

	ctx, cancel := context.WithTimeout(context.Background(), clusterCreateTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redistest: redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	c.waitStable(t, masters, replicas)
	return c
}

// Addrs returns the host:port of every node, killed ones included, in start
// order: the seed list for redis.addrs.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.nodes))
	for i, s := range c.nodes {
		out[i] = s.Addr
	}
	return out
}

// Client returns a go-redis cluster client seeded with every node, closed in
// t.Cleanup.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	cc := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:                    c.Addrs(),
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// KillNode SIGKILLs the node at addr and waits for its process to exit.
func (c *Cluster) KillNode(t testing.TB, addr string) {
	t.Helper()
	s := c.node(t, addr)
	c.mu.Lock()
	c.killed[addr] = true
	c.mu.Unlock()
	s.Kill(t)
}

// Masters returns the addresses of the masters that serve slots, as a live
// node sees them, sorted.
func (c *Cluster) Masters(t testing.TB) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	for _, addr := range c.live() {
		nodes, err := c.client(addr).ClusterNodes(ctx).Result()
		if err != nil {
			continue
		}
		var masters []string
		for _, n := range parseClusterNodes(nodes) {
			if n.master && n.slots && !n.failed {
				masters = append(masters, n.addr)
			}
		}
		slices.Sort(masters)
		return masters
	}
	t.Fatalf("redistest: no live cluster node answers CLUSTER NODES")
	return nil
}

// MasterOf returns the address of the master serving key's slot, as a live
// node sees it.
func (c *Cluster) MasterOf(t testing.TB, key string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	for _, addr := range c.live() {
		cl := c.client(addr)
		slot, err := cl.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			continue
		}
		slots, err := cl.ClusterSlots(ctx).Result()
		if err != nil {
			continue
		}
		for _, s := range slots {
			if int64(s.Start) <= slot && slot <= int64(s.End) && len(s.Nodes) > 0 {
				return s.Nodes[0].Addr
			}
		}
	}
	t.Fatalf("redistest: no live cluster node knows the master of %q", key)
	return ""
}

// WaitOK waits until every live node reports cluster_state:ok with all
// 16384 slots served by live masters (after KillNode: once a replica has
// been promoted), and returns how long that took. It calls t.Fatal after
// 30 s.
func (c *Cluster) WaitOK(t testing.TB) time.Duration {
	t.Helper()
	start := time.Now()
	c.waitFor(t, "every live node reports cluster_state:ok with live masters", func(ctx context.Context) error {
		return c.checkOK(ctx)
	})
	return time.Since(start)
}

func (c *Cluster) checkOK(ctx context.Context) error {
	c.mu.Lock()
	killed := copyKilled(c.killed)
	c.mu.Unlock()
	for _, addr := range c.live() {
		cl := c.client(addr)
		info, err := cl.ClusterInfo(ctx).Result()
		if err != nil {
			return fmt.Errorf("%s: CLUSTER INFO: %w", addr, err)
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return fmt.Errorf("%s: cluster_state not ok", addr)
		}
		nodes, err := cl.ClusterNodes(ctx).Result()
		if err != nil {
			return fmt.Errorf("%s: CLUSTER NODES: %w", addr, err)
		}
		for _, n := range parseClusterNodes(nodes) {
			if n.master && n.slots && killed[n.addr] {
				return fmt.Errorf("%s: still sees killed %s serving slots", addr, n.addr)
			}
		}
	}
	return nil
}

// waitStable waits until a new cluster is fully formed.
func (c *Cluster) waitStable(t testing.TB, masters, replicas int) {
	t.Helper()
	total := masters * (1 + replicas)
	c.waitFor(t, "the new cluster is formed", func(ctx context.Context) error {
		if err := c.checkOK(ctx); err != nil {
			return err
		}
		for _, addr := range c.live() {
			cl := c.client(addr)
			text, err := cl.ClusterNodes(ctx).Result()
			if err != nil {
				return fmt.Errorf("%s: CLUSTER NODES: %w", addr, err)
			}
			nodes := parseClusterNodes(text)
			var m, r int
			for _, n := range nodes {
				switch {
				case n.handshake || n.failed:
					return fmt.Errorf("%s: node %s not settled", addr, n.addr)
				case n.master && n.slots:
					m++
				case !n.master:
					r++
				}
			}
			if len(nodes) != total || m != masters || r != masters*replicas {
				return fmt.Errorf("%s: knows %d nodes, %d masters, %d replicas", addr, len(nodes), m, r)
			}
			info, err := cl.Info(ctx, "replication").Result()
			if err != nil {
				return fmt.Errorf("%s: INFO replication: %w", addr, err)
			}
			if strings.Contains(info, "role:slave") && !strings.Contains(info, "master_link_status:up") {
				return fmt.Errorf("%s: replica link not up", addr)
			}
		}
		return nil
	})
}

// waitFor polls check until it returns nil, calling t.Fatal with its last
// error after clusterReadyTimeout.
func (c *Cluster) waitFor(t testing.TB, what string, check func(ctx context.Context) error) {
	t.Helper()
	pollUntil(t, "cluster: "+what, clusterReadyTimeout, check)
}

// pollUntil polls check (each call bounded by a second) until it returns
// nil, calling t.Fatal with its last error after timeout.
func pollUntil(t testing.TB, what string, timeout time.Duration, check func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	ticker := time.NewTicker(clusterPollInterval)
	defer ticker.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := check(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: %s: not within %v: %v", what, timeout, err)
		}
		<-ticker.C
	}
}

func (c *Cluster) node(t testing.TB, addr string) *Server {
	t.Helper()
	for _, s := range c.nodes {
		if s.Addr == addr {
			return s
		}
	}
	t.Fatalf("redistest: %s is not a node of this cluster (%v)", addr, c.Addrs())
	return nil
}

// live returns the addresses of the nodes not killed.
func (c *Cluster) live() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, s := range c.nodes {
		if !c.killed[s.Addr] {
			out = append(out, s.Addr)
		}
	}
	return out
}

// client returns the plain client of one node, made once.
func (c *Cluster) client(addr string) *redis.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	cl := c.clients[addr]
	if cl == nil {
		opts := clientOptions(addr)
		opts.MaxRetries = -1 // the poll loops are the retry
		cl = redis.NewClient(opts)
		c.clients[addr] = cl
	}
	return cl
}

func copyKilled(m map[string]bool) map[string]bool {
	out := make(map[string]bool, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// clusterNode is one line of CLUSTER NODES.
type clusterNode struct {
	addr      string
	master    bool
	slots     bool // serves at least one slot
	failed    bool // fail or fail? flag
	handshake bool
}

// parseClusterNodes reads CLUSTER NODES output: "<id> <ip:port@cport[,host]>
// <flags> <master> <ping-sent> <pong-recv> <epoch> <link> <slot>...".
func parseClusterNodes(text string) []clusterNode {
	var out []clusterNode
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 8 {
			continue
		}
		addr, _, _ := strings.Cut(f[1], "@")
		flags := strings.Split(f[2], ",")
		out = append(out, clusterNode{
			addr:      addr,
			master:    slices.Contains(flags, "master"),
			slots:     len(f) > 8,
			failed:    slices.Contains(flags, "fail") || slices.Contains(flags, "fail?"),
			handshake: slices.Contains(flags, "handshake") || slices.Contains(flags, "noaddr"),
		})
	}
	return out
}
