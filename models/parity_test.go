package models

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"wkd/internal/torchref"
	"wkd/ops"
)

// parityCase is a small network run forward and backward here and in PyTorch on the same
// weights and input.
type parityCase struct {
	name    string
	spec    Spec
	n, h, w int
	train   bool
}

// randomize gives every tensor of m values that exercise every path: Init's weights, then
// non-zero biases, BatchNorm affine values away from (1, 0) and running statistics away from
// (0, 1), so a swapped or dropped tensor shows.
func randomize(m Module, seed uint64) {
	rng := ops.NewRNG(seed)
	Init(m, rng)
	for _, t := range m.State() {
		switch {
		case strings.HasSuffix(t.Name, "running_var"):
			for i := range t.Data {
				t.Data[i] = 0.5 + rng.Float32()
			}
		case strings.HasSuffix(t.Name, "bias"), strings.HasSuffix(t.Name, "running_mean"):
			rng.FillNormal(t, 0, 0.1)
		case len(t.Shape) == 1: // BatchNorm weight
			rng.FillNormal(t, 1, 0.2)
		}
	}
}

// parityScript runs one case: the inputs and outputs of case c are named "c/...".
const parityScript = `
def parity(c, net, train):
    pre = c + "/"
    mine = {k[len(pre):]: v for k, v in I.items() if k.startswith(pre)}
    sd = net.state_dict()
    extra = sorted(set(mine) - {"x", "w"} - set(sd))
    assert not extra, "%s: names the reference does not have: %s" % (c, extra)
    for k in sd:
        if not k.endswith("num_batches_tracked"):
            sd[k] = mine[k]
    net.load_state_dict(sd, strict=True)
    net.train(train)
    x = mine["x"].clone().requires_grad_(True)
    y = net(x)
    (y * mine["w"]).sum().backward()
    O[pre + "y"] = y
    O[pre + "dx"] = x.grad
    for k, p in net.named_parameters():
        O[pre + "grad/" + k] = p.grad
    for k, b in net.named_buffers():
        if not k.endswith("num_batches_tracked"):
            O[pre + "buf/" + k] = b
`

// TestTorchParity runs small networks of every kind here and in PyTorch (one Python run for
// all cases) on the same weights and input, then compares the output, the input gradient,
// every parameter's gradient and every running statistic by name.
func TestTorchParity(t *testing.T) {
	t.Parallel() // each waits mostly on a Python start
	cases := []parityCase{
		{"resnet9_instance", Spec{Kind: ResNet9Blocks, InputNC: 3, OutputNC: 3, NGF: 8, Norm: Instance}, 1, 32, 32, true},
		{"resnet2_batch_train", Spec{Kind: ResNet, NBlocks: 2, InputNC: 3, OutputNC: 3, NGF: 8, Norm: Batch}, 2, 32, 32, true},
		{"resnet1_none", Spec{Kind: ResNet, NBlocks: 1, InputNC: 3, OutputNC: 2, NGF: 8, Norm: NoNorm}, 1, 24, 32, true},
		{"unet5_batch_train", Spec{Kind: UNet, NumDowns: 5, InputNC: 3, OutputNC: 3, NGF: 8, Norm: Batch}, 2, 32, 32, true},
		{"unet6_batch_eval", Spec{Kind: UNet, NumDowns: 6, InputNC: 3, OutputNC: 3, NGF: 8, Norm: Batch, Dropout: true}, 1, 64, 64, false},
		{"unet5_instance", Spec{Kind: UNet, NumDowns: 5, InputNC: 1, OutputNC: 3, NGF: 8, Norm: Instance}, 1, 64, 32, true},
		{"patchgan_batch_train", Spec{Kind: PatchGAN, InputNC: 6, NDF: 8, Norm: Batch}, 2, 64, 64, true},
		{"patchgan_instance", Spec{Kind: PatchGAN, InputNC: 3, NDF: 8, Norm: Instance}, 1, 64, 64, true},
		{"pixel_batch_train", Spec{Kind: Pixel, InputNC: 6, NDF: 8, Norm: Batch}, 2, 16, 16, true},
	}
	inputs := map[string]torchref.Array{}
	script := torchNets + parityScript
	type result struct {
		m Module
		x *ops.Tensor
		y *ops.Tensor
	}
	results := make([]result, len(cases))
	for i, c := range cases {
		m, err := Build(c.spec)
		if err != nil {
			t.Fatal(err)
		}
		randomize(m, uint64(100+i))
		rng := ops.NewRNG(uint64(200 + i))
		x := ops.New(c.n, c.spec.InputNC, c.h, c.w)
		rng.FillNormal(x, 0, 1)
		x.SetRequiresGrad(true)
		pre := c.name + "/"
		inputs[pre+"x"] = torchref.Of(append([]float32(nil), x.Data...), x.Shape...)
		for _, st := range m.State() {
			inputs[pre+st.Name] = torchref.Of(append([]float32(nil), st.Data...), st.Shape...)
		}
		tp := ops.NewTape()
		y := m.Forward(tp, x, c.train)
		wt := make([]float32, y.Numel())
		for j := range wt {
			wt[j] = 2*rng.Float32() - 1
		}
		inputs[pre+"w"] = torchref.Of(wt, y.Shape...)
		ops.SeedGrad(y, wt) // the loss is sum(y * w)
		tp.BackwardFrom()
		results[i] = result{m, x, y}
		train := "False"
		if c.train {
			train = "True"
		}
		script += fmt.Sprintf("parity(%q, %s, %s)\n", c.name, pyBuild(c.spec), train)
	}
	out := torchref.Run(t, script, inputs)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, x, y := results[i].m, results[i].x, results[i].y
			pre := c.name + "/"
			want := map[string]torchref.Array{}
			for k, v := range out {
				if strings.HasPrefix(k, pre) {
					want[k[len(pre):]] = v
				}
			}
			if got, ref := y.Shape, want["y"].Shape; fmt.Sprint(got) != fmt.Sprint(ref) {
				t.Fatalf("output shape %v, PyTorch %v", got, ref)
			}
			got := map[string][]float32{"y": y.Data, "dx": x.Grad}
			for _, p := range m.Params() {
				got["grad/"+p.Name] = p.Grad
			}
			for _, b := range m.Buffers() {
				got["buf/"+b.Name] = b.Data
			}
			if len(got) != len(want) {
				t.Errorf("comparing %d tensors, PyTorch produced %d", len(got), len(want))
			}
			// A bias right before an InstanceNorm has an exact gradient of zero (the norm
			// removes any per-channel constant): both sides hold rounding noise, which a
			// relative error cannot judge. Check it is noise against its weight's gradient.
			for _, name := range InertBiases(m) {
				scale := maxAbs(m.Named()[strings.TrimSuffix(name, "bias")+"weight"].Grad)
				g, w := maxAbs(got["grad/"+name]), maxAbs(want["grad/"+name].Data)
				if g > 1e-4*scale || w > 1e-4*scale {
					t.Errorf("grad/%s should be zero: |ours| %.3g, |PyTorch| %.3g, |weight grad| %.3g", name, g, w, scale)
				}
				delete(got, "grad/"+name)
			}
			torchref.Compare(t, 1e-4, got, want)
		})
	}
}

