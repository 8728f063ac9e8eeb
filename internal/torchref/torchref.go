// Package torchref runs a PyTorch reference script on tensors from a Go test and returns what it
// computed, so every op and network can be compared with PyTorch on identical inputs.
//
// PyTorch is Debian's python3-torch, run with /usr/bin/python3 (override with WKD_TORCH_PYTHON).
// Where it is missing the test fails with an install hint: a parity check never silently skips.
package torchref

import (
	_ "embed"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"wkd/internal/safetensors"
)

//go:embed prelude.py
var prelude string

// Python is the interpreter that has torch.
func Python() string {
	if p := os.Getenv("WKD_TORCH_PYTHON"); p != "" {
		return p
	}
	return "/usr/bin/python3"
}

// Available reports whether torch imports, with the error output when it does not.
func Available() (bool, string) {
	out, err := exec.Command(Python(), "-c", "import torch, numpy").CombinedOutput()
	return err == nil, string(out)
}

// Array is a shaped float32 array passed to or from PyTorch.
type Array = safetensors.Tensor

// Run executes script with the dict I holding the inputs as float32 torch tensors; the script
// puts its results in the dict O. It fails the test if torch is missing or the script fails.
func Run(t testing.TB, script string, inputs map[string]Array) map[string]Array {
	t.Helper()
	if ok, msg := Available(); !ok {
		t.Fatalf("PyTorch reference unavailable (%s): install Debian's python3-torch (apt-get install python3-torch) or set WKD_TORCH_PYTHON\n%s", Python(), msg)
	}
	dir := t.TempDir()
	in := filepath.Join(dir, "in.safetensors")
	out := filepath.Join(dir, "out.safetensors")
	pre := filepath.Join(dir, "prelude.py")
	src := filepath.Join(dir, "reference.py")
	if err := safetensors.WriteFile(in, inputs, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pre, []byte(prelude), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(Python(), pre, in, out, src)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("PyTorch reference failed: %v\n%s\nscript:\n%s", err, b, script)
	}
	res, _, err := safetensors.Read(out)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// RelErr is the worst absolute difference divided by the largest magnitude of want: a
// norm-wise relative error that stays meaningful where want crosses zero.
func RelErr(got, want []float32) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var maxDiff, maxWant float64
	for i := range want {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if math.IsNaN(d) {
			return math.Inf(1)
		}
		maxDiff = math.Max(maxDiff, d)
		maxWant = math.Max(maxWant, math.Abs(float64(want[i])))
	}
	if maxWant == 0 {
		return maxDiff
	}
	return maxDiff / maxWant
}

// Compare checks got against want by name with RelErr <= tol, logs the worst error of each
// and fails the test on any above tol. It returns the worst error over all names.
func Compare(t testing.TB, tol float64, got map[string][]float32, want map[string]Array) float64 {
	t.Helper()
	worst := 0.0
	for name, g := range got {
		w, ok := want[name]
		if !ok {
			t.Errorf("reference produced no %q", name)
			continue
		}
		e := RelErr(g, w.Data)
		worst = math.Max(worst, e)
		if e > tol {
			t.Errorf("%s: relative error %.3g > %.0e (len %d vs %d)", name, e, tol, len(g), len(w.Data))
		}
	}
	t.Logf("worst relative error vs PyTorch over %d tensors: %.3g", len(got), worst)
	return worst
}

// Of converts a shape and data into an Array.
func Of(data []float32, shape ...int) Array {
	n := 1
	for _, d := range shape {
		n *= d
	}
	if n != len(data) {
		panic(fmt.Sprintf("torchref: %d values for shape %v", len(data), shape))
	}
	return Array{Shape: append([]int(nil), shape...), Data: data}
}

// Haar is Python that defines dwt(x, J), dwt_separable(x, J) and idwt(ll, highs): the J-level
// Haar DWT of pytorch_wavelets (wave 'haar', mode 'zero') and its inverse, built from strided
// convolutions rather than from wkd's formulas, for reference scripts to prepend.
//
//go:embed haar.py
var Haar string
