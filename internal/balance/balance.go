// Package balance orders the records of an answer: round-robin rotation,
// weighted random order (RFC 2782 style) and a plain shuffle. It is pure:
// callers pass the counter and the random source, and every function fills a
// caller-owned slice of indices, never reordering shared data.
package balance

import "fmt"

// Strategy is how answers of a service are ordered.
type Strategy uint8

// Strategies (config balance.strategy).
const (
	// RoundRobin rotates the list by one on each response, as the reference
	// ServiceLoadBalancer does.
	RoundRobin Strategy = iota
	// Weighted draws a random order in which each record's chance to come
	// first is proportional to its weight; weight 0 comes only after all
	// others.
	Weighted
	// Random shuffles the list uniformly.
	Random
)

// Parse parses the config spelling of a strategy.
func Parse(s string) (Strategy, error) {
	switch s {
	case "round_robin", "":
		return RoundRobin, nil
	case "weighted":
		return Weighted, nil
	case "random":
		return Random, nil
	}
	return 0, fmt.Errorf("strategy %q: want round_robin, weighted or random", s)
}

func (s Strategy) String() string {
	switch s {
	case Weighted:
		return "weighted"
	case Random:
		return "random"
	default:
		return "round_robin"
	}
}

// Rand is the random source the orders draw from; *math/rand/v2.Rand fits.
type Rand interface {
	IntN(n int) int
}

// Order fills order with a permutation of 0..len(order)-1 for the strategy.
// turn is the response counter used by RoundRobin; weights (same length as
// order) are used by Weighted.
func Order(s Strategy, order []int, turn uint64, weights []uint16, rnd Rand) {
	switch s {
	case Weighted:
		WeightedOrder(order, weights, rnd)
	case Random:
		Shuffle(order, rnd)
	default:
		Rotate(order, turn)
	}
}

// Rotate fills order with 0..n-1 rotated left by turn mod n.
func Rotate(order []int, turn uint64) {
	n := len(order)
	if n == 0 {
		return
	}
	off := int(turn % uint64(n))
	for i := range order {
		order[i] = (i + off) % n
	}
}

// Shuffle fills order with a uniformly random permutation (Fisher-Yates).
func Shuffle(order []int, rnd Rand) {
	for i := range order {
		j := rnd.IntN(i + 1)
		order[i] = order[j]
		order[j] = i
	}
}

// WeightedOrder fills order by repeated weighted draws without replacement,
// the selection RFC 2782 describes for SRV weights (and Go's net package
// implements in shuffleByWeight): each remaining index is picked next with
// probability weight/sum. Zero-weight indices follow all others, shuffled.
func WeightedOrder(order []int, weights []uint16, rnd Rand) {
	n := len(order)
	sum := 0
	for i := range order {
		order[i] = i
		sum += int(weights[i])
	}
	k := 0 // order[:k] is decided
	for sum > 0 && k < n {
		r := rnd.IntN(sum)
		for j := k; j < n; j++ {
			w := int(weights[order[j]])
			if r < w {
				order[k], order[j] = order[j], order[k]
				sum -= w
				k++
				break
			}
			r -= w
		}
	}
	rest := order[k:]
	for i := range rest { // only zero weights remain
		j := rnd.IntN(i + 1)
		rest[i], rest[j] = rest[j], rest[i]
	}
}
