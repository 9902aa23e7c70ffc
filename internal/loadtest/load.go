package loadtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// Mix weighs the question types of the load. The zero Mix is DefaultMix.
type Mix struct{ A, SRV, AAAA int }

// DefaultMix is RELIABILITY-TESTS.md's mix: 70% A, 20% SRV, 10% AAAA.
var DefaultMix = Mix{A: 70, SRV: 20, AAAA: 10}

// Limits that keep every load bounded whatever a test asks for.
const (
	// MaxDuration bounds one Run when Duration is 0 (until ctx ends) or
	// larger: a load never outlives a forgotten Stop by more than this.
	MaxDuration = 2 * time.Hour
	// maxSamples bounds the latency samples kept per phase (4 bytes each).
	maxSamples = 8 << 20
	// maxFailures is how many failed answers a Result describes.
	maxFailures = 20
)

// Load is a bounded DNS load client: Rate questions per second over UDP,
// for Duration, cycling through the A/SRV/AAAA questions of Names in the
// proportions of Mix, from a fixed pool of Workers goroutines that each
// own one socket. Every answer is checked against Expect. Configure the
// fields, then call Run (or Start) once; Phase and SetStale may be called
// from other goroutines while it runs.
type Load struct {
	// Addr is the DNS server, host:port.
	Addr string
	// Rate is queries per second (default 500).
	Rate int
	// Duration of the load (0: until ctx ends, at most MaxDuration).
	Duration time.Duration
	// Names are the fully qualified names asked, each with every type of Mix.
	Names []string
	// Questions, when set, are asked as they are (in turn, each once per
	// cycle) instead of the questions Names and Mix make.
	Questions []Question
	// Mix weighs the question types (default DefaultMix).
	Mix Mix
	// Expect holds the records each question must be answered with; a
	// question it does not know is only counted by rcode. Nil: no checks.
	Expect *Expect
	// MaxAnswers is regdns's dns.max_answers (default 8): a larger expected
	// set is matched as a subset of that size.
	MaxAnswers int
	// Timeout of one query (default 1s); no answer in time is a timeout.
	Timeout time.Duration
	// Workers bounds the queries in flight (default 8). When every worker is
	// busy and 50 ms of queries wait already, a query is counted as Skipped,
	// never queued without bound.
	Workers int
	// UDPSize is the EDNS buffer size advertised (default 4096; 0 = 4096).
	UDPSize uint16

	phase   atomic.Pointer[string]
	stale   atomic.Bool
	started atomic.Bool

	mu  sync.Mutex
	all *tally
	by  map[string]*tally
}

// Phase names the part of the test that the following queries belong to
// ("baseline", "outage", ...): Result.Phases reports each separately. The
// empty name is the default phase.
func (l *Load) Phase(name string) { l.phase.Store(&name) }

// SetStale marks the following correct answers as stale (counted in Stale
// as well as Answered): the test says regdns serves its last view now.
func (l *Load) SetStale(on bool) { l.stale.Store(on) }

// Progress returns the counts so far, while the load runs or after.
func (l *Load) Progress() Result {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.all == nil {
		return Result{}
	}
	return l.resultLocked(0)
}

// Run sends the load until Duration has passed or ctx ends, waits for the
// queries in flight and returns the result. It may be called only once.
func (l *Load) Run(ctx context.Context) Result {
	if l.started.Swap(true) {
		panic("loadtest: Load.Run called twice")
	}
	l.defaults()
	order := l.order()
	l.mu.Lock()
	l.all, l.by = &tally{}, map[string]*tally{}
	l.mu.Unlock()
	if len(order) == 0 {
		return Result{}
	}
	d := l.Duration
	if d <= 0 || d > MaxDuration {
		d = MaxDuration
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()

	// The queue absorbs 50 ms of bursts (a late timer, a slow reply) and no
	// more.
	jobs := make(chan job, max(l.Workers, l.Rate/20))
	var wg sync.WaitGroup
	for range l.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.worker(jobs)
		}()
	}
	start := time.Now()
	// Pacing: every millisecond, send what the rate owes by now, so the
	// rate holds even when the timer fires late. A tick that finds every
	// worker busy is skipped, so a stalled server cannot make the client
	// queue without bound.
	tick := time.NewTicker(time.Millisecond)
	sent := 0
