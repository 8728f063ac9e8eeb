package ops

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"wkd/internal/torchref"
)

// convCase is one Conv2d or ConvTranspose2d configuration.
// x: (N, C, H, W); w: (K, C, KH, KW) for Conv2d, (C, K, KH, KW) for ConvTranspose2d.
type convCase struct {
	n, c, h, w, k, kh, kw, stride, pad, outPad int
	bias                                       bool
}

func (cc convCase) String() string {
	s := fmt.Sprintf("N%d_C%d_K%d_%dx%d_in%dx%d_s%d_p%d", cc.n, cc.c, cc.k, cc.kh, cc.kw, cc.h, cc.w, cc.stride, cc.pad)
	if cc.outPad > 0 {
		s += fmt.Sprintf("_op%d", cc.outPad)
	}
	if !cc.bias {
		s += "_nobias"
	}
	return s
}

var conv2dCases = []convCase{
	{n: 2, c: 3, h: 5, w: 6, k: 4, kh: 3, kw: 3, stride: 1, pad: 1, bias: true},
	{n: 2, c: 3, h: 7, w: 9, k: 5, kh: 3, kw: 3, stride: 2, pad: 1, bias: true},
	{n: 2, c: 4, h: 5, w: 4, k: 3, kh: 1, kw: 1, stride: 1, pad: 0, bias: true},
	{n: 1, c: 3, h: 6, w: 7, k: 2, kh: 1, kw: 1, stride: 2, pad: 0, bias: false},
	{n: 2, c: 2, h: 8, w: 6, k: 3, kh: 4, kw: 4, stride: 2, pad: 1, bias: true},
	{n: 2, c: 2, h: 5, w: 7, k: 3, kh: 4, kw: 4, stride: 1, pad: 1, bias: true},
	{n: 1, c: 2, h: 6, w: 5, k: 3, kh: 7, kw: 7, stride: 1, pad: 3, bias: true},
	{n: 2, c: 2, h: 9, w: 8, k: 2, kh: 7, kw: 7, stride: 1, pad: 0, bias: false},
	{n: 2, c: 3, h: 6, w: 8, k: 2, kh: 3, kw: 5, stride: 3, pad: 2, bias: true},
	// Unpadded stride-1 convs at least 32 outputs wide take the direct route (useDirect): full
	// and edge tiles, channel panels of 8 and fewer, one and several depth passes.
	{n: 2, c: 5, h: 4, w: 72, k: 11, kh: 3, kw: 3, stride: 1, pad: 0, bias: true},
	{n: 1, c: 3, h: 8, w: 38, k: 16, kh: 7, kw: 7, stride: 1, pad: 0, bias: false},
	{n: 2, c: 33, h: 3, w: 34, k: 8, kh: 3, kw: 3, stride: 1, pad: 0, bias: true},
	// ... and with stride or zero padding, through the input's phase split.
	{n: 2, c: 5, h: 6, w: 66, k: 9, kh: 3, kw: 3, stride: 2, pad: 1, bias: true},
	{n: 1, c: 3, h: 5, w: 36, k: 8, kh: 4, kw: 4, stride: 1, pad: 1, bias: false},
	{n: 1, c: 2, h: 7, w: 100, k: 4, kh: 5, kw: 3, stride: 3, pad: 2, bias: true},
	// Narrow outputs at stride 1 take the flipped-kernel transposed route (viaTranspose).
	{n: 2, c: 6, h: 5, w: 6, k: 1, kh: 3, kw: 3, stride: 1, pad: 1, bias: true},
	{n: 2, c: 8, h: 6, w: 7, k: 1, kh: 4, kw: 4, stride: 1, pad: 1, bias: true},
	{n: 2, c: 6, h: 6, w: 5, k: 2, kh: 7, kw: 7, stride: 1, pad: 3, bias: false},
}

// TestConv2dCasesCoverAllRoutes guards the table above: every conv route must be exercised.
func TestConv2dCasesCoverAllRoutes(t *testing.T) {
	var cols, flipped, direct int
	for _, cc := range conv2dCases {
		g := newConvGeom(cc.c, cc.h, cc.w, cc.kh, cc.kw, cc.stride, cc.pad)
		switch {
		case viaTranspose(&g, cc.k):
			flipped++
		case !g.pointwise() && g.ow >= directMinNR:
			direct++
		default:
			cols++
		}
	}
	if cols < 3 || flipped < 3 || direct < 3 {
		t.Errorf("conv2dCases: %d im2col, %d flipped-kernel and %d direct cases; want at least 3 of each", cols, flipped, direct)
	}
}

var convTransposeCases = []convCase{
	{n: 2, c: 3, h: 4, w: 5, k: 4, kh: 3, kw: 3, stride: 2, pad: 1, outPad: 1, bias: true},
	{n: 2, c: 3, h: 5, w: 3, k: 2, kh: 4, kw: 4, stride: 2, pad: 1, bias: true},
	{n: 2, c: 2, h: 5, w: 6, k: 3, kh: 3, kw: 3, stride: 1, pad: 1, bias: false},
	{n: 2, c: 4, h: 3, w: 5, k: 3, kh: 1, kw: 1, stride: 1, pad: 0, bias: true},
	{n: 1, c: 2, h: 3, w: 4, k: 3, kh: 2, kw: 2, stride: 2, pad: 0, bias: true},
	{n: 2, c: 2, h: 3, w: 4, k: 2, kh: 5, kw: 5, stride: 3, pad: 2, outPad: 2, bias: true},
	{n: 1, c: 3, h: 4, w: 3, k: 2, kh: 7, kw: 7, stride: 1, pad: 3, bias: true},
	// Outputs of each phase 32 and more wide take the phase route (useDirectT).
	{n: 1, c: 2, h: 2, w: 33, k: 3, kh: 3, kw: 3, stride: 2, pad: 1, outPad: 1, bias: true},
}

