package ops

import "math"

// Losses, each reduced to the mean over all elements like PyTorch's default reduction='mean'.
// The two-input forms send gradient to whichever of x and y requires it; the Const forms
// compare with one target value everywhere (GAN losses: real = 1, fake = 0).

// L1Loss returns mean(|x - y|). Its gradient at x = y is 0, as in PyTorch.
// x, y: any shape, the same -> (1)
func L1Loss(tp *Tape, x, y *Tensor) *Tensor {
	mustSameShape("L1Loss", x, y)
	if d := deviceOf("L1Loss", x, y, nil); d != nil {
		return devLoss(tp, d, LossL1, x, y, 0)
	}
	out := tp.alloc(1)
	out.Data[0] = float32(redRun(l1Loop, x.Data, y.Data, 0) / float64(len(x.Data)))
	if tp.needs(x, y) {
		tp.push(l1Backward, out, x, y)
	}
	return out
}

func l1Loop(x, y []float32, _ float32) float64 {
	y = y[:len(x)]
	var s0, s1 float64
	i := 0
	for ; i+2 <= len(x); i += 2 {
		s0 += float64(abs32(x[i] - y[i]))
		s1 += float64(abs32(x[i+1] - y[i+1]))
	}
	if i < len(x) {
		s0 += float64(abs32(x[i] - y[i]))
	}
	return s0 + s1
}

func abs32(v float32) float32 { return math.Float32frombits(math.Float32bits(v) &^ (1 << 31)) }

func l1Backward(n *node) {
	x, y := n.in[0], n.in[1]
	s := n.out.Grad[0] / float32(len(x.Data))
	if x.requiresGrad {
		ewRun(l1BackLoop, x.grad(), x.Data, y.Data, s, 0)
	}
	if y.requiresGrad {
		ewRun(l1BackLoop, y.grad(), x.Data, y.Data, -s, 0)
	}
}

// l1BackLoop: dst += s * sign(x - y). The sign is copied bitwise (a branch on it would be
// mispredicted half the time); only the rare exact zero branches.
func l1BackLoop(dst, x, y []float32, s, _ float32) {
	const signBit = 1 << 31
	sb := math.Float32bits(s)
	y = y[:len(x)]
	dst = dst[:len(x)]
	for i, v := range x {
		d := v - y[i]
		if d == 0 {
			continue
		}
		dst[i] += math.Float32frombits(sb ^ (math.Float32bits(d) & signBit))
	}
}

// MSELoss returns mean((x - y)²).
// x, y: any shape, the same -> (1)
func MSELoss(tp *Tape, x, y *Tensor) *Tensor {
	mustSameShape("MSELoss", x, y)
	if d := deviceOf("MSELoss", x, y, nil); d != nil {
		return devLoss(tp, d, LossMSE, x, y, 0)
	}
	out := tp.alloc(1)
	out.Data[0] = float32(redRun(sqLoop, x.Data, y.Data, 0) / float64(len(x.Data)))
	if tp.needs(x, y) {
		tp.push(mseBackward, out, x, y)
	}
	return out
}

func sqLoop(x, y []float32, _ float32) float64 {
	y = y[:len(x)]
	var s0, s1 float64
	i := 0
	for ; i+2 <= len(x); i += 2 {
		d0, d1 := x[i]-y[i], x[i+1]-y[i+1]
		s0 += float64(d0 * d0)
		s1 += float64(d1 * d1)
	}
	if i < len(x) {
		d := x[i] - y[i]
		s0 += float64(d * d)
	}
	return s0 + s1
}

func mseBackward(n *node) {
	x, y := n.in[0], n.in[1]
	s := 2 * n.out.Grad[0] / float32(len(x.Data))
	if x.requiresGrad {
		ewRun(diffAccLoop, x.grad(), x.Data, y.Data, s, 0)
	}
	if y.requiresGrad {
		ewRun(diffAccLoop, y.grad(), x.Data, y.Data, -s, 0)
	}
}

// diffAccLoop: dst += s * (x - y).
func diffAccLoop(dst, x, y []float32, s, _ float32) {
	y = y[:len(x)]
	dst = dst[:len(x)]
	for i, v := range x {
		dst[i] += s * (v - y[i])
	}
}

