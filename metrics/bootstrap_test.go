package metrics

import (
	"errors"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"

	"wkd/internal/torchref"
)

// table returns an (s, n) table filled by f.
func table(s, n int, f func(s, i int) float64) [][]float64 {
	out := make([][]float64, s)
	for k := range out {
		out[k] = make([]float64, n)
		for i := range out[k] {
			out[k][i] = f(k, i)
		}
	}
	return out
}

func popVar(v []float64) float64 {
	var m, ss float64
	for _, x := range v {
		m += x
	}
	m /= float64(len(v))
	for _, x := range v {
		ss += (x - m) * (x - m)
	}
	return ss / float64(len(v))
}

func TestBootstrapConstantDifferenceHasZeroWidth(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	b := table(5, 40, func(int, int) float64 { return 20 + 5*r.NormFloat64() })
	a := table(5, 40, func(s, i int) float64 { return b[s][i] + 0.75 })
	for _, images := range []bool{true, false} {
		bb, aa := b, a
		if !images {
			bb, aa = table(5, 1, func(s, _ int) float64 { return b[s][0] }), table(5, 1, func(s, _ int) float64 { return a[s][0] })
		}
		iv, err := PairedBootstrap(aa, bb, images, DefaultBootstrapConfig(), 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []float64{iv.Mean, iv.Lo, iv.Hi} {
			if math.Abs(v-0.75) > 1e-12 {
				t.Errorf("images %v: interval %+v, want 0.75 at both ends", images, iv)
			}
		}
		if !iv.ExcludesZero() {
			t.Errorf("[0.75, 0.75] should exclude 0")
		}
	}
}

// checkNormal compares an interval with mean ± 1.96 sd/sqrt(n) of the differences.
func checkNormal(t *testing.T, what string, d []float64, iv Interval) {
	t.Helper()
	var m float64
	for _, v := range d {
		m += v
	}
	m /= float64(len(d))
	// The bootstrap's standard error is the population deviation over sqrt(n).
	half := 1.959964 * math.Sqrt(popVar(d)/float64(len(d)))
	if math.Abs(iv.Mean-m) > 1e-12 {
		t.Errorf("%s: mean %v, want %v", what, iv.Mean, m)
	}
	if c := (iv.Lo + iv.Hi) / 2; math.Abs(c-m) > 0.05*half {
		t.Errorf("%s: interval [%.5f, %.5f] centred at %.5f, want %.5f (±%.5f)", what, iv.Lo, iv.Hi, c, m, 0.05*half)
	}
	if w := (iv.Hi - iv.Lo) / 2; math.Abs(w/half-1) > 0.04 {
		t.Errorf("%s: half-width %.5f, want 1.96 sd/sqrt(n) = %.5f within 4%%", what, w, half)
	}
}

func TestBootstrapNormalDifferences(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const n = 4000
	// Over test images, one seed: differences N(0.3, 1.2^2) on top of a shared image effect.
	base := make([]float64, n)
	d := make([]float64, n)
	for i := range d {
		base[i], d[i] = 25+4*r.NormFloat64(), 0.3+1.2*r.NormFloat64()
	}
	a := table(1, n, func(_, i int) float64 { return base[i] + d[i] })
	b := table(1, n, func(_, i int) float64 { return base[i] })
	iv, err := PairedBootstrap(a, b, true, DefaultBootstrapConfig(), 1)
	if err != nil {
		t.Fatal(err)
	}
	checkNormal(t, "images", d, iv)
	// Over seeds, a set-level metric: one value per seed.
	a = table(n, 1, func(s, _ int) float64 { return base[s] + d[s] })
	b = table(n, 1, func(s, _ int) float64 { return base[s] })
	if iv, err = PairedBootstrap(a, b, false, DefaultBootstrapConfig(), 2); err != nil {
		t.Fatal(err)
	}
	checkNormal(t, "seeds", d, iv)
}

// TestBootstrapResamplesSeedsAndImages: with d[s][i] = u[s] + v[i] (a seed effect and an image
// effect, crossed), a draw's mean is mean(u*) + mean(v*), whose variance is
// var(u)/S + var(v)/I. Here both terms are equal, so drawing only seeds or only images would
// give an interval 1/sqrt(2) as wide.
func TestBootstrapResamplesSeedsAndImages(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const s, n = 30, 600
	u, v := make([]float64, s), make([]float64, n)
	for k := range u {
		u[k] = r.NormFloat64()
	}
	for i := range v {
		v[i] = math.Sqrt(n/float64(s)) * r.NormFloat64()
	}
	a := table(s, n, func(k, i int) float64 { return 1 + u[k] + v[i] })
	b := table(s, n, func(int, int) float64 { return 1 })
	iv, err := PairedBootstrap(a, b, true, DefaultBootstrapConfig(), 3)
	if err != nil {
		t.Fatal(err)
	}
	half := 1.959964 * math.Sqrt(popVar(u)/s+popVar(v)/n)
	if w := (iv.Hi - iv.Lo) / 2; math.Abs(w/half-1) > 0.07 {
		t.Errorf("half-width %.4f, want 1.96 sqrt(var(u)/S + var(v)/I) = %.4f within 7%% (seeds only: %.4f, images only: %.4f)",
			w, half, 1.959964*math.Sqrt(popVar(u)/s), 1.959964*math.Sqrt(popVar(v)/n))
	}
}

// TestBootstrapPairingMatters: both models carry the same large seed and image effects, and A
// is better by 0.5 everywhere up to small noise. Resampling the pairs' differences gives a
// narrow interval around 0.5; resampling A and B apart (what an unpaired bootstrap does) mixes
// the effects in and gives an interval that covers 0.
func TestBootstrapPairingMatters(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	const s, n = 5, 200
	seedEffect := []float64{-6, 3, 8, -2, 4}
	img := make([]float64, n)
	for i := range img {
		img[i] = 10 * r.NormFloat64()
	}
	a := table(s, n, func(k, i int) float64 { return 30 + seedEffect[k] + img[i] + 0.5 + 0.1*r.NormFloat64() })
	b := table(s, n, func(k, i int) float64 { return 30 + seedEffect[k] + img[i] + 0.1*r.NormFloat64() })
	cfg := DefaultBootstrapConfig()
	paired, err := PairedBootstrap(a, b, true, cfg, 4)
	if err != nil {
		t.Fatal(err)
	}
	// Unpaired: A's and B's seeds and images drawn independently.
	rr := rand.New(rand.NewPCG(9, 9))
	ws, wi := make([]float64, s), make([]float64, n)
	stats := make([]float64, cfg.Draws)
	for k := range stats {
		drawCounts(rr, ws)
		drawCounts(rr, wi)
		ma := weightedMean(a, ws, wi)
		drawCounts(rr, ws)
		drawCounts(rr, wi)
		stats[k] = ma - weightedMean(b, ws, wi)
	}
	sort.Float64s(stats)
	lo, hi := Percentile(stats, 0.025), Percentile(stats, 0.975)
	t.Logf("paired [%.4f, %.4f], unpaired [%.3f, %.3f]", paired.Lo, paired.Hi, lo, hi)
	if !(paired.Lo > 0.45 && paired.Hi < 0.55) {
		t.Errorf("paired interval [%.4f, %.4f], want a narrow one around 0.5", paired.Lo, paired.Hi)
	}
	if (paired.Hi - paired.Lo) > 0.05*(hi-lo) {
		t.Errorf("paired interval %.4f wide, unpaired %.4f: pairing should make it at least 20x narrower", paired.Hi-paired.Lo, hi-lo)
	}
	if !(lo < 0 && hi > 0) {
		t.Errorf("unpaired interval [%.3f, %.3f] should cover 0 here (the test's premise)", lo, hi)
	}
}

// TestBootstrapAgainstNumpy replays the draws PairedBootstrap makes (the same PCG stream: S seed
// indices then I image indices per draw) in numpy, which computes each draw's mean difference
// and np.percentile's interval.
func TestBootstrapAgainstNumpy(t *testing.T) {
	r := rand.New(rand.NewPCG(10, 11))
	const s, n, draws = 4, 30, 3000
	a := table(s, n, func(int, int) float64 { return float64(float32(2 + r.NormFloat64())) })
	b := table(s, n, func(int, int) float64 { return float64(float32(1.5 + r.NormFloat64())) })
	cfg := BootstrapConfig{Draws: draws, Seed: 42, Level: 0.9}
	const stream = 77
	iv, err := PairedBootstrap(a, b, true, cfg, stream)
	if err != nil {
		t.Fatal(err)
	}
	rr := rand.New(rand.NewPCG(cfg.Seed, stream))
	si, ii := make([]float32, draws*s), make([]float32, draws*n)
	for k := range draws {
		for j := range s {
			si[k*s+j] = float32(rr.IntN(s))
		}
		for j := range n {
			ii[k*n+j] = float32(rr.IntN(n))
		}
	}
	flat := func(x [][]float64) []float32 {
		var out []float32
		for _, row := range x {
			for _, v := range row {
				out = append(out, float32(v))
			}
		}
		return out
	}
	out := torchref.Run(t, `
import numpy as np
a = I['a'].numpy().astype(np.float64); b = I['b'].numpy().astype(np.float64)
si = I['si'].numpy().astype(np.int64); ii = I['ii'].numpy().astype(np.int64)
d = a - b
stats = np.array([d[np.ix_(si[k], ii[k])].mean() for k in range(si.shape[0])])
lo, hi = np.percentile(stats, [5, 95])
O['r'] = torch.tensor([d.mean(), lo, hi], dtype=torch.float64).float()
O['q'] = torch.tensor(np.percentile(np.arange(7.0) ** 2, [0, 2.5, 33, 50, 97.5, 100])).float()
`, map[string]torchref.Array{"a": torchref.Of(flat(a), s, n), "b": torchref.Of(flat(b), s, n),
		"si": torchref.Of(si, draws, s), "ii": torchref.Of(ii, draws, n)})
	want := out["r"].Data
	for k, got := range []float64{iv.Mean, iv.Lo, iv.Hi} {
		if math.Abs(got-float64(want[k])) > 1e-6*math.Max(1, math.Abs(got)) {
			t.Errorf("%s = %.7f, numpy %.7f", []string{"mean", "low end", "high end"}[k], got, want[k])
		}
	}
	sq := []float64{0, 1, 4, 9, 16, 25, 36}
	for k, q := range []float64{0, 0.025, 0.33, 0.5, 0.975, 1} {
		if got := Percentile(sq, q); math.Abs(got-float64(out["q"].Data[k])) > 1e-5 {
			t.Errorf("Percentile(q=%v) = %v, numpy %v", q, got, out["q"].Data[k])
		}
	}
}

func TestBootstrapReproducibleAndChecked(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 13))
	a := table(3, 50, func(int, int) float64 { return r.NormFloat64() })
	b := table(3, 50, func(int, int) float64 { return r.NormFloat64() })
	cfg := DefaultBootstrapConfig()
	x, _ := PairedBootstrap(a, b, true, cfg, 5)
	y, _ := PairedBootstrap(a, b, true, cfg, 5)
	z, _ := PairedBootstrap(a, b, true, cfg, 6)
	if x != y {
		t.Errorf("same seed and stream: %+v then %+v", x, y)
	}
	if x == z {
		t.Errorf("another stream gave the same draws")
	}
	bad := []struct {
		a, b [][]float64
	}{
		{nil, nil},
		{a, b[:2]},
		{a, table(3, 49, func(int, int) float64 { return 0 })},
		{a, table(3, 50, func(int, int) float64 { return math.NaN() })},
	}
	for i, c := range bad {
		if _, err := PairedBootstrap(c.a, c.b, true, cfg, 0); !errors.Is(err, ErrBootstrap) {
			t.Errorf("case %d: err = %v, want ErrBootstrap", i, err)
		}
	}
	if _, err := PairedBootstrap(a, b, true, BootstrapConfig{Draws: 0, Level: 0.95}, 0); !errors.Is(err, ErrBootstrap) {
		t.Errorf("0 draws: err = %v", err)
	}
}

