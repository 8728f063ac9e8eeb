package metrics

import (
	"math"
	"math/cmplx"
)

// Spectrum is the azimuthally averaged power spectrum of the luma of an image set: entry r is
// the mean log10 power at integer radius r from the zero frequency (r = 0 .. min(H,W)/2).
func Spectrum(images []Image) []float64 {
	if len(images) == 0 {
		return nil
	}
	h, w := images[0].H, images[0].W
	nr := min(h, w)/2 + 1
	sum := make([]float64, nr)
	cnt := make([]float64, nr)
	for _, im := range images {
		f := dft2(im.Gray(), h, w)
		for y := range h {
			fy := y
			if fy > h/2 {
				fy -= h
			}
			for x := range w {
				fx := x
				if fx > w/2 {
					fx -= w
				}
				r := int(math.Round(math.Hypot(float64(fy), float64(fx))))
				if r >= nr {
					continue
				}
				p := cmplx.Abs(f[y*w+x])
				sum[r] += math.Log10(p*p/float64(h*w) + 1e-12)
				cnt[r]++
			}
		}
	}
	for r := range sum {
		sum[r] /= cnt[r]
	}
	return sum
}

// SpectrumDistance is the mean absolute difference of two spectra in log10 power, over every
// radius but 0 (the mean brightness): how far apart the frequency content is, in decades.
func SpectrumDistance(a, b []float64) float64 {
	n := min(len(a), len(b))
	var s float64
	for r := 1; r < n; r++ {
		s += math.Abs(a[r] - b[r])
	}
	return s / float64(n-1)
}

// dft2 is the 2-D discrete Fourier transform of an (h, w) real plane: rows then columns, each
// by FFT when the length is a power of two, else directly.
func dft2(x []float64, h, w int) []complex128 {
	out := make([]complex128, h*w)
	for i, v := range x {
		out[i] = complex(v, 0)
	}
	row := make([]complex128, w)
	for y := range h {
		copy(row, out[y*w:(y+1)*w])
		copy(out[y*w:(y+1)*w], dft1(row))
	}
	col := make([]complex128, h)
	for x := range w {
		for y := range h {
			col[y] = out[y*w+x]
		}
		res := dft1(col)
		for y := range h {
			out[y*w+x] = res[y]
		}
	}
	return out
}

func dft1(x []complex128) []complex128 {
	n := len(x)
	if n&(n-1) == 0 {
		return fft(x)
	}
	out := make([]complex128, n)
	for k := range n {
		var s complex128
		for t := range n {
			s += x[t] * cmplx.Exp(complex(0, -2*math.Pi*float64(k*t)/float64(n)))
		}
		out[k] = s
	}
	return out
}

// fft is a recursive radix-2 FFT; len(x) must be a power of two.
func fft(x []complex128) []complex128 {
	n := len(x)
	if n == 1 {
		return []complex128{x[0]}
	}
	even := make([]complex128, n/2)
	odd := make([]complex128, n/2)
	for i := range n / 2 {
		even[i], odd[i] = x[2*i], x[2*i+1]
	}
	e, o := fft(even), fft(odd)
	out := make([]complex128, n)
	for k := range n / 2 {
		t := cmplx.Exp(complex(0, -2*math.Pi*float64(k)/float64(n))) * o[k]
		out[k], out[k+n/2] = e[k]+t, e[k]-t
	}
	return out
}
