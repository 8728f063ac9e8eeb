package ops

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"unsafe"
)

// memSpan is a byte range [lo, hi).
type memSpan struct{ lo, hi uintptr }

func spanOf(v []float32) memSpan {
	if cap(v) == 0 {
		return memSpan{}
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(v)))
	return memSpan{p, p + 4*uintptr(len(v))}
}

func (s memSpan) holds(t memSpan) bool { return t.lo >= s.lo && t.hi <= s.hi && t.lo < t.hi }

// kernelSpy wraps a direct kernel and records, per call, the span of B it reads, the span of
// A it reads and the span of C it writes, so a test can check them against the buffers the
// call may touch: any read past the image (or the gathered panel) is a bug even when the
// result happens to be right.
type kernelSpy struct {
	sync.Mutex
	reads, aReads, writes []memSpan
}

// wrap returns kern with every call recorded.
func (k *kernelSpy) wrap(kern *directKern) *directKern {
	inner, mr, nr := kern.fn, kern.mr, kern.nr
	return &directKern{name: kern.name, mr: mr, nr: nr, fn: func(kc int, a, b *float32, offs *int, c *float32, ldc int, acc int) {
		op := unsafe.Slice(offs, kc)
		lo, hi := op[0], op[0]
		for _, o := range op {
			lo, hi = min(lo, o), max(hi, o)
		}
		bp, ap, cp := uintptr(unsafe.Pointer(b)), uintptr(unsafe.Pointer(a)), uintptr(unsafe.Pointer(c))
		k.Lock()
		k.reads = append(k.reads, memSpan{uintptr(int(bp) + 4*lo), uintptr(int(bp) + 4*(hi+nr))})
		k.aReads = append(k.aReads, memSpan{ap, ap + uintptr(4*kc*mr)})
		k.writes = append(k.writes, memSpan{cp, cp + uintptr(4*((mr-1)*ldc+nr))})
		k.Unlock()
		inner(kc, a, b, offs, c, ldc, acc)
	}}
}

// freshScratches empties the scratch free list, so that every buffer the next op makes is
// exactly as long as it asks (colBuf, weightBuf and friends allocate len == cap).
func freshScratches() {
	scratch.Lock()
	scratch.free = nil
	scratch.Unlock()
}

// scratchSpans lists the buffers of every scratch on the free list.
func scratchSpans() (cols, wts, phase, panels, tiles []memSpan) {
	scratch.Lock()
	defer scratch.Unlock()
	for _, s := range scratch.free {
		cols = append(cols, spanOf(s.cols[:cap(s.cols)]))
		wts = append(wts, spanOf(s.packed[:cap(s.packed)]))
		phase = append(phase, spanOf(s.phase[:cap(s.phase)]))
		if s.edge != nil {
			panels = append(panels, spanOf(s.edge.panel[:]))
			tiles = append(tiles, spanOf(s.edge.tile[:]))
		}
	}
	return
}

func inAny(t memSpan, spans []memSpan) bool {
	for _, s := range spans {
		if s.holds(t) {
			return true
		}
	}
	return false
}

func (k *kernelSpy) check(t *testing.T, name string, reads, aReads, writes []memSpan) {
	t.Helper()
	for _, r := range k.reads {
		if !inAny(r, reads) {
			t.Errorf("%s: the kernel reads B at [%#x, %#x), outside the image and the edge panels", name, r.lo, r.hi)
			return
		}
	}
	for _, r := range k.aReads {
		if aReads != nil && !inAny(r, aReads) {
			t.Errorf("%s: the kernel reads A at [%#x, %#x), outside the packed weights", name, r.lo, r.hi)
			return
		}
	}
	for _, w := range k.writes {
		if !inAny(w, writes) {
			t.Errorf("%s: the kernel writes C at [%#x, %#x), outside the output and the edge tiles", name, w.lo, w.hi)
			return
		}
	}
}

// directConvShapes are stride-1 unpadded convolutions the direct route serves, chosen for the
// edges of its tiling: ow exactly 32, 33, 63, 64, 65; K below, at and off multiples of 8; one
// output row; 1xN and Nx1 kernels; batches of 3 (the last image's last tile); depths above
// directKC and a multiple of it.
var directConvShapes = []convCase{
	{n: 3, c: 2, h: 3, w: 34, k: 8, kh: 3, kw: 3},
	{n: 1, c: 1, h: 1, w: 32, k: 1, kh: 1, kw: 1, stride: 1}, // pointwise: not direct (guard)
	{n: 2, c: 3, h: 5, w: 35, k: 3, kh: 3, kw: 3},
	{n: 3, c: 4, h: 4, w: 66, k: 17, kh: 3, kw: 3},
	{n: 1, c: 2, h: 7, w: 70, k: 9, kh: 7, kw: 7},
	{n: 2, c: 5, h: 1, w: 40, k: 7, kh: 1, kw: 5},
	{n: 2, c: 5, h: 6, w: 33, k: 12, kh: 5, kw: 1},
	{n: 1, c: 3, h: 2, w: 96, k: 16, kh: 2, kw: 1},
	{n: 2, c: 30, h: 3, w: 65, k: 10, kh: 3, kw: 3}, // 270 rows: two depth passes at 256
	{n: 1, c: 64, h: 3, w: 34, k: 24, kh: 2, kw: 2}, // 256 rows: exactly one pass
	{n: 2, c: 29, h: 4, w: 36, k: 7, kh: 3, kw: 3},  // 261 rows, K < 8
}

