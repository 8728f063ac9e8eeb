package models

import (
	"fmt"
	"math"
	"testing"

	"wkd/ops"
)

// fusionSpecs have a (transposed) convolution followed by instance norm, with and without
// the ReLU after it, at a size where the direct and phase routes serve the convolutions.
var fusionSpecs = []Spec{
	{Kind: ResNet, NBlocks: 2, InputNC: 3, OutputNC: 3, NGF: 8, Norm: Instance, Dropout: true},
	{Kind: UNet, NumDowns: 5, InputNC: 3, OutputNC: 3, NGF: 8, Norm: Instance},
	{Kind: PatchGAN, InputNC: 3, NDF: 8, Norm: Instance},
}

// TestInferenceFusionMatchesRecording: the fused inference path (no tape, a tape recording
// nothing) gives the unfused path's output (a recording tape), biases included, within
// rounding.
func TestInferenceFusionMatchesRecording(t *testing.T) {
	for i, spec := range fusionSpecs {
		m, err := Build(spec)
		if err != nil {
			t.Fatal(err)
		}
		randomize(m, uint64(500+i)) // biases N(0, 0.1): dropping them must not matter
		x := ops.New(2, 3, 64, 96)
		ops.NewRNG(uint64(600+i)).FillNormal(x, 0, 1)
		tp := ops.NewTape()
		want := append([]float32(nil), m.Forward(tp, x, false).Data...)
		if tp.Len() == 0 {
			t.Fatalf("%v: the recording tape recorded nothing", spec.Kind)
		}
		for _, name := range []string{"nil", "nograd"} {
			var tq *ops.Tape
			if name == "nograd" {
				tq = ops.NewTape()
				tq.SetNoGrad(true)
			}
			got := m.Forward(tq, x, false).Data
			var d, mx float64
			for j := range got {
				d = math.Max(d, math.Abs(float64(got[j]-want[j])))
				mx = math.Max(mx, math.Abs(float64(want[j])))
			}
			if d > 1e-4*math.Max(1, mx) {
				t.Errorf("%v %s tape: fused output differs from the recorded one by %.3g (max |y| %.3g)", spec.Kind, name, d, mx)
			}
		}
	}
}

// TestRecordingTapeKeepsConvBias: a recording tape must not take the fused path, which drops
// the convolution's bias: the biases an instance norm follows still get a gradient (rounding
// noise, but the reference computes it and Adam steps on it).
func TestRecordingTapeKeepsConvBias(t *testing.T) {
	spec := fusionSpecs[0]
	m, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	randomize(m, 7)
	m.SetRNG(ops.NewRNG(9))
	x := ops.New(1, 3, 64, 64)
	ops.NewRNG(8).FillNormal(x, 0, 1)
	tp := ops.NewTape()
	tp.Backward(ops.Mean(tp, m.Forward(tp, x, true)))
	inert := InertBiases(m)
	if len(inert) == 0 {
		t.Fatal("no inert biases: the spec does not exercise the fusion")
	}
	named := m.Named()
	nonzero := 0
	for _, name := range inert {
		for _, g := range named[name].Grad {
			if g != 0 {
				nonzero++
				break
			}
		}
	}
	// The exact gradient is 0, the computed one rounding noise: with the bias on the tape
	// some of it is nonzero, without it (the fused path) all of it is.
	if nonzero == 0 {
		t.Errorf("none of the %d inert biases has a gradient on a recording tape: the fused path ran", len(inert))
	}
}

// TestInferenceAllocatesNothing: on a tape that records nothing, once its arena is warm, an
// inference forward pass (fused norms, direct and phase convolutions) allocates nothing.
func TestInferenceAllocatesNothing(t *testing.T) {
	for _, spec := range fusionSpecs {
		m, err := Build(spec)
		if err != nil {
			t.Fatal(err)
		}
		randomize(m, 1)
		x := ops.New(2, 3, 64, 64)
		ops.NewRNG(2).FillNormal(x, 0, 1)
		tp := ops.NewTape()
		tp.SetNoGrad(true)
		step := func() {
			tp.Reset()
			m.Forward(tp, x, false)
		}
		step()
		step()
		if a := testing.AllocsPerRun(5, step); a > 0 {
			t.Errorf("%v: %.0f allocations per inference pass", fmt.Sprint(spec.Kind), a)
		}
	}
}
