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

// checkGemm runs one case through Sgemm and the reference and compares them.
func checkGemm(t *testing.T, r *rand.Rand, transA, transB bool, m, n, k, pad int, alpha, beta float32) {
	t.Helper()
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	lda, ldb, ldc := ac+pad, bc+pad, n+pad
	a := randSlice(r, max(0, (ar-1)*lda+ac))
	b := randSlice(r, max(0, (br-1)*ldb+bc))
	c := randSlice(r, max(0, (m-1)*ldc+n))
	if beta == 0 {
		nan := float32(math.NaN())
		for i := range c {
			c[i] = nan // BLAS: beta == 0 must overwrite, not multiply
		}
	}
	// Padding between rows must be left alone.
	sentinel := float32(12345)
	for i := range m {
		for x := n; x < ldc && i*ldc+x < len(c); x++ {
			c[i*ldc+x] = sentinel
		}
	}
	want := append([]float32(nil), c...)
	naiveGemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, want, ldc)
	Sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	tol := 1e-5 * float64(max(k, 1)) * (math.Abs(float64(alpha)) + 1)
	worst := 0.0
	for i := range m {
		for x := range ldc {
			idx := i*ldc + x
			if idx >= len(c) {
				break
			}
			if x >= n {
				if c[idx] != sentinel {
					t.Fatalf("padding C[%d][%d] = %v, want untouched", i, x, c[idx])
				}
				continue
			}
			d := math.Abs(float64(c[idx]) - float64(want[idx]))
			if math.IsNaN(float64(c[idx])) || d > tol*(1+math.Abs(float64(want[idx]))) {
				t.Fatalf("C[%d][%d] = %v, want %v (tol %.2g)", i, x, c[idx], want[idx], tol)
			}
			worst = max(worst, d)
		}
	}
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

// TestSgemmLargeAndParallel covers several nc/mc blocks and both parallel splits.
func TestSgemmLargeAndParallel(t *testing.T) {
	old := Threads()
	defer SetThreads(old)
	r := rand.New(rand.NewPCG(5, 6))
	cases := []struct{ m, n, k int }{
		{130, 1100, 300}, // split over n, two nc blocks, two kc blocks
		{600, 40, 70},    // narrow n: split over m, several mc blocks
		{64, 1030, 27},   // conv-like, small depth
	}
	for _, th := range []int{1, 2, 3} {
		SetThreads(th)
		for _, kern := range allKernels() {
			for _, cs := range cases {
				t.Run(fmt.Sprintf("%s/threads=%d/%dx%dx%d", kern.name, th, cs.m, cs.n, cs.k), func(t *testing.T) {
					withKernel(t, kern, func() {
						checkGemm(t, r, false, false, cs.m, cs.n, cs.k, 3, 1, 0)
						checkGemm(t, r, true, false, cs.m, cs.n, cs.k, 0, 1, 1)
						checkGemm(t, r, false, true, cs.m, cs.n, cs.k, 1, 0.5, 0)
					})
				})
			}
		}
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
