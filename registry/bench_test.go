package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/regdns/regdns/internal/redistest"
)

// Benchmarks of reading the registry from a real redis-server (loopback):
// the refresh of one service of 10, 1,000 and 10,000 instances, and full
// syncs. Each reports the Redis round trips it took per operation.
//
//	go test -run '^$' -bench . -benchmem ./registry/

var benchSizes = []int{10, 1000, 10000}

// benchCounter counts what go-redis sends: round trips (one per command,
// one per pipeline) and commands.
type benchCounter struct{ trips, cmds atomic.Int64 }

func (h *benchCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *benchCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() != "hello" { // a new pooled connection's handshake
			h.trips.Add(1)
			h.cmds.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (h *benchCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.trips.Add(1)
		h.cmds.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

func (h *benchCounter) reset() { h.trips.Store(0); h.cmds.Store(0) }

// report adds round trips and commands per operation to the results.
func (h *benchCounter) report(b *testing.B) {
	b.ReportMetric(float64(h.trips.Load())/float64(b.N), "roundtrips/op")
	b.ReportMetric(float64(h.cmds.Load())/float64(b.N), "cmds/op")
}

// benchRedis starts a redis-server for one benchmark and returns a counting
// client of it.
func benchRedis(b *testing.B) (*redis.Client, *benchCounter) {
	b.Helper()
	rs := redistest.Start(b)
	c := rs.Client(b)
	h := &benchCounter{}
	c.AddHook(h)
	return c, h
}

// seedBench writes services x instances in the reference layout (instance
// document, set member, healthy health key, one-hour TTLs so nothing expires
// during the benchmark) with pipelines of 1,000 instances.
func seedBench(b *testing.B, c *redis.Client, keys Keys, services, instances int) {
	b.Helper()
	ctx := context.Background()
	now := float64(time.Now().UnixNano()) / 1e9
	health := fmt.Sprintf(`{"status": "healthy", "checked_at": %f}`, now)
	p := c.Pipeline()
	queued := 0
	for s := range services {
		name := fmt.Sprintf("svc-%d", s)
		for i := range instances {
			id := fmt.Sprintf("%08x-0000-4000-8000-%012x", s, i)
			doc, err := json.Marshal(map[string]any{
				"service_name": name, "instance_id": id,
				"host": fmt.Sprintf("10.%d.%d.%d", s/256%256, s%256, i%250+1), "port": 8000 + i/250,
				"metadata":      map[string]any{"version": "1.0.0", "region": "us-east-1", "weight": 1},
				"registered_at": now, "last_heartbeat": now,
			})
			if err != nil {
				b.Fatal(err)
			}
			p.SetEx(ctx, keys.Instance(name, id), doc, time.Hour)
			p.SAdd(ctx, keys.Set(name), id)
			p.SetEx(ctx, keys.Health(name, id), health, time.Hour)
			if queued++; queued == 1000 {
				if _, err := p.Exec(ctx); err != nil {
					b.Fatal(err)
				}
				queued = 0
			}
		}
	}
	if _, err := p.Exec(ctx); err != nil && queued > 0 {
		b.Fatal(err)
	}
}

// BenchmarkStoreService is Store.Service (SMEMBERS, then pipelined GET and
// PTTL of every instance and health key) plus decoding every entry as the
// view does: what one service refresh costs before the view's bookkeeping.
func BenchmarkStoreService(b *testing.B) {
	c, h := benchRedis(b)
	for _, n := range benchSizes {
		keys := Keys{Prefix: fmt.Sprintf("s%d", n), HealthPrefix: fmt.Sprintf("h%d", n)}
		seedBench(b, c, keys, 1, n)
		store := NewStore(c, keys)
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			h.reset()
			for b.Loop() {
				entries, err := store.Service(ctx, "svc-0")
				if err != nil {
					b.Fatal(err)
				}
				if len(entries) != n {
					b.Fatalf("read %d entries, want %d", len(entries), n)
				}
				for _, e := range entries {
					if _, err := DecodeInstance("svc-0", e.ID, e.Data); err != nil {
						b.Fatal(err)
					}
					if _, err := DecodeHealth(e.HealthData); err != nil {
						b.Fatal(err)
					}
				}
			}
			h.report(b)
		})
	}
}

// benchView is a view whose watcher is driven directly, without Run's
// subscription: what a refresh or a full sync does, and nothing else.
func benchView(c *redis.Client, keys Keys, onChange func(string, *Service)) *watcher {
	v := NewView(Options{Client: c, Keys: keys, Mode: ModeHealthy, Logger: zerolog.Nop(), OnChange: onChange})
	return &watcher{v: v}
}

// BenchmarkViewRefresh is the view's refresh of one service it did not know
// (the path of a SADD notification or a registered event for a new
// service): SMEMBERS, the pipelined entries, decoding, expiry bookkeeping,
// building and publishing the snapshot.
func BenchmarkViewRefresh(b *testing.B) {
	c, h := benchRedis(b)
	for _, n := range benchSizes {
		keys := Keys{Prefix: fmt.Sprintf("v%d", n), HealthPrefix: fmt.Sprintf("vh%d", n)}
		seedBench(b, c, keys, 1, n)
		serving := 0
		w := benchView(c, keys, func(_ string, s *Service) { serving = len(s.Serving) })
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			h.reset()
			for b.Loop() {
				// Forget the service, so every iteration reads it whole.
				delete(w.v.services, "svc-0")
				w.v.expiry = w.v.expiry[:0]
				serving = 0
				if err := w.refreshMembers(ctx, "svc-0"); err != nil {
					b.Fatal(err)
				}
				if serving != n {
					b.Fatalf("published %d serving instances, want %d", serving, n)
				}
			}
			h.report(b)
		})
	}
}

// BenchmarkFullSync is the view's full re-read (SCAN of the sets, pipelined
// SMEMBERS, pipelined entries, decode, publish): at start, after every
// reconnect and every cache.max_age. 10,000 x 10 is the scale case of
// scripts/bench.sh: this is its registry side, without the DNS side's
// repacking (which the OnChange callback of a real server adds).
func BenchmarkFullSync(b *testing.B) {
	c, h := benchRedis(b)
	for _, tc := range []struct{ services, instances int }{{100, 3}, {1000, 10}, {10000, 10}} {
		keys := Keys{Prefix: fmt.Sprintf("f%dx%d", tc.services, tc.instances), HealthPrefix: fmt.Sprintf("fh%dx%d", tc.services, tc.instances)}
		seedBench(b, c, keys, tc.services, tc.instances)
		b.Run(fmt.Sprintf("services=%dx%d", tc.services, tc.instances), func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			h.reset()
			for b.Loop() {
				w := benchView(c, keys, nil) // a fresh view: the sync at start
				n, err := w.readAll(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if n != tc.services {
					b.Fatalf("synced %d services, want %d", n, tc.services)
				}
			}
			h.report(b)
		})
	}
}