func (cc convCase) tensors(r *rand.Rand, transposed bool) (x, w, b *Tensor) {
	x = randTensor(r, cc.n, cc.c, cc.h, cc.w)
	if transposed {
		w = randTensor(r, cc.c, cc.k, cc.kh, cc.kw)
	} else {
		w = randTensor(r, cc.k, cc.c, cc.kh, cc.kw)
	}
	if cc.bias {
		b = randTensor(r, cc.k)
	}
	return x, w, b
}

// refConv2d is the textbook definition in float64, the oracle for the GEMM path.
func refConv2d(x, w, b *Tensor, stride, pad int) []float64 {
	return refConv2dPad(x, w, b, stride, pad, pad)
}

// refConv2dPad is refConv2d with padH rows and padW columns of zeros.
func refConv2dPad(x, w, b *Tensor, stride, padH, padW int) []float64 {
	n, c, h, wd := x.NCHW()
	k, _, kh, kw := w.NCHW()
	oh, ow := (h+2*padH-kh)/stride+1, (wd+2*padW-kw)/stride+1
	y := make([]float64, n*k*oh*ow)
	for in := 0; in < n; in++ {
		for ok := 0; ok < k; ok++ {
			for i := 0; i < oh; i++ {
				for j := 0; j < ow; j++ {
					var s float64
					if b != nil {
						s = float64(b.Data[ok])
					}
					for ic := 0; ic < c; ic++ {
						for u := 0; u < kh; u++ {
							for v := 0; v < kw; v++ {
								ih, iw := i*stride-padH+u, j*stride-padW+v
								if ih < 0 || ih >= h || iw < 0 || iw >= wd {
									continue
								}
								s += float64(x.Data[((in*c+ic)*h+ih)*wd+iw]) * float64(w.Data[((ok*c+ic)*kh+u)*kw+v])
							}
						}
					}
					y[((in*k+ok)*oh+i)*ow+j] = s
				}
			}
		}
	}
	return y
}

// refConvTranspose2d scatters every input pixel through the kernel, in float64.
func refConvTranspose2d(x, w, b *Tensor, stride, pad, outPad int) []float64 {
	n, c, h, wd := x.NCHW()
	_, k, kh, kw := w.NCHW()
	oh, ow := (h-1)*stride-2*pad+kh+outPad, (wd-1)*stride-2*pad+kw+outPad
	y := make([]float64, n*k*oh*ow)
	for in := 0; in < n; in++ {
		for ok := 0; ok < k; ok++ {
			for p := 0; p < oh*ow; p++ {
				if b != nil {
					y[(in*k+ok)*oh*ow+p] = float64(b.Data[ok])
				}
			}
			for ic := 0; ic < c; ic++ {
				for i := 0; i < h; i++ {
					for j := 0; j < wd; j++ {
						xv := float64(x.Data[((in*c+ic)*h+i)*wd+j])
						for u := 0; u < kh; u++ {
							for v := 0; v < kw; v++ {
								yh, yw := i*stride-pad+u, j*stride-pad+v
								if yh < 0 || yh >= oh || yw < 0 || yw >= ow {
									continue
								}
								y[((in*k+ok)*oh+yh)*ow+yw] += xv * float64(w.Data[((ic*k+ok)*kh+u)*kw+v])
							}
						}
					}
				}
			}
		}
	}
	return y
}

func compareRef(t *testing.T, name string, got []float32, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d outputs, want %d", name, len(got), len(want))
	}
	var maxDiff, maxWant float64
	for i, v := range want {
		maxDiff = math.Max(maxDiff, math.Abs(float64(got[i])-v))
		maxWant = math.Max(maxWant, math.Abs(v))
	}
	if maxDiff > tol*math.Max(1, maxWant) {
		t.Errorf("%s: max difference %.3g from the reference (max |y| %.3g)", name, maxDiff, maxWant)
	}
}

// withBands runs f twice: with the default column budget and with one output row per band,
// so both the single-band and the streamed paths are exercised.
func withBands(t *testing.T, f func(t *testing.T)) {
	t.Run("oneband", f)
	t.Run("rowbands", func(t *testing.T) {
		old := colsBudget
		colsBudget = 1
		defer func() { colsBudget = old }()
		f(t)
	})
}

func TestConv2dMatchesDefinition(t *testing.T) {
	withBands(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 1))
		for _, cc := range conv2dCases {
			x, w, b := cc.tensors(r, false)
			y := Conv2d(nil, x, w, b, cc.stride, cc.pad)
			oh, ow := (cc.h+2*cc.pad-cc.kh)/cc.stride+1, (cc.w+2*cc.pad-cc.kw)/cc.stride+1
			if want := []int{cc.n, cc.k, oh, ow}; fmt.Sprint(y.Shape) != fmt.Sprint(want) {
				t.Fatalf("%v: output shape %v, want %v", cc, y.Shape, want)
			}
			compareRef(t, cc.String(), y.Data, refConv2d(x, w, b, cc.stride, cc.pad), 1e-6)
		}
	})
}

