package ops

import (
	"math"
	"math/rand/v2"
	"testing"

	"wkd/internal/torchref"
)

// shifted returns a random tensor with a per-tensor scale and offset, so that statistics are
// not already near (0, 1).
func shifted(r *rand.Rand, scale, offset float32, shape ...int) *Tensor {
	t := randTensor(r, shape...)
	for i, v := range t.Data {
		t.Data[i] = v*scale + offset
	}
	return t
}

func TestInstanceNormGradient(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 9))
	x := shifted(r, 2, 0.5, 2, 3, 5, 6)
	gamma, beta := shifted(r, 0.5, 1, 3), randTensor(r, 3)
	gradCheck(t, "InstanceNorm2d", 1e-2, 2e-3, func(tp *Tape) *Tensor {
		return InstanceNorm2d(tp, x, nil, nil, 1e-5)
	}, x)
	gradCheck(t, "InstanceNorm2d affine", 1e-2, 2e-3, func(tp *Tape) *Tensor {
		return InstanceNorm2d(tp, x, gamma, beta, 1e-5)
	}, x, gamma, beta)
}

func TestBatchNormGradient(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	x := shifted(r, 2, -0.5, 3, 2, 4, 5)
	gamma, beta := shifted(r, 0.5, 1, 2), randTensor(r, 2)
	rm, rv := FromData([]float32{0.1, -0.2}, 2), FromData([]float32{0.8, 1.5}, 2)
	gradCheck(t, "BatchNorm2d training", 1e-2, 2e-3, func(tp *Tape) *Tensor {
		return BatchNorm2d(tp, x, gamma, beta, nil, nil, true, 0.1, 1e-5)
	}, x, gamma, beta)
	gradCheck(t, "BatchNorm2d training affine=False", 1e-2, 2e-3, func(tp *Tape) *Tensor {
		return BatchNorm2d(tp, x, nil, nil, nil, nil, true, 0.1, 1e-5)
	}, x)
	gradCheck(t, "BatchNorm2d eval", 1e-2, 2e-3, func(tp *Tape) *Tensor {
		return BatchNorm2d(tp, x, gamma, beta, rm, rv, false, 0.1, 1e-5)
	}, x, gamma, beta)
}

func TestNormsMatchPyTorch(t *testing.T) {
	r := rand.New(rand.NewPCG(10, 11))
	// 16 planes of 40x48: at least two ParallelFor chunks for both norms (2*ewGrain elements).
	const c = 8
	x := shifted(r, 3, 2, 2, c, 40, 48)
	w := randTensor(r, 2, c, 40, 48)
	gamma, beta := shifted(r, 0.5, 1, c), randTensor(r, c)
	got := map[string][]float32{}
	recordOp(got, "in", func(tp *Tape, in []*Tensor) *Tensor {
		return InstanceNorm2d(tp, in[0], nil, nil, 1e-5)
	}, w, x)
	recordOp(got, "inaff", func(tp *Tape, in []*Tensor) *Tensor {
		return InstanceNorm2d(tp, in[0], in[1], in[2], 1e-5)
	}, w, x, gamma, beta)

	inputs := map[string]torchref.Array{"x": arr(x), "w": arr(w), "gamma": arr(gamma), "beta": arr(beta)}
	// BatchNorm: two training steps (gradients accumulate in gamma and beta), then eval; once
	// large (parallel) and once with 20 values per channel, where the unbiased running variance
	// (factor 20/19) differs visibly from the biased one.
	for _, bn := range []struct {
		name string
		h, w int
	}{{"bn", 40, 48}, {"bns", 2, 5}} {
		g, b := gamma.Clone(), beta.Clone()
		g.SetRequiresGrad(true)
		b.SetRequiresGrad(true)
		rm, rv := New(c), New(c)
		rv.Fill(1)
		for i, step := range []string{"1", "2", "3"} {
			xi, wi := shifted(r, float32(2-i/2), float32(1-i), 2, c, bn.h, bn.w), randTensor(r, 2, c, bn.h, bn.w)
			inputs[bn.name+"_x"+step], inputs[bn.name+"_w"+step] = arr(xi), arr(wi)
			xi.SetRequiresGrad(true)
			tp := NewTape()
			y := BatchNorm2d(tp, xi, g, b, rm, rv, i < 2, 0.1, 1e-5)
			tp.Backward(weightedSum(tp, y, wi))
			got[bn.name+"_y"+step] = append([]float32(nil), y.Data...)
			got[bn.name+"_dx"+step] = xi.Grad
			if i == 1 {
				got[bn.name+"_rm"] = append([]float32(nil), rm.Data...)
				got[bn.name+"_rv"] = append([]float32(nil), rv.Data...)
			}
		}
		got[bn.name+"_dgamma"], got[bn.name+"_dbeta"] = g.Grad, b.Grad
	}

	want := torchref.Run(t, pyRecord+`
record('in', lambda x: F.instance_norm(x, eps=1e-5), 'w', 'x')
record('inaff', lambda x, g, b: F.instance_norm(x, weight=g, bias=b, eps=1e-5), 'w', 'x', 'gamma', 'beta')
for name in ('bn', 'bns'):
    bn = torch.nn.BatchNorm2d(8, eps=1e-5, momentum=0.1)
    with torch.no_grad():
        bn.weight.copy_(I['gamma'])
        bn.bias.copy_(I['beta'])
    for i in ('1', '2', '3'):
        if i == '3':
            O[name + '_rm'] = bn.running_mean.clone()
            O[name + '_rv'] = bn.running_var.clone()
            bn.eval()
        x = I[name + '_x' + i].clone().requires_grad_(True)
        y = bn(x)
        (y * I[name + '_w' + i]).sum().backward()
        O[name + '_y' + i] = y
        O[name + '_dx' + i] = x.grad
    O[name + '_dgamma'] = bn.weight.grad
    O[name + '_dbeta'] = bn.bias.grad
`, inputs)
	torchref.Compare(t, 1e-4, got, want)
}

