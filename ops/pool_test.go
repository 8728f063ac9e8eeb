package ops

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"wkd/internal/torchref"
)

// spreadTensor holds distinct values 0.05 apart in random order, so a finite-difference step
// of 1e-2 never changes which element of a window is the maximum.
func spreadTensor(r *rand.Rand, shape ...int) *Tensor {
	t := New(shape...)
	for i, p := range r.Perm(len(t.Data)) {
		t.Data[i] = 0.05 * float32(p-len(t.Data)/2)
	}
	return t
}

// poolGeoms are the window configurations of the gradient checks: Inception-v3's two (3
// stride 2 unpadded, 3 stride 1 padded) and the other stride/pad combinations.
var poolGeoms = []struct{ k, stride, pad int }{{3, 2, 0}, {3, 1, 1}, {3, 2, 1}, {3, 1, 0}, {2, 2, 0}, {2, 1, 1}}

var poolShapes = [][]int{{2, 3, 7, 9}, {1, 2, 8, 8}, {2, 1, 5, 4}}

func TestMaxPool2dGradient(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 1))
	for _, pg := range poolGeoms {
		for _, shape := range poolShapes {
			x := spreadTensor(r, shape...)
			gradCheck(t, fmt.Sprintf("MaxPool2d %v k%d s%d p%d", shape, pg.k, pg.stride, pg.pad), 1e-2, 1e-3,
				func(tp *Tape) *Tensor { return MaxPool2d(tp, x, pg.k, pg.stride, pg.pad) }, x)
		}
	}
}

func TestAvgPool2dGradient(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 2))
	for _, include := range []bool{false, true} {
		for _, pg := range poolGeoms {
			for _, shape := range poolShapes {
				x := randTensor(r, shape...)
				gradCheck(t, fmt.Sprintf("AvgPool2d %v k%d s%d p%d include %v", shape, pg.k, pg.stride, pg.pad, include), 1e-2, 1e-3,
					func(tp *Tape) *Tensor { return AvgPool2d(tp, x, pg.k, pg.stride, pg.pad, include) }, x)
			}
		}
	}
}

func TestGlobalAvgPool2dGradient(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 3))
	for _, shape := range append(poolShapes, []int{2, 3, 1, 1}) {
		x := randTensor(r, shape...)
		gradCheck(t, fmt.Sprintf("GlobalAvgPool2d %v", shape), 1e-2, 1e-3,
			func(tp *Tape) *Tensor { return GlobalAvgPool2d(tp, x) }, x)
	}
}

// TestMaxPool2dTiesGoToTheFirst: of equal maxima, the first in row-major window order gets
// the gradient; a window holding only -inf (and padding) routes to its first element inside
// the image, as PyTorch's CPU kernel does.
func TestMaxPool2dTiesGoToTheFirst(t *testing.T) {
	inf := float32(math.Inf(-1))
	x := FromData([]float32{
		1, 2, 2,
		2, 0, 2,
		inf, inf, 1,
	}, 1, 1, 3, 3)
	x.SetRequiresGrad(true)
	tp := NewTape()
	y := MaxPool2d(tp, x, 2, 1, 1)
	// Windows of output (i, j) cover rows i-1..i and columns j-1..j.
	wantY := []float32{
		1, 2, 2, 2,
		2, 2, 2, 2,
		2, 2, 2, 2,
		inf, inf, 1, 1,
	}
	if fmt.Sprint(y.Data) != fmt.Sprint(wantY) {
		t.Fatalf("MaxPool2d = %v, want %v", y.Data, wantY)
	}
	gy := make([]float32, 16)
	for i := range gy {
		gy[i] = float32(int(1) << i)
	}
	SeedGrad(y, gy)
	tp.BackwardFrom()
	// Each output's bit lands on its window's first maximum.
	var want [9]float32
	for i, at := range []int{0, 1, 1, 2, 3, 1, 1, 2, 3, 3, 5, 5, 6, 6, 8, 8} {
		want[at] += gy[i]
	}
	if fmt.Sprint(x.Grad) != fmt.Sprint(want[:]) {
		t.Errorf("MaxPool2d gradient = %v, want %v", x.Grad, want)
	}
}

