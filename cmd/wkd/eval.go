package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"wkd/bench"
	"wkd/data"
	"wkd/metrics"
	"wkd/models"
	"wkd/ops"
	"wkd/trainer"
)

func init() {
	register(command{name: "eval", summary: "evaluate generators on a test set; write report.json and report.html", group: groupEval, flags: evalFlags})
	register(command{name: "train-features", summary: "train the feature network of the Frechet distance (Fashion-MNIST, or an ImageFolder of textures)", group: groupEval, flags: trainFeaturesFlags})
}

type evalModel struct {
	name string
	run  string
	cfg  trainer.Config
	spec models.Spec
	g    models.Module
}

func evalFlags(fs *pflag.FlagSet, _ []string) func([]string) error {
	runs := fs.String("runs", "runs/teacher,runs/student", "run folders to evaluate, comma separated (the --out of wkd train and wkd distill); the first, the teacher, is the reference for compression and speedup")
	names := fs.String("names", "", "display names, comma separated (default: the folder names)")
	dataDir := fs.String("data", "", "dataset folder (default: the first run's)")
	features := fs.String("features", "runs/features.safetensors", "feature network weights for the Frechet distance, Fashion-MNIST or texture (make them with 'wkd train-features')")
	out := fs.String("out", "report", "folder for report.json and report.html")
	maxImages := fs.Int("max-samples", 200, "evaluate at most this many test images")
	speedSize := fs.Int("speed-size", 256, "image side at which inference time is measured: a multiple of 2^num_downs for a U-Net, of 4 for a ResNet")
	speedReps := fs.Int("speed-reps", 5, "timed inferences per model (the median is reported)")
	samples := fs.Int("grid-rows", 8, "rows in the sample grid (0: no grid)")
	levels := fs.Int("levels", 3, "Haar levels for the band energies, 1 to log2 of the test images' side")
	fidWeights := fs.String("fid-weights", "", "Inception-v3 weights for FID and KID: pytorch-fid's pt_inception-2015-12-05-6726825d.pth (or a safetensors of it); without it the report has no FID or KID")
	fidCache := fs.String("fid-cache", filepath.Join(data.DefaultTextureCache(), "fid"), "folder where the real images' Inception features are kept, per test set and weights file")
	fidBatch := fs.Int("fid-batch", 8, "images per Inception forward")
	kidSubsets := fs.Int("kid-subsets", 100, "KID: number of random subsets")
	kidSubsetSize := fs.Int("kid-subset-size", 1000, "KID: images per subset, at most (fewer test images: all of them)")
	renamed(fs, "max-images", "max-samples")
	renamed(fs, "samples", "grid-rows")
	return func(args []string) error {
		// Every flag is checked before any weights, features or images are loaded, so a bad value
		// fails in a moment, not after the generation.
		switch {
		case *maxImages < 1:
			return fmt.Errorf("--max-samples %d: want at least 1 test image (200 is the default)", *maxImages)
		case *speedReps < 1 || *speedReps > 1000:
			return fmt.Errorf("--speed-reps %d: want 1 to 1000 timed inferences (5 is the default)", *speedReps)
		case *speedSize > 8192:
			return fmt.Errorf("--speed-size %d: want at most 8192 (256 is the default)", *speedSize)
		case *samples < 0:
			return fmt.Errorf("--grid-rows %d: want 0 (no sample grid) or more (8 is the default)", *samples)
		case *fidBatch < 1:
			return fmt.Errorf("--fid-batch %d: want at least 1 image per forward (8 is the default)", *fidBatch)
		case *kidSubsets < 1 || *kidSubsets > 100000:
			return fmt.Errorf("--kid-subsets %d: want 1 to 100000 subsets (100 is the default)", *kidSubsets)
		case *kidSubsetSize < 2:
			return fmt.Errorf("--kid-subset-size %d: want at least 2 images per subset (1000 is the default)", *kidSubsetSize)
		}
		runList := strings.Split(*runs, ",")
		var nameList []string
		if *names != "" {
			nameList = strings.Split(*names, ",")
			if len(nameList) != len(runList) {
				return fmt.Errorf("--names has %d entries for %d --runs", len(nameList), len(runList))
			}
			seen := map[string]bool{}
			for _, n := range nameList {
				if strings.TrimSpace(n) == "" || seen[n] {
					return fmt.Errorf("--names %q: want a distinct, non-empty name for each run", *names)
				}
				seen[n] = true
			}
		}
		var ms []evalModel
		for i, r := range runList {
			if _, err := os.Stat(r); os.IsNotExist(err) {
				return fmt.Errorf("--runs: %s does not exist: give the run folders of wkd train and wkd distill (--out), such as --runs runs/teacher,runs/student; `make demo` leaves its runs in runs/demo/teacher, runs/demo/student-none, ...", r)
			}
			cfg, err := trainer.LoadConfig(r)
			if err != nil {
				return fmt.Errorf("--runs: %w (is %s the --out of a wkd train or wkd distill?)", err, r)
			}
			m := evalModel{name: filepath.Base(r), run: r, cfg: cfg, spec: cfg.G}
			if nameList != nil {
				m.name = nameList[i]
			}
			ms = append(ms, m)
		}
		if err := checkEvalModels(ms, *speedSize, *levels); err != nil {
			return err
		}
		for i := range ms {
			m := &ms[i]
			file := "G.safetensors"
			if m.cfg.Task == trainer.CycleGAN {
				file = "G_A.safetensors" // A -> B, the paper's G
			}
			var err error
			if m.g, err = models.Build(m.spec); err != nil {
				return err
			}
			if _, err := models.Load(filepath.Join(m.run, file), m.g); err != nil {
				return fmt.Errorf("--runs %s: %w (has the run finished?)", m.run, err)
			}
		}
		task := ms[0].cfg.Task
		root := *dataDir
		if root == "" {
			root = ms[0].cfg.Data
		}
		fnet, acc, err := metrics.LoadFeatureNet(*features)
		if err != nil {
			return err
		}
		var fid *fidSetup
		if *fidWeights != "" {
			if fid, err = loadFID(*fidWeights, *fidCache, *fidBatch, metrics.KIDConfig{Subsets: *kidSubsets, SubsetSize: *kidSubsetSize, Seed: 1}); err != nil {
				return err
			}
		}

		dcfg := data.DefaultPix2PixConfig(root)
		if task == trainer.CycleGAN {
			dcfg = data.DefaultCycleGANConfig(root)
		}
		dcfg.Phase, dcfg.Train = "test", false
		dcfg.BtoA = ms[0].cfg.BtoA
		dcfg.InputNC, dcfg.OutputNC = ms[0].spec.InputNC, ms[0].spec.OutputNC
		dcfg.LoadSize, dcfg.CropSize = ms[0].cfg.CropSize, ms[0].cfg.CropSize
		ds, err := data.Open(dcfg)
		if err != nil {
			return err
		}
		n := min(*maxImages, ds.Len())
		fmt.Fprintf(os.Stderr, "evaluating %d models on %d test images of %s\n", len(ms), n, root)

		var inputs, reals []metrics.Image
		outs := make([][]metrics.Image, len(ms))
		tp := ops.NewTape()
		tp.SetNoGrad(true)
		progress := progressLine("generating test outputs")
		for i := range n {
			s, err := ds.Load(0, 0, i)
			if err != nil {
				return err
			}
			a := metrics.Image{C: s.AShape[0], H: s.AShape[1], W: s.AShape[2], Pix: s.A}
			b := metrics.Image{C: s.BShape[0], H: s.BShape[1], W: s.BShape[2], Pix: s.B}
			inputs, reals = append(inputs, a), append(reals, b)
			x := ops.FromData(s.A, 1, a.C, a.H, a.W)
			for k, m := range ms {
				tp.Reset()
				y := m.g.Forward(tp, x, false)
				outs[k] = append(outs[k], metrics.Image{C: y.Shape[1], H: y.Shape[2], W: y.Shape[3], Pix: append([]float32(nil), y.Data...)})
			}
			progress(i+1, n)
		}

		rep := &metrics.Report{Dataset: root, Task: string(task), Paired: task == trainer.Pix2Pix, Images: n,
			Size: [2]int{reals[0].H, reals[0].W}, SpeedSize: *speedSize, Threads: ops.Threads(),
			Features: metrics.NewFeatureInfo(fnet, *features, acc), FeatureNet: *features, TestSetDigest: metrics.Digest(reals)}
		if rep.Features.Accuracy != nil {
			rep.FeatureAccuracy = *rep.Features.Accuracy
		}
		fmt.Fprintf(os.Stderr, "Frechet distance on the features of %s\n", rep.Features)
		bands, realE := metrics.BandEnergies(reals, *levels)
		for _, b := range bands {
			rep.Bands = append(rep.Bands, b.String())
		}
		rep.RealEnergies = realE
		rep.RealSpectrum = metrics.Spectrum(reals)
		realG, err := metrics.Fit(fnet.Features(reals))
		if err != nil {
			return err
		}
		if fid != nil {
			if err := fid.real(reals, rep); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "FID and KID on %s\n", rep.Inception)
		} else {
			rep.FIDAbsent = "pass --fid-weights with pytorch-fid's Inception weights, pt_inception-2015-12-05-6726825d.pth (from the pytorch-fid project's GitHub releases), to add FID and KID comparable with published numbers"
			fmt.Fprintf(os.Stderr, "no FID or KID: %s\n", rep.FIDAbsent)
		}
		for k, m := range ms {
			r := metrics.Result{Name: m.name, Run: m.run, Arch: m.spec.String(), Params: models.CountParams(m.g)}
			// checkEvalModels made sure both sizes fit every generator.
			r.MACs, _ = models.CountMACs(m.spec, rep.Size[0], rep.Size[1])
			r.MACsSpeed, _ = models.CountMACs(m.spec, *speedSize, *speedSize)
			if rep.Paired {
				r.PerImage = metrics.PairedMetrics(outs[k], reals)
				r.PSNR, r.SSIM, r.L1 = meanOf(r.PerImage.PSNR), meanOf(r.PerImage.SSIM), meanOf(r.PerImage.L1)
			}
			g, err := metrics.Fit(fnet.Features(outs[k]))
			if err != nil {
				return err
			}
			if r.FD, err = metrics.FrechetDistance(g, realG); err != nil {
				return err
			}
			if fid != nil {
				if err := fid.model(m.name, outs[k], &r); err != nil {
					return err
				}
			}
			_, r.BandEnergies = metrics.BandEnergies(outs[k], *levels)
			r.Spectrum = metrics.Spectrum(outs[k])
			r.SpectrumDist = metrics.SpectrumDistance(r.Spectrum, rep.RealSpectrum)
			r.InferenceMs = inferenceMs(m, *speedSize, *speedReps)
			r.Curves, r.Steps = lossCurves(filepath.Join(m.run, "log.jsonl"))
			rep.Results = append(rep.Results, r)
			fmt.Fprintf(os.Stderr, "%-10s FD %.3f  spectrum %.4f  %.1f ms @%dpx", m.name, r.FD, r.SpectrumDist, r.InferenceMs, *speedSize)
			if rep.Paired {
				fmt.Fprintf(os.Stderr, "  PSNR %.2f  SSIM %.4f", r.PSNR, r.SSIM)
			}
			if r.FID != nil {
				fmt.Fprintf(os.Stderr, "  FID %.2f  KID %.4f ± %.4f", *r.FID, r.KID.Mean, r.KID.Std)
			}
			fmt.Fprintln(os.Stderr)
		}
		t := rep.Results[0]
		for i := range rep.Results {
			r := &rep.Results[i]
			r.ParamRatio = float64(t.Params) / float64(r.Params)
			r.MACRatio = float64(t.MACs) / float64(r.MACs)
			r.Speedup = t.InferenceMs / r.InferenceMs
		}
		rep.Columns = []string{"input"}
		var rows [][]metrics.Image
		for i := range min(*samples, n) {
			row := []metrics.Image{inputs[i]}
			for k := range ms {
				row = append(row, outs[k][i])
			}
			rows = append(rows, append(row, reals[i]))
		}
		for _, m := range ms {
			rep.Columns = append(rep.Columns, m.name)
		}
		rep.Columns = append(rep.Columns, "target")
		// Tiles of at least 192 px, each pixel a block: fine texture stays visible.
		rep.Grid = metrics.Grid(rows, (192+rep.Size[0]-1)/rep.Size[0])
		if err := os.MkdirAll(*out, 0o755); err != nil {
			return err
		}
		if err := rep.WriteJSON(filepath.Join(*out, "report.json")); err != nil {
			return err
		}
		if len(rep.Grid) > 0 { // --grid-rows 0: no grid
			if err := os.WriteFile(filepath.Join(*out, "samples.png"), rep.Grid, 0o644); err != nil {
				return err
			}
		}
		if err := rep.WriteHTML(filepath.Join(*out, "report.html")); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "wrote %s and %s\n", filepath.Join(*out, "report.json"), filepath.Join(*out, "report.html"))
		return nil
	}
}

