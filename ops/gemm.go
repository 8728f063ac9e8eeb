package ops

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
	"unsafe"
)

// SGEMM, Goto/BLIS style. op(B) is packed kc x nc at a time (kept in L2), op(A) mc x kc
// at a time; a micro-kernel multiplies an mr-row panel of packed A by an nr-column panel
// of packed B, with the A panel reused from L1 across the whole B block. Transposes are
// absorbed by the packing, partial tiles go through a scratch tile, and the work is split
// over n (or over m when n is narrow) across Threads() workers, each with its own
// persistent packing buffers, so a steady-state call allocates nothing.

// Cache blocking, measured on Zen 4 (32 KiB L1d, 1 MiB L2 per core, 32 MiB L3).
const (
	gemmKC = 256  // depth of one packed block: an 8 x 256 A panel is 8 KiB of L1
	gemmNC = 1024 // columns of one packed B block: 256 x 1024 floats = 1 MiB, about L2
	// (measured: 5-15% faster than 512 on 1024^3 and k=2304 conv shapes; 2048 no better)
	gemmMC = 192 // rows of one packed A block (rounded down to a multiple of mr)

	// gemmSerialFlops: below this many multiply-adds one thread is faster than waking others.
	gemmSerialFlops = 96 * 96 * 96
)

// gemmKernel is one micro-kernel and its register tile.
type gemmKernel struct {
	name   string
	mr, nr int
	// fn computes C[mr x nr] = alpha * Apanel * Bpanel + beta * C (beta == 0: C is not read).
	// a: (kc, mr) packed; b: (kc, nr) packed; c: row stride ldc elements.
	fn func(kc int, a, b, c *float32, ldc int, alpha, beta float32)
}

var kernelGo = gemmKernel{name: "go", mr: 4, nr: 4, fn: sgemmKernelGo}

// gemmKern is the kernel Sgemm uses; tests swap it to check every kernel, including
// the pure-Go one that non-amd64 and purego builds use.
var gemmKern = bestKernel()

// gemmBuf is one worker's packing space; it grows once and is reused.
type gemmBuf struct {
	a, b, tile []float32
}

var freeGemmBufs = make(chan *gemmBuf, 64)

func getGemmBuf(kern *gemmKernel) *gemmBuf {
	var g *gemmBuf
	select {
	case g = <-freeGemmBufs:
	default:
		g = new(gemmBuf)
	}
	mc := max(kern.mr, gemmMC/kern.mr*kern.mr)
	nc := (gemmNC + kern.nr - 1) / kern.nr * kern.nr
	if len(g.a) < mc*gemmKC {
		g.a = make([]float32, mc*gemmKC)
	}
	if len(g.b) < gemmKC*nc {
		g.b = make([]float32, gemmKC*nc)
	}
	if len(g.tile) < kern.mr*kern.nr {
		g.tile = make([]float32, kern.mr*kern.nr)
	}
	return g
}

func putGemmBuf(g *gemmBuf) {
	select {
	case freeGemmBufs <- g:
	default:
	}
}

// gemmJob is one Sgemm call as a ParallelFor body; Run(lo, hi) does the column tiles
// [lo, hi) (or row tiles, when splitM) in units of nr (mr).
type gemmJob struct {
	kern           *gemmKernel
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	a, b, c        []float32
	lda, ldb, ldc  int
	splitM         bool
}

var freeGemmJobs = make(chan *gemmJob, 64)

func (j *gemmJob) Run(lo, hi int) {
	g := getGemmBuf(j.kern)
	if j.splitM {
		mr := j.kern.mr
		j.block(g, lo*mr, min(hi*mr, j.m), 0, j.n)
	} else {
		nr := j.kern.nr
		j.block(g, 0, j.m, lo*nr, min(hi*nr, j.n))
	}
	putGemmBuf(g)
}

// sgemmSerial is C = A*B (row-major, no transposes) on the calling goroutine alone, for
// callers that split the work across threads themselves.
func sgemmSerial(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	checkGemmArgs(false, false, m, n, k, a, lda, b, ldb, c, ldc)
	if m == 0 || n == 0 || k == 0 {
		scaleMatrix(m, n, 0, c, ldc)
		return
	}
	var j *gemmJob
	select {
	case j = <-freeGemmJobs:
	default:
		j = new(gemmJob)
	}
	*j = gemmJob{kern: thinKernel(gemmKern, m), m: m, n: n, k: k, alpha: 1, a: a, b: b, c: c, lda: lda, ldb: ldb, ldc: ldc}
	j.Run(0, (n+j.kern.nr-1)/j.kern.nr)
	*j = gemmJob{}
	select {
	case freeGemmJobs <- j:
	default:
	}
}

