// Command e2a measures event-to-answer latency: the time from a registry
// write in Redis to the first DNS answer of regdns that reflects it.
//
//	e2a -redis redis://127.0.0.1:6379/0 -dns 127.0.0.1:8053 -n 1000
//
// It writes the way the reference writers do (registry.Writer: MULTI/EXEC
// SETEX+SADD+PUBLISH to register, DEL+SREM+PUBLISH to deregister, SETEX of
// the health key as the reference HealthChecker does), in cycles of four
// changes to one new instance X of the service -service:
//
//	register X      (its healthy health key is written first, untimed, so X is servable)
//	health X unhealthy   -> X leaves the answers (regdns in health mode "healthy")
//	health X healthy     -> X is back
//	deregister X         -> X leaves
//
// After each write returns, it queries SRV <service>.<zone> over UDP, one
// query at a time, until the answer does (or does not) list X as a target;
// the latency is from the write's return to the reflecting reply. A change
// not reflected within -timeout counts as a timeout. A base instance keeps
// the service non-empty. Output: one line per kind on stderr and one JSON
// object on stdout.
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/regdns/regdns/registry"
)

type stats struct {
	N        int     `json:"n"`
	Timeouts int     `json:"timeouts"`
	P50Ms    float64 `json:"p50_ms"`
	P99Ms    float64 `json:"p99_ms"`
	MaxMs    float64 `json:"max_ms"`
	AvgPolls float64 `json:"avg_polls"` // queries sent until the answer reflected the change
}

func main() {
	url := flag.String("redis", "redis://127.0.0.1:6379/0", "Redis URL")
	server := flag.String("dns", "127.0.0.1:8053", "regdns address (UDP)")
	n := flag.Int("n", 1000, "registry changes (rounded up to cycles of 4)")
	service := flag.String("service", "e2a", "service to change")
	zone := flag.String("zone", "service.local.", "zone regdns serves")
	timeout := flag.Duration("timeout", 2*time.Second, "bound on one change reaching the answers")
	flag.Parse()
	out, err := run(*url, *server, *service, dns.Fqdn(*zone), (*n+3)/4, *timeout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2a:", err)
		os.Exit(1)
	}
	_ = json.NewEncoder(os.Stdout).Encode(out)
}

type sample struct {
	d     time.Duration
	polls int
	ok    bool
}

func run(url, server, service, zone string, cycles int, timeout time.Duration) (map[string]stats, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	opts.DisableIdentity = true
	opts.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	c := redis.NewClient(opts)
	defer c.Close()
	w := registry.NewWriter(c, registry.DefaultKeys())
	conn, err := net.Dial("udp", server)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx := context.Background()
	const ttl, interval = time.Hour, 20 * time.Minute
	qname := service + "." + zone
	p := &poller{conn: conn, qname: qname, buf: make([]byte, 65535)}

	base := "e2a-base"
	if err := w.SetHealth(ctx, service, base, registry.StatusHealthy, interval); err != nil {
		return nil, err
	}
	if err := w.Register(ctx, service, base, "10.255.0.1", 9000, nil, ttl); err != nil {
		return nil, err
	}
	if s := p.wait(base+"."+qname, true, timeout); !s.ok {
		return nil, fmt.Errorf("%s never answered with the base instance", qname)
	}

	kinds := []string{"register", "unhealthy", "healthy", "deregister"}
	samples := map[string][]sample{}
	for k := range cycles {
		id := fmt.Sprintf("e2a-%06d", k)
		target := id + "." + qname
		if err := w.SetHealth(ctx, service, id, registry.StatusHealthy, interval); err != nil {
			return nil, err
		}
		steps := []struct {
			write   func() error
			present bool
		}{
			{func() error {
				return w.Register(ctx, service, id, fmt.Sprintf("10.255.%d.%d", k/250%250+1, k%250+1), 9000, nil, ttl)
			}, true},
			{func() error { return w.SetHealth(ctx, service, id, registry.StatusUnhealthy, interval) }, false},
			{func() error { return w.SetHealth(ctx, service, id, registry.StatusHealthy, interval) }, true},
			{func() error { return w.Deregister(ctx, service, id) }, false},
		}
		for i, st := range steps {
			if err := st.write(); err != nil {
				return nil, err
			}
			samples[kinds[i]] = append(samples[kinds[i]], p.wait(target, st.present, timeout))
		}
		_ = c.Del(ctx, registry.DefaultKeys().Health(service, id)).Err() // untimed cleanup
	}
	_ = w.Deregister(ctx, service, base)
	_ = c.Del(ctx, registry.DefaultKeys().Health(service, base)).Err()

	out := map[string]stats{}
	var all []sample
	for _, k := range kinds {
		out[k] = summarize(samples[k])
		all = append(all, samples[k]...)
		s := out[k]
		fmt.Fprintf(os.Stderr, "e2a %-10s n=%d timeouts=%d p50 %.3f ms p99 %.3f ms max %.3f ms (%.1f queries each)\n",
			k, s.N, s.Timeouts, s.P50Ms, s.P99Ms, s.MaxMs, s.AvgPolls)
	}
	out["all"] = summarize(all)
	s := out["all"]
	fmt.Fprintf(os.Stderr, "e2a %-10s n=%d timeouts=%d p50 %.3f ms p99 %.3f ms max %.3f ms\n", "all", s.N, s.Timeouts, s.P50Ms, s.P99Ms, s.MaxMs)
	return out, nil
}

