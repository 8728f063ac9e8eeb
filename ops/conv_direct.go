package ops

import "unsafe"

// Direct convolution: a convolution as a GEMM whose B operand, the im2col matrix, is never
// built. For a stride-1 convolution without padding (the generators' 3x3 and 7x7 convolutions
// run on a reflection-padded input), row (c, i, j) of the im2col matrix over 32 consecutive
// output positions of one output row is 32 consecutive input values starting at
// c*H*W + i*W + j from the tile's corner, so the micro-kernel reads B in place through a table
// of those offsets. Other strides and zero padding first split the padded input into its
// stride^2 phases (plane (c, pi, pj) holds the rows pi, pi+s, ... and columns pj, pj+s, ...),
// where tap (i, j) is again a contiguous run, in plane (c, i%s, j%s) at (i/s, j/s). That
// skips writing the column matrix (up to KH*KW times the input) and packing it again for the
// GEMM, the two copies that cost as much as the multiply-adds on the 16-64 channel
// convolutions of small students.

// directKern is a direct micro-kernel and its register tile: fn computes
// C[mr x nr] = A * B (+ C when acc != 0), with A packed as kc steps of mr weights and row p of
// B the nr floats at b + offs[p]; c has a row stride of ldc elements.
type directKern struct {
	name   string
	mr, nr int
	fn     func(kc int, a, b *float32, offs *int, c *float32, ldc int, acc int)
}

// directKernel serves convolutions with more than directThinK outputs and directThin the
// others (a 3-channel output would waste 5/8 of an 8-row tile); nil where this CPU has none,
// and then convolutions take the im2col route.
var directKernel, directThin *directKern

const directThinK = 4

// directMinNR is the narrowest tile: useDirect needs outputs at least this wide.
const directMinNR = 32

// Bounds of the kernels' tiles, for the edge buffers.
const (
	directMaxTile = 256 // mr*nr
	directMaxNR   = 64
)

// directKC is the depth of one pass of the kernel over a tile: its mr x directKC weights stay
// in L1 while it runs.
var directKC = 256

// directFor returns the kernel for k output channels.
func directFor(k int) *directKern {
	if k <= directThinK && directThin != nil {
		return directThin
	}
	return directKernel
}

// useDirect reports whether conv2dForward computes g directly: tiles need outputs at least
// 32 wide, and a 1x1 convolution without stride or padding is a plain GEMM already.
func useDirect(g *convGeom) bool {
	return directKernel != nil && !g.pointwise() && g.ow >= directMinNR
}

// goDirect is a direct kernel in Go with an mr x nr tile, the reference the assembly is
// tested against.
func goDirect(mr, nr int) *directKern {
	return &directKern{name: "go", mr: mr, nr: nr, fn: func(kc int, a, b *float32, offs *int, c *float32, ldc int, acc int) {
		ap := unsafe.Slice(a, kc*mr)
		op := unsafe.Slice(offs, kc)
		t := make([]float32, mr*nr)
		for p := range kc {
			row := unsafe.Slice((*float32)(unsafe.Add(unsafe.Pointer(b), 4*op[p])), nr)
			for r := range mr {
				w := ap[p*mr+r]
				for x, v := range row {
					t[r*nr+x] += w * v
				}
			}
		}
		cs := unsafe.Slice(c, (mr-1)*ldc+nr)
		for r := range mr {
			out := cs[r*ldc : r*ldc+nr]
			for x := range out {
				if acc != 0 {
					out[x] += t[r*nr+x]
				} else {
					out[x] = t[r*nr+x]
				}
			}
		}
	}}
}

// directEdge is one worker's space for edge tiles: a tile of C, a gathered B of up to 64
// steps and the offsets that read it in order.
type directEdge struct {
	tile  [directMaxTile]float32
	panel [64 * directMaxNR]float32
	seq   [64]int
}

// directConvJob is one direct convolution as a ParallelFor body over the N*OH output rows.
type directConvJob struct {
	x, y   []float32 // x: N inputs of chw floats each; y: (N, K, OH, OW)
	kern   *directKern
	wp     []float32 // the weights packed for kern (packDirect)
	offs   []int     // offs[r]: where im2col row r starts, from a tile's corner
	k      int       // output channels
	rows   int       // im2col rows (the GEMM's depth)
	chw    int       // input floats per image
	ld     int       // input floats per row: the tile of output (oh, ow0) has its corner at oh*ld + ow0
	oh, ow int
}

// packJob packs weights for a direct kernel, panels [lo, hi) at a time: panel q holds output
// channels q*mr .. q*mr+mr-1, step by step (dst[q*mr*rows + p*mr + r]), from
// w[src[p] + (q*mr+r)*stride]; channels past k are zero.
type packJob struct {
	dst, w      []float32
	src         []int
	k, rows, mr int
	stride      int
}

