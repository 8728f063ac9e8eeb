package trainer

import (
	"slices"
	"testing"

	"wkd/ops"
)

func TestPoolRollbackUndoesQueries(t *testing.T) {
	p := NewImagePool(3)
	rng := ops.NewRNG(5)
	batch := func(v float32) *ops.Tensor {
		x := ops.New(2, 1, 2, 2)
		for i := range x.Data {
			x.Data[i] = v + float32(i)
		}
		return x
	}
	p.Query(nil, batch(0), rng)
	p.Query(nil, batch(10), rng) // 4 offered: the pool is full at 3, then swaps begin
	before := make([][]float32, len(p.images))
	for i, img := range p.images {
		before[i] = slices.Clone(img.HostData())
	}
	p.mark()
	for k := range 6 {
		p.Query(nil, batch(float32(100*(k+1))), rng)
	}
	if len(p.journal) == 0 {
		t.Fatal("six full-pool queries swapped nothing: the test does not exercise the journal")
	}
	p.rollback()
	if len(p.images) != len(before) {
		t.Fatalf("%d images after rollback, want %d", len(p.images), len(before))
	}
	for i := range before {
		if !slices.Equal(p.images[i].HostData(), before[i]) {
			t.Fatalf("image %d differs after rollback", i)
		}
	}
	// The journal's copies are reused: a second marked round of queries and its rollback
	// allocate none, and there are never more than the pool holds.
	first := slices.Clone(p.saved)
	x, tp := batch(1000), ops.NewTape()
	allocs := testing.AllocsPerRun(5, func() {
		tp.Reset()
		p.mark()
		for range 6 {
			p.Query(tp, x, rng)
		}
		p.rollback()
	})
	if len(p.saved) > p.size || !slices.Equal(p.saved[:len(first)], first) {
		t.Fatalf("%d journal copies (pool of %d); the first ones replaced: %v", len(p.saved), p.size, !slices.Equal(p.saved[:len(first)], first))
	}
	if allocs != 0 {
		t.Fatalf("a marked round of queries allocates %v times, want 0", allocs)
	}
	for i := range before {
		if !slices.Equal(p.images[i].HostData(), before[i]) {
			t.Fatalf("image %d differs after the second rollback", i)
		}
	}
	t.Logf("%d journal copies for a pool of %d, %v allocations per marked round", len(p.saved), p.size, allocs)
}
