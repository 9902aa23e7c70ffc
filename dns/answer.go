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
	// Zone served from the handler's catalog (default "service.local.").
	Zone string
	// ExtraZones are further zones, each with its own catalog.
	ExtraZones []Zone
	// TTL of positive answers in seconds (default 5).
	TTL uint32
	// NegativeTTL is the SOA minimum: how long resolvers cache NXDOMAIN and
	// NODATA, in seconds (default 5).
	NegativeTTL uint32
	// Strategy orders answers (default round-robin).
	Strategy balance.Strategy
	// Strategies overrides Strategy per service (registry name).
	Strategies map[string]balance.Strategy
	// MaxAnswers caps the A/AAAA records of a service answer, chosen by the
	// strategy, so they always fit a UDP reply (default 8; SRV answers are
	// never cut: they set TC instead).
	MaxAnswers int
	// NS is the name server name of Zone (default "ns.<zone>").
	NS string
	// NSAddrs are the addresses of NS, answered as glue when NS is in the zone.
	NSAddrs []netip.Addr
	// MaxUDPSize caps the EDNS UDP payload size we accept and advertise
	// (default 1232, the DNS flag day 2020 value).
	MaxUDPSize uint16
	// TransferFrom lists the client networks allowed AXFR/IXFR (over TCP);
	// everyone else is REFUSED (default: nobody).
	TransferFrom []netip.Prefix
	// Forwarder, when set, answers names outside the zones for the clients
	// it allows; without it such names are REFUSED.
	Forwarder *Forwarder
	// Rand is the random source of weighted and random orders (default math/rand/v2).
	Rand balance.Rand
}

func (o *Options) setDefaults() {
	if o.Zone == "" {
		o.Zone = "service.local."
	}
	if o.TTL == 0 {
		o.TTL = 5
	}
	if o.NegativeTTL == 0 {
		o.NegativeTTL = 5
	}
	if o.MaxAnswers <= 0 {
		o.MaxAnswers = 8
	}
	if o.MaxUDPSize == 0 {
		o.MaxUDPSize = 1232
	}
	if o.Rand == nil {
		o.Rand = globalRand{}
	}
}

type globalRand struct{}

func (globalRand) IntN(n int) int { return rand.IntN(n) }

// Handler answers queries for its zones from their catalogs. Answer is a
// pure function of the request and the catalogs, so it is table-tested
// without sockets; ServeDNS adapts it to the wire.
type Handler struct {
	opts  Options
	cat   *Catalog // of the primary zone: logs and panics are reported there
	zones []*zone
	// packed holds every answer packed ahead of queries (see packed.go).
	packed *packedTable
}

// NewHandler returns a Handler answering opts.Zone from cat, and every
// ExtraZones entry from its own catalog.
func NewHandler(cat *Catalog, opts Options) *Handler {
	opts.setDefaults()
	h := &Handler{opts: opts, cat: cat, zones: []*zone{newZone(opts.Zone, cat, opts.NS)}, packed: newPackedTable()}
	for _, z := range opts.ExtraZones {
		h.zones = append(h.zones, newZone(z.Name, z.Catalog, ""))
	}
	for _, z := range h.zones {
		z.cat.listen(func(label string, s *service) { h.repack(z, label, s) })
	}
	return h
}

// Zone returns the primary zone served, fully qualified and lower case.
func (h *Handler) Zone() string { return h.zones[0].name }

// answer is what a name resolves to, before it becomes a message.
type answer struct {
	answer, extra []dns.RR
	// orderLen is the length of the list the strategy ordered (0 when the
	// answer has no order): the number of distinct round-robin rotations.
	orderLen int
	// strategy is the one that ordered it.
	strategy balance.Strategy
}

// live asks for the order of this response: round-robin turns, random
// draws. A variant >= 0 asks for one fixed, reproducible order instead,
// which is how answers are packed ahead of queries (see packed.go).
const live = -1

// Answer builds the authoritative reply to a query. It does not truncate,
// add OPT or forward: that depends on the transport and the client (see
// ServeDNS).
func (h *Handler) Answer(r *dns.Msg) *dns.Msg {
	m, _ := h.answer(r, live)
	return m
}

// answer is Answer with the order variant; it also returns how the answer
// was ordered.
func (h *Handler) answer(r *dns.Msg, variant int) (*dns.Msg, answer) {
	m := new(dns.Msg)
	m.SetReply(r)
	switch {
	case r.Opcode != dns.OpcodeQuery:
		m.Rcode = dns.RcodeNotImplemented // RFC 1035 4.1.1
		return m, answer{}
	case len(r.Question) != 1:
		m.Rcode = dns.RcodeFormatError
		return m, answer{}
	}
	q := r.Question[0]
	if q.Qclass != dns.ClassINET {
		m.Rcode = dns.RcodeRefused
		return m, answer{}
	}
	z, labels, ok := h.zoneOf(fold(q.Name))
	if !ok {
		m.Rcode = dns.RcodeRefused
		return m, answer{}
	}
	a, err := h.resolve(z, labels, q, variant)
	switch {
	case errors.Is(err, errRefused):
		m.Rcode = dns.RcodeRefused
		return m, answer{}
	case errors.Is(err, errNotSynced):
		m.Rcode = dns.RcodeServerFailure
		return m, answer{}
	}
	m.Authoritative = true
	switch {
	case errors.Is(err, errNXDomain):
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{h.soa(z)}
	case errors.Is(err, errNoData) || len(a.answer) == 0:
		m.Ns = []dns.RR{h.soa(z)}
	default:
		m.Answer, m.Extra = a.answer, a.extra
	}
	return m, a
}

