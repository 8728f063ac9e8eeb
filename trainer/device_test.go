//go:build cuda || cudaemu

package trainer

import (
	"fmt"
	"io"
	"math"
	"testing"

	"wkd/models"
	"wkd/ops/cuda" // registers the "cuda" backend (the host emulator under cudaemu)
)

// The same WKD distillation run (pix2pix, a ResNet student learning from a frozen ResNet
// teacher's Haar bands, PatchGAN, batch norm in both) on --device cpu and --device cuda: the
// logged losses of every step and the final weights, BatchNorm statistics included, must agree
// within 1e-4 relative (max|a-b| / max|b| per tensor), the per-kernel tolerance. Under cudaemu
// the CUDA side is the kernels' sources on the host emulator; scripts/device-check.sh runs this
// on a GPU.
//
//	go test -tags cudaemu -run Device ./trainer

func TestDeviceDistillationMatchesCPU(t *testing.T) {
	const tol = 1e-4
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

	const steps = 4
	run := func(device string) (*Trainer, [][]Loss) {
		cfg := tiny(t.TempDir())
		cfg.G.NGF = 4
		cfg.Teacher, cfg.KD, cfg.Alpha, cfg.Levels, cfg.KDLoss = teacherDir, KDWavelet, 10, 3, L1
		cfg.Device, cfg.MaxSteps = device, steps
		var losses [][]Loss
		tr, err := New(cfg, io.Discard, WithObserver(func(r StepReport) { losses = append(losses, r.Losses) }))
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
	if gpu.dev == nil || !gpu.gA.Params()[0].OnDevice() || !gpu.teacherA.Params()[0].OnDevice() {
		t.Fatal("--device cuda left the networks on the host")
	}
	if len(lc) != steps || len(lg) != steps {
		t.Fatalf("steps reported: %d on cpu, %d on cuda, want %d", len(lc), len(lg), steps)
	}
	worstLoss := 0.0
	for s := range lc {
		for i, l := range lc[s] {
			g := lg[s][i]
			if g.Name != l.Name {
				t.Fatalf("step %d: loss %d is %s on cuda, %s on cpu", s+1, i, g.Name, l.Name)
			}
			e := math.Abs(g.Value-l.Value) / math.Max(math.Abs(l.Value), 1e-6)
			worstLoss = math.Max(worstLoss, e)
			if !(e <= tol) {
				t.Errorf("step %d: %s = %.7g on cuda, %.7g on cpu (rel %.2g)", s+1, l.Name, g.Value, l.Value, e)
			}
		}
	}
	hasKD := false
	for _, l := range lc[0] {
		hasKD = hasKD || l.Name == "KD" && l.Value > 0
	}
	if !hasKD {
		t.Fatal("no positive KD loss logged: the run is not a distillation")
	}
	worstWeight, worstName := 0.0, ""
	nc, ng := cpu.nets(), gpu.nets()
	for i := range nc {
		sc, sg := nc[i].net.State(), ng[i].net.State()
		for j := range sc {
			e := relErr(sg[j].HostData(), sc[j].HostData())
			if e > worstWeight {
				worstWeight, worstName = e, nc[i].name+"/"+sc[j].Name
			}
			if !(e <= tol) {
				t.Errorf("%s/%s after %d steps: cuda differs from cpu by %.3g relative", nc[i].name, sc[j].Name, steps, e)
			}
		}
	}
	t.Logf("%d steps: worst loss rel err %.2e, worst weight rel err %.2e (%s)", steps, worstLoss, worstWeight, worstName)
}

// relErr is max|a-b| / max|b| (max|a-b| when b is all zeros).
func relErr(a, b []float32) float64 {
	if len(a) != len(b) {
		panic(fmt.Sprintf("relErr: %d and %d values", len(a), len(b)))
	}
	var num, den float64
	for i := range b {
		num = math.Max(num, math.Abs(float64(a[i])-float64(b[i])))
		den = math.Max(den, math.Abs(float64(b[i])))
	}
	if den == 0 {
		return num
	}
	return num / den
}
