package balance

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// Benchmarks of the three orderings, for the sizes of a small service (3),
// a typical one (10) and a large one (100). The packed fast path draws
// these only when a service changes; the full handler draws one per query
// of a service too large to pack (round-robin over more than 32 instances).
//
//	go test -run '^$' -bench . -benchmem ./internal/balance/

var benchSizes = []int{3, 10, 100}

// benchWeights are mixed weights, a few of them 0, as metadata "weight" gives.
func benchWeights(n int) []uint16 {
	w := make([]uint16, n)
	for i := range w {
		w[i] = uint16(i % 5) // 0, 1, 2, 3, 4, 0, ...
	}
	return w
}

func BenchmarkWeightedOrder(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			order, weights, rnd := make([]int, n), benchWeights(n), seeded()
			b.ReportAllocs()
			for b.Loop() {
				WeightedOrder(order, weights, rnd)
			}
		})
	}
}

func BenchmarkRotate(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			order := make([]int, n)
			var turn uint64
			b.ReportAllocs()
			for b.Loop() {
				Rotate(order, turn)
				turn++
			}
		})
	}
}

func BenchmarkShuffle(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			order, rnd := make([]int, n), rand.New(rand.NewPCG(3, 4))
			b.ReportAllocs()
			for b.Loop() {
				Shuffle(order, rnd)
			}
		})
	}
}
