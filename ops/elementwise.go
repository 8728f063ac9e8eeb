package ops

import (
	"fmt"
	"sync"
)

// Elementwise ops, Concat, and the machinery every elementwise kernel of this package shares:
// a loop function applied to a range, run serially for small tensors and through ParallelFor
// for large ones, with the Body taken from a free list so that no step allocates.

// ewGrain is the fewest elements worth handing to another thread (about 10 µs of work for the
// cheapest loops); smaller tensors run inline with no pool involved.
const ewGrain = 1 << 14

// ewFunc is one elementwise loop over equal-length slices: dst, then up to two inputs (nil when
// unused), then two scalars whose meaning is the loop's own. It must be a top-level func.
type ewFunc func(dst, a, b []float32, s, t float32)

// ewKernel is the ParallelFor body of an elementwise loop: it slices every operand to [lo, hi).
type ewKernel struct {
	f    ewFunc
	dst  []float32
	a, b []float32
	s, t float32
}

func (k *ewKernel) Run(lo, hi int) {
	var a, b []float32
	if k.a != nil {
		a = k.a[lo:hi]
	}
	if k.b != nil {
		b = k.b[lo:hi]
	}
	k.f(k.dst[lo:hi], a, b, k.s, k.t)
}

// bodyFreeList recycles ParallelFor bodies. A Body handed to a worker pool escapes to the heap,
// so allocating one per call would cost an allocation per op; a mutex-guarded stack (unlike a
// sync.Pool, never emptied by the GC) makes that once per concurrent caller, at warm-up.
type bodyFreeList[T any] struct {
	mu   sync.Mutex
	free []*T
}

func (l *bodyFreeList[T]) get() *T {
	l.mu.Lock()
	if n := len(l.free); n > 0 {
		b := l.free[n-1]
		l.free = l.free[:n-1]
		l.mu.Unlock()
		return b
	}
	l.mu.Unlock()
	return new(T)
}

func (l *bodyFreeList[T]) put(b *T) {
	l.mu.Lock()
	l.free = append(l.free, b)
	l.mu.Unlock()
}

var ewBodies bodyFreeList[ewKernel]

// ewRun applies f to dst (and a, b where non-nil, each as long as dst), in parallel when dst is
// large.
func ewRun(f ewFunc, dst, a, b []float32, s, t float32) {
	if len(dst) <= ewGrain {
		f(dst, a, b, s, t)
		return
	}
	k := ewBodies.get()
	*k = ewKernel{f: f, dst: dst, a: a, b: b, s: s, t: t}
	ParallelFor(len(dst), ewGrain, k)
	*k = ewKernel{} // drop the references so the free list pins no tensors
	ewBodies.put(k)
}

// Add returns a + b.
// a, b: any shape, the same -> that shape
func Add(tp *Tape, a, b *Tensor) *Tensor {
	mustSameShape("Add", a, b)
	if d := deviceOf("Add", a, b, nil); d != nil {
		return devAdd(tp, d, a, b)
	}
	out := tp.alloc(a.Shape...)
	ewRun(addLoop, out.Data, a.Data, b.Data, 0, 0)
	if tp.needs(a, b) {
		tp.push(addBackward, out, a, b)
	}
	return out
}

func addLoop(dst, a, b []float32, _, _ float32) {
	b = b[:len(a)]
	dst = dst[:len(a)]
	for i, v := range a {
		dst[i] = v + b[i]
	}
}

func addBackward(n *node) {
	for _, in := range n.in[:2] {
		if in.requiresGrad {
			ewRun(accLoop, in.grad(), n.out.Grad, nil, 0, 0)
		}
	}
}

// accLoop: dst += a.
func accLoop(dst, a, _ []float32, _, _ float32) {
	dst = dst[:len(a)]
	for i, v := range a {
		dst[i] += v
	}
}

// accScaledLoop: dst += s * a.
func accScaledLoop(dst, a, _ []float32, s, _ float32) {
	dst = dst[:len(a)]
	for i, v := range a {
		dst[i] += s * v
	}
}

// Sub returns a - b.
// a, b: any shape, the same -> that shape
func Sub(tp *Tape, a, b *Tensor) *Tensor {
	mustSameShape("Sub", a, b)
	if d := deviceOf("Sub", a, b, nil); d != nil {
		return devSub(tp, d, a, b)
	}
	out := tp.alloc(a.Shape...)
	ewRun(subLoop, out.Data, a.Data, b.Data, 0, 0)
	if tp.needs(a, b) {
		tp.push(subBackward, out, a, b)
	}
	return out
}

