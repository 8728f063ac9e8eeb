package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"wkd/data"
	"wkd/models"
	"wkd/ops"
	"wkd/trainer"
)

func init() {
	register(command{name: "train", summary: "train a teacher GAN (pix2pix or CycleGAN) from scratch", group: groupMake,
		long:  "Trains a pix2pix or CycleGAN teacher with the reference recipe.",
		flags: func(fs *pflag.FlagSet, argv []string) func([]string) error { return trainFlags("train", fs, argv) },
		help:  printReferenceNames})
	register(command{name: "distill", summary: "distill a small student generator from a teacher (--kd wavelet|pixel|none)", group: groupMake,
		long: "Trains a small student generator against a frozen teacher: the task loss plus alpha * KD,\n" +
			"KD being the teacher's high-frequency Haar bands (wavelet), its pixels, or nothing.",
		flags: func(fs *pflag.FlagSet, argv []string) func([]string) error { return trainFlags("distill", fs, argv) },
		help:  printReferenceNames})
}

// runFlags are the flags of train and distill, bound onto a Config.
type runFlags struct {
	cfg        trainer.Config
	resume     bool
	resumeFrom string
	logFormat  string
	quiet      bool
	noDropout  bool
	// The teacher's spec when --teacher is a weights file and --teacher-netG is given.
	teacherNorm      models.Norm
	teacherNoDropout bool
	ref              refFlags
	localNodes       int
	overwrite        bool
}

// presetFor picks the recipe whose defaults the flags start from, by a --model in args.
func presetFor(args []string) (trainer.Config, error) {
	for i, a := range args {
		v, ok := "", false
		switch {
		case a == "--":
			return trainer.DefaultPix2Pix(), nil
		case a == "--model" || a == "-model":
			if i+1 < len(args) {
				v, ok = args[i+1], true
			}
		case strings.HasPrefix(a, "--model=") || strings.HasPrefix(a, "-model="):
			v, ok = a[strings.Index(a, "=")+1:], true
		}
		if ok {
			switch trainer.Task(v) {
			case trainer.Pix2Pix:
				return trainer.DefaultPix2Pix(), nil
			case trainer.CycleGAN, "cycle_gan": // the reference's name
				return trainer.DefaultCycleGAN(), nil
			}
			return trainer.Config{}, fmt.Errorf("--model %q: use pix2pix or cyclegan", v)
		}
	}
	return trainer.DefaultPix2Pix(), nil
}

