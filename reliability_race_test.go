//go:build race

package main

import "time"

// Under -race every instruction is several times slower, and `go test
// -race ./...` runs other packages' tests on the same 2 cores: p99s of a
// few hundred microseconds jump to several milliseconds with scheduling
// alone. The latency floor is therefore 20 ms: still far below what the
// faults could do to an answer that waited on Redis (redis.timeout, 500 ms
// in these tests). A full re-read also gets more time.
const (
	relLatencyFloor = 20 * time.Millisecond
	relReadSlack    = 500 * time.Millisecond
	relRSSSlack     = 64 << 20
)
