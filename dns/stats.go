package dns

import (
	"encoding/binary"
	"math"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"

	"github.com/regdns/regdns/internal/histogram"
)

// Counters of the DNS server, kept with atomics where queries are answered
// so the fast path pays one uncontended atomic add per query: every UDP
// socket goroutine counts into a shard of its own, and shards are summed
// only when Snapshot is read (at scrape time). TCP connections (and
// ServeDNS called directly) share the first shard.

// Qtype buckets: the types worth telling apart, and the rest.
const (
	qtA = iota
	qtAAAA
	qtSRV
	qtPTR
	qtTXT
	qtSOA
	qtNS
	qtANY
	qtXFR // AXFR and IXFR
	qtOther
	numQtypes
)

// QtypeNames names the qtype buckets, in bucket order.
var QtypeNames = [numQtypes]string{"A", "AAAA", "SRV", "PTR", "TXT", "SOA", "NS", "ANY", "AXFR/IXFR", "other"}

// Rcode buckets.
const (
	rcNoError = iota
	rcNXDomain
	rcServFail
	rcRefused
	rcFormErr
	rcNotImp
	rcOther
	numRcodes
)

// RcodeNames names the rcode buckets, in bucket order.
var RcodeNames = [numRcodes]string{"NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED", "FORMERR", "NOTIMP", "other"}

// rcodeBuckets maps the 4-bit header rcode to its bucket.
var rcodeBuckets = [16]uint8{
	dns.RcodeSuccess: rcNoError, dns.RcodeNameError: rcNXDomain, dns.RcodeServerFailure: rcServFail,
	dns.RcodeRefused: rcRefused, dns.RcodeFormatError: rcFormErr, dns.RcodeNotImplemented: rcNotImp,
	6: rcOther, 7: rcOther, 8: rcOther, 9: rcOther, 10: rcOther, 11: rcOther, 12: rcOther, 13: rcOther, 14: rcOther, 15: rcOther,
}

// Transports and paths.
const (
	transportUDP = iota
	transportTCP
	numTransports
)

const (
	pathFast = iota // the packed table (packed.go)
	pathFull        // the full handler
	numPaths
)

// TransportNames names the transports, in index order.
var TransportNames = [numTransports]string{"udp", "tcp"}

// LatencyBounds are the upper bounds of the request duration histogram.
var LatencyBounds = [...]time.Duration{
	10 * time.Microsecond, 25 * time.Microsecond, 50 * time.Microsecond, 100 * time.Microsecond,
	250 * time.Microsecond, 500 * time.Microsecond, time.Millisecond, 2500 * time.Microsecond,
	5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2500 * time.Millisecond,
}

// statShard is the counters one goroutine (a UDP socket's) adds to.
type statShard struct {
	queries [numTransports][numPaths][numQtypes][numRcodes]atomic.Uint64
	latency [numTransports]histogram.Durations
	_       [64]byte // keeps the next shard off this one's cache lines
}

// count records one reply of the given transport and path.
func (s *statShard) count(transport, path int, qtype uint16, rcode int) {
	s.queries[transport][path][qtypeBucket(qtype)][rcodeBuckets[rcode&0xF]].Add(1)
}

func qtypeBucket(qtype uint16) int {
	switch qtype {
	case dns.TypeA:
		return qtA
	case dns.TypeAAAA:
		return qtAAAA
	case dns.TypeSRV:
		return qtSRV
	case dns.TypePTR:
		return qtPTR
	case dns.TypeTXT:
		return qtTXT
	case dns.TypeSOA:
		return qtSOA
	case dns.TypeNS:
		return qtNS
	case dns.TypeANY:
		return qtANY
	case dns.TypeAXFR, dns.TypeIXFR:
		return qtXFR
	}
	return qtOther
}

// wireQtype is the qtype of the first question of a message (0 when it has
// none). The first name of a message is never compressed.
func wireQtype(msg []byte) uint16 {
	off, end := questionEnd(msg)
	if off == 0 {
		return 0
	}
	return binary.BigEndian.Uint16(msg[end-4:])
}

// questionEnd returns where the first question's name starts (12) and
// where the question ends; 0, 0 when there is none.
func questionEnd(msg []byte) (start, end int) {
	if len(msg) < 12 || msg[4] == 0 && msg[5] == 0 {
		return 0, 0
	}
	off := 12
	for off < len(msg) && msg[off] != 0 {
		if msg[off]&0xC0 != 0 {
			return 0, 0
		}
		off += 1 + int(msg[off])
	}
	if off+5 > len(msg) {
		return 0, 0
	}
	return 12, off + 5
}