func TestConv2dGradient(t *testing.T) {
	withBands(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(2, 2))
		for _, cc := range conv2dCases {
			x, w, b := cc.tensors(r, false)
			ins := []*Tensor{x, w}
			if b != nil {
				ins = append(ins, b)
			}
			gradCheck(t, "Conv2d "+cc.String(), 1e-2, 1e-3, func(tp *Tape) *Tensor {
				return Conv2d(tp, x, w, b, cc.stride, cc.pad)
			}, ins...)
		}
	})
}

// TestConv2dPartialGradients checks that an input that does not require gradient gets none
// while the others still get theirs (the first layer's image, a frozen weight).
func TestConv2dPartialGradients(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	cc := conv2dCases[1]
	x, w, b := cc.tensors(r, false)
	gradCheck(t, "Conv2d dW only", 1e-2, 1e-3, func(tp *Tape) *Tensor { return Conv2d(tp, x, w, b, cc.stride, cc.pad) }, w)
	if x.Grad != nil || b.Grad != nil {
		t.Errorf("x or b got a gradient without requiring one")
	}
	x2, w2, _ := cc.tensors(r, false)
	gradCheck(t, "Conv2d dX only", 1e-2, 1e-3, func(tp *Tape) *Tensor { return Conv2d(tp, x2, w2, nil, cc.stride, cc.pad) }, x2)
	if w2.Grad != nil {
		t.Errorf("w got a gradient without requiring one")
	}
}

// TestConvGradientsAccumulate: the gradient rule is +=, so two backward passes give twice the
// gradient of one, for weights, bias and input alike.
func TestConvGradientsAccumulate(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	for _, op := range []string{"Conv2d", "Conv2d flipped", "ConvTranspose2d"} {
		var cc convCase
		f := func(tp *Tape, x, w, b *Tensor) *Tensor { return Conv2d(tp, x, w, b, cc.stride, cc.pad) }
		switch op {
		case "Conv2d":
			cc = conv2dCases[1]
		case "Conv2d flipped":
			cc = conv2dCases[len(conv2dCases)-2]
			if g := newConvGeom(cc.c, cc.h, cc.w, cc.kh, cc.kw, cc.stride, cc.pad); !viaTranspose(&g, cc.k) {
				t.Fatalf("%v does not take the flipped-kernel route", cc)
			}
		default:
			cc = convTransposeCases[0]
			f = func(tp *Tape, x, w, b *Tensor) *Tensor {
				return ConvTranspose2d(tp, x, w, b, cc.stride, cc.pad, cc.outPad)
			}
		}
		x, w, b := cc.tensors(r, op == "ConvTranspose2d")
		for _, p := range []*Tensor{x, w, b} {
			p.SetRequiresGrad(true)
		}
		var wt *Tensor
		run := func() {
			tp := NewTape()
			y := f(tp, x, w, b)
			if wt == nil {
				wt = randTensor(r, y.Numel())
			}
			tp.Backward(weightedSum(tp, y, wt))
		}
		run()
		once := [][]float32{append([]float32(nil), x.Grad...), append([]float32(nil), w.Grad...), append([]float32(nil), b.Grad...)}
		run()
		for i, p := range []*Tensor{x, w, b} {
			var maxDiff, maxOnce float64
			for j, g := range once[i] {
				maxDiff = math.Max(maxDiff, math.Abs(float64(p.Grad[j])-2*float64(g)))
				maxOnce = math.Max(maxOnce, math.Abs(float64(g)))
			}
			if maxOnce == 0 || maxDiff > 1e-6*maxOnce {
				t.Errorf("%s input %d: after two backward passes gradient differs from twice one pass by %.3g (max %.3g)",
					op, i, maxDiff, maxOnce)
			}
		}
	}
}

// TestConvStepAllocatesNothing: a warm training step through pad, conv and transposed conv
// draws every buffer from the arena or the scratch list.
func TestConvStepAllocatesNothing(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	x := randTensor(r, 2, 3, 8, 8)
	w1, b1 := randTensor(r, 4, 3, 3, 3), randTensor(r, 4)
	w2, b2 := randTensor(r, 4, 2, 3, 3), randTensor(r, 2)
	wt := randTensor(r, 2*2*10*10)
	for _, p := range []*Tensor{w1, b1, w2, b2} {
		p.SetRequiresGrad(true)
	}
	tp := NewTape()
	step := func() {
		tp.Reset()
		h := Conv2d(tp, ReflectionPad2d(tp, x, 1), w1, b1, 2, 1)
		y := ConvTranspose2d(tp, ZeroPad2d(tp, h, 0), w2, b2, 2, 1, 1)
		tp.Backward(weightedSum(tp, y, wt))
	}
	step()
	if allocs := testing.AllocsPerRun(10, step); allocs != 0 {
		t.Errorf("steady-state conv step allocates %v times, want 0", allocs)
	}
}

func TestConvRejectsBadShapes(t *testing.T) {
	x := New(1, 3, 8, 8)
	for name, f := range map[string]func(){
		"channels":   func() { Conv2d(nil, x, New(4, 2, 3, 3), nil, 1, 1) },
		"bias":       func() { Conv2d(nil, x, New(4, 3, 3, 3), New(3), 1, 1) },
		"too big":    func() { Conv2d(nil, x, New(4, 3, 11, 11), nil, 1, 1) },
		"stride":     func() { Conv2d(nil, x, New(4, 3, 3, 3), nil, 0, 1) },
		"T channels": func() { ConvTranspose2d(nil, x, New(4, 3, 3, 3), nil, 2, 1, 1) },
		"T outPad":   func() { ConvTranspose2d(nil, x, New(3, 4, 3, 3), nil, 2, 1, 2) },
		"reflect":    func() { ReflectionPad2d(nil, x, 8) },
	} {
		func() {
			defer func() {
				msg, _ := recover().(string)
				if !strings.Contains(msg, "ops: ") || !strings.Contains(msg, "[4 3 3 3]") && !strings.Contains(msg, "[1 3 8 8]") {
					t.Errorf("%s: panic %q, want one naming the shapes", name, msg)
				}
			}()
			f()
		}()
	}
}

