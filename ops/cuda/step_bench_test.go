//go:build cuda || cudaemu

package cuda

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"wkd/ops"
)

// One WKD distillation step composed directly from this package's kernels, without the tape
// (the trainer's --device cuda path goes through wkd/ops and Backend instead): frozen teacher ResNet-9 (ngf 64) forward without gradient,
// student ResNet-9 (ngf 16), 70x70 PatchGAN (ndf 64, instance norm), LSGAN losses, the WKD loss
// on 3 Haar levels (L1 on every high band, never LL), and Adam on D and G. scripts/device-check.sh
// times the same step in PyTorch and prints the ratio.
//
//	go test -tags cuda -run '^$' -bench DistillStep -benchtime 10x ./ops/cuda/

// layer is one module with explicit buffers: forward keeps what backward needs, backward
// returns dx (nil when needDX is false) and accumulates parameter gradients.
type layer interface {
	forward(d *Device, x *Tensor) *Tensor
	backward(d *Device, dy *Tensor, needDX bool) *Tensor
	params() (ps, gs []*Tensor)
}

// buf returns *p, allocating it with shape on first use (shapes are fixed per run).
func buf(d *Device, p **Tensor, shape ...int) *Tensor {
	if *p == nil {
		*p = d.NewTensor(shape...)
	}
	return *p
}

type convL struct {
	w, b, dw, db *Tensor
	stride, pad  int
	transpose    bool
	outPad       int
	frozen       bool // no parameter gradients (the teacher, D during G's update)
	in, out, dx  *Tensor
}

func newConv(d *Device, r *rand.Rand, cin, cout, k, stride, pad int, bias, transpose bool, outPad int) *convL {
	shape := []int{cout, cin, k, k}
	if transpose {
		shape = []int{cin, cout, k, k}
	}
	ws := make([]float32, numel(shape))
	for i := range ws {
		ws[i] = float32(0.02 * r.NormFloat64()) // normal(0, 0.02), the reference init
	}
	c := &convL{w: d.FromHost(ws, shape...), dw: d.NewTensor(shape...), stride: stride, pad: pad,
		transpose: transpose, outPad: outPad}
	if bias {
		c.b, c.db = d.NewTensor(cout), d.NewTensor(cout)
	}
	return c
}

func (c *convL) forward(d *Device, x *Tensor) *Tensor {
	n, _, h, w := x.NCHW()
	c.in = x
	if c.transpose {
		k := c.w.Shape[1]
		oh := convTransposeOut(h, c.w.Shape[2], c.stride, c.pad, c.outPad)
		ow := convTransposeOut(w, c.w.Shape[3], c.stride, c.pad, c.outPad)
		d.ConvTranspose2d(buf(d, &c.out, n, k, oh, ow), x, c.w, c.b, c.stride, c.pad, c.outPad)
	} else {
		k := c.w.Shape[0]
		oh, ow := convOut(h, c.w.Shape[2], c.stride, c.pad), convOut(w, c.w.Shape[3], c.stride, c.pad)
		d.Conv2d(buf(d, &c.out, n, k, oh, ow), x, c.w, c.b, c.stride, c.pad)
	}
	return c.out
}

func (c *convL) backward(d *Device, dy *Tensor, needDX bool) *Tensor {
	var dx, dw, db *Tensor
	if needDX {
		dx = buf(d, &c.dx, c.in.Shape...)
		d.Zero(dx)
	}
	if !c.frozen {
		dw, db = c.dw, c.db
	}
	if c.transpose {
		d.ConvTranspose2dBackward(dx, dw, db, dy, c.in, c.w, c.stride, c.pad, c.outPad)
	} else {
		d.Conv2dBackward(dx, dw, db, dy, c.in, c.w, c.stride, c.pad)
	}
	return dx
}

func (c *convL) params() ([]*Tensor, []*Tensor) {
	if c.b == nil {
		return []*Tensor{c.w}, []*Tensor{c.dw}
	}
	return []*Tensor{c.w, c.b}, []*Tensor{c.dw, c.db}
}

type reflectL struct {
	pad     int
	out, dx *Tensor
}

func (p *reflectL) forward(d *Device, x *Tensor) *Tensor {
	n, c, h, w := x.NCHW()
	d.ReflectionPad2d(buf(d, &p.out, n, c, h+2*p.pad, w+2*p.pad), x, p.pad)
	buf(d, &p.dx, x.Shape...)
	return p.out
}

func (p *reflectL) backward(d *Device, dy *Tensor, needDX bool) *Tensor {
	d.Zero(p.dx)
	d.ReflectionPad2dBackward(p.dx, dy, p.pad)
	return p.dx
}

