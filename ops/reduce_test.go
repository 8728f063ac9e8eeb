package ops

import (
	"math/rand/v2"
	"testing"
)

func TestReduceGradients(t *testing.T) {
	r := rand.New(rand.NewPCG(14, 15))
	x := randTensor(r, 2, 3, 4, 5)
	// Scaled so the gradient is of order 1, where gradCheck's tolerance is relative.
	gradCheck(t, "Mean", 1e-2, 1e-3, func(tp *Tape) *Tensor { return Scale(tp, Mean(tp, x), 120) }, x)
	gradCheck(t, "Sum", 1e-2, 1e-3, func(tp *Tape) *Tensor { return Sum(tp, x) }, x)
}

// PyTorch parity of Mean and Sum is in TestLossesAndReductionsMatchPyTorch (one Python run).

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
