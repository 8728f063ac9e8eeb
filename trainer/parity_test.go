package trainer

import (
	"context"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"wkd/internal/torchref"
	"wkd/models"
)

// stepScript is the reference's optimize_parameters of pix2pix and of CycleGAN, written from
// its description, on the networks of torchref.Nets. The inputs are "init/<net>/<key>" (the
// initial state_dicts) and "step<s>/A", "step<s>/B" (each step's batch); the outputs are
// "loss<s>/<name>" (each step's logged losses), "final/<net>/<key>" (the state_dicts after
// the last step, running statistics included) and "grad/<net>/<key>" (the gradients the last
// step's update used: G's from the G update, D's from the D update).
//
// A distillation passes kd: the frozen teacher(s) ("teacher/<G|G_A|G_B>/<key>", run in eval mode
// without gradients), the kind (wavelet or pixel), the distance (l1 or mse), the levels and
// alpha. The wavelet term is the paper's sum over levels of the mean distance between the
// student's and the teacher's high bands, on torchref.Haar's conv-based DWT (which matches
// pytorch_wavelets), so it shares no code with wkd's: the generator loss gains alpha * KD.
const stepScript = `
import itertools


def load(name, net):
    pre = "init/" + name + "/"
    mine = {k[len(pre):]: v for k, v in I.items() if k.startswith(pre)}
    sd = net.state_dict()
    extra = sorted(set(mine) - set(sd))
    assert not extra, "%s: names the reference does not have: %s" % (name, extra)
    for k in sd:
        if not k.endswith("num_batches_tracked"):
            sd[k] = mine[k]
    net.load_state_dict(sd, strict=True)
    return net.train()


def set_requires_grad(nets, on):
    for n in nets:
        for p in n.parameters():
            p.requires_grad = on


class GANLoss(nn.Module):
    def __init__(self, mode):
        super().__init__()
        self.loss = nn.MSELoss() if mode == "lsgan" else nn.BCEWithLogitsLoss()

    def forward(self, pred, real):
        return self.loss(pred, torch.tensor(1.0 if real else 0.0).expand_as(pred))


class Pool:
    # The reference's ImagePool while it fills: each fake joins the pool and is returned as
    # it is. A full pool draws random numbers no other implementation shares, so the test
    # must stay below its capacity.
    def __init__(self, size):
        self.size, self.images = size, []

    def query(self, images):
        if self.size == 0:
            return images
        out = []
        for im in images:
            im = torch.unsqueeze(im.data, 0)
            assert len(self.images) < self.size, "pool full: keep the steps within its capacity"
            self.images.append(im)
            out.append(im)
        return torch.cat(out, 0)


def teacher(name, net):
    pre = "teacher/" + name + "/"
    sd = {k[len(pre):]: v for k, v in I.items() if k.startswith(pre)}
    full = net.state_dict()
    for k in full:
        if not k.endswith("num_batches_tracked"):
            full[k] = sd[k]
    net.load_state_dict(full, strict=True)
    for p in net.parameters():
        p.requires_grad = False
    return net.eval()


def kd_term(kd, student, teacher_out):
    dist = nn.functional.l1_loss if kd["dist"] == "l1" else nn.functional.mse_loss
    if kd["kind"] == "pixel":
        return dist(student, teacher_out)
    _, hs = dwt(student, kd["levels"])
    _, ht = dwt(teacher_out, kd["levels"])
    return sum(dist(a, b) for a, b in zip(hs, ht))


def adam(nets, lr, beta1):
    return torch.optim.Adam(itertools.chain(*[n.parameters() for n in nets]), lr=lr, betas=(beta1, 0.999))


def save(s, losses, nets):
    for k, v in losses.items():
        O["loss%d/%s" % (s, k)] = v
    for name, net in nets.items():
        for k, v in net.state_dict().items():
            if not k.endswith("num_batches_tracked"):
                O["final/%s/%s" % (name, k)] = v
        for k, p in net.named_parameters():
            O["grad/%s/%s" % (name, k)] = p.grad if p.grad is not None else torch.zeros_like(p)


def pix2pix(G, D, lr, beta1, mode, lambda_l1, steps, kd=None):
    G, D = load("G", G), load("D", D)
    opt_G, opt_D = adam([G], lr, beta1), adam([D], lr, beta1)
    gan, l1 = GANLoss(mode), nn.L1Loss()
    for s in range(steps):
        A, B = I["step%d/A" % s], I["step%d/B" % s]
        L = {}
        fake_B = G(A)
        set_requires_grad([D], True)
        opt_D.zero_grad()
        L["D_fake"] = gan(D(torch.cat((A, fake_B), 1).detach()), False)
        L["D_real"] = gan(D(torch.cat((A, B), 1)), True)
        ((L["D_fake"] + L["D_real"]) * 0.5).backward()
        opt_D.step()
        set_requires_grad([D], False)
        opt_G.zero_grad()
        L["G_GAN"] = gan(D(torch.cat((A, fake_B), 1)), True)
        L["G_L1"] = l1(fake_B, B) * lambda_l1
        loss_G = L["G_GAN"] + L["G_L1"]
        if kd:
            with torch.no_grad():
                t_B = kd["T"](A)
            L["KD"] = kd_term(kd, fake_B, t_B)
            loss_G = loss_G + kd["alpha"] * L["KD"]
        loss_G.backward()
        opt_G.step()
        save(s, L, {"G": G, "D": D})


def backward_D_basic(gan, D, real, fake):
    loss = (gan(D(real), True) + gan(D(fake.detach()), False)) * 0.5
    loss.backward()
    return loss


def cyclegan(G_A, G_B, D_A, D_B, lr, beta1, mode, lambda_A, lambda_B, lambda_idt, pool, steps, kd=None):
    G_A, G_B, D_A, D_B = load("G_A", G_A), load("G_B", G_B), load("D_A", D_A), load("D_B", D_B)
    opt_G, opt_D = adam([G_A, G_B], lr, beta1), adam([D_A, D_B], lr, beta1)
    gan, l1 = GANLoss(mode), nn.L1Loss()
    fake_A_pool, fake_B_pool = Pool(pool), Pool(pool)
    for s in range(steps):
        real_A, real_B = I["step%d/A" % s], I["step%d/B" % s]
        L = {}
        fake_B = G_A(real_A)
        rec_A = G_B(fake_B)
        fake_A = G_B(real_B)
        rec_B = G_A(fake_A)
        set_requires_grad([D_A, D_B], False)
        opt_G.zero_grad()
        if lambda_idt > 0:
            L["idt_A"] = l1(G_A(real_B), real_B) * lambda_B * lambda_idt
            L["idt_B"] = l1(G_B(real_A), real_A) * lambda_A * lambda_idt
        L["G_A"] = gan(D_A(fake_B), True)
        L["G_B"] = gan(D_B(fake_A), True)
        L["cycle_A"] = l1(rec_A, real_A) * lambda_A
        L["cycle_B"] = l1(rec_B, real_B) * lambda_B
        loss_G = L["G_A"] + L["G_B"] + L["cycle_A"] + L["cycle_B"]
        if lambda_idt > 0:
            loss_G = loss_G + L["idt_A"] + L["idt_B"]
        if kd:
            with torch.no_grad():
                t_B, t_A = kd["T_A"](real_A), kd["T_B"](real_B)
            L["KD_A"] = kd_term(kd, fake_B, t_B)
            L["KD_B"] = kd_term(kd, fake_A, t_A)
            loss_G = loss_G + kd["alpha"] * (L["KD_A"] + L["KD_B"])
        loss_G.backward()
        opt_G.step()
        set_requires_grad([D_A, D_B], True)
        opt_D.zero_grad()
        L["D_A"] = backward_D_basic(gan, D_A, real_B, fake_B_pool.query(fake_B))
        L["D_B"] = backward_D_basic(gan, D_B, real_A, fake_A_pool.query(fake_A))
        opt_D.step()
        save(s, L, {"G_A": G_A, "G_B": G_B, "D_A": D_A, "D_B": D_B})
`

