// Package histogram counts durations into fixed buckets with atomics only,
// so hot paths (a DNS reply, a Redis round trip) can record one for the
// cost of two atomic adds; snapshots are read at scrape time.
package histogram

import (
	"sync/atomic"
	"time"
)

// MaxBounds is the most bucket bounds a Durations can use.
const MaxBounds = 23

// Durations counts durations. The zero value is ready to use; the bucket
// bounds are the caller's (one fixed list per histogram, at most MaxBounds,
// ascending), given on every call so the type needs no constructor and can
// sit in arrays.
type Durations struct {
	buckets [MaxBounds + 1]atomic.Uint64 // the last is above every bound
	sum     atomic.Int64                 // nanoseconds
}

// Observe records n events that took d each.
func (h *Durations) Observe(bounds []time.Duration, d time.Duration, n int) {
	i := 0
	for i < len(bounds) && d > bounds[i] {
		i++
	}
	h.buckets[i].Add(uint64(n))
	h.sum.Add(int64(d) * int64(n))
}

// AddTo adds the counts into s, which gets the bounds if it has none yet.
func (h *Durations) AddTo(bounds []time.Duration, s *Snapshot) {
	if s.Counts == nil {
		s.Bounds = bounds
		s.Counts = make([]uint64, len(bounds)+1)
	}
	for i := range s.Counts {
		n := h.buckets[i].Load()
		s.Counts[i] += n
		s.Count += n
	}
	s.Sum += time.Duration(h.sum.Load())
}

// Snapshot returns the counts.
func (h *Durations) Snapshot(bounds []time.Duration) Snapshot {
	var s Snapshot
	h.AddTo(bounds, &s)
	return s
}

// Snapshot is a copy of a histogram: plain values.
type Snapshot struct {
	// Bounds are the buckets' upper bounds.
	Bounds []time.Duration
	// Counts per bucket, not cumulative: len(Bounds)+1, the last one above
	// every bound.
	Counts []uint64
	Sum    time.Duration
	Count  uint64
}
