package main

// Reliability test R12 (../shared/RELIABILITY-TESTS.md): malformed registry
// data next to good instances, in one real Redis, read by the real server.
// Every shape of the table is written the way a broken writer would; each
// is either skipped (counted by reason in regdns_registry_skipped_total and
// logged once per key and reason) or, where the decoding is tolerant by
// design, served as documented. The rest of the service keeps serving, and
// neither queries nor the periodic full re-reads log anything again: only a
// change of the key does. The decoder's fuzzer is
// registry/instance_fuzz_test.go (scripts/test.sh runs it for a bounded time).

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/regdns/regdns/internal/config"
	"github.com/regdns/regdns/internal/loadtest"
	"github.com/regdns/regdns/internal/redistest"
)

// malformedDoc is one instance document of service "mixed".
type malformedDoc struct {
	id, doc string
	// served: the instance is answered (tolerated by design); otherwise it
	// is skipped with a reason containing reason.
	served bool
	reason string
}

// instanceJSON is a well-formed document with the given host, port (raw
// JSON) and metadata (raw JSON object).
func instanceJSON(host, port, meta string) string {
	return fmt.Sprintf(`{"service_name": "mixed", "instance_id": "x", "host": %s, "port": %s, "metadata": %s, "registered_at": 1764000000.5, "last_heartbeat": 1764000000.5}`,
		host, port, meta)
}

func malformedDocs() []malformedDoc {
	manyKeys := make(map[string]int, 10_000)
	for i := range 10_000 {
		manyKeys[fmt.Sprintf("k%05d", i)] = i
	}
	many, _ := json.Marshal(manyKeys)
	return []malformedDoc{
		// Good ones.
		{id: "good1", doc: instanceJSON(`"10.6.0.1"`, `80`, `{}`), served: true},
		{id: "good2", doc: instanceJSON(`"10.6.0.2"`, `81`, `{"version": "1.0.0"}`), served: true},
		// Not JSON, or not the shape.
		{id: "badjson", doc: `{"host": "10.6.0.3", "port":`, reason: "instance JSON"},
		{id: "notobject", doc: `["10.6.0.4", 80]`, reason: "instance JSON"},
		{id: "nan", doc: `NaN`, reason: "instance JSON"},
		// Wrong types.
		{id: "hostnumber", doc: instanceJSON(`167772165`, `80`, `{}`), reason: "host must be a non-empty string"},
		{id: "portbool", doc: instanceJSON(`"10.6.0.6"`, `true`, `{}`), reason: "is not 1..65535"},
		{id: "portobject", doc: instanceJSON(`"10.6.0.7"`, `{"n": 80}`, `{}`), reason: "is not 1..65535"},
		{id: "metastring", doc: instanceJSON(`"10.6.0.8"`, `80`, `"x"`), reason: "instance JSON"},
		// Ports out of range.
		{id: "port0", doc: instanceJSON(`"10.6.0.9"`, `0`, `{}`), reason: "is not 1..65535"},
		{id: "port65536", doc: instanceJSON(`"10.6.0.10"`, `65536`, `{}`), reason: "is not 1..65535"},
		{id: "portneg", doc: instanceJSON(`"10.6.0.11"`, `-1`, `{}`), reason: "is not 1..65535"},
		{id: "portfrac", doc: instanceJSON(`"10.6.0.12"`, `80.5`, `{}`), reason: "is not 1..65535"},
		// Hosts that are neither an address nor a name.
		{id: "hostbad", doc: instanceJSON(`"not a host!"`, `80`, `{}`), reason: "neither an address nor a host name"},
		{id: "hostdotted", doc: instanceJSON(`"999.1.1.1"`, `80`, `{}`), reason: "neither an address nor a host name"},
		{id: "hostport", doc: instanceJSON(`"10.6.0.13:80"`, `80`, `{}`), reason: "neither an address nor a host name"},
		{id: "hostzone", doc: instanceJSON(`"fe80::1%eth0"`, `80`, `{}`), reason: "neither an address nor a host name"},
		{id: "hostempty", doc: instanceJSON(`""`, `80`, `{}`), reason: "host must be a non-empty string"},
		// Too big to be a registration.
		{id: "onemib", doc: instanceJSON(`"10.6.0.14"`, `80`, `{"pad": "`+strings.Repeat("x", 1<<20)+`"}`), reason: "bytes (limit"},
		{id: "manykeys", doc: instanceJSON(`"10.6.0.15"`, `80`, string(many)), reason: "bytes (limit"},
		// Tolerated by design (README, registry/instance.go): served.
		{id: "portstring", doc: instanceJSON(`"10.6.0.16"`, `"8080"`, `{}`), served: true},
		{id: "ipv6", doc: instanceJSON(`"2001:db8::6"`, `80`, `{}`), served: true},
		{id: "hostname", doc: instanceJSON(`"db.example.org"`, `5432`, `{}`), served: true},
		{id: "weightstring", doc: instanceJSON(`"10.6.0.17"`, `80`, `{"weight": "3"}`), served: true},
		{id: "weightneg", doc: instanceJSON(`"10.6.0.18"`, `80`, `{"weight": -1}`), served: true},
		{id: "weightnan", doc: instanceJSON(`"10.6.0.19"`, `80`, `{"weight": "NaN"}`), served: true},
		{id: "weighthuge", doc: instanceJSON(`"10.6.0.20"`, `80`, `{"weight": 1e9}`), served: true},
	}
}

