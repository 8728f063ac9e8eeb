package ops

import "fmt"

// Conv2d is a 2-D cross-correlation with zero padding, as torch.nn.functional.conv2d with
// dilation 1 and groups 1, computed per image as im2col + GEMM over bands of output rows.
// x: (N, C, H, W); w: (K, C, KH, KW); b: (K) or nil -> (N, K, OH, OW) with
// OH = (H + 2*pad - KH)/stride + 1.
//
// Backward recomputes the columns instead of keeping them from forward. Measured at 128x128
// (BenchmarkIm2col against BenchmarkConv2d), recomputing costs 3-25% of a layer's
// forward+backward, about 7% (ngf 16) and 3% (ngf 64) of a ResNet-9 generator's conv time;
// keeping would hold (C*KH*KW, OH*OW) per layer, 9 to 49 times the layer's input, in the arena:
// ~0.9 GB per ngf-64 generator at 256x256, batch 1.
func Conv2d(tp *Tape, x, w, b *Tensor, stride, pad int) *Tensor {
	return conv2d(tp, "Conv2d", x, w, b, stride, pad, pad)
}

// Conv2dPad is Conv2d with padH zero rows above and below the image and padW zero columns left
// and right of it, torch's padding=(padH, padW): Inception-v3's 1x7, 7x1, 1x3 and 3x1
// convolutions keep the side they do not reduce. On a device it needs padH == padW.
// x: (N, C, H, W); w: (K, C, KH, KW); b: (K) or nil -> (N, K, OH, OW) with
// OH = (H + 2*padH - KH)/stride + 1, OW = (W + 2*padW - KW)/stride + 1.
func Conv2dPad(tp *Tape, x, w, b *Tensor, stride, padH, padW int) *Tensor {
	return conv2d(tp, "Conv2dPad", x, w, b, stride, padH, padW)
}

// conv2d is Conv2d and Conv2dPad; op names the caller in panics.
func conv2d(tp *Tape, op string, x, w, b *Tensor, stride, padH, padW int) *Tensor {
	n, c, h, wd := x.NCHW()
	k, wc, kh, kw := w.NCHW()
	if wc != c || stride < 1 || padH < 0 || padW < 0 || h+2*padH < kh || wd+2*padW < kw {
		panic(fmt.Sprintf("ops: %s: input %v, weight %v, stride %d, pad (%d, %d) do not fit", op, x.Shape, w.Shape, stride, padH, padW))
	}
	if b != nil && (len(b.Shape) != 1 || b.Shape[0] != k) {
		panic(fmt.Sprintf("ops: %s: bias %v for weight %v, want (%d)", op, b.Shape, w.Shape, k))
	}
	g := newConvGeomPad(c, h, wd, kh, kw, stride, padH, padW)
	if d := deviceOf(op, x, w, b); d != nil {
		if padH != padW {
			panic(fmt.Sprintf("ops: %s: input %v on %s with pad (%d, %d): the device kernel pads H and W alike; run this conv on the host",
				op, x.Shape, d.Name(), padH, padW))
		}
		return devConv2d(tp, d, x, w, b, stride, padH, n, k, g.oh, g.ow)
	}
	out := tp.alloc(n, k, g.oh, g.ow)
	// The direct route, where it applies, beats the flipped kernel's GEMM and col2im too.
	if viaTranspose(&g, k) && !useDirect(&g) {
		conv2dViaTranspose(out.Data, x.Data, w.Data, bData(b), n, k, &g)
	} else {
		conv2dForward(out.Data, x.Data, w.Data, bData(b), n, k, &g)
	}
	if tp.needs(x, w, b) {
		nd := tp.push(conv2dBackward, out, x, w, b)
		nd.ints[0], nd.ints[1], nd.ints[2] = stride, padH, padW
	}
	return out
}

// viaTranspose reports whether a stride-1 conv is cheaper as the transposed conv of its
// flipped kernel: that materialises columns of the output side, (K*KH*KW, H*W), instead of the
// input side, (C*KH*KW, OH*OW), and turns a GEMM with K rows into one with K*KH*KW rows. It
// pays for narrow outputs such as the generator's last 7x7 conv (64 -> 3 channels) against
// im2col; forward prefers the direct route where that applies. Only
// square kernels with equal pads take it, the generator's shapes on which the trade-off was
// measured; transposeGeom itself would be exact for any kernel and pads.
func viaTranspose(g *convGeom, k int) bool {
	return g.stride == 1 && g.kh == g.kw && g.padH == g.padW && g.padH <= g.kh-1 && !g.pointwise() &&
		2*k*g.h*g.w < g.c*g.oh*g.ow
}

