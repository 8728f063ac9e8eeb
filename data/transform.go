package data

import (
	"math"
	"strings"
)

// params are the random choices of one image (or of one A|B pair, which shares them).
type params struct {
	// cropX, cropY are the crop's top-left corner; centred when not training.
	cropX, cropY int
	flip         bool
}

// resizedSize is the size after the resize step of the reference's get_transform
// (before cropping), for an input of w x h.
func (c Config) resizedSize(w, h int) (int, int) {
	switch p := c.preprocess(); {
	case strings.Contains(string(p), "resize"):
		return c.LoadSize, c.LoadSize
	case strings.Contains(string(p), "scale_width"):
		if w == c.LoadSize && h >= c.CropSize {
			return w, h
		}
		// int(max(target * oh / ow, crop)) in Python: true division, then truncation.
		return c.LoadSize, int(math.Max(float64(c.LoadSize)*float64(h)/float64(w), float64(c.CropSize)))
	case p == PreprocessNone:
		return makePower2(w), makePower2(h)
	}
	return w, h
}

// makePower2 rounds a side to a multiple of 4 as the reference's __make_power_2
// (Python's round: half to even).
func makePower2(s int) int {
	const base = 4
	return int(math.RoundToEven(float64(s)/base) * base)
}

// drawParams picks crop and flip like the reference's get_params, for an image of w x h
// before transforms. Not training: centre crop, no flip.
func (c Config) drawParams(r *sampleRand, w, h int) params {
	// get_params uses these sizes, which differ from the real resize for scale_width (a
	// quirk we keep: with scale_width_and_crop the crop range is load*h//w, not max(.., crop)).
	nw, nh := w, h
	switch c.preprocess() {
	case ResizeAndCrop:
		nw, nh = c.LoadSize, c.LoadSize
	case ScaleWidthAndCrop:
		nw, nh = c.LoadSize, c.LoadSize*h/w
	}
	if !c.Train {
		return params{cropX: max(0, nw-c.CropSize) / 2, cropY: max(0, nh-c.CropSize) / 2}
	}
	var p params
	p.cropX = r.intn(max(0, nw-c.CropSize) + 1)
	p.cropY = r.intn(max(0, nh-c.CropSize) + 1)
	p.flip = r.coin()
	return p
}

// transform applies the reference's get_transform to one RGB image: grayscale (nc 1), resize,
// crop, flip. The result is 8-bit; toFloat normalises it.
func (c Config) transform(in *plane, nc int, p params) *plane {
	img := in
	if nc == 1 {
		img = img.gray()
	}
	w, h := c.resizedSize(img.w, img.h)
	img = img.resize(w, h)
	if strings.Contains(string(c.preprocess()), "crop") && (img.w > c.CropSize || img.h > c.CropSize) {
		img = img.crop(p.cropX, p.cropY, c.CropSize, c.CropSize)
	}
	if p.flip && !c.NoFlip && c.Train {
		if img == in {
			img = &plane{c: img.c, h: img.h, w: img.w, pix: append([]uint8(nil), img.pix...)}
		}
		img.flipX()
	}
	return img
}
