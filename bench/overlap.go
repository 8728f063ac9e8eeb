package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"

	"wkd/models"
	"wkd/trainer"
)

// OverlapOptions are bench-overlap's.
type OverlapOptions struct {
	Exe   string // this program, which runs `distill --local-nodes`
	Nodes int    // node processes
	Steps int    // steps per run; the first 5 are not counted
	NGF   int    // student width: more parameters, more to communicate
	Size  int    // image side
}

// Overlap distills a student on o.Nodes local node processes twice, with the all-reduce
// after backward and overlapped with it, and prints to w the median share of a step spent
// waiting for gradients (rank 0's sync time over its step time).
func Overlap(o OverlapOptions, w io.Writer) error {
	dir, err := os.MkdirTemp("", "wkd-bench-overlap-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	data := filepath.Join(dir, "data")
	if err := writeRandomAligned(filepath.Join(data, "train"), 4*o.Nodes, o.Size); err != nil {
		return err
	}
	// A teacher of one step: its quality does not matter for timing.
	tc := trainer.DefaultPix2Pix()
	tc.Data, tc.Dir, tc.MaxSteps = data, filepath.Join(dir, "teacher"), 1
	tc.G = models.Spec{Kind: models.ResNet, NBlocks: 6, InputNC: 3, OutputNC: 3, NGF: 16, Norm: models.Instance}
	tc.D = models.Spec{Kind: models.PatchGAN, InputNC: 6, NDF: 16, Norm: models.Instance}
	tc.LoadSize, tc.CropSize = o.Size, o.Size
	t, err := trainer.New(tc, io.Discard)
	if err != nil {
		return err
	}
	if err := t.Run(context.Background()); err != nil {
		return err
	}
	t.Close()
	fmt.Fprintf(w, "bench-overlap: %d nodes, pix2pix student ResNet-6 ngf %d at %dx%d, global batch %d, %d steps\n", o.Nodes, o.NGF, o.Size, o.Size, o.Nodes, o.Steps)
	fmt.Fprintf(w, "%-8s %12s %12s %10s\n", "overlap", "step (ms)", "waiting (ms)", "share")
	for _, on := range []bool{false, true} {
		out := filepath.Join(dir, fmt.Sprintf("student-%v", on))
		cmd := exec.Command(o.Exe, "distill", "--data", data, "--teacher", tc.Dir, "--out", out, "--local-nodes", fmt.Sprint(o.Nodes),
			"--batch-size", fmt.Sprint(o.Nodes), "--max-steps", fmt.Sprint(o.Steps), "--log-every", "1", "--norm", "instance",
			"--netG", "resnet", "--n-blocks", "6", "--ngf", fmt.Sprint(o.NGF), "--ndf", "16", "--load-size", fmt.Sprint(o.Size),
			"--crop-size", fmt.Sprint(o.Size), "--checkpoint-every", "100000", fmt.Sprintf("--overlap=%v", on))
		cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("overlap=%v run: %w", on, err)
		}
		stepMs, waitMs, err := rankZeroTimes(filepath.Join(out, "log.jsonl"), o.Nodes)
		if err != nil {
			return err
		}
		if len(stepMs) <= 5 {
			return fmt.Errorf("overlap=%v: only %d steps logged", on, len(stepMs))
		}
		stepMs, waitMs = stepMs[5:], waitMs[5:]
		shares := make([]float64, len(stepMs))
		for i := range shares {
			shares[i] = waitMs[i] / stepMs[i]
		}
		fmt.Fprintf(w, "%-8v %12.1f %12.1f %9.1f%%\n", on, Median(stepMs), Median(waitMs), 100*Median(shares))
	}
	return nil
}

// rankZeroTimes reads rank 0's step lines: step time (img_per_s counts the global batch of
// one image per node) and time spent waiting on gradients.
func rankZeroTimes(path string, nodes int) (stepMs, waitMs []float64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l struct {
			Message string   `json:"message"`
			Rank    *int     `json:"rank"`
			IPS     float64  `json:"img_per_s"`
			Sync    float64  `json:"sync_ms"`
			Step    *float64 `json:"step"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Message != "step" || l.Rank == nil || *l.Rank != 0 || l.IPS == 0 {
			continue
		}
		stepMs = append(stepMs, 1e3*float64(nodes)/l.IPS)
		waitMs = append(waitMs, l.Sync)
	}
	return stepMs, waitMs, sc.Err()
}

// writeRandomAligned writes n random A|B images of side size.
func writeRandomAligned(dir string, n, size int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range n {
		img := image.NewRGBA(image.Rect(0, 0, 2*size, size))
		for k := range img.Pix {
			img.Pix[k] = uint8(r.IntN(256))
		}
		for y := range size {
			for x := range 2 * size {
				img.SetRGBA(x, y, color.RGBA{img.Pix[4*(y*2*size+x)], uint8(x), uint8(y), 255})
			}
		}
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%03d.png", i)))
		if err != nil {
			return err
		}
		if err := png.Encode(f, img); err != nil {
			f.Close()
			return err
		}
		f.Close()
	}
	return nil
}