// checkEvalModels says what keeps the runs from being evaluated together, or --speed-size or
// --levels from suiting them, naming the flag and a value that works. The test images are
// loaded as the first run's (its channels, its crop size), so every run must take them.
func checkEvalModels(ms []evalModel, speedSize, levels int) error {
	first := ms[0]
	crop := first.cfg.CropSize
	multiple := 1 // what every generator's input sides must be divisible by
	for _, m := range ms {
		if m.cfg.Task != first.cfg.Task {
			return fmt.Errorf("--runs mixes %s (%s) and %s (%s)", first.run, first.cfg.Task, m.run, m.cfg.Task)
		}
		if m.spec.InputNC != first.spec.InputNC || m.spec.OutputNC != first.spec.OutputNC {
			return fmt.Errorf("--runs mixes %s (%d->%d channels) and %s (%d->%d): evaluate generators of the same images together",
				first.run, first.spec.InputNC, first.spec.OutputNC, m.run, m.spec.InputNC, m.spec.OutputNC)
		}
		if _, err := models.CountMACs(m.spec, crop, crop); err != nil {
			return fmt.Errorf("--runs %s: its generator does not take the %dx%d test images of %s: %v", m.run, crop, crop, first.run, err)
		}
		multiple = lcm(multiple, sideMultiple(m.spec))
	}
	fits := speedSize >= 1
	for _, m := range ms {
		if _, err := models.CountMACs(m.spec, speedSize, speedSize); err != nil {
			fits = false
		}
	}
	if !fits {
		want := (speedSize + multiple - 1) / multiple * multiple
		if speedSize < 1 || want == speedSize { // a multiple too small for a network: suggest 256 or so
			want = (256 + multiple - 1) / multiple * multiple
		}
		return fmt.Errorf("--speed-size %d: want a positive multiple of %d, which every generator of --runs takes (a U-Net needs multiples of 2^num_downs, a ResNet of 4), such as %d", speedSize, multiple, want)
	}
	// Each Haar level halves the side: past log2(side) levels the bands are single pixels.
	maxLevels := max(1, bits.Len(uint(crop))-1)
	if levels < 1 || levels > maxLevels {
		return fmt.Errorf("--levels %d: want 1 to %d Haar levels for %d px test images, such as %d", levels, maxLevels, crop, min(3, maxLevels))
	}
	return nil
}