loop:
	for i := 0; ; {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
		}
		owed := int(time.Since(start).Seconds()*float64(l.Rate)) - sent
		for ; owed > 0; owed-- {
			j := job{q: order[i%len(order)], phase: l.phaseName(), stale: l.stale.Load()}
			if l.Expect != nil {
				j.want, j.accepted, j.known = l.Expect.lookup(j.q)
			}
			i++
			sent++
			select {
			case jobs <- j:
			default:
				l.mu.Lock()
				l.tally(j.phase).r.Skipped++
				l.all.r.Skipped++
				l.mu.Unlock()
			}
		}
	}
	tick.Stop()
	close(jobs)
	wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.resultLocked(time.Since(start))
}

// Running is a Load started in its own goroutine.
type Running struct {
	l      *Load
	cancel context.CancelFunc
	done   chan struct{}
	res    Result
}

// Start runs the load in a goroutine of its own; Wait or Stop collects the
// result. The caller must call one of them (t.Cleanup(func(){ r.Stop() })).
func (l *Load) Start(ctx context.Context) *Running {
	ctx, cancel := context.WithCancel(ctx)
	r := &Running{l: l, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.res = l.Run(ctx)
	}()
	return r
}

// Wait waits for the load's Duration to pass and returns its result.
func (r *Running) Wait() Result {
	<-r.done
	r.cancel()
	return r.res
}

// Stop ends the load now and returns its result; it may be called again.
func (r *Running) Stop() Result {
	r.cancel()
	<-r.done
	return r.res
}

// Load returns the load being run, for Phase, SetStale and Progress.
func (r *Running) Load() *Load { return r.l }

func (l *Load) defaults() {
	if l.Rate <= 0 {
		l.Rate = 500
	}
	if l.Mix == (Mix{}) {
		l.Mix = DefaultMix
	}
	if l.MaxAnswers == 0 {
		l.MaxAnswers = 8
	}
	if l.Timeout <= 0 {
		l.Timeout = time.Second
	}
	if l.Workers <= 0 {
		l.Workers = 8
	}
	if l.UDPSize == 0 {
		l.UDPSize = 4096
	}
}

