//go:build cuda || cudaemu

package trainer

import (
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"wkd/internal/torchref"
	"wkd/models"
	"wkd/ops/cuda" // registers the "cuda" backend (the host emulator under cudaemu)
)

// The same WKD distillation run (pix2pix, a ResNet student learning from a frozen ResNet
// teacher's Haar bands, PatchGAN, batch norm in both) on --device cpu and --device cuda: the
// logged losses of every step and the final weights, BatchNorm statistics included, must agree
// within 1e-4 relative (max|a-b| / max|b| per tensor), the per-kernel tolerance. Under cudaemu
// the CUDA side is the kernels' sources on the host emulator; scripts/device-check.sh runs these
// tests on a GPU.
//
//	go test -tags cudaemu -run Device ./trainer

func TestDeviceDistillationMatchesCPU(t *testing.T) {
	cuda.SetEmulatorBlockWidth(1) // a whole run; the 256-thread kernels are ops/cuda's tests
	t.Cleanup(func() { cuda.SetEmulatorBlockWidth(256) })
	data := writeAligned(t, 4, 32)
	tiny := func(dir string) Config {
		c := tinyPix2Pix(data, dir)
		c.G = models.Spec{Kind: models.ResNet, NBlocks: 2, InputNC: 3, OutputNC: 3, NGF: 8, Norm: models.Batch}
		c.CheckpointEvery = 100
		return c
	}
	teacherDir := t.TempDir()
	runFor(t, tiny(teacherDir), 2, false)
	cfg := tiny(t.TempDir())
	cfg.G.NGF = 4
	cfg.Teacher, cfg.KD, cfg.Alpha, cfg.Levels, cfg.KDLoss = teacherDir, KDWavelet, 10, 3, L1
	cfg.MaxSteps = 4
	cpu, gpu := compareDevices(t, cfg, "KD")
	if !gpu.teacherA.Params()[0].OnDevice() || cpu.teacherA.Params()[0].OnDevice() {
		t.Fatal("the teacher is not where its student is")
	}
}

// CycleGAN with instance norm, the identity loss and an image pool of 3 at batch 1: from the
// fourth step on, the pool swaps images on the device as it does on the host.
func TestDeviceCycleGANMatchesCPU(t *testing.T) {
	cuda.SetEmulatorBlockWidth(1)
	t.Cleanup(func() { cuda.SetEmulatorBlockWidth(256) })
	cfg := tinyCycleGAN(writeUnaligned(t, 6, 16), t.TempDir())
	cfg.MaxSteps, cfg.CheckpointEvery = 6, 100
	cpu, gpu := compareDevices(t, cfg, "idt_A")
	if gpu.poolA.Len() != 3 || cpu.poolA.Len() != 3 || !gpu.poolA.images[0].OnDevice() {
		t.Fatalf("pools: %d images on cpu, %d on cuda (want 3, full, on the device)", cpu.poolA.Len(), gpu.poolA.Len())
	}
}