// MSEConst returns mean((x - target)²), the LSGAN loss against a constant label.
// x: any shape -> (1)
func MSEConst(tp *Tape, x *Tensor, target float32) *Tensor {
	if x.dev != nil {
		return devLoss(tp, x.dev, LossMSE, x, nil, target)
	}
	out := tp.alloc(1)
	out.Data[0] = float32(redRun(sqConstLoop, x.Data, nil, target) / float64(len(x.Data)))
	if tp.needs(x) {
		n := tp.push(mseConstBackward, out, x)
		n.floats[0] = target
	}
	return out
}

func sqConstLoop(x, _ []float32, t float32) float64 {
	var s float64
	for _, v := range x {
		d := v - t
		s += float64(d * d)
	}
	return s
}

func mseConstBackward(n *node) {
	x := n.in[0]
	s := 2 * n.out.Grad[0] / float32(len(x.Data))
	ewRun(diffConstAccLoop, x.grad(), x.Data, nil, s, n.floats[0])
}

// diffConstAccLoop: dst += s * (x - t).
func diffConstAccLoop(dst, x, _ []float32, s, t float32) {
	dst = dst[:len(x)]
	for i, v := range x {
		dst[i] += s * (v - t)
	}
}

// BCEWithLogits returns mean(max(x,0) - x*y + log(1 + exp(-|x|))), the binary cross entropy
// of sigmoid(x) against y written so that no exponential overflows.
// x (logits), y (targets in [0, 1]): any shape, the same -> (1)
func BCEWithLogits(tp *Tape, x, y *Tensor) *Tensor {
	mustSameShape("BCEWithLogits", x, y)
	if d := deviceOf("BCEWithLogits", x, y, nil); d != nil {
		return devLoss(tp, d, LossBCEWithLogits, x, y, 0)
	}
	out := tp.alloc(1)
	out.Data[0] = float32(redRun(bceLoop, x.Data, y.Data, 0) / float64(len(x.Data)))
	if tp.needs(x, y) {
		tp.push(bceBackward, out, x, y)
	}
	return out
}

// bceTerm is one element's loss, in float64.
func bceTerm(x, y float32) float64 {
	v := float64(x)
	return max(v, 0) - v*float64(y) + math.Log1p(math.Exp(-math.Abs(v)))
}

func bceLoop(x, y []float32, _ float32) float64 {
	y = y[:len(x)]
	var s float64
	for i, v := range x {
		s += bceTerm(v, y[i])
	}
	return s
}

func bceBackward(n *node) {
	x, y := n.in[0], n.in[1]
	s := n.out.Grad[0] / float32(len(x.Data))
	if x.requiresGrad {
		ewRun(bceBackLoop, x.grad(), x.Data, y.Data, s, 0)
	}
	if y.requiresGrad {
		// d/dy = -x.
		ewRun(accScaledLoop, y.grad(), x.Data, nil, -s, 0)
	}
}

// bceBackLoop: dst += s * (sigmoid(x) - y).
func bceBackLoop(dst, x, y []float32, s, _ float32) {
	y = y[:len(x)]
	dst = dst[:len(x)]
	for i, v := range x {
		dst[i] += s * (sigmoid32(v) - y[i])
	}
}

// BCEWithLogitsConst is BCEWithLogits against a constant target: the vanilla GAN loss.
// x (logits): any shape -> (1)
func BCEWithLogitsConst(tp *Tape, x *Tensor, target float32) *Tensor {
	if x.dev != nil {
		return devLoss(tp, x.dev, LossBCEWithLogits, x, nil, target)
	}
	out := tp.alloc(1)
	out.Data[0] = float32(redRun(bceConstLoop, x.Data, nil, target) / float64(len(x.Data)))
	if tp.needs(x) {
		n := tp.push(bceConstBackward, out, x)
		n.floats[0] = target
	}
	return out
}

func bceConstLoop(x, _ []float32, t float32) float64 {
	var s float64
	for _, v := range x {
		s += bceTerm(v, t)
	}
	return s
}

func bceConstBackward(n *node) {
	x := n.in[0]
	s := n.out.Grad[0] / float32(len(x.Data))
	ewRun(bceConstBackLoop, x.grad(), x.Data, nil, s, n.floats[0])
}

// bceConstBackLoop: dst += s * (sigmoid(x) - t).
func bceConstBackLoop(dst, x, _ []float32, s, t float32) {
	dst = dst[:len(x)]
	for i, v := range x {
		dst[i] += s * (sigmoid32(v) - t)
	}
}
