package dns

import (
	"net/netip"

	"github.com/miekg/dns"
)

// client is what an answer may depend on about who asks.
type client struct {
	// subnet is the EDNS Client Subnet source prefix, or the client's
	// address cut to /24 (IPv4) or /56 (IPv6): what sticky order hashes.
	subnet netip.Prefix
	// zone is the client's zone from Options.ClientZones ("" when unknown).
	zone string
}

// key is the bytes sticky ordering hashes: the subnet, so clients behind
// one resolver or in one /24 keep one order.
func (c client) key() []byte {
	b, _ := c.subnet.MarshalBinary()
	return b
}

// clientOf works out the client of a query from its source address and
// EDNS Client Subnet option (RFC 7871), which wins when present.
func (h *Handler) clientOf(r *dns.Msg, from netip.Addr) client {
	var c client
	if from.IsValid() {
		bits := 24
		if from.Is6() {
			bits = 56
		}
		c.subnet, _ = from.Prefix(bits)
	}
	if opt := r.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if ecs, ok := o.(*dns.EDNS0_SUBNET); ok {
				if addr, ok := netip.AddrFromSlice(ecs.Address); ok {
					if p, err := addr.Unmap().Prefix(int(ecs.SourceNetmask)); err == nil {
						c.subnet = p
					}
				}
			}
		}
	}
	if c.subnet.IsValid() {
		c.zone = h.zoneOfClient(c.subnet.Addr())
	}
	return c
}

// zoneOfClient returns the zone of the most specific ClientZones network
// holding addr.
func (h *Handler) zoneOfClient(addr netip.Addr) string {
	zone, bits := "", -1
	for _, cz := range h.opts.Load().ClientZones {
		if cz.Prefix.Contains(addr) && cz.Prefix.Bits() > bits {
			zone, bits = cz.Zone, cz.Prefix.Bits()
		}
	}
	return zone
}
