package metrics

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"path/filepath"
	"time"

	"wkd/data"
	"wkd/internal/safetensors"
	"wkd/ops"
)

// FeatureSize is the side of FeatureNet's input; images of other sizes are resized to it.
const FeatureSize = 32

// FeatureNet is a small Fashion-MNIST classifier whose penultimate activations (128 values)
// are the features of the Frechet distance: it knows clothing and shoes the way Inception
// knows ImageNet, at a size these datasets have. Input: luma (N, 1, 32, 32) in [-1, 1],
// dark items on white as the built datasets show them.
//
//	conv 3x3 1->16, ReLU            32x32
//	conv 4x4/2 16->32, ReLU         16x16
//	conv 4x4/2 32->64, ReLU          8x8
//	conv 4x4/2 64->64, ReLU          4x4
//	conv 4x4 64->128, ReLU           1x1   features
//	conv 1x1 128->10                       class logits
type FeatureNet struct {
	w, b [6]*ops.Tensor
}

var featureLayers = [6]struct{ cin, cout, k, stride, pad int }{
	{1, 16, 3, 1, 1}, {16, 32, 4, 2, 1}, {32, 64, 4, 2, 1}, {64, 64, 4, 2, 1}, {64, 128, 4, 1, 0}, {128, 10, 1, 1, 0},
}

// NewFeatureNet returns a network initialized with He-normal weights from seed.
func NewFeatureNet(seed uint64) *FeatureNet {
	rng := ops.NewRNG(seed)
	n := &FeatureNet{}
	for i, l := range featureLayers {
		n.w[i] = ops.NewParam(fmt.Sprintf("conv%d.weight", i), l.cout, l.cin, l.k, l.k)
		n.b[i] = ops.NewParam(fmt.Sprintf("conv%d.bias", i), l.cout)
		rng.FillNormal(n.w[i], 0, float32(math.Sqrt(2/float64(l.cin*l.k*l.k))))
	}
	return n
}

// Params lists the weights and biases.
func (n *FeatureNet) Params() []*ops.Tensor {
	var out []*ops.Tensor
	for i := range n.w {
		out = append(out, n.w[i], n.b[i])
	}
	return out
}

// forward returns the features (N, 128, 1, 1) and the logits (N, 10, 1, 1).
func (n *FeatureNet) forward(tp *ops.Tape, x *ops.Tensor) (feat, logits *ops.Tensor) {
	for i, l := range featureLayers {
		x = ops.Conv2d(tp, x, n.w[i], n.b[i], l.stride, l.pad)
		if i < len(featureLayers)-1 {
			x = ops.ReLU(tp, x)
		}
		if i == len(featureLayers)-2 {
			feat = x
		}
	}
	return feat, x
}

