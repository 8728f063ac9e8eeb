package ops

import (
	"math/rand/v2"
	"testing"

	"wkd/internal/torchref"
)

func TestReduceGradients(t *testing.T) {
	r := rand.New(rand.NewPCG(14, 15))
	x := randTensor(r, 2, 3, 4, 5)
	// Scaled so the gradient is of order 1, where gradCheck's tolerance is relative.
	gradCheck(t, "Mean", 1e-2, 1e-3, func(tp *Tape) *Tensor { return Scale(tp, Mean(tp, x), 120) }, x)
	gradCheck(t, "Sum", 1e-2, 1e-3, func(tp *Tape) *Tensor { return Sum(tp, x) }, x)
}

func TestReduceMatchesPyTorch(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	// Several chunks of redChunk, the last one partial, with a mean well away from 0.
	x := shifted(r, 1, 0.25, 3, 5, 61, 67)
	s := randTensor(r, 2, 3, 4)
	w := FromData([]float32{-1.3}, 1)
	got := map[string][]float32{}
	recordOp(got, "mean", func(tp *Tape, in []*Tensor) *Tensor { return Mean(tp, in[0]) }, w, x)
	recordOp(got, "sum", func(tp *Tape, in []*Tensor) *Tensor { return Sum(tp, in[0]) }, w, x)
	recordOp(got, "mean_small", func(tp *Tape, in []*Tensor) *Tensor { return Mean(tp, in[0]) }, w, s)
	want := torchref.Run(t, pyRecord+`
record('mean', lambda x: x.mean(), 'w', 'x')
record('sum', lambda x: x.sum(), 'w', 'x')
record('mean_small', lambda x: x.mean(), 'w', 's')
`, map[string]torchref.Array{"x": arr(x), "s": arr(s), "w": arr(w)})
	torchref.Compare(t, 1e-4, got, want)
}

// TestReduceSameForAnyThreads: the chunks are fixed, so the sum is bit-identical whatever the
// number of threads (replicas with different core counts stay identical).
func TestReduceSameForAnyThreads(t *testing.T) {
	r := rand.New(rand.NewPCG(16, 17))
	x := randTensor(r, 1, 7, 123, 129)
	y := randTensor(r, 1, 7, 123, 129)
	defer SetThreads(Threads())
	var ref [4]float32
	for i, th := range []int{1, 2, 3, 8} {
		SetThreads(th)
		got := [4]float32{Sum(nil, x).Data[0], Mean(nil, x).Data[0], L1Loss(nil, x, y).Data[0], BCEWithLogits(nil, x, y).Data[0]}
		if i == 0 {
			ref = got
		} else if got != ref {
			t.Errorf("%d threads: %v, 1 thread: %v", th, got, ref)
		}
	}
}

func BenchmarkMeanLarge(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	x := randTensor(r, 1, 64, 256, 256)
	b.SetBytes(int64(4 * x.Numel()))
	for b.Loop() {
		Mean(nil, x)
	}
}