// transposeGeom is the geometry of the transposed conv that computes a stride-1 conv g with
// the flipped kernel: it slides over the conv's output (K, OH, OW) and lands on (H, W).
func transposeGeom(g *convGeom, k int) convGeom {
	return newConvGeomPad(k, g.oh, g.ow, g.kh, g.kw, 1, g.kh-1-g.padH, g.kw-1-g.padW)
}

// flipKernel writes the transposed conv's weight: dst[c][k] is w[k][c] rotated by 180 degrees.
// dst: (C, K, KH*KW); w: (K, C, KH*KW)
func flipKernel(dst, w []float32, k, c, khw int) {
	for ok := 0; ok < k; ok++ {
		for ic := 0; ic < c; ic++ {
			src, d := w[(ok*c+ic)*khw:(ok*c+ic+1)*khw], dst[(ic*k+ok)*khw:(ic*k+ok+1)*khw]
			for t, v := range src {
				d[khw-1-t] = v
			}
		}
	}
}

// conv2dViaTranspose computes a stride-1 conv as convT(x, flip(w)).
// y: (N, K, OH, OW); x: (N, C, H, W); w: (K, C, KH, KW); b: (K) or nil.
func conv2dViaTranspose(y, x, w, b []float32, n, k int, g *convGeom) {
	s := getScratch()
	tg := transposeGeom(g, k)
	wf := s.weightBuf(len(w))
	flipKernel(wf, w, k, g.c, g.kh*g.kw)
	convTranspose2dForwardWith(s, y, x, wf, b, n, g.c, &tg)
	putScratch(s)
}

func bData(b *Tensor) []float32 {
	if b == nil {
		return nil
	}
	return b.Data
}

// conv2dForward computes y = conv(x, w) + b image by image, band by band.
// y: (N, K, OH, OW); x: (N, C, H, W); w: (K, C*KH*KW); b: (K) or nil.
func conv2dForward(y, x, w, b []float32, n, k int, g *convGeom) {
	s := getScratch()
	defer putScratch(s)
	if useDirect(g) {
		conv2dDirect(s, y, x, w, b, n, k, g)
		return
	}
	rows, chw, ohw := g.rows(), g.c*g.h*g.w, g.oh*g.ow
	band := g.bandRows()
	if th := Threads(); th > 1 && !g.pointwise() {
		if lb := g.localBandRows(); (g.oh+lb-1)/lb >= 2*th {
			s.bands = convBandJob{g: *g, x: x, y: y, w: w, k: k, band: lb}
			nb := (g.oh + lb - 1) / lb
			for img := 0; img < n; img++ {
				s.bands.img = img
				ParallelFor(nb, 1, &s.bands)
			}
			s.bands = convBandJob{}
			if b != nil {
				s.addBias(y, b, n, k, ohw)
			}
			return
		}
	}
	for img := 0; img < n; img++ {
		xi, yi := x[img*chw:(img+1)*chw], y[img*k*ohw:(img+1)*k*ohw]
		if g.pointwise() {
			Sgemm(false, false, k, ohw, rows, 1, w, rows, xi, ohw, 0, yi, ohw)
			continue
		}
		for oh0 := 0; oh0 < g.oh; oh0 += band {
			oh1 := min(oh0+band, g.oh)
			cw := (oh1 - oh0) * g.ow
			cols := s.colBuf(rows * cw)
			s.im2col(g, xi, oh0, oh1, cols)
			// y[:, band] (K, cw) = w (K, rows) * cols (rows, cw)
			Sgemm(false, false, k, cw, rows, 1, w, rows, cols, cw, 0, yi[oh0*g.ow:], ohw)
		}
	}
	if b != nil {
		s.addBias(y, b, n, k, ohw)
	}
}

// convBandJob is a convolution forward split by bands of output rows, each worker doing
// whole bands: the im2col of a band into its own buffer, then a one-thread GEMM, so the
// columns it wrote are still in its cache when the GEMM reads them.
type convBandJob struct {
	g       convGeom
	x, y, w []float32
	k, band int
	img     int
}

func (j *convBandJob) Run(lo, hi int) {
	s := getScratch()
	defer putScratch(s)
	g := &j.g
	rows, chw, ohw := g.rows(), g.c*g.h*g.w, g.oh*g.ow
	xi, yi := j.x[j.img*chw:(j.img+1)*chw], j.y[j.img*j.k*ohw:(j.img+1)*j.k*ohw]
	for bi := lo; bi < hi; bi++ {
		oh0 := bi * j.band
		oh1 := min(oh0+j.band, g.oh)
		cw := (oh1 - oh0) * g.ow
		cols := s.colBuf(rows * cw)
		im2colRows(g, xi, oh0, oh1, cols, 0, rows)
		sgemmSerial(j.k, cw, rows, j.w, rows, cols, cw, yi[oh0*g.ow:], ohw)
	}
}

