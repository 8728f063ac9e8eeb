package ops

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// AdamConfig holds Adam's hyper-parameters, with torch.optim.Adam's meaning.
type AdamConfig struct {
	// LR is the learning rate of every group that does not set its own. Typical 2e-4 for GANs.
	LR float32
	// Beta1, Beta2 are the decay rates of the first and second moment estimates, in [0, 1).
	// GANs use Beta1 = 0.5: a shorter memory of the gradient's direction keeps the two players
	// from overshooting each other.
	Beta1, Beta2 float32
	// Eps is added to the denominator, after the bias correction (torch's placement).
	Eps float32
	// WeightDecay is an L2 penalty: WeightDecay * param is added to the gradient before the
	// moments (torch.optim.Adam, not the decoupled AdamW). 0 turns it off.
	WeightDecay float32
}

// DefaultAdamConfig is torch.optim.Adam's defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8.
func DefaultAdamConfig() AdamConfig {
	return AdamConfig{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8}
}

// GANAdamConfig is the pix2pix/CycleGAN recipe: lr 2e-4, betas (0.5, 0.999).
func GANAdamConfig() AdamConfig {
	c := DefaultAdamConfig()
	c.LR, c.Beta1 = 2e-4, 0.5
	return c
}

// Validate reports the first hyper-parameter out of range.
func (c AdamConfig) Validate() error {
	switch {
	case !(c.LR >= 0) || math.IsInf(float64(c.LR), 0):
		return fmt.Errorf("ops: adam: learning rate %v: want a finite value >= 0", c.LR)
	case !(c.Beta1 >= 0 && c.Beta1 < 1):
		return fmt.Errorf("ops: adam: beta1 %v: want 0 <= beta1 < 1", c.Beta1)
	case !(c.Beta2 >= 0 && c.Beta2 < 1):
		return fmt.Errorf("ops: adam: beta2 %v: want 0 <= beta2 < 1", c.Beta2)
	case !(c.Eps >= 0):
		return fmt.Errorf("ops: adam: eps %v: want >= 0", c.Eps)
	case !(c.WeightDecay >= 0):
		return fmt.Errorf("ops: adam: weight decay %v: want >= 0", c.WeightDecay)
	}
	return nil
}

// ParamGroup is a set of parameters sharing a learning rate (0: the config's LR).
type ParamGroup struct {
	Params []*Tensor
	LR     float32
}

// Adam is torch.optim.Adam (PyTorch 1.13, amsgrad off): per parameter with a gradient, each Step
//
//	g = grad + weight_decay * p
//	m = beta1 * m + (1 - beta1) * g
//	v = beta2 * v + (1 - beta2) * g * g
//	p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
//
// in float32 rounded as torch's CPU kernels round (see adamJob.Run), with the scalar factors
// computed in float64 from the decimal hyper-parameters as Python would: bit-identical to
// torch 1.13 in the parity test. amsgrad, maximize and per-group weight decay are not offered. Parameters whose Grad is nil are skipped and keep
// their own step count t, as torch skips a parameter whose .grad is None.
type Adam struct {
	cfg    AdamConfig
	groups []adamGroup
	params []adamParam
	byName map[string]int
	steps  int
	job    *adamJob
	b1, b2 float64 // the decimal betas (see decimal)
}

type adamGroup struct {
	lr, baseLR float32
	lr64       float64 // decimal(lr), computed when lr is set: Step must not format floats
	lo, hi     int     // its parameters: params[lo:hi]
}

type adamParam struct {
	p    *Tensor
	name string
	m, v []float32 // exp_avg, exp_avg_sq
	// On a device parameter the moments live on its device instead (m, v are nil).
	dm, dv DeviceMem
	step   int
}

// moment i (0: exp_avg, 1: exp_avg_sq) as a device operand.
func (st *adamParam) moment(i int) Buf {
	if i == 0 {
		return Buf{Mem: st.dm, Shape: st.p.Shape}
	}
	return Buf{Mem: st.dv, Shape: st.p.Shape}
}

