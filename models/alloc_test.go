package models

import (
	"testing"

	"wkd/ops"
)

// TestStepAllocatesNothing: once the tape's arena is warm, a forward and backward pass through
// a network allocates nothing of its own.
func TestStepAllocatesNothing(t *testing.T) {
	for _, spec := range []Spec{
		{Kind: ResNet, NBlocks: 2, InputNC: 3, OutputNC: 3, NGF: 4, Norm: Instance, Dropout: true},
		{Kind: UNet, NumDowns: 5, InputNC: 3, OutputNC: 3, NGF: 4, Norm: Batch},
		{Kind: PatchGAN, InputNC: 3, NDF: 4, Norm: Batch},
	} {
		m, err := Build(spec)
		if err != nil {
			t.Fatal(err)
		}
		randomize(m, 1)
		m.SetRNG(ops.NewRNG(3))
		x := ops.New(2, 3, 32, 32)
		ops.NewRNG(2).FillNormal(x, 0, 1)
		tp := ops.NewTape()
		step := func() {
			tp.Reset()
			tp.Backward(ops.Mean(tp, m.Forward(tp, x, true)))
		}
		step()
		if a := testing.AllocsPerRun(5, step); a > 0 {
			t.Errorf("%v: %.0f allocations per step", spec, a)
		}
	}
}