func TestAvgPool2dValues(t *testing.T) {
	x := FromData([]float32{
		1, 2, 3,
		4, 5, 6,
	}, 1, 1, 2, 3)
	// k 3, stride 1, pad 1: the corner window holds 1, 2, 4, 5 among 9 positions.
	for _, tc := range []struct {
		include bool
		want    []float32
	}{
		{false, []float32{3, 3.5, 4, 3, 3.5, 4}},
		{true, []float32{12.0 / 9, 21.0 / 9, 16.0 / 9, 12.0 / 9, 21.0 / 9, 16.0 / 9}},
	} {
		y := AvgPool2d(nil, x, 3, 1, 1, tc.include)
		for i, v := range tc.want {
			if math.Abs(float64(y.Data[i]-v)) > 1e-6 {
				t.Errorf("AvgPool2d include %v = %v, want %v", tc.include, y.Data, tc.want)
				break
			}
		}
	}
}

// TestPoolTorchParity compares forward and input gradient with torch.nn.functional on every
// pooling configuration, odd sizes included. The output gradients are small integers, so
// max pooling's routed sums are exact and must match exactly, on ties too (inputs drawn from
// {-1, 0, 1}); averages round differently and get 1e-6.
func TestPoolTorchParity(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 4))
	type pcase struct {
		name           string
		op             string // max, avg (count_include_pad False), avgpad (True), global
		k, stride, pad int
		shape          []int
		ties           bool
	}
	cases := []pcase{
		{"max_k3s2p0", "max", 3, 2, 0, []int{2, 3, 9, 11}, false},
		{"max_k3s2p0_even", "max", 3, 2, 0, []int{1, 4, 16, 16}, false},
		{"max_k3s1p1", "max", 3, 1, 1, []int{2, 3, 7, 8}, false},
		{"max_k3s1p1_ties", "max", 3, 1, 1, []int{2, 2, 6, 7}, true},
		{"max_k3s2p0_ties", "max", 3, 2, 0, []int{1, 3, 9, 8}, true},
		{"max_k3s2p1_ties", "max", 3, 2, 1, []int{1, 3, 9, 8}, true},
		{"avg_k3s1p1", "avg", 3, 1, 1, []int{2, 3, 7, 8}, false},
		{"avgpad_k3s1p1", "avgpad", 3, 1, 1, []int{2, 3, 7, 8}, false},
		{"avg_k3s2p1", "avg", 3, 2, 1, []int{2, 3, 9, 10}, false},
		{"avgpad_k3s2p1", "avgpad", 3, 2, 1, []int{2, 3, 9, 10}, false},
		{"avg_k3s2p0", "avg", 3, 2, 0, []int{1, 2, 9, 11}, false},
		{"global", "global", 0, 0, 0, []int{2, 5, 8, 8}, false},
		{"global_odd", "global", 0, 0, 0, []int{1, 3, 7, 5}, false},
		{"global_1x1", "global", 0, 0, 0, []int{2, 3, 1, 1}, false},
	}
	inputs := map[string]torchref.Array{}
	exact, approx := map[string][]float32{}, map[string][]float32{}
	var script strings.Builder
	script.WriteString("import torch.nn.functional as F\nfor ps, op, k, s, p in [")
	for _, pc := range cases {
		x := randTensor(r, pc.shape...)
		if pc.ties {
			for i := range x.Data {
				x.Data[i] = float32(r.IntN(3) - 1)
			}
		}
		x.SetRequiresGrad(true)
		tp := NewTape()
		var y *Tensor
		switch pc.op {
		case "max":
			y = MaxPool2d(tp, x, pc.k, pc.stride, pc.pad)
		case "avg", "avgpad":
			y = AvgPool2d(tp, x, pc.k, pc.stride, pc.pad, pc.op == "avgpad")
		default:
			y = GlobalAvgPool2d(tp, x)
		}
		gy := New(y.Shape...)
		for i := range gy.Data {
			gy.Data[i] = float32(r.IntN(17) - 8)
		}
		SeedGrad(y, gy.Data)
		tp.BackwardFrom()
		p := pc.name + "_"
		inputs[p+"x"], inputs[p+"gy"] = arr(x), arr(gy)
		got := approx
		if pc.op == "max" {
			got = exact
		}
		got[p+"y"], got[p+"dx"] = y.Data, x.Grad
		fmt.Fprintf(&script, "(%q, %q, %d, %d, %d), ", p, pc.op, pc.k, pc.stride, pc.pad)
	}
	script.WriteString(`]:
    x = I[ps+'x'].requires_grad_()
    if op == 'max': y = F.max_pool2d(x, k, s, p)
    elif op == 'avg': y = F.avg_pool2d(x, k, s, p, count_include_pad=False)
    elif op == 'avgpad': y = F.avg_pool2d(x, k, s, p, count_include_pad=True)
    else: y = F.adaptive_avg_pool2d(x, (1, 1))
    y.backward(I[ps+'gy'])
    O[ps+'y'] = y; O[ps+'dx'] = x.grad
`)
	want := torchref.Run(t, script.String(), inputs)
	t.Run("max", func(t *testing.T) { torchref.Compare(t, 0, exact, want) })
	t.Run("avg", func(t *testing.T) { torchref.Compare(t, 1e-6, approx, want) })
}

