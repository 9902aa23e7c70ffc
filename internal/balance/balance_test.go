package balance

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// fakeRand returns scripted values and records the bounds asked for, so an
// order can be asserted exactly (CoreDNS loadbalance's fakeRandomGen).
type fakeRand struct {
	t      *testing.T
	values []int
	asked  []int
}

func (f *fakeRand) IntN(n int) int {
	f.t.Helper()
	f.asked = append(f.asked, n)
	require.NotEmpty(f.t, f.values, "IntN(%d): no scripted value left", n)
	v := f.values[0]
	f.values = f.values[1:]
	require.Less(f.t, v, n, "scripted value out of range")
	return v
}

// seeded returns a deterministic source, so statistical tests never flake.
func seeded() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }

// requirePermutation fails unless order holds each of 0..len-1 once.
func requirePermutation(t *testing.T, order []int) {
	t.Helper()
	sorted := slices.Sorted(slices.Values(order))
	for i, v := range sorted {
		require.Equal(t, i, v, "not a permutation: %v", order)
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want Strategy
	}{
		{"round_robin", RoundRobin},
		{"", RoundRobin},
		{"weighted", Weighted},
		{"random", Random},
	} {
		got, err := Parse(tc.in)
		require.NoError(t, err, "%q", tc.in)
		require.Equal(t, tc.want, got, "%q", tc.in)
	}
	for _, s := range []Strategy{RoundRobin, Weighted, Random} {
		got, err := Parse(s.String())
		require.NoError(t, err)
		require.Equal(t, s, got)
	}
	for _, bad := range []string{"Weighted", "round-robin", "rr", " random"} {
		_, err := Parse(bad)
		require.Error(t, err, "%q", bad)
		require.ErrorContains(t, err, bad)
		require.ErrorContains(t, err, "round_robin, weighted, random or sticky")
	}
}

func TestRotate(t *testing.T) {
	t.Parallel()
	Rotate(nil, 7) // no panic on an empty list
	order := make([]int, 3)
	for turn, want := range [][]int{{0, 1, 2}, {1, 2, 0}, {2, 0, 1}, {0, 1, 2}, {1, 2, 0}} {
		Rotate(order, uint64(turn))
		require.Equal(t, want, order, "turn %d", turn)
	}
	// The counter may wrap: MaxUint64 mod 3 is 0.
	Rotate(order, math.MaxUint64)
	require.Equal(t, []int{0, 1, 2}, order)
	Rotate(order, math.MaxUint64-1)
	require.Equal(t, []int{2, 0, 1}, order)

	one := []int{42}
	Rotate(one, 5)
	require.Equal(t, []int{0}, one)
}

func TestShuffle(t *testing.T) {
	t.Parallel()
	Shuffle(nil, &fakeRand{t: t}) // draws nothing

	rnd := seeded()
	for n := 1; n <= 20; n++ {
		order := make([]int, n)
		for range 20 {
			Shuffle(order, rnd)
			requirePermutation(t, order)
		}
	}

	// Exactly: inside-out Fisher-Yates, one draw per position.
	f := &fakeRand{t: t, values: []int{0, 0, 1, 0}}
	order := make([]int, 4)
	Shuffle(order, f)
	require.Equal(t, []int{1, 2, 3, 4}, f.asked)
	// i=0: [0]; i=1 j=0: [1 0]; i=2 j=1: [1 2 0]; i=3 j=0: [3 2 0 1].
	require.Equal(t, []int{3, 2, 0, 1}, order)

	// Every position is uniform: each index comes first in about 1/n of
	// the shuffles.
	const n, draws = 4, 20000
	first := make([]int, n)
	order = make([]int, n)
	for range draws {
		Shuffle(order, rnd)
		first[order[0]]++
	}
	for i, c := range first {
		require.InDelta(t, 1.0/n, float64(c)/draws, 0.02, "index %d first %d times of %d", i, c, draws)
	}
}