// pyNet is the Python expression that builds s (resolved) with the classes of torchref.Nets.
func pyNet(t *testing.T, s models.Spec) string {
	t.Helper()
	bools := map[bool]string{true: "True", false: "False"}
	switch s.Kind {
	case models.ResNet9Blocks, models.ResNet6Blocks, models.ResNet:
		return fmt.Sprintf("ResGen(%d, %d, %d, %q, %s, %d)", s.InputNC, s.OutputNC, s.NGF, s.Norm.String(), bools[s.Dropout], s.NBlocks)
	case models.UNet128, models.UNet256, models.UNet:
		return fmt.Sprintf("UGen(%d, %d, %d, %d, %q, %s)", s.InputNC, s.OutputNC, s.NumDowns, s.NGF, s.Norm.String(), bools[s.Dropout])
	case models.PatchGAN, models.NLayers:
		return fmt.Sprintf("NLayerD(%d, %d, %d, %q)", s.InputNC, s.NDF, s.NLayers, s.Norm.String())
	case models.Pixel:
		return fmt.Sprintf("PixelD(%d, %d, %q)", s.InputNC, s.NDF, s.Norm.String())
	}
	t.Fatalf("no Python network for %v", s.Kind)
	return ""
}

func clone(v []float32) []float32 { return append([]float32(nil), v...) }

