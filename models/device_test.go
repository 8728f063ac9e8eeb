//go:build cuda || cudaemu

package models

import (
	"math"
	"slices"
	"testing"

	"wkd/internal/torchref"
	"wkd/ops"
	"wkd/ops/cuda" // registers the "cuda" backend (the host emulator under cudaemu)
)

// The same networks, weights and inputs on the host and on the CUDA backend (under cudaemu,
// the kernels' sources on the host emulator): a ResNet generator and a PatchGAN with batch
// norm through one pix2pix-shaped step (forward, LSGAN + L1 losses, backward, Adam), then an
// eval-mode forward that reads the updated running statistics. Every loss, gradient and
// weight must agree within 1e-4 relative (max|a-b| / max|b|), as the per-kernel tests require,
// except the biases an instance norm follows (InertBiases): their exact gradient is zero, the
// computed one rounding noise that differs between any two summation orders, and Adam turns
// it into steps of about lr; for them the test asks only that gradients be noise-sized.
//
//	go test -tags cudaemu -run Device ./models

func openTestDevice(t *testing.T) ops.Device {
	t.Helper()
	cuda.SetEmulatorBlockWidth(1)
	t.Cleanup(func() { cuda.SetEmulatorBlockWidth(256) })
	d, err := ops.OpenDevice("cuda", 0)
	if err != nil {
		t.Fatalf("opening the cuda backend: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	return d
}

func TestDeviceStepParity(t *testing.T) {
	const tol = 1e-4
	dev := openTestDevice(t)
	gSpec := Spec{Kind: ResNet, NBlocks: 2, InputNC: 3, OutputNC: 3, NGF: 4, Norm: Instance}
	dSpec := Spec{Kind: PatchGAN, InputNC: 6, NDF: 4, Norm: Batch}
	type side struct {
		g, d       Module
		optG, optD *ops.Adam
		x, y       *ops.Tensor
		tp         *ops.Tape
	}
	mk := func(d ops.Device) *side {
		rng := ops.NewRNG(3)
		s := &side{tp: ops.NewTape()}
		for _, p := range []struct {
			spec Spec
			m    *Module
		}{{gSpec, &s.g}, {dSpec, &s.d}} {
			m, err := Build(p.spec)
			if err != nil {
				t.Fatal(err)
			}
			Init(m, rng)
			MoveTo(m, d)
			*p.m = m
		}
		cfg := ops.GANAdamConfig()
		s.optG = ops.NewAdam([]ops.ParamGroup{{Params: s.g.Params()}}, cfg)
		s.optD = ops.NewAdam([]ops.ParamGroup{{Params: s.d.Params()}}, cfg)
		x, y := ops.New(2, 3, 32, 32), ops.New(2, 3, 32, 32)
		for i := range x.Data {
			x.Data[i], y.Data[i] = rng.Float32()*2-1, rng.Float32()*2-1
		}
		s.x, s.y = ops.NewOn(d, x.Shape...), ops.NewOn(d, y.Shape...)
		s.x.CopyFromHost(x.Data)
		s.y.CopyFromHost(y.Data)
		return s
	}
	cpu, gpu := mk(nil), mk(dev)
	if Device(gpu.g) != dev || !gpu.g.Params()[0].OnDevice() {
		t.Fatal("MoveTo left the generator on the host")
	}

	type result struct {
		losses []*ops.Tensor
		fake   *ops.Tensor
	}
	step := func(s *side) result {
		tp := s.tp
		tp.Reset()
		fake := s.g.Forward(tp, s.x, true)
		s.optD.ZeroGrad()
		dFake := ops.MSEConst(tp, s.d.Forward(tp, ops.Concat(tp, s.x, tp.Detach(fake)), true), 0)
		dReal := ops.MSEConst(tp, s.d.Forward(tp, ops.Concat(tp, s.x, s.y), true), 1)
		lossD := ops.Scale(tp, ops.Add(tp, dFake, dReal), 0.5)
		tp.Backward(lossD)
		s.optG.ZeroGrad()
		gGAN := ops.MSEConst(tp, s.d.Forward(tp, ops.Concat(tp, s.x, fake), true), 1)
		gL1 := ops.Scale(tp, ops.L1Loss(tp, fake, s.y), 100)
		lossG := ops.Add(tp, gGAN, gL1)
		tp.Backward(lossG)
		return result{[]*ops.Tensor{dFake, dReal, gGAN, gL1, lossG}, fake}
	}
	rc, rg := step(cpu), step(gpu)
	if err := dev.Sync(); err != nil {
		t.Fatal(err)
	}
	check := func(what string, got, want []float32) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d values on the device, %d on the host", what, len(got), len(want))
		}
		e := torchref.RelErr(got, want)
		t.Logf("%-40s rel err %.2e", what, e)
		if !(e <= tol) {
			t.Errorf("%s: device differs from host by %.3g relative (tolerance %g)", what, e, tol)
		}
	}
	for i := range rc.losses {
		check("loss "+string(rune('0'+i)), rg.losses[i].HostData(), rc.losses[i].HostData())
	}
	check("G(x)", rg.fake.HostData(), rc.fake.HostData())
	inert := map[string]bool{}
	for _, n := range append(InertBiases(cpu.g), InertBiases(cpu.d)...) {
		inert[n] = true
	}
	if len(inert) == 0 {
		t.Fatal("no inert biases found: the test's exclusion list is stale")
	}
	for _, nets := range [][2]Module{{gpu.g, cpu.g}, {gpu.d, cpu.d}} {
		pg, pc := nets[0].Params(), nets[1].Params()
		for i := range pc {
			if inert[pc[i].Name] {
				for k, v := range pg[i].HostGrad() {
					if math.Abs(float64(v)) > 1e-5 {
						t.Errorf("grad %s[%d] = %g on the device: an inert bias's gradient should be rounding noise", pc[i].Name, k, v)
					}
				}
				continue
			}
			check("grad "+pc[i].Name, pg[i].HostGrad(), pc[i].HostGrad())
		}
	}
	for _, s := range []*side{cpu, gpu} {
		s.optD.Step()
		s.optG.Step()
	}
	for _, nets := range [][2]Module{{gpu.g, cpu.g}, {gpu.d, cpu.d}} {
		sg, sc := nets[0].State(), nets[1].State()
		for i := range sc {
			if inert[sc[i].Name] {
				continue
			}
			check("after Adam "+sc[i].Name, sg[i].HostData(), sc[i].HostData())
		}
	}
	// Eval mode: the discriminator normalizes with the running statistics the step updated.
	ec := cpu.d.Forward(nil, ops.Concat(nil, cpu.x, cpu.y), false)
	eg := gpu.d.Forward(nil, ops.Concat(nil, gpu.x, gpu.y), false)
	if !eg.OnDevice() {
		t.Fatal("a device network's output is on the host")
	}
	check("D eval forward", eg.HostData(), ec.HostData())
	if err := dev.Err(); err != nil {
		t.Fatal(err)
	}
}

