package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/regdns/regdns/internal/redistest"
)

// runList runs `regdns list args...` and returns its stdout.
func runList(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut lockedBuffer
	code := run(context.Background(), append([]string{"list"}, args...), func(string) string { return "" }, &out, &errOut)
	require.Zero(t, code, errOut.String())
	return out.String()
}

// One registry holding every kind of entry list tells apart: instances the
// reference Python writer registered (with and without a health key), an id
// whose key expired, malformed documents, and a "set" of the wrong type.
func TestListShowsLiveExpiredAndMalformedInstances(t *testing.T) {
	rs := redistest.Start(t)
	client := rs.Client(t)
	ctx := context.Background()
	ref := redistest.Reference{URL: rs.URL()}
	healthy := ref.Register(t, "user-service", "127.0.0.5", 8080, map[string]any{"version": "1.0.0", "weight": 3}, 30)
	ref.SetHealth(t, "user-service", healthy, "healthy", 10)
	v6 := ref.Register(t, "user-service", "2001:db8::2", 443, nil, 20)
	sick := ref.Register(t, "billing", "10.7.0.1", 9090, nil, 30)
	ref.SetHealth(t, "billing", sick, "unhealthy", 10)
	// The id of an instance whose heartbeats stopped: its key is gone, it
	// is still in the set (no reader has cleaned it up).
	require.NoError(t, client.SAdd(ctx, "services:user-service", "gone-1").Err())
	require.NoError(t, client.SetEx(ctx, "services:billing:instances:badjson", `{"host": "10.7.0.2", "port":`, 30*time.Second).Err())
	require.NoError(t, client.SetEx(ctx, "services:billing:instances:port0", `{"host": "10.7.0.3", "port": 0, "metadata": {}}`, 30*time.Second).Err())
	require.NoError(t, client.HSet(ctx, "services:billing:instances:hash", "host", "x").Err())
	require.NoError(t, client.SAdd(ctx, "services:billing", "badjson", "port0", "hash").Err())
	require.NoError(t, client.Set(ctx, "health:billing:port0", "not json", 0).Err())
	require.NoError(t, client.Set(ctx, "services:not-a-set", "x", 0).Err())
	require.NoError(t, client.Set(ctx, "mesh:routes:a:b", "{}", 0).Err())

	// -o json: machine-readable, durations in seconds.
	var rows []map[string]any
	require.NoError(t, json.Unmarshal([]byte(runList(t, "-redis", rs.URL(), "-o", "json")), &rows))
	byID := map[string]map[string]any{}
	var order []string
	for _, r := range rows {
		byID[r["instance"].(string)] = r
		order = append(order, r["service"].(string)+"/"+r["instance"].(string))
	}
	var want []string
	for _, id := range sorted(sick, "badjson", "hash", "port0") {
		want = append(want, "billing/"+id)
	}
	for _, id := range sorted(healthy, v6, "gone-1") {
		want = append(want, "user-service/"+id)
	}
	require.Equal(t, want, order, "sorted by service, then instance; keys that are not sets and other keys are not listed")

	h := byID[healthy]
	require.Equal(t, "user-service", h["service"])
	require.Equal(t, "127.0.0.5:8080", h["address"])
	require.Equal(t, "127.0.0.5", h["host"])
	require.Equal(t, 8080.0, h["port"])
	require.Equal(t, map[string]any{"version": "1.0.0", "weight": 3.0}, h["metadata"])
	require.Equal(t, "healthy", h["health"])
	require.Equal(t, "live", h["status"])
	require.InDelta(t, 0, h["age"], 10, "seconds since last_heartbeat")
	require.Greater(t, h["ttl"], 20.0)
	require.LessOrEqual(t, h["ttl"], 30.0)
	require.NotContains(t, h, "error")

	require.Equal(t, "[2001:db8::2]:443", byID[v6]["address"])
	require.Equal(t, "unknown", byID[v6]["health"], "no health key")
	require.LessOrEqual(t, byID[v6]["ttl"], 20.0)
	require.Equal(t, "unhealthy", byID[sick]["health"])

	g := byID["gone-1"]
	require.Equal(t, "expired", g["status"])
	require.Nil(t, g["age"])
	require.Nil(t, g["ttl"])
	require.Equal(t, "", g["address"])

	require.Equal(t, "malformed", byID["badjson"]["status"])
	require.Contains(t, byID["badjson"]["error"], "instance JSON")
	require.Greater(t, byID["badjson"]["ttl"], 0.0, "the malformed key's TTL is still shown")
	require.Equal(t, "malformed", byID["port0"]["status"])
	require.Contains(t, byID["port0"]["error"], "port 0 is not 1..65535")
	require.Equal(t, "unknown", byID["port0"]["health"])
	require.Contains(t, byID["port0"]["health_error"], "health JSON")
	require.Equal(t, "malformed", byID["hash"]["status"])
	require.Equal(t, "instance key is not a string", byID["hash"]["error"])

	// The table: the same rows, for people.
	table := runList(t, "-redis", rs.URL())
	lines := strings.Split(strings.TrimRight(table, "\n"), "\n")
	require.Len(t, lines, 1+len(rows))
	require.Regexp(t, `^SERVICE\s+INSTANCE\s+ADDRESS\s+HEALTH\s+AGE\s+TTL\s+STATUS$`, lines[0])
	row := func(id string) string {
		for _, l := range lines {
			if strings.Contains(l, " "+id+" ") {
				return l
			}
		}
		t.Fatalf("no row for %s in\n%s", id, table)
		return ""
	}
	require.Regexp(t, `^user-service\s+`+healthy+`\s+127\.0\.0\.5:8080\s+healthy\s+\d+s\s+(2\d|30)s\s+live$`, row(healthy))
	require.Regexp(t, `^user-service\s+`+v6+`\s+\[2001:db8::2\]:443\s+unknown\s+\d+s\s+\d+s\s+live$`, row(v6))
	require.Regexp(t, `^user-service\s+gone-1\s+-\s+unknown\s+-\s+-\s+expired$`, row("gone-1"))
	require.Regexp(t, `^billing\s+badjson\s+-\s+unknown\s+-\s+\d+s\s+malformed: instance JSON: `, row("badjson"))
	require.Regexp(t, `^billing\s+port0\s+-\s+unknown \(bad health key\)\s+-\s+\d+s\s+malformed: port 0 is not 1\.\.65535$`, row("port0"))
	require.Regexp(t, `^billing\s+hash\s+-\s+unknown\s+-\s+-\s+malformed: instance key is not a string$`, row("hash"))
	// Columns line up.
	col := strings.Index(lines[0], "STATUS")
	for _, l := range lines[1:] {
		require.Regexp(t, regexp.MustCompile(`^(live|expired|malformed)`), l[col:], "STATUS column of %q", l)
	}

	// One service, flags after it; a named key that is not a set is shown
	// as malformed rather than skipped silently.
	rows = nil
	require.NoError(t, json.Unmarshal([]byte(runList(t, "-redis", rs.URL(), "user-service", "-o", "json")), &rows))
	require.Len(t, rows, 3)
	for _, r := range rows {
		require.Equal(t, "user-service", r["service"])
	}
	rows = nil
	require.NoError(t, json.Unmarshal([]byte(runList(t, "-o", "json", "-redis", rs.URL(), "not-a-set")), &rows))
	require.Len(t, rows, 1)
	require.Equal(t, "malformed", rows[0]["status"])
	require.Contains(t, rows[0]["error"], "services:not-a-set is not a set")
	require.Equal(t, "[]\n", runList(t, "-redis", rs.URL(), "-o", "json", "no-such-service"))
	require.Equal(t, "SERVICE  INSTANCE  ADDRESS  HEALTH  AGE  TTL  STATUS\n", runList(t, "-redis", rs.URL(), "no-such-service"))
}

