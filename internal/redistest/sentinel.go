package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// SentinelMasterName is the master set the sentinels monitor.
	SentinelMasterName = "registry"
	// sentinelDownAfter is down-after-milliseconds: how long the master may
	// be silent before a sentinel thinks it down.
	sentinelDownAfter = time.Second
	// sentinelReadyTimeout bounds waiting for the sentinels to agree on the
	// topology, or for a failover to complete.
	sentinelReadyTimeout = 30 * time.Second
	// sentinelCount is the number of sentinels; the quorum is 2.
	sentinelCount = 3
)

// Sentinel is a Redis Sentinel deployment owned by one test: a master, one
// replica of it, and three sentinels monitoring the master set "registry"
// with quorum 2, all child processes on loopback ports, killed in t.Cleanup.
type Sentinel struct {
	// data are the master and the replica, in start order; which one is the
	// master changes with failovers, so ask MasterAddr.
	data      []*Server
	sentinels []*sentinelProc

	mu      sync.Mutex
	clients map[string]*redis.SentinelClient
	nodes   map[string]*redis.Client
}

// StartSentinel starts the master, the replica (--replicaof) and the three
// sentinels, and waits (at most 30 s, polling) until the replica is in sync
// and every sentinel sees the master up, the replica up and linked, and the
// other two sentinels, so that a failover can proceed at once.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	s := &Sentinel{clients: map[string]*redis.SentinelClient{}, nodes: map[string]*redis.Client{}}
	t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range s.clients {
			_ = c.Close()
		}
		for _, c := range s.nodes {
			_ = c.Close()
		}
	})
	// A replica's first sync starts at once, not after 5 s.
	master := Start(t, "--repl-diskless-sync-delay", "0")
	replica := Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port), "--repl-diskless-sync-delay", "0")
	s.data = []*Server{master, replica}
	for range sentinelCount {
		s.sentinels = append(s.sentinels, startSentinelProc(t, master.Port))
	}
	s.waitFor(t, "the replica in sync and every sentinel sees the topology", func(ctx context.Context) error {
		return s.checkSettled(ctx, master.Addr)
	})
	return s
}

// SentinelAddrs returns the sentinels' host:port, for redis.addrs.
func (s *Sentinel) SentinelAddrs() []string {
	out := make([]string, len(s.sentinels))
	for i, p := range s.sentinels {
		out[i] = p.addr
	}
	return out
}

// MasterName is the master set the sentinels monitor.
func (s *Sentinel) MasterName() string { return SentinelMasterName }

// MasterAddr asks a sentinel (SENTINEL get-master-addr-by-name) where the
// master is.
func (s *Sentinel) MasterAddr(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	var lastErr error
	for _, addr := range s.SentinelAddrs() {
		hp, err := s.sentinel(addr).GetMasterAddrByName(ctx, SentinelMasterName).Result()
		if err == nil && len(hp) == 2 {
			return net.JoinHostPort(hp[0], hp[1])
		}
		lastErr = err
	}
	t.Fatalf("redistest: no sentinel knows the master of %s: %v", SentinelMasterName, lastErr)
	return ""
}

// Client returns a go-redis Sentinel-backed client (NewFailoverClient) that
// follows the master, closed in t.Cleanup.
func (s *Sentinel) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:      SentinelMasterName,
		SentinelAddrs:   s.SentinelAddrs(),
		DisableIdentity: true,
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Failover forces a failover (SENTINEL FAILOVER registry) and waits until
// every sentinel reports the new master, the failover is over, and the new
// master answers ROLE master. It returns the new master's address and how
// long the failover took.
func (s *Sentinel) Failover(t testing.TB) (string, time.Duration) {
	t.Helper()
	old := s.MasterAddr(t)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := s.sentinel(s.sentinels[0].addr).Failover(ctx, SentinelMasterName).Err(); err != nil {
		t.Fatalf("redistest: SENTINEL FAILOVER %s: %v", SentinelMasterName, err)
	}
	addr := s.WaitMasterChange(t, old)
	return addr, time.Since(start)
}