// TestStepParity trains a few steps here and runs the reference's optimize_parameters in
// PyTorch from the same initial weights on the same batches (dropout off, so nothing random
// is left), then compares every logged loss of every step, the gradients of the last update
// (Adam's first step hardly depends on the gradient's scale, so the weights alone would miss
// a wrong loss factor) and every tensor of every network's state_dict afterwards (parameters
// and BatchNorm running statistics), all within 1e-4 relative.
func TestStepParity(t *testing.T) {
	pix := func(norm models.Norm) func(t *testing.T) Config {
		return func(t *testing.T) Config {
			c := tinyPix2Pix(writeAligned(t, 4, 32), t.TempDir())
			c.G.Norm, c.G.Dropout, c.D.Norm = norm, false, norm
			return c
		}
	}
	// The pool holds 3 images and the batch is 1: two steps leave it filling, so each query
	// returns this step's fakes and no random draw is involved.
	cyc := func(t *testing.T) Config {
		c := tinyCycleGAN(writeUnaligned(t, 3, 16), t.TempDir())
		c.BatchSize = 1
		return c
	}
	cases := []struct {
		name  string
		cfg   func(t *testing.T) Config
		steps int
	}{
		{"pix2pix_batch", pix(models.Batch), 1},
		{"pix2pix_instance", pix(models.Instance), 1},
		{"cyclegan", cyc, 1},
		{"cyclegan_2steps", cyc, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { stepParity(t, c.cfg(t), c.steps) })
	}
}

// parityFigures are the worst relative errors of a stepParity run, and the KD term's largest
// share of the generator loss.
type parityFigures struct {
	loss, grad, weight, delta float64
	kdShare                   float64
}

