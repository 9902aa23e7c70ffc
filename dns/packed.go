package dns

import (
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"github.com/miekg/dns"

	"github.com/regdns/regdns/internal/balance"
)

// Packed answers: the fast path. When a service changes, every answer it
// gives (each name it owns, each qtype, each order variant, each size a
// reply may have) is built once by the ordinary handler and packed to wire
// format. A query then costs a table lookup and a copy: the ID, the RD/CD
// bits and the question's own spelling are patched in, and OPT appended.
// Anything the table does not hold goes to the full handler, so the fast
// path never decides what an answer is, only how fast it is sent.

// maxVariants bounds the order variants packed per answer. Round-robin over
// more instances than this is answered by the full handler, which rotates
// exactly; weighted and random orders are drawn from this many variants.
const maxVariants = 32

// Size classes of a packed reply.
const (
	sizePlain = iota // UDP without EDNS: 512 octets
	sizeEDNS         // UDP with EDNS: MaxUDPSize octets, OPT appended at query time
	sizeTCP          // TCP: 65535 octets
	sizeClasses
)

// optLen is the length of the OPT record appended to replies: root name,
// type, class (UDP size), TTL (extended rcode, version, flags), RDLENGTH 0.
const optLen = 11

// packedAnswer is every packed form of one (name, qtype).
type packedAnswer struct {
	variants [sizeClasses][][]byte
	// rotate picks variants by the service's round-robin turn; otherwise at random.
	rotate bool
	turn   *atomic.Uint64
	// serialAt is the offset of the SOA serial in negative answers (0: none),
	// patched at query time because the serial moves on every registry change.
	serialAt [sizeClasses]int
	cat      *Catalog
}

// packedTable maps "lower-case wire name + qtype" to packed answers. Each
// service's entries are replaced as a unit, in time proportional to the
// service, never to the registry.
type packedTable struct {
	mu    sync.RWMutex
	m     map[string]*packedAnswer
	owned map[string][]string // zone+label -> keys of that service
}

func newPackedTable() *packedTable {
	return &packedTable{m: map[string]*packedAnswer{}, owned: map[string][]string{}}
}

// nodataType is the qtype slot of the answer to any other ordinary type.
const nodataType = 0

func tableKey(wireName []byte, qtype uint16) string {
	return string(binary.BigEndian.AppendUint16(wireName, qtype))
}

