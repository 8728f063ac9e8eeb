//go:build cuda || cudaemu

package cuda

import "fmt"

// InstanceNorm2d normalizes each (n, c) plane (biased variance), then scales by gamma[c] and
// shifts by beta[c] when given (nil, nil = affine=False). stats keeps each plane's mean and
// 1/sqrt(var+eps) for the backward.
// x, y: (N, C, H, W); gamma, beta: (C) or nil; stats: (2*N*C)
func (d *Device) InstanceNorm2d(y, stats, x, gamma, beta *Tensor, eps float32) {
	n, c, h, w := x.NCHW()
	mustShape("InstanceNorm2d", "output", y, x.Shape...)
	mustShape("InstanceNorm2d", "stats", stats, 2*n*c)
	mustAffine("InstanceNorm2d", c, gamma, beta)
	d.launchBlocks(kInstanceNorm, n*c, ptrArg(y), ptrArg(stats), ptrArg(x), ptrArg(gamma), ptrArg(beta),
		intArg(c), intArg(h*w), floatArg(eps))
}

// InstanceNorm2dBackward accumulates into dx, dgamma, dbeta (each may be nil).
// dy: (N, C, H, W); x, stats, gamma as given to InstanceNorm2d.
func (d *Device) InstanceNorm2dBackward(dx, dgamma, dbeta, dy, x, stats, gamma *Tensor) {
	n, c, h, w := x.NCHW()
	mustShape("InstanceNorm2dBackward", "output gradient", dy, x.Shape...)
	mustShape("InstanceNorm2dBackward", "stats", stats, 2*n*c)
	d.launchBlocks(kInstanceNormBwd, n*c, ptrArg(dx), ptrArg(dgamma), ptrArg(dbeta), ptrArg(dy), ptrArg(x),
		ptrArg(stats), ptrArg(gamma), intArg(c), intArg(h*w))
}

// BatchNorm2d normalizes each channel across the batch. Training (or no running statistics):
// batch mean and biased variance, and the running ones updated as
// run = (1-momentum)*run + momentum*stat with the unbiased variance, like PyTorch. Otherwise
// the running statistics normalize. stats keeps mean, 1/sqrt(var+eps), var per channel.
// x, y: (N, C, H, W); gamma, beta, runMean, runVar: (C) or nil; stats: (3*C)
func (d *Device) BatchNorm2d(y, stats, x, gamma, beta, runMean, runVar *Tensor, training bool, momentum, eps float32) {
	n, c, h, w := x.NCHW()
	mustShape("BatchNorm2d", "output", y, x.Shape...)
	mustShape("BatchNorm2d", "stats", stats, 3*c)
	mustAffine("BatchNorm2d", c, gamma, beta)
	if (runMean == nil) != (runVar == nil) {
		panic("cuda: BatchNorm2d: give both runMean and runVar, or neither")
	}
	m := n * h * w
	if training || runMean == nil {
		if training && m < 2 {
			panic(fmt.Sprintf("cuda: BatchNorm2d: training needs more than one value per channel, got input %v", x.Shape))
		}
		d.launchBlocks(kBatchNorm, c, ptrArg(y), ptrArg(stats), ptrArg(x), ptrArg(gamma), ptrArg(beta),
			intArg(n), intArg(h*w), floatArg(eps))
		if training && runMean != nil {
			mustShape("BatchNorm2d", "running mean", runMean, c)
			mustShape("BatchNorm2d", "running variance", runVar, c)
			d.launch(kBatchNormRunning, c, ptrArg(runMean), ptrArg(runVar), ptrArg(stats), intArg(c),
				floatArg(momentum), floatArg(float32(float64(m)/float64(m-1))))
		}
		return
	}
	mustShape("BatchNorm2d", "running mean", runMean, c)
	mustShape("BatchNorm2d", "running variance", runVar, c)
	d.launch(kBatchNormEval, x.n, ptrArg(y), ptrArg(stats), ptrArg(x), ptrArg(gamma), ptrArg(beta),
		ptrArg(runMean), ptrArg(runVar), intArg(c), intArg(h*w), floatArg(eps), intArg(x.n))
}

// BatchNorm2dBackward accumulates into dx, dgamma, dbeta (each may be nil). batchStats says
// whether the forward used batch statistics (training, or no running statistics).
func (d *Device) BatchNorm2dBackward(dx, dgamma, dbeta, dy, x, stats, gamma *Tensor, batchStats bool) {
	n, c, h, w := x.NCHW()
	mustShape("BatchNorm2dBackward", "output gradient", dy, x.Shape...)
	mustShape("BatchNorm2dBackward", "stats", stats, 3*c)
	d.launchBlocks(kBatchNormBwd, c, ptrArg(dx), ptrArg(dgamma), ptrArg(dbeta), ptrArg(dy), ptrArg(x),
		ptrArg(stats), ptrArg(gamma), intArg(n), intArg(h*w), boolArg(batchStats))
}

func mustAffine(op string, c int, gamma, beta *Tensor) {
	if (gamma == nil) != (beta == nil) {
		panic("cuda: " + op + ": give both gamma and beta, or neither")
	}
	if gamma != nil {
		mustShape(op, "gamma", gamma, c)
		mustShape(op, "beta", beta, c)
	}
}