func stepParity(t *testing.T, cfg Config, steps int) parityFigures {
	cfg.MaxSteps = steps
	var f parityFigures
	inputs := map[string]torchref.Array{}
	losses := map[string][]float32{}
	var tr *Trainer
	var s int
	var shares []float64
	record := func(rep StepReport) {
		// The step's batch is still in the trainer's input tensors.
		pre := fmt.Sprintf("step%d/", s)
		inputs[pre+"A"] = torchref.Of(clone(tr.realA.Data), tr.realA.Shape...)
		inputs[pre+"B"] = torchref.Of(clone(tr.realB.Data), tr.realB.Shape...)
		for _, l := range rep.Losses {
			losses[fmt.Sprintf("loss%d/%s", s, l.Name)] = []float32{float32(l.Value)}
		}
		f.kdShare = math.Max(f.kdShare, rep.KDShare)
		shares = append(shares, rep.KDShare)
		s++
	}
	tr, err := New(cfg, io.Discard, WithObserver(record))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	initial := map[string][]float32{}
	var build []string
	for _, n := range tr.nets() {
		for _, st := range n.net.State() {
			key := n.name + "/" + st.Name
			initial[key] = clone(st.Data)
			inputs["init/"+key] = torchref.Of(clone(st.Data), st.Shape...)
		}
		build = append(build, pyNet(t, n.net.Spec()))
	}
	kdArg := ""
	if cfg.Distilling() {
		kdArg = fmt.Sprintf(", kd=dict(kind=%q, dist=%q, levels=%d, alpha=%g", cfg.KD, cfg.KDLoss, cfg.Levels, cfg.Alpha)
		teachers := []namedNet{{"G", tr.teacherA}}
		if cfg.Task == CycleGAN {
			teachers = []namedNet{{"G_A", tr.teacherA}, {"G_B", tr.teacherB}}
		}
		for _, n := range teachers {
			// The teacher PyTorch gets is the one in the teacher's files, not only the one
			// the trainer loaded.
			file, err := models.Build(n.net.Spec())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := models.Load(filepath.Join(cfg.Teacher, n.name+".safetensors"), file); err != nil {
				t.Fatal(err)
			}
			for i, st := range n.net.State() {
				if fmt.Sprint(st.Data) != fmt.Sprint(file.State()[i].Data) {
					t.Errorf("teacher %s/%s is not the one in %s", n.name, st.Name, cfg.Teacher)
				}
			}
			for _, st := range n.net.State() {
				inputs["teacher/"+n.name+"/"+st.Name] = torchref.Of(clone(st.Data), st.Shape...)
			}
			arg := "T"
			if n.name != "G" {
				arg += n.name[1:]
			}
			kdArg += fmt.Sprintf(", %s=teacher(%q, %s)", arg, n.name, pyNet(t, n.net.Spec()))
		}
		kdArg += ")"
	}
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s != steps {
		t.Fatalf("trained %d steps, want %d", s, steps)
	}

	script := torchref.Nets + torchref.Haar + stepScript
	if cfg.Task == CycleGAN {
		script += fmt.Sprintf("cyclegan(%s, lr=%g, beta1=%g, mode=%q, lambda_A=%g, lambda_B=%g, lambda_idt=%g, pool=%d, steps=%d%s)\n",
			strings.Join(build, ", "), cfg.LR, cfg.Beta1, cfg.GANMode, cfg.LambdaA, cfg.LambdaB, cfg.LambdaIdentity, cfg.PoolSize, steps, kdArg)
	} else {
		script += fmt.Sprintf("pix2pix(%s, lr=%g, beta1=%g, mode=%q, lambda_l1=%g, steps=%d%s)\n",
			strings.Join(build, ", "), cfg.LR, cfg.Beta1, cfg.GANMode, cfg.LambdaL1, steps, kdArg)
	}
	out := torchref.Run(t, script, inputs)

	wantLosses := map[string]torchref.Array{}
	wantState := map[string]torchref.Array{}
	wantGrad := map[string]torchref.Array{}
	for k, v := range out {
		if name, ok := strings.CutPrefix(k, "final/"); ok {
			wantState[name] = v
		} else if name, ok := strings.CutPrefix(k, "grad/"); ok {
			wantGrad[name] = v
		} else {
			wantLosses[k] = v
		}
	}
	if len(losses) != len(wantLosses) {
		t.Errorf("%d losses logged, PyTorch computed %d", len(losses), len(wantLosses))
	}
	lossErr := torchref.Compare(t, 1e-4, losses, wantLosses)
	if cfg.Distilling() {
		// The log's KD share: alpha * KD over the whole generator loss, from PyTorch's terms.
		for step, got := range shares {
			var kd, total float64
			for k, v := range wantLosses {
				name, ok := strings.CutPrefix(k, fmt.Sprintf("loss%d/", step))
				if !ok || strings.HasPrefix(name, "D") {
					continue
				}
				if strings.HasPrefix(name, "KD") {
					kd += float64(cfg.Alpha) * float64(v.Data[0])
					total += float64(cfg.Alpha) * float64(v.Data[0])
				} else {
					total += float64(v.Data[0])
				}
			}
			if want := kd / total; math.Abs(got-want) > 1e-4*want {
				t.Errorf("step %d: kd_share %.6g, PyTorch's terms give %.6g", step, got, want)
			}
		}
	}

	lr := float64(cfg.LR)
	gotState, gotGrad := map[string][]float32{}, map[string][]float32{}
	var inertCount, flatCount int
	deltaErr, deltaWorst, deltaSkipped, deltaCount := 0.0, "", 0, 0
	for _, n := range tr.nets() {
		inert := map[string]bool{}
		for _, name := range models.InertBiases(n.net) {
			inert[name] = true
		}
		isParam := map[string]bool{}
		for _, p := range n.net.Params() {
			isParam[p.Name] = true
		}
		for _, st := range n.net.State() {
			key := n.name + "/" + st.Name
			w, ok := wantState[key]
			if !ok {
				t.Errorf("PyTorch returned no %s", key)
				continue
			}
			if inert[st.Name] {
				// A bias right before an InstanceNorm (models.InertBiases) has a true
				// gradient of zero: both sides hold rounding noise, which Adam turns into
				// steps of up to about lr in either direction. It is left out of the
				// comparison: its gradient must be noise next to its layer's weight
				// gradient, and it must have moved by no more than Adam's largest step (lr
				// per step, a little more in later steps).
				inertCount++
				scale := maxAbs(n.net.Named()[strings.TrimSuffix(st.Name, "bias")+"weight"].Grad)
				if g, wg := maxAbs(st.Grad), maxAbs(wantGrad[key].Data); g > 1e-4*scale || wg > 1e-4*scale {
					t.Errorf("grad of %s (inert bias) should be noise: |ours| %.3g, |PyTorch| %.3g, |weight grad| %.3g", key, g, wg, scale)
				}
				bound := 1.1 * lr * float64(steps)
				if d := maxAbsDiff(st.Data, initial[key]); d > bound {
					t.Errorf("%s (inert bias) moved by %.3g here, more than Adam's bound %.3g", key, d, bound)
				}
				if d := maxAbsDiff(w.Data, initial[key]); d > bound {
					t.Errorf("%s (inert bias) moved by %.3g in PyTorch, more than Adam's bound %.3g", key, d, bound)
				}
				delete(wantState, key)
				delete(wantGrad, key)
				continue
			}
			gotState[key] = st.Data
			if isParam[st.Name] {
				gotGrad[key] = st.Grad
				if steps == 1 {
					var k int
					gotState[key], k = adamFlat(t, key, st.Data, w.Data, wantGrad[key].Data, lr)
					flatCount += k
				}
			}
			var gg, wg []float32
			if isParam[st.Name] {
				gg, wg = st.Grad, wantGrad[key].Data
			}
			e, n := updateErr(gotState[key], w.Data, initial[key], gg, wg)
			deltaSkipped += n
			deltaCount += len(w.Data)
			if e > deltaErr {
				deltaErr, deltaWorst = e, key
			}
		}
	}
	if len(gotState) != len(wantState) || len(gotGrad) != len(wantGrad) {
		t.Errorf("comparing %d state tensors and %d gradients, PyTorch returned %d and %d", len(gotState), len(gotGrad), len(wantState), len(wantGrad))
	}
	gradErr := torchref.Compare(t, 1e-4, gotGrad, wantGrad)
	weightErr := torchref.Compare(t, 1e-4, gotState, wantState)
	t.Logf("%d step(s): worst relative error: losses %.3g, last step's gradients %.3g, weights %.3g over %d tensors (%d inert biases apart, %d elements within Adam's amplification of a near-zero gradient); updates w-w0 %.3g (%s; %d of %d elements with a gradient noisier than 1e-3 of itself left out)",
		steps, lossErr, gradErr, weightErr, len(gotState), inertCount, flatCount, deltaErr, deltaWorst, deltaSkipped, deltaCount)
	// The updates are what the weights hide: they are about lr, far below the weights' scale,
	// so the 1e-4 weight comparison passes an update that is 1% off (a wrong learning rate or
	// bias correction) and a changed gradient that Adam's first, sign-like step does not show.
	// Adam divides each element's step by its own gradient scale, so the updates match less
	// closely than the gradients: 1e-3 relative.
	if deltaErr > 1e-3 {
		t.Errorf("updates w-w0 differ from PyTorch's by %.3g relative (%s), more than 1e-3", deltaErr, deltaWorst)
	}
	if deltaSkipped > deltaCount/100 {
		t.Errorf("%d of %d elements have gradients too noisy to compare their updates: the update check sees too little", deltaSkipped, deltaCount)
	}
	f.loss, f.grad, f.weight, f.delta = lossErr, gradErr, weightErr, deltaErr
	return f
}