func (p *reflectL) params() ([]*Tensor, []*Tensor) { return nil, nil }

// normL is instance norm, affine=False (the reference's default).
type normL struct {
	in, out, stats, dx *Tensor
}

func (l *normL) forward(d *Device, x *Tensor) *Tensor {
	n, c, _, _ := x.NCHW()
	l.in = x
	d.InstanceNorm2d(buf(d, &l.out, x.Shape...), buf(d, &l.stats, 2*n*c), x, nil, nil, 1e-5)
	return l.out
}

func (l *normL) backward(d *Device, dy *Tensor, needDX bool) *Tensor {
	dx := buf(d, &l.dx, l.in.Shape...)
	d.Zero(dx)
	d.InstanceNorm2dBackward(dx, nil, nil, dy, l.in, l.stats, nil)
	return dx
}

func (l *normL) params() ([]*Tensor, []*Tensor) { return nil, nil }

// actL is ReLU (slope 0), LeakyReLU (slope > 0) or Tanh (tanh).
type actL struct {
	slope       float32
	tanh        bool
	in, out, dx *Tensor
}

func (a *actL) forward(d *Device, x *Tensor) *Tensor {
	a.in = x
	y := buf(d, &a.out, x.Shape...)
	switch {
	case a.tanh:
		d.Tanh(y, x)
	case a.slope > 0:
		d.LeakyReLU(y, x, a.slope)
	default:
		d.ReLU(y, x)
	}
	return y
}

func (a *actL) backward(d *Device, dy *Tensor, needDX bool) *Tensor {
	dx := buf(d, &a.dx, a.in.Shape...)
	d.Zero(dx)
	switch {
	case a.tanh:
		d.TanhBackward(dx, dy, a.out)
	case a.slope > 0:
		d.LeakyReLUBackward(dx, dy, a.in, a.slope)
	default:
		d.ReLUBackward(dx, dy, a.out)
	}
	return dx
}

func (a *actL) params() ([]*Tensor, []*Tensor) { return nil, nil }

type seqL []layer

func (s seqL) forward(d *Device, x *Tensor) *Tensor {
	for _, l := range s {
		x = l.forward(d, x)
	}
	return x
}

func (s seqL) backward(d *Device, dy *Tensor, needDX bool) *Tensor {
	for i := len(s) - 1; i >= 0; i-- {
		dy = s[i].backward(d, dy, needDX || i > 0)
	}
	return dy
}

func (s seqL) params() (ps, gs []*Tensor) {
	for _, l := range s {
		p, g := l.params()
		ps, gs = append(ps, p...), append(gs, g...)
	}
	return ps, gs
}

// resL is x + body(x).
type resL struct {
	body    seqL
	out, dx *Tensor
}

func (r *resL) forward(d *Device, x *Tensor) *Tensor {
	d.Add(buf(d, &r.out, x.Shape...), x, r.body.forward(d, x))
	return r.out
}

func (r *resL) backward(d *Device, dy *Tensor, needDX bool) *Tensor {
	dx := buf(d, &r.dx, dy.Shape...)
	d.Copy(dx, dy)
	d.Axpy(dx, r.body.backward(d, dy, true), 1)
	return dx
}

func (r *resL) params() ([]*Tensor, []*Tensor) { return r.body.params() }

// resnetGenerator is pytorch-CycleGAN-and-pix2pix's ResnetGenerator (9 blocks, instance norm,
// reflection padding; convolutions carry a bias because instance norm has no affine).
func resnetGenerator(d *Device, r *rand.Rand, ngf int) seqL {
	g := seqL{&reflectL{pad: 3}, newConv(d, r, 3, ngf, 7, 1, 0, true, false, 0), &normL{}, &actL{}}
	for i := range 2 {
		m := 1 << i
		g = append(g, newConv(d, r, ngf*m, ngf*m*2, 3, 2, 1, true, false, 0), &normL{}, &actL{})
	}
	for range 9 {
		c := ngf * 4
		g = append(g, &resL{body: seqL{&reflectL{pad: 1}, newConv(d, r, c, c, 3, 1, 0, true, false, 0), &normL{}, &actL{},
			&reflectL{pad: 1}, newConv(d, r, c, c, 3, 1, 0, true, false, 0), &normL{}}})
	}
	for i := range 2 {
		m := 1 << (2 - i)
		g = append(g, newConv(d, r, ngf*m, ngf*m/2, 3, 2, 1, true, true, 1), &normL{}, &actL{})
	}
	return append(g, &reflectL{pad: 3}, newConv(d, r, ngf, 3, 7, 1, 0, true, false, 0), &actL{tanh: true})
}

