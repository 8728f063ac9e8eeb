package main

import (
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"wkd/data"
	"wkd/metrics"
	"wkd/models"
	"wkd/ops"
	"wkd/trainer"
)

// writeAlignedTestSet writes n aligned A|B pairs of side s under root/test.
func writeAlignedTestSet(t *testing.T, root string, n, s int) {
	t.Helper()
	dir := filepath.Join(root, "test")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 1))
	for i := range n {
		img := image.NewNRGBA(image.Rect(0, 0, 2*s, s))
		for y := range s {
			for x := range 2 * s {
				v := uint8(r.IntN(256))
				img.SetNRGBA(x, y, color.NRGBA{v, uint8(x * 4), uint8(y * 4), 255})
			}
		}
		f, err := os.Create(filepath.Join(dir, string(rune('a'+i))+".png"))
		if err != nil {
			t.Fatal(err)
		}
		if err := png.Encode(f, img); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
}

// writeRun saves a pix2pix run folder with an untrained U-Net of width ngf.
func writeRun(t *testing.T, dir, data string, ngf int, seed uint64) {
	t.Helper()
	cfg := trainer.DefaultPix2Pix()
	cfg.Dir, cfg.Data = dir, data
	cfg.G = models.Spec{Kind: models.UNet, InputNC: 3, OutputNC: 3, NGF: ngf, Norm: models.Instance, NumDowns: 5}
	cfg.LoadSize, cfg.CropSize = 32, 32
	if err := cfg.Save(); err != nil {
		t.Fatal(err)
	}
	g, err := models.Build(cfg.G)
	if err != nil {
		t.Fatal(err)
	}
	models.Init(g, ops.NewRNG(seed))
	if err := models.Save(filepath.Join(dir, "G.safetensors"), g, nil); err != nil {
		t.Fatal(err)
	}
}

// writeFeatures saves an untrained texture network (test accuracy 87.5%) under dir.
func writeFeatures(t *testing.T, dir string) string {
	t.Helper()
	fnet, err := metrics.NewFeatureNetFor(metrics.TextureSpec("texture-classes", []string{"brick", "metal", "stone"}, 3, 32), 1)
	if err != nil {
		t.Fatal(err)
	}
	feats := filepath.Join(dir, "tex.safetensors")
	if err := fnet.Save(feats, 0.875); err != nil {
		t.Fatal(err)
	}
	return feats
}

// writeDistinctTestSet writes n aligned A|B pairs of side s under root/test. Each target B has
// its own brightness, in an order that is not sorted, under noise and a gradient; each input A
// is B's negative under other noise. So every image scores differently, the scores are not in
// file order, and a score against the input differs from one against the target.
func writeDistinctTestSet(t *testing.T, root string, n, s int) {
	t.Helper()
	dir := filepath.Join(root, "test")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 3))
	levels := []int{150, 20, 110, 60, 5, 130, 40} // + noise + x stays below 256
	for i := range n {
		img := image.NewNRGBA(image.Rect(0, 0, 2*s, s))
		for y := range s {
			for x := range s {
				v := uint8(levels[i%len(levels)] + r.IntN(60) + x)
				img.SetNRGBA(s+x, y, color.NRGBA{v, v / 2, uint8(255 - y*4), 255})
				img.SetNRGBA(x, y, color.NRGBA{255 - v, uint8(r.IntN(256)), uint8(y * 4), 255})
			}
		}
		f, err := os.Create(filepath.Join(dir, string(rune('a'+i))+".png"))
		if err != nil {
			t.Fatal(err)
		}
		if err := png.Encode(f, img); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
}

