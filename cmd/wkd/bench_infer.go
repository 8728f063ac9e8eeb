package main

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"wkd/bench"
	"wkd/internal/torchnets"
	"wkd/models"
	"wkd/ops"
)

//go:embed bench_infer.py
var benchInferPy string

func init() {
	register(command{name: "bench-infer", summary: "time generator inference in wkd and in PyTorch CPU against the machine's FMA peak; print the ratio", group: groupBench,
		long: "Times the generators wkd makes, teachers and students, on the inference path of translate and eval\n" +
			"(no autograd, eval mode), against PyTorch CPU's no-grad eval forward on the same threads, in the\n" +
			"same run. It measures this machine's FMA peak with a loop of vector FMAs and prints the share of it\n" +
			"each network reaches, counting the products its kernels must do (GMACs is the papers' count, which\n" +
			"takes a stride-2 transposed convolution for 4 times its products). The last line, ratio, is wkd's\n" +
			"throughput over PyTorch's for --ratio-net at batch 1.",
		flags: benchInferFlags})
}

// inferNet is one generator of bench-infer: the reference's ResNet-9 (instance norm, no
// dropout, as CycleGAN) or U-Net 256 (batch norm, dropout off in eval mode, as pix2pix).
type inferNet struct {
	Name string `json:"name"`
	Kind string `json:"kind"` // resnet or unet
	NGF  int    `json:"ngf"`
}

func (n inferNet) spec() models.Spec {
	if n.Kind == "resnet" {
		return models.Spec{Kind: models.ResNet9Blocks, InputNC: 3, OutputNC: 3, NGF: n.NGF, Norm: models.Instance}
	}
	return models.Spec{Kind: models.UNet256, InputNC: 3, OutputNC: 3, NGF: n.NGF, Norm: models.Batch, Dropout: true}
}

// parseInferNets reads --nets: resnet9-NGF and unet-NGF, comma separated.
func parseInferNets(s string) ([]inferNet, error) {
	var nets []inferNet
	for _, name := range strings.Split(s, ",") {
		kind, w, ok := strings.Cut(strings.TrimSpace(name), "-")
		ngf, err := strconv.Atoi(w)
		if !ok || err != nil || ngf < 1 || ngf > 256 || (kind != "resnet9" && kind != "unet") {
			return nil, fmt.Errorf("--nets: %q: want resnet9-NGF or unet-NGF with NGF from 1 to 256, such as resnet9-16", name)
		}
		nets = append(nets, inferNet{Name: kind + "-" + w, Kind: strings.TrimSuffix(kind, "9"), NGF: ngf})
	}
	return nets, nil
}

