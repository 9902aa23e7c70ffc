package dns

import (
	"github.com/miekg/dns"
)

// DNS-Based Service Discovery (RFC 6763) over the registry:
//
//	_services._dns-sd._udp.<zone> PTR -> _<service>._tcp.<zone>        (enumeration, 9)
//	_<service>._tcp.<zone>        PTR -> <id>._<service>._tcp.<zone>   (browsing, 4)
//	<id>._<service>._tcp.<zone>   SRV, TXT                             (the instance, 5-6)

// enumerate lists every service type with serving, non-draining instances.
func (h *Handler) enumerate(q *query) (answer, error) {
	if q.Qtype != dns.TypePTR {
		return answer{}, errNoData
	}
	var a answer
	for _, s := range q.z.cat.all() {
		protos := map[string]bool{}
		for _, in := range s.serving {
			if !in.Draining() { // as browse: a type with nothing to browse is not listed
				protos[protocol(in)] = true
			}
		}
		for _, p := range []string{"tcp", "udp"} {
			if protos[p] {
				a.answer = append(a.answer, newPTR(q.Name, h.opts.Load().TTL, "_"+s.label+"._"+p+"."+q.z.name))
			}
		}
	}
	return a, nil
}

// browse lists the serving instances of a service type, one PTR each.
func (h *Handler) browse(q *query, s *service, sel selection) answer {
	var a answer
	for _, in := range picked(s, sel) {
		if in.Draining() {
			continue // takes no new clients
		}
		a.answer = append(a.answer, newPTR(q.Name, h.opts.Load().TTL, fold(in.ID)+"._"+s.label+"._"+sel.proto+"."+q.z.name))
	}
	return a
}

// dnssdInstance answers <id>._<service>._<proto>.<zone>: the instance's SRV
// (with its address as glue) and its metadata TXT.
func (h *Handler) dnssdInstance(q *query, s *service, proto, id string) (answer, error) {
	in := s.live[id]
	if in == nil || protocol(in) != proto {
		return answer{}, errNXDomain
	}
	ttl, bound := h.ttl(q, in)
	a := answer{perClient: bound}
	switch q.Qtype {
	case dns.TypeSRV, dns.TypeANY:
		target := h.target(q.z, s, in)
		weight := in.Weight
		if in.Draining() {
			weight = 0
		}
		a.answer = []dns.RR{newSRV(q.Name, ttl, h.srvPriority(in, bestTier(picked(s, selection{proto: proto}))), weight, in.Port, target)}
		if !in.IsName() {
			a.extra = []dns.RR{newAddr(target, ttl, in.Addr)}
		}
	case dns.TypeTXT:
		a.answer = h.metaTXT(q.Name, ttl, in, true)
	default:
		return a, errNoData
	}
	return a, nil
}