// parityCase is one network configuration compared with PyTorch: an optional pad before a
// conv or transposed conv, forward and every gradient.
type parityCase struct {
	name       string
	reflectPad int // ReflectionPad2d before the conv, 0 for none
	transposed bool
	cc         convCase
}

// The configurations the ResNet, U-Net and PatchGAN networks use.
var parityCases = []parityCase{
	{name: "c7s1_reflect3", reflectPad: 3, cc: convCase{n: 2, c: 3, h: 20, w: 18, k: 16, kh: 7, kw: 7, stride: 1, bias: true}},
	{name: "c7s1_reflect3_out", reflectPad: 3, cc: convCase{n: 2, c: 16, h: 12, w: 14, k: 3, kh: 7, kw: 7, stride: 1, bias: true}},
	{name: "down_3x3s2p1", cc: convCase{n: 2, c: 16, h: 20, w: 18, k: 32, kh: 3, kw: 3, stride: 2, pad: 1, bias: true}},
	{name: "res_3x3_reflect1", reflectPad: 1, cc: convCase{n: 2, c: 32, h: 10, w: 9, k: 32, kh: 3, kw: 3, stride: 1, bias: true}},
	{name: "up_T3x3s2p1op1", transposed: true, cc: convCase{n: 2, c: 32, h: 9, w: 10, k: 16, kh: 3, kw: 3, stride: 2, pad: 1, outPad: 1, bias: true}},
	{name: "unet_T4x4s2p1", transposed: true, cc: convCase{n: 2, c: 32, h: 8, w: 6, k: 16, kh: 4, kw: 4, stride: 2, pad: 1, bias: true}},
	{name: "unet_T4x4s2p1_nobias", transposed: true, cc: convCase{n: 2, c: 16, h: 5, w: 7, k: 3, kh: 4, kw: 4, stride: 2, pad: 1}},
	{name: "patch_4x4s2p1", cc: convCase{n: 2, c: 3, h: 22, w: 20, k: 16, kh: 4, kw: 4, stride: 2, pad: 1, bias: true}},
	{name: "patch_4x4s1p1", cc: convCase{n: 2, c: 32, h: 9, w: 11, k: 1, kh: 4, kw: 4, stride: 1, pad: 1, bias: true}},
	{name: "patch_4x4s2p1_nobias", cc: convCase{n: 2, c: 16, h: 12, w: 10, k: 32, kh: 4, kw: 4, stride: 2, pad: 1}},
	// The direct route (useDirect): outputs 32 and more wide.
	{name: "res_3x3_reflect1_direct", reflectPad: 1, cc: convCase{n: 2, c: 24, h: 5, w: 70, k: 20, kh: 3, kw: 3, stride: 1, bias: true}},
	{name: "c7s1_reflect3_direct", reflectPad: 3, cc: convCase{n: 1, c: 3, h: 6, w: 64, k: 16, kh: 7, kw: 7, stride: 1, bias: true}},
	{name: "up_T3x3s2p1op1_direct", transposed: true, cc: convCase{n: 2, c: 24, h: 4, w: 35, k: 12, kh: 3, kw: 3, stride: 2, pad: 1, outPad: 1, bias: true}},
	{name: "unet_T4x4s2p1_direct", transposed: true, cc: convCase{n: 1, c: 16, h: 3, w: 32, k: 8, kh: 4, kw: 4, stride: 2, pad: 1}},
	{name: "down_3x3s2p1_direct", cc: convCase{n: 2, c: 16, h: 6, w: 68, k: 32, kh: 3, kw: 3, stride: 2, pad: 1, bias: true}},
	{name: "patch_4x4s1p1_direct", cc: convCase{n: 1, c: 16, h: 5, w: 40, k: 12, kh: 4, kw: 4, stride: 1, pad: 1, bias: true}},
	{name: "c7s1_reflect3_out_direct", reflectPad: 3, cc: convCase{n: 1, c: 16, h: 20, w: 40, k: 3, kh: 7, kw: 7, stride: 1, bias: true}},
	{name: "res_3x3_reflect1_deep_direct", reflectPad: 1, cc: convCase{n: 1, c: 64, h: 4, w: 32, k: 64, kh: 3, kw: 3, stride: 1}},
}

