package dns

import (
	"net/netip"

	"github.com/miekg/dns"
)

// RR constructors, one per type, so every answer is built the same way.

func hdr(name string, rrtype uint16, ttl uint32) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: rrtype, Class: dns.ClassINET, Ttl: ttl}
}

func newSRV(owner string, ttl uint32, priority, weight, port uint16, target string) *dns.SRV {
	return &dns.SRV{Hdr: hdr(owner, dns.TypeSRV, ttl), Priority: priority, Weight: weight, Port: port, Target: target}
}

// newAddr returns an A or AAAA record for addr.
func newAddr(owner string, ttl uint32, addr netip.Addr) dns.RR {
	if addr.Is4() {
		return &dns.A{Hdr: hdr(owner, dns.TypeA, ttl), A: addr.AsSlice()}
	}
	return &dns.AAAA{Hdr: hdr(owner, dns.TypeAAAA, ttl), AAAA: addr.AsSlice()}
}

func newCNAME(owner string, ttl uint32, target string) *dns.CNAME {
	return &dns.CNAME{Hdr: hdr(owner, dns.TypeCNAME, ttl), Target: target}
}

func newNS(owner string, ttl uint32, ns string) *dns.NS {
	return &dns.NS{Hdr: hdr(owner, dns.TypeNS, ttl), Ns: ns}
}

// newSOA returns the zone's SOA. Its MINIMUM and its own TTL are the negative
// TTL, so resolvers cache NXDOMAIN/NODATA for exactly that long (RFC 2308).
func newSOA(zone, ns string, serial, negTTL uint32) *dns.SOA {
	return &dns.SOA{
		Hdr:     hdr(zone, dns.TypeSOA, negTTL),
		Ns:      ns,
		Mbox:    "hostmaster." + zone,
		Serial:  serial,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  negTTL,
	}
}

// familyType is the qtype that answers addr.
func familyType(addr netip.Addr) uint16 {
	if addr.Is4() {
		return dns.TypeA
	}
	return dns.TypeAAAA
}

// newHINFO is the RFC 8482 answer to ANY.
func newHINFO(owner string, ttl uint32) *dns.HINFO {
	return &dns.HINFO{Hdr: hdr(owner, dns.TypeHINFO, ttl), Cpu: "RFC8482", Os: ""}
}

func newPTR(owner string, ttl uint32, target string) *dns.PTR {
	return &dns.PTR{Hdr: hdr(owner, dns.TypePTR, ttl), Ptr: target}
}
