package metrics

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"

	"wkd/internal/torchref"
)

// featureSets draws two sets of correlated, non-negative features shaped like Inception's
// (a few strong directions plus noise), with different means and spreads.
func featureSets(r *rand.Rand, na, nb, d int) (a, b [][]float32) {
	const k = 16
	basis := make([]float64, k*d)
	for i := range basis {
		basis[i] = r.NormFloat64()
	}
	draw := func(n int, scale, shift float64) [][]float32 {
		out := make([][]float32, n)
		for i := range out {
			z := make([]float64, k)
			for j := range z {
				z[j] = r.NormFloat64()
			}
			out[i] = make([]float32, d)
			for c := range d {
				v := shift + 0.3*r.NormFloat64()
				for j := range k {
					v += scale * z[j] * basis[j*d+c] / 4
				}
				out[i][c] = float32(math.Abs(v))
			}
		}
		return out
	}
	return draw(na, 1, 0.5), draw(nb, 1.2, 0.55)
}

func to64(f [][]float32) [][]float64 {
	out := make([][]float64, len(f))
	for i, row := range f {
		out[i] = make([]float64, len(row))
		for j, v := range row {
			out[i][j] = float64(v)
		}
	}
	return out
}

func flat(f [][]float32) torchref.Array {
	d := len(f[0])
	data := make([]float32, 0, len(f)*d)
	for _, row := range f {
		data = append(data, row...)
	}
	return torchref.Of(data, len(f), d)
}

// TestFrechetMatchesScipy: the FID of wkd against pytorch-fid's calculate_frechet_distance
// (scipy.linalg.sqrtm of S1 S2, real part of its trace) on the same features, through all
// three routes: fewer samples than dimensions on both sides (the nuclear norm of the
// factors), more samples than dimensions (the d x d eigenproblems), and one of each.
func TestFrechetMatchesScipy(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 1))
	cases := []struct{ na, nb, d int }{{120, 150, 512}, {300, 400, 48}, {100, 300, 160}, {40, 40, 2048}}
	inputs := map[string]torchref.Array{}
	got := map[string]float64{}
	for i, c := range cases {
		a, b := featureSets(r, c.na, c.nb, c.d)
		ga, err := Fit(to64(a))
		if err != nil {
			t.Fatal(err)
		}
		gb, _ := Fit(to64(b))
		fd, err := FrechetDistance(ga, gb)
		if err != nil {
			t.Fatal(err)
		}
		p := strconv.Itoa(i)
		got[p] = fd
		inputs["a"+p], inputs["b"+p] = flat(a), flat(b)
	}
	out := torchref.Run(t, `
import numpy as np
from scipy import linalg
def fid(a, b):
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(s1.dot(s2), disp=False)
    if not np.isfinite(covmean).all():
        off = np.eye(s1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((s1 + off).dot(s2 + off))
    covmean = covmean.real
    d = mu1 - mu2
    return d.dot(d) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
i = 0
while 'a%d' % i in I:
    a = I['a%d' % i].numpy().astype(np.float64); b = I['b%d' % i].numpy().astype(np.float64)
    O['fid%d' % i] = torch.tensor([fid(a, b)], dtype=torch.float64)
    O['trace%d' % i] = torch.tensor([np.trace(np.cov(a, rowvar=False)) + np.trace(np.cov(b, rowvar=False))], dtype=torch.float64)
    i += 1
`, inputs)
	for i, c := range cases {
		p := strconv.Itoa(i)
		want := float64(out["fid"+p].Data[0])
		// The FID is a small difference of traces of order 1e3-1e4: judge the error against
		// the traces, where float32 transport and scipy's own round-off live.
		scale := float64(out["trace"+p].Data[0])
		e := math.Abs(got[p]-want) / scale
		t.Logf("n %d and %d, d %d: FID %.6f, scipy %.6f (difference %.2g of the traces, %.2g of the FID)", c.na, c.nb, c.d, got[p], want, e, math.Abs(got[p]-want)/want)
		if e > 1e-6 || math.Abs(got[p]-want) > 1e-4*want {
			t.Errorf("case %d: FID %.6f, scipy %.6f", i, got[p], want)
		}
	}
}

