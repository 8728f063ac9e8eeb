package main

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"wkd/models"
	"wkd/trainer"
)

func writeSquares(t *testing.T, dir string, n, w, h int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		img := image.NewRGBA(image.Rect(0, 0, w, h))
		for y := range h {
			for x := range w {
				img.Set(x, y, color.RGBA{uint8(x * 7), uint8(y*5 + 40*i), uint8(x ^ y), 255})
			}
		}
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%d.png", i)))
		if err != nil {
			t.Fatal(err)
		}
		png.Encode(f, img)
		f.Close()
	}
}

// TestReferenceCommandLinesRun: command lines in the reference's spelling, as its
// scripts/train_pix2pix.sh and train_cyclegan.sh write them (with small sizes), train, and the
// run is what they say.
func TestReferenceCommandLinesRun(t *testing.T) {
	dir := t.TempDir()
	facades := filepath.Join(dir, "facades")
	writeSquares(t, filepath.Join(facades, "train"), 2, 64, 32)
	ckpts := filepath.Join(dir, "checkpoints")
	args := strings.Fields(fmt.Sprintf("--dataroot %s --name facades_pix2pix --model pix2pix --netG unet_256 --direction BtoA "+
		"--lambda_L1 100 --dataset_mode aligned --norm batch --pool_size 0 --checkpoints_dir %s --ngf 4 --ndf 4 "+
		"--load_size 256 --crop_size 256 --n_epochs 1 --n_epochs_decay 0 --display_id -1 --gpu_ids -1 --batch_size 1 "+
		"--lr_policy linear --init_type normal --no_html --print_freq 1 --save_latest_freq 1", facades, ckpts))
	if err := runTrain("train", append(args, "--quiet", "--log-format", "json")); err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(ckpts, "facades_pix2pix")
	cfg, err := trainer.LoadConfig(run)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.BtoA || cfg.Task != trainer.Pix2Pix || cfg.G.Kind != models.UNet256 || cfg.G.NGF != 4 || cfg.G.Norm != models.Batch ||
		cfg.PoolSize != 0 || cfg.LambdaL1 != 100 || cfg.Epochs != 1 || cfg.EpochsDecay != 0 || cfg.CropSize != 256 || cfg.Device != trainer.DeviceCPU ||
		cfg.LogEvery != 1 || cfg.CheckpointEvery != 1 {
		t.Errorf("pix2pix run from the reference's options: %+v", cfg)
	}
	if _, err := os.Stat(filepath.Join(run, "G.safetensors")); err != nil {
		t.Errorf("no weights in %s: %v", run, err)
	}

	maps := filepath.Join(dir, "maps")
	for _, sub := range []string{"trainA", "trainB"} {
		writeSquares(t, filepath.Join(maps, sub), 3, 32, 32)
	}
	args = strings.Fields(fmt.Sprintf("--dataroot %s --name maps_cyclegan --model cycle_gan --pool_size 50 --no_dropout "+
		"--checkpoints_dir %s --netG resnet_6blocks --ngf 4 --ndf 4 --n_layers_D 2 --netD n_layers --load_size 32 --crop_size 32 "+
		"--n_epochs 1 --n_epochs_decay 0 --max_dataset_size 2 --lambda_A 5 --lambda_B 7 --lambda_identity 0.25", maps, ckpts))
	if err := runTrain("train", append(args, "--quiet", "--log-format", "json")); err != nil {
		t.Fatal(err)
	}
	cfg, err = trainer.LoadConfig(filepath.Join(ckpts, "maps_cyclegan"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Task != trainer.CycleGAN || cfg.G.Dropout || cfg.PoolSize != 50 || cfg.MaxSamples != 2 || cfg.LambdaA != 5 || cfg.LambdaB != 7 ||
		cfg.LambdaIdentity != 0.25 || cfg.D.Kind != models.NLayers || cfg.D.NLayers != 2 {
		t.Errorf("cyclegan run from the reference's options: %+v", cfg)
	}
}

// TestReferenceOptionsRefused: reference options wkd does not implement, or that contradict
// the run, fail naming themselves.
func TestReferenceOptionsRefused(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--lr_policy", "cosine"}, "lr_policy"},
		{[]string{"--init_type", "xavier"}, "init_type"},
		{[]string{"--gpu_ids", "0,1"}, "gpu_ids"},
		{[]string{"--dataset_mode", "unaligned"}, "--dataset_mode unaligned"},
		{[]string{"--name", "x", "--out", filepath.Join(dir, "y")}, "--name x and --out"},
		{[]string{"--direction", "sideways"}, "direction"},
		{[]string{"--preprocess", "none"}, "--preprocess none"},
		{[]string{"--model", "colorization"}, "--model"},
	} {
		err := runTrain("train", append([]string{"--data", dir, "--out", filepath.Join(dir, "run"), "--quiet"}, c.args...))
		if c.args[0] == "--name" {
			err = runTrain("train", append([]string{"--data", dir, "--quiet"}, c.args...))
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("train %s: err = %v, want one naming %q", strings.Join(c.args, " "), err, c.want)
		}
	}
}

// TestTranslateInputs: one file or a folder; A|B pairs split by --aligned and --direction;
// never writing over the inputs.
func TestTranslateInputs(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "toy")
	writeDistinctTestSet(t, root, 2, 32) // 64x32 A|B pairs
	run := filepath.Join(dir, "run")
	writeRun(t, run, root, 4, 1)
	pairs := filepath.Join(root, "test")
	before, _ := os.ReadFile(filepath.Join(pairs, "a.png"))

	if err := runTranslate([]string{"--run", run, "--input", pairs, "--out", pairs}); err == nil || !strings.Contains(err.Error(), "overwrite") {
		t.Errorf("--out equal to --input: err = %v, want a refusal", err)
	}
	if err := runTranslate([]string{"--run", run, "--input", pairs, "--out", pairs + "/"}); err == nil {
		t.Error("--out naming --input with a trailing slash: no error")
	}
	if after, _ := os.ReadFile(filepath.Join(pairs, "a.png")); string(after) != string(before) {
		t.Fatal("an input image changed")
	}

	sides := map[string][]byte{}
	for _, d := range []string{"AtoB", "BtoA"} {
		out := filepath.Join(dir, d)
		if err := runTranslate([]string{"--run", run, "--input", pairs, "--out", out, "--aligned", "--direction", d}); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(filepath.Join(out, "a.png"))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil || img.Bounds().Dx() != 32 || img.Bounds().Dy() != 32 {
			t.Fatalf("%s: output %v (%v), want 32x32 from the 64x32 pair's half", d, img.Bounds(), err)
		}
		sides[d], _ = os.ReadFile(filepath.Join(out, "a.png"))
	}
	if string(sides["AtoB"]) == string(sides["BtoA"]) {
		t.Error("--direction AtoB and BtoA translated the same half")
	}

	one := filepath.Join(dir, "one")
	if err := runTranslate([]string{"--run", run, "--input", filepath.Join(pairs, "b.png"), "--out", one, "--aligned"}); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(one); len(ents) != 1 || ents[0].Name() != "b.png" {
		t.Errorf("a single --input file gave %v", ents)
	}
	odd := filepath.Join(dir, "odd")
	writeSquares(t, odd, 1, 33, 32)
	if err := runTranslate([]string{"--run", run, "--input", odd, "--out", filepath.Join(dir, "o"), "--aligned"}); err == nil || !strings.Contains(err.Error(), "0.png") {
		t.Errorf("--aligned on a 33 px wide image: err = %v, want one naming the file", err)
	}
}

func TestClosestName(t *testing.T) {
	names := slices.Collect(maps.Keys(commands))
	for in, want := range map[string]string{"trian": "train", "distil": "distill", "evl": "eval", "convet": "convert", "zzzzzzzz": ""} {
		if got := closest(in, names); got != want {
			t.Errorf("closest(%q) = %q, want %q", in, got, want)
		}
	}
}
