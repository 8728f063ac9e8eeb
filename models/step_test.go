package models

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"wkd/ops"
)

// ganStep is one training step as bench-engine times it: G forward, D on the fake,
// LSGAN + 100 * L1, backward, Adam; then D on real and detached fake, backward, Adam.
type ganStep struct {
	g, d       Module
	optG, optD *ops.Adam
	x, y       *ops.Tensor
	tp         *ops.Tape
}

func newGANStep(t testing.TB, ngf, size int) *ganStep {
	rng := ops.NewRNG(1)
	build := func(s Spec) Module {
		m, err := Build(s)
		if err != nil {
			t.Fatal(err)
		}
		Init(m, rng)
		return m
	}
	s := &ganStep{
		g:  build(Spec{Kind: ResNet9Blocks, InputNC: 3, OutputNC: 3, NGF: ngf, Norm: Instance}),
		d:  build(Spec{Kind: PatchGAN, InputNC: 3, NDF: 64, Norm: Instance}),
		x:  ops.New(1, 3, size, size),
		y:  ops.New(1, 3, size, size),
		tp: ops.NewTape(),
	}
	cfg := ops.AdamConfig{LR: 2e-4, Beta1: 0.5, Beta2: 0.999, Eps: 1e-8}
	s.optG = ops.NewAdam([]ops.ParamGroup{{Params: s.g.Params()}}, cfg)
	s.optD = ops.NewAdam([]ops.ParamGroup{{Params: s.d.Params()}}, cfg)
	for i := range s.x.Data {
		s.x.Data[i], s.y.Data[i] = rng.Float32()*2-1, rng.Float32()*2-1
	}
	return s
}

func (s *ganStep) run() {
	tp := s.tp
	tp.Reset()
	fake := s.g.Forward(tp, s.x, true)
	s.optG.ZeroGrad()
	lossG := ops.Add(tp, ops.MSEConst(tp, s.d.Forward(tp, fake, true), 1), ops.Scale(tp, ops.L1Loss(tp, fake, s.y), 100))
	tp.Backward(lossG)
	s.optG.Step()
	s.optD.ZeroGrad()
	real := ops.MSEConst(tp, s.d.Forward(tp, s.y, true), 1)
	lossD := ops.Scale(tp, ops.Add(tp, real, ops.MSEConst(tp, s.d.Forward(tp, tp.Detach(fake), true), 0)), 0.5)
	tp.Backward(lossD)
	s.optD.Step()
}

// BenchmarkTrainStep is the steady-state GAN step of bench-engine (ResNet-9 ngf 16 with a
// 70x70 PatchGAN at 128x128): its allocs/op shows that a warm step allocates (nearly) nothing.
func BenchmarkTrainStep(b *testing.B) {
	s := newGANStep(b, 16, 128)
	s.run()
	s.run()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		s.run()
	}
}

func TestTrainStepAllocatesNearlyNothing(t *testing.T) {
	s := newGANStep(t, 4, 32)
	s.run()
	s.run()
	allocs := testing.AllocsPerRun(5, s.run)
	t.Logf("allocations per warm training step: %v", allocs)
	if allocs > 16 {
		t.Errorf("a warm training step allocates %v times, want (nearly) none", allocs)
	}
}

// rssBytes reads the resident set size from /proc/self/statm.
func rssBytes(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Fatalf("cannot read RSS: %v", err)
	}
	f := strings.Fields(string(b))
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

func TestRSSFlatOver200Steps(t *testing.T) {
	s := newGANStep(t, 4, 32)
	for range 20 {
		s.run()
	}
	runtime.GC()
	before := rssBytes(t)
	for range 200 {
		s.run()
	}
	runtime.GC()
	after := rssBytes(t)
	t.Logf("RSS after 20 warm-up steps %.1f MiB, after 200 more %.1f MiB", float64(before)/(1<<20), float64(after)/(1<<20))
	if after-before > 8<<20 {
		t.Errorf("RSS grew by %.1f MiB over 200 steps", float64(after-before)/(1<<20))
	}
}
