//go:build cuda || cudaemu

package cuda

// Elementwise ops. Outputs may alias inputs (out == x) for the forward ones; backward ones
// accumulate into dx.

// Add: out = a + b. a, b, out: same size.
func (d *Device) Add(out, a, b *Tensor) {
	mustSameNumel("Add", a, b)
	mustSameNumel("Add", out, a)
	d.launch(kAdd, a.n, ptrArg(out), ptrArg(a), ptrArg(b), intArg(a.n))
}

// Axpy: y += alpha * x (Add's and Scale's backward, gradient sums).
func (d *Device) Axpy(y, x *Tensor, alpha float32) {
	mustSameNumel("Axpy", y, x)
	d.launch(kAxpy, x.n, ptrArg(y), ptrArg(x), floatArg(alpha), intArg(x.n))
}

// Scale: out = s * x. Its backward is Axpy(dx, dout, s).
func (d *Device) Scale(out, x *Tensor, s float32) {
	mustSameNumel("Scale", out, x)
	d.launch(kScale, x.n, ptrArg(out), ptrArg(x), floatArg(s), intArg(x.n))
}

// ReLU: y = max(x, 0).
func (d *Device) ReLU(y, x *Tensor) {
	mustSameNumel("ReLU", y, x)
	d.launch(kReLU, x.n, ptrArg(y), ptrArg(x), intArg(x.n))
}

// ReLUBackward: dx += dy where y > 0.
func (d *Device) ReLUBackward(dx, dy, y *Tensor) {
	mustSameNumel("ReLUBackward", dx, dy)
	mustSameNumel("ReLUBackward", dy, y)
	d.launch(kReLUBwd, y.n, ptrArg(dx), ptrArg(dy), ptrArg(y), intArg(y.n))
}

// LeakyReLU: y = x > 0 ? x : slope*x.
func (d *Device) LeakyReLU(y, x *Tensor, slope float32) {
	mustSameNumel("LeakyReLU", y, x)
	d.launch(kLeakyReLU, x.n, ptrArg(y), ptrArg(x), floatArg(slope), intArg(x.n))
}

// LeakyReLUBackward: dx += dy * (x > 0 ? 1 : slope); it reads the input x, not y.
func (d *Device) LeakyReLUBackward(dx, dy, x *Tensor, slope float32) {
	mustSameNumel("LeakyReLUBackward", dx, dy)
	mustSameNumel("LeakyReLUBackward", dy, x)
	d.launch(kLeakyReLUBwd, x.n, ptrArg(dx), ptrArg(dy), ptrArg(x), floatArg(slope), intArg(x.n))
}

// Tanh: y = tanh(x).
func (d *Device) Tanh(y, x *Tensor) {
	mustSameNumel("Tanh", y, x)
	d.launch(kTanh, x.n, ptrArg(y), ptrArg(x), intArg(x.n))
}

// TanhBackward: dx += dy * (1 - y^2).
func (d *Device) TanhBackward(dx, dy, y *Tensor) {
	mustSameNumel("TanhBackward", dx, dy)
	mustSameNumel("TanhBackward", dy, y)
	d.launch(kTanhBwd, y.n, ptrArg(dx), ptrArg(dy), ptrArg(y), intArg(y.n))
}

// Sigmoid: y = 1 / (1 + exp(-x)).
func (d *Device) Sigmoid(y, x *Tensor) {
	mustSameNumel("Sigmoid", y, x)
	d.launch(kSigmoid, x.n, ptrArg(y), ptrArg(x), intArg(x.n))
}

// SigmoidBackward: dx += dy * y * (1 - y).
func (d *Device) SigmoidBackward(dx, dy, y *Tensor) {
	mustSameNumel("SigmoidBackward", dx, dy)
	mustSameNumel("SigmoidBackward", dy, y)
	d.launch(kSigmoidBwd, y.n, ptrArg(dx), ptrArg(dy), ptrArg(y), intArg(y.n))
}

// biasAdd: out (N, C, H, W) += b[c].
func (d *Device) biasAdd(out, b *Tensor) {
	_, c, h, w := out.NCHW()
	mustShape("bias", "bias", b, c)
	d.launch(kBiasAdd, out.n, ptrArg(out), ptrArg(b), intArg(c), intArg(h*w), intArg(out.n))
}

// biasGrad: db[c] += sum of dy (N, C, H, W) over N, H, W.
func (d *Device) biasGrad(db, dy *Tensor) {
	n, c, h, w := dy.NCHW()
	mustShape("bias", "bias gradient", db, c)
	d.launchBlocks(kBiasGrad, c, ptrArg(db), ptrArg(dy), intArg(n), intArg(c), intArg(h*w))
}
