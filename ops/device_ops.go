package ops

import "fmt"

// The device side of every op: the public op functions dispatch here when their inputs live
// on a Device. Each keeps the CPU op's contract (shapes, what is recorded, accumulation into
// gradients) and records its backward on the same Tape; the arithmetic is the Device's.
// Ops the Device has no kernel for are built from the ones it has (Sub from Scale and Add,
// Concat from copies, Dropout's product from ReLU's masked backward).

// sub is n elements of b from element off, as a flat operand.
func sub(b Buf, off, n int) Buf { return Buf{Mem: b.Mem, Off: b.Off + off, Shape: []int{n}} }

func devAdd(tp *Tape, d Device, a, b *Tensor) *Tensor {
	out := tp.allocOn(d, a.Shape...)
	d.Add(out.buf(), a.buf(), b.buf())
	if tp.needs(a, b) {
		tp.push(devAddBackward, out, a, b)
	}
	return out
}

func devAddBackward(n *node) {
	d := n.out.dev
	for _, in := range n.in[:2] {
		if in.requiresGrad {
			d.Axpy(in.dgradBuf(), n.out.gbuf(), 1)
		}
	}
}

func devSub(tp *Tape, d Device, a, b *Tensor) *Tensor {
	out := tp.allocOn(d, a.Shape...)
	// a + (-b) rounds as a - b does.
	d.Scale(out.buf(), b.buf(), -1)
	d.Add(out.buf(), a.buf(), out.buf())
	if tp.needs(a, b) {
		tp.push(devSubBackward, out, a, b)
	}
	return out
}

func devSubBackward(n *node) {
	d := n.out.dev
	if a := n.in[0]; a.requiresGrad {
		d.Axpy(a.dgradBuf(), n.out.gbuf(), 1)
	}
	if b := n.in[1]; b.requiresGrad {
		d.Axpy(b.dgradBuf(), n.out.gbuf(), -1)
	}
}

func devScale(tp *Tape, d Device, x *Tensor, s float32) *Tensor {
	out := tp.allocOn(d, x.Shape...)
	d.Scale(out.buf(), x.buf(), s)
	if tp.needs(x) {
		tp.push(devScaleBackward, out, x).floats[0] = s
	}
	return out
}

func devScaleBackward(n *node) {
	n.out.dev.Axpy(n.in[0].dgradBuf(), n.out.gbuf(), n.floats[0])
}

func devAddScalar(tp *Tape, d Device, x *Tensor, s float32) *Tensor {
	out := tp.allocOn(d, x.Shape...)
	d.Copy(out.buf(), x.buf())
	d.AddScalar(out.buf(), s)
	if tp.needs(x) {
		tp.push(devScaleBackward, out, x).floats[0] = 1
	}
	return out
}

func devConcat(tp *Tape, d Device, a, b *Tensor, shape []int) *Tensor {
	out := tp.allocOn(d, shape...)
	ns := a.Shape[0]
	sa, sb := a.Numel()/max(ns, 1), b.Numel()/max(ns, 1)
	o, ab, bb := out.buf(), a.buf(), b.buf()
	for i := range ns {
		d.Copy(sub(o, i*(sa+sb), sa), sub(ab, i*sa, sa))
		d.Copy(sub(o, i*(sa+sb)+sa, sb), sub(bb, i*sb, sb))
	}
	if tp.needs(a, b) {
		tp.push(devConcatBackward, out, a, b)
	}
	return out
}

func devConcatBackward(n *node) {
	a, b, d := n.in[0], n.in[1], n.out.dev
	g := n.out.gbuf()
	ns := a.Shape[0]
	sa, sb := a.Numel()/max(ns, 1), b.Numel()/max(ns, 1)
	if a.requiresGrad {
		da := a.dgradBuf()
		for i := range ns {
			d.Axpy(sub(da, i*sa, sa), sub(g, i*(sa+sb), sa), 1)
		}
	}
	if b.requiresGrad {
		db := b.dgradBuf()
		for i := range ns {
			d.Axpy(sub(db, i*sb, sb), sub(g, i*(sa+sb)+sa, sb), 1)
		}
	}
}

// Activations: op 0 ReLU, 1 LeakyReLU, 2 Tanh, 3 Sigmoid.
const (
	actDevReLU = iota
	actDevLeaky
	actDevTanh
	actDevSigmoid
)

func devActivation(tp *Tape, d Device, x *Tensor, op int, slope float32) *Tensor {
	out := tp.allocOn(d, x.Shape...)
	switch op {
	case actDevReLU:
		d.ReLU(out.buf(), x.buf())
	case actDevLeaky:
		d.LeakyReLU(out.buf(), x.buf(), slope)
	case actDevTanh:
		d.Tanh(out.buf(), x.buf())
	case actDevSigmoid:
		d.Sigmoid(out.buf(), x.buf())
	}
	if tp.needs(x) {
		nd := tp.push(devActivationBackward, out, x)
		nd.ints[0], nd.floats[0] = op, slope
	}
	return out
}

