// Package balance orders the records of an answer: round-robin rotation,
// weighted random order (RFC 2782 style) and a plain shuffle. It is pure:
// callers pass the counter and the random source, and every function fills a
// caller-owned slice of indices, never reordering shared data.
package balance

import (
	"fmt"
	"hash/fnv"
	"math"
	"slices"
)

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
	// Sticky orders by a weighted rendezvous hash of the client's subnet:
	// one client keeps its order while the instances stay, and clients
	// spread over instances in proportion to their weights.
	Sticky
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
	case "sticky":
		return Sticky, nil
	}
	return 0, fmt.Errorf("strategy %q: want round_robin, weighted, random or sticky", s)
}

func (s Strategy) String() string {
	switch s {
	case Weighted:
		return "weighted"
	case Random:
		return "random"
	case Sticky:
		return "sticky"
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

// StickyOrder fills order with the weighted rendezvous order (highest
// random weight) of ids for client: each id scores -w / ln(u), u uniform
// in (0,1) from a hash of (client, id), and higher scores come first. The
// first pick is id i with probability w_i / sum(w); removing an id moves
// only the clients that had it first. Zero weights come last, by hash.
func StickyOrder(order []int, ids []string, weights []uint16, client []byte) {
	scores := make([]float64, len(order))
	for i := range order {
		order[i] = i
		h := fnv.New64a()
		h.Write(client)
		h.Write([]byte{0})
		h.Write([]byte(ids[i]))
		// 53 bits of the hash as u in (0, 1). FNV-1a barely mixes its last
		// bytes into the high bits (ids differing in one trailing character
		// got almost the same u, so the heaviest weight always won): mix
		// them first.
		u := (float64(mix64(h.Sum64())>>11) + 0.5) / (1 << 53)
		if weights[i] == 0 {
			scores[i] = -1 / (1 + u) // below every positive score, still spread
		} else {
			scores[i] = -float64(weights[i]) / math.Log(u)
		}
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case scores[a] > scores[b]:
			return -1
		case scores[a] < scores[b]:
			return 1
		}
		return 0
	})
}

// mix64 is the finalizer of MurmurHash3: every input bit affects every
// output bit.
func mix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}
