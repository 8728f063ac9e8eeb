package ops

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"wkd/internal/torchref"
)

type haarCase struct {
	shape  []int
	levels int
}

var haarCases = []haarCase{
	{[]int{2, 3, 32, 32}, 1},
	{[]int{2, 3, 32, 32}, 3},
	{[]int{1, 1, 13, 10}, 1},
	{[]int{1, 1, 13, 10}, 2},
	{[]int{1, 1, 13, 10}, 3},
	{[]int{1, 2, 7, 9}, 3},
	{[]int{1, 3, 256, 256}, 3},
}

// TestHaarDWTMatchesTorch compares the forward, the inverse and the gradient of a loss through
// the forward with PyTorch's conv-based reference and its autograd.
func TestHaarDWTMatchesTorch(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	inputs := map[string]torchref.Array{}
	var script strings.Builder
	script.WriteString(torchref.Haar)
	got := map[string][]float32{}
	for ci, c := range haarCases {
		x := randTensor(r, c.shape...)
		x.SetRequiresGrad(true)
		tp := NewTape()
		ll, highs := HaarDWT(tp, x, c.levels)
		inputs[fmt.Sprintf("x%d", ci)] = arr(x)
		got[fmt.Sprintf("ll%d", ci)] = ll.Data
		// Loss: sum_j mean((H_j - T_j)^2) + sum(ll * W), seeded by hand.
		for j, h := range highs {
			tgt := randTensor(r, h.Shape...)
			inputs[fmt.Sprintf("t%d_%d", ci, j)] = arr(tgt)
			got[fmt.Sprintf("h%d_%d", ci, j)] = h.Data
			g := make([]float32, h.Numel())
			for i := range g {
				g[i] = 2 * (h.Data[i] - tgt.Data[i]) / float32(len(g))
			}
			SeedGrad(h, g)
		}
		wl := randTensor(r, ll.Shape...)
		inputs[fmt.Sprintf("w%d", ci)] = arr(wl)
		SeedGrad(ll, wl.Data)
		tp.BackwardFrom()
		got[fmt.Sprintf("dx%d", ci)] = x.Grad
		got[fmt.Sprintf("inv%d", ci)] = HaarIDWT(nil, ll, highs).Data
		fmt.Fprintf(&script, `
x = I['x%[1]d'].requires_grad_()
ll, hs = dwt(x, %[2]d)
ll2, hs2 = dwt_separable(x, %[2]d)
assert (ll - ll2).abs().max() < 1e-6 and all((a - b).abs().max() < 1e-6 for a, b in zip(hs, hs2)), 'separable and 2-D references differ'
O['ll%[1]d'] = ll
for j, h in enumerate(hs):
    O['h%[1]d_%%d' %% j] = h
loss = sum(((h - I['t%[1]d_%%d' %% j]) ** 2).mean() for j, h in enumerate(hs)) + (ll * I['w%[1]d']).sum()
loss.backward()
O['dx%[1]d'] = x.grad
O['inv%[1]d'] = idwt(ll, hs)
`, ci, c.levels)
	}
	want := torchref.Run(t, script.String(), inputs)
	for name, g := range got {
		w := want[name]
		if len(w.Data) != len(g) {
			t.Fatalf("%s: %d values, reference has %d (shape %v)", name, len(g), len(w.Data), w.Shape)
		}
	}
	for ci, c := range haarCases {
		ll, highs := HaarDWT(nil, New(c.shape...), c.levels)
		haarCheckShape(t, fmt.Sprintf("ll%d", ci), ll.Shape, want[fmt.Sprintf("ll%d", ci)].Shape)
		for j, h := range highs {
			haarCheckShape(t, fmt.Sprintf("h%d_%d", ci, j), h.Shape, want[fmt.Sprintf("h%d_%d", ci, j)].Shape)
		}
	}
	torchref.Compare(t, 1e-5, got, want)
}

func haarCheckShape(t *testing.T, name string, got, want []int) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s: shape %v, reference %v", name, got, want)
	}
}

