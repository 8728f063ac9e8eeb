package ops

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// naiveGemm is the reference: a float64 triple loop.
func naiveGemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	for i := range m {
		for j := range n {
			var s float64
			for p := range k {
				var av, bv float32
				if transA {
					av = a[p*lda+i]
				} else {
					av = a[i*lda+p]
				}
				if transB {
					bv = b[j*ldb+p]
				} else {
					bv = b[p*ldb+j]
				}
				s += float64(av) * float64(bv)
			}
			v := float64(alpha) * s
			if beta != 0 {
				v += float64(beta) * float64(c[i*ldc+j])
			}
			c[i*ldc+j] = float32(v)
		}
	}
}

func randSlice(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = r.Float32()*2 - 1
	}
	return s
}

// withKernel runs f with Sgemm forced onto kern (and, for the Go kernel, Go packing).
func withKernel(t *testing.T, kern *gemmKernel, f func()) {
	t.Helper()
	old, oldTr := gemmKern, hasTranspose8
	gemmKern = kern
	if kern == &kernelGo {
		hasTranspose8 = false // the purego build packs without assembly too
	}
	defer func() { gemmKern, hasTranspose8 = old, oldTr }()
	f()
}

func allKernels() []*gemmKernel {
	return append(simdKernels(), &kernelGo)
}

// gemmCase is one Sgemm problem with its inputs and the reference answer.
type gemmCase struct {
	transA, transB bool
	m, n, k        int
	lda, ldb, ldc  int
	alpha, beta    float32
	a, b, c0, want []float32
}

const padSentinel = float32(12345)

// newGemmCase builds random operands with row padding pad; with beta == 0, C starts as
// NaN garbage, which BLAS semantics say must be overwritten, not scaled.
func newGemmCase(r *rand.Rand, transA, transB bool, m, n, k, pad int, alpha, beta float32) *gemmCase {
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	g := &gemmCase{transA: transA, transB: transB, m: m, n: n, k: k,
		lda: ac + pad, ldb: bc + pad, ldc: n + pad, alpha: alpha, beta: beta}
	g.a = randSlice(r, max(0, (ar-1)*g.lda+ac))
	g.b = randSlice(r, max(0, (br-1)*g.ldb+bc))
	g.c0 = randSlice(r, max(0, (m-1)*g.ldc+n))
	for i := range g.c0 {
		if beta == 0 {
			g.c0[i] = float32(math.NaN())
		}
		if i%g.ldc >= n {
			g.c0[i] = padSentinel // padding between rows must be left alone
		}
	}
	g.want = append([]float32(nil), g.c0...)
	naiveGemm(transA, transB, m, n, k, alpha, g.a, g.lda, g.b, g.ldb, beta, g.want, g.ldc)
	return g
}

// run calls Sgemm on a fresh copy of C and compares it with the reference, with a
// relative error bound of 1e-5 per unit of depth.
func (g *gemmCase) run(t *testing.T) {
	t.Helper()
	c := append([]float32(nil), g.c0...)
	Sgemm(g.transA, g.transB, g.m, g.n, g.k, g.alpha, g.a, g.lda, g.b, g.ldb, g.beta, c, g.ldc)
	tol := 1e-5 * float64(max(g.k, 1)) * (math.Abs(float64(g.alpha)) + 1)
	for idx := range c {
		i, x := idx/g.ldc, idx%g.ldc
		if x >= g.n {
			if c[idx] != padSentinel {
				t.Fatalf("%s: padding C[%d][%d] = %v, want untouched", g, i, x, c[idx])
			}
			continue
		}
		want := float64(g.want[idx])
		if d := math.Abs(float64(c[idx]) - want); !(d <= tol*(1+math.Abs(want))) {
			t.Fatalf("%s: C[%d][%d] = %v, want %v (tol %.2g)", g, i, x, c[idx], want, tol)
		}
	}
}

func (g *gemmCase) String() string {
	return fmt.Sprintf("kernel %s, transA=%v transB=%v m=%d n=%d k=%d lda=%d ldb=%d ldc=%d alpha=%v beta=%v threads=%d",
		gemmKern.name, g.transA, g.transB, g.m, g.n, g.k, g.lda, g.ldb, g.ldc, g.alpha, g.beta, Threads())
}

// checkGemm runs one case through Sgemm and the reference and compares them.
func checkGemm(t *testing.T, r *rand.Rand, transA, transB bool, m, n, k, pad int, alpha, beta float32) {
	t.Helper()
	newGemmCase(r, transA, transB, m, n, k, pad, alpha, beta).run(t)
}

func TestSgemmMatchesNaive(t *testing.T) {
	sizes := []int{1, 3, 17, 33, 100, 257}
	if testing.Short() {
		sizes = []int{1, 3, 17, 33}
	}
	for _, kern := range allKernels() {
		t.Run(kern.name, func(t *testing.T) {
			withKernel(t, kern, func() {
				r := rand.New(rand.NewPCG(1, 2))
				for _, tA := range []bool{false, true} {
					for _, tB := range []bool{false, true} {
						for _, m := range sizes {
							for _, n := range sizes {
								// Cycle k through the sizes so the test stays quick.
								k := sizes[(m+n)%len(sizes)]
								pad := (m + 2*n) % 3
								checkGemm(t, r, tA, tB, m, n, k, pad, 1, 0)
							}
						}
					}
				}
			})
		})
	}
}