func TestWeightedOrderExact(t *testing.T) {
	t.Parallel()
	// Weights 10, 0, 30. Draw 15 of 40: past index 0 (10), past 1 (0), in
	// 2. Draw 0 of the 10 left: index 0. Index 1, of weight 0, comes last
	// (a one-element shuffle still draws once).
	f := &fakeRand{t: t, values: []int{15, 0, 0}}
	order := make([]int, 3)
	WeightedOrder(order, []uint16{10, 0, 30}, f)
	require.Equal(t, []int{2, 0, 1}, order)
	require.Equal(t, []int{40, 10, 1}, f.asked)

	// The boundaries: a draw equal to a running sum picks the next index.
	for _, tc := range []struct {
		draw  int
		first int
	}{{0, 0}, {9, 0}, {10, 2}, {39, 2}} {
		f := &fakeRand{t: t, values: []int{tc.draw, 0, 0}}
		WeightedOrder(order, []uint16{10, 0, 30}, f)
		require.Equal(t, tc.first, order[0], "draw %d", tc.draw)
		requirePermutation(t, order)
		require.Equal(t, 1, order[2], "weight 0 last")
	}

	// Several zero weights are shuffled after the others.
	f = &fakeRand{t: t, values: []int{0, 0, 1, 0}}
	order = make([]int, 4)
	WeightedOrder(order, []uint16{0, 5, 0, 0}, f)
	require.Equal(t, []int{5, 1, 2, 3}, f.asked)
	require.Equal(t, 1, order[0])
	require.ElementsMatch(t, []int{0, 2, 3}, order[1:])

	// The order slice may hold anything before; it is overwritten.
	order = []int{7, 7, 7}
	WeightedOrder(order, []uint16{1, 1, 1}, seeded())
	requirePermutation(t, order)
}

func TestWeightedOrderProperties(t *testing.T) {
	t.Parallel()
	rnd := seeded()
	WeightedOrder(nil, nil, &fakeRand{t: t}) // no draws, no panic
	for _, weights := range [][]uint16{
		{1},
		{0},
		{0, 0, 0},
		{1, 2, 3},
		{65535, 65535, 65535, 1},
		{0, 7, 0, 3, 0},
		{100, 0, 0, 0, 0, 0, 0, 0, 0, 1},
	} {
		order := make([]int, len(weights))
		for range 50 {
			WeightedOrder(order, weights, rnd)
			requirePermutation(t, order)
			// No zero weight before a positive one.
			zero := false
			for _, i := range order {
				if weights[i] == 0 {
					zero = true
				} else {
					require.False(t, zero, "positive weight after a zero one: weights %v order %v", weights, order)
				}
			}
		}
	}
}

// TestWeightedOrderDistribution: the first pick's share is weight/sum (RFC
// 2782), over many draws from a seeded source.
func TestWeightedOrderDistribution(t *testing.T) {
	t.Parallel()
	weights := []uint16{1, 2, 3, 4, 0, 10}
	const draws = 20000
	sum := 0
	for _, w := range weights {
		sum += int(w)
	}
	rnd := seeded()
	first := make([]int, len(weights))
	second := make([]int, len(weights))
	order := make([]int, len(weights))
	for range draws {
		WeightedOrder(order, weights, rnd)
		first[order[0]]++
		second[order[1]]++
	}
	for i, w := range weights {
		want := float64(w) / float64(sum)
		got := float64(first[i]) / draws
		require.InDelta(t, want, got, 0.015, "index %d (weight %d) first %d times of %d", i, w, first[i], draws)
	}
	require.Zero(t, first[4], "weight 0 never first")
	require.Zero(t, second[4], "weight 0 never before a positive weight")

	// The second pick is weighted among those left: index 5 (10 of 20)
	// comes second whenever it did not come first, and then with
	// probability 10/(20-w) for the first pick's weight w.
	var want float64
	for i, w := range weights {
		if i != 5 && w > 0 {
			want += float64(w) / float64(sum) * 10 / float64(sum-int(w))
		}
	}
	require.InDelta(t, want, float64(second[5])/draws, 0.015)
}

func TestOrder(t *testing.T) {
	t.Parallel()
	order := make([]int, 3)

	f := &fakeRand{t: t}
	Order(RoundRobin, order, 4, nil, f)
	require.Equal(t, []int{1, 2, 0}, order)
	require.Empty(t, f.asked, "round-robin draws nothing")

	f = &fakeRand{t: t, values: []int{2, 0, 0}}
	Order(Weighted, order, 4, []uint16{1, 1, 1}, f)
	require.Equal(t, []int{2, 1, 0}, order)
	require.Equal(t, []int{3, 2, 1}, f.asked)

	f = &fakeRand{t: t, values: []int{0, 1, 0}}
	Order(Random, order, 4, nil, f)
	require.Equal(t, []int{2, 1, 0}, order)
	require.Equal(t, []int{1, 2, 3}, f.asked)

	// A *math/rand/v2.Rand is a Rand.
	var _ Rand = seeded()
}
