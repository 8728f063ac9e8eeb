package main

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"time"

	"github.com/spf13/pflag"

	"wkd/bench"
	"wkd/internal/torchnets"
	"wkd/models"
	"wkd/ops"
)

//go:embed bench_inception.py
var benchInceptionPy string

func init() {
	register(command{name: "bench-inception", summary: "time FID Inception-v3 features in wkd and in PyTorch CPU; print the ratio", group: groupBench, flags: benchInceptionFlags})
}

func benchInceptionFlags(fs *pflag.FlagSet, _ []string) func([]string) error {
	batch := fs.Int("batch-size", 8, "images per forward")
	renamed(fs, "batch", "batch-size")
	size := fs.Int("size", 64, "side of the input images, resized to 299x299 inside the network as for FID")
	threads := fs.Int("threads", runtime.NumCPU(), "threads for both wkd and PyTorch")
	warmup := fs.Int("warmup", 1, "untimed forwards before timing")
	reps := fs.Int("reps", 5, "timed forwards; medians are reported")
	python := fs.String("python", "/usr/bin/python3", "Python interpreter with torch and torchvision (Debian's python3-torchvision)")
	return func(args []string) error {
		switch {
		case *batch < 1:
			return fmt.Errorf("--batch-size %d: want at least 1 image (8 is the default)", *batch)
		case *size < 1:
			return fmt.Errorf("--size %d: want a positive side, such as 64", *size)
		case *threads < 1:
			return fmt.Errorf("--threads %d: want at least 1, such as %d", *threads, runtime.NumCPU())
		case *reps < 1 || *warmup < 0:
			return fmt.Errorf("--reps %d, --warmup %d: want at least 1 timed forward and no negative warm-up", *reps, *warmup)
		}
		ops.SetThreads(*threads)
		fmt.Printf("wkd bench-inception: FID Inception-v3 to the 2048-d pool3 features, %dx%d inputs resized to 299x299, batch %d, %d threads, random weights\n",
			*size, *size, *batch, *threads)

		// PyTorch first, in its own process, so the two never share the cores.
		req, _ := json.Marshal(map[string]any{"batch": *batch, "size": *size, "threads": *threads, "warmup": *warmup, "reps": *reps})
		tmp, err := os.CreateTemp("", "wkd-bench-inception-*.py")
		if err != nil {
			return err
		}
		defer os.Remove(tmp.Name())
		tmp.WriteString(torchnets.InceptionPy + "\n" + benchInceptionPy)
		tmp.Close()
		fmt.Printf("timing PyTorch (%s)...\n", *python)
		out, err := exec.Command(*python, tmp.Name(), string(req)).Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return fmt.Errorf("PyTorch side failed (install Debian's python3-torchvision or pass --python): %v\n%s", err, ee.Stderr)
			}
			return fmt.Errorf("PyTorch side: %v (install Debian's python3-torchvision or pass --python)", err)
		}
		var torchRes struct {
			Times   []float64 `json:"times"`
			Version string    `json:"torch"`
		}
		if err := json.Unmarshal(out, &torchRes); err != nil || len(torchRes.Times) == 0 {
			return fmt.Errorf("PyTorch side printed no result: %v\n%s", err, out)
		}

		fmt.Println("timing wkd...")
		net := models.NewInception()
		net.InitRandom(1)
		x := ops.New(*batch, 3, *size, *size)
		for i := range x.Data {
			x.Data[i] = float32(i%251) / 250
		}
		feats := make([][]float32, *batch)
		for i := range feats {
			feats[i] = make([]float32, 2048)
		}
		for range *warmup {
			net.Features(x, 2048, feats)
		}
		times := make([]float64, *reps)
		for i := range times {
			t0 := time.Now()
			net.Features(x, 2048, feats)
			times[i] = time.Since(t0).Seconds()
		}
		w, t := bench.Median(times), bench.Median(torchRes.Times)
		fmt.Printf("\n%-22s %12s %12s\n", "", "wkd", "torch "+torchRes.Version)
		fmt.Printf("%-22s %12.1f %12.1f\n", "forward (ms, median)", 1e3*w, 1e3*t)
		fmt.Printf("%-22s %12.2f %12.2f\n", "images/s", float64(*batch)/w, float64(*batch)/t)
		fmt.Printf("ratio: %.3f\n", t/w)
		return nil
	}
}
