package ops

import (
	"sync/atomic"
	"testing"
)

// countBody counts how often each index is visited and records the ranges' count.
type countBody struct {
	hits   []atomic.Int32
	ranges atomic.Int32
}

func (c *countBody) Run(lo, hi int) {
	c.ranges.Add(1)
	for i := lo; i < hi; i++ {
		c.hits[i].Add(1)
	}
}

func TestParallelForCoversEachIndexOnce(t *testing.T) {
	old := Threads()
	defer SetThreads(old)
	for _, th := range []int{1, 2, 3, 8} {
		SetThreads(th)
		for _, n := range []int{0, 1, 2, 3, 7, 64, 1000} {
			for _, grain := range []int{0, 1, 5, 100} {
				c := &countBody{hits: make([]atomic.Int32, n)}
				ParallelFor(n, grain, c)
				for i := range c.hits {
					if h := c.hits[i].Load(); h != 1 {
						t.Fatalf("threads=%d n=%d grain=%d: index %d run %d times", th, n, grain, i, h)
					}
				}
				maxRanges := min(th, max(1, n/max(grain, 1)))
				if n == 0 {
					maxRanges = 0
				}
				if r := int(c.ranges.Load()); r > maxRanges {
					t.Fatalf("threads=%d n=%d grain=%d: %d ranges, want at most %d", th, n, grain, r, maxRanges)
				}
			}
		}
	}
}

func TestParallelForUsesSeveralRanges(t *testing.T) {
	old := Threads()
	defer SetThreads(old)
	SetThreads(4)
	c := &countBody{hits: make([]atomic.Int32, 100)}
	ParallelFor(100, 1, c)
	if r := c.ranges.Load(); r != 4 {
		t.Fatalf("ParallelFor(100) with 4 threads ran %d ranges, want 4", r)
	}
}

// nestedBody calls ParallelFor from inside a range, as a kernel inside a parallel loop would.
type nestedBody struct {
	inner *countBody
	width int
}

func (nb *nestedBody) Run(lo, hi int) {
	for i := lo; i < hi; i++ {
		ParallelFunc(nb.width, 1, func(l, h int) { nb.inner.Run(i*nb.width+l, i*nb.width+h) })
	}
}

func TestParallelForNested(t *testing.T) {
	old := Threads()
	defer SetThreads(old)
	SetThreads(3)
	const outer, width = 20, 50
	nb := &nestedBody{inner: &countBody{hits: make([]atomic.Int32, outer*width)}, width: width}
	for range 10 {
		clear(nb.inner.hits)
		ParallelFor(outer, 1, nb)
		for i := range nb.inner.hits {
			if h := nb.inner.hits[i].Load(); h != 1 {
				t.Fatalf("nested: index %d run %d times", i, h)
			}
		}
	}
}

// sumBody writes per-range partial sums into slots it owns.
type sumBody struct {
	data []float32
	out  []float32
}

func (s *sumBody) Run(lo, hi int) {
	var acc float32
	for _, v := range s.data[lo:hi] {
		acc += v
	}
	s.out[lo] = acc
}

func TestParallelForZeroAllocs(t *testing.T) {
	old := Threads()
	defer SetThreads(old)
	for _, th := range []int{1, 2, 4} {
		SetThreads(th)
		s := &sumBody{data: make([]float32, 4096), out: make([]float32, 4096)}
		ParallelFor(len(s.data), 16, s) // start the workers
		if allocs := testing.AllocsPerRun(100, func() { ParallelFor(len(s.data), 16, s) }); allocs != 0 {
			t.Fatalf("threads=%d: ParallelFor allocated %v times per call, want 0", th, allocs)
		}
	}
}

func TestSetThreadsClamps(t *testing.T) {
	old := Threads()
	defer SetThreads(old)
	SetThreads(0)
	if Threads() != 1 {
		t.Fatalf("SetThreads(0) gave Threads()=%d, want 1", Threads())
	}
	SetThreads(5)
	if Threads() != 5 {
		t.Fatalf("SetThreads(5) gave Threads()=%d, want 5", Threads())
	}
}