// TestDirectConvShapes: every shape above against the float64 reference, with the assembly
// kernel, small depth blocks and several workers, and the kernel's reads and writes kept
// inside the image, the packed weights, the output and the edge buffers.
func TestDirectConvShapes(t *testing.T) {
	wide, thin, oldKC, oldThreads := directKernels()
	defer func() { directKernel, directThin, directKC = wide, thin, oldKC; SetThreads(oldThreads) }()
	r := rand.New(rand.NewPCG(21, 21))
	tested := 0
	for _, cc := range directConvShapes {
		cc.stride = 1
		g := newConvGeom(cc.c, cc.h, cc.w, cc.kh, cc.kw, 1, 0)
		if directKernel = wide; !useDirect(&g) {
			continue
		}
		tested++
		for _, bias := range []bool{false, true} {
			cc.bias = bias
			x, w, b := cc.tensors(r, false)
			want := refConv2d(x, w, b, 1, 0)
			for _, v := range []struct {
				kc, thr int
				goKern  bool
			}{{256, 1, false}, {256, 3, false}, {8, 2, false}, {13, 3, false}, {4, 1, false}, {8, 3, true}} {
				spy := &kernelSpy{}
				kw, kt := wide, thin
				if v.goKern { // the race detector sees the Go kernels' accesses
					kw, kt = goDirect(wide.mr, wide.nr), goDirect(thin.mr, thin.nr)
				}
				directKernel, directThin, directKC = spy.wrap(kw), spy.wrap(kt), v.kc
				SetThreads(v.thr)
				freshScratches()
				y := Conv2d(nil, x, w, b, 1, 0)
				name := fmt.Sprintf("%v_kc%d_thr%d", cc, v.kc, v.thr)
				compareRef(t, name, y.Data, want, 1e-5)
				_, wts, _, panels, tiles := scratchSpans()
				spy.check(t, name, append([]memSpan{spanOf(x.Data)}, panels...), wts, append([]memSpan{spanOf(y.Data)}, tiles...))
			}
		}
	}
	if tested < len(directConvShapes)-1 {
		t.Errorf("only %d of %d shapes took the direct route", tested, len(directConvShapes))
	}
}

// directKernels returns the direct kernels, the depth and the threads to restore after a test,
// setting Go kernels of the same tiles where this CPU has no assembly ones, so the routes'
// logic is tested everywhere.
func directKernels() (wide, thin *directKern, kc, threads int) {
	wide, thin, kc, threads = directKernel, directThin, directKC, Threads()
	if wide == nil {
		wide, thin = goDirect(8, 32), goDirect(4, 64)
	}
	return wide, thin, kc, threads
}

