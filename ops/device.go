package ops

import (
	"fmt"
	"runtime"
	"sync"
)

// The backend seam. A tensor lives on the host (Data, Grad) or on a Device (its memory is the
// device's, Data and Grad are nil). Every op looks at its inputs: host inputs take the CPU
// kernels of this package exactly as before; device inputs call the Device's kernels and record
// their backward on the same Tape. Mixing the two in one op panics, naming the op: moving a
// tensor is always explicit (MoveTo, CopyFromHost, CopyToHost).
//
// ops does not import any backend. A backend implements Device and registers itself by name
// (wkd/ops/cuda does, in builds with the cuda or cudaemu tag); OpenDevice opens one.

// DeviceMem is one allocation (or a view into one) in a Device's memory; only its Device
// reads it. Len is its size in float32 elements.
type DeviceMem interface{ Len() int }

// Buf is an operand as a device kernel sees it: memory, the element offset into it and the
// shape read there. A Buf with nil Mem is an absent operand (no bias, no gradient wanted).
type Buf struct {
	Mem   DeviceMem
	Off   int
	Shape []int
}

// LossKind names a mean-reduced loss for Device.Loss.
type LossKind int

// The losses a Device computes.
const (
	LossL1 LossKind = iota
	LossMSE
	LossBCEWithLogits
)

// AdamArgs are the per-parameter factors of one Adam update, as Adam.Step computes them.
type AdamArgs struct {
	B1, B2, C1, C2   float32 // beta1, beta2, 1-beta1, 1-beta2
	Eps, WeightDecay float32
	NegStep, BC2Sqrt float32 // -lr/(1-beta1^t), sqrt(1-beta2^t)
}

// Pinned is device memory with a page-locked host mirror of the same length: a gradient bucket
// of the all-reduce crosses the bus in one copy each way.
type Pinned interface {
	Mem() DeviceMem
	// Host is the mirror; valid until Free.
	Host() []float32
	ToHost()
	FromHost()
	Free()
}

// Device is a backend's kernels over its own memory. Forward kernels write their output;
// backward kernels ACCUMULATE into every gradient they are given and skip an absent one (the
// rule of this package). A Device is used from one goroutine (a CUDA context is bound to an
// OS thread); errors are sticky, kept by the device and returned by Err and Sync.
type Device interface {
	Name() string
	Err() error
	// Sync waits for the queued work and returns the first error met.
	Sync() error
	// Close releases the device; its tensors must not be used after.
	Close() error

	// Alloc returns n zeroed elements.
	Alloc(n int) DeviceMem
	Free(m DeviceMem)
	NewPinned(n int) Pinned
	Upload(dst Buf, src []float32)
	Download(dst []float32, src Buf)
	Copy(dst, src Buf)
	Zero(x Buf)
	Fill(x Buf, v float32)
	// AddScalar: x += s everywhere.
	AddScalar(x Buf, s float32)

	Add(out, a, b Buf)
	Axpy(y, x Buf, alpha float32) // y += alpha * x
	Scale(out, x Buf, s float32)
	// Sum: out[0] = alpha * sum(x). SumBackward: dx += alpha * dout[0] everywhere.
	Sum(out, x Buf, alpha float32)
	SumBackward(dx, dout Buf, alpha float32)
	ReLU(y, x Buf)
	ReLUBackward(dx, dy, y Buf)
	LeakyReLU(y, x Buf, slope float32)
	LeakyReLUBackward(dx, dy, x Buf, slope float32)
	Tanh(y, x Buf)
	TanhBackward(dx, dy, y Buf)
	Sigmoid(y, x Buf)
	SigmoidBackward(dx, dy, y Buf)

	Conv2d(out, x, w, b Buf, stride, pad int)
	Conv2dBackward(dx, dw, db, dy, x, w Buf, stride, pad int)
	ConvTranspose2d(out, x, w, b Buf, stride, pad, outPad int)
	ConvTranspose2dBackward(dx, dw, db, dy, x, w Buf, stride, pad, outPad int)
	ReflectionPad2d(y, x Buf, pad int)
	ReflectionPad2dBackward(dx, dy Buf, pad int)
	ZeroPad2d(y, x Buf, pad int)
	ZeroPad2dBackward(dx, dy Buf, pad int)

	// stats: (2*N*C) for instance norm, (3*C) for batch norm, kept for the backward.
	InstanceNorm2d(y, stats, x, gamma, beta Buf, eps float32)
	InstanceNorm2dBackward(dx, dgamma, dbeta, dy, x, stats, gamma Buf)
	BatchNorm2d(y, stats, x, gamma, beta, runMean, runVar Buf, training bool, momentum, eps float32)
	BatchNorm2dBackward(dx, dgamma, dbeta, dy, x, stats, gamma Buf, batchStats bool)

	// One Haar level: x (N, C, H, W) -> ll (N, C, HO, WO), hi (N, C, 3, HO, WO).
	HaarLevel(ll, hi, x Buf)
	HaarLevelBackward(dx, dll, dhi Buf)
	HaarInverseLevel(x, ll, hi Buf)
	HaarInverseLevelBackward(dll, dhi, dx Buf)

	// Loss: out[0] = the mean loss of x against y, or against target when y is absent.
	Loss(kind LossKind, out, x, y Buf, target float32)
	LossBackward(kind LossKind, dx, dy, dloss, x, y Buf, target float32)

	AdamUpdate(p, g, m, v Buf, a AdamArgs)
}

