//go:build cuda || cudaemu

package cuda

import (
	"fmt"

	"wkd/ops"
)

// The Device as wkd/ops' backend: ops' tensors hold *Tensor allocations of this package as
// their DeviceMem, and every ops.Buf (memory, offset, shape) becomes a Tensor header for the
// kernels above. Registered as "cuda", so ops.OpenDevice("cuda", 0) and `--device cuda` reach
// it in any build with this package linked in.

func init() {
	ops.RegisterDevice("cuda", func(ordinal int) (ops.Device, error) {
		d, err := Open(ordinal)
		if err != nil {
			return nil, err
		}
		return d.Backend(), nil
	})
}

// backend adapts a Device to ops.Device.
type backend struct {
	d *Device
	// hdr is a ring of headers for the operands of one call (at most 7): no allocation per
	// call, and two operands over the same memory with different shapes stay apart.
	hdr  [8]Tensor
	next int
	// ones is a vector of 1s for sums and broadcasts through SGEMM; grown as needed.
	ones *Tensor
}

// Backend returns d as an ops.Device. Closing it closes d.
func (d *Device) Backend() ops.Device { return &backend{d: d} }

// Len is the allocation's size in elements (ops.DeviceMem).
func (t *Tensor) Len() int { return t.n }

func (b *backend) t(x ops.Buf) *Tensor {
	if x.Mem == nil {
		return nil
	}
	m := x.Mem.(*Tensor)
	n := numel(x.Shape)
	if x.Off < 0 || x.Off+n > m.n {
		panic(fmt.Sprintf("cuda: operand of shape %v at offset %d outside an allocation of %d elements", x.Shape, x.Off, m.n))
	}
	h := &b.hdr[b.next%len(b.hdr)]
	b.next++
	h.Shape = append(h.Shape[:0], x.Shape...)
	h.ptr, h.n, h.view = m.ptr+devPtr(4*x.Off), n, true
	return h
}

func (b *backend) onesOf(n int) *Tensor {
	if b.ones == nil || b.ones.n < n {
		b.d.Free(b.ones)
		b.ones = b.d.NewTensor(max(n, 1024))
		b.d.Fill(b.ones, 1)
	}
	return b.ones
}

func (b *backend) Name() string { return "cuda:" + b.d.Name() }
func (b *backend) Err() error   { return b.d.Err() }
func (b *backend) Sync() error  { return b.d.Sync() }
func (b *backend) Close() error {
	b.d.Free(b.ones)
	return b.d.Close()
}

func (b *backend) Alloc(n int) ops.DeviceMem { return b.d.NewTensor(n) }
func (b *backend) Free(m ops.DeviceMem) {
	if m != nil {
		b.d.Free(m.(*Tensor))
	}
}

// pinned is a one-tensor Bucket as ops.Pinned.
type pinned struct {
	d *Device
	b *Bucket
}

func (b *backend) NewPinned(n int) ops.Pinned { return &pinned{b.d, b.d.NewBucket([]int{n})} }
func (p *pinned) Mem() ops.DeviceMem          { return p.b.dev }
func (p *pinned) Host() []float32             { return p.b.Host }
func (p *pinned) ToHost()                     { p.d.BucketToHost(p.b) }
func (p *pinned) FromHost()                   { p.d.BucketFromHost(p.b) }
func (p *pinned) Free()                       { p.d.FreeBucket(p.b) }

func (b *backend) Upload(dst ops.Buf, src []float32)   { b.d.Upload(b.t(dst), src) }
func (b *backend) Download(dst []float32, src ops.Buf) { b.d.Download(dst, b.t(src)) }
func (b *backend) Copy(dst, src ops.Buf)               { b.d.Copy(b.t(dst), b.t(src)) }
func (b *backend) Zero(x ops.Buf)                      { b.d.Zero(b.t(x)) }
func (b *backend) Fill(x ops.Buf, v float32)           { b.d.Fill(b.t(x), v) }

func (b *backend) AddScalar(x ops.Buf, s float32) {
	t := b.t(x)
	b.d.Axpy(t, b.onesOf(t.n).at(0, t.n), s)
}