// TestHaarDWTOddByHand pins the conventions on a 3x3 image without PyTorch: band order, signs,
// the 1/2 scale and the zero row and column appended at the bottom and right.
func TestHaarDWTOddByHand(t *testing.T) {
	x := FromData([]float32{
		1, 2, 3,
		4, 5, 6,
		7, 8, 9,
	}, 1, 1, 3, 3)
	ll, highs := HaarDWT(nil, x, 1)
	// blocks: [[1 2][4 5]], [[3 0][6 0]], [[7 8][0 0]], [[9 0][0 0]]
	wantLL := []float32{6, 4.5, 7.5, 4.5}
	wantH := []float32{
		-3, -1.5, 7.5, 4.5, // LH: (a+b-c-d)/2
		-1, 4.5, -0.5, 4.5, // HL: (a-b+c-d)/2
		0, -1.5, -0.5, 4.5, // HH: (a-b-c+d)/2
	}
	if fmt.Sprint(ll.Shape, highs[0].Shape) != "[1 1 2 2] [1 1 3 2 2]" {
		t.Fatalf("shapes %v %v, want [1 1 2 2] [1 1 3 2 2]", ll.Shape, highs[0].Shape)
	}
	if fmt.Sprint(ll.Data) != fmt.Sprint(wantLL) || fmt.Sprint(highs[0].Data) != fmt.Sprint(wantH) {
		t.Errorf("ll %v highs %v\nwant ll %v highs %v", ll.Data, highs[0].Data, wantLL, wantH)
	}
}

func TestHaarIDWTReconstructs(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, shape := range [][]int{{2, 3, 32, 32}, {1, 2, 8, 24}, {1, 1, 2, 2}} {
		for levels := 1; levels <= 3 && 1<<levels <= shape[2]; levels++ {
			x := randTensor(r, shape...)
			ll, highs := HaarDWT(nil, x, levels)
			y := HaarIDWT(nil, ll, highs)
			if e := torchref.RelErr(y.Data, x.Data); e > 1e-6 || !SameShape(x, y) {
				t.Errorf("%v J=%d: IDWT(DWT(x)) relative error %.3g, shape %v", shape, levels, e, y.Shape)
			}
		}
	}
	// Odd sides: the reconstruction carries the padded zeros and is x where x exists.
	x := randTensor(r, 1, 2, 13, 10)
	ll, highs := HaarDWT(nil, x, 3)
	y := HaarIDWT(nil, ll, highs)
	if fmt.Sprint(y.Shape) != "[1 2 14 10]" {
		t.Fatalf("odd reconstruction shape %v, want [1 2 14 10]", y.Shape)
	}
	for p := range 2 {
		for i := range 14 {
			for j := range 10 {
				want := float32(0)
				if i < 13 {
					want = x.Data[(p*13+i)*10+j]
				}
				if d := math.Abs(float64(y.Data[(p*14+i)*10+j] - want)); d > 1e-6 {
					t.Fatalf("odd reconstruction [%d,%d,%d] = %v, want %v", p, i, j, y.Data[(p*14+i)*10+j], want)
				}
			}
		}
	}
}

func TestHaarDWTGradient(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 9))
	for _, shape := range [][]int{{1, 2, 8, 8}, {2, 1, 7, 5}} {
		x := randTensor(r, shape...)
		for j := range 2 {
			gradCheck(t, fmt.Sprintf("HaarDWT %v highs[%d]", shape, j), 1e-2, 1e-3, func(tp *Tape) *Tensor {
				_, hs := HaarDWT(tp, x, 2)
				return hs[j]
			}, x)
		}
		gradCheck(t, fmt.Sprintf("HaarDWT %v ll", shape), 1e-2, 1e-3, func(tp *Tape) *Tensor {
			ll, _ := HaarDWT(tp, x, 2)
			return ll
		}, x)
	}
}

func TestHaarIDWTGradient(t *testing.T) {
	r := rand.New(rand.NewPCG(10, 11))
	// From a (7, 5) image: ll (2, 2), highs[1] (3, 2, 2) whose level rebuilds (4, 4), cropped
	// to (4, 3) to meet highs[0] (3, 4, 3): the dropped column must get no gradient.
	ll, hs := randTensor(r, 1, 2, 2, 2), []*Tensor{randTensor(r, 1, 2, 3, 4, 3), randTensor(r, 1, 2, 3, 2, 2)}
	gradCheck(t, "HaarIDWT", 1e-2, 1e-3, func(tp *Tape) *Tensor {
		return HaarIDWT(tp, ll, hs)
	}, ll, hs[0], hs[1])
}

