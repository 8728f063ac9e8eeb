package metrics

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"

	"wkd/internal/torchref"
)

func randImage(r *rand.Rand, c, h, w int) Image {
	im := Image{C: c, H: h, W: w, Pix: make([]float32, c*h*w)}
	for i := range im.Pix {
		im.Pix[i] = 2*r.Float32() - 1
	}
	return im
}

func TestPSNRAndL1(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	a := randImage(r, 3, 8, 8)
	if p := PSNR(a, a); !math.IsInf(p, 1) {
		t.Errorf("PSNR of an image with itself = %v, want +Inf", p)
	}
	b := Image{C: 3, H: 8, W: 8, Pix: make([]float32, len(a.Pix))}
	for i, v := range a.Pix {
		b.Pix[i] = v + 0.2 // 0.1 in [0, 1] units: MSE 0.01, PSNR 20 dB
	}
	if p := PSNR(a, b); math.Abs(p-20) > 1e-4 {
		t.Errorf("PSNR with a 0.1 offset = %v, want 20", p)
	}
	if l := L1(a, b); math.Abs(l-0.1) > 1e-6 {
		t.Errorf("L1 with a 0.1 offset = %v, want 0.1", l)
	}
}

func TestSSIMAgainstNumpy(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	a := randImage(r, 1, 16, 16)
	b := Image{C: 1, H: 16, W: 16, Pix: make([]float32, 256)}
	for i, v := range a.Pix {
		b.Pix[i] = 0.7*v + 0.3*(2*r.Float32()-1)
	}
	if s := SSIM(a, a); math.Abs(s-1) > 1e-9 {
		t.Errorf("SSIM(x, x) = %v, want 1", s)
	}
	// Wang et al.'s definition with an 11x11 Gaussian (sigma 1.5) over valid windows,
	// written independently in numpy.
	out := torchref.Run(t, `
import numpy as np
a = (I['a'].numpy().astype(np.float64)[0] + 1) / 2
b = (I['b'].numpy().astype(np.float64)[0] + 1) / 2
g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5 ** 2)); g /= g.sum()
w = np.outer(g, g)
def filt(x):
    n = x.shape[0] - 10
    return np.array([[np.sum(w * x[i:i+11, j:j+11]) for j in range(n)] for i in range(n)])
mu_a, mu_b = filt(a), filt(b)
va = filt(a * a) - mu_a ** 2; vb = filt(b * b) - mu_b ** 2; cov = filt(a * b) - mu_a * mu_b
c1, c2 = 0.01 ** 2, 0.03 ** 2
s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (va + vb + c2))
O['ssim'] = torch.tensor([s.mean()])
`, map[string]torchref.Array{"a": torchref.Of(a.Pix, 1, 16, 16), "b": torchref.Of(b.Pix, 1, 16, 16)})
	got, want := SSIM(a, b), float64(out["ssim"].Data[0])
	if math.Abs(got-want) > 1e-5 {
		t.Errorf("SSIM = %.6f, numpy %.6f", got, want)
	}
}

func TestFrechetAgainstNumpy(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	const n, d = 200, 6
	fa, fb := make([][]float64, n), make([][]float64, n)
	flatA, flatB := make([]float32, n*d), make([]float32, n*d)
	for i := range n {
		fa[i], fb[i] = make([]float64, d), make([]float64, d)
		for k := range d {
			x := r.NormFloat64()
			fa[i][k] = x + 0.1*float64(k)
			fb[i][k] = 0.5*x + r.NormFloat64()*float64(k+1)/3
			flatA[i*d+k], flatB[i*d+k] = float32(fa[i][k]), float32(fb[i][k])
		}
	}
	ga, _ := Fit(fa)
	gb, _ := Fit(fb)
	// Fit on float64 features; numpy sees the float32 copies, so allow 1e-4 relative.
	got, err := FrechetDistance(ga, gb)
	if err != nil {
		t.Fatal(err)
	}
	out := torchref.Run(t, `
import numpy as np
a = I['a'].numpy().astype(np.float64); b = I['b'].numpy().astype(np.float64)
ma, mb = a.mean(0), b.mean(0)
sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
w, v = np.linalg.eigh(sa); ra = v @ np.diag(np.sqrt(np.clip(w, 0, None))) @ v.T
m = ra @ sb @ ra
tr = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
O['fd'] = torch.tensor([((ma - mb) ** 2).sum() + np.trace(sa) + np.trace(sb) - 2 * tr])
`, map[string]torchref.Array{"a": torchref.Of(flatA, n, d), "b": torchref.Of(flatB, n, d)})
	want := float64(out["fd"].Data[0])
	if math.Abs(got-want) > 1e-4*math.Abs(want) {
		t.Errorf("Frechet distance %.6f, numpy %.6f", got, want)
	}
	if self, _ := FrechetDistance(ga, ga); math.Abs(self) > 1e-9 {
		t.Errorf("distance of a Gaussian to itself = %g, want 0", self)
	}
	if _, err := Fit(fa[:1]); err == nil {
		t.Error("Fit of one sample should fail")
	}
}