// readMoments copies the moments to the host, into m and v grown as needed.
func (st *adamParam) readMoments(m, v []float32) ([]float32, []float32) {
	n := st.p.Numel()
	m, v = append(m[:0], make([]float32, n)...), append(v[:0], make([]float32, n)...)
	if st.dm == nil {
		copy(m, st.m)
		copy(v, st.v)
		return m, v
	}
	st.p.dev.Download(m, st.moment(0))
	st.p.dev.Download(v, st.moment(1))
	return m, v
}

// writeMoments sets the moments from host values (nil: zeros).
func (st *adamParam) writeMoments(m, v []float32) {
	if st.dm == nil {
		if m == nil {
			clear(st.m)
			clear(st.v)
			return
		}
		copy(st.m, m)
		copy(st.v, v)
		return
	}
	d := st.p.dev
	if m == nil {
		d.Zero(st.moment(0))
		d.Zero(st.moment(1))
		return
	}
	d.Upload(st.moment(0), m)
	d.Upload(st.moment(1), v)
}

// NewAdam returns an optimizer over the groups' parameters. Parameter names key the checkpoint
// state, so they must be unique; an unnamed parameter is called "group<g>.<i>". It panics on an
// invalid config or a repeated name (a programming error).
func NewAdam(groups []ParamGroup, cfg AdamConfig) *Adam {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	a := &Adam{cfg: cfg, byName: map[string]int{}, job: new(adamJob), b1: decimal(cfg.Beta1), b2: decimal(cfg.Beta2)}
	for gi, g := range groups {
		lr := g.LR
		if lr == 0 {
			lr = cfg.LR
		}
		ag := adamGroup{lr: lr, baseLR: lr, lr64: decimal(lr), lo: len(a.params)}
		for i, p := range g.Params {
			name := p.Name
			if name == "" {
				name = fmt.Sprintf("group%d.%d", gi, i)
			}
			if _, dup := a.byName[name]; dup {
				panic(fmt.Sprintf("ops: NewAdam: parameter name %q appears twice", name))
			}
			a.byName[name] = len(a.params)
			n := p.Numel()
			if p.dev != nil {
				a.params = append(a.params, adamParam{p: p, name: name, dm: devAlloc(p.dev, n), dv: devAlloc(p.dev, n)})
				continue
			}
			a.params = append(a.params, adamParam{p: p, name: name, m: make([]float32, n), v: make([]float32, n)})
		}
		ag.hi = len(a.params)
		a.groups = append(a.groups, ag)
	}
	return a
}

// decimal returns the float64 a Python user means by a float32 hyper-parameter: the shortest
// decimal that round-trips the float32 (2e-4, 0.999), so (1 - beta2) and the bias corrections
// come out as torch computes them from Python floats.
func decimal(f float32) float64 {
	d, _ := strconv.ParseFloat(strconv.FormatFloat(float64(f), 'g', -1, 32), 64)
	return d
}

// Step updates every parameter that has a gradient.
func (a *Adam) Step() {
	b1, b2 := a.b1, a.b2
	j := a.job
	j.b1, j.b2 = float32(b1), float32(b2)
	j.c1, j.c2 = float32(1-b1), float32(1-b2)
	j.eps, j.wd = a.cfg.Eps, a.cfg.WeightDecay
	for _, g := range a.groups {
		lr := g.lr64
		for i := g.lo; i < g.hi; i++ {
			st := &a.params[i]
			if !st.p.HasGrad() {
				continue
			}
			st.step++
			t := float64(st.step)
			bc1, bc2 := 1-math.Pow(b1, t), 1-math.Pow(b2, t)
			j.negStep = float32(-lr / bc1)
			j.bc2sqrt = float32(math.Sqrt(bc2))
			if (st.dm != nil) != (st.p.dev != nil) {
				panic("ops: Adam.Step: " + st.name + " was moved (MoveTo) after NewAdam; its moments stayed where they were made: move networks before making their optimizer")
			}
			if d := st.p.dev; d != nil {
				d.AdamUpdate(st.p.buf(), st.p.gbuf(), st.moment(0), st.moment(1), AdamArgs{B1: j.b1, B2: j.b2,
					C1: j.c1, C2: j.c2, Eps: j.eps, WeightDecay: j.wd, NegStep: j.negStep, BC2Sqrt: j.bc2sqrt})
				continue
			}
			j.p, j.g, j.m, j.v = st.p.Data, st.p.Grad, st.m, st.v
			if n := len(j.p); n >= adamParallelMin {
				ParallelFor(n, adamGrain, j)
			} else {
				j.Run(0, n)
			}
		}
	}
	j.p, j.g, j.m, j.v = nil, nil, nil, nil
	a.steps++
}

