package balance

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

// Statistical tests of the sticky order (issue 4): its first pick follows
// the weights over many clients, whatever the ids look like, and it is a
// rendezvous hash: removing an instance moves only its own clients.

// clientKey is the key the DNS side hashes for a client in the i-th /24
// (i < 65536): the subnet, marshalled.
func clientKey(i int) []byte {
	b, _ := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24).MarshalBinary()
	return b
}

func TestSmartStickyFirstPickShares(t *testing.T) {
	t.Parallel()
	const n = 5_000
	weights := []uint16{1, 2, 7}
	for _, ids := range [][]string{
		{"s1", "s2", "s3"}, // differing only in the last octet
		{"a", "b", "c"},
		{"3f2c1a7e-9b1d-4c55-8e21-0d6f1b9a7c01", "3f2c1a7e-9b1d-4c55-8e21-0d6f1b9a7c02", "3f2c1a7e-9b1d-4c55-8e21-0d6f1b9a7c03"},
	} {
		counts := make([]int, len(ids))
		order := make([]int, len(ids))
		for i := range n {
			StickyOrder(order, ids, weights, clientKey(i))
			requirePermutation(t, order)
			counts[order[0]]++
		}
		for i, w := range weights {
			got := float64(counts[i]) / n
			t.Logf("%s: first %.4f (want %.2f)", ids[i], got, float64(w)/10)
			require.InDelta(t, float64(w)/10, got, 0.02, "ids %v: share of %s", ids, ids[i])
		}
	}
}

// Zero weights come after every positive weight, for every client.
func TestSmartStickyZeroWeightLast(t *testing.T) {
	t.Parallel()
	ids := []string{"a", "b", "c"}
	order := make([]int, 3)
	for i := range 1000 {
		StickyOrder(order, ids, []uint16{0, 1, 65535}, clientKey(i))
		require.Equal(t, 0, order[2], "client %d: %v", i, order)
	}
}

// Removing an instance moves only the clients that had it first; adding
// one takes clients only to itself.
func TestSmartStickyRendezvous(t *testing.T) {
	t.Parallel()
	all := []string{"i1", "i2", "i3", "i4", "i5"}
	w := []uint16{1, 1, 2, 3, 3}
	first := func(ids []string, weights []uint16, client []byte) string {
		order := make([]int, len(ids))
		StickyOrder(order, ids, weights, client)
		return ids[order[0]]
	}
	moved := 0
	for i := range 2000 {
		key := clientKey(i)
		before := first(all, w, key)
		after := first([]string{"i1", "i2", "i4", "i5"}, []uint16{1, 1, 3, 3}, key) // i3 leaves
		if before != "i3" {
			require.Equal(t, before, after, "client %d moved though its instance stayed", i)
		} else {
			moved++
		}
		// The order is the same on every call.
		require.Equal(t, before, first(all, w, key), fmt.Sprint(i))
	}
	require.InDelta(t, 0.2, float64(moved)/2000, 0.03, "i3's share of clients moved")
}

// WeightedOrder keeps its proportions over many draws: first picks 1/2/7.
func TestSmartWeightedOrderShares(t *testing.T) {
	t.Parallel()
	const n = 20_000
	rnd := seeded()
	weights := []uint16{1, 2, 7}
	counts := make([]int, 3)
	order := make([]int, 3)
	for range n {
		WeightedOrder(order, weights, rnd)
		counts[order[0]]++
	}
	for i, w := range weights {
		require.InDelta(t, float64(w)/10, float64(counts[i])/n, 0.02, "share of %d", i)
	}
}
