package data

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// randomRGB returns a w x h image of random colours.
func randomRGB(rng *rand.Rand, w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = uint8(rng.IntN(256))
		if i%4 == 3 {
			img.Pix[i] = 255
		}
	}
	return img
}

// pairImage puts a and b side by side.
func pairImage(a, b image.Image) *image.RGBA {
	w, h := a.Bounds().Dx(), a.Bounds().Dy()
	img := image.NewRGBA(image.Rect(0, 0, 2*w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, a.At(x, y))
			img.Set(w+x, y, b.At(x, y))
		}
	}
	return img
}

func writePNGFile(t testing.TB, path string, img image.Image) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeJPEGFile(t testing.TB, path string, img image.Image) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 100}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// norm is the expected float of an 8-bit value.
func norm(v uint8) float32 { return (float32(v)/255 - 0.5) / 0.5 }

// channelAt reads channel c (0 R, 1 G, 2 B) of an RGBA image.
func channelAt(img *image.RGBA, x, y, c int) uint8 { return img.Pix[img.PixOffset(x, y)+c] }

func luma(c color.RGBA) uint8 {
	return uint8((uint32(c.R)*19595 + uint32(c.G)*38470 + uint32(c.B)*7471 + 0x8000) >> 16)
}

func mustOpen(t *testing.T, cfg Config) *Dataset {
	t.Helper()
	d, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func mustLoad(t *testing.T, d *Dataset, seed uint64, epoch, index int) Sample {
	t.Helper()
	s, err := d.Load(seed, epoch, index)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
