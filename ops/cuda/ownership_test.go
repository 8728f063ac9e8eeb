//go:build cuda || cudaemu

package cuda

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"

	"wkd/ops"
)

// countingDevice counts the frees of the device it wraps.
type countingDevice struct {
	ops.Device
	frees int
}

func (c *countingDevice) Free(m ops.DeviceMem) { c.frees++; c.Device.Free(m) }

// panicMessage runs f and returns what it panicked with ("" when it did not).
func panicMessage(f func()) (msg string) {
	defer func() {
		if r := recover(); r != nil {
			msg = fmt.Sprint(r)
		}
	}()
	f()
	return ""
}

// A view of a device tensor (Tape.Detach) keeps its owner alive: with the owner unreachable
// and collected, nothing is freed and the view still reads the owner's values. Moving the view
// to the host frees nothing either, and binding a gradient to it is refused; after the tape's
// Reset the view lets go and the owner's memory is freed once.
func TestDeviceViewKeepsItsOwner(t *testing.T) {
	dev := &countingDevice{Device: openDevice(t).Backend()}
	want := []float32{1, 2, 3, 4, 5, 6}
	tp := ops.NewTape()
	v := func() *ops.Tensor {
		x := ops.NewOn(dev, 1, 1, 2, 3)
		x.CopyFromHost(want)
		return tp.Detach(x)
	}()
	collect := func() {
		for range 3 {
			runtime.GC()
		}
		ops.NewOn(dev, 1) // frees what the collector queued for dev
	}
	collect()
	if got := v.HostData(); dev.frees != 0 || !slices.Equal(got, want) {
		t.Fatalf("owner unreachable: %d frees, the view reads %v (want 0 and %v)", dev.frees, got, want)
	}
	if msg := panicMessage(func() { v.BindGrad(dev.Alloc(6), 0) }); !strings.Contains(msg, "view") {
		t.Fatalf("BindGrad on a view: panic %q, want one saying it is a view", msg)
	}
	w := tp.Detach(v) // a view of a view shares the same owner
	w.MoveTo(nil)
	if dev.frees != 0 || !slices.Equal(w.Data, want) || !slices.Equal(v.HostData(), want) {
		t.Fatalf("a view moved to the host: %d frees, values %v and %v", dev.frees, w.Data, v.HostData())
	}
	tp.Reset()
	v = nil
	for i := 0; i < 100 && dev.frees < 2; i++ { // cleanups run on their own goroutine
		collect()
	}
	if dev.frees != 2 { // the owner's memory, and the scratch tensor of the first collect
		t.Fatalf("after Reset: %d frees, want 2", dev.frees)
	}
}

// A parameter whose gradient is bound to a bucket refuses to move (it would get a private
// gradient the bucket no longer sees), and an Adam made on the device refuses to step a
// parameter moved off it after, each with a panic that says why.
func TestDeviceOwnershipGuards(t *testing.T) {
	dev := openDevice(t).Backend()
	p := ops.NewOn(dev, 4)
	p.SetRequiresGrad(true)
	bucket := dev.NewPinned(8)
	defer bucket.Free()
	p.BindGrad(bucket.Mem(), 4)
	if msg := panicMessage(func() { p.MoveTo(nil) }); !strings.Contains(msg, "BindGrad") {
		t.Fatalf("MoveTo of a bound parameter: panic %q, want one naming BindGrad", msg)
	}
	if !p.OnDevice() {
		t.Fatal("the refused move moved the parameter")
	}
	q := ops.NewOn(dev, 4)
	q.SetRequiresGrad(true)
	opt := ops.NewAdam([]ops.ParamGroup{{Params: []*ops.Tensor{q}}}, ops.DefaultAdamConfig())
	q.MoveTo(nil)
	if msg := panicMessage(opt.Step); !strings.Contains(msg, "NewAdam") {
		t.Fatalf("Step after moving a parameter off the device: panic %q, want one naming NewAdam", msg)
	}
}

// A NewOn tensor that was given a gradient frees both its data and its gradient once it is
// garbage; before, only the data went back and the gradient's device memory leaked.
func TestCollectedTensorFreesItsGradient(t *testing.T) {
	dev := &countingDevice{Device: openDevice(t).Backend()}
	func() {
		x := ops.NewOn(dev, 1, 1, 2, 3)
		x.SetRequiresGrad(true)
		if !x.HasGrad() {
			t.Fatal("SetRequiresGrad gave the device tensor no gradient")
		}
	}()
	for range 3 {
		runtime.GC()
	}
	ops.NewOn(dev, 1) // frees what the collector queued for dev
	if dev.frees != 2 {
		t.Fatalf("%d frees after the tensor was collected, want 2 (data and gradient)", dev.frees)
	}
}
