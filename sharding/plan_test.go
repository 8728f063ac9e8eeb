package sharding

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
)

func mustPlan(t *testing.T, cfg Config) *Plan {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPermutationIsSeededPermutation(t *testing.T) {
	for _, n := range []int{1, 2, 7, 1000} {
		p := Permutation(n, 42, 3)
		s := slices.Clone(p)
		slices.Sort(s)
		for i, v := range s {
			if v != i {
				t.Fatalf("n=%d: not a permutation: %v", n, p)
			}
		}
		if !slices.Equal(p, Permutation(n, 42, 3)) {
			t.Fatalf("n=%d: same (seed, epoch) gave another order", n)
		}
	}
	a, b, c := Permutation(1000, 42, 0), Permutation(1000, 42, 1), Permutation(1000, 43, 0)
	if slices.Equal(a, b) || slices.Equal(a, c) {
		t.Fatal("epochs or seeds share an order")
	}
}

// The order must not change with Go releases: checkpoints store positions in it.
func TestPermutationGolden(t *testing.T) {
	got := Permutation(12, 1, 0)
	want := []int{2, 6, 8, 10, 5, 0, 4, 1, 7, 11, 9, 3}
	if !slices.Equal(got, want) {
		t.Fatalf("Permutation(12, 1, 0) = %v, want %v", got, want)
	}
}

func TestPermutationUniformFirstElement(t *testing.T) {
	const n, trials = 4, 8000
	var counts [n]int
	for e := 0; e < trials; e++ {
		counts[Permutation(n, 7, e)[0]]++
	}
	for v, c := range counts {
		if c < trials/n*9/10 || c > trials/n*11/10 {
			t.Fatalf("value %d first in %d of %d epochs, want about %d: %v", v, c, trials, trials/n, counts)
		}
	}
}

func TestSplitEvenAndUneven(t *testing.T) {
	cases := []struct {
		n, world   int
		wantCounts []int
	}{
		{8, 4, []int{2, 2, 2, 2}},
		{10, 4, []int{3, 3, 2, 2}},
		{3, 4, []int{1, 1, 1, 0}},
		{0, 3, []int{0, 0, 0}},
		{5, 1, []int{5}},
	}
	for _, c := range cases {
		next := 0
		for r := 0; r < c.world; r++ {
			start, count := Split(c.n, r, c.world)
			if start != next || count != c.wantCounts[r] {
				t.Fatalf("Split(%d, %d, %d) = (%d, %d), want (%d, %d)", c.n, r, c.world, start, count, next, c.wantCounts[r])
			}
			next += count
		}
		if next != c.n {
			t.Fatalf("n=%d world=%d: shares cover %d", c.n, c.world, next)
		}
	}
}

func TestWeightsSumToOne(t *testing.T) {
	sum := 0.0
	for r := 0; r < 4; r++ {
		sum += Weight(10, r, 4)
	}
	if sum < 1-1e-12 || sum > 1+1e-12 || Weight(10, 0, 4) != 0.3 || Weight(0, 0, 2) != 0 {
		t.Fatalf("weights: sum %v, rank 0 %v", sum, Weight(10, 0, 4))
	}
}

// Whatever the world size, the ranks' shares of a step concatenate to the global batch of one
// process with the same global batch size.
func TestShardsConcatenateToGlobalBatch(t *testing.T) {
	p := mustPlan(t, Config{Samples: 103, Seed: 9})
	const B = 10
	for world := 1; world <= 12; world++ {
		for pos := 0; pos < 110; pos += B {
			var got []int
			for r := 0; r < world; r++ {
				got = append(got, p.Shard(2, pos, r, world, B)...)
			}
			if want := p.GlobalBatch(2, pos, B); !slices.Equal(got, want) {
				t.Fatalf("world %d pos %d: shards %v, global batch %v", world, pos, got, want)
			}
		}
	}
}

func TestTailKeptOrDropped(t *testing.T) {
	keep := mustPlan(t, Config{Samples: 23, Seed: 1})
	drop := mustPlan(t, Config{Samples: 23, Seed: 1, DropLast: true})
	if keep.End(5) != 23 || keep.Steps(5) != 5 || len(keep.GlobalBatch(0, 20, 5)) != 3 {
		t.Fatalf("keep-last: end %d steps %d tail %d", keep.End(5), keep.Steps(5), len(keep.GlobalBatch(0, 20, 5)))
	}
	if drop.End(5) != 20 || drop.Steps(5) != 4 || drop.GlobalBatch(0, 20, 5) != nil {
		t.Fatalf("drop-last: end %d steps %d tail %v", drop.End(5), drop.Steps(5), drop.GlobalBatch(0, 20, 5))
	}
	if got := keep.Next(Position{Epoch: 0, Pos: 20}, 5); got != (Position{Epoch: 1}) {
		t.Fatalf("after the tail: %+v, want epoch 1 pos 0", got)
	}
	if got := drop.Next(Position{Epoch: 0, Pos: 15}, 5); got != (Position{Epoch: 1}) {
		t.Fatalf("drop-last, after the last full batch: %+v, want epoch 1 pos 0", got)
	}
}

func TestBadConfigAndMisuse(t *testing.T) {
	if _, err := New(Config{Samples: 0}); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("0 samples: %v, want ErrBadConfig", err)
	}
	p := mustPlan(t, Config{Samples: 4})
	for name, f := range map[string]func(){
		"rank = world":   func() { p.Shard(0, 0, 2, 2, 2) },
		"world 0":        func() { p.Shard(0, 0, 0, 0, 2) },
		"global batch 0": func() { p.Shard(0, 0, 0, 1, 0) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

// Property: over random sequences of view changes, some of them aborting a step in flight
// (its work is discarded and the step is redone from the last completed position by the new
// world), every sample of the epoch is consumed by exactly one completed step, in the order of
// one-process training, and nothing beyond the epoch.
func TestViewChangesNeitherRepeatNorSkip(t *testing.T) {
	rng := rand.New(rand.NewPCG(2026, 11))
	for trial := 0; trial < 300; trial++ {
		n := 1 + rng.IntN(200)
		B := 1 + rng.IntN(17)
		dropLast := rng.IntN(2) == 0
		p := mustPlan(t, Config{Samples: n, Seed: rng.Uint64(), DropLast: dropLast})
		world := 1 + rng.IntN(8)
		at := Position{Epoch: rng.IntN(3)}
		epoch := at.Epoch
		var consumed []int
		changes := 0
		for at.Epoch == epoch {
			// a step in flight: every rank takes its share
			var step []int
			for r := 0; r < world; r++ {
				step = append(step, p.Shard(at.Epoch, at.Pos, r, world, B)...)
			}
			switch rng.IntN(4) {
			case 0: // membership changes mid-step: the step is abandoned, redone by the new world
				world = 1 + rng.IntN(8)
				changes++
				continue
			case 1: // membership changes after the step completed
				consumed = append(consumed, step...)
				at = p.Next(at, B)
				world = 1 + rng.IntN(8)
				changes++
			default:
				consumed = append(consumed, step...)
				at = p.Next(at, B)
			}
		}
		want := p.Permutation(epoch)[:p.End(B)]
		if !slices.Equal(consumed, want) {
			t.Fatalf("trial %d (n %d, B %d, drop %v, %d view changes): consumed %v, want %v",
				trial, n, B, dropLast, changes, consumed, want)
		}
		if at != (Position{Epoch: epoch + 1}) {
			t.Fatalf("trial %d: ended at %+v, want the start of epoch %d", trial, at, epoch+1)
		}
	}
}

func TestShardsListsEveryStepOfTheRest(t *testing.T) {
	p := mustPlan(t, Config{Samples: 11, Seed: 5})
	got := p.Shards(Position{Epoch: 1, Pos: 4}, 1, 3, 4) // steps at 4 and 8; the tail has 3
	want := [][]int{p.Shard(1, 4, 1, 3, 4), p.Shard(1, 8, 1, 3, 4)}
	if len(got) != 2 || !slices.Equal(got[0], want[0]) || !slices.Equal(got[1], want[1]) || len(got[0]) != 1 || len(got[1]) != 1 {
		t.Fatalf("Shards = %v, want %v", got, want)
	}
	if got := p.Shards(Position{Epoch: 1, Pos: 8}, 3, 5, 4); len(got) != 1 || len(got[0]) != 0 {
		t.Fatalf("rank 3 of 5 on a tail of 3: %v, want one empty share", got)
	}
}
