package ops

import "fmt"

// ConvTranspose2d is the transposed convolution of torch.nn.functional.conv_transpose2d
// (dilation 1, groups 1): the data-gradient of Conv2d, so its forward is GEMM + col2im and its
// backward is im2col + GEMM, the two halves of Conv2d swapped.
// x: (N, C, H, W); w: (C, K, KH, KW) (PyTorch's layout); b: (K) or nil -> (N, K, OH, OW) with
// OH = (H-1)*stride - 2*pad + KH + outPad. outPad must be smaller than stride, as in PyTorch.
func ConvTranspose2d(tp *Tape, x, w, b *Tensor, stride, pad, outPad int) *Tensor {
	n, c, h, wd := x.NCHW()
	wc, k, kh, kw := w.NCHW()
	oh := (h-1)*stride - 2*pad + kh + outPad
	ow := (wd-1)*stride - 2*pad + kw + outPad
	if wc != c || stride < 1 || pad < 0 || outPad < 0 || outPad >= stride || oh < 1 || ow < 1 {
		panic(fmt.Sprintf("ops: ConvTranspose2d: input %v, weight %v, stride %d, pad %d, output padding %d do not fit",
			x.Shape, w.Shape, stride, pad, outPad))
	}
	if b != nil && (len(b.Shape) != 1 || b.Shape[0] != k) {
		panic(fmt.Sprintf("ops: ConvTranspose2d: bias %v for weight %v, want (%d)", b.Shape, w.Shape, k))
	}
	// The Conv2d this transposes maps (K, OH, OW) to (C, H, W).
	if d := deviceOf("ConvTranspose2d", x, w, b); d != nil {
		return devConvTranspose2d(tp, d, x, w, b, stride, pad, outPad, n, k, oh, ow)
	}
	g := newConvGeom(k, oh, ow, kh, kw, stride, pad)
	out := tp.alloc(n, k, oh, ow)
	convTranspose2dForward(out.Data, x.Data, w.Data, bData(b), n, c, &g)
	if tp.needs(x, w, b) {
		nd := tp.push(convTranspose2dBackward, out, x, w, b)
		nd.ints[0], nd.ints[1], nd.ints[2] = stride, pad, outPad
	}
	return out
}

// convTranspose2dForward computes y = conv^T(x, w) + b image by image, band by band of x's rows.
// y: (N, K, OH, OW); x: (N, C, H, W) with (H, W) = (g.oh, g.ow); w: (C, K*KH*KW); b: (K) or nil.
func convTranspose2dForward(y, x, w, b []float32, n, c int, g *convGeom) {
	s := getScratch()
	convTranspose2dForwardWith(s, y, x, w, b, n, c, g)
	putScratch(s)
}

// convTranspose2dForwardWith is convTranspose2dForward on a scratch the caller holds (Conv2d's
// flipped-kernel route holds one for the flipped weight).
func convTranspose2dForwardWith(s *convScratch, y, x, w, b []float32, n, c int, g *convGeom) {
	if useDirectT(g) {
		convTransposeDirect(s, y, x, w, b, n, c, g)
		return
	}
	rows, khw, yhw := g.rows(), g.oh*g.ow, g.c*g.h*g.w
	band := g.bandRows()
	for img := 0; img < n; img++ {
		xi, yi := x[img*c*khw:(img+1)*c*khw], y[img*yhw:(img+1)*yhw]
		if g.pointwise() {
			Sgemm(true, false, rows, khw, c, 1, w, rows, xi, khw, 0, yi, khw)
			continue
		}
		clear(yi)
		for h0 := 0; h0 < g.oh; h0 += band {
			h1 := min(h0+band, g.oh)
			cw := (h1 - h0) * g.ow
			cols := s.colBuf(rows * cw)
			// cols (K*KH*KW, cw) = w^T (K*KH*KW, C) * x[:, band] (C, cw)
			Sgemm(true, false, rows, cw, c, 1, w, rows, xi[h0*g.ow:], khw, 0, cols, cw)
			s.col2im(g, cols, h0, h1, yi)
		}
	}
	if b != nil {
		s.addBias(y, b, n, g.c, yhw/g.c)
	}
}

// convTranspose2dBackward accumulates db, dx and dw from dy for whichever of b, x, w require
// gradient.
func convTranspose2dBackward(nd *node) {
	x, w, b := nd.in[0], nd.in[1], nd.in[2]
	dy := nd.out.Grad
	n, c, _, _ := x.NCHW()
	_, k, kh, kw := w.NCHW()
	oh, ow := nd.out.Shape[2], nd.out.Shape[3]
	g := newConvGeom(k, oh, ow, kh, kw, nd.ints[0], nd.ints[1])
	s := getScratch()
	defer putScratch(s)
	if b != nil && b.requiresGrad {
		s.sumBias(b.grad(), dy, n, k, oh*ow)
	}
	var dx, dw []float32
	if x.requiresGrad {
		dx = x.grad()
	}
	if w.requiresGrad {
		dw = w.grad()
	}
	convTranspose2dBackwardData(s, dx, dw, x.Data, w.Data, dy, n, c, &g)
}

// convTranspose2dBackwardData accumulates dx += conv(dy, w) and dw += x * cols(dy)^T; either
// may be nil. dx, x: (N, C, H, W); dw, w: (C, K*KH*KW); dy: (N, K, OH, OW).
func convTranspose2dBackwardData(s *convScratch, dx, dw, x, w, dy []float32, n, c int, g *convGeom) {
	rows, khw, yhw := g.rows(), g.oh*g.ow, g.c*g.h*g.w
	band := g.bandRows()
	for img := 0; img < n; img++ {
		xi, dyi := x[img*c*khw:(img+1)*c*khw], dy[img*yhw:(img+1)*yhw]
		if g.pointwise() {
			if dx != nil {
				Sgemm(false, false, c, khw, rows, 1, w, rows, dyi, khw, 1, dx[img*c*khw:], khw)
			}
			if dw != nil {
				Sgemm(false, true, c, rows, khw, 1, xi, khw, dyi, khw, 1, dw, rows)
			}
			continue
		}
		for h0 := 0; h0 < g.oh; h0 += band {
			h1 := min(h0+band, g.oh)
			cw := (h1 - h0) * g.ow
			cols := s.colBuf(rows * cw)
			s.im2col(g, dyi, h0, h1, cols)
			if dx != nil {
				// dx[:, band] (C, cw) += w (C, K*KH*KW) * cols (K*KH*KW, cw)
				Sgemm(false, false, c, cw, rows, 1, w, rows, cols, cw, 1, dx[img*c*khw+h0*g.ow:], khw)
			}
			if dw != nil {
				// dw (C, K*KH*KW) += x[:, band] (C, cw) * cols^T (cw, K*KH*KW)
				Sgemm(false, true, c, rows, cw, 1, xi[h0*g.ow:], khw, cols, cw, 1, dw, rows)
			}
		}
	}
}