// Features returns one 128-d vector per image.
func (n *FeatureNet) Features(images []Image) [][]float64 {
	const batch = 64
	var out [][]float64
	for lo := 0; lo < len(images); lo += batch {
		hi := min(lo+batch, len(images))
		x := ops.New(hi-lo, 1, FeatureSize, FeatureSize)
		for i, im := range images[lo:hi] {
			copy(x.Data[i*FeatureSize*FeatureSize:], resizeBilinear(im.Gray(), im.H, im.W, FeatureSize, FeatureSize))
		}
		f, _ := n.forward(nil, x)
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

// Save writes the weights (safetensors, atomically) with the test accuracy as metadata.
func (n *FeatureNet) Save(path string, accuracy float64) error {
	t := map[string]safetensors.Tensor{}
	for _, p := range n.Params() {
		t[p.Name] = safetensors.Tensor{Shape: p.Shape, Data: p.Data}
	}
	return safetensors.WriteFile(path, t, map[string]string{"wkd.features": "fmnist-convnet", "wkd.accuracy": fmt.Sprintf("%.4f", accuracy)})
}

// LoadFeatureNet reads weights Save wrote (or any file with the same names and shapes) and
// returns the accuracy recorded in it (NaN if none).
func LoadFeatureNet(path string) (*FeatureNet, float64, error) {
	t, meta, err := safetensors.Read(path)
	if err != nil {
		return nil, 0, fmt.Errorf("--features: %w", err)
	}
	n := NewFeatureNet(0)
	for _, p := range n.Params() {
		src, ok := t[p.Name]
		if !ok || len(src.Data) != len(p.Data) {
			return nil, 0, fmt.Errorf("--features %s: no %s of shape %v: not a FeatureNet (train one with 'wkd train-features')", path, p.Name, p.Shape)
		}
		copy(p.Data, src.Data)
	}
	acc := math.NaN()
	fmt.Sscan(meta["wkd.accuracy"], &acc)
	return n, acc, nil
}

// TrainConfig is how TrainFeatureNet trains.
type TrainConfig struct {
	// Source is the Fashion-MNIST folder (IDX files, gzip or raw).
	Source string
	// Samples is how many training images to use (60000 at most); Epochs how often.
	Samples, Epochs int
	// Batch is the minibatch size; LR Adam's rate.
	Batch int
	LR    float32
	Seed  uint64
}

// DefaultTrainConfig trains for about a minute on two cores to ~85-88% test accuracy.
func DefaultTrainConfig(source string) TrainConfig {
	return TrainConfig{Source: source, Samples: 20000, Epochs: 2, Batch: 32, LR: 1e-3, Seed: 1}
}

// TrainFeatureNet trains the classifier on Fashion-MNIST shown as the datasets show it (dark
// on white, 32x32) with a one-vs-rest logistic loss, and returns it with its accuracy on the
// 10000 test images. progress, if not nil, gets one line per few hundred steps.
func TrainFeatureNet(cfg TrainConfig, progress io.Writer) (*FeatureNet, float64, error) {
	trainX, trainY, err := loadFMNIST(cfg.Source, "train", cfg.Samples)
	if err != nil {
		return nil, 0, err
	}
	testX, testY, err := loadFMNIST(cfg.Source, "t10k", 10000)
	if err != nil {
		return nil, 0, err
	}
	n := NewFeatureNet(cfg.Seed)
	opt := ops.NewAdam([]ops.ParamGroup{{Params: n.Params()}}, ops.AdamConfig{LR: cfg.LR, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8})
	r := rand.New(rand.NewPCG(cfg.Seed, 99))
	const px = FeatureSize * FeatureSize
	x := ops.New(cfg.Batch, 1, FeatureSize, FeatureSize)
	y := ops.New(cfg.Batch, 10, 1, 1)
	tp := ops.NewTape()
	start := time.Now()
	steps := len(trainY) / cfg.Batch
	for ep := range cfg.Epochs {
		perm := r.Perm(len(trainY))
		for s := range steps {
			clear(y.Data)
			for i := range cfg.Batch {
				k := perm[s*cfg.Batch+i]
				copy(x.Data[i*px:(i+1)*px], trainX[k*px:(k+1)*px])
				y.Data[i*10+trainY[k]] = 1
			}
			tp.Reset()
			opt.ZeroGrad()
			_, logits := n.forward(tp, x)
			loss := ops.BCEWithLogits(tp, logits, y)
			tp.Backward(loss)
			opt.Step()
			if progress != nil && (s%200 == 0 || s == steps-1) {
				fmt.Fprintf(progress, "\repoch %d/%d step %d/%d loss %.4f (%.0fs)   ", ep+1, cfg.Epochs, s+1, steps, loss.Data[0], time.Since(start).Seconds())
			}
		}
	}
	if progress != nil {
		fmt.Fprintln(progress)
	}
	return n, accuracy(n, testX, testY), nil
}

func accuracy(n *FeatureNet, xs []float32, ys []int) float64 {
	const px = FeatureSize * FeatureSize
	const batch = 250
	right := 0
	for lo := 0; lo < len(ys); lo += batch {
		hi := min(lo+batch, len(ys))
		x := ops.FromData(xs[lo*px:hi*px], hi-lo, 1, FeatureSize, FeatureSize)
		_, logits := n.forward(nil, x)
		for i := range hi - lo {
			best := 0
			for k := 1; k < 10; k++ {
				if logits.Data[i*10+k] > logits.Data[i*10+best] {
					best = k
				}
			}
			if best == ys[lo+i] {
				right++
			}
		}
	}
	return float64(right) / float64(len(ys))
}

// loadFMNIST reads up to limit images of a split, inverted and resized to 32x32 in [-1, 1].
func loadFMNIST(dir, split string, limit int) ([]float32, []int, error) {
	imgs, err := readIDXAny(dir, split+"-images-idx3-ubyte")
	if err != nil {
		return nil, nil, err
	}
	labels, err := readIDXAny(dir, split+"-labels-idx1-ubyte")
	if err != nil {
		return nil, nil, err
	}
	if len(imgs.Dims) != 3 || len(labels.Dims) != 1 || imgs.Dims[0] != labels.Dims[0] {
		return nil, nil, fmt.Errorf("%s: %s images %v and labels %v do not match", dir, split, imgs.Dims, labels.Dims)
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
			return nil, nil, fmt.Errorf("%s: label %d of image %d is not a Fashion-MNIST class", dir, ys[i], i)
		}
	}
	return xs, ys, nil
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
