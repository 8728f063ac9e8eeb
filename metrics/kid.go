package metrics

import (
	"fmt"
	"math"
	"math/rand/v2"

	"wkd/ops"
)

// KID is the kernel Inception distance: the unbiased estimate of the squared maximum mean
// discrepancy between two feature sets under the cubic polynomial kernel
// k(x, y) = (x.y / d + 1)^3, averaged over random subsets, as torch-fidelity and clean-fid
// compute it (defaults: 100 subsets of 1000).
type KID struct {
	Mean, Std  float64 // over subsets; Std with divisor n, as numpy's std
	Subsets    int
	SubsetSize int
}

// KIDConfig sets the subsets; Seed makes the draw repeatable.
type KIDConfig struct {
	Subsets    int
	SubsetSize int // at most; smaller sets use all their samples' count
	Seed       uint64
}

// DefaultKID is torch-fidelity's and clean-fid's choice, 100 subsets of 1000.
func DefaultKID() KIDConfig { return KIDConfig{Subsets: 100, SubsetSize: 1000, Seed: 1} }

// KernelDistance computes the KID of feature sets a and b (one row per sample, same width).
// Each subset draws m = min(SubsetSize, len(a), len(b)) rows of each without replacement;
// its MMD^2 is sum_{i!=j} k(a_i, a_j)/(m(m-1)) + sum_{i!=j} k(b_i, b_j)/(m(m-1))
// - 2 sum_{i,j} k(a_i, b_j)/m^2.
func KernelDistance(a, b [][]float32, cfg KIDConfig) (KID, error) {
	if cfg.Subsets < 1 || cfg.SubsetSize < 2 {
		return KID{}, fmt.Errorf("metrics: KID with %d subsets of %d: want at least 1 subset of at least 2", cfg.Subsets, cfg.SubsetSize)
	}
	m := min(cfg.SubsetSize, len(a), len(b))
	if m < 2 {
		return KID{}, fmt.Errorf("%w: KID of %d and %d feature vectors, need at least 2 each", ErrTooFew, len(a), len(b))
	}
	d := len(a[0])
	for _, set := range [][][]float32{a, b} {
		for i, f := range set {
			if len(f) != d {
				return KID{}, fmt.Errorf("metrics: KID: feature vector %d has %d values, want %d", i, len(f), d)
			}
		}
	}
	xa, xb := make([]float32, m*d), make([]float32, m*d)
	gram := make([]float32, m*m)
	mmds := make([]float64, cfg.Subsets)
	for s, sub := range kidSubsets(cfg, len(a), len(b), m) {
		pick(xa, a, sub[0], d)
		pick(xb, b, sub[1], d)
		kaa := kernelSum(gram, xa, xa, m, d, true)
		kbb := kernelSum(gram, xb, xb, m, d, true)
		kab := kernelSum(gram, xa, xb, m, d, false)
		fm := float64(m)
		mmds[s] = (kaa+kbb)/(fm*(fm-1)) - 2*kab/(fm*fm)
	}
	var mean, v float64
	for _, x := range mmds {
		mean += x
	}
	mean /= float64(len(mmds))
	for _, x := range mmds {
		v += (x - mean) * (x - mean)
	}
	return KID{Mean: mean, Std: math.Sqrt(v / float64(len(mmds))), Subsets: cfg.Subsets, SubsetSize: m}, nil
}

// kidSubsets draws, per subset, m row indices of a and m of b, each without replacement.
func kidSubsets(cfg KIDConfig, na, nb, m int) [][2][]int {
	r := rand.New(rand.NewPCG(cfg.Seed, 0x6b1d))
	subs := make([][2][]int, cfg.Subsets)
	for s := range subs {
		subs[s] = [2][]int{r.Perm(na)[:m], r.Perm(nb)[:m]}
	}
	return subs
}

// pick copies rows idx of set into dst, row after row.
func pick(dst []float32, set [][]float32, idx []int, d int) {
	for i, j := range idx {
		copy(dst[i*d:(i+1)*d], set[j])
	}
}

// kernelSum is sum_{i,j} (x_i.y_j/d + 1)^3 over (m, d) row sets x and y, leaving out i == j
// when offDiagonal. The dot products come from one float32 GEMM; the kernel and the sum are
// in float64.
func kernelSum(gram, x, y []float32, m, d int, offDiagonal bool) float64 {
	ops.Sgemm(false, true, m, m, d, 1/float32(d), x, d, y, d, 0, gram, m)
	var s float64
	for i := range m {
		for j, g := range gram[i*m : (i+1)*m] {
			if offDiagonal && i == j {
				continue
			}
			k := float64(g) + 1
			s += k * k * k
		}
	}
	return s
}
