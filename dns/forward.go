package dns

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// ForwarderOptions configure a Forwarder.
type ForwarderOptions struct {
	// Upstreams are resolvers (host:port) asked in order until one answers.
	Upstreams []string
	// Allow lists the client networks that may use forwarding (default
	// loopback only), so regdns is never an open resolver.
	Allow []netip.Prefix
	// CacheSize bounds the cached answers (default 1000; 0 keeps the
	// default, a negative value turns the cache off).
	CacheSize int
	// MaxTTL caps how long an answer is cached (default 5m).
	MaxTTL time.Duration
	// Timeout bounds one exchange with one upstream (default 2s).
	Timeout time.Duration
}

// Forwarder answers names outside regdns's zones by asking upstream
// resolvers: over UDP, retried over TCP when the reply is truncated, with a
// small cache bounded in entries and time.
type Forwarder struct {
	opts     ForwarderOptions
	udp, tcp *dns.Client
	now      func() time.Time

	mu    sync.Mutex
	cache map[cacheKey]cached
}

type cacheKey struct {
	name         string
	qtype, class uint16
	do           bool
}

type cached struct {
	msg     *dns.Msg
	stored  time.Time
	expires time.Time
}

// NewForwarder returns a Forwarder; it has no goroutines of its own.
func NewForwarder(opts ForwarderOptions) *Forwarder {
	if len(opts.Allow) == 0 {
		opts.Allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = 1000
	}
	if opts.MaxTTL <= 0 {
		opts.MaxTTL = 5 * time.Minute
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Second
	}
	return &Forwarder{
		opts:  opts,
		udp:   &dns.Client{Net: "udp", Timeout: opts.Timeout, UDPSize: dns.DefaultMsgSize},
		tcp:   &dns.Client{Net: "tcp", Timeout: opts.Timeout},
		now:   time.Now,
		cache: map[cacheKey]cached{},
	}
}

// Allowed reports whether client may have its queries forwarded.
func (f *Forwarder) Allowed(client netip.Addr) bool {
	client = client.Unmap()
	for _, p := range f.opts.Allow {
		if p.Contains(client) {
			return true
		}
	}
	return false
}

var errNoUpstream = errors.New("no upstream answered")

// Forward answers r from the cache or an upstream. The reply carries r's
// id and question (with its case) and no OPT: the caller adds its own.
func (f *Forwarder) Forward(r *dns.Msg) (*dns.Msg, error) {
	q := r.Question[0]
	key := cacheKey{strings.ToLower(q.Name), q.Qtype, q.Qclass, false}
	if opt := r.IsEdns0(); opt != nil {
		key.do = opt.Do()
	}
	if m, ok := f.cached(key); ok {
		return f.finish(m, r), nil
	}
	up := new(dns.Msg)
	up.SetQuestion(q.Name, q.Qtype)
	up.Question[0].Qclass = q.Qclass
	up.RecursionDesired = r.RecursionDesired
	up.CheckingDisabled = r.CheckingDisabled
	up.SetEdns0(dns.DefaultMsgSize, key.do)
	var errs []error
	for _, addr := range f.opts.Upstreams {
		m, _, err := f.udp.Exchange(up, addr)
		if err == nil && m.Truncated {
			m, _, err = f.tcp.Exchange(up, addr)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			continue
		}
		if m.Rcode == dns.RcodeServerFailure || m.Rcode == dns.RcodeRefused {
			errs = append(errs, fmt.Errorf("%s: %s", addr, dns.RcodeToString[m.Rcode]))
			continue
		}
		f.store(key, m)
		return f.finish(m.Copy(), r), nil
	}
	return nil, fmt.Errorf("forward %s: %w", q.Name, errors.Join(append([]error{errNoUpstream}, errs...)...))
}

// finish makes an upstream reply the reply to r.
func (f *Forwarder) finish(m, r *dns.Msg) *dns.Msg {
	m.Id = r.Id
	m.Question = r.Question
	m.RecursionDesired = r.RecursionDesired
	m.RecursionAvailable = true
	m.Authoritative = false
	extra := m.Extra[:0]
	for _, rr := range m.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			extra = append(extra, rr)
		}
	}
	m.Extra = extra
	return m
}

// ttlOf is how long a reply may be cached: its smallest TTL, or for a
// negative answer the SOA minimum (RFC 2308), capped by MaxTTL. A negative
// answer without an SOA is not cached at all (RFC 2308 5).
func (f *Forwarder) ttlOf(m *dns.Msg) time.Duration {
	ttl := uint32(f.opts.MaxTTL / time.Second)
	hasSOA := false
	for _, sec := range [][]dns.RR{m.Answer, m.Ns} {
		for _, rr := range sec {
			t := rr.Header().Ttl
			if soa, ok := rr.(*dns.SOA); ok {
				t = min(t, soa.Minttl)
				hasSOA = true
			}
			ttl = min(ttl, t)
		}
	}
	if len(m.Answer) == 0 && !hasSOA {
		return 0
	}
	return time.Duration(ttl) * time.Second
}

func (f *Forwarder) store(key cacheKey, m *dns.Msg) {
	if f.opts.CacheSize < 0 {
		return
	}
	ttl := f.ttlOf(m)
	if ttl <= 0 {
		return
	}
	now := f.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.cache) >= f.opts.CacheSize {
		// Drop what expired, and if that is not enough, any one entry: the
		// map's order is random, which is good enough for a small cache.
		for k, c := range f.cache {
			if !now.Before(c.expires) {
				delete(f.cache, k)
			}
		}
		for k := range f.cache {
			if len(f.cache) < f.opts.CacheSize {
				break
			}
			delete(f.cache, k)
		}
	}
	f.cache[key] = cached{msg: m.Copy(), stored: now, expires: now.Add(ttl)}
}

// cached returns a copy of a live cache entry with its TTLs aged.
func (f *Forwarder) cached(key cacheKey) (*dns.Msg, bool) {
	now := f.now()
	f.mu.Lock()
	c, ok := f.cache[key]
	f.mu.Unlock()
	if !ok || !now.Before(c.expires) {
		return nil, false
	}
	m := c.msg.Copy()
	age := uint32(now.Sub(c.stored) / time.Second)
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			if h := rr.Header(); h.Rrtype != dns.TypeOPT {
				h.Ttl -= min(h.Ttl, age)
			}
		}
	}
	return m, true
}
