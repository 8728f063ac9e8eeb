package ops

import (
	"math/rand/v2"
	"testing"

	"wkd/internal/torchref"
)

// pushFromZero moves every element at least gap away from 0, so finite differences of ReLU
// and LeakyReLU never straddle their kink.
func pushFromZero(t *Tensor, gap float32) *Tensor {
	for i, v := range t.Data {
		if v >= 0 {
			t.Data[i] = v + gap
		} else {
			t.Data[i] = v - gap
		}
	}
	return t
}

func TestActivationGradients(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	x := pushFromZero(randTensor(r, 2, 3, 4, 5), 0.05)
	gradCheck(t, "ReLU", 1e-2, 1e-3, func(tp *Tape) *Tensor { return ReLU(tp, x) }, x)
	gradCheck(t, "LeakyReLU(0.2)", 1e-2, 1e-3, func(tp *Tape) *Tensor { return LeakyReLU(tp, x, 0.2) }, x)
	gradCheck(t, "LeakyReLU(-0.5)", 1e-2, 1e-3, func(tp *Tape) *Tensor { return LeakyReLU(tp, x, -0.5) }, x)
	gradCheck(t, "Tanh", 1e-2, 1e-3, func(tp *Tape) *Tensor { return Tanh(tp, Scale(tp, x, 2)) }, x)
	gradCheck(t, "Sigmoid", 1e-2, 1e-3, func(tp *Tape) *Tensor { return Sigmoid(tp, Scale(tp, x, 4)) }, x)
}

func TestActivationsAndDropoutMatchPyTorch(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 7))
	// Large enough (> ewGrain) for the parallel path, with a wide range for tanh and sigmoid
	// saturation, and exact zeros where ReLU's and LeakyReLU's gradient conventions show.
	x := Scale(nil, randTensor(r, 2, 3, 64, 50), 6)
	for i := 0; i < x.Numel(); i += 97 {
		x.Data[i] = 0
	}
	w := randTensor(r, 2, 3, 64, 50)
	got := map[string][]float32{}
	recordOp(got, "relu", func(tp *Tape, in []*Tensor) *Tensor { return ReLU(tp, in[0]) }, w, x)
	recordOp(got, "leaky", func(tp *Tape, in []*Tensor) *Tensor { return LeakyReLU(tp, in[0], 0.2) }, w, x)
	recordOp(got, "tanh", func(tp *Tape, in []*Tensor) *Tensor { return Tanh(tp, in[0]) }, w, x)
	recordOp(got, "sigmoid", func(tp *Tape, in []*Tensor) *Tensor { return Sigmoid(tp, in[0]) }, w, x)
	want := torchref.Run(t, pyRecord+`
record('relu', torch.relu, 'w', 'x')
record('leaky', lambda x: F.leaky_relu(x, 0.2), 'w', 'x')
record('tanh', torch.tanh, 'w', 'x')
record('sigmoid', torch.sigmoid, 'w', 'x')
`+dropoutScript, map[string]torchref.Array{"x": arr(x), "w": arr(w), "ones": arr(dropoutOnes())})
	torchref.Compare(t, 1e-4, got, want)
	checkDropoutConvention(t, want)
}