// updateErr is the relative error of the update w - w0 against PyTorch's: the largest
// difference over the largest update. Adam divides each element's step by that element's own
// gradient scale, so an element whose gradient is mostly rounding (the two sides' gradients
// differ by more than 1e-3 of it) moves by an arbitrary fraction of lr on each side: such
// elements (given grads, for parameters) are left out and counted.
func updateErr(got, want, init, grad, wantGrad []float32) (float64, int) {
	dg, dw := diff(got, init), diff(want, init)
	skipped := 0
	if grad != nil {
		for i := range dg {
			if math.Abs(float64(grad[i])-float64(wantGrad[i])) > 1e-3*math.Abs(float64(wantGrad[i])) {
				dg[i], dw[i] = 0, 0
				skipped++
			}
		}
	}
	return torchref.RelErr(dg, dw), skipped
}

// adamFlat handles the elements where Adam's first step is ill-conditioned. It moves each
// weight by lr*g/(|g|+eps): where |g| is within the gradient comparison's tolerance (1e-4 of
// the tensor's largest) of zero, the difference that tolerance allows is amplified towards
// lr, far above 1e-4 of the weights. An element that differs by more than 1e-4 of the
// weights must then differ by no more than that amplified difference (the largest slope of
// g/(|g|+eps) over the allowed interval around g); it takes PyTorch's value, so the 1e-4
// comparison judges the rest. It returns got, so adjusted, and the number of such elements.
func adamFlat(t *testing.T, key string, got, want, grad []float32, lr float64) ([]float32, int) {
	t.Helper()
	const eps = 1e-8 // Adam's, as the trainer and the reference use it
	tolW, tolG := 1e-4*maxAbs(want), 1e-4*maxAbs(grad)
	out := clone(got)
	n := 0
	for i := range got {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if d <= tolW {
			continue
		}
		g := math.Abs(float64(grad[i]))
		slope := eps / math.Pow(math.Max(0, g-tolG)+eps, 2)
		if allow := lr * math.Min(2, tolG*slope); d > tolW+allow {
			continue // the 1e-4 comparison reports it
		}
		t.Logf("%s[%d]: %.8g, PyTorch %.8g: Adam amplified a gradient of %.3g (%.3g of the largest) into a difference of %.3g",
			key, i, got[i], want[i], grad[i], g/maxAbs(grad), d)
		out[i] = want[i]
		n++
	}
	return out, n
}

func maxAbs(v []float32) float64 {
	m := 0.0
	for _, x := range v {
		m = math.Max(m, math.Abs(float64(x)))
	}
	return m
}

func diff(a, b []float32) []float32 {
	d := make([]float32, len(a))
	for i := range a {
		d[i] = a[i] - b[i]
	}
	return d
}

func maxAbsDiff(a, b []float32) float64 {
	m := 0.0
	for i := range a {
		m = math.Max(m, math.Abs(float64(a[i])-float64(b[i])))
	}
	return m
}
