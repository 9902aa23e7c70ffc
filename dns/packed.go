package dns

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"strings"
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

// packedTable maps "lower-case wire name + qtype" to packed answers. It is
// filled lazily: the first query for a name is answered by the full handler,
// which then packs that answer (learn), so a registry change costs nothing
// but forgetting what was packed for the service, and memory holds only the
// answers asked for. Entries are grouped by their service ("owner"), whose
// generation moves on every change, so an answer packed from a snapshot
// that changed meanwhile is never stored.
type packedTable struct {
	mu     sync.RWMutex
	m      map[string]*packedAnswer
	owners map[string]*packedOwner // zone + "/" + label
}

type packedOwner struct {
	gen  uint64
	keys []string
}

// maxPackedPerService bounds the answers packed for one service beyond its
// instances' (queries for many types at one name could otherwise grow the
// table without end).
const maxPackedPerService = 64

func newPackedTable() *packedTable {
	return &packedTable{m: map[string]*packedAnswer{}, owners: map[string]*packedOwner{}}
}

func tableKey(wireName []byte, qtype uint16) string {
	return string(binary.BigEndian.AppendUint16(wireName, qtype))
}

// reset forgets every answer of owner and starts its next generation; gone
// drops the owner itself.
func (t *packedTable) reset(owner string, gone bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	o := t.owners[owner]
	if o == nil {
		if gone {
			return
		}
		o = &packedOwner{}
		t.owners[owner] = o
	}
	for _, k := range o.keys {
		delete(t.m, k)
	}
	o.keys, o.gen = nil, o.gen+1
	if gone {
		delete(t.owners, owner)
	}
}

// generation returns owner's generation, and whether it exists.
func (t *packedTable) generation(owner string) (uint64, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	o := t.owners[owner]
	if o == nil {
		return 0, false
	}
	return o.gen, true
}

// add stores p under key for owner, unless owner changed since gen or holds
// its share of answers already.
func (t *packedTable) add(owner string, gen uint64, key string, p *packedAnswer, limit int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	o := t.owners[owner]
	if o == nil || o.gen != gen || len(o.keys) >= limit {
		return
	}
	if _, ok := t.m[key]; !ok {
		t.m[key] = p
		o.keys = append(o.keys, key)
	}
}

func (t *packedTable) get(key []byte) *packedAnswer {
	t.mu.RLock()
	p := t.m[string(key)] // no allocation: the compiler looks up []byte keys in place
	t.mu.RUnlock()
	return p
}

// repack is called on every change of the service with label in zone z (s
// nil: it is gone): its packed answers are forgotten, to be packed again
// as they are asked for.
func (h *Handler) repack(z *zone, label string, s *service) {
	h.packed.reset(z.name+"/"+label, s == nil)
}

// learn packs the answer to r, just answered by the full handler, when it
// can serve the next such query: an authoritative answer or NODATA for a
// name of a known service. It runs once per (name, qtype) and service
// change.
func (h *Handler) learn(r, reply *dns.Msg) {
	if len(r.Question) != 1 || reply.Rcode != dns.RcodeSuccess || !reply.Authoritative || r.Opcode != dns.OpcodeQuery {
		return
	}
	q := r.Question[0]
	switch q.Qtype {
	case dns.TypeANY, dns.TypeAXFR, dns.TypeIXFR, dns.TypeMAILA, dns.TypeMAILB, dns.TypeOPT, dns.TypeTSIG, dns.TypeTKEY:
		return
	}
	name := fold(q.Name)
	z, labels, ok := h.zoneOf(name)
	if !ok || len(labels) == 0 {
		return
	}
	label := labels[len(labels)-1]
	if n := len(labels); n >= 2 && (labels[n-1] == "_tcp" || labels[n-1] == "_udp") {
		label = strings.TrimPrefix(labels[n-2], "_")
	}
	s, ok := z.cat.lookup(label)
	if !ok {
		return
	}
	owner := z.name + "/" + label
	gen, ok := h.packed.generation(owner)
	if !ok {
		return
	}
	wire, ok := appendWireName(make([]byte, 0, len(name)+3), name)
	if !ok {
		return
	}
	key := tableKey(wire, q.Qtype)
	if h.packed.get([]byte(key)) != nil {
		return // packed already, or known to be unpackable
	}
	p := h.pack(z, name, q.Qtype, s)
	if p == nil {
		// Not packable (per client, per time, round-robin over too many):
		// an empty entry sends the query straight to the full handler.
		p = &packedAnswer{}
	}
	h.packed.add(owner, gen, key, p, len(s.live)+maxPackedPerService)
}

// pack builds every variant of one answer, or nil when it must be left to
// the full handler.
func (h *Handler) pack(z *zone, name string, qtype uint16, s *service) *packedAnswer {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	first, a := h.answer(q, 0, client{})
	if first.Rcode != dns.RcodeSuccess || !first.Authoritative || a.perClient {
		return nil // not an answer, or one that depends on who asks or when
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
			// Most answers fit every size class alike: share their bytes
			// (a registry of 100,000 instances packs about a million answers).
			if class > 0 && serialAt == p.serialAt[class-1] && bytes.Equal(b, p.variants[class-1][v]) {
				b = p.variants[class-1][v]
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
	// Pack's buffer is sized for the uncompressed message: keep only the
	// packed bytes, since the table holds them as long as the service lasts.
	b = bytes.Clone(b)
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
		return 0
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