func maxAbs(v []float32) float64 {
	m := 0.0
	for _, x := range v {
		m = max(m, math.Abs(float64(x)))
	}
	return m
}

// TestInferenceTorchParity runs generators on the inference path (no tape, and a tape that
// records nothing) at sizes where the fused and direct kernels serve them: convolution and
// instance norm without the inert bias, norm and ReLU as one pass, stride-1 convolutions 32
// and more outputs wide read in place. Outputs must match PyTorch's eval forward within 1e-4.
func TestInferenceTorchParity(t *testing.T) {
	t.Parallel()
	cases := []parityCase{
		{"resnet9_instance_128", Spec{Kind: ResNet9Blocks, InputNC: 3, OutputNC: 3, NGF: 8, Norm: Instance}, 2, 128, 136, false},
		{"resnet2_instance_dropout", Spec{Kind: ResNet, NBlocks: 2, InputNC: 1, OutputNC: 3, NGF: 12, Norm: Instance, Dropout: true}, 1, 132, 128, false},
		{"unet7_batch", Spec{Kind: UNet, NumDowns: 7, InputNC: 3, OutputNC: 3, NGF: 8, Norm: Batch, Dropout: true}, 1, 128, 128, false},
	}
	inputs := map[string]torchref.Array{}
	script := torchNets + `
def infer(c, net):
    pre = c + "/"
    sd = net.state_dict()
    for k in sd:
        if not k.endswith("num_batches_tracked"):
            sd[k] = I[pre + k]
    net.load_state_dict(sd, strict=True)
    net.eval()
    with torch.no_grad():
        O[pre + "y"] = net(I[pre + "x"])
`
	got := map[string][]float32{}
	for i, c := range cases {
		m, err := Build(c.spec)
		if err != nil {
			t.Fatal(err)
		}
		randomize(m, uint64(300+i))
		x := ops.New(c.n, c.spec.InputNC, c.h, c.w)
		ops.NewRNG(uint64(400+i)).FillNormal(x, 0, 1)
		pre := c.name + "/"
		inputs[pre+"x"] = torchref.Of(x.Data, x.Shape...)
		for _, st := range m.State() {
			inputs[pre+st.Name] = torchref.Of(st.Data, st.Shape...)
		}
		y := m.Forward(nil, x, false)
		got[pre+"y"] = append([]float32(nil), y.Data...)
		tp := ops.NewTape()
		tp.SetNoGrad(true)
		if y2 := m.Forward(tp, x, false); !slices.Equal(y2.Data, y.Data) {
			t.Errorf("%s: a tape that records nothing gives another output than no tape", c.name)
		}
		script += fmt.Sprintf("infer(%q, %s)\n", c.name, pyBuild(c.spec))
	}
	torchref.Compare(t, 1e-4, got, torchref.Run(t, script, inputs))
}