// conv2dBackward accumulates db, dx and dw from dy for whichever of b, x, w require gradient,
// by im2col, or by the flipped kernel where viaTranspose holds (whichever route the forward
// took: both compute the same sums).
func conv2dBackward(nd *node) {
	x, w, b := nd.in[0], nd.in[1], nd.in[2]
	dy := nd.out.Grad
	n, c, h, wd := x.NCHW()
	k, _, kh, kw := w.NCHW()
	g := newConvGeomPad(c, h, wd, kh, kw, nd.ints[0], nd.ints[1], nd.ints[2])
	s := getScratch()
	defer putScratch(s)
	if b != nil && b.requiresGrad {
		s.sumBias(b.grad(), dy, n, k, g.oh*g.ow)
	}
	var dx, dw []float32
	if x.requiresGrad {
		dx = x.grad()
	}
	if w.requiresGrad {
		dw = w.grad()
	}
	if !viaTranspose(&g, k) {
		conv2dBackwardData(s, dx, dw, x.Data, w.Data, dy, n, k, &g)
		return
	}
	tg := transposeGeom(&g, k)
	khw := kh * kw
	buf := s.weightBuf(2 * len(w.Data))
	wf, dwf := buf[:len(w.Data)], buf[len(w.Data):]
	flipKernel(wf, w.Data, k, c, khw)
	if dw != nil {
		clear(dwf)
	} else {
		dwf = nil
	}
	convTranspose2dBackwardData(s, dx, dwf, x.Data, wf, dy, n, c, &tg)
	if dw != nil {
		// Rotate the flipped kernel's gradient back into w's layout, accumulating.
		for ic := 0; ic < c; ic++ {
			for ok := 0; ok < k; ok++ {
				src, d := dwf[(ic*k+ok)*khw:(ic*k+ok+1)*khw], dw[(ok*c+ic)*khw:(ok*c+ic+1)*khw]
				for t, v := range src {
					d[khw-1-t] += v
				}
			}
		}
	}
}

// conv2dBackwardData accumulates dx += conv^T(dy, w) and dw += dy * cols(x)^T; either may be nil.
// dx, x: (N, C, H, W); dw, w: (K, C*KH*KW); dy: (N, K, OH, OW).
//
// At stride 1, dx could also be taken as the conv of dy with the flipped kernel (im2col of dy
// and a GEMM K*KH*KW deep instead of K deep, no scatter); on ResNet-9 shapes that measured no
// faster, so every stride uses GEMM + col2im.
func conv2dBackwardData(s *convScratch, dx, dw, x, w, dy []float32, n, k int, g *convGeom) {
	rows, chw, ohw := g.rows(), g.c*g.h*g.w, g.oh*g.ow
	band := g.bandRows()
	for img := 0; img < n; img++ {
		xi, dyi := x[img*chw:(img+1)*chw], dy[img*k*ohw:(img+1)*k*ohw]
		if g.pointwise() {
			if dw != nil {
				Sgemm(false, true, k, rows, ohw, 1, dyi, ohw, xi, ohw, 1, dw, rows)
			}
			if dx != nil {
				Sgemm(true, false, rows, ohw, k, 1, w, rows, dyi, ohw, 1, dx[img*chw:], ohw)
			}
			continue
		}
		for oh0 := 0; oh0 < g.oh; oh0 += band {
			oh1 := min(oh0+band, g.oh)
			cw := (oh1 - oh0) * g.ow
			cols := s.colBuf(rows * cw)
			if dw != nil {
				s.im2col(g, xi, oh0, oh1, cols)
				// dw (K, rows) += dy[:, band] (K, cw) * cols^T (cw, rows)
				Sgemm(false, true, k, rows, cw, 1, dyi[oh0*g.ow:], ohw, cols, cw, 1, dw, rows)
			}
			if dx != nil {
				// dcols (rows, cw) = w^T (rows, K) * dy[:, band] (K, cw), then scattered back.
				Sgemm(true, false, rows, cw, k, 1, w, rows, dyi[oh0*g.ow:], ohw, 0, cols, cw)
				s.col2im(g, cols, oh0, oh1, dx[img*chw:(img+1)*chw])
			}
		}
	}
}
