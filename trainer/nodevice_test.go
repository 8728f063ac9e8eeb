//go:build !cuda && !cudaemu

package trainer

import (
	"errors"
	"io"
	"os"
	"strings"
	"testing"
)

// In a build without the cuda tag, --device cuda is refused before anything is made, with an
// error that names the flag and says how to build with CUDA; a device name that does not
// exist is a configuration error naming the flag.
func TestDeviceCUDANeedsTheCUDABuild(t *testing.T) {
	data := writeAligned(t, 2, 32)
	cfg := tinyPix2Pix(data, t.TempDir()+"/run")
	cfg.Device = DeviceCUDA
	_, err := New(cfg, io.Discard)
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "--device cuda") || !strings.Contains(err.Error(), "-tags cuda") {
		t.Fatalf("New(--device cuda) without the cuda tag: %v; want ErrConfig naming --device cuda and -tags cuda", err)
	}
	if _, serr := os.Stat(cfg.Dir); !os.IsNotExist(serr) {
		t.Errorf("a run refused for its device left a run folder (%v)", serr)
	}
	cfg.Device = "tpu"
	if err := cfg.Validate(); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "--device") {
		t.Fatalf("Validate(--device tpu) = %v, want ErrConfig naming --device", err)
	}
}