var (
	backendsMu sync.Mutex
	backends   = map[string]func(ordinal int) (Device, error){}
)

// RegisterDevice makes a backend available to OpenDevice under name ("cuda"). Backends call it
// from an init function.
func RegisterDevice(name string, open func(ordinal int) (Device, error)) {
	backendsMu.Lock()
	defer backendsMu.Unlock()
	backends[name] = open
}

// HasBackend reports whether this build registered the named backend.
func HasBackend(name string) bool {
	backendsMu.Lock()
	defer backendsMu.Unlock()
	return backends[name] != nil
}

// OpenDevice opens device ordinal of the named backend; ErrNoBackend when this build has none.
func OpenDevice(name string, ordinal int) (Device, error) {
	backendsMu.Lock()
	open := backends[name]
	backendsMu.Unlock()
	if open == nil {
		return nil, fmt.Errorf("%w: %q", ErrNoBackend, name)
	}
	return open(ordinal)
}

// Device is where the tensor lives: nil for the host.
func (t *Tensor) Device() Device { return t.dev }

// OnDevice reports whether the tensor's memory is a device's.
func (t *Tensor) OnDevice() bool { return t.dev != nil }

// NewOn returns a zeroed tensor on d (the host when d is nil). Its device memory is freed
// when the tensor is garbage collected (at the device's next allocation, on its goroutine).
func NewOn(d Device, shape ...int) *Tensor {
	if d == nil {
		return New(shape...)
	}
	t := &Tensor{Shape: append([]int(nil), shape...), dev: d, dmemCollected: true, gradCell: &gradCell{}}
	t.dmem = devAlloc(d, numel(shape))
	freeWhenUnreachable(t, d, t.dmem)
	runtime.AddCleanup(t, func(c *gradCell) {
		if c.m != nil {
			queueFree(c.d, c.m)
		}
	}, t.gradCell)
	return t
}

// gradCell is the gradient buffer a NewOn tensor owns, kept apart from the tensor so that the
// collector's cleanup can read it without keeping the tensor alive.
type gradCell struct {
	d Device
	m DeviceMem
}

// setGradKeep records m as the tensor's own gradient buffer (nil: none); the caller has freed
// the previous one.
func (t *Tensor) setGradKeep(m DeviceMem) {
	t.dgradKeep = m
	if t.gradCell != nil {
		t.gradCell.d, t.gradCell.m = t.dev, m
	}
}

// NewLike returns a zeroed tensor with t's shape in t's place.
func NewLike(t *Tensor) *Tensor { return NewOn(t.dev, t.Shape...) }

