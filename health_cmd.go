package main

import (
	"context"
	"fmt"
	"io"

	"golang.org/x/sync/errgroup"

	"github.com/regdns/regdns/health"
	"github.com/regdns/regdns/internal/config"
	"github.com/regdns/regdns/registry"
)

// healthCmd is `regdns health`: the active health checker. It probes every
// registered instance (or those of health.services) every health.interval
// and writes health:<service>:<id> as the reference HealthChecker does. Run
// as many as you like against one Redis: they elect one prober with a lease,
// and a standby takes over within health.lease_ttl when it dies. Every key
// layout served (redis.prefix and that of each [[zones]]) gets a checker and
// a lease of its own.
func healthCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	f := newFlags("health", stderr).redisFlag()
	f.bind("interval", "health.interval", "how often every instance is probed; health keys live 3 x interval (default 10s)")
	f.fs.Usage = func() {
		fmt.Fprintf(f.fs.Output(), "Usage: regdns health [-config FILE] [-redis URL] [-interval 10s]\n\n"+
			"timeout, rise, fall, concurrency, services, lease_key, lease_ttl and cleanup_expired\n"+
			"are set under [health] in the config file (see config.example.toml) or REGDNS_HEALTH_*.\n\n")
		f.fs.PrintDefaults()
	}
	cfg, err := f.load(args, getenv, nil)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	client, _, err := newRedisClient(cfg, log)
	if err != nil {
		return err
	}
	defer client.Close()

	h := cfg.Health
	g, gctx := errgroup.WithContext(ctx)
	for i, keys := range healthLayouts(cfg) {
		leaseKey := h.LeaseKey
		if leaseKey != "" && i > 0 { // one lease per layout, or one layout would starve
			leaseKey += ":" + keys.Prefix + ":" + keys.HealthPrefix
		}
		checker, err := health.New(health.Options{
			Client:         client,
			Keys:           keys,
			Interval:       h.Interval.Duration,
			Timeout:        h.Timeout.Duration,
			Rise:           h.Rise,
			Fall:           h.Fall,
			Concurrency:    h.Concurrency,
			Services:       h.Services,
			LeaseKey:       leaseKey,
			LeaseTTL:       h.LeaseTTL.Duration,
			RedisTimeout:   cfg.Redis.Timeout.Duration,
			CleanupExpired: h.CleanupExpired,
			Logger:         log.With().Str("component", "health").Str("prefix", keys.Prefix).Logger(),
		})
		if err != nil {
			return err
		}
		g.Go(func() error { return checker.Run(gctx) })
	}
	log.Info().Str("redis", config.RedactURL(cfg.Redis.URL)).Strs("services", h.Services).
		Msg("regdns health checking")
	return g.Wait()
}

// healthLayouts lists the distinct registry key layouts the configuration
// serves: redis.prefix / redis.health_prefix first, then each zone's.
func healthLayouts(cfg config.Config) []registry.Keys {
	out := []registry.Keys{keysOf(cfg)}
	for _, z := range cfg.Zones {
		prefix, healthPrefix := z.ZonePrefixes()
		k := registry.Keys{Prefix: prefix, HealthPrefix: healthPrefix}
		seen := false
		for _, o := range out {
			seen = seen || o == k
		}
		if !seen {
			out = append(out, k)
		}
	}
	return out
}
