//go:build cuda || cudaemu

package cuda

import "fmt"

// LossKind names a mean-reduced loss.
type LossKind int

const (
	// L1 is mean |x - y| (PyTorch's L1Loss).
	L1 LossKind = iota
	// MSE is mean (x - y)^2 (MSELoss).
	MSE
	// BCEWithLogits is mean max(x,0) - x*y + log(1 + exp(-|x|)) (BCEWithLogitsLoss), x logits.
	BCEWithLogits
)

func (k LossKind) String() string {
	switch k {
	case L1:
		return "L1"
	case MSE:
		return "MSE"
	case BCEWithLogits:
		return "BCEWithLogits"
	}
	return fmt.Sprintf("LossKind(%d)", int(k))
}

// Loss writes the mean loss of x against y, or against the constant target when y is nil
// (the GAN losses), into out[0]. It stays on the device: no host round trip per step.
// x, y: same size; out: (1)
func (d *Device) Loss(kind LossKind, out, x, y *Tensor, target float32) {
	if y != nil {
		mustSameNumel(kind.String(), x, y)
	}
	mustShape(kind.String(), "loss", out, 1)
	blocks := min((x.n+threads-1)/threads, lossBlocks)
	d.launchBlocks(kLossPartial, blocks, ptrArg(d.partial), ptrArg(x), ptrArg(y), floatArg(target),
		intArg(int(kind)), intArg(x.n))
	d.launchBlocks(kLossFinal, 1, ptrArg(out), ptrArg(d.partial), intArg(blocks), floatArg(1/float32(x.n)))
}

// LossBackward accumulates the loss's gradient, scaled by dloss[0] (the upstream gradient of
// the scalar, on the device), into dx and dy (each may be nil; dy needs y).
func (d *Device) LossBackward(kind LossKind, dx, dy, dloss, x, y *Tensor, target float32) {
	mustShape(kind.String(), "loss gradient", dloss, 1)
	if dx != nil {
		mustSameNumel(kind.String(), dx, x)
		d.launch(kLossBwd, x.n, ptrArg(dx), ptrArg(dloss), ptrArg(x), ptrArg(y), floatArg(target),
			intArg(int(kind)), 0, intArg(x.n))
	}
	if dy != nil {
		if y == nil {
			panic("cuda: " + kind.String() + ": a target gradient needs a target tensor")
		}
		mustSameNumel(kind.String(), dy, y)
		d.launch(kLossBwd, x.n, ptrArg(dy), ptrArg(dloss), ptrArg(x), ptrArg(y), floatArg(target),
			intArg(int(kind)), 1, intArg(x.n))
	}
}
