package sharding

import (
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"sync"
)

// Errors returned by this package; wrapped with details, test with errors.Is.
var (
	ErrBadConfig = errors.New("sharding: invalid config")
)

// Config describes the sample order of a run.
type Config struct {
	// Samples is the dataset size N (samples per epoch).
	Samples int
	// Seed selects the permutations; the same seed gives the same order on every machine.
	Seed uint64
	// DropLast drops the last, smaller global batch of each epoch. Defaults to false (keep it,
	// as PyTorch's DataLoader).
	DropLast bool
}

// Validate reports a non-positive sample count.
func (c Config) Validate() error {
	if c.Samples < 1 {
		return fmt.Errorf("%w: %d samples, want >= 1 (is the dataset empty?)", ErrBadConfig, c.Samples)
	}
	return nil
}

// Plan is the per-epoch sample order of a run. It is safe for concurrent use; it caches the
// permutation of the last epoch asked for.
type Plan struct {
	cfg Config

	mu        sync.Mutex
	lastEpoch int
	lastPerm  []int
}

// New returns the plan for cfg.
func New(cfg Config) (*Plan, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Plan{cfg: cfg, lastEpoch: -1}, nil
}

// Config returns the plan's configuration.
func (p *Plan) Config() Config { return p.cfg }

// Permutation returns epoch's order of the samples 0..N-1. The slice is shared: do not modify.
func (p *Plan) Permutation(epoch int) []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lastPerm == nil || p.lastEpoch != epoch {
		p.lastPerm, p.lastEpoch = Permutation(p.cfg.Samples, p.cfg.Seed, epoch), epoch
	}
	return p.lastPerm
}

// Permutation returns a permutation of 0..n-1 that depends only on (n, seed, epoch).
func Permutation(n int, seed uint64, epoch int) []int {
	r := rand.NewPCG(mix64(seed), mix64(uint64(epoch)^0x5ca1ab1e))
	perm := make([]int, n)
	for i := range perm {
		perm[i] = i
	}
	for i := n - 1; i > 0; i-- { // Fisher-Yates
		j := boundedUint(r, uint64(i+1))
		perm[i], perm[j] = perm[j], perm[i]
	}
	return perm
}

// boundedUint is a uniform draw in [0, n) (Lemire's multiply-shift with rejection).
func boundedUint(r *rand.PCG, n uint64) int {
	thresh := -n % n
	for {
		hi, lo := bits.Mul64(r.Uint64(), n)
		if lo >= thresh {
			return int(hi)
		}
	}
}

func mix64(x uint64) uint64 { // splitmix64 finaliser
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// End is the position where an epoch ends: N, or N rounded down to whole global batches when
// DropLast.
func (p *Plan) End(globalBatch int) int {
	mustBatch(globalBatch)
	if p.cfg.DropLast {
		return p.cfg.Samples - p.cfg.Samples%globalBatch
	}
	return p.cfg.Samples
}

// Steps is the number of global batches in an epoch.
func (p *Plan) Steps(globalBatch int) int {
	return (p.End(globalBatch) + globalBatch - 1) / globalBatch
}

// GlobalBatch returns the samples of the global batch that starts at pos: up to globalBatch
// of them, fewer at the tail, none at or after End.
func (p *Plan) GlobalBatch(epoch, pos, globalBatch int) []int {
	end := p.End(globalBatch)
	if pos < 0 {
		panic(fmt.Sprintf("sharding: negative position %d", pos))
	}
	if pos >= end {
		return nil
	}
	return p.Permutation(epoch)[pos:min(pos+globalBatch, end)]
}

// Shard returns rank's share of the global batch that starts at pos in epoch, for a world of
// the given size: a contiguous slice of that batch (see Split). It is empty when the epoch is
// over or the batch has fewer samples than ranks. The slice is shared: do not modify.
func (p *Plan) Shard(epoch, pos, rank, world, globalBatch int) []int {
	mustRank(rank, world)
	b := p.GlobalBatch(epoch, pos, globalBatch)
	start, n := Split(len(b), rank, world)
	return b[start : start+n]
}

// Split divides n samples among world ranks: rank gets count samples from start; the first
// n%world ranks take one more than the others.
func Split(n, rank, world int) (start, count int) {
	mustRank(rank, world)
	base, extra := n/world, n%world
	start = rank*base + min(rank, extra)
	count = base
	if rank < extra {
		count++
	}
	return start, count
}

// Weight is the factor for rank's mean loss so that summing over ranks gives the mean over the
// global batch of n samples: count/n (0 for an empty share).
func Weight(n, rank, world int) float64 {
	_, c := Split(n, rank, world)
	if n == 0 {
		return 0
	}
	return float64(c) / float64(n)
}

// Position is a point of a run's sample stream: the epoch and the global sample position in
// it. A checkpoint saves the Position of the next step.
type Position struct {
	Epoch int `json:"epoch"`
	Pos   int `json:"pos"`
}

// Next returns the position after the global batch at at: the next batch of the epoch, or the
// start of the next epoch when this one is over.
func (p *Plan) Next(at Position, globalBatch int) Position {
	at.Pos += globalBatch
	if at.Pos >= p.End(globalBatch) {
		return Position{Epoch: at.Epoch + 1}
	}
	return at
}

func mustRank(rank, world int) {
	if world < 1 || rank < 0 || rank >= world {
		panic(fmt.Sprintf("sharding: rank %d outside a world of %d", rank, world))
	}
}

func mustBatch(globalBatch int) {
	if globalBatch < 1 {
		panic(fmt.Sprintf("sharding: global batch %d, want >= 1", globalBatch))
	}
}

// Shards returns rank's shares of the global batches from at to the end of at's epoch, one
// list per step (some may be empty), ready for data.Loader.EpochBatches. After a view change,
// call it again from the Position of the last completed step.
func (p *Plan) Shards(at Position, rank, world, globalBatch int) [][]int {
	mustRank(rank, world)
	var out [][]int
	for pos := at.Pos; pos < p.End(globalBatch); pos += globalBatch {
		out = append(out, p.Shard(at.Epoch, pos, rank, world, globalBatch))
	}
	return out
}
