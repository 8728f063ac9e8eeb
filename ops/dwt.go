package ops

import "fmt"

// The J-level 2-D Haar DWT, exactly as pytorch_wavelets' DWTForward(J, wave='haar', mode='zero')
// computes it (Yl, Yh), and its inverse, DWTInverse(wave='haar', mode='zero').
//
// Filters are pywt's haar bank, orthonormal: dec_lo = (s, s), dec_hi = (-s, s), s = 1/sqrt(2).
// pytorch_wavelets filters rows first (along W), then columns (along H), each by correlating with
// the reversed filter at stride 2, so along one axis lo[k] = s*(x[2k] + x[2k+1]) and
// hi[k] = s*(x[2k] - x[2k+1]). For the 2x2 block at (2i, 2j) with
//
//	a = x[2i, 2j]    b = x[2i, 2j+1]
//	c = x[2i+1, 2j]  d = x[2i+1, 2j+1]
//
// one level gives
//
//	ll           = (a + b + c + d) / 2
//	highs[:,:,0] = (a + b - c - d) / 2   "LH": low along W, high along H (horizontal edges)
//	highs[:,:,1] = (a - b + c - d) / 2   "HL": high along W, low along H (vertical edges)
//	highs[:,:,2] = (a - b - c + d) / 2   "HH": high along both
//
// mode='zero' with an odd side: pywt.dwt_coeff_len gives ceil(n/2) outputs, and the signal is
// padded with ONE zero at its end (bottom row, right column), so the last block sees b = d = 0
// (odd W) or c = d = 0 (odd H). Level j+1 transforms level j's ll, whose sides are
// ceil(H_j/2), ceil(W_j/2).
//
// The inverse follows DWTInverse: from the coarsest level down, an ll one row (column) larger
// than that level's highs loses its last row (column), then each 2x2 block is rebuilt with the
// same four sums (the synthesis matrix is the transpose of the analysis one). Its output is
// twice highs[0]'s side: the input exactly for even sides; for odd sides it carries the padded
// zero row/column, as pytorch_wavelets' does.
//
// Both are linear, so each one's backward is its adjoint: the DWT's backward is the synthesis
// cropped to the input size (what pytorch_wavelets' AFB2D.backward does), the inverse's backward
// is the analysis.

// HaarDWT returns the J-level transform of x, J = levels >= 1: highs[j] (N, C, 3, H_{j+1},
// W_{j+1}) for j = 0..J-1, finest first, and ll (N, C, H_J, W_J), where H_0 = H and
// H_{j+1} = ceil(H_j / 2) (likewise W). x: (N, C, H, W).
//
// On a recording tape each level's gradients of ll and highs are allocated (zeroed) at once, so
// the backward runs whichever outputs the loss reads.
func HaarDWT(tp *Tape, x *Tensor, levels int) (ll *Tensor, highs []*Tensor) {
	return HaarDWTAppend(tp, x, levels, nil)
}

// HaarDWTAppend is HaarDWT appending the high bands to dst[:0], so a training step that passes
// the same slice each time allocates nothing.
func HaarDWTAppend(tp *Tape, x *Tensor, levels int, dst []*Tensor) (ll *Tensor, highs []*Tensor) {
	if levels < 1 {
		panic(fmt.Sprintf("ops: HaarDWT: levels = %d, want >= 1", levels))
	}
	x.NCHW()
	highs = dst[:0]
	ll = x
	for range levels {
		var h *Tensor
		ll, h = haarLevel(tp, ll)
		highs = append(highs, h)
	}
	return ll, highs
}

// HaarIDWT rebuilds an image from ll and highs as HaarDWT returns them (DWTInverse): the result
// is (N, C, 2*h, 2*w) where highs[0] is (N, C, 3, h, w).
func HaarIDWT(tp *Tape, ll *Tensor, highs []*Tensor) *Tensor {
	if len(highs) == 0 {
		panic("ops: HaarIDWT: no high bands")
	}
	for j := len(highs) - 1; j >= 0; j-- {
		ll = haarInvLevel(tp, ll, highs[j])
	}
	return ll
}

// haarJob is one pass over N*C planes; recycled through a free list because a Body handed to
// the worker pool escapes, and a fresh one per call would allocate.
type haarJob struct {
	kind       int
	x, ll, hi  []float32 // planes: x (H, W), ll (Ho, Wo), hi (3, Ho, Wo)
	h, w       int       // the image side (input of analysis, output of synthesis)
	ho, wo     int       // the band side
	llh, llw   int       // the ll side read by synthesis (may exceed ho, wo by one)
	accumulate bool      // synthesis adds into x (a backward) instead of writing it
}

const (
	haarAnalysis    = iota // x -> ll, hi (written)
	haarSynthesis          // ll, hi -> x (written, or added when accumulate)
	haarAnalysisAdd        // x (even sides) -> ll, hi (added; either may be nil)
)