// rdataLog is a server's JSON log, decoded.
type rdataLog []map[string]any

func parseJSONLog(t *testing.T, text string) rdataLog {
	t.Helper()
	var out rdataLog
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 4<<20), 4<<20)
	for sc.Scan() {
		var line map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &line), "log line %q", sc.Text())
		out = append(out, line)
	}
	require.NoError(t, sc.Err())
	return out
}

// count returns how many lines have message msg, by the value of field.
func (l rdataLog) count(msg, field string) map[string]int {
	out := map[string]int{}
	for _, line := range l {
		if line["message"] == msg {
			v, _ := line[field].(string)
			out[v]++
		}
	}
	return out
}

const (
	msgSkipped      = "skipping malformed registry entry"
	msgBadService   = "service name is not a valid DNS label: not served"
	msgBadInstance  = "instance id is not a valid DNS label: not served"
	msgCaseConflict = "service names differ only in case: the first is served"
)

func TestReliabilityR12MalformedRegistryData(t *testing.T) {
	rs := redistest.Start(t)
	client := rs.Client(t)
	ctx := context.Background()
	docs := malformedDocs()
	for _, d := range docs {
		require.NoError(t, client.SetEx(ctx, "services:mixed:instances:"+d.id, d.doc, 10*time.Minute).Err())
		require.NoError(t, client.SAdd(ctx, "services:mixed", d.id).Err())
	}
	// Keys of the wrong Redis type.
	require.NoError(t, client.HSet(ctx, "services:mixed:instances:hash", "host", "10.6.0.30", "port", "80").Err())
	require.NoError(t, client.RPush(ctx, "services:mixed:instances:list", "10.6.0.31").Err())
	require.NoError(t, client.SAdd(ctx, "services:mixed", "hash", "list").Err())
	// A health document that does not decode: unknown health, served in
	// healthy_or_unknown mode.
	require.NoError(t, client.SetEx(ctx, "health:mixed:good2", `{"status":`, 10*time.Minute).Err())
	// Member names that are not DNS labels.
	require.NoError(t, client.SAdd(ctx, "services:mixed", "Not A Label").Err())
	require.NoError(t, client.SetEx(ctx, "services:mixed:instances:Not A Label", instanceJSON(`"10.6.0.40"`, `80`, `{}`), 10*time.Minute).Err())
	// Service names: upper case is a DNS name like any (case-insensitive);
	// two that differ only in case share it (the smallest wins); names
	// that are not one DNS label are skipped.
	badServices := []string{"bad name", "a.b", strings.Repeat("x", 64), "ünicode"}
	for i, svc := range append([]string{"Payments", "Orders", "orders"}, badServices...) {
		id := fmt.Sprintf("p%d", i)
		require.NoError(t, client.SetEx(ctx, "services:"+svc+":instances:"+id,
			instanceJSON(fmt.Sprintf(`"10.6.1.%d"`, i+1), `80`, `{}`), 10*time.Minute).Err())
		require.NoError(t, client.SAdd(ctx, "services:"+svc, id).Err())
	}

	r := startRegdns(t, rs.URL(), func(c *config.Config) {
		c.Log.Format, c.Log.Level = "json", "info"
		c.Health.Mode = "healthy_or_unknown"
		// Full re-reads every 300 ms: several happen during the test, and
		// none may log again.
		c.Cache.MaxAge = config.Duration{Duration: 300 * time.Millisecond}
	})
	waitSynced(t, r, "service.local.")

	// Served: the good and the tolerated instances, and nothing else.
	var wantSRV []string
	for _, d := range docs {
		if d.served && d.id != "hostname" {
			wantSRV = append(wantSRV, d.id+".mixed.service.local.")
		}
	}
	wantSRV = append(wantSRV, "db.example.org.")
	slices.Sort(wantSRV)
	m := r.query(t, "tcp", "mixed.service.local.", dns.TypeSRV, 0)
	require.Equal(t, dns.RcodeSuccess, m.Rcode)
	require.Equal(t, wantSRV, targets(m))
	byTarget := map[string]*dns.SRV{}
	for _, rr := range m.Answer {
		srv := rr.(*dns.SRV)
		byTarget[srv.Target] = srv
	}
	for id, want := range map[string][2]uint16{ // port, weight
		"portstring": {8080, 1}, "weightstring": {80, 3}, "weightneg": {80, 0}, "weightnan": {80, 1},
		"weighthuge": {80, 65535}, "good1": {80, 1},
	} {
		srv := byTarget[id+".mixed.service.local."]
		require.Equal(t, want, [2]uint16{srv.Port, srv.Weight}, "%s: port and weight", id)
	}
	require.Equal(t, uint16(5432), byTarget["db.example.org."].Port)
	aaaa := r.query(t, "udp", "mixed.service.local.", dns.TypeAAAA, 0)
	require.Equal(t, []string{"2001:db8::6"}, answerAddrs(aaaa))
	cname := r.query(t, "udp", "hostname.mixed.service.local.", dns.TypeA, 0)
	require.Len(t, cname.Answer, 1)
	require.Equal(t, "db.example.org.", cname.Answer[0].(*dns.CNAME).Target)
	// A skipped instance's own name does not exist.
	for _, d := range docs {
		if !d.served {
			nx := r.query(t, "udp", d.id+".mixed.service.local.", dns.TypeA, 0)
			require.Equal(t, dns.RcodeNameError, nx.Rcode, "%s.mixed", d.id)
		}
	}
	for _, name := range []string{"payments", "PAYMENTS", "Payments"} {
		a := r.query(t, "udp", name+".service.local.", dns.TypeA, 0)
		require.Equal(t, []string{"10.6.1.1"}, addrsOf(a), name)
		require.Equal(t, name+".service.local.", a.Question[0].Name, "question echoed with its case")
	}
	// "Orders" < "orders": the first in byte order answers orders.service.local.
	require.Equal(t, []string{"10.6.1.2"}, addrsOf(r.query(t, "udp", "orders.service.local.", dns.TypeA, 0)))
	for _, svc := range badServices {
		if name := svc + ".service.local."; dns.IsFqdn(name) && validQname(name) {
			nx := r.query(t, "udp", name, dns.TypeA, 0)
			require.Equal(t, dns.RcodeNameError, nx.Rcode, "%q is not served", svc)
		}
	}

	// Counted by reason, and logged once per key.
	skippedByKey := func() map[string]int { return parseJSONLog(t, r.log.String()).count(msgSkipped, "key") }
	want := map[string]int{"services:mixed:instances:hash": 1, "services:mixed:instances:list": 1, "health:mixed:good2": 1}
	badInstance := 0
	for _, d := range docs {
		if !d.served {
			want["services:mixed:instances:"+d.id] = 1
			badInstance++
		}
	}
	require.Eventually(t, func() bool { return len(skippedByKey()) == len(want) }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, want, skippedByKey())
	lines := parseJSONLog(t, r.log.String())
	for _, line := range lines {
		if line["message"] != msgSkipped {
			continue
		}
		for _, d := range docs {
			if line["key"] == "services:mixed:instances:"+d.id {
				require.Contains(t, line["reason"], d.reason, "%s", d.id)
			}
		}
	}
	mt := r.scrape(t)
	require.EqualValues(t, badInstance, mt.value("regdns_registry_skipped_total", "reason", "bad_instance"))
	require.EqualValues(t, 2, mt.value("regdns_registry_skipped_total", "reason", "wrong_type"))
	require.EqualValues(t, 1, mt.value("regdns_registry_skipped_total", "reason", "bad_health"))
	badServiceLines := lines.count(msgBadService, "service")
	wantBadServices := map[string]int{}
	for _, s := range badServices {
		wantBadServices[s] = 1
	}
	require.Equal(t, wantBadServices, badServiceLines)
	require.Equal(t, map[string]int{"Not A Label": 1}, lines.count(msgBadInstance, "instance"))
	require.Len(t, lines.count(msgCaseConflict, "label"), 1)

	// Queries and full re-reads log nothing more: 2,000 queries touching
	// every name, bad ones included, while at least three re-reads run.
	before := len(parseJSONLog(t, r.log.String()))
	resyncs := r.scrape(t).value("regdns_registry_resyncs_total", "result", "ok")
	var names []string
	for _, d := range docs {
		names = append(names, d.id+".mixed.service.local.")
	}
	names = append(names, "mixed.service.local.", "hash.mixed.service.local.", "payments.service.local.", "bad.service.local.")
	for i := range 2000 {
		qtype := []uint16{dns.TypeA, dns.TypeSRV, dns.TypeAAAA, dns.TypeTXT}[i%4]
		_, err := r.exchange("udp", names[i%len(names)], qtype, 0)
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool {
		return r.scrape(t).value("regdns_registry_resyncs_total", "result", "ok") >= resyncs+3
	}, 10*time.Second, 20*time.Millisecond, "full re-reads every cache.max_age")
	after := parseJSONLog(t, r.log.String())
	require.Len(t, after, before, "no log line from queries or re-reads:\n%v", after[before:])

	// A change of a key logs again, once: a new reason for port0, the same
	// bad document rewritten (nothing), hostbad fixed (nothing, and served),
	// then broken again (once).
	require.NoError(t, client.SetEx(ctx, "services:mixed:instances:port0", instanceJSON(`"10.6.0.9"`, `65536`, `{}`), 10*time.Minute).Err())
	require.NoError(t, client.SetEx(ctx, "services:mixed:instances:badjson", `{"host": "10.6.0.3", "port":`, 10*time.Minute).Err())
	require.NoError(t, client.SetEx(ctx, "services:mixed:instances:hostbad", instanceJSON(`"10.6.0.50"`, `80`, `{}`), 10*time.Minute).Err())
	r.waitFor(t, "mixed.service.local.", dns.TypeSRV, 2*time.Second, hasTarget("hostbad", "mixed"))
	require.NoError(t, client.SetEx(ctx, "services:mixed:instances:hostbad", instanceJSON(`"not a host!"`, `80`, `{}`), 10*time.Minute).Err())
	r.waitFor(t, "mixed.service.local.", dns.TypeSRV, 2*time.Second, not(hasTarget("hostbad", "mixed")))
	// A key of the wrong type where a service set belongs, written while
	// serving: its keyspace event makes regdns look, and skip it.
	require.NoError(t, client.Set(ctx, "services:strsvc", "not a set", 0).Err())
	want["services:mixed:instances:port0"] = 2
	want["services:mixed:instances:hostbad"] = 2
	want["services:strsvc"] = 1
	require.Eventually(t, func() bool { return len(skippedByKey()) == len(want) }, 5*time.Second, 10*time.Millisecond)
	// Several more re-reads: still nothing new.
	resyncs = r.scrape(t).value("regdns_registry_resyncs_total", "result", "ok")
	require.Eventually(t, func() bool {
		return r.scrape(t).value("regdns_registry_resyncs_total", "result", "ok") >= resyncs+2
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, want, skippedByKey())
	mt = r.scrape(t)
	require.EqualValues(t, badInstance+2, mt.value("regdns_registry_skipped_total", "reason", "bad_instance"))
	require.EqualValues(t, 3, mt.value("regdns_registry_skipped_total", "reason", "wrong_type"))

	// Still serving, no panic.
	require.Equal(t, wantSRV, targets(r.query(t, "udp", "mixed.service.local.", dns.TypeSRV, 4096)))
	require.NotContains(t, r.log.String(), "panic")
	lines = parseJSONLog(t, r.log.String())
	skipLines := 0
	for _, n := range lines.count(msgSkipped, "key") {
		skipLines += n
	}
	t.Logf("%d malformed instance documents, 2 instance keys and 1 service key of the wrong type, 1 bad health document, "+
		"%d service names and 1 instance id that are not DNS labels: skipped, counted and logged once per key and reason "+
		"(%d skip lines for %d keys, 3 of them changed); %d tolerated shapes served; 2,000 queries and full re-reads logged nothing",
		badInstance, len(badServices), skipLines, len(want), len(wantSRV)-2)
	// Not a load test: the line counts the 2,000 queries (all answered).
	loadtest.Record(t, (loadtest.Result{Sent: 2000, Answered: 2000}).Line("R12", fmt.Sprintf(
		"malformed registry data: %d bad instance documents, 3 wrong-type keys, 1 bad health document, %d non-label service names, 1 non-label id next to good instances: all skipped, counted by reason, %d log lines for %d keys (3 changed) over 2,000 queries and 5+ full re-reads; %d tolerated shapes served; 0 panics",
		badInstance, len(badServices), skipLines, len(want), len(wantSRV)-2)))
}

// answerAddrs are the A and AAAA addresses of an answer, in order.
func answerAddrs(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		}
	}
	return out
}

// validQname reports whether name can be sent as a question (labels of at
// most 63 octets); names that cannot are not askable, so not served either.
func validQname(name string) bool {
	_, ok := dns.IsDomainName(name)
	return ok
}