func bindRunFlags(fs *pflag.FlagSet, f *runFlags, distill bool) {
	c := &f.cfg
	model := string(c.Task)
	// presetFor read --model before the flags were bound, their defaults following it: here
	// it is only checked.
	fs.Var(funcFlag{typ: "name", get: func() string { return model }, set: func(v string) error {
		switch {
		case v != "pix2pix" && v != "cyclegan" && v != "cycle_gan":
			return errors.New("use pix2pix or cyclegan")
		case trainer.Task(strings.ReplaceAll(v, "_", "")) != c.Task:
			return fmt.Errorf("--model %s after --model %s: give one", v, c.Task)
		}
		return nil
	}}, "model", "pix2pix|cyclegan: the task and its recipe; the defaults shown follow it")
	fs.StringVar(&c.Data, "data", "datasets/edges2shoes-mini", "dataset folder: aligned (train/, test/) for pix2pix, unaligned (trainA/, trainB/, ...) for cyclegan")
	fs.StringVar(&c.Dir, "out", "runs/"+map[bool]string{false: "teacher", true: "student"}[distill], "run folder: config.json, log.jsonl, ckpt/, final weights")
	fs.Var(&c.G.Kind, "netG", "generator: "+models.KindNames()+" (generators only)")
	fs.IntVar(&c.G.NGF, "ngf", c.G.NGF, "generator width (channels of the first layer)")
	fs.IntVar(&c.G.NBlocks, "n-blocks", 6, "residual blocks when --netG resnet")
	fs.IntVar(&c.G.NumDowns, "num-downs", 5, "downsamplings when --netG unet")
	fs.Var(&c.D.Kind, "netD", "discriminator: basic (70x70 PatchGAN)|n_layers|pixel")
	fs.IntVar(&c.D.NDF, "ndf", c.D.NDF, "discriminator width; the paper finds a smaller D helps a compressed G")
	fs.IntVar(&c.D.NLayers, "n-layers-D", 3, "layers when --netD n_layers")
	fs.Var(&c.G.Norm, "norm", "normalization of G and D: "+models.NormNames())
	fs.BoolVar(&f.noDropout, "no-dropout", !c.G.Dropout, "no dropout in the generator")
	fs.IntVar(&c.G.InputNC, "input-nc", 3, "input channels: 1 (grayscale) or 3 (RGB)")
	fs.IntVar(&c.G.OutputNC, "output-nc", 3, "output channels: 1 or 3")
	fs.StringVar((*string)(&c.GANMode), "gan-mode", string(c.GANMode), "vanilla|lsgan")
	fs.Float32Var(&c.LambdaL1, "lambda-l1", c.LambdaL1, "pix2pix L1 weight")
	fs.Float32Var(&c.LambdaA, "lambda-A", c.LambdaA, "CycleGAN cycle weight A->B->A")
	fs.Float32Var(&c.LambdaB, "lambda-B", c.LambdaB, "CycleGAN cycle weight B->A->B")
	fs.Float32Var(&c.LambdaIdentity, "lambda-identity", c.LambdaIdentity, "CycleGAN identity weight, relative to the cycle weights")
	fs.IntVar(&c.PoolSize, "pool-size", c.PoolSize, "image pool size (CycleGAN); 0 disables it")
	fs.Float32Var(&c.LR, "lr", c.LR, "Adam learning rate")
	fs.Float32Var(&c.Beta1, "beta1", c.Beta1, "Adam beta1")
	fs.IntVar(&c.Epochs, "epochs", 10, "epochs at the initial learning rate")
	fs.IntVar(&c.EpochsDecay, "epochs-decay", 10, "epochs with the learning rate decaying linearly to 0")
	fs.IntVar(&c.BatchSize, "batch-size", c.BatchSize, "global batch size (summed over nodes)")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "random seed (init, data order, augmentation, dropout, pool)")
	fs.IntVar(&c.LoadSize, "load-size", 36, "resize images to this size before cropping")
	fs.IntVar(&c.CropSize, "crop-size", 32, "random crop size (the training resolution)")
	fs.BoolVar(&c.NoFlip, "no-flip", false, "no random horizontal flips")
	fs.Var(directionFlag(&c.BtoA), "direction", "AtoB|BtoA: which side of the data is the input; BtoA swaps them, as facades and maps need")
	fs.Var(funcFlag{typ: "name", set: func(v string) error { c.Preprocess = v; return nil }, get: func() string { return cmp.Or(c.Preprocess, "resize_and_crop") }},
		"preprocess", "resize_and_crop|crop|scale_width_and_crop: how images become --crop-size squares")
	fs.IntVar(&c.MaxSamples, "max-samples", 0, "use at most this many training images (0: all)")
	fs.IntVar(&c.CheckpointEvery, "checkpoint-every", c.CheckpointEvery, "write a checkpoint every N steps (and at the end)")
	fs.IntVar(&c.KeepCheckpoints, "keep-checkpoints", c.KeepCheckpoints, "how many recent checkpoints to keep")
	fs.IntVar(&c.LogEvery, "log-every", c.LogEvery, "log losses every N steps")
	fs.IntVar(&c.MaxSteps, "max-steps", 0, "stop after N steps in all (0: run every epoch)")
	fs.IntVar(&c.Threads, "threads", 0, "compute threads (0: all cores)")
	fs.StringVar(&c.Device, "device", "", "cpu|cuda: where networks, activations and optimizer state live; cuda (GPU 0) needs a binary built with -tags cuda (default cpu for a new run; with --resume, the device the run was saved with)")
	fs.BoolVar(&f.resume, "resume", false, "continue from the newest checkpoint in --out")
	fs.StringVar(&f.resumeFrom, "resume-from", "", "continue from this checkpoint file")
	f.logFormat = "auto"
	fs.Var(funcFlag{typ: "name", get: func() string { return f.logFormat }, set: func(v string) error {
		if v != "console" && v != "json" && v != "auto" {
			return errors.New("use console, json or auto")
		}
		f.logFormat = v
		return nil
	}}, "log-format", "console|json|auto (console on a terminal)")
	fs.BoolVar(&f.quiet, "quiet", false, "no progress bar")
	if distill {
		fs.StringVar(&c.Teacher, "teacher", "runs/teacher", "teacher: a wkd run folder, or a weights file with --teacher-netG/--teacher-ngf")
		fs.Var(optionalName(&c.TeacherG.Kind), "teacher-netG", "teacher architecture when --teacher is a weights file that does not record it: "+models.GeneratorNames())
		fs.IntVar(&c.TeacherG.NGF, "teacher-ngf", 64, "teacher width, with --teacher-netG")
		fs.Var(optionalName(&f.teacherNorm), "teacher-norm", "teacher normalization, with --teacher-netG: "+models.NormNames()+" (default: --norm)")
		fs.IntVar(&c.TeacherG.NBlocks, "teacher-n-blocks", 9, "teacher residual blocks, with --teacher-netG resnet")
		fs.IntVar(&c.TeacherG.NumDowns, "teacher-num-downs", 8, "teacher downsamplings, with --teacher-netG unet")
		fs.BoolVar(&f.teacherNoDropout, "teacher-no-dropout", !c.G.Dropout, "the teacher has no dropout layers, with --teacher-netG")
		fs.StringVar((*string)(&c.KD), "kd", string(c.KD), "wavelet|pixel|none: what the student learns from the teacher")
		fs.Float32Var(&c.Alpha, "alpha", c.Alpha, "weight of the KD term; the log's kd_share helps set it")
		fs.IntVar(&c.Levels, "levels", c.Levels, "Haar DWT levels of wavelet KD")
		fs.StringVar((*string)(&c.KDLoss), "kd-loss", string(c.KDLoss), "l1|mse: distance of the KD term")
		fs.BoolVar(&c.UseTeacherD, "use-teacher-d", false, "start the student's discriminator from the teacher's (its run folder's newest checkpoint); needs the teacher's --netD, --ndf, --n-layers-D and --norm")
	}
	bindReferenceFlags(fs, f, &f.ref)
}

