package main

// End-to-end tests of the smarter answers (issue 4): a real redis-server,
// instances written by the reference Python writers (tags, metadata,
// draining, mixed health), the real serve() on a loopback port, and the
// DNS-SD browse chain walked with the real dig.

import (
	"context"
	"maps"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/regdns/regdns/internal/config"
	"github.com/regdns/regdns/internal/redistest"
	"github.com/regdns/regdns/registry"
)

// srvOf returns the SRV records of m by the first label of their target.
func srvOf(m *dns.Msg) map[string]*dns.SRV {
	out := map[string]*dns.SRV{}
	for _, rr := range m.Answer {
		if srv, ok := rr.(*dns.SRV); ok {
			out[strings.SplitN(srv.Target, ".", 2)[0]] = srv
		}
	}
	return out
}

// addrsOf returns the addresses of the A records of m, in order.
func addrsOf(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return out
}

// srvCount is a waitFor condition: exactly n SRV records.
func srvCount(n int) func(*dns.Msg) bool {
	return func(m *dns.Msg) bool { return m.Rcode == dns.RcodeSuccess && len(srvOf(m)) == n }
}

// requireNoData fails unless m is an authoritative NODATA.
func requireNoData(t *testing.T, m *dns.Msg) {
	t.Helper()
	require.Equal(t, dns.RcodeSuccess, m.Rcode, "%v", m)
	require.True(t, m.Authoritative)
	require.Empty(t, m.Answer, "%v", m)
	require.Len(t, m.Ns, 1)
	require.IsType(t, &dns.SOA{}, m.Ns[0])
}