func (j *packJob) Run(lo, hi int) {
	mr, rows := j.mr, j.rows
	for q := lo; q < hi; q++ {
		panel := j.dst[q*mr*rows : (q+1)*mr*rows]
		for r := range mr {
			o := q*mr + r
			if o >= j.k {
				for p := range rows {
					panel[p*mr+r] = 0
				}
				continue
			}
			w := j.w[o*j.stride:]
			for p, at := range j.src[:rows] {
				panel[p*mr+r] = w[at]
			}
		}
	}
}

// packDirect packs k output channels of rows weights each, the weight of channel o and step p
// at w[src[p] + o*stride], into dst for a kernel of mr rows, in parallel.
func (s *convScratch) packDirect(dst, w []float32, src []int, k, rows, mr, stride int) {
	s.pack = packJob{dst: dst, w: w, src: src, k: k, rows: rows, mr: mr, stride: stride}
	panels := (k + mr - 1) / mr
	ParallelFor(panels, max(1, parallelGrain/(mr*rows)), &s.pack)
	s.pack = packJob{}
}

// steps returns the scratch's table of n step offsets.
func (s *convScratch) steps(n int) []int {
	if cap(s.srcs) < n {
		s.srcs = make([]int, n)
	}
	return s.srcs[:n]
}

// directOffsets fills offs with the offset of each im2col row of g in the input the direct
// route reads: x itself for stride 1 without padding (planes of H x W), else its phase split
// (planes of hs x ws, see splitJob).
func directOffsets(offs []int, g *convGeom, hs, ws int) {
	s := g.stride
	for c := range g.c {
		for i := range g.kh {
			for j := range g.kw {
				offs[(c*g.kh+i)*g.kw+j] = ((c*s+i%s)*s+j%s)*hs*ws + (i/s)*ws + j/s
			}
		}
	}
}

// directPlanes is the size of one phase plane of the direct route's input for g: the output
// rows and columns plus the kernel's reach in steps of the stride.
func directPlanes(g *convGeom) (hs, ws int) {
	if g.stride == 1 && g.padH == 0 && g.padW == 0 {
		return g.h, g.w
	}
	return g.oh + (g.kh-1)/g.stride, g.ow + (g.kw-1)/g.stride
}

// splitJob writes the phase split of a zero-padded input, one (image, channel) at a time:
// dst plane ((n*C + c)*s + pi)*s + pj, (hs, ws), holds padded rows s*a + pi and columns
// s*b + pj of x's plane (n, c).
type splitJob struct {
	g      convGeom
	x, dst []float32
	hs, ws int
}

func (j *splitJob) Run(lo, hi int) {
	g, s := &j.g, j.g.stride
	for pl := lo; pl < hi; pl++ {
		src := j.x[pl*g.h*g.w : (pl+1)*g.h*g.w]
		for pi := range s {
			for pj := range s {
				dst := j.dst[((pl*s+pi)*s+pj)*j.hs*j.ws:][:j.hs*j.ws]
				// Columns b with 0 <= s*b + pj - padW < W.
				blo := max(0, (g.padW-pj+s-1)/s)
				bhi := min(j.ws, max(blo, (g.w-1+g.padW-pj)/s+1))
				for a := range j.hs {
					row := dst[a*j.ws : (a+1)*j.ws]
					r := s*a + pi - g.padH
					if r < 0 || r >= g.h || blo >= bhi {
						clear(row)
						continue
					}
					clear(row[:blo])
					clear(row[bhi:])
					in := src[r*g.w+s*blo+pj-g.padW:]
					if s == 1 {
						copy(row[blo:bhi], in)
						continue
					}
					gatherStrided(row[blo:bhi], in, s)
				}
			}
		}
	}
}

