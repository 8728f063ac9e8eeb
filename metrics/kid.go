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
	draw := newSubsetDrawer(cfg.Seed, len(a), len(b), m)
	for s := range mmds {
		ia, ib := draw.next()
		pick(xa, a, ia, d)
		pick(xb, b, ib, d)
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

// subsetDrawer draws, subset after subset, m row indices of a and m of b, each without
// replacement and independently of each other, in O(n) memory (partial Fisher-Yates over
// permutations kept between draws).
type subsetDrawer struct {
	r      *rand.Rand
	pa, pb []int
	m      int
}

func newSubsetDrawer(seed uint64, na, nb, m int) *subsetDrawer {
	d := &subsetDrawer{r: rand.New(rand.NewPCG(seed, 0x6b1d)), pa: make([]int, na), pb: make([]int, nb), m: m}
	for i := range d.pa {
		d.pa[i] = i
	}
	for i := range d.pb {
		d.pb[i] = i
	}
	return d
}

// next returns the next subset's indices; they stay valid until the following call.
func (d *subsetDrawer) next() (ia, ib []int) {
	for _, p := range [][]int{d.pa, d.pb} {
		for i := range d.m {
			j := i + d.r.IntN(len(p)-i)
			p[i], p[j] = p[j], p[i]
		}
	}
	return d.pa[:d.m], d.pb[:d.m]
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
