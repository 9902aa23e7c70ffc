package dns

import (
	"encoding/binary"
	"hash/maphash"
	"net/netip"
	"sync"
	"time"
)

// Response rate limiting on UDP, in the style of BIND and Knot RRL: each
// client prefix (/24, /56) gets a token bucket of responses per second.
// Over the limit, responses are dropped, except every Slip-th, which is sent
// truncated (TC, no records): a real client behind a spoofed flood then
// retries over TCP, which a spoofer cannot, and an amplification attack
// gets nothing bigger than the query.

// RRLOptions configure response rate limiting. It is off when Rate is 0.
type RRLOptions struct {
	// Rate is the responses per second allowed per client prefix.
	Rate float64
	// Burst is how many responses a quiet prefix may send at once (default Rate).
	Burst float64
	// Slip: every Slip-th limited response is sent truncated instead of
	// dropped (default 2; 1 truncates all, a negative value drops all).
	Slip int
	// IPv4Prefix and IPv6Prefix are the client prefix lengths (default 24, 56).
	IPv4Prefix, IPv6Prefix int
	// MaxEntries bounds the prefixes tracked (default 100,000); when full,
	// the quietest are forgotten.
	MaxEntries int
}

// rrlVerdict is what to do with one response.
type rrlVerdict uint8

const (
	rrlSend rrlVerdict = iota
	rrlSlip            // send it truncated
	rrlDrop
)

// rrl is the limiter: sharded tables of token buckets.
type rrl struct {
	opts   RRLOptions
	now    func() time.Time
	seed   maphash.Seed
	shards [16]rrlShard
}

type rrlShard struct {
	mu      sync.Mutex
	buckets map[netip.Prefix]*rrlBucket
}

type rrlBucket struct {
	tokens  float64
	last    time.Time
	limited uint32 // responses limited, for slipping every Nth
}

// newRRL returns a limiter, or nil when rate limiting is off.
func newRRL(o RRLOptions) *rrl {
	if o.Rate <= 0 {
		return nil
	}
	if o.Burst <= 0 {
		o.Burst = o.Rate
	}
	if o.Slip == 0 {
		o.Slip = 2
	}
	if o.IPv4Prefix <= 0 || o.IPv4Prefix > 32 {
		o.IPv4Prefix = 24
	}
	if o.IPv6Prefix <= 0 || o.IPv6Prefix > 128 {
		o.IPv6Prefix = 56
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = 100_000
	}
	r := &rrl{opts: o, now: time.Now, seed: maphash.MakeSeed()}
	for i := range r.shards {
		r.shards[i].buckets = map[netip.Prefix]*rrlBucket{}
	}
	return r
}

// check decides the fate of one response to client.
func (r *rrl) check(client netip.Addr) rrlVerdict {
	bits := r.opts.IPv4Prefix
	if client.Is6() {
		bits = r.opts.IPv6Prefix
	}
	p, err := client.Prefix(bits)
	if err != nil {
		return rrlSend
	}
	sh := &r.shards[maphash.Comparable(r.seed, p)%uint64(len(r.shards))]
	now := r.now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b := sh.buckets[p]
	if b == nil {
		if len(sh.buckets) >= r.opts.MaxEntries/len(r.shards) {
			sh.forget(now, r.opts)
		}
		b = &rrlBucket{tokens: r.opts.Burst, last: now}
		sh.buckets[p] = b
	}
	b.tokens = min(r.opts.Burst, b.tokens+now.Sub(b.last).Seconds()*r.opts.Rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return rrlSend
	}
	b.limited++
	if r.opts.Slip > 0 && b.limited%uint32(r.opts.Slip) == 0 {
		return rrlSlip
	}
	return rrlDrop
}

// forget drops the buckets that are full again (their clients are quiet),
// or, if none is, half of them: memory stays bounded under a flood of
// sources.
func (sh *rrlShard) forget(now time.Time, o RRLOptions) {
	for p, b := range sh.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*o.Rate >= o.Burst {
			delete(sh.buckets, p)
		}
	}
	if len(sh.buckets) < o.MaxEntries/16 {
		return
	}
	n := len(sh.buckets) / 2
	for p := range sh.buckets {
		if n == 0 {
			break
		}
		delete(sh.buckets, p)
		n--
	}
}

// slipReply cuts the reply in buf[:n] to its header and question with TC
// set, and returns the new length (0 if it cannot be parsed).
func slipReply(buf []byte, n int) int {
	if n < 12 || binary.BigEndian.Uint16(buf[4:]) != 1 {
		return 0
	}
	off := 12
	for off < n && buf[off] != 0 {
		if buf[off]&0xC0 != 0 {
			return 0
		}
		off += 1 + int(buf[off])
	}
	off += 5 // the root label, qtype, qclass
	if off > n {
		return 0
	}
	buf[2] |= 0x02   // TC
	clear(buf[6:12]) // no answer, authority or additional records
	return off
}