// patchGAN is the 70x70 NLayerDiscriminator (3 layers, instance norm).
func patchGAN(d *Device, r *rand.Rand, ndf int) seqL {
	D := seqL{newConv(d, r, 3, ndf, 4, 2, 1, true, false, 0), &actL{slope: 0.2}}
	prev := ndf
	for i, stride := range []int{2, 2, 1} {
		next := ndf * min(1<<(i+1), 8)
		D = append(D, newConv(d, r, prev, next, 4, stride, 1, true, false, 0), &normL{}, &actL{slope: 0.2})
		prev = next
	}
	return append(D, newConv(d, r, prev, 1, 4, 1, 1, true, false, 0))
}

func setFrozen(s seqL, frozen bool) {
	for _, l := range s {
		switch v := l.(type) {
		case *convL:
			v.frozen = frozen
		case *resL:
			setFrozen(v.body, frozen)
		}
	}
}

// distill holds the networks and buffers of the step.
type distill struct {
	teacher, student, disc seqL
	optG, optD             *Adam
	gradsG, gradsD         []*Tensor
	x, real                *Tensor
	loss, half, one, alpha *Tensor // scalars: a loss, and upstream gradients 0.5, 1, alpha
	sHi, tHi, sLL, tLL     [3]*Tensor
	dLL                    [3]*Tensor // gradient of the student's ll per level (input of the next)
	dHi                    [3]*Tensor
	dS                     *Tensor
	dOut                   *Tensor // gradient of D's output
}

const wkdLevels = 3

func newDistill(d *Device, n, side int) *distill {
	r := rand.New(rand.NewPCG(42, 7))
	s := &distill{teacher: resnetGenerator(d, r, 64), student: resnetGenerator(d, r, 16), disc: patchGAN(d, r, 64)}
	setFrozen(s.teacher, true)
	var pG, pD []*Tensor
	pG, s.gradsG = s.student.params()
	pD, s.gradsD = s.disc.params()
	cfg := ops.GANAdamConfig()
	s.optG, s.optD = d.NewAdam(pG, s.gradsG, cfg), d.NewAdam(pD, s.gradsD, cfg)
	img := make([]float32, n*3*side*side)
	for i := range img {
		img[i] = float32(2*r.Float64() - 1)
	}
	s.x, s.real = d.FromHost(img, n, 3, side, side), d.FromHost(img, n, 3, side, side)
	s.loss = d.NewTensor(1)
	s.half, s.one, s.alpha = d.FromHost([]float32{0.5}, 1), d.FromHost([]float32{1}, 1), d.FromHost([]float32{0.4}, 1)
	h := side
	for j := range wkdLevels {
		h = bandSide(h)
		s.sLL[j], s.tLL[j], s.dLL[j] = d.NewTensor(n, 3, h, h), d.NewTensor(n, 3, h, h), d.NewTensor(n, 3, h, h)
		s.sHi[j], s.tHi[j], s.dHi[j] = d.NewTensor(n, 3, 3, h, h), d.NewTensor(n, 3, 3, h, h), d.NewTensor(n, 3, 3, h, h)
	}
	s.dS = d.NewTensor(n, 3, side, side)
	return s
}

// free releases every tensor of the networks, the optimizers and the step's buffers.
func (s *distill) free(d *Device) {
	for _, net := range []seqL{s.teacher, s.student, s.disc} {
		freeNet(d, net)
	}
	d.FreeAdam(s.optG)
	d.FreeAdam(s.optD)
	for _, t := range []*Tensor{s.x, s.real, s.loss, s.half, s.one, s.alpha, s.dS, s.dOut} {
		d.Free(t)
	}
	for j := range wkdLevels {
		for _, t := range []*Tensor{s.sHi[j], s.tHi[j], s.sLL[j], s.tLL[j], s.dLL[j], s.dHi[j]} {
			d.Free(t)
		}
	}
}

func freeNet(d *Device, net seqL) {
	for _, l := range net {
		var ts []*Tensor
		switch v := l.(type) {
		case *convL:
			ts = []*Tensor{v.w, v.b, v.dw, v.db, v.out, v.dx}
		case *reflectL:
			ts = []*Tensor{v.out, v.dx}
		case *normL:
			ts = []*Tensor{v.out, v.stats, v.dx}
		case *actL:
			ts = []*Tensor{v.out, v.dx}
		case *resL:
			freeNet(d, v.body)
			ts = []*Tensor{v.out, v.dx}
		}
		for _, t := range ts {
			d.Free(t)
		}
	}
}