// TestConvTorchParity runs every network configuration through PyTorch in one interpreter and
// compares the output and the gradients of x, w and b (relative error <= 1e-4).
func TestConvTorchParity(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 6))
	inputs := map[string]torchref.Array{}
	var script strings.Builder
	script.WriteString("import torch.nn.functional as F\n")
	got := make([]map[string][]float32, len(parityCases))
	for i, pc := range parityCases {
		cc := pc.cc
		x, w, b := cc.tensors(r, pc.transposed)
		x.SetRequiresGrad(true)
		w.SetRequiresGrad(true)
		p := pc.name + "_"
		inputs[p+"x"], inputs[p+"w"] = arr(x), arr(w)
		bias := "None"
		if b != nil {
			b.SetRequiresGrad(true)
			inputs[p+"b"] = arr(b)
			bias = fmt.Sprintf("I[%q]", p+"b")
		}
		tp := NewTape()
		in := x
		if pc.reflectPad > 0 {
			in = ReflectionPad2d(tp, x, pc.reflectPad)
		}
		var y *Tensor
		if pc.transposed {
			y = ConvTranspose2d(tp, in, w, b, cc.stride, cc.pad, cc.outPad)
		} else {
			y = Conv2d(tp, in, w, b, cc.stride, cc.pad)
		}
		gy := randTensor(r, y.Shape...)
		inputs[p+"gy"] = arr(gy)
		SeedGrad(y, gy.Data)
		tp.BackwardFrom()
		got[i] = map[string][]float32{p + "y": y.Data, p + "dx": x.Grad, p + "dw": w.Grad}
		if b != nil {
			got[i][p+"db"] = b.Grad
		}

		fmt.Fprintf(&script, "ps = %q\n", p)
		script.WriteString("x = I[ps+'x'].requires_grad_(); w = I[ps+'w'].requires_grad_()\n")
		fmt.Fprintf(&script, "b = %s\nif b is not None: b.requires_grad_()\nh = x\n", bias)
		if pc.reflectPad > 0 {
			fmt.Fprintf(&script, "h = torch.nn.ReflectionPad2d(%d)(h)\n", pc.reflectPad)
		}
		if pc.transposed {
			fmt.Fprintf(&script, "y = F.conv_transpose2d(h, w, b, stride=%d, padding=%d, output_padding=%d)\n", cc.stride, cc.pad, cc.outPad)
		} else {
			fmt.Fprintf(&script, "y = F.conv2d(h, w, b, stride=%d, padding=%d)\n", cc.stride, cc.pad)
		}
		script.WriteString("y.backward(I[ps+'gy'])\nO[ps+'y'] = y; O[ps+'dx'] = x.grad; O[ps+'dw'] = w.grad\n")
		script.WriteString("if b is not None: O[ps+'db'] = b.grad\n")
	}
	want := torchref.Run(t, script.String(), inputs)
	for i, pc := range parityCases {
		t.Run(pc.name, func(t *testing.T) { torchref.Compare(t, 1e-4, got[i], want) })
	}
}

// TestConvParallelMatchesSerial: the parallel im2col, col2im and bias loops split work by rows
// and channels; with several workers every gradient must equal the one-worker result.
func TestConvParallelMatchesSerial(t *testing.T) {
	old := Threads()
	defer SetThreads(old)
	run := func(threads int) [][]float32 {
		SetThreads(threads)
		r := rand.New(rand.NewPCG(8, 8))
		var res [][]float32
		for _, transposed := range []bool{false, true} {
			cc := convCase{n: 2, c: 16, h: 40, w: 36, k: 12, kh: 3, kw: 3, stride: 2, pad: 1, outPad: 1, bias: true}
			x, w, b := cc.tensors(r, transposed)
			for _, p := range []*Tensor{x, w, b} {
				p.SetRequiresGrad(true)
			}
			tp := NewTape()
			var y *Tensor
			if transposed {
				y = ConvTranspose2d(tp, x, w, b, cc.stride, cc.pad, cc.outPad)
			} else {
				y = Conv2d(tp, x, w, b, cc.stride, cc.pad)
			}
			tp.Backward(weightedSum(tp, y, randTensor(r, y.Numel())))
			res = append(res, y.Data, x.Grad, w.Grad, b.Grad)
		}
		return res
	}
	serial, parallel := run(1), run(4)
	for i := range serial {
		compareRef(t, fmt.Sprintf("tensor %d", i), parallel[i], toFloat64(serial[i]), 1e-6)
	}
}

func toFloat64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// rectConvCase is a Conv2dPad configuration: a convCase whose pad is replaced by padH and padW.
type rectConvCase struct {
	convCase
	padH, padW int
}

func (rc rectConvCase) String() string {
	s := fmt.Sprintf("N%d_C%d_K%d_%dx%d_in%dx%d_s%d_p%dx%d", rc.n, rc.c, rc.k, rc.kh, rc.kw, rc.h, rc.w, rc.stride, rc.padH, rc.padW)
	if !rc.bias {
		s += "_nobias"
	}
	return s
}

// conv2dPadCases: Inception-v3's 1x7, 7x1, 1x3 and 3x1 convolutions (which keep the side they
// do not reduce), and unequal pads at stride 2, on odd sides where H and W differ so that a
// swap of the pads changes the output shape or values.
var conv2dPadCases = []rectConvCase{
	{convCase{n: 2, c: 3, h: 7, w: 9, k: 4, kh: 1, kw: 7, stride: 1, bias: true}, 0, 3},
	{convCase{n: 2, c: 3, h: 9, w: 6, k: 4, kh: 7, kw: 1, stride: 1, bias: true}, 3, 0},
	{convCase{n: 2, c: 3, h: 6, w: 5, k: 3, kh: 1, kw: 3, stride: 1, bias: false}, 0, 1},
	{convCase{n: 2, c: 3, h: 5, w: 6, k: 3, kh: 3, kw: 1, stride: 1, bias: true}, 1, 0},
	{convCase{n: 2, c: 2, h: 9, w: 8, k: 3, kh: 3, kw: 3, stride: 2, bias: true}, 1, 0},
	{convCase{n: 2, c: 2, h: 8, w: 9, k: 3, kh: 3, kw: 3, stride: 2, bias: true}, 0, 1},
	{convCase{n: 1, c: 2, h: 7, w: 10, k: 2, kh: 1, kw: 7, stride: 2, bias: true}, 0, 3},
	{convCase{n: 1, c: 2, h: 9, w: 7, k: 3, kh: 5, kw: 3, stride: 1, bias: true}, 2, 1},
	// Wide enough for the direct route.
	{convCase{n: 2, c: 3, h: 5, w: 35, k: 9, kh: 1, kw: 7, stride: 1, bias: true}, 0, 3},
	{convCase{n: 1, c: 4, h: 7, w: 70, k: 8, kh: 3, kw: 3, stride: 2, bias: true}, 1, 0},
	// Narrow outputs at stride 1: the flipped-kernel route would be cheaper, but it takes
	// equal pads only.
	{convCase{n: 2, c: 8, h: 6, w: 7, k: 1, kh: 3, kw: 3, stride: 1, bias: true}, 1, 0},
	{convCase{n: 2, c: 8, h: 7, w: 6, k: 1, kh: 3, kw: 3, stride: 1, bias: false}, 0, 1},
}

