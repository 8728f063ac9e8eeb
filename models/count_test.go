package models

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"wkd/internal/torchref"
)

func TestResNet9ReferenceSize(t *testing.T) {
	spec := Spec{Kind: ResNet9Blocks, InputNC: 3, OutputNC: 3, NGF: 64, Norm: Instance}
	m, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	if got := CountParams(m); got != 11_378_179 {
		t.Errorf("ResNet-9 ngf 64 has %d parameters, want 11,378,179", got)
	}
	macs, err := CountMACs(spec, 256, 256)
	if err != nil {
		t.Fatal(err)
	}
	// By hand: 2 x 7x7 convs 616,562,688 each; 2 stride-2 convs 1,207,959,552 each;
	// 18 block convs 2,415,919,104 each; 2 transposed convs 4,831,838,208 each (counted per
	// output element).
	if macs != 56_799_264_768 {
		t.Errorf("ResNet-9 ngf 64 at 256x256: %d MACs, want 56,799,264,768 (56.8 G)", macs)
	}
	t.Logf("ResNet-9 ngf 64, 3->3, 256x256: %d params (%.3f M), %d MACs (%.1f G)", CountParams(m), float64(CountParams(m))/1e6, macs, float64(macs)/1e9)
}

// countCase is one full-size network checked against PyTorch without computing anything:
// the reference modules are built on the meta device, so only shapes flow.
type countCase struct {
	label string
	spec  Spec
	h, w  int
}

func countCases() []countCase {
	return []countCase{
		{"resnet9", Spec{Kind: ResNet9Blocks, InputNC: 3, OutputNC: 3, NGF: 64, Norm: Instance}, 256, 256},
		{"resnet6_batch_dropout", Spec{Kind: ResNet6Blocks, InputNC: 3, OutputNC: 3, NGF: 32, Norm: Batch, Dropout: true}, 128, 128},
		{"resnet2_none", Spec{Kind: ResNet, NBlocks: 2, InputNC: 1, OutputNC: 3, NGF: 16, Norm: NoNorm}, 64, 96},
		{"unet256", Spec{Kind: UNet256, InputNC: 3, OutputNC: 3, NGF: 64, Norm: Batch, Dropout: true}, 256, 256},
		{"unet128_instance", Spec{Kind: UNet128, InputNC: 3, OutputNC: 2, NGF: 16, Norm: Instance, Dropout: true}, 128, 256},
		{"patchgan", Spec{Kind: PatchGAN, InputNC: 6, NDF: 64, Norm: Batch}, 256, 256},
		{"nlayers5_instance", Spec{Kind: NLayers, NLayers: 5, InputNC: 3, NDF: 32, Norm: Instance}, 256, 256},
		{"pixel", Spec{Kind: Pixel, InputNC: 6, NDF: 64, Norm: Batch}, 64, 64},
	}
}

// TestStructureMatchesTorch checks, for full-size networks of every kind, that the state_dict
// keys, their order and shapes, the parameter count and the MAC count equal those of the
// PyTorch modules. PyTorch's MACs come from forward hooks on every Conv2d and ConvTranspose2d
// (output elements x C_in/groups x KH x KW), an independent count of ours.
func TestStructureMatchesTorch(t *testing.T) {
	t.Parallel() // each waits mostly on a Python start
	var py strings.Builder
	py.WriteString(torchNets)
	py.WriteString(`
def split(v):  # an integer as two float32-exact halves
    return torch.tensor([float(v // (1 << 24)), float(v % (1 << 24))])

def count(label, net, h, w):
    macs = [0]
    def hook(m, inp, out):
        k = 1
        for d in m.kernel_size:
            k *= d
        macs[0] += (out.numel() // out.shape[0]) * (m.in_channels // m.groups) * k
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            m.register_forward_hook(hook)
    cin = next(iter(net.parameters())).shape[1]
    with torch.no_grad():
        net(torch.empty(2, cin, h, w, device="meta"))
    O[label + "/macs"] = split(macs[0])
    O[label + "/params"] = split(sum(p.numel() for p in net.parameters()))
    i = 0
    for k, v in net.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        O[label + "/key/" + k] = torch.tensor([float(i)] + [float(d) for d in v.shape])
        i += 1
`)
	for _, c := range countCases() {
		fmt.Fprintf(&py, "count(%q, %s.to('meta'), %d, %d)\n", c.label, pyBuild(c.spec), c.h, c.w)
	}
	out := torchref.Run(t, py.String(), map[string]torchref.Array{"unused": torchref.Of([]float32{0}, 1)})
	unsplit := func(a torchref.Array) int64 { return int64(a.Data[0])<<24 + int64(a.Data[1]) }
	for _, c := range countCases() {
		n, err := build(c.spec, false)
		if err != nil {
			t.Fatalf("%s: %v", c.label, err)
		}
		var params int64
		for _, p := range n.Params() {
			params += int64(numel(p))
		}
		if want := unsplit(out[c.label+"/params"]); params != want {
			t.Errorf("%s: %d params, PyTorch %d", c.label, params, want)
		}
		macs, err := CountMACs(c.spec, c.h, c.w)
		if err != nil {
			t.Fatalf("%s: %v", c.label, err)
		}
		if want := unsplit(out[c.label+"/macs"]); macs != want {
			t.Errorf("%s: %d MACs, PyTorch hooks count %d", c.label, macs, want)
		}
		var keys []string
		prefix := c.label + "/key/"
		for k := range out {
			if strings.HasPrefix(k, prefix) {
				keys = append(keys, k[len(prefix):])
			}
		}
		if len(keys) != len(n.State()) {
			t.Errorf("%s: %d state tensors, PyTorch %d", c.label, len(n.State()), len(keys))
		}
		for i, st := range n.State() {
			a, ok := out[prefix+st.Name]
			if !ok {
				t.Errorf("%s: %q is not in PyTorch's state_dict", c.label, st.Name)
				continue
			}
			shape := make([]int, len(a.Data)-1)
			for j := range shape {
				shape[j] = int(a.Data[j+1])
			}
			if int(a.Data[0]) != i || !slices.Equal(shape, st.Shape) {
				t.Errorf("%s: %q is #%d %v here, #%d %v in PyTorch", c.label, st.Name, i, st.Shape, int(a.Data[0]), shape)
			}
		}
		t.Logf("%-22s %-45v %10d params %14d MACs at %dx%d", c.label, c.spec, params, macs, c.h, c.w)
	}
}

func TestCountMACsRejectsBadSizes(t *testing.T) {
	for _, c := range []struct {
		spec Spec
		h, w int
	}{
		{Spec{Kind: UNet256, InputNC: 3, OutputNC: 3, NGF: 8, Norm: Batch}, 128, 128},
		{Spec{Kind: UNet, NumDowns: 5, InputNC: 3, OutputNC: 3, NGF: 8, Norm: Batch}, 48, 40},
		{Spec{Kind: ResNet9Blocks, InputNC: 3, OutputNC: 3, NGF: 8, Norm: Instance}, 3, 64},
		{Spec{Kind: PatchGAN, InputNC: 3, NDF: 8, Norm: Batch}, 8, 8},
		{Spec{Kind: PatchGAN, InputNC: 3, NDF: 8, Norm: Batch}, 0, 64},
		{Spec{Kind: PatchGAN, InputNC: 0, NDF: 8, Norm: Batch}, 64, 64},
	} {
		if _, err := CountMACs(c.spec, c.h, c.w); err == nil || !errorsIsSpec(err) {
			t.Errorf("%v at %dx%d: err %v, want ErrSpec", c.spec, c.h, c.w, err)
		}
	}
}
