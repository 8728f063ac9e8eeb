package trainer

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"wkd/internal/torchref"
	"wkd/models"
	"wkd/ops"
)

// The tests of what the KD term computes: which bands count and how (TestKDCountsEveryHighBand),
// its gradient (TestKDGradientFiniteDifferences), its weight (TestKDAlphaScalesTheTerm), and
// the term and a whole distillation step against PyTorch with a DWT of its own
// (TestKDLossParity, TestKDStepParity).

func randImage(r *rand.Rand, scale float32, shape ...int) *ops.Tensor {
	x := ops.New(shape...)
	for i := range x.Data {
		x.Data[i] = scale * float32(r.NormFloat64())
	}
	return x
}

// kdValue is L_wkd(student, teacher) on a tape of its own, without gradients.
func kdValue(student, teacher *ops.Tensor, levels int, d Dist) float64 {
	tp := ops.NewTape()
	tp.SetNoGrad(true)
	return float64(waveletKD(tp, student, teacher, levels, d).Data[0])
}

// TestKDCountsEveryHighBand moves one coefficient of one band of the student's DWT away from
// the teacher's and reads the loss: for a high band of level j it must be |delta| / n_j (L1)
// or delta^2 / n_j (MSE), n_j being the number of high coefficients of level j (N*C*3*H_j*W_j:
// the authors' per-level mean over LH, HL and HH together), whichever level and band; for
// LL_J it must be 0. A loss that drops a level, adds LL_J, sums instead of averaging, or
// averages per band or over all levels at once fails here.
func TestKDCountsEveryHighBand(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	const delta = 0.75
	for _, shape := range [][]int{{2, 3, 16, 16}, {1, 2, 32, 16}} {
		for levels := 1; levels <= 4; levels++ {
			teacher := randImage(r, 0.5, shape...)
			ll, highs := ops.HaarDWT(nil, teacher, levels)
			for _, d := range []Dist{L1, MSE} {
				if v := kdValue(teacher, teacher, levels, d); v != 0 {
					t.Errorf("%v J=%d %s: L_wkd(t, t) = %g, want 0", shape, levels, d, v)
				}
				want := func(n int) float64 {
					if d == MSE {
						return delta * delta / float64(n)
					}
					return delta / float64(n)
				}
				for j := range levels {
					for band, name := range []string{"LH", "HL", "HH"} {
						h := highs[j]
						per := h.Shape[3] * h.Shape[4]
						// One coefficient of this band, in the middle of the last plane.
						k := ((h.Shape[0]*h.Shape[1]-1)*3+band)*per + per/2
						h.Data[k] += delta
						student := ops.HaarIDWT(nil, ll, highs)
						h.Data[k] -= delta
						got, w := kdValue(student, teacher, levels, d), want(h.Numel())
						if math.Abs(got-w) > 1e-3*w {
							t.Errorf("%v J=%d %s: one coefficient of %s%d off by %g: L_wkd = %.6g, want %.6g (= %g over %d coefficients of level %d)",
								shape, levels, d, name, j+1, delta, got, w, delta, h.Numel(), j+1)
						}
					}
				}
				// LL_J, and an offset of the whole image (which only LL_J sees), are not distilled.
				ll.Data[len(ll.Data)/2] += delta
				student := ops.HaarIDWT(nil, ll, highs)
				ll.Data[len(ll.Data)/2] -= delta
				shifted := ops.New(shape...)
				for i, v := range teacher.Data {
					shifted.Data[i] = v + 0.5
				}
				// Rounding leaves about 1e-7; one high coefficient of level 1 moves the loss by
				// want(n_1), the smallest step a distilled band makes.
				for what, s := range map[string]*ops.Tensor{"one LL coefficient": student, "a constant offset": shifted} {
					if got := kdValue(s, teacher, levels, d); got > 1e-3*want(highs[0].Numel()) {
						t.Errorf("%v J=%d %s: %s of the student changes L_wkd to %.3g; LL_%d must not count", shape, levels, d, what, got, levels)
					}
				}
			}
		}
	}
}

