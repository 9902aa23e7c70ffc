// Command regdns is an authoritative DNS server for a Redis service
// registry. main wires the packages together; it has no logic of its own.
//
//	regdns serve [-config FILE] [-listen ADDR] [-http ADDR] [-redis URL] [-zone NAME] [-strategy S] [-health-mode M]
//	regdns dev   [-listen ADDR] [-http ADDR] [-redis-listen ADDR] [-zone NAME] [-strategy S] [-health-mode M]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	regdns "github.com/regdns/regdns/dns"
	"github.com/regdns/regdns/internal/admin"
	"github.com/regdns/regdns/internal/balance"
	"github.com/regdns/regdns/internal/config"
	"github.com/regdns/regdns/internal/devredis"
	"github.com/regdns/regdns/registry"
)

const usage = `regdns: authoritative DNS for a Redis service registry

Usage:
  regdns serve [flags]   serve DNS from the registry in Redis
  regdns dev [flags]     try it out: an embedded registry with demo services
  regdns register        register one instance and keep it alive: a sidecar
  regdns list [SERVICE]  the registry's instances with health, age and TTL
  regdns watch [SERVICE] follow registry events live
  regdns health [flags]  probe every instance, write health:<service>:<id>
  regdns help            this text

Run 'regdns serve -h' or 'regdns dev -h' for their flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serveCmd(ctx, args[1:], getenv, stderr)
	case "dev":
		err = devCmd(ctx, args[1:], getenv, stdout, stderr)
	case "register":
		err = registerCmd(ctx, args[1:], getenv, stdout, stderr)
	case "list":
		err = listCmd(ctx, args[1:], getenv, stdout, stderr)
	case "watch":
		err = watchCmd(ctx, args[1:], getenv, stdout, stderr)
	case "health":
		err = healthCmd(ctx, args[1:], getenv, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "regdns: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "regdns %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// commonFlags are the flags serve and dev share, each mapped to a config key.
type commonFlags struct {
	fs     *flag.FlagSet
	config *string
	byName map[string]string // flag name -> config key
}

func newFlags(name string, stderr io.Writer) *commonFlags {
	fs := flag.NewFlagSet("regdns "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := &commonFlags{fs: fs, byName: map[string]string{}}
	f.config = fs.String("config", "", "TOML config file (see config.example.toml)")
	f.bind("log-level", "log.level", "debug, info, warn or error (default info)")
	return f
}

// dnsFlags adds the flags of the commands that serve DNS.
func (f *commonFlags) dnsFlags() *commonFlags {
	f.bind("listen", "dns.listen", "DNS address, UDP and TCP (default 127.0.0.1:8053)")
	f.bind("zone", "dns.zone", "zone served (default service.local)")
	f.bind("strategy", "balance.strategy", "answer order: round_robin, weighted or random (default round_robin)")
	f.bind("health-mode", "health.mode", "instances served: healthy, healthy_or_unknown or any (default healthy)")
	f.bind("http", "http.listen", "admin HTTP address: /metrics, /healthz, /readyz, /debug/services/NAME; off disables (default 127.0.0.1:9153)")
	return f
}

// redisFlag adds -redis, for the commands that talk to an external Redis.
func (f *commonFlags) redisFlag() *commonFlags {
	f.bind("redis", "redis.url", "Redis URL (default redis://127.0.0.1:6379/0)")
	return f
}

func (f *commonFlags) bind(name, key, help string) {
	f.fs.String(name, "", help)
	f.byName[name] = key
}

// load builds the configuration: defaults, file, environment, then the
// flags given on the command line.
func (f *commonFlags) load(args []string, getenv func(string) string, preset map[string]string) (config.Config, error) {
	if err := f.fs.Parse(args); err != nil {
		return config.Config{}, err
	}
	if f.fs.NArg() > 0 {
		return config.Config{}, fmt.Errorf("unexpected arguments: %v", f.fs.Args())
	}
	return f.reload(getenv, preset)
}

// reload builds the configuration again from the parsed flags, as load
// did: the file and environment are read anew (SIGHUP).
func (f *commonFlags) reload(getenv func(string) string, preset map[string]string) (config.Config, error) {
	path := *f.config
	if path == "" {
		path = getenv("REGDNS_CONFIG")
	}
	cfg, err := config.Load(path, getenv)
	if err != nil {
		return cfg, err
	}
	for key, value := range preset {
		if err := cfg.Set(key, value); err != nil {
			return cfg, err
		}
	}
	var setErr error
	f.fs.Visit(func(fl *flag.Flag) {
		if key, ok := f.byName[fl.Name]; ok && setErr == nil {
			setErr = cfg.Set(key, fl.Value.String())
		}
	})
	if setErr != nil {
		return cfg, setErr
	}
	return cfg, cfg.Validate()
}

func serveCmd(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	f := newFlags("serve", stderr).dnsFlags().redisFlag()
	cfg, err := f.load(args, getenv, nil)
	if err != nil {
		return err
	}
	return serveReloadable(ctx, cfg, stderr, nil, func() (config.Config, error) { return f.reload(getenv, nil) })
}

func devCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	f := newFlags("dev", stderr).dnsFlags()
	redisListen := f.fs.String("redis-listen", "127.0.0.1:6380", "address of the embedded registry (Redis protocol)")
	// The embedded registry has no keyspace notifications, and services
	// registered by hand have no health checker: serve unknown health too.
	preset := map[string]string{
		"health.mode": "healthy_or_unknown", "redis.keyspace_events": "false", "cache.poll_interval": "500ms",
	}
	cfg, err := f.load(args, getenv, preset)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reg, err := devredis.Start(ctx, devredis.Options{
		Addr: *redisListen, Logger: log, Keys: keysOf(cfg),
	})
	if err != nil {
		return err
	}
	defer reg.Wait()
	defer cancel()
	cfg.Redis.URL = reg.URL()
	reload := func() (config.Config, error) {
		next, err := f.reload(getenv, preset)
		next.Redis.URL = reg.URL()
		return next, err
	}
	return serveReloadable(ctx, cfg, stderr, func(dnsAddr, httpAddr string) {
		host, port, _ := net.SplitHostPort(dnsAddr)
		fmt.Fprintf(stdout, `regdns dev: embedded registry at %s, DNS at %s (UDP and TCP)

