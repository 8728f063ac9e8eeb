//go:build cudaemu && !cuda

package trainer

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"wkd/models"
	"wkd/ops/cuda"
)

// countingSync is rank 0's synchronizer in a world of two: it counts what it is handed
// (Average and Submit calls) per step, and records an Abort.
type countingSync struct {
	tr      *Trainer
	sent    map[int64]int // step -> calls that handed values over
	aborted error
}

func (c *countingSync) count() error              { c.sent[c.tr.step+1]++; return nil }
func (c *countingSync) Average([][]float32) error { return c.count() }
func (c *countingSync) Begin(int) error           { return nil }
func (c *countingSync) Submit(int, []float32) error {
	return c.count()
}
func (c *countingSync) Wait() error     { return nil }
func (c *countingSync) Abort(err error) { c.aborted = err }

// A device that fails after step 2 (as a fault of step 3's asynchronous kernels shows) sends
// nothing of step 3: no Average or Submit (its pinned mirrors still hold step 2's gradients),
// an overlapped all-reduce is aborted on every peer, and the run stops with ErrDevice naming
// --device cuda and step 3, not ErrStepAborted (there is nothing to retry), writing no
// checkpoint.
func TestDeviceFaultSendsNothing(t *testing.T) {
	cuda.SetEmulatorBlockWidth(1)
	t.Cleanup(func() { cuda.SetEmulatorBlockWidth(256) })
	data := writeAligned(t, 8, 32)
	for _, overlap := range []bool{false, true} {
		t.Run(fmt.Sprintf("overlap=%v", overlap), func(t *testing.T) {
			cfg := tinyPix2Pix(data, t.TempDir())
			cfg.G = models.Spec{Kind: models.ResNet, NBlocks: 1, InputNC: 3, OutputNC: 3, NGF: 4, Norm: models.Batch}
			cfg.Device, cfg.MaxSteps, cfg.CheckpointEvery = DeviceCUDA, 4, 100
			c := &countingSync{sent: map[int64]int{}}
			var tr *Trainer
			tr, err := New(cfg, io.Discard, WithWorld(World{Rank: 0, Size: 2, Sync: c}), WithOverlap(overlap),
				WithObserver(func(r StepReport) {
					if r.Step == 2 {
						cuda.InjectFault(tr.dev, "test: a kernel faulted")
					}
				}))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tr.Close() })
			c.tr = tr
			err = tr.Run(t.Context())
			if !errors.Is(err, ErrDevice) || !strings.Contains(err.Error(), "--device cuda: step 3") {
				t.Fatalf("Run: %v, want ErrDevice naming --device cuda and step 3", err)
			}
			if errors.Is(err, ErrStepAborted) {
				t.Fatalf("Run: %v: a device fault is not a step to retry", err)
			}
			if c.sent[2] == 0 || c.sent[3] != 0 || c.sent[4] != 0 {
				t.Fatalf("calls handing values over: %d in step 2, %d in step 3, %d in step 4 (want some, 0, 0)", c.sent[2], c.sent[3], c.sent[4])
			}
			if overlap != (c.aborted != nil) {
				t.Fatalf("overlap %v: Abort called with %v", overlap, c.aborted)
			}
			if all, _ := listCheckpoints(cfg.Dir); len(all) != 0 {
				t.Fatalf("checkpoints written: %v", all)
			}
			t.Logf("calls in step 2: %d, in step 3: %d; abort: %v; error: %v", c.sent[2], c.sent[3], c.aborted, err)
		})
	}
}

// A device that fails between steps leaves no checkpoint of zeros: the checkpoint of step 2
// is refused with an error naming the file, --device cuda and the step, the one of step 1
// survives although only one is kept, and no final generator is written.
func TestDeviceFaultWritesNoCheckpoint(t *testing.T) {
	cuda.SetEmulatorBlockWidth(1)
	t.Cleanup(func() { cuda.SetEmulatorBlockWidth(256) })
	cfg := tinyPix2Pix(writeAligned(t, 4, 32), t.TempDir())
	cfg.G = models.Spec{Kind: models.ResNet, NBlocks: 1, InputNC: 3, OutputNC: 3, NGF: 4, Norm: models.Batch}
	cfg.Device, cfg.MaxSteps, cfg.CheckpointEvery, cfg.KeepCheckpoints = DeviceCUDA, 3, 1, 1
	var tr *Trainer
	tr, err := New(cfg, io.Discard, WithObserver(func(r StepReport) {
		if r.Step == 2 {
			cuda.InjectFault(tr.dev, "test: a kernel faulted")
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	err = tr.Run(t.Context())
	if !errors.Is(err, ErrDevice) || !strings.Contains(err.Error(), "step-00000002.safetensors not written") ||
		!strings.Contains(err.Error(), "--device cuda: step 2") {
		t.Fatalf("Run: %v, want ErrDevice naming the checkpoint, --device cuda and step 2", err)
	}
	all, _ := listCheckpoints(cfg.Dir)
	if len(all) != 1 || filepath.Base(all[0]) != "step-00000001.safetensors" {
		t.Fatalf("checkpoints %v, want step 1's alone", all)
	}
	if _, _, err := readCheckpoint(all[0]); err != nil {
		t.Fatalf("the surviving checkpoint: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.Dir, "G.safetensors")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("G.safetensors: %v, want none written", err)
	}
	t.Logf("error: %v", err)
}

// A resume whose uploads fail (the device failed) says so, naming --device cuda and the
// checkpoint file.
func TestDeviceFaultResumeNamesTheCheckpoint(t *testing.T) {
	cuda.SetEmulatorBlockWidth(1)
	t.Cleanup(func() { cuda.SetEmulatorBlockWidth(256) })
	cfg := tinyPix2Pix(writeAligned(t, 4, 32), t.TempDir())
	cfg.G = models.Spec{Kind: models.ResNet, NBlocks: 1, InputNC: 3, OutputNC: 3, NGF: 4, Norm: models.Batch}
	cfg.Device = DeviceCUDA
	runFor(t, cfg, 1, false)
	path, err := LatestCheckpoint(cfg.Dir)
	if err != nil || path == "" {
		t.Fatalf("no checkpoint after one step: %v", err)
	}
	tr, err := New(cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	cuda.InjectFault(tr.dev, "test: a kernel faulted")
	err = tr.Resume(path)
	if !errors.Is(err, ErrDevice) || !strings.Contains(err.Error(), "--device cuda: loading "+path) {
		t.Fatalf("Resume on a failed device: %v, want ErrDevice naming --device cuda and %s", err, path)
	}
	t.Logf("error: %v", err)
}