// MoveTo moves the tensor, and its gradient buffer when it has one, to d (nil: the host),
// in place: parameters keep their identity, names and hooks. It panics when the gradient is
// bound to a bucket (BindGrad): the moved tensor would get a private gradient the bucket no
// longer sees. An optimizer's moments stay where they were made: move before NewAdam.
func (t *Tensor) MoveTo(d Device) {
	if t.dev == d {
		return
	}
	if t.gradBound() {
		panic("ops: MoveTo: the gradient of " + t.String() + " is bound to a bucket (BindGrad); moving it would detach it from the bucket: move tensors before binding their gradients")
	}
	n := t.Numel()
	if d == nil {
		data := make([]float32, n)
		t.dev.Download(data, t.buf())
		var grad []float32
		if t.dgrad != nil {
			grad = make([]float32, n)
			t.dev.Download(grad, t.gbuf())
		}
		if !t.dmemCollected && t.owner == nil {
			t.dev.Free(t.dmem)
		}
		if t.dgradKeep != nil {
			t.dev.Free(t.dgradKeep)
		}
		t.setGradKeep(nil)
		t.dev, t.dmem, t.dgrad, t.dmemCollected, t.owner = nil, nil, nil, false, nil
		t.Data, t.Grad = data, grad
		return
	}
	if t.dev != nil {
		t.MoveTo(nil)
	}
	t.dev = d
	t.dmem = devAlloc(d, n)
	d.Upload(t.buf(), t.Data)
	if t.Grad != nil {
		t.setGradKeep(devAlloc(d, n))
		t.dgrad, t.dgradOff = t.dgradKeep, 0
		d.Upload(t.gbuf(), t.Grad)
	}
	t.Data, t.Grad, t.gradBuf = nil, nil, nil
}

// CopyToHost copies the tensor's values into dst (len t.Numel()), from wherever they live.
func (t *Tensor) CopyToHost(dst []float32) {
	if len(dst) != t.Numel() {
		panic(fmt.Sprintf("ops: CopyToHost: %d values from shape %v", len(dst), t.Shape))
	}
	if t.dev == nil {
		copy(dst, t.Data)
		return
	}
	t.dev.Download(dst, t.buf())
}

// HostData returns the values on the host: Data itself for a host tensor, a fresh copy for
// a device one (checkpoints, logs, tests).
func (t *Tensor) HostData() []float32 {
	if t.dev == nil {
		return t.Data
	}
	out := make([]float32, t.Numel())
	t.CopyToHost(out)
	return out
}

// CopyFromHost sets the tensor's values from src (len t.Numel()), wherever it lives.
func (t *Tensor) CopyFromHost(src []float32) {
	if len(src) != t.Numel() {
		panic(fmt.Sprintf("ops: CopyFromHost: %d values into shape %v", len(src), t.Shape))
	}
	if t.dev == nil {
		copy(t.Data, src)
		return
	}
	t.dev.Upload(t.buf(), src)
}

// HostGrad returns the gradient on the host (nil when none flowed): Grad itself, or a copy.
func (t *Tensor) HostGrad() []float32 {
	if t.dev == nil {
		return t.Grad
	}
	if t.dgrad == nil {
		return nil
	}
	out := make([]float32, t.Numel())
	t.dev.Download(out, t.gbuf())
	return out
}

// HasGrad reports whether a gradient buffer exists (on the host or the device).
func (t *Tensor) HasGrad() bool { return t.Grad != nil || t.dgrad != nil }

// CopyData copies src's values into dst (same number of elements), each where it lives.
func CopyData(dst, src *Tensor) {
	if dst.Numel() != src.Numel() {
		panic(fmt.Sprintf("ops: CopyData: shapes %v and %v differ in size", dst.Shape, src.Shape))
	}
	CopyRange(dst, 0, src, 0, src.Numel())
}

// CopyRange copies n elements of src from sOff to dst at dOff, each where it lives (image
// pools move single images within batches).
func CopyRange(dst *Tensor, dOff int, src *Tensor, sOff, n int) {
	if dOff < 0 || sOff < 0 || dOff+n > dst.Numel() || sOff+n > src.Numel() {
		panic(fmt.Sprintf("ops: CopyRange: %d elements at %d of %v from %d of %v", n, dOff, dst.Shape, sOff, src.Shape))
	}
	if n == 0 {
		return
	}
	switch {
	case dst.dev == nil && src.dev == nil:
		copy(dst.Data[dOff:dOff+n], src.Data[sOff:sOff+n])
	case dst.dev == nil:
		src.dev.Download(dst.Data[dOff:dOff+n], Buf{src.dmem, sOff, []int{n}})
	case src.dev == nil:
		dst.dev.Upload(Buf{dst.dmem, dOff, []int{n}}, src.Data[sOff:sOff+n])
	default:
		dst.dev.Copy(Buf{dst.dmem, dOff, []int{n}}, Buf{src.dmem, sOff, []int{n}})
	}
}

