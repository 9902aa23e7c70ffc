package dns

import (
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/regdns/regdns/internal/dnstest"
	"github.com/regdns/regdns/registry"
)

func TestCatalogSerial(t *testing.T) {
	t.Parallel()
	c := newTestCatalog(t)
	start := uint32(testEpoch.Unix())
	now := testEpoch
	c.now = func() time.Time { return now }
	require.Equal(t, start, c.Serial())

	// Changes within the second the serial names share it, and never run
	// ahead of the clock (a restart, starting from the clock, must not
	// lower it)...
	c.Update("a", svc("a", inst("1", "10.0.0.1", 1)))
	c.Update("a", nil)
	c.Update("not.a.label", svc("not.a.label"))
	require.Equal(t, start, c.Serial())
	// ...and the serial moves on as soon as the next second comes.
	now = now.Add(time.Second)
	require.Equal(t, start+1, c.Serial())
	require.Equal(t, start+1, c.Serial(), "no change since: no new serial")
	now = now.Add(time.Second)
	require.Equal(t, start+1, c.Serial())

	// Later, the serial is the time of the change.
	now = testEpoch.Add(time.Hour)
	c.Update("a", svc("a"))
	require.Equal(t, uint32(now.Unix()), c.Serial())

	// A clock going back never lowers it.
	later := now
	now = testEpoch
	c.Update("a", svc("a"))
	require.Equal(t, uint32(later.Unix()), c.Serial())
	now = later

	// The SOA carries it.
	h := NewHandler(c.Catalog, testOptions())
	m := h.Answer(new(dns.Msg).SetQuestion(testZone, dns.TypeSOA))
	require.Len(t, m.Answer, 1)
	require.Equal(t, c.Serial(), m.Answer[0].(*dns.SOA).Serial)
}

func TestCatalogNewSerialIsNow(t *testing.T) {
	t.Parallel()
	before := uint32(time.Now().Unix())
	c := NewCatalog(func() bool { return true }, zerolog.Nop())
	require.GreaterOrEqual(t, c.Serial(), before)
	require.LessOrEqual(t, c.Serial(), uint32(time.Now().Unix()))
	require.True(t, c.Synced())
}

func TestCatalogServices(t *testing.T) {
	t.Parallel()
	c := newTestCatalog(t)
	require.Empty(t, c.Services())
	fillLookup(c)
	require.Equal(t, []string{"db", "dns-svc", "empty", "skips", "user-service", "web"}, c.Services())

	c.Update("db", nil)
	c.Update("never-there", nil)
	c.Update("bad.name", nil)
	require.Equal(t, []string{"dns-svc", "empty", "skips", "user-service", "web"}, c.Services())
}

// TestCatalogCaseCollision: two registry names that differ only in case
// answer the same label; the smaller name wins whatever the order of
// updates, and the other takes over when it goes.
func TestCatalogCaseCollision(t *testing.T) {
	t.Parallel()
	upper := svc("User", inst("u", "10.0.0.1", 1))
	lower := svc("user", inst("u", "10.0.0.2", 1))
	answerOf := func(c testCatalog) []string {
		h := NewHandler(c.Catalog, testOptions())
		return dnstest.Strings(h.Answer(new(dns.Msg).SetQuestion("user.service.local.", dns.TypeA)).Answer)
	}
	fromUpper := []string{"user.service.local.\t5\tIN\tA\t10.0.0.1"}
	fromLower := []string{"user.service.local.\t5\tIN\tA\t10.0.0.2"}

	for _, order := range [][]string{{"User", "user"}, {"user", "User"}} {
		c := newTestCatalog(t)
		for _, name := range order {
			if name == "User" {
				c.Update(name, upper)
			} else {
				c.Update(name, lower)
			}
		}
		require.Equal(t, []string{"user"}, c.Services())
		require.Equal(t, fromUpper, answerOf(c), "updates in order %v", order)

		// A new snapshot of the loser changes nothing.
		c.Update("user", svc("user", inst("u", "10.0.0.3", 1)))
		require.Equal(t, fromUpper, answerOf(c))

		c.Update("User", nil)
		require.Equal(t, []string{"10.0.0.3"}, addrs(answerOf(c)))
		c.Update("user", lower)
		require.Equal(t, fromLower, answerOf(c))
		c.Update("user", nil)
		require.Empty(t, c.Services())
		require.Empty(t, answerOf(c))
	}
}

// TestCatalogInstanceCaseCollision: instance ids that differ only in case
// name the same DNS name; the smaller id wins, as for service names, and the
// answer holds it once.
func TestCatalogInstanceCaseCollision(t *testing.T) {
	t.Parallel()
	c := newTestCatalog(t)
	c.Update("s", svc("s", inst("a", "10.0.0.2", 2), inst("A", "10.0.0.1", 1)))
	h := NewHandler(c.Catalog, testOptions())
	run(t, h, []dnstest.Case{
		{
			Qname: "s.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
			Answer: dnstest.RRs(t, "s.service.local. 5 IN SRV 1 1 1 a.s.service.local."),
			Extra:  dnstest.RRs(t, "a.s.service.local. 5 IN A 10.0.0.1"),
		},
		{
			Qname: "a.s.service.local.", Qtype: dns.TypeA, Authoritative: true,
			Answer: dnstest.RRs(t, "a.s.service.local. 5 IN A 10.0.0.1"),
		},
	})

	// Only the loser serving: the name is the winner's, which does not serve.
	c.Update("s", svcServing("s", []registry.Instance{inst("a", "10.0.0.2", 2), inst("A", "10.0.0.1", 1)}, []string{"A"}))
	run(t, h, []dnstest.Case{
		{
			Qname: "s.service.local.", Qtype: dns.TypeSRV, Authoritative: true,
			Ns: dnstest.RRs(t, soa(c.Serial())),
		},
	})
}

// TestCatalogInvalidNames: names that cannot be a DNS label are not served.
func TestCatalogInvalidNames(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"", "a.b", "has space", "ünïcode", "x/y", string(make([]byte, 64))} {
		c := newTestCatalog(t)
		c.Update(name, svc(name, inst("i", "10.0.0.1", 1)))
		require.Empty(t, c.Services(), "service %q", name)
	}
	long := "a123456789b123456789c123456789d123456789e123456789f123456789abc" // 63
	c := newTestCatalog(t)
	c.Update(long, svc(long, inst(long, "10.0.0.1", 1), inst(long+"d", "10.0.0.2", 1)))
	require.Equal(t, []string{long}, c.Services())
	h := NewHandler(c.Catalog, testOptions())
	run(t, h, []dnstest.Case{{
		Qname: long + ".service.local.", Qtype: dns.TypeSRV, Authoritative: true,
		Answer: dnstest.RRs(t, long+".service.local. 5 IN SRV 1 1 1 "+long+"."+long+".service.local."),
		Extra:  dnstest.RRs(t, long+"."+long+".service.local. 5 IN A 10.0.0.1"),
	}})
}

// addrs returns the last field of each zone-file line.
func addrs(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			panic(err)
		}
		out[i] = rr.(*dns.A).A.String()
	}
	return out
}
