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
	// Planes of 40x48 with a few channels: > ewGrain elements in all, so the parallel path runs.
	x := shifted(r, 3, 2, 2, 4, 40, 48)
	w := randTensor(r, 2, 4, 40, 48)
	gamma, beta := shifted(r, 0.5, 1, 4), randTensor(r, 4)
	got := map[string][]float32{}
	recordOp(got, "in", func(tp *Tape, in []*Tensor) *Tensor {
		return InstanceNorm2d(tp, in[0], nil, nil, 1e-5)
	}, w, x)
	recordOp(got, "inaff", func(tp *Tape, in []*Tensor) *Tensor {
		return InstanceNorm2d(tp, in[0], in[1], in[2], 1e-5)
	}, w, x, gamma, beta)

	// BatchNorm: two training steps (gradients accumulate in gamma and beta), then eval.
	xs := [3]*Tensor{shifted(r, 2, 1, 2, 4, 40, 48), shifted(r, 1, -1, 2, 4, 40, 48), shifted(r, 3, 0, 2, 4, 40, 48)}
	ws := [3]*Tensor{randTensor(r, 2, 4, 40, 48), randTensor(r, 2, 4, 40, 48), randTensor(r, 2, 4, 40, 48)}
	g, b := gamma.Clone(), beta.Clone()
	g.SetRequiresGrad(true)
	b.SetRequiresGrad(true)
	rm, rv := New(4), New(4)
	rv.Fill(1)
	names := [3]string{"1", "2", "3"}
	for i, xi := range xs {
		xi := xi.Clone()
		xi.SetRequiresGrad(true)
		tp := NewTape()
		y := BatchNorm2d(tp, xi, g, b, rm, rv, i < 2, 0.1, 1e-5)
		tp.Backward(weightedSum(tp, y, ws[i]))
		got["bn_y"+names[i]] = append([]float32(nil), y.Data...)
		got["bn_dx"+names[i]] = xi.Grad
		if i == 1 {
			got["bn_rm"] = append([]float32(nil), rm.Data...)
			got["bn_rv"] = append([]float32(nil), rv.Data...)
		}
	}
	got["bn_dgamma"], got["bn_dbeta"] = g.Grad, b.Grad

	want := torchref.Run(t, pyRecord+`
record('in', lambda x: F.instance_norm(x, eps=1e-5), 'w', 'x')
record('inaff', lambda x, g, b: F.instance_norm(x, weight=g, bias=b, eps=1e-5), 'w', 'x', 'gamma', 'beta')
bn = torch.nn.BatchNorm2d(4, eps=1e-5, momentum=0.1)
with torch.no_grad():
    bn.weight.copy_(I['gamma'])
    bn.bias.copy_(I['beta'])
for i in ('1', '2', '3'):
    if i == '3':
        O['bn_rm'] = bn.running_mean.clone()
        O['bn_rv'] = bn.running_var.clone()
        bn.eval()
    x = I['x' + i].clone().requires_grad_(True)
    y = bn(x)
    (y * I['w' + i]).sum().backward()
    O['bn_y' + i] = y
    O['bn_dx' + i] = x.grad
O['bn_dgamma'] = bn.weight.grad
O['bn_dbeta'] = bn.bias.grad
`, map[string]torchref.Array{"x": arr(x), "w": arr(w), "gamma": arr(gamma), "beta": arr(beta),
		"x1": arr(xs[0]), "x2": arr(xs[1]), "x3": arr(xs[2]), "w1": arr(ws[0]), "w2": arr(ws[1]), "w3": arr(ws[2])})
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

func benchNorm(b *testing.B, f func(tp *Tape, x *Tensor) *Tensor) {
	r := rand.New(rand.NewPCG(1, 1))
	x := randTensor(r, 1, 64, 256, 256)
	x.SetRequiresGrad(true)
	tp := NewTape()
	b.SetBytes(int64(4 * x.Numel()))
	for b.Loop() {
		tp.Reset()
		y := f(tp, x)
		SeedGrad(y, x.Data)
		tp.BackwardFrom()
	}
}

// BenchmarkInstanceNormForwardBackward: the CycleGAN generator's first norm at 256x256.
func BenchmarkInstanceNormForwardBackward(b *testing.B) {
	g, be := NewParam("g", 64), NewParam("b", 64)
	g.Fill(1)
	benchNorm(b, func(tp *Tape, x *Tensor) *Tensor { return InstanceNorm2d(tp, x, g, be, 1e-5) })
}

func BenchmarkBatchNormForwardBackward(b *testing.B) {
	g, be := NewParam("g", 64), NewParam("b", 64)
	g.Fill(1)
	rm, rv := New(64), New(64)
	benchNorm(b, func(tp *Tape, x *Tensor) *Tensor { return BatchNorm2d(tp, x, g, be, rm, rv, true, 0.1, 1e-5) })
}