// compareDevices runs cfg on --device cpu and --device cuda and fails unless every step's
// logged losses (among them one named mustLog, positive) and the final state of every network
// agree within 1e-4 relative. The biases an instance norm follows (models.InertBiases) are
// left out of the weights: their exact gradient is zero and the computed one rounding noise
// that Adam turns into steps of about lr, different for any two summation orders.
func compareDevices(t *testing.T, cfg Config, mustLog string) (cpu, gpu *Trainer) {
	t.Helper()
	const tol = 1e-4
	run := func(device string) (*Trainer, [][]Loss) {
		c := cfg
		c.Device, c.Dir = device, t.TempDir()
		var losses [][]Loss
		tr, err := New(c, io.Discard, WithObserver(func(r StepReport) { losses = append(losses, r.Losses) }))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := tr.Close(); err != nil {
				t.Error(err)
			}
		})
		if err := tr.Run(t.Context()); err != nil {
			t.Fatalf("--device %s: %v", device, err)
		}
		return tr, losses
	}
	cpu, lc := run(DeviceCPU)
	gpu, lg := run(DeviceCUDA)
	if gpu.dev == nil || !gpu.gA.Params()[0].OnDevice() || !gpu.dA.Params()[0].OnDevice() {
		t.Fatal("--device cuda left the networks on the host")
	}
	if len(lc) != cfg.MaxSteps || len(lg) != cfg.MaxSteps {
		t.Fatalf("steps reported: %d on cpu, %d on cuda, want %d", len(lc), len(lg), cfg.MaxSteps)
	}
	worstLoss, logged := 0.0, false
	for s := range lc {
		if len(lg[s]) != len(lc[s]) {
			t.Fatalf("step %d: %d losses on cuda, %d on cpu", s+1, len(lg[s]), len(lc[s]))
		}
		for i, l := range lc[s] {
			g := lg[s][i]
			if g.Name != l.Name {
				t.Fatalf("step %d: loss %d is %s on cuda, %s on cpu", s+1, i, g.Name, l.Name)
			}
			logged = logged || l.Name == mustLog && l.Value > 0
			e := math.Abs(g.Value-l.Value) / math.Max(math.Abs(l.Value), 1e-6)
			worstLoss = math.Max(worstLoss, e)
			if !(e <= tol) {
				t.Errorf("step %d: %s = %.7g on cuda, %.7g on cpu (rel %.2g)", s+1, l.Name, g.Value, l.Value, e)
			}
		}
	}
	if !logged {
		t.Fatalf("no positive %s loss logged: the run does not exercise what the test is for", mustLog)
	}
	worstWeight, worstName, compared := 0.0, "", 0
	nc, ng := cpu.nets(), gpu.nets()
	for i := range nc {
		inert := map[string]bool{}
		for _, n := range models.InertBiases(nc[i].net) {
			inert[n] = true
		}
		sc, sg := nc[i].net.State(), ng[i].net.State()
		for j := range sc {
			if inert[sc[j].Name] {
				continue
			}
			compared++
			e := torchref.RelErr(sg[j].HostData(), sc[j].HostData())
			if e > worstWeight {
				worstWeight, worstName = e, nc[i].name+"/"+sc[j].Name
			}
			if !(e <= tol) {
				t.Errorf("%s/%s after %d steps: cuda differs from cpu by %.3g relative", nc[i].name, sc[j].Name, cfg.MaxSteps, e)
			}
		}
	}
	t.Logf("%d steps: worst loss rel err %.2e, worst weight rel err %.2e (%s) over %d tensors",
		cfg.MaxSteps, worstLoss, worstWeight, worstName, compared)
	return cpu, gpu
}

// shiftSync is the synchronizer of a world whose other replicas make every average x/2 + 1/4:
// it changes the values in place, so a device that did not copy the averages back from its
// pinned mirrors ends elsewhere than the CPU. It records, in order, what it is handed (before
// the change), one entry per call (or per bucket), and the length of every slice it gets: the
// framing the all-reduce sees, which must be the same on every replica of a cluster.
type shiftSync struct {
	got  [][]float32
	lens [][]int
}

func (e *shiftSync) record(values ...[]float32) {
	var all []float32
	var lens []int
	for _, v := range values {
		all = append(all, v...)
		lens = append(lens, len(v))
		for i := range v {
			v[i] = v[i]*0.5 + 0.25
		}
	}
	e.got, e.lens = append(e.got, all), append(e.lens, lens)
}

func (e *shiftSync) Average(values [][]float32) error { e.record(values...); return nil }

type shiftBuckets struct{ shiftSync }

func (e *shiftBuckets) Begin(int) error                    { return nil }
func (e *shiftBuckets) Submit(_ int, data []float32) error { e.record(data); return nil }
func (e *shiftBuckets) Wait() error                        { return nil }