// replace swaps the entries of one service.
func (t *packedTable) replace(owner string, entries map[string]*packedAnswer) {
	keys := make([]string, 0, len(entries))
	for k := range entries {
		keys = append(keys, k)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range t.owned[owner] {
		delete(t.m, k)
	}
	for k, v := range entries {
		t.m[k] = v
	}
	if len(keys) == 0 {
		delete(t.owned, owner)
	} else {
		t.owned[owner] = keys
	}
}

func (t *packedTable) get(key []byte) *packedAnswer {
	t.mu.RLock()
	p := t.m[string(key)] // no allocation: the compiler looks up []byte keys in place
	t.mu.RUnlock()
	return p
}

// repack rebuilds the packed answers of the service with label in zone z;
// s nil drops them.
func (h *Handler) repack(z *zone, label string, s *service) {
	owner := z.name + "/" + label
	if s == nil {
		h.packed.replace(owner, nil)
		return
	}
	entries := map[string]*packedAnswer{}
	add := func(name string, qtypes ...uint16) {
		wire, ok := appendWireName(make([]byte, 0, len(name)+1), name)
		if !ok {
			return
		}
		for _, qt := range qtypes {
			p := h.pack(z, name, qt, s)
			if p == nil {
				// Not packable (e.g. round-robin over too many): an empty
				// entry sends the query to the full handler, rather than to
				// the name's "no data" entry.
				p = &packedAnswer{}
			}
			entries[tableKey(wire, qt)] = p
		}
	}
	base := label + "." + z.name
	add(base, dns.TypeSRV, dns.TypeA, dns.TypeAAAA, nodataType)
	add("_"+label+"._tcp."+z.name, dns.TypeSRV, dns.TypePTR, nodataType)
	add("_"+label+"._udp."+z.name, dns.TypeSRV, dns.TypePTR, nodataType)
	for id, in := range s.live {
		name := id + "." + base
		if in.IsName() {
			add(name, nodataType) // the CNAME answers every type
			continue
		}
		add(name, familyType(in.Addr), dns.TypeTXT, nodataType)
	}
	h.packed.replace(owner, entries)
}

// pack builds every variant of one answer, or nil when it must be left to
// the full handler.
func (h *Handler) pack(z *zone, name string, qtype uint16, s *service) *packedAnswer {
	q := new(dns.Msg)
	qt := qtype
	if qt == nodataType {
		qt = dns.TypeNULL // stands for every type the name has no data of
	}
	q.SetQuestion(name, qt)
	first, a := h.answer(q, 0, client{})
	if first.Rcode != dns.RcodeSuccess || !first.Authoritative || a.perClient {
		return nil // not an answer, or one that depends on who asks or when
	}
	if qtype == nodataType && len(first.Answer) > 0 && first.Answer[0].Header().Rrtype != dns.TypeCNAME {
		return nil // the name has data of every type? (not a shape we serve)
	}
	p := &packedAnswer{rotate: a.strategy == balance.RoundRobin, turn: &s.turn, cat: z.cat}
	n := 1
	if a.orderLen > 1 {
		if p.rotate && a.orderLen > maxVariants {
			return nil
		}
		n = min(a.orderLen, maxVariants)
	}
	for v := range n {
		m := first
		if v > 0 {
			m, _ = h.answer(q, v, client{})
		}
		for class := range sizeClasses {
			b, serialAt, ok := h.packClass(m, class)
			if !ok {
				return nil
			}
			p.variants[class] = append(p.variants[class], b)
			p.serialAt[class] = serialAt
		}
	}
	return p
}

// packClass packs m for one size class. For negative answers it also finds
// where the SOA serial sits, by packing twice with different serials.
func (h *Handler) packClass(m *dns.Msg, class int) ([]byte, int, bool) {
	m = m.Copy()
	switch class {
	case sizePlain:
		m.Truncate(dns.MinMsgSize)
	case sizeEDNS:
		// Leave room for the OPT appended at query time.
		m.Truncate(int(h.opts.Load().MaxUDPSize) - optLen)
	case sizeTCP:
		m.Truncate(dns.MaxMsgSize)
	}
	m.Compress = true
	b, err := m.Pack()
	if err != nil {
		return nil, 0, false
	}
	serialAt := 0
	if len(m.Ns) == 1 {
		if soa, ok := m.Ns[0].(*dns.SOA); ok {
			soa.Serial = ^soa.Serial
			b2, err := m.Pack()
			soa.Serial = ^soa.Serial
			if err != nil || len(b2) != len(b) {
				return nil, 0, false
			}
			for i := range b {
				if b[i] != b2[i] {
					serialAt = i
					break
				}
			}
		}
	}
	return b, serialAt, true
}

// appendWireName appends the lower-case wire form of a presentation name.
func appendWireName(dst []byte, name string) ([]byte, bool) {
	buf := make([]byte, 256)
	n, err := dns.PackDomainName(dns.CanonicalName(name), buf, 0, nil, false)
	if err != nil {
		return dst, false
	}
	return append(dst, buf[:n]...), true
}

// fastReply answers the UDP query in pkt from the packed table into out and
// returns the reply's length; 0 means "not here: use the full handler".
// key is scratch space of at least 258 bytes. It allocates nothing.
func (h *Handler) fastReply(pkt, out, key []byte) int { return h.packedReply(pkt, out, key, false) }

// packedReply is fastReply for UDP or TCP (no size limit but 64 KiB).
func (h *Handler) packedReply(pkt, out, key []byte, tcp bool) int {
	if len(pkt) < 17 || pkt[2]&0xF8 != 0 || pkt[3]&0x0F != 0 || // QR, opcode; rcode
		binary.BigEndian.Uint32(pkt[4:]) != 1<<16 || pkt[8] != 0 || pkt[9] != 0 || pkt[10] != 0 || pkt[11] > 1 {
		return 0 // QDCOUNT 1, ANCOUNT 0, NSCOUNT 0, ARCOUNT 0 or 1
	}
	// The question name: plain labels only (a query has no compression).
	off, k := 12, 0
	for {
		if off >= len(pkt) {
			return 0
		}
		l := int(pkt[off])
		if l == 0 {
			break
		}
		if l > 63 || off+1+l >= len(pkt) || k+1+l > 255 {
			return 0
		}
		key[k] = byte(l)
		for i := 1; i <= l; i++ {
			c := pkt[off+i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			key[k+i] = c
		}
		k += 1 + l
		off += 1 + l
	}
	key[k] = 0
	k++
	off++
	qend := off + 4
	if qend > len(pkt) {
		return 0
	}
	qtype := binary.BigEndian.Uint16(pkt[off:])
	if binary.BigEndian.Uint16(pkt[off+2:]) != dns.ClassINET {
		return 0
	}
	class, do := sizePlain, false
	if pkt[11] == 1 {
		// OPT: root owner, type 41, our-size class, extended rcode 0,
		// version 0, flags, no options. Anything else takes the full path.
		o := qend
		if len(pkt) != o+optLen || pkt[o] != 0 || binary.BigEndian.Uint16(pkt[o+1:]) != dns.TypeOPT ||
			pkt[o+5] != 0 || pkt[o+6] != 0 || pkt[o+9] != 0 || pkt[o+10] != 0 {
			return 0
		}
		if binary.BigEndian.Uint16(pkt[o+3:]) < h.opts.Load().MaxUDPSize && !tcp {
			return 0 // a size between 512 and ours: rare, left to the full handler
		}
		class, do = sizeEDNS, pkt[o+7]&0x80 != 0
	} else if len(pkt) != qend {
		return 0
	}
	p := h.packed.get(binary.BigEndian.AppendUint16(key[:k], qtype))
	if p == nil {
		switch qtype {
		case dns.TypeANY, dns.TypeAXFR, dns.TypeIXFR, dns.TypeMAILA, dns.TypeMAILB, dns.TypeOPT, dns.TypeTSIG, dns.TypeTKEY:
			return 0
		}
		if p = h.packed.get(binary.BigEndian.AppendUint16(key[:k], nodataType)); p == nil {
			return 0
		}
	}
	withOPT := class == sizeEDNS
	if tcp {
		class = sizeTCP
	}
	variants := p.variants[class]
	if len(variants) == 0 {
		return 0
	}
	i := 0
	if len(variants) > 1 {
		if p.rotate {
			i = int((p.turn.Add(1) - 1) % uint64(len(variants)))
		} else {
			i = rand.IntN(len(variants))
		}
	}
	v := variants[i]
	need := len(v)
	if withOPT {
		need += optLen
	}
	if need > len(out) || len(v) < qend {
		return 0
	}
	n := copy(out, v)
	copy(out[:2], pkt[:2])              // ID
	out[2] = out[2]&^0x01 | pkt[2]&0x01 // RD
	out[3] = out[3]&^0x10 | pkt[3]&0x10 // CD
	copy(out[12:qend], pkt[12:qend])    // the question as asked: case, type
	if at := p.serialAt[class]; at > 0 {
		binary.BigEndian.PutUint32(out[at:], p.cat.Serial())
	}
	if withOPT {
		o := out[n : n+optLen]
		o[0] = 0
		binary.BigEndian.PutUint16(o[1:], dns.TypeOPT)
		binary.BigEndian.PutUint16(o[3:], h.opts.Load().MaxUDPSize)
		o[5], o[6], o[7], o[8], o[9], o[10] = 0, 0, 0, 0, 0, 0
		if do {
			o[7] = 0x80
		}
		binary.BigEndian.PutUint16(out[10:], binary.BigEndian.Uint16(out[10:])+1)
		n += optLen
	}
	return n
}

// tcpBuffers hold packed TCP replies while they are written.
var tcpBuffers = sync.Pool{New: func() any { b := make([]byte, dns.MaxMsgSize); return &b }}

// writePacked answers a TCP query from the packed table, as UDP queries are,
// and returns the reply's rcode; false means the full handler must answer it.
func (h *Handler) writePacked(w dns.ResponseWriter, r *dns.Msg) (int, bool) {
	if len(r.Question) != 1 {
		return -1, false
	}
	pkt, err := r.Pack() // the question as asked, to copy its spelling from
	if err != nil {
		return -1, false
	}
	bp := tcpBuffers.Get().(*[]byte)
	defer tcpBuffers.Put(bp)
	var key [258]byte
	n := h.packedReply(pkt, *bp, key[:], true)
	if n == 0 {
		return -1, false
	}
	_, _ = w.Write((*bp)[:n]) // a client gone away is not our error
	return int((*bp)[3] & 0xF), true
}
