package data

import "math"

// The resampler reproduces Pillow's Image.resize(size, BICUBIC) (libImaging/Resample.c) exactly
// for 8-bit images, so that data resized here equals data resized by the PyTorch reference:
//   - Keys cubic with a = -0.5, support 2;
//   - when shrinking, the kernel is stretched by the scale factor (antialiasing), so every input
//     pixel contributes;
//   - weights normalised to sum 1, then quantised to 22-bit fixed point, results rounded and
//     clipped to 0..255;
//   - separable: the horizontal pass first into an 8-bit intermediate, then the vertical pass.
// The parity test against Pillow (resample_test.go) checks it byte for byte.

const resamplePrecision = 32 - 8 - 2

func bicubic(x float64) float64 {
	const a = -0.5
	if x < 0 {
		x = -x
	}
	if x < 1 {
		return ((a+2)*x-(a+3))*x*x + 1
	}
	if x < 2 {
		return (((x-5)*x+8)*x - 4) * a
	}
	return 0
}

// coeffs holds, for each output position, the first input index, the count of inputs, and the
// fixed-point weights (ksize per output).
type coeffs struct {
	ksize  int
	bounds []int // bounds: (out, 2) = (xmin, count)
	k      []int32
}

func precomputeCoeffs(inSize, outSize int) coeffs {
	scale := float64(inSize) / float64(outSize)
	filterscale := math.Max(scale, 1)
	support := 2.0 * filterscale
	ksize := int(math.Ceil(support))*2 + 1
	c := coeffs{ksize: ksize, bounds: make([]int, 2*outSize), k: make([]int32, outSize*ksize)}
	kk := make([]float64, ksize)
	for xx := 0; xx < outSize; xx++ {
		center := (float64(xx) + 0.5) * scale
		ss := 1 / filterscale
		xmin := int(center - support + 0.5) // C cast truncates toward zero
		if xmin < 0 {
			xmin = 0
		}
		xmax := int(center + support + 0.5)
		if xmax > inSize {
			xmax = inSize
		}
		xmax -= xmin
		ww := 0.0
		for x := 0; x < xmax; x++ {
			w := bicubic((float64(x+xmin) - center + 0.5) * ss)
			kk[x] = w
			ww += w
		}
		for x := 0; x < xmax; x++ {
			if ww != 0 {
				kk[x] /= ww
			}
			v := kk[x] * (1 << resamplePrecision)
			if kk[x] < 0 {
				c.k[xx*ksize+x] = int32(-0.5 + v)
			} else {
				c.k[xx*ksize+x] = int32(0.5 + v)
			}
		}
		c.bounds[2*xx], c.bounds[2*xx+1] = xmin, xmax
	}
	return c
}

func clip8(v int32) uint8 {
	if v >= 1<<resamplePrecision<<8 {
		return 255
	}
	if v <= 0 {
		return 0
	}
	return uint8(v >> resamplePrecision)
}

// resize returns p resized to w x h with Pillow's BICUBIC; an unchanged size returns p itself.
func (p *plane) resize(w, h int) *plane {
	if w == p.w && h == p.h {
		return p
	}
	src := p
	if w != p.w {
		cx := precomputeCoeffs(p.w, w)
		tmp := newPlane(p.c, p.h, w)
		for ch := 0; ch < p.c; ch++ {
			for y := 0; y < p.h; y++ {
				in := p.pix[ch*p.h*p.w+y*p.w:][:p.w]
				out := tmp.pix[ch*p.h*w+y*w:][:w]
				for xx := range out {
					xmin, n := cx.bounds[2*xx], cx.bounds[2*xx+1]
					k := cx.k[xx*cx.ksize:][:n]
					ss := int32(1 << (resamplePrecision - 1))
					for x, kv := range k {
						ss += int32(in[xmin+x]) * kv
					}
					out[xx] = clip8(ss)
				}
			}
		}
		src = tmp
	}
	if h == src.h {
		return src
	}
	cy := precomputeCoeffs(src.h, h)
	out := newPlane(src.c, h, w)
	for ch := 0; ch < src.c; ch++ {
		in := src.pix[ch*src.h*w:][:src.h*w]
		o := out.pix[ch*h*w:][:h*w]
		for yy := 0; yy < h; yy++ {
			ymin, n := cy.bounds[2*yy], cy.bounds[2*yy+1]
			k := cy.k[yy*cy.ksize:][:n]
			for x := 0; x < w; x++ {
				ss := int32(1 << (resamplePrecision - 1))
				for y, kv := range k {
					ss += int32(in[(ymin+y)*w+x]) * kv
				}
				o[yy*w+x] = clip8(ss)
			}
		}
	}
	return out
}
