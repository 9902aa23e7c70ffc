package config

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/stretchr/testify/require"
)

// env is a fake environment for Load.
func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

// noEnv is an empty environment.
func noEnv(string) string { return "" }

// writeFile writes a config file into a fresh directory and returns its path.
func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "regdns.toml")
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

func TestDefault(t *testing.T) {
	t.Parallel()
	c := Default()
	require.Equal(t, "127.0.0.1:8053", c.DNS.Listen)
	require.Equal(t, "service.local", c.DNS.Zone)
	require.Equal(t, 5*time.Second, c.DNS.TTL.Duration)
	require.Equal(t, 5*time.Second, c.DNS.NegativeTTL.Duration)
	require.Equal(t, 1232, c.DNS.MaxUDPSize)
	require.Empty(t, c.DNS.NS)
	require.Equal(t, "redis://127.0.0.1:6379/0", c.Redis.URL)
	require.True(t, c.Redis.KeyspaceEvents)
	require.Equal(t, 2*time.Second, c.Redis.Timeout.Duration)
	require.Equal(t, "services", c.Redis.Prefix)
	require.Equal(t, "health", c.Redis.HealthPrefix)
	require.Equal(t, "healthy", c.Health.Mode)
	require.Equal(t, "round_robin", c.Balance.Strategy)
	require.Empty(t, c.Balance.Services)
	require.Equal(t, 30*time.Second, c.Cache.MaxAge.Duration)
	require.Equal(t, 2*time.Second, c.Cache.PollInterval.Duration)
	require.Equal(t, "info", c.Log.Level)
	require.Equal(t, "console", c.Log.Format)
	require.NoError(t, c.Validate())

	// No file, no environment: the defaults.
	got, err := Load("", noEnv)
	require.NoError(t, err)
	require.Equal(t, Default(), got)
}

// TestExampleFile: config.example.toml shows every key with its default, so
// it must load to exactly Default(), and every key in it must be settable
// from the environment and flags.
func TestExampleFile(t *testing.T) {
	t.Parallel()
	const path = "../../config.example.toml"
	got, err := Load(path, noEnv)
	require.NoError(t, err)
	require.Equal(t, Default(), got)

	var raw map[string]any
	md, err := toml.DecodeFile(path, &raw)
	require.NoError(t, err)
	c := Default()
	for _, k := range md.Keys() {
		if md.Type(k...) == "Hash" {
			continue
		}
		key := k.String()
		var value string
		switch v := md.Type(k...); v {
		case "String":
			value = raw[k[0]].(map[string]any)[k[1]].(string)
		case "Bool":
			value = "true"
		case "Integer":
			value = "1232"
		case "Float":
			value = "0.5"
		case "Array":
			value = "127.0.0.1:53"
		default:
			t.Fatalf("key %s of type %s", key, v)
		}
		require.NoError(t, c.Set(key, value), "key %s of the example has no env/flag setting", key)
	}
}

func TestLoadFile(t *testing.T) {
	t.Parallel()
	path := writeFile(t, `
[dns]
listen = "0.0.0.0:53"
zone = "service.internal"
ttl = "30s"
max_udp_size = 1400

[redis]
url = "rediss://user:pw@redis.example:6380/2"
keyspace_events = false

[balance]
strategy = "weighted"

[balance.services.user-service]
strategy = "random"

[log]
format = "json"
`)
	got, err := Load(path, noEnv)
	require.NoError(t, err)

	want := Default()
	want.DNS.Listen = "0.0.0.0:53"
	want.DNS.Zone = "service.internal"
	want.DNS.TTL = Duration{30 * time.Second}
	want.DNS.MaxUDPSize = 1400
	want.Redis.URL = "rediss://user:pw@redis.example:6380/2"
	want.Redis.KeyspaceEvents = false
	want.Balance.Strategy = "weighted"
	want.Balance.Services = map[string]ServiceBalance{"user-service": {Strategy: "random"}}
	want.Log.Format = "json"
	require.Equal(t, want, got)
	require.NoError(t, got.Validate())
}