// checkAccumulates runs forward and backward of f twice and checks that x's gradient doubled:
// the package's += rule.
func checkAccumulates(t *testing.T, name string, x *Tensor, f func(tp *Tape) *Tensor) {
	t.Helper()
	x.SetRequiresGrad(true)
	x.ZeroGrad()
	var wt *Tensor
	run := func() {
		tp := NewTape()
		y := f(tp)
		if wt == nil {
			wt = randTensor(rand.New(rand.NewPCG(1, 1)), y.Numel())
		}
		tp.Backward(weightedSum(tp, y, wt))
	}
	run()
	once := append([]float32(nil), x.Grad...)
	run()
	// An element that collects several contributions sums them in another order the second
	// time, so the comparison allows rounding.
	var maxDiff, maxOnce float64
	for i, g := range once {
		maxDiff = math.Max(maxDiff, math.Abs(float64(x.Grad[i])-2*float64(g)))
		maxOnce = math.Max(maxOnce, math.Abs(float64(g)))
	}
	if maxOnce == 0 || maxDiff > 1e-6*maxOnce {
		t.Errorf("%s: after two backward passes the gradient differs from twice one pass by %.3g (max %.3g)", name, maxDiff, maxOnce)
	}
}

func TestPoolGradientsAccumulate(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 5))
	x := randTensor(r, 2, 3, 7, 8)
	checkAccumulates(t, "MaxPool2d", x, func(tp *Tape) *Tensor { return MaxPool2d(tp, x, 3, 1, 1) })
	checkAccumulates(t, "AvgPool2d", x, func(tp *Tape) *Tensor { return AvgPool2d(tp, x, 3, 2, 1, false) })
	checkAccumulates(t, "GlobalAvgPool2d", x, func(tp *Tape) *Tensor { return GlobalAvgPool2d(tp, x) })
}