// Stats are the counters of a Handler and the servers using it.
type Stats struct {
	shards [1 + 16]statShard
	next   atomic.Uint32
	// forwarded counts queries sent to the Forwarder; forwardErrors those
	// no upstream answered (SERVFAIL).
	forwarded, forwardErrors atomic.Uint64
	// rrlDropped and rrlSlipped count responses response rate limiting
	// dropped or sent truncated.
	rrlDropped, rrlSlipped atomic.Uint64
}

// shared is the shard of ServeDNS: TCP connections, mostly.
func (s *Stats) shared() *statShard { return &s.shards[0] }

// udpShard hands a UDP socket goroutine a shard, round-robin; sockets
// beyond the shard count share (atomics keep that correct).
func (s *Stats) udpShard() *statShard {
	i := s.next.Add(1) - 1
	return &s.shards[1+int(i)%(len(s.shards)-1)]
}

// Histogram is a snapshot of a duration histogram.
type Histogram = histogram.Snapshot

// QueryCount is the number of replies of one kind.
type QueryCount struct {
	Transport, Qtype, Rcode string
	Fast                    bool
	N                       uint64
}

// StatsSnapshot is a copy of the counters: plain values, safe to keep.
type StatsSnapshot struct {
	// Queries are the replies sent, by transport, path, qtype and rcode
	// bucket; only kinds seen at least once are listed.
	Queries []QueryCount
	// FastPath and FullPath count replies from the packed table and from
	// the full handler.
	FastPath, FullPath uint64
	// Latency is the request duration by transport ("udp", "tcp"). Over
	// UDP it is the time of the batch the reply was in, from reading the
	// batch to the end of writing its replies; over TCP, from the query
	// read to its reply written.
	Latency map[string]Histogram
	// Forwarded counts queries forwarded upstream; ForwardErrors those that
	// failed (answered SERVFAIL).
	Forwarded, ForwardErrors uint64
	// RRLDropped and RRLSlipped count responses rate limiting dropped or
	// sent truncated.
	RRLDropped, RRLSlipped uint64
}

// Snapshot sums the shards.
func (s *Stats) Snapshot() StatsSnapshot {
	var (
		q   [numTransports][numPaths][numQtypes][numRcodes]uint64
		lat [numTransports]Histogram
	)
	for i := range s.shards {
		sh := &s.shards[i]
		for t := range numTransports {
			for p := range numPaths {
				for qt := range numQtypes {
					for rc := range numRcodes {
						q[t][p][qt][rc] += sh.queries[t][p][qt][rc].Load()
					}
				}
			}
			sh.latency[t].AddTo(LatencyBounds[:], &lat[t])
		}
	}
	out := StatsSnapshot{
		Latency:       map[string]Histogram{},
		Forwarded:     s.forwarded.Load(),
		ForwardErrors: s.forwardErrors.Load(),
		RRLDropped:    s.rrlDropped.Load(),
		RRLSlipped:    s.rrlSlipped.Load(),
	}
	for t := range numTransports {
		out.Latency[TransportNames[t]] = lat[t]
		for p := range numPaths {
			for qt := range numQtypes {
				for rc := range numRcodes {
					n := q[t][p][qt][rc]
					if n == 0 {
						continue
					}
					out.Queries = append(out.Queries, QueryCount{
						Transport: TransportNames[t], Qtype: QtypeNames[qt], Rcode: RcodeNames[rc], Fast: p == pathFast, N: n,
					})
					if p == pathFast {
						out.FastPath += n
					} else {
						out.FullPath += n
					}
				}
			}
		}
	}
	return out
}

// Stats returns the handler's counters.
func (h *Handler) Stats() *Stats { return h.stats }

// queryLog samples queries for the query log: one in every, counted, not
// drawn, so sampling costs an increment (0: off).
type queryLog struct {
	every uint64
	n     atomic.Uint64
}

func newQueryLog(rate float64) queryLog {
	if rate <= 0 || math.IsNaN(rate) {
		return queryLog{}
	}
	return queryLog{every: uint64(max(1, math.Round(1/min(rate, 1))))}
}

