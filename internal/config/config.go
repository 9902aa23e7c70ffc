// Package config is the one home of regdns configuration: defaults, then the
// TOML file, then REGDNS_* environment variables, then command-line flags
// (applied by main through Set), validated once at startup.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Config is the whole configuration. Every field documents its default;
// config.example.toml lists them all.
type Config struct {
	DNS     DNS     `toml:"dns"`
	Redis   Redis   `toml:"redis"`
	Health  Health  `toml:"health"`
	Balance Balance `toml:"balance"`
	Cache   Cache   `toml:"cache"`
	Log     Log     `toml:"log"`
	HTTP    HTTP    `toml:"http"`
	// Zones are further zones, each answered from its own key prefixes of
	// the same Redis: [[zones]] name = "...", prefix = "...", health_prefix = "...".
	Zones []Zone `toml:"zones"`
}

// Zone is one more zone and the registry key prefixes behind it.
type Zone struct {
	// Name of the zone, e.g. "service.internal".
	Name string `toml:"name"`
	// Prefix of its service keys (default "services").
	Prefix string `toml:"prefix"`
	// HealthPrefix of its health keys (default "health").
	HealthPrefix string `toml:"health_prefix"`
}

// DNS configures the DNS server.
type DNS struct {
	// Listen is the UDP and TCP address (default "127.0.0.1:8053").
	Listen string `toml:"listen"`
	// Zone served (default "service.local").
	Zone string `toml:"zone"`
	// TTL of answers (default 5s).
	TTL Duration `toml:"ttl"`
	// NegativeTTL is the SOA minimum, how long NXDOMAIN/NODATA are cached (default 5s).
	NegativeTTL Duration `toml:"negative_ttl"`
	// MaxUDPSize caps the EDNS UDP payload size (default 1232).
	MaxUDPSize int `toml:"max_udp_size"`
	// NS is the zone's name server name (default "ns.<zone>").
	NS string `toml:"ns"`
	// MaxAnswers caps the A/AAAA records of one answer (default 8).
	MaxAnswers int `toml:"max_answers"`
	// TransferAllow lists the networks allowed AXFR/IXFR (default none).
	TransferAllow []string `toml:"transfer_allow"`
	// Forward lists upstream resolvers (host:port) for names outside the
	// zones (default none: such names are REFUSED).
	Forward []string `toml:"forward"`
	// ForwardAllow lists the client networks that may use forwarding
	// (default loopback only).
	ForwardAllow []string `toml:"forward_allow"`
	// ForwardCacheSize bounds the forwarding cache in entries (default 1000; -1 off).
	ForwardCacheSize int `toml:"forward_cache_size"`
	// MaxTCPConnections bounds concurrent TCP connections (default 1000).
	MaxTCPConnections int `toml:"max_tcp_connections"`
	// TCPIdleTimeout closes idle TCP connections (default 10s).
	TCPIdleTimeout Duration `toml:"tcp_idle_timeout"`
	// TCPReadTimeout bounds reading one query on TCP (default 2s).
	TCPReadTimeout Duration `toml:"tcp_read_timeout"`
	// Explain answers _explain.<service>.<zone> TXT (default false: it
	// reveals the registry).
	Explain bool `toml:"explain"`
	// TTLFloor is the smallest TTL of an answer cut short by a lease
	// running out (default 1s).
	TTLFloor Duration `toml:"ttl_floor"`
	// MaxTXT bounds an instance's metadata TXT in octets (default 4000).
	MaxTXT int `toml:"max_txt"`
	// RRL is UDP response rate limiting per client prefix (off by default).
	RRL RRL `toml:"rrl"`
}

// RRL configures response rate limiting (BIND/Knot style).
type RRL struct {
	// Rate is responses per second per client prefix (default 0: off).
	Rate float64 `toml:"rate"`
	// Burst is the responses a quiet prefix may send at once (default 0: Rate).
	Burst float64 `toml:"burst"`
	// Slip: every Slip-th limited response is sent truncated so real clients
	// retry over TCP (default 2; 1: all; -1: none).
	Slip int `toml:"slip"`
	// IPv4Prefix and IPv6Prefix are the client prefix lengths (default 24, 56).
	IPv4Prefix int `toml:"ipv4_prefix"`
	IPv6Prefix int `toml:"ipv6_prefix"`
}