// As rank 0 of two, with a global batch of 3 (a share of 2: gradients weighted by 4/3), the
// device's gradients reach the synchronizer through its pinned buckets, whole groups or bucket
// by bucket during backward, and the changed averages come back: what it is handed is framed
// as the CPU frames it (the same slices, of the same lengths, in the same order: a mixed cpu
// and cuda cluster agrees), its values and the weights after each run match the CPU's within
// 1e-4 relative. Snapshots for rollback are taken every step.
// Not parallel: it shrinks the package's bucket size.
func TestDeviceGradientBucketsMatchCPU(t *testing.T) {
	const tol = 1e-4
	cuda.SetEmulatorBlockWidth(1)
	t.Cleanup(func() { cuda.SetEmulatorBlockWidth(256) })
	data := writeAligned(t, 6, 32)
	// Buckets of at most 512 values: several per network, parameters split across them.
	was := bucketFloats
	bucketFloats = 512
	t.Cleanup(func() { bucketFloats = was })
	for _, overlap := range []bool{false, true} {
		t.Run(fmt.Sprintf("overlap=%v", overlap), func(t *testing.T) {
			run := func(device string) (*Trainer, *shiftSync) {
				cfg := tinyPix2Pix(data, t.TempDir())
				cfg.G = models.Spec{Kind: models.ResNet, NBlocks: 1, InputNC: 3, OutputNC: 3, NGF: 4, Norm: models.Batch}
				cfg.BatchSize, cfg.MaxSteps, cfg.Device = 3, 2, device
				var s GradSync
				var rec *shiftSync
				if overlap {
					b := &shiftBuckets{}
					s, rec = b, &b.shiftSync
				} else {
					rec = &shiftSync{}
					s = rec
				}
				tr, err := New(cfg, io.Discard, WithWorld(World{Rank: 0, Size: 2, Sync: s}), WithOverlap(overlap))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { tr.Close() })
				if err := tr.Run(t.Context()); err != nil {
					t.Fatalf("--device %s: %v", device, err)
				}
				return tr, rec
			}
			cpu, rc := run(DeviceCPU)
			gpu, rg := run(DeviceCUDA)
			gc, gg := rc.got, rg.got
			if len(gc) == 0 || len(gc) != len(gg) {
				t.Fatalf("synchronizer calls: %d on cpu, %d on cuda", len(gc), len(gg))
			}
			framed := 0
			for i := range rc.lens {
				if !reflect.DeepEqual(rc.lens[i], rg.lens[i]) {
					t.Fatalf("call %d: slices of lengths %v from cuda, %v from cpu", i, rg.lens[i], rc.lens[i])
				}
				framed += len(rc.lens[i])
			}
			worst := 0.0
			for i := range gc {
				if len(gc[i]) != len(gg[i]) {
					t.Fatalf("call %d: %d values from cpu, %d from cuda", i, len(gc[i]), len(gg[i]))
				}
				e := torchref.RelErr(gg[i], gc[i])
				worst = math.Max(worst, e)
				if !(e <= tol) {
					t.Errorf("call %d (%d values): cuda sent values %.3g relative from cpu's", i, len(gc[i]), e)
				}
			}
			nc, ng := cpu.nets(), gpu.nets()
			for i := range nc {
				sc, sg := nc[i].net.State(), ng[i].net.State()
				for j := range sc {
					if e := torchref.RelErr(sg[j].HostData(), sc[j].HostData()); !(e <= tol) {
						t.Errorf("%s/%s: cuda differs from cpu by %.3g relative", nc[i].name, sc[j].Name, e)
					}
				}
			}
			t.Logf("%d synchronizer calls, %d slices framed alike, worst rel err of what was sent %.2e", len(gc), framed, worst)
		})
	}
}

// A run on the device interrupted after 3 steps and resumed from its checkpoint (weights, Adam
// moments, image pools and random stream downloaded, then uploaded into a new trainer) ends
// where the uninterrupted run ends.
func TestDeviceResumeMatchesUninterrupted(t *testing.T) {
	const tol = 1e-4
	cuda.SetEmulatorBlockWidth(1)
	t.Cleanup(func() { cuda.SetEmulatorBlockWidth(256) })
	data := writeUnaligned(t, 5, 16)
	mk := func(dir string) Config {
		c := tinyCycleGAN(data, dir)
		c.Device = DeviceCUDA
		return c
	}
	whole := runFor(t, mk(t.TempDir()), 5, false)
	dir := t.TempDir()
	runFor(t, mk(dir), 3, false)
	resumed := runFor(t, mk(dir), 5, true)
	if resumed.Step() != 5 || resumed.poolA.Len() != 3 || !resumed.poolA.images[0].OnDevice() {
		t.Fatalf("resumed run: step %d, pool of %d (want 5 and 3, on the device)", resumed.Step(), resumed.poolA.Len())
	}
	nw, nr := whole.nets(), resumed.nets()
	for i := range nw {
		sw, sr := nw[i].net.State(), nr[i].net.State()
		for j := range sw {
			if e := torchref.RelErr(sr[j].HostData(), sw[j].HostData()); !(e <= tol) {
				t.Errorf("%s/%s: the resumed run differs by %.3g relative", nw[i].name, sw[j].Name, e)
			}
		}
	}
}

