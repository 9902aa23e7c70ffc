package health

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/regdns/regdns/registry"
)

const (
	healthy   = registry.StatusHealthy
	unhealthy = registry.StatusUnhealthy
	unknown   = registry.StatusUnknown
)

// TestStateNextHysteresis feeds sequences of probe results through the
// hysteresis and checks the status written after each one.
func TestStateNextHysteresis(t *testing.T) {
	for _, tc := range []struct {
		name       string
		rise, fall int
		start      registry.Status // the status found in Redis; unknown: none
		results    []registry.Status
		want       []registry.Status // status written after each result
		changes    []bool
	}{
		{
			name: "first result taken as is", rise: 3, fall: 3,
			results: []registry.Status{unhealthy},
			want:    []registry.Status{unhealthy},
			changes: []bool{true},
		},
		{
			name: "rise 1 fall 1 follows every result", rise: 1, fall: 1, start: healthy,
			results: []registry.Status{unhealthy, healthy, healthy, unhealthy},
			want:    []registry.Status{unhealthy, healthy, healthy, unhealthy},
			changes: []bool{true, true, false, true},
		},
		{
			name: "fall 3 needs three failures in a row", rise: 1, fall: 3, start: healthy,
			results: []registry.Status{unhealthy, unhealthy, unhealthy, unhealthy},
			want:    []registry.Status{healthy, healthy, unhealthy, unhealthy},
			changes: []bool{false, false, true, false},
		},
		{
			name: "a success resets the failure streak", rise: 1, fall: 3, start: healthy,
			results: []registry.Status{unhealthy, unhealthy, healthy, unhealthy, unhealthy, unhealthy},
			want:    []registry.Status{healthy, healthy, healthy, healthy, healthy, unhealthy},
			changes: []bool{false, false, false, false, false, true},
		},
		{
			name: "rise 2 needs two successes in a row", rise: 2, fall: 1, start: unhealthy,
			results: []registry.Status{healthy, unhealthy, healthy, healthy},
			want:    []registry.Status{unhealthy, unhealthy, unhealthy, healthy},
			changes: []bool{false, false, false, true},
		},
		{
			name: "full flap with rise 2 fall 3", rise: 2, fall: 3,
			results: []registry.Status{healthy, unhealthy, unhealthy, unhealthy, healthy, healthy},
			want:    []registry.Status{healthy, healthy, healthy, unhealthy, unhealthy, healthy},
			changes: []bool{true, false, false, true, false, true},
		},
		{
			name: "unknown is taken at once, and so is the result after it", rise: 3, fall: 3, start: healthy,
			results: []registry.Status{unknown, unhealthy, healthy},
			want:    []registry.Status{unknown, unhealthy, unhealthy},
			changes: []bool{true, true, false},
		},
		{
			name: "unknown twice is no change", rise: 1, fall: 1,
			results: []registry.Status{unknown, unknown},
			want:    []registry.Status{unknown, unknown},
			changes: []bool{false, false},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := state{status: tc.start}
			for i, r := range tc.results {
				var changed bool
				s, changed = s.next(r, tc.rise, tc.fall)
				require.Equal(t, tc.want[i].String(), s.status.String(), "status after result %d (%v) of %v", i, r, tc.results)
				require.Equal(t, tc.changes[i], changed, "changed after result %d (%v) of %v", i, r, tc.results)
			}
		})
	}
}

// TestForEachNeverExceedsTheBound holds every call until the pool is full,
// then checks that the bound was reached and never exceeded and that every
// item ran exactly once.
func TestForEachNeverExceedsTheBound(t *testing.T) {
	const limit, n = 8, 200
	var (
		inFlight, maxInFlight atomic.Int64
		gate                  = make(chan struct{})
		seen                  = make([]atomic.Int32, n)
		done                  = make(chan struct{})
	)
	go func() {
		defer close(done)
		forEach(t.Context(), limit, n, func(ctx context.Context, i int) {
			cur := inFlight.Add(1)
			defer inFlight.Add(-1)
			for {
				m := maxInFlight.Load()
				if cur <= m || maxInFlight.CompareAndSwap(m, cur) {
					break
				}
			}
			seen[i].Add(1)
			<-gate
		}, func(r any) { t.Errorf("panic: %v", r) })
	}()
	require.Eventually(t, func() bool { return inFlight.Load() == limit }, 5*time.Second, time.Millisecond)
	close(gate)
	<-done
	require.Equal(t, int64(limit), maxInFlight.Load(), "most calls in flight")
	for i := range seen {
		require.Equal(t, int32(1), seen[i].Load(), "calls of item %d", i)
	}
}

func TestForEachRecoversPanicsAndStopsWithContext(t *testing.T) {
	var panics, calls atomic.Int64
	forEach(t.Context(), 4, 100, func(ctx context.Context, i int) {
		calls.Add(1)
		if i%10 == 0 {
			panic("probe bug")
		}
	}, func(any) { panics.Add(1) })
	require.Equal(t, int64(100), calls.Load(), "a panic does not stop the worker")
	require.Equal(t, int64(10), panics.Load())

	ctx, cancel := context.WithCancel(t.Context())
	calls.Store(0)
	var once sync.Once
	forEach(ctx, 2, 1000, func(ctx context.Context, i int) {
		calls.Add(1)
		once.Do(cancel)
	}, func(any) {})
	require.LessOrEqual(t, calls.Load(), int64(2), "items not started when ctx ended are skipped")
}

func TestNewRequiresAClientAndSetsDefaults(t *testing.T) {
	_, err := New(Options{})
	require.ErrorContains(t, err, "Client is required")

	var o Options
	o.setDefaults()
	require.Equal(t, 10*time.Second, o.Interval)
	require.Equal(t, 2*time.Second, o.Timeout)
	require.Equal(t, 1, o.Rise)
	require.Equal(t, 1, o.Fall)
	require.Equal(t, 64, o.Concurrency)
	require.Equal(t, 15*time.Second, o.LeaseTTL)
	require.Equal(t, "health-checker:services:lease", o.LeaseKey)
	require.False(t, o.CleanupExpired)

	o = Options{Keys: registry.Keys{Prefix: "svc", HealthPrefix: "hc"}}
	o.setDefaults()
	require.Equal(t, "hc-checker:svc:lease", o.LeaseKey, "a layout of its own gets a lease of its own")
	kind, _, _ := registry.DefaultKeys().Parse(o.LeaseKey)
	require.Equal(t, registry.KindOther, kind, "the lease key is no registry key")
}
