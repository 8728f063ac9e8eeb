package ops

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// benchShape is one layer of the ResNet-9 generator at 128x128, batch 1.
type benchShape struct {
	name                        string
	c, h, w, k, kh, stride, pad int
	outPad                      int
	transposed, imageIn         bool // imageIn: the input is data, no input gradient
}

// resnet9Shapes lists the conv layers of a ResNet-9 generator of width ngf on a 128x128 image
// (reflection pads already applied, as the model applies them).
func resnet9Shapes(ngf int) []benchShape {
	return []benchShape{
		{name: "c7s1_in", c: 3, h: 134, w: 134, k: ngf, kh: 7, stride: 1, imageIn: true},
		{name: "down1_3x3s2", c: ngf, h: 128, w: 128, k: 2 * ngf, kh: 3, stride: 2, pad: 1},
		{name: "down2_3x3s2", c: 2 * ngf, h: 64, w: 64, k: 4 * ngf, kh: 3, stride: 2, pad: 1},
		{name: "res_3x3", c: 4 * ngf, h: 34, w: 34, k: 4 * ngf, kh: 3, stride: 1},
		{name: "up1_T3x3s2", c: 4 * ngf, h: 32, w: 32, k: 2 * ngf, kh: 3, stride: 2, pad: 1, outPad: 1, transposed: true},
		{name: "up2_T3x3s2", c: 2 * ngf, h: 64, w: 64, k: ngf, kh: 3, stride: 2, pad: 1, outPad: 1, transposed: true},
		{name: "c7s1_out", c: ngf, h: 134, w: 134, k: 3, kh: 7, stride: 1},
	}
}

// benchConv times one forward and backward pass (dW, db and, unless the input is an image, dX)
// on a reused tape and reports GFLOP/s counting 2*MACs per GEMM.
func benchConv(b *testing.B, s benchShape) {
	r := rand.New(rand.NewPCG(1, 2))
	x := randTensor(r, 1, s.c, s.h, s.w)
	var w *Tensor
	if s.transposed {
		w = randTensor(r, s.c, s.k, s.kh, s.kh)
	} else {
		w = randTensor(r, s.k, s.c, s.kh, s.kh)
	}
	bias := randTensor(r, s.k)
	w.SetRequiresGrad(true)
	bias.SetRequiresGrad(true)
	x.SetRequiresGrad(!s.imageIn)
	tp := NewTape()
	f := func() *Tensor {
		if s.transposed {
			return ConvTranspose2d(tp, x, w, bias, s.stride, s.pad, s.outPad)
		}
		return Conv2d(tp, x, w, bias, s.stride, s.pad)
	}
	y := f()
	gy := randTensor(r, y.Shape...).Data
	// MACs of one GEMM: every (input pixel, output pixel) pair a kernel tap connects.
	small := y.Shape[2] * y.Shape[3]
	if s.transposed {
		small = s.h * s.w
	}
	macs := float64(s.c * s.k * s.kh * s.kh * small)
	gemms := 3.0
	if s.imageIn {
		gemms = 2
	}
	b.ResetTimer()
	for range b.N {
		tp.Reset()
		y := f()
		SeedGrad(y, gy)
		tp.BackwardFrom()
	}
	b.ReportMetric(2*macs*gemms*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

// BenchmarkConv2d: forward+backward of the generator's convolutions, ngf 16 (the distilled
// student) and 64 (the teacher). Run briefly: go test -run - -bench Conv2d -benchtime 3x ./ops/
func BenchmarkConv2d(b *testing.B) {
	for _, ngf := range []int{16, 64} {
		for _, s := range resnet9Shapes(ngf) {
			if s.transposed {
				continue
			}
			b.Run(fmt.Sprintf("ngf%d/%s_%dto%d", ngf, s.name, s.c, s.k), func(b *testing.B) { benchConv(b, s) })
		}
	}
}

// BenchmarkConvTranspose2d: forward+backward of the generator's upsampling layers.
func BenchmarkConvTranspose2d(b *testing.B) {
	for _, ngf := range []int{16, 64} {
		for _, s := range resnet9Shapes(ngf) {
			if !s.transposed {
				continue
			}
			b.Run(fmt.Sprintf("ngf%d/%s_%dto%d", ngf, s.name, s.c, s.k), func(b *testing.B) { benchConv(b, s) })
		}
	}
}

// BenchmarkIm2col times the column matrix of one image for the generator's layers, the work a
// backward pass redoes instead of keeping the forward's columns in the arena. Compare with
// BenchmarkConv2d's ns/op to see what recomputing costs; the MB metric is what keeping would cost.
func BenchmarkIm2col(b *testing.B) {
	for _, ngf := range []int{16, 64} {
		for _, s := range resnet9Shapes(ngf) {
			if s.transposed {
				continue
			}
			b.Run(fmt.Sprintf("ngf%d/%s_%dto%d", ngf, s.name, s.c, s.k), func(b *testing.B) {
				g := newConvGeom(s.c, s.h, s.w, s.kh, s.kh, s.stride, s.pad)
				if viaTranspose(&g, s.k) {
					// This conv's backward takes the columns of dY instead.
					g = transposeGeom(&g, s.k)
				}
				x := randTensor(rand.New(rand.NewPCG(1, 2)), g.c, g.h, g.w)
				sc := getScratch()
				defer putScratch(sc)
				cols := make([]float32, g.rows()*g.oh*g.ow)
				b.ResetTimer()
				for range b.N {
					sc.im2col(&g, x.Data, 0, g.oh, cols)
				}
				b.ReportMetric(float64(4*len(cols))/1e6, "MB")
				b.ReportMetric(float64(4*len(cols))*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
			})
		}
	}
}