func haarDot(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

// TestHaarAdjoint checks <DWT x, y> = <x, DWT^T y> with DWT^T from the backward pass, the same
// for the inverse, and that for even sides the adjoint is the inverse (orthonormal Haar).
func TestHaarAdjoint(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 13))
	for _, shape := range [][]int{{2, 3, 16, 16}, {1, 2, 13, 10}} {
		x := randTensor(r, shape...)
		x.SetRequiresGrad(true)
		tp := NewTape()
		ll, highs := HaarDWT(tp, x, 3)
		yl := randTensor(r, ll.Shape...)
		SeedGrad(ll, yl.Data)
		lhs := haarDot(ll.Data, yl.Data)
		ys := make([]*Tensor, len(highs))
		for j, h := range highs {
			ys[j] = randTensor(r, h.Shape...)
			SeedGrad(h, ys[j].Data)
			lhs += haarDot(h.Data, ys[j].Data)
		}
		tp.BackwardFrom()
		rhs := haarDot(x.Data, x.Grad)
		if math.Abs(lhs-rhs) > 1e-5*math.Max(1, math.Abs(lhs)) {
			t.Errorf("%v: <DWT x, y> = %.8g, <x, DWT^T y> = %.8g", shape, lhs, rhs)
		}
		t.Logf("%v: <DWT x, y> = %.8g, <x, DWT^T y> = %.8g", shape, lhs, rhs)
		if shape[2]%8 == 0 && shape[3]%8 == 0 {
			inv := HaarIDWT(nil, yl, ys)
			if e := torchref.RelErr(x.Grad, inv.Data); e > 1e-6 {
				t.Errorf("%v: DWT^T y differs from IDWT(y) by %.3g", shape, e)
			}
		}

		// The inverse: <IDWT c, z> = <c, IDWT^T z>.
		yl.SetRequiresGrad(true)
		for _, y := range ys {
			y.SetRequiresGrad(true)
		}
		tp2 := NewTape()
		out := HaarIDWT(tp2, yl, ys)
		z := randTensor(r, out.Shape...)
		SeedGrad(out, z.Data)
		tp2.BackwardFrom()
		lhs, rhs = haarDot(out.Data, z.Data), haarDot(yl.Data, yl.Grad)
		for _, y := range ys {
			rhs += haarDot(y.Data, y.Grad)
		}
		if math.Abs(lhs-rhs) > 1e-5*math.Max(1, math.Abs(lhs)) {
			t.Errorf("%v: <IDWT c, z> = %.8g, <c, IDWT^T z> = %.8g", shape, lhs, rhs)
		}
	}
}

// TestHaarDWTAllocs: a warm step through HaarDWTAppend and its backward allocates nothing.
func TestHaarDWTAllocs(t *testing.T) {
	r := rand.New(rand.NewPCG(14, 15))
	x := randTensor(r, 1, 3, 64, 64)
	x.SetRequiresGrad(true)
	tp := NewTape()
	var highs []*Tensor
	step := func() {
		tp.Reset()
		var ll *Tensor
		ll, highs = HaarDWTAppend(tp, x, 3, highs)
		y := HaarIDWT(tp, ll, highs)
		tp.Backward(weightedSum(tp, y, x))
	}
	step()
	if a := testing.AllocsPerRun(10, step); a != 0 {
		t.Errorf("warm DWT + IDWT step allocates %v times, want 0", a)
	}
}

// BenchmarkHaarDWT times a 3-level forward and backward on (1, 3, 256, 256) and reports the
// ratio to the same through PyTorch's conv-based transform (the test's reference, which is how
// pytorch_wavelets computes it) with autograd, on as many threads, measured in the same run.
func BenchmarkHaarDWT(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	x := randTensor(r, 1, 3, 256, 256)
	x.SetRequiresGrad(true)
	out := torchref.Run(b, torchref.Haar+`
import time
torch.set_num_threads(int(I['threads'][0]))
x = I['x'].requires_grad_()
def once():
    ll, hs = dwt(x, 3)
    (ll.sum() + sum(h.sum() for h in hs)).backward()
once()
t, k = time.perf_counter(), 50
for _ in range(k):
    once()
O['ms'] = torch.tensor([(time.perf_counter() - t) / k * 1e3])
`, map[string]torchref.Array{"x": arr(x), "threads": torchref.Of([]float32{float32(Threads())}, 1)})
	torchMs := float64(out["ms"].Data[0])
	tp := NewTape()
	var highs []*Tensor
	b.SetBytes(int64(4 * x.Numel()))
	b.ResetTimer()
	iters := 0
	for b.Loop() {
		tp.Reset()
		var ll *Tensor
		ll, highs = HaarDWTAppend(tp, x, 3, highs)
		SeedGrad(ll, ll.Data) // the backward runs in full whatever the seed
		tp.BackwardFrom()
		iters++
	}
	ms := b.Elapsed().Seconds() * 1e3 / float64(iters)
	b.ReportMetric(torchMs, "torch_ms")
	b.ReportMetric(torchMs/ms, "speedup_vs_torch")
}