// optionalName is a flag of a models name whose zero value means "not given".
func optionalName[T interface {
	comparable
	String() string
}, P interface {
	*T
	Set(string) error
}](v P) funcFlag {
	return funcFlag{typ: "name", set: P(v).Set, get: func() string {
		var zero T
		if *v == zero {
			return ""
		}
		return (*v).String()
	}}
}

// directionFlag is --direction: AtoB or BtoA, stored as whether the sides swap.
func directionFlag(btoa *bool) funcFlag {
	return funcFlag{typ: "name",
		set: func(v string) error {
			switch v {
			case "AtoB", "BtoA":
				*btoa = v == "BtoA"
				return nil
			}
			return fmt.Errorf("%q: use AtoB or BtoA", v)
		},
		get: func() string { return map[bool]string{false: "AtoB", true: "BtoA"}[*btoa] }}
}

// runTrain runs wkd train or wkd distill in this process.
func runTrain(name string, args []string) error { return wkd(append([]string{name}, args...)...) }

// trainFlags binds the flags of train or distill and returns the run.
func trainFlags(name string, fs *pflag.FlagSet, argv []string) func([]string) error {
	distill := name == "distill"
	f, presetErr := newRunFlags(argv, distill)
	bindRunFlags(fs, &f, distill)
	fs.BoolVar(&f.overwrite, "overwrite", false, "start afresh in an --out that holds a run: delete its checkpoints, log and weights first")
	fs.IntVar(&f.localNodes, "local-nodes", 0, "train data-parallel on N node processes on this machine, with an embedded NATS server")
	fs.Bool("overlap", true, "with --local-nodes: average gradient buckets while backward still runs")
	return func(args []string) error {
		if presetErr != nil {
			return presetErr
		}
		cfg, err := resolveRun(fs, &f, distill)
		if err != nil {
			return err
		}
		return train(name, argv[slices.Index(argv, name)+1:], f, cfg)
	}
}

