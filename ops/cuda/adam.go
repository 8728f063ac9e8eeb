//go:build cuda || cudaemu

package cuda

import (
	"fmt"
	"math"
	"strconv"

	"wkd/ops"
)

// Adam is torch.optim.Adam over device parameters, with the same float32 arithmetic as
// wkd/ops' Adam, so both backends take bitwise-close steps. Moments live on the device.
type Adam struct {
	cfg    ops.AdamConfig
	lr64   float64
	b1, b2 float64 // decimal betas
	params []*Tensor
	grads  []*Tensor
	m, v   []*Tensor
	step   int
}

// NewAdam creates the optimizer for params and their gradients (same order, same sizes).
func (d *Device) NewAdam(params, grads []*Tensor, cfg ops.AdamConfig) *Adam {
	if len(params) != len(grads) {
		panic(fmt.Sprintf("cuda: NewAdam: %d parameters, %d gradients", len(params), len(grads)))
	}
	a := &Adam{cfg: cfg, lr64: decimal(cfg.LR), b1: decimal(cfg.Beta1), b2: decimal(cfg.Beta2),
		params: params, grads: grads}
	for i, p := range params {
		mustSameNumel("NewAdam", p, grads[i])
		a.m = append(a.m, d.NewTensor(p.Shape...))
		a.v = append(a.v, d.NewTensor(p.Shape...))
	}
	return a
}

// SetLR changes the learning rate (schedules).
func (a *Adam) SetLR(lr float32) { a.cfg.LR, a.lr64 = lr, decimal(lr) }

// AdamStep updates every parameter of a from its gradient.
func (d *Device) AdamStep(a *Adam) {
	a.step++
	b1, b2 := a.b1, a.b2
	t := float64(a.step)
	bc1, bc2 := 1-math.Pow(b1, t), 1-math.Pow(b2, t)
	negStep, bc2sqrt := float32(-a.lr64/bc1), float32(math.Sqrt(bc2))
	for i, p := range a.params {
		d.launch(kAdam, p.n, ptrArg(p), ptrArg(a.grads[i]), ptrArg(a.m[i]), ptrArg(a.v[i]),
			floatArg(float32(b1)), floatArg(float32(b2)), floatArg(float32(1-b1)), floatArg(float32(1-b2)),
			floatArg(a.cfg.Eps), floatArg(a.cfg.WeightDecay), floatArg(negStep), floatArg(bc2sqrt), intArg(p.n))
	}
}

// FreeAdam releases the moments.
func (d *Device) FreeAdam(a *Adam) {
	for i := range a.m {
		d.Free(a.m[i])
		d.Free(a.v[i])
	}
}

// decimal widens a float32 hyperparameter as its shortest decimal (2e-4, not
// 0.00019999999494757503), as wkd/ops does, so bias corrections match PyTorch's doubles.
func decimal(f float32) float64 {
	v, _ := strconv.ParseFloat(strconv.FormatFloat(float64(f), 'g', -1, 32), 64)
	return v
}