// TestBatchNormRunningStats checks the update against the formula on a case small enough to
// work by hand: one channel, values 1..4, momentum 0.1.
func TestBatchNormRunningStats(t *testing.T) {
	x := FromData([]float32{1, 2, 3, 4}, 2, 1, 1, 2)
	rm, rv := FromData([]float32{0}, 1), FromData([]float32{1}, 1)
	y := BatchNorm2d(nil, x, nil, nil, rm, rv, true, 0.1, 0)
	// mean 2.5; biased var 1.25 normalizes; unbiased 5/3 goes to the running variance.
	if math.Abs(float64(rm.Data[0])-0.25) > 1e-6 || math.Abs(float64(rv.Data[0])-(0.9+0.1*5.0/3)) > 1e-6 {
		t.Errorf("running mean, var = %v, %v; want 0.25, %v", rm.Data[0], rv.Data[0], 0.9+0.1*5.0/3)
	}
	if want := float32(-1.5 / math.Sqrt(1.25)); math.Abs(float64(y.Data[0]-want)) > 1e-6 {
		t.Errorf("y[0] = %v, want %v", y.Data[0], want)
	}
	// Eval normalizes with the running statistics and leaves them alone.
	y = BatchNorm2d(nil, x, nil, nil, rm, rv, false, 0.1, 0)
	if want := float32((1 - 0.25) / math.Sqrt(0.9+0.1*5.0/3)); math.Abs(float64(y.Data[0]-want)) > 1e-6 || rm.Data[0] != 0.25 {
		t.Errorf("eval y[0] = %v (want %v), running mean %v (want 0.25)", y.Data[0], want, rm.Data[0])
	}
}

// TestNormLargeMean: a mean 1e4 times the spread must not cancel the variance.
func TestNormLargeMean(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 13))
	x := shifted(r, 1, 1e4, 1, 1, 32, 32)
	y := InstanceNorm2d(nil, x, nil, nil, 1e-5)
	var s, q float64
	for _, v := range y.Data {
		s += float64(v)
		q += float64(v) * float64(v)
	}
	n := float64(y.Numel())
	if mean, variance := s/n, q/n-(s/n)*(s/n); math.Abs(mean) > 1e-2 || math.Abs(variance-1) > 1e-2 {
		t.Errorf("normalized mean %.3g, variance %.3g; want 0, 1", mean, variance)
	}
}