// TestDirectTransposedShapes: the phase route against the float64 reference on shapes the
// generator tests leave out: strides 3 and 4, pads of 0 and above kernel-1, every outPad,
// kernels equal to the stride, batches of 3, K off multiples of 8, phases deeper than
// directKC, with the kernel's reads checked against the padded copy and the edge panels.
func TestDirectTransposedShapes(t *testing.T) {
	wide, thin, oldKC, oldThreads := directKernels()
	defer func() { directKernel, directThin, directKC = wide, thin, oldKC; SetThreads(oldThreads) }()
	directKernel = wide
	r := rand.New(rand.NewPCG(22, 22))
	var cases []convCase
	for _, s := range []int{2, 3, 4} {
		for _, kk := range []int{s, s + 1, 2 * s, 2*s + 1} {
			for _, pad := range []int{0, 1, kk - 1, kk} {
				for op := range s {
					cases = append(cases, convCase{n: 1 + len(cases)%3, c: 1 + len(cases)%5, h: 2 + len(cases)%3,
						w: 33 + len(cases)%7, k: 1 + len(cases)%11, kh: kk, kw: kk, stride: s, pad: pad, outPad: op, bias: len(cases)%2 == 0})
				}
			}
		}
	}
	cases = append(cases,
		convCase{n: 2, c: 30, h: 3, w: 33, k: 9, kh: 3, kw: 3, stride: 2, pad: 1, outPad: 1, bias: true}, // rows 270 at the (0,0) phase
		convCase{n: 1, c: 1, h: 1, w: 40, k: 3, kh: 3, kw: 3, stride: 2, pad: 1, outPad: 1, bias: true},  // one input row
	)
	tested := 0
	for i, cc := range cases {
		oh := (cc.h-1)*cc.stride - 2*cc.pad + cc.kh + cc.outPad
		ow := (cc.w-1)*cc.stride - 2*cc.pad + cc.kw + cc.outPad
		if oh < 1 || ow < 1 {
			continue
		}
		g := newConvGeom(cc.k, oh, ow, cc.kh, cc.kw, cc.stride, cc.pad)
		if !useDirectT(&g) {
			continue
		}
		tested++
		x, w, b := cc.tensors(r, true)
		want := refConvTranspose2d(x, w, b, cc.stride, cc.pad, cc.outPad)
		v := []struct{ kc, thr int }{{256, 1}, {256, 3}, {8, 2}, {5, 3}}[i%4]
		spy := &kernelSpy{}
		directKernel, directThin, directKC = spy.wrap(wide), spy.wrap(thin), v.kc
		SetThreads(v.thr)
		freshScratches()
		y := ConvTranspose2d(nil, x, w, b, cc.stride, cc.pad, cc.outPad)
		name := fmt.Sprintf("%v_kc%d_thr%d", cc, v.kc, v.thr)
		compareRef(t, name, y.Data, want, 1e-5)
		cols, wts, phase, panels, tiles := scratchSpans()
		// The phases' packed weights may move between phases (weightBuf grows): A is not checked.
		_ = wts
		spy.check(t, name, append(cols, panels...), nil, append(phase, tiles...))
	}
	if tested < 40 {
		t.Errorf("only %d shapes took the phase route", tested)
	}
}

// TestInstanceNormReLUMatchesTwoOps: the fused op equals ReLU(InstanceNorm2d) with and
// without the vector loops, on planes with and without a tail of fewer than 16 values, on
// no tape, a tape that records nothing and a recording tape (where it must be the two ops,
// gradient included).
func TestInstanceNormReLUMatchesTwoOps(t *testing.T) {
	oldVec := hasNormVec
	defer func() { hasNormVec = oldVec }()
	r := rand.New(rand.NewPCG(23, 23))
	for _, sh := range [][4]int{{2, 3, 5, 7}, {1, 2, 4, 4}, {3, 5, 9, 13}, {1, 1, 1, 1}, {2, 4, 16, 17}} {
		x := randTensor(r, sh[:]...)
		for i := range x.Data {
			x.Data[i] += 5 // a mean far from 0: the moments' shift matters
		}
		for _, vec := range []bool{false, oldVec} {
			hasNormVec = vec
			want := ReLU(nil, InstanceNorm2d(nil, x, nil, nil, 1e-5)).Data
			got := InstanceNormReLU(nil, x, 1e-5).Data
			compareRef(t, fmt.Sprintf("%v_vec%v_nil", sh, vec), got, toFloat64(want), 1e-6)
			tp := NewTape()
			tp.SetNoGrad(true)
			got = InstanceNormReLU(tp, x, 1e-5).Data
			compareRef(t, fmt.Sprintf("%v_vec%v_nograd", sh, vec), got, toFloat64(want), 1e-6)
			// Recording: the two ops, and the gradient flows.
			xp := x.Clone()
			xp.SetRequiresGrad(true)
			tp = NewTape()
			y := InstanceNormReLU(tp, xp, 1e-5)
			compareRef(t, fmt.Sprintf("%v_vec%v_rec", sh, vec), y.Data, toFloat64(want), 1e-6)
			if tp.Len() == 0 {
				t.Errorf("%v: InstanceNormReLU on a recording tape records nothing", sh)
			}
		}
	}
}

// TestMomentsShiftAndTail: the vector moments around a shift far from 0 and lengths 16k+j.
func TestMomentsShiftAndTail(t *testing.T) {
	if !hasNormVec {
		t.Skip("no vector loops")
	}
	defer func() { hasNormVec = true }()
	r := rand.New(rand.NewPCG(24, 24))
	for _, n := range []int{16, 17, 31, 32, 33, 48, 100, 1000} {
		x := make([]float32, n)
		var s float64
		for i := range x {
			x[i] = 1000 + float32(r.NormFloat64())
			s += float64(x[i])
		}
		mean := s / float64(n)
		var q float64
		for _, v := range x {
			q += (float64(v) - mean) * (float64(v) - mean)
		}
		variance := q / float64(n)
		// Two calls, as batch norm adds one plane at a time.
		var m moments
		m.add(x[:n/2])
		m.add(x[n/2:])
		gm, gv := m.meanVar()
		if math.Abs(gm-mean) > 1e-9 || math.Abs(gv-variance) > 1e-6*variance {
			t.Errorf("n %d: mean %v var %v, want %v %v", n, gm, gv, mean, variance)
		}
	}
}

