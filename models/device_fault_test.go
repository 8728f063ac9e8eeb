//go:build cudaemu && !cuda

package models

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"wkd/ops"
	"wkd/ops/cuda"
)

// Save refuses to write the weights of a network on a failed device (its downloads did
// nothing, so the file would hold zeros), naming the file; no file is left.
func TestDeviceFaultSavesNothing(t *testing.T) {
	cuda.SetEmulatorBlockWidth(1)
	t.Cleanup(func() { cuda.SetEmulatorBlockWidth(256) })
	dev, err := ops.OpenDevice("cuda", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close() // returns the injected fault
	m, err := Build(Spec{Kind: PatchGAN, InputNC: 6, NDF: 4, Norm: Batch})
	if err != nil {
		t.Fatal(err)
	}
	MoveTo(m, dev)
	cuda.InjectFault(dev, "test: a kernel faulted")
	path := filepath.Join(t.TempDir(), "D.safetensors")
	err = Save(path, m, nil)
	if err == nil || !strings.Contains(err.Error(), path+" not written") {
		t.Fatalf("Save on a failed device: %v, want an error naming %s", err, path)
	}
	if _, serr := os.Stat(path); !errors.Is(serr, os.ErrNotExist) {
		t.Fatalf("%s: %v, want no file", path, serr)
	}
	t.Logf("error: %v", err)
}
