package models

import (
	"math"
	"slices"
	"strings"
	"testing"

	"wkd/ops"
)

func sqrt(x float64) float64 { return math.Sqrt(x) }
func abs(x float64) float64  { return math.Abs(x) }

func TestDropoutUsesCallersRNG(t *testing.T) {
	spec := Spec{Kind: UNet, NumDowns: 6, InputNC: 3, OutputNC: 3, NGF: 4, Norm: Batch, Dropout: true}
	m, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	randomize(m, 1)
	x := ops.New(2, 3, 64, 64)
	ops.NewRNG(2).FillNormal(x, 0, 1)
	run := func(seed uint64, train bool) []float32 {
		m.SetRNG(ops.NewRNG(seed))
		saved := map[string][]float32{}
		for _, b := range m.Buffers() { // keep training-mode runs from drifting the statistics
			saved[b.Name] = slices.Clone(b.Data)
		}
		y := m.Forward(nil, x, train)
		for _, b := range m.Buffers() {
			copy(b.Data, saved[b.Name])
		}
		return slices.Clone(y.Data)
	}
	if !slices.Equal(run(5, true), run(5, true)) {
		t.Error("one dropout seed gave two outputs")
	}
	if slices.Equal(run(5, true), run(6, true)) {
		t.Error("two dropout seeds gave one output: dropout is not active")
	}
	if !slices.Equal(run(5, false), run(6, false)) {
		t.Error("eval mode depends on the dropout seed")
	}
	m.SetRNG(nil)
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "SetRNG") {
			t.Errorf("training with dropout and no RNG: panic %v, want one naming SetRNG", r)
		}
	}()
	m.Forward(nil, x, true)
}

func TestForwardRejectsBadInput(t *testing.T) {
	u, _ := Build(Spec{Kind: UNet, NumDowns: 5, InputNC: 3, OutputNC: 3, NGF: 4, Norm: Batch})
	g, _ := Build(Spec{Kind: ResNet, NBlocks: 1, InputNC: 3, OutputNC: 3, NGF: 4, Norm: Instance})
	for _, c := range []struct {
		m     Module
		shape []int
		want  string
	}{
		{u, []int{1, 3, 48, 32}, "multiples of 32"},
		{g, []int{1, 1, 32, 32}, "want (N, 3, H, W)"},
		{g, []int{1, 3, 32, 30}, "multiples of 4"},
		{g, []int{3, 32, 32}, "want (N, 3, H, W)"},
	} {
		func() {
			defer func() {
				r := recover()
				s, _ := r.(string)
				if !strings.Contains(s, c.want) || !strings.Contains(s, "input shape") {
					t.Errorf("input %v: panic %v, want one saying %q", c.shape, r, c.want)
				}
			}()
			c.m.Forward(nil, ops.New(c.shape...), false)
		}()
	}
}

// TestGradientsAccumulate: two backward passes leave twice the gradient, as ops promises,
// so the trainer must zero gradients each step.
func TestGradientsAccumulate(t *testing.T) {
	m, _ := Build(Spec{Kind: PatchGAN, InputNC: 3, NDF: 4, Norm: Instance})
	randomize(m, 1)
	x := ops.New(1, 3, 32, 32)
	ops.NewRNG(2).FillNormal(x, 0, 1)
	step := func() {
		tp := ops.NewTape()
		tp.Backward(ops.Mean(tp, m.Forward(tp, x, true)))
	}
	step()
	once := slices.Clone(m.Params()[0].Grad)
	step()
	twice := m.Params()[0].Grad
	for i := range once {
		if d := abs(float64(twice[i] - 2*once[i])); d > 1e-6*(1+abs(float64(once[i]))) {
			t.Fatalf("grad[%d]: %g after two passes, %g after one", i, twice[i], once[i])
		}
	}
	if maxAbs(once) == 0 {
		t.Fatal("no gradient reached the first layer")
	}
}
