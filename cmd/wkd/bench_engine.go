package main

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"wkd/bench"
	"wkd/internal/torchnets"
	"wkd/models"
	"wkd/ops"
)

//go:embed bench_engine.py
var benchEnginePy string

func init() {
	register(command{name: "bench-engine", summary: "time a GAN training step in wkd and in PyTorch CPU; print the ratio", group: groupBench, flags: benchEngineCmd})
}

type benchEngineFlags struct {
	ngfs    string
	ndf     int
	size    int
	batch   int
	threads int
	warmup  int
	reps    int
	python  string
}

func benchEngineCmd(fs *pflag.FlagSet, _ []string) func([]string) error {
	var f benchEngineFlags
	fs.StringVar(&f.ngfs, "ngf", "16,64", "generator widths to time, comma separated")
	fs.IntVar(&f.ndf, "ndf", 64, "PatchGAN width")
	fs.IntVar(&f.size, "size", 128, "image height and width")
	fs.IntVar(&f.batch, "batch-size", 1, "batch size")
	renamed(fs, "batch", "batch-size")
	fs.IntVar(&f.threads, "threads", runtime.NumCPU(), "threads for both wkd and PyTorch")
	fs.IntVar(&f.warmup, "warmup", 2, "untimed steps before timing")
	fs.IntVar(&f.reps, "reps", 5, "timed steps; medians are reported")
	fs.StringVar(&f.python, "python", "/usr/bin/python3", "Python interpreter with torch (Debian's python3-torch)")
	return func(args []string) error {
		var ngfs []int
		for _, s := range strings.Split(f.ngfs, ",") {
			var g int
			if _, err := fmt.Sscan(s, &g); err != nil || g <= 0 {
				return fmt.Errorf("--ngf: %q is not a positive width", s)
			}
			ngfs = append(ngfs, g)
		}
		if f.size < 16 || f.size%4 != 0 {
			return fmt.Errorf("--size %d: must be a multiple of 4, at least 16", f.size)
		}
		if f.reps < 1 || f.batch < 1 || f.threads < 1 {
			return fmt.Errorf("--reps, --batch-size and --threads must be at least 1")
		}
		ops.SetThreads(f.threads)
		gemmSizes := [][3]int{{256, 256, 256}, {512, 512, 512}, {64, 16384, 576}}

		fmt.Printf("wkd bench-engine: ResNet-9 generator + 70x70 PatchGAN (ndf %d), %dx%d, batch %d, %d threads\n",
			f.ndf, f.size, f.size, f.batch, f.threads)
		fmt.Println("step = G forward, D on fake, LSGAN + 100*L1, backward, Adam; then D on real and fake, backward, Adam")

		// PyTorch first, in its own process, so the two never share the cores.
		req, _ := json.Marshal(map[string]any{"ngfs": ngfs, "ndf": f.ndf, "size": f.size, "batch": f.batch,
			"threads": f.threads, "warmup": f.warmup, "reps": f.reps, "gemm": gemmSizes})
		fmt.Printf("timing PyTorch (%s)...\n", f.python)
		var torchRes struct {
			Steps   map[string][]float64 `json:"steps"`
			Gemm    map[string]float64   `json:"gemm"`
			Version string               `json:"torch"`
			Threads int                  `json:"threads"`
		}
		if err := runTorchSide(f.python, torchnets.Nets+"\n"+benchEnginePy, req, &torchRes); err != nil {
			return err
		}

		fmt.Printf("\nSGEMM (GFLOP/s, median of 5)     wkd     torch %s\n", torchRes.Version)
		for _, s := range gemmSizes {
			m, n, k := s[0], s[1], s[2]
			key := fmt.Sprintf("%dx%dx%d", m, n, k)
			fmt.Printf("  m=%-5d n=%-6d k=%-5d       %7.1f   %7.1f\n", m, n, k, ops.SgemmGFLOPS(m, n, k, 5), torchRes.Gemm[key])
		}

		fmt.Printf("\n%-6s %14s %14s %12s %12s %8s\n", "ngf", "wkd step (ms)", "torch (ms)", "wkd img/s", "torch img/s", "ratio")
		minRatio := math.Inf(1)
		for _, g := range ngfs {
			times := timeWKDStep(g, f)
			w := bench.Median(times)
			tt := bench.Median(torchRes.Steps[fmt.Sprint(g)])
			ratio := tt / w // throughput ratio wkd/PyTorch
			minRatio = math.Min(minRatio, ratio)
			fmt.Printf("%-6d %14.1f %14.1f %12.2f %12.2f %8.3f\n", g, 1e3*w, 1e3*tt, float64(f.batch)/w, float64(f.batch)/tt, ratio)
		}
		fmt.Printf("ratio: %.3f\n", minRatio)
		return nil
	}
}

// timeWKDStep runs the same step as bench_engine.py and returns each timed step's seconds.
func timeWKDStep(ngf int, f benchEngineFlags) []float64 {
	rng := ops.NewRNG(0)
	g := mustBuild(models.Spec{Kind: models.ResNet9Blocks, InputNC: 3, OutputNC: 3, NGF: ngf, Norm: models.Instance}, rng)
	d := mustBuild(models.Spec{Kind: models.PatchGAN, InputNC: 3, NDF: f.ndf, Norm: models.Instance}, rng)
	adamCfg := ops.AdamConfig{LR: 2e-4, Beta1: 0.5, Beta2: 0.999, Eps: 1e-8}
	optG := ops.NewAdam([]ops.ParamGroup{{Params: g.Params()}}, adamCfg)
	optD := ops.NewAdam([]ops.ParamGroup{{Params: d.Params()}}, adamCfg)
	r := rand.New(rand.NewPCG(1, 2))
	x := ops.New(f.batch, 3, f.size, f.size)
	y := ops.New(f.batch, 3, f.size, f.size)
	for i := range x.Data {
		x.Data[i], y.Data[i] = 2*r.Float32()-1, 2*r.Float32()-1
	}
	tp := ops.NewTape()
	step := func() {
		tp.Reset()
		fake := g.Forward(tp, x, true)
		optG.ZeroGrad()
		lossG := ops.Add(tp, ops.MSEConst(tp, d.Forward(tp, fake, true), 1), ops.Scale(tp, ops.L1Loss(tp, fake, y), 100))
		tp.Backward(lossG)
		optG.Step()
		optD.ZeroGrad()
		fakeD := tp.Detach(fake)
		lossD := ops.Scale(tp, ops.Add(tp, ops.MSEConst(tp, d.Forward(tp, y, true), 1), ops.MSEConst(tp, d.Forward(tp, fakeD, true), 0)), 0.5)
		tp.Backward(lossD)
		optD.Step()
	}
	for range f.warmup {
		step()
	}
	times := make([]float64, f.reps)
	for i := range times {
		t0 := time.Now()
		step()
		times[i] = time.Since(t0).Seconds()
	}
	return times
}

// mustBuild builds and initializes a network from a spec this program wrote itself.
func mustBuild(s models.Spec, rng *ops.RNG) models.Module {
	m, err := models.Build(s)
	if err != nil {
		panic(err)
	}
	models.Init(m, rng)
	return m
}
