package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"wkd/data"
)

func init() {
	register(command{name: "data", summary: "build a demo dataset (edges2shoes-mini, sneaker2boot) from Fashion-MNIST", run: runData})
}

// defaultFashionMNIST is where Debian's dataset-fashion-mnist package installs the files.
const defaultFashionMNIST = "/usr/share/datasets/fashion-mnist"

func runData(args []string) error {
	fs := flag.NewFlagSet("wkd data", flag.ContinueOnError)
	def := data.DefaultBuildConfig("", defaultFashionMNIST, "datasets")
	name := fs.String("name", "", "dataset to build: "+data.Edges2ShoesMini+" (aligned A|B: edge map | shoe photo) or "+data.Sneaker2Boot+" (unaligned: trainA sneakers, trainB ankle boots)")
	out := fs.String("out", def.Out, "parent folder; the dataset is written to <out>/<name>")
	source := fs.String("source", def.Source, "folder with the Fashion-MNIST IDX files (train-images-idx3-ubyte.gz, ...)")
	size := fs.Int("size", def.Size, "image side in pixels (A and B are size x size)")
	channels := fs.Int("channels", def.Channels, "1 (grayscale PNGs) or 3 (RGB PNGs)")
	train := fs.Int("train", def.Train, "training images (per domain for sneaker2boot)")
	val := fs.Int("val", def.Val, "validation images, held out of Fashion-MNIST's training set")
	test := fs.Int("test", def.Test, "test images, from Fashion-MNIST's test set")
	sigma := fs.Float64("edge-sigma", def.Edges.Sigma, "edge detector: Gaussian blur sigma in pixels")
	high := fs.Float64("edge-high", def.Edges.High, "edge detector: strong threshold, fraction of the largest gradient")
	low := fs.Float64("edge-low", def.Edges.Low, "edge detector: weak threshold, fraction of the strong one")
	force := fs.Bool("force", false, "replace <out>/<name> when it holds a dataset built with other flags")
	quiet := fs.Bool("quiet", false, "no progress indicator")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (flags only)", fs.Arg(0))
	}
	if *name == "" {
		return fmt.Errorf("--name is required: %s or %s", data.Edges2ShoesMini, data.Sneaker2Boot)
	}
	cfg := data.BuildConfig{Name: *name, Source: *source, Out: *out, Size: *size, Channels: *channels,
		Train: *train, Val: *val, Test: *test, Force: *force,
		Edges: data.EdgeParams{Sigma: *sigma, High: *high, Low: *low}}
	if !*quiet {
		cfg.Progress = dataProgressPrinter(os.Stderr)
	}
	start := time.Now()
	res, err := data.Build(cfg)
	if err != nil {
		return err
	}
	verb := "wrote"
	if res.Skipped {
		verb = "already complete, nothing written:"
	}
	var parts []string
	for _, k := range dataSortedKeys(res.Counts) {
		parts = append(parts, fmt.Sprintf("%s %d", k, res.Counts[k]))
	}
	fmt.Printf("%s %s %s (%s) in %.1fs\n", *name, verb, res.Dir, strings.Join(parts, ", "), time.Since(start).Seconds())
	if !res.Skipped {
		fmt.Printf("preview: %s/%s\n", res.Dir, data.ContactSheetFile)
	}
	return nil
}

// dataProgressPrinter redraws one status line, at most every 100 ms and at the end of each split.
func dataProgressPrinter(w io.Writer) func(split string, done, total int) {
	var last time.Time
	return func(split string, done, total int) {
		if done != total && time.Since(last) < 100*time.Millisecond {
			return
		}
		last = time.Now()
		fmt.Fprintf(w, "\r%-8s %6d/%-6d %3d%%", split, done, total, 100*done/total)
		if done == total {
			fmt.Fprintln(w)
		}
	}
}

func dataSortedKeys(m map[string]int) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
