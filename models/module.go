package models

import (
	"fmt"

	"wkd/ops"
)

// Module is a built network. It is not safe for concurrent use: Forward updates BatchNorm's
// running statistics and draws dropout masks.
type Module interface {
	// Spec is what the network was built from, with the kind's sizes resolved.
	Spec() Spec
	// Forward runs the network: x (N, InputNC, H, W) -> a generator's (N, OutputNC, H, W) or a
	// discriminator's patch logits (N, 1, H', W'). train selects batch statistics (updating
	// the running ones) and active dropout; otherwise running statistics and no dropout.
	// A nil tape runs without recording. Wrong input shapes panic, naming both shapes.
	Forward(tp *ops.Tape, x *ops.Tensor, train bool) *ops.Tensor
	// Params are the trainable tensors in the reference's state_dict order.
	Params() []*ops.Tensor
	// Buffers are BatchNorm's running statistics, in state_dict order.
	Buffers() []*ops.Tensor
	// State is every tensor of the state_dict (parameters and buffers interleaved as the
	// reference orders them); each one's Name is its state_dict key.
	State() []*ops.Tensor
	// Named maps state_dict keys to tensors.
	Named() map[string]*ops.Tensor
	// SetRNG gives the network the generator its dropout draws from in training mode. The
	// caller owns it (and its State, for resumable runs); networks without dropout ignore it.
	SetRNG(rng *ops.RNG)
}

// network is the one Module implementation: a layer tree under a root name.
type network struct {
	spec    Spec
	root    layer
	prefix  string // "model", or "net" for the pixel discriminator
	state   []*ops.Tensor
	params  []*ops.Tensor
	buffers []*ops.Tensor
	named   map[string]*ops.Tensor
	rng     *ops.RNG
	pass    pass
	// multiple is what the input's sides must be divisible by for a generator's output to
	// match its input (ResNet: 4, U-Net: 2^num_downs).
	multiple int
}

// Build constructs the network a spec names. Convolution weights start at zero and
// BatchNorm at PyTorch's constructor values: call Init (training from scratch) or Load.
func Build(spec Spec) (Module, error) {
	return build(spec, true)
}

func build(spec Spec, alloc bool) (*network, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	s := spec.Resolved()
	bd := &builder{alloc: alloc}
	n := &network{spec: s, prefix: "model", multiple: 1}
	switch s.Kind {
	case ResNet9Blocks, ResNet6Blocks, ResNet:
		n.root = newResnet(bd, s)
		n.multiple = 4 // two stride-2 convs down and two transposed convs back up
	case UNet128, UNet256, UNet:
		n.root = newUnet(bd, s)
		n.multiple = 1 << s.NumDowns
	case PatchGAN, NLayers:
		n.root = newNLayer(bd, s)
	case Pixel:
		n.root = newPixel(bd, s)
		n.prefix = "net"
	}
	n.named = map[string]*ops.Tensor{}
	n.root.visit(n.prefix, func(name string, t *ops.Tensor, param bool) {
		t.Name = name
		n.state = append(n.state, t)
		n.named[name] = t
		if param {
			n.params = append(n.params, t)
		} else {
			n.buffers = append(n.buffers, t)
		}
	})
	return n, nil
}

func (n *network) Spec() Spec                    { return n.spec }
func (n *network) Params() []*ops.Tensor         { return n.params }
func (n *network) Buffers() []*ops.Tensor        { return n.buffers }
func (n *network) State() []*ops.Tensor          { return n.state }
func (n *network) Named() map[string]*ops.Tensor { return n.named }
func (n *network) SetRNG(rng *ops.RNG)           { n.rng = rng }

func (n *network) Forward(tp *ops.Tape, x *ops.Tensor, train bool) *ops.Tensor {
	if len(x.Shape) != 4 || x.Shape[1] != n.spec.InputNC {
		panic(fmt.Sprintf("models: %v: input shape %v, want (N, %d, H, W)", n.spec.Kind, x.Shape, n.spec.InputNC))
	}
	if h, w := x.Shape[2], x.Shape[3]; h%n.multiple != 0 || w%n.multiple != 0 {
		panic(fmt.Sprintf("models: %v: input shape %v: height and width must be multiples of %d", n.spec.Kind, x.Shape, n.multiple))
	}
	// The pass lives in the network: one on the stack would escape through the layer
	// interface and cost an allocation per step.
	n.pass = pass{tp: tp, train: train, rng: n.rng}
	y := n.root.forward(&n.pass, x)
	n.pass = pass{}
	return y
}

