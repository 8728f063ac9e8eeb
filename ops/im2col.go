package ops

import "sync"

// im2col and col2im: the data movement that turns a convolution into a GEMM, shared by Conv2d
// (forward: im2col; data backward: col2im) and ConvTranspose2d (forward: col2im; backward: im2col).
//
// A column matrix has one row per (c, i, j) of the kernel window, r = (c*KH + i)*KW + j, and one
// column per output position (oh, ow). Both directions work on a band of output rows
// [oh0, oh1), so a conv can stream its columns through a bounded scratch buffer instead of
// materialising (C*KH*KW, OH*OW) at once (the 7x7 convs of a 256x256 generator would need
// hundreds of MB).

// convGeom describes a convolution with zero padding from an image (C, H, W) to (OH, OW).
type convGeom struct {
	c, h, w    int // image the window slides over
	kh, kw     int // kernel
	stride     int
	padH, padW int // zeros added above and below, left and right
	oh, ow     int // output positions
}

// newConvGeom is the geometry of a convolution padded by pad on all four sides.
func newConvGeom(c, h, w, kh, kw, stride, pad int) convGeom {
	return newConvGeomPad(c, h, w, kh, kw, stride, pad, pad)
}

// newConvGeomPad is the geometry of a convolution padded by padH rows and padW columns.
func newConvGeomPad(c, h, w, kh, kw, stride, padH, padW int) convGeom {
	return convGeom{c: c, h: h, w: w, kh: kh, kw: kw, stride: stride, padH: padH, padW: padW,
		oh: (h+2*padH-kh)/stride + 1, ow: (w+2*padW-kw)/stride + 1}
}

// rows is the number of rows of the column matrix, C*KH*KW.
func (g *convGeom) rows() int { return g.c * g.kh * g.kw }

// pointwise reports whether the column matrix is the image itself (1x1, stride 1, no padding).
func (g *convGeom) pointwise() bool {
	return g.kh == 1 && g.kw == 1 && g.stride == 1 && g.padH == 0 && g.padW == 0
}

// owRange is the range of output columns whose input column ow*stride - padW + j lies inside
// the image, for kernel column j.
func (g *convGeom) owRange(j int) (lo, hi int) {
	s, p := g.stride, g.padW
	// lo = ceil((p-j)/s) clamped at 0; hi = floor((W-1+p-j)/s)+1 clamped at OW.
	if d := p - j; d > 0 {
		lo = (d + s - 1) / s
	}
	if d := g.w - 1 + p - j; d >= 0 {
		hi = d/s + 1
	}
	lo = min(lo, g.ow)
	hi = max(min(hi, g.ow), lo)
	return lo, hi
}

// im2colRows fills rows [r0, r1) of the column matrix of output rows [oh0, oh1).
// src: (C, H, W); dst: (C*KH*KW, (oh1-oh0)*OW), row-major.
func im2colRows(g *convGeom, src []float32, oh0, oh1 int, dst []float32, r0, r1 int) {
	cw := (oh1 - oh0) * g.ow
	s, ph, pw := g.stride, g.padH, g.padW
	for r := r0; r < r1; r++ {
		j := r % g.kw
		i := (r / g.kw) % g.kh
		c := r / (g.kw * g.kh)
		plane := src[c*g.h*g.w : (c+1)*g.h*g.w]
		row := dst[r*cw : (r+1)*cw]
		lo, hi := g.owRange(j)
		for oh := oh0; oh < oh1; oh++ {
			seg := row[(oh-oh0)*g.ow : (oh-oh0+1)*g.ow]
			ih := oh*s - ph + i
			if ih < 0 || ih >= g.h {
				clear(seg)
				continue
			}
			clear(seg[:lo])
			clear(seg[hi:])
			in := plane[ih*g.w : (ih+1)*g.w]
			if s == 1 {
				copy(seg[lo:hi], in[lo-pw+j:])
				continue
			}
			gatherStrided(seg[lo:hi], in[lo*s-pw+j:], s)
		}
	}
}

// gatherStrided sets dst[t] = src[t*s].
func gatherStrided(dst, src []float32, s int) {
	if len(dst) == 0 {
		return
	}
	if s == 2 {
		// Four at a time with the lengths checked once: the common downsampling stride.
		for len(dst) >= 4 && len(src) >= 8 {
			dst[0], dst[1], dst[2], dst[3] = src[0], src[2], src[4], src[6]
			dst, src = dst[4:], src[8:]
		}
	}
	for t := range dst {
		dst[t] = src[t*s]
	}
}

