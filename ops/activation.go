package ops

import "math"

// Activations. Each backward reads what it needs from the op's own output or input, which
// ops never modify, so nothing is saved.

// ReLU returns max(x, 0). Its gradient at 0 is 0, as in PyTorch.
// x: any shape -> that shape
func ReLU(tp *Tape, x *Tensor) *Tensor {
	if x.dev != nil {
		return devActivation(tp, x.dev, x, actDevReLU, 0)
	}
	out := tp.alloc(x.Shape...)
	ewRun(reluLoop, out.Data, x.Data, nil, 0, 0)
	if tp.needs(x) {
		tp.push(reluBackward, out, x)
	}
	return out
}

func reluLoop(dst, a, _ []float32, _, _ float32) {
	dst = dst[:len(a)]
	for i, v := range a {
		dst[i] = max(v, 0)
	}
}

func reluBackward(n *node) {
	ewRun(reluBackLoop, n.in[0].grad(), n.out.Grad, n.out.Data, 0, 0)
}

// reluBackLoop: dst += g where y > 0 (a = g, b = y). Masked, not branched: the signs of
// activations are a coin toss that a branch predictor loses (6x slower measured).
func reluBackLoop(dst, g, y []float32, _, _ float32) {
	y = y[:len(g)]
	dst = dst[:len(g)]
	for i, v := range g {
		dst[i] += math.Float32frombits(math.Float32bits(v) &^ notPositive(y[i]))
	}
}

// notPositive is all ones where v <= 0 (either zero, or negative), all zeros where v > 0.
func notPositive(v float32) uint32 {
	return uint32((int64(int32(math.Float32bits(v))) - 1) >> 63)
}

// LeakyReLU returns x where x > 0 and slope*x elsewhere (PyTorch's default slope is 0.01,
// the reference's discriminators use 0.2). Its gradient at 0 is slope, as in PyTorch.
// x: any shape -> that shape
func LeakyReLU(tp *Tape, x *Tensor, slope float32) *Tensor {
	if x.dev != nil {
		return devActivation(tp, x.dev, x, actDevLeaky, slope)
	}
	out := tp.alloc(x.Shape...)
	ewRun(leakyLoop, out.Data, x.Data, nil, slope, 0)
	if tp.needs(x) {
		n := tp.push(leakyBackward, out, x)
		n.floats[0] = slope
	}
	return out
}

func leakyLoop(dst, a, _ []float32, slope, _ float32) {
	f := [2]float32{1, slope} // indexed by v <= 0, without a branch
	dst = dst[:len(a)]
	for i, v := range a {
		dst[i] = v * f[notPositive(v)&1]
	}
}

func leakyBackward(n *node) {
	ewRun(leakyBackLoop, n.in[0].grad(), n.out.Grad, n.in[0].Data, n.floats[0], 0)
}

// leakyBackLoop: dst += g where x > 0, slope*g elsewhere (a = g, b = x). It reads the input,
// not the output, so that a zero or negative slope still gets the right sign.
func leakyBackLoop(dst, g, x []float32, slope, _ float32) {
	f := [2]float32{1, slope}
	x = x[:len(g)]
	dst = dst[:len(g)]
	for i, v := range g {
		dst[i] += v * f[notPositive(x[i])&1]
	}
}

// Tanh returns tanh(x).
// x: any shape -> that shape
func Tanh(tp *Tape, x *Tensor) *Tensor {
	if x.dev != nil {
		return devActivation(tp, x.dev, x, actDevTanh, 0)
	}
	out := tp.alloc(x.Shape...)
	ewRun(tanhLoop, out.Data, x.Data, nil, 0, 0)
	if tp.needs(x) {
		tp.push(tanhBackward, out, x)
	}
	return out
}

func tanhLoop(dst, a, _ []float32, _, _ float32) {
	dst = dst[:len(a)]
	for i, v := range a {
		dst[i] = float32(math.Tanh(float64(v)))
	}
}

func tanhBackward(n *node) {
	ewRun(tanhBackLoop, n.in[0].grad(), n.out.Grad, n.out.Data, 0, 0)
}

// tanhBackLoop: dst += g * (1 - y²) (a = g, b = y).
func tanhBackLoop(dst, g, y []float32, _, _ float32) {
	y = y[:len(g)]
	dst = dst[:len(g)]
	for i, v := range g {
		dst[i] += v * (1 - y[i]*y[i])
	}
}

// Sigmoid returns 1 / (1 + exp(-x)).
// x: any shape -> that shape
func Sigmoid(tp *Tape, x *Tensor) *Tensor {
	if x.dev != nil {
		return devActivation(tp, x.dev, x, actDevSigmoid, 0)
	}
	out := tp.alloc(x.Shape...)
	ewRun(sigmoidLoop, out.Data, x.Data, nil, 0, 0)
	if tp.needs(x) {
		tp.push(sigmoidBackward, out, x)
	}
	return out
}

func sigmoidLoop(dst, a, _ []float32, _, _ float32) {
	dst = dst[:len(a)]
	for i, v := range a {
		dst[i] = sigmoid32(v)
	}
}

// sigmoid32 is the logistic function, evaluated in float64 so that it neither overflows nor
// loses the tails.
func sigmoid32(v float32) float32 {
	return float32(1 / (1 + math.Exp(-float64(v))))
}

func sigmoidBackward(n *node) {
	ewRun(sigmoidBackLoop, n.in[0].grad(), n.out.Grad, n.out.Data, 0, 0)
}

// sigmoidBackLoop: dst += g * y * (1 - y) (a = g, b = y).
func sigmoidBackLoop(dst, g, y []float32, _, _ float32) {
	y = y[:len(g)]
	dst = dst[:len(g)]
	for i, v := range g {
		dst[i] += v * y[i] * (1 - y[i])
	}
}
