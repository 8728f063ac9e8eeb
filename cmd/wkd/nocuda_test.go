//go:build !cuda && !cudaemu

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A binary built without the cuda tag refuses --device cuda, naming the flag and the build
// that has it, before making a run folder.
func TestDeviceCUDANeedsTheCUDABuild(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "run")
	for _, name := range []string{"train", "distill"} {
		err := wkd(name, "--device", "cuda", "--data", dir, "--out", out)
		if err == nil || !strings.Contains(err.Error(), "--device cuda") || !strings.Contains(err.Error(), "go build -tags cuda ./cmd/wkd") {
			t.Errorf("wkd %s --device cuda: %v; want an error naming --device cuda and how to build with CUDA", name, err)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a refused run created its run folder")
	}
	err := runTranslate([]string{"--device", "cuda", "--weights", "g.safetensors", "--input", dir})
	if err == nil || !strings.Contains(err.Error(), "--device cuda") {
		t.Errorf("wkd translate --device cuda: %v; want an error naming --device cuda", err)
	}
}
