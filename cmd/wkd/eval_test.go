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
	"strings"
	"testing"

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

// TestEvalReportsPerImageMetricsAndTheFeatureNet runs wkd eval on untrained generators with a
// texture feature network, then wkd summarize on two such reports.
func TestEvalReportsPerImageMetricsAndTheFeatureNet(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "toy")
	writeAlignedTestSet(t, data, 5, 32)
	for i, name := range []string{"teacher", "pixel", "wavelet"} {
		writeRun(t, filepath.Join(dir, name), data, 4+2*i, uint64(i+1))
	}
	fnet, err := metrics.NewFeatureNetFor(metrics.TextureSpec("texture-classes", []string{"brick", "metal", "stone"}, 3, 32), 1)
	if err != nil {
		t.Fatal(err)
	}
	feats := filepath.Join(dir, "tex.safetensors")
	if err := fnet.Save(feats, 0.875); err != nil {
		t.Fatal(err)
	}
	runs := strings.Join([]string{filepath.Join(dir, "teacher"), filepath.Join(dir, "pixel"), filepath.Join(dir, "wavelet")}, ",")
	for _, seed := range []string{"seed1", "seed2"} {
		err := runEval([]string{"--runs", runs, "--names", "teacher,student pixel,student wavelet", "--features", feats,
			"--out", filepath.Join(dir, seed), "--speed-size", "32", "--speed-reps", "1", "--samples", "2"})
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

func TestTrainFeaturesFlags(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--data", dir, "--source", dir}, "--source and --data"},
		{[]string{"--size", "64"}, "--data"},
		{[]string{"--channels", "3"}, "--data"},
		{[]string{"--data", dir, "--size", "48"}, "--size"},
		{[]string{"--data", dir, "--channels", "2"}, "--channels"},
		{[]string{"--data", dir, "--epochs", "0"}, "--epochs"},
		{[]string{"--data", dir, "--samples", "3"}, "--samples"},
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