// Sgemm computes C = alpha*op(A)*op(B) + beta*C for row-major matrices; op(X) is X or X^T.
// op(A): (m, k), op(B): (k, n), C: (m, n). lda/ldb/ldc are row strides of the stored
// matrices. As in BLAS, beta == 0 overwrites C without reading it (NaNs in C vanish).
// Bad sizes or short slices panic with the offending argument named.
func Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	checkGemmArgs(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	if m == 0 || n == 0 {
		return
	}
	if k == 0 || alpha == 0 {
		scaleMatrix(m, n, beta, c, ldc)
		return
	}
	var j *gemmJob
	select {
	case j = <-freeGemmJobs:
	default:
		j = new(gemmJob)
	}
	*j = gemmJob{kern: thinKernel(gemmKern, m), transA: transA, transB: transB, m: m, n: n, k: k,
		alpha: alpha, beta: beta, a: a, b: b, c: c, lda: lda, ldb: ldb, ldc: ldc}
	nt := (n + j.kern.nr - 1) / j.kern.nr
	mt := (m + j.kern.mr - 1) / j.kern.mr
	th := Threads()
	switch {
	case th == 1 || m*n*k < gemmSerialFlops:
		j.Run(0, nt)
	case nt >= 2*th || nt >= mt:
		ParallelFor(nt, 1, j)
	default:
		j.splitM = true
		ParallelFor(mt, 1, j)
	}
	*j = gemmJob{} // drop the caller's slices
	select {
	case freeGemmJobs <- j:
	default:
	}
}

func checkGemmArgs(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("ops: Sgemm: negative size m=%d n=%d k=%d", m, n, k))
	}
	need := func(name string, s []float32, rows, cols, ld int) {
		if rows == 0 || cols == 0 {
			return
		}
		if ld < cols {
			panic(fmt.Sprintf("ops: Sgemm: ld%s=%d < %d columns of %s", name, ld, cols, name))
		}
		if len(s) < (rows-1)*ld+cols {
			panic(fmt.Sprintf("ops: Sgemm: len(%s)=%d < %d needed for (%d, %d) with ld%s=%d",
				name, len(s), (rows-1)*ld+cols, rows, cols, name, ld))
		}
	}
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	need("a", a, ar, ac, lda)
	need("b", b, br, bc, ldb)
	need("c", c, m, n, ldc)
}

// scaleMatrix does C = beta*C, with beta == 0 clearing C (even of NaNs).
func scaleMatrix(m, n int, beta float32, c []float32, ldc int) {
	for i := range m {
		row := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(row)
			continue
		}
		for x := range row {
			row[x] *= beta
		}
	}
}

// block computes rows [i0, i1) x columns [j0, j1) of C over the full depth k.
func (j *gemmJob) block(g *gemmBuf, i0, i1, j0, j1 int) {
	kern := j.kern
	mr, nr := kern.mr, kern.nr
	mc := max(mr, gemmMC/mr*mr)
	for jc := j0; jc < j1; jc += gemmNC {
		nb := min(gemmNC, j1-jc)
		for pc := 0; pc < j.k; pc += gemmKC {
			kb := min(gemmKC, j.k-pc)
			beta := j.beta
			if pc > 0 {
				beta = 1 // later depth blocks accumulate onto the first
			}
			packB(g.b, j.b, j.ldb, j.transB, pc, kb, jc, nb, nr)
			for ic := i0; ic < i1; ic += mc {
				mb := min(mc, i1-ic)
				packA(g.a, j.a, j.lda, j.transA, ic, mb, pc, kb, mr)
				for ir := 0; ir < mb; ir += mr {
					ap := &g.a[ir*kb]
					rows := min(mr, mb-ir)
					for jr := 0; jr < nb; jr += nr {
						bp := &g.b[jr*kb]
						cols := min(nr, nb-jr)
						ci := (ic+ir)*j.ldc + jc + jr
						if rows == mr && cols == nr {
							kern.fn(kb, ap, bp, &j.c[ci], j.ldc, j.alpha, beta)
							continue
						}
						kern.fn(kb, ap, bp, &g.tile[0], nr, 1, 0)
						mergeTile(j.c[ci:], j.ldc, g.tile, nr, rows, cols, j.alpha, beta)
					}
				}
			}
		}
	}
}

