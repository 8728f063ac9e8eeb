//go:build cuda || cudaemu

package cuda

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"wkd/ops"
)

// tol is the GPU parity tolerance: max|gpu-cpu| / max|cpu|.
const tol = 1e-4

// openDevice opens GPU 0 for one test (the test's goroutine is locked to its thread) or skips
// with the driver's answer when there is no GPU.
func openDevice(t testing.TB) *Device {
	t.Helper()
	n, err := numDevices()
	if err != nil || n == 0 {
		t.Skipf("no GPU answered: %v (devices: %d)", err, n)
	}
	d, err := Open(0)
	if errors.Is(err, ErrNoDevice) {
		t.Skipf("no GPU answered: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("closing the device: %v", err)
		}
	})
	return d
}

func randData(r *rand.Rand, n int) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(r.NormFloat64())
	}
	return out
}

// cpuParam is a CPU tensor holding data that requires gradient.
func cpuParam(data []float32, shape ...int) *ops.Tensor {
	t := ops.FromData(append([]float32(nil), data...), shape...)
	t.SetRequiresGrad(true)
	return t
}

// compare checks got against want with the norm-wise relative error and logs the worst.
func compare(t *testing.T, name string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
	}
	var diff, scale float64
	worst := 0
	for i := range want {
		if d := math.Abs(float64(got[i]) - float64(want[i])); d > diff || math.IsNaN(d) {
			diff, worst = d, i
		}
		scale = max(scale, math.Abs(float64(want[i])))
	}
	rel := diff / max(scale, 1e-30)
	t.Logf("%-28s rel err %.2e (worst at %d: gpu %g cpu %g)", name, rel, worst, got[worst], want[worst])
	if !(rel <= tol) {
		t.Errorf("%s: relative error %.3e > %.0e (at %d: gpu %g, cpu %g)", name, rel, tol, worst, got[worst], want[worst])
	}
}

// plus returns a + b elementwise (the expected value of an accumulating backward).
func plus(a, b []float32) []float32 {
	out := make([]float32, len(a))
	for i := range a {
		out[i] = a[i] + b[i]
	}
	return out
}

// gradPair is a GPU gradient buffer pre-filled with random values (so the test sees += and
// not =) and the values it started from.
type gradPair struct {
	dev  *Tensor
	base []float32
}

func newGrad(d *Device, r *rand.Rand, shape ...int) gradPair {
	base := randData(r, numel(shape))
	return gradPair{dev: d.FromHost(base, shape...), base: base}
}

// check compares the accumulated gradient with base + the CPU gradient.
func (g gradPair) check(t *testing.T, d *Device, name string, cpuGrad []float32) {
	t.Helper()
	compare(t, name, d.ToHost(g.dev), plus(g.base, cpuGrad))
}

func mustOK(t *testing.T, d *Device) {
	t.Helper()
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
}