func TestNormShapePanics(t *testing.T) {
	x := New(2, 3, 4, 4)
	for name, f := range map[string]func(){
		"gamma of 2 channels": func() { InstanceNorm2d(nil, x, New(2), New(2), 1e-5) },
		"gamma without beta":  func() { BatchNorm2d(nil, x, New(3), nil, nil, nil, true, 0.1, 1e-5) },
		"one value per channel": func() {
			BatchNorm2d(nil, New(1, 3, 1, 1), nil, nil, nil, nil, true, 0.1, 1e-5)
		},
		"running stats of 4": func() { BatchNorm2d(nil, x, nil, nil, New(4), New(4), false, 0.1, 1e-5) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

// torchOpTiming times forward+backward of the ops of BenchmarkOpsVsTorch in PyTorch on as
// many threads, from the same inputs.
const torchOpTiming = `
import time
torch.set_num_threads(int(I['threads'][0]))
x = I['x'].clone().requires_grad_(True)
y, gy = I['y'], I['gy']
g = torch.ones(64, requires_grad=True)
b = torch.zeros(64, requires_grad=True)
bn = torch.nn.BatchNorm2d(64)
ops = {
    'InstanceNorm2d': lambda: F.instance_norm(x, weight=g, bias=b, eps=1e-5).backward(gy),
    'BatchNorm2d': lambda: bn(x).backward(gy),
    'LeakyReLU': lambda: F.leaky_relu(x, 0.2).backward(gy),
    'ReLU': lambda: F.relu(x).backward(gy),
    'Tanh': lambda: torch.tanh(x).backward(gy),
    'Add': lambda: (x + y).backward(gy),
    'L1Loss': lambda: F.l1_loss(x, y).backward(),
    'MSELoss': lambda: F.mse_loss(x, y).backward(),
}
for name, f in ops.items():
    for _ in range(2):
        f()
    t, k = time.perf_counter(), 5
    for _ in range(k):
        f()
    O[name] = torch.tensor([(time.perf_counter() - t) / k * 1e3])
`

// BenchmarkOpsVsTorch times forward+backward of this file's and its siblings' hot ops on one
// 64-channel 256x256 activation (the first block of a ResNet generator) and reports the ratio
// to PyTorch on as many threads, measured in the same run.
func BenchmarkOpsVsTorch(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	x, y, gy := randTensor(r, 1, 64, 256, 256), randTensor(r, 1, 64, 256, 256), randTensor(r, 1, 64, 256, 256)
	x.SetRequiresGrad(true)
	torchMs := torchref.Run(b, pyRecord+torchOpTiming, map[string]torchref.Array{
		"x": arr(x), "y": arr(y), "gy": arr(gy), "threads": torchref.Of([]float32{float32(Threads())}, 1),
	})
	g, be := NewParam("g", 64), NewParam("b", 64)
	g.Fill(1)
	rm, rv := New(64), New(64)
	rv.Fill(1)
	ops := []struct {
		name string
		f    func(tp *Tape) *Tensor
	}{
		{"InstanceNorm2d", func(tp *Tape) *Tensor { return InstanceNorm2d(tp, x, g, be, 1e-5) }},
		{"BatchNorm2d", func(tp *Tape) *Tensor { return BatchNorm2d(tp, x, g, be, rm, rv, true, 0.1, 1e-5) }},
		{"LeakyReLU", func(tp *Tape) *Tensor { return LeakyReLU(tp, x, 0.2) }},
		{"ReLU", func(tp *Tape) *Tensor { return ReLU(tp, x) }},
		{"Tanh", func(tp *Tape) *Tensor { return Tanh(tp, x) }},
		{"Add", func(tp *Tape) *Tensor { return Add(tp, x, y) }},
		{"L1Loss", func(tp *Tape) *Tensor { return L1Loss(tp, x, y) }},
		{"MSELoss", func(tp *Tape) *Tensor { return MSELoss(tp, x, y) }},
	}
	for _, op := range ops {
		b.Run(op.name, func(b *testing.B) {
			tp := NewTape()
			iters := 0
			for b.Loop() {
				tp.Reset()
				out := op.f(tp)
				if out.Numel() == 1 {
					tp.Backward(out)
				} else {
					SeedGrad(out, gy.Data)
					tp.BackwardFrom()
				}
				iters++
			}
			ms := b.Elapsed().Seconds() * 1e3 / float64(iters)
			tms := float64(torchMs[op.name].Data[0])
			b.ReportMetric(tms, "torch_ms")
			b.ReportMetric(tms/ms, "speedup_vs_torch")
		})
	}
}

// TestNormVectorLoopsMatchGo: the vector loops of the norms' two passes give the Go loops'
// results on lengths with and without a tail of fewer than 16 values, with and without ReLU.
func TestNormVectorLoopsMatchGo(t *testing.T) {
	if !hasNormVec {
		t.Skip("no vector loops on this CPU (AVX-512): the Go loops serve")
	}
	defer func() { hasNormVec = true }()
	r := rand.New(rand.NewPCG(12, 12))
	for _, n := range []int{5, 16, 47, 4096} {
		x := make([]float32, n)
		for i := range x {
			x[i] = 3 + float32(r.NormFloat64())
		}
		for _, relu := range []bool{false, true} {
			k := normKernel{relu: relu}
			var vec, ref moments
			got, want := make([]float32, n), make([]float32, n)
			hasNormVec = true
			vec.add(x)
			gm, gv := vec.meanVar()
			k.normalize(got, x, 0, gm, 1/math.Sqrt(gv+1e-5))
			hasNormVec = false
			ref.add(x)
			wm, wv := ref.meanVar()
			k.normalize(want, x, 0, wm, 1/math.Sqrt(wv+1e-5))
			if math.Abs(gm-wm) > 1e-12 || math.Abs(gv-wv) > 1e-9 {
				t.Errorf("n %d: vector moments mean %v var %v, Go %v %v", n, gm, gv, wm, wv)
			}
			for i := range got {
				if math.Abs(float64(got[i]-want[i])) > 1e-6 {
					t.Fatalf("n %d relu %v: y[%d] = %v, Go loop %v", n, relu, i, got[i], want[i])
				}
			}
		}
	}
}
