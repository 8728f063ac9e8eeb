package main

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"wkd/models"
	"wkd/ops"
	"wkd/trainer"
)

func init() {
	register(command{name: "translate", summary: "apply a trained generator to a folder of images", group: groupMake, use: "[flags] --input IMAGE|FOLDER", flags: translateFlags})
}

func translateFlags(fs *pflag.FlagSet, _ []string) func([]string) error {
	run := fs.String("run", "", "a wkd run folder (its config.json gives the architecture)")
	gen := fs.String("G", "G", "which generator of the run: G (pix2pix), G_A (A->B) or G_B (B->A)")
	weights := fs.String("weights", "", "a weights file instead of --run (give --netG and --ngf)")
	var spec models.Spec
	spec.Kind, spec.Norm = models.ResNet9Blocks, models.Instance
	fs.Var(&spec.Kind, "netG", "architecture with --weights: "+models.KindNames())
	fs.IntVar(&spec.NGF, "ngf", 64, "generator width with --weights")
	fs.Var(&spec.Norm, "norm", "normalization with --weights: "+models.NormNames())
	fs.IntVar(&spec.NBlocks, "n-blocks", 9, "residual blocks with --netG resnet")
	fs.IntVar(&spec.NumDowns, "num-downs", 8, "downsamplings with --netG unet")
	fs.IntVar(&spec.InputNC, "input-nc", 3, "input channels with --weights")
	fs.IntVar(&spec.OutputNC, "output-nc", 3, "output channels with --weights")
	in := fs.String("input", "", "a PNG or JPEG image, or a folder of them, to translate")
	out := fs.String("out", "translated", "folder for the outputs (PNG, same names); never --input's folder")
	aligned := fs.Bool("aligned", false, "the images are A|B pairs side by side, as pix2pix datasets store them: translate one half")
	direction := fs.String("direction", "AtoB", "with --aligned: AtoB translates the left half, BtoA the right")
	device := fs.String("device", trainer.DeviceCPU, "cpu|cuda: where the generator runs; cuda (GPU 0) needs a binary built with -tags cuda")
	return func(args []string) error {
		if *in == "" {
			return errors.New("--input: the image or folder of images to translate is required")
		}
		if *direction != "AtoB" && *direction != "BtoA" {
			return fmt.Errorf("--direction %q: use AtoB or BtoA", *direction)
		}
		dev, err := trainer.OpenDevice(*device)
		if err != nil {
			return err
		}
		if dev != nil {
			defer dev.Close()
		}
		files, err := imageFiles(*in)
		if err != nil {
			return err
		}
		// The outputs are PNGs named after the inputs: in the inputs' folder they would replace
		// the images themselves.
		for _, f := range files {
			if sameDir(filepath.Dir(f), *out) {
				return fmt.Errorf("--out %s holds the input images: translations would overwrite them; write them to another folder, such as --out translated", *out)
			}
		}
		var path string
		switch {
		case *run != "" && *weights != "":
			return errors.New("give --run or --weights, not both")
		case *run != "":
			if _, err := os.Stat(*run); os.IsNotExist(err) {
				return fmt.Errorf("--run %s does not exist: give the --out of a wkd train or wkd distill run (`make demo` leaves its runs in runs/demo), or a weights file with --weights", *run)
			}
			cfg, err := trainer.LoadConfig(*run)
			if err != nil {
				return fmt.Errorf("--run: %w (is %s the --out of a wkd train or wkd distill run?)", err, *run)
			}
			spec = cfg.G
			if cfg.Task == trainer.CycleGAN && *gen == "G" {
				*gen = "G_A"
			}
			if *gen == "G_B" {
				spec.InputNC, spec.OutputNC = spec.OutputNC, spec.InputNC
			}
			path = filepath.Join(*run, *gen+".safetensors")
		case *weights != "":
			path = *weights
		default:
			return errors.New("--run or --weights: which generator to apply is required")
		}
		g, err := models.Build(spec)
		if err != nil {
			return err
		}
		if _, err := models.Load(path, g); err != nil {
			return err
		}
		var tp *ops.Tape
		if dev != nil {
			models.MoveTo(g, dev)
			// One arena reused image after image: device memory is not left to the collector.
			tp = ops.NewTape()
			tp.SetNoGrad(true)
		}
		if err := os.MkdirAll(*out, 0o755); err != nil {
			return err
		}
		progress := progressLine("translating")
		for i, f := range files {
			x, err := readImage(f, spec.InputNC)
			if err != nil {
				return err
			}
			if *aligned {
				if x, err = halfOf(x, *direction == "BtoA"); err != nil {
					return fmt.Errorf("%s: %w", f, err)
				}
			}
			if _, err := models.CountMACs(spec, x.Shape[2], x.Shape[3]); err != nil {
				return fmt.Errorf("%s: %w (resize it, or train at a size that fits)", f, err)
			}
			if dev != nil {
				tp.Reset()
				xd := tp.AllocOn(dev, x.Shape...)
				xd.CopyFromHost(x.Data)
				x = xd
			}
			y := g.Forward(tp, x, false)
			if dev != nil {
				y = ops.FromData(y.HostData(), y.Shape...)
				if err := dev.Err(); err != nil {
					return fmt.Errorf("--device cuda: %w", err)
				}
			}
			name := strings.TrimSuffix(filepath.Base(f), filepath.Ext(f)) + ".png"
			if err := writeImage(filepath.Join(*out, name), y); err != nil {
				return err
			}
			progress(i+1, len(files))
		}
		fmt.Fprintf(os.Stderr, "translated %d images from %s into %s\n", len(files), *in, *out)
		return nil
	}
}