func subLoop(dst, a, b []float32, _, _ float32) {
	b = b[:len(a)]
	dst = dst[:len(a)]
	for i, v := range a {
		dst[i] = v - b[i]
	}
}

func subBackward(n *node) {
	g := n.out.Grad
	if a := n.in[0]; a.requiresGrad {
		ewRun(accLoop, a.grad(), g, nil, 0, 0)
	}
	if b := n.in[1]; b.requiresGrad {
		ewRun(accScaledLoop, b.grad(), g, nil, -1, 0)
	}
}

// Scale returns s * x.
// x: any shape -> that shape
func Scale(tp *Tape, x *Tensor, s float32) *Tensor {
	if x.dev != nil {
		return devScale(tp, x.dev, x, s)
	}
	out := tp.alloc(x.Shape...)
	ewRun(scaleLoop, out.Data, x.Data, nil, s, 0)
	if tp.needs(x) {
		n := tp.push(scaleBackward, out, x)
		n.floats[0] = s
	}
	return out
}

func scaleLoop(dst, a, _ []float32, s, _ float32) {
	dst = dst[:len(a)]
	for i, v := range a {
		dst[i] = s * v
	}
}

func scaleBackward(n *node) {
	ewRun(accScaledLoop, n.in[0].grad(), n.out.Grad, nil, n.floats[0], 0)
}

// AddScalar returns x + s.
// x: any shape -> that shape
func AddScalar(tp *Tape, x *Tensor, s float32) *Tensor {
	if x.dev != nil {
		return devAddScalar(tp, x.dev, x, s)
	}
	out := tp.alloc(x.Shape...)
	ewRun(addScalarLoop, out.Data, x.Data, nil, s, 0)
	if tp.needs(x) {
		tp.push(addScalarBackward, out, x)
	}
	return out
}

func addScalarLoop(dst, a, _ []float32, s, _ float32) {
	dst = dst[:len(a)]
	for i, v := range a {
		dst[i] = v + s
	}
}

func addScalarBackward(n *node) {
	ewRun(accLoop, n.in[0].grad(), n.out.Grad, nil, 0, 0)
}

// Concat joins a and b along dimension 1 (channels), a first, like torch.cat([a, b], 1).
// a: (N, Ca, ...); b: (N, Cb, ...) with the same trailing dimensions -> (N, Ca+Cb, ...)
func Concat(tp *Tape, a, b *Tensor) *Tensor {
	if !concatCompatible(a, b) {
		panic(fmt.Sprintf("ops: Concat: shapes %v and %v differ outside dimension 1", a.Shape, b.Shape))
	}
	n := a.Shape[0]
	sa, sb := len(a.Data)/max(n, 1), len(b.Data)/max(n, 1) // elements per sample
	var shape [8]int                                       // on the stack: alloc keeps no reference to its shape argument
	copy(shape[:], a.Shape)
	shape[1] += b.Shape[1]
	if d := deviceOf("Concat", a, b, nil); d != nil {
		return devConcat(tp, d, a, b, shape[:len(a.Shape)])
	}
	out := tp.alloc(shape[:len(a.Shape)]...)
	for i := range n {
		o := out.Data[i*(sa+sb):]
		copy(o[:sa], a.Data[i*sa:(i+1)*sa])
		copy(o[sa:sa+sb], b.Data[i*sb:(i+1)*sb])
	}
	if tp.needs(a, b) {
		tp.push(concatBackward, out, a, b)
	}
	return out
}

func concatCompatible(a, b *Tensor) bool {
	if len(a.Shape) < 2 || len(a.Shape) > 8 || len(a.Shape) != len(b.Shape) || a.Shape[0] != b.Shape[0] {
		return false
	}
	for i := 2; i < len(a.Shape); i++ {
		if a.Shape[i] != b.Shape[i] {
			return false
		}
	}
	return true
}

func concatBackward(n *node) {
	a, b, g := n.in[0], n.in[1], n.out.Grad
	ns := a.Shape[0]
	sa, sb := len(a.Data)/max(ns, 1), len(b.Data)/max(ns, 1)
	if a.requiresGrad {
		da := a.grad()
		for i := range ns {
			accLoop(da[i*sa:(i+1)*sa], g[i*(sa+sb):i*(sa+sb)+sa], nil, 0, 0)
		}
	}
	if b.requiresGrad {
		db := b.grad()
		for i := range ns {
			accLoop(db[i*sb:(i+1)*sb], g[i*(sa+sb)+sa:(i+1)*(sa+sb)], nil, 0, 0)
		}
	}
}
