//go:build cuda || cudaemu

package cuda

import (
	"fmt"
	"unsafe"
)

// Tensor is a float32 array resident on the GPU. Images are (N, C, H, W).
type Tensor struct {
	Shape []int
	ptr   devPtr
	n     int
	// view: ptr points into another allocation (a Bucket's), so Free does not release it.
	view bool
}

// Numel is the number of elements.
func (t *Tensor) Numel() int { return t.n }

// NCHW returns the four dimensions of an image tensor; it panics on another rank.
func (t *Tensor) NCHW() (n, c, h, w int) {
	if len(t.Shape) != 4 {
		panic(fmt.Sprintf("cuda: want an (N, C, H, W) tensor, got shape %v", t.Shape))
	}
	return t.Shape[0], t.Shape[1], t.Shape[2], t.Shape[3]
}

// at returns a view of elements [off, off+n) (one sample of a batch, say).
func (t *Tensor) at(off, n int) *Tensor {
	if off < 0 || off+n > t.n {
		panic(fmt.Sprintf("cuda: view [%d, %d) of a tensor of %d elements", off, off+n, t.n))
	}
	return &Tensor{Shape: []int{n}, ptr: t.ptr + devPtr(4*off), n: n, view: true}
}

func numel(shape []int) int {
	n := 1
	for i, d := range shape {
		if d < 0 {
			panic(fmt.Sprintf("cuda: negative dimension %d at axis %d", d, i))
		}
		n *= d
	}
	return n
}

// NewTensor allocates a zeroed tensor. On a driver error it returns a tensor with no memory
// and the error is in d.Err().
func (d *Device) NewTensor(shape ...int) *Tensor {
	t := &Tensor{Shape: append([]int(nil), shape...), n: numel(shape)}
	if d.err != nil || t.n == 0 {
		return t
	}
	p, err := d.drv.alloc(4 * t.n)
	if err != nil {
		d.setErr(fmt.Sprintf("cuMemAlloc %d bytes", 4*t.n), err)
		return t
	}
	t.ptr = p
	d.Zero(t)
	return t
}

// FromHost allocates a tensor holding a copy of data.
func (d *Device) FromHost(data []float32, shape ...int) *Tensor {
	if numel(shape) != len(data) {
		panic(fmt.Sprintf("cuda: FromHost: %d values for shape %v", len(data), shape))
	}
	t := d.NewTensor(shape...)
	d.Upload(t, data)
	return t
}

// Free releases t's memory (a no-op for nil, views and failed allocations).
func (d *Device) Free(t *Tensor) {
	if t == nil || t.view || t.ptr == 0 {
		return
	}
	if err := d.drv.free(t.ptr); err != nil {
		d.setErr("cuMemFree", err)
	}
	t.ptr = 0
}

// Zero sets every element to 0 (between steps, for gradients).
func (d *Device) Zero(t *Tensor) {
	if d.err != nil || t.n == 0 {
		return
	}
	if err := d.drv.zero(t.ptr, t.n); err != nil {
		d.setErr("cuMemsetD32", err)
	}
}

// Fill sets every element to v.
func (d *Device) Fill(t *Tensor, v float32) {
	d.launch(kFill, t.n, ptrArg(t), floatArg(v), intArg(t.n))
}

// Upload copies src (len t.Numel()) to the device.
func (d *Device) Upload(t *Tensor, src []float32) {
	if len(src) != t.n {
		panic(fmt.Sprintf("cuda: Upload: %d values into shape %v", len(src), t.Shape))
	}
	if d.err != nil || t.n == 0 {
		return
	}
	if err := d.drv.htod(t.ptr, unsafe.Pointer(&src[0]), 4*t.n); err != nil {
		d.setErr("cuMemcpyHtoD", err)
	}
}

// Download copies t to dst (len t.Numel()); it waits for the queued work that writes t.
func (d *Device) Download(dst []float32, t *Tensor) {
	if len(dst) != t.n {
		panic(fmt.Sprintf("cuda: Download: %d values from shape %v", len(dst), t.Shape))
	}
	if d.err != nil || t.n == 0 {
		return
	}
	if err := d.drv.dtoh(unsafe.Pointer(&dst[0]), t.ptr, 4*t.n); err != nil {
		d.setErr("cuMemcpyDtoH", err)
	}
}

