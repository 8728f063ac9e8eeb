package trainer

import (
	"fmt"

	"wkd/ops"
)

// GANMode is the adversarial objective, as the reference's --gan_mode names it.
type GANMode string

// The GAN objectives.
const (
	// Vanilla is the original GAN's cross-entropy (on logits), pix2pix's default.
	Vanilla GANMode = "vanilla"
	// LSGAN is the least-squares GAN, CycleGAN's default.
	LSGAN GANMode = "lsgan"
)

// ganLoss is the objective of prediction pred (patch logits) against real (true) or fake.
func ganLoss(tp *ops.Tape, mode GANMode, pred *ops.Tensor, real bool) *ops.Tensor {
	target := float32(0)
	if real {
		target = 1
	}
	switch mode {
	case LSGAN:
		return ops.MSEConst(tp, pred, target)
	case Vanilla:
		return ops.BCEWithLogitsConst(tp, pred, target)
	}
	panic(fmt.Sprintf("trainer: unknown GAN mode %q", mode))
}

// KD is the knowledge-distillation term a student learns from its teacher.
type KD string

// The distillation kinds.
const (
	// KDWavelet distills the teacher's high-frequency Haar bands (WKD).
	KDWavelet KD = "wavelet"
	// KDPixel distills the teacher's whole output pixel by pixel.
	KDPixel KD = "pixel"
	// KDNone trains the student on its task loss alone.
	KDNone KD = "none"
)

// Dist is the distance KD uses between student and teacher values.
type Dist string

// The distances.
const (
	// L1 is the mean absolute difference (the paper's text).
	L1 Dist = "l1"
	// MSE is the mean squared difference (the authors' released code).
	MSE Dist = "mse"
)

func distance(tp *ops.Tape, d Dist, s, t *ops.Tensor) *ops.Tensor {
	if d == MSE {
		return ops.MSELoss(tp, s, t)
	}
	return ops.L1Loss(tp, s, t)
}

// waveletKD is L_wkd: the sum over levels of the mean distance between the student's and the
// teacher's high bands of that level (LH, HL and HH together), never LL_J.
// student: (N, C, H, W) with gradient; teacher: (N, C, H, W), no gradient.
func waveletKD(tp *ops.Tape, student, teacher *ops.Tensor, levels int, d Dist) *ops.Tensor {
	_, hs := ops.HaarDWT(tp, student, levels)
	was := tp.SetNoGrad(true)
	_, ht := ops.HaarDWT(tp, teacher, levels)
	tp.SetNoGrad(was)
	var sum *ops.Tensor
	for j := range hs {
		l := distance(tp, d, hs[j], ht[j])
		if sum == nil {
			sum = l
		} else {
			sum = ops.Add(tp, sum, l)
		}
	}
	return sum
}

// kdLoss is the unweighted KD term of the kind asked for, or nil for KDNone.
func kdLoss(tp *ops.Tape, kind KD, student, teacher *ops.Tensor, levels int, d Dist) *ops.Tensor {
	switch kind {
	case KDWavelet:
		return waveletKD(tp, student, teacher, levels, d)
	case KDPixel:
		return distance(tp, d, student, teacher)
	}
	return nil
}