// Run computes output rows [lo, hi), counted over all images (N*OH rows in all).
func (j *directConvJob) Run(lo, hi int) {
	rows, chw, ohw := j.rows, j.chw, j.oh*j.ow
	kern, mr, nr := j.kern.fn, j.kern.mr, j.kern.nr
	// Tiles on the right edge (fewer than nr positions left in the row) and panels of fewer
	// than mr channels go through a scratch tile. An edge tile is computed as the whole tile
	// ending at the row's end, or, in rows narrower than a tile, from a gathered copy of B, so
	// no read runs past the input.
	s := getScratch()
	defer putScratch(s)
	if s.edge == nil {
		s.edge = new(directEdge)
	}
	tile, panel, seq := &s.edge.tile, &s.edge.panel, &s.edge.seq
	for p := range seq {
		seq[p] = p * nr
	}
	for r := lo; r < hi; r++ {
		img, oh := r/j.oh, r%j.oh
		xi := j.x[img*chw : (img+1)*chw]
		yi := j.y[img*j.k*ohw : (img+1)*j.k*ohw]
		for pc := 0; pc < rows; pc += directKC {
			kb := min(directKC, rows-pc)
			acc := 0
			if pc > 0 {
				acc = 1
			}
			for q := 0; q < j.k; q += mr {
				ap := &j.wp[q*rows+pc*mr]
				mrows := min(mr, j.k-q)
				for ow0 := 0; ow0 < j.ow; ow0 += nr {
					cols := min(nr, j.ow-ow0)
					base := oh*j.ld + ow0
					ci := q*ohw + oh*j.ow + ow0
					if cols == nr && mrows == mr {
						kern(kb, ap, &xi[base], &j.offs[pc], &yi[ci], ohw, acc)
						continue
					}
					shift := 0 // columns of the tile left of ow0
					switch {
					case cols == nr:
						kern(kb, ap, &xi[base], &j.offs[pc], &tile[0], nr, 0)
					case j.ow >= nr:
						// The last tile of a row: a whole tile ending at the row's end, of
						// which the columns from ow0 are kept, reads only inside the input.
						shift = nr - cols
						kern(kb, ap, &xi[base-shift], &j.offs[pc], &tile[0], nr, 0)
					default:
						// Gather B in steps of at most 64 rows and accumulate them in the tile.
						for p0 := 0; p0 < kb; p0 += 64 {
							pb := min(64, kb-p0)
							for p := range pb {
								src := xi[base+j.offs[pc+p0+p]:][:cols]
								dst := panel[p*nr : (p+1)*nr]
								copy(dst, src)
								clear(dst[cols:])
							}
							kern(pb, &j.wp[q*rows+(pc+p0)*mr], &panel[0], &seq[0], &tile[0], nr, min(p0, 1))
						}
					}
					for rr := range mrows {
						out := yi[ci+rr*ohw : ci+rr*ohw+cols]
						t := tile[rr*nr+shift : rr*nr+shift+cols]
						if acc != 0 {
							addTo(out, t)
						} else {
							copy(out, t)
						}
					}
				}
			}
		}
	}
}

// conv2dDirect computes y = conv(x, w) + b for a geometry useDirect accepts.
// y: (N, K, OH, OW); x: (N, C, H, W); w: (K, C*KH*KW); b: (K) or nil.
func conv2dDirect(s *convScratch, y, x, w, b []float32, n, k int, g *convGeom) {
	rows, kern := g.rows(), directFor(k)
	kp := (k + kern.mr - 1) / kern.mr * kern.mr
	wp := s.packBuf(kp * rows)
	src := s.steps(rows)
	for p := range src {
		src[p] = p
	}
	s.packDirect(wp, w, src, k, rows, kern.mr, rows)
	if cap(s.offs) < rows {
		s.offs = make([]int, rows)
	}
	offs := s.offs[:rows]
	hs, ws := directPlanes(g)
	directOffsets(offs, g, hs, ws)
	in, chw := x, g.c*g.h*g.w
	if hs != g.h || ws != g.w || g.stride != 1 {
		chw = g.c * g.stride * g.stride * hs * ws
		in = s.colBuf(n * chw)
		s.split = splitJob{g: *g, x: x, dst: in, hs: hs, ws: ws}
		ParallelFor(n*g.c, max(1, parallelGrain*g.c/chw), &s.split)
		s.split = splitJob{}
	}
	s.direct = directConvJob{kern: kern, x: in, y: y, wp: wp, offs: offs, k: k, rows: rows, chw: chw, ld: ws, oh: g.oh, ow: g.ow}
	ParallelFor(n*g.oh, 1, &s.direct)
	s.direct = directConvJob{}
	if b != nil {
		s.addBias(y, b, n, k, g.oh*g.ow)
	}
}

// A transposed convolution of stride s splits into s*s phases: the outputs (s*a + ph, s*b + pw)
// of one phase are a stride-1 correlation of the input with the kernel taps ki = rh + s*t,
// kj = rw + s*u (rh = (ph + pad) mod s), in reverse order. Each phase runs on the direct kernel
// over a zero-padded copy of the input, into a buffer that one pass then interleaves into the
// output, instead of a GEMM into columns KH*KW/s^2 times the output's size and a col2im that
// adds them back one kernel tap at a time.

// convTPhase is one phase along one axis: taps kernel entries r, r+s, ..., n outputs, and
// the input index of output a and tap t is a + d - t.
type convTPhase struct{ r, taps, n, d int }

func convTPhaseOf(ph, s, pad, k, out int) convTPhase {
	r := (ph + pad) % s
	return convTPhase{r: r, taps: max(0, (k-r+s-1)/s), n: max(0, (out-ph+s-1)/s), d: (ph + pad) / s}
}

