package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/pflag"
)

func init() {
	register(command{name: "demo", summary: "the whole method on real textures: dataset, teacher, three students trained at once, report", group: groupMake, flags: demoFlags})
}

// runDemo chains the other commands on sketch2texture (flat-colour sketches -> collages of real
// texture photographs): build the dataset, train the texture network of the Frechet distance,
// train a pix2pix teacher, distill three students of a quarter of its width (no KD, pixel KD,
// wavelet KD) side by side, one process and one thread each, and write the report.
func demoFlags(fs *pflag.FlagSet, _ []string) func([]string) error {
	datasets := fs.String("datasets", "datasets", "where the datasets are built")
	cache := fs.String("cache", "", "where the texture package is downloaded (default: wkd data's --cache)")
	runs := fs.String("runs", "runs/demo", "where the runs go")
	report := fs.String("report", "report", "where the report goes")
	seed := fs.Uint64("seed", 1, "seed of every run")
	size := fs.Int("size", 64, "image side in pixels (64 or 128; U-Net depth follows)")
	samples := fs.Int("max-samples", 1000, "training images (the dataset has 1000)")
	teacherEpochs := fs.Int("teacher-epochs", 3, "teacher epochs (half constant, half decaying)")
	studentEpochs := fs.Int("student-epochs", 2, "student epochs each")
	featureEpochs := fs.Int("feature-epochs", 1, "epochs of the texture network of the Frechet distance")
	teacherNGF := fs.Int("teacher-ngf", 32, "teacher width")
	studentNGF := fs.Int("student-ngf", 8, "student width: (32/8)^2 = 16x fewer MACs than the teacher's in all but the outer layers")
	teacherNDF := fs.Int("teacher-ndf", 32, "teacher's discriminator width")
	studentNDF := fs.Int("student-ndf", 16, "students' discriminator width (a smaller D helps a compressed G)")
	alpha := fs.Float64("alpha", 100, "KD weight (the L1 term is weighed 100)")
	threads := fs.Int("threads", 0, "compute threads of the teacher (0: all cores); each student uses one")
	renamed(fs, "samples", "max-samples")
	return func(args []string) error {
		downs := map[int]int{64: 6, 128: 7}[*size]
		if downs == 0 {
			return fmt.Errorf("--size %d: use 64 or 128", *size)
		}
		for _, f := range []struct {
			name string
			v    int
		}{{"--teacher-epochs", *teacherEpochs}, {"--student-epochs", *studentEpochs}, {"--feature-epochs", *featureEpochs},
			{"--max-samples", *samples}, {"--teacher-ngf", *teacherNGF}, {"--student-ngf", *studentNGF}, {"--teacher-ndf", *teacherNDF}, {"--student-ndf", *studentNDF}} {
			if f.v < 1 {
				return fmt.Errorf("%s %d: must be at least 1", f.name, f.v)
			}
		}
		if !(*alpha >= 0) || math.IsInf(*alpha, 0) {
			return fmt.Errorf("--alpha %v: must be a finite number, 0 or more (100 works)", *alpha)
		}
		t0 := time.Now()
		step := func(title string, run func() error) error {
			fmt.Fprintf(os.Stderr, "\n== %s (%s elapsed)\n", title, time.Since(t0).Round(time.Second))
			return run()
		}
		data := filepath.Join(*datasets, "sketch2texture")
		dataArgs := []string{"--out", *datasets, "--quiet"}
		if *cache != "" {
			dataArgs = append(dataArgs, "--cache", *cache)
		}
		if err := step("datasets: sketch2texture and texture-classes from Debian's openarena-081-textures", func() error {
			for _, name := range []string{"sketch2texture", "texture-classes"} {
				side := *size
				if name == "texture-classes" {
					side = 64 // the feature network's input side, whatever --size
				}
				a := append([]string{"--name", name, "--size", fmt.Sprint(side)}, dataArgs...)
				if err := wkd(append([]string{"data"}, a...)...); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
		features := filepath.Join(*runs, "texture-features.safetensors")
		if _, err := os.Stat(features); err != nil {
			if err := step("texture network for the Frechet distance", func() error {
				return wkd("train-features", "--data", filepath.Join(*datasets, "texture-classes"), "--epochs", fmt.Sprint(*featureEpochs),
					"--seed", fmt.Sprint(*seed), "--out", features)
			}); err != nil {
				return err
			}
		}
		common := []string{"--overwrite", "--model", "pix2pix", "--netG", "unet", "--num-downs", fmt.Sprint(downs), "--data", data,
			"--seed", fmt.Sprint(*seed), "--norm", "instance", "--max-samples", fmt.Sprint(*samples), "--log-every", "50",
			"--checkpoint-every", "1000", "--load-size", fmt.Sprint(*size), "--crop-size", fmt.Sprint(*size)}
		teacher := filepath.Join(*runs, "teacher")
		half := func(n int) (int, int) { return (n + 1) / 2, n / 2 }
		te, td := half(*teacherEpochs)
		if err := step(fmt.Sprintf("teacher: pix2pix U-Net ngf %d, %d epochs", *teacherNGF, *teacherEpochs), func() error {
			return runTrain("train", append([]string{"--out", teacher, "--ngf", fmt.Sprint(*teacherNGF), "--ndf", fmt.Sprint(*teacherNDF),
				"--epochs", fmt.Sprint(te), "--epochs-decay", fmt.Sprint(td), "--threads", fmt.Sprint(*threads)}, common...))
		}); err != nil {
			return err
		}
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		se, sd := half(*studentEpochs)
		names := []string{"teacher"}
		dirs := []string{teacher}
		var jobs []demoJob
		for _, kd := range []string{"none", "pixel", "wavelet"} {
			dir := filepath.Join(*runs, "student-"+kd)
			jobs = append(jobs, demoJob{name: kd, dir: dir, argv: append([]string{exe, "distill", "--out", dir, "--teacher", teacher, "--kd", kd,
				"--alpha", fmt.Sprint(*alpha), "--ngf", fmt.Sprint(*studentNGF), "--ndf", fmt.Sprint(*studentNDF), "--epochs", fmt.Sprint(se),
				"--epochs-decay", fmt.Sprint(sd), "--threads", "1", "--quiet", "--log-format", "json"}, common...)})
			names, dirs = append(names, "student "+kd), append(dirs, dir)
		}
		if err := step(fmt.Sprintf("students ngf %d, KD none, pixel and wavelet (alpha %g), side by side", *studentNGF, *alpha), func() error {
			return runDemoJobs(jobs, os.Stderr, isTerminal(os.Stderr))
		}); err != nil {
			return err
		}
		if err := step("evaluation and report", func() error {
			return wkd("eval", "--runs", strings.Join(dirs, ","), "--names", strings.Join(names, ","), "--features", features, "--out", *report)
		}); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "\ndemo done in %s: open %s\n", time.Since(t0).Round(time.Second), filepath.Join(*report, "report.html"))
		return nil
	}
}

// demoJob is a training run in a child process (argv), its output in dir + ".log".
type demoJob struct {
	name string
	dir  string
	argv []string
}

// runDemoJobs runs the jobs as child processes of this binary at once and draws their progress
// (steps done, the slowest one's time left) from their logs until all have finished: one
// redrawn line on a terminal, else a line every 30 s. A failed job stops the others; its
// error quotes the end of its output.
func runDemoJobs(jobs []demoJob, w io.Writer, terminal bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	errs := make([]error, len(jobs))
	for i, j := range jobs {
		if err := os.MkdirAll(filepath.Dir(j.dir), 0o755); err != nil {
			return err
		}
		out, err := os.Create(j.dir + ".log")
		if err != nil {
			return err
		}
		cmd := exec.CommandContext(ctx, j.argv[0], j.argv[1:]...)
		cmd.Stdout, cmd.Stderr = out, out
		// An interrupted trainer writes a checkpoint and exits; one that ignores the signal is
		// killed after WaitDelay.
		cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
		cmd.WaitDelay = 10 * time.Second
		if err := cmd.Start(); err != nil {
			out.Close()
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer out.Close()
			if err := cmd.Wait(); err != nil && ctx.Err() == nil {
				errs[i] = fmt.Errorf("student %s failed (%v); the end of %s:\n%s", j.name, err, j.dir+".log", tailOf(j.dir+".log", 8))
				cancel(errs[i])
			}
		}()
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	start := time.Now()
	every := 30 * time.Second
	if terminal {
		every = time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-finished:
			fmt.Fprintf(w, "%s\n", demoProgress(jobs, start))
			if err := errors.Join(errs...); err != nil {
				return err
			}
			if ctx.Err() != nil {
				return fmt.Errorf("interrupted: the students' run folders keep their checkpoints (%s)", context.Cause(ctx))
			}
			return nil
		case <-tick.C:
			line := demoProgress(jobs, start)
			if terminal {
				fmt.Fprintf(w, "\r%s   ", line)
			} else {
				fmt.Fprintln(w, line)
			}
		}
	}
}

// demoProgress reads each job's log.jsonl: the total from its "training" line, the steps done
// from its last "step" line.
func demoProgress(jobs []demoJob, start time.Time) string {
	var parts []string
	var worst float64
	for _, j := range jobs {
		done, total := runProgress(filepath.Join(j.dir, "log.jsonl"))
		parts = append(parts, fmt.Sprintf("%s %d/%d", j.name, done, total))
		if done > 0 && total > 0 {
			worst = max(worst, time.Since(start).Seconds()*float64(total-done)/float64(done))
		} else {
			worst = -1
		}
	}
	eta := "?"
	if worst >= 0 && len(jobs) > 0 {
		eta = (time.Duration(worst) * time.Second).Round(time.Second).String()
	}
	return fmt.Sprintf("students: %s | %s elapsed | ETA %s", strings.Join(parts, ", "), time.Since(start).Round(time.Second), eta)
}

// runProgress is a run's steps done and total steps, from its log (0 where not yet known).
func runProgress(logPath string) (done, total int64) {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return 0, 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l struct {
			Message    string `json:"message"`
			Step       int64  `json:"step"`
			TotalSteps int64  `json:"total_steps"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			continue
		}
		switch l.Message {
		case "training":
			total, done = l.TotalSteps, 0 // a fresh start (--overwrite) or a resumed one
		case "step":
			done = l.Step
		}
	}
	return done, total
}

// tailOf is the last n lines of a file, for an error message.
func tailOf(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