// assertNoAllocs checks that a warm forward of f on a NoGrad tape, and a warm recorded forward
// and backward, allocate nothing. x is large enough for the kernels to go parallel.
func assertNoAllocs(t *testing.T, name string, x *Tensor, f func(tp *Tape) *Tensor) {
	t.Helper()
	x.SetRequiresGrad(true)
	tp := NewTape()
	tp.SetNoGrad(true)
	forward := func() {
		tp.Reset()
		f(tp)
	}
	forward()
	if a := testing.AllocsPerRun(10, forward); a != 0 {
		t.Errorf("%s: warm no-grad forward allocates %v times, want 0", name, a)
	}
	rec := NewTape()
	var wt *Tensor
	step := func() {
		rec.Reset()
		y := f(rec)
		if wt == nil {
			wt = New(y.Numel())
		}
		rec.Backward(weightedSum(rec, y, wt))
	}
	step()
	if a := testing.AllocsPerRun(10, step); a != 0 {
		t.Errorf("%s: warm forward and backward allocate %v times, want 0", name, a)
	}
}

func TestPoolAllocatesNothing(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 6))
	x := randTensor(r, 2, 16, 35, 35)
	assertNoAllocs(t, "MaxPool2d", x, func(tp *Tape) *Tensor { return MaxPool2d(tp, x, 3, 2, 0) })
	assertNoAllocs(t, "AvgPool2d", x, func(tp *Tape) *Tensor { return AvgPool2d(tp, x, 3, 1, 1, false) })
	assertNoAllocs(t, "GlobalAvgPool2d", x, func(tp *Tape) *Tensor { return GlobalAvgPool2d(tp, x) })
}

// mustPanicNaming runs f and fails unless it panics with a message holding every one of want.
func mustPanicNaming(t *testing.T, name string, f func(), want ...string) {
	t.Helper()
	defer func() {
		t.Helper()
		msg := fmt.Sprint(recover())
		for _, w := range want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: panic %q, want one naming %q", name, msg, w)
			}
		}
	}()
	f()
}

func TestPoolRejectsBadArguments(t *testing.T) {
	x := New(1, 3, 8, 8)
	for name, f := range map[string]func(){
		"max pad > k/2": func() { MaxPool2d(nil, x, 3, 1, 2) },
		"max kernel":    func() { MaxPool2d(nil, x, 9, 1, 0) },
		"max stride":    func() { MaxPool2d(nil, x, 3, 0, 0) },
		"avg pad > k/2": func() { AvgPool2d(nil, x, 2, 2, 2, false) },
		"avg kernel":    func() { AvgPool2d(nil, x, 0, 1, 0, true) },
	} {
		op := strings.Fields(name)[0]
		mustPanicNaming(t, name, f, map[string]string{"max": "ops: MaxPool2d", "avg": "ops: AvgPool2d"}[op], "[1 3 8 8]")
	}
	mustPanicNaming(t, "global empty", func() { GlobalAvgPool2d(nil, New(1, 3, 0, 4)) }, "ops: GlobalAvgPool2d", "[1 3 0 4]")
	mustPanicNaming(t, "global 3-D", func() { GlobalAvgPool2d(nil, New(3, 4, 4)) }, "ops: ", "[3 4 4]")
}

// nowhere is a Device whose only working method is Name: enough for the ops that must refuse
// device inputs before touching their memory.
type nowhere struct{ Device }

func (nowhere) Name() string { return "nowhere" }

func TestHostOnlyOpsRefuseDeviceInputs(t *testing.T) {
	onDevice := func(shape ...int) *Tensor { return &Tensor{Shape: shape, dev: nowhere{}} }
	x := onDevice(1, 3, 8, 8)
	for name, f := range map[string]func(){
		"MaxPool2d":       func() { MaxPool2d(nil, x, 3, 2, 0) },
		"AvgPool2d":       func() { AvgPool2d(nil, x, 3, 1, 1, true) },
		"GlobalAvgPool2d": func() { GlobalAvgPool2d(nil, x) },
		"ResizeBilinear":  func() { ResizeBilinear(nil, x, 4, 4) },
	} {
		mustPanicNaming(t, name, f, "ops: "+name, "nowhere", "host")
	}
	w := onDevice(4, 3, 1, 7)
	mustPanicNaming(t, "Conv2dPad", func() { Conv2dPad(nil, x, w, nil, 1, 0, 3) }, "ops: Conv2dPad", "nowhere", "(0, 3)")
}
