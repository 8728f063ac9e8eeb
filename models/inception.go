package models

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"

	"wkd/internal/safetensors"
	"wkd/ops"
)

// Inception is Inception-v3 as FID is computed with it (pytorch-fid's FIDInceptionA, C, E_1
// and E_2 blocks): torchvision's Inception3 without the auxiliary head, whose average pools in
// the A, C and first E blocks leave the padding out of the count, and whose last E block pools
// with a 3x3 max instead. It runs forward only, in inference mode: BatchNorm (eps 1e-3) is
// folded into the convolutions once, when the weights are set.
//
// Input: RGB images (N, 3, H, W) with values in [0, 1]; they are resized bilinearly to 299x299
// (align_corners=False, as torch.nn.functional.interpolate) and mapped to [-1, 1], as
// pytorch-fid does. Output: the 2048-d pool3 features, or the 64, 192 or 768-d outputs of the
// earlier blocks averaged over space.
//
// Weight names are torchvision's state_dict keys (Conv2d_1a_3x3.conv.weight,
// Mixed_5b.branch1x1.bn.running_mean, ...); the classifier (fc) in the file is not used.
//
// Not safe for concurrent use: it keeps one arena of activations, reused batch to batch, so
// a warm forward of the same batch size allocates nothing.
type Inception struct {
	convs map[string]*inceptionConv
	named map[string]*ops.Tensor
	order []*ops.Tensor // state_dict order
	tp    *ops.Tape
}

// InceptionDims are the feature sizes Features can return, one per block end.
var InceptionDims = []int{64, 192, 768, 2048}

// inceptionConv is torchvision's BasicConv2d: conv without bias, BatchNorm, ReLU.
type inceptionConv struct {
	name             string
	in, out, kh, kw  int
	stride, ph, pw   int
	w, gamma, beta   *ops.Tensor
	runMean, runVar  *ops.Tensor
	foldedW, foldedB *ops.Tensor // conv with BatchNorm applied, set by fold
}

const inceptionBNEps = 1e-3

// NewInception builds the network with zero weights and BatchNorm at its constructor values;
// set the weights with LoadInception's reading or InitRandom.
func NewInception() *Inception {
	m := &Inception{convs: map[string]*inceptionConv{}, named: map[string]*ops.Tensor{}, tp: ops.NewTape()}
	m.tp.SetNoGrad(true)
	for _, c := range inceptionLayout() {
		m.addConv(c)
	}
	m.fold()
	return m
}

func (m *Inception) addConv(c inceptionConv) {
	c.w = ops.New(c.out, c.in, c.kh, c.kw)
	c.gamma, c.beta = ops.New(c.out), ops.New(c.out)
	c.runMean, c.runVar = ops.New(c.out), ops.New(c.out)
	for i := range c.out {
		c.gamma.Data[i], c.runVar.Data[i] = 1, 1
	}
	c.foldedW, c.foldedB = ops.New(c.out, c.in, c.kh, c.kw), ops.New(c.out)
	for _, p := range []struct {
		suffix string
		t      *ops.Tensor
	}{{".conv.weight", c.w}, {".bn.weight", c.gamma}, {".bn.bias", c.beta}, {".bn.running_mean", c.runMean}, {".bn.running_var", c.runVar}} {
		p.t.Name = c.name + p.suffix
		m.named[p.t.Name] = p.t
		m.order = append(m.order, p.t)
	}
	m.convs[c.name] = &c
}

