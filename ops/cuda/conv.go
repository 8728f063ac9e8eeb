//go:build cuda || cudaemu

package cuda

import "fmt"

// Convolutions as im2col + SGEMM, one sample at a time (batches here are 1 to 4 images of
// 256x256: one sample's GEMM already fills the GPU). Weights use PyTorch's layouts.

// gemm computes C = alpha*op(A)*op(B) + beta*C for ROW-major matrices (C: m x n, op(A): m x k,
// op(B): k x n) on device pointers. cuBLAS is column-major, and a row-major C is a
// column-major C^T = op(B)^T * op(A)^T, so the operands swap.
func (d *Device) gemm(transA, transB bool, m, n, k int, alpha float32, a devPtr, lda int,
	b devPtr, ldb int, beta float32, c devPtr, ldc int) {
	if d.err != nil {
		return
	}
	if err := d.drv.sgemm(transB, transA, n, m, k, alpha, b, ldb, a, lda, beta, c, ldc); err != nil {
		d.setErr(fmt.Sprintf("cublasSgemm m=%d n=%d k=%d", m, n, k), err)
	}
}

// convGeom checks x (N, C, H, W) against w (K, C, KH, KW) and returns the output side.
func convOut(h, kh, stride, pad int) int { return (h+2*pad-kh)/stride + 1 }

// Conv2d: out = conv(x, w) + b with zero padding.
// x: (N, C, H, W); w: (K, C, KH, KW); b: (K) or nil; out: (N, K, OH, OW)
func (d *Device) Conv2d(out, x, w, b *Tensor, stride, pad int) {
	n, c, h, wd := x.NCHW()
	k, wc, kh, kw := w.NCHW()
	if wc != c {
		panic(fmt.Sprintf("cuda: Conv2d: input %v and weight %v disagree on channels", x.Shape, w.Shape))
	}
	oh, ow := convOut(h, kh, stride, pad), convOut(wd, kw, stride, pad)
	mustShape("Conv2d", "output", out, n, k, oh, ow)
	ckk, ohw := c*kh*kw, oh*ow
	col := d.workspace(0, ckk*ohw)
	for i := range n {
		d.launch(kIm2col, ckk*ohw, ptrArg(col), ptrArg(x.at(i*c*h*wd, c*h*wd)), intArg(c), intArg(h), intArg(wd),
			intArg(kh), intArg(kw), intArg(stride), intArg(pad), intArg(oh), intArg(ow))
		// out[i] (K, OHW) = w (K, CKK) . col (CKK, OHW)
		d.gemm(false, false, k, ohw, ckk, 1, w.ptr, ckk, col.ptr, ohw, 0, out.ptr+devPtr(4*i*k*ohw), ohw)
	}
	if b != nil {
		d.biasAdd(out, b)
	}
}

// Conv2dBackward accumulates the gradients of Conv2d into dx, dw, db (each may be nil).
// dy: (N, K, OH, OW); x, w as in Conv2d.
func (d *Device) Conv2dBackward(dx, dw, db, dy, x, w *Tensor, stride, pad int) {
	n, c, h, wd := x.NCHW()
	k, _, kh, kw := w.NCHW()
	oh, ow := convOut(h, kh, stride, pad), convOut(wd, kw, stride, pad)
	mustShape("Conv2dBackward", "output gradient", dy, n, k, oh, ow)
	ckk, ohw, chw := c*kh*kw, oh*ow, c*h*wd
	if dw != nil {
		mustShape("Conv2dBackward", "weight gradient", dw, w.Shape...)
		col := d.workspace(0, ckk*ohw)
		for i := range n {
			d.launch(kIm2col, ckk*ohw, ptrArg(col), ptrArg(x.at(i*chw, chw)), intArg(c), intArg(h), intArg(wd),
				intArg(kh), intArg(kw), intArg(stride), intArg(pad), intArg(oh), intArg(ow))
			// dw (K, CKK) += dy[i] (K, OHW) . col^T
			d.gemm(false, true, k, ckk, ohw, 1, dy.ptr+devPtr(4*i*k*ohw), ohw, col.ptr, ohw, 1, dw.ptr, ckk)
		}
	}
	if dx != nil {
		mustShape("Conv2dBackward", "input gradient", dx, x.Shape...)
		dcol := d.workspace(1, ckk*ohw)
		for i := range n {
			// dcol (CKK, OHW) = w^T . dy[i]
			d.gemm(true, false, ckk, ohw, k, 1, w.ptr, ckk, dy.ptr+devPtr(4*i*k*ohw), ohw, 0, dcol.ptr, ohw)
			d.launch(kCol2im, chw, ptrArg(dx.at(i*chw, chw)), ptrArg(dcol), intArg(c), intArg(h), intArg(wd),
				intArg(kh), intArg(kw), intArg(stride), intArg(pad), intArg(oh), intArg(ow), 1)
		}
	}
	if db != nil {
		d.biasGrad(db, dy)
	}
}

// convTransposeOut is the output side of a transposed convolution.
func convTransposeOut(h, kh, stride, pad, outPad int) int { return (h-1)*stride - 2*pad + kh + outPad }

