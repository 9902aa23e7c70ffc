// Package dns is the authoritative DNS server of regdns. It speaks DNS and
// knows nothing about Redis: it answers from a [Catalog] of registry
// snapshots that the registry view pushes into it on every change.
//
// Names served, relative to the zone (default service.local.):
//
//	<zone>                      SOA, NS (the apex)
//	<service>                   SRV (one per serving instance, glue in additional), A, AAAA
//	_<service>._tcp|_udp        SRV, as <service>, for instances of that protocol (metadata "protocol", default tcp)
//	<instance-id>.<service>     A or AAAA of that instance, or a CNAME when its host is a name
//
// Rcode policy, decided in one place ([Handler.Answer]): a name in the zone
// that does not exist is NXDOMAIN with the SOA in authority; an existing name
// without data of the asked type is NODATA (NOERROR, SOA in authority); a
// name outside the zone is REFUSED; a name the catalog does not know while
// the registry view is out of sync is SERVFAIL, never NXDOMAIN, because it
// may exist. Every authoritative answer carries AA.
package dns
