package ops

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"wkd/internal/torchref"
)

// adamFixture: three parameters in two groups ("b" is big enough for the parallel path) and
// five steps of gradients; "c" has no gradient in steps 0 and 1 (torch skips it).
type adamFixture struct {
	params []*Tensor
	grads  [5][]*Tensor // grads[s][i], nil where the parameter has no gradient
}

func newAdamFixture(r *rand.Rand) *adamFixture {
	f := &adamFixture{}
	for _, p := range []struct {
		name  string
		shape []int
	}{{"a", []int{3, 4}}, {"b", []int{40000}}, {"c", []int{2, 5}}} {
		t := randTensor(r, p.shape...)
		t.Name = p.name
		t.SetRequiresGrad(true)
		f.params = append(f.params, t)
	}
	for s := range 5 {
		f.grads[s] = make([]*Tensor, 3)
		for i, p := range f.params {
			if p.Name == "c" && s < 2 {
				continue
			}
			g := randTensor(r, p.Shape...)
			// A few tiny gradients, where eps and the bias corrections matter most.
			for k := 0; k < len(g.Data); k += 7 {
				g.Data[k] *= 1e-6
			}
			f.grads[s][i] = g
		}
	}
	return f
}

// load sets the parameters' gradients for step s (nil: none).
func (f *adamFixture) load(s int) {
	for i, p := range f.params {
		if g := f.grads[s][i]; g != nil {
			p.Grad = append(p.Grad[:0], g.Data...)
		} else {
			p.Grad = nil
		}
	}
}

func (f *adamFixture) newAdam() *Adam {
	cfg := GANAdamConfig()
	cfg.WeightDecay = 0.01
	return NewAdam([]ParamGroup{{Params: f.params[:2]}, {Params: f.params[2:], LR: 1e-3}}, cfg)
}

const adamTorch = `
ps = {n: I[n].clone().requires_grad_() for n in ('a', 'b', 'c')}
opt = torch.optim.Adam([{'params': [ps['a'], ps['b']]}, {'params': [ps['c']], 'lr': 1e-3}],
                       lr=2e-4, betas=(0.5, 0.999), eps=1e-8, weight_decay=0.01)
for s in range(5):
    if s == 3:
        for g, lr in zip(opt.param_groups, (2e-4, 1e-3)):
            g['lr'] = lr * 0.5
    for n, p in ps.items():
        k = 'g%d_%s' % (s, n)
        p.grad = I[k].clone() if k in I else None
    opt.step()
    for n, p in ps.items():
        O['%s_%d' % (n, s)] = p.detach().clone()
        O['d%s_%d' % (n, s)] = p - I[n]
for n, p in ps.items():
    O['exp_avg/' + n] = opt.state[p]['exp_avg']
    O['exp_avg_sq/' + n] = opt.state[p]['exp_avg_sq']
    O['step/' + n] = opt.state[p]['step'].reshape(1)
`

func TestAdamMatchesTorch(t *testing.T) {
	f := newAdamFixture(rand.New(rand.NewPCG(31, 32)))
	inputs := map[string]torchref.Array{}
	for i, p := range f.params {
		inputs[p.Name] = arr(p.Clone())
		for s := range 5 {
			if g := f.grads[s][i]; g != nil {
				inputs[fmt.Sprintf("g%d_%s", s, p.Name)] = arr(g)
			}
		}
	}
	want := torchref.Run(t, adamTorch, inputs)

	init := make([][]float32, len(f.params))
	for i, p := range f.params {
		init[i] = slices.Clone(p.Data)
	}
	opt := f.newAdam()
	params, deltas := map[string][]float32{}, map[string][]float32{}
	for s := range 5 {
		if s == 3 {
			opt.SetLRScale(0.5)
		}
		f.load(s)
		opt.Step()
		for i, p := range f.params {
			key := fmt.Sprintf("%s_%d", p.Name, s)
			params[key] = slices.Clone(p.Data)
			d := make([]float32, len(p.Data))
			for k := range d {
				d[k] = p.Data[k] - init[i][k]
			}
			deltas["d"+key] = d
		}
	}
	if opt.StepCount() != 5 || opt.GroupLR(0) != 1e-4 || opt.GroupLR(1) != 5e-4 {
		t.Errorf("StepCount %d, group lrs %v %v; want 5, 1e-4, 5e-4", opt.StepCount(), opt.GroupLR(0), opt.GroupLR(1))
	}
	// The parameters after every step (norm-wise relative error <= 1e-6).
	worst := torchref.Compare(t, 1e-6, params, want)
	t.Logf("parameters after each of 5 steps: worst relative error %.3g", worst)
	// The updates alone, a far stricter view: they are ~1e-3 of the parameters.
	worst = torchref.Compare(t, 1e-5, deltas, want)
	t.Logf("accumulated updates p_t - p_0: worst relative error %.3g", worst)
	worst = torchref.Compare(t, 1e-6, opt.State(), want)
	t.Logf("optimizer state (step, exp_avg, exp_avg_sq): worst relative error %.3g", worst)
	if got := opt.State()["step/c"][0]; got != 3 {
		t.Errorf("step/c = %v, want 3 (no gradient in two of five steps)", got)
	}
}