// TestKDGradientFiniteDifferences checks the student's gradient of L_wkd against central
// differences, at sizes whose levels are odd (zero padded) and even. L1 has a kink wherever
// a student coefficient equals the teacher's: an element whose one-sided differences disagree
// straddles one and is left out (a handful at most); the teacher must get no gradient.
func TestKDGradientFiniteDifferences(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for _, c := range []struct {
		shape  []int
		levels int
	}{{[]int{1, 2, 13, 11}, 3}, {[]int{2, 1, 8, 8}, 2}, {[]int{1, 3, 7, 9}, 4}} {
		for _, d := range []Dist{L1, MSE} {
			name := fmt.Sprintf("%v_J%d_%s", c.shape, c.levels, d)
			student := randImage(r, 1, c.shape...)
			teacher := randImage(r, 1, c.shape...)
			// Both could take a gradient: the loss must send one to the student only.
			student.SetRequiresGrad(true)
			teacher.SetRequiresGrad(true)
			tp := ops.NewTape()
			tp.Backward(waveletKD(tp, student, teacher, c.levels, d))
			if teacher.Grad != nil && maxAbs(teacher.Grad) != 0 {
				t.Errorf("%s: the teacher got a gradient", name)
			}
			grad := clone(student.Grad)
			x := clone(student.Data)
			f := func(i int, v float32) float64 {
				p := ops.FromData(clone(x), c.shape...)
				p.Data[i] = v
				return kdValue(p, teacher, c.levels, d)
			}
			const h = 1e-2
			var worst, scale float64
			kinks := 0
			for i := range x {
				up, mid, down := f(i, x[i]+h), f(i, x[i]), f(i, x[i]-h)
				if d == L1 && math.Abs((up-mid)-(mid-down)) > 1e-4*h {
					kinks++
					continue
				}
				fd := (up - down) / (2 * h)
				worst = math.Max(worst, math.Abs(fd-float64(grad[i])))
				scale = math.Max(scale, math.Abs(fd))
			}
			if kinks > len(x)/10 {
				t.Errorf("%s: %d of %d elements straddle a kink; the test checks too little", name, kinks, len(x))
			}
			if scale == 0 || worst > 1e-3*scale {
				t.Errorf("%s: gradient differs from central differences by %.3g (largest %.3g)", name, worst, scale)
			}
			t.Logf("%s: worst |grad - finite difference| %.3g of %.3g (%d elements at a kink skipped)", name, worst, scale, kinks)
		}
	}
}

// TestKDLossParity compares L_wkd and the student's gradient with PyTorch, where the DWT is
// torchref.Haar's (strided convolutions, as pytorch_wavelets builds it): odd and even sides,
// 1 to 4 levels, both distances.
func TestKDLossParity(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	inputs := map[string]torchref.Array{}
	got := map[string][]float32{}
	var script strings.Builder
	script.WriteString(torchref.Haar)
	script.WriteString(`
def wkd(s, t, J, dist):
    d = F.l1_loss if dist == "l1" else F.mse_loss
    hs, ht = dwt(s, J)[1], dwt(t, J)[1]
    return sum(d(a, b) for a, b in zip(hs, ht))
`)
	k := 0
	for _, shape := range [][]int{{2, 3, 13, 11}, {1, 3, 32, 32}, {1, 1, 7, 9}, {2, 2, 24, 20}} {
		for levels := 1; levels <= 4; levels++ {
			for _, d := range []Dist{L1, MSE} {
				s, tt := randImage(r, 1, shape...), randImage(r, 1, shape...)
				inputs[fmt.Sprintf("s%d", k)], inputs[fmt.Sprintf("t%d", k)] = torchref.Of(clone(s.Data), shape...), torchref.Of(clone(tt.Data), shape...)
				s.SetRequiresGrad(true)
				tp := ops.NewTape()
				l := waveletKD(tp, s, tt, levels, d)
				tp.Backward(l)
				got[fmt.Sprintf("loss%d", k)] = []float32{l.Data[0]}
				got[fmt.Sprintf("grad%d", k)] = s.Grad
				fmt.Fprintf(&script, `
s = I["s%[1]d"].requires_grad_()
l = wkd(s, I["t%[1]d"], %[2]d, %[3]q)
l.backward()
O["loss%[1]d"], O["grad%[1]d"] = l, s.grad
`, k, levels, d)
				k++
			}
		}
	}
	want := torchref.Run(t, script.String(), inputs)
	e := torchref.Compare(t, 1e-5, got, want)
	t.Logf("L_wkd and its gradient over %d cases (odd and even sides, 1-4 levels, l1 and mse): worst relative error vs PyTorch %.3g", k, e)
}

