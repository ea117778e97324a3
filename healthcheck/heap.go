package healthcheck

import "time"

// heapItem is an entry of a timeHeap: it has a time key and keeps its own
// index, so an entry can be removed from the middle in O(log n).
type heapItem interface {
	heapKey() time.Time
	setHeapIndex(int)
}

// timeHeap is a binary min-heap by heapKey. The scheduler orders checks by
// due time with it, the event-loop engine its sockets by deadline.
type timeHeap[T heapItem] []T

func (h *timeHeap[T]) push(x T) {
	*h = append(*h, x)
	i := len(*h) - 1
	x.setHeapIndex(i)
	h.up(i)
}

// remove takes out the entry at index i (pop is remove(0)); the removed
// entry's index becomes -1.
func (h *timeHeap[T]) remove(i int) T {
	old := *h
	x := old[i]
	n := len(old) - 1
	x.setHeapIndex(-1)
	if i != n {
		old[i] = old[n]
		old[i].setHeapIndex(i)
	}
	var zero T
	old[n] = zero
	*h = old[:n]
	if i < n {
		h.down(i)
		h.up(i)
	}
	return x
}

func (h *timeHeap[T]) pop() T { return h.remove(0) }

func (h timeHeap[T]) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].setHeapIndex(i)
	h[j].setHeapIndex(j)
}

func (h timeHeap[T]) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h[i].heapKey().Before(h[p].heapKey()) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

func (h timeHeap[T]) down(i int) {
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && h[r].heapKey().Before(h[l].heapKey()) {
			m = r
		}
		if !h[m].heapKey().Before(h[i].heapKey()) {
			return
		}
		h.swap(i, m)
		i = m
	}
}
