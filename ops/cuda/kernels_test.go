package cuda

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
)

// TestKernelsGenerated fails when a kernel source changed after the PTX was generated (the
// embedded PTX would not be the code under review). It needs no GPU and no build tag.
func TestKernelsGenerated(t *testing.T) {
	var names []string
	for _, pat := range []string{"kernels/*.cu", "kernels/*.cuh"} {
		m, err := filepath.Glob(pat)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, m...)
	}
	slices.Sort(names)
	if len(names) == 0 {
		t.Fatal("no kernels/*.cu found")
	}
	h := sha256.New()
	for _, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		h.Write(b)
	}
	got := hex.EncodeToString(h.Sum(nil))
	hdr, err := os.ReadFile("kernels_sum.h")
	if err != nil {
		t.Fatalf("%v: run go generate -tags cuda ./ops/cuda/ (needs nvcc; see kernels/gen.sh)", err)
	}
	m := regexp.MustCompile(`WKD_KERNELS_SHA256 "([0-9a-f]{64})"`).FindSubmatch(hdr)
	if m == nil {
		t.Fatal("kernels_sum.h holds no WKD_KERNELS_SHA256")
	}
	if string(m[1]) != got {
		t.Errorf("kernels/*.cu changed since the PTX was generated (sum %s, sources %s): run go generate -tags cuda ./ops/cuda/", m[1], got)
	}
	for _, name := range names {
		if filepath.Ext(name) != ".cu" {
			continue
		}
		ptx := name[:len(name)-len(".cu")] + ".ptx"
		if _, err := os.Stat(ptx); err != nil {
			t.Errorf("%s has no %s: run go generate -tags cuda ./ops/cuda/", name, ptx)
		}
	}
}