// kdTeacher trains a small teacher for one step, so its weights and (batch norm) running
// statistics are not those of a fresh network, and returns its run folder.
func kdTeacher(t *testing.T, cfg Config) string {
	t.Helper()
	cfg.Dir = t.TempDir()
	runFor(t, cfg, 1, false)
	return cfg.Dir
}

// TestKDStepParity runs distillation steps here and in PyTorch (stepScript with kd) from the
// same weights on the same batches: pix2pix and CycleGAN, wavelet KD with L1 and MSE at 1 to 4
// levels, sizes whose Haar levels are even and odd, and pixel KD; every logged loss (KD
// included), every student and discriminator gradient, the weights and their changes after
// the step(s) must agree within 1e-4 (the changes: see stepParity).
func TestKDStepParity(t *testing.T) {
	// pix2pix on its U-Net (sides a multiple of 32) or, for sides whose Haar levels turn odd,
	// on a ResNet generator (sides a multiple of 4), as the reference's --netG allows.
	pix := func(size int, g models.Kind, norm models.Norm) Config {
		c := tinyPix2Pix(writeAligned(t, 4, size), "")
		c.LoadSize, c.CropSize = size, size
		if g != models.UNet {
			c.G = models.Spec{Kind: g, NBlocks: 1, InputNC: 3, OutputNC: 3, NGF: 4}
			c.D = models.Spec{Kind: models.NLayers, NLayers: 2, InputNC: 6, NDF: 4}
		}
		c.G.Norm, c.G.Dropout, c.D.Norm = norm, false, norm
		return c
	}
	cyc := func(size int) Config {
		c := tinyCycleGAN(writeUnaligned(t, 3, size), "")
		c.LoadSize, c.CropSize, c.BatchSize = size, size, 1
		return c
	}
	// A U-Net teacher with dropout (6 downsamplings: one dropout block) at 64 px: in eval mode
	// it drops nothing, whatever its norm.
	dropoutTeacher := pix(64, models.UNet, models.Instance)
	dropoutTeacher.G.NumDowns = 6
	cases := []struct {
		name   string
		base   Config
		kd     KD
		dist   Dist
		levels int
		alpha  float32
		steps  int
	}{
		{"pix2pix_wavelet_l1_J3_64_teacher_dropout", dropoutTeacher, KDWavelet, L1, 3, 50, 1},
		{"pix2pix_wavelet_l1_J3_32", pix(32, models.UNet, models.Batch), KDWavelet, L1, 3, 50, 1},
		{"pix2pix_wavelet_mse_J1_32", pix(32, models.UNet, models.Instance), KDWavelet, MSE, 1, 5000, 1},
		{"pix2pix_wavelet_l1_J4_24", pix(24, models.ResNet, models.Instance), KDWavelet, L1, 4, 200, 2},
		{"pix2pix_wavelet_mse_J2_20", pix(20, models.ResNet, models.Batch), KDWavelet, MSE, 2, 2000, 1},
		{"pix2pix_pixel_l1_32", pix(32, models.UNet, models.Instance), KDPixel, L1, 3, 500, 1},
		{"cyclegan_wavelet_l1_J3_16", cyc(16), KDWavelet, L1, 3, 5, 1},
		{"cyclegan_wavelet_mse_J4_20", cyc(20), KDWavelet, MSE, 4, 5, 2},
		{"cyclegan_wavelet_l1_J2_20", cyc(20), KDWavelet, L1, 2, 5, 1},
		{"cyclegan_pixel_mse_16", cyc(16), KDPixel, MSE, 3, 100, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.base
			teacher := cfg
			teacher.G.Dropout = cfg.G.NumDowns >= 6 // the student stays without: no random stream
			cfg.Teacher = kdTeacher(t, teacher)
			cfg.Dir = t.TempDir()
			cfg.G.NGF = 2 // the student: half the teacher's width
			cfg.KD, cfg.KDLoss, cfg.Levels, cfg.Alpha = c.kd, c.dist, c.levels, c.alpha
			f := stepParity(t, cfg, c.steps)
			t.Logf("%s: KD up to %.0f%% of the generator loss; vs PyTorch: losses %.2g, gradients %.2g, weights %.2g, updates %.2g",
				c.name, 100*f.kdShare, f.loss, f.grad, f.weight, f.delta)
			if f.kdShare < 0.05 {
				t.Errorf("KD is %.3g of the generator loss: too small for the comparison to see it", f.kdShare)
			}
		})
	}
}

