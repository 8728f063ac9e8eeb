package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"wkd/internal/torchnets"
	"wkd/internal/torchref"
	"wkd/models"
	"wkd/ops"
	"wkd/trainer"
)

// TestConvertRoundTripWithPyTorch: the reference's networks saved by torch.save (a ResNet with
// instance norm in the zip format, carrying an InstanceNorm running statistic as PyTorch < 0.4
// saved them, and a U-Net with batch norm and dropout in the legacy format)
// convert to safetensors that record the architecture and compute what PyTorch computes; the
// safetensors convert back, with no flags, to a .pth that PyTorch loads with strict
// load_state_dict and that gives the original outputs exactly.
func TestConvertRoundTripWithPyTorch(t *testing.T) {
	dir := t.TempDir()
	type net struct {
		name, ctor, save string
		spec             models.Spec
		flags            []string
	}
	nets := []net{
		{"resnet", "ResGen(3, 3, 8, 'instance', False, 6)", "", models.Spec{Kind: models.ResNet6Blocks, InputNC: 3, OutputNC: 3, NGF: 8, Norm: models.Instance, NBlocks: 6},
			[]string{"--netG", "resnet_6blocks", "--ngf", "8", "--norm", "instance", "--no-dropout"}},
		{"unet", "UGen(3, 3, 5, 4, 'batch', True)", ", _use_new_zipfile_serialization=False", models.Spec{Kind: models.UNet, InputNC: 3, OutputNC: 3, NGF: 4, Norm: models.Batch, Dropout: true, NumDowns: 5},
			[]string{"--netG", "unet", "--num-downs", "5", "--ngf", "4", "--norm", "batch"}},
	}
	x := ops.New(1, 3, 32, 32)
	for i := range x.Data {
		x.Data[i] = float32(i%97)/48 - 1
	}
	var script strings.Builder
	script.WriteString(torchnets.Nets)
	for _, n := range nets {
		fmt.Fprintf(&script, `
torch.manual_seed(3)
g = %s
for m in g.modules():
    if isinstance(m, nn.BatchNorm2d):
        m.running_mean.uniform_(-0.5, 0.5); m.running_var.uniform_(0.5, 1.5); m.weight.data.uniform_(0.5, 1.5)
g.eval()
sd = g.state_dict()
if 'instance' in %q:
    sd['model.2.running_mean'] = torch.zeros(8)  # as PyTorch < 0.4 saved InstanceNorm
torch.save(sd, %q%s)
with torch.no_grad():
    O[%q] = g(I['x'])
`, n.ctor, n.ctor, filepath.Join(dir, n.name+".pth"), n.save, n.name)
	}
	want := torchref.Run(t, script.String(), map[string]torchref.Array{"x": torchref.Of(x.Data, x.Shape...)})

	var back strings.Builder
	back.WriteString(torchnets.Nets)
	for _, n := range nets {
		pth, st, pth2 := filepath.Join(dir, n.name+".pth"), filepath.Join(dir, n.name+".safetensors"), filepath.Join(dir, n.name+"-back.pth")
		if err := runConvert(append([]string{"--in", pth, "--out", st}, n.flags...)); err != nil {
			t.Fatalf("%s: %v", n.name, err)
		}
		spec, ok, err := models.ArchOf(st)
		if err != nil || !ok || spec != n.spec {
			t.Fatalf("%s: recorded architecture %v (%v, %v), want %v", n.name, spec, ok, err, n.spec)
		}
		m, _ := models.Build(spec)
		if _, err := models.Load(st, m); err != nil {
			t.Fatal(err)
		}
		// The .pth itself loads too, stale InstanceNorm statistics and all.
		direct, _ := models.Build(spec)
		if _, err := models.Load(pth, direct); err != nil {
			t.Errorf("%s: the PyTorch file does not load as it is: %v", n.name, err)
		}
		y := m.Forward(nil, x, false)
		if e := torchref.RelErr(y.Data, want[n.name].Data); e > 1e-5 {
			t.Errorf("%s: converted weights compute %.3g off PyTorch's output", n.name, e)
		} else {
			t.Logf("%s: converted weights match PyTorch's output within %.2g", n.name, e)
		}
		if err := runConvert([]string{"--in", st, "--out", pth2}); err != nil {
			t.Fatalf("%s back: %v", n.name, err)
		}
		fmt.Fprintf(&back, `
g = %s
g.load_state_dict(torch.load(%q), strict=True)
g.eval()
with torch.no_grad():
    O[%q] = g(I['x'])
`, n.ctor, pth2, n.name)
	}
	again := torchref.Run(t, back.String(), map[string]torchref.Array{"x": torchref.Of(x.Data, x.Shape...)})
	for _, n := range nets {
		if e := torchref.RelErr(again[n.name].Data, want[n.name].Data); e != 0 {
			t.Errorf("%s: the .pth written back computes %.3g off the original", n.name, e)
		}
	}
}