func (h *Handler) soa(z *zone) dns.RR {
	return newSOA(z.name, z.ns, z.cat.Serial(), h.opts.NegativeTTL)
}

// resolve dispatches on the shape of the name below its zone.
func (h *Handler) resolve(z *zone, labels []string, q dns.Question, variant int) (answer, error) {
	switch q.Qtype {
	case dns.TypeAXFR, dns.TypeIXFR:
		return answer{}, errRefused // transfers are served by ServeDNS, over TCP, to allowed clients
	}
	a, err := h.lookup(z, labels, q, variant)
	if q.Qtype == dns.TypeANY && err == nil {
		// RFC 8482: a small honest answer to ANY, never everything we have.
		return answer{answer: []dns.RR{newHINFO(q.Name, h.opts.TTL)}}, nil
	}
	return a, err
}

func (h *Handler) lookup(z *zone, labels []string, q dns.Question, variant int) (answer, error) {
	switch len(labels) {
	case 0:
		return h.apex(z, q)
	case 1:
		if s, ok := z.cat.lookup(labels[0]); ok {
			return h.service(q, z, s, "", variant)
		}
		if labels[0] == "_tcp" || labels[0] == "_udp" {
			return answer{}, errNoData // empty non-terminal above _svc._tcp
		}
		if labels[0] == z.nsLabel && z == h.zones[0] && len(h.opts.NSAddrs) > 0 {
			return h.nsAddrs(q.Name, q.Qtype)
		}
	case 2:
		if svc, ok := strings.CutPrefix(labels[0], "_"); ok && (labels[1] == "_tcp" || labels[1] == "_udp") {
			if s, ok := z.cat.lookup(svc); ok {
				return h.service(q, z, s, labels[1][1:], variant)
			}
			break
		}
		if s, ok := z.cat.lookup(labels[1]); ok {
			if a, err := h.instance(q, s, labels[0]); !errors.Is(err, errNXDomain) || z.cat.Synced() {
				return a, err
			}
			return answer{}, errNotSynced // an instance registered while we were away
		}
	default:
		if _, ok := z.cat.lookup(labels[len(labels)-1]); ok && z.cat.Synced() {
			return answer{}, errNXDomain
		}
	}
	if !z.cat.Synced() {
		return answer{}, errNotSynced
	}
	return answer{}, errNXDomain
}

func (h *Handler) apex(z *zone, q dns.Question) (answer, error) {
	switch q.Qtype {
	case dns.TypeSOA, dns.TypeANY:
		return answer{answer: []dns.RR{h.soa(z)}}, nil
	case dns.TypeNS:
		a := answer{answer: []dns.RR{newNS(q.Name, h.opts.TTL, z.ns)}}
		if z.nsLabel != "" && z == h.zones[0] {
			for _, addr := range h.opts.NSAddrs {
				a.extra = append(a.extra, newAddr(z.ns, h.opts.TTL, addr))
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
func (h *Handler) service(q dns.Question, z *zone, s *service, proto string, variant int) (answer, error) {
	var picked []*registry.Instance
	for _, in := range s.serving {
		if proto == "" || protocol(in) == proto {
			picked = append(picked, in)
		}
	}
	ttl := h.opts.TTL
	switch q.Qtype {
	case dns.TypeSRV, dns.TypeANY:
		order, strategy := h.order(s, picked, variant)
		a := answer{orderLen: len(order), strategy: strategy}
		seen := make(map[dns.SRV]bool, len(order))
		for _, i := range order {
			in := picked[i]
			target := h.target(z, s, in)
			srv := newSRV(q.Name, ttl, in.Priority, in.Weight, in.Port, target)
			// Instances sharing host, port, priority and weight would repeat a
			// record; an RRset holds no duplicates (RFC 2181 5).
			if key := *srv; seen[key] {
				continue
			} else {
				seen[key] = true
			}
			a.answer = append(a.answer, srv)
			if !in.IsName() {
				a.extra = append(a.extra, newAddr(target, ttl, in.Addr))
			}
		}
		return a, nil
	case dns.TypeA, dns.TypeAAAA:
		if proto != "" {
			return answer{}, errNoData
		}
		var family []*registry.Instance
		for _, in := range picked {
			if !in.IsName() && familyType(in.Addr) == q.Qtype {
				family = append(family, in)
			}
		}
		order, strategy := h.order(s, family, variant)
		a := answer{orderLen: len(order), strategy: strategy}
		seen := make(map[netip.Addr]bool, len(family))
		for _, i := range order {
			in := family[i]
			if seen[in.Addr] {
				continue // an RRset holds no duplicates (RFC 2181 5)
			}
			if len(a.answer) == h.opts.MaxAnswers {
				break // the strategy chose which: the first in its order
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
func (h *Handler) target(z *zone, s *service, in *registry.Instance) string {
	if in.IsName() {
		return dns.Fqdn(in.Host)
	}
	return fold(in.ID) + "." + s.label + "." + z.name
}

// order returns the order of picked for this response (variant live) or
// the fixed order number variant, and the strategy that made it.
func (h *Handler) order(s *service, picked []*registry.Instance, variant int) ([]int, balance.Strategy) {
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
	if variant == live {
		balance.Order(strategy, order, s.turn.Add(1)-1, weights, h.opts.Rand)
	} else {
		// Variant v: rotation v, or the v-th of a fixed series of draws.
		balance.Order(strategy, order, uint64(variant), weights, rand.New(rand.NewPCG(uint64(variant), 0x5eed)))
	}
	return order, strategy
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