func TestLoadEnv(t *testing.T) {
	t.Parallel()
	got, err := Load("", env(map[string]string{
		"REGDNS_DNS_LISTEN":            "127.0.0.1:5353",
		"REGDNS_DNS_TTL":               "1m",
		"REGDNS_DNS_MAX_UDP_SIZE":      " 4096 ",
		"REGDNS_DNS_NS":                "ns1.example.net",
		"REGDNS_REDIS_URL":             "redis://10.0.0.5:6379/1",
		"REGDNS_REDIS_KEYSPACE_EVENTS": "off",
		"REGDNS_REDIS_PREFIX":          "svc",
		"REGDNS_HEALTH_MODE":           "any",
		"REGDNS_BALANCE_STRATEGY":      "random",
		"REGDNS_CACHE_MAX_AGE":         "1m30s",
		"REGDNS_LOG_LEVEL":             "debug",
		"REGDNS_DNS_ZONE":              "", // empty is unset
		"REGDNS_UNKNOWN":               "ignored",
	}))
	require.NoError(t, err)
	want := Default()
	want.DNS.Listen = "127.0.0.1:5353"
	want.DNS.TTL = Duration{time.Minute}
	want.DNS.MaxUDPSize = 4096
	want.DNS.NS = "ns1.example.net"
	want.Redis.URL = "redis://10.0.0.5:6379/1"
	want.Redis.KeyspaceEvents = false
	want.Redis.Prefix = "svc"
	want.Health.Mode = "any"
	want.Balance.Strategy = "random"
	want.Cache.MaxAge = Duration{90 * time.Second}
	want.Log.Level = "debug"
	require.Equal(t, want, got)

	for _, s := range []string{"1", "true", "YES", "On"} {
		c, err := Load("", env(map[string]string{"REGDNS_REDIS_KEYSPACE_EVENTS": s}))
		require.NoError(t, err)
		require.True(t, c.Redis.KeyspaceEvents, s)
	}
	for _, s := range []string{"0", "false", "no", "OFF"} {
		c, err := Load("", env(map[string]string{"REGDNS_REDIS_KEYSPACE_EVENTS": s}))
		require.NoError(t, err)
		require.False(t, c.Redis.KeyspaceEvents, s)
	}
}

// TestPrecedence: flags (Set) beat the environment, which beats the file,
// which beats the defaults.
func TestPrecedence(t *testing.T) {
	t.Parallel()
	path := writeFile(t, `
[dns]
listen = "10.0.0.1:53"
zone = "from.file"
ttl = "10s"
[log]
level = "warn"
`)
	c, err := Load(path, env(map[string]string{
		"REGDNS_DNS_LISTEN": "10.0.0.2:53",
		"REGDNS_DNS_TTL":    "20s",
	}))
	require.NoError(t, err)
	require.NoError(t, c.Set("dns.listen", "10.0.0.3:53"))

	require.Equal(t, "10.0.0.3:53", c.DNS.Listen, "flag beats env and file")
	require.Equal(t, 20*time.Second, c.DNS.TTL.Duration, "env beats file")
	require.Equal(t, "from.file", c.DNS.Zone, "file beats default")
	require.Equal(t, "warn", c.Log.Level, "file beats default")
	require.Equal(t, "redis://127.0.0.1:6379/0", c.Redis.URL, "default")
}

func TestSet(t *testing.T) {
	t.Parallel()
	c := Default()
	require.NoError(t, c.Set("dns.negative_ttl", "2s"))
	require.NoError(t, c.Set("dns.max_udp_size", "512"))
	require.NoError(t, c.Set("redis.keyspace_events", "no"))
	require.NoError(t, c.Set("cache.poll_interval", "500ms"))
	require.Equal(t, 2*time.Second, c.DNS.NegativeTTL.Duration)
	require.Equal(t, 512, c.DNS.MaxUDPSize)
	require.False(t, c.Redis.KeyspaceEvents)
	require.Equal(t, 500*time.Millisecond, c.Cache.PollInterval.Duration)

	err := c.Set("dns.listn", "x")
	require.ErrorContains(t, err, `unknown setting "dns.listn"`)

	for _, tc := range []struct{ key, value string }{
		{"dns.ttl", "5"},
		{"dns.ttl", "five seconds"},
		{"redis.timeout", ""},
		{"redis.keyspace_events", "maybe"},
		{"dns.max_udp_size", "big"},
		{"dns.max_udp_size", "1232abc"},
		{"dns.max_udp_size", "1e3"},
		{"dns.max_udp_size", "12 34"},
	} {
		before := c
		err := c.Set(tc.key, tc.value)
		require.Error(t, err, "%s=%q", tc.key, tc.value)
		require.ErrorContains(t, err, tc.key)
		require.ErrorContains(t, err, tc.value)
		require.Equal(t, before, c, "a failed Set changes nothing")
	}
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, file string
		env        map[string]string
		want       []string
	}{
		{
			name: "unknown key",
			file: "[dns]\nlisten = \"127.0.0.1:53\"\nlisten_addr = \"x\"\n",
			want: []string{"unknown keys", "dns.listen_addr"},
		},
		{
			name: "unknown section",
			file: "[dsn]\nzone = \"x\"\n",
			want: []string{"unknown keys", "dsn"},
		},
		{
			name: "unknown per-service key",
			file: "[balance.services.web]\nstrategy = \"random\"\nweight = 3\n",
			want: []string{"unknown keys", "balance.services.web.weight"},
		},
		{
			name: "bad duration in file",
			file: "[dns]\nttl = \"5\"\n",
			want: []string{"parse config", "missing unit"},
		},
		{
			name: "wrong type in file",
			file: "[dns]\nmax_udp_size = \"1232\"\n",
			want: []string{"parse config", "max_udp_size"},
		},
		{
			name: "not TOML",
			file: "[dns\n",
			want: []string{"parse config"},
		},
		{
			name: "bad duration in env",
			env:  map[string]string{"REGDNS_CACHE_MAX_AGE": "30"},
			want: []string{"REGDNS_CACHE_MAX_AGE", `"30"`, "missing unit"},
		},
		{
			name: "bad bool in env",
			env:  map[string]string{"REGDNS_REDIS_KEYSPACE_EVENTS": "sometimes"},
			want: []string{"REGDNS_REDIS_KEYSPACE_EVENTS", "not a boolean"},
		},
		{
			name: "bad int in env",
			env:  map[string]string{"REGDNS_DNS_MAX_UDP_SIZE": "1232abc"},
			want: []string{"REGDNS_DNS_MAX_UDP_SIZE", "1232abc"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := ""
			if tc.file != "" {
				path = writeFile(t, tc.file)
			}
			_, err := Load(path, env(tc.env))
			require.Error(t, err)
			for _, w := range tc.want {
				require.ErrorContains(t, err, w)
			}
		})
	}

	_, err := Load(filepath.Join(t.TempDir(), "missing.toml"), noEnv)
	require.ErrorIs(t, err, os.ErrNotExist)
	require.ErrorContains(t, err, "read config")
}

func TestValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   []string
		hidden string // must not appear in the error
	}{
		{"listen without port", func(c *Config) { c.DNS.Listen = "127.0.0.1" }, []string{"dns.listen", `"127.0.0.1"`}, ""},
		{"listen empty", func(c *Config) { c.DNS.Listen = "" }, []string{"dns.listen"}, ""},
		{"zone empty", func(c *Config) { c.DNS.Zone = "." }, []string{"dns.zone"}, ""},
		{"ttl zero", func(c *Config) { c.DNS.TTL = Duration{} }, []string{"dns.ttl"}, ""},
		{"negative ttl below 1s", func(c *Config) { c.DNS.NegativeTTL = Duration{500 * time.Millisecond} }, []string{"dns.negative_ttl"}, ""},
		{"udp size small", func(c *Config) { c.DNS.MaxUDPSize = 511 }, []string{"dns.max_udp_size 511"}, ""},
		{"udp size big", func(c *Config) { c.DNS.MaxUDPSize = 65536 }, []string{"dns.max_udp_size 65536"}, ""},
		{
			"redis scheme", func(c *Config) { c.Redis.URL = "http://user:hunter2@redis:6379/0" },
			[]string{"redis.url", "http://user:xxxxx@redis:6379/0"}, "hunter2",
		},
		{"redis no scheme", func(c *Config) { c.Redis.URL = "127.0.0.1:6379" }, []string{"redis.url"}, ""},
		{"redis timeout", func(c *Config) { c.Redis.Timeout = Duration{} }, []string{"redis.timeout"}, ""},
		{"max age", func(c *Config) { c.Cache.MaxAge = Duration{-time.Second} }, []string{"cache.max_age"}, ""},
		{"prefix", func(c *Config) { c.Redis.Prefix = "" }, []string{"redis.prefix"}, ""},
		{"log level", func(c *Config) { c.Log.Level = "verbose" }, []string{"log.level", `"verbose"`}, ""},
		{"log level case", func(c *Config) { c.Log.Level = "INFO" }, []string{"log.level"}, ""},
		{"log format", func(c *Config) { c.Log.Format = "text" }, []string{"log.format", `"text"`}, ""},
		{
			"several at once", func(c *Config) { c.DNS.Listen = "x"; c.Log.Level = "loud" },
			[]string{"dns.listen", "log.level"}, "",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.mutate(&c)
			err := c.Validate()
			require.Error(t, err)
			for _, w := range tc.want {
				require.ErrorContains(t, err, w)
			}
			if tc.hidden != "" {
				require.NotContains(t, err.Error(), tc.hidden)
			}
		})
	}

	for _, ok := range []func(*Config){
		func(c *Config) { c.DNS.Listen = "[::1]:53" },
		func(c *Config) { c.DNS.Listen = ":8053" },
		func(c *Config) { c.DNS.Zone = "service.internal." },
		func(c *Config) { c.Redis.URL = "rediss://:pw@redis.example:6380/3" },
		func(c *Config) { c.DNS.MaxUDPSize = 512 },
		func(c *Config) { c.DNS.MaxUDPSize = 65535 },
		func(c *Config) { c.Log.Level = "error"; c.Log.Format = "json" },
	} {
		c := Default()
		ok(&c)
		require.NoError(t, c.Validate())
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"redis://user:s3cret@redis.example:6379/0", "redis://user:xxxxx@redis.example:6379/0"},
		{"rediss://:s3cret@redis.example:6380/2", "rediss://:xxxxx@redis.example:6380/2"},
		{"redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"},
		{"redis://user@redis.example:6379", "redis://user@redis.example:6379"},
	} {
		got := RedactURL(tc.in)
		require.Equal(t, tc.want, got)
		require.NotContains(t, got, "s3cret")
	}
	got := RedactURL("redis://user:s3cret@host:port:bad/0")
	require.NotContains(t, got, "s3cret")
}