// col2imChannels adds the column matrix of output rows [oh0, oh1) back into channels [c0, c1)
// of the image: the adjoint of im2colRows. Channels own disjoint rows, so they run in parallel.
// src: (C*KH*KW, (oh1-oh0)*OW); dst: (C, H, W), accumulated.
func col2imChannels(g *convGeom, src []float32, oh0, oh1 int, dst []float32, c0, c1 int) {
	cw := (oh1 - oh0) * g.ow
	s, ph, pw := g.stride, g.padH, g.padW
	for c := c0; c < c1; c++ {
		plane := dst[c*g.h*g.w : (c+1)*g.h*g.w]
		for i := 0; i < g.kh; i++ {
			for j := 0; j < g.kw; j++ {
				r := (c*g.kh+i)*g.kw + j
				row := src[r*cw : (r+1)*cw]
				lo, hi := g.owRange(j)
				if lo >= hi {
					continue
				}
				for oh := oh0; oh < oh1; oh++ {
					ih := oh*s - ph + i
					if ih < 0 || ih >= g.h {
						continue
					}
					seg := row[(oh-oh0)*g.ow : (oh-oh0+1)*g.ow]
					out := plane[ih*g.w : (ih+1)*g.w]
					if s == 1 {
						addTo(out[lo-pw+j:], seg[lo:hi])
						continue
					}
					scatterAddStrided(out[lo*s-pw+j:], seg[lo:hi], s)
				}
			}
		}
	}
}

// addTo does dst[i] += src[i], eight at a time with the lengths checked once.
func addTo(dst, src []float32) {
	dst = dst[:len(src)]
	for len(src) >= 8 && len(dst) >= 8 {
		dst[0] += src[0]
		dst[1] += src[1]
		dst[2] += src[2]
		dst[3] += src[3]
		dst[4] += src[4]
		dst[5] += src[5]
		dst[6] += src[6]
		dst[7] += src[7]
		dst, src = dst[8:], src[8:]
	}
	for i, v := range src {
		dst[i] += v
	}
}

// scatterAddStrided does dst[t*s] += src[t].
func scatterAddStrided(dst, src []float32, s int) {
	if s == 2 {
		for len(src) >= 4 && len(dst) >= 8 {
			dst[0] += src[0]
			dst[2] += src[1]
			dst[4] += src[2]
			dst[6] += src[3]
			dst, src = dst[8:], src[4:]
		}
	}
	for t, v := range src {
		dst[t*s] += v
	}
}

// convScratch is a reusable work area for one conv call: the column buffer of a band and the
// parallel job descriptors (kept here so handing them to ParallelFor allocates nothing).
// Scratches live on a free list, never shrink, and are shared by every tape: a step needs one
// per concurrently running conv, not one per layer.
type convScratch struct {
	cols   []float32
	wts    []float32 // a rearranged kernel and its gradient
	im     im2colJob
	ci     col2imJob
	bias   biasJob
	bands  convBandJob
	direct directConvJob
	offs   []int       // the direct convolution's offset table
	edge   *directEdge // the direct convolution's edge tiles
	inter  interleaveJob
	split  splitJob
	packed []float32 // the direct kernel's packed weights
	phase  []float32 // a transposed convolution's phase output
	pack   packJob
	srcs   []int // where packDirect finds each step's weights
}

var scratch struct {
	sync.Mutex
	free []*convScratch
}

func getScratch() *convScratch {
	scratch.Lock()
	defer scratch.Unlock()
	if n := len(scratch.free); n > 0 {
		s := scratch.free[n-1]
		scratch.free = scratch.free[:n-1]
		return s
	}
	return &convScratch{}
}

func putScratch(s *convScratch) {
	s.im = im2colJob{}
	s.ci = col2imJob{}
	s.bias = biasJob{}
	s.bands = convBandJob{}
	s.direct = directConvJob{}
	s.inter = interleaveJob{}
	s.split = splitJob{}
	scratch.Lock()
	scratch.free = append(scratch.free, s)
	scratch.Unlock()
}

// colBuf returns the column buffer with at least n elements (uncleared).
func (s *convScratch) colBuf(n int) []float32 {
	if cap(s.cols) < n {
		s.cols = make([]float32, n)
	}
	return s.cols[:n]
}

// packBuf returns the direct kernel's weight buffer with at least n elements (uncleared); it
// is apart from weightBuf, which may hold the flipped kernel the direct route reads.
func (s *convScratch) packBuf(n int) []float32 {
	if cap(s.packed) < n {
		s.packed = make([]float32, n)
	}
	return s.packed[:n]
}

// phaseBuf returns the phase buffer with at least n elements (uncleared).
func (s *convScratch) phaseBuf(n int) []float32 {
	if cap(s.phase) < n {
		s.phase = make([]float32, n)
	}
	return s.phase[:n]
}

// weightBuf returns the kernel buffer with at least n elements (uncleared).
func (s *convScratch) weightBuf(n int) []float32 {
	if cap(s.wts) < n {
		s.wts = make([]float32, n)
	}
	return s.wts[:n]
}

