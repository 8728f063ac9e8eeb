package trainer

import "wkd/ops"

// pix2pixStep is one step of pix2pix (Isola et al.), the reference's optimize_parameters:
// fake_B = G(A); D learns (A, B) real against (A, fake_B) fake; then G learns to fool D with
// an L1 pull towards B, plus alpha * KD towards the teacher's output when distilling.
func (t *Trainer) pix2pixStep() (StepReport, error) {
	tp, cfg := t.tape, t.cfg
	realA, realB := t.realA, t.realB
	var rep StepReport

	fakeB := t.gA.Forward(tp, realA, true)

	// D: maximize log D(A, B) + log(1 - D(A, G(A))), with G's output detached.
	t.optD.ZeroGrad()
	predFake := t.dA.Forward(tp, ops.Concat(tp, realA, tp.Detach(fakeB)), true)
	lossDFake := ganLoss(tp, cfg.GANMode, predFake, false)
	predReal := t.dA.Forward(tp, ops.Concat(tp, realA, realB), true)
	lossDReal := ganLoss(tp, cfg.GANMode, predReal, true)
	lossD := ops.Scale(tp, ops.Add(tp, lossDFake, lossDReal), 0.5)
	started := t.beginGroup(t.dOverlap)
	tp.Backward(lossD)
	if err := t.syncGroup(t.dOverlap, started, &rep); err != nil {
		return rep, err
	}
	t.optD.Step()

	// G: fool the updated D (whose parameters get no gradient here) and match B.
	setRequiresGrad(t.dParams, false)
	defer setRequiresGrad(t.dParams, true)
	t.optG.ZeroGrad()
	predFake = t.dA.Forward(tp, ops.Concat(tp, realA, fakeB), true)
	lossGGAN := ganLoss(tp, cfg.GANMode, predFake, true)
	lossGL1 := ops.Scale(tp, ops.L1Loss(tp, fakeB, realB), cfg.LambdaL1)
	lossG := ops.Add(tp, lossGGAN, lossGL1)
	var kd *ops.Tensor
	if t.teacherA != nil && cfg.KD != KDNone {
		kd = kdLoss(tp, cfg.KD, fakeB, t.teacherOutput(t.teacherA, realA), cfg.Levels, cfg.KDLoss)
		lossG = ops.Add(tp, lossG, ops.Scale(tp, kd, cfg.Alpha))
	}
	started = t.beginGroup(t.gOverlap)
	tp.Backward(lossG)
	if err := t.syncGroup(t.gOverlap, started, &rep); err != nil {
		return rep, err
	}
	t.optG.Step()

	rep.Losses = []Loss{{"G_GAN", value(lossGGAN)}, {"G_L1", value(lossGL1)}, {"D_real", value(lossDReal)}, {"D_fake", value(lossDFake)}}
	if kd != nil {
		rep.Losses = append(rep.Losses, Loss{"KD", value(kd)})
		rep.KDShare = float64(cfg.Alpha) * value(kd) / value(lossG)
	}
	return rep, nil
}