// TestKDAlphaScalesTheTerm trains one distillation step at alpha 0, a and 2a from the same
// state: the logged KD term is the same (it is unweighted), the generators' gradients differ
// by the KD term's gradient times alpha (g(2a) - g(0) = 2 (g(a) - g(0))), and alpha 0 gives
// what no KD gives.
func TestKDAlphaScalesTheTerm(t *testing.T) {
	for _, task := range []Task{Pix2Pix, CycleGAN} {
		t.Run(string(task), func(t *testing.T) {
			base := tinyPix2Pix(writeAligned(t, 2, 32), "")
			if task == CycleGAN {
				base = tinyCycleGAN(writeUnaligned(t, 2, 16), "")
			}
			base.G.Dropout = false
			base.Teacher = kdTeacher(t, base)
			base.G.NGF = 2
			base.KD, base.KDLoss, base.Levels = KDWavelet, L1, 3
			type run struct {
				kd    []float64
				grads [][]float32
			}
			train := func(kd KD, alpha float32) run {
				cfg := base
				cfg.Dir, cfg.KD, cfg.Alpha, cfg.MaxSteps = t.TempDir(), kd, alpha, 1
				var out run
				tr, err := New(cfg, nil, WithObserver(func(rep StepReport) {
					for _, l := range rep.Losses {
						if strings.HasPrefix(l.Name, "KD") {
							out.kd = append(out.kd, l.Value)
						}
					}
				}))
				if err != nil {
					t.Fatal(err)
				}
				defer tr.Close()
				if err := tr.Run(t.Context()); err != nil {
					t.Fatal(err)
				}
				for _, p := range tr.gParams {
					out.grads = append(out.grads, clone(p.Grad))
				}
				return out
			}
			const a = 20
			none, g0, ga, g2a := train(KDNone, 0), train(KDWavelet, 0), train(KDWavelet, a), train(KDWavelet, 2*a)
			if len(ga.kd) == 0 || fmt.Sprint(ga.kd) != fmt.Sprint(g2a.kd) || fmt.Sprint(g0.kd) != fmt.Sprint(ga.kd) {
				t.Errorf("logged KD terms %v (alpha 0), %v (alpha %d), %v (alpha %d): want the same unweighted value", g0.kd, ga.kd, a, g2a.kd, 2*a)
			}
			var worst, kdScale, noneDiff float64
			for i := range g0.grads {
				for k := range g0.grads[i] {
					d1 := float64(ga.grads[i][k]) - float64(g0.grads[i][k])
					d2 := float64(g2a.grads[i][k]) - float64(g0.grads[i][k])
					worst = math.Max(worst, math.Abs(d2-2*d1))
					kdScale = math.Max(kdScale, math.Abs(d1))
					noneDiff = math.Max(noneDiff, math.Abs(float64(g0.grads[i][k])-float64(none.grads[i][k])))
				}
			}
			if kdScale == 0 {
				t.Fatal("alpha changed no gradient: the KD term does not reach the student")
			}
			if worst > 1e-3*kdScale {
				t.Errorf("g(2a) - g(0) differs from 2 (g(a) - g(0)) by %.3g (KD gradient scale %.3g)", worst, kdScale)
			}
			if noneDiff != 0 {
				t.Errorf("alpha 0 changes the gradients by %.3g against no KD", noneDiff)
			}
			t.Logf("KD gradient at alpha %d up to %.3g; linearity in alpha off by %.3g", a, kdScale, worst)
		})
	}
}

