package ops

import (
	"math"
	"math/rand/v2"
	"testing"

	"wkd/internal/torchref"
)

func TestLossGradients(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 18))
	x, y := randTensor(r, 2, 3, 4, 5), randTensor(r, 2, 3, 4, 5)
	// L1's kink is at x = y: keep every difference at least 0.05 away from it.
	d := pushFromZero(Sub(nil, x, y), 0.05)
	xl := Add(nil, y, d)
	p := Sigmoid(nil, randTensor(r, 2, 3, 4, 5)) // targets in (0, 1)
	x4 := Scale(nil, x, 4)
	// The losses are scaled by the element count so that gradients are of order 1, where
	// gradCheck's tolerance is relative.
	n := float32(x.Numel())
	gradCheck(t, "L1Loss", 1e-2, 1e-3, func(tp *Tape) *Tensor { return Scale(tp, L1Loss(tp, xl, y), n) }, xl, y)
	gradCheck(t, "MSELoss", 1e-2, 1e-3, func(tp *Tape) *Tensor { return Scale(tp, MSELoss(tp, x, y), n) }, x, y)
	gradCheck(t, "BCEWithLogits", 1e-2, 1e-3, func(tp *Tape) *Tensor { return Scale(tp, BCEWithLogits(tp, x4, p), n) }, x4, p)
	gradCheck(t, "MSEConst", 1e-2, 1e-3, func(tp *Tape) *Tensor { return Scale(tp, MSEConst(tp, x, 0.9), n) }, x)
	gradCheck(t, "BCEWithLogitsConst", 1e-2, 1e-3, func(tp *Tape) *Tensor { return Scale(tp, BCEWithLogitsConst(tp, x4, 1), n) }, x4)
}

// TestLossesAndReductionsMatchPyTorch also checks Mean and Sum: one Python start for both.
func TestLossesAndReductionsMatchPyTorch(t *testing.T) {
	r := rand.New(rand.NewPCG(18, 19))
	// Several reduction chunks; logits up to +-60 with some far out, where a naive
	// log(1+exp(x)) overflows.
	x, y := Scale(nil, randTensor(r, 2, 3, 70, 70), 6), randTensor(r, 2, 3, 70, 70)
	for i := 0; i < x.Numel(); i += 501 {
		x.Data[i] *= 10
	}
	p := Sigmoid(nil, Scale(nil, y, 3))
	w := FromData([]float32{1.7}, 1)
	got := map[string][]float32{}
	recordOp(got, "l1", func(tp *Tape, in []*Tensor) *Tensor { return L1Loss(tp, in[0], in[1]) }, w, x, y)
	recordOp(got, "mse", func(tp *Tape, in []*Tensor) *Tensor { return MSELoss(tp, in[0], in[1]) }, w, x, y)
	recordOp(got, "bce", func(tp *Tape, in []*Tensor) *Tensor { return BCEWithLogits(tp, in[0], in[1]) }, w, x, p)
	recordOp(got, "mse1", func(tp *Tape, in []*Tensor) *Tensor { return MSEConst(tp, in[0], 1) }, w, x)
	recordOp(got, "mse0", func(tp *Tape, in []*Tensor) *Tensor { return MSEConst(tp, in[0], 0) }, w, x)
	recordOp(got, "bce1", func(tp *Tape, in []*Tensor) *Tensor { return BCEWithLogitsConst(tp, in[0], 1) }, w, x)
	recordOp(got, "bce0", func(tp *Tape, in []*Tensor) *Tensor { return BCEWithLogitsConst(tp, in[0], 0) }, w, x)
	// Reductions: several chunks of redChunk, the last one partial, with a mean away from 0.
	xr, s := shifted(r, 1, 0.25, 3, 5, 61, 67), randTensor(r, 2, 3, 4)
	recordOp(got, "mean", func(tp *Tape, in []*Tensor) *Tensor { return Mean(tp, in[0]) }, w, xr)
	recordOp(got, "sum", func(tp *Tape, in []*Tensor) *Tensor { return Sum(tp, in[0]) }, w, xr)
	recordOp(got, "mean_small", func(tp *Tape, in []*Tensor) *Tensor { return Mean(tp, in[0]) }, w, s)
	want := torchref.Run(t, pyRecord+`
record('l1', F.l1_loss, 'w', 'x', 'y')
record('mse', F.mse_loss, 'w', 'x', 'y')
record('bce', F.binary_cross_entropy_with_logits, 'w', 'x', 'p')
for v in (0, 1):
    record('mse%d' % v, lambda x: F.mse_loss(x, torch.full_like(x, v)), 'w', 'x')
    record('bce%d' % v, lambda x: F.binary_cross_entropy_with_logits(x, torch.full_like(x, v)), 'w', 'x')
record('mean', lambda x: x.mean(), 'w', 'xr')
record('sum', lambda x: x.sum(), 'w', 'xr')
record('mean_small', lambda x: x.mean(), 'w', 's')
`, map[string]torchref.Array{"x": arr(x), "y": arr(y), "p": arr(p), "w": arr(w), "xr": arr(xr), "s": arr(s)})
	torchref.Compare(t, 1e-4, got, want)
}

// TestBCEExtremeLogits: logits far beyond exp's float32 range give exact, finite values.
func TestBCEExtremeLogits(t *testing.T) {
	x := NewParam("x", 4)
	copy(x.Data, []float32{200, -200, 1e30, -1e30})
	tp := NewTape()
	l := BCEWithLogitsConst(tp, x, 1)
	tp.Backward(l)
	// Terms: 0, 200, 0, 1e30 -> mean 2.5e29; gradients (sigmoid(x) - 1)/4.
	if got := float64(l.Data[0]); math.Abs(got-(200+1e30)/4)/((200+1e30)/4) > 1e-6 {
		t.Errorf("loss %v, want %v", got, (200+1e30)/4)
	}
	want := []float32{0, -0.25, 0, -0.25}
	for i, g := range x.Grad {
		if g != want[i] {
			t.Errorf("grad %v, want %v", x.Grad, want)
			break
		}
	}
}