func TestFrechetRoutesAgree(t *testing.T) {
	// The factor route and the covariance route on the same data give the same distance (the
	// covariance route takes square roots of eigenvalues that are zero up to round-off).
	r := rand.New(rand.NewPCG(13, 2))
	a, b := featureSets(r, 30, 50, 64)
	ga, _ := Fit(to64(a))
	gb, _ := Fit(to64(b))
	if ga.Factor == nil || gb.Factor == nil {
		t.Fatal("Fit kept no factor for fewer samples than dimensions")
	}
	viaFactors, _ := FrechetDistance(ga, gb)
	viaCov, _ := FrechetDistance(Gaussian{Mean: ga.Mean, Cov: ga.cov()}, Gaussian{Mean: gb.Mean, Cov: gb.cov()})
	if math.Abs(viaFactors-viaCov) > 1e-6*math.Abs(viaCov) {
		t.Errorf("factor route %.12g, covariance route %.12g", viaFactors, viaCov)
	}
	if self, _ := FrechetDistance(ga, ga); math.Abs(self) > 1e-9 {
		t.Errorf("distance of a set to itself %g, want 0", self)
	}
}

// TestKIDMatchesNumpy: every subset's unbiased MMD^2 against numpy in float64 on the same
// rows (torch-fidelity's formula), then the mean and std over subsets.
func TestKIDMatchesNumpy(t *testing.T) {
	r := rand.New(rand.NewPCG(14, 3))
	a, b := featureSets(r, 90, 70, 256)
	cfg := KIDConfig{Subsets: 7, SubsetSize: 50, Seed: 5}
	kid, err := KernelDistance(a, b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if kid.Subsets != 7 || kid.SubsetSize != 50 {
		t.Fatalf("KID over %d subsets of %d, want 7 of 50", kid.Subsets, kid.SubsetSize)
	}
	draw := newSubsetDrawer(cfg.Seed, len(a), len(b), 50)
	idx := make([]float32, 0, 2*7*50)
	for range 7 {
		ia, ib := draw.next()
		for _, side := range [][]int{ia, ib} {
			for _, v := range side {
				idx = append(idx, float32(v))
			}
		}
	}
	out := torchref.Run(t, `
import numpy as np
a = I['a'].numpy().astype(np.float64); b = I['b'].numpy().astype(np.float64)
idx = I['idx'].numpy().astype(np.int64).reshape(-1, 2, 50)
d = a.shape[1]
k = lambda x, y: (x @ y.T / d + 1) ** 3
# Without replacement within a subset; the two sets drawn independently; subsets differ.
assert all(len(set(s[0])) == 50 and len(set(s[1])) == 50 for s in idx)
assert any((s[0] != s[1]).any() for s in idx) and len({tuple(s[0]) for s in idx}) == len(idx)
mmds = []
for s in idx:
    x, y = a[s[0]], b[s[1]]
    m = len(x)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    mmds.append((kxx.sum() - np.diag(kxx).sum()) / (m * (m - 1)) + (kyy.sum() - np.diag(kyy).sum()) / (m * (m - 1)) - 2 * kxy.mean())
mmds = np.array(mmds)
O['kid'] = torch.tensor([mmds.mean(), mmds.std()], dtype=torch.float64)
`, map[string]torchref.Array{"a": flat(a), "b": flat(b), "idx": torchref.Of(idx, len(idx))})
	want := out["kid"].Data
	t.Logf("KID %.6g ± %.3g, numpy %.6g ± %.3g", kid.Mean, kid.Std, want[0], want[1])
	// The dot products are float32 GEMMs of 256 terms; the kernel values near 1-8 cancel down
	// to a KID of order 0.1.
	if math.Abs(kid.Mean-float64(want[0])) > 1e-4*math.Abs(float64(want[0])) || math.Abs(kid.Std-float64(want[1])) > 1e-3*float64(want[1]) {
		t.Errorf("KID %.6g ± %.6g, numpy %.6g ± %.6g", kid.Mean, kid.Std, want[0], want[1])
	}
}

func TestKIDOfOneDistributionIsNearZero(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 4))
	both, b := featureSets(r, 400, 200, 64)
	a, same := both[:200], both[200:]
	// Same distribution: the unbiased estimate centres on 0 (within a few of its std).
	kSame, err := KernelDistance(a, same, KIDConfig{Subsets: 20, SubsetSize: 100, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	kDiff, _ := KernelDistance(a, b, KIDConfig{Subsets: 20, SubsetSize: 100, Seed: 1})
	t.Logf("KID same distribution %.3g ± %.3g, different %.3g ± %.3g", kSame.Mean, kSame.Std, kDiff.Mean, kDiff.Std)
	if math.Abs(kSame.Mean) > 3*kSame.Std+1e-3*kDiff.Mean {
		t.Errorf("KID of one distribution %.3g ± %.3g, want about 0", kSame.Mean, kSame.Std)
	}
	if kDiff.Mean < 10*kSame.Std {
		t.Errorf("KID of different distributions %.3g, not clear of the noise %.3g", kDiff.Mean, kSame.Std)
	}
	if _, err := KernelDistance(a[:1], b, DefaultKID()); err == nil {
		t.Error("KID of one sample should fail")
	}
}
