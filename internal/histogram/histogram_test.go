package histogram

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDurations(t *testing.T) {
	bounds := []time.Duration{time.Millisecond, 10 * time.Millisecond}
	var h Durations
	h.Observe(bounds, 500*time.Microsecond, 2)
	h.Observe(bounds, time.Millisecond, 1) // on a bound: that bucket
	h.Observe(bounds, 5*time.Millisecond, 1)
	h.Observe(bounds, time.Second, 1)
	s := h.Snapshot(bounds)
	require.Equal(t, []uint64{3, 1, 1}, s.Counts)
	require.Equal(t, uint64(5), s.Count)
	require.Equal(t, 2*500*time.Microsecond+time.Millisecond+5*time.Millisecond+time.Second, s.Sum)
	require.Equal(t, bounds, s.Bounds)

	var other Durations
	other.Observe(bounds, time.Second, 4)
	other.AddTo(bounds, &s)
	require.Equal(t, []uint64{3, 1, 5}, s.Counts, "AddTo sums")
}