var haarJobs bodyFreeList[haarJob]

func (j *haarJob) Run(lo, hi int) {
	hw, bw := j.h*j.w, j.ho*j.wo
	lw := j.llh * j.llw
	for p := lo; p < hi; p++ {
		x := j.x[p*hw : (p+1)*hw]
		var ll, b []float32
		if j.ll != nil {
			ll = j.ll[p*lw : (p+1)*lw]
		}
		if j.hi != nil {
			b = j.hi[p*3*bw : (p+1)*3*bw]
		}
		switch j.kind {
		case haarAnalysis:
			haarAnalyze(ll, b[:bw], b[bw:2*bw], b[2*bw:], x, j.h, j.w, j.ho, j.wo, j.llw)
		case haarSynthesis:
			haarSynthesize(x, ll, b[:bw], b[bw:2*bw], b[2*bw:], j.h, j.w, j.ho, j.wo, j.llw, j.accumulate)
		case haarAnalysisAdd:
			haarAnalyzeAdd(ll, b, x, j.ho, j.wo, j.llw)
		}
	}
}

// haarAnalyze writes one level of one plane. ll rows are llw apart (ll may be a gradient buffer
// wider than the bands by one column).
// x: (h, w); ll: (ho, llw); lh, hl, hh: (ho, wo).
func haarAnalyze(ll, lh, hl, hh, x []float32, h, w, ho, wo, llw int) {
	for i := range ho {
		r0 := x[2*i*w : 2*i*w+w]
		var r1 []float32
		if 2*i+1 < h {
			r1 = x[(2*i+1)*w : (2*i+2)*w]
		}
		l, o := ll[i*llw:i*llw+wo], i*wo
		for jj := range wo {
			a := r0[2*jj]
			var b, c, d float32
			if 2*jj+1 < w {
				b = r0[2*jj+1]
			}
			if r1 != nil {
				c = r1[2*jj]
				if 2*jj+1 < w {
					d = r1[2*jj+1]
				}
			}
			s, t := a+b, c+d // low along W, rows 2i and 2i+1
			u, v := a-b, c-d // high along W
			l[jj] = 0.5 * (s + t)
			lh[o+jj] = 0.5 * (s - t)
			hl[o+jj] = 0.5 * (u + v)
			hh[o+jj] = 0.5 * (u - v)
		}
	}
}

// haarSynthesize rebuilds one plane from its bands, dropping the rows and columns beyond (h, w)
// (the zero padding of odd sides), writing or adding into x.
// x: (h, w); ll: (>= ho, llw) read over (ho, wo); lh, hl, hh: (ho, wo).
func haarSynthesize(x, ll, lh, hl, hh []float32, h, w, ho, wo, llw int, accumulate bool) {
	for i := range ho {
		r0 := x[2*i*w : 2*i*w+w]
		var r1 []float32
		if 2*i+1 < h {
			r1 = x[(2*i+1)*w : (2*i+2)*w]
		}
		l, o := ll[i*llw:i*llw+wo], i*wo
		for jj := range wo {
			L, A, B, C := l[jj], lh[o+jj], hl[o+jj], hh[o+jj]
			p, q := L+A, B+C // row 2i: low / high along W
			r, s := L-A, B-C // row 2i+1
			va, vb := 0.5*(p+q), 0.5*(p-q)
			vc, vd := 0.5*(r+s), 0.5*(r-s)
			odd := 2*jj+1 < w
			if accumulate {
				r0[2*jj] += va
				if odd {
					r0[2*jj+1] += vb
				}
				if r1 != nil {
					r1[2*jj] += vc
					if odd {
						r1[2*jj+1] += vd
					}
				}
				continue
			}
			r0[2*jj] = va
			if odd {
				r0[2*jj+1] = vb
			}
			if r1 != nil {
				r1[2*jj] = vc
				if odd {
					r1[2*jj+1] = vd
				}
			}
		}
	}
}

// runHaar runs a job over n planes of side h*w and returns it to the free list.
func runHaar(j *haarJob, n int) {
	grain := max(1, (1<<14)/max(1, j.h*j.w))
	ParallelFor(n, grain, j)
	*j = haarJob{}
	haarJobs.put(j)
}