Try:
  dig -p %s @%s SRV user-service.%s
  dig -p %s @%s A payment-service.%s
  dig -p %s @%s SRV docs.%s

Register your own with the reference Python writers (redis.Redis(port=%s)),
or redis-cli -p %s. Ctrl-C stops.
`, reg.Addr(), dnsAddr, port, host, cfg.DNS.Zone, port, host, cfg.DNS.Zone, port, host, cfg.DNS.Zone,
			portOf(reg.Addr()), portOf(reg.Addr()))
		if httpAddr != "" {
			fmt.Fprintf(stdout, "Metrics at http://%s/metrics, a service's view at http://%s/debug/services/user-service\n",
				httpAddr, httpAddr)
		}
	}, reload)
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// serve runs the DNS server over the registry until ctx ends. started, if
// set, is called once the DNS sockets and the admin HTTP server are bound,
// with their addresses (httpAddr "" when http.listen is off).
func serve(ctx context.Context, cfg config.Config, stderr io.Writer, started func(dnsAddr, httpAddr string)) error {
	return serveReloadable(ctx, cfg, stderr, started, nil)
}

// serveReloadable is serve that also reloads its configuration with reload
// on SIGHUP (nil: SIGHUP is not handled).
func serveReloadable(ctx context.Context, cfg config.Config, stderr io.Writer, started func(dnsAddr, httpAddr string),
	reload func() (config.Config, error)) error {
	log := newLogger(cfg, stderr)
	mode, err := registry.ParseHealthMode(cfg.Health.Mode)
	if err != nil {
		return fmt.Errorf("health.mode: %w", err)
	}
	client, db, err := newRedisClient(cfg, log)
	if err != nil {
		return err
	}
	defer client.Close()

	// One registry view and one catalog per zone: each zone reads its own
	// key prefixes of the same Redis.
	newZone := func(keys registry.Keys) (*registry.View, *regdns.Catalog) {
		var view *registry.View
		// Names unknown while Redis is away are SERVFAIL, not NXDOMAIN: they
		// may exist. For the negative TTL after losing Redis, answers stay
		// what resolvers have cached anyway.
		synced := func() bool {
			return view.Synced() || (view.EverSynced() && view.StaleFor() < cfg.DNS.NegativeTTL.Duration)
		}
		cat := regdns.NewCatalog(synced, log.With().Str("component", "dns").Logger())
		view = registry.NewView(registry.Options{
			Client:         client,
			DB:             db,
			Keys:           keys,
			Mode:           mode,
			KeyspaceEvents: cfg.Redis.KeyspaceEvents,
			MaxAge:         cfg.Cache.MaxAge.Duration,
			PollInterval:   cfg.Cache.PollInterval.Duration,
			Timeout:        cfg.Redis.Timeout.Duration,
			PanicThreshold: cfg.Health.PanicThreshold,
			MaxStale:       maxStale(cfg.Cache.MaxStale.Duration),
			// Answers must not be cached past a lease: warn when one ends
			// within the answer TTL.
			LeaseWarning: cfg.DNS.TTL.Duration,
			OnChange:     cat.Update,
			Logger:       log.With().Str("component", "registry").Str("prefix", keys.Prefix).Logger(),
		})
		return view, cat
	}
	view, cat := newZone(keysOf(cfg))
	views := []*registry.View{view}
	var extra []regdns.Zone
	for _, z := range cfg.Zones {
		prefix, healthPrefix := z.ZonePrefixes()
		v, c := newZone(registry.Keys{Prefix: prefix, HealthPrefix: healthPrefix})
		views = append(views, v)
		extra = append(extra, regdns.Zone{Name: z.Name, Catalog: c})
	}
	var nsAddrs []netip.Addr
	if ap, err := netip.ParseAddrPort(cfg.DNS.Listen); err == nil && !ap.Addr().IsUnspecified() {
		nsAddrs = append(nsAddrs, ap.Addr())
	}
	opts, err := handlerOptions(cfg)
	if err != nil {
		return err
	}
	opts.Zone, opts.ExtraZones, opts.NS, opts.NSAddrs = cfg.DNS.Zone, extra, cfg.DNS.NS, nsAddrs
	handler := regdns.NewHandler(cat, opts)
	srv := regdns.NewServer(regdns.ServerOptions{
		Addr: cfg.DNS.Listen, Handler: handler, MaxTCPConnections: cfg.DNS.MaxTCPConnections,
		IdleTimeout: cfg.DNS.TCPIdleTimeout.Duration, ReadTimeout: cfg.DNS.TCPReadTimeout.Duration,
		RRL: regdns.RRLOptions{
			Rate: cfg.DNS.RRL.Rate, Burst: cfg.DNS.RRL.Burst, Slip: cfg.DNS.RRL.Slip,
			IPv4Prefix: cfg.DNS.RRL.IPv4Prefix, IPv6Prefix: cfg.DNS.RRL.IPv6Prefix,
		},
	})
	if err := srv.Start(); err != nil {
		return err
	}
	log.Info().Str("zone", handler.Zone()).Str("listen", srv.Addr()).
		Str("redis", config.RedactURL(cfg.Redis.URL)).Str("health_mode", mode.String()).
		Str("strategy", opts.Strategy.String()).Msg("regdns serving (udp+tcp)")
	adminZones := []admin.Zone{newZoneView(handler.Zone(), views[0], handler, mode)}
	for i, z := range extra {
		adminZones = append(adminZones, newZoneView(z.Name, views[i+1], handler, mode))
	}
	adm, err := startAdmin(ctx, cfg, log, handler, adminZones)
	if err != nil {
		stopCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
		defer stop()
		_ = srv.Shutdown(stopCtx)
		return err
	}
	httpAddr := ""
	if adm != nil {
		httpAddr = adm.Addr()
		log.Info().Str("listen", httpAddr).Msg("admin http: /metrics /healthz /readyz /debug/services/")
	}
	if started != nil {
		started(srv.Addr(), httpAddr)
	}

	g, gctx := errgroup.WithContext(ctx)
	if reload != nil {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		g.Go(func() error {
			for {
				select {
				case <-gctx.Done():
					return nil
				case <-hup:
					applyReload(cfg, reload, handler, log)
				}
			}
		})
	}
	for _, v := range views {
		g.Go(func() error { return v.Run(gctx) })
	}
	g.Go(func() error {
		select {
		case <-gctx.Done():
			return nil
		case err := <-srv.Err():
			return fmt.Errorf("dns server: %w", err)
		}
	})
	if adm != nil {
		g.Go(func() error {
			select {
			case <-gctx.Done():
				return nil
			case err := <-adm.Err():
				return fmt.Errorf("admin http server: %w", err)
			}
		})
	}
	runErr := g.Wait()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn().Err(err).Msg("dns shutdown")
	}
	if adm != nil {
		if err := adm.Shutdown(shutdownCtx); err != nil {
			log.Warn().Err(err).Msg("admin http shutdown")
		}
	}
	log.Info().Msg("regdns stopped")
	return runErr
}

// handlerOptions are the DNS answer settings of cfg: everything a SIGHUP
// can change. The zones, NS and listen addresses are set by the caller.
func handlerOptions(cfg config.Config) (regdns.Options, error) {
	strategy, err := balance.Parse(cfg.Balance.Strategy)
	if err != nil {
		return regdns.Options{}, fmt.Errorf("balance.strategy: %w", err)
	}
	perService := map[string]balance.Strategy{}
	for name, sb := range cfg.Balance.Services {
		if perService[name], err = balance.Parse(sb.Strategy); err != nil {
			return regdns.Options{}, fmt.Errorf("balance.services.%s.strategy: %w", name, err)
		}
	}
	transferFrom, err := config.Prefixes(cfg.DNS.TransferAllow)
	if err != nil {
		return regdns.Options{}, fmt.Errorf("dns.transfer_allow: %w", err)
	}
	var forwarder *regdns.Forwarder
	if len(cfg.DNS.Forward) > 0 {
		allow, err := config.Prefixes(cfg.DNS.ForwardAllow)
		if err != nil {
			return regdns.Options{}, fmt.Errorf("dns.forward_allow: %w", err)
		}
		forwarder = regdns.NewForwarder(regdns.ForwarderOptions{
			Upstreams: cfg.DNS.Forward, Allow: allow, CacheSize: cfg.DNS.ForwardCacheSize,
			Timeout: cfg.Redis.Timeout.Duration,
		})
	}
	var clientZones []regdns.ClientZone
	for network, zone := range cfg.Balance.ClientZones {
		p, err := config.Prefixes([]string{network})
		if err != nil {
			return regdns.Options{}, fmt.Errorf("balance.client_zones: %w", err)
		}
		clientZones = append(clientZones, regdns.ClientZone{Prefix: p[0], Zone: zone})
	}
	return regdns.Options{
		TTL:          seconds(cfg.DNS.TTL.Duration),
		NegativeTTL:  seconds(cfg.DNS.NegativeTTL.Duration),
		Strategy:     strategy,
		Strategies:   perService,
		MaxAnswers:   cfg.DNS.MaxAnswers,
		MaxUDPSize:   uint16(cfg.DNS.MaxUDPSize),
		TransferFrom: transferFrom,
		Forwarder:    forwarder,
		Explain:      cfg.DNS.Explain,
		TTLFloor:     seconds(cfg.DNS.TTLFloor.Duration),
		MaxTXT:       cfg.DNS.MaxTXT,
		LocalityKey:  cfg.Balance.LocalityKey,
		ClientZones:  clientZones,
		// Validate keeps both within 0..65535.
		UnknownPriority:   uint16(cfg.Health.UnknownPriority),
		UnhealthyPriority: uint16(cfg.Health.UnhealthyPriority),
		QueryLog:          cfg.Log.Queries,
	}, nil
}

// applyReload re-reads the configuration (SIGHUP) and applies what can
// change while serving: the answer settings. A configuration that does not
// load or validate is rejected with one log line, and the running one kept.
func applyReload(running config.Config, reload func() (config.Config, error), h *regdns.Handler, log zerolog.Logger) {
	next, err := reload()
	var opts regdns.Options
	if err == nil {
		opts, err = handlerOptions(next)
	}
	if err != nil {
		log.Error().Err(err).Msg("config reload rejected: keeping the running configuration")
		return
	}
	var restart []string
	for key, changed := range map[string]bool{
		"dns.listen": next.DNS.Listen != running.DNS.Listen, "dns.zone": next.DNS.Zone != running.DNS.Zone,
		"dns.ns": next.DNS.NS != running.DNS.NS, "dns.rrl": next.DNS.RRL != running.DNS.RRL,
		"dns.max_tcp_connections": next.DNS.MaxTCPConnections != running.DNS.MaxTCPConnections,
		"dns.tcp_idle_timeout":    next.DNS.TCPIdleTimeout != running.DNS.TCPIdleTimeout,
		"dns.tcp_read_timeout":    next.DNS.TCPReadTimeout != running.DNS.TCPReadTimeout,
		"redis":                   fmt.Sprint(next.Redis) != fmt.Sprint(running.Redis), "zones": fmt.Sprint(next.Zones) != fmt.Sprint(running.Zones),
		"health.mode": next.Health.Mode != running.Health.Mode, "health.panic_threshold": next.Health.PanicThreshold != running.Health.PanicThreshold,
		"cache": next.Cache != running.Cache, "log": next.Log != running.Log, "http": next.HTTP != running.HTTP,
	} {
		if changed {
			restart = append(restart, key)
		}
	}
	h.SetOptions(opts)
	ev := log.Info()
	if len(restart) > 0 {
		slices.Sort(restart)
		ev = log.Warn().Strs("need_restart", restart)
	}
	ev.Msg("config reloaded")
}

// newRedisClient connects to the registry's Redis: the server of
// redis.url, or the Sentinel master set (redis.addrs + redis.master_name), or
// the Cluster (redis.addrs + redis.cluster), through go-redis's own clients.
// redis.url gives the credentials, TLS and database in every case. Every
// call is bounded by redis.timeout. It also returns the database number,
// which names keyspace notification channels.
func newRedisClient(cfg config.Config, log zerolog.Logger) (redis.UniversalClient, int, error) {
	u, err := redis.ParseURL(cfg.Redis.URL)
	if err != nil {
		return nil, 0, fmt.Errorf("redis.url %s: %w", config.RedactURL(cfg.Redis.URL), err)
	}
	redis.SetLogger(redisLogger{log.With().Str("component", "go-redis").Logger()})
	timeout := cfg.Redis.Timeout.Duration
	addrs := cfg.Redis.Addrs
	if len(addrs) == 0 {
		addrs = []string{u.Addr}
	}
	opts := &redis.UniversalOptions{
		Addrs:      addrs,
		MasterName: cfg.Redis.MasterName,
		DB:         u.DB,
		Username:   u.Username,
		Password:   u.Password,
		TLSConfig:  u.TLSConfig,
		// go-redis honours context deadlines on sockets only when asked to.
		ContextTimeoutEnabled: true,
		DialTimeout:           timeout,
		ReadTimeout:           timeout,
		WriteTimeout:          timeout,
		ReadOnly:              cfg.Redis.ReadFromReplicas,
		RouteRandomly:         cfg.Redis.ReadFromReplicas && cfg.Redis.Cluster,
	}
	if cfg.Redis.MasterName != "" && cfg.Redis.ReadFromReplicas {
		// Sentinel: replicas serve the reads, the master the writes.
		fo := opts.Failover()
		fo.ReplicaOnly = false
		fo.RouteRandomly = true
		return redis.NewFailoverClusterClient(fo), u.DB, nil
	}
	switch {
	case cfg.Redis.Cluster:
		return redis.NewClusterClient(opts.Cluster()), 0, nil // a Cluster has only database 0
	case cfg.Redis.MasterName != "":
		return redis.NewFailoverClient(opts.Failover()), u.DB, nil
	}
	return redis.NewClient(opts.Simple()), u.DB, nil
}

// keysOf is the registry key layout the configuration names.
func keysOf(cfg config.Config) registry.Keys {
	return registry.Keys{Prefix: cfg.Redis.Prefix, HealthPrefix: cfg.Redis.HealthPrefix}
}

// maxStale maps cache.max_stale (0 = forever) to registry.Options.MaxStale
// (negative = forever).
func maxStale(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

func seconds(d time.Duration) uint32 { return uint32(max(d.Round(time.Second)/time.Second, 1)) }

func newLogger(cfg config.Config, w io.Writer) zerolog.Logger {
	level, err := zerolog.ParseLevel(cfg.Log.Level)
	if err != nil || cfg.Log.Level == "" {
		level = zerolog.InfoLevel
	}
	if cfg.Log.Format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}

// redisLogger sends go-redis's internal messages (reconnect attempts) to
// zerolog at debug level, instead of the standard logger.
type redisLogger struct{ log zerolog.Logger }

func (l redisLogger) Printf(_ context.Context, format string, v ...any) {
	l.log.Debug().Msgf(format, v...)
}