// sideMultiple is what a generator's input sides must be divisible by: 2^num_downs for a
// U-Net, 4 for a ResNet (two stride-2 convolutions down, two transposed ones back up).
func sideMultiple(s models.Spec) int {
	r := s.Resolved()
	switch r.Kind {
	case models.UNet128, models.UNet256, models.UNet:
		return 1 << r.NumDowns
	case models.ResNet9Blocks, models.ResNet6Blocks, models.ResNet:
		return 4
	}
	return 1
}

func lcm(a, b int) int {
	x, y := a, b
	for y != 0 {
		x, y = y, x%y
	}
	return a / x * b
}

func meanOf(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// inferenceMs is the median time of one batch-1 forward pass at size x size, no tape recorded.
func inferenceMs(m evalModel, size, reps int) float64 {
	x := ops.New(1, m.spec.InputNC, size, size)
	tp := ops.NewTape()
	tp.SetNoGrad(true)
	m.g.Forward(tp, x, false) // warm the arena
	times := make([]float64, reps)
	for i := range times {
		tp.Reset()
		t0 := time.Now()
		m.g.Forward(tp, x, false)
		times[i] = float64(time.Since(t0).Microseconds()) / 1e3
	}
	return bench.Median(times)
}

// lossCurves reads the step lines of a run's log.jsonl into one curve per loss.
func lossCurves(path string) ([]metrics.Curve, int64) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0
	}
	defer f.Close()
	skip := map[string]bool{"step": true, "epoch": true, "rank": true, "img_per_s": true, "sync_ms": true, "lr": true,
		"kd_share": true, "level": true, "time": true, "message": true, "node": true, "generation": true}
	byName := map[string]*metrics.Curve{}
	var order []string
	var last int64
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) != nil || line["message"] != "step" {
			continue
		}
		if r, ok := line["rank"].(float64); ok && r != 0 {
			continue // a cluster's other ranks log their own shares' losses
		}
		step, _ := line["step"].(float64)
		last = int64(step)
		for k, v := range line {
			fv, ok := v.(float64)
			if !ok || skip[k] {
				continue
			}
			c := byName[k]
			if c == nil {
				c = &metrics.Curve{Name: k}
				byName[k] = c
				order = append(order, k)
			}
			c.Steps, c.Vals = append(c.Steps, step), append(c.Vals, fv)
		}
	}
	var out []metrics.Curve
	for _, k := range order {
		out = append(out, *byName[k])
	}
	return out, last
}