// KillMaster SIGKILLs the current master and returns its address. The
// sentinels promote the replica after down-after-milliseconds (1 s); wait
// for that with WaitMasterChange.
func (s *Sentinel) KillMaster(t testing.TB) string {
	t.Helper()
	addr := s.MasterAddr(t)
	for _, d := range s.data {
		if d.Addr == addr {
			d.Kill(t)
			return addr
		}
	}
	t.Fatalf("redistest: master %s is none of the data nodes", addr)
	return ""
}

// WaitMasterChange waits until every live sentinel reports a master other
// than old, with no failover in progress, and that master answers ROLE
// master; it returns the new master's address.
func (s *Sentinel) WaitMasterChange(t testing.TB, old string) string {
	t.Helper()
	var addr string
	s.waitFor(t, "the master moves away from "+old, func(ctx context.Context) error {
		var seen []string
		for _, sa := range s.SentinelAddrs() {
			m, err := s.sentinel(sa).Master(ctx, SentinelMasterName).Result()
			if err != nil {
				return fmt.Errorf("sentinel %s: SENTINEL MASTER: %w", sa, err)
			}
			a := net.JoinHostPort(m["ip"], m["port"])
			if a == old {
				return fmt.Errorf("sentinel %s still reports %s", sa, old)
			}
			if strings.Contains(m["flags"], "failover_in_progress") {
				return fmt.Errorf("sentinel %s: failover in progress", sa)
			}
			seen = append(seen, a)
		}
		slices.Sort(seen)
		if seen = slices.Compact(seen); len(seen) != 1 {
			return fmt.Errorf("sentinels disagree on the master: %v", seen)
		}
		role, err := s.node(seen[0]).Do(ctx, "ROLE").Slice()
		if err != nil {
			return fmt.Errorf("%s: ROLE: %w", seen[0], err)
		}
		if len(role) == 0 || role[0] != "master" {
			return fmt.Errorf("%s: ROLE %v", seen[0], role)
		}
		addr = seen[0]
		return nil
	})
	return addr
}

// checkSettled reports why the deployment around master is not ready for a
// failover yet, or nil.
func (s *Sentinel) checkSettled(ctx context.Context, master string) error {
	for _, d := range s.data {
		if d.Addr == master {
			continue
		}
		info, err := s.node(d.Addr).Info(ctx, "replication").Result()
		if err != nil {
			return fmt.Errorf("replica %s: INFO replication: %w", d.Addr, err)
		}
		if !strings.Contains(info, "master_link_status:up") || !strings.Contains(info, "master_sync_in_progress:0") {
			return fmt.Errorf("replica %s not in sync", d.Addr)
		}
	}
	for _, sa := range s.SentinelAddrs() {
		sc := s.sentinel(sa)
		m, err := sc.Master(ctx, SentinelMasterName).Result()
		if err != nil {
			return fmt.Errorf("sentinel %s: SENTINEL MASTER: %w", sa, err)
		}
		if got := net.JoinHostPort(m["ip"], m["port"]); got != master || m["flags"] != "master" {
			return fmt.Errorf("sentinel %s: master %s flags %q", sa, got, m["flags"])
		}
		if m["num-other-sentinels"] != strconv.Itoa(sentinelCount-1) {
			return fmt.Errorf("sentinel %s knows %s other sentinels", sa, m["num-other-sentinels"])
		}
		replicas, err := sc.Replicas(ctx, SentinelMasterName).Result()
		if err != nil {
			return fmt.Errorf("sentinel %s: SENTINEL REPLICAS: %w", sa, err)
		}
		if len(replicas) != len(s.data)-1 {
			return fmt.Errorf("sentinel %s knows %d replicas", sa, len(replicas))
		}
		for _, r := range replicas {
			if r["flags"] != "slave" || r["master-link-status"] != "ok" {
				return fmt.Errorf("sentinel %s: replica %s:%s flags %q link %q", sa, r["ip"], r["port"], r["flags"], r["master-link-status"])
			}
		}
	}
	return nil
}