func (b *backend) Add(out, x, y ops.Buf)                 { b.d.Add(b.t(out), b.t(x), b.t(y)) }
func (b *backend) Axpy(y, x ops.Buf, alpha float32)      { b.d.Axpy(b.t(y), b.t(x), alpha) }
func (b *backend) Scale(out, x ops.Buf, s float32)       { b.d.Scale(b.t(out), b.t(x), s) }
func (b *backend) ReLU(y, x ops.Buf)                     { b.d.ReLU(b.t(y), b.t(x)) }
func (b *backend) ReLUBackward(dx, dy, y ops.Buf)        { b.d.ReLUBackward(b.t(dx), b.t(dy), b.t(y)) }
func (b *backend) LeakyReLU(y, x ops.Buf, slope float32) { b.d.LeakyReLU(b.t(y), b.t(x), slope) }
func (b *backend) LeakyReLUBackward(dx, dy, x ops.Buf, slope float32) {
	b.d.LeakyReLUBackward(b.t(dx), b.t(dy), b.t(x), slope)
}
func (b *backend) Tanh(y, x ops.Buf)                 { b.d.Tanh(b.t(y), b.t(x)) }
func (b *backend) TanhBackward(dx, dy, y ops.Buf)    { b.d.TanhBackward(b.t(dx), b.t(dy), b.t(y)) }
func (b *backend) Sigmoid(y, x ops.Buf)              { b.d.Sigmoid(b.t(y), b.t(x)) }
func (b *backend) SigmoidBackward(dx, dy, y ops.Buf) { b.d.SigmoidBackward(b.t(dx), b.t(dy), b.t(y)) }

// Sum: out (1x1) = alpha * x (1 x n) . ones (n x 1), one SGEMM.
func (b *backend) Sum(out, x ops.Buf, alpha float32) {
	o, v := b.t(out), b.t(x)
	mustShape("Sum", "output", o, 1)
	b.d.gemm(false, false, 1, 1, v.n, alpha, v.ptr, v.n, b.onesOf(v.n).ptr, 1, 0, o.ptr, 1)
}

// SumBackward: dx (n x 1) += alpha * ones (n x 1) . dout (1 x 1).
func (b *backend) SumBackward(dx, dout ops.Buf, alpha float32) {
	g, dy := b.t(dx), b.t(dout)
	mustShape("SumBackward", "output gradient", dy, 1)
	b.d.gemm(false, false, g.n, 1, 1, alpha, b.onesOf(g.n).ptr, 1, dy.ptr, 1, 1, g.ptr, 1)
}

func (b *backend) Conv2d(out, x, w, bias ops.Buf, stride, pad int) {
	b.d.Conv2d(b.t(out), b.t(x), b.t(w), b.t(bias), stride, pad)
}
func (b *backend) Conv2dBackward(dx, dw, db, dy, x, w ops.Buf, stride, pad int) {
	b.d.Conv2dBackward(b.t(dx), b.t(dw), b.t(db), b.t(dy), b.t(x), b.t(w), stride, pad)
}
func (b *backend) ConvTranspose2d(out, x, w, bias ops.Buf, stride, pad, outPad int) {
	b.d.ConvTranspose2d(b.t(out), b.t(x), b.t(w), b.t(bias), stride, pad, outPad)
}
func (b *backend) ConvTranspose2dBackward(dx, dw, db, dy, x, w ops.Buf, stride, pad, outPad int) {
	b.d.ConvTranspose2dBackward(b.t(dx), b.t(dw), b.t(db), b.t(dy), b.t(x), b.t(w), stride, pad, outPad)
}
func (b *backend) ReflectionPad2d(y, x ops.Buf, pad int) { b.d.ReflectionPad2d(b.t(y), b.t(x), pad) }
func (b *backend) ReflectionPad2dBackward(dx, dy ops.Buf, pad int) {
	b.d.ReflectionPad2dBackward(b.t(dx), b.t(dy), pad)
}
func (b *backend) ZeroPad2d(y, x ops.Buf, pad int) { b.d.ZeroPad2d(b.t(y), b.t(x), pad) }
func (b *backend) ZeroPad2dBackward(dx, dy ops.Buf, pad int) {
	b.d.ZeroPad2dBackward(b.t(dx), b.t(dy), pad)
}