// Init on a network already on the device draws on the host and uploads: the values are the
// host Init's bit for bit, and gradients bound to a bucket stay bound (moving the network
// there and back would have given each parameter a private gradient again).
func TestDeviceInitKeepsBoundGradients(t *testing.T) {
	dev := openTestDevice(t)
	spec := Spec{Kind: PatchGAN, InputNC: 6, NDF: 4, Norm: Batch}
	host, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	Init(host, ops.NewRNG(7))
	m, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	MoveTo(m, dev)
	total := 0
	for _, p := range m.Params() {
		total += p.Numel()
	}
	bucket := dev.NewPinned(total)
	defer bucket.Free()
	off := 0
	for _, p := range m.Params() {
		p.BindGrad(bucket.Mem(), off)
		off += p.Numel()
	}
	Init(m, ops.NewRNG(7))
	hs, ms := host.State(), m.State()
	for i := range hs {
		if got := ms[i].HostData(); !slices.Equal(got, hs[i].Data) {
			t.Fatalf("%s: Init on the device differs from Init on the host", hs[i].Name)
		}
	}
	moved := func() (panicked bool) {
		defer func() { panicked = recover() != nil }()
		m.Params()[0].MoveTo(nil)
		return false
	}()
	if !moved {
		t.Fatal("after Init, the first parameter's gradient is no longer bound to the bucket")
	}
	t.Logf("%d state tensors initialized on the device as on the host, %d gradients still bound", len(hs), len(m.Params()))
}