// mergeTile does C[:rows, :cols] = alpha*T + beta*C for a partial edge tile.
func mergeTile(c []float32, ldc int, t []float32, ldt, rows, cols int, alpha, beta float32) {
	for r := range rows {
		cr := c[r*ldc : r*ldc+cols]
		tr := t[r*ldt : r*ldt+cols]
		if beta == 0 {
			for x := range cr {
				cr[x] = alpha * tr[x]
			}
			continue
		}
		for x := range cr {
			cr[x] = alpha*tr[x] + beta*cr[x]
		}
	}
}

// packA copies op(A)[i0:i0+mb, p0:p0+kb] into dst as panels of mr rows, each panel
// stored k-major (dst[p*mr + r]); rows past mb are zero so the kernel needs no edge case.
func packA(dst, a []float32, lda int, trans bool, i0, mb, p0, kb, mr int) {
	for ir := 0; ir < mb; ir += mr {
		panel := dst[ir*kb : ir*kb+mr*kb]
		rows := min(mr, mb-ir)
		if trans {
			// op(A)[i][p] = a[p*lda + i]: rows of the panel are contiguous in a.
			for p := range kb {
				src := a[(p0+p)*lda+i0+ir:]
				d := panel[p*mr : p*mr+mr]
				copy(d[:rows], src[:rows])
				clear(d[rows:])
			}
			continue
		}
		gatherRows(panel, mr, a, (i0+ir)*lda+p0, lda, rows, kb)
	}
}

// packB copies op(B)[p0:p0+kb, j0:j0+nb] into dst as panels of nr columns, each panel
// stored k-major (dst[p*nr + c]); columns past nb are zero.
func packB(dst, b []float32, ldb int, trans bool, p0, kb, j0, nb, nr int) {
	if !trans {
		// Walk each source row once, front to back, dealing nr-wide pieces to the panels:
		// one sequential stream per row is what the prefetcher handles best.
		full := nb / nr * nr
		for p := range kb {
			src := b[(p0+p)*ldb+j0 : (p0+p)*ldb+j0+nb]
			for jr := 0; jr < full; jr += nr {
				copy(dst[jr*kb+p*nr:jr*kb+p*nr+nr], src[jr:jr+nr])
			}
			if full < nb {
				d := dst[full*kb+p*nr : full*kb+p*nr+nr]
				copy(d, src[full:])
				clear(d[nb-full:])
			}
		}
		return
	}
	for jr := 0; jr < nb; jr += nr {
		panel := dst[jr*kb : jr*kb+nr*kb]
		cols := min(nr, nb-jr)
		// op(B)[p][j] = b[j*ldb + p]: each column of the panel is a contiguous row of b.
		gatherRows(panel, nr, b, (j0+jr)*ldb+p0, ldb, cols, kb)
	}
}

// gatherRows transposes rows src[off + r*ld : +kb] (r < rows) into dst[p*w + r], zeroing
// lanes rows..w-1. Eight (then four) source rows are walked together so each write is a
// contiguous run instead of a stride-w scatter.
func gatherRows(dst []float32, w int, src []float32, off, ld, rows, kb int) {
	dst = dst[:kb*w]
	r := 0
	for ; r+8 <= rows; r += 8 {
		s0 := src[off+r*ld : off+r*ld+kb]
		s1 := src[off+(r+1)*ld : off+(r+1)*ld+kb]
		s2 := src[off+(r+2)*ld : off+(r+2)*ld+kb]
		s3 := src[off+(r+3)*ld : off+(r+3)*ld+kb]
		s4 := src[off+(r+4)*ld : off+(r+4)*ld+kb]
		s5 := src[off+(r+5)*ld : off+(r+5)*ld+kb]
		s6 := src[off+(r+6)*ld : off+(r+6)*ld+kb]
		s7 := src[off+(r+7)*ld : off+(r+7)*ld+kb]
		p0 := 0
		if kb >= 8 && transpose8(dst[r:], w, src[off+r*ld:], ld, kb/8) {
			p0 = kb / 8 * 8
		}
		for p := p0; p < len(s0); p++ {
			d := dst[p*w+r : p*w+r+8 : p*w+r+8]
			d[0], d[1], d[2], d[3] = s0[p], s1[p], s2[p], s3[p]
			d[4], d[5], d[6], d[7] = s4[p], s5[p], s6[p], s7[p]
		}
	}
	for ; r+4 <= rows; r += 4 {
		s0 := src[off+r*ld : off+r*ld+kb]
		s1 := src[off+(r+1)*ld : off+(r+1)*ld+kb]
		s2 := src[off+(r+2)*ld : off+(r+2)*ld+kb]
		s3 := src[off+(r+3)*ld : off+(r+3)*ld+kb]
		for p := range s0 {
			d := dst[p*w+r : p*w+r+4 : p*w+r+4]
			d[0], d[1], d[2], d[3] = s0[p], s1[p], s2[p], s3[p]
		}
	}
	for ; r < rows; r++ {
		s0 := src[off+r*ld : off+r*ld+kb]
		for p, v := range s0 {
			dst[p*w+r] = v
		}
	}
	if rows < w {
		for p := range kb {
			clear(dst[p*w+rows : p*w+w])
		}
	}
}

