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

// faultySync is rank 0's synchronizer in a world of two whose device fails at the first
// synchronization of step failStep (after that call is made): it counts what is handed over
// once the device has failed, which must be nothing.
type faultySync struct {
	tr       *Trainer
	failStep int64
	failed   bool
	after    int // Average and Submit calls made after the fault
	aborted  error
}

func (f *faultySync) call() {
	if f.failed {
		f.after++
		return
	}
	if f.tr.step+1 == f.failStep {
		cuda.InjectFault(f.tr.dev, "test: a kernel faulted")
		f.failed = true
	}
}

func (f *faultySync) Average([][]float32) error   { f.call(); return nil }
func (f *faultySync) Begin(int) error             { f.call(); return nil }
func (f *faultySync) Submit(int, []float32) error { f.call(); return nil }
func (f *faultySync) Wait() error                 { return nil }
func (f *faultySync) Abort(err error)             { f.aborted = err }

// A device that fails in the middle of step 3 (after the step's first synchronization) sends
// nothing more: no Average or Submit follows, an overlapped all-reduce is aborted, the run
// stops with ErrDevice naming --device cuda and step 3, and the checkpoint of step 2 is the
// newest on disk.
func TestDeviceFaultSendsNothing(t *testing.T) {
	cuda.SetEmulatorBlockWidth(1)
	t.Cleanup(func() { cuda.SetEmulatorBlockWidth(256) })
	data := writeAligned(t, 8, 32)
	for _, overlap := range []bool{false, true} {
		t.Run(fmt.Sprintf("overlap=%v", overlap), func(t *testing.T) {
			cfg := tinyPix2Pix(data, t.TempDir())
			cfg.G = models.Spec{Kind: models.ResNet, NBlocks: 1, InputNC: 3, OutputNC: 3, NGF: 4, Norm: models.Batch}
			cfg.Device, cfg.MaxSteps, cfg.CheckpointEvery = DeviceCUDA, 4, 1
			f := &faultySync{failStep: 3}
			tr, err := New(cfg, io.Discard, WithWorld(World{Rank: 0, Size: 2, Sync: f}), WithOverlap(overlap))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tr.Close() })
			f.tr = tr
			runErr := tr.Run(t.Context())
			err = runErr
			if !errors.Is(err, ErrDevice) || !strings.Contains(err.Error(), "--device cuda: step 3") {
				t.Fatalf("Run: %v, want ErrDevice naming --device cuda and step 3", err)
			}
			if errors.Is(err, ErrStepAborted) {
				t.Fatalf("Run: %v: a device fault is not a step to retry", err)
			}
			if !f.failed || f.after != 0 {
				t.Fatalf("fault injected: %v; synchronizer calls after it: %d, want 0", f.failed, f.after)
			}
			if overlap != (f.aborted != nil) {
				t.Fatalf("overlap %v: Abort called with %v", overlap, f.aborted)
			}
			newest, err := LatestCheckpoint(cfg.Dir)
			if err != nil || filepath.Base(newest) != "step-00000002.safetensors" {
				t.Fatalf("newest checkpoint %q (%v), want step 2's", newest, err)
			}
			t.Logf("error: %v; calls after the fault: %d; abort: %v", runErr, f.after, f.aborted)
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
