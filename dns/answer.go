package dns

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

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
	// Explain answers _explain.<service>.<zone> TXT: why each instance is
	// served or not. Off by default: it reveals the registry.
	Explain bool
	// UnknownPriority and UnhealthyPriority are added to the SRV priority of
	// instances served with unknown health (healthy_or_unknown mode) and
	// unhealthy ones (any mode, panic mode), so clients try healthy ones
	// first; A/AAAA answers list healthy ones first.
	UnknownPriority, UnhealthyPriority uint16
	// LocalityKey is the metadata key naming an instance's zone (e.g.
	// "zone"); with ClientZones, same-zone instances come first.
	LocalityKey string
	// ClientZones maps client networks to zones; an EDNS Client Subnet
	// option is used in place of the client's address when present.
	ClientZones []ClientZone
	// TTLFloor is the smallest TTL an answer gets when it is cut short by
	// an instance's lease running out (default 1).
	TTLFloor uint32
	// MaxTXT bounds the metadata TXT of one instance, in octets (default 4000).
	MaxTXT int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// QueryLog is the share of queries logged, 0..1, one in every 1/QueryLog
	// counted (default 0: off).
	QueryLog float64
}

// ClientZone says that clients in Prefix are in Zone.
type ClientZone struct {
	Prefix netip.Prefix
	Zone   string
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
	if o.TTLFloor == 0 {
		o.TTLFloor = 1
	}
	if o.MaxTXT <= 0 {
		o.MaxTXT = 4000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

type globalRand struct{}

func (globalRand) IntN(n int) int { return rand.IntN(n) }

// Handler answers queries for its zones from their catalogs. Answer is a
// pure function of the request and the catalogs, so it is table-tested
// without sockets; ServeDNS adapts it to the wire.
type Handler struct {
	// opts are swapped whole by SetOptions (SIGHUP reload).
	opts  atomic.Pointer[Options]
	cat   *Catalog // of the primary zone: logs and panics are reported there
	zones []*zone
	// packed holds every answer packed ahead of queries (see packed.go).
	packed *packedTable
	stats  *Stats // see stats.go
	qlog   queryLog
}

// NewHandler returns a Handler answering opts.Zone from cat, and every
// ExtraZones entry from its own catalog.
func NewHandler(cat *Catalog, opts Options) *Handler {
	opts.setDefaults()
	h := &Handler{cat: cat, zones: []*zone{newZone(opts.Zone, cat, opts.NS)}, packed: newPackedTable(),
		stats: new(Stats), qlog: newQueryLog(opts.QueryLog)}
	h.opts.Store(&opts)
	for _, z := range opts.ExtraZones {
		h.zones = append(h.zones, newZone(z.Name, z.Catalog, ""))
	}
	for _, z := range h.zones {
		z.cat.listen(func(label string, s *service) { h.repack(z, label, s) })
	}
	return h
}

// SetOptions replaces the handler's options, as a configuration reload
// does, and repacks every answer under them. The zones (Zone, ExtraZones,
// NS) and QueryLog are fixed at NewHandler: changing them takes a restart.
func (h *Handler) SetOptions(opts Options) {
	old := h.opts.Load()
	opts.Zone, opts.ExtraZones, opts.NS, opts.QueryLog = old.Zone, old.ExtraZones, old.NS, old.QueryLog
	opts.setDefaults()
	h.opts.Store(&opts)
	for _, z := range h.zones {
		z.cat.replay(func(label string, s *service) { h.repack(z, label, s) })
	}
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
	// perClient is set when the answer depends on who asks (locality,
	// sticky order) or on the time (a lease running out): it is not packed.
	perClient bool
}

// live asks for the order of this response: round-robin turns, random
// draws. A variant >= 0 asks for one fixed, reproducible order instead,
// which is how answers are packed ahead of queries (see packed.go).
const live = -1

// query is one question being answered.
type query struct {
	dns.Question
	z       *zone
	variant int
	client  client
	now     time.Time
}

// Answer builds the authoritative reply to a query from an unknown client.
// It does not truncate, add OPT or forward: that depends on the transport
// and the client (see ServeDNS).
func (h *Handler) Answer(r *dns.Msg) *dns.Msg {
	m, _ := h.answer(r, live, client{})
	return m
}

// answer is Answer with the order variant and the client; it also returns
// how the answer was made.
func (h *Handler) answer(r *dns.Msg, variant int, c client) (*dns.Msg, answer) {
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
	q := &query{Question: r.Question[0], variant: variant, client: c, now: h.opts.Load().Now()}
	if q.Qclass != dns.ClassINET {
		m.Rcode = dns.RcodeRefused
		return m, answer{}
	}
	z, labels, ok := h.zoneOf(fold(q.Name))
	if !ok {
		m.Rcode = dns.RcodeRefused
		return m, answer{}
	}
	q.z = z
	a, err := h.resolve(q, labels)
	// The one place outcomes become rcodes.
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
	return newSOA(z.name, z.ns, z.cat.Serial(), h.opts.Load().NegativeTTL)
}

func (h *Handler) resolve(q *query, labels []string) (answer, error) {
	switch q.Qtype {
	case dns.TypeAXFR, dns.TypeIXFR:
		return answer{}, errRefused // transfers are served by ServeDNS, over TCP, to allowed clients
	}
	a, err := h.lookup(q, labels)
	if q.Qtype == dns.TypeANY && err == nil {
		// RFC 8482: a small honest answer to ANY, never everything we have.
		return answer{answer: []dns.RR{newHINFO(q.Name, h.opts.Load().TTL)}}, nil
	}
	return a, err
}

// notFound is the outcome for a name the catalog does not know: it does not
// exist, unless the view is out of sync, when it may.
func notFound(z *zone) error {
	if !z.cat.Synced() {
		return errNotSynced
	}
	return errNXDomain
}

// lookup dispatches on the shape of the name below its zone (see doc.go).
func (h *Handler) lookup(q *query, labels []string) (answer, error) {
	z, n := q.z, len(labels)
	switch {
	case n == 0:
		return h.apex(q)
	case n == 3 && labels[0] == "_services" && labels[1] == "_dns-sd" && labels[2] == "_udp":
		return h.enumerate(q)
	case n == 2 && labels[0] == "_dns-sd" && labels[1] == "_udp",
		n == 1 && (labels[0] == "_tcp" || labels[0] == "_udp"):
		return answer{}, errNoData // empty non-terminals
	case n >= 2 && (labels[n-1] == "_tcp" || labels[n-1] == "_udp"):
		// _<service>._<proto>: RFC 2782 SRV and DNS-SD browsing.
		label, ok := strings.CutPrefix(labels[n-2], "_")
		s, found := z.cat.lookup(label)
		if !ok || !found {
			return answer{}, notFound(z)
		}
		proto := labels[n-1][1:]
		switch n {
		case 2:
			return h.serviceType(q, s, proto)
		case 3:
			return h.dnssdInstance(q, s, proto, labels[0])
		}
		return answer{}, errNXDomain
	}
	s, ok := z.cat.lookup(labels[n-1])
	if !ok {
		if n == 1 && labels[0] == z.nsLabel && z == h.zones[0] && len(h.opts.Load().NSAddrs) > 0 {
			return h.nsAddrs(q)
		}
		return answer{}, notFound(z)
	}
	below := labels[:n-1]
	switch {
	case len(below) == 0:
		return h.service(q, s, selection{})
	case len(below) == 1 && s.live[below[0]] != nil:
		return h.instance(q, s, s.live[below[0]]) // an instance id wins over a tag
	case len(below) == 1 && below[0] == "_explain" && h.opts.Load().Explain:
		return h.explain(q, s)
	case s.live[below[len(below)-1]] != nil:
		return answer{}, errNXDomain // nothing lives below an instance
	case len(below) == 3 && below[2] == "meta":
		return h.service(q, s, selection{metaKey: below[1], metaValue: below[0]})
	}
	return h.service(q, s, selection{tags: below})
}

func (h *Handler) apex(q *query) (answer, error) {
	z := q.z
	switch q.Qtype {
	case dns.TypeSOA, dns.TypeANY:
		return answer{answer: []dns.RR{h.soa(z)}}, nil
	case dns.TypeNS:
		a := answer{answer: []dns.RR{newNS(q.Name, h.opts.Load().TTL, z.ns)}}
		if z.nsLabel != "" && z == h.zones[0] {
			for _, addr := range h.opts.Load().NSAddrs {
				a.extra = append(a.extra, newAddr(z.ns, h.opts.Load().TTL, addr))
			}
		}
		return a, nil
	}
	return answer{}, errNoData
}

func (h *Handler) nsAddrs(q *query) (answer, error) {
	var a answer
	for _, addr := range h.opts.Load().NSAddrs {
		if q.Qtype == familyType(addr) || q.Qtype == dns.TypeANY {
			a.answer = append(a.answer, newAddr(q.Name, h.opts.Load().TTL, addr))
		}
	}
	return a, nil
}

// instance answers <id>.<service>.<zone>.
func (h *Handler) instance(q *query, s *service, in *registry.Instance) (answer, error) {
	ttl, bound := h.ttl(q, in)
	a := answer{perClient: bound}
	switch {
	case in.IsName():
		// The name is an alias of the host the instance registered.
		a.answer = []dns.RR{newCNAME(q.Name, ttl, dns.Fqdn(in.Host))}
	case q.Qtype == familyType(in.Addr) || q.Qtype == dns.TypeANY:
		a.answer = []dns.RR{newAddr(q.Name, ttl, in.Addr)}
	case q.Qtype == dns.TypeTXT:
		a.answer = h.metaTXT(q.Name, ttl, in, false)
	}
	if len(a.answer) == 0 {
		return a, errNoData
	}
	return a, nil
}

// ttl is the TTL of records of the given instances: the configured TTL, cut
// to the time left on the shortest lease that is running out (never below
// the floor), so resolvers do not cache an instance past its expiry. bound
// reports whether a lease cut it, which makes the answer depend on the time.
func (h *Handler) ttl(q *query, ins ...*registry.Instance) (ttl uint32, bound bool) {
	ttl = h.opts.Load().TTL
	for _, in := range ins {
		if in.LeaseEnds.IsZero() {
			continue
		}
		bound = true
		left := uint32(max(in.LeaseEnds.Sub(q.now).Seconds(), 0))
		ttl = min(ttl, max(left, h.opts.Load().TTLFloor))
	}
	return ttl, bound
}