// Redis configures the registry connection.
type Redis struct {
	// URL of Redis (default "redis://127.0.0.1:6379/0"); redis:// or rediss://,
	// with user:password and db number.
	URL string `toml:"url"`
	// KeyspaceEvents turns on keyspace notifications with CONFIG SET (default true).
	KeyspaceEvents bool `toml:"keyspace_events"`
	// Timeout bounds every Redis call (default 2s).
	Timeout Duration `toml:"timeout"`
	// Prefix of service keys (default "services").
	Prefix string `toml:"prefix"`
	// HealthPrefix of health keys (default "health").
	HealthPrefix string `toml:"health_prefix"`
	// Addrs are Sentinel addresses (with MasterName) or Cluster seed nodes
	// (with Cluster); empty means the single server of URL. URL still gives
	// the user, password, TLS (rediss://) and database of every node.
	Addrs []string `toml:"addrs"`
	// MasterName is the Sentinel master set to follow.
	MasterName string `toml:"master_name"`
	// Cluster reads a Redis Cluster through Addrs (default false).
	Cluster bool `toml:"cluster"`
	// ReadFromReplicas sends reads to replicas (Sentinel and Cluster;
	// default false). Replicas lag a little behind their master.
	ReadFromReplicas bool `toml:"read_from_replicas"`
}

// Health configures which instances are served, and the health checker
// (`regdns health`).
type Health struct {
	// Mode is healthy, healthy_or_unknown or any (default "healthy").
	Mode string `toml:"mode"`
	// Interval is how often the checker probes every instance; health keys
	// live 3 x interval (default 10s).
	Interval Duration `toml:"interval"`
	// Timeout bounds one probe (default 2s).
	Timeout Duration `toml:"timeout"`
	// Rise is how many healthy results in a row flip an instance to healthy (default 1).
	Rise int `toml:"rise"`
	// Fall is how many failed results in a row flip an instance to unhealthy (default 1).
	Fall int `toml:"fall"`
	// Concurrency bounds the probes in flight (default 64).
	Concurrency int `toml:"concurrency"`
	// Services lists the services checked; empty means all (default empty; TOML only).
	Services []string `toml:"services"`
	// LeaseKey is the Redis key of the checkers' leader lease (default "",
	// meaning "<health_prefix>-checker:<prefix>:lease").
	LeaseKey string `toml:"lease_key"`
	// LeaseTTL is the lease period: a dead checker is replaced within it (default 15s).
	LeaseTTL Duration `toml:"lease_ttl"`
	// CleanupExpired removes ids whose instance key expired from the service
	// set, as the reference discover() does (default false).
	CleanupExpired bool `toml:"cleanup_expired"`
	// PanicThreshold: when fewer than this share of a service's live
	// instances are healthy, all live ones are served (default 0: off).
	PanicThreshold float64 `toml:"panic_threshold"`
	// UnknownPriority is added to the SRV priority of instances of unknown
	// health, so healthy ones come first (default 10).
	UnknownPriority int `toml:"unknown_priority"`
	// UnhealthyPriority is added to the SRV priority of unhealthy instances
	// served in "any" or panic mode (default 20).
	UnhealthyPriority int `toml:"unhealthy_priority"`
}

// Balance configures the order of answers.
type Balance struct {
	// Strategy is round_robin, weighted, random or sticky (default "round_robin").
	Strategy string `toml:"strategy"`
	// LocalityKey is the metadata key naming an instance's zone (default
	// "": no locality). With ClientZones, same-zone instances come first.
	LocalityKey string `toml:"locality_key"`
	// ClientZones maps client networks to zones:
	// [balance.client_zones] "10.1.0.0/16" = "us-east-1a".
	ClientZones map[string]string `toml:"client_zones"`
	// Services overrides the strategy per service:
	// [balance.services.user-service] strategy = "weighted".
	Services map[string]ServiceBalance `toml:"services"`
}

// ServiceBalance is the per-service override of Balance.
type ServiceBalance struct {
	Strategy string `toml:"strategy"`
}