// step runs one distillation step (CycleGAN-style LSGAN + WKD, one direction).
func (s *distill) step(d *Device) {
	// Teacher, no gradient; its bands are constants of the WKD loss.
	t := s.teacher.forward(d, s.x)
	for j, in := 0, t; j < wkdLevels; j++ {
		d.HaarLevel(s.tLL[j], s.tHi[j], in)
		in = s.tLL[j]
	}
	fake := s.student.forward(d, s.x)

	// D: 0.5 * (MSE(D(real), 1) + MSE(D(fake.detach), 0)).
	for _, g := range s.gradsD {
		d.Zero(g)
	}
	setFrozen(s.disc, false)
	out := s.disc.forward(d, s.real)
	d.Loss(MSE, s.loss, out, nil, 1)
	dout := buf(d, &s.dOut, out.Shape...)
	d.Zero(dout)
	d.LossBackward(MSE, dout, nil, s.half, out, nil, 1)
	s.disc.backward(d, dout, false)
	out = s.disc.forward(d, fake)
	d.Loss(MSE, s.loss, out, nil, 0)
	d.Zero(dout)
	d.LossBackward(MSE, dout, nil, s.half, out, nil, 0)
	s.disc.backward(d, dout, false)
	d.AdamStep(s.optD)

	// G: MSE(D(fake), 1) + alpha * sum_j L1(high_j(fake), high_j(teacher)).
	for _, g := range s.gradsG {
		d.Zero(g)
	}
	setFrozen(s.disc, true)
	out = s.disc.forward(d, fake)
	d.Loss(MSE, s.loss, out, nil, 1)
	d.Zero(dout)
	d.LossBackward(MSE, dout, nil, s.one, out, nil, 1)
	dFake := s.disc.backward(d, dout, true)
	for j, in := 0, fake; j < wkdLevels; j++ {
		d.HaarLevel(s.sLL[j], s.sHi[j], in)
		d.Loss(L1, s.loss, s.sHi[j], s.tHi[j], 0)
		d.Zero(s.dHi[j])
		d.LossBackward(L1, s.dHi[j], nil, s.alpha, s.sHi[j], s.tHi[j], 0)
		in = s.sLL[j]
	}
	// Back down the levels: the coarsest ll carries no loss.
	var dll *Tensor
	for j := wkdLevels - 1; j >= 0; j-- {
		dst := s.dS
		if j > 0 {
			dst = s.dLL[j-1]
		}
		d.Zero(dst)
		d.HaarLevelBackward(dst, dll, s.dHi[j])
		dll = dst
	}
	d.Axpy(s.dS, dFake, 1)
	s.student.backward(d, s.dS, false)
	d.AdamStep(s.optG)
}

func BenchmarkDistillStep(b *testing.B) {
	for _, n := range []int{1, 4} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			d := openDevice(b)
			s := newDistill(d, n, 256)
			defer s.free(d)
			for range 2 { // warm-up: kernels JIT, workspaces grow, cuBLAS picks algorithms
				s.step(d)
			}
			if err := d.Sync(); err != nil {
				b.Fatal(err)
			}
			times := make([]float64, 0, b.N)
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				s.step(d)
				if err := d.Sync(); err != nil {
					b.Fatal(err)
				}
				times = append(times, float64(time.Since(start).Microseconds())/1000)
			}
			slices.Sort(times)
			b.ReportMetric(times[len(times)/2], "median-ms")
			b.Logf("%s batch=%d median %.2f ms over %d steps", d.Name(), n, times[len(times)/2], len(times))
		})
	}
}

// TestDistillStepRuns checks the composed step on a small image: it runs without a driver
// error, the losses stay finite and Adam moves the student.
func TestDistillStepRuns(t *testing.T) {
	d := openDevice(t)
	n, side := 2, 64
	if emulated {
		// The host emulator runs blocks one after another: small, and one thread per block
		// (the parity tests cover the 256-thread blocks).
		n, side = 1, 24
		setEmuBlockWidth(1)
		defer setEmuBlockWidth(threads)
	}
	s := newDistill(d, n, side)
	defer s.free(d)
	p := s.optG.params[0]
	before := d.ToHost(p)
	for range 2 {
		s.step(d)
	}
	mustOK(t, d)
	after := d.ToHost(p)
	loss := d.ToHost(s.loss)[0]
	moved := 0
	for i := range after {
		if after[i] != before[i] {
			moved++
		}
	}
	t.Logf("last WKD level loss %g, %d of %d weights of the first conv moved", loss, moved, len(after))
	if loss != loss || loss <= 0 {
		t.Errorf("WKD loss %g, want a positive finite value", loss)
	}
	if moved == 0 {
		t.Error("Adam did not move the student's first convolution")
	}
}