// inceptionLayout lists every BasicConv2d in torchvision's module order.
func inceptionLayout() []inceptionConv {
	var l []inceptionConv
	conv := func(name string, in, out, kh, kw, stride, ph, pw int) {
		l = append(l, inceptionConv{name: name, in: in, out: out, kh: kh, kw: kw, stride: stride, ph: ph, pw: pw})
	}
	conv("Conv2d_1a_3x3", 3, 32, 3, 3, 2, 0, 0)
	conv("Conv2d_2a_3x3", 32, 32, 3, 3, 1, 0, 0)
	conv("Conv2d_2b_3x3", 32, 64, 3, 3, 1, 1, 1)
	conv("Conv2d_3b_1x1", 64, 80, 1, 1, 1, 0, 0)
	conv("Conv2d_4a_3x3", 80, 192, 3, 3, 1, 0, 0)
	blockA := func(p string, in, pool int) {
		conv(p+".branch1x1", in, 64, 1, 1, 1, 0, 0)
		conv(p+".branch5x5_1", in, 48, 1, 1, 1, 0, 0)
		conv(p+".branch5x5_2", 48, 64, 5, 5, 1, 2, 2)
		conv(p+".branch3x3dbl_1", in, 64, 1, 1, 1, 0, 0)
		conv(p+".branch3x3dbl_2", 64, 96, 3, 3, 1, 1, 1)
		conv(p+".branch3x3dbl_3", 96, 96, 3, 3, 1, 1, 1)
		conv(p+".branch_pool", in, pool, 1, 1, 1, 0, 0)
	}
	blockA("Mixed_5b", 192, 32)
	blockA("Mixed_5c", 256, 64)
	blockA("Mixed_5d", 288, 64)
	conv("Mixed_6a.branch3x3", 288, 384, 3, 3, 2, 0, 0)
	conv("Mixed_6a.branch3x3dbl_1", 288, 64, 1, 1, 1, 0, 0)
	conv("Mixed_6a.branch3x3dbl_2", 64, 96, 3, 3, 1, 1, 1)
	conv("Mixed_6a.branch3x3dbl_3", 96, 96, 3, 3, 2, 0, 0)
	blockC := func(p string, c7 int) {
		conv(p+".branch1x1", 768, 192, 1, 1, 1, 0, 0)
		conv(p+".branch7x7_1", 768, c7, 1, 1, 1, 0, 0)
		conv(p+".branch7x7_2", c7, c7, 1, 7, 1, 0, 3)
		conv(p+".branch7x7_3", c7, 192, 7, 1, 1, 3, 0)
		conv(p+".branch7x7dbl_1", 768, c7, 1, 1, 1, 0, 0)
		conv(p+".branch7x7dbl_2", c7, c7, 7, 1, 1, 3, 0)
		conv(p+".branch7x7dbl_3", c7, c7, 1, 7, 1, 0, 3)
		conv(p+".branch7x7dbl_4", c7, c7, 7, 1, 1, 3, 0)
		conv(p+".branch7x7dbl_5", c7, 192, 1, 7, 1, 0, 3)
		conv(p+".branch_pool", 768, 192, 1, 1, 1, 0, 0)
	}
	blockC("Mixed_6b", 128)
	blockC("Mixed_6c", 160)
	blockC("Mixed_6d", 160)
	blockC("Mixed_6e", 192)
	conv("Mixed_7a.branch3x3_1", 768, 192, 1, 1, 1, 0, 0)
	conv("Mixed_7a.branch3x3_2", 192, 320, 3, 3, 2, 0, 0)
	conv("Mixed_7a.branch7x7x3_1", 768, 192, 1, 1, 1, 0, 0)
	conv("Mixed_7a.branch7x7x3_2", 192, 192, 1, 7, 1, 0, 3)
	conv("Mixed_7a.branch7x7x3_3", 192, 192, 7, 1, 1, 3, 0)
	conv("Mixed_7a.branch7x7x3_4", 192, 192, 3, 3, 2, 0, 0)
	blockE := func(p string, in int) {
		conv(p+".branch1x1", in, 320, 1, 1, 1, 0, 0)
		conv(p+".branch3x3_1", in, 384, 1, 1, 1, 0, 0)
		conv(p+".branch3x3_2a", 384, 384, 1, 3, 1, 0, 1)
		conv(p+".branch3x3_2b", 384, 384, 3, 1, 1, 1, 0)
		conv(p+".branch3x3dbl_1", in, 448, 1, 1, 1, 0, 0)
		conv(p+".branch3x3dbl_2", 448, 384, 3, 3, 1, 1, 1)
		conv(p+".branch3x3dbl_3a", 384, 384, 1, 3, 1, 0, 1)
		conv(p+".branch3x3dbl_3b", 384, 384, 3, 1, 1, 1, 0)
		conv(p+".branch_pool", in, 192, 1, 1, 1, 0, 0)
	}
	blockE("Mixed_7b", 1280)
	blockE("Mixed_7c", 2048)
	return l
}

// State is every tensor the network reads, in torchvision's state_dict order.
func (m *Inception) State() []*ops.Tensor { return m.order }

// fold recomputes the BatchNorm-folded conv weights from the state: w * gamma / sqrt(var+eps)
// and beta - mean * gamma / sqrt(var+eps).
func (m *Inception) fold() {
	for _, c := range m.convs {
		per := c.in * c.kh * c.kw
		for k := range c.out {
			s := float64(c.gamma.Data[k]) / math.Sqrt(float64(c.runVar.Data[k])+inceptionBNEps)
			for i := range per {
				c.foldedW.Data[k*per+i] = float32(float64(c.w.Data[k*per+i]) * s)
			}
			c.foldedB.Data[k] = float32(float64(c.beta.Data[k]) - float64(c.runMean.Data[k])*s)
		}
	}
}