func TestConv2dPadMatchesDefinition(t *testing.T) {
	withBands(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(11, 1))
		for _, rc := range conv2dPadCases {
			x, w, b := rc.tensors(r, false)
			y := Conv2dPad(nil, x, w, b, rc.stride, rc.padH, rc.padW)
			oh, ow := (rc.h+2*rc.padH-rc.kh)/rc.stride+1, (rc.w+2*rc.padW-rc.kw)/rc.stride+1
			if want := []int{rc.n, rc.k, oh, ow}; fmt.Sprint(y.Shape) != fmt.Sprint(want) {
				t.Fatalf("%v: output shape %v, want %v", rc, y.Shape, want)
			}
			compareRef(t, rc.String(), y.Data, refConv2dPad(x, w, b, rc.stride, rc.padH, rc.padW), 1e-6)
		}
	})
}

func TestConv2dPadGradient(t *testing.T) {
	withBands(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(11, 2))
		for _, rc := range conv2dPadCases {
			x, w, b := rc.tensors(r, false)
			ins := []*Tensor{x, w}
			if b != nil {
				ins = append(ins, b)
			}
			gradCheck(t, "Conv2dPad "+rc.String(), 1e-2, 1e-3, func(tp *Tape) *Tensor {
				return Conv2dPad(tp, x, w, b, rc.stride, rc.padH, rc.padW)
			}, ins...)
		}
	})
}

// TestConv2dPadEqualPadsIsConv2d: with padH = padW, Conv2dPad takes Conv2d's routes (the
// flipped-kernel one included) and gives the same bits.
func TestConv2dPadEqualPadsIsConv2d(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 3))
	for _, cc := range conv2dCases {
		x, w, b := cc.tensors(r, false)
		want := Conv2d(nil, x, w, b, cc.stride, cc.pad)
		got := Conv2dPad(nil, x, w, b, cc.stride, cc.pad, cc.pad)
		if fmt.Sprint(got.Data) != fmt.Sprint(want.Data) {
			t.Errorf("%v: Conv2dPad(pad, pad) differs from Conv2d(pad)", cc)
		}
	}
}

// TestConv2dPadTorchParity compares output and the gradients of x, w and b with
// F.conv2d(padding=(padH, padW)) on Inception-v3's shapes (relative error <= 1e-5).
func TestConv2dPadTorchParity(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 4))
	cases := []struct {
		name string
		rc   rectConvCase
	}{
		{"1x7_p0x3", rectConvCase{convCase{n: 2, c: 16, h: 17, w: 17, k: 12, kh: 1, kw: 7, stride: 1, bias: true}, 0, 3}},
		{"7x1_p3x0", rectConvCase{convCase{n: 2, c: 12, h: 17, w: 17, k: 16, kh: 7, kw: 1, stride: 1, bias: true}, 3, 0}},
		{"1x3_p0x1", rectConvCase{convCase{n: 2, c: 16, h: 8, w: 8, k: 12, kh: 1, kw: 3, stride: 1}, 0, 1}},
		{"3x1_p1x0", rectConvCase{convCase{n: 2, c: 16, h: 8, w: 8, k: 12, kh: 3, kw: 1, stride: 1}, 1, 0}},
		{"1x7_p0x3_odd", rectConvCase{convCase{n: 1, c: 8, h: 9, w: 13, k: 6, kh: 1, kw: 7, stride: 1, bias: true}, 0, 3}},
		{"3x3s2_p0x0", rectConvCase{convCase{n: 2, c: 8, h: 17, w: 17, k: 12, kh: 3, kw: 3, stride: 2}, 0, 0}},
		{"3x3s2_p1x0", rectConvCase{convCase{n: 2, c: 8, h: 15, w: 14, k: 6, kh: 3, kw: 3, stride: 2, bias: true}, 1, 0}},
		{"3x3s2_p0x1", rectConvCase{convCase{n: 2, c: 8, h: 14, w: 15, k: 6, kh: 3, kw: 3, stride: 2, bias: true}, 0, 1}},
	}
	inputs := map[string]torchref.Array{}
	got := map[string][]float32{}
	var script strings.Builder
	script.WriteString("import torch.nn.functional as F\nfor ps, s, ph, pw in [")
	for _, pc := range cases {
		rc := pc.rc
		x, w, b := rc.tensors(r, false)
		for _, p := range []*Tensor{x, w, b} {
			if p != nil {
				p.SetRequiresGrad(true)
			}
		}
		tp := NewTape()
		y := Conv2dPad(tp, x, w, b, rc.stride, rc.padH, rc.padW)
		gy := randTensor(r, y.Shape...)
		SeedGrad(y, gy.Data)
		tp.BackwardFrom()
		p := pc.name + "_"
		inputs[p+"x"], inputs[p+"w"], inputs[p+"gy"] = arr(x), arr(w), arr(gy)
		got[p+"y"], got[p+"dx"], got[p+"dw"] = y.Data, x.Grad, w.Grad
		if b != nil {
			inputs[p+"b"] = arr(b)
			got[p+"db"] = b.Grad
		}
		fmt.Fprintf(&script, "(%q, %d, %d, %d), ", p, rc.stride, rc.padH, rc.padW)
	}
	script.WriteString(`]:
    x = I[ps+'x'].requires_grad_(); w = I[ps+'w'].requires_grad_()
    b = I.get(ps+'b')
    if b is not None: b.requires_grad_()
    y = F.conv2d(x, w, b, stride=s, padding=(ph, pw))
    y.backward(I[ps+'gy'])
    O[ps+'y'] = y; O[ps+'dx'] = x.grad; O[ps+'dw'] = w.grad
    if b is not None: O[ps+'db'] = b.grad
`)
	want := torchref.Run(t, script.String(), inputs)
	for _, pc := range cases {
		p := pc.name + "_"
		mine := map[string][]float32{}
		for _, v := range []string{"y", "dx", "dw", "db"} {
			if g, ok := got[p+v]; ok {
				mine[p+v] = g
			}
		}
		t.Run(pc.name, func(t *testing.T) { torchref.Compare(t, 1e-5, mine, want) })
	}
}

