package registry

import (
	"container/heap"
	"time"
)

// expiryItem is a deadline at which a key's TTL runs out, as far as the view
// knows. Items are never updated in place: a heartbeat pushes a new one and
// the old one is recognised as stale when it comes due, because its time no
// longer matches the entry's.
type expiryItem struct {
	at      time.Time
	service string
	id      string
	health  bool // the health key rather than the instance key
}

// expiryQueue is a min-heap of deadlines, owned by the view's goroutine.
type expiryQueue []expiryItem

func (q expiryQueue) Len() int           { return len(q) }
func (q expiryQueue) Less(i, j int) bool { return q[i].at.Before(q[j].at) }
func (q expiryQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *expiryQueue) Push(x any)        { *q = append(*q, x.(expiryItem)) }
func (q *expiryQueue) Pop() any {
	old := *q
	it := old[len(old)-1]
	*q = old[:len(old)-1]
	return it
}

func (q *expiryQueue) push(it expiryItem) { heap.Push(q, it) }

// next returns the earliest deadline.
func (q expiryQueue) next() (time.Time, bool) {
	if len(q) == 0 {
		return time.Time{}, false
	}
	return q[0].at, true
}

// popDue removes and returns every item due at now.
func (q *expiryQueue) popDue(now time.Time) []expiryItem {
	var due []expiryItem
	for len(*q) > 0 && !(*q)[0].at.After(now) {
		due = append(due, heap.Pop(q).(expiryItem))
	}
	return due
}