// train runs a train or distill job as its flags say: here, or on --local-nodes processes.
func train(name string, args []string, f runFlags, cfg trainer.Config) error {
	if !f.resume && f.resumeFrom == "" {
		if err := freshRunFolder(cfg.Dir, f.overwrite); err != nil {
			return err
		}
	}
	if f.localNodes > 0 {
		return runLocalCluster(name, dropFlag(args, "overwrite", false), f.localNodes, cfg)
	}

	out, err := logWriter(f.logFormat)
	if err != nil {
		return err
	}
	var opts []trainer.Option
	if !f.quiet && isTerminal(os.Stderr) {
		opts = append(opts, trainer.WithProgress(os.Stderr))
	}
	t, err := trainer.New(cfg, out, opts...)
	if err != nil {
		return withDataHint(err, cfg.Data)
	}
	defer t.Close()
	if f.resume || f.resumeFrom != "" {
		if err := t.Resume(f.resumeFrom); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	t0 := time.Now()
	if err := t.Run(ctx); err != nil {
		if errors.Is(err, context.Canceled) {
			return fmt.Errorf("interrupted at step %d; continue with: wkd %s --out %s --resume", t.Step(), name, cfg.Dir)
		}
		return err
	}
	fmt.Fprintf(os.Stderr, "%s done: %d steps in %s; weights in %s\n", name, t.Step(), time.Since(t0).Round(time.Second), cfg.Dir)
	return nil
}

// withDataHint adds to a dataset that is not there how to build one.
func withDataHint(err error, dir string) error {
	if _, serr := os.Stat(dir); !errors.Is(err, data.ErrMissingFolder) || !os.IsNotExist(serr) {
		return err
	}
	return fmt.Errorf("%w\n--data %s does not exist: `wkd data --name %s` builds the default dataset, `wkd data -h` lists the others (`make demo` builds datasets/sketch2texture), or give your own folder",
		err, dir, data.Edges2ShoesMini)
}

// logWriter returns where log lines go: a console formatter on a terminal, else JSON.
func logWriter(format string) (io.Writer, error) {
	switch format {
	case "json":
		return os.Stdout, nil
	case "console":
		return zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.TimeOnly}, nil
	case "auto":
		if isTerminal(os.Stderr) {
			return zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.TimeOnly}, nil
		}
		return os.Stdout, nil
	}
	return nil, fmt.Errorf("--log-format %q: use console, json or auto", format)
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// maxLocalNodes bounds the node processes one machine starts.
const maxLocalNodes = 64

// newRunFlags starts a run's flags from the recipe --model names, with the small-image defaults.
func newRunFlags(args []string, distill bool) (runFlags, error) {
	preset, err := presetFor(args)
	if err != nil {
		return runFlags{}, err
	}
	applySmallDefaults(&preset, distill)
	return runFlags{cfg: preset}, nil
}