// txtOf returns the strings of the TXT records of m, unescaped.
func txtOf(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		if txt, ok := rr.(*dns.TXT); ok {
			for _, s := range txt.Txt {
				out = append(out, strings.NewReplacer(`\"`, `"`, `\\`, `\`).Replace(s))
			}
		}
	}
	return out
}

// TestSmartE2ETagsMetaDrainingHealthTiersExplain: instances registered by
// the reference writer with tags and metadata, health written by the
// reference checker (healthy, unhealthy, none), in healthy_or_unknown mode.
func TestSmartE2ETagsMetaDrainingHealthTiersExplain(t *testing.T) {
	rs := redistest.Start(t)
	ref := redistest.Reference{URL: rs.URL()}
	r := startRegdns(t, rs.URL(), func(c *config.Config) {
		c.Health.Mode = "healthy_or_unknown"
		c.DNS.Explain = true
	})
	const svc = "api"
	// p1: healthy, tags primary+v2. p2: no health key (unknown), tag
	// primary. c1: healthy, draining by metadata. x1: unhealthy. h2:
	// healthy, weight 5, later draining by health status.
	p1 := ref.Register(t, svc, "127.0.1.1", 8080, map[string]any{"tags": []string{"primary", "v2"}, "version": "1.0.0", "zone": "a"}, 30)
	p2 := ref.Register(t, svc, "127.0.1.2", 8080, map[string]any{"tags": []string{"Primary"}, "version": "1.0.0", "zone": "b"}, 30)
	c1 := ref.Register(t, svc, "127.0.1.3", 8081, map[string]any{"tags": []string{"canary"}, "version": "1.1.0", "draining": true}, 30)
	x1 := ref.Register(t, svc, "127.0.1.4", 8082, map[string]any{"tags": []string{"legacy"}, "version": "0.9.0"}, 30)
	h2 := ref.Register(t, svc, "127.0.1.5", 8083, map[string]any{"tags": []string{"v2"}, "version": "2.0.0", "weight": 5}, 30)
	ref.SetHealth(t, svc, p1, "healthy", 10)
	ref.SetHealth(t, svc, c1, "healthy", 10)
	ref.SetHealth(t, svc, x1, "unhealthy", 10)
	ref.SetHealth(t, svc, h2, "healthy", 10)
	const zone = ".service.local."
	r.waitFor(t, svc+zone, dns.TypeSRV, 5*time.Second, srvCount(4)) // all but the unhealthy x1

	t.Run("health tiers and draining in SRV", func(t *testing.T) {
		srv := srvOf(r.query(t, "udp", svc+zone, dns.TypeSRV, 0))
		require.NotContains(t, srv, x1)
		// [priority weight port]: unknown p2 is 10 behind (health.unknown_priority).
		require.Equal(t, []uint16{1, 1, 8080}, []uint16{srv[p1].Priority, srv[p1].Weight, srv[p1].Port})
		require.Equal(t, []uint16{11, 1, 8080}, []uint16{srv[p2].Priority, srv[p2].Weight, srv[p2].Port})
		require.Equal(t, []uint16{1, 0, 8081}, []uint16{srv[c1].Priority, srv[c1].Weight, srv[c1].Port}, "draining: weight 0")
		require.Equal(t, []uint16{1, 5, 8083}, []uint16{srv[h2].Priority, srv[h2].Weight, srv[h2].Port})
	})
	t.Run("A lists healthy first, without the draining", func(t *testing.T) {
		firsts := map[string]bool{}
		for range 6 {
			got := addrsOf(r.query(t, "udp", svc+zone, dns.TypeA, 0))
			require.ElementsMatch(t, []string{"127.0.1.1", "127.0.1.5"}, got[:2], "%v", got)
			require.Equal(t, []string{"127.0.1.2"}, got[2:], "unknown last; draining c1 absent")
			firsts[got[0]] = true
		}
		require.Len(t, firsts, 2)
	})
	t.Run("tags", func(t *testing.T) {
		m := r.query(t, "udp", "primary."+svc+zone, dns.TypeSRV, 0)
		require.True(t, m.Authoritative)
		srv := srvOf(m)
		require.Len(t, srv, 2)
		require.EqualValues(t, 1, srv[p1].Priority)
		require.EqualValues(t, 11, srv[p2].Priority)
		require.Equal(t, []string{"127.0.1.1", "127.0.1.2"}, addrsOf(r.query(t, "tcp", "PRIMARY."+svc+zone, dns.TypeA, 0)))
		require.Equal(t, []string{"127.0.1.1"}, addrsOf(r.query(t, "udp", "v2.primary."+svc+zone, dns.TypeA, 0)))
		require.ElementsMatch(t, []string{"127.0.1.1", "127.0.1.5"}, addrsOf(r.query(t, "udp", "V2."+svc+zone, dns.TypeA, 0)))
		// canary only on the draining c1: in SRV with weight 0, not in A.
		srv = srvOf(r.query(t, "udp", "canary."+svc+zone, dns.TypeSRV, 0))
		require.Len(t, srv, 1)
		require.EqualValues(t, 0, srv[c1].Weight)
		requireNoData(t, r.query(t, "udp", "canary."+svc+zone, dns.TypeA, 0))
		// legacy only on the unhealthy x1: the name exists, without data.
		requireNoData(t, r.query(t, "udp", "legacy."+svc+zone, dns.TypeSRV, 0))
		m = r.query(t, "udp", "nosuch."+svc+zone, dns.TypeA, 0)
		require.Equal(t, dns.RcodeNameError, m.Rcode)
		m = r.query(t, "udp", "legacy.primary."+svc+zone, dns.TypeA, 0)
		require.Equal(t, dns.RcodeNameError, m.Rcode)
	})
	t.Run("metadata", func(t *testing.T) {
		require.Equal(t, []string{"127.0.1.1", "127.0.1.2"}, addrsOf(r.query(t, "udp", "1-0-0.version.meta."+svc+zone, dns.TypeA, 0)))
		require.Equal(t, []string{"127.0.1.1"}, addrsOf(r.query(t, "udp", "a.zone.meta."+svc+zone, dns.TypeA, 0)))
		srv := srvOf(r.query(t, "udp", "1-1-0.version.meta."+svc+zone, dns.TypeSRV, 0))
		require.Len(t, srv, 1)
		require.EqualValues(t, 0, srv[c1].Weight)
		requireNoData(t, r.query(t, "udp", "0-9-0.version.meta."+svc+zone, dns.TypeA, 0))
		require.Equal(t, dns.RcodeNameError, r.query(t, "udp", "3-0-0.version.meta."+svc+zone, dns.TypeA, 0).Rcode)
	})
	t.Run("instance TXT", func(t *testing.T) {
		m := r.query(t, "udp", p1+"."+svc+zone, dns.TypeTXT, 0)
		require.Equal(t, []string{`tags=["primary", "v2"]`, "version=1.0.0", "zone=a"}, txtOf(m))
		m = r.query(t, "udp", c1+"."+svc+zone, dns.TypeTXT, 0)
		require.Equal(t, []string{"draining=true", `tags=["canary"]`, "version=1.1.0"}, txtOf(m))
	})
	t.Run("browse leaves the draining out", func(t *testing.T) {
		m := r.query(t, "udp", "_"+svc+"._tcp"+zone, dns.TypePTR, 0)
		var ptrs []string
		for _, rr := range m.Answer {
			ptrs = append(ptrs, strings.SplitN(rr.(*dns.PTR).Ptr, ".", 2)[0])
		}
		require.ElementsMatch(t, []string{p1, p2, h2}, ptrs)
	})
	t.Run("explain", func(t *testing.T) {
		m := r.query(t, "tcp", "_explain."+svc+zone, dns.TypeTXT, 0)
		require.Len(t, m.Answer, 1)
		require.Zero(t, m.Answer[0].Header().Ttl)
		lines := txtOf(m)
		require.Len(t, lines, 5, "one string per live instance: %q", lines)
		why := map[string]string{}
		for _, l := range lines {
			id := strings.TrimPrefix(strings.Fields(l)[0], "id=")
			why[id] = l
			require.Contains(t, l, "addr=127.0.1.")
			require.Contains(t, l, "heartbeat_age=")
		}
		require.Contains(t, why[p1], "health=healthy")
		require.Contains(t, why[p1], "served=yes")
		require.Contains(t, why[p2], "health=unknown")
		require.Contains(t, why[p2], "served=yes")
		require.Contains(t, why[c1], "served=yes reason=draining")
		require.Contains(t, why[x1], "health=unhealthy")
		require.Contains(t, why[x1], "served=no reason=unhealthy")
		require.Contains(t, why[h2], "weight=5")
	})
	t.Run("draining by health status", func(t *testing.T) {
		// The reference checker knows no "draining": regdns's writer sets it.
		w := registry.NewWriter(rs.Client(t), registry.DefaultKeys())
		require.NoError(t, w.SetHealth(context.Background(), svc, h2, registry.StatusDraining, 10*time.Second))
		r.waitFor(t, svc+zone, dns.TypeSRV, 2*time.Second, func(m *dns.Msg) bool {
			srv := srvOf(m)
			return srv[h2] != nil && srv[h2].Weight == 0
		})
		got := addrsOf(r.query(t, "udp", svc+zone, dns.TypeA, 0))
		require.Equal(t, []string{"127.0.1.1", "127.0.1.2"}, got)
		m := r.query(t, "tcp", "_explain."+svc+zone, dns.TypeTXT, 0)
		require.True(t, slices.ContainsFunc(txtOf(m), func(l string) bool {
			return strings.HasPrefix(l, "id="+h2+" ") && strings.Contains(l, "health=draining") && strings.Contains(l, "reason=draining")
		}), "%q", txtOf(m))
	})
}

// TestSmartE2EPanicMode: with health.panic_threshold 0.5, one healthy
// instance of four puts the service in panic mode and all four are served
// (unhealthy ones behind, by SRV priority); three healthy end it.
func TestSmartE2EPanicMode(t *testing.T) {
	rs := redistest.Start(t)
	ref := redistest.Reference{URL: rs.URL()}
	r := startRegdns(t, rs.URL(), func(c *config.Config) { c.Health.PanicThreshold = 0.5 })
	const svc, name = "pay", "pay.service.local."
	var ids []string
	for i, host := range []string{"127.0.3.1", "127.0.3.2", "127.0.3.3", "127.0.3.4"} {
		ids = append(ids, ref.Register(t, svc, host, 9000+i, nil, 30))
	}
	ref.SetHealth(t, svc, ids[0], "healthy", 10)
	for _, id := range ids[1:] {
		ref.SetHealth(t, svc, id, "unhealthy", 10)
	}
	r.waitFor(t, name, dns.TypeSRV, 5*time.Second, srvCount(4))
	srv := srvOf(r.query(t, "udp", name, dns.TypeSRV, 0))
	require.EqualValues(t, 1, srv[ids[0]].Priority)
	for _, id := range ids[1:] {
		require.EqualValues(t, 21, srv[id].Priority, "unhealthy: health.unhealthy_priority behind")
	}
	for range 4 {
		got := addrsOf(r.query(t, "udp", name, dns.TypeA, 0))
		require.Len(t, got, 4)
		require.Equal(t, "127.0.3.1", got[0], "the healthy one first")
	}
	require.Contains(t, r.log.String(), "panic mode")

	ref.SetHealth(t, svc, ids[1], "healthy", 10)
	ref.SetHealth(t, svc, ids[2], "healthy", 10)
	r.waitFor(t, name, dns.TypeSRV, 2*time.Second, srvCount(3))
	srv = srvOf(r.query(t, "udp", name, dns.TypeSRV, 0))
	require.NotContains(t, srv, ids[3])
	for _, id := range ids[:3] {
		require.EqualValues(t, 1, srv[id].Priority)
	}
	require.ElementsMatch(t, []string{"127.0.3.1", "127.0.3.2", "127.0.3.3"}, addrsOf(r.query(t, "udp", name, dns.TypeA, 0)))
}

// TestSmartE2ELeaseTTL: an instance registered by the reference writer with
// a 3 s TTL and no heartbeat: while it is served its answers' TTL stays
// under the lease (below dns.ttl, 5 s), reaches the floor of 1 s, never 0,
// and it then leaves. An instance with a long lease keeps dns.ttl.
func TestSmartE2ELeaseTTL(t *testing.T) {
	rs := redistest.Start(t)
	ref := redistest.Reference{URL: rs.URL()}
	r := startRegdns(t, rs.URL(), func(c *config.Config) {
		c.DNS.TTL = config.Duration{Duration: 5 * time.Second}
		c.Health.Mode = "healthy_or_unknown"
	})
	long := ref.Register(t, "steady", "127.0.4.1", 80, nil, 30)
	ref.Register(t, "short", "127.0.4.2", 80, nil, 3)
	registered := time.Now()
	r.waitFor(t, "steady.service.local.", dns.TypeA, 5*time.Second, func(m *dns.Msg) bool { return len(m.Answer) == 1 })
	m := r.query(t, "udp", "steady.service.local.", dns.TypeA, 0)
	require.EqualValues(t, 5, m.Answer[0].Header().Ttl)
	require.EqualValues(t, 5, r.query(t, "udp", long+".steady.service.local.", dns.TypeA, 0).Answer[0].Header().Ttl)

	r.waitFor(t, "short.service.local.", dns.TypeA, 5*time.Second, func(m *dns.Msg) bool { return len(m.Answer) == 1 })
	seen := map[uint32]int{}
	var served time.Duration
	r.waitFor(t, "short.service.local.", dns.TypeA, 8*time.Second, func(m *dns.Msg) bool {
		if len(m.Answer) == 0 {
			return true // gone
		}
		served = time.Since(registered)
		seen[m.Answer[0].Header().Ttl]++
		return false
	})
	t.Logf("TTLs seen while served (TTL: answers): %v; last served %v after registration", seen, served)
	require.NotEmpty(t, seen)
	for ttl := range seen {
		require.GreaterOrEqual(t, ttl, uint32(1), "never below the floor")
		require.LessOrEqual(t, ttl, uint32(3), "never past the 3 s lease (dns.ttl is 5)")
	}
	require.Contains(t, seen, uint32(1), "the floor in the last second")
	require.GreaterOrEqual(t, served, 2*time.Second, "served until its lease ran out")

	// The service still exists (the set lists the id): NODATA with the
	// negative TTL, not NXDOMAIN. A registration ends it at once.
	m = r.query(t, "udp", "short.service.local.", dns.TypeA, 0)
	requireNoData(t, m)
	require.EqualValues(t, 5, m.Ns[0].(*dns.SOA).Minttl)
	ref.Register(t, "short", "127.0.4.3", 80, nil, 30)
	took := r.waitFor(t, "short.service.local.", dns.TypeA, 2*time.Second, func(m *dns.Msg) bool { return len(m.Answer) == 1 })
	require.LessOrEqual(t, took, changeBound, "registration visible after %v", took)
	require.EqualValues(t, 5, r.query(t, "udp", "short.service.local.", dns.TypeA, 0).Answer[0].Header().Ttl)
}

// dig runs the real dig against r and returns its +short lines.
func dig(t *testing.T, r *regdnsUnderTest, qtype, name string) []string {
	t.Helper()
	bin := lookPath(t, "dig", "/usr/bin/dig")
	host, port, err := net.SplitHostPort(r.addr)
	require.NoError(t, err)
	out, err := exec.Command(bin, "-p", port, "@"+host, qtype, name, "+short", "+time=2", "+tries=2").CombinedOutput()
	require.NoError(t, err, "dig %s %s: %s", qtype, name, out)
	var lines []string
	for l := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// TestSmartE2EDNSSDBrowseWithDig: `dig PTR _services._dns-sd._udp.service.local`
// lists every service registered, and the browse chain (PTR of each
// service type, SRV and TXT of each instance, A of each target) leads to
// every instance.
func TestSmartE2EDNSSDBrowseWithDig(t *testing.T) {
	rs := redistest.Start(t)
	ref := redistest.Reference{URL: rs.URL()}
	r := startRegdns(t, rs.URL(), func(c *config.Config) { c.Health.Mode = "healthy_or_unknown" })
	type instance struct {
		service, id, host string
		port              int
		txt               []string
	}
	var all []instance
	reg := func(service, host string, port int, meta map[string]any, txt ...string) {
		all = append(all, instance{service, ref.Register(t, service, host, port, meta, 30), host, port, txt})
	}
	reg("user-service", "127.0.5.1", 8080, map[string]any{"version": "1.0.0"}, `"version=1.0.0"`)
	reg("user-service", "127.0.5.2", 8081, map[string]any{"version": "1.1.0", "region": "us-east-1"}, `"region=us-east-1" "version=1.1.0"`)
	reg("orders", "127.0.5.3", 9090, nil, `""`)
	reg("dns-cache", "127.0.5.4", 5353, map[string]any{"protocol": "udp"}, `"protocol=udp"`)
	reg("inventory", "127.0.5.5", 7000, map[string]any{"weight": 3}, `"weight=3"`)
	types := map[string]string{} // service type -> service
	for _, in := range all {
		proto := "_tcp"
		if in.service == "dns-cache" {
			proto = "_udp"
		}
		types["_"+in.service+"."+proto+".service.local."] = in.service
	}
	r.waitFor(t, "_services._dns-sd._udp.service.local.", dns.TypePTR, 5*time.Second, func(m *dns.Msg) bool {
		return len(m.Answer) == len(types)
	})

	// Enumeration lists every service registered.
	got := dig(t, r, "PTR", "_services._dns-sd._udp.service.local")
	require.ElementsMatch(t, slices.Collect(maps.Keys(types)), got)

	// Browse each type, then resolve each instance.
	found := 0
	for _, typ := range got {
		instances := dig(t, r, "PTR", typ)
		var want []string
		for _, in := range all {
			if strings.HasPrefix(typ, "_"+in.service+".") {
				want = append(want, in.id+"."+typ)
			}
		}
		require.ElementsMatch(t, want, instances, "browse %s", typ)
		for _, name := range instances {
			in := all[slices.IndexFunc(all, func(in instance) bool { return strings.HasPrefix(name, in.id+".") })]
			srv := dig(t, r, "SRV", name)
			require.Len(t, srv, 1, "SRV %s", name)
			f := strings.Fields(srv[0]) // priority weight port target
			require.Len(t, f, 4)
			require.Equal(t, in.id+"."+in.service+".service.local.", f[3])
			require.Equal(t, []string{"1", strconv.Itoa(in.port)}, []string{f[0], f[2]})
			require.Equal(t, []string{strings.Join(in.txt, " ")}, dig(t, r, "TXT", name), "TXT %s", name)
			require.Equal(t, []string{in.host}, dig(t, r, "A", f[3]), "A %s", f[3])
			found++
		}
	}
	require.Equal(t, len(all), found, "every instance reached through the browse chain")
}