func trainFeaturesFlags(fs *pflag.FlagSet, _ []string) func([]string) error {
	fm := metrics.DefaultTrainConfig("/usr/share/datasets/fashion-mnist")
	tx := metrics.DefaultTextureTrainConfig("")
	source := fs.String("source", fm.Source, "Fashion-MNIST folder (Debian package dataset-fashion-mnist): trains the Fashion-MNIST network, the default")
	dataDir := fs.String("data", "", "ImageFolder (train/<class>/*.png, test/<class>/*.png, every class in both) to train a texture network on instead")
	samples := fs.Int("max-samples", fm.Samples, "training images to use (Fashion-MNIST: at most 60000; with --data: 0 = all, its default)")
	epochs := fs.Int("epochs", fm.Epochs, fmt.Sprintf("passes over them (with --data: default %d)", tx.Epochs))
	batch := fs.Int("batch-size", fm.Batch, "minibatch size")
	lr := fs.Float64("lr", 1e-3, "Adam learning rate")
	seed := fs.Uint64("seed", fm.Seed, "random seed (weights, minibatch order, flips, the --max-samples subset)")
	channels := fs.Int("channels", tx.Channels, "with --data: input channels, 3 (RGB) or 1 (luma)")
	size := fs.Int("size", tx.Size, "with --data: input side, 64 or 32 (images of other sizes are resized)")
	out := fs.String("out", "runs/features.safetensors", "where to write the weights")
	threads := fs.Int("threads", runtime.NumCPU(), "compute threads")
	renamed(fs, "samples", "max-samples")
	renamed(fs, "batch", "batch-size")
	return func(args []string) error {
		set := map[string]bool{}
		fs.Visit(func(f *pflag.Flag) { set[f.Name] = true })
		cfg := fm
		cfg.Source = *source
		if *dataDir != "" {
			if set["source"] {
				return errors.New("--source and --data: give one (--source trains the Fashion-MNIST network, --data a texture network)")
			}
			cfg = metrics.DefaultTextureTrainConfig(*dataDir)
			cfg.Channels, cfg.Size = *channels, *size
		} else {
			for _, name := range []string{"channels", "size"} {
				if set[name] {
					return fmt.Errorf("--%s applies to a texture network: give --data too (the Fashion-MNIST network is 1x32x32)", name)
				}
			}
		}
		for name, apply := range map[string]func(){
			"max-samples": func() { cfg.Samples = *samples },
			"epochs":      func() { cfg.Epochs = *epochs },
			"batch-size":  func() { cfg.Batch = *batch },
			"lr":          func() { cfg.LR = float32(*lr) },
			"seed":        func() { cfg.Seed = *seed },
		} {
			if set[name] {
				apply()
			}
		}
		if err := cfg.Validate(); err != nil {
			return err
		}
		ops.SetThreads(*threads)
		t0 := time.Now()
		n, acc, err := metrics.TrainFeatureNet(cfg, os.Stderr)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
			return fmt.Errorf("--out %s: %w", *out, err)
		}
		if err := n.Save(*out, acc); err != nil {
			return fmt.Errorf("--out %s: %w", *out, err)
		}
		info := metrics.NewFeatureInfo(n, *out, acc)
		fmt.Fprintf(os.Stderr, "feature network: test accuracy %.2f%% after %s\n%s; weights in %s\n", 100*acc, time.Since(t0).Round(time.Second), info, *out)
		return nil
	}
}