// TestUseTeacherD: with UseTeacherD the student's discriminators start as the teacher's (every
// state tensor, batch norm statistics included, equal to the teacher's newest checkpoint) and
// then train; without it they start from the seeded initialization; a discriminator of another
// width, or a teacher that is only a weights file, is refused naming the flags.
func TestUseTeacherD(t *testing.T) {
	for _, task := range []Task{Pix2Pix, CycleGAN} {
		t.Run(string(task), func(t *testing.T) {
			base := tinyPix2Pix(writeAligned(t, 2, 32), "")
			if task == CycleGAN {
				base = tinyCycleGAN(writeUnaligned(t, 2, 16), "")
			}
			base.Teacher = kdTeacher(t, base)
			base.G.NGF, base.KD, base.Alpha = 2, KDWavelet, 10
			ckpt, err := LatestCheckpoint(base.Teacher)
			if err != nil || ckpt == "" {
				t.Fatalf("teacher checkpoint: %q, %v", ckpt, err)
			}
			teacherState, _, err := readCheckpoint(ckpt)
			if err != nil {
				t.Fatal(err)
			}
			// sameAsTeacher counts the discriminator state tensors equal to the teacher's, of all.
			sameAsTeacher := func(tr *Trainer) (same, all int) {
				for _, n := range tr.nets() {
					if !strings.HasPrefix(n.name, "D") {
						continue
					}
					for _, p := range n.net.State() {
						all++
						if fmt.Sprint(p.Data) == fmt.Sprint(teacherState[n.name+"/"+p.Name].Data) {
							same++
						}
					}
				}
				return same, all
			}
			for _, use := range []bool{true, false} {
				cfg := base
				cfg.Dir, cfg.UseTeacherD = t.TempDir(), use
				tr, err := New(cfg, nil)
				if err != nil {
					t.Fatal(err)
				}
				same, all := sameAsTeacher(tr)
				if use && same != all {
					t.Errorf("use_teacher_d: %d of %d discriminator tensors are the teacher's", same, all)
				}
				// Freshly initialized batch norm statistics (0 and 1) are the same on both sides.
				if !use && same > all/2 {
					t.Errorf("without use_teacher_d %d of %d discriminator tensors are the teacher's", same, all)
				}
				tr.cfg.MaxSteps = 1
				if err := tr.Run(t.Context()); err != nil {
					t.Fatal(err)
				}
				if same, _ := sameAsTeacher(tr); use && same == all {
					t.Error("the discriminator taken from the teacher did not train")
				}
				tr.Close()
			}
			wider := base
			wider.Dir, wider.UseTeacherD = t.TempDir(), true
			wider.D.NDF *= 2
			if _, err := New(wider, nil); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "--use-teacher-d") || !strings.Contains(err.Error(), "--ndf 4") {
				t.Errorf("a discriminator of another width: err = %v, want ErrConfig naming --use-teacher-d and --ndf 4", err)
			}
			if task == Pix2Pix {
				file := base
				file.Dir, file.UseTeacherD = t.TempDir(), true
				file.Teacher, file.TeacherG = filepath.Join(base.Teacher, "G.safetensors"), base.G
				file.TeacherG.NGF = 4
				if _, err := New(file, nil); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "--use-teacher-d") {
					t.Errorf("a weights-file teacher: err = %v, want ErrConfig naming --use-teacher-d", err)
				}
			}
			// A run started from the teacher's D resumes from its own checkpoint (its saved
			// configuration names the teacher's architecture, which must not stop it).
			cfg := base
			cfg.Dir, cfg.UseTeacherD = t.TempDir(), true
			runFor(t, cfg, 1, false)
			saved, err := LoadConfig(cfg.Dir)
			if err != nil {
				t.Fatal(err)
			}
			tr := runFor(t, saved, 2, true)
			if tr.Step() != 2 {
				t.Errorf("resumed run ended at step %d, want 2", tr.Step())
			}
		})
	}
}