// Cache configures how the in-memory view is kept current.
type Cache struct {
	// MaxAge is how often every service is re-read in full (default 30s).
	MaxAge Duration `toml:"max_age"`
	// PollInterval is the re-read period when keyspace notifications are
	// unavailable (default 2s).
	PollInterval Duration `toml:"poll_interval"`
	// MaxStale is how long the last view is served while Redis is
	// unreachable, or a service lost with Redis's data is held (default 1h;
	// 0 = forever).
	MaxStale Duration `toml:"max_stale"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error (default "info").
	Level string `toml:"level"`
	// Format is console or json (default "console").
	Format string `toml:"format"`
	// Queries is the share of DNS queries logged, 0 to 1: one line per
	// sampled query, one in every 1/Queries counted (default 0: off).
	Queries float64 `toml:"queries"`
}

// HTTP configures the admin HTTP server: /metrics, /healthz, /readyz,
// /debug/services/<name>.
type HTTP struct {
	// Listen is its address (default "127.0.0.1:9153"); "" or "off" turns
	// it off.
	Listen string `toml:"listen"`
	// Pprof serves Go's profiles under /debug/pprof/ (default false: they
	// reveal the process's internals and cost CPU while a profile runs).
	Pprof bool `toml:"pprof"`
}

// Enabled reports whether the admin HTTP server runs.
func (h HTTP) Enabled() bool { return h.Listen != "" && h.Listen != "off" }

// Duration is a time.Duration written as "5s" in TOML and the environment.
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Default returns the configuration with every default set.
func Default() Config {
	return Config{
		DNS: DNS{
			Listen: "127.0.0.1:8053", Zone: "service.local",
			TTL: Duration{5 * time.Second}, NegativeTTL: Duration{5 * time.Second}, MaxUDPSize: 1232,
			MaxAnswers: 8, TransferAllow: []string{}, Forward: []string{},
			ForwardAllow: []string{"127.0.0.0/8", "::1/128"}, ForwardCacheSize: 1000,
			MaxTCPConnections: 1000, TCPIdleTimeout: Duration{10 * time.Second}, TCPReadTimeout: Duration{2 * time.Second},
			TTLFloor: Duration{time.Second}, MaxTXT: 4000,
			RRL: RRL{Slip: 2, IPv4Prefix: 24, IPv6Prefix: 56},
		},
		Redis: Redis{
			URL: "redis://127.0.0.1:6379/0", KeyspaceEvents: true, Timeout: Duration{2 * time.Second},
			Prefix: "services", HealthPrefix: "health", Addrs: []string{},
		},
		Health: Health{
			Mode: "healthy", Interval: Duration{10 * time.Second}, Timeout: Duration{2 * time.Second},
			Rise: 1, Fall: 1, Concurrency: 64, LeaseTTL: Duration{15 * time.Second},
			UnknownPriority: 10, UnhealthyPriority: 20,
		},
		Balance: Balance{Strategy: "round_robin"},
		Cache: Cache{
			MaxAge: Duration{30 * time.Second}, PollInterval: Duration{2 * time.Second}, MaxStale: Duration{time.Hour},
		},
		Log:  Log{Level: "info", Format: "console"},
		HTTP: HTTP{Listen: "127.0.0.1:9153"},
	}
}

// Load returns the defaults overlaid with the file at path (if path is not
// empty) and then with REGDNS_* variables from getenv. Unknown keys in the
// file are an error, so a typo never silently falls back to a default.
func Load(path string, getenv func(string) string) (Config, error) {
	c := Default()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("read config: %w", err)
		}
		md, err := toml.Decode(string(data), &c)
		if err != nil {
			return c, fmt.Errorf("parse config %s: %w", path, err)
		}
		if und := md.Undecoded(); len(und) > 0 {
			keys := make([]string, len(und))
			for i, k := range und {
				keys[i] = k.String()
			}
			return c, fmt.Errorf("config %s: unknown keys: %s", path, strings.Join(keys, ", "))
		}
	}
	for _, v := range c.vars() {
		if s := getenv(v.env); s != "" {
			if err := v.set(s); err != nil {
				return c, fmt.Errorf("environment %s=%q: %w", v.env, s, err)
			}
		}
	}
	return c, nil
}

// Set applies one setting by its config key ("dns.listen"), as a flag does.
func (c *Config) Set(key, value string) error {
	for _, v := range c.vars() {
		if v.key == key {
			if err := v.set(value); err != nil {
				return fmt.Errorf("%s=%q: %w", key, value, err)
			}
			return nil
		}
	}
	return fmt.Errorf("unknown setting %q", key)
}

// variable is a setting reachable from the environment and flags.
type variable struct {
	key, env string
	set      func(string) error
}

func (c *Config) vars() []variable {
	str := func(p *string) func(string) error { return func(s string) error { *p = s; return nil } }
	dur := func(p *Duration) func(string) error {
		return func(s string) error { return p.UnmarshalText([]byte(s)) }
	}
	boolean := func(p *bool) func(string) error {
		return func(s string) error {
			switch strings.ToLower(s) {
			case "1", "true", "yes", "on":
				*p = true
			case "0", "false", "no", "off":
				*p = false
			default:
				return errors.New("not a boolean")
			}
			return nil
		}
	}
	float := func(p *float64) func(string) error {
		return func(s string) error {
			v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
			if err != nil {
				return err
			}
			*p = v
			return nil
		}
	}
	// A list from the environment or a flag is comma-separated.
	strs := func(p *[]string) func(string) error {
		return func(s string) error {
			*p = nil
			for item := range strings.SplitSeq(s, ",") {
				if item = strings.TrimSpace(item); item != "" {
					*p = append(*p, item)
				}
			}
			return nil
		}
	}
	integer := func(p *int) func(string) error {
		// strconv, not fmt.Sscan: Sscan stops at the first non-digit, so
		// "1e3" would silently be 1 and "1232abc" 1232.
		return func(s string) error {
			v, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil {
				return err
			}
			*p = v
			return nil
		}
	}
	list := []struct {
		key string
		set func(string) error
	}{
		{"dns.listen", str(&c.DNS.Listen)},
		{"dns.zone", str(&c.DNS.Zone)},
		{"dns.ttl", dur(&c.DNS.TTL)},
		{"dns.negative_ttl", dur(&c.DNS.NegativeTTL)},
		{"dns.max_udp_size", integer(&c.DNS.MaxUDPSize)},
		{"dns.ns", str(&c.DNS.NS)},
		{"dns.max_answers", integer(&c.DNS.MaxAnswers)},
		{"dns.transfer_allow", strs(&c.DNS.TransferAllow)},
		{"dns.forward", strs(&c.DNS.Forward)},
		{"dns.forward_allow", strs(&c.DNS.ForwardAllow)},
		{"dns.forward_cache_size", integer(&c.DNS.ForwardCacheSize)},
		{"dns.max_tcp_connections", integer(&c.DNS.MaxTCPConnections)},
		{"dns.tcp_idle_timeout", dur(&c.DNS.TCPIdleTimeout)},
		{"dns.tcp_read_timeout", dur(&c.DNS.TCPReadTimeout)},
		{"dns.explain", boolean(&c.DNS.Explain)},
		{"dns.ttl_floor", dur(&c.DNS.TTLFloor)},
		{"dns.max_txt", integer(&c.DNS.MaxTXT)},
		{"dns.rrl.rate", float(&c.DNS.RRL.Rate)},
		{"dns.rrl.burst", float(&c.DNS.RRL.Burst)},
		{"dns.rrl.slip", integer(&c.DNS.RRL.Slip)},
		{"dns.rrl.ipv4_prefix", integer(&c.DNS.RRL.IPv4Prefix)},
		{"dns.rrl.ipv6_prefix", integer(&c.DNS.RRL.IPv6Prefix)},
		{"balance.locality_key", str(&c.Balance.LocalityKey)},
		{"health.panic_threshold", float(&c.Health.PanicThreshold)},
		{"health.unknown_priority", integer(&c.Health.UnknownPriority)},
		{"health.unhealthy_priority", integer(&c.Health.UnhealthyPriority)},
		{"redis.url", str(&c.Redis.URL)},
		{"redis.keyspace_events", boolean(&c.Redis.KeyspaceEvents)},
		{"redis.timeout", dur(&c.Redis.Timeout)},
		{"redis.prefix", str(&c.Redis.Prefix)},
		{"redis.health_prefix", str(&c.Redis.HealthPrefix)},
		{"redis.addrs", strs(&c.Redis.Addrs)},
		{"redis.master_name", str(&c.Redis.MasterName)},
		{"redis.cluster", boolean(&c.Redis.Cluster)},
		{"redis.read_from_replicas", boolean(&c.Redis.ReadFromReplicas)},
		{"health.mode", str(&c.Health.Mode)},
		{"health.interval", dur(&c.Health.Interval)},
		{"health.timeout", dur(&c.Health.Timeout)},
		{"health.rise", integer(&c.Health.Rise)},
		{"health.fall", integer(&c.Health.Fall)},
		{"health.concurrency", integer(&c.Health.Concurrency)},
		{"health.lease_key", str(&c.Health.LeaseKey)},
		{"health.lease_ttl", dur(&c.Health.LeaseTTL)},
		{"health.cleanup_expired", boolean(&c.Health.CleanupExpired)},
		{"balance.strategy", str(&c.Balance.Strategy)},
		{"cache.max_age", dur(&c.Cache.MaxAge)},
		{"cache.poll_interval", dur(&c.Cache.PollInterval)},
		{"cache.max_stale", dur(&c.Cache.MaxStale)},
		{"log.level", str(&c.Log.Level)},
		{"log.format", str(&c.Log.Format)},
		{"log.queries", float(&c.Log.Queries)},
		{"http.listen", str(&c.HTTP.Listen)},
		{"http.pprof", boolean(&c.HTTP.Pprof)},
	}
	out := make([]variable, len(list))
	for i, v := range list {
		env := "REGDNS_" + strings.ToUpper(strings.NewReplacer(".", "_").Replace(v.key))
		out[i] = variable{key: v.key, env: env, set: v.set}
	}
	return out
}

// EnvNames lists every REGDNS_* variable, for documentation and tests.
func EnvNames() []string {
	var c Config
	vars := c.vars()
	out := make([]string, len(vars))
	for i, v := range vars {
		out[i] = v.env
	}
	return out
}

// Validate checks what can be checked without side effects. Values with
// their own parsers (health mode, strategy, log level) are checked where they
// are parsed, in main, so each has one home.
func (c *Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.DNS.Listen); err != nil {
		errs = append(errs, fmt.Errorf("dns.listen %q: %w", c.DNS.Listen, err))
	}
	if strings.Trim(c.DNS.Zone, ".") == "" {
		errs = append(errs, errors.New("dns.zone must not be empty"))
	}
	if c.DNS.TTL.Duration < time.Second || c.DNS.NegativeTTL.Duration < time.Second {
		errs = append(errs, errors.New("dns.ttl and dns.negative_ttl must be at least 1s"))
	}
	if c.DNS.MaxUDPSize < 512 || c.DNS.MaxUDPSize > 65535 {
		errs = append(errs, fmt.Errorf("dns.max_udp_size %d: want 512..65535", c.DNS.MaxUDPSize))
	}
	if u, err := url.Parse(c.Redis.URL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
		errs = append(errs, fmt.Errorf("redis.url %q: want redis://host:port/db or rediss://", RedactURL(c.Redis.URL)))
	}
	if c.Redis.Timeout.Duration <= 0 || c.Cache.MaxAge.Duration <= 0 || c.Cache.PollInterval.Duration <= 0 {
		errs = append(errs, errors.New("redis.timeout, cache.max_age and cache.poll_interval must be positive"))
	}
	switch {
	case c.Redis.Cluster && c.Redis.MasterName != "":
		errs = append(errs, errors.New("redis.cluster and redis.master_name exclude each other"))
	case (c.Redis.Cluster || c.Redis.MasterName != "") && len(c.Redis.Addrs) == 0:
		errs = append(errs, errors.New("redis.addrs must list the seed nodes (cluster) or sentinels (master_name)"))
	case len(c.Redis.Addrs) > 0 && !c.Redis.Cluster && c.Redis.MasterName == "":
		errs = append(errs, errors.New("redis.addrs needs redis.master_name (Sentinel) or redis.cluster = true"))
	}
	if c.Redis.Prefix == "" || c.Redis.HealthPrefix == "" {
		errs = append(errs, errors.New("redis.prefix and redis.health_prefix must not be empty"))
	}
	if c.Health.Interval.Duration <= 0 || c.Health.Timeout.Duration <= 0 || c.Health.LeaseTTL.Duration <= 0 {
		errs = append(errs, errors.New("health.interval, health.timeout and health.lease_ttl must be positive"))
	}
	if c.Health.Rise < 1 || c.Health.Fall < 1 || c.Health.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("health.rise %d, health.fall %d, health.concurrency %d: each must be at least 1",
			c.Health.Rise, c.Health.Fall, c.Health.Concurrency))
	}
	for _, s := range c.Health.Services {
		if s == "" {
			errs = append(errs, errors.New("health.services must not contain an empty name"))
			break
		}
	}
	switch c.Log.Level {
	case "trace", "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level %q: want debug, info, warn or error", c.Log.Level))
	}
	if c.DNS.MaxAnswers < 1 || c.DNS.MaxTCPConnections < 1 {
		errs = append(errs, errors.New("dns.max_answers and dns.max_tcp_connections must be at least 1"))
	}
	if c.DNS.TCPIdleTimeout.Duration <= 0 || c.DNS.TCPReadTimeout.Duration <= 0 {
		errs = append(errs, errors.New("dns.tcp_idle_timeout and dns.tcp_read_timeout must be positive"))
	}
	for _, key := range []struct {
		name string
		list []string
	}{{"dns.transfer_allow", c.DNS.TransferAllow}, {"dns.forward_allow", c.DNS.ForwardAllow}} {
		if _, err := Prefixes(key.list); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key.name, err))
		}
	}
	for _, up := range c.DNS.Forward {
		if _, _, err := net.SplitHostPort(up); err != nil {
			errs = append(errs, fmt.Errorf("dns.forward %q: want host:port: %w", up, err))
		}
	}
	zones := map[string]bool{strings.ToLower(strings.Trim(c.DNS.Zone, ".")): true}
	for i, z := range c.Zones {
		name := strings.ToLower(strings.Trim(z.Name, "."))
		switch {
		case name == "":
			errs = append(errs, fmt.Errorf("zones[%d]: name must not be empty", i))
		case zones[name]:
			errs = append(errs, fmt.Errorf("zones[%d]: zone %q is served twice", i, z.Name))
		}
		zones[name] = true
	}
	if r := c.DNS.RRL; r.Rate < 0 || r.Burst < 0 || r.IPv4Prefix < 1 || r.IPv4Prefix > 32 || r.IPv6Prefix < 1 || r.IPv6Prefix > 128 {
		errs = append(errs, errors.New("dns.rrl: rate and burst must not be negative, ipv4_prefix 1..32, ipv6_prefix 1..128"))
	}
	if c.Health.PanicThreshold < 0 || c.Health.PanicThreshold > 1 {
		errs = append(errs, fmt.Errorf("health.panic_threshold %v: want 0 (off) to 1", c.Health.PanicThreshold))
	}
	for _, p := range []struct {
		key string
		v   int
	}{{"health.unknown_priority", c.Health.UnknownPriority}, {"health.unhealthy_priority", c.Health.UnhealthyPriority}} {
		if p.v < 0 || p.v > 65535 {
			errs = append(errs, fmt.Errorf("%s %d: want 0..65535", p.key, p.v))
		}
	}
	if c.DNS.TTLFloor.Duration < time.Second || c.DNS.MaxTXT < 255 {
		errs = append(errs, errors.New("dns.ttl_floor must be at least 1s and dns.max_txt at least 255"))
	}
	for network := range c.Balance.ClientZones {
		if _, err := Prefixes([]string{network}); err != nil {
			errs = append(errs, fmt.Errorf("balance.client_zones: %w", err))
		}
	}
	if c.Log.Format != "console" && c.Log.Format != "json" {
		errs = append(errs, fmt.Errorf("log.format %q: want console or json", c.Log.Format))
	}
	if !(c.Log.Queries >= 0 && c.Log.Queries <= 1) { // NaN too
		errs = append(errs, fmt.Errorf("log.queries %v: want 0 (off) to 1 (every query)", c.Log.Queries))
	}
	if c.HTTP.Enabled() {
		if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
			errs = append(errs, fmt.Errorf("http.listen %q: want host:port, or off: %w", c.HTTP.Listen, err))
		}
	}
	return errors.Join(errs...)
}

// RedactURL hides the password of a Redis URL, for logs and errors.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// Prefixes parses a list of networks ("10.0.0.0/8") or single addresses.
func Prefixes(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a network nor an address", s)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// ZonePrefixes returns the key prefixes of zone z, defaults filled in.
func (z Zone) ZonePrefixes() (prefix, healthPrefix string) {
	prefix, healthPrefix = z.Prefix, z.HealthPrefix
	if prefix == "" {
		prefix = "services"
	}
	if healthPrefix == "" {
		healthPrefix = "health"
	}
	return prefix, healthPrefix
}
