package ops

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

var benchShapes = []struct{ m, n, k int }{
	{256, 256, 256},
	{512, 512, 512},
	{1024, 1024, 1024},
	{64, 16384, 576}, // conv-like: 64 out channels, 3x3x64 im2col, 128x128 image
}

// BenchmarkSgemm reports GFLOP/s at the default thread count; -cpu does not change
// Threads(), so the threads=1 sub-benchmarks show the single-core figure.
func BenchmarkSgemm(b *testing.B) {
	old := Threads()
	defer SetThreads(old)
	for _, th := range []int{1, old} {
		for _, s := range benchShapes {
			b.Run(fmt.Sprintf("%dx%dx%d/threads=%d", s.m, s.n, s.k, th), func(b *testing.B) {
				SetThreads(th)
				benchGemm(b, false, false, s.m, s.n, s.k)
			})
		}
		if th == old {
			break
		}
	}
}

// BenchmarkSgemmConvBackward covers the transposed shapes of a conv backward pass:
// dW = dY * cols^T and dCols = W^T * dY.
func BenchmarkSgemmConvBackward(b *testing.B) {
	b.Run("dW", func(b *testing.B) { benchGemm(b, false, true, 64, 576, 16384) })
	b.Run("dCols", func(b *testing.B) { benchGemm(b, true, false, 576, 16384, 64) })
}

// BenchmarkSgemmGo is the pure-Go kernel that purego and non-amd64 builds use.
func BenchmarkSgemmGo(b *testing.B) {
	old := gemmKern
	defer func() { gemmKern = old }()
	gemmKern = &kernelGo
	benchGemm(b, false, false, 256, 256, 256)
}

func benchGemm(b *testing.B, transA, transB bool, m, n, k int) {
	r := rand.New(rand.NewPCG(1, 2))
	x, y, z := randSlice(r, m*k), randSlice(r, k*n), make([]float32, m*n)
	lda, ldb := k, n
	if transA {
		lda = m
	}
	if transB {
		ldb = k
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		Sgemm(transA, transB, m, n, k, 1, x, lda, y, ldb, 0, z, n)
	}
	gflops := 2 * float64(m) * float64(n) * float64(k) * float64(b.N) / b.Elapsed().Seconds() / 1e9
	b.ReportMetric(gflops, "GFLOP/s")
}
