package ops

import (
	"fmt"
	"math"
)

// Normalizations. Both normalize groups of elements by their mean and biased variance:
// instance norm one (n, c) plane at a time, batch norm one channel across the batch. Forward
// saves the mean and 1/sqrt(var+eps) of each group (not the normalized tensor: backward
// recomputes it from x, which costs less than the memory traffic of keeping it). Statistics
// are accumulated in float64 around a shift, so a large mean does not cancel the variance.

// InstanceNorm2d normalizes each (n, c) plane of x to zero mean and unit variance, then, when
// gamma and beta are given (affine=True), scales by gamma[c] and shifts by beta[c]. Pass nil
// for both for affine=False, the reference CycleGAN's setting. eps is PyTorch's 1e-5.
// x: (N, C, H, W); gamma, beta: (C) or nil -> (N, C, H, W)
func InstanceNorm2d(tp *Tape, x, gamma, beta *Tensor, eps float32) *Tensor {
	n, c, _, _ := x.NCHW()
	mustAffine("InstanceNorm2d", x, gamma, beta)
	if d := deviceOf("InstanceNorm2d", x, gamma, beta); d != nil {
		return devInstanceNorm2d(tp, d, x, gamma, beta, eps)
	}
	out, stats := instanceNormHost(tp, x, gamma, beta, eps, false)
	if stats != nil && tp.needs(x, gamma, beta) {
		nd := tp.push(instanceNormBackward, out, x, gamma, beta)
		nd.saved[0] = stats
		nd.saved[1] = tp.alloc(2 * n * c) // backward's per-plane sums
	}
	return out
}

// instanceNormHost is the host forward of InstanceNorm2d, rectified with relu, and the
// per-plane statistics it saves (nil for an empty x).
func instanceNormHost(tp *Tape, x, gamma, beta *Tensor, eps float32, relu bool) (out, stats *Tensor) {
	n, c, h, w := x.NCHW()
	planes, hw := n*c, h*w
	out = tp.alloc(x.Shape...)
	if len(out.Data) == 0 {
		return out, nil
	}
	stats = tp.alloc(2 * planes)
	k := normBodies.get()
	*k = normKernel{run: instanceNormForward, x: x.Data, y: out.Data, stats: stats.Data,
		c: c, hw: hw, eps: eps, relu: relu}
	k.setAffine(gamma, beta)
	ParallelFor(planes, normGrain(hw), k)
	normRelease(k)
	return out, stats
}

// InstanceNormReLU is ReLU(InstanceNorm2d(x, nil, nil, eps)), the norm and activation that
// follow most convolutions of a generator. When the tape records (or x is on a device) it is
// the two ops; otherwise one pass reads each plane for its statistics and one writes the
// normalized, rectified plane, instead of the two ops' three passes and two outputs.
// x: (N, C, H, W) -> (N, C, H, W)
func InstanceNormReLU(tp *Tape, x *Tensor, eps float32) *Tensor {
	if tp.Recording() || x.dev != nil {
		return ReLU(tp, InstanceNorm2d(tp, x, nil, nil, eps))
	}
	out, _ := instanceNormHost(tp, x, nil, nil, eps, true)
	return out
}

// instanceNormForward normalizes planes [lo, hi).
func instanceNormForward(k *normKernel, lo, hi int) {
	planes := len(k.x) / k.hw
	for p := lo; p < hi; p++ {
		xs := k.x[p*k.hw : (p+1)*k.hw]
		var m moments
		m.add(xs)
		mean, v := m.meanVar()
		rstd := 1 / math.Sqrt(v+float64(k.eps))
		k.stats[p], k.stats[planes+p] = float32(mean), float32(rstd)
		k.normalize(k.y[p*k.hw:(p+1)*k.hw], xs, p%k.c, mean, rstd)
	}
}

func instanceNormBackward(nd *node) {
	x, gamma, beta := nd.in[0], nd.in[1], nd.in[2]
	_, c, h, w := x.NCHW()
	stats, sums := nd.saved[0].Data, nd.saved[1].Data
	k := normBodies.get()
	*k = normKernel{run: instanceNormBackwardPlanes, x: x.Data, g: nd.out.Grad, stats: stats,
		sums: sums, c: c, hw: h * w}
	k.setAffine(gamma, beta)
	if x.requiresGrad {
		k.dx = x.grad()
	}
	ParallelFor(len(stats)/2, normGrain(h*w), k)
	normRelease(k)
	// Planes of one channel share gamma and beta: add their sums here, after the parallel part.
	planes := len(stats) / 2
	if gamma != nil && gamma.requiresGrad {
		dg := gamma.grad()
		for p := range planes {
			dg[p%c] += sums[planes+p]
		}
	}
	if beta != nil && beta.requiresGrad {
		db := beta.grad()
		for p := range planes {
			db[p%c] += sums[p]
		}
	}
}