func TestFrechetDiagonal(t *testing.T) {
	// Diagonal covariances: |mu|^2 + sum (s1 + s2 - 2 sqrt(s1 s2)) exactly.
	a := Gaussian{Mean: []float64{0, 1}, Cov: mat.NewSymDense(2, []float64{4, 0, 0, 1})}
	b := Gaussian{Mean: []float64{1, 1}, Cov: mat.NewSymDense(2, []float64{1, 0, 0, 9})}
	got, _ := FrechetDistance(a, b)
	want := 1.0 + (4 + 1 - 2*2) + (1 + 9 - 2*3)
	if math.Abs(got-want) > 1e-9 {
		t.Errorf("diagonal Frechet distance %v, want %v", got, want)
	}
}

func TestSpectrumFindsTheFrequency(t *testing.T) {
	const n = 32
	im := Image{C: 1, H: n, W: n, Pix: make([]float32, n*n)}
	for y := range n {
		for x := range n {
			im.Pix[y*n+x] = float32(math.Cos(2 * math.Pi * 5 * float64(x) / n))
		}
	}
	s := Spectrum([]Image{im})
	best := 1
	for r := 1; r < len(s); r++ {
		if s[r] > s[best] {
			best = r
		}
	}
	if best != 5 {
		t.Errorf("spectrum peaks at radius %d, want 5", best)
	}
	if d := SpectrumDistance(s, s); d != 0 {
		t.Errorf("distance of a spectrum to itself %v", d)
	}
	// The FFT and the direct DFT agree (odd size takes the direct path).
	x := make([]complex128, 8)
	for i := range x {
		x[i] = complex(float64(i*i%5), 0)
	}
	f, g := fft(x), make([]complex128, 8)
	copy(g, x)
	direct := dft1(append(g[:7:7], 0)[:8]) // still 8: compare with a hand-made DFT below
	_ = direct
	for k := range 8 {
		var s complex128
		for t0 := range 8 {
			ang := -2 * math.Pi * float64(k*t0) / 8
			s += x[t0] * complex(math.Cos(ang), math.Sin(ang))
		}
		if d := s - f[k]; math.Hypot(real(d), imag(d)) > 1e-9 {
			t.Fatalf("fft[%d] = %v, DFT %v", k, f[k], s)
		}
	}
}

func TestBandEnergiesSeeOnlyTheRightBand(t *testing.T) {
	// Vertical stripes alternating every pixel: all energy in level-1 HL (high along W).
	const n = 16
	im := Image{C: 1, H: n, W: n, Pix: make([]float32, n*n)}
	for y := range n {
		for x := range n {
			im.Pix[y*n+x] = float32(1 - 2*(x%2))
		}
	}
	bands, e := BandEnergies([]Image{im}, 3)
	for k, b := range bands {
		if b.String() == "HL1" {
			if math.Abs(e[k]-4) > 1e-6 { // (a - b + c - d)/2 = 2 per coefficient
				t.Errorf("HL1 energy %v, want 4", e[k])
			}
		} else if e[k] > 1e-12 {
			t.Errorf("%v energy %v, want 0", b, e[k])
		}
	}
}

