package ops

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"wkd/internal/torchref"
)

// resizeCases: up and down, odd sides, a side that keeps its size, a one-row image.
var resizeCases = []struct{ n, c, h, w, oh, ow int }{
	{2, 2, 5, 7, 9, 4},
	{1, 3, 8, 8, 16, 16},
	{1, 2, 13, 11, 7, 20},
	{2, 1, 6, 6, 6, 3},
	{1, 2, 9, 5, 4, 5},
	{1, 1, 1, 5, 3, 2},
}

func TestResizeBilinearGradient(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 1))
	for _, rc := range resizeCases {
		x := randTensor(r, rc.n, rc.c, rc.h, rc.w)
		gradCheck(t, fmt.Sprintf("ResizeBilinear %v to %dx%d", x.Shape, rc.oh, rc.ow), 1e-2, 1e-3,
			func(tp *Tape) *Tensor { return ResizeBilinear(tp, x, rc.oh, rc.ow) }, x)
	}
}

// TestResizeBilinearValues: 2x2 to 4x4 by hand. Output row i reads source row
// (i + 0.5)/2 - 0.5 = -0.25 (clamped to 0), 0.25, 0.75, 1.25 (row 1, its neighbour clamped
// to row 1): weights of row 1 are 0, 0.25, 0.75, 1; columns alike.
func TestResizeBilinearValues(t *testing.T) {
	x := FromData([]float32{0, 1, 2, 3}, 1, 1, 2, 2)
	y := ResizeBilinear(nil, x, 4, 4)
	want := []float32{
		0, 0.25, 0.75, 1,
		0.5, 0.75, 1.25, 1.5,
		1.5, 1.75, 2.25, 2.5,
		2, 2.25, 2.75, 3,
	}
	if fmt.Sprint(y.Data) != fmt.Sprint(want) {
		t.Errorf("ResizeBilinear = %v, want %v", y.Data, want)
	}
	if same := ResizeBilinear(nil, x, 2, 2); fmt.Sprint(same.Data) != fmt.Sprint(x.Data) {
		t.Errorf("ResizeBilinear to the same size = %v, want the input %v", same.Data, x.Data)
	}
}

// TestResizeBilinearAdjoint: backward is the transpose of forward, <R x, z> = <x, R^T z>.
func TestResizeBilinearAdjoint(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 2))
	for _, rc := range resizeCases {
		x := randTensor(r, rc.n, rc.c, rc.h, rc.w)
		x.SetRequiresGrad(true)
		tp := NewTape()
		y := ResizeBilinear(tp, x, rc.oh, rc.ow)
		z := randTensor(r, y.Shape...)
		SeedGrad(y, z.Data)
		tp.BackwardFrom()
		var lhs, rhs float64
		for i, v := range y.Data {
			lhs += float64(v) * float64(z.Data[i])
		}
		for i, v := range x.Data {
			rhs += float64(v) * float64(x.Grad[i])
		}
		if math.Abs(lhs-rhs) > 1e-5*math.Max(1, math.Abs(lhs)) {
			t.Errorf("%v to %dx%d: <R x, z> = %.8g, <x, R^T z> = %.8g", x.Shape, rc.oh, rc.ow, lhs, rhs)
		}
	}
}

// TestResizeBilinearTorchParity compares forward and input gradient with
// F.interpolate(mode='bilinear', align_corners=False): Inception's 299x299 from 64 and 128,
// downsampling, odd sides. PyTorch multiplies and adds in other orders, so values agree to
// rounding (1e-6), not bit for bit; source positions rounded to float32 (PyTorch 2, see
// lerpTaps.fill) would be ~1e-5 off and fail.
func TestResizeBilinearTorchParity(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 3))
	cases := []struct {
		name       string
		n, c, h, w int
		oh, ow     int
	}{
		{"up64to299", 2, 3, 64, 64, 299, 299},
		{"up128to299", 1, 3, 128, 128, 299, 299},
		{"down64to29", 2, 3, 64, 64, 29, 29},
		{"odd13x11to7x20", 2, 2, 13, 11, 7, 20},
		{"down299to64", 1, 3, 299, 299, 64, 64},
		{"keepH_9x5to9x14", 1, 2, 9, 5, 9, 14},
	}
	inputs := map[string]torchref.Array{}
	got := map[string][]float32{}
	var script strings.Builder
	script.WriteString("import torch.nn.functional as F\nfor ps, oh, ow in [")
	for _, rc := range cases {
		x := randTensor(r, rc.n, rc.c, rc.h, rc.w)
		x.SetRequiresGrad(true)
		tp := NewTape()
		y := ResizeBilinear(tp, x, rc.oh, rc.ow)
		gy := randTensor(r, y.Shape...)
		SeedGrad(y, gy.Data)
		tp.BackwardFrom()
		p := rc.name + "_"
		inputs[p+"x"], inputs[p+"gy"] = arr(x), arr(gy)
		got[p+"y"], got[p+"dx"] = y.Data, x.Grad
		fmt.Fprintf(&script, "(%q, %d, %d), ", p, rc.oh, rc.ow)
	}
	script.WriteString(`]:
    x = I[ps+'x'].requires_grad_()
    y = F.interpolate(x, size=(oh, ow), mode='bilinear', align_corners=False)
    y.backward(I[ps+'gy'])
    O[ps+'y'] = y; O[ps+'dx'] = x.grad
`)
	want := torchref.Run(t, script.String(), inputs)
	for _, rc := range cases {
		p := rc.name + "_"
		t.Run(rc.name, func(t *testing.T) {
			torchref.Compare(t, 1e-6, map[string][]float32{p + "y": got[p+"y"], p + "dx": got[p+"dx"]}, want)
		})
	}
}

func TestResizeBilinearGradientsAccumulate(t *testing.T) {
	x := randTensor(rand.New(rand.NewPCG(41, 4)), 2, 3, 7, 9)
	checkAccumulates(t, "ResizeBilinear", x, func(tp *Tape) *Tensor { return ResizeBilinear(tp, x, 12, 5) })
}

func TestResizeBilinearAllocatesNothing(t *testing.T) {
	x := randTensor(rand.New(rand.NewPCG(41, 5)), 2, 3, 32, 32)
	assertNoAllocs(t, "ResizeBilinear up", x, func(tp *Tape) *Tensor { return ResizeBilinear(tp, x, 75, 75) })
	assertNoAllocs(t, "ResizeBilinear down", x, func(tp *Tape) *Tensor { return ResizeBilinear(tp, x, 13, 20) })
}

func TestResizeBilinearRejectsBadSizes(t *testing.T) {
	x := New(1, 3, 8, 8)
	mustPanicNaming(t, "zero rows", func() { ResizeBilinear(nil, x, 0, 4) }, "ops: ResizeBilinear", "[1 3 8 8]", "0x4")
	mustPanicNaming(t, "empty input", func() { ResizeBilinear(nil, New(1, 3, 0, 8), 4, 4) }, "ops: ResizeBilinear", "[1 3 0 8]")
}