// sgemmKernelGo is the portable 4x4 micro-kernel. It runs as two passes of two rows so
// the eight accumulators and six operands stay in the 15 registers Go can use (a single
// 4x4 pass spills half its accumulators to the stack and runs at half the speed).
func sgemmKernelGo(kc int, ap, bp, cp *float32, ldc int, alpha, beta float32) {
	a := unsafe.Slice(ap, kc*4)
	b := unsafe.Slice(bp, kc*4)
	c := unsafe.Slice(cp, 3*ldc+4)
	for r := 0; r < 4; r += 2 {
		var c00, c01, c02, c03, c10, c11, c12, c13 float32
		ar := a[r:]
		for p := 0; p+2 <= len(ar) && p+4 <= len(b); p += 4 {
			av := ar[p : p+2 : p+2]
			bv := b[p : p+4 : p+4]
			a0, a1 := av[0], av[1]
			b0, b1, b2, b3 := bv[0], bv[1], bv[2], bv[3]
			c00 += a0 * b0
			c01 += a0 * b1
			c02 += a0 * b2
			c03 += a0 * b3
			c10 += a1 * b0
			c11 += a1 * b1
			c12 += a1 * b2
			c13 += a1 * b3
		}
		storeRowGo(c[r*ldc:r*ldc+4:r*ldc+4], c00, c01, c02, c03, alpha, beta)
		storeRowGo(c[(r+1)*ldc:(r+1)*ldc+4:(r+1)*ldc+4], c10, c11, c12, c13, alpha, beta)
	}
}

// storeRowGo does row = alpha*(x0..x3) + beta*row, not reading row when beta == 0.
func storeRowGo(row []float32, x0, x1, x2, x3, alpha, beta float32) {
	row = row[:4]
	if beta == 0 {
		row[0], row[1], row[2], row[3] = alpha*x0, alpha*x1, alpha*x2, alpha*x3
		return
	}
	row[0] = alpha*x0 + beta*row[0]
	row[1] = alpha*x1 + beta*row[1]
	row[2] = alpha*x2 + beta*row[2]
	row[3] = alpha*x3 + beta*row[3]
}

// SgemmGFLOPS times reps calls of a non-transposed (m, k) x (k, n) Sgemm with the current
// Threads() and returns the median rate in GFLOP/s (2*m*n*k flops per call), after one
// warm-up call.
func SgemmGFLOPS(m, n, k int, reps int) float64 {
	reps = max(reps, 1)
	r := rand.New(rand.NewPCG(1, uint64(m*n*k)))
	a, b, c := make([]float32, m*k), make([]float32, k*n), make([]float32, m*n)
	for i := range a {
		a[i] = r.Float32() - 0.5
	}
	for i := range b {
		b[i] = r.Float32() - 0.5
	}
	Sgemm(false, false, m, n, k, 1, a, k, b, n, 0, c, n)
	rates := make([]float64, reps)
	for i := range rates {
		t0 := time.Now()
		Sgemm(false, false, m, n, k, 1, a, k, b, n, 0, c, n)
		rates[i] = 2 * float64(m) * float64(n) * float64(k) / time.Since(t0).Seconds() / 1e9
	}
	slices.Sort(rates)
	return rates[len(rates)/2]
}
