package ops

// Reductions to a scalar, and the machinery the losses share with them: a sum of per-element
// terms over fixed chunks, each chunk accumulated in float64, the chunks added in order. Fixed
// chunks (not one per thread) make the result bit-identical for any number of threads, which
// replicas that must stay identical rely on.

// redChunk is the number of elements per partial sum.
const redChunk = 1 << 13

// redFunc returns the float64 sum of one chunk's per-element terms of a (and b where non-nil,
// as long as a); t is the loop's own scalar. It must be a top-level func.
type redFunc func(a, b []float32, t float32) float64

// redKernel is the ParallelFor body of a chunked sum: index c is chunk c, its sum goes to part[c].
type redKernel struct {
	f    redFunc
	a, b []float32
	t    float32
	part []float64 // kept across uses, so that only warm-up allocates it
}

func (k *redKernel) Run(lo, hi int) {
	n := len(k.a)
	for c := lo; c < hi; c++ {
		s, e := c*redChunk, min((c+1)*redChunk, n)
		var b []float32
		if k.b != nil {
			b = k.b[s:e]
		}
		k.part[c] = k.f(k.a[s:e], b, k.t)
	}
}

var redBodies bodyFreeList[redKernel]

// redRun returns the sum over chunks of f.
func redRun(f redFunc, a, b []float32, t float32) float64 {
	if len(a) <= redChunk {
		return f(a, b, t)
	}
	nc := (len(a) + redChunk - 1) / redChunk
	k := redBodies.get()
	if cap(k.part) < nc {
		k.part = make([]float64, nc)
	}
	*k = redKernel{f: f, a: a, b: b, t: t, part: k.part[:nc]}
	ParallelFor(nc, 2, k)
	var s float64
	for _, v := range k.part {
		s += v
	}
	*k = redKernel{part: k.part}
	redBodies.put(k)
	return s
}

// sumLoop: sum of a. Four accumulators break the chain of dependent additions.
func sumLoop(a, _ []float32, _ float32) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(a); i += 4 {
		v := a[i : i+4 : i+4]
		s0 += float64(v[0])
		s1 += float64(v[1])
		s2 += float64(v[2])
		s3 += float64(v[3])
	}
	for ; i < len(a); i++ {
		s0 += float64(a[i])
	}
	return (s0 + s1) + (s2 + s3)
}

// Sum returns the sum of all elements.
// x: any shape -> (1)
func Sum(tp *Tape, x *Tensor) *Tensor {
	if x.dev != nil {
		return devSum(tp, x.dev, x, 1)
	}
	out := tp.alloc(1)
	out.Data[0] = float32(redRun(sumLoop, x.Data, nil, 0))
	if tp.needs(x) {
		tp.push(sumBackward, out, x)
	}
	return out
}

func sumBackward(n *node) {
	ewRun(accConstLoop, n.in[0].grad(), nil, nil, n.out.Grad[0], 0)
}

// accConstLoop: dst += s.
func accConstLoop(dst, _, _ []float32, s, _ float32) {
	for i := range dst {
		dst[i] += s
	}
}

// Mean returns the mean of all elements (NaN for an empty tensor, as in PyTorch).
// x: any shape -> (1)
func Mean(tp *Tape, x *Tensor) *Tensor {
	if x.dev != nil {
		return devSum(tp, x.dev, x, 1/float32(x.Numel()))
	}
	out := tp.alloc(1)
	out.Data[0] = float32(redRun(sumLoop, x.Data, nil, 0) / float64(len(x.Data)))
	if tp.needs(x) {
		tp.push(meanBackward, out, x)
	}
	return out
}

func meanBackward(n *node) {
	x := n.in[0]
	ewRun(accConstLoop, x.grad(), nil, nil, n.out.Grad[0]/float32(len(x.Data)), 0)
}
