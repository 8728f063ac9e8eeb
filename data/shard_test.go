package data

import (
	"context"
	"slices"
	"testing"

	"wkd/sharding"
)

// A sharded run sees the batches of a one-process run: for each step, the ranks' batches,
// concatenated in rank order, equal the one-process batch value for value, augmentation
// included; across a view change (3 ranks -> 2) mid-epoch too.
func TestShardedLoadersEqualOneProcess(t *testing.T) {
	d := loaderDataset(t, 13)
	plan, err := sharding.New(sharding.Config{Samples: d.Len(), Seed: 77})
	if err != nil {
		t.Fatal(err)
	}
	const B, epoch, seed = 5, 1, 99
	load := func(at sharding.Position, rank, world int) []*Batch {
		l := mustLoader(t, d, LoaderConfig{Seed: seed, Workers: 2, Prefetch: 1})
		return collect(t, l.EpochBatches(context.Background(), at.Epoch, plan.Shards(at, rank, world, B)))
	}
	one := load(sharding.Position{Epoch: epoch}, 0, 1)
	if len(one) != 3 || one[2].N != 3 {
		t.Fatalf("one process: %d steps", len(one))
	}
	// ranks 0..2 of 3 run step 0; then the world shrinks to 2 from the next position
	first := make([][]*Batch, 3)
	for r := range first {
		first[r] = load(sharding.Position{Epoch: epoch}, r, 3)
	}
	rest := make([][]*Batch, 2)
	for r := range rest {
		rest[r] = load(plan.Next(sharding.Position{Epoch: epoch}, B), r, 2)
	}
	check := func(step int, parts []*Batch) {
		var a, b []float32
		var idx []int
		for _, p := range parts {
			a, b, idx = append(a, p.A...), append(b, p.B...), append(idx, p.Indices...)
		}
		if !slices.Equal(idx, one[step].Indices) || !slices.Equal(a, one[step].A) || !slices.Equal(b, one[step].B) {
			t.Fatalf("step %d: sharded batch differs from one process (indices %v vs %v)", step, idx, one[step].Indices)
		}
	}
	check(0, []*Batch{first[0][0], first[1][0], first[2][0]})
	check(1, []*Batch{rest[0][0], rest[1][0]})
	check(2, []*Batch{rest[0][1], rest[1][1]})
}
