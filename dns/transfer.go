package dns

import (
	"net/netip"
	"slices"

	"github.com/miekg/dns"
)

// transferAllowed reports whether client may transfer the zone.
func (h *Handler) transferAllowed(client netip.Addr) bool {
	client = client.Unmap()
	for _, p := range h.opts.Load().TransferFrom {
		if p.Contains(client) {
			return true
		}
	}
	return false
}

// zoneRecords returns the whole current view of z, in transfer order: SOA,
// NS, every service's records, and the instances' names.
func (h *Handler) zoneRecords(z *zone) []dns.RR {
	soa := h.soa(z)
	ttl := h.opts.Load().TTL
	rrs := []dns.RR{soa, newNS(z.name, ttl, z.ns)}
	if z.nsLabel != "" && z == h.zones[0] {
		for _, addr := range h.opts.Load().NSAddrs {
			rrs = append(rrs, newAddr(z.ns, ttl, addr))
		}
	}
	for _, s := range z.cat.all() {
		owner := s.label + "." + z.name
		for _, in := range s.serving {
			rrs = append(rrs, newSRV(owner, ttl, in.Priority, in.Weight, in.Port, h.target(z, s, in)))
			if !in.IsName() {
				rrs = append(rrs, newAddr(owner, ttl, in.Addr))
			}
			proto := "_" + protocol(in)
			rrs = append(rrs, newSRV("_"+s.label+"."+proto+"."+z.name, ttl, in.Priority, in.Weight, in.Port, h.target(z, s, in)))
		}
		ids := make([]string, 0, len(s.live))
		for id := range s.live {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			in := s.live[id]
			name := id + "." + owner
			if in.IsName() {
				rrs = append(rrs, newCNAME(name, ttl, dns.Fqdn(in.Host)))
			} else {
				rrs = append(rrs, newAddr(name, ttl, in.Addr))
			}
		}
	}
	return append(rrs, soa)
}

// transfer writes an AXFR of the zone of r's question (RFC 5936), in
// messages of at most 100 records. IXFR is answered with a full transfer,
// as RFC 1995 allows a server without history to do.
func (h *Handler) transfer(w dns.ResponseWriter, r *dns.Msg) error {
	z, labels, ok := h.zoneOf(fold(r.Question[0].Name))
	if !ok || len(labels) != 0 {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeNotAuth)
		return w.WriteMsg(m)
	}
	rrs := dedupe(h.zoneRecords(z))
	for start := 0; start < len(rrs); start += 100 {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		m.Compress = true
		m.Answer = rrs[start:min(start+100, len(rrs))]
		if err := w.WriteMsg(m); err != nil {
			return err
		}
	}
	return nil
}

// dedupe removes repeated records (the same A of two instances on one host),
// keeping the first and the order.
func dedupe(rrs []dns.RR) []dns.RR {
	seen := make(map[string]bool, len(rrs))
	out := rrs[:0]
	for i, rr := range rrs {
		key := rr.String()
		if seen[key] && i != len(rrs)-1 { // the closing SOA repeats the first on purpose
			continue
		}
		seen[key] = true
		out = append(out, rr)
	}
	return out
}