// TestAdamStateRoundTrip: an optimizer restored from State continues bit for bit like the one
// that kept running.
func TestAdamStateRoundTrip(t *testing.T) {
	f := newAdamFixture(rand.New(rand.NewPCG(33, 34)))
	opt := f.newAdam()
	for s := range 3 {
		f.load(s)
		opt.Step()
	}
	saved := opt.State()
	g := &adamFixture{grads: f.grads}
	for _, p := range f.params {
		q := p.Clone()
		q.SetRequiresGrad(true)
		g.params = append(g.params, q)
	}
	restored := g.newAdam()
	if err := restored.SetState(saved); err != nil {
		t.Fatal(err)
	}
	if restored.StepCount() != 3 {
		t.Errorf("restored StepCount %d, want 3", restored.StepCount())
	}
	for s := 3; s < 5; s++ {
		f.load(s)
		opt.Step()
		g.load(s)
		restored.Step()
	}
	for i, p := range f.params {
		if !slices.Equal(p.Data, g.params[i].Data) {
			t.Errorf("%s differs after resuming from the saved state", p.Name)
		}
	}
	a, b := opt.State(), restored.State()
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			t.Errorf("state %s differs after resuming", k)
		}
	}
	if len(a) != len(b) || len(a) != 9 {
		t.Errorf("state has %d and %d entries, want 9", len(a), len(b))
	}
}

func TestAdamSetStateRejects(t *testing.T) {
	f := newAdamFixture(rand.New(rand.NewPCG(35, 36)))
	opt := f.newAdam()
	f.load(4)
	opt.Step()
	good := opt.State()
	for name, edit := range map[string]func(m map[string][]float32){
		"unknown parameter": func(m map[string][]float32) { m["exp_avg/z"] = []float32{1} },
		"wrong size":        func(m map[string][]float32) { m["exp_avg/a"] = m["exp_avg/a"][:3] },
		"partial":           func(m map[string][]float32) { delete(m, "exp_avg_sq/b") },
		"bad step":          func(m map[string][]float32) { m["step/a"] = []float32{0.5} },
		"unknown kind":      func(m map[string][]float32) { m["momentum/a"] = m["exp_avg/a"] },
	} {
		m := map[string][]float32{}
		for k, v := range good {
			m[k] = slices.Clone(v)
		}
		edit(m)
		err := opt.SetState(m)
		if !errors.Is(err, ErrOptimizerState) {
			t.Errorf("%s: SetState error %v, want ErrOptimizerState", name, err)
		}
	}
	if after := opt.State(); !slices.Equal(after["exp_avg/a"], good["exp_avg/a"]) || opt.StepCount() != 1 {
		t.Error("a rejected SetState changed the optimizer")
	}
}

func TestAdamConfigValidate(t *testing.T) {
	if err := GANAdamConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []AdamConfig{
		{LR: -1, Beta1: 0.5, Beta2: 0.999},
		{LR: 1e-3, Beta1: 1, Beta2: 0.999},
		{LR: 1e-3, Beta1: 0.5, Beta2: float32(math.NaN())},
		{LR: 1e-3, Beta1: 0.5, Beta2: 0.999, Eps: -1},
	} {
		if c.Validate() == nil {
			t.Errorf("%+v: Validate accepted it", c)
		}
	}
}

func TestAdamZeroGradAndSetLR(t *testing.T) {
	f := newAdamFixture(rand.New(rand.NewPCG(37, 38)))
	opt := f.newAdam()
	f.load(4)
	opt.ZeroGrad()
	for _, p := range f.params {
		if p.Grad == nil || slices.ContainsFunc(p.Grad, func(v float32) bool { return v != 0 }) {
			t.Errorf("%s: gradient not zeroed in place", p.Name)
		}
	}
	opt.SetLR(3e-5)
	if opt.GroupLR(0) != 3e-5 || opt.GroupLR(1) != 3e-5 {
		t.Errorf("SetLR: group lrs %v %v, want 3e-5", opt.GroupLR(0), opt.GroupLR(1))
	}
}

func TestAdamStepAllocs(t *testing.T) {
	f := newAdamFixture(rand.New(rand.NewPCG(39, 40)))
	opt := f.newAdam()
	f.load(4)
	opt.Step()
	if a := testing.AllocsPerRun(20, opt.Step); a != 0 {
		t.Errorf("Adam.Step allocates %v times per call, want 0", a)
	}
}

const adamTorchTiming = `
import time
torch.set_num_threads(int(I['threads'][0]))
p = torch.zeros(int(I['n'][0]), requires_grad=True)
p.grad = torch.randn(p.shape)
opt = torch.optim.Adam([p], lr=2e-4, betas=(0.5, 0.999))
for _ in range(2):
    opt.step()
t, k = time.perf_counter(), 10
for _ in range(k):
    opt.step()
O['ms'] = torch.tensor([(time.perf_counter() - t) / k * 1e3])
`

// BenchmarkAdamStep times one step over a ResNet-9 (ngf 64) generator's 11.38 M parameters and
// reports the ratio to torch.optim.Adam's step on as many threads, measured in the same run.
func BenchmarkAdamStep(b *testing.B) {
	const n = 11_380_000
	p := NewParam("w", n)
	opt := NewAdam([]ParamGroup{{Params: []*Tensor{p}}}, GANAdamConfig())
	torchMs := torchref.Run(b, adamTorchTiming, map[string]torchref.Array{
		"n": torchref.Of([]float32{n}, 1), "threads": torchref.Of([]float32{float32(Threads())}, 1),
	})["ms"].Data[0]
	b.SetBytes(7 * 4 * n) // reads p, g, m, v; writes p, m, v
	b.ResetTimer()
	iters := 0
	for b.Loop() {
		opt.Step()
		iters++
	}
	ms := b.Elapsed().Seconds() * 1e3 / float64(iters)
	b.ReportMetric(float64(torchMs), "torch_ms")
	b.ReportMetric(float64(torchMs)/ms, "speedup_vs_torch")
}