func benchInferFlags(fs *pflag.FlagSet, _ []string) func([]string) error {
	netsFlag := fs.String("nets", "resnet9-64,resnet9-32,resnet9-16,unet-64,unet-16", "generators to time: resnet9-NGF (ResNet-9, instance norm) and unet-NGF (U-Net 256, batch norm), comma separated")
	size := fs.Int("size", 256, "image height and width (a multiple of 256 for unet, of 4 for resnet9)")
	batches := fs.String("batch-sizes", "1,8", "batch sizes to time, comma separated: 1 is latency, more is throughput")
	threads := fs.Int("threads", runtime.NumCPU(), "threads for both wkd and PyTorch")
	warmup := fs.Int("warmup", 1, "untimed forwards before timing")
	reps := fs.Int("reps", 3, "timed forwards at least; medians are reported")
	minTime := fs.Duration("min-time", time.Second, "time each network and batch size for at least this long (more forwards than --reps, up to 100, when they are fast)")
	ratioNet := fs.String("ratio-net", "resnet9-16", "the network of the last line's ratio, at batch 1")
	python := fs.String("python", "/usr/bin/python3", "Python interpreter with torch (Debian's python3-torch)")
	return func(args []string) error {
		nets, err := parseInferNets(*netsFlag)
		if err != nil {
			return err
		}
		var bs []int
		for _, s := range strings.Split(*batches, ",") {
			b, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || b < 1 || b > 64 {
				return fmt.Errorf("--batch-sizes: %q: want batch sizes from 1 to 64, such as 1,8", s)
			}
			bs = append(bs, b)
		}
		switch {
		case *reps < 1 || *reps > 100 || *warmup < 0 || *warmup > 100:
			return fmt.Errorf("--reps %d, --warmup %d: want 1 to 100 timed and 0 to 100 untimed forwards", *reps, *warmup)
		case *minTime < 0 || *minTime > time.Minute:
			return fmt.Errorf("--min-time %v: want 0s to 1m (1s is the default)", *minTime)
		case *threads < 1 || *threads > 1024:
			return fmt.Errorf("--threads %d: want 1 to 1024", *threads)
		case *size < 4 || *size > 2048:
			return fmt.Errorf("--size %d: want 4 to 2048 (256 is the default)", *size)
		}
		for _, n := range nets {
			if _, err := models.CountMACs(n.spec(), *size, *size); err != nil {
				return fmt.Errorf("--size %d does not fit %s: %v", *size, n.Name, err)
			}
		}
		if !slices.ContainsFunc(nets, func(n inferNet) bool { return n.Name == *ratioNet }) || !slices.Contains(bs, 1) {
			return fmt.Errorf("--ratio-net %s at batch 1 is not timed: include it in --nets and 1 in --batch-sizes", *ratioNet)
		}
		ops.SetThreads(*threads)

		fmt.Printf("wkd bench-infer: generators at %dx%d, batch %s, %d threads, no autograd, eval mode\n", *size, *size, *batches, *threads)
		peak := ops.FMAPeakGFLOPS(*threads, 200*time.Millisecond)
		if peak > 0 {
			fmt.Printf("FMA peak of this machine: %.0f GFLOP/s on %d threads (a loop of vector FMAs)\n", peak, *threads)
		} else {
			fmt.Println("FMA peak: not measured (no vector FMA loop for this CPU); shares of it are left out")
		}

		// PyTorch first, in its own process, so the two never share the cores.
		req, _ := json.Marshal(map[string]any{"nets": nets, "batches": bs, "size": *size, "threads": *threads, "warmup": *warmup, "reps": *reps, "min_time": minTime.Seconds()})
		fmt.Printf("timing PyTorch (%s)...\n", *python)
		var torchRes struct {
			Times   map[string][]float64 `json:"times"`
			Version string               `json:"torch"`
		}
		if err := runTorchSide(*python, torchnets.Nets+"\n"+benchInferPy, req, &torchRes); err != nil {
			return err
		}

		fmt.Printf("\n%-12s %5s %7s %11s %11s %9s %9s %7s %8s %8s\n", "net", "batch", "GMACs", "wkd ms", "torch ms",
			"wkd img/s", "torch", "ratio", "wkd peak", "torch")
		perImage := map[string]float64{} // net/batch -> wkd seconds per image
		ratio := 0.0
		for _, n := range nets {
			// GMACs as papers count them; the share of the peak from the products the
			// kernels must do (transposed convolutions: s^2 fewer at stride s).
			macs, _ := models.CountMACs(n.spec(), *size, *size)
			products, _ := models.CountProducts(n.spec(), *size, *size)
			g := mustBuild(n.spec(), ops.NewRNG(0))
			for _, b := range bs {
				w := bench.Median(timeInference(g, b, *size, *warmup, *reps, *minTime))
				tt := bench.Median(torchRes.Times[fmt.Sprintf("%s/%d", n.Name, b)])
				flops := 2 * float64(products) * float64(b)
				share := func(sec float64) string {
					if peak == 0 {
						return "-"
					}
					return fmt.Sprintf("%.0f%%", 100*flops/sec/1e9/peak)
				}
				r := tt / w
				fmt.Printf("%-12s %5d %7.2f %11.1f %11.1f %9.2f %9.2f %7.3f %8s %8s\n", n.Name, b, float64(macs)/1e9, 1e3*w, 1e3*tt,
					float64(b)/w, float64(b)/tt, r, share(w), share(tt))
				perImage[fmt.Sprintf("%s/%d", n.Name, b)] = w / float64(b)
				if n.Name == *ratioNet && b == 1 && ratio == 0 {
					ratio = r
				}
			}
		}
		for _, pair := range [][2]string{{"resnet9-64", "resnet9-16"}, {"unet-64", "unet-16"}} {
			for _, b := range bs {
				t, s := perImage[fmt.Sprintf("%s/%d", pair[0], b)], perImage[fmt.Sprintf("%s/%d", pair[1], b)]
				if t > 0 && s > 0 {
					fmt.Printf("speedup %s -> %s, batch %d: %.2fx in wkd\n", pair[0], pair[1], b, t/s)
				}
			}
		}
		fmt.Printf("ratio: %.3f\n", ratio)
		return nil
	}
}

// runTorchSide runs a benchmark's PyTorch half, script, in its own process with the JSON
// request as its argument, and decodes the JSON it prints into res.
func runTorchSide(python, script string, req []byte, res any) error {
	tmp, err := os.CreateTemp("", "wkd-bench-*.py")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	tmp.WriteString(script)
	tmp.Close()
	out, err := exec.Command(python, tmp.Name(), string(req)).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return fmt.Errorf("PyTorch side failed (install Debian's python3-torch and python3-torchvision, or pass --python): %v\n%s", err, ee.Stderr)
		}
		return fmt.Errorf("PyTorch side: %v (install Debian's python3-torch, or pass --python)", err)
	}
	if err := json.Unmarshal(out, res); err != nil {
		return fmt.Errorf("PyTorch side printed no result: %v\n%s", err, out)
	}
	return nil
}

// maxInferReps bounds the timed forwards of one network and batch size.
const maxInferReps = 100

// timeInference times g's forward on the inference path of translate and eval (a tape that
// records nothing, its arena reused), reps times and until minTime has passed (at most
// maxInferReps times), and returns each timed forward's seconds.
func timeInference(g models.Module, batch, size, warmup, reps int, minTime time.Duration) []float64 {
	x := ops.New(batch, 3, size, size)
	for i := range x.Data {
		x.Data[i] = float32(i%255)/127.5 - 1
	}
	tp := ops.NewTape()
	tp.SetNoGrad(true)
	for range max(warmup, 1) { // the first forward also fills the arena
		tp.Reset()
		g.Forward(tp, x, false)
	}
	var times []float64
	start := time.Now()
	for len(times) < reps || time.Since(start) < minTime && len(times) < maxInferReps {
		tp.Reset()
		t0 := time.Now()
		g.Forward(tp, x, false)
		times = append(times, time.Since(t0).Seconds())
	}
	return times
}