const (
	adamParallelMin = 1 << 15 // below this one core is faster than waking the pool
	adamGrain       = 1 << 13
)

// adamJob is one parameter's update, reused across parameters and steps (no allocation).
type adamJob struct {
	p, g, m, v       []float32
	b1, b2, c1, c2   float32
	eps, wd          float32
	negStep, bc2sqrt float32
}

// Run updates elements [lo, hi) as torch's AVX2 CPU kernels round: the three "x + a*y" updates
// (weight decay, exp_avg, exp_avg_sq) are fused multiply-adds there, so here they are computed in
// float64, where the product of two float32 is exact, and rounded once to float32; the rest is
// float32 op by op. This reproduces torch.optim.Adam bit for bit (checked on 40000 elements).
func (j *adamJob) Run(lo, hi int) {
	p, g, m, v := j.p[lo:hi], j.g[lo:hi], j.m[lo:hi], j.v[lo:hi]
	wd, c1 := float64(j.wd), float64(j.c1)
	for i := range p {
		gi := g[i]
		if wd != 0 {
			gi = float32(wd*float64(p[i]) + float64(gi))
		}
		mi := float32(c1*float64(gi) + float64(m[i]*j.b1))
		vi := float32(float64(float32(j.c2*gi))*float64(gi) + float64(v[i]*j.b2))
		m[i], v[i] = mi, vi
		denom := float32(float32(math.Sqrt(float64(vi)))/j.bc2sqrt) + j.eps
		p[i] += float32(j.negStep*mi) / denom
	}
}

// ZeroGrad sets every parameter's gradient to zero, keeping the buffers (torch 1.13's
// zero_grad(set_to_none=False)).
func (a *Adam) ZeroGrad() {
	for i := range a.params {
		a.params[i].p.ZeroGrad()
	}
}

// SetLR sets every group's learning rate (a schedule with one group).
func (a *Adam) SetLR(lr float32) {
	for i := range a.groups {
		a.groups[i].lr, a.groups[i].lr64 = lr, decimal(lr)
	}
}

// SetLRScale sets every group's learning rate to its initial one times s (torch's LambdaLR).
func (a *Adam) SetLRScale(s float32) {
	for i := range a.groups {
		g := &a.groups[i]
		g.lr64 = decimal(g.baseLR) * decimal(s)
		g.lr = float32(g.lr64)
	}
}

// GroupLR is group i's current learning rate.
func (a *Adam) GroupLR(i int) float32 { return a.groups[i].lr }

// StepCount is the number of Step calls, including those before a SetState (the largest
// per-parameter step count it loaded).
func (a *Adam) StepCount() int { return a.steps }

// State returns a copy of the optimizer state for a checkpoint, keyed like torch's per-parameter
// state: "step/<name>" (one value), "exp_avg/<name>" and "exp_avg_sq/<name>". Parameters never
// stepped have no entries, as in torch.
func (a *Adam) State() map[string][]float32 {
	out := make(map[string][]float32, 3*len(a.params))
	for _, st := range a.params {
		if st.step == 0 {
			continue
		}
		out["step/"+st.name] = []float32{float32(st.step)}
		out["exp_avg/"+st.name], out["exp_avg_sq/"+st.name] = st.readMoments(nil, nil)
	}
	return out
}

