package dns

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"strings"

	"github.com/miekg/dns"

	"github.com/regdns/regdns/internal/balance"
	"github.com/regdns/regdns/registry"
)

// Outcomes that are not answers; Answer maps them to rcodes in one switch.
var (
	errNXDomain  = errors.New("name does not exist")
	errNoData    = errors.New("no data of that type")
	errNotSynced = errors.New("registry view not in sync")
	errRefused   = errors.New("not authoritative for that name")
)

// Options configure a Handler. Zero values take the documented defaults.
type Options struct {
	// Zone served (default "service.local.").
	Zone string
	// TTL of positive answers in seconds (default 5).
	TTL uint32
	// NegativeTTL is the SOA minimum: how long resolvers cache NXDOMAIN and
	// NODATA, in seconds (default 5).
	NegativeTTL uint32
	// Strategy orders answers (default round-robin).
	Strategy balance.Strategy
	// Strategies overrides Strategy per service (registry name).
	Strategies map[string]balance.Strategy
	// NS is the name server name of the zone (default "ns.<zone>").
	NS string
	// NSAddrs are the addresses of NS, answered as glue when NS is in the zone.
	NSAddrs []netip.Addr
	// MaxUDPSize caps the EDNS UDP payload size we accept and advertise
	// (default 1232, the DNS flag day 2020 value).
	MaxUDPSize uint16
	// Rand is the random source of weighted and random orders (default math/rand/v2).
	Rand balance.Rand
}

func (o *Options) setDefaults() {
	if o.Zone == "" {
		o.Zone = "service.local."
	}
	o.Zone = dns.CanonicalName(o.Zone)
	if o.TTL == 0 {
		o.TTL = 5
	}
	if o.NegativeTTL == 0 {
		o.NegativeTTL = 5
	}
	if o.NS == "" {
		o.NS = "ns." + o.Zone
	}
	o.NS = dns.CanonicalName(o.NS)
	if o.MaxUDPSize == 0 {
		o.MaxUDPSize = 1232
	}
	if o.Rand == nil {
		o.Rand = globalRand{}
	}
}

type globalRand struct{}

func (globalRand) IntN(n int) int { return rand.IntN(n) }

// Handler answers queries for one zone from a Catalog. Answer is a pure
// function of the request and the catalog, so it is table-tested without
// sockets; ServeDNS adapts it to the wire.
type Handler struct {
	opts Options
	cat  *Catalog
	// nsLabel is the label of the NS name when it sits directly in the zone.
	nsLabel string
}

// NewHandler returns a Handler answering from cat.
func NewHandler(cat *Catalog, opts Options) *Handler {
	opts.setDefaults()
	h := &Handler{opts: opts, cat: cat}
	if labels, ok := splitRelative(opts.NS, opts.Zone); ok && len(labels) == 1 {
		h.nsLabel = labels[0]
	}
	return h
}

// Zone returns the zone served, fully qualified and lower case.
func (h *Handler) Zone() string { return h.opts.Zone }

// answer is what a name resolves to, before it becomes a message.
type answer struct {
	answer, extra []dns.RR
}

// Answer builds the authoritative reply to a query with exactly one question.
// It does not truncate: that depends on the transport (see ServeDNS).
func (h *Handler) Answer(r *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(r)
	if len(r.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return m
	}
	q := r.Question[0]
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		m.Rcode = dns.RcodeRefused
		return m
	}
	a, err := h.resolve(q)
	switch {
	case errors.Is(err, errRefused):
		m.Rcode = dns.RcodeRefused
		return m
	case errors.Is(err, errNotSynced):
		m.Rcode = dns.RcodeServerFailure
		return m
	}
	m.Authoritative = true
	switch {
	case errors.Is(err, errNXDomain):
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{h.soa()}
	case errors.Is(err, errNoData) || len(a.answer) == 0:
		m.Ns = []dns.RR{h.soa()}
	default:
		m.Answer, m.Extra = a.answer, a.extra
	}
	return m
}

func (h *Handler) soa() dns.RR {
	return newSOA(h.opts.Zone, h.opts.NS, h.cat.Serial(), h.opts.NegativeTTL)
}

// resolve dispatches on the shape of the name.
func (h *Handler) resolve(q dns.Question) (answer, error) {
	labels, ok := splitRelative(fold(q.Name), h.opts.Zone)
	if !ok {
		return answer{}, errRefused
	}
	switch len(labels) {
	case 0:
		return h.apex(q)
	case 1:
		if s, ok := h.cat.lookup(labels[0]); ok {
			return h.service(q, s, "")
		}
		if labels[0] == "_tcp" || labels[0] == "_udp" {
			return answer{}, errNoData // empty non-terminal above _svc._tcp
		}
		if labels[0] == h.nsLabel && len(h.opts.NSAddrs) > 0 {
			return h.nsAddrs(q.Name, q.Qtype)
		}
	case 2:
		if svc, ok := strings.CutPrefix(labels[0], "_"); ok && (labels[1] == "_tcp" || labels[1] == "_udp") {
			if s, ok := h.cat.lookup(svc); ok {
				return h.service(q, s, labels[1][1:])
			}
			break
		}
		if s, ok := h.cat.lookup(labels[1]); ok {
			return h.instance(q, s, labels[0])
		}
	default:
		if _, ok := h.cat.lookup(labels[len(labels)-1]); ok {
			return answer{}, errNXDomain
		}
	}
	if !h.cat.Synced() {
		return answer{}, errNotSynced
	}
	return answer{}, errNXDomain
}

