package ops

import (
	"math"
	"math/rand/v2"
	"testing"

	"wkd/internal/torchref"
)

func TestDropoutKeptFraction(t *testing.T) {
	for _, p := range []float32{0.1, 0.5, 0.8} {
		x := New(4, 8, 64, 65) // odd total length: the last element takes a draw of its own
		x.Fill(1)
		y := Dropout(nil, x, p, true, NewRNG(uint64(p*100)))
		kept, scale := 0, 1/(1-p)
		for _, v := range y.Data {
			switch v {
			case 0:
			case scale:
				kept++
			default:
				t.Fatalf("p=%v: output %v is neither 0 nor 1/(1-p) = %v", p, v, scale)
			}
		}
		n := float64(x.Numel())
		frac, sd := float64(kept)/n, math.Sqrt(float64(p)*float64(1-p)/n)
		if math.Abs(frac-float64(1-p)) > 5*sd {
			t.Errorf("p=%v: kept %.4f, want %.4f +- %.4f", p, frac, 1-p, 5*sd)
		}
		t.Logf("p=%v: kept fraction %.4f (expected %.4f)", p, frac, 1-p)
	}
}

// TestDropoutBackwardUsesMask: the gradient is the upstream gradient through the very mask
// the forward drew (and scaled like it).
func TestDropoutBackwardUsesMask(t *testing.T) {
	r := rand.New(rand.NewPCG(20, 21))
	x := pushFromZero(randTensor(r, 2, 3, 40, 40), 0.1)
	x.SetRequiresGrad(true)
	w := randTensor(r, 2, 3, 40, 40)
	tp := NewTape()
	y := Dropout(tp, x, 0.4, true, NewRNG(5))
	tp.Backward(weightedSum(tp, y, w))
	zeros := 0
	for i := range y.Data {
		m := y.Data[i] / x.Data[i] // the mask element: 0 or 1/(1-p)
		if want := w.Data[i] * m; math.Abs(float64(x.Grad[i]-want)) > 1e-6 {
			t.Fatalf("grad[%d] = %v, want w*mask = %v", i, x.Grad[i], want)
		}
		if m == 0 {
			zeros++
		}
	}
	if zeros == 0 || zeros == x.Numel() {
		t.Fatalf("%d of %d dropped: not a mask", zeros, x.Numel())
	}
	// With the same seed in each forward the op is a fixed linear map: check it numerically.
	gradCheck(t, "Dropout", 1e-2, 1e-3, func(tp *Tape) *Tensor { return Dropout(tp, x, 0.4, true, NewRNG(5)) }, x)
}

func TestDropoutIdentityCases(t *testing.T) {
	x := NewParam("x", 3, 4)
	g := NewRNG(9)
	st := string(g.State())
	if Dropout(nil, x, 0, true, g) != x || Dropout(nil, x, 0.5, false, g) != x {
		t.Error("p=0 or eval did not return x itself")
	}
	if string(g.State()) != st {
		t.Error("identity dropout drew from the RNG")
	}
	x.Fill(3)
	for _, v := range Dropout(nil, x, 1, true, g).Data {
		if v != 0 {
			t.Fatal("p=1 kept an element")
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("p=1.5 did not panic")
		}
	}()
	Dropout(nil, x, 1.5, true, g)
}

// Dropout's PyTorch check runs in TestActivationsAndDropoutMatchPyTorch's Python start. The
// masks come from different generators, so what is compared is the convention: PyTorch's
// inverted dropout keeps the same scaled value, at a kept fraction that agrees with ours within
// sampling error, and its gradient is the upstream gradient through the scaled mask.
const dropoutP = 0.3

const dropoutScript = `
x = I['ones'].clone().requires_grad_(True)
y = torch.nn.functional.dropout(x, 0.3, training=True)
y.backward(I['ones'])
O['drop_kept'] = (y != 0).float().mean()
O['drop_value'] = y.max()
O['drop_grad_is_y'] = (x.grad == y).all().float()
`

// dropoutOnes is the input of dropoutScript and of checkDropoutConvention.
func dropoutOnes() *Tensor {
	x := New(2, 16, 64, 64)
	x.Fill(1)
	return x
}

func checkDropoutConvention(t *testing.T, want map[string]torchref.Array) {
	t.Helper()
	x := dropoutOnes()
	y := Dropout(nil, x, dropoutP, true, NewRNG(11))
	var kept float64
	var value float32
	for _, v := range y.Data {
		if v != 0 {
			kept++
			value = v
		}
	}
	n := float64(x.Numel())
	tk := float64(want["drop_kept"].Data[0])
	if sd := math.Sqrt(2 * dropoutP * (1 - dropoutP) / n); math.Abs(kept/n-tk) > 5*sd {
		t.Errorf("dropout kept fraction %.4f, PyTorch %.4f (+- %.4f)", kept/n, tk, 5*sd)
	}
	if value != want["drop_value"].Data[0] {
		t.Errorf("dropout kept value %v, PyTorch %v", value, want["drop_value"].Data[0])
	}
	if want["drop_grad_is_y"].Data[0] != 1 {
		t.Error("PyTorch's dropout gradient is not the scaled mask: the convention compared here is wrong")
	}
	t.Logf("dropout kept fraction %.4f, PyTorch %.4f; kept value %v, PyTorch %v", kept/n, tk, value, want["drop_value"].Data[0])
}