// sample reports whether this query is logged.
func (l *queryLog) sample() bool {
	return l.every != 0 && l.n.Add(1)%l.every == 0
}

// served records a query answered by ServeDNS (TCP, mostly): rcode -1
// means no reply was written.
func (h *Handler) served(w dns.ResponseWriter, r *dns.Msg, rcode int, fast bool, start time.Time) {
	if rcode < 0 {
		return
	}
	var qtype uint16
	if len(r.Question) > 0 {
		qtype = r.Question[0].Qtype
	}
	transport, path := transportUDP, pathFull
	if isTCP(w.LocalAddr()) {
		transport = transportTCP
	}
	if fast {
		path = pathFast
	}
	d := time.Since(start)
	sh := h.stats.shared()
	sh.count(transport, path, qtype, rcode)
	sh.latency[transport].Observe(LatencyBounds[:], d, 1)
	if h.qlog.sample() {
		name := ""
		if len(r.Question) > 0 {
			name = r.Question[0].Name
		}
		h.logQuery(addrOf(w.RemoteAddr()), name, qtype, rcode, fast, transport, d)
	}
}

// logQuery writes one query log line.
func (h *Handler) logQuery(client netip.Addr, qname string, qtype uint16, rcode int, fast bool, transport int, d time.Duration) {
	path := "full"
	if fast {
		path = "fast"
	}
	h.log().Info().Str("client", client.String()).Str("qname", qname).Str("qtype", dns.Type(qtype).String()).
		Str("rcode", dns.RcodeToString[rcode]).Str("path", path).Str("transport", TransportNames[transport]).
		Dur("duration", d).Msg("query")
}

// batchStats is what a UDP batch writer keeps for the counters: its shard,
// and for the query log, the replies of the batch so far and which came
// from the fast path.
type batchStats struct {
	st      *statShard
	fast    uint64 // bit i: reply i of the batch was fast
	replies int
	sampled uint64
}

// countFast records a reply of this batch writer (UDP) from the fast path.
// packedReply answers only queries whose question ends the packet or is
// followed by their one OPT record, so the qtype is read in place.
func (w *batchWriter) countFast(query, reply []byte) {
	if w.st == nil {
		return
	}
	end := len(query)
	if query[11] == 1 {
		end -= optLen
	}
	w.record(binary.BigEndian.Uint16(query[end-4:]), int(reply[3]&0xF), pathFast)
}

// count records a reply of this batch writer (UDP) from the full path. It
// and countFast do nothing for writers without a shard (tests).
func (w *batchWriter) count(reply []byte, path int) {
	if len(reply) < 12 || w.st == nil {
		return
	}
	w.record(wireQtype(reply), int(reply[3]&0xF), path)
}

// record counts one reply (the header rcode: an extended one such as
// BADVERS counts by its lower four bits), and for the query log notes which
// of the batch's replies came from the fast path.
func (w *batchWriter) record(qtype uint16, rcode, path int) {
	w.st.count(transportUDP, path, qtype, rcode)
	if path == pathFast && w.replies < 64 {
		w.fast |= 1 << w.replies
	}
	w.replies++
}

// batchDone records the batch whose replies are out, answered and written
// in d: each reply took d. Sampled replies go to the query log.
func (w *batchWriter) batchDone(out []ipv4.Message, d time.Duration) {
	if w.st != nil && len(out) > 0 {
		w.st.latency[transportUDP].Observe(LatencyBounds[:], d, len(out))
	}
	if every := w.h.qlog.every; every != 0 {
		for i := range out {
			if w.sampled++; w.sampled%every != 0 {
				continue
			}
			reply := out[i].Buffers[0]
			name, qtype := "", uint16(0)
			if start, end := questionEnd(reply); start != 0 {
				name, _, _ = dns.UnpackDomainName(reply, start)
				qtype = binary.BigEndian.Uint16(reply[end-4:])
			}
			var client netip.Addr
			if a, ok := out[i].Addr.(*net.UDPAddr); ok {
				client = addrOf(a)
			}
			rcode := 0
			if len(reply) >= 4 {
				rcode = int(reply[3] & 0xF)
			}
			w.h.logQuery(client, name, qtype, rcode, i < 64 && w.fast&(1<<i) != 0, transportUDP, d)
		}
	}
	w.fast, w.replies = 0, 0
}