// order is one cycle of questions: each name with each type as often as the
// mix weighs it, shuffled the same way every run so that every name and
// type is asked throughout.
func (l *Load) order() []Question {
	if len(l.Questions) > 0 {
		return slices.Clone(l.Questions)
	}
	g := gcd(gcd(l.Mix.A, l.Mix.SRV), l.Mix.AAAA)
	if g == 0 {
		g = 1
	}
	var out []Question
	for _, n := range l.Names {
		n = dns.Fqdn(n)
		for qt, w := range map[uint16]int{dns.TypeA: l.Mix.A, dns.TypeSRV: l.Mix.SRV, dns.TypeAAAA: l.Mix.AAAA} {
			for range w / g {
				out = append(out, Question{n, qt})
			}
		}
	}
	slices.SortFunc(out, func(a, b Question) int { return strings.Compare(a.String(), b.String()) })
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// job is one query to send, with the phase and stale mark of the moment it
// was due: a query counts in the phase it was sent in, whenever it ends.
type job struct {
	q     Question
	phase string
	stale bool
	// The expectation when the query was sent; the one when the answer
	// arrives is accepted too, so a change made in between is no failure.
	want     []string
	accepted [][]string
	known    bool
}

// worker asks the questions it receives over one UDP socket of its own.
func (l *Load) worker(jobs <-chan job) {
	var co *dns.Conn
	defer func() {
		if co != nil {
			_ = co.Close()
		}
	}()
	for j := range jobs {
		if co == nil {
			c, err := net.Dial("udp", l.Addr)
			if err != nil {
				l.record(j, nil, err, 0)
				continue
			}
			co = &dns.Conn{Conn: c, UDPSize: l.UDPSize}
		}
		m, took, err := l.exchange(co, j.q)
		l.record(j, m, err, took)
	}
}

// exchange sends q and reads until the reply with its id arrives or the
// timeout passes; late replies to earlier, timed-out queries are skipped.
func (l *Load) exchange(co *dns.Conn, q Question) (*dns.Msg, time.Duration, error) {
	msg := new(dns.Msg)
	msg.SetQuestion(q.Name, q.Qtype)
	msg.SetEdns0(l.UDPSize, false)
	start := time.Now()
	_ = co.SetDeadline(start.Add(l.Timeout))
	if err := co.WriteMsg(msg); err != nil {
		return nil, 0, err
	}
	for {
		m, err := co.ReadMsg()
		if err != nil {
			// A refused port (server restarting) shows at once on loopback;
			// count it as a timeout, as a resolver would see it.
			return nil, time.Since(start), err
		}
		if m.Id == msg.Id {
			return m, time.Since(start), nil
		}
	}
}

// record classifies one query's outcome.
func (l *Load) record(j job, m *dns.Msg, err error, took time.Duration) {
	q := j.q
	// Correct: the current set when the query was sent or when it was
	// answered; stale: a set Change replaced (the last good one).
	want, accepted, known := j.want, j.accepted, j.known
	var sentWant []string
	if l.Expect != nil {
		if w, acc, ok := l.Expect.lookup(q); ok {
			if known {
				sentWant = want
			}
			want, known = w, true
			accepted = append(slices.Clip(accepted), acc...)
		}
	}
	stale := j.stale
	var o outcome
	switch {
	case err != nil:
		o.kind, o.why = kindTimeout, err.Error()
		o.refused = errors.Is(err, syscall.ECONNREFUSED)
	case m.Rcode == dns.RcodeServerFailure:
		o.kind, o.why = kindServFail, "SERVFAIL"
	case m.Rcode == dns.RcodeNameError:
		o.kind, o.why = kindNXDomain, "NXDOMAIN"
	case m.Rcode != dns.RcodeSuccess:
		o.kind, o.why = kindOther, dns.RcodeToString[m.Rcode]
	case !known:
		o.kind = kindAnswered
	default:
		got := Records(m)
		switch {
		case Matches(got, want, l.MaxAnswers), sentWant != nil && Matches(got, sentWant, l.MaxAnswers):
			o.kind = kindAnswered
		case slices.ContainsFunc(accepted, func(prev []string) bool { return Matches(got, prev, l.MaxAnswers) }):
			o.kind, stale = kindAnswered, true // the last good set
		case l.Expect.acceptsSubsets() && (subset(got, want) ||
			slices.ContainsFunc(accepted, func(prev []string) bool { return subset(got, prev) })):
			o.kind, stale = kindAnswered, true // part of it, while the registry refills
		default:
			o.kind, o.why = kindWrong, fmt.Sprintf("records %v, want %v", got, want)
		}
	}
	o.stale = stale && o.kind == kindAnswered
	o.took = took
	o.replied = err == nil
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all.add(o)
	l.tally(j.phase).add(o)
	if o.why != "" && len(l.all.failures) < maxFailures {
		l.all.failures = append(l.all.failures, fmt.Sprintf("%s [%s] %v: %s",
			time.Now().Format("15:04:05.000"), j.phase, q, o.why))
	}
}

func (l *Load) phaseName() string {
	if p := l.phase.Load(); p != nil {
		return *p
	}
	return ""
}

func (l *Load) tally(name string) *tally {
	t := l.by[name]
	if t == nil {
		t = &tally{}
		l.by[name] = t
	}
	return t
}

func (l *Load) resultLocked(elapsed time.Duration) Result {
	r := l.all.result()
	r.Elapsed = elapsed
	r.Phases = make(map[string]Result, len(l.by))
	for name, t := range l.by {
		r.Phases[name] = t.result()
	}
	return r
}

type outcomeKind uint8

const (
	kindAnswered outcomeKind = iota
	kindServFail
	kindNXDomain
	kindOther
	kindTimeout
	kindWrong
)

type outcome struct {
	kind    outcomeKind
	stale   bool
	replied bool
	refused bool
	took    time.Duration
	why     string
}

// tally accumulates outcomes; guarded by Load.mu.
type tally struct {
	r        Result
	lat      []int32 // microseconds of every reply
	failures []string
}

func (t *tally) add(o outcome) {
	t.r.Sent++
	switch o.kind {
	case kindAnswered:
		t.r.Answered++
	case kindServFail:
		t.r.ServFail++
	case kindNXDomain:
		t.r.NXDomain++
	case kindOther:
		t.r.OtherRcode++
	case kindTimeout:
		t.r.Timeouts++
		if o.refused {
			t.r.Refused++
		}
	case kindWrong:
		t.r.Wrong++
	}
	if o.stale {
		t.r.Stale++
	}
	if o.replied && len(t.lat) < maxSamples {
		t.lat = append(t.lat, int32(min(o.took.Microseconds(), 1<<31-1)))
	}
}

func (t *tally) result() Result {
	r := t.r
	r.Failures = slices.Clone(t.failures)
	if len(t.lat) > 0 {
		l := slices.Clone(t.lat)
		slices.Sort(l)
		at := func(p float64) time.Duration {
			return time.Duration(l[min(int(float64(len(l))*p), len(l)-1)]) * time.Microsecond
		}
		r.P50, r.P99, r.Max = at(0.50), at(0.99), time.Duration(l[len(l)-1])*time.Microsecond
	}
	return r
}

// Expect is what every question must be answered with, changed by the test
// while a load runs (safe for concurrent use). Besides the current set of
// a question it keeps the sets a Change replaced as "last good" until
// Settle: while regdns catches up, an answer from them is correct but stale.
type Expect struct {
	mu      sync.RWMutex
	cur     map[Question][]string
	prev    map[Question][][]string
	subsets bool
}

// NewExpect starts from want (e.g. Oracle.Want); it copies the map.
func NewExpect(want map[Question][]string) *Expect {
	e := &Expect{cur: make(map[Question][]string, len(want)), prev: map[Question][][]string{}}
	for q, recs := range want {
		e.cur[q] = slices.Clone(recs)
	}
	return e
}

// Set makes recs the only correct answer to q from now on.
func (e *Expect) Set(q Question, recs []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cur[q] = sorted(recs)
	delete(e.prev, q)
}

// Change makes recs the correct answer to q, still accepting the set it
// replaces (as stale) until Settle.
func (e *Expect) Change(q Question, recs []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if old, ok := e.cur[q]; ok && !slices.Equal(old, recs) {
		e.prev[q] = append(e.prev[q], old)
	}
	e.cur[q] = sorted(recs)
}

// ChangeAll is Change for every question of want.
func (e *Expect) ChangeAll(want map[Question][]string) {
	for q, recs := range want {
		e.Change(q, recs)
	}
}

// Settle forgets the replaced sets: from now on only the current ones are
// correct.
func (e *Expect) Settle() {
	e.mu.Lock()
	defer e.mu.Unlock()
	clear(e.prev)
}

// AcceptSubsets, while on, also accepts (as stale) an answer holding a
// subset of an expected set, the empty one included: the registry is being
// refilled instance by instance and regdns follows it.
func (e *Expect) AcceptSubsets(on bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.subsets = on
}

// Forget stops checking q (it is counted by rcode only).
func (e *Expect) Forget(q Question) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.cur, q)
	delete(e.prev, q)
}

// Get returns the current set of q.
func (e *Expect) Get(q Question) ([]string, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	recs, ok := e.cur[q]
	return recs, ok
}

func (e *Expect) lookup(q Question) (want []string, accepted [][]string, ok bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	want, ok = e.cur[q]
	return want, e.prev[q], ok
}

func (e *Expect) acceptsSubsets() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.subsets
}

// subset reports whether every record of got is in want (sorted).
func subset(got, want []string) bool {
	for _, g := range got {
		if _, ok := slices.BinarySearch(want, g); !ok {
			return false
		}
	}
	return true
}

func sorted(recs []string) []string {
	out := slices.Clone(recs)
	if out == nil {
		out = []string{}
	}
	slices.Sort(out)
	return out
}