// instanceNormBackwardPlanes: per plane, sum(g) and sum(g*xhat) into sums, and dx.
func instanceNormBackwardPlanes(k *normKernel, lo, hi int) {
	planes := len(k.x) / k.hw
	for p := lo; p < hi; p++ {
		sl := k.x[p*k.hw : (p+1)*k.hw]
		gs := k.g[p*k.hw : (p+1)*k.hw]
		mean, rstd := k.stats[p], k.stats[planes+p]
		sg, sgx := gradSums(gs, sl, mean)
		sgxhat := sgx * float64(rstd)
		k.sums[p], k.sums[planes+p] = float32(sg), float32(sgxhat)
		if k.dx != nil {
			k.inputGrad(k.dx[p*k.hw:(p+1)*k.hw], gs, sl, p%k.c, mean, rstd, sg, sgxhat, float64(k.hw))
		}
	}
}

// BatchNorm2d normalizes each channel of x over the batch and the image, like
// torch.nn.BatchNorm2d. In training it uses the batch's mean and biased variance and, when
// runMean and runVar are given, updates them in place as PyTorch does:
// run = (1-momentum)*run + momentum*stat, with the UNBIASED variance (factor M/(M-1),
// M = N*H*W); gradients flow through the batch statistics. Outside training it normalizes
// with runMean and runVar (batch statistics if they are nil, like track_running_stats=False).
// gamma and beta nil is affine=False. PyTorch's defaults: momentum 0.1, eps 1e-5.
// x: (N, C, H, W); gamma, beta, runMean, runVar: (C) or nil -> (N, C, H, W)
func BatchNorm2d(tp *Tape, x, gamma, beta, runMean, runVar *Tensor, training bool, momentum, eps float32) *Tensor {
	n, c, h, w := x.NCHW()
	mustAffine("BatchNorm2d", x, gamma, beta)
	if (runMean == nil) != (runVar == nil) {
		panic("ops: BatchNorm2d: give both runMean and runVar, or neither")
	}
	useBatch := training || runMean == nil
	if runMean != nil {
		if runMean.Numel() != c || runVar.Numel() != c {
			panic(fmt.Sprintf("ops: BatchNorm2d: running stats %v and %v for input %v", runMean.Shape, runVar.Shape, x.Shape))
		}
	}
	m := n * h * w
	if useBatch && m < 2 {
		panic(fmt.Sprintf("ops: BatchNorm2d: batch statistics need more than one value per channel, got input %v", x.Shape))
	}
	if d := deviceOf("BatchNorm2d", x, gamma, beta); d != nil {
		return devBatchNorm2d(tp, d, x, gamma, beta, runMean, runVar, training, momentum, eps)
	}
	out := tp.alloc(x.Shape...)
	stats := tp.alloc(3 * c) // mean, rstd, biased variance
	k := normBodies.get()
	*k = normKernel{run: batchNormForward, x: x.Data, y: out.Data, stats: stats.Data,
		c: c, hw: h * w, eps: eps, batch: useBatch}
	k.setAffine(gamma, beta)
	if !useBatch {
		k.runMean, k.runVar = runMean.Data, runVar.Data
	}
	ParallelFor(c, normGrain(n*h*w), k)
	normRelease(k)
	if training && runMean != nil {
		mom, unbias := float64(momentum), float64(m)/float64(m-1)
		rm, rv := runMean.Data, runVar.Data
		for ch := range c {
			rm[ch] = float32((1-mom)*float64(rm[ch]) + mom*float64(stats.Data[ch]))
			rv[ch] = float32((1-mom)*float64(rv[ch]) + mom*float64(stats.Data[2*c+ch])*unbias)
		}
	}
	if tp.needs(x, gamma, beta) {
		nd := tp.push(batchNormBackward, out, x, gamma, beta)
		nd.saved[0] = stats
		nd.saved[1] = tp.alloc(2 * c)
		if useBatch {
			nd.ints[0] = 1
		}
	}
	return out
}

// batchNormForward normalizes channels [lo, hi) across the batch.
func batchNormForward(k *normKernel, lo, hi int) {
	nb := len(k.x) / (k.c * k.hw)
	for ch := lo; ch < hi; ch++ {
		var mean, v float64
		if k.batch {
			var m moments
			for i := range nb {
				m.add(k.plane(k.x, i, ch))
			}
			mean, v = m.meanVar()
		} else {
			mean, v = float64(k.runMean[ch]), float64(k.runVar[ch])
		}
		rstd := 1 / math.Sqrt(v+float64(k.eps))
		k.stats[ch], k.stats[k.c+ch], k.stats[2*k.c+ch] = float32(mean), float32(rstd), float32(v)
		for i := range nb {
			k.normalize(k.plane(k.y, i, ch), k.plane(k.x, i, ch), ch, mean, rstd)
		}
	}
}

