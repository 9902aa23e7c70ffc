package loadtest

import (
	"context"
	"fmt"
	"time"

	"github.com/regdns/regdns/registry"
)

// Instance is one instance of a Fleet.
type Instance struct {
	Service, ID, Host string
	Port              int
}

// Fleet is the known services of a load test: Services x PerService
// instances with IPv4 hosts, written the reference way (registry.Writer's
// MULTI/EXEC register and SETEX health) and all healthy.
type Fleet struct {
	Services  []string
	Instances []Instance
	// TTL of the instance keys (default 5 min: no expiry during a test
	// unless it wants one).
	TTL time.Duration
	// HealthInterval of the health checker (health key TTL = 3x; default
	// 100 s).
	HealthInterval time.Duration
}

// NewFleet names services "svc-000", "svc-001", ... each with perService
// instances "i<svc>x<n>" on 10.<svc/256>.<svc%256>.<n+1>, port 8000+n.
func NewFleet(services, perService int) *Fleet {
	f := &Fleet{TTL: 5 * time.Minute, HealthInterval: 100 * time.Second}
	for s := range services {
		name := fmt.Sprintf("svc-%03d", s)
		f.Services = append(f.Services, name)
		for n := range perService {
			f.Instances = append(f.Instances, Instance{
				Service: name, ID: fmt.Sprintf("i%03dx%d", s, n),
				Host: fmt.Sprintf("10.%d.%d.%d", s/256, s%256, n+1), Port: 8000 + n,
			})
		}
	}
	return f
}

// Names are the services' DNS names in zone (default "service.local.").
func (f *Fleet) Names(zone string) []string {
	o := Oracle{Zone: zone}
	out := make([]string, len(f.Services))
	for i, s := range f.Services {
		out[i] = o.Name(s)
	}
	return out
}

// Register writes every instance and a healthy health key for it.
func (f *Fleet) Register(ctx context.Context, w *registry.Writer) error {
	for _, in := range f.Instances {
		if err := w.Register(ctx, in.Service, in.ID, in.Host, in.Port, nil, f.TTL); err != nil {
			return err
		}
		if err := w.SetHealth(ctx, in.Service, in.ID, registry.StatusHealthy, f.HealthInterval); err != nil {
			return err
		}
	}
	return nil
}

// Refill is one round of the reference writers' heartbeats: each instance
// heartbeats, and one whose key is gone (Redis lost it) registers again
// and is checked healthy again. It returns how many registered again.
func (f *Fleet) Refill(ctx context.Context, w *registry.Writer) (int, error) {
	n := 0
	for _, in := range f.Instances {
		ok, err := w.Heartbeat(ctx, in.Service, in.ID, f.TTL)
		if err != nil {
			return n, err
		}
		if ok {
			continue
		}
		n++
		if err := w.Register(ctx, in.Service, in.ID, in.Host, in.Port, nil, f.TTL); err != nil {
			return n, err
		}
		if err := w.SetHealth(ctx, in.Service, in.ID, registry.StatusHealthy, f.HealthInterval); err != nil {
			return n, err
		}
	}
	return n, nil
}

// Renew is one round of the writers' routine for a long test: every
// instance heartbeats (registering again if its key is gone) and the health
// checker writes healthy again, so neither key runs out while the test runs
// longer than TTL or 3 x HealthInterval.
func (f *Fleet) Renew(ctx context.Context, w *registry.Writer) error {
	if _, err := f.Refill(ctx, w); err != nil {
		return err
	}
	for _, in := range f.Instances {
		if err := w.SetHealth(ctx, in.Service, in.ID, registry.StatusHealthy, f.HealthInterval); err != nil {
			return err
		}
	}
	return nil
}
