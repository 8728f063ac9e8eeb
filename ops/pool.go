package ops

import (
	"fmt"
	"math"
)

// Pooling over square windows, as torch.nn.functional's max_pool2d, avg_pool2d (floor mode,
// dilation 1) and adaptive_avg_pool2d to (1, 1). A window of output (i, j) covers input rows
// [i*stride - pad, i*stride - pad + k) and likewise columns; the part outside the image is
// padding, -inf for max pooling and zeros for average pooling. Each (n, c) plane is pooled on
// its own, so forward and backward run in parallel over planes. CPU only.

// MaxPool2d takes the maximum of each k x k window, as max_pool2d(x, k, stride, pad).
// pad <= k/2, as PyTorch requires, so every window holds at least one input element.
// Backward routes each output's gradient to the first maximum of its window in row-major
// order (PyTorch's CPU kernel breaks ties the same way); a NaN counts as a maximum.
// Backward finds the maxima again from x rather than keeping their indices.
// x: (N, C, H, W) -> (N, C, OH, OW) with OH = (H + 2*pad - k)/stride + 1.
func MaxPool2d(tp *Tape, x *Tensor, k, stride, pad int) *Tensor {
	g := newPoolGeom("MaxPool2d", x, k, stride, pad)
	out := tp.alloc(g.n, g.c, g.oh, g.ow)
	runPool(&poolJob{kind: poolMax, g: g, x: x.Data, y: out.Data})
	if tp.needs(x) {
		nd := tp.push(maxPool2dBackward, out, x)
		nd.ints[0], nd.ints[1], nd.ints[2] = k, stride, pad
	}
	return out
}

func maxPool2dBackward(nd *node) {
	x := nd.in[0]
	if !x.requiresGrad {
		return
	}
	g := newPoolGeom("MaxPool2d", x, nd.ints[0], nd.ints[1], nd.ints[2])
	runPool(&poolJob{kind: poolMaxBackward, g: g, x: x.Data, y: nd.out.Grad, dx: x.grad()})
}

// AvgPool2d averages each k x k window, as avg_pool2d(x, k, stride, pad, count_include_pad=
// countIncludePad): the sum over the window's part inside the image, divided by k*k when
// countIncludePad, else by the number of elements inside the image. pad <= k/2.
// x: (N, C, H, W) -> (N, C, OH, OW) with OH = (H + 2*pad - k)/stride + 1.
func AvgPool2d(tp *Tape, x *Tensor, k, stride, pad int, countIncludePad bool) *Tensor {
	g := newPoolGeom("AvgPool2d", x, k, stride, pad)
	g.includePad = countIncludePad
	out := tp.alloc(g.n, g.c, g.oh, g.ow)
	runPool(&poolJob{kind: poolAvg, g: g, x: x.Data, y: out.Data})
	if tp.needs(x) {
		nd := tp.push(avgPool2dBackward, out, x)
		nd.ints[0], nd.ints[1], nd.ints[2] = k, stride, pad
		if countIncludePad {
			nd.ints[3] = 1
		}
	}
	return out
}

func avgPool2dBackward(nd *node) {
	x := nd.in[0]
	if !x.requiresGrad {
		return
	}
	g := newPoolGeom("AvgPool2d", x, nd.ints[0], nd.ints[1], nd.ints[2])
	g.includePad = nd.ints[3] == 1
	runPool(&poolJob{kind: poolAvgBackward, g: g, x: x.Data, y: nd.out.Grad, dx: x.grad()})
}

// GlobalAvgPool2d averages each plane, as adaptive_avg_pool2d(x, (1, 1)).
// x: (N, C, H, W) with H*W >= 1 -> (N, C, 1, 1)
func GlobalAvgPool2d(tp *Tape, x *Tensor) *Tensor {
	n, c, h, w := x.NCHW()
	mustHost("GlobalAvgPool2d", x)
	if h < 1 || w < 1 {
		panic(fmt.Sprintf("ops: GlobalAvgPool2d: empty planes in input %v", x.Shape))
	}
	g := poolGeom{n: n, c: c, h: h, w: w, oh: 1, ow: 1}
	out := tp.alloc(n, c, 1, 1)
	runPool(&poolJob{kind: poolGlobal, g: g, x: x.Data, y: out.Data})
	if tp.needs(x) {
		tp.push(globalAvgPool2dBackward, out, x)
	}
	return out
}

func globalAvgPool2dBackward(nd *node) {
	x := nd.in[0]
	if !x.requiresGrad {
		return
	}
	n, c, h, w := x.NCHW()
	g := poolGeom{n: n, c: c, h: h, w: w, oh: 1, ow: 1}
	runPool(&poolJob{kind: poolGlobalBackward, g: g, x: x.Data, y: nd.out.Grad, dx: x.grad()})
}

// poolGeom is a pooling from planes (H, W) to (OH, OW).
type poolGeom struct {
	n, c, h, w     int
	oh, ow         int
	k, stride, pad int
	includePad     bool // average pooling divides by k*k, padding included
}

// newPoolGeom checks a pooling's arguments against x, naming op when they do not fit.
func newPoolGeom(op string, x *Tensor, k, stride, pad int) poolGeom {
	n, c, h, w := x.NCHW()
	mustHost(op, x)
	if k < 1 || stride < 1 || pad < 0 || pad > k/2 || h+2*pad < k || w+2*pad < k {
		panic(fmt.Sprintf("ops: %s: input %v, kernel %d, stride %d, pad %d do not fit (needs k, stride >= 1, 0 <= pad <= k/2, H+2*pad and W+2*pad >= k)",
			op, x.Shape, k, stride, pad))
	}
	return poolGeom{n: n, c: c, h: h, w: w, k: k, stride: stride, pad: pad,
		oh: (h+2*pad-k)/stride + 1, ow: (w+2*pad-k)/stride + 1}
}

