package main

import (
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/spf13/pflag"

	"wkd/models"
	"wkd/ops"
)

// fuzzValues are the values the fuzz tests give flags: edges, sizes networks care about,
// names of every enum, and garbage.
var fuzzValues = []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "-1", "-3", "12", "16", "18", "30", "32",
	"36", "48", "64", "100", "256", "1e9", "0.5", "1e-300", "NaN", "Inf", "-Inf", "", "abc", "2147483648",
	"-2147483649", "9223372036854775807", "unet", "unet_128", "unet_256", "resnet", "resnet_6blocks",
	"resnet_9blocks", "basic", "n_layers", "pixel", "batch", "instance", "none", "l1", "mse", "wavelet",
	"vanilla", "lsgan", "cpu", "cuda", "pix2pix", "cyclegan", "true", "false", "json", "console"}

var runFlagNames = []string{"model", "netG", "ngf", "n-blocks", "num-downs", "netD", "ndf", "n-layers-D", "norm",
	"no-dropout", "input-nc", "output-nc", "gan-mode", "lambda-l1", "lambda-A", "lambda-B", "lambda-identity",
	"pool-size", "lr", "beta1", "epochs", "epochs-decay", "batch-size", "seed", "load-size", "crop-size", "no-flip",
	"max-samples", "checkpoint-every", "keep-checkpoints", "log-every", "max-steps", "threads", "device",
	"log-format", "local-nodes"}

var distillFlagNames = []string{"kd", "alpha", "levels", "kd-loss", "teacher-netG", "teacher-ngf", "teacher-norm",
	"teacher-n-blocks", "teacher-num-downs", "teacher-no-dropout", "use-teacher-d"}

// fuzzArgs turns bytes into a command line: each pair of bytes picks a flag and a value.
func fuzzArgs(b []byte, names []string) []string {
	var args []string
	for i := 0; i+1 < len(b); i += 2 {
		args = append(args, "--"+names[int(b[i])%len(names)]+"="+fuzzValues[int(b[i+1])%len(fuzzValues)])
	}
	return args
}

// checkRunConfig parses and validates a train or distill command line as wkd does; a config
// that passes must build every network it names and run them forward at its crop size
// (where that is small enough to try quickly).
func checkRunConfig(t *testing.T, args []string, distill bool) {
	f, err := newRunFlags(args, distill)
	if err != nil {
		return
	}
	fs := pflag.NewFlagSet("fuzz", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	bindRunFlags(fs, &f, distill)
	fs.BoolVar(&f.overwrite, "overwrite", false, "")
	fs.IntVar(&f.localNodes, "local-nodes", 0, "")
	fs.Bool("overlap", true, "")
	cfg, err := parseRun(fs, &f, args, distill)
	if err != nil {
		return
	}
	if err := cfg.Validate(); err != nil {
		if !strings.Contains(err.Error(), "--") {
			t.Errorf("wkd %v: error names no flag: %v", args, err)
		}
		return
	}
	if math.IsNaN(float64(cfg.LR)) || math.IsInf(float64(cfg.Alpha), 0) {
		t.Errorf("wkd %v: a non-finite value passed validation: %+v", args, cfg)
	}
	specs := []models.Spec{cfg.G, cfg.D}
	if distill && cfg.TeacherG.Kind != 0 {
		specs = append(specs, cfg.TeacherG)
	}
	for _, s := range specs {
		m, err := models.Build(s)
		if err != nil {
			t.Errorf("wkd %v: valid config, but %v does not build: %v", args, s, err)
			continue
		}
		if cfg.CropSize > 64 || s.NGF > 16 || s.NDF > 16 {
			continue // shapes were checked by validation; a forward would take too long here
		}
		x := ops.New(1, s.InputNC, cfg.CropSize, cfg.CropSize)
		m.SetRNG(ops.NewRNG(1))
		m.Forward(nil, x, true)
	}
}

// fuzzSeed encodes flag, value pairs as fuzzArgs reads them.
func fuzzSeed(t testing.TB, names []string, pairs ...string) []byte {
	var b []byte
	for i := 0; i+1 < len(pairs); i += 2 {
		n, v := slices.Index(names, pairs[i]), slices.Index(fuzzValues, pairs[i+1])
		if n < 0 || v < 0 {
			t.Fatalf("fuzz seed: --%s=%s is not in the vocabulary", pairs[i], pairs[i+1])
		}
		b = append(b, byte(n), byte(v))
	}
	return b
}

func FuzzTrainFlags(f *testing.F) {
	for _, seed := range [][]string{
		{"netG", "unet_256", "crop-size", "30"},
		{"crop-size", "36", "load-size", "36"},
		{"netG", "unet", "num-downs", "7"},
		{"netD", "n_layers", "n-layers-D", "6"},
		{"netG", "resnet_6blocks", "crop-size", "30", "load-size", "32"},
		{"threads", "-3", "local-nodes", "-1", "lambda-l1", "-1"},
		{"lambda-l1", "NaN", "lr", "Inf", "beta1", "-Inf"},
		{"model", "cyclegan", "netG", "resnet", "n-blocks", "0", "crop-size", "16", "load-size", "18", "ngf", "4", "ndf", "4"},
		{"netG", "unet", "num-downs", "5", "netD", "pixel", "ngf", "4", "ndf", "4", "norm", "batch"},
	} {
		f.Add(fuzzSeed(f, runFlagNames, seed...))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkRunConfig(t, fuzzArgs(b, runFlagNames), false)
	})
}