// TestEvalPerImageMetricsMatchADirectCalculation checks report.json's per_image against
// PSNR, SSIM and L1 computed here: test image i loaded as eval loads it, each generator run
// on it here, and its output scored against image i's target.
func TestEvalPerImageMetricsMatchADirectCalculation(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "toy")
	const n, side = 5, 32
	writeDistinctTestSet(t, root, n, side)
	names := []string{"teacher", "student a", "student b"}
	var runs []string
	for k := range names {
		run := filepath.Join(dir, "run"+string(rune('0'+k)))
		writeRun(t, run, root, 4+2*k, uint64(10+k))
		runs = append(runs, run)
	}
	out := filepath.Join(dir, "report")
	err := runEval([]string{"--runs", strings.Join(runs, ","), "--names", strings.Join(names, ","), "--features", writeFeatures(t, dir),
		"--out", out, "--speed-size", "32", "--speed-reps", "1", "--grid-rows", "0"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(out, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep metrics.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != len(names) {
		t.Fatalf("%d results, want %d", len(rep.Results), len(names))
	}

	dcfg := data.DefaultPix2PixConfig(root)
	dcfg.Phase, dcfg.Train = "test", false
	dcfg.LoadSize, dcfg.CropSize = side, side
	ds, err := data.Open(dcfg)
	if err != nil {
		t.Fatal(err)
	}
	tp := ops.NewTape()
	tp.SetNoGrad(true)
	// want[k][m][i]: model k's metric m (PSNR, SSIM, L1) on test image i; vsInput the same
	// scored against the input, for the premise below.
	want := make([][3][]float64, len(runs))
	vsInput := make([][3][]float64, len(runs))
	for k, run := range runs {
		cfg, err := trainer.LoadConfig(run)
		if err != nil {
			t.Fatal(err)
		}
		g, err := models.Build(cfg.G)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := models.Load(filepath.Join(run, "G.safetensors"), g); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			s, err := ds.Load(0, 0, i)
			if err != nil {
				t.Fatal(err)
			}
			tp.Reset()
			y := g.Forward(tp, ops.FromData(s.A, 1, 3, side, side), false)
			gen := metrics.Image{C: 3, H: side, W: side, Pix: append([]float32(nil), y.Data...)}
			for _, c := range []struct {
				dst *[3][]float64
				ref []float32
			}{{&want[k], s.B}, {&vsInput[k], s.A}} {
				ref := metrics.Image{C: 3, H: side, W: side, Pix: c.ref}
				c.dst[0] = append(c.dst[0], math.Min(metrics.PSNR(gen, ref), metrics.MaxPSNR))
				c.dst[1] = append(c.dst[1], metrics.SSIM(gen, ref))
				c.dst[2] = append(c.dst[2], metrics.L1(gen, ref))
			}
		}
	}

	metricNames := []string{"PSNR", "SSIM", "L1"}
	for k, r := range rep.Results {
		if r.Name != names[k] || r.PerImage == nil {
			t.Fatalf("result %d: %q with per-image values %v, want %q with some", k, r.Name, r.PerImage, names[k])
		}
		got := [3][]float64{r.PerImage.PSNR, r.PerImage.SSIM, r.PerImage.L1}
		for m := range got {
			if len(got[m]) != n {
				t.Fatalf("%s: %d per-image %s values, want %d", r.Name, len(got[m]), metricNames[m], n)
			}
			for i := range n {
				if math.Abs(got[m][i]-want[k][m][i]) > 1e-9*math.Max(1, math.Abs(want[k][m][i])) {
					t.Errorf("%s, test image %d: per_image %s %v, computed here %v", r.Name, i, metricNames[m], got[m][i], want[k][m][i])
				}
			}
		}
	}

	// The premise: the values tell apart a mix-up of images, of models, of target and input,
	// and a sort.
	for m, name := range metricNames {
		if sort.Float64sAreSorted(want[0][m]) || sort.Float64sAreSorted(want[1][m]) {
			t.Errorf("premise: %s per image %v, %v already sorted", name, want[0][m], want[1][m])
		}
		for i := range n {
			if d := math.Abs(want[0][m][i] - want[1][m][i]); d < 1e-6 {
				t.Errorf("premise: %s of image %d the same for two models", name, i)
			}
			if d := math.Abs(want[0][m][i] - vsInput[0][m][i]); d < 1e-6 {
				t.Errorf("premise: %s of image %d the same against the input and the target", name, i)
			}
			if d := math.Abs(want[0][m][i] - want[0][m][(i+1)%n]); d < 1e-6 {
				t.Errorf("premise: %s the same on images %d and %d", name, i, (i+1)%n)
			}
		}
	}
}

// TestEvalReportsPerImageMetricsAndTheFeatureNet runs wkd eval on untrained generators with a
// texture feature network, then wkd summarize on two such reports.
func TestEvalReportsPerImageMetricsAndTheFeatureNet(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "toy")
	writeAlignedTestSet(t, data, 5, 32)
	for i, name := range []string{"teacher", "pixel", "wavelet"} {
		writeRun(t, filepath.Join(dir, name), data, 4+2*i, uint64(i+1))
	}
	feats := writeFeatures(t, dir)
	runs := strings.Join([]string{filepath.Join(dir, "teacher"), filepath.Join(dir, "pixel"), filepath.Join(dir, "wavelet")}, ",")
	for _, seed := range []string{"seed1", "seed2"} {
		err := runEval([]string{"--runs", runs, "--names", "teacher,student pixel,student wavelet", "--features", feats,
			"--out", filepath.Join(dir, seed), "--speed-size", "32", "--speed-reps", "1", "--grid-rows", "2"})
		if err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "seed1", "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep metrics.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	f := rep.Features
	if f.Kind != metrics.KindTexture || f.Dataset != "texture-classes" || len(f.Classes) != 3 || f.Size != 32 || f.Accuracy == nil || math.Abs(*f.Accuracy-87.5) > 1e-9 || f.File != feats {
		t.Errorf("feature_network %+v", f)
	}
	if rep.TestSetDigest == "" || rep.Images != 5 {
		t.Errorf("digest %q, %d images", rep.TestSetDigest, rep.Images)
	}
	for _, r := range rep.Results {
		p := r.PerImage
		if p == nil || len(p.PSNR) != 5 || len(p.SSIM) != 5 || len(p.L1) != 5 {
			t.Fatalf("%s: per-image values %+v, want 5 of each", r.Name, p)
		}
		var psnr, l1 float64
		for i := range 5 {
			psnr += p.PSNR[i] / 5
			l1 += p.L1[i] / 5
		}
		if math.Abs(psnr-r.PSNR) > 1e-9 || math.Abs(l1-r.L1) > 1e-12 {
			t.Errorf("%s: mean of per-image PSNR %v and L1 %v, report %v and %v", r.Name, psnr, l1, r.PSNR, r.L1)
		}
		if len(r.BandEnergies) != len(rep.Bands) {
			t.Errorf("%s: %d band energies for %d bands", r.Name, len(r.BandEnergies), len(rep.Bands))
		}
	}
	html, _ := os.ReadFile(filepath.Join(dir, "seed1", "report.html"))
	if !strings.Contains(string(html), "texture-convnet trained on texture-classes (3 classes, 3x32x32 input, test accuracy 87.5%)") {
		t.Error("report.html does not say which network produced the Frechet distance")
	}

	out := filepath.Join(dir, "summary.md")
	if err := runSummarize([]string{"--out", out, filepath.Join(dir, "seed1", "report.json"), filepath.Join(dir, "seed2", "report.json")}); err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(out)
	// The same untrained weights in both seeds: every difference is the same in each seed.
	if !strings.Contains(string(md), "| student wavelet | student pixel | PSNR | higher |") || !strings.Contains(string(md), "seeds and test images") {
		t.Errorf("summary.md lacks the default comparison:\n%s", md)
	}
	if _, err := os.Stat(filepath.Join(dir, "summary.json")); err != nil {
		t.Errorf("no summary.json beside summary.md: %v", err)
	}
}

// TestEvalRejectsBadFlags: each bad value is refused with an error naming the flag and a value
// that works, before anything is loaded (the feature network file does not even exist) and
// before anything is written.
func TestEvalRejectsBadFlags(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "toy")
	writeAlignedTestSet(t, root, 2, 32)
	unet := filepath.Join(dir, "unet")
	writeRun(t, unet, root, 4, 1) // a U-Net of 5 downsamplings: sides in multiples of 32
	out := filepath.Join(dir, "report")
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"max-samples 0", []string{"--max-samples", "0"}, []string{"--max-samples 0", "at least 1"}},
		{"max-images -1 (the earlier name)", []string{"--max-images", "-1"}, []string{"--max-samples -1", "at least 1"}},
		{"speed-size 100", []string{"--speed-size", "100"}, []string{"--speed-size 100", "multiple of 32", "such as 128"}},
		{"speed-size 0", []string{"--speed-size", "0"}, []string{"--speed-size 0", "such as 256"}},
		{"speed-size -64", []string{"--speed-size", "-64"}, []string{"--speed-size -64", "such as 256"}},
		{"levels 0", []string{"--levels", "0"}, []string{"--levels 0", "1 to 5", "such as 3"}},
		{"levels -2", []string{"--levels", "-2"}, []string{"--levels -2", "such as 3"}},
		{"levels 6", []string{"--levels", "6"}, []string{"--levels 6", "1 to 5"}},
		{"speed-reps 0", []string{"--speed-reps", "0"}, []string{"--speed-reps 0", "1 to 1000"}},
		{"grid-rows -1", []string{"--grid-rows", "-1"}, []string{"--grid-rows -1", "0"}},
		{"names repeated", []string{"--names", "a,a", "--runs", unet + "," + unet}, []string{"--names", "distinct"}},
		{"stray argument", []string{"stray"}, []string{"stray"}},
		{"fid-batch 0", []string{"--fid-batch", "0"}, []string{"--fid-batch 0", "at least 1"}},
		{"speed-size 2^31", []string{"--speed-size", "2147483648"}, []string{"--speed-size 2147483648", "at most 8192"}},
		{"speed-reps 10^9", []string{"--speed-reps", "1000000000"}, []string{"--speed-reps 1000000000", "1 to 1000"}},
		{"kid-subsets 0", []string{"--kid-subsets", "0"}, []string{"--kid-subsets 0", "100 is the default"}},
		{"kid-subset-size 1", []string{"--kid-subset-size", "1"}, []string{"--kid-subset-size 1", "at least 2"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"--runs", unet, "--features", filepath.Join(dir, "none.safetensors"), "--out", out}, c.args...)
			err := runEval(args)
			if err == nil {
				t.Fatalf("eval %s: no error", strings.Join(c.args, " "))
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("eval %s: err = %v, want one with %q", strings.Join(c.args, " "), err, w)
				}
			}
			if _, err := os.Stat(out); err == nil {
				t.Error("a refused eval wrote its --out folder")
			}
		})
	}
	// A ResNet beside the U-Net: the speed size must suit both.
	resnet := filepath.Join(dir, "resnet")
	cfg := trainer.DefaultPix2Pix()
	cfg.Dir, cfg.Data = resnet, root
	cfg.G = models.Spec{Kind: models.ResNet, InputNC: 3, OutputNC: 3, NGF: 4, Norm: models.Instance, NBlocks: 1}
	cfg.LoadSize, cfg.CropSize = 32, 32
	if err := cfg.Save(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		runs, size, want string
	}{
		{resnet, "30", "multiple of 4, which every generator"},
		{resnet + "," + unet, "36", "multiple of 32, which every generator"},
	} {
		err := runEval([]string{"--runs", c.runs, "--speed-size", c.size, "--features", filepath.Join(dir, "none.safetensors"), "--out", out})
		if err == nil || !strings.Contains(err.Error(), "--speed-size "+c.size) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("eval --runs %s --speed-size %s: err = %v, want one naming the flag and %q", c.runs, c.size, err, c.want)
		}
	}
}