// useDirectT reports whether convTranspose2dForward takes the phase route for g, the
// geometry of the convolution the transposed one reverses.
func useDirectT(g *convGeom) bool {
	return directKernel != nil && g.stride >= 2 && g.kh >= g.stride && g.kw >= g.stride &&
		g.w/g.stride >= directMinNR && g.padH == g.padW
}

// interleaveJob writes one phase's output (N*K planes of n x m) into every s-th row and
// column of y from (ph, pw), adding the bias.
type interleaveJob struct {
	y, src, b []float32
	k, oh, ow int
	n, m      int
	s, ph, pw int
}

func (j *interleaveJob) Run(lo, hi int) {
	for pl := lo; pl < hi; pl++ {
		bias := float32(0)
		if j.b != nil {
			bias = j.b[pl%j.k]
		}
		out := j.y[pl*j.oh*j.ow : (pl+1)*j.oh*j.ow]
		in := j.src[pl*j.n*j.m : (pl+1)*j.n*j.m]
		for a := range j.n {
			row := out[(j.s*a+j.ph)*j.ow+j.pw:]
			for b, v := range in[a*j.m : (a+1)*j.m] {
				row[j.s*b] = v + bias
			}
		}
	}
}

// convTransposeDirect computes y = conv^T(x, w) + b phase by phase, for a geometry useDirectT
// accepts. y: (N, K, OH, OW); x: (N, C, H, W); w: (C, K*KH*KW); b: (K) or nil; g: the
// geometry of the convolution from (K, OH, OW) to (C, H, W).
func convTransposeDirect(s *convScratch, y, x, w, b []float32, n, c int, g *convGeom) {
	k, st, pad := g.c, g.stride, g.padH
	h, wd := g.oh, g.ow
	// Padding of the copy: enough above and left for the last tap of every phase, below
	// and right for the first tap of every phase's last output.
	pt, pl, hp, wp := 0, 0, h, wd
	for ph := range st {
		py := convTPhaseOf(ph, st, pad, g.kh, g.h)
		px := convTPhaseOf(ph, st, pad, g.kw, g.w)
		pt, pl = max(pt, py.taps-1-py.d), max(pl, px.taps-1-px.d)
	}
	for ph := range st {
		py := convTPhaseOf(ph, st, pad, g.kh, g.h)
		px := convTPhaseOf(ph, st, pad, g.kw, g.w)
		hp, wp = max(hp, py.n+py.d+pt, h+pt), max(wp, px.n+px.d+pl, wd+pl)
	}
	chw := c * hp * wp
	xp := s.colBuf(n * chw)
	clear(xp)
	for img := range n {
		for ch := range c {
			src := x[(img*c+ch)*h*wd:]
			dst := xp[img*chw+ch*hp*wp+pt*wp+pl:]
			for i := range h {
				copy(dst[i*wp:i*wp+wd], src[i*wd:(i+1)*wd])
			}
		}
	}
	khw := g.kh * g.kw
	for ph := range st {
		py := convTPhaseOf(ph, st, pad, g.kh, g.h)
		for pw := range st {
			px := convTPhaseOf(pw, st, pad, g.kw, g.w)
			rows := c * py.taps * px.taps
			if py.n == 0 || px.n == 0 {
				continue
			}
			phase := s.phaseBuf(n * k * py.n * px.n)
			// The phase's weights (K, C*taps*taps), taps reversed, and their offsets.
			src := s.steps(rows)
			if cap(s.offs) < rows {
				s.offs = make([]int, rows)
			}
			offs := s.offs[:rows]
			for ch := range c {
				for t := range py.taps {
					for u := range px.taps {
						r := (ch*py.taps+t)*px.taps + u
						ki, kj := py.r+st*(py.taps-1-t), px.r+st*(px.taps-1-u)
						src[r] = ch*k*khw + ki*g.kw + kj
						offs[r] = ch*hp*wp + (py.d-(py.taps-1-t)+pt)*wp + px.d - (px.taps - 1 - u) + pl
					}
				}
			}
			kern := directFor(k)
			kp := (k + kern.mr - 1) / kern.mr * kern.mr
			wpk := s.packBuf(kp * rows)
			s.packDirect(wpk, w, src, k, rows, kern.mr, khw)
			s.direct = directConvJob{kern: kern, x: xp, y: phase, wp: wpk, offs: offs, k: k, rows: rows,
				chw: chw, ld: wp, oh: py.n, ow: px.n}
			ParallelFor(n*py.n, 1, &s.direct)
			s.direct = directConvJob{}
			s.inter = interleaveJob{y: y, src: phase, b: b, k: k, oh: g.h, ow: g.w, n: py.n, m: px.n, s: st, ph: ph, pw: pw}
			ParallelFor(n*k, 1, &s.inter)
			s.inter = interleaveJob{}
		}
	}
}