// Init draws every weight as the reference's init_weights(net, 'normal', 0.02) does:
// convolution and transposed-convolution weights from N(0, 0.02), their biases 0; BatchNorm
// weights from N(1, 0.02), biases 0, running mean 0 and variance 1. Draws follow state_dict
// order, so one seed gives one network.
func Init(m Module, rng *ops.RNG) {
	if Device(m) == nil {
		m.(*network).root.init(rng)
		return
	}
	// The draws are the host's: a host twin draws them and its values are uploaded, so the
	// device tensors stay in place (a gradient bound to a bucket stays bound).
	twin, err := Build(m.Spec())
	if err != nil {
		panic("models: Init: rebuilding " + m.Spec().String() + ": " + err.Error())
	}
	twin.(*network).root.init(rng)
	from := twin.State()
	for i, t := range m.State() {
		t.CopyFromHost(from[i].Data)
	}
}

// MoveTo moves every state tensor of m (parameters with their gradient buffers, and BatchNorm's
// running statistics) to device d, or back to the host for nil. Forward then runs where the
// network is; its input must be there too. Move a network before making its optimizer, whose
// moments are made where the parameters are.
func MoveTo(m Module, d ops.Device) {
	for _, t := range m.State() {
		t.MoveTo(d)
	}
}

// Device is where m's tensors live (nil: the host).
func Device(m Module) ops.Device {
	if s := m.State(); len(s) > 0 {
		return s[0].Device()
	}
	return nil
}

// CountParams is the number of trainable values (the reference's print_network figure).
func CountParams(m Module) int64 {
	var total int64
	for _, t := range m.Params() {
		total += int64(numel(t))
	}
	return total
}

// ParamCount is the number of trainable parameters of the network a spec names, counted
// without allocating them.
func ParamCount(spec Spec) (int64, error) {
	n, err := build(spec, false)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, t := range n.params {
		total += int64(numel(t))
	}
	return total, nil
}

// CountMACs is the multiply-accumulates of one HxW image through the network's convolutions
// and transposed convolutions: per output element C_in*KH*KW (groups are always 1 here), as
// the compression papers count (56.8 G for ResNet-9, ngf 64, at 256x256). Norms, activations
// and additions are not counted. It allocates no weights.
func CountMACs(spec Spec, h, w int) (int64, error) {
	return countMACs(spec, h, w, false)
}

func countMACs(spec Spec, h, w int, products bool) (int64, error) {
	n, err := build(spec, false)
	if err != nil {
		return 0, err
	}
	if products {
		eachLayer(n.root, func(l layer) {
			if c, ok := l.(*convT); ok {
				c.products = true
			}
		})
	}
	if h < 1 || w < 1 || h%n.multiple != 0 || w%n.multiple != 0 {
		return 0, fmt.Errorf("%w: %v: a %dx%d image does not fit; sides must be positive multiples of %d", ErrSpec, spec.Kind, h, w, n.multiple)
	}
	var macs int64
	err = func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("%w: %v at %dx%d: %v", ErrSpec, spec.Kind, h, w, r)
			}
		}()
		_, _, _, macs = n.root.outShape(n.spec.InputNC, h, w)
		return nil
	}()
	return macs, err
}

// CountProducts is CountMACs with transposed convolutions counted by the products a kernel
// must do (each input element times each weight) rather than thop's per-output count, which
// is s^2 times more at stride s: the arithmetic to compare with a machine's peak.
func CountProducts(spec Spec, h, w int) (int64, error) {
	return countMACs(spec, h, w, true)
}

// InertBiases names the convolution biases an InstanceNorm directly follows. The norm removes
// any per-channel constant, so they cannot change the output and their exact gradient is zero;
// the computed one is rounding noise, which Adam scales up to steps of about lr. Comparisons of
// trained weights across runs that round differently (one process against several) must leave
// them out. The reference keeps them (use_bias is true for instance norm), and so do we.
func InertBiases(m Module) []string {
	var names []string
	var walk func(l layer)
	walk = func(l layer) {
		switch v := l.(type) {
		case *seq:
			for i, it := range v.items {
				walk(it)
				if i+1 < len(v.items) {
					if nm, ok := v.items[i+1].(*norm); ok && nm.kind == Instance {
						switch c := it.(type) {
						case *conv:
							if c.b != nil {
								names = append(names, c.b.Name)
							}
						case *convT:
							if c.b != nil {
								names = append(names, c.b.Name)
							}
						}
					}
				}
			}
		case *resBlock:
			walk(v.block)
		case *unetBlock:
			walk(v.model)
		}
	}
	walk(m.(*network).root)
	return names
}

// eachLayer calls fn on l and every layer inside it.
func eachLayer(l layer, fn func(layer)) {
	fn(l)
	switch v := l.(type) {
	case *seq:
		for _, it := range v.items {
			eachLayer(it, fn)
		}
	case *resBlock:
		eachLayer(v.block, fn)
	case *unetBlock:
		eachLayer(v.model, fn)
	}
}