func TestFeatureNetLearnsAndRoundTrips(t *testing.T) {
	src := "/usr/share/datasets/fashion-mnist"
	if _, err := os.Stat(filepath.Join(src, "t10k-images-idx3-ubyte.gz")); err != nil {
		t.Fatalf("Fashion-MNIST missing (install Debian's dataset-fashion-mnist): %v", err)
	}
	cfg := DefaultTrainConfig(src)
	cfg.Samples, cfg.Epochs = 1500, 1
	n, acc, err := TrainFeatureNet(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("feature net after 1500 images: test accuracy %.3f", acc)
	if acc < 0.55 {
		t.Errorf("accuracy %.3f after training, want well above chance (0.1)", acc)
	}
	p := filepath.Join(t.TempDir(), "f.safetensors")
	if err := n.Save(p, acc); err != nil {
		t.Fatal(err)
	}
	m, acc2, err := LoadFeatureNet(p)
	if err != nil || math.Abs(acc2-acc) > 1e-4 {
		t.Fatalf("load: %v, accuracy %v vs %v", err, acc2, acc)
	}
	im := Image{C: 3, H: 32, W: 32, Pix: make([]float32, 3*32*32)}
	f1, f2 := n.Features([]Image{im}), m.Features([]Image{im})
	for k := range f1[0] {
		if f1[0][k] != f2[0][k] {
			t.Fatal("loaded network computes different features")
		}
	}
	if _, _, err := LoadFeatureNet(filepath.Join(t.TempDir(), "none")); err == nil || !strings.Contains(err.Error(), "--features") {
		t.Errorf("missing file: err = %v, want one naming --features", err)
	}
}

func TestReportRenders(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	im := randImage(r, 3, 8, 8)
	rep := &Report{Dataset: "d", Task: "pix2pix", Paired: true, Images: 1, Size: [2]int{8, 8}, SpeedSize: 8,
		Bands: []string{"LH1", "LL1"}, RealEnergies: []float64{1, 1}, RealSpectrum: []float64{1, 0.5},
		Results: []Result{{Name: "teacher<script>", BandEnergies: []float64{0.5, 1}, Spectrum: []float64{1, 0.4},
			Curves: []Curve{{Name: "G_L1", Steps: []float64{1, 2}, Vals: []float64{3, 2}}}}},
		Grid: Grid([][]Image{{im, im}}, 2), Columns: []string{"input", "teacher"}}
	dir := t.TempDir()
	if err := rep.WriteHTML(filepath.Join(dir, "r.html")); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "r.html"))
	html := string(b)
	for _, want := range []string{"<table>", "data:image/png;base64,", "<svg", "polyline", "G_L1"} {
		if !strings.Contains(html, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(html, "teacher<script>") {
		t.Error("model names are not escaped")
	}
}

// TestPairedMetricsPairsEachImageWithItsTarget: four distinct targets, each generated image the
// target plus its own offset, in an order that is not sorted, so that a value computed against
// another image, or sorted, or moved, differs from the one computed here by hand.
func TestPairedMetricsPairsEachImageWithItsTarget(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	offsets := []float32{0.4, 0.1, 0, 0.2} // [-1, 1] units; half that in [0, 1] units
	var gen, real []Image
	for _, off := range offsets {
		y := randImage(r, 3, 16, 16)
		x := Image{C: 3, H: 16, W: 16, Pix: make([]float32, len(y.Pix))}
		for i, v := range y.Pix {
			x.Pix[i] = v + off
		}
		gen, real = append(gen, x), append(real, y)
	}
	p := PairedMetrics(gen, real)
	if len(p.PSNR) != 4 || len(p.SSIM) != 4 || len(p.L1) != 4 {
		t.Fatalf("per-image values %+v, want 4 of each", p)
	}
	for i, off := range offsets {
		d := float64(off) / 2
		wantPSNR, wantL1 := -20*math.Log10(d), d // MSE d^2
		if off == 0 {
			wantPSNR = MaxPSNR // an exact copy: capped, not +Inf
		}
		if math.Abs(p.PSNR[i]-wantPSNR) > 1e-4 {
			t.Errorf("image %d: PSNR %v, want %v", i, p.PSNR[i], wantPSNR)
		}
		if math.Abs(p.L1[i]-wantL1) > 1e-6 {
			t.Errorf("image %d: L1 %v, want %v", i, p.L1[i], wantL1)
		}
		if want := SSIM(gen[i], real[i]); p.SSIM[i] != want {
			t.Errorf("image %d: SSIM %v, want SSIM(gen[%d], real[%d]) = %v", i, p.SSIM[i], i, i, want)
		}
	}
	if p.SSIM[2] != 1 || !(p.SSIM[0] < p.SSIM[3] && p.SSIM[3] < p.SSIM[1]) {
		t.Errorf("SSIM %v: want 1 for the copy and lower the larger the offset", p.SSIM)
	}
}

// TestDigestSeesOrderShapeAndPixels: per-image values pair by position, so two test sets in a
// different order must not share a digest.
func TestDigestSeesOrderShapeAndPixels(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 8))
	a, b := randImage(r, 3, 8, 8), randImage(r, 3, 8, 8)
	copyOf := func(im Image) Image { im.Pix = append([]float32(nil), im.Pix...); return im }
	base := Digest([]Image{a, b})
	if !strings.HasPrefix(base, "fnv64a:") || Digest([]Image{copyOf(a), copyOf(b)}) != base {
		t.Errorf("digest %q is not a function of the images alone", base)
	}
	changed := copyOf(b)
	changed.Pix[17] += 0.01
	reshaped := a
	reshaped.C, reshaped.H = 1, 24
	for name, set := range map[string][]Image{
		"reordered":     {b, a},
		"one pixel off": {a, changed},
		"reshaped":      {reshaped, b},
		"one image":     {a},
		"repeated":      {a, b, a},
	} {
		if d := Digest(set); d == base {
			t.Errorf("%s: the same digest %s", name, d)
		}
	}
}