// waitFor polls check until it returns nil, calling t.Fatal with its last
// error after sentinelReadyTimeout.
func (s *Sentinel) waitFor(t testing.TB, what string, check func(ctx context.Context) error) {
	t.Helper()
	pollUntil(t, "sentinel: "+what, sentinelReadyTimeout, check)
}

func (s *Sentinel) sentinel(addr string) *redis.SentinelClient {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.clients[addr]
	if c == nil {
		opts := clientOptions(addr)
		opts.MaxRetries = -1 // the poll loops are the retry
		c = redis.NewSentinelClient(opts)
		s.clients[addr] = c
	}
	return c
}

func (s *Sentinel) node(addr string) *redis.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.nodes[addr]
	if c == nil {
		opts := clientOptions(addr)
		opts.MaxRetries = -1
		c = redis.NewClient(opts)
		s.nodes[addr] = c
	}
	return c
}

// sentinelProc is one `redis-server sentinel.conf --sentinel` process.
type sentinelProc struct {
	addr string
	out  *syncBuffer
	mu   sync.Mutex
	proc *process
}

// startSentinelProc writes a sentinel.conf monitoring the master on
// masterPort into its own directory and starts a sentinel with it on a free
// port, retrying with another port if that one was taken meanwhile.
func startSentinelProc(t testing.TB, masterPort int) *sentinelProc {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redistest: redis-server not found on PATH (%v); %s", err, installHint)
	}
	dir := t.TempDir()
	sp := &sentinelProc{out: &syncBuffer{}}
	t.Cleanup(func() {
		sp.mu.Lock()
		p := sp.proc
		sp.proc = nil
		sp.mu.Unlock()
		if p != nil {
			if err := p.signalAndWait(syscall.SIGKILL); err != nil {
				t.Errorf("redistest: cleanup sentinel %s: %v", sp.addr, err)
			}
		}
		if t.Failed() {
			t.Logf("redistest: sentinel output on %s:\n%s", sp.addr, sp.out.String())
		}
	})
	var lastErr error
	for range startAttempts {
		port := FreePort(t)
		sp.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		// A sentinel rewrites its config file, so it must be writable.
		conf := filepath.Join(dir, "sentinel.conf")
		text := fmt.Sprintf(`port %d
bind 127.0.0.1
protected-mode no
dir %s
sentinel resolve-hostnames no
sentinel monitor %s 127.0.0.1 %d 2
sentinel down-after-milliseconds %s %d
sentinel failover-timeout %s 5000
`, port, dir, SentinelMasterName, masterPort, SentinelMasterName, sentinelDownAfter.Milliseconds(), SentinelMasterName)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatalf("redistest: write %s: %v", conf, err)
		}
		outStart := sp.out.Len()
		cmd := exec.Command(bin, conf, "--sentinel")
		cmd.Stdout, cmd.Stderr = sp.out, sp.out
		if err := cmd.Start(); err != nil {
			t.Fatalf("redistest: exec %s: %v", bin, err)
		}
		p := &process{cmd: cmd, done: make(chan struct{})}
		go p.reap()
		if lastErr = waitReady(sp.addr, p); lastErr == nil {
			sp.mu.Lock()
			sp.proc = p
			sp.mu.Unlock()
			return sp
		}
		if kerr := p.signalAndWait(syscall.SIGKILL); kerr != nil {
			lastErr = errors.Join(lastErr, kerr)
		}
		if !strings.Contains(sp.out.StringFrom(outStart), "ddress already in use") {
			break
		}
	}
	t.Fatalf("redistest: start sentinel: %v", lastErr)
	return nil
}
