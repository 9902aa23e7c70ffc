package loadtest

import (
	"testing"
	"time"
)

// WaitFor polls cond every poll (default 5 ms when 0) until it holds and
// returns how long that took; it fails the test when within passes first.
// This is the harness's only way to wait for a state: no fixed sleeps.
func WaitFor(t testing.TB, within, poll time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	if poll <= 0 {
		poll = 5 * time.Millisecond
	}
	start := time.Now()
	deadline := start.Add(within)
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		if cond() {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
			return 0
		}
		<-tick.C
	}
}

// Within is WaitFor that reports instead of failing: how long it took and
// whether cond held before within passed.
func Within(within, poll time.Duration, cond func() bool) (time.Duration, bool) {
	if poll <= 0 {
		poll = 5 * time.Millisecond
	}
	start := time.Now()
	deadline := start.Add(within)
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		if cond() {
			return time.Since(start), true
		}
		if time.Now().After(deadline) {
			return time.Since(start), false
		}
		<-tick.C
	}
}
