package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

func init() {
	register(command{name: "demo", summary: "the whole method on a built-in dataset: data, teacher, three students, report", run: runDemo})
}

// runDemo chains the other commands: build edges2shoes-mini from Fashion-MNIST, train the
// feature network, train a pix2pix teacher, distill three students of one width (no KD,
// pixel KD, wavelet KD) and write the report comparing them.
func runDemo(args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	source := fs.String("source", "/usr/share/datasets/fashion-mnist", "Fashion-MNIST folder (Debian package dataset-fashion-mnist)")
	datasets := fs.String("datasets", "datasets", "where the dataset is built")
	runs := fs.String("runs", "runs/demo", "where the runs go")
	report := fs.String("report", "report", "where the report goes")
	seed := fs.Int("seed", 1, "seed of every run")
	teacherEpochs := fs.Int("teacher-epochs", 4, "teacher epochs (half constant, half decaying)")
	studentEpochs := fs.Int("student-epochs", 2, "student epochs each")
	teacherNGF := fs.Int("teacher-ngf", 16, "teacher width")
	studentNGF := fs.Int("student-ngf", 6, "student width: (16/6)^2 = 7.1x fewer MACs, the paper's CycleGAN compression")
	teacherNDF := fs.Int("teacher-ndf", 32, "teacher's discriminator width")
	studentNDF := fs.Int("student-ndf", 16, "students' discriminator width (a smaller D helps a compressed G)")
	alpha := fs.String("alpha", "100", "KD weight (the L1 term is weighed 100)")
	samples := fs.Int("samples", 2000, "training images")
	threads := fs.Int("threads", 0, "compute threads (0: all cores)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	t0 := time.Now()
	step := func(title string, run func() error) error {
		fmt.Fprintf(os.Stderr, "\n== %s (%s elapsed)\n", title, time.Since(t0).Round(time.Second))
		return run()
	}
	data := filepath.Join(*datasets, "edges2shoes-mini")
	features := filepath.Join(*runs, "features.safetensors")
	common := []string{"--overwrite", "--data", data, "--seed", fmt.Sprint(*seed), "--norm", "instance", "--max-samples", fmt.Sprint(*samples),
		"--threads", fmt.Sprint(*threads), "--log-every", "100", "--checkpoint-every", "1000", "--load-size", "32", "--crop-size", "32"}
	if err := step("dataset: edges2shoes-mini from Fashion-MNIST", func() error {
		return commands["data"].run([]string{"--name", "edges2shoes-mini", "--source", *source, "--out", *datasets})
	}); err != nil {
		return err
	}
	if _, err := os.Stat(features); err != nil {
		if err := step("feature network for the Frechet distance", func() error {
			return runTrainFeatures([]string{"--source", *source, "--out", features})
		}); err != nil {
			return err
		}
	}
	teacher := filepath.Join(*runs, "teacher")
	half := func(n int) (int, int) { return (n + 1) / 2, n / 2 }
	te, td := half(*teacherEpochs)
	if err := step(fmt.Sprintf("teacher: pix2pix U-Net ngf %d, %d epochs", *teacherNGF, *teacherEpochs), func() error {
		return runTrain("train", append([]string{"--model", "pix2pix", "--out", teacher, "--ngf", fmt.Sprint(*teacherNGF), "--ndf", fmt.Sprint(*teacherNDF),
			"--epochs", fmt.Sprint(te), "--epochs-decay", fmt.Sprint(td)}, common...))
	}); err != nil {
		return err
	}
	se, sd := half(*studentEpochs)
	names := []string{"teacher"}
	dirs := []string{teacher}
	for _, kd := range []string{"none", "pixel", "wavelet"} {
		dir := filepath.Join(*runs, "student-"+kd)
		if err := step(fmt.Sprintf("student ngf %d, KD %s", *studentNGF, kd), func() error {
			return runTrain("distill", append([]string{"--model", "pix2pix", "--out", dir, "--teacher", teacher, "--kd", kd,
				"--alpha", *alpha, "--ngf", fmt.Sprint(*studentNGF), "--ndf", fmt.Sprint(*studentNDF), "--epochs", fmt.Sprint(se), "--epochs-decay", fmt.Sprint(sd)}, common...))
		}); err != nil {
			return err
		}
		names, dirs = append(names, "student "+kd), append(dirs, dir)
	}
	if err := step("evaluation and report", func() error {
		return runEval([]string{"--runs", join(dirs), "--names", join(names), "--features", features, "--out", *report})
	}); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "\ndemo done in %s: open %s\n", time.Since(t0).Round(time.Second), filepath.Join(*report, "report.html"))
	return nil
}

func join(s []string) string {
	out := ""
	for i, v := range s {
		if i > 0 {
			out += ","
		}
		out += v
	}
	return out
}