func TestConv2dPadAllocatesNothing(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 5))
	x := randTensor(r, 2, 16, 17, 17)
	w17, w71 := randTensor(r, 12, 16, 1, 7), randTensor(r, 12, 16, 7, 1)
	b := randTensor(r, 12)
	for _, p := range []*Tensor{w17, w71, b} {
		p.SetRequiresGrad(true)
	}
	assertNoAllocs(t, "Conv2dPad 1x7", x, func(tp *Tape) *Tensor { return Conv2dPad(tp, x, w17, b, 1, 0, 3) })
	assertNoAllocs(t, "Conv2dPad 7x1", x, func(tp *Tape) *Tensor { return Conv2dPad(tp, x, w71, b, 1, 3, 0) })
}

func TestConv2dPadRejectsBadShapes(t *testing.T) {
	x := New(1, 3, 8, 8)
	w := New(4, 3, 1, 7)
	mustPanicNaming(t, "negative pad", func() { Conv2dPad(nil, x, w, nil, 1, -1, 3) }, "ops: Conv2dPad", "[1 3 8 8]", "[4 3 1 7]")
	mustPanicNaming(t, "too wide", func() { Conv2dPad(nil, New(1, 3, 8, 4), w, nil, 1, 0, 1) }, "ops: Conv2dPad", "[1 3 8 4]", "[4 3 1 7]")
	mustPanicNaming(t, "bias", func() { Conv2dPad(nil, x, w, New(3), 1, 0, 3) }, "ops: Conv2dPad", "[4 3 1 7]")
}

// TestConvBandsMatchSerial: the forward split into bands that each worker takes whole (its
// im2col, then a one-thread GEMM) gives exactly what one thread computes, the GEMMs splitting
// only columns, which leaves every sum's order alone; from one output row per band up, on
// the kernels, strides and pads of the generators and discriminators.
func TestConvBandsMatchSerial(t *testing.T) {
	oldThreads, oldBudget := Threads(), localColsBudget
	defer func() { SetThreads(oldThreads); localColsBudget = oldBudget }()
	for _, cc := range []convCase{
		{n: 2, c: 5, h: 13, w: 11, k: 7, kh: 3, kw: 3, stride: 1, pad: 1, bias: true},
		{n: 1, c: 3, h: 22, w: 18, k: 8, kh: 7, kw: 7, stride: 1, pad: 0, bias: true},
		{n: 2, c: 8, h: 33, w: 16, k: 16, kh: 3, kw: 3, stride: 2, pad: 1, bias: false},
		{n: 1, c: 4, h: 40, w: 30, k: 9, kh: 4, kw: 4, stride: 2, pad: 1, bias: true},
	} {
		r := rand.New(rand.NewPCG(9, 9))
		x, w, b := cc.tensors(r, false)
		g := newConvGeom(cc.c, cc.h, cc.w, cc.kh, cc.kw, cc.stride, cc.pad)
		y := func() []float32 {
			out := make([]float32, cc.n*cc.k*g.oh*g.ow)
			conv2dForward(out, x.Data, w.Data, bData(b), cc.n, cc.k, &g)
			return out
		}
		SetThreads(1)
		want := y()
		for _, rowsPerBand := range []int{1, 2, 3} {
			localColsBudget = rowsPerBand * g.rows() * g.ow
			SetThreads(2)
			if bands := (g.oh + rowsPerBand - 1) / rowsPerBand; bands < 2*Threads() {
				t.Fatalf("%v: %d bands of %d rows do not take the banded route", cc, bands, rowsPerBand)
			}
			if got := y(); !slices.Equal(got, want) {
				t.Errorf("%v, %d output rows per band: the banded forward differs from one thread's", cc, rowsPerBand)
			}
		}
	}
}