func TestSgemmAlphaBeta(t *testing.T) {
	for _, kern := range allKernels() {
		t.Run(kern.name, func(t *testing.T) {
			withKernel(t, kern, func() {
				r := rand.New(rand.NewPCG(3, 4))
				for _, ab := range [][2]float32{{1, 0}, {1, 1}, {-0.5, 0}, {2, -1.5}, {0.25, 0.5}, {0, 2}, {0, 0}} {
					for _, tA := range []bool{false, true} {
						for _, tB := range []bool{false, true} {
							checkGemm(t, r, tA, tB, 37, 45, 29, 5, ab[0], ab[1])
							// Depth over one kc block: the beta of later blocks must be 1.
							checkGemm(t, r, tA, tB, 19, 70, 600, 2, ab[0], ab[1])
						}
					}
				}
			})
		})
	}
}

// TestSgemmLargeAndParallel covers several nc/mc/kc blocks and both parallel splits.
func TestSgemmLargeAndParallel(t *testing.T) {
	old := Threads()
	defer SetThreads(old)
	r := rand.New(rand.NewPCG(5, 6))
	var cases []*gemmCase
	for _, s := range []struct{ m, n, k int }{
		{130, 1100, 300}, // split over n; two nc blocks on one thread; two kc blocks
		{600, 40, 70},    // narrow n: split over m, several mc blocks
		{64, 1030, 27},   // conv-like, small depth
	} {
		cases = append(cases,
			newGemmCase(r, false, false, s.m, s.n, s.k, 3, 1, 0),
			newGemmCase(r, true, false, s.m, s.n, s.k, 0, 1, 1),
			newGemmCase(r, false, true, s.m, s.n, s.k, 1, 0.5, 0))
	}
	for _, kern := range allKernels() {
		withKernel(t, kern, func() {
			for _, th := range []int{1, 2, 3} {
				SetThreads(th)
				for _, g := range cases {
					g.run(t)
				}
			}
		})
	}
}

func TestSgemmEmpty(t *testing.T) {
	// k == 0: C = beta*C.
	c := []float32{1, 2, 3, 4}
	Sgemm(false, false, 2, 2, 0, 1, nil, 0, nil, 2, 3, c, 2)
	for i, want := range []float32{3, 6, 9, 12} {
		if c[i] != want {
			t.Fatalf("k=0: c[%d] = %v, want %v", i, c[i], want)
		}
	}
	nan := float32(math.NaN())
	c = []float32{nan, nan}
	Sgemm(false, false, 1, 2, 0, 1, nil, 0, nil, 2, 0, c, 2)
	if c[0] != 0 || c[1] != 0 {
		t.Fatalf("k=0, beta=0: c = %v, want zeros", c)
	}
	Sgemm(false, false, 0, 0, 5, 1, nil, 5, nil, 0, 0, nil, 0) // must not panic
}

func TestSgemmPanicsOnShortSlice(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Sgemm with a short A did not panic")
		}
	}()
	Sgemm(false, false, 4, 4, 4, 1, make([]float32, 15), 4, make([]float32, 16), 4, 0, make([]float32, 16), 4)
}

func TestSgemmZeroAllocs(t *testing.T) {
	old := Threads()
	defer SetThreads(old)
	r := rand.New(rand.NewPCG(7, 8))
	m, n, k := 64, 700, 300
	a, b, c := randSlice(r, m*k), randSlice(r, k*n), make([]float32, m*n)
	for _, th := range []int{1, 2} {
		SetThreads(th)
		for _, kern := range allKernels() {
			withKernel(t, kern, func() {
				Sgemm(false, true, m, 60, k, 1, a, k, b, k, 0, c, 60) // warm the buffers
				Sgemm(false, false, m, n, k, 1, a, k, b, n, 0, c, n)
				allocs := testing.AllocsPerRun(5, func() {
					Sgemm(false, false, m, n, k, 1, a, k, b, n, 0, c, n)
					Sgemm(true, true, k, k/5, m, 1, a, k, b, m, 1, c, k/5)
				})
				if allocs != 0 {
					t.Fatalf("%s threads=%d: %v allocs per Sgemm, want 0", kern.name, th, allocs)
				}
			})
		}
	}
}

// TestGatherRows checks the packing transpose (assembly where available) against its
// definition, for panel widths of both A and B and depths with and without a remainder.
func TestGatherRows(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, asm := range []bool{false, true} {
		old := hasTranspose8
		hasTranspose8 = hasTranspose8 && asm
		for _, w := range []int{4, 6, 8, 16, 32} {
			for _, rows := range []int{1, 3, 4, 5, 8, 9, 16, 31, 32} {
				if rows > w {
					continue
				}
				for _, kb := range []int{1, 7, 8, 17, 64} {
					ld := kb + 3
					src := randSlice(r, 2+rows*ld)
					dst := randSlice(r, kb*w) // garbage that must be overwritten
					gatherRows(dst, w, src, 2, ld, rows, kb)
					for p := range kb {
						for i := range w {
							want := float32(0)
							if i < rows {
								want = src[2+i*ld+p]
							}
							if got := dst[p*w+i]; got != want {
								t.Fatalf("asm=%v w=%d rows=%d kb=%d: dst[%d*w+%d] = %v, want %v", hasTranspose8, w, rows, kb, p, i, got, want)
							}
						}
					}
				}
			}
		}
		hasTranspose8 = old
	}
}