func batchNormBackward(nd *node) {
	x, gamma, beta := nd.in[0], nd.in[1], nd.in[2]
	_, c, h, w := x.NCHW()
	stats, sums := nd.saved[0].Data, nd.saved[1].Data
	k := normBodies.get()
	*k = normKernel{run: batchNormBackwardChannels, x: x.Data, g: nd.out.Grad, stats: stats,
		sums: sums, c: c, hw: h * w, batch: nd.ints[0] == 1}
	k.setAffine(gamma, beta)
	if x.requiresGrad {
		k.dx = x.grad()
	}
	ParallelFor(c, normGrain(len(x.Data)/c), k)
	normRelease(k)
	if gamma != nil && gamma.requiresGrad {
		accLoop(gamma.grad(), sums[c:2*c], nil, 0, 0)
	}
	if beta != nil && beta.requiresGrad {
		accLoop(beta.grad(), sums[:c], nil, 0, 0)
	}
}

// batchNormBackwardChannels: per channel, sum(g) and sum(g*xhat) into sums, and dx; with
// running statistics (not batch) the statistics are constants and dx is only g*gamma*rstd.
func batchNormBackwardChannels(k *normKernel, lo, hi int) {
	nb := len(k.x) / (k.c * k.hw)
	for ch := lo; ch < hi; ch++ {
		mean, rstd := k.stats[ch], k.stats[k.c+ch]
		var sg, sgx float64
		for i := range nb {
			a, b := gradSums(k.plane(k.g, i, ch), k.plane(k.x, i, ch), mean)
			sg += a
			sgx += b
		}
		sgxhat := sgx * float64(rstd)
		k.sums[ch], k.sums[k.c+ch] = float32(sg), float32(sgxhat)
		if k.dx == nil {
			continue
		}
		for i := range nb {
			dx, g, x := k.plane(k.dx, i, ch), k.plane(k.g, i, ch), k.plane(k.x, i, ch)
			if k.batch {
				k.inputGrad(dx, g, x, ch, mean, rstd, sg, sgxhat, float64(nb*k.hw))
			} else {
				accScaledLoop(dx, g, nil, rstd*k.gammaAt(ch), 0)
			}
		}
	}
}

// normKernel is the ParallelFor body of both norms, forward and backward; run is the loop
// over a range of groups (planes for instance norm, channels for batch norm).
type normKernel struct {
	run         func(k *normKernel, lo, hi int)
	x, y        []float32 // x: (N, C, H, W); y: the forward's output, like x
	g, dx       []float32 // backward: output gradient; input gradient or nil; like x
	gamma, beta []float32 // (C) or nil
	stats       []float32 // per group: means, then 1/sqrt(var+eps)s (then BN's biased variances)
	sums        []float32 // backward, per group: sum(g), then sum(g*xhat)
	runMean     []float32 // (C): BN outside training
	runVar      []float32
	c, hw       int
	eps         float32
	batch       bool // BN: statistics of this batch (gradient flows through them)
	relu        bool // forward: rectify the normalized output (InstanceNormReLU)
}

func (k *normKernel) Run(lo, hi int) { k.run(k, lo, hi) }

var normBodies bodyFreeList[normKernel]

func normRelease(k *normKernel) {
	*k = normKernel{}
	normBodies.put(k)
}

// normGrain is the number of groups of size elements worth a task of its own.
func normGrain(size int) int { return max(1, ewGrain/max(size, 1)) }

func (k *normKernel) setAffine(gamma, beta *Tensor) {
	if gamma != nil {
		k.gamma, k.beta = gamma.Data, beta.Data
	}
}

func (k *normKernel) gammaAt(ch int) float32 {
	if k.gamma == nil {
		return 1
	}
	return k.gamma[ch]
}

// plane is the (i, ch) plane of an (N, C, H, W) buffer.
func (k *normKernel) plane(t []float32, i, ch int) []float32 {
	o := (i*k.c + ch) * k.hw
	return t[o : o+k.hw]
}

