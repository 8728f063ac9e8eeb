package models

import (
	"fmt"

	"wkd/ops"
)

// unetBlock is the reference's UnetSkipConnectionBlock: a Sequential named "model" of
// down, the inner block, up; every block but the outermost returns [x, model(x)] stacked on
// channels.
//
//	outermost: 0 Conv 4x4 s2 in->inner  1 inner block  2 ReLU  3 ConvT 4x4 s2 2*inner->outer (bias)  4 Tanh
//	innermost: 0 LeakyReLU(0.2)  1 Conv 4x4 s2 outer->inner  2 ReLU  3 ConvT inner->outer  4 norm
//	middle:    0 LeakyReLU(0.2)  1 Conv  2 norm  3 inner block  4 ReLU  5 ConvT 2*inner->outer  6 norm  [7 Dropout(0.5)]
type unetBlock struct {
	model     *seq
	outermost bool
}

func newUnetBlock(bd *builder, outerNC, innerNC, inputNC int, sub *unetBlock, outermost, innermost bool, nm Norm, useDropout bool) *unetBlock {
	bias := nm == Instance
	if inputNC == 0 {
		inputNC = outerNC
	}
	down := newConv(bd, inputNC, innerNC, 4, 2, 1, bias)
	var items []layer
	switch {
	case outermost:
		up := newConvT(bd, innerNC*2, outerNC, 4, 2, 1, 0, true)
		items = []layer{down, sub, actReLU, up, actTanh}
	case innermost:
		up := newConvT(bd, innerNC, outerNC, 4, 2, 1, 0, bias)
		items = []layer{actLeaky, down, actReLU, up, newNorm(bd, nm, outerNC)}
	default:
		downNorm := newNorm(bd, nm, innerNC)
		up := newConvT(bd, innerNC*2, outerNC, 4, 2, 1, 0, bias)
		items = []layer{actLeaky, down, downNorm, sub, actReLU, up, newNorm(bd, nm, outerNC)}
		if useDropout {
			items = append(items, dropout{})
		}
	}
	return &unetBlock{model: &seq{items: items}, outermost: outermost}
}

// forward: x (N, C, H, W) -> (N, outer, H, W) outermost, else (N, C+outer, H, W).
//
// The reference's in-place LeakyReLU overwrites x before torch.cat([x, model(x)], 1) reads
// it, so its skip carries LeakyReLU(x). Only the parent's ReLU reads that concatenation, and
// ReLU(LeakyReLU(x)) = ReLU(x) with the same gradient, so plain x is exactly equivalent.
func (u *unetBlock) forward(p *pass, x *ops.Tensor) *ops.Tensor {
	y := u.model.forward(p, x)
	if u.outermost {
		return y
	}
	return ops.Concat(p.tp, x, y)
}

func (u *unetBlock) visit(prefix string, v visitor) { u.model.visit(join(prefix, "model"), v) }

func (u *unetBlock) outShape(c, h, w int) (int, int, int, int64) {
	oc, oh, ow, m := u.model.outShape(c, h, w)
	if oh != h || ow != w {
		panic(fmt.Sprintf("models: unet: a %dx%d input came back %dx%d; sides must be multiples of 2^num_downs", h, w, oh, ow))
	}
	if u.outermost {
		return oc, oh, ow, m
	}
	return c + oc, oh, ow, m
}

func (u *unetBlock) init(rng *ops.RNG) { u.model.init(rng) }

// newUnet builds the reference's UnetGenerator from the innermost block out: the innermost
// (8ngf), numDowns-5 blocks of 8ngf (with dropout if asked), then 4ngf, 2ngf, ngf and the
// outermost. The network's own "model" holds the outermost block, so names read
// model.model.0.weight, model.model.1.model.1.weight, ...
func newUnet(bd *builder, s Spec) layer {
	ngf, nm := s.NGF, s.Norm
	b := newUnetBlock(bd, ngf*8, ngf*8, 0, nil, false, true, nm, false)
	for range s.NumDowns - 5 {
		b = newUnetBlock(bd, ngf*8, ngf*8, 0, b, false, false, nm, s.Dropout)
	}
	b = newUnetBlock(bd, ngf*4, ngf*8, 0, b, false, false, nm, false)
	b = newUnetBlock(bd, ngf*2, ngf*4, 0, b, false, false, nm, false)
	b = newUnetBlock(bd, ngf, ngf*2, 0, b, false, false, nm, false)
	return newUnetBlock(bd, s.OutputNC, ngf, s.InputNC, b, true, false, nm, false)
}