// InitRandom sets random weights and BatchNorm statistics (variances near 0.01, where the eps
// of 1e-3 matters) that keep activations of order 1 through the network: for tests and for trying the FID pipeline without the real weights.
// Features from random weights are not comparable with any published FID.
func (m *Inception) InitRandom(seed uint64) {
	r := rand.New(rand.NewPCG(seed, 0x1ce))
	for _, c := range inceptionLayout() {
		cv := m.convs[c.name]
		std := math.Sqrt(2 / float64(c.in*c.kh*c.kw))
		for i := range cv.w.Data {
			cv.w.Data[i] = float32(r.NormFloat64() * std)
		}
		for k := range c.out {
			cv.gamma.Data[k] = float32(0.05 + 0.1*r.Float64())
			cv.beta.Data[k] = float32(0.1 * r.NormFloat64())
			cv.runMean.Data[k] = float32(0.1 * r.NormFloat64())
			cv.runVar.Data[k] = float32(0.005 + 0.01*r.Float64())
		}
	}
	m.fold()
}

// ErrInceptionWeights is returned for a weights file that is not the FID Inception's.
var ErrInceptionWeights = errors.New("models: not Inception-v3 FID weights")

// LoadInception reads the FID Inception's weights from pytorch-fid's
// pt_inception-2015-12-05-6726825d.pth (or any torch.save of the network's state_dict, zip or
// legacy format) or from a safetensors file with the same names. Tensors beyond the network's
// (fc.*, num_batches_tracked, an auxiliary head) are ignored; a missing or misshapen one is an
// error naming the file and the tensor.
func LoadInception(path string) (*Inception, error) {
	tensors, _, err := ReadWeights(path)
	if err != nil {
		return nil, fmt.Errorf("reading the Inception weights: %w", err)
	}
	m := NewInception()
	for _, t := range m.order {
		ft, ok := tensors[t.Name]
		if !ok {
			return nil, fmt.Errorf("%s: %w: %q (shape %v) is missing; want pytorch-fid's pt_inception-2015-12-05-6726825d.pth", path, ErrInceptionWeights, t.Name, t.Shape)
		}
		if !slices.Equal(ft.Shape, t.Shape) {
			return nil, fmt.Errorf("%s: %w: %q is %v in the file, want %v", path, ErrInceptionWeights, t.Name, ft.Shape, t.Shape)
		}
	}
	for _, t := range m.order {
		copy(t.Data, tensors[t.Name].Data)
	}
	m.fold()
	return m, nil
}

// Save writes the network's state as safetensors, under torchvision's names.
func (m *Inception) Save(path string, meta map[string]string) error {
	tensors := make(map[string]safetensors.Tensor, len(m.order))
	for _, t := range m.order {
		tensors[t.Name] = safetensors.Tensor{Shape: t.Shape, Data: t.Data}
	}
	return safetensors.WriteFile(path, tensors, maps.Clone(meta))
}

func (m *Inception) conv(x *ops.Tensor, name string) *ops.Tensor {
	c := m.convs[name]
	return ops.ReLU(m.tp, ops.Conv2dPad(m.tp, x, c.foldedW, c.foldedB, c.stride, c.ph, c.pw))
}

// cat joins tensors along channels into one arena tensor (forward only).
func (m *Inception) cat(xs ...*ops.Tensor) *ops.Tensor {
	n, _, h, w := xs[0].NCHW()
	c := 0
	for _, x := range xs {
		c += x.Shape[1]
	}
	out := m.tp.Get(n, c, h, w)
	o := 0
	for i := range n {
		for _, x := range xs {
			per := len(x.Data) / n
			copy(out.Data[o:o+per], x.Data[i*per:(i+1)*per])
			o += per
		}
	}
	return out
}

func (m *Inception) blockA(x *ops.Tensor, p string) *ops.Tensor {
	b1 := m.conv(x, p+".branch1x1")
	b5 := m.conv(m.conv(x, p+".branch5x5_1"), p+".branch5x5_2")
	b3 := m.conv(m.conv(m.conv(x, p+".branch3x3dbl_1"), p+".branch3x3dbl_2"), p+".branch3x3dbl_3")
	bp := m.conv(ops.AvgPool2d(m.tp, x, 3, 1, 1, false), p+".branch_pool")
	return m.cat(b1, b5, b3, bp)
}