// normalize writes y = (x - mean)*rstd*gamma + beta as one multiply-add per element.
func (k *normKernel) normalize(y, x []float32, ch int, mean, rstd float64) {
	sc, sh := rstd, -mean*rstd
	if k.gamma != nil {
		sc = rstd * float64(k.gamma[ch])
		sh = float64(k.beta[ch]) - mean*sc
	}
	s, t := float32(sc), float32(sh)
	y = y[:len(x)]
	if n := len(x) &^ 15; n > 0 && hasNormVec {
		relu := 0
		if k.relu {
			relu = 1
		}
		affineVec(&y[0], &x[0], n, s, t, relu)
		x, y = x[n:], y[n:]
	}
	if k.relu {
		for i, v := range x {
			y[i] = max(v*s+t, 0)
		}
		return
	}
	for i, v := range x {
		y[i] = v*s + t
	}
}

// inputGrad adds the gradient through normalization by the group's own statistics, over
// m elements in all:
//
//	dx = gamma*rstd * (g - sum(g)/m - xhat*sum(g*xhat)/m),  xhat = (x - mean)*rstd
func (k *normKernel) inputGrad(dx, g, x []float32, ch int, mean, rstd float32, sg, sgxhat, m float64) {
	a := float64(rstd) * float64(k.gammaAt(ch))
	bx := float32(-a * float64(rstd) * sgxhat / m) // coefficient of x - mean
	c0 := float32(-a * sg / m)
	a32 := float32(a)
	g = g[:len(x)]
	dx = dx[:len(x)]
	for i, v := range x {
		dx[i] += a32*g[i] + bx*(v-mean) + c0
	}
}

// gradSums returns sum(g) and sum(g*(x - mean)).
func gradSums(g, x []float32, mean float32) (sg, sgx float64) {
	g = g[:len(x)]
	var s0, s1, q0, q1 float64
	i := 0
	for ; i+2 <= len(x); i += 2 {
		s0 += float64(g[i])
		s1 += float64(g[i+1])
		q0 += float64(g[i] * (x[i] - mean))
		q1 += float64(g[i+1] * (x[i+1] - mean))
	}
	if i < len(x) {
		s0 += float64(g[i])
		q0 += float64(g[i] * (x[i] - mean))
	}
	return s0 + s1, q0 + q1
}

// moments accumulates the count, sum and sum of squares of x - shift, the shift being the
// first value seen: close enough to the mean that the variance does not cancel.
type moments struct {
	shift   float64
	s, q    float64
	n       int
	started bool
}

func (m *moments) add(xs []float32) {
	if len(xs) == 0 {
		return
	}
	if !m.started {
		m.shift, m.started = float64(xs[0]), true
	}
	k := m.shift
	var s0, s1, s2, s3, q0, q1, q2, q3 float64
	i := 0
	if n := len(xs) &^ 15; n > 0 && hasNormVec {
		var acc [32]float64
		momentsVec(&xs[0], n, k, &acc)
		for l := 0; l < 16; l += 4 {
			s0, s1, s2, s3 = s0+acc[l], s1+acc[l+1], s2+acc[l+2], s3+acc[l+3]
			q0, q1, q2, q3 = q0+acc[16+l], q1+acc[17+l], q2+acc[18+l], q3+acc[19+l]
		}
		i = n
	}
	for ; i+4 <= len(xs); i += 4 {
		v := xs[i : i+4 : i+4]
		d0, d1, d2, d3 := float64(v[0])-k, float64(v[1])-k, float64(v[2])-k, float64(v[3])-k
		s0, s1, s2, s3 = s0+d0, s1+d1, s2+d2, s3+d3
		q0, q1, q2, q3 = q0+d0*d0, q1+d1*d1, q2+d2*d2, q3+d3*d3
	}
	for ; i < len(xs); i++ {
		d := float64(xs[i]) - k
		s0 += d
		q0 += d * d
	}
	m.s += (s0 + s1) + (s2 + s3)
	m.q += (q0 + q1) + (q2 + q3)
	m.n += len(xs)
}

// meanVar returns the mean and the biased variance.
func (m *moments) meanVar() (mean, variance float64) {
	n := float64(m.n)
	d := m.s / n
	return m.shift + d, max(m.q/n-d*d, 0)
}

// mustAffine checks gamma and beta: both nil, or both of shape (C) for x's C.
func mustAffine(op string, x, gamma, beta *Tensor) {
	if gamma == nil && beta == nil {
		return
	}
	c := x.Shape[1]
	if gamma == nil || beta == nil || gamma.Numel() != c || beta.Numel() != c {
		var gs, bs []int
		if gamma != nil {
			gs = gamma.Shape
		}
		if beta != nil {
			bs = beta.Shape
		}
		panic(fmt.Sprintf("ops: %s: gamma %v and beta %v must both be (C) = (%d) for input %v, or both nil", op, gs, bs, c, x.Shape))
	}
}
