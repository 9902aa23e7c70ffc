package dns

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"strings"

	"github.com/miekg/dns"

	"github.com/regdns/regdns/internal/balance"
	"github.com/regdns/regdns/registry"
)

// selection narrows a service to some of its instances: by protocol
// (_svc._tcp), by tags (<tag>.<tag>.<svc>), or by one metadata value
// (<value>.<key>.meta.<svc>).
type selection struct {
	proto              string
	tags               []string
	metaKey, metaValue string
}

func (sel selection) filters() bool { return len(sel.tags) > 0 || sel.metaKey != "" }

func (sel selection) match(in *registry.Instance) bool {
	if sel.proto != "" && protocol(in) != sel.proto {
		return false
	}
	for _, t := range sel.tags {
		if !in.HasTag(t) {
			return false
		}
	}
	if sel.metaKey != "" {
		for _, e := range in.Meta {
			// A '.' cannot be written in one label: values spell it '-'.
			if strings.EqualFold(e.Key, sel.metaKey) && strings.EqualFold(strings.ReplaceAll(e.Value, ".", "-"), sel.metaValue) {
				return true
			}
		}
		return false
	}
	return true
}

// service answers <service>.<zone> and its tag and metadata selections.
func (h *Handler) service(q *query, s *service, sel selection) (answer, error) {
	if sel.filters() && !h.anyLive(s, sel) {
		return answer{}, notFound(q.z) // no instance carries it: the name does not exist
	}
	switch q.Qtype {
	case dns.TypeSRV, dns.TypeANY:
		return h.srv(q, s, sel), nil
	case dns.TypeA, dns.TypeAAAA:
		if sel.proto != "" {
			return answer{}, errNoData
		}
		return h.addrs(q, s, sel), nil
	}
	return answer{}, errNoData
}

func (h *Handler) anyLive(s *service, sel selection) bool {
	for _, in := range s.live {
		if sel.match(in) {
			return true
		}
	}
	return false
}

// serviceType answers _<service>._<proto>.<zone>: SRV records as for
// <service>.<zone> (RFC 2782), and the PTR records of DNS-SD browsing.
func (h *Handler) serviceType(q *query, s *service, proto string) (answer, error) {
	sel := selection{proto: proto}
	if q.Qtype == dns.TypePTR {
		return h.browse(q, s, sel), nil
	}
	return h.service(q, s, sel)
}

// picked returns the serving instances of the selection, in registry order.
func picked(s *service, sel selection) []*registry.Instance {
	var out []*registry.Instance
	for _, in := range s.serving {
		if sel.match(in) {
			out = append(out, in)
		}
	}
	return out
}

func (h *Handler) srv(q *query, s *service, sel selection) answer {
	ins := picked(s, sel)
	order, a := h.order(q, s, ins)
	ttl, bound := h.ttl(q, ins...)
	a.perClient = a.perClient || bound
	seen := make(map[dns.SRV]bool, len(order))
	best := bestTier(ins)
	for _, i := range order {
		in := ins[i]
		target := h.target(q.z, s, in)
		weight := in.Weight
		if in.Draining() {
			weight = 0 // finishes its connections, takes no new ones
		}
		srv := newSRV(q.Name, ttl, h.srvPriority(in, best), weight, in.Port, target)
		// Instances sharing host, port, priority and weight would repeat a
		// record; an RRset holds no duplicates (RFC 2181 5).
		if seen[*srv] {
			continue
		}
		seen[*srv] = true
		a.answer = append(a.answer, srv)
		if !in.IsName() {
			a.extra = append(a.extra, newAddr(target, ttl, in.Addr))
		}
	}
	return a
}

func (h *Handler) addrs(q *query, s *service, sel selection) answer {
	var ins []*registry.Instance
	for _, in := range picked(s, sel) {
		if !in.IsName() && familyType(in.Addr) == q.Qtype && !in.Draining() {
			ins = append(ins, in)
		}
	}
	order, a := h.order(q, s, ins)
	ttl, bound := h.ttl(q, ins...)
	a.perClient = a.perClient || bound
	seen := make(map[netip.Addr]bool, len(ins))
	for _, i := range order {
		in := ins[i]
		if seen[in.Addr] {
			continue // an RRset holds no duplicates (RFC 2181 5)
		}
		if len(a.answer) == h.opts.Load().MaxAnswers {
			break // the order chose which: the first ones
		}
		seen[in.Addr] = true
		a.answer = append(a.answer, newAddr(q.Name, ttl, in.Addr))
	}
	return a
}

