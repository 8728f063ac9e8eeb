package models

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"wkd/internal/torchref"
	"wkd/ops"
)

// TestConvertReferenceCheckpoint makes .pth checkpoints with PyTorch (BatchNorm counters,
// running statistics after a training step, an old-style InstanceNorm running stat), converts
// them with ConvertScript, loads them here and checks the networks compute what PyTorch does.
func TestConvertReferenceCheckpoint(t *testing.T) {
	t.Parallel() // each waits mostly on a Python start
	dir := t.TempDir()
	conv := filepath.Join(dir, "convert.py")
	if err := os.WriteFile(conv, []byte(ConvertScript), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		spec Spec
		h, w int
	}{
		{"unet_batch", Spec{Kind: UNet, NumDowns: 5, InputNC: 3, OutputNC: 3, NGF: 4, Norm: Batch}, 32, 32},
		{"resnet_instance", Spec{Kind: ResNet, NBlocks: 2, InputNC: 3, OutputNC: 3, NGF: 4, Norm: Instance}, 32, 32},
	}
	script := torchNets + `
def make(name, net, h, w, old_instance):
    torch.manual_seed(len(name))
    for p in net.parameters():
        p.data.normal_(0, 0.1)
    net.train()
    with torch.no_grad():
        net(torch.randn(2, 3, h, w))  # moves running stats and num_batches_tracked
    sd = net.state_dict()
    if old_instance:
        sd["model.2.running_mean"] = torch.zeros(4)  # as PyTorch < 0.4 saved InstanceNorm
    pth = "%s/%s.pth" % (DIR, name)
    torch.save(sd, pth)
    # Run the program as "python3 convert.py in out" would, without paying another torch import.
    argv = sys.argv
    sys.argv = ["convert.py", pth, "%s/%s.safetensors" % (DIR, name)]
    with open(CONVERT) as f:
        exec(compile(f.read(), CONVERT, "exec"), {"__name__": "__main__"})
    sys.argv = argv
    net.eval()
    with torch.no_grad():
        O[name] = net(I["x_" + name])
`
	script += fmt.Sprintf("DIR = %q\nCONVERT = %q\n", dir, conv)
	inputs := map[string]torchref.Array{}
	xs := map[string]*ops.Tensor{}
	for i, c := range cases {
		x := ops.New(1, 3, c.h, c.w)
		ops.NewRNG(uint64(i)).FillNormal(x, 0, 1)
		xs[c.name] = x
		inputs["x_"+c.name] = torchref.Of(x.Data, x.Shape...)
		old := "False"
		if c.spec.Norm == Instance {
			old = "True"
		}
		script += fmt.Sprintf("make(%q, %s, %d, %d, %s)\n", c.name, pyBuild(c.spec), c.h, c.w, old)
	}
	want := torchref.Run(t, script, inputs)
	got := map[string][]float32{}
	for _, c := range cases {
		m, err := Build(c.spec)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Load(filepath.Join(dir, c.name+".safetensors"), m); err != nil {
			t.Fatal(err)
		}
		got[c.name] = m.Forward(nil, xs[c.name], false).Data
	}
	torchref.Compare(t, 1e-4, got, want)
}
