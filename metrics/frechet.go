package metrics

import (
	"errors"
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"
)

// ErrTooFew is returned when a Frechet distance is asked of fewer than two samples.
var ErrTooFew = errors.New("metrics: too few samples")

// Gaussian is the mean and covariance of a feature set.
//
// When there are no more samples than dimensions (200 test images against Inception's 2048
// features), Fit keeps the centred samples instead of the covariance: Factor (n, d) with
// Cov = Factor^T Factor. The distance then works in the n-dimensional sample space, which is
// exact and takes milliseconds where the d x d route takes minutes.
type Gaussian struct {
	Mean   []float64
	Cov    *mat.SymDense // (d, d), nil when Factor is set
	Factor *mat.Dense    // (n, d): (x_i - mean) / sqrt(n-1), or nil
}

// Fit estimates the mean and the unbiased covariance of features (one row per sample).
func Fit(features [][]float64) (Gaussian, error) {
	n := len(features)
	if n < 2 {
		return Gaussian{}, fmt.Errorf("%w: %d feature vectors, need at least 2", ErrTooFew, n)
	}
	d := len(features[0])
	mean := make([]float64, d)
	for i, f := range features {
		if len(f) != d {
			return Gaussian{}, fmt.Errorf("metrics: feature vector %d has %d values, the first has %d", i, len(f), d)
		}
		for k, v := range f {
			mean[k] += v
		}
	}
	for k := range mean {
		mean[k] /= float64(n)
	}
	centred := mat.NewDense(n, d, nil)
	scale := 1 / math.Sqrt(float64(n-1))
	for i, f := range features {
		for k, v := range f {
			centred.Set(i, k, (v-mean[k])*scale)
		}
	}
	if n <= d {
		return Gaussian{Mean: mean, Factor: centred}, nil
	}
	cov := mat.NewSymDense(d, nil)
	cov.SymOuterK(1, centred.T())
	return Gaussian{Mean: mean, Cov: cov}, nil
}

// trace is Tr(Cov).
func (g Gaussian) trace() float64 {
	if g.Cov != nil {
		return mat.Trace(g.Cov)
	}
	return mat.Norm(g.Factor, 2) * mat.Norm(g.Factor, 2)
}

// cov is the covariance, formed from the factor where Fit kept only that.
func (g Gaussian) cov() *mat.SymDense {
	if g.Cov != nil {
		return g.Cov
	}
	_, d := g.Factor.Dims()
	c := mat.NewSymDense(d, nil)
	c.SymOuterK(1, g.Factor.T())
	return c
}

// FrechetDistance is |mu1 - mu2|^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^(1/2)), the distance FID
// uses. Tr((S1 S2)^(1/2)) is the sum of the square roots of the eigenvalues of S1 S2, which
// is what the trace of scipy.linalg.sqrtm(S1 @ S2) sums too (its Schur form has those
// eigenvalues on the diagonal); here they come from symmetric problems, with no complex
// round-off to discard:
//   - both sets given by factors (S = F^T F): the eigenvalues of S1 S2 are the squared
//     singular values of F1 F2^T, so the trace is that (n1, n2) matrix's nuclear norm;
//   - otherwise, the eigenvalues of S1^(1/2) S2 S1^(1/2).
func FrechetDistance(a, b Gaussian) (float64, error) {
	if len(a.Mean) != len(b.Mean) {
		return 0, fmt.Errorf("metrics: Frechet distance of %d-d and %d-d features", len(a.Mean), len(b.Mean))
	}
	var d2 float64
	for i := range a.Mean {
		d := a.Mean[i] - b.Mean[i]
		d2 += d * d
	}
	var trRoot float64
	var err error
	if a.Factor != nil && b.Factor != nil {
		trRoot, err = nuclearNorm(a.Factor, b.Factor)
	} else {
		trRoot, err = traceRootProduct(a.cov(), b.cov())
	}
	if err != nil {
		return 0, err
	}
	return d2 + a.trace() + b.trace() - 2*trRoot, nil
}

// nuclearNorm is the sum of the singular values of fa fb^T.
func nuclearNorm(fa, fb *mat.Dense) (float64, error) {
	var m mat.Dense
	m.Mul(fa, fb.T())
	var svd mat.SVD
	if !svd.Factorize(&m, mat.SVDNone) {
		return 0, errors.New("metrics: singular value decomposition failed")
	}
	var s float64
	for _, v := range svd.Values(nil) {
		s += v
	}
	return s, nil
}

// traceRootProduct is Tr((S1 S2)^(1/2)) = Tr((S1^(1/2) S2 S1^(1/2))^(1/2)).
func traceRootProduct(s1, s2 *mat.SymDense) (float64, error) {
	root1, err := sqrtSym(s1)
	if err != nil {
		return 0, err
	}
	var m mat.Dense
	m.Mul(root1, s2)
	m.Mul(&m, root1)
	n, _ := m.Dims()
	sym := mat.NewSymDense(n, nil)
	for i := range n {
		for j := i; j < n; j++ {
			sym.SetSym(i, j, (m.At(i, j)+m.At(j, i))/2)
		}
	}
	var es mat.EigenSym
	if !es.Factorize(sym, false) {
		return 0, errors.New("metrics: eigendecomposition failed")
	}
	var tr float64
	for _, v := range es.Values(nil) {
		tr += math.Sqrt(math.Max(v, 0))
	}
	return tr, nil
}

// sqrtSym is the principal square root of a symmetric positive semi-definite matrix.
func sqrtSym(s *mat.SymDense) (*mat.Dense, error) {
	var es mat.EigenSym
	if !es.Factorize(s, true) {
		return nil, errors.New("metrics: eigendecomposition failed")
	}
	vals := es.Values(nil)
	var vecs mat.Dense
	es.VectorsTo(&vecs)
	n := len(vals)
	d := mat.NewDiagDense(n, nil)
	for i, v := range vals {
		d.SetDiag(i, math.Sqrt(math.Max(v, 0)))
	}
	var out mat.Dense
	out.Mul(&vecs, d)
	out.Mul(&out, vecs.T())
	return &out, nil
}