func TestEnvNames(t *testing.T) {
	t.Parallel()
	names := EnvNames()
	require.Contains(t, names, "REGDNS_DNS_LISTEN")
	require.Contains(t, names, "REGDNS_DNS_NEGATIVE_TTL")
	require.Contains(t, names, "REGDNS_REDIS_HEALTH_PREFIX")
	require.Contains(t, names, "REGDNS_LOG_FORMAT")
	require.Len(t, slices.Compact(slices.Sorted(slices.Values(names))), len(names), "unique")
	var c Config
	for _, v := range c.vars() {
		n := v.env
		require.True(t, strings.HasPrefix(n, "REGDNS_"), n)
		require.Equal(t, strings.ToUpper(n), n)
		require.Equal(t, "REGDNS_"+strings.ToUpper(strings.ReplaceAll(v.key, ".", "_")), n)
		// Each variable is reachable through Load.
		env := map[string]string{n: valueFor(v.key)}
		_, err := Load("", func(k string) string { return env[k] })
		require.NoError(t, err, "variable %s, key %s", n, v.key)
	}
}

// valueFor returns a valid value for a setting.
func valueFor(key string) string {
	switch {
	case strings.HasSuffix(key, "ttl"), strings.HasSuffix(key, "timeout"), strings.HasSuffix(key, "ttl_floor"),
		strings.HasSuffix(key, "max_age"), strings.HasSuffix(key, "interval"), key == "cache.max_stale":
		return "3s"
	case key == "redis.keyspace_events":
		return "false"
	case key == "dns.max_udp_size":
		return "1400"
	case strings.HasPrefix(key, "dns.max_"), key == "dns.forward_cache_size", strings.HasPrefix(key, "dns.rrl."),
		key == "health.rise", key == "health.fall", key == "health.concurrency":
		return "3"
	case key == "dns.forward":
		return "192.0.2.53:53"
	case strings.HasSuffix(key, "_allow"):
		return "127.0.0.0/8,::1"
	case key == "health.cleanup_expired", key == "dns.explain", key == "http.pprof", key == "redis.cluster", key == "redis.read_from_replicas":
		return "true"
	case key == "health.panic_threshold", key == "log.queries":
		return "0.5"
	case key == "health.unknown_priority", key == "health.unhealthy_priority", key == "dns.max_txt":
		return "300"
	}
	return "x"
}

func TestDurationText(t *testing.T) {
	t.Parallel()
	var d Duration
	require.NoError(t, d.UnmarshalText([]byte("1m30s")))
	require.Equal(t, 90*time.Second, d.Duration)
	b, err := d.MarshalText()
	require.NoError(t, err)
	require.Equal(t, "1m30s", string(b))
	require.Error(t, d.UnmarshalText([]byte("soon")))
	require.Equal(t, 90*time.Second, d.Duration, "unchanged on error")
}

func TestHTTPListenAndQueryLog(t *testing.T) {
	t.Parallel()
	c := Default()
	require.Equal(t, "127.0.0.1:9153", c.HTTP.Listen)
	require.True(t, c.HTTP.Enabled())
	require.Zero(t, c.Log.Queries, "the query log is off by default")
	for _, off := range []string{"", "off"} {
		c := Default()
		require.NoError(t, c.Set("http.listen", off))
		require.False(t, c.HTTP.Enabled())
		require.NoError(t, c.Validate())
	}
	got, err := Load("", func(k string) string {
		return map[string]string{"REGDNS_HTTP_LISTEN": "0.0.0.0:9999", "REGDNS_LOG_QUERIES": "0.01"}[k]
	})
	require.NoError(t, err)
	require.Equal(t, "0.0.0.0:9999", got.HTTP.Listen)
	require.InDelta(t, 0.01, got.Log.Queries, 0)
	require.NoError(t, got.Validate())

	for _, bad := range []func(*Config){
		func(c *Config) { c.HTTP.Listen = "9153" },
		func(c *Config) { c.Log.Queries = 1.5 },
		func(c *Config) { c.Log.Queries = -0.1 },
		func(c *Config) { c.Log.Queries = math.NaN() },
	} {
		c := Default()
		bad(&c)
		require.Error(t, c.Validate())
	}
}