// TestConvertRefusesWhatItCannotDo: each refusal names the flag or file and what works, and
// writes nothing.
func TestConvertRefusesWhatItCannotDo(t *testing.T) {
	dir := t.TempDir()
	m, _ := models.Build(models.Spec{Kind: models.ResNet6Blocks, InputNC: 3, OutputNC: 3, NGF: 4, Norm: models.Instance})
	st := filepath.Join(dir, "g.safetensors")
	if err := models.Save(st, m, nil); err != nil {
		t.Fatal(err)
	}
	exists := filepath.Join(dir, "exists.pth")
	os.WriteFile(exists, []byte("keep me"), 0o644)
	out := filepath.Join(dir, "out.pth")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--out", out}, "--in and --out are required"},
		{[]string{"--in", st, "--out", filepath.Join(dir, "g.bin")}, "--out"},
		{[]string{"--in", st, "--out", exists}, "--overwrite"},
		{[]string{"--in", st, "--out", filepath.Join(dir, "again.safetensors")}, "already safetensors"},
		{[]string{"--in", st, "--out", out, "--netG", "unet_256", "--norm", "batch"}, "does not hold the network"},
		{[]string{"--in", st, "--out", out, "--netD", "resnet_9blocks"}, "--netD"},
		{[]string{"--in", filepath.Join(dir, "missing.pth"), "--out", filepath.Join(dir, "m.safetensors")}, "missing.pth"},
		{[]string{"--in", st, "--out", out, "--ngf", "0", "--netG", "resnet"}, "ngf 0"},
	}
	for _, c := range cases {
		err := runConvert(c.args)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("convert %s: err = %v, want one with %q", strings.Join(c.args, " "), err, c.want)
		}
	}
	if b, _ := os.ReadFile(exists); string(b) != "keep me" {
		t.Error("a refused convert changed an existing file")
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a refused convert wrote --out")
	}
}

// TestDistillFromATeacherFile: wkd distill takes a PyTorch .pth teacher given its architecture
// by the --teacher-* flags (norm included), and a safetensors teacher that records its
// architecture with no flags at all.
func TestDistillFromATeacherFile(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "data")
	writeAlignedTestSet(t, root, 3, 32)
	if err := os.Rename(filepath.Join(root, "test"), filepath.Join(root, "train")); err != nil {
		t.Fatal(err)
	}
	spec := models.Spec{Kind: models.ResNet6Blocks, InputNC: 3, OutputNC: 3, NGF: 8, Norm: models.Batch, NBlocks: 6}
	g, _ := models.Build(spec)
	models.Init(g, ops.NewRNG(5))
	st := filepath.Join(dir, "teacher.safetensors")
	if err := models.Save(st, g, nil); err != nil {
		t.Fatal(err)
	}
	pth := filepath.Join(dir, "teacher.pth")
	if err := runConvert([]string{"--in", st, "--out", pth}); err != nil {
		t.Fatal(err)
	}
	common := []string{"--data", root, "--max-steps", "1", "--quiet", "--log-format", "json", "--ngf", "4", "--ndf", "4"}
	for _, c := range []struct {
		name string
		args []string
	}{
		{"pth with flags", []string{"--teacher", pth, "--teacher-netG", "resnet_6blocks", "--teacher-ngf", "8", "--teacher-norm", "batch", "--teacher-no-dropout"}},
		{"safetensors alone", []string{"--teacher", st}},
	} {
		out := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-"))
		if err := runTrain("distill", append(append([]string{"--out", out}, common...), c.args...)); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if _, err := os.Stat(filepath.Join(out, "G.safetensors")); err != nil {
			t.Errorf("%s: no student weights: %v", c.name, err)
		}
	}
	// Without the norm the spec differs from the file: refused by tensor name, not a panic.
	err := runTrain("distill", append(append([]string{"--out", filepath.Join(dir, "wrong")}, common...), "--teacher", pth, "--teacher-netG", "resnet_6blocks", "--teacher-ngf", "8", "--teacher-norm", "instance", "--teacher-no-dropout"))
	if err == nil || !strings.Contains(err.Error(), "--teacher") {
		t.Errorf("a .pth teacher with the wrong --teacher-norm: err = %v, want one naming --teacher", err)
	}
}