// imageFiles lists the PNG and JPEG files of a folder, sorted, or names the one file given.
func imageFiles(dir string) ([]string, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("--input: %w", err)
	}
	if !st.IsDir() {
		switch strings.ToLower(filepath.Ext(dir)) {
		case ".png", ".jpg", ".jpeg":
			return []string{dir}, nil
		}
		return nil, fmt.Errorf("--input %s: not a .png or .jpg image, nor a folder of them", dir)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("--input: %w", err)
	}
	var out []string
	for _, e := range ents {
		switch strings.ToLower(filepath.Ext(e.Name())) {
		case ".png", ".jpg", ".jpeg":
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--input %s: no .png or .jpg images", dir)
	}
	slices.Sort(out)
	return out, nil
}

// sameDir reports whether two paths name the same folder (either may not exist yet).
func sameDir(a, b string) bool {
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	if errA == nil && errB == nil {
		return os.SameFile(sa, sb)
	}
	return filepath.Clean(abs(a)) == filepath.Clean(abs(b))
}

// halfOf is the left (A) or right (B) half of an A|B pair (1, C, H, 2W).
func halfOf(x *ops.Tensor, right bool) (*ops.Tensor, error) {
	_, c, h, w := x.NCHW()
	if w%2 != 0 || w < 2 {
		return nil, fmt.Errorf("--aligned: %d px wide, not two halves side by side", w)
	}
	half := ops.New(1, c, h, w/2)
	off := 0
	if right {
		off = w / 2
	}
	for ch := range c {
		for y := range h {
			copy(half.Data[(ch*h+y)*(w/2):(ch*h+y+1)*(w/2)], x.Data[(ch*h+y)*w+off:(ch*h+y)*w+off+w/2])
		}
	}
	return half, nil
}

// readImage decodes an image into (1, nc, H, W) in [-1, 1].
func readImage(path string, nc int) (*ops.Tensor, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	img, _, err := image.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("%s: not a readable PNG or JPEG: %w", path, err)
	}
	b := img.Bounds()
	h, w := b.Dy(), b.Dx()
	t := ops.New(1, nc, h, w)
	for y := range h {
		for x := range w {
			r, g, bl, _ := img.At(b.Min.X+x, b.Min.Y+y).RGBA()
			px := [3]float32{float32(r >> 8), float32(g >> 8), float32(bl >> 8)}
			if nc == 1 {
				t.Data[y*w+x] = (0.299*px[0]+0.587*px[1]+0.114*px[2])/127.5 - 1
				continue
			}
			for c := range 3 {
				t.Data[(c*h+y)*w+x] = px[c]/127.5 - 1
			}
		}
	}
	return t, nil
}

// writeImage encodes the first image of (N, C, H, W) in [-1, 1] as PNG.
func writeImage(path string, t *ops.Tensor) error {
	_, c, h, w := t.NCHW()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	to8 := func(v float32) uint8 { return uint8(min(max((v+1)*127.5+0.5, 0), 255)) }
	for y := range h {
		for x := range w {
			var px [3]uint8
			for k := range 3 {
				px[k] = to8(t.Data[(min(k, c-1)*h+y)*w+x])
			}
			img.SetRGBA(x, y, color.RGBA{px[0], px[1], px[2], 255})
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