// A live instance registered by `regdns register` lists like one the
// reference writer registered: the round trip of the issue.
func TestListShowsARegisteredSidecar(t *testing.T) {
	rs := redistest.Start(t)
	c := startCmd(t, registerCmd, []string{"-redis", rs.URL(), "-service", "side", "-host", "10.8.0.1", "-port", "81", "-meta", "weight=2"}, nil)
	id := c.waitID(t, 1)
	var rows []map[string]any
	require.Eventually(t, func() bool {
		rows = nil
		return json.Unmarshal([]byte(runList(t, "-redis", rs.URL(), "-o", "json", "side")), &rows) == nil && len(rows) == 1
	}, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, id, rows[0]["instance"])
	require.Equal(t, "10.8.0.1:81", rows[0]["address"])
	require.Equal(t, "live", rows[0]["status"])
	require.Equal(t, map[string]any{"weight": 2.0}, rows[0]["metadata"])
	require.NoError(t, c.stop(t))
	require.Equal(t, "[]\n", runList(t, "-redis", rs.URL(), "-o", "json", "side"))
}

func TestListRejectsBadInput(t *testing.T) {
	env := func(k string) string {
		if k == "REGDNS_REDIS_TIMEOUT" {
			return "200ms"
		}
		return ""
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"bad format", []string{"-o", "yaml"}, `-o "yaml"`},
		{"two services", []string{"a", "b"}, "at most one SERVICE"},
		{"redis unreachable", []string{"-redis", "redis://127.0.0.1:1/0"}, "list services"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut lockedBuffer
			code := run(context.Background(), append([]string{"list"}, tc.args...), env, &out, &errOut)
			require.Equal(t, 1, code)
			require.Contains(t, errOut.String(), tc.want)
		})
	}
}

func TestListSplitsFlagsFromService(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		flags, pos []string
	}{
		{[]string{"svc"}, nil, []string{"svc"}},
		{[]string{"-o", "json", "svc"}, []string{"-o", "json"}, []string{"svc"}},
		{[]string{"svc", "-o", "json"}, []string{"-o", "json"}, []string{"svc"}},
		{[]string{"-o=json", "a", "-redis", "r", "b"}, []string{"-o=json", "-redis", "r"}, []string{"a", "b"}},
		{[]string{"-o", "json", "--", "-weird"}, []string{"-o", "json"}, []string{"-weird"}},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.String("o", "", "")
		fs.String("redis", "", "")
		flags, pos, err := splitPositional(fs, tc.args)
		require.NoError(t, err)
		require.Equal(t, tc.flags, flags, "%q", tc.args)
		require.Equal(t, tc.pos, pos, "%q", tc.args)
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(&lockedBuffer{})
	_, _, err := splitPositional(fs, []string{"-h"})
	require.True(t, errors.Is(err, flag.ErrHelp))
}

func sorted(s ...string) []string {
	slices.Sort(s)
	return s
}