// tier is 0 for healthy (and draining) instances, 1 for unknown health, 2
// for unhealthy ones (served in "any" or panic mode).
func tier(in *registry.Instance) int {
	switch in.Health.Status {
	case registry.StatusUnknown:
		return 1
	case registry.StatusUnhealthy:
		return 2
	}
	return 0
}

// srvPriority is the SRV priority of in: its own, plus what its tier adds
// over the best tier among the instances answered, best: nothing when all
// are alike (no health checker at all leaves every priority as registered).
// It never wraps around: not when the priorities are configured out of
// order or in is not among the instances answered (a step below the best
// one adds nothing), nor past 65535.
func (h *Handler) srvPriority(in *registry.Instance, best int) uint16 {
	step := func(t int) int {
		switch t {
		case 1:
			return int(h.opts.Load().UnknownPriority)
		case 2:
			return int(h.opts.Load().UnhealthyPriority)
		}
		return 0
	}
	return uint16(min(int(in.Priority)+max(step(tier(in))-step(best), 0), math.MaxUint16))
}

// bestTier is the best (lowest) tier among ins.
func bestTier(ins []*registry.Instance) int {
	best := 2
	for _, in := range ins {
		best = min(best, tier(in))
	}
	return best
}

// target is the SRV target of an instance: its own name in the zone, or its
// host name when it registered one.
func (h *Handler) target(z *zone, s *service, in *registry.Instance) string {
	if in.IsName() {
		return dns.Fqdn(in.Host)
	}
	return fold(in.ID) + "." + s.label + "." + z.name
}

// order returns the order of ins for this response, with the answer it
// belongs to started: the strategy's order (this response's, or the fixed
// variant q.variant), then the client's zone first, and above all healthy
// before unknown before unhealthy. Each regrouping is stable, so the strategy's
// order (and so its weights) holds within every group.
func (h *Handler) order(q *query, s *service, ins []*registry.Instance) ([]int, answer) {
	order := make([]int, len(ins))
	strategy, ok := h.opts.Load().Strategies[s.name]
	if !ok {
		strategy = h.opts.Load().Strategy
	}
	a := answer{orderLen: len(order), strategy: strategy}
	var weights []uint16
	if strategy == balance.Weighted || strategy == balance.Sticky {
		weights = make([]uint16, len(ins))
		for i, in := range ins {
			weights[i] = in.Weight
		}
	}
	switch {
	case strategy == balance.Sticky:
		ids := make([]string, len(ins))
		for i, in := range ins {
			ids[i] = in.ID
		}
		balance.StickyOrder(order, ids, weights, q.client.key())
		a.perClient = true
	case q.variant == live:
		balance.Order(strategy, order, s.turn.Add(1)-1, weights, h.opts.Load().Rand)
	default:
		// Variant v: rotation v, or the v-th of a fixed series of draws.
		balance.Order(strategy, order, uint64(q.variant), weights, rand.New(rand.NewPCG(uint64(q.variant), 0x5eed)))
	}
	if h.opts.Load().LocalityKey != "" && len(h.opts.Load().ClientZones) > 0 {
		a.perClient = true
		if zone := q.client.zone; zone != "" {
			group(order, func(i int) int {
				if strings.EqualFold(ins[i].Meta.Get(h.opts.Load().LocalityKey), zone) {
					return 0
				}
				return 1
			})
		}
	}
	// Health last, so it ranks first: a healthy instance in another zone
	// comes before a same-zone one of unknown health, as SRV priorities say.
	group(order, func(i int) int { return tier(ins[i]) })
	return order, a
}

// group stably sorts order by key (small keys first).
func group(order []int, key func(int) int) {
	for i := 1; i < len(order); i++ {
		for j := i; j > 0 && key(order[j]) < key(order[j-1]); j-- {
			order[j], order[j-1] = order[j-1], order[j]
		}
	}
}
