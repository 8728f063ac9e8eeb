package models

import (
	"fmt"
	"strconv"

	"wkd/ops"
)

// A network is a tree of layers mirroring the reference's nn.Module tree, so that walking it
// in order yields the reference's state_dict names and order.

// pass is what one forward pass carries down the tree.
type pass struct {
	tp    *ops.Tape
	train bool
	rng   *ops.RNG
}

// visitor receives every state tensor in state_dict order. param is false for buffers.
type visitor func(name string, t *ops.Tensor, param bool)

type layer interface {
	// forward: x (N, C, H, W) -> (N, C', H', W').
	forward(p *pass, x *ops.Tensor) *ops.Tensor
	// visit names the layer's tensors under prefix ("model.1") in state_dict order.
	visit(prefix string, v visitor)
	// outShape returns the output (C, H, W) for an input (c, h, w) and the multiply-accumulates
	// per image.
	outShape(c, h, w int) (oc, oh, ow int, macs int64)
	// init draws the layer's weights as the reference's init_weights('normal', 0.02) does.
	init(rng *ops.RNG)
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// builder makes parameter tensors; with alloc off it makes shape-only tensors (no data) so
// that counting MACs of a full-size network costs nothing.
type builder struct{ alloc bool }

func (b *builder) param(shape ...int) *ops.Tensor {
	if !b.alloc {
		return &ops.Tensor{Shape: shape}
	}
	return ops.NewParam("", shape...)
}

func (b *builder) buffer(fill float32, shape ...int) *ops.Tensor {
	if !b.alloc {
		return &ops.Tensor{Shape: shape}
	}
	t := ops.New(shape...)
	t.Fill(fill)
	return t
}

func numel(t *ops.Tensor) int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// seq is nn.Sequential: children named by index.
type seq struct{ items []layer }

func (s *seq) forward(p *pass, x *ops.Tensor) *ops.Tensor {
	for i := 0; i < len(s.items); i++ {
		if !p.tp.Recording() {
			if y, used := fuseInference(p, s.items[i:], x); used > 0 {
				x, i = y, i+used-1
				continue
			}
		}
		x = s.items[i].forward(p, x)
	}
	return x
}

// fuseInference runs a (transposed) convolution followed by instance norm, and the ReLU
// after it if there is one, as fewer passes when nothing is recorded: the convolution's bias
// is left out, since instance norm subtracts each plane's mean and with it any constant per
// channel, and norm and ReLU are one op. It returns how many of items it ran, 0 for none.
func fuseInference(p *pass, items []layer, x *ops.Tensor) (*ops.Tensor, int) {
	if len(items) < 2 {
		return nil, 0
	}
	if n, ok := items[1].(*norm); !ok || n.kind != Instance {
		return nil, 0
	}
	switch c := items[0].(type) {
	case *conv:
		x = ops.Conv2d(p.tp, x, c.w, nil, c.stride, c.pad)
	case *convT:
		x = ops.ConvTranspose2d(p.tp, x, c.w, nil, c.stride, c.pad, c.outPad)
	default:
		return nil, 0
	}
	if len(items) > 2 && items[2] == actReLU {
		return ops.InstanceNormReLU(p.tp, x, normEps), 3
	}
	return ops.InstanceNorm2d(p.tp, x, nil, nil, normEps), 2
}

func (s *seq) visit(prefix string, v visitor) {
	for i, l := range s.items {
		l.visit(join(prefix, strconv.Itoa(i)), v)
	}
}

func (s *seq) outShape(c, h, w int) (int, int, int, int64) {
	var total int64
	for _, l := range s.items {
		var m int64
		c, h, w, m = l.outShape(c, h, w)
		total += m
	}
	return c, h, w, total
}

func (s *seq) init(rng *ops.RNG) {
	for _, l := range s.items {
		l.init(rng)
	}
}

// conv is nn.Conv2d with zero padding.
type conv struct {
	w           *ops.Tensor // w: (K, C, KH, KW)
	b           *ops.Tensor // b: (K) or nil
	stride, pad int
}

func newConv(bd *builder, cin, cout, k, stride, pad int, bias bool) *conv {
	c := &conv{w: bd.param(cout, cin, k, k), stride: stride, pad: pad}
	if bias {
		c.b = bd.param(cout)
	}
	return c
}

func (c *conv) forward(p *pass, x *ops.Tensor) *ops.Tensor {
	return ops.Conv2d(p.tp, x, c.w, c.b, c.stride, c.pad)
}

func (c *conv) visit(prefix string, v visitor) {
	v(join(prefix, "weight"), c.w, true)
	if c.b != nil {
		v(join(prefix, "bias"), c.b, true)
	}
}

func (c *conv) outShape(cin, h, w int) (int, int, int, int64) {
	k, wc, kh, kw := c.w.Shape[0], c.w.Shape[1], c.w.Shape[2], c.w.Shape[3]
	if cin != wc {
		panic(fmt.Sprintf("models: conv: input has %d channels, weight %v wants %d", cin, c.w.Shape, wc))
	}
	oh := (h+2*c.pad-kh)/c.stride + 1
	ow := (w+2*c.pad-kw)/c.stride + 1
	if h+2*c.pad < kh || w+2*c.pad < kw {
		panic(fmt.Sprintf("models: conv: input %dx%d (padded by %d) is smaller than its %dx%d kernel", h, w, c.pad, kh, kw))
	}
	return k, oh, ow, int64(k) * int64(oh) * int64(ow) * int64(wc*kh*kw)
}

func (c *conv) init(rng *ops.RNG) {
	rng.FillNormal(c.w, 0, 0.02)
	if c.b != nil {
		clear(c.b.Data)
	}
}

// convT is nn.ConvTranspose2d.
type convT struct {
	w                   *ops.Tensor // w: (C, K, KH, KW), PyTorch's layout
	b                   *ops.Tensor // b: (K) or nil
	stride, pad, outPad int
	products            bool // outShape counts products done, not thop's MACs (CountProducts)
}

func newConvT(bd *builder, cin, cout, k, stride, pad, outPad int, bias bool) *convT {
	c := &convT{w: bd.param(cin, cout, k, k), stride: stride, pad: pad, outPad: outPad}
	if bias {
		c.b = bd.param(cout)
	}
	return c
}

func (c *convT) forward(p *pass, x *ops.Tensor) *ops.Tensor {
	return ops.ConvTranspose2d(p.tp, x, c.w, c.b, c.stride, c.pad, c.outPad)
}

func (c *convT) visit(prefix string, v visitor) {
	v(join(prefix, "weight"), c.w, true)
	if c.b != nil {
		v(join(prefix, "bias"), c.b, true)
	}
}

// outShape counts a transposed convolution the way the papers' tools (thop) do: every
// output element costs C*KH*KW multiply-accumulates, although with stride s only about
// 1/s^2 of those products are non-zero. The reference figure 56.8 GMACs uses this count.
// With products set it counts those a kernel must do instead: every input element times
// every weight, C*K*KH*KW per input position.
func (c *convT) outShape(cin, h, w int) (int, int, int, int64) {
	wc, k, kh, kw := c.w.Shape[0], c.w.Shape[1], c.w.Shape[2], c.w.Shape[3]
	if cin != wc {
		panic(fmt.Sprintf("models: transposed conv: input has %d channels, weight %v wants %d", cin, c.w.Shape, wc))
	}
	oh := (h-1)*c.stride - 2*c.pad + kh + c.outPad
	ow := (w-1)*c.stride - 2*c.pad + kw + c.outPad
	if c.products {
		return k, oh, ow, int64(h) * int64(w) * int64(wc*k*kh*kw)
	}
	return k, oh, ow, int64(k) * int64(oh) * int64(ow) * int64(wc*kh*kw)
}

func (c *convT) init(rng *ops.RNG) {
	rng.FillNormal(c.w, 0, 0.02)
	if c.b != nil {
		clear(c.b.Data)
	}
}

// norm is InstanceNorm2d (no parameters), BatchNorm2d (affine, running statistics) or the
// identity.
type norm struct {
	kind        Norm
	gamma, beta *ops.Tensor // gamma, beta: (C), batch norm only
	mean, vari  *ops.Tensor // running mean, var: (C), batch norm only
}

// PyTorch's defaults for both norms.
const (
	normEps    = 1e-5
	bnMomentum = 0.1
)

func newNorm(bd *builder, kind Norm, c int) *norm {
	n := &norm{kind: kind}
	if kind == Batch {
		n.gamma = bd.param(c)
		if bd.alloc {
			n.gamma.Fill(1) // PyTorch's constructor value, until Init or Load
		}
		n.beta = bd.param(c)
		n.mean = bd.buffer(0, c)
		n.vari = bd.buffer(1, c)
	}
	return n
}

func (n *norm) forward(p *pass, x *ops.Tensor) *ops.Tensor {
	switch n.kind {
	case Instance:
		return ops.InstanceNorm2d(p.tp, x, nil, nil, normEps)
	case Batch:
		return ops.BatchNorm2d(p.tp, x, n.gamma, n.beta, n.mean, n.vari, p.train, bnMomentum, normEps)
	}
	return x
}

// visit follows state_dict order: parameters, then buffers. num_batches_tracked is left out
// (it only matters to BatchNorm with momentum=None, which the reference never uses).
func (n *norm) visit(prefix string, v visitor) {
	if n.kind != Batch {
		return
	}
	v(join(prefix, "weight"), n.gamma, true)
	v(join(prefix, "bias"), n.beta, true)
	v(join(prefix, "running_mean"), n.mean, false)
	v(join(prefix, "running_var"), n.vari, false)
}

func (n *norm) outShape(c, h, w int) (int, int, int, int64) { return c, h, w, 0 }

func (n *norm) init(rng *ops.RNG) {
	if n.kind != Batch {
		return
	}
	rng.FillNormal(n.gamma, 1, 0.02)
	clear(n.beta.Data)
	clear(n.mean.Data)
	n.vari.Fill(1)
}

// act is a parameter-free elementwise layer.
type act int

const (
	actReLU act = iota
	actLeaky
	actTanh
)

func (a act) forward(p *pass, x *ops.Tensor) *ops.Tensor {
	switch a {
	case actReLU:
		return ops.ReLU(p.tp, x)
	case actLeaky:
		return ops.LeakyReLU(p.tp, x, 0.2)
	default:
		return ops.Tanh(p.tp, x)
	}
}

func (act) visit(string, visitor)                       {}
func (act) outShape(c, h, w int) (int, int, int, int64) { return c, h, w, 0 }
func (act) init(*ops.RNG)                               {}

// reflect is nn.ReflectionPad2d(n).
type reflect int

func (r reflect) forward(p *pass, x *ops.Tensor) *ops.Tensor {
	return ops.ReflectionPad2d(p.tp, x, int(r))
}

func (r reflect) visit(string, visitor) {}
func (r reflect) init(*ops.RNG)         {}

func (r reflect) outShape(c, h, w int) (int, int, int, int64) {
	if int(r) >= h || int(r) >= w {
		panic(fmt.Sprintf("models: reflection padding %d needs sides above %d, got %dx%d", int(r), int(r), h, w))
	}
	return c, h + 2*int(r), w + 2*int(r), 0
}

// dropout is nn.Dropout(0.5).
type dropout struct{}

func (dropout) forward(p *pass, x *ops.Tensor) *ops.Tensor  { return p.dropout(x) }
func (dropout) visit(string, visitor)                       {}
func (dropout) outShape(c, h, w int) (int, int, int, int64) { return c, h, w, 0 }
func (dropout) init(*ops.RNG)                               {}

func (p *pass) dropout(x *ops.Tensor) *ops.Tensor {
	if !p.train {
		return x
	}
	if p.rng == nil {
		panic("models: a network with dropout ran in training mode without an RNG; call SetRNG first")
	}
	return ops.Dropout(p.tp, x, 0.5, true, p.rng)
}