func (b *backend) InstanceNorm2d(y, stats, x, gamma, beta ops.Buf, eps float32) {
	b.d.InstanceNorm2d(b.t(y), b.t(stats), b.t(x), b.t(gamma), b.t(beta), eps)
}
func (b *backend) InstanceNorm2dBackward(dx, dgamma, dbeta, dy, x, stats, gamma ops.Buf) {
	b.d.InstanceNorm2dBackward(b.t(dx), b.t(dgamma), b.t(dbeta), b.t(dy), b.t(x), b.t(stats), b.t(gamma))
}
func (b *backend) BatchNorm2d(y, stats, x, gamma, beta, runMean, runVar ops.Buf, training bool, momentum, eps float32) {
	b.d.BatchNorm2d(b.t(y), b.t(stats), b.t(x), b.t(gamma), b.t(beta), b.t(runMean), b.t(runVar), training, momentum, eps)
}
func (b *backend) BatchNorm2dBackward(dx, dgamma, dbeta, dy, x, stats, gamma ops.Buf, batchStats bool) {
	b.d.BatchNorm2dBackward(b.t(dx), b.t(dgamma), b.t(dbeta), b.t(dy), b.t(x), b.t(stats), b.t(gamma), batchStats)
}

func (b *backend) HaarLevel(ll, hi, x ops.Buf) { b.d.HaarLevel(b.t(ll), b.t(hi), b.t(x)) }
func (b *backend) HaarLevelBackward(dx, dll, dhi ops.Buf) {
	b.d.HaarLevelBackward(b.t(dx), b.t(dll), b.t(dhi))
}
func (b *backend) HaarInverseLevel(x, ll, hi ops.Buf) { b.d.HaarInverseLevel(b.t(x), b.t(ll), b.t(hi)) }
func (b *backend) HaarInverseLevelBackward(dll, dhi, dx ops.Buf) {
	b.d.HaarInverseLevelBackward(b.t(dll), b.t(dhi), b.t(dx))
}

// ops' loss kinds are numbered as this package's.
func (b *backend) Loss(kind ops.LossKind, out, x, y ops.Buf, target float32) {
	b.d.Loss(LossKind(kind), b.t(out), b.t(x), b.t(y), target)
}
func (b *backend) LossBackward(kind ops.LossKind, dx, dy, dloss, x, y ops.Buf, target float32) {
	b.d.LossBackward(LossKind(kind), b.t(dx), b.t(dy), b.t(dloss), b.t(x), b.t(y), target)
}

// AdamUpdate is one parameter's step of wkd_adam with ops.Adam's factors.
func (b *backend) AdamUpdate(p, g, m, v ops.Buf, a ops.AdamArgs) {
	pt, gt, mt, vt := b.t(p), b.t(g), b.t(m), b.t(v)
	mustSameNumel("AdamUpdate", pt, gt)
	mustSameNumel("AdamUpdate", pt, mt)
	mustSameNumel("AdamUpdate", pt, vt)
	b.d.launch(kAdam, pt.n, ptrArg(pt), ptrArg(gt), ptrArg(mt), ptrArg(vt), floatArg(a.B1), floatArg(a.B2),
		floatArg(a.C1), floatArg(a.C2), floatArg(a.Eps), floatArg(a.WeightDecay), floatArg(a.NegStep),
		floatArg(a.BC2Sqrt), intArg(pt.n))
}

// SetEmulatorBlockWidth sets how many threads the cudaemu emulator runs per block (256, a
// GPU's, by default); whole-network tests in other packages use 1 to stay fast, leaving the
// 256-thread reductions to this package's parity tests. A no-op on a real GPU.
func SetEmulatorBlockWidth(w int) { setEmuBlockWidth(w) }
