//go:build !race

package main

import "time"

// See reliability_race_test.go.
const (
	// relLatencyFloor is the table's absolute p99 bound (R1: 2 ms).
	relLatencyFloor = 2 * time.Millisecond
	// relReadSlack is the time a full re-read of the test registry may
	// take on top of the reconcile period.
	relReadSlack = 250 * time.Millisecond
	// relRSSSlack is added to "+10%" RSS bounds for the test process,
	// whose own allocations (load samples) share the heap.
	relRSSSlack = 16 << 20
)