// ConvTranspose2d: the adjoint of a strided convolution, plus b.
// x: (N, C, H, W); w: (C, K, KH, KW) (PyTorch's layout); b: (K) or nil; out: (N, K, OH, OW),
// OH = (H-1)*stride - 2*pad + KH + outPad.
func (d *Device) ConvTranspose2d(out, x, w, b *Tensor, stride, pad, outPad int) {
	n, c, h, wd := x.NCHW()
	wc, k, kh, kw := w.NCHW()
	if wc != c {
		panic(fmt.Sprintf("cuda: ConvTranspose2d: input %v and weight %v disagree on channels", x.Shape, w.Shape))
	}
	oh, ow := convTransposeOut(h, kh, stride, pad, outPad), convTransposeOut(wd, kw, stride, pad, outPad)
	mustShape("ConvTranspose2d", "output", out, n, k, oh, ow)
	kkk, hw, khw := k*kh*kw, h*wd, k*oh*ow
	col := d.workspace(0, kkk*hw)
	for i := range n {
		// col (KKK, HW) = w^T (KKK, C) . x[i] (C, HW), then scattered into the output image.
		d.gemm(true, false, kkk, hw, c, 1, w.ptr, kkk, x.ptr+devPtr(4*i*c*hw), hw, 0, col.ptr, hw)
		d.launch(kCol2im, khw, ptrArg(out.at(i*khw, khw)), ptrArg(col), intArg(k), intArg(oh), intArg(ow),
			intArg(kh), intArg(kw), intArg(stride), intArg(pad), intArg(h), intArg(wd), 0)
	}
	if b != nil {
		d.biasAdd(out, b)
	}
}

// ConvTranspose2dBackward accumulates the gradients of ConvTranspose2d into dx, dw, db (each
// may be nil). dy: (N, K, OH, OW).
func (d *Device) ConvTranspose2dBackward(dx, dw, db, dy, x, w *Tensor, stride, pad, outPad int) {
	n, c, h, wd := x.NCHW()
	_, k, kh, kw := w.NCHW()
	oh, ow := convTransposeOut(h, kh, stride, pad, outPad), convTransposeOut(wd, kw, stride, pad, outPad)
	mustShape("ConvTranspose2dBackward", "output gradient", dy, n, k, oh, ow)
	kkk, hw, khw := k*kh*kw, h*wd, k*oh*ow
	if dx != nil {
		mustShape("ConvTranspose2dBackward", "input gradient", dx, x.Shape...)
	}
	if dw != nil {
		mustShape("ConvTranspose2dBackward", "weight gradient", dw, w.Shape...)
	}
	if dx != nil || dw != nil {
		col := d.workspace(0, kkk*hw)
		for i := range n {
			// The gradient image, gathered as the strided convolution sees it: col (KKK, HW).
			d.launch(kIm2col, kkk*hw, ptrArg(col), ptrArg(dy.at(i*khw, khw)), intArg(k), intArg(oh), intArg(ow),
				intArg(kh), intArg(kw), intArg(stride), intArg(pad), intArg(h), intArg(wd))
			if dx != nil {
				// dx[i] (C, HW) += w (C, KKK) . col
				d.gemm(false, false, c, hw, kkk, 1, w.ptr, kkk, col.ptr, hw, 1, dx.ptr+devPtr(4*i*c*hw), hw)
			}
			if dw != nil {
				// dw (C, KKK) += x[i] (C, HW) . col^T
				d.gemm(false, true, c, kkk, hw, 1, x.ptr+devPtr(4*i*c*hw), hw, col.ptr, hw, 1, dw.ptr, kkk)
			}
		}
	}
	if db != nil {
		d.biasGrad(db, dy)
	}
}

// ReflectionPad2d: y = x padded by reflection (no edge repeat), pad < H, W.
// x: (N, C, H, W); y: (N, C, H+2p, W+2p)
func (d *Device) ReflectionPad2d(y, x *Tensor, pad int) {
	n, c, h, w := x.NCHW()
	if pad >= h || pad >= w {
		panic(fmt.Sprintf("cuda: ReflectionPad2d: pad %d needs a larger input than %v", pad, x.Shape))
	}
	mustShape("ReflectionPad2d", "output", y, n, c, h+2*pad, w+2*pad)
	d.launch(kReflectPad, y.n, ptrArg(y), ptrArg(x), intArg(n*c), intArg(h), intArg(w), intArg(pad))
}

// ReflectionPad2dBackward: dx += the adjoint of the pad applied to dy.
func (d *Device) ReflectionPad2dBackward(dx, dy *Tensor, pad int) {
	n, c, h, w := dx.NCHW()
	mustShape("ReflectionPad2dBackward", "output gradient", dy, n, c, h+2*pad, w+2*pad)
	d.launch(kReflectPadBwd, dy.n, ptrArg(dx), ptrArg(dy), intArg(n*c), intArg(h), intArg(w), intArg(pad))
}

// ZeroPad2d: y = x padded with zeros. x: (N, C, H, W); y: (N, C, H+2p, W+2p)
func (d *Device) ZeroPad2d(y, x *Tensor, pad int) {
	n, c, h, w := x.NCHW()
	mustShape("ZeroPad2d", "output", y, n, c, h+2*pad, w+2*pad)
	d.launch(kZeroPad, y.n, ptrArg(y), ptrArg(x), intArg(n*c), intArg(h), intArg(w), intArg(pad))
}

// ZeroPad2dBackward: dx += the interior of dy.
func (d *Device) ZeroPad2dBackward(dx, dy *Tensor, pad int) {
	n, c, h, w := dx.NCHW()
	mustShape("ZeroPad2dBackward", "output gradient", dy, n, c, h+2*pad, w+2*pad)
	d.launch(kZeroPadBwd, dx.n, ptrArg(dx), ptrArg(dy), intArg(n*c), intArg(h), intArg(w), intArg(pad))
}
