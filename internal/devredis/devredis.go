// Package devredis is the embedded registry of `regdns dev`: a miniredis
// server on a real TCP port (so the reference Python writers can use it),
// with its clock driven so TTLs run out in real time, and a few demo
// services kept alive by heartbeats and health checks.
package devredis

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/regdns/regdns/registry"
)

// DemoInstance is one instance the dev registry keeps registered.
type DemoInstance struct {
	Service, ID, Host string
	Port              int
	Meta              map[string]any
	// Health is written every interval; StatusUnknown writes no health key.
	Health registry.Status
}

// Demo is the seed registered by `regdns dev`.
func Demo() []DemoInstance {
	return []DemoInstance{
		{"user-service", "user-1", "127.0.0.11", 8080, map[string]any{"version": "1.0.0", "weight": 3}, registry.StatusHealthy},
		{"user-service", "user-2", "127.0.0.12", 8080, map[string]any{"version": "1.0.0", "weight": 1}, registry.StatusHealthy},
		{"user-service", "user-3", "127.0.0.13", 8080, map[string]any{"version": "1.1.0", "weight": 1}, registry.StatusUnhealthy},
		{"payment-service", "pay-1", "127.0.0.21", 9090, map[string]any{"region": "us-east-1"}, registry.StatusHealthy},
		{"payment-service", "pay-2", "::1", 9090, map[string]any{"region": "eu-west-1"}, registry.StatusHealthy},
		{"docs", "docs-1", "localhost", 8000, nil, registry.StatusUnknown},
	}
}

// Registry is a running embedded registry.
type Registry struct {
	mr     *miniredis.Miniredis
	client *redis.Client
	writer *registry.Writer
	log    zerolog.Logger
	wg     sync.WaitGroup
}

// Options configure Start.
type Options struct {
	// Addr is where the Redis protocol is served (default 127.0.0.1:6380).
	Addr string
	// Keys is the key layout (default registry.DefaultKeys()).
	Keys registry.Keys
	// Seed is registered at start and kept alive (default Demo()).
	Seed []DemoInstance
	// TTL of the seed's instance keys (default 30s); heartbeats every TTL/3.
	TTL    time.Duration
	Logger zerolog.Logger
}

// Start runs the embedded registry until ctx ends; call Wait after that.
func Start(ctx context.Context, opts Options) (*Registry, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:6380"
	}
	if opts.Keys == (registry.Keys{}) {
		opts.Keys = registry.DefaultKeys()
	}
	if opts.Seed == nil {
		opts.Seed = Demo()
	}
	if opts.TTL <= 0 {
		opts.TTL = 30 * time.Second
	}
	mr := miniredis.NewMiniRedis()
	if err := mr.StartAddr(opts.Addr); err != nil {
		return nil, fmt.Errorf("start embedded redis on %s: %w", opts.Addr, err)
	}
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	r := &Registry{mr: mr, client: client, writer: registry.NewWriter(client, opts.Keys), log: opts.Logger}
	if err := r.seed(ctx, opts.Seed, opts.TTL); err != nil {
		r.close()
		return nil, err
	}
	r.wg.Add(2)
	go r.driveClock(ctx)
	go r.keepAlive(ctx, opts.Seed, opts.TTL)
	return r, nil
}

// URL is the redis:// URL of the embedded registry.
func (r *Registry) URL() string { return "redis://" + r.mr.Addr() + "/0" }

// Addr is the host:port of the embedded registry.
func (r *Registry) Addr() string { return r.mr.Addr() }

// Wait blocks until ctx given to Start ends and the registry has stopped.
func (r *Registry) Wait() {
	r.wg.Wait()
	r.close()
}

func (r *Registry) close() {
	r.client.Close()
	r.mr.Close()
}

func (r *Registry) seed(ctx context.Context, seed []DemoInstance, ttl time.Duration) error {
	for _, in := range seed {
		if err := r.writer.Register(ctx, in.Service, in.ID, in.Host, in.Port, in.Meta, ttl); err != nil {
			return err
		}
		if in.Health != registry.StatusUnknown {
			if err := r.writer.SetHealth(ctx, in.Service, in.ID, in.Health, ttl/3); err != nil {
				return err
			}
		}
	}
	return nil
}

// driveClock advances miniredis's clock with the wall clock: miniredis only
// expires keys when told time has passed.
func (r *Registry) driveClock(ctx context.Context) {
	defer r.wg.Done()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			r.mr.FastForward(now.Sub(last))
			last = now
		}
	}
}

// keepAlive heartbeats the seed and rewrites its health, as a service's
// client and a health checker would.
func (r *Registry) keepAlive(ctx context.Context, seed []DemoInstance, ttl time.Duration) {
	defer r.wg.Done()
	t := time.NewTicker(ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, in := range seed {
			ok, err := r.writer.Heartbeat(ctx, in.Service, in.ID, ttl)
			if err == nil && !ok {
				err = r.writer.Register(ctx, in.Service, in.ID, in.Host, in.Port, in.Meta, ttl)
			}
			if err == nil && in.Health != registry.StatusUnknown {
				err = r.writer.SetHealth(ctx, in.Service, in.ID, in.Health, ttl/3)
			}
			if err != nil && ctx.Err() == nil {
				r.log.Warn().Err(err).Str("service", in.Service).Msg("dev registry heartbeat failed")
			}
		}
	}
}