func (m *Inception) blockB(x *ops.Tensor) *ops.Tensor {
	p := "Mixed_6a"
	b3 := m.conv(x, p+".branch3x3")
	bd := m.conv(m.conv(m.conv(x, p+".branch3x3dbl_1"), p+".branch3x3dbl_2"), p+".branch3x3dbl_3")
	return m.cat(b3, bd, ops.MaxPool2d(m.tp, x, 3, 2, 0))
}

func (m *Inception) blockC(x *ops.Tensor, p string) *ops.Tensor {
	b1 := m.conv(x, p+".branch1x1")
	b7 := x
	for _, s := range []string{"_1", "_2", "_3"} {
		b7 = m.conv(b7, p+".branch7x7"+s)
	}
	bd := x
	for _, s := range []string{"_1", "_2", "_3", "_4", "_5"} {
		bd = m.conv(bd, p+".branch7x7dbl"+s)
	}
	bp := m.conv(ops.AvgPool2d(m.tp, x, 3, 1, 1, false), p+".branch_pool")
	return m.cat(b1, b7, bd, bp)
}

func (m *Inception) blockD(x *ops.Tensor) *ops.Tensor {
	p := "Mixed_7a"
	b3 := m.conv(m.conv(x, p+".branch3x3_1"), p+".branch3x3_2")
	b7 := x
	for _, s := range []string{"_1", "_2", "_3", "_4"} {
		b7 = m.conv(b7, p+".branch7x7x3"+s)
	}
	return m.cat(b3, b7, ops.MaxPool2d(m.tp, x, 3, 2, 0))
}

// blockE is FIDInceptionE_1 (maxPool false: average pool without the padding in the count)
// or FIDInceptionE_2 (maxPool true).
func (m *Inception) blockE(x *ops.Tensor, p string, maxPool bool) *ops.Tensor {
	b1 := m.conv(x, p+".branch1x1")
	b3 := m.conv(x, p+".branch3x3_1")
	b3a, b3b := m.conv(b3, p+".branch3x3_2a"), m.conv(b3, p+".branch3x3_2b")
	bd := m.conv(m.conv(x, p+".branch3x3dbl_1"), p+".branch3x3dbl_2")
	bda, bdb := m.conv(bd, p+".branch3x3dbl_3a"), m.conv(bd, p+".branch3x3dbl_3b")
	var pooled *ops.Tensor
	if maxPool {
		pooled = ops.MaxPool2d(m.tp, x, 3, 1, 1)
	} else {
		pooled = ops.AvgPool2d(m.tp, x, 3, 1, 1, false)
	}
	bp := m.conv(pooled, p+".branch_pool")
	return m.cat(b1, b3a, b3b, bda, bdb, bp)
}

// Features writes into out (N rows of dims values) the features of images x (N, 3, H, W) in
// [0, 1]; dims is one of InceptionDims (2048 for FID). It panics on a wrong shape or dims;
// callers check user input first.
func (m *Inception) Features(x *ops.Tensor, dims int, out [][]float32) {
	n, c, _, _ := x.NCHW()
	if c != 3 || len(out) != n || !slices.Contains(InceptionDims, dims) {
		panic(fmt.Sprintf("models: Inception.Features: input %v, %d output rows, dims %d", x.Shape, len(out), dims))
	}
	m.tp.Reset()
	tp := m.tp
	h := ops.ResizeBilinear(tp, x, 299, 299)
	h = ops.AddScalar(tp, ops.Scale(tp, h, 2), -1)
	h = m.conv(h, "Conv2d_1a_3x3")
	h = m.conv(h, "Conv2d_2a_3x3")
	h = m.conv(h, "Conv2d_2b_3x3")
	h = ops.MaxPool2d(tp, h, 3, 2, 0)
	if dims > 64 {
		h = m.conv(h, "Conv2d_3b_1x1")
		h = m.conv(h, "Conv2d_4a_3x3")
		h = ops.MaxPool2d(tp, h, 3, 2, 0)
	}
	if dims > 192 {
		h = m.blockA(h, "Mixed_5b")
		h = m.blockA(h, "Mixed_5c")
		h = m.blockA(h, "Mixed_5d")
		h = m.blockB(h)
		for _, p := range []string{"Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"} {
			h = m.blockC(h, p)
		}
	}
	if dims > 768 {
		h = m.blockD(h)
		h = m.blockE(h, "Mixed_7b", false)
		h = m.blockE(h, "Mixed_7c", true)
	}
	f := ops.GlobalAvgPool2d(tp, h)
	for i := range n {
		if len(out[i]) != dims {
			panic(fmt.Sprintf("models: Inception.Features: output row %d has %d values, want %d", i, len(out[i]), dims))
		}
		copy(out[i], f.Data[i*dims:(i+1)*dims])
	}
}