// TestDirectKernelsMatchGo checks the direct convolution's assembly kernels against a Go
// kernel of the same tile on scattered offsets, odd depths (the unrolled loop and its tail)
// and both store modes.
func TestDirectKernelsMatchGo(t *testing.T) {
	if directKernel == nil {
		t.Skip("no direct convolution kernel on this CPU (AVX-512): the im2col route serves it")
	}
	r := rand.New(rand.NewPCG(9, 9))
	src := make([]float32, 4096)
	for i := range src {
		src[i] = float32(r.NormFloat64())
	}
	for _, kern := range []*directKern{directKernel, directThin} {
		ref := goDirect(kern.mr, kern.nr)
		for _, kc := range []int{1, 3, 4, 7, 64, 257} {
			a := make([]float32, kc*kern.mr)
			for i := range a {
				a[i] = float32(r.NormFloat64())
			}
			offs := make([]int, kc)
			for p := range offs {
				offs[p] = r.IntN(len(src) - kern.nr)
			}
			ldc := kern.nr + 8
			for acc := range 2 {
				got, want := make([]float32, kern.mr*ldc), make([]float32, kern.mr*ldc)
				for i := range got {
					got[i] = float32(i)
					want[i] = float32(i)
				}
				kern.fn(kc, &a[0], &src[0], &offs[0], &got[0], ldc, acc)
				ref.fn(kc, &a[0], &src[0], &offs[0], &want[0], ldc, acc)
				for i := range got {
					if d := math.Abs(float64(got[i] - want[i])); d > 1e-4*math.Max(1, math.Abs(float64(want[i]))) {
						t.Fatalf("%s: kc %d acc %d: C[%d] = %g, Go kernel %g", kern.name, kc, acc, i, got[i], want[i])
					}
				}
			}
		}
	}
}

// TestDirectRouteMatchesIm2col: on a generator's shapes the direct route gives the im2col
// route's output, with several workers, several depth passes, the thin kernel for few
// outputs, and Go kernels as well.
func TestDirectRouteMatchesIm2col(t *testing.T) {
	wide, thin, oldKC, oldThreads := directKernels()
	defer func() { directKernel, directThin, directKC = wide, thin, oldKC; SetThreads(oldThreads) }()
	r := rand.New(rand.NewPCG(10, 10))
	for _, cc := range []convCase{
		{n: 2, c: 16, h: 10, w: 66, k: 16, kh: 3, kw: 3, stride: 1},
		{n: 1, c: 3, h: 12, w: 262, k: 16, kh: 7, kw: 7, stride: 1, bias: true},
		{n: 1, c: 40, h: 6, w: 50, k: 12, kh: 3, kw: 3, stride: 1, bias: true},
		{n: 2, c: 16, h: 8, w: 134, k: 3, kh: 7, kw: 7, stride: 1, bias: true},
		{n: 1, c: 70, h: 4, w: 40, k: 4, kh: 3, kw: 3, stride: 1},
	} {
		x, w, b := cc.tensors(r, false)
		directKernel = nil
		want := Conv2d(nil, x, w, b, 1, 0).Data
		for _, v := range []struct {
			name        string
			wide, thin  *directKern
			kc, threads int
		}{
			{"asm", wide, thin, oldKC, 2},
			{"asm_kc100", wide, thin, 100, 3},
			{"asm_no_thin", wide, nil, oldKC, 2},
			{"go", goDirect(8, 32), goDirect(4, 64), oldKC, 1},
		} {
			directKernel, directThin, directKC = v.wide, v.thin, v.kc
			SetThreads(v.threads)
			got := Conv2d(nil, x, w, b, 1, 0).Data
			compareRef(t, cc.String()+"_"+v.name, got, toFloat64(want), 1e-5)
		}
	}
}

// TestTransposedPhasesMatchCols: the phase route of ConvTranspose2d (useDirectT) gives the
// GEMM + col2im route's output, for the generators' shapes and odd ones (stride 3, phases
// without taps, channels not a multiple of 8, batches), with several workers.
func TestTransposedPhasesMatchCols(t *testing.T) {
	old, thin, oldKC, oldThreads := directKernels()
	defer func() { directKernel, directThin, directKC = old, thin, oldKC; SetThreads(oldThreads) }()
	directThin = thin
	SetThreads(3)
	r := rand.New(rand.NewPCG(11, 11))
	cases := []convCase{
		{n: 2, c: 16, h: 5, w: 32, k: 8, kh: 3, kw: 3, stride: 2, pad: 1, outPad: 1, bias: true},
		{n: 1, c: 8, h: 4, w: 40, k: 5, kh: 4, kw: 4, stride: 2, pad: 1},
		{n: 2, c: 3, h: 3, w: 33, k: 9, kh: 5, kw: 5, stride: 3, pad: 2, outPad: 2, bias: true},
		{n: 1, c: 4, h: 3, w: 34, k: 3, kh: 2, kw: 3, stride: 2, pad: 0, bias: true},
		{n: 1, c: 70, h: 2, w: 32, k: 16, kh: 3, kw: 3, stride: 2, pad: 1, outPad: 1},
	}
	for _, cc := range cases {
		x, w, b := cc.tensors(r, true)
		oh, ow := (cc.h-1)*cc.stride-2*cc.pad+cc.kh+cc.outPad, (cc.w-1)*cc.stride-2*cc.pad+cc.kw+cc.outPad
		directKernel = old
		if g := newConvGeom(cc.k, oh, ow, cc.kh, cc.kw, cc.stride, cc.pad); !useDirectT(&g) {
			t.Fatalf("%v does not take the phase route", cc)
		}
		got := ConvTranspose2d(nil, x, w, b, cc.stride, cc.pad, cc.outPad).Data
		directKernel = nil
		want := ConvTranspose2d(nil, x, w, b, cc.stride, cc.pad, cc.outPad).Data
		compareRef(t, cc.String(), got, toFloat64(want), 1e-5)
	}
}