// mustHost panics when x lives on a device: op has only a CPU kernel.
func mustHost(op string, x *Tensor) {
	if x.dev != nil {
		panic(fmt.Sprintf("ops: %s: input %v is on %s, but %s runs on the host only; move it with MoveTo(nil)",
			op, x.Shape, x.dev.Name(), op))
	}
}

// window returns the rows (or columns) [lo, hi) of the image under output index i, and the
// window's extent clipped to the padded image, which is avg_pool2d's divisor with padding
// counted.
func (g *poolGeom) window(i, size int) (lo, hi, padded int) {
	lo = i*g.stride - g.pad
	hi = min(lo+g.k, size+g.pad)
	padded = hi - lo
	return max(lo, 0), min(hi, size), padded
}

const (
	poolMax = iota
	poolMaxBackward
	poolAvg
	poolAvgBackward
	poolGlobal
	poolGlobalBackward
)

// poolJob is one pass over N*C planes, forward or backward.
type poolJob struct {
	kind int
	g    poolGeom
	x    []float32 // (N*C, H, W)
	y    []float32 // (N*C, OH, OW): the output, or its gradient in a backward
	dx   []float32 // backward: x's gradient, accumulated
}

var poolJobs bodyFreeList[poolJob]

// runPool runs j over every plane on a job from the free list (a Body handed to the worker
// pool escapes, so j itself would cost an allocation per call).
func runPool(j *poolJob) {
	b := poolJobs.get()
	*b = *j
	g := &b.g
	work := g.h*g.w + g.oh*g.ow*max(1, g.k*g.k)
	ParallelFor(g.n*g.c, max(1, parallelGrain/work), b)
	*b = poolJob{}
	poolJobs.put(b)
}

func (j *poolJob) Run(lo, hi int) {
	g := &j.g
	hw, ohw := g.h*g.w, g.oh*g.ow
	for p := lo; p < hi; p++ {
		x, y := j.x[p*hw:(p+1)*hw], j.y[p*ohw:(p+1)*ohw]
		var dx []float32
		if j.dx != nil {
			dx = j.dx[p*hw : (p+1)*hw]
		}
		switch j.kind {
		case poolMax:
			maxPoolPlane(y, nil, x, g)
		case poolMaxBackward:
			maxPoolPlane(y, dx, x, g)
		case poolAvg:
			avgPoolPlane(y, x, g)
		case poolAvgBackward:
			avgPoolPlaneBackward(dx, y, g)
		case poolGlobal:
			y[0] = float32(sumFloat32(x) / float64(hw))
		case poolGlobalBackward:
			d := y[0] / float32(hw)
			for i := range dx {
				dx[i] += d
			}
		}
	}
}

// maxPoolPlane finds the maximum of every window of one plane. Without dx it writes the
// maxima to y; with dx, y is the output gradient and each is added at its window's maximum.
// x, dx: (H, W); y: (OH, OW)
func maxPoolPlane(y, dx, x []float32, g *poolGeom) {
	for i := range g.oh {
		r0, r1, _ := g.window(i, g.h)
		for j := range g.ow {
			c0, c1, _ := g.window(j, g.w)
			m, at := float32(math.Inf(-1)), r0*g.w+c0
			for r := r0; r < r1; r++ {
				for c, v := range x[r*g.w+c0 : r*g.w+c1] {
					if v > m || v != v {
						m, at = v, r*g.w+c0+c
					}
				}
			}
			if dx == nil {
				y[i*g.ow+j] = m
			} else {
				dx[at] += y[i*g.ow+j]
			}
		}
	}
}

// avgPoolPlane writes the mean of every window of one plane, summed in row-major order.
// x: (H, W); y: (OH, OW)
func avgPoolPlane(y, x []float32, g *poolGeom) {
	for i := range g.oh {
		r0, r1, ph := g.window(i, g.h)
		for j := range g.ow {
			c0, c1, pw := g.window(j, g.w)
			var s float32
			for r := r0; r < r1; r++ {
				for _, v := range x[r*g.w+c0 : r*g.w+c1] {
					s += v
				}
			}
			y[i*g.ow+j] = s / float32(g.divisor(r1-r0, c1-c0, ph, pw))
		}
	}
}

// avgPoolPlaneBackward spreads each output gradient evenly over its window: the share of
// every element is dy / divisor, as in the forward.
// dx: (H, W); dy: (OH, OW)
func avgPoolPlaneBackward(dx, dy []float32, g *poolGeom) {
	for i := range g.oh {
		r0, r1, ph := g.window(i, g.h)
		for j := range g.ow {
			c0, c1, pw := g.window(j, g.w)
			d := dy[i*g.ow+j] / float32(g.divisor(r1-r0, c1-c0, ph, pw))
			for r := r0; r < r1; r++ {
				row := dx[r*g.w+c0 : r*g.w+c1]
				for c := range row {
					row[c] += d
				}
			}
		}
	}
}

// divisor is avg_pool2d's count for a window of rows x cols inside the image and
// paddedRows x paddedCols within the padded image.
func (g *poolGeom) divisor(rows, cols, paddedRows, paddedCols int) int {
	if g.includePad {
		return paddedRows * paddedCols
	}
	return rows * cols
}
