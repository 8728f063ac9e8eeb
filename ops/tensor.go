package ops

import (
	"fmt"
	"math"
)

// Tensor is a float32 array with a shape. Images are (N, C, H, W).
type Tensor struct {
	Shape []int
	Data  []float32
	// Grad is the gradient of the loss with respect to Data; nil until one flows here.
	Grad []float32
	// Name is set on parameters and used for checkpoints ("model.1.weight").
	Name string

	requiresGrad bool
	// gradBuf keeps the capacity of an arena tensor's gradient across steps.
	gradBuf []float32
	// pendingUses counts the recorded ops reading this tensor whose backward has not run yet;
	// kept only for tensors with an onReady hook (parameters whose gradients are communicated).
	pendingUses int32
	onReady     func()

	// On a Device (see device.go): the data, and the gradient at dgradOff in dgrad (its own
	// buffer dgradKeep, or a gradient bucket's memory). Data and Grad are then nil.
	dev       Device
	dmem      DeviceMem
	dgrad     DeviceMem
	dgradOff  int
	dgradKeep DeviceMem
	// dmemCollected: dmem is freed by the collector's cleanup (NewOn), never explicitly.
	dmemCollected bool
	// gradCell (NewOn tensors) tells the collector's cleanup which gradient buffer is this
	// tensor's own, so a collected tensor frees its gradient as well as its data.
	gradCell *gradCell
	// owner is set on a view (Tape.Detach of a device tensor): the tensor whose dmem this one
	// shares. The reference keeps the owner, and so its memory, alive as long as the view;
	// a view never frees dmem.
	owner *Tensor
}

// SetGradReady registers fn to run during a backward pass as soon as this tensor's gradient is
// complete: when every recorded op that reads it has run its backward. It lets gradient
// communication start while backward is still running. fn runs on the goroutine that calls
// Backward and must not block for long; nil removes the hook.
func (t *Tensor) SetGradReady(fn func()) {
	t.onReady = fn
	t.pendingUses = 0
}

// PendingUses is how many recorded ops read this tensor and have not run their backward:
// nonzero after a backward pass only for a tensor some of whose readers it did not reach.
// Counted only for tensors with a SetGradReady hook.
func (t *Tensor) PendingUses() int { return int(t.pendingUses) }

// ClearPendingUses forgets the count, for a step that ends with readers never backpropagated.
func (t *Tensor) ClearPendingUses() { t.pendingUses = 0 }

// New returns a zeroed heap tensor.
func New(shape ...int) *Tensor {
	n := numel(shape)
	return &Tensor{Shape: append([]int(nil), shape...), Data: make([]float32, n)}
}

// FromData wraps data (not copied) in a tensor of the given shape.
func FromData(data []float32, shape ...int) *Tensor {
	if numel(shape) != len(data) {
		panic(fmt.Sprintf("ops: FromData: %d values for shape %v", len(data), shape))
	}
	return &Tensor{Shape: append([]int(nil), shape...), Data: data}
}

// NewParam returns a zeroed tensor that requires gradient, with its gradient buffer allocated.
func NewParam(name string, shape ...int) *Tensor {
	t := New(shape...)
	t.Name = name
	t.requiresGrad = true
	t.Grad = make([]float32, len(t.Data))
	return t
}

func numel(shape []int) int {
	n := 1
	for i, d := range shape {
		if d < 0 {
			// Name the axis, not the shape: formatting the slice would make every caller's
			// variadic shape escape to the heap.
			panic(fmt.Sprintf("ops: negative dimension %d at axis %d", d, i))
		}
		n *= d
	}
	return n
}

// Numel is the number of elements.
func (t *Tensor) Numel() int {
	if t.dev != nil {
		return numel(t.Shape)
	}
	return len(t.Data)
}

// Dims is the number of dimensions.
func (t *Tensor) Dims() int { return len(t.Shape) }

// NCHW returns the four dimensions of an image tensor; it panics on another rank.
func (t *Tensor) NCHW() (n, c, h, w int) {
	if len(t.Shape) != 4 {
		panic(fmt.Sprintf("ops: want an (N, C, H, W) tensor, got shape %v", t.Shape))
	}
	return t.Shape[0], t.Shape[1], t.Shape[2], t.Shape[3]
}

// RequiresGrad says whether gradients flow to this tensor.
func (t *Tensor) RequiresGrad() bool { return t.requiresGrad }

// SetRequiresGrad marks a tensor as one gradients flow to (a parameter, or an input under
// test), allocating its gradient buffer on first use. Turning it off keeps the buffer, so
// freezing a discriminator for the generator's update and thawing it again costs nothing.
func (t *Tensor) SetRequiresGrad(on bool) {
	t.requiresGrad = on
	if on && t.dev != nil {
		t.dgradBuf()
		return
	}
	if on && t.Grad == nil {
		t.Grad = make([]float32, len(t.Data))
	}
}

// DropGrad turns gradients off and frees the buffer (a frozen teacher).
func (t *Tensor) DropGrad() {
	t.requiresGrad = false
	t.Grad = nil
	if t.dev != nil && t.dgradKeep != nil {
		t.dev.Free(t.dgradKeep)
	}
	t.dgrad = nil
	t.setGradKeep(nil)
}

// ZeroGrad sets the gradient to zero, keeping its buffer.
func (t *Tensor) ZeroGrad() {
	if t.dgrad != nil {
		t.dev.Zero(t.gbuf())
	}
	clear(t.Grad)
}

// grad returns the gradient buffer, allocating it zeroed on first use.
func (t *Tensor) grad() []float32 {
	if t.Grad == nil {
		n := len(t.Data)
		if cap(t.gradBuf) < n {
			t.gradBuf = make([]float32, n)
		}
		t.Grad = t.gradBuf[:n]
		clear(t.Grad)
	}
	return t.Grad
}

// SameShape reports whether two tensors have the same shape.
func SameShape(a, b *Tensor) bool {
	if len(a.Shape) != len(b.Shape) {
		return false
	}
	for i := range a.Shape {
		if a.Shape[i] != b.Shape[i] {
			return false
		}
	}
	return true
}

func mustSameShape(op string, a, b *Tensor) {
	if !SameShape(a, b) {
		panic(fmt.Sprintf("ops: %s: shapes differ: %v and %v", op, a.Shape, b.Shape))
	}
}

// Clone returns a heap copy of the data (not the gradient), in the same place.
func (t *Tensor) Clone() *Tensor {
	if t.dev != nil {
		c := NewLike(t)
		CopyData(c, t)
		c.Name = t.Name
		return c
	}
	c := New(t.Shape...)
	copy(c.Data, t.Data)
	c.Name = t.Name
	return c
}

// Fill sets every element to v.
func (t *Tensor) Fill(v float32) {
	if t.dev != nil {
		t.dev.Fill(t.buf(), v)
		return
	}
	for i := range t.Data {
		t.Data[i] = v
	}
}

// AllFinite reports whether no element is NaN or infinite.
func (t *Tensor) AllFinite() bool {
	for _, v := range t.HostData() {
		f := float64(v)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return false
		}
	}
	return true
}

func (t *Tensor) String() string {
	return fmt.Sprintf("Tensor%v", t.Shape)
}