func summarize(ss []sample) stats {
	st := stats{N: len(ss)}
	var ds []time.Duration
	polls := 0
	for _, s := range ss {
		polls += s.polls
		if !s.ok {
			st.Timeouts++
			continue
		}
		ds = append(ds, s.d)
	}
	if len(ss) > 0 {
		st.AvgPolls = math.Round(float64(polls)/float64(len(ss))*10) / 10
	}
	if len(ds) == 0 {
		return st
	}
	slices.Sort(ds)
	ms := func(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }
	pct := func(p float64) float64 { return ms(ds[min(int(p*float64(len(ds))), len(ds)-1)]) }
	st.P50Ms, st.P99Ms, st.MaxMs = pct(0.5), pct(0.99), ms(ds[len(ds)-1])
	return st
}

// poller asks SRV <qname> until the answer lists (or no longer lists) a target.
type poller struct {
	conn  net.Conn
	qname string
	id    uint16
	buf   []byte
}

// wait polls until target's presence in the SRV answer is present, and
// returns the time from its call to the reflecting reply.
func (p *poller) wait(target string, present bool, timeout time.Duration) sample {
	start := time.Now()
	deadline := start.Add(timeout)
	q, _ := new(dns.Msg).SetQuestion(p.qname, dns.TypeSRV).Pack()
	polls := 0
	for time.Now().Before(deadline) {
		p.id++
		binary.BigEndian.PutUint16(q, p.id)
		polls++
		if _, err := p.conn.Write(q); err != nil {
			time.Sleep(time.Millisecond)
			continue
		}
		m, ok := p.read(deadline)
		if !ok {
			continue
		}
		if hasTarget(m, target) == present {
			return sample{d: time.Since(start), polls: polls, ok: true}
		}
	}
	return sample{d: timeout, polls: polls}
}

// read returns the reply to the last query, skipping late replies to
// earlier ones; false after 100 ms without it.
func (p *poller) read(deadline time.Time) (*dns.Msg, bool) {
	if d := time.Now().Add(100 * time.Millisecond); d.Before(deadline) {
		deadline = d
	}
	_ = p.conn.SetReadDeadline(deadline)
	for {
		n, err := p.conn.Read(p.buf)
		if err != nil {
			return nil, false
		}
		if n < 12 || binary.BigEndian.Uint16(p.buf) != p.id {
			continue
		}
		m := new(dns.Msg)
		if m.Unpack(p.buf[:n]) != nil {
			return nil, false
		}
		return m, true
	}
}

func hasTarget(m *dns.Msg, target string) bool {
	for _, rr := range m.Answer {
		if srv, ok := rr.(*dns.SRV); ok && strings.EqualFold(srv.Target, target) {
			return true
		}
	}
	return false
}
