package models

import "wkd/ops"

// resBlock is the reference's ResnetBlock: x + conv_block(x), where conv_block is
// reflect pad 1, conv 3x3, norm, ReLU, [Dropout(0.5)], reflect pad 1, conv 3x3, norm.
type resBlock struct{ block *seq }

func newResBlock(bd *builder, dim int, nm Norm, useDropout, bias bool) *resBlock {
	s := &seq{}
	s.items = append(s.items, reflect(1), newConv(bd, dim, dim, 3, 1, 0, bias), newNorm(bd, nm, dim), actReLU)
	if useDropout {
		s.items = append(s.items, dropout{})
	}
	s.items = append(s.items, reflect(1), newConv(bd, dim, dim, 3, 1, 0, bias), newNorm(bd, nm, dim))
	return &resBlock{block: s}
}

// forward: x (N, C, H, W) -> (N, C, H, W).
func (r *resBlock) forward(p *pass, x *ops.Tensor) *ops.Tensor {
	return ops.Add(p.tp, x, r.block.forward(p, x))
}

func (r *resBlock) visit(prefix string, v visitor) { r.block.visit(join(prefix, "conv_block"), v) }

func (r *resBlock) outShape(c, h, w int) (int, int, int, int64) {
	oc, oh, ow, m := r.block.outShape(c, h, w)
	if oc != c || oh != h || ow != w {
		panic("models: resnet block changed its input's shape")
	}
	return oc, oh, ow, m
}

func (r *resBlock) init(rng *ops.RNG) { r.block.init(rng) }

// newResnet builds the reference's ResnetGenerator (padding 'reflect', transposed-conv
// upsampling) as a Sequential named "model":
//
//	0 ReflectionPad2d(3)  1 Conv 7x7 in->ngf  2 norm  3 ReLU
//	4,7 Conv 3x3 s2 (ngf->2ngf->4ngf)  5,8 norm  6,9 ReLU
//	10 .. 10+nb-1 ResnetBlock(4ngf)
//	then per upsampling: ConvTranspose 3x3 s2 p1 op1, norm, ReLU (4ngf->2ngf->ngf)
//	then ReflectionPad2d(3), Conv 7x7 ngf->out (always with bias), Tanh.
//
// Convolutions followed by a norm have a bias only with instance norm (use_bias).
func newResnet(bd *builder, s Spec) layer {
	bias := s.Norm == Instance
	ngf := s.NGF
	m := &seq{}
	add := func(l ...layer) { m.items = append(m.items, l...) }
	add(reflect(3), newConv(bd, s.InputNC, ngf, 7, 1, 0, bias), newNorm(bd, s.Norm, ngf), actReLU)
	const nDown = 2
	for i := range nDown {
		mult := 1 << i
		add(newConv(bd, ngf*mult, ngf*mult*2, 3, 2, 1, bias), newNorm(bd, s.Norm, ngf*mult*2), actReLU)
	}
	mult := 1 << nDown
	for range s.NBlocks {
		add(newResBlock(bd, ngf*mult, s.Norm, s.Dropout, bias))
	}
	for i := range nDown {
		mult := 1 << (nDown - i)
		add(newConvT(bd, ngf*mult, ngf*mult/2, 3, 2, 1, 1, bias), newNorm(bd, s.Norm, ngf*mult/2), actReLU)
	}
	add(reflect(3), newConv(bd, ngf, s.OutputNC, 7, 1, 0, true), actTanh)
	return m
}
