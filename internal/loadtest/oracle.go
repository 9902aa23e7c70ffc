// Package loadtest is the shared harness of the reliability tests
// (../shared/RELIABILITY-TESTS.md, docs/RELIABILITY.md): a truth oracle that
// reads Redis directly, a bounded DNS load client that checks every answer
// against it, the result line each test records, and small fault tools (a
// TCP proxy that can blackhole or reset the link to Redis, a /metrics
// reader, process stats). It is test support, importable from any _test.go
// file; nothing in regdns itself imports it.
package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"
	"github.com/redis/go-redis/v9"

	"github.com/regdns/regdns/registry"
)

// Question is one DNS question of the load: a fully qualified name and a
// type.
type Question struct {
	Name  string
	Qtype uint16
}

func (q Question) String() string { return dns.TypeToString[q.Qtype] + " " + q.Name }

// Oracle computes what regdns must answer from what Redis holds, reading it
// directly and independently of regdns's registry code: for a service, the
// members of services:<svc> whose instance key exists and decodes to a host
// address and a port, filtered by health the way the reference
// HealthAwareLoadBalancer does (health:<svc>:<id> says "healthy") or per
// Mode.
type Oracle struct {
	// Client reads Redis (a *redis.Client, or a Cluster or Sentinel client).
	Client redis.UniversalClient
	// Keys is the key layout (default registry.DefaultKeys()).
	Keys registry.Keys
	// Mode is the health mode regdns runs with (default registry.ModeHealthy,
	// the reference HealthAwareLoadBalancer's rule).
	Mode registry.HealthMode
	// Zone is the zone regdns serves (default "service.local.").
	Zone string
}

// Expected is the answer set of one service, each list sorted and in the
// form of Records: A and AAAA addresses, SRV "target:port".
type Expected struct {
	A, AAAA, SRV []string
}

// For returns the records expected for qtype (A, AAAA or SRV).
func (e Expected) For(qtype uint16) []string {
	switch qtype {
	case dns.TypeA:
		return e.A
	case dns.TypeAAAA:
		return e.AAAA
	case dns.TypeSRV:
		return e.SRV
	}
	return nil
}

func (o *Oracle) keys() registry.Keys {
	if o.Keys == (registry.Keys{}) {
		return registry.DefaultKeys()
	}
	return o.Keys
}

func (o *Oracle) zone() string {
	if o.Zone == "" {
		return "service.local."
	}
	return dns.Fqdn(strings.ToLower(o.Zone))
}

// Name is the DNS name of service in the oracle's zone.
func (o *Oracle) Name(service string) string { return service + "." + o.zone() }

// Expect reads service from Redis and returns its expected answers. A
// service with no served instance has empty (not nil) lists: NODATA. Any
// Redis error is returned as is: an oracle that cannot read Redis knows
// nothing.
func (o *Oracle) Expect(ctx context.Context, service string) (Expected, error) {
	k := o.keys()
	ids, err := o.Client.SMembers(ctx, k.Set(service)).Result()
	if err != nil {
		return Expected{}, fmt.Errorf("oracle: SMEMBERS %s: %w", k.Set(service), err)
	}
	e := Expected{A: []string{}, AAAA: []string{}, SRV: []string{}}
	for _, id := range ids {
		data, err := o.Client.Get(ctx, k.Instance(service, id)).Bytes()
		if errors.Is(err, redis.Nil) {
			continue // expired or deregistered: the reference skips it too
		}
		if err != nil {
			if strings.HasPrefix(err.Error(), "WRONGTYPE") {
				continue
			}
			return Expected{}, fmt.Errorf("oracle: GET %s: %w", k.Instance(service, id), err)
		}
		var doc struct {
			Host string  `json:"host"`
			Port float64 `json:"port"`
		}
		if json.Unmarshal(data, &doc) != nil || doc.Port < 1 || doc.Port > 65535 {
			continue
		}
		status := registry.StatusUnknown
		hdata, err := o.Client.Get(ctx, k.Health(service, id)).Bytes()
		switch {
		case err == nil:
			var h struct {
				Status string `json:"status"`
			}
			if json.Unmarshal(hdata, &h) == nil {
				switch strings.ToLower(h.Status) {
				case "healthy":
					status = registry.StatusHealthy
				case "unhealthy":
					status = registry.StatusUnhealthy
				case "draining":
					status = registry.StatusDraining
				}
			}
		case errors.Is(err, redis.Nil):
		default:
			return Expected{}, fmt.Errorf("oracle: GET %s: %w", k.Health(service, id), err)
		}
		if !o.Mode.Serves(status) {
			continue
		}
		addr, err := netip.ParseAddr(doc.Host)
		if err != nil {
			continue // host names are not in this oracle's scope
		}
		addr = addr.Unmap()
		if addr.Is4() {
			e.A = append(e.A, addr.String())
		} else {
			e.AAAA = append(e.AAAA, addr.String())
		}
		e.SRV = append(e.SRV, fmt.Sprintf("%s.%s:%d", strings.ToLower(id), o.Name(service), int(doc.Port)))
	}
	slices.Sort(e.A)
	slices.Sort(e.AAAA)
	slices.Sort(e.SRV)
	return e, nil
}

// Want reads every service and returns the expected records of each of
// its A, SRV and AAAA questions: the map a Load takes (Load.Expect.SetAll).
func (o *Oracle) Want(ctx context.Context, services []string) (map[Question][]string, error) {
	out := make(map[Question][]string, 3*len(services))
	for _, s := range services {
		e, err := o.Expect(ctx, s)
		if err != nil {
			return nil, err
		}
		for _, qt := range []uint16{dns.TypeA, dns.TypeSRV, dns.TypeAAAA} {
			out[Question{o.Name(s), qt}] = e.For(qt)
		}
	}
	return out, nil
}

// Records is what an answer says, sorted in the form of Expected: SRV
// targets with their port, A and AAAA addresses. Never nil.
func Records(m *dns.Msg) []string {
	out := []string{}
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.SRV:
			out = append(out, fmt.Sprintf("%s:%d", strings.ToLower(rr.Target), rr.Port))
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		}
	}
	slices.Sort(out)
	return out
}

// Matches reports whether the records of an answer are the expected set:
// exactly want when it has at most maxAnswers records (0: no cap), else a
// subset of want of maxAnswers records (regdns caps its answers at
// dns.max_answers).
func Matches(got, want []string, maxAnswers int) bool {
	if maxAnswers <= 0 || len(want) <= maxAnswers {
		return slices.Equal(got, want)
	}
	if len(got) != maxAnswers {
		return false
	}
	for _, g := range got {
		if _, ok := slices.BinarySearch(want, g); !ok {
			return false
		}
	}
	return true
}