// applySmallDefaults sets the defaults for the built-in 32x32 datasets. The reference's
// 256x256 recipe is --load-size 286 --crop-size 256 --netG unet_256 (pix2pix) or
// resnet_9blocks (CycleGAN).
func applySmallDefaults(preset *trainer.Config, distill bool) {
	preset.G.Kind, preset.G.NGF = models.ResNet, 32
	if preset.Task == trainer.Pix2Pix {
		preset.G.Kind = models.UNet
	}
	preset.CheckpointEvery, preset.LogEvery = 500, 50
	if distill {
		preset.G.NGF, preset.D.NDF = 8, 32
		preset.KD, preset.Alpha = trainer.KDWavelet, 1
		if preset.Task == trainer.Pix2Pix {
			preset.Alpha = 100 // L1 lambda is 100: the KD term must be comparable to matter
		}
	}
}

// resolveRun turns a run's parsed flags into its configuration: the flags of a new run, or
// the saved configuration of the run --resume continues.
func resolveRun(fs *pflag.FlagSet, f *runFlags, distill bool) (trainer.Config, error) {
	if f.localNodes < 0 || f.localNodes > maxLocalNodes {
		return trainer.Config{}, fmt.Errorf("--local-nodes %d: use 0 (one process) to %d node processes", f.localNodes, maxLocalNodes)
	}
	if err := applyReferenceFlags(fs, f, &f.ref); err != nil {
		return trainer.Config{}, err
	}
	cfg := f.apply(distill)
	if f.resume || f.resumeFrom != "" {
		var err error
		if cfg, err = resumedConfig(fs, cfg, f.resumeFrom, distill); err != nil {
			return cfg, err
		}
	}
	if cfg.Device == "" {
		cfg.Device = trainer.DeviceCPU
	}
	return cfg, nil
}

// apply turns parsed flags into a new run's configuration.
func (f *runFlags) apply(distill bool) trainer.Config {
	cfg := f.cfg
	cfg.G.Dropout = !f.noDropout
	cfg.D.Norm = cfg.G.Norm
	cfg.D.InputNC = cfg.G.OutputNC
	if cfg.Task == trainer.Pix2Pix {
		cfg.D.InputNC = cfg.G.InputNC + cfg.G.OutputNC // D sees (A, B) pairs
	}
	if !distill {
		cfg.KD = trainer.KDNone
	}
	if cfg.TeacherG.Kind == 0 {
		cfg.TeacherG = models.Spec{} // the --teacher-* sizes only describe a --teacher-netG
	}
	if distill && cfg.TeacherG.Kind != 0 {
		cfg.TeacherG.InputNC, cfg.TeacherG.OutputNC = cfg.G.InputNC, cfg.G.OutputNC
		cfg.TeacherG.Norm = cfg.G.Norm
		if f.teacherNorm != 0 {
			cfg.TeacherG.Norm = f.teacherNorm
		}
		cfg.TeacherG.Dropout = !f.teacherNoDropout
		cfg.TeacherG = cfg.TeacherG.Canonical()
	}
	return cfg
}

// resumeFlags may differ on --resume: where and how long the run goes on, not what it is.
var resumeFlags = map[string]bool{"out": true, "resume": true, "resume-from": true, "max-steps": true, "threads": true,
	"device": true, "log-format": true, "quiet": true, "local-nodes": true, "overlap": true, "overwrite": true,
	"continue_train": true, "name": true, "checkpoints_dir": true, "gpu_ids": true}

