package ops

import (
	"math/rand/v2"
	"testing"

	"wkd/internal/torchref"
)

// recordOp runs f on fresh copies of ins that require gradient, backpropagates sum(out*w), and
// stores the output under name and the gradient of input i under name_d<i>: the names
// pyRecord gives the same computation in PyTorch.
func recordOp(got map[string][]float32, name string, f func(tp *Tape, in []*Tensor) *Tensor, w *Tensor, ins ...*Tensor) {
	cp := make([]*Tensor, len(ins))
	for i, in := range ins {
		cp[i] = in.Clone()
		cp[i].SetRequiresGrad(true)
	}
	tp := NewTape()
	out := f(tp, cp)
	tp.Backward(weightedSum(tp, out, w))
	got[name] = append([]float32(nil), out.Data...)
	for i, in := range cp {
		got[name+"_d"+string(rune('0'+i))] = in.Grad
	}
}

// pyRecord is recordOp in PyTorch; scripts call record(name, f, w_key, *input_keys).
const pyRecord = `
import torch
import torch.nn.functional as F
def record(name, f, w, *keys):
    ins = [I[k].clone().requires_grad_(True) for k in keys]
    y = f(*ins)
    (y * I[w]).sum().backward()
    O[name] = y
    for i, t in enumerate(ins):
        O[name + '_d' + str(i)] = t.grad
`

func TestElementwiseGradients(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 3))
	a, b := randTensor(r, 2, 3, 4, 5), randTensor(r, 2, 3, 4, 5)
	c := randTensor(r, 2, 2, 4, 5)
	gradCheck(t, "Sub", 1e-2, 1e-3, func(tp *Tape) *Tensor { return Sub(tp, a, b) }, a, b)
	gradCheck(t, "Scale", 1e-2, 1e-3, func(tp *Tape) *Tensor { return Scale(tp, a, -1.7) }, a)
	gradCheck(t, "AddScalar", 1e-2, 1e-3, func(tp *Tape) *Tensor { return AddScalar(tp, a, 0.3) }, a)
	gradCheck(t, "Concat", 1e-2, 1e-3, func(tp *Tape) *Tensor { return Concat(tp, a, c) }, a, c)
	// The same tensor on both sides: both contributions must accumulate.
	gradCheck(t, "Sub(a, a)+Add(a, a)", 1e-2, 1e-3, func(tp *Tape) *Tensor {
		return Add(tp, Sub(tp, a, Scale(tp, a, 2)), Add(tp, a, a))
	}, a)
}

func TestElementwiseMatchesPyTorch(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 3))
	// Large enough (> ewGrain) that the parallel path runs.
	a, b := randTensor(r, 2, 3, 64, 50), randTensor(r, 2, 3, 64, 50)
	c := randTensor(r, 2, 5, 64, 50)
	w, wc := randTensor(r, 2, 3, 64, 50), randTensor(r, 2, 8, 64, 50)
	got := map[string][]float32{}
	recordOp(got, "add", func(tp *Tape, in []*Tensor) *Tensor { return Add(tp, in[0], in[1]) }, w, a, b)
	recordOp(got, "sub", func(tp *Tape, in []*Tensor) *Tensor { return Sub(tp, in[0], in[1]) }, w, a, b)
	recordOp(got, "scale", func(tp *Tape, in []*Tensor) *Tensor { return Scale(tp, in[0], -0.7) }, w, a)
	recordOp(got, "adds", func(tp *Tape, in []*Tensor) *Tensor { return AddScalar(tp, in[0], 0.3) }, w, a)
	recordOp(got, "cat", func(tp *Tape, in []*Tensor) *Tensor { return Concat(tp, in[0], in[1]) }, wc, a, c)
	want := torchref.Run(t, pyRecord+`
record('add', lambda a, b: a + b, 'w', 'a', 'b')
record('sub', lambda a, b: a - b, 'w', 'a', 'b')
record('scale', lambda a: a * -0.7, 'w', 'a')
record('adds', lambda a: a + 0.3, 'w', 'a')
record('cat', lambda a, c: torch.cat([a, c], 1), 'wc', 'a', 'c')
`, map[string]torchref.Array{"a": arr(a), "b": arr(b), "c": arr(c), "w": arr(w), "wc": arr(wc)})
	torchref.Compare(t, 1e-4, got, want)
}

func TestConcatOtherRanks(t *testing.T) {
	a := FromData([]float32{1, 2, 3, 4}, 2, 1, 2)
	b := FromData([]float32{5, 6, 7, 8, 9, 10, 11, 12}, 2, 2, 2)
	out := Concat(nil, a, b)
	want := []float32{1, 2, 5, 6, 7, 8, 3, 4, 9, 10, 11, 12}
	if !SameShape(out, FromData(want, 2, 3, 2)) {
		t.Fatalf("shape %v, want [2 3 2]", out.Shape)
	}
	for i, v := range want {
		if out.Data[i] != v {
			t.Fatalf("Concat = %v, want %v", out.Data, want)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("Concat of (2,1,2) and (2,2,3) did not panic")
		}
	}()
	Concat(nil, a, New(2, 2, 3))
}

// TestStepAllocatesNothing runs every op of this helper's files, forward and backward, on
// tensors big enough for the parallel paths, and requires a warm step to allocate nothing.
func TestStepAllocatesNothing(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 5))
	x := randTensor(r, 2, 4, 64, 128) // big enough for two ParallelFor chunks in every op
	x.SetRequiresGrad(true)
	y := randTensor(r, 2, 8, 64, 128)
	gIN, bIN := NewParam("in.weight", 4), NewParam("in.bias", 4)
	gBN, bBN := NewParam("bn.weight", 4), NewParam("bn.bias", 4)
	gIN.Fill(1)
	gBN.Fill(1)
	rm, rv := New(4), New(4)
	rv.Fill(1)
	rng := NewRNG(1)
	tp := NewTape()
	step := func() {
		tp.Reset()
		h := InstanceNorm2d(tp, x, gIN, bIN, 1e-5)
		h = InstanceNorm2d(tp, LeakyReLU(tp, h, 0.2), nil, nil, 1e-5)
		h = BatchNorm2d(tp, h, gBN, bBN, rm, rv, true, 0.1, 1e-5)
		h = BatchNorm2d(tp, ReLU(tp, h), gBN, bBN, rm, rv, false, 0.1, 1e-5)
		h = Dropout(tp, h, 0.5, true, rng)
		h = Concat(tp, h, x)
		d := Sub(tp, Scale(tp, Tanh(tp, h), 2), AddScalar(tp, Sigmoid(tp, h), 1))
		loss := Add(tp, MSELoss(tp, d, y), L1Loss(tp, d, y))
		loss = Add(tp, loss, BCEWithLogits(tp, d, Sigmoid(tp, y)))
		loss = Add(tp, loss, Add(tp, MSEConst(tp, d, 1), BCEWithLogitsConst(tp, d, 0)))
		loss = Add(tp, loss, Add(tp, Mean(tp, d), Scale(tp, Sum(tp, d), 1e-4)))
		tp.Backward(loss)
	}
	step()
	if allocs := testing.AllocsPerRun(10, step); allocs != 0 {
		t.Errorf("steady-state step allocates %v times, want 0", allocs)
	}
	if !x.AllFinite() || !FromData(x.Grad, x.Shape...).AllFinite() {
		t.Error("non-finite values in the step")
	}
}
