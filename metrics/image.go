package metrics

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
)

// Image is one image, (C, H, W) in [-1, 1].
type Image struct {
	C, H, W int
	Pix     []float32
}

func (im Image) check(other Image) {
	if im.C != other.C || im.H != other.H || im.W != other.W {
		panic(fmt.Sprintf("metrics: image shapes differ: (%d,%d,%d) and (%d,%d,%d)", im.C, im.H, im.W, other.C, other.H, other.W))
	}
}

// Gray returns the image's luma (ITU-R 601) as an (H, W) plane in [-1, 1].
func (im Image) Gray() []float64 {
	n := im.H * im.W
	out := make([]float64, n)
	if im.C < 3 {
		for i := range n {
			out[i] = float64(im.Pix[i])
		}
		return out
	}
	for i := range n {
		out[i] = 0.299*float64(im.Pix[i]) + 0.587*float64(im.Pix[n+i]) + 0.114*float64(im.Pix[2*n+i])
	}
	return out
}

// PSNR is the peak signal-to-noise ratio in dB with images mapped to [0, 1] (data range 1).
func PSNR(a, b Image) float64 {
	a.check(b)
	var se float64
	for i := range a.Pix {
		d := float64(a.Pix[i]-b.Pix[i]) / 2
		se += d * d
	}
	mse := se / float64(len(a.Pix))
	if mse == 0 {
		return math.Inf(1)
	}
	return -10 * math.Log10(mse)
}

// L1 is the mean absolute difference in [0, 1] units.
func L1(a, b Image) float64 {
	a.check(b)
	var s float64
	for i := range a.Pix {
		s += math.Abs(float64(a.Pix[i]-b.Pix[i])) / 2
	}
	return s / float64(len(a.Pix))
}

// SSIM is the structural similarity of Wang et al. (2004) with their constants: an 11x11
// Gaussian window of sigma 1.5, K1 0.01, K2 0.03, data range 1, computed per channel over the
// valid window positions and averaged. Images smaller than the window use a window of their size.
func SSIM(a, b Image) float64 {
	a.check(b)
	const k1, k2 = 0.01, 0.03
	c1, c2 := k1*k1, k2*k2
	win := gaussianWindow(min(11, a.H, a.W), 1.5)
	ws := len(win)
	var total float64
	var count int
	plane := a.H * a.W
	for c := range a.C {
		pa, pb := a.Pix[c*plane:(c+1)*plane], b.Pix[c*plane:(c+1)*plane]
		for y := 0; y+ws <= a.H; y++ {
			for x := 0; x+ws <= a.W; x++ {
				var ma, mb, va, vb, cov float64
				for i := range ws {
					for j := range ws {
						w := win[i] * win[j]
						va0 := (float64(pa[(y+i)*a.W+x+j]) + 1) / 2
						vb0 := (float64(pb[(y+i)*a.W+x+j]) + 1) / 2
						ma += w * va0
						mb += w * vb0
						va += w * va0 * va0
						vb += w * vb0 * vb0
						cov += w * va0 * vb0
					}
				}
				va -= ma * ma
				vb -= mb * mb
				cov -= ma * mb
				total += ((2*ma*mb + c1) * (2*cov + c2)) / ((ma*ma + mb*mb + c1) * (va + vb + c2))
				count++
			}
		}
	}
	return total / float64(count)
}

// gaussianWindow is a normalized 1-D Gaussian of n taps.
func gaussianWindow(n int, sigma float64) []float64 {
	w := make([]float64, n)
	var s float64
	for i := range w {
		d := float64(i) - float64(n-1)/2
		w[i] = math.Exp(-d * d / (2 * sigma * sigma))
		s += w[i]
	}
	for i := range w {
		w[i] /= s
	}
	return w
}

// PairedMetrics is each generated image's PSNR (at most MaxPSNR), SSIM and L1 against its
// target. gen and real are in the same order and of the same shapes.
func PairedMetrics(gen, real []Image) *PerImage {
	p := &PerImage{PSNR: make([]float64, len(gen)), SSIM: make([]float64, len(gen)), L1: make([]float64, len(gen))}
	for i := range gen {
		p.PSNR[i] = math.Min(PSNR(gen[i], real[i]), MaxPSNR)
		p.SSIM[i] = SSIM(gen[i], real[i])
		p.L1[i] = L1(gen[i], real[i])
	}
	return p
}

// Digest is a short hash of an image set's shapes and pixels, in order.
func Digest(images []Image) string {
	h := fnv.New64a()
	var b [4]byte
	for _, im := range images {
		for _, v := range []int{im.C, im.H, im.W} {
			binary.LittleEndian.PutUint32(b[:], uint32(v))
			h.Write(b[:])
		}
		for _, v := range im.Pix {
			binary.LittleEndian.PutUint32(b[:], math.Float32bits(v))
			h.Write(b[:])
		}
	}
	return fmt.Sprintf("fnv64a:%016x", h.Sum64())
}
