package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"wkd/ops"
	"wkd/trainer"
)

// TestBadFlagsNameTheFlag runs commands in-process with bad flags: each must fail with an
// error that names what is wrong, before touching any run folder.
func TestBadFlagsNameTheFlag(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "run")
	pics := filepath.Join(t.TempDir(), "pics")
	writeSquares(t, pics, 1, 32, 32)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown model", []string{"train", "--model", "gan3000", "--out", out}, "--model"},
		{"missing dataset", []string{"train", "--data", filepath.Join(dir, "nowhere"), "--out", out}, "nowhere does not exist: `wkd data --name"},
		{"missing run", []string{"translate", "--run", filepath.Join(dir, "norun"), "--input", pics}, "norun does not exist"},
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
		{"bench-infer nets", []string{"bench-infer", "--nets", "vgg-3"}, "--nets"},
		{"bench-infer size", []string{"bench-infer", "--nets", "unet-16", "--size", "100"}, "--size 100 does not fit unet-16"},
		{"bench-infer ratio net", []string{"bench-infer", "--nets", "resnet9-4", "--size", "16", "--reps", "1", "--ratio-net", "unet-16"}, "--ratio-net unet-16"},
		{"node job", []string{"node", "--job", "serve"}, "--job"},
		{"node min nodes", []string{"node", "--min-nodes", "5", "--batch-size", "2", "--data", dir}, "--min-nodes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := wkd(c.args...)
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

// run runs a command line in-process as the binary does: its output and exit status.
func run(argv ...string) (stdout, stderr string, code int) {
	var o, e bytes.Buffer
	code = exitCode(execute(argv, &o, &e), &e)
	return o.String(), e.String(), code
}

// TestHelp: every way of asking for a command's help prints it on stdout, nothing on stderr,
// and exits 0; the help names the command and its flags.
func TestHelp(t *testing.T) {
	for name, c := range commands {
		for _, argv := range [][]string{{name, "-h"}, {name, "--help"}, {name, "-help"}, {"help", name}} {
			out, errOut, code := run(argv...)
			if code != 0 || errOut != "" {
				t.Errorf("wkd %s: exit status %d, stderr %q; want 0 and nothing", strings.Join(argv, " "), code, errOut)
			}
			if !strings.Contains(out, "wkd "+name) || !strings.Contains(out, "--help") {
				t.Errorf("wkd %s: help lacks its usage line or flags:\n%s", strings.Join(argv, " "), out)
			}
			if c.long == "" && !strings.Contains(out, c.summary[1:]) {
				t.Errorf("wkd %s: help lacks the summary %q", strings.Join(argv, " "), c.summary)
			}
		}
	}
	for _, argv := range [][]string{{}, {"-h"}, {"--help"}, {"help"}} {
		out, errOut, code := run(argv...)
		if code != 0 || errOut != "" || !strings.Contains(out, "distill") || !strings.Contains(out, "bench-engine") {
			t.Errorf("wkd %s: exit %d, stderr %q, stdout without the commands:\n%s", strings.Join(argv, " "), code, errOut, out)
		}
	}
	// The help of train and distill lists wkd's flags, then the reference's spellings apart.
	out, _, _ := run("train", "--help")
	flags, ref, ok := strings.Cut(out, "pytorch-CycleGAN-and-pix2pix")
	if !ok || !strings.Contains(flags, "--batch-size") || strings.Contains(flags, "--batch_size") || !strings.Contains(ref, "--batch_size") {
		t.Errorf("wkd train --help: want --batch-size among the flags and --batch_size after them:\n%s", out)
	}
	// Help follows --model wherever it is; node's own --name is among its flags; earlier names
	// of renamed flags are not shown.
	for _, argv := range [][]string{{"train", "-h", "--model", "cyclegan"}, {"train", "--model=cycle_gan", "--help"}} {
		if out, _, _ := run(argv...); !regexp.MustCompile(`--lambda-A float32 .*\(default 10\)`).MatchString(out) {
			t.Errorf("wkd %s: the CycleGAN defaults are not shown:\n%s", strings.Join(argv, " "), out)
		}
	}
	if out, _, _ := run("node", "-h"); !regexp.MustCompile(`--name string +unique node name`).MatchString(out) {
		t.Errorf("wkd node -h does not show the node's --name:\n%s", out)
	}
	if out, _, _ := run("eval", "-h"); strings.Contains(out, "--max-images") || strings.Contains(out, "--samples") {
		t.Errorf("wkd eval -h shows the earlier names of its flags:\n%s", out)
	}
	// keygen -h is help, not a key.
	if out, _, _ := run("keygen", "-h"); !strings.Contains(out, "Usage:") {
		t.Errorf("wkd keygen -h printed %q", out)
	}
}

// TestUsageErrors: a command line wkd cannot parse exits 2 with one line naming the problem,
// a hint where one is close, and where to find the help; a failing run exits 1.
func TestUsageErrors(t *testing.T) {
	cases := []struct {
		argv []string
		want string // in the first line of stderr
		hint string // the second line
	}{
		{[]string{"trian"}, `unknown command "trian" (did you mean "train"?)`, "Run 'wkd --help' for usage."},
		{[]string{"train", "--crop", "32"}, "unknown flag: --crop (did you mean --crop-size?)", "Run 'wkd train --help' for usage."},
		{[]string{"distill", "--alhpa", "1"}, "unknown flag: --alhpa (did you mean --alpha?)", "Run 'wkd distill --help' for usage."},
		{[]string{"eval", "--max-samples", "many"}, `invalid argument "many" for "--max-samples"`, "Run 'wkd eval --help' for usage."},
		{[]string{"train", "--lr"}, "flag needs an argument: --lr", "Run 'wkd train --help' for usage."},
		{[]string{"train", "extra"}, `unexpected argument "extra"`, "Run 'wkd train --help' for usage."},
		{[]string{"summarize"}, "give report.json files", "Run 'wkd summarize --help' for usage."},
		{[]string{"node", "--bogus"}, "unknown flag: --bogus", "Run 'wkd node --help' for usage."},
		{[]string{"help", "trian"}, `unknown command "trian" (did you mean "train"?)`, "Run 'wkd --help' for usage."},
		{[]string{"completion", "bash", "extra"}, `unknown command "extra"`, "Run 'wkd --help' for usage."},
		{[]string{"train", "-max-step", "3"}, "unknown flag: --max-step (did you mean --max-steps?)", "Run 'wkd train --help' for usage."},
		{[]string{"train", "--kd", "x"}, "unknown flag: --kd", "Run 'wkd train --help' for usage."},
		{[]string{"train", "--model", "gan3000"}, `invalid argument "gan3000" for "--model" flag: use pix2pix or cyclegan`, "Run 'wkd train --help' for usage."},
		{[]string{"train", "--model", "pix2pix", "--model", "cyclegan"}, "--model cyclegan after --model pix2pix: give one", "Run 'wkd train --help' for usage."},
		{[]string{"distill", "--log-format", "xml"}, `invalid argument "xml" for "--log-format" flag: use console, json or auto`, "Run 'wkd distill --help' for usage."},
		{[]string{"node", "--job", "serve"}, `invalid argument "serve" for "--job" flag: use train or distill`, "Run 'wkd node --help' for usage."},
	}
	for _, c := range cases {
		out, errOut, code := run(c.argv...)
		if strings.Contains(errOut, "did you mean") != strings.Contains(c.want, "did you mean") {
			t.Errorf("wkd %s: %q; a hint only where one is close", strings.Join(c.argv, " "), errOut)
		}
		lines := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
		if code != 2 || out != "" || len(lines) != 2 || !strings.Contains(lines[0], c.want) || lines[1] != c.hint {
			t.Errorf("wkd %s: exit %d, stdout %q, stderr %q; want 2 and %q then %q", strings.Join(c.argv, " "), code, out, errOut, c.want, c.hint)
		}
	}
	_, errOut, code := run("eval", "--runs", filepath.Join(t.TempDir(), "missing"))
	if code != 1 || !strings.HasPrefix(errOut, "wkd eval: ") || !strings.Contains(errOut, "--runs") {
		t.Errorf("a failing run: exit %d, stderr %q; want 1 and the error after 'wkd eval: '", code, errOut)
	}
}

// parsed parses a command line as the binary does before running it, and returns the flags.
func parsed(t *testing.T, argv ...string) *pflag.FlagSet {
	t.Helper()
	root := newRoot(argv, io.Discard, io.Discard)
	cmd, rest, err := root.Find(longDashes(root, argv))
	if err != nil {
		t.Fatalf("wkd %s: %v", strings.Join(argv, " "), err)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Fatalf("wkd %s: %v", strings.Join(argv, " "), err)
	}
	return cmd.Flags()
}

// TestFlagSpellings: Go's single-dash long flags and the earlier names of renamed flags still
// set the flag they name; a value that starts with a dash stays a value.
func TestFlagSpellings(t *testing.T) {
	values := []struct {
		argv []string
		flag string
		want string
	}{
		{[]string{"translate", "-G", "G_A"}, "G", "G_A"},
		{[]string{"translate", "-G=G_B", "-netG", "unet_256"}, "netG", "unet_256"},
		{[]string{"train", "-max-steps=3"}, "max-steps", "3"},
		{[]string{"train", "--beta1", "-0.5", "-lr", "0.1"}, "beta1", "-0.5"},
		{[]string{"train", "--data", "-lr", "--max-steps", "2"}, "data", "-lr"},
		{[]string{"train", "--model=cyclegan"}, "lambda-A", "10"},
		{[]string{"train", "-model", "cyclegan"}, "pool-size", "50"},
		{[]string{"train", "--model=cycle_gan"}, "gan-mode", "lsgan"},
		{[]string{"node", "--job=train", "--model", "cyclegan"}, "job", "train"},
		{[]string{"eval", "--max-images", "7"}, "max-samples", "7"},
		{[]string{"logs", "-token-file", "t"}, "nats-token-file", "t"},
	}
	for _, c := range values {
		if got := parsed(t, c.argv...).Lookup(c.flag).Value.String(); got != c.want {
			t.Errorf("wkd %s: --%s is %q, want %q", strings.Join(c.argv, " "), c.flag, got, c.want)
		}
	}
	if args := parsed(t, "summarize", "--out", "s.md", "--", "-json").Args(); !slices.Equal(args, []string{"-json"}) {
		t.Errorf("wkd summarize --out s.md -- -json: arguments %q, want the file -json", args)
	}

	cases := []struct {
		argv []string
		want string
	}{
		{[]string{"bench-engine", "-size", "30"}, "--size 30"},
		{[]string{"bench-engine", "-size=30"}, "--size 30"},
		{[]string{"bench-inception", "--batch", "0"}, "--batch-size 0"},
		{[]string{"train-features", "--data", "x", "--samples", "1", "--batch", "2"}, "--max-samples 1: want at least --batch-size (2)"},
		{[]string{"eval", "--max-images", "0"}, "--max-samples 0"},
		{[]string{"train", "--beta1", "-Inf", "--out", filepath.Join(t.TempDir(), "r")}, "--beta1"},
	}
	for _, c := range cases {
		err := execute(c.argv, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("wkd %s: %v, want an error with %q", strings.Join(c.argv, " "), err, c.want)
		}
	}
}

// TestCompletion: wkd completion writes a script for each shell, and completes commands and
// flags through cobra's hidden __complete command.
func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		out, errOut, code := run("completion", shell)
		if code != 0 || errOut != "" || !strings.Contains(out, "wkd") || len(out) < 1000 {
			t.Errorf("wkd completion %s: exit %d, stderr %q, %d bytes", shell, code, errOut, len(out))
		}
	}
	out, _, code := run("__complete", "dis")
	if code != 0 || !strings.Contains(out, "distill") || strings.Contains(out, "train\t") {
		t.Errorf("completing 'wkd dis': %q", out)
	}
	out, _, _ = run("__complete", "distill", "--teacher-n")
	for _, f := range []string{"--teacher-netG", "--teacher-ngf", "--teacher-norm", "--teacher-n-blocks"} {
		if !strings.Contains(out, f) {
			t.Errorf("completing 'wkd distill --teacher-n' lacks %s: %q", f, out)
		}
	}
	if strings.Contains(out, "--batch_size") {
		t.Errorf("completion offers the hidden reference spellings: %q", out)
	}
}

// TestVersion: wkd --version and wkd version print one line, the program and its version.
func TestVersion(t *testing.T) {
	for _, argv := range []string{"--version", "version"} {
		out, errOut, code := run(argv)
		if want := "wkd " + version() + "\n"; code != 0 || errOut != "" || out != want {
			t.Errorf("wkd %s: exit %d, stdout %q, stderr %q; want %q", argv, code, out, errOut, want)
		}
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
		fs := pflag.NewFlagSet("train", pflag.ContinueOnError)
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