// BindGrad makes the gradient of t the t.Numel() elements of m from off (a gradient bucket
// of the all-reduce, so the bucket crosses the bus in one copy), keeping the current values.
// t must be on the device that owns m.
func (t *Tensor) BindGrad(m DeviceMem, off int) {
	if t.dev == nil {
		panic("ops: BindGrad: " + t.String() + " is on the host")
	}
	if t.owner != nil {
		panic("ops: BindGrad: " + t.String() + " is a view (Detach): gradients are bound on the tensors that own their memory")
	}
	dst := Buf{m, off, t.Shape}
	if t.dgrad != nil {
		t.dev.Copy(dst, t.gbuf())
	} else {
		t.dev.Zero(dst)
	}
	if t.dgradKeep != nil {
		t.dev.Free(t.dgradKeep)
	}
	t.dgrad, t.dgradOff = m, off
	t.setGradKeep(nil)
}

// gradBound reports whether the gradient is memory this tensor does not own (BindGrad).
func (t *Tensor) gradBound() bool { return t.dgrad != nil && t.dgrad != t.dgradKeep }

// buf is the tensor's data as a device operand.
func (t *Tensor) buf() Buf { return Buf{Mem: t.dmem, Shape: t.Shape} }

// gbuf is the gradient as a device operand (absent when there is none).
func (t *Tensor) gbuf() Buf { return Buf{Mem: t.dgrad, Off: t.dgradOff, Shape: t.Shape} }

// dgradBuf returns the device gradient, allocating it zeroed on first use.
func (t *Tensor) dgradBuf() Buf {
	if t.dgrad == nil {
		n := t.Numel()
		if t.dgradKeep == nil || t.dgradKeep.Len() < n {
			if t.dgradKeep != nil {
				t.dev.Free(t.dgradKeep)
			}
			t.setGradKeep(devAlloc(t.dev, n))
		}
		t.dgrad, t.dgradOff = t.dgradKeep, 0
		t.dev.Zero(t.gbuf())
	}
	return t.gbuf()
}

// bufOrNil is t's data, or an absent operand for a nil tensor.
func bufOrNil(t *Tensor) Buf {
	if t == nil {
		return Buf{}
	}
	return t.buf()
}

// gradIfWanted is t's gradient (allocated on first use) when t requires one, else absent.
func gradIfWanted(t *Tensor) Buf {
	if t == nil || !t.requiresGrad {
		return Buf{}
	}
	return t.dgradBuf()
}

// deviceOf returns the device of the op's tensors (nil: all on the host), panicking when they
// are in different places. a is never nil; b and c may be.
func deviceOf(op string, a, b, c *Tensor) Device {
	d := a.dev
	if b != nil && b.dev != d || c != nil && c.dev != d {
		panic(fmt.Sprintf("ops: %s: operands on different devices (%s, %s, %s); move them explicitly", op,
			where(a), where(b), where(c)))
	}
	return d
}

func where(t *Tensor) string {
	switch {
	case t == nil:
		return "none"
	case t.dev == nil:
		return "host"
	}
	return t.dev.Name()
}

// freeWhenUnreachable frees m once t is garbage: queued here and freed by the device's owner
// goroutine at its next allocation through the arena (see devFreeQueue), never from the
// collector's goroutine, which holds no device context.
func freeWhenUnreachable(t *Tensor, d Device, m DeviceMem) {
	runtime.AddCleanup(t, func(m DeviceMem) { queueFree(d, m) }, m)
}

// queueFree hands m to d's owner goroutine, which frees it at its next allocation.
func queueFree(d Device, m DeviceMem) {
	devFreeMu.Lock()
	devFreeQueue = append(devFreeQueue, pendingFree{d, m})
	devFreeMu.Unlock()
}

type pendingFree struct {
	d Device
	m DeviceMem
}

var (
	devFreeMu    sync.Mutex
	devFreeQueue []pendingFree
)

// devAlloc allocates on d after freeing what the collector queued for it.
func devAlloc(d Device, n int) DeviceMem {
	devFreeMu.Lock()
	q := devFreeQueue
	devFreeQueue = nil
	devFreeMu.Unlock()
	var keep []pendingFree
	for _, f := range q {
		if f.d == d {
			d.Free(f.m)
		} else {
			keep = append(keep, f)
		}
	}
	if len(keep) > 0 {
		devFreeMu.Lock()
		devFreeQueue = append(devFreeQueue, keep...)
		devFreeMu.Unlock()
	}
	return d.Alloc(n)
}
