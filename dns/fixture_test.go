package dns

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/regdns/regdns/internal/dnstest"
	"github.com/regdns/regdns/registry"
)

// Fixtures shared by the tests of this package: hand-made registry
// snapshots, a catalog with a frozen clock and a handler over it.

// testZone is the zone every test serves.
const testZone = "service.local."

// testEpoch is the frozen clock of test catalogs, and so their first serial.
var testEpoch = time.Unix(1_700_000_000, 0)

// inst returns a healthy instance of weight and priority 1; host is an
// address or a host name. meta is key, value, key, value...
func inst(id, host string, port uint16, meta ...string) registry.Instance {
	in := registry.Instance{ID: id, Host: host, Port: port, Weight: 1, Priority: 1,
		Health: registry.Health{Status: registry.StatusHealthy}}
	if addr, err := netip.ParseAddr(host); err == nil {
		in.Addr = addr
	}
	if len(meta) > 0 {
		m := map[string]string{}
		for i := 0; i+1 < len(meta); i += 2 {
			m[meta[i]] = meta[i+1]
		}
		in.Meta = registry.MetadataOf(m)
	}
	return in
}

// weighted returns in with the given weight.
func weighted(in registry.Instance, w uint16) registry.Instance {
	in.Weight = w
	return in
}

// svc returns a snapshot serving every instance in.
func svc(name string, ins ...registry.Instance) *registry.Service {
	return svcServing(name, ins, nil)
}

// svcServing returns a snapshot of the live instances in, serving all but
// the ids in notServing (as the view does for unhealthy ones).
func svcServing(name string, in []registry.Instance, notServing []string) *registry.Service {
	s := &registry.Service{Name: name}
	for _, in := range in {
		in.Service = name
		s.Instances = append(s.Instances, &in)
	}
	slices.SortFunc(s.Instances, func(a, b *registry.Instance) int { return strings.Compare(a.ID, b.ID) })
	for _, in := range s.Instances {
		if !slices.Contains(notServing, in.ID) {
			s.Serving = append(s.Serving, in)
		}
	}
	return s
}

// testCatalog is a catalog with a frozen clock whose synced answer the test
// controls (true to begin with).
type testCatalog struct {
	*Catalog
	synced *atomic.Bool
}

func newTestCatalog(t testing.TB) testCatalog {
	t.Helper()
	synced := new(atomic.Bool)
	synced.Store(true)
	c := NewCatalog(synced.Load, zerolog.New(zerolog.NewTestWriter(t)))
	c.now = func() time.Time { return testEpoch }
	c.serial = uint32(testEpoch.Unix())
	return testCatalog{Catalog: c, synced: synced}
}

// testOptions are the handler options of most tests: an NS in the zone with
// glue of both families.
func testOptions() Options {
	return Options{
		Zone:    testZone,
		NS:      "ns." + testZone,
		NSAddrs: []netip.Addr{netip.MustParseAddr("192.0.2.53"), netip.MustParseAddr("2001:db8::53")},
	}
}

// soa is the zone's SOA line with the given serial, as the handler writes it.
func soa(serial uint32) string {
	return fmt.Sprintf("service.local. 5 IN SOA ns.service.local. hostmaster.service.local. %d 3600 600 86400 5", serial)
}

// fakeRand returns scripted values and records the bounds asked for.
type fakeRand struct {
	t      testing.TB
	values []int
	asked  []int
}

func (f *fakeRand) IntN(n int) int {
	f.asked = append(f.asked, n)
	if len(f.values) == 0 {
		f.t.Errorf("fakeRand: IntN(%d) called with no scripted value left", n)
		return 0
	}
	v := f.values[0]
	f.values = f.values[1:]
	if v >= n {
		f.t.Errorf("fakeRand: scripted %d out of range for IntN(%d)", v, n)
		return 0
	}
	return v
}

// run checks every case against h.Answer.
func run(t *testing.T, h *Handler, cases []dnstest.Case) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.String(), func(t *testing.T) {
			dnstest.Check(t, h.Answer(tc.Msg()), tc)
		})
	}
}
