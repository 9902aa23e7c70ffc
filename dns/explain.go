package dns

import (
	"strings"

	"github.com/miekg/dns"
)

// ServiceStatus says whether the answers of one zone include a registry
// service and each of its live instances, and why: what _explain TXT
// answers, for tools (the admin server's /debug/services).
type ServiceStatus struct {
	// Served is false when no name of the zone answers the service; Reason
	// then says why.
	Served bool
	Reason string
	// Instances are the live instances DNS knows of, in registry (id) order.
	Instances []InstanceStatus
}

// InstanceStatus is whether answers include one live instance, and why.
type InstanceStatus struct {
	ID     string
	Served bool
	Reason string
}

// Explain returns the status of the registry service named service in the
// zone named zoneName (any case, dot or not); false when the handler serves
// no such zone.
func (h *Handler) Explain(zoneName, service string) (ServiceStatus, bool) {
	var z *zone
	for _, c := range h.zones {
		if c.name == dns.CanonicalName(zoneName) {
			z = c
		}
	}
	if z == nil {
		return ServiceStatus{}, false
	}
	if !validLabel(service) {
		return ServiceStatus{Reason: "service name is not a DNS label"}, true
	}
	s, ok := z.cat.lookup(fold(service))
	switch {
	case !ok:
		return ServiceStatus{Reason: "not in the DNS catalog (no live instance, or not yet)"}, true
	case s.name != service:
		return ServiceStatus{Reason: "the service " + s.name + ", whose name differs only in case, is served under this name"}, true
	}
	serving := make(map[string]bool, len(s.serving))
	for _, in := range s.serving {
		serving[in.ID] = true
	}
	st := ServiceStatus{Served: true, Instances: make([]InstanceStatus, 0, len(s.snap.Instances))}
	for _, in := range s.snap.Instances {
		why := h.why(s, in, serving[in.ID]) // "served=yes reason=..."
		served, reason := strings.HasPrefix(why, "served=yes"), why
		if _, r, ok := strings.Cut(why, "reason="); ok {
			reason = r
		}
		if validLabel(in.ID) && s.live[fold(in.ID)] != in {
			served, reason = false, "another instance id differing only in case owns its name"
		}
		st.Instances = append(st.Instances, InstanceStatus{ID: in.ID, Served: served, Reason: reason})
	}
	return st, true
}