// SetState loads what State returned. Every key must name a parameter of this optimizer with
// the right size; a parameter without entries starts fresh. Nothing changes on error.
func (a *Adam) SetState(state map[string][]float32) error {
	steps, err := a.checkState(state)
	if err != nil {
		return err
	}
	a.steps = 0
	for i := range a.params {
		st := &a.params[i]
		st.step = steps[i]
		if st.step == 0 {
			st.writeMoments(nil, nil)
			continue
		}
		st.writeMoments(state["exp_avg/"+st.name], state["exp_avg_sq/"+st.name])
		a.steps = max(a.steps, st.step)
	}
	return nil
}

// CheckState reports the error SetState would return for state, changing nothing: a caller
// loading several optimizers checks them all before setting any.
func (a *Adam) CheckState(state map[string][]float32) error {
	_, err := a.checkState(state)
	return err
}

// checkState validates state and returns each parameter's step count.
func (a *Adam) checkState(state map[string][]float32) ([]int, error) {
	steps := make([]int, len(a.params))
	for key, val := range state {
		kind, name, ok := strings.Cut(key, "/")
		i, known := a.byName[name]
		if !ok || !known {
			return nil, fmt.Errorf("%w: %q names no parameter of this optimizer (was the checkpoint made for another model?)", ErrOptimizerState, key)
		}
		want := a.params[i].p.Numel()
		switch kind {
		case "step":
			if len(val) != 1 || val[0] < 1 || val[0] != float32(int(val[0])) {
				return nil, fmt.Errorf("%w: %q = %v, want one positive whole number", ErrOptimizerState, key, val)
			}
			steps[i] = int(val[0])
			want = 1
		case "exp_avg", "exp_avg_sq":
		default:
			return nil, fmt.Errorf("%w: %q: unknown state %q (want step, exp_avg or exp_avg_sq)", ErrOptimizerState, key, kind)
		}
		if len(val) != want {
			return nil, fmt.Errorf("%w: %q has %d values, the parameter needs %d", ErrOptimizerState, key, len(val), want)
		}
	}
	for i, st := range a.params {
		_, hasM := state["exp_avg/"+st.name]
		_, hasV := state["exp_avg_sq/"+st.name]
		if (steps[i] > 0) != hasM || hasM != hasV {
			return nil, fmt.Errorf("%w: parameter %q has only part of its state (step, exp_avg, exp_avg_sq go together)", ErrOptimizerState, st.name)
		}
	}
	return steps, nil
}

// AdamSnapshot holds an Adam's state for an in-memory rollback; its buffers are reused by
// every SaveTo, so saving before each step allocates nothing once warm.
type AdamSnapshot struct {
	steps     int
	paramStep []int
	m, v      [][]float32
}

// SaveTo copies the optimizer's state (moments and step counts) into s.
func (a *Adam) SaveTo(s *AdamSnapshot) {
	s.steps = a.steps
	s.paramStep = s.paramStep[:0]
	for i := len(s.m); i < len(a.params); i++ {
		s.m, s.v = append(s.m, nil), append(s.v, nil)
	}
	for i, p := range a.params {
		s.paramStep = append(s.paramStep, p.step)
		if p.dm != nil {
			s.m[i], s.v[i] = p.readMoments(s.m[i], s.v[i])
			continue
		}
		s.m[i] = append(s.m[i][:0], p.m...)
		s.v[i] = append(s.v[i][:0], p.v...)
	}
}

// RestoreFrom puts back what SaveTo saved (from this same optimizer).
func (a *Adam) RestoreFrom(s *AdamSnapshot) {
	if len(s.paramStep) != len(a.params) {
		panic("ops: Adam.RestoreFrom: snapshot of another optimizer")
	}
	a.steps = s.steps
	for i := range a.params {
		a.params[i].step = s.paramStep[i]
		a.params[i].writeMoments(s.m[i], s.v[i])
	}
}