func devActivationBackward(n *node) {
	x, y, d := n.in[0], n.out, n.out.dev
	dx, g := x.dgradBuf(), y.gbuf()
	switch n.ints[0] {
	case actDevReLU:
		d.ReLUBackward(dx, g, y.buf())
	case actDevLeaky:
		d.LeakyReLUBackward(dx, g, x.buf(), n.floats[0])
	case actDevTanh:
		d.TanhBackward(dx, g, y.buf())
	case actDevSigmoid:
		d.SigmoidBackward(dx, g, y.buf())
	}
}

// devSum is Sum (scale 1) and Mean (scale 1/n).
func devSum(tp *Tape, d Device, x *Tensor, scale float32) *Tensor {
	out := tp.allocOn(d, 1)
	d.Sum(out.buf(), x.buf(), scale)
	if tp.needs(x) {
		tp.push(devSumBackward, out, x).floats[0] = scale
	}
	return out
}

func devSumBackward(n *node) {
	n.out.dev.SumBackward(n.in[0].dgradBuf(), n.out.gbuf(), n.floats[0])
}

func devLoss(tp *Tape, d Device, kind LossKind, x, y *Tensor, target float32) *Tensor {
	out := tp.allocOn(d, 1)
	d.Loss(kind, out.buf(), x.buf(), bufOrNil(y), target)
	if tp.needs(x, y) {
		nd := tp.push(devLossBackward, out, x, y)
		nd.ints[0], nd.floats[0] = int(kind), target
	}
	return out
}

func devLossBackward(n *node) {
	x, y := n.in[0], n.in[1]
	n.out.dev.LossBackward(LossKind(n.ints[0]), gradIfWanted(x), gradIfWanted(y), n.out.gbuf(),
		x.buf(), bufOrNil(y), n.floats[0])
}

func devConv2d(tp *Tape, d Device, x, w, b *Tensor, stride, pad, n, k, oh, ow int) *Tensor {
	out := tp.allocOn(d, n, k, oh, ow)
	d.Conv2d(out.buf(), x.buf(), w.buf(), bufOrNil(b), stride, pad)
	if tp.needs(x, w, b) {
		nd := tp.push(devConv2dBackward, out, x, w, b)
		nd.ints[0], nd.ints[1] = stride, pad
	}
	return out
}

func devConv2dBackward(nd *node) {
	x, w, b := nd.in[0], nd.in[1], nd.in[2]
	nd.out.dev.Conv2dBackward(gradIfWanted(x), gradIfWanted(w), gradIfWanted(b), nd.out.gbuf(),
		x.buf(), w.buf(), nd.ints[0], nd.ints[1])
}

func devConvTranspose2d(tp *Tape, d Device, x, w, b *Tensor, stride, pad, outPad, n, k, oh, ow int) *Tensor {
	out := tp.allocOn(d, n, k, oh, ow)
	d.ConvTranspose2d(out.buf(), x.buf(), w.buf(), bufOrNil(b), stride, pad, outPad)
	if tp.needs(x, w, b) {
		nd := tp.push(devConvTranspose2dBackward, out, x, w, b)
		nd.ints[0], nd.ints[1], nd.ints[2] = stride, pad, outPad
	}
	return out
}

func devConvTranspose2dBackward(nd *node) {
	x, w, b := nd.in[0], nd.in[1], nd.in[2]
	nd.out.dev.ConvTranspose2dBackward(gradIfWanted(x), gradIfWanted(w), gradIfWanted(b), nd.out.gbuf(),
		x.buf(), w.buf(), nd.ints[0], nd.ints[1], nd.ints[2])
}

func devPad2d(tp *Tape, d Device, x *Tensor, pad int, reflect bool, n, c, ph, pw int) *Tensor {
	out := tp.allocOn(d, n, c, ph, pw)
	if reflect {
		d.ReflectionPad2d(out.buf(), x.buf(), pad)
	} else {
		d.ZeroPad2d(out.buf(), x.buf(), pad)
	}
	if tp.needs(x) {
		nd := tp.push(devPad2dBackward, out, x)
		nd.ints[0] = pad
		if reflect {
			nd.ints[1] = 1
		}
	}
	return out
}

func devPad2dBackward(nd *node) {
	x, d := nd.in[0], nd.out.dev
	if nd.ints[1] == 1 {
		d.ReflectionPad2dBackward(x.dgradBuf(), nd.out.gbuf(), nd.ints[0])
	} else {
		d.ZeroPad2dBackward(x.dgradBuf(), nd.out.gbuf(), nd.ints[0])
	}
}

func devInstanceNorm2d(tp *Tape, d Device, x, gamma, beta *Tensor, eps float32) *Tensor {
	n, c, _, _ := x.NCHW()
	out := tp.allocOn(d, x.Shape...)
	stats := tp.allocOn(d, 2*n*c)
	d.InstanceNorm2d(out.buf(), stats.buf(), x.buf(), bufOrNil(gamma), bufOrNil(beta), eps)
	if tp.needs(x, gamma, beta) {
		tp.push(devInstanceNormBackward, out, x, gamma, beta).saved[0] = stats
	}
	return out
}