// haarLevel is one analysis level: x (N, C, H, W) -> ll (N, C, Ho, Wo), hi (N, C, 3, Ho, Wo).
func haarLevel(tp *Tape, x *Tensor) (ll, hi *Tensor) {
	n, c, h, w := x.NCHW()
	if h == 0 || w == 0 {
		panic(fmt.Sprintf("ops: HaarDWT: empty image %v", x.Shape))
	}
	if x.dev != nil {
		return devHaarLevel(tp, x.dev, x)
	}
	ho, wo := (h+1)/2, (w+1)/2
	ll = tp.alloc(n, c, ho, wo)
	hi = tp.alloc(n, c, 3, ho, wo)
	j := haarJobs.get()
	*j = haarJob{kind: haarAnalysis, x: x.Data, ll: ll.Data, hi: hi.Data, h: h, w: w, ho: ho, wo: wo, llh: ho, llw: wo}
	runHaar(j, n*c)
	if tp.needs(x) {
		// One node serves both outputs: it is keyed on ll, whose gradient is made to exist so
		// the node runs even when the loss reads only the high bands (as WKD's does).
		nd := tp.push(haarLevelBackward, ll, x)
		nd.saved[0] = hi
		hi.requiresGrad = true
		ll.grad()
		hi.grad()
	}
	return ll, hi
}

// haarLevelBackward adds the adjoint of the analysis: the synthesis of (dll, dhi), cropped to x.
func haarLevelBackward(nd *node) {
	x, ll, hi := nd.in[0], nd.out, nd.saved[0]
	if !x.requiresGrad {
		return
	}
	n, c, h, w := x.NCHW()
	ho, wo := ll.Shape[2], ll.Shape[3]
	j := haarJobs.get()
	*j = haarJob{kind: haarSynthesis, x: x.grad(), ll: ll.grad(), hi: hi.grad(), h: h, w: w, ho: ho, wo: wo, llh: ho, llw: wo, accumulate: true}
	runHaar(j, n*c)
}

// haarInvLevel is one synthesis level: ll (N, C, >= Ho, >= Wo), hi (N, C, 3, Ho, Wo) ->
// (N, C, 2*Ho, 2*Wo). An ll larger than hi by one row or column loses it, as in DWTInverse.
func haarInvLevel(tp *Tape, ll, hi *Tensor) *Tensor {
	n, c, lh, lw := ll.NCHW()
	if len(hi.Shape) != 5 || hi.Shape[0] != n || hi.Shape[1] != c || hi.Shape[2] != 3 ||
		(lh != hi.Shape[3] && lh != hi.Shape[3]+1) || (lw != hi.Shape[4] && lw != hi.Shape[4]+1) {
		panic(fmt.Sprintf("ops: HaarIDWT: ll %v does not fit high bands %v", ll.Shape, hi.Shape))
	}
	if d := deviceOf("HaarIDWT", ll, hi, nil); d != nil {
		return devHaarInvLevel(tp, d, ll, hi)
	}
	ho, wo := hi.Shape[3], hi.Shape[4]
	out := tp.alloc(n, c, 2*ho, 2*wo)
	j := haarJobs.get()
	*j = haarJob{kind: haarSynthesis, x: out.Data, ll: ll.Data, hi: hi.Data, h: 2 * ho, w: 2 * wo, ho: ho, wo: wo, llh: lh, llw: lw}
	runHaar(j, n*c)
	if tp.needs(ll, hi) {
		tp.push(haarInvLevelBackward, out, ll, hi)
	}
	return out
}

// haarInvLevelBackward adds the adjoint of the synthesis, the analysis of dout, to dll (not to
// its dropped row/column) and dhi.
func haarInvLevelBackward(nd *node) {
	out, ll, hi := nd.out, nd.in[0], nd.in[1]
	n, c, lh, lw := ll.NCHW()
	ho, wo := hi.Shape[3], hi.Shape[4]
	j := haarJobs.get()
	*j = haarJob{kind: haarAnalysisAdd, x: out.Grad, h: 2 * ho, w: 2 * wo, ho: ho, wo: wo, llh: lh, llw: lw}
	if ll.requiresGrad {
		j.ll = ll.grad()
	}
	if hi.requiresGrad {
		j.hi = hi.grad()
	}
	runHaar(j, n*c)
}

// haarAnalyzeAdd adds the analysis of an even-sided plane g (2*ho, 2*wo) into dl (rows lw
// apart) and dh (3, ho, wo); either may be nil.
func haarAnalyzeAdd(dl, dh, g []float32, ho, wo, lw int) {
	w := 2 * wo
	bw := ho * wo
	for i := range ho {
		r0, r1 := g[2*i*w:2*i*w+w], g[(2*i+1)*w:(2*i+2)*w]
		for jj := range wo {
			a, b, c, d := r0[2*jj], r0[2*jj+1], r1[2*jj], r1[2*jj+1]
			s, t := a+b, c+d
			u, v := a-b, c-d
			if dl != nil {
				dl[i*lw+jj] += 0.5 * (s + t)
			}
			if dh != nil {
				o := i*wo + jj
				dh[o] += 0.5 * (s - t)
				dh[bw+o] += 0.5 * (u + v)
				dh[2*bw+o] += 0.5 * (u - v)
			}
		}
	}
}