// colsBudget bounds a band's column buffer, in floats: large enough that GEMM sees wide
// matrices, small enough to stay near the last-level cache.
var colsBudget = 1 << 20

// bandRows is how many output rows one band of the column matrix holds.
func (g *convGeom) bandRows() int {
	return max(1, min(g.oh, colsBudget/max(1, g.rows()*g.ow)))
}

// localColsBudget bounds the column buffer of one worker's band, in floats: about half of a
// core's L2 cache, where the GEMM that follows reads it.
var localColsBudget = 1 << 17

// localBandRows is how many output rows one worker's band holds.
func (g *convGeom) localBandRows() int {
	return max(1, min(g.oh, localColsBudget/max(1, g.rows()*g.ow)))
}

// parallelGrain is the rough number of floats moved per task below which splitting work across
// goroutines costs more than it saves.
const parallelGrain = 1 << 14

type im2colJob struct {
	g        convGeom // a copy: a pointer would move the caller's geometry to the heap
	src, dst []float32
	oh0, oh1 int
}

func (j *im2colJob) Run(lo, hi int) { im2colRows(&j.g, j.src, j.oh0, j.oh1, j.dst, lo, hi) }

// im2col fills dst (C*KH*KW, (oh1-oh0)*OW) from src (C, H, W) for output rows [oh0, oh1).
func (s *convScratch) im2col(g *convGeom, src []float32, oh0, oh1 int, dst []float32) {
	s.im = im2colJob{g: *g, src: src, dst: dst, oh0: oh0, oh1: oh1}
	ParallelFor(g.rows(), max(1, parallelGrain/((oh1-oh0)*g.ow)), &s.im)
}

type col2imJob struct {
	g        convGeom
	src, dst []float32
	oh0, oh1 int
}

func (j *col2imJob) Run(lo, hi int) { col2imChannels(&j.g, j.src, j.oh0, j.oh1, j.dst, lo, hi) }

// col2im adds src (C*KH*KW, (oh1-oh0)*OW) into dst (C, H, W) for output rows [oh0, oh1).
func (s *convScratch) col2im(g *convGeom, src []float32, oh0, oh1 int, dst []float32) {
	s.ci = col2imJob{g: *g, src: src, dst: dst, oh0: oh0, oh1: oh1}
	ParallelFor(g.c, max(1, parallelGrain/(g.kh*g.kw*(oh1-oh0)*g.ow)), &s.ci)
}

// biasJob adds a bias per channel (forward) or sums a gradient per channel (backward).
type biasJob struct {
	data     []float32 // (N, K, P)
	b        []float32 // (K)
	n, k, hw int
	backward bool
}

func (j *biasJob) Run(lo, hi int) {
	for k := lo; k < hi; k++ {
		if j.backward {
			var s float64
			for n := 0; n < j.n; n++ {
				s += sumFloat32(j.data[(n*j.k+k)*j.hw : (n*j.k+k+1)*j.hw])
			}
			j.b[k] += float32(s)
			continue
		}
		bk := j.b[k]
		for n := 0; n < j.n; n++ {
			row := j.data[(n*j.k+k)*j.hw : (n*j.k+k+1)*j.hw]
			for i := range row {
				row[i] += bk
			}
		}
	}
}

// sumFloat32 sums v with eight independent float32 accumulators (one dependent chain would be
// bound by add latency), folded into float64 every 512 terms: a channel of a 256x256 batch
// has ~1e5 of them.
func sumFloat32(v []float32) float64 {
	var total float64
	for len(v) > 0 {
		blk := v[:min(len(v), 512)]
		v = v[len(blk):]
		var a0, a1, a2, a3, a4, a5, a6, a7 float32
		for len(blk) >= 8 {
			a0 += blk[0]
			a1 += blk[1]
			a2 += blk[2]
			a3 += blk[3]
			a4 += blk[4]
			a5 += blk[5]
			a6 += blk[6]
			a7 += blk[7]
			blk = blk[8:]
		}
		for _, x := range blk {
			a0 += x
		}
		total += float64((a0 + a1) + (a2 + a3) + (a4 + a5) + (a6 + a7))
	}
	return total
}

// addBias adds b[k] to every element of channel k of y.
// y: (N, K, P); b: (K)
func (s *convScratch) addBias(y, b []float32, n, k, hw int) {
	s.bias = biasJob{data: y, b: b, n: n, k: k, hw: hw}
	ParallelFor(k, max(1, parallelGrain/(n*hw)), &s.bias)
}

// sumBias accumulates the sum of each channel of dy into db.
// dy: (N, K, P); db: (K)
func (s *convScratch) sumBias(db, dy []float32, n, k, hw int) {
	s.bias = biasJob{data: dy, b: db, n: n, k: k, hw: hw, backward: true}
	ParallelFor(k, max(1, parallelGrain/(n*hw)), &s.bias)
}