func (h *Handler) apex(q dns.Question) (answer, error) {
	switch q.Qtype {
	case dns.TypeSOA:
		return answer{answer: []dns.RR{h.soa()}}, nil
	case dns.TypeNS, dns.TypeANY:
		a := answer{answer: []dns.RR{newNS(q.Name, h.opts.TTL, h.opts.NS)}}
		if q.Qtype == dns.TypeANY {
			a.answer = append(a.answer, h.soa())
		}
		if h.nsLabel != "" {
			for _, addr := range h.opts.NSAddrs {
				a.extra = append(a.extra, newAddr(h.opts.NS, h.opts.TTL, addr))
			}
		}
		return a, nil
	}
	return answer{}, errNoData
}

func (h *Handler) nsAddrs(owner string, qtype uint16) (answer, error) {
	var a answer
	for _, addr := range h.opts.NSAddrs {
		if qtype == familyType(addr) || qtype == dns.TypeANY {
			a.answer = append(a.answer, newAddr(owner, h.opts.TTL, addr))
		}
	}
	return a, nil
}

// service answers <service>.<zone> (proto "") and _<service>._<proto>.<zone>.
func (h *Handler) service(q dns.Question, s *service, proto string) (answer, error) {
	var picked []*registry.Instance
	for _, in := range s.serving {
		if proto == "" || protocol(in) == proto {
			picked = append(picked, in)
		}
	}
	order := h.order(s, picked)
	ttl := h.opts.TTL
	switch q.Qtype {
	case dns.TypeSRV, dns.TypeANY:
		var a answer
		type srvKey struct {
			priority, weight, port uint16
			target                 string
		}
		seen := make(map[srvKey]bool, len(order))
		for _, i := range order {
			in := picked[i]
			target := h.target(s, in)
			// Instances sharing a host name and port give the same record;
			// an RRset holds it once (RFC 2181 5).
			k := srvKey{in.Priority, in.Weight, in.Port, fold(target)}
			if seen[k] {
				continue
			}
			seen[k] = true
			a.answer = append(a.answer, newSRV(q.Name, ttl, in.Priority, in.Weight, in.Port, target))
			if !in.IsName() {
				a.extra = append(a.extra, newAddr(target, ttl, in.Addr))
			}
		}
		return a, nil
	case dns.TypeA, dns.TypeAAAA:
		if proto != "" {
			return answer{}, errNoData
		}
		var a answer
		seen := make(map[netip.Addr]bool, len(order))
		for _, i := range order {
			in := picked[i]
			if in.IsName() || familyType(in.Addr) != q.Qtype || seen[in.Addr] {
				continue // an RRset holds no duplicates (RFC 2181 5)
			}
			seen[in.Addr] = true
			a.answer = append(a.answer, newAddr(q.Name, ttl, in.Addr))
		}
		return a, nil
	}
	return answer{}, errNoData
}

// target is the SRV target of an instance: its own name in the zone, or its
// host name when it registered one.
func (h *Handler) target(s *service, in *registry.Instance) string {
	if in.IsName() {
		return dns.Fqdn(in.Host)
	}
	return fold(in.ID) + "." + s.label + "." + h.opts.Zone
}

// order returns the order of picked for this response.
func (h *Handler) order(s *service, picked []*registry.Instance) []int {
	order := make([]int, len(picked))
	strategy, ok := h.opts.Strategies[s.name]
	if !ok {
		strategy = h.opts.Strategy
	}
	var weights []uint16
	if strategy == balance.Weighted {
		weights = make([]uint16, len(picked))
		for i, in := range picked {
			weights[i] = in.Weight
		}
	}
	balance.Order(strategy, order, s.turn.Add(1)-1, weights, h.opts.Rand)
	return order
}

// instance answers <id>.<service>.<zone>.
func (h *Handler) instance(q dns.Question, s *service, id string) (answer, error) {
	in, ok := s.live[id]
	if !ok {
		return answer{}, errNXDomain
	}
	if in.IsName() {
		// The name is an alias of the host the instance registered.
		return answer{answer: []dns.RR{newCNAME(q.Name, h.opts.TTL, dns.Fqdn(in.Host))}}, nil
	}
	if q.Qtype == familyType(in.Addr) || q.Qtype == dns.TypeANY {
		return answer{answer: []dns.RR{newAddr(q.Name, h.opts.TTL, in.Addr)}}, nil
	}
	return answer{}, errNoData
}