// TestBootstrapDrawLimits: a summary's verdicts need MinDraws to MaxDraws draws, and more than
// MaxDraws is an error, not an allocation of that many values.
func TestBootstrapDrawLimits(t *testing.T) {
	if err := DefaultBootstrapConfig().Validate(); err != nil {
		t.Errorf("the default: %v", err)
	}
	for _, c := range []struct {
		cfg  BootstrapConfig
		want string
	}{
		{BootstrapConfig{Draws: MinDraws - 1, Level: 0.95}, "--draws"},
		{BootstrapConfig{Draws: 1, Level: 0.95}, "--draws"},
		{BootstrapConfig{Draws: MaxDraws + 1, Level: 0.95}, "--draws"},
		{BootstrapConfig{Draws: MinDraws, Level: 1}, "--level"},
	} {
		if err := c.cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err = %v, want one naming %s", c.cfg, err, c.want)
		}
	}
	for _, c := range []BootstrapConfig{{Draws: MinDraws, Level: 0.95}, {Draws: MaxDraws, Level: 0.95}} {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
	a := [][]float64{{1, 2, 3}}
	b := [][]float64{{0, 0, 0}}
	if _, err := PairedBootstrap(a, b, true, BootstrapConfig{Draws: 100000000000000, Level: 0.95}, 0); !errors.Is(err, ErrBootstrap) {
		t.Errorf("1e14 draws: err = %v, want ErrBootstrap", err)
	}
	rep := Report{Task: "pix2pix", Paired: true, Results: []Result{{Name: "a"}, {Name: "b"}}}
	if _, err := Summarize([]Report{rep}, nil, SummaryConfig{Bootstrap: BootstrapConfig{Draws: 1, Level: 0.95}}); err == nil || !strings.Contains(err.Error(), "--draws") {
		t.Errorf("a summary of 1 draw: err = %v, want one naming --draws", err)
	}
}
