package ops

import "fmt"

// ResizeBilinear resamples every plane of x to (oh, ow) by bilinear interpolation, as
// torch.nn.functional.interpolate(x, size=(oh, ow), mode='bilinear', align_corners=False)
// without antialiasing, up or down. Output row i reads input row src = (i + 0.5)*H/oh - 0.5,
// clamped at 0: rows floor(src) and the next one (the last row when floor(src) is the last),
// weighted by 1 - frac(src) and frac(src); columns likewise. A side that keeps its size is
// copied. Backward is the adjoint: each output gradient is added to its four inputs with the
// same weights. CPU only.
// x: (N, C, H, W) -> (N, C, oh, ow)
func ResizeBilinear(tp *Tape, x *Tensor, oh, ow int) *Tensor {
	n, c, h, w := x.NCHW()
	mustHost("ResizeBilinear", x)
	if oh < 1 || ow < 1 || h < 1 || w < 1 {
		panic(fmt.Sprintf("ops: ResizeBilinear: input %v to %dx%d (needs non-empty sides)", x.Shape, oh, ow))
	}
	out := tp.alloc(n, c, oh, ow)
	j := resizeJobs.get()
	j.setup(h, w, oh, ow)
	j.x, j.y = x.Data, out.Data
	// Output rows are independent: split over all of them, so a single image's three planes
	// still use every thread.
	ParallelFor(n*c*oh, max(1, parallelGrain/(4*ow)), j)
	j.release()
	if tp.needs(x) {
		tp.push(resizeBilinearBackward, out, x)
	}
	return out
}

func resizeBilinearBackward(nd *node) {
	x := nd.in[0]
	if !x.requiresGrad {
		return
	}
	n, c, h, w := x.NCHW()
	oh, ow := nd.out.Shape[2], nd.out.Shape[3]
	j := resizeJobs.get()
	j.setup(h, w, oh, ow)
	j.y, j.dx = nd.out.Grad, x.grad()
	// Output rows share input rows, so the scatter splits by plane.
	ParallelFor(n*c, max(1, parallelGrain/(4*oh*ow+h*w)), j)
	j.release()
}

// lerpTaps are the two source indices and their weights of every output index along one axis.
type lerpTaps struct {
	i0, i1 []int
	l0, l1 []float32
}

// fill computes the taps from in source positions to out. The ratio in/out is a float32, the
// source position is computed from it in float64 and only the weight is rounded to float32, as
// the PyTorch the tests compare with (Debian's 1.13) does; PyTorch 2 rounds the position to
// float32 too, which moves a weight by up to ~4e-6 at 128 -> 299.
func (t *lerpTaps) fill(in, out int) {
	t.i0, t.i1 = growInts(t.i0, out), growInts(t.i1, out)
	t.l0, t.l1 = growFloats(t.l0, out), growFloats(t.l1, out)
	if in == out {
		for d := range out {
			t.i0[d], t.i1[d], t.l0[d], t.l1[d] = d, d, 1, 0
		}
		return
	}
	scale := float64(float32(in) / float32(out))
	for d := range out {
		src := max(scale*(float64(d)+0.5)-0.5, 0)
		i := min(int(src), in-1) // src >= 0: truncation is floor
		l1 := float32(min(src-float64(i), 1))
		t.i0[d], t.l0[d], t.l1[d] = i, 1-l1, l1
		t.i1[d] = i
		if i < in-1 {
			t.i1[d] = i + 1
		}
	}
}

func growInts(s []int, n int) []int {
	if cap(s) < n {
		return make([]int, n)
	}
	return s[:n]
}

func growFloats(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

// resizeJob is one resize pass: forward over output rows of every plane, backward (dx set)
// over planes. Its tap tables stay with it on the free list, so a warm call allocates nothing.
type resizeJob struct {
	rows, cols   lerpTaps
	h, w, oh, ow int
	x, y         []float32 // x: (N*C, H, W); y: (N*C, OH, OW), the output or its gradient
	dx           []float32 // backward: x's gradient, accumulated
}

var resizeJobs bodyFreeList[resizeJob]

func (j *resizeJob) setup(h, w, oh, ow int) {
	j.h, j.w, j.oh, j.ow = h, w, oh, ow
	j.rows.fill(h, oh)
	j.cols.fill(w, ow)
}

// release drops the tensors (the free list must pin none) and returns j to the free list.
func (j *resizeJob) release() {
	j.x, j.y, j.dx = nil, nil, nil
	resizeJobs.put(j)
}

func (j *resizeJob) Run(lo, hi int) {
	if j.dx != nil {
		for p := lo; p < hi; p++ {
			j.scatterPlane(j.dx[p*j.h*j.w:(p+1)*j.h*j.w], j.y[p*j.oh*j.ow:(p+1)*j.oh*j.ow])
		}
		return
	}
	cols := &j.cols
	for r := lo; r < hi; r++ {
		p, i := r/j.oh, r%j.oh
		plane := j.x[p*j.h*j.w : (p+1)*j.h*j.w]
		a := plane[j.rows.i0[i]*j.w : (j.rows.i0[i]+1)*j.w]
		b := plane[j.rows.i1[i]*j.w : (j.rows.i1[i]+1)*j.w]
		h0, h1 := j.rows.l0[i], j.rows.l1[i]
		y := j.y[r*j.ow : (r+1)*j.ow]
		for c := range y {
			c0, c1, w0, w1 := cols.i0[c], cols.i1[c], cols.l0[c], cols.l1[c]
			y[c] = (a[c0]*w0+a[c1]*w1)*h0 + (b[c0]*w0+b[c1]*w1)*h1
		}
	}
}

// scatterPlane adds every output gradient of one plane to its four source elements.
// dx: (H, W); dy: (OH, OW)
func (j *resizeJob) scatterPlane(dx, dy []float32) {
	cols := &j.cols
	for i := range j.oh {
		a := dx[j.rows.i0[i]*j.w : (j.rows.i0[i]+1)*j.w]
		b := dx[j.rows.i1[i]*j.w : (j.rows.i1[i]+1)*j.w]
		h0, h1 := j.rows.l0[i], j.rows.l1[i]
		for c, d := range dy[i*j.ow : (i+1)*j.ow] {
			c0, c1, w0, w1 := cols.i0[c], cols.i1[c], cols.l0[c], cols.l1[c]
			a[c0] += h0 * w0 * d
			a[c1] += h0 * w1 * d
			b[c0] += h1 * w0 * d
			b[c1] += h1 * w1 * d
		}
	}
}