// TestDirectStridedPaddedShapes: the phase-split direct route (stride 1-4, zero pads up to and
// above the kernel, padH != padW, kernels narrower than the stride, batches of 3, the thin
// kernel's shifted last tile and its gathered rows 32..63 wide) against the float64
// reference, with the kernel's reads kept inside the split input and the edge panels and its
// writes inside the output and the edge tiles.
func TestDirectStridedPaddedShapes(t *testing.T) {
	wide, thin, oldKC, oldThreads := directKernels()
	defer func() { directKernel, directThin, directKC = wide, thin, oldKC; SetThreads(oldThreads) }()
	r := rand.New(rand.NewPCG(31, 31))
	type tc struct {
		cc         convCase
		padH, padW int
	}
	var cases []tc
	for _, s := range []int{1, 2, 3, 4} {
		for _, kk := range [][2]int{{1, 1}, {1, 3}, {2, 2}, {3, 3}, {5, 4}, {7, 7}} {
			for _, pads := range [][2]int{{0, 0}, {1, 1}, {0, 2}, {3, 1}, {kk[0] + 2, kk[1] + 3}} {
				for _, k := range []int{3, 9} {
					n := len(cases)
					ow := []int{32, 33, 47, 63, 64, 65, 97}[n%7]
					w := (ow-1)*s + kk[1] - 2*pads[1]
					if w < 1 {
						continue
					}
					cases = append(cases, tc{convCase{n: 1 + n%3, c: 1 + n%4, h: 2 + n%5, w: w + n%s, k: k,
						kh: kk[0], kw: kk[1], stride: s, bias: n%2 == 0}, pads[0], pads[1]})
				}
			}
		}
	}
	tested := 0
	for i, c := range cases {
		cc := c.cc
		if cc.h+2*c.padH < cc.kh {
			cc.h = cc.kh
		}
		g := newConvGeomPad(cc.c, cc.h, cc.w, cc.kh, cc.kw, cc.stride, c.padH, c.padW)
		directKernel = wide
		if !useDirect(&g) {
			continue
		}
		tested++
		x, w, b := cc.tensors(r, false)
		want := refConv2dPad(x, w, b, cc.stride, c.padH, c.padW)
		v := []struct{ kc, thr int }{{256, 1}, {256, 2}, {8, 2}, {5, 3}}[i%4]
		spy := &kernelSpy{}
		directKernel, directThin, directKC = spy.wrap(wide), spy.wrap(thin), v.kc
		SetThreads(v.thr)
		freshScratches()
		y := Conv2dPad(nil, x, w, b, cc.stride, c.padH, c.padW)
		name := fmt.Sprintf("%v_p%dx%d_kc%d_thr%d", cc, c.padH, c.padW, v.kc, v.thr)
		compareRef(t, name, y.Data, want, 1e-5)
		cols, wts, _, panels, tiles := scratchSpans()
		reads := append([]memSpan{spanOf(x.Data)}, cols...)
		spy.check(t, name, append(reads, panels...), wts, append([]memSpan{spanOf(y.Data)}, tiles...))
	}
	if tested < 200 {
		t.Errorf("only %d of %d shapes took the direct route", tested, len(cases))
	}
}

// TestDirectRoutesChosen pins the routes: at most 4 outputs take the thin kernel, and a
// generator's last layer (7x7 to 3 channels on a reflection-padded input), where the
// flipped-kernel route would also apply, takes the direct one.
func TestDirectRoutesChosen(t *testing.T) {
	if directKernel == nil || directThin == nil {
		t.Skip("no direct convolution kernels on this CPU (AVX-512)")
	}
	if directFor(4) != directThin || directFor(5) != directKernel {
		t.Errorf("directFor: 4 outputs -> %s, 5 -> %s; want the thin kernel for 4 only", directFor(4).name, directFor(5).name)
	}
	g := newConvGeom(16, 70, 70, 7, 7, 1, 0)
	if !viaTranspose(&g, 3) || !useDirect(&g) {
		t.Fatal("the shape no longer has both routes open")
	}
	inner := directThin
	defer func() { directThin = inner }()
	spy := &kernelSpy{}
	directThin = spy.wrap(inner)
	r := rand.New(rand.NewPCG(1, 1))
	x, w, _ := convCase{n: 1, c: 16, h: 70, w: 70, k: 3, kh: 7, kw: 7, stride: 1}.tensors(r, false)
	Conv2d(nil, x, w, nil, 1, 0)
	if len(spy.writes) == 0 {
		t.Error("the 16 -> 3 7x7 convolution did not take the thin direct kernel")
	}
}
