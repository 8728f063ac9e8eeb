package trainer

import "wkd/ops"

// cycleGANStep is one step of CycleGAN (Zhu et al.), the reference's optimize_parameters.
// G_A: A->B (the paper's G), G_B: B->A (F), D_A judges B (D_Y), D_B judges A (D_X).
// The generators update first (adversarial + cycle + identity, plus alpha * KD of each
// direction to its teacher when distilling), then the discriminators on pooled fakes.
func (t *Trainer) cycleGANStep() (StepReport, error) {
	tp, cfg := t.tape, t.cfg
	realA, realB := t.realA, t.realB
	var rep StepReport

	fakeB := t.gA.Forward(tp, realA, true) // G(A)
	recA := t.gB.Forward(tp, fakeB, true)  // F(G(A))
	fakeA := t.gB.Forward(tp, realB, true) // F(B)
	recB := t.gA.Forward(tp, fakeA, true)  // G(F(B))

	// Generators, with the discriminators frozen.
	setRequiresGrad(t.dParams, false)
	t.optG.ZeroGrad()
	var lossIdtA, lossIdtB *ops.Tensor
	if cfg.LambdaIdentity > 0 {
		idtA := t.gA.Forward(tp, realB, true) // G_A should be the identity on B
		lossIdtA = ops.Scale(tp, ops.L1Loss(tp, idtA, realB), cfg.LambdaB*cfg.LambdaIdentity)
		idtB := t.gB.Forward(tp, realA, true)
		lossIdtB = ops.Scale(tp, ops.L1Loss(tp, idtB, realA), cfg.LambdaA*cfg.LambdaIdentity)
	}
	lossGA := ganLoss(tp, cfg.GANMode, t.dA.Forward(tp, fakeB, true), true)
	lossGB := ganLoss(tp, cfg.GANMode, t.dB.Forward(tp, fakeA, true), true)
	lossCycA := ops.Scale(tp, ops.L1Loss(tp, recA, realA), cfg.LambdaA)
	lossCycB := ops.Scale(tp, ops.L1Loss(tp, recB, realB), cfg.LambdaB)
	lossG := ops.Add(tp, ops.Add(tp, lossGA, lossGB), ops.Add(tp, lossCycA, lossCycB))
	if lossIdtA != nil {
		lossG = ops.Add(tp, lossG, ops.Add(tp, lossIdtA, lossIdtB))
	}
	var kdA, kdB *ops.Tensor
	if t.teacherA != nil && cfg.KD != KDNone {
		kdA = kdLoss(tp, cfg.KD, fakeB, t.teacherOutput(t.teacherA, realA), cfg.Levels, cfg.KDLoss)
		kdB = kdLoss(tp, cfg.KD, fakeA, t.teacherOutput(t.teacherB, realB), cfg.Levels, cfg.KDLoss)
		lossG = ops.Add(tp, lossG, ops.Scale(tp, ops.Add(tp, kdA, kdB), cfg.Alpha))
	}
	started := t.beginGroup(t.gOverlap)
	tp.Backward(lossG)
	setRequiresGrad(t.dParams, true)
	if err := t.syncGroup(t.gOverlap, started, &rep); err != nil {
		return rep, err
	}
	t.optG.Step()

	// Discriminators: real against a fake from the pool (the fakes of this step, before G's
	// update, as in the reference).
	t.optD.ZeroGrad()
	lossDA := t.basicD(t.dA, realB, t.poolB.Query(tp, fakeB, t.rng))
	lossDB := t.basicD(t.dB, realA, t.poolA.Query(tp, fakeA, t.rng))
	started = t.beginGroup(t.dOverlap)
	tp.Backward(ops.Add(tp, lossDA, lossDB))
	if err := t.syncGroup(t.dOverlap, started, &rep); err != nil {
		return rep, err
	}
	t.optD.Step()

	rep.Losses = []Loss{{"D_A", value(lossDA)}, {"G_A", value(lossGA)}, {"cycle_A", value(lossCycA)},
		{"D_B", value(lossDB)}, {"G_B", value(lossGB)}, {"cycle_B", value(lossCycB)}}
	if lossIdtA != nil {
		rep.Losses = append(rep.Losses, Loss{"idt_A", value(lossIdtA)}, Loss{"idt_B", value(lossIdtB)})
	}
	if kdA != nil {
		rep.Losses = append(rep.Losses, Loss{"KD_A", value(kdA)}, Loss{"KD_B", value(kdB)})
		rep.KDShare = float64(cfg.Alpha) * (value(kdA) + value(kdB)) / value(lossG)
	}
	return rep, nil
}

// basicD is the reference's backward_D_basic loss: (GAN(D(real), true) + GAN(D(fake), false))/2.
// fake carries no gradient (it comes from the pool).
func (t *Trainer) basicD(d interface {
	Forward(*ops.Tape, *ops.Tensor, bool) *ops.Tensor
}, real, fake *ops.Tensor) *ops.Tensor {
	tp := t.tape
	lossReal := ganLoss(tp, t.cfg.GANMode, d.Forward(tp, real, true), true)
	lossFake := ganLoss(tp, t.cfg.GANMode, d.Forward(tp, fake, true), false)
	return ops.Scale(tp, ops.Add(tp, lossReal, lossFake), 0.5)
}