func TestTrainFeaturesFlags(t *testing.T) {
	dir := t.TempDir()
	// An ImageFolder whose test/ lacks a class: its test accuracy would be over fewer classes.
	tex := filepath.Join(dir, "tex")
	for _, d := range []string{"train/metal", "train/stone", "test/metal"} {
		if err := os.MkdirAll(filepath.Join(tex, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"train/metal/a.png", "train/stone/a.png", "test/metal/a.png"} {
		f, err := os.Create(filepath.Join(tex, p))
		if err != nil {
			t.Fatal(err)
		}
		png.Encode(f, image.NewNRGBA(image.Rect(0, 0, 32, 32)))
		f.Close()
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--data", tex, "--batch-size", "1", "--epochs", "1", "--size", "32"}, "test/ lacks class stone"},
		{[]string{"--data", dir, "--source", dir}, "--source and --data"},
		{[]string{"--size", "64"}, "--data"},
		{[]string{"--channels", "3"}, "--data"},
		{[]string{"--data", dir, "--size", "48"}, "--size"},
		{[]string{"--data", dir, "--channels", "2"}, "--channels"},
		{[]string{"--data", dir, "--epochs", "0"}, "--epochs"},
		{[]string{"--data", dir, "--max-samples", "3"}, "--max-samples"},
		{[]string{"--data", dir, "--samples", "3"}, "--max-samples"}, // the earlier name
		{[]string{"--data", filepath.Join(dir, "none")}, "--data"},
		{[]string{"--source", filepath.Join(dir, "none")}, "none"},
		{[]string{"--data", dir, "stray"}, "stray"},
	}
	for _, c := range cases {
		err := runTrainFeatures(append(c.args, "--out", filepath.Join(dir, "f.safetensors")))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("train-features %s: err = %v, want one naming %q", strings.Join(c.args, " "), err, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "f.safetensors")); err == nil {
		t.Error("a failed train-features wrote weights")
	}
}