func devInstanceNormBackward(nd *node) {
	x, gamma, beta := nd.in[0], nd.in[1], nd.in[2]
	nd.out.dev.InstanceNorm2dBackward(gradIfWanted(x), gradIfWanted(gamma), gradIfWanted(beta), nd.out.gbuf(),
		x.buf(), nd.saved[0].buf(), bufOrNil(gamma))
}

func devBatchNorm2d(tp *Tape, d Device, x, gamma, beta, runMean, runVar *Tensor, training bool, momentum, eps float32) *Tensor {
	_, c, _, _ := x.NCHW()
	if runMean != nil && (runMean.dev != d || runVar.dev != d) {
		panic(fmt.Sprintf("ops: BatchNorm2d: running statistics on %s, input on %s", where(runMean), where(x)))
	}
	out := tp.allocOn(d, x.Shape...)
	stats := tp.allocOn(d, 3*c)
	d.BatchNorm2d(out.buf(), stats.buf(), x.buf(), bufOrNil(gamma), bufOrNil(beta), bufOrNil(runMean), bufOrNil(runVar),
		training, momentum, eps)
	if tp.needs(x, gamma, beta) {
		nd := tp.push(devBatchNormBackward, out, x, gamma, beta)
		nd.saved[0] = stats
		if training || runMean == nil {
			nd.ints[0] = 1
		}
	}
	return out
}

func devBatchNormBackward(nd *node) {
	x, gamma, beta := nd.in[0], nd.in[1], nd.in[2]
	nd.out.dev.BatchNorm2dBackward(gradIfWanted(x), gradIfWanted(gamma), gradIfWanted(beta), nd.out.gbuf(),
		x.buf(), nd.saved[0].buf(), bufOrNil(gamma), nd.ints[0] == 1)
}

func devHaarLevel(tp *Tape, d Device, x *Tensor) (ll, hi *Tensor) {
	n, c, h, w := x.NCHW()
	ho, wo := (h+1)/2, (w+1)/2
	ll = tp.allocOn(d, n, c, ho, wo)
	hi = tp.allocOn(d, n, c, 3, ho, wo)
	d.HaarLevel(ll.buf(), hi.buf(), x.buf())
	if tp.needs(x) {
		// As on the host: one node keyed on ll, whose gradient exists so that it runs even
		// when the loss reads only the high bands.
		tp.push(devHaarLevelBackward, ll, x).saved[0] = hi
		hi.requiresGrad = true
		ll.dgradBuf()
		hi.dgradBuf()
	}
	return ll, hi
}

func devHaarLevelBackward(nd *node) {
	x, ll, hi := nd.in[0], nd.out, nd.saved[0]
	if x.requiresGrad {
		nd.out.dev.HaarLevelBackward(x.dgradBuf(), ll.gbuf(), hi.gbuf())
	}
}

func devHaarInvLevel(tp *Tape, d Device, ll, hi *Tensor) *Tensor {
	n, c, _, _ := ll.NCHW()
	out := tp.allocOn(d, n, c, 2*hi.Shape[3], 2*hi.Shape[4])
	d.HaarInverseLevel(out.buf(), ll.buf(), hi.buf())
	if tp.needs(ll, hi) {
		tp.push(devHaarInvLevelBackward, out, ll, hi)
	}
	return out
}

func devHaarInvLevelBackward(nd *node) {
	ll, hi := nd.in[0], nd.in[1]
	nd.out.dev.HaarInverseLevelBackward(gradIfWanted(ll), gradIfWanted(hi), nd.out.gbuf())
}

// devDropout draws the mask on the host from the same stream as the CPU op (so both backends
// drop the same elements), uploads it, and multiplies through ReLU's masked backward: the mask
// is 0 or 1/(1-p) > 0, so "add x where mask > 0" then a scale is x * mask.
func devDropout(tp *Tape, d Device, x *Tensor, p float32, rng *RNG) *Tensor {
	hostMask := tp.alloc(x.Shape...)
	dropoutMask(hostMask.Data, p, rng)
	mask := tp.allocOn(d, x.Shape...)
	d.Upload(mask.buf(), hostMask.Data)
	scale := float32(0)
	if p < 1 {
		scale = 1 / (1 - p)
	}
	out := tp.allocOn(d, x.Shape...)
	d.Zero(out.buf())
	d.ReLUBackward(out.buf(), x.buf(), mask.buf())
	d.Scale(out.buf(), out.buf(), scale)
	if tp.needs(x) {
		nd := tp.push(devDropoutBackward, out, x)
		nd.saved[0], nd.saved[1] = mask, tp.allocOn(d, x.Shape...)
		nd.floats[0] = scale
	}
	return out
}

func devDropoutBackward(nd *node) {
	d, tmp := nd.out.dev, nd.saved[1].buf()
	d.Zero(tmp)
	d.ReLUBackward(tmp, nd.out.gbuf(), nd.saved[0].buf())
	d.Axpy(nd.in[0].dgradBuf(), tmp, nd.floats[0])
}
