package ops

import (
	"math/rand/v2"
	"testing"

	"wkd/internal/torchref"
)

func TestPadGradient(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 1))
	for _, pad := range []int{1, 2, 3} {
		x := randTensor(r, 2, 2, 4, 5)
		gradCheck(t, "ReflectionPad2d", 1e-2, 1e-3, func(tp *Tape) *Tensor { return ReflectionPad2d(tp, x, pad) }, x)
		gradCheck(t, "ZeroPad2d", 1e-2, 1e-3, func(tp *Tape) *Tensor { return ZeroPad2d(tp, x, pad) }, x)
	}
}

func TestZeroPad2dValues(t *testing.T) {
	x := FromData([]float32{1, 2, 3, 4, 5, 6}, 1, 1, 2, 3)
	y := ZeroPad2d(nil, x, 1)
	want := []float32{
		0, 0, 0, 0, 0,
		0, 1, 2, 3, 0,
		0, 4, 5, 6, 0,
		0, 0, 0, 0, 0,
	}
	for i, v := range want {
		if y.Data[i] != v {
			t.Fatalf("ZeroPad2d = %v, want %v", y.Data, want)
		}
	}
}

// TestReflectionPad2dTorchParity: forward and gradient must equal torch.nn.ReflectionPad2d
// exactly (tolerance 0). The output gradient holds small integers, so the up to four
// contributions a border element collects sum exactly in any order.
func TestReflectionPad2dTorchParity(t *testing.T) {
	r := rand.New(rand.NewPCG(22, 2))
	type pcase struct {
		name       string
		pad        int
		n, c, h, w int
	}
	cases := []pcase{{"p1", 1, 2, 3, 4, 5}, {"p3", 3, 1, 2, 7, 4}, {"p3_tight", 3, 2, 1, 4, 5}, {"p2", 2, 1, 2, 3, 3}}
	inputs := map[string]torchref.Array{}
	got := map[string][]float32{}
	script := "for ps, pad in " + "[('p1_', 1), ('p3_', 3), ('p3_tight_', 3), ('p2_', 2)]:\n" +
		"    x = I[ps+'x'].requires_grad_()\n" +
		"    y = torch.nn.ReflectionPad2d(pad)(x)\n" +
		"    y.backward(I[ps+'gy'])\n" +
		"    O[ps+'y'] = y; O[ps+'dx'] = x.grad\n"
	for _, pc := range cases {
		x := randTensor(r, pc.n, pc.c, pc.h, pc.w)
		x.SetRequiresGrad(true)
		tp := NewTape()
		y := ReflectionPad2d(tp, x, pc.pad)
		gy := New(y.Shape...)
		for i := range gy.Data {
			gy.Data[i] = float32(r.IntN(17) - 8)
		}
		SeedGrad(y, gy.Data)
		tp.BackwardFrom()
		p := pc.name + "_"
		inputs[p+"x"], inputs[p+"gy"] = arr(x), arr(gy)
		got[p+"y"], got[p+"dx"] = y.Data, x.Grad
	}
	want := torchref.Run(t, script, inputs)
	torchref.Compare(t, 0, got, want)
}

// TestPadEmptyPlanes: padding nothing around empty planes gives an empty output.
func TestPadEmptyPlanes(t *testing.T) {
	for _, sh := range [][4]int{{2, 3, 0, 5}, {1, 2, 4, 0}} {
		if y := ZeroPad2d(nil, New(sh[:]...), 0); len(y.Data) != 0 {
			t.Errorf("%v: %d outputs, want none", sh, len(y.Data))
		}
	}
}
