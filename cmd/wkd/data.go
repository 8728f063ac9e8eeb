package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"wkd/data"
)

func init() {
	register(command{name: "data", summary: "build a dataset: from Fashion-MNIST (edges2shoes-mini, sneaker2boot) or texture photographs (sketch2texture, stone2metal, texture-classes)", group: groupMake, flags: dataFlags})
}

// defaultFashionMNIST is where Debian's dataset-fashion-mnist package installs the files.
const defaultFashionMNIST = "/usr/share/datasets/fashion-mnist"

const dataNameHelp = `dataset to build:
  ` + data.Edges2ShoesMini + `  aligned A|B: Canny edge map | Fashion-MNIST shoe
  ` + data.Sneaker2Boot + `      unaligned: trainA sneakers, trainB ankle boots (Fashion-MNIST)
  ` + data.Sketch2Texture + `    aligned A|B: flat-colour sketch with edges | collage of texture crops
  ` + data.Stone2Metal + `       unaligned: trainA stone, brick, concrete; trainB metal, rust, grates
  ` + data.TextureClasses + `   ImageFolder of texture crops by material: train/<material>/*.png, test/...
the last three are cut from the photographs of the Debian package ` + data.TexturePackage + ` (GPL-2+)`

func dataFlags(fs *pflag.FlagSet, _ []string) func([]string) error {
	fashion := data.DefaultBuildConfig("", defaultFashionMNIST, "datasets")
	texture := data.DefaultTextureConfig(data.Sketch2Texture, "", data.DefaultTextureCache(), "datasets")
	name := fs.String("name", "", dataNameHelp)
	out := fs.String("out", fashion.Out, "parent folder; the dataset is written to <out>/<name>")
	source := fs.String("source", fashion.Source, "Fashion-MNIST sets: folder with the IDX files (train-images-idx3-ubyte.gz, ...)")
	cache := fs.String("cache", texture.Cache, "texture sets: folder for the downloaded .deb and the files unpacked from it")
	textures := fs.String("textures", "", "texture sets: the "+data.TexturePackage+" .deb (default: the one in --cache, fetched there with apt-get download "+data.TexturePackage+" when absent)")
	seed := fs.Uint64("seed", texture.Seed, "texture sets: seed of the train/test split of the textures and of every crop")
	size := fs.Int("size", 0, fmt.Sprintf("image side in pixels (default %d for Fashion-MNIST sets, %d for texture sets, which allow 32..512)", fashion.Size, texture.Size))
	channels := fs.Int("channels", fashion.Channels, "Fashion-MNIST sets: 1 (grayscale PNGs) or 3 (RGB PNGs); texture sets are RGB")
	train := fs.Int("train", 0, fmt.Sprintf("training images (default %d for Fashion-MNIST sets, %d for sketch2texture and stone2metal, %d per material for texture-classes; per domain for unaligned sets)",
		fashion.Train, texture.Train, data.DefaultTextureConfig(data.TextureClasses, "", "", "").Train))
	val := fs.Int("val", 0, fmt.Sprintf("validation images (default %d for Fashion-MNIST sets, %d for sketch2texture, 0 for stone2metal and texture-classes), held out like the test images", fashion.Val, texture.Val))
	test := fs.Int("test", 0, fmt.Sprintf("test images (default %d for Fashion-MNIST sets, %d for sketch2texture and stone2metal, %d per material for texture-classes)",
		fashion.Test, texture.Test, data.DefaultTextureConfig(data.TextureClasses, "", "", "").Test))
	sigma := fs.Float64("edge-sigma", 0, fmt.Sprintf("edge detector: Gaussian blur sigma in pixels (default %g for edges2shoes-mini, %g for sketch2texture)", fashion.Edges.Sigma, texture.Edges.Sigma))
	high := fs.Float64("edge-high", 0, fmt.Sprintf("edge detector: strong threshold, fraction of the largest gradient (default %g for edges2shoes-mini, %g for sketch2texture)", fashion.Edges.High, texture.Edges.High))
	low := fs.Float64("edge-low", 0, fmt.Sprintf("edge detector: weak threshold, fraction of the strong one (default %g for edges2shoes-mini, %g for sketch2texture)", fashion.Edges.Low, texture.Edges.Low))
	force := fs.Bool("force", false, "replace <out>/<name> when it holds a dataset built with other flags")
	quiet := fs.Bool("quiet", false, "no progress indicator")
	return func(args []string) error {
		set := map[string]bool{}
		fs.Visit(func(f *pflag.Flag) { set[f.Name] = true })
		isTexture := data.IsTextureDataset(*name)
		switch {
		case *name == "":
			return fmt.Errorf("--name is required: %s, %s, %s, %s or %s", data.Edges2ShoesMini, data.Sneaker2Boot, data.Sketch2Texture, data.Stone2Metal, data.TextureClasses)
		case !isTexture && *name != data.Edges2ShoesMini && *name != data.Sneaker2Boot:
			return fmt.Errorf("--name %q: want %s, %s, %s, %s or %s", *name, data.Edges2ShoesMini, data.Sneaker2Boot, data.Sketch2Texture, data.Stone2Metal, data.TextureClasses)
		}
		for _, f := range []struct {
			flag string
			ok   bool
			use  string
		}{
			{"source", !isTexture, "the Fashion-MNIST sets; texture sets read --textures or --cache"},
			{"channels", !isTexture, "the Fashion-MNIST sets; texture sets are RGB"},
			{"cache", isTexture, "the texture sets"},
			{"textures", isTexture, "the texture sets"},
			{"seed", isTexture, "the texture sets; the Fashion-MNIST sets take the first items in file order"},
			{"edge-sigma", *name != data.Stone2Metal && *name != data.TextureClasses, "the sets with sketches: " + data.Edges2ShoesMini + " and " + data.Sketch2Texture},
			{"edge-high", *name != data.Stone2Metal && *name != data.TextureClasses, "the sets with sketches: " + data.Edges2ShoesMini + " and " + data.Sketch2Texture},
			{"edge-low", *name != data.Stone2Metal && *name != data.TextureClasses, "the sets with sketches: " + data.Edges2ShoesMini + " and " + data.Sketch2Texture},
		} {
			if set[f.flag] && !f.ok {
				return fmt.Errorf("--%s does not apply to %s: it is for %s", f.flag, *name, f.use)
			}
		}
		// Flags left unset take the defaults of the chosen dataset.
		pick := func(flag string, v, def int) int {
			if set[flag] {
				return v
			}
			return def
		}
		pickF := func(flag string, v, def float64) float64 {
			if set[flag] {
				return v
			}
			return def
		}
		var progress func(string, int, int)
		if !*quiet {
			progress = dataProgressPrinter(os.Stderr, isTerminal(os.Stderr))
		}
		start := time.Now()
		var res data.BuildResult
		var err error
		if isTexture {
			def := data.DefaultTextureConfig(*name, *textures, *cache, *out)
			cfg := def
			cfg.Size, cfg.Seed, cfg.Force, cfg.Progress = pick("size", *size, def.Size), *seed, *force, progress
			cfg.Train, cfg.Val, cfg.Test = pick("train", *train, def.Train), pick("val", *val, def.Val), pick("test", *test, def.Test)
			cfg.Edges = data.EdgeParams{Sigma: pickF("edge-sigma", *sigma, def.Edges.Sigma), High: pickF("edge-high", *high, def.Edges.High), Low: pickF("edge-low", *low, def.Edges.Low)}
			if !*quiet {
				cfg.Note = func(msg string) { fmt.Fprintln(os.Stderr, msg) }
			}
			probe := cfg
			if probe.Deb == "" {
				probe.Deb = "the package in --cache"
			}
			if err := probe.Validate(); err != nil {
				return err // a bad flag is reported before anything is downloaded
			}
			if cfg.Deb == "" {
				if cfg.Deb = data.CachedTexturePackage(cfg.Cache); cfg.Deb == "" {
					if !*quiet {
						fmt.Fprintf(os.Stderr, "fetching %s into %s with apt-get download\n", data.TexturePackage, cfg.Cache)
					}
					if cfg.Deb, err = data.FetchTexturePackage(cfg.Cache); err != nil {
						return err
					}
				}
			}
			res, err = data.BuildTextures(cfg)
		} else {
			cfg := data.BuildConfig{Name: *name, Source: *source, Out: *out, Size: pick("size", *size, fashion.Size), Channels: *channels,
				Train: pick("train", *train, fashion.Train), Val: pick("val", *val, fashion.Val), Test: pick("test", *test, fashion.Test), Force: *force,
				Edges:    data.EdgeParams{Sigma: pickF("edge-sigma", *sigma, fashion.Edges.Sigma), High: pickF("edge-high", *high, fashion.Edges.High), Low: pickF("edge-low", *low, fashion.Edges.Low)},
				Progress: progress}
			res, err = data.Build(cfg)
		}
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
}

// dataProgressPrinter shows how far each split is: on a terminal one status line redrawn at
// most every 100 ms, elsewhere (a log file, CI) a plain line at every tenth.
func dataProgressPrinter(w io.Writer, terminal bool) func(split string, done, total int) {
	var last time.Time
	lastTenth := map[string]int{}
	return func(split string, done, total int) {
		line := fmt.Sprintf("%-8s %6d/%-6d %3d%%", split, done, total, 100*done/total)
		if !terminal {
			if tenth := 10 * done / total; tenth > lastTenth[split] {
				lastTenth[split] = tenth
				fmt.Fprintln(w, line)
			}
			return
		}
		if done != total && time.Since(last) < 100*time.Millisecond {
			return
		}
		last = time.Now()
		fmt.Fprintf(w, "\r%s\033[K", line)
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
