package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"wkd/ops"
	"wkd/trainer"
)

// TestBadFlagsNameTheFlag runs commands in-process with bad flags: each must fail with an
// error that names what is wrong, before touching any run folder.
func TestBadFlagsNameTheFlag(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "run")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown model", []string{"train", "--model", "gan3000", "--out", out}, "--model"},
		{"missing dataset", []string{"train", "--data", filepath.Join(dir, "nowhere"), "--out", out}, "nowhere"},
		{"batch size", []string{"train", "--batch-size", "0", "--data", dir, "--out", out}, "--batch-size"},
		{"gan mode", []string{"train", "--gan-mode", "wgan", "--data", dir, "--out", out}, "--gan-mode"},
		{"device", []string{"distill", "--device", "tpu", "--data", dir, "--out", out}, "--device"},
		{"kd kind", []string{"distill", "--kd", "feature", "--data", dir, "--out", out}, "--kd"},
		{"kd loss", []string{"distill", "--kd-loss", "huber", "--data", dir, "--out", out}, "--kd-loss"},
		{"levels", []string{"distill", "--levels", "0", "--data", dir, "--out", out}, "--levels"},
		{"teacher", []string{"distill", "--teacher", filepath.Join(dir, "noteacher"), "--data", dir, "--out", out}, "noteacher"},
		{"lr", []string{"train", "--lr", "abc", "--out", out}, "lr"},
		{"netG", []string{"train", "--netG", "vgg", "--out", out}, "vgg"},
		{"norm", []string{"train", "--norm", "layer", "--out", out}, "layer"},
		{"resume without run", []string{"train", "--resume", "--out", filepath.Join(dir, "none")}, "--resume"},
		{"stray argument", []string{"train", "extra"}, "extra"},
		{"local nodes batch", []string{"distill", "--local-nodes", "4", "--batch-size", "2", "--data", dir, "--out", out}, "--batch-size"},
		{"eval runs", []string{"eval", "--runs", filepath.Join(dir, "missing")}, "--runs"},
		{"translate input", []string{"translate", "--run", dir}, "--input"},
		{"bench size", []string{"bench-engine", "--size", "30"}, "--size"},
		{"node job", []string{"node", "--job", "serve"}, "--job"},
		{"node min nodes", []string{"node", "--min-nodes", "5", "--batch-size", "2", "--data", dir}, "--min-nodes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd, ok := commands[c.args[0]]
			if !ok {
				t.Fatalf("no command %q", c.args[0])
			}
			err := cmd.run(c.args[1:])
			if err == nil {
				t.Fatalf("wkd %s: no error", strings.Join(c.args, " "))
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("wkd %s: error %q does not name %q", strings.Join(c.args, " "), err, c.want)
			}
		})
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a failed command created the run folder")
	}
}

func TestFreshRunRefusesAFolderWithARun(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "ckpt"), 0o755); err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(dir, "ckpt", "step-00000008.safetensors")
	if err := os.WriteFile(old, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := freshRunFolder(dir, false)
	if err == nil || !strings.Contains(err.Error(), "--resume") || !strings.Contains(err.Error(), "--overwrite") {
		t.Fatalf("err = %v, want a refusal naming --resume and --overwrite", err)
	}
	if _, err := os.Stat(old); err != nil {
		t.Fatal("the refusal removed the old run")
	}
	if err := freshRunFolder(dir, true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Error("--overwrite left the old checkpoint")
	}
}

// TestHelpExitsZero: -h on every command prints its flags and is not an error.
func TestHelpExitsZero(t *testing.T) {
	for name, c := range commands {
		if code := exitCode(c, []string{"-h"}); code != 0 {
			t.Errorf("wkd %s -h: exit status %d, want 0", name, code)
		}
	}
	failing := command{name: "x", run: func([]string) error { return os.ErrNotExist }}
	if code := exitCode(failing, nil); code != 1 {
		t.Errorf("a failing command: exit status %d, want 1", code)
	}
}

// --resume without --device continues where the run was saved (a cuda run stays on cuda); an
// explicit --device moves it; a new run without --device is on the cpu.
func TestResumeKeepsTheSavedDevice(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	saved := trainer.DefaultPix2Pix()
	saved.Dir, saved.Device = dir, trainer.DeviceCUDA
	if err := saved.Save(); err != nil {
		t.Fatal(err)
	}
	// Without the CUDA backend (the default build), resuming a cuda run without --device is
	// refused with what to do; with it (-tags cuda or cudaemu), the run stays on the GPU.
	onSaved := trainer.DeviceCUDA
	if !ops.HasBackend(trainer.DeviceCUDA) {
		onSaved = ""
	}
	cases := []struct {
		args []string
		want string // "" for an error naming config.json and --device cpu
	}{
		{[]string{"--out", dir, "--resume"}, onSaved},
		{[]string{"--out", dir, "--resume-from", "x.safetensors"}, onSaved},
		{[]string{"--out", dir, "--resume", "--device", "cpu"}, trainer.DeviceCPU},
		{[]string{"--out", dir}, trainer.DeviceCPU},
		{[]string{"--out", dir, "--device", "cuda"}, trainer.DeviceCUDA},
	}
	for _, c := range cases {
		fs := flag.NewFlagSet("train", flag.ContinueOnError)
		f, err := newRunFlags(c.args, false)
		if err != nil {
			t.Fatal(err)
		}
		bindRunFlags(fs, &f, false)
		cfg, err := parseRun(fs, &f, c.args, false)
		if c.want == "" {
			if err == nil || !strings.Contains(err.Error(), "config.json") || !strings.Contains(err.Error(), "--device cpu") {
				t.Errorf("wkd train %s without CUDA: error %v, want one naming config.json and --device cpu", strings.Join(c.args, " "), err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		if cfg.Device != c.want {
			t.Errorf("wkd train %s: device %q, want %q", strings.Join(c.args, " "), cfg.Device, c.want)
		}
	}
}