// ToHost returns a fresh host copy of t (tests, checkpoints).
func (d *Device) ToHost(t *Tensor) []float32 {
	out := make([]float32, t.n)
	d.Download(out, t)
	return out
}

// Copy copies src to dst on the device (same element count).
func (d *Device) Copy(dst, src *Tensor) {
	mustSameNumel("Copy", dst, src)
	if d.err != nil || src.n == 0 {
		return
	}
	if err := d.drv.dtod(dst.ptr, src.ptr, 4*src.n); err != nil {
		d.setErr("cuMemcpyDtoD", err)
	}
}

// Bucket is one device allocation holding several tensors back to back (a gradient bucket of
// the all-reduce) and a page-locked host mirror of it: ToHost and FromHost move the whole bucket
// in one copy each, at full PCIe speed, instead of one small copy per tensor.
type Bucket struct {
	// Tensors are views into the bucket, in the order of the shapes given to NewBucket.
	Tensors []*Tensor
	// Host is the pinned mirror (len = total elements); valid until FreeBucket.
	Host []float32
	dev  *Tensor
	host unsafe.Pointer
}

// NewBucket allocates a bucket for tensors of the given shapes.
func (d *Device) NewBucket(shapes ...[]int) *Bucket {
	total := 0
	for _, s := range shapes {
		total += numel(s)
	}
	b := &Bucket{dev: d.NewTensor(total)}
	off := 0
	for _, s := range shapes {
		v := b.dev.at(off, numel(s))
		v.Shape = append([]int(nil), s...)
		b.Tensors = append(b.Tensors, v)
		off += v.n
	}
	if d.err != nil || total == 0 {
		return b
	}
	p, err := d.drv.hostAlloc(4 * total)
	if err != nil {
		d.setErr("pinned host buffer", err)
		return b
	}
	b.host = p
	b.Host = unsafe.Slice((*float32)(p), total)
	return b
}

// BucketToHost copies the whole bucket to b.Host in one transfer.
func (d *Device) BucketToHost(b *Bucket) {
	if d.err != nil || b.host == nil {
		return
	}
	if err := d.drv.dtoh(b.host, b.dev.ptr, 4*b.dev.n); err != nil {
		d.setErr("cuMemcpyDtoH (bucket)", err)
	}
}

// BucketFromHost copies b.Host back to the device in one transfer.
func (d *Device) BucketFromHost(b *Bucket) {
	if d.err != nil || b.host == nil {
		return
	}
	if err := d.drv.htod(b.dev.ptr, b.host, 4*b.dev.n); err != nil {
		d.setErr("cuMemcpyHtoD (bucket)", err)
	}
}

// FreeBucket releases the device memory and the pinned host memory.
func (d *Device) FreeBucket(b *Bucket) {
	d.Free(b.dev)
	if b.host != nil {
		if err := d.drv.hostFree(b.host); err != nil {
			d.setErr("cuMemFreeHost", err)
		}
		b.host, b.Host = nil, nil
	}
}

// workspace returns scratch buffer i with at least n elements, growing it when needed.
func (d *Device) workspace(i, n int) *Tensor {
	if w := d.work[i]; w != nil && w.n >= n {
		return w
	}
	d.Free(d.work[i])
	d.work[i] = d.NewTensor(n)
	return d.work[i]
}

func mustSameNumel(op string, a, b *Tensor) {
	if a.n != b.n {
		panic(fmt.Sprintf("cuda: %s: shapes %v and %v differ in size", op, a.Shape, b.Shape))
	}
}

func mustShape(op, what string, t *Tensor, shape ...int) {
	if len(t.Shape) != len(shape) {
		panic(fmt.Sprintf("cuda: %s: %s has shape %v, want %v", op, what, t.Shape, shape))
	}
	for i := range shape {
		if t.Shape[i] != shape[i] {
			panic(fmt.Sprintf("cuda: %s: %s has shape %v, want %v", op, what, t.Shape, shape))
		}
	}
}

func shapeString(s []int) string { return fmt.Sprint(s) }