// A step abandoned on the device (the synchronizer fails at step 5's discriminator gradients,
// after the generators' update and the pools' swaps) is undone as on the CPU: parameters
// uploaded back, Adam's moments restored on the device, the image pools rolled back. Both
// replicas stop at step 4 with weights, moments and pools within 1e-4 relative of each other
// and the same random state, and, continued alone, end two steps later still agreeing.
func TestDeviceAbortedStepRollsBack(t *testing.T) {
	const tol = 1e-4
	cuda.SetEmulatorBlockWidth(1)
	t.Cleanup(func() { cuda.SetEmulatorBlockWidth(256) })
	data := writeUnaligned(t, 6, 16)
	run := func(device string) *Trainer {
		cfg := tinyCycleGAN(data, t.TempDir())
		cfg.BatchSize, cfg.MaxSteps, cfg.CheckpointEvery, cfg.Device = 2, 6, 100, device
		// Two averages a step (generators, discriminators; no BatchNorm): the 10th is step 5's.
		fs := &failingSync{failAt: 10}
		tr, err := New(cfg, io.Discard, WithWorld(World{Rank: 0, Size: 2, Sync: fs}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tr.Close() })
		if err := tr.Run(t.Context()); !errors.Is(err, ErrStepAborted) || tr.Step() != 4 {
			t.Fatalf("--device %s: %v at step %d, want ErrStepAborted at step 4", device, err, tr.Step())
		}
		return tr
	}
	cpu, gpu := run(DeviceCPU), run(DeviceCUDA)
	if len(gpu.poolA.saved)+len(gpu.poolB.saved) == 0 || !gpu.poolA.images[0].OnDevice() {
		t.Fatal("no pool image was swapped on the device: the test does not exercise the pools' rollback")
	}
	compare := func(when string) {
		worst := 0.0
		check := func(name string, g, c []float32) {
			e := torchref.RelErr(g, c)
			worst = math.Max(worst, e)
			if !(e <= tol) {
				t.Errorf("%s: %s: cuda differs from cpu by %.3g relative", when, name, e)
			}
		}
		nc, ng := cpu.nets(), gpu.nets()
		for i := range nc {
			inert := map[string]bool{}
			for _, n := range models.InertBiases(nc[i].net) {
				inert[n] = true
			}
			sc, sg := nc[i].net.State(), ng[i].net.State()
			for j := range sc {
				if !inert[sc[j].Name] {
					check(nc[i].name+"/"+sc[j].Name, sg[j].HostData(), sc[j].HostData())
				}
			}
		}
		mc, mg := cpu.optG.State(), gpu.optG.State()
		for k, v := range mc {
			if strings.Contains(k, "/exp_avg/") && !strings.Contains(k, "bias") {
				check("optG/"+k, mg[k], v)
			}
		}
		for _, p := range [][2]*ImagePool{{cpu.poolA, gpu.poolA}, {cpu.poolB, gpu.poolB}} {
			if p[0].Len() != p[1].Len() {
				t.Fatalf("%s: pools of %d images on cpu, %d on cuda", when, p[0].Len(), p[1].Len())
			}
			for i := range p[0].images {
				check(fmt.Sprintf("pool image %d", i), p[1].images[i].HostData(), p[0].images[i].HostData())
			}
		}
		if !slices.Equal(cpu.rng.State(), gpu.rng.State()) {
			t.Errorf("%s: the random states differ", when)
		}
		t.Logf("%s: worst rel err %.2e", when, worst)
	}
	compare("rolled back to step 4")
	for _, tr := range []*Trainer{cpu, gpu} {
		tr.SetWorld(World{Rank: 0, Size: 1})
		if err := tr.Run(t.Context()); err != nil || tr.Step() != 6 {
			t.Fatalf("continued alone: %v at step %d, want step 6", err, tr.Step())
		}
	}
	compare("continued to step 6")
}
