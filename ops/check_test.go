package ops

import (
	"math"
	"math/rand/v2"
	"testing"

	"wkd/internal/torchref"
)

// randTensor fills a new tensor with uniform values in [-1, 1).
func randTensor(r *rand.Rand, shape ...int) *Tensor {
	t := New(shape...)
	for i := range t.Data {
		t.Data[i] = 2*r.Float32() - 1
	}
	return t
}

// weightedSum is the scalar loss the gradient checks use: sum(out * w) with fixed random w,
// so every output element gets a distinct upstream gradient.
func weightedSum(tp *Tape, out *Tensor, w *Tensor) *Tensor {
	loss := tp.alloc(1)
	var s float64
	for i, v := range out.Data {
		s += float64(v) * float64(w.Data[i])
	}
	loss.Data[0] = float32(s)
	if tp.needs(out) {
		n := tp.push(weightedSumBackward, loss, out)
		n.saved[0] = w
	}
	return loss
}

func weightedSumBackward(n *node) {
	g := n.out.Grad[0]
	w := n.saved[0].Data
	dst := n.in[0].grad()
	for i := range dst {
		dst[i] += g * w[i]
	}
}

// gradCheck compares the tape's gradients of sum(f(inputs) * w) with respect to every input
// against central finite differences in float64 of the float32 forward. eps is the step; tol
// bounds |analytic - numeric| / max(1, |numeric|) per element.
func gradCheck(t *testing.T, name string, eps, tol float64, f func(tp *Tape) *Tensor, inputs ...*Tensor) {
	t.Helper()
	r := rand.New(rand.NewPCG(7, 11))
	for _, in := range inputs {
		in.SetRequiresGrad(true)
		in.ZeroGrad()
	}
	tp := NewTape()
	out := f(tp)
	wt := New(out.Numel())
	w := wt.Data
	for i := range w {
		w[i] = 2*r.Float32() - 1
	}
	loss := weightedSum(tp, out, wt)
	tp.Backward(loss)

	eval := func() float64 {
		o := f(nil)
		var s float64
		for i, v := range o.Data {
			s += float64(v) * float64(w[i])
		}
		return s
	}
	worst := 0.0
	for k, in := range inputs {
		// Check a bounded random subset of elements of large inputs to keep tests fast.
		idx := make([]int, 0, 64)
		if in.Numel() <= 64 {
			for i := range in.Data {
				idx = append(idx, i)
			}
		} else {
			for range 64 {
				idx = append(idx, r.IntN(in.Numel()))
			}
		}
		for _, i := range idx {
			orig := in.Data[i]
			in.Data[i] = orig + float32(eps)
			plus := eval()
			in.Data[i] = orig - float32(eps)
			minus := eval()
			in.Data[i] = orig
			num := (plus - minus) / (2 * eps)
			ana := float64(in.Grad[i])
			e := math.Abs(ana-num) / math.Max(1, math.Abs(num))
			worst = math.Max(worst, e)
			if e > tol {
				t.Errorf("%s: input %d [%d]: analytic %.6g, numeric %.6g", name, k, i, ana, num)
				return
			}
		}
	}
	t.Logf("%s: worst gradient error vs finite differences %.3g", name, worst)
}

// arr converts a tensor for torchref.
func arr(t *Tensor) torchref.Array { return torchref.Of(t.Data, t.Shape...) }

func TestAddGradient(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	a, b := randTensor(r, 2, 3, 4, 5), randTensor(r, 2, 3, 4, 5)
	gradCheck(t, "Add", 1e-2, 1e-3, func(tp *Tape) *Tensor { return Add(tp, a, b) }, a, b)
}

func TestGradientsAccumulate(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	a, b := randTensor(r, 4), randTensor(r, 4)
	a.SetRequiresGrad(true)
	run := func() {
		tp := NewTape()
		tp.Backward(weightedSum(tp, Add(tp, a, b), FromData([]float32{1, 2, 3, 4}, 4)))
	}
	run()
	once := append([]float32(nil), a.Grad...)
	run()
	for i := range once {
		if a.Grad[i] != 2*once[i] {
			t.Fatalf("grad[%d] after two backward passes = %v, want 2 * %v", i, a.Grad[i], once[i])
		}
	}
	if b.Grad != nil {
		t.Error("b does not require gradient but got one")
	}
}

func TestNoGradRecordsNothing(t *testing.T) {
	a := NewParam("a", 8)
	tp := NewTape()
	tp.SetNoGrad(true)
	out := Add(tp, a, a)
	if tp.Len() != 0 || out.RequiresGrad() {
		t.Fatalf("no-grad tape recorded %d ops (out requires grad: %v)", tp.Len(), out.RequiresGrad())
	}
}

func TestArenaReusesBuffers(t *testing.T) {
	a, b := NewParam("a", 64), New(64)
	tp := NewTape()
	step := func() {
		tp.Reset()
		out := Add(tp, Add(tp, a, b), b)
		tp.Backward(weightedSum(tp, out, b))
	}
	step()
	if allocs := testing.AllocsPerRun(20, step); allocs != 0 {
		t.Errorf("steady-state step allocates %v times, want 0", allocs)
	}
}

func TestGradReadyFiresWhenTheLastReaderIsDone(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	w := randTensor(r, 8)
	w.SetRequiresGrad(true)
	x := randTensor(r, 8)
	var gradAtReady []float32
	calls := 0
	w.SetGradReady(func() {
		calls++
		gradAtReady = append([]float32(nil), w.Grad...)
	})
	tp := NewTape()
	// w is read twice; its gradient is complete only after both backwards.
	y := Add(tp, Add(tp, w, x), w)
	if w.PendingUses() != 2 {
		t.Fatalf("pending uses %d after two reads, want 2", w.PendingUses())
	}
	tp.Backward(weightedSum(tp, y, FromData([]float32{1, 2, 3, 4, 5, 6, 7, 8}, 8)))
	if calls != 1 {
		t.Fatalf("hook ran %d times, want once", calls)
	}
	for i, g := range gradAtReady {
		if want := 2 * float32(i+1); g != want {
			t.Fatalf("gradient seen by the hook [%d] = %v, want the complete %v", i, g, want)
		}
	}
	w.ZeroGrad()
	// Frozen: not counted, never fires.
	w.SetRequiresGrad(false)
	tp.Reset()
	_ = Add(tp, w, x)
	if w.PendingUses() != 0 {
		t.Errorf("a frozen tensor counted %d uses", w.PendingUses())
	}
}