// TestResumeRefusesChangedFlags: --resume continues the saved run; flags that would change it
// are refused, all named, and nothing of the run is touched; flags that say where and how
// long it goes on, or repeat its own values, are taken. --resume-from a checkpoint of another
// folder into a new --out reads that run's configuration.
func TestResumeRefusesChangedFlags(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "data")
	writeAlignedTestSet(t, root, 3, 32)
	if err := os.Rename(filepath.Join(root, "test"), filepath.Join(root, "train")); err != nil {
		t.Fatal(err)
	}
	teacher := filepath.Join(dir, "teacher")
	base := []string{"--data", root, "--quiet", "--log-format", "json", "--ngf", "4", "--ndf", "4", "--checkpoint-every", "1"}
	if err := runTrain("train", append([]string{"--out", teacher, "--max-steps", "1"}, base...)); err != nil {
		t.Fatal(err)
	}
	student := filepath.Join(dir, "student")
	sargs := append(append([]string{"--teacher", teacher, "--out", student}, base...), "--alpha", "100", "--kd", "wavelet")
	if err := runTrain("distill", append(sargs, "--max-steps", "1")); err != nil {
		t.Fatal(err)
	}
	config, _ := os.ReadFile(filepath.Join(student, "config.json"))

	err := runTrain("distill", []string{"--out", student, "--resume", "--max-steps", "2", "--kd", "pixel", "--alpha", "5", "--lr", "0.1", "--quiet", "--log-format", "json"})
	if err == nil {
		t.Fatal("--resume with --kd pixel --alpha 5 --lr 0.1: no error")
	}
	for _, want := range []string{"--kd pixel", "--alpha 5", "--lr 0.1", "config.json"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not name %q", err, want)
		}
	}
	if now, _ := os.ReadFile(filepath.Join(student, "config.json")); string(now) != string(config) {
		t.Error("a refused --resume changed config.json")
	}
	// The whole original command again, with --resume and a new step limit: the same run.
	if err := runTrain("distill", append(sargs, "--resume", "--max-steps", "2")); err != nil {
		t.Fatalf("--resume repeating the run's own flags: %v", err)
	}
	// A default spelled out is no change; the reference's spellings and --model are checked too.
	if err := runTrain("distill", append(sargs, "--resume", "--max-steps", "2", "--preprocess", "resize_and_crop", "--direction", "AtoB")); err != nil {
		t.Fatalf("--resume with the default --preprocess and --direction: %v", err)
	}
	for _, changed := range [][]string{{"--batch_size", "3"}, {"--model", "cyclegan"}, {"--no_dropout"}} {
		err := runTrain("distill", append(append(sargs, "--resume", "--max-steps", "2"), changed...))
		if err == nil || !strings.Contains(err.Error(), strings.Join(changed, " ")) {
			t.Errorf("--resume with %v: %v, want a refusal naming it", changed, err)
		}
	}

	ckpt, err := trainer.LatestCheckpoint(student)
	if err != nil || ckpt == "" {
		t.Fatalf("no checkpoint in %s: %v", student, err)
	}
	copyRun := filepath.Join(dir, "branch")
	if err := runTrain("distill", []string{"--resume-from", ckpt, "--out", copyRun, "--max-steps", "3", "--quiet", "--log-format", "json"}); err != nil {
		t.Fatalf("--resume-from a checkpoint of another folder: %v", err)
	}
	cfg, err := trainer.LoadConfig(copyRun)
	if err != nil || cfg.KD != trainer.KDWavelet || cfg.Alpha != 100 {
		t.Errorf("the branch's config: %+v, %v; want the student's (wavelet KD, alpha 100)", cfg, err)
	}
}

// TestMissingDefaultsSayWhatMakesThem: a missing teacher or feature network is named with the
// command that makes it and where make demo leaves one.
func TestMissingDefaultsSayWhatMakesThem(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "data")
	writeAlignedTestSet(t, root, 2, 32)
	os.Rename(filepath.Join(root, "test"), filepath.Join(root, "train"))
	err := runTrain("distill", []string{"--data", root, "--out", filepath.Join(dir, "s"), "--teacher", filepath.Join(dir, "nowhere"), "--quiet", "--log-format", "json"})
	if err == nil || !strings.Contains(err.Error(), "wkd train --out") || !strings.Contains(err.Error(), "runs/demo/teacher") {
		t.Errorf("missing teacher: err = %v", err)
	}
	writeAlignedTestSet(t, root, 2, 32)
	run := filepath.Join(dir, "run")
	writeRun(t, run, root, 4, 1)
	err = runEval([]string{"--runs", run, "--features", filepath.Join(dir, "nofeatures.safetensors"), "--out", filepath.Join(dir, "r"), "--speed-size", "32"})
	if err == nil || !strings.Contains(err.Error(), "wkd train-features") || !strings.Contains(err.Error(), "runs/demo/texture-features.safetensors") {
		t.Errorf("missing feature network: err = %v", err)
	}
}
