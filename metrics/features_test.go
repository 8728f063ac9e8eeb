package metrics

import (
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"wkd/internal/safetensors"
	"wkd/internal/torchref"
)

// textureClasses draws a synthetic texture of each class at side s: stripes of a random period,
// angle and colours; checkers of a random cell size and colours; and coloured noise. Every class
// gets a random brightness offset and pixel noise, so no single statistic gives the class away.
var textureClasses = map[string]func(r *rand.Rand, s int) image.Image{
	"stripes": func(r *rand.Rand, s int) image.Image {
		period := 4 + r.Float64()*6
		ang := r.Float64() * math.Pi
		dx, dy := math.Cos(ang), math.Sin(ang)
		a, b := twoColors(r)
		return paint(r, s, func(x, y int) (color.NRGBA, color.NRGBA, float64) {
			return a, b, 0.5 + 0.5*math.Sin(2*math.Pi*(float64(x)*dx+float64(y)*dy)/period)
		})
	},
	"checkers": func(r *rand.Rand, s int) image.Image {
		cell := 3 + r.IntN(4)
		ox, oy := r.IntN(cell), r.IntN(cell)
		a, b := twoColors(r)
		return paint(r, s, func(x, y int) (color.NRGBA, color.NRGBA, float64) {
			return a, b, float64(((x+ox)/cell + (y+oy)/cell) % 2)
		})
	},
	"noise": func(r *rand.Rand, s int) image.Image {
		a, b := twoColors(r)
		return paint(r, s, func(int, int) (color.NRGBA, color.NRGBA, float64) { return a, b, r.Float64() })
	},
}

func randColor(r *rand.Rand) color.NRGBA {
	return color.NRGBA{uint8(r.IntN(256)), uint8(r.IntN(256)), uint8(r.IntN(256)), 255}
}

// twoColors draws two colours whose luma differs by at least 80 of 255, so the pattern shows.
func twoColors(r *rand.Rand) (color.NRGBA, color.NRGBA) {
	luma := func(c color.NRGBA) float64 { return 0.299*float64(c.R) + 0.587*float64(c.G) + 0.114*float64(c.B) }
	a := randColor(r)
	for {
		if b := randColor(r); math.Abs(luma(a)-luma(b)) >= 80 {
			return a, b
		}
	}
}

// paint mixes two colours by f(x, y) in [0, 1] and adds pixel noise.
func paint(r *rand.Rand, s int, f func(x, y int) (color.NRGBA, color.NRGBA, float64)) image.Image {
	img := image.NewNRGBA(image.Rect(0, 0, s, s))
	for y := range s {
		for x := range s {
			a, b, t := f(x, y)
			mix := func(u, v uint8) uint8 {
				return uint8(math.Max(0, math.Min(255, (1-t)*float64(u)+t*float64(v)+r.NormFloat64()*12)))
			}
			img.SetNRGBA(x, y, color.NRGBA{mix(a.R, b.R), mix(a.G, b.G), mix(a.B, b.B), 255})
		}
	}
	return img
}

// writeTextureFolder writes an ImageFolder of the synthetic classes under dir.
func writeTextureFolder(t testing.TB, dir string, train, test, side int, seed uint64) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 5))
	for _, split := range []struct {
		name string
		n    int
	}{{"train", train}, {"test", test}} {
		for _, class := range []string{"checkers", "noise", "stripes"} {
			d := filepath.Join(dir, split.name, class)
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			for i := range split.n {
				f, err := os.Create(filepath.Join(d, class+"_"+string(rune('a'+i/26))+string(rune('a'+i%26))+".png"))
				if err != nil {
					t.Fatal(err)
				}
				if err := png.Encode(f, textureClasses[class](r, side)); err != nil {
					t.Fatal(err)
				}
				f.Close()
			}
		}
	}
}

func TestTextureNetLearnsAnImageFolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "synthetic-textures")
	writeTextureFolder(t, dir, 150, 40, 32, 1)
	if err := os.WriteFile(filepath.Join(dir, "train", "README"), []byte("not an image"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultTextureTrainConfig(dir)
	cfg.Size, cfg.Batch, cfg.Epochs = 32, 16, 4
	t0 := time.Now()
	n, acc, err := TrainFeatureNet(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("texture net, 450 training images x %d epochs at 32 px: test accuracy %.3f in %s", cfg.Epochs, acc, time.Since(t0).Round(time.Millisecond))
	if acc < 0.8 {
		t.Errorf("test accuracy %.3f on separable textures, want at least 0.8 (chance 0.33)", acc)
	}
	spec := n.Spec()
	if spec.Kind != KindTexture || spec.Dataset != "synthetic-textures" || strings.Join(spec.Classes, ",") != "checkers,noise,stripes" || spec.Channels != 3 || spec.Size != 32 {
		t.Errorf("spec %+v", spec)
	}

	p := filepath.Join(t.TempDir(), "tex.safetensors")
	if err := n.Save(p, acc); err != nil {
		t.Fatal(err)
	}
	m, acc2, err := LoadFeatureNet(p)
	if err != nil || math.Abs(acc2-acc) > 1e-4 {
		t.Fatalf("load: %v, accuracy %v vs %v", err, acc2, acc)
	}
	if got := m.Spec(); got.Kind != spec.Kind || got.Dataset != spec.Dataset || strings.Join(got.Classes, ",") != strings.Join(spec.Classes, ",") || got.Size != 32 || got.Channels != 3 {
		t.Errorf("loaded spec %+v, saved %+v", got, spec)
	}
	// Images of another size and channel count are converted; the loaded net agrees exactly.
	r := rand.New(rand.NewPCG(8, 8))
	ims := []Image{randImage(r, 3, 64, 64), randImage(r, 1, 48, 48), randImage(r, 3, 256, 256)}
	f1, f2 := n.Features(ims), m.Features(ims)
	for i := range f1 {
		if len(f1[i]) != TextureFeatures {
			t.Fatalf("%d features, want %d", len(f1[i]), TextureFeatures)
		}
		for k := range f1[i] {
			if f1[i][k] != f2[i][k] {
				t.Fatal("loaded network computes different features")
			}
		}
	}
}

// TestOldFMNISTFileStillLoads writes a weights file exactly as wkd wrote them before texture
// networks existed (names conv0..conv5, metadata wkd.features and wkd.accuracy only, and one
// with no metadata at all), and checks the features against PyTorch running that architecture.
func TestOldFMNISTFileStillLoads(t *testing.T) {
	shapes := [][]int{{16, 1, 3, 3}, {32, 16, 4, 4}, {64, 32, 4, 4}, {64, 64, 4, 4}, {128, 64, 4, 4}, {10, 128, 1, 1}}
	r := rand.New(rand.NewPCG(11, 11))
	tensors := map[string]safetensors.Tensor{}
	inputs := map[string]torchref.Array{}
	for i, s := range shapes {
		fan := s[1] * s[2] * s[3]
		w := make([]float32, s[0]*fan)
		for k := range w {
			w[k] = float32(r.NormFloat64() * math.Sqrt(2/float64(fan)))
		}
		b := make([]float32, s[0])
		for k := range b {
			b[k] = float32(0.05 * r.NormFloat64())
		}
		name := "conv" + string(rune('0'+i))
		tensors[name+".weight"] = safetensors.Tensor{Shape: s, Data: w}
		tensors[name+".bias"] = safetensors.Tensor{Shape: []int{s[0]}, Data: b}
		inputs["w"+string(rune('0'+i))] = torchref.Of(w, s...)
		inputs["b"+string(rune('0'+i))] = torchref.Of(b, s[0])
	}
	dir := t.TempDir()
	withMeta, bare := filepath.Join(dir, "old.safetensors"), filepath.Join(dir, "bare.safetensors")
	if err := safetensors.WriteFile(withMeta, tensors, map[string]string{"wkd.features": "fmnist-convnet", "wkd.accuracy": "0.8612"}); err != nil {
		t.Fatal(err)
	}
	if err := safetensors.WriteFile(bare, tensors, nil); err != nil {
		t.Fatal(err)
	}
	// Two 32x32 gray images go in as they are; the reference sees their planes.
	ims := []Image{randImage(r, 1, 32, 32), randImage(r, 1, 32, 32)}
	x := append(append([]float32(nil), ims[0].Pix...), ims[1].Pix...)
	inputs["x"] = torchref.Of(x, 2, 1, 32, 32)
	out := torchref.Run(t, `
import torch.nn.functional as F
h = I['x']
cfg = [(1, 1), (2, 1), (2, 1), (2, 1), (1, 0)]
for i, (s, p) in enumerate(cfg):
    h = F.relu(F.conv2d(h, I['w%d' % i], I['b%d' % i], stride=s, padding=p))
O['features'] = h.reshape(h.shape[0], -1)
`, inputs)
	want := out["features"].Data
	for _, p := range []string{withMeta, bare} {
		n, acc, err := LoadFeatureNet(p)
		if err != nil {
			t.Fatalf("%s: %v", filepath.Base(p), err)
		}
		if p == withMeta && math.Abs(acc-0.8612) > 1e-9 {
			t.Errorf("accuracy %v, want 0.8612", acc)
		}
		if p == bare && !math.IsNaN(acc) {
			t.Errorf("a file without accuracy gives %v, want NaN", acc)
		}
		if s := n.Spec(); s.Kind != KindFMNIST || s.Dataset != "fashion-mnist" || len(s.Classes) != 10 {
			t.Errorf("%s: spec %+v, want the Fashion-MNIST net", filepath.Base(p), s)
		}
		f := n.Features(ims)
		got := make([]float32, 0, len(want))
		for _, v := range f {
			for _, e := range v {
				got = append(got, float32(e))
			}
		}
		if e := torchref.RelErr(got, want); e > 1e-5 {
			t.Errorf("%s: features differ from PyTorch's by %.2g (relative)", filepath.Base(p), e)
		}
	}
}

// TestTextureNetMatchesTorch checks the texture architecture at evaluation, batch norm with
// running statistics and the averaging conv that is its global pool included, against PyTorch
// with mean pooling.
func TestTextureNetMatchesTorch(t *testing.T) {
	for _, c := range []struct{ channels, size int }{{3, 64}, {1, 32}} {
		n, err := NewFeatureNetFor(TextureSpec("t", []string{"a", "b", "c", "d"}, c.channels, c.size), 3)
		if err != nil {
			t.Fatal(err)
		}
		r := rand.New(rand.NewPCG(12, 12))
		inputs := map[string]torchref.Array{}
		for _, p := range n.tensors() {
			if strings.HasPrefix(p.Name, "bn") {
				for k := range p.Data {
					p.Data[k] = 0.5 + r.Float32() // positive, so running_var is a variance
				}
			}
			inputs[p.Name] = torchref.Of(p.Data, p.Shape...)
		}
		ims := []Image{randImage(r, c.channels, c.size, c.size), randImage(r, c.channels, c.size, c.size)}
		x := n.input(ims)
		inputs["x"] = torchref.Of(x.Data, x.Shape...)
		out := torchref.Run(t, `
import torch.nn.functional as F
h = I['x']
for i, s in enumerate([1, 2, 2, 2]):
    h = F.conv2d(h, I['conv%d.weight' % i], None, stride=s, padding=1)
    h = F.batch_norm(h, I['bn%d.running_mean' % i], I['bn%d.running_var' % i], I['bn%d.weight' % i], I['bn%d.bias' % i], training=False, eps=1e-5)
    h = F.relu(h)
f = h.mean(dim=(2, 3), keepdim=True)
O['features'] = f.flatten(1)
O['logits'] = F.conv2d(f, I['conv4.weight'], I['conv4.bias']).flatten(1)
`, inputs)
		feat, logits := n.forward(nil, x, false)
		if e := torchref.RelErr(feat.Data, out["features"].Data); e > 1e-5 {
			t.Errorf("%dx%d: features differ from PyTorch's by %.2g", c.channels, c.size, e)
		}
		if e := torchref.RelErr(logits.Data, out["logits"].Data); e > 1e-5 {
			t.Errorf("%dx%d: logits differ from PyTorch's by %.2g", c.channels, c.size, e)
		}
	}
}

func TestImageFolderErrors(t *testing.T) {
	root := t.TempDir()
	good := filepath.Join(root, "good")
	writeTextureFolder(t, good, 2, 1, 16, 2)
	mk := func(p string) {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	onlyTrain := filepath.Join(root, "notest")
	writeTextureFolder(t, onlyTrain, 2, 1, 16, 3)
	os.RemoveAll(filepath.Join(onlyTrain, "test"))
	extraClass := filepath.Join(root, "extra")
	writeTextureFolder(t, extraClass, 2, 1, 16, 4)
	mk(filepath.Join(extraClass, "test", "wood"))
	emptyClass := filepath.Join(root, "empty")
	writeTextureFolder(t, emptyClass, 2, 1, 16, 5)
	mk(filepath.Join(emptyClass, "train", "wood"))
	// A test split without a class, or with an empty one, would give an accuracy over fewer
	// classes than the network tells apart.
	testLacks := filepath.Join(root, "testlacks")
	writeTextureFolder(t, testLacks, 2, 1, 16, 7)
	os.RemoveAll(filepath.Join(testLacks, "test", "stripes"))
	testEmpty := filepath.Join(root, "testempty")
	writeTextureFolder(t, testEmpty, 2, 1, 16, 8)
	os.RemoveAll(filepath.Join(testEmpty, "test", "noise"))
	mk(filepath.Join(testEmpty, "test", "noise"))
	oneClass := filepath.Join(root, "one")
	mk(filepath.Join(oneClass, "train", "stone"))
	corrupt := filepath.Join(root, "corrupt")
	writeTextureFolder(t, corrupt, 2, 1, 16, 6)
	if err := os.WriteFile(filepath.Join(corrupt, "train", "noise", "bad.png"), []byte("not a png"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		dir, want string
	}{
		{filepath.Join(root, "nowhere"), "train/<class>"},
		{oneClass, "at least 2"},
		{onlyTrain, "test"},
		{extraClass, "wood"},
		{emptyClass, "wood"},
		{testLacks, "test/ lacks class stripes"},
		{testEmpty, "test/noise holds no"},
		{corrupt, "bad.png"},
	}
	for _, c := range cases {
		cfg := DefaultTextureTrainConfig(c.dir)
		cfg.Batch, cfg.Epochs = 2, 1
		_, _, err := TrainFeatureNet(cfg, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "--data") {
			t.Errorf("%s: err = %v, want one naming --data and %q", filepath.Base(c.dir), err, c.want)
		}
	}
	cfg := DefaultTextureTrainConfig(good)
	cfg.Batch, cfg.Epochs, cfg.Size = 2, 1, 32
	if _, _, err := TrainFeatureNet(cfg, nil); err != nil {
		t.Errorf("a good folder: %v", err)
	}
	for _, bad := range []struct {
		edit func(*TrainConfig)
		want string
	}{
		{func(c *TrainConfig) { c.Size = 48 }, "--size"},
		{func(c *TrainConfig) { c.Channels = 2 }, "--channels"},
		{func(c *TrainConfig) { c.Batch = 100 }, "--batch-size"},
		{func(c *TrainConfig) { c.Samples = 1 }, "--max-samples"},
		{func(c *TrainConfig) { c.Epochs = 0 }, "--epochs"},
	} {
		c := DefaultTextureTrainConfig(good)
		c.Batch = 2
		bad.edit(&c)
		if _, _, err := TrainFeatureNet(c, nil); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("err = %v, want one naming %s", err, bad.want)
		}
	}
}

func TestLoadFeatureNetRejects(t *testing.T) {
	dir := t.TempDir()
	n, _ := NewFeatureNetFor(TextureSpec("d", []string{"a", "b"}, 3, 64), 1)
	good := filepath.Join(dir, "good.safetensors")
	if err := n.Save(good, 0.5); err != nil {
		t.Fatal(err)
	}
	tensors, meta, err := safetensors.Read(good)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, meta map[string]string) string {
		p := filepath.Join(dir, name)
		if err := safetensors.WriteFile(p, tensors, meta); err != nil {
			t.Fatal(err)
		}
		return p
	}
	edit := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range meta {
			m[a] = b
		}
		m[k] = v
		return m
	}
	raw, _ := os.ReadFile(good)
	trunc := filepath.Join(dir, "trunc.safetensors")
	os.WriteFile(trunc, raw[:len(raw)/2], 0o644)
	cases := []struct{ path, want string }{
		{write("kind.safetensors", edit("wkd.features", "inception")), "inception"},
		{write("size.safetensors", edit("wkd.size", "48")), "48"},
		{write("classes.safetensors", edit("wkd.classes", `["a","b","c"]`)), "conv4.weight"},
		{write("fmnist.safetensors", edit("wkd.features", "fmnist-convnet")), "conv0.weight"},
		{trunc, "trunc"},
	}
	for _, c := range cases {
		_, _, err := LoadFeatureNet(c.path)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "--features") {
			t.Errorf("%s: err = %v, want one naming --features and %q", filepath.Base(c.path), err, c.want)
		}
	}
}
