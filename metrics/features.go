package metrics

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"wkd/data"
	"wkd/internal/safetensors"
	"wkd/ops"
)

// FeatureSize is the side of the Fashion-MNIST FeatureNet's input.
const FeatureSize = 32

// The feature network kinds a weights file can hold (its "wkd.features" metadata).
const (
	// KindFMNIST is the Fashion-MNIST classifier: luma (N, 1, 32, 32), a strided conv stack whose
	// last 4x4 conv sees the whole image. Files without the metadata are taken to be this one.
	KindFMNIST = "fmnist-convnet"
	// KindTexture is the texture classifier: (N, C, S, S) with C 1 or 3 and S 32 or 64, four 3x3
	// convs and a global average pool, so its features are statistics of local patterns wherever
	// they are in the image.
	KindTexture = "texture-convnet"
)

// fmnistClasses are Fashion-MNIST's labels in label order.
var fmnistClasses = []string{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"}

// FeatureSpec is what a feature network is: its architecture, its input and the classes it was
// trained to tell apart.
type FeatureSpec struct {
	Kind     string   `json:"name"`
	Dataset  string   `json:"dataset"`
	Classes  []string `json:"classes"`
	Channels int      `json:"channels"`
	Size     int      `json:"size"`
}

// FMNISTSpec is the Fashion-MNIST network's spec.
func FMNISTSpec() FeatureSpec {
	return FeatureSpec{Kind: KindFMNIST, Dataset: "fashion-mnist", Classes: append([]string(nil), fmnistClasses...), Channels: 1, Size: FeatureSize}
}

// TextureSpec is a texture network's spec for an ImageFolder dataset with these classes.
func TextureSpec(dataset string, classes []string, channels, size int) FeatureSpec {
	return FeatureSpec{Kind: KindTexture, Dataset: dataset, Classes: append([]string(nil), classes...), Channels: channels, Size: size}
}

// Validate says what is wrong with a spec, if anything.
func (s FeatureSpec) Validate() error {
	switch s.Kind {
	case KindFMNIST:
		if s.Channels != 1 || s.Size != FeatureSize || len(s.Classes) != 10 {
			return fmt.Errorf("metrics: %s takes 1x%dx%d input and 10 classes, not %dx%dx%d and %d", KindFMNIST, FeatureSize, FeatureSize, s.Channels, s.Size, s.Size, len(s.Classes))
		}
	case KindTexture:
		if s.Channels != 1 && s.Channels != 3 {
			return fmt.Errorf("metrics: %d input channels: a %s takes 1 (luma) or 3 (RGB)", s.Channels, KindTexture)
		}
		if s.Size != 32 && s.Size != 64 {
			return fmt.Errorf("metrics: input size %d: a %s takes 32 or 64", s.Size, KindTexture)
		}
		if len(s.Classes) < 2 {
			return fmt.Errorf("metrics: %d classes: a classifier needs at least 2", len(s.Classes))
		}
	default:
		return fmt.Errorf("metrics: unknown feature network %q (known: %s, %s)", s.Kind, KindFMNIST, KindTexture)
	}
	return nil
}

// featureLayer is one conv of a FeatureNet. norm puts a batch norm between the conv (then
// without bias) and its ReLU; pool marks the texture net's global average pool, which comes
// after this layer's ReLU.
type featureLayer struct {
	cin, cout, k, stride, pad int
	norm, pool                bool
}

// fmnistLayers:
//
//	conv 3x3 1->16, ReLU            32x32
//	conv 4x4/2 16->32, ReLU         16x16
//	conv 4x4/2 32->64, ReLU          8x8
//	conv 4x4/2 64->64, ReLU          4x4
//	conv 4x4 64->128, ReLU           1x1   features
//	conv 1x1 128->10                       class logits
var fmnistLayers = []featureLayer{
	{1, 16, 3, 1, 1, false, false}, {16, 32, 4, 2, 1, false, false}, {32, 64, 4, 2, 1, false, false},
	{64, 64, 4, 2, 1, false, false}, {64, 128, 4, 1, 0, false, false}, {128, 10, 1, 1, 0, false, false},
}

// TextureFeatures is the length of a texture network's feature vector.
const TextureFeatures = 128

// textureLayers (S = 64; halve every side for S = 32):
//
//	conv 3x3 C->32, BN, ReLU            64x64
//	conv 3x3/2 32->64, BN, ReLU         32x32
//	conv 3x3/2 64->128, BN, ReLU        16x16
//	conv 3x3/2 128->128, BN, ReLU        8x8
//	global average pool                  1x1   features (128)
//	conv 1x1 128->K                            class logits
//
// About 51 M MACs per 64 px image; a pooled unit sees 15x15 px, so the features describe local
// pattern statistics (stripes, grain, speckle), not layout. Batch norm (running statistics at
// evaluation) lets it learn in a few hundred steps whatever the images' colour and contrast.
func textureLayers(channels, classes int) []featureLayer {
	return []featureLayer{
		{channels, 32, 3, 1, 1, true, false}, {32, 64, 3, 2, 1, true, false}, {64, 128, 3, 2, 1, true, false},
		{128, TextureFeatures, 3, 2, 1, true, true}, {TextureFeatures, classes, 1, 1, 0, false, false},
	}
}

// Batch norm as PyTorch's defaults have it.
const bnMomentum, bnEps = 0.1, 1e-5

// FeatureNet is a small classifier whose penultimate activations are the features of the
// Frechet distance: it knows its dataset's classes the way Inception knows ImageNet, at a size
// these datasets have. Input: (N, C, S, S) in [-1, 1] as its spec says; Features resizes and
// converts images to it. Parameters are conv<i>.weight and conv<i>.bias, or for a normalized
// layer conv<i>.weight, bn<i>.weight, bn<i>.bias and the buffers bn<i>.running_mean and
// bn<i>.running_var, in layer order.
type FeatureNet struct {
	spec   FeatureSpec
	layers []featureLayer
	// w, b: per layer (K, C, k, k) and (K); b is nil for a normalized layer.
	w, b []*ops.Tensor
	// gamma, beta, runMean, runVar: (K) per normalized layer, nil elsewhere.
	gamma, beta, runMean, runVar []*ops.Tensor
	// avg is the global average pool as a fixed conv: (F, F, h, w), 1/(h*w) on the channel
	// diagonal, no gradient. Built for the input size; nil for the Fashion-MNIST net.
	avg *ops.Tensor
}

// NewFeatureNet returns the Fashion-MNIST network initialized with He-normal weights from seed.
func NewFeatureNet(seed uint64) *FeatureNet {
	n, err := NewFeatureNetFor(FMNISTSpec(), seed)
	if err != nil {
		panic(err) // FMNISTSpec is valid
	}
	return n
}

// NewFeatureNetFor returns a network of spec's kind initialized with He-normal weights from seed.
func NewFeatureNetFor(spec FeatureSpec, seed uint64) (*FeatureNet, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	n := &FeatureNet{spec: spec, layers: fmnistLayers}
	if spec.Kind == KindTexture {
		n.layers = textureLayers(spec.Channels, len(spec.Classes))
		side := spec.Size
		for _, l := range n.layers {
			side = (side+2*l.pad-l.k)/l.stride + 1
			if l.pool {
				n.avg = ops.New(l.cout, l.cout, side, side)
				for c := range l.cout {
					for k := range side * side {
						n.avg.Data[(c*l.cout+c)*side*side+k] = 1 / float32(side*side)
					}
				}
				break
			}
		}
	}
	rng := ops.NewRNG(seed)
	for i, l := range n.layers {
		w := ops.NewParam(fmt.Sprintf("conv%d.weight", i), l.cout, l.cin, l.k, l.k)
		rng.FillNormal(w, 0, float32(math.Sqrt(2/float64(l.cin*l.k*l.k))))
		var b, gamma, beta, mean, vars *ops.Tensor
		if l.norm {
			gamma = ops.NewParam(fmt.Sprintf("bn%d.weight", i), l.cout)
			beta = ops.NewParam(fmt.Sprintf("bn%d.bias", i), l.cout)
			mean, vars = ops.New(l.cout), ops.New(l.cout)
			mean.Name, vars.Name = fmt.Sprintf("bn%d.running_mean", i), fmt.Sprintf("bn%d.running_var", i)
			for k := range l.cout {
				gamma.Data[k], vars.Data[k] = 1, 1
			}
		} else {
			b = ops.NewParam(fmt.Sprintf("conv%d.bias", i), l.cout)
		}
		n.w, n.b = append(n.w, w), append(n.b, b)
		n.gamma, n.beta, n.runMean, n.runVar = append(n.gamma, gamma), append(n.beta, beta), append(n.runMean, mean), append(n.runVar, vars)
	}
	return n, nil
}

// Spec says what the network is.
func (n *FeatureNet) Spec() FeatureSpec { return n.spec }

// Params lists the trained tensors, layer by layer.
func (n *FeatureNet) Params() []*ops.Tensor {
	var out []*ops.Tensor
	for i := range n.w {
		for _, t := range []*ops.Tensor{n.w[i], n.b[i], n.gamma[i], n.beta[i]} {
			if t != nil {
				out = append(out, t)
			}
		}
	}
	return out
}

// tensors lists everything a weights file holds: the parameters and the running statistics.
func (n *FeatureNet) tensors() []*ops.Tensor {
	out := n.Params()
	for i := range n.w {
		if n.runMean[i] != nil {
			out = append(out, n.runMean[i], n.runVar[i])
		}
	}
	return out
}

// forward returns the features (N, F, 1, 1) and the logits (N, K, 1, 1); training normalizes
// with the batch's statistics and updates the running ones.
// x: (N, C, S, S)
func (n *FeatureNet) forward(tp *ops.Tape, x *ops.Tensor, training bool) (feat, logits *ops.Tensor) {
	last := len(n.layers) - 1
	for i, l := range n.layers {
		x = ops.Conv2d(tp, x, n.w[i], n.b[i], l.stride, l.pad)
		if l.norm {
			x = ops.BatchNorm2d(tp, x, n.gamma[i], n.beta[i], n.runMean[i], n.runVar[i], training, bnMomentum, bnEps)
		}
		if i < last {
			x = ops.ReLU(tp, x)
		}
		if l.pool {
			x = ops.Conv2d(tp, x, n.avg, nil, 1, 0)
		}
		if i == last-1 {
			feat = x
		}
	}
	return feat, x
}

// input converts images to the network's input: luma or RGB (gray replicated), resized to its
// side with bilinear interpolation. x: (N, C, S, S)
func (n *FeatureNet) input(images []Image) *ops.Tensor {
	c, s := n.spec.Channels, n.spec.Size
	x := ops.New(len(images), c, s, s)
	for i, im := range images {
		inputOf(x.Data[i*c*s*s:(i+1)*c*s*s], im, c, s)
	}
	return x
}

// inputOf writes one image as c planes of side s. dst: (C, S, S)
func inputOf(dst []float32, im Image, c, s int) {
	for k, plane := range channelsOf(im, c) {
		copy(dst[k*s*s:(k+1)*s*s], resizeBilinear(plane, im.H, im.W, s, s))
	}
}

// channelsOf returns an image's planes as c channels: its luma for c = 1, else its first three
// channels (one channel replicated).
func channelsOf(im Image, c int) [][]float64 {
	if c == 1 {
		return [][]float64{im.Gray()}
	}
	plane := im.H * im.W
	out := make([][]float64, c)
	for k := range c {
		src := im.Pix[min(k, im.C-1)*plane : (min(k, im.C-1)+1)*plane]
		out[k] = make([]float64, plane)
		for i, v := range src {
			out[k][i] = float64(v)
		}
	}
	return out
}

// Features returns one feature vector per image (128 values for both kinds).
func (n *FeatureNet) Features(images []Image) [][]float64 {
	const batch = 64
	var out [][]float64
	for lo := 0; lo < len(images); lo += batch {
		hi := min(lo+batch, len(images))
		f, _ := n.forward(nil, n.input(images[lo:hi]), false)
		d := f.Shape[1]
		for i := range hi - lo {
			v := make([]float64, d)
			for k := range d {
				v[k] = float64(f.Data[i*d+k])
			}
			out = append(out, v)
		}
	}
	return out
}

// Metadata keys of a weights file.
const (
	metaKind     = "wkd.features"
	metaAccuracy = "wkd.accuracy"
	metaDataset  = "wkd.dataset"
	metaClasses  = "wkd.classes" // a JSON array of names
	metaChannels = "wkd.channels"
	metaSize     = "wkd.size"
)

// Save writes the weights (safetensors, atomically) with what the network is and its test
// accuracy as metadata. The Fashion-MNIST net's file has the same names, shapes and metadata
// keys as before specs existed, so older wkd builds still read it.
func (n *FeatureNet) Save(path string, accuracy float64) error {
	t := map[string]safetensors.Tensor{}
	for _, p := range n.tensors() {
		t[p.Name] = safetensors.Tensor{Shape: p.Shape, Data: p.Data}
	}
	meta := map[string]string{metaKind: n.spec.Kind, metaAccuracy: fmt.Sprintf("%.4f", accuracy)}
	if n.spec.Kind != KindFMNIST {
		classes, err := json.Marshal(n.spec.Classes)
		if err != nil {
			return err
		}
		meta[metaDataset] = n.spec.Dataset
		meta[metaClasses] = string(classes)
		meta[metaChannels] = strconv.Itoa(n.spec.Channels)
		meta[metaSize] = strconv.Itoa(n.spec.Size)
	}
	return safetensors.WriteFile(path, t, meta)
}

// LoadFeatureNet reads weights Save wrote (or any file with the same names and shapes; without
// metadata it is taken to be the Fashion-MNIST net) and returns the accuracy recorded in it
// (NaN if none). Errors name the --features flag and the file.
func LoadFeatureNet(path string) (*FeatureNet, float64, error) {
	t, meta, err := safetensors.Read(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, fmt.Errorf("--features %s does not exist: make it with `wkd train-features --out %s` (`make demo` leaves one in runs/demo/texture-features.safetensors)", path, path)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("--features: %w", err)
	}
	spec, err := specFromMeta(meta)
	if err != nil {
		return nil, 0, fmt.Errorf("--features %s: %w (train one with 'wkd train-features')", path, err)
	}
	n, err := NewFeatureNetFor(spec, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("--features %s: %w", path, err)
	}
	for _, p := range n.tensors() {
		src, ok := t[p.Name]
		if !ok || !slices.Equal(src.Shape, p.Shape) {
			return nil, 0, fmt.Errorf("--features %s: no %s of shape %v: not a %s (train one with 'wkd train-features')", path, p.Name, p.Shape, spec.Kind)
		}
		copy(p.Data, src.Data)
	}
	acc := math.NaN()
	fmt.Sscan(meta[metaAccuracy], &acc)
	return n, acc, nil
}

func specFromMeta(meta map[string]string) (FeatureSpec, error) {
	kind := meta[metaKind]
	if kind == "" || kind == KindFMNIST {
		return FMNISTSpec(), nil
	}
	if kind != KindTexture {
		return FeatureSpec{}, fmt.Errorf("feature network %q is not one this wkd knows (%s, %s)", kind, KindFMNIST, KindTexture)
	}
	s := FeatureSpec{Kind: kind, Dataset: meta[metaDataset]}
	if err := json.Unmarshal([]byte(meta[metaClasses]), &s.Classes); err != nil {
		return FeatureSpec{}, fmt.Errorf("metadata %s = %q is not a JSON list of class names", metaClasses, meta[metaClasses])
	}
	var err error
	if s.Channels, err = strconv.Atoi(meta[metaChannels]); err != nil {
		return FeatureSpec{}, fmt.Errorf("metadata %s = %q is not a number", metaChannels, meta[metaChannels])
	}
	if s.Size, err = strconv.Atoi(meta[metaSize]); err != nil {
		return FeatureSpec{}, fmt.Errorf("metadata %s = %q is not a number", metaSize, meta[metaSize])
	}
	return s, s.Validate()
}

// TrainConfig is how TrainFeatureNet trains.
type TrainConfig struct {
	// Source is the Fashion-MNIST folder (IDX files, gzip or raw); used when Data is empty.
	Source string
	// Data is an ImageFolder (train/<class>/*.png, test/<class>/*.png); when set, a texture
	// network is trained on it instead of the Fashion-MNIST one.
	Data string
	// Channels (1 or 3) and Size (32 or 64) are the texture network's input; ignored for
	// Fashion-MNIST, which is 1x32x32.
	Channels, Size int
	// Samples is how many training images to use (0: all of an ImageFolder; at most 60000 of
	// Fashion-MNIST); Epochs how often.
	Samples, Epochs int
	// Batch is the minibatch size; LR Adam's rate.
	Batch int
	LR    float32
	Seed  uint64
}

// DefaultTrainConfig trains for about a minute on two cores to ~85-88% test accuracy.
func DefaultTrainConfig(source string) TrainConfig {
	return TrainConfig{Source: source, Channels: 1, Size: FeatureSize, Samples: 20000, Epochs: 2, Batch: 32, LR: 1e-3, Seed: 1}
}

// DefaultTextureTrainConfig trains a texture network on every training image of an ImageFolder
// at 3x64x64: 5 epochs of 3000 images take about four minutes on two cores.
func DefaultTextureTrainConfig(dir string) TrainConfig {
	return TrainConfig{Data: dir, Channels: 3, Size: 64, Samples: 0, Epochs: 5, Batch: 32, LR: 1e-3, Seed: 1}
}

// Validate says what is wrong with a configuration, naming the train-features flag.
func (c TrainConfig) Validate() error {
	switch {
	case c.Epochs < 1:
		return fmt.Errorf("--epochs %d: want at least 1", c.Epochs)
	case c.Batch < 1:
		return fmt.Errorf("--batch-size %d: want at least 1", c.Batch)
	case c.Data == "" && c.Samples < c.Batch:
		return fmt.Errorf("--max-samples %d: want at least --batch-size (%d)", c.Samples, c.Batch)
	case c.Data != "" && (c.Samples < 0 || (c.Samples > 0 && c.Samples < c.Batch)):
		return fmt.Errorf("--max-samples %d: want at least --batch-size (%d), or 0 for every training image", c.Samples, c.Batch)
	case !(c.LR > 0):
		return fmt.Errorf("--lr %g: want a positive rate", c.LR)
	}
	if c.Data != "" {
		if c.Channels != 1 && c.Channels != 3 {
			return fmt.Errorf("--channels %d: want 1 (luma) or 3 (RGB)", c.Channels)
		}
		if c.Size != 32 && c.Size != 64 {
			return fmt.Errorf("--size %d: want 32 or 64", c.Size)
		}
	}
	return nil
}

// labelled is a training or test set as network input: x holds n images of px values each.
type labelled struct {
	x  []float32 // (n, C, S, S)
	y  []int     // (n)
	px int
}

func (l labelled) len() int { return len(l.y) }

// TrainFeatureNet trains a classifier with a one-vs-rest logistic loss and returns it with its
// accuracy on the test split: on Fashion-MNIST shown as the datasets show it (dark on white,
// 32x32), or, when cfg.Data is set, on that ImageFolder with random horizontal and vertical
// flips (a texture's class does not depend on its orientation's sign). progress, if not nil,
// gets a line every few hundred steps.
func TrainFeatureNet(cfg TrainConfig, progress io.Writer) (*FeatureNet, float64, error) {
	if err := cfg.Validate(); err != nil {
		return nil, 0, err
	}
	var spec FeatureSpec
	var train, test labelled
	if cfg.Data == "" {
		spec = FMNISTSpec()
		var err error
		if train, err = loadFMNIST(cfg.Source, "train", cfg.Samples); err != nil {
			return nil, 0, err
		}
		if test, err = loadFMNIST(cfg.Source, "t10k", 10000); err != nil {
			return nil, 0, err
		}
	} else {
		folder, err := OpenImageFolder(cfg.Data)
		if err != nil {
			return nil, 0, err
		}
		spec = TextureSpec(folder.Name, folder.Classes, cfg.Channels, cfg.Size)
		// The test split's classes are checked before any image is decoded.
		if _, _, err := folder.Files("test"); err != nil {
			return nil, 0, err
		}
		if train, err = folder.load("train", spec, cfg.Samples, cfg.Seed); err != nil {
			return nil, 0, err
		}
		if test, err = folder.load("test", spec, 0, 0); err != nil {
			return nil, 0, err
		}
		if train.len() < cfg.Batch {
			return nil, 0, fmt.Errorf("--batch-size %d: %s has only %d training images", cfg.Batch, cfg.Data, train.len())
		}
	}
	n, err := NewFeatureNetFor(spec, cfg.Seed)
	if err != nil {
		return nil, 0, err
	}
	n.train(cfg, train, cfg.Data != "", progress)
	return n, n.accuracy(test), nil
}

// train runs Adam over shuffled minibatches of set for cfg.Epochs epochs.
func (n *FeatureNet) train(cfg TrainConfig, set labelled, flips bool, progress io.Writer) {
	opt := ops.NewAdam([]ops.ParamGroup{{Params: n.Params()}}, ops.AdamConfig{LR: cfg.LR, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8})
	r := rand.New(rand.NewPCG(cfg.Seed, 99))
	k, c, s := len(n.spec.Classes), n.spec.Channels, n.spec.Size
	x := ops.New(cfg.Batch, c, s, s)
	y := ops.New(cfg.Batch, k, 1, 1)
	tp := ops.NewTape()
	start := time.Now()
	steps := set.len() / cfg.Batch
	for ep := range cfg.Epochs {
		perm := r.Perm(set.len())
		for st := range steps {
			clear(y.Data)
			for i := range cfg.Batch {
				j := perm[st*cfg.Batch+i]
				dst := x.Data[i*set.px : (i+1)*set.px]
				copy(dst, set.x[j*set.px:(j+1)*set.px])
				if flips {
					flip(dst, c, s, r.IntN(2) == 1, r.IntN(2) == 1)
				}
				y.Data[i*k+set.y[j]] = 1
			}
			tp.Reset()
			opt.ZeroGrad()
			_, logits := n.forward(tp, x, true)
			loss := ops.BCEWithLogits(tp, logits, y)
			tp.Backward(loss)
			opt.Step()
			if progress != nil && (st%200 == 0 || st == steps-1) {
				fmt.Fprintf(progress, "\repoch %d/%d step %d/%d loss %.4f (%.0fs)   ", ep+1, cfg.Epochs, st+1, steps, loss.Data[0], time.Since(start).Seconds())
			}
		}
	}
	if progress != nil {
		fmt.Fprintln(progress)
	}
}

// flip mirrors each (s, s) plane of img left-right and/or top-bottom in place.
// img: (C, S, S)
func flip(img []float32, c, s int, horizontal, vertical bool) {
	for p := range c {
		pl := img[p*s*s : (p+1)*s*s]
		if horizontal {
			for y := range s {
				row := pl[y*s : (y+1)*s]
				for i, j := 0, s-1; i < j; i, j = i+1, j-1 {
					row[i], row[j] = row[j], row[i]
				}
			}
		}
		if vertical {
			for i, j := 0, s-1; i < j; i, j = i+1, j-1 {
				for x := range s {
					pl[i*s+x], pl[j*s+x] = pl[j*s+x], pl[i*s+x]
				}
			}
		}
	}
}

// accuracy is the fraction of set whose largest logit is its label.
func (n *FeatureNet) accuracy(set labelled) float64 {
	const batch = 250
	k, c, s := len(n.spec.Classes), n.spec.Channels, n.spec.Size
	right := 0
	for lo := 0; lo < set.len(); lo += batch {
		hi := min(lo+batch, set.len())
		x := ops.FromData(set.x[lo*set.px:hi*set.px], hi-lo, c, s, s)
		_, logits := n.forward(nil, x, false)
		for i := range hi - lo {
			best := 0
			for j := 1; j < k; j++ {
				if logits.Data[i*k+j] > logits.Data[i*k+best] {
					best = j
				}
			}
			if best == set.y[lo+i] {
				right++
			}
		}
	}
	return float64(right) / float64(set.len())
}

// loadFMNIST reads up to limit images of a split, inverted and resized to 32x32 in [-1, 1].
func loadFMNIST(dir, split string, limit int) (labelled, error) {
	imgs, err := readIDXAny(dir, split+"-images-idx3-ubyte")
	if err != nil {
		return labelled{}, err
	}
	labels, err := readIDXAny(dir, split+"-labels-idx1-ubyte")
	if err != nil {
		return labelled{}, err
	}
	if len(imgs.Dims) != 3 || len(labels.Dims) != 1 || imgs.Dims[0] != labels.Dims[0] {
		return labelled{}, fmt.Errorf("%s: %s images %v and labels %v do not match", dir, split, imgs.Dims, labels.Dims)
	}
	n := min(limit, imgs.Dims[0])
	h, w := imgs.Dims[1], imgs.Dims[2]
	const px = FeatureSize * FeatureSize
	xs := make([]float32, n*px)
	ys := make([]int, n)
	plane := make([]float64, h*w)
	for i := range n {
		for k := range plane {
			plane[k] = float64(255-imgs.Data[i*h*w+k])/127.5 - 1
		}
		copy(xs[i*px:], resizeBilinear(plane, h, w, FeatureSize, FeatureSize))
		ys[i] = int(labels.Data[i])
		if ys[i] > 9 {
			return labelled{}, fmt.Errorf("%s: label %d of image %d is not a Fashion-MNIST class", dir, ys[i], i)
		}
	}
	return labelled{xs, ys, px}, nil
}

func readIDXAny(dir, name string) (*data.IDX, error) {
	idx, err := data.ReadIDX(filepath.Join(dir, name+".gz"))
	if err == nil {
		return idx, nil
	}
	if idx2, err2 := data.ReadIDX(filepath.Join(dir, name)); err2 == nil {
		return idx2, nil
	}
	return nil, err
}

// resizeBilinear resamples an (h, w) plane to (oh, ow) with pixel-centre alignment.
func resizeBilinear(src []float64, h, w, oh, ow int) []float32 {
	out := make([]float32, oh*ow)
	for y := range oh {
		sy := math.Max(0, math.Min(float64(h-1), (float64(y)+0.5)*float64(h)/float64(oh)-0.5))
		y0 := int(sy)
		y1 := min(y0+1, h-1)
		fy := sy - float64(y0)
		for x := range ow {
			sx := math.Max(0, math.Min(float64(w-1), (float64(x)+0.5)*float64(w)/float64(ow)-0.5))
			x0 := int(sx)
			x1 := min(x0+1, w-1)
			fx := sx - float64(x0)
			v := (1-fy)*((1-fx)*src[y0*w+x0]+fx*src[y0*w+x1]) + fy*((1-fx)*src[y1*w+x0]+fx*src[y1*w+x1])
			out[y*ow+x] = float32(v)
		}
	}
	return out
}