func FuzzDistillFlags(f *testing.F) {
	names := append(append([]string(nil), runFlagNames...), distillFlagNames...)
	for _, seed := range [][]string{
		{"teacher-netG", "resnet_6blocks", "teacher-ngf", "12"},
		{"teacher-netG", "unet", "teacher-num-downs", "3"},
		{"levels", "12", "kd", "l1"},
		{"netD", "n_layers", "n-layers-D", "5", "use-teacher-d", "true"},
		{"alpha", "NaN", "kd-loss", "mse"},
		{"teacher-netG", "unet_128", "teacher-norm", "none", "crop-size", "32"},
	} {
		f.Add(fuzzSeed(f, names, seed...))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		args := append([]string{"--teacher", "runs/teacher"}, fuzzArgs(b, names)...)
		checkRunConfig(t, args, true)
	})
}

var evalFixture struct {
	once            sync.Once
	dir, run, feats string
}

// FuzzEvalAndTranslateFlags drives wkd eval and wkd translate, for real, with a tiny run
// folder, dataset and feature network: any flag set ends in an error or a report, never a
// panic.
func FuzzEvalAndTranslateFlags(f *testing.F) {
	evalNames := []string{"max-samples", "speed-size", "speed-reps", "grid-rows", "levels", "fid-batch", "kid-subsets", "kid-subset-size", "names"}
	translateNames := []string{"netG", "ngf", "norm", "n-blocks", "num-downs", "input-nc", "output-nc", "G", "device", "aligned", "direction"}
	f.Cleanup(func() {
		if evalFixture.dir != "" {
			os.RemoveAll(evalFixture.dir)
		}
	})
	f.Add([]byte{0, 1, 1, 16, 2, 1, 3, 0, 4, 3}, false)
	f.Add([]byte{1, 20, 4, 10}, false)
	f.Add([]byte{0, 2, 4, 2}, true)
	f.Fuzz(func(t *testing.T, b []byte, translate bool) {
		evalFixture.once.Do(func() {
			dir, err := os.MkdirTemp("", "wkd-fuzz-")
			if err != nil {
				t.Fatal(err)
			}
			evalFixture.dir = dir
			root := filepath.Join(dir, "toy")
			writeAlignedTestSet(t, root, 2, 32)
			evalFixture.run = filepath.Join(dir, "run")
			writeRun(t, evalFixture.run, root, 4, 1)
			evalFixture.feats = writeFeatures(t, dir)
		})
		out := filepath.Join(evalFixture.dir, "out")
		if translate {
			// A run folder, or its weights file with the architecture from the flags.
			src := []string{"--run", evalFixture.run}
			if len(b) > 0 && b[0]%2 == 0 {
				src = []string{"--weights", filepath.Join(evalFixture.run, "G.safetensors")}
			}
			args := append(append(src, "--input", filepath.Join(evalFixture.dir, "toy", "test"), "--out", out), fuzzArgs(b, translateNames)...)
			_ = runTranslate(args)
			return
		}
		args := append([]string{"--runs", evalFixture.run, "--features", evalFixture.feats, "--out", out, "--speed-reps", "1"}, fuzzArgs(b, evalNames)...)
		_ = runEval(args)
	})
}

// FuzzCommandLines parses random command lines of every command as the binary does before it
// runs one: the command's lookup, the one-dash rewriting, flag parsing and the argument check
// end in an error or a parsed command line, never a panic.
func FuzzCommandLines(f *testing.F) {
	names := append(slices.Sorted(maps.Keys(commands)), "help", "completion", "nosuch", "")
	var vocab []string
	seen := map[string]bool{}
	for _, n := range names[:len(commands)] {
		cmd, _, err := newRoot([]string{n}, io.Discard, io.Discard).Find([]string{n})
		if err != nil {
			f.Fatal(err)
		}
		cmd.Flags().VisitAll(func(fl *pflag.Flag) {
			if !seen[fl.Name] {
				seen[fl.Name] = true
				vocab = append(vocab, "--"+fl.Name, "-"+fl.Name, "--"+fl.Name+"=")
			}
		})
	}
	vocab = append(vocab, "-", "--", "-h", "--help", "-v", "--version", "-x", "=", "--=", "-=", "---", "--no-such")
	vocab = append(vocab, fuzzValues...)
	f.Add([]byte{0, 1, 2, 3})
	f.Add([]byte{5, 200, 3, 40, 41})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		argv := []string{names[int(b[0])%len(names)]}
		for i, c := range b[1:] {
			tok := vocab[int(c)%len(vocab)]
			if strings.HasSuffix(tok, "=") && i%2 == 0 {
				tok += fuzzValues[int(c)%len(fuzzValues)]
			}
			argv = append(argv, tok)
		}
		root := newRoot(argv, io.Discard, io.Discard)
		cmd, rest, err := root.Find(longDashes(root, argv))
		if err != nil {
			return
		}
		if err := cmd.ParseFlags(rest); err != nil {
			return
		}
		_ = cmd.ValidateArgs(cmd.Flags().Args())
	})
}
