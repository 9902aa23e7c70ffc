package dns

import (
	"strings"

	"github.com/miekg/dns"
)

// Zone is one more zone served by a Handler, answered from its own catalog
// (its own registry key prefix), so two registries can share one Redis.
type Zone struct {
	// Name of the zone, e.g. "service.internal".
	Name string
	// Catalog of the registry behind it.
	Catalog *Catalog
}

// zone is a zone as the handler uses it.
type zone struct {
	name string // fully qualified, lower case
	cat  *Catalog
	ns   string // name server name
	// nsLabel is the label of ns when it sits directly in the zone.
	nsLabel string
}

func newZone(name string, cat *Catalog, ns string) *zone {
	z := &zone{name: dns.CanonicalName(name), cat: cat}
	if ns == "" {
		ns = "ns." + z.name
	}
	z.ns = dns.CanonicalName(ns)
	if labels, ok := splitRelative(z.ns, z.name); ok && len(labels) == 1 {
		z.nsLabel = labels[0]
	}
	return z
}

// zoneOf returns the most specific zone holding qname (lower case) and the
// labels of qname below it.
func (h *Handler) zoneOf(qname string) (*zone, []string, bool) {
	var (
		best   *zone
		labels []string
	)
	for _, z := range h.zones {
		if l, ok := splitRelative(qname, z.name); ok && (best == nil || len(z.name) > len(best.name)) {
			best, labels = z, l
		}
	}
	return best, labels, best != nil
}

// inZones reports whether qname (any case) is in a zone served.
func (h *Handler) inZones(qname string) bool {
	_, _, ok := h.zoneOf(strings.ToLower(qname))
	return ok
}