// resumedConfig is the saved configuration of the run being resumed, which stays the same run:
// a flag given now that would change it is refused, naming it, rather than dropped unseen.
// The configuration comes from --out, or for --resume-from a checkpoint of another folder
// when --out has none yet, from the checkpoint's run folder.
func resumedConfig(fs *pflag.FlagSet, cfg trainer.Config, resumeFrom string, distill bool) (trainer.Config, error) {
	from := cfg.Dir
	if _, err := os.Stat(filepath.Join(cfg.Dir, "config.json")); err != nil && resumeFrom != "" {
		// ckpt files live in <run>/ckpt/.
		from = filepath.Dir(filepath.Dir(resumeFrom))
	}
	saved, err := trainer.LoadConfig(from)
	if err != nil {
		if resumeFrom != "" {
			return cfg, fmt.Errorf("--resume-from %s: the run's configuration is in neither --out %s nor the checkpoint's run folder %s: %w", resumeFrom, cfg.Dir, from, err)
		}
		return cfg, fmt.Errorf("--resume: %w", err)
	}
	var changed []string
	fs.Visit(func(fl *pflag.Flag) {
		if resumeFlags[fl.Name] || slices.Contains(referenceIgnored, fl.Name) {
			return
		}
		// The saved run with only this flag applied: a change if it differs.
		var probe runFlags
		pfs := pflag.NewFlagSet("probe", pflag.ContinueOnError)
		pfs.SetOutput(io.Discard)
		bindRunFlags(pfs, &probe, distill)
		probe.cfg, probe.noDropout = saved, !saved.G.Dropout
		probe.teacherNoDropout = !saved.TeacherG.Dropout
		v := fl.Value.String()
		if fl.Name == "model" {
			if trainer.Task(v) != saved.Task {
				changed = append(changed, "--model "+v)
			}
			return
		}
		if err := pfs.Set(fl.Name, v); err != nil {
			return
		}
		if got := probe.apply(distill); !reflect.DeepEqual(samePreprocess(got), samePreprocess(normalizedSaved(saved, distill))) {
			changed = append(changed, fmt.Sprintf("--%s %s", fl.Name, v))
		}
	})
	if len(changed) > 0 {
		return cfg, fmt.Errorf("--resume continues the run as %s says, and %s would change it: drop them, or start a new run (another --out, or --overwrite)",
			filepath.Join(from, "config.json"), strings.Join(changed, ", "))
	}
	// The folder is where it is now (it may have been copied or moved since).
	saved.MaxSteps, saved.Threads, saved.Dir = cfg.MaxSteps, cfg.Threads, cfg.Dir
	// Where it computes is not part of the run: an explicit --device moves it, and
	// without one it stays where it was saved (never silently from a GPU to the CPU).
	if cfg.Device != "" {
		saved.Device = cfg.Device
	} else if saved.Device == trainer.DeviceCUDA && !ops.HasBackend(trainer.DeviceCUDA) {
		return cfg, fmt.Errorf("--resume: %s says the run trained with --device cuda, and this binary was built without CUDA: build one with `go build -tags cuda ./cmd/wkd`, or pass --device cpu to continue on the CPU",
			filepath.Join(from, "config.json"))
	}
	return saved, nil
}

// samePreprocess spells the default --preprocess out, as a run saved without one meant it.
func samePreprocess(c trainer.Config) trainer.Config {
	c.Preprocess = cmp.Or(c.Preprocess, string(data.ResizeAndCrop))
	return c
}

// normalizedSaved is a saved configuration passed through apply with its own values, so it
// compares with a probe field for field.
func normalizedSaved(saved trainer.Config, distill bool) trainer.Config {
	var probe runFlags
	pfs := pflag.NewFlagSet("probe", pflag.ContinueOnError)
	bindRunFlags(pfs, &probe, distill)
	probe.cfg, probe.noDropout, probe.teacherNoDropout = saved, !saved.G.Dropout, !saved.TeacherG.Dropout
	return probe.apply(distill)
}

// freshRunFolder refuses to start a new run where one already left checkpoints (its newer
// step numbers would outlive the new run's, and --resume would pick them up), unless
// overwrite, which deletes what a run writes there.
func freshRunFolder(dir string, overwrite bool) error {
	latest, err := trainer.LatestCheckpoint(dir)
	if err != nil || latest == "" {
		return err
	}
	if !overwrite {
		return fmt.Errorf("--out %s already holds a run (%s): continue it with --resume, or start afresh with --overwrite, or choose another --out", dir, latest)
	}
	for _, p := range []string{"ckpt", "log.jsonl", "config.json", "G.safetensors", "G_A.safetensors", "G_B.safetensors"} {
		if err := os.RemoveAll(filepath.Join(dir, p)); err != nil {
			return err
		}
	}
	return nil
}
