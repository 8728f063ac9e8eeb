package data

import (
	"fmt"
	"strings"
)

// Layout is the folder layout of a dataset.
type Layout string

const (
	// Aligned: root/<phase>/ holds A|B images side by side (pix2pix).
	Aligned Layout = "aligned"
	// Unaligned: root/<phase>A and root/<phase>B hold the two domains (CycleGAN).
	Unaligned Layout = "unaligned"
)

// Preprocess names the reference's --preprocess choices.
type Preprocess string

const (
	ResizeAndCrop     Preprocess = "resize_and_crop"      // resize to LoadSize², crop CropSize²
	Crop              Preprocess = "crop"                 // crop CropSize² from the image as is
	ScaleWidth        Preprocess = "scale_width"          // width to LoadSize, height kept in ratio (>= CropSize)
	ScaleWidthAndCrop Preprocess = "scale_width_and_crop" // scale_width, then crop CropSize²
	PreprocessNone    Preprocess = "none"                 // only round sides to a multiple of 4
)

// Preprocesses lists the allowed values of Config.Preprocess, for flag help.
var Preprocesses = []Preprocess{ResizeAndCrop, Crop, ScaleWidth, ScaleWidthAndCrop, PreprocessNone}

// Config selects a dataset and its transforms; the fields mirror the reference's options.
type Config struct {
	// Root is the dataset folder (the reference's --dataroot).
	Root string
	// Layout is Aligned or Unaligned (--dataset_mode aligned|unaligned).
	Layout Layout
	// Phase is the split: "train", "val" or "test" (--phase).
	Phase string
	// BtoA swaps the roles (--direction BtoA): Sample.A is then the B side, with InputNC channels.
	BtoA bool
	// InputNC and OutputNC are 1 (grayscale) or 3 (RGB) for the generator's input and output.
	InputNC, OutputNC int
	// Preprocess is the resize/crop recipe (--preprocess). Defaults to resize_and_crop.
	Preprocess Preprocess
	// LoadSize is the size images are resized to before cropping, in pixels (--load_size).
	LoadSize int
	// CropSize is the side of the square crop, in pixels (--crop_size).
	CropSize int
	// NoFlip turns the random horizontal flip off (--no_flip).
	NoFlip bool
	// Train turns the random transforms on. False (test/eval) gives a centre crop, no flip and,
	// for unaligned data, B = index % len(B) (the reference's serial_batches at test time).
	Train bool
	// SerialBatches takes B = index % len(B) also when training (--serial_batches).
	SerialBatches bool
	// MaxDatasetSize caps the number of images per folder, 0 for no cap (--max_dataset_size).
	MaxDatasetSize int
}

// DefaultPix2PixConfig is the reference's pix2pix training setup on an aligned dataset.
func DefaultPix2PixConfig(root string) Config {
	return Config{Root: root, Layout: Aligned, Phase: "train", InputNC: 3, OutputNC: 3,
		Preprocess: ResizeAndCrop, LoadSize: 286, CropSize: 256, Train: true}
}

// DefaultCycleGANConfig is the reference's CycleGAN training setup on an unaligned dataset.
func DefaultCycleGANConfig(root string) Config {
	c := DefaultPix2PixConfig(root)
	c.Layout = Unaligned
	return c
}

// Validate reports the first invalid field, named as its reference flag.
func (c Config) Validate() error {
	switch {
	case c.Root == "":
		return fmt.Errorf("%w: --dataroot is empty", ErrBadConfig)
	case c.Layout != Aligned && c.Layout != Unaligned:
		return fmt.Errorf("%w: --dataset_mode %q, want aligned or unaligned", ErrBadConfig, c.Layout)
	case c.Phase == "" || strings.ContainsAny(c.Phase, `/\`):
		return fmt.Errorf("%w: --phase %q, want a folder name such as train or test", ErrBadConfig, c.Phase)
	case c.InputNC != 1 && c.InputNC != 3:
		return fmt.Errorf("%w: --input_nc %d, want 1 or 3", ErrBadConfig, c.InputNC)
	case c.OutputNC != 1 && c.OutputNC != 3:
		return fmt.Errorf("%w: --output_nc %d, want 1 or 3", ErrBadConfig, c.OutputNC)
	case c.MaxDatasetSize < 0:
		return fmt.Errorf("%w: --max_dataset_size %d, want >= 0", ErrBadConfig, c.MaxDatasetSize)
	}
	p := c.preprocess()
	ok := false
	for _, v := range Preprocesses {
		ok = ok || p == v
	}
	if !ok {
		return fmt.Errorf("%w: --preprocess %q, want one of %v", ErrBadConfig, p, Preprocesses)
	}
	if strings.Contains(string(p), "resize") || strings.Contains(string(p), "scale_width") {
		if c.LoadSize < 1 {
			return fmt.Errorf("%w: --load_size %d, want >= 1", ErrBadConfig, c.LoadSize)
		}
	}
	if strings.Contains(string(p), "crop") || p == ScaleWidth {
		if c.CropSize < 1 {
			return fmt.Errorf("%w: --crop_size %d, want >= 1", ErrBadConfig, c.CropSize)
		}
	}
	if c.Layout == Aligned && p == ResizeAndCrop && c.LoadSize < c.CropSize {
		return fmt.Errorf("%w: --load_size %d is smaller than --crop_size %d", ErrBadConfig, c.LoadSize, c.CropSize)
	}
	return nil
}

func (c Config) preprocess() Preprocess {
	if c.Preprocess == "" {
		return ResizeAndCrop
	}
	return c.Preprocess
}
