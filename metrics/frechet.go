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
type Gaussian struct {
	Mean []float64
	Cov  *mat.SymDense
}

// Fit estimates the mean and the unbiased covariance of features (one row per sample).
func Fit(features [][]float64) (Gaussian, error) {
	n := len(features)
	if n < 2 {
		return Gaussian{}, fmt.Errorf("%w: %d feature vectors, need at least 2", ErrTooFew, n)
	}
	d := len(features[0])
	mean := make([]float64, d)
	for _, f := range features {
		for i, v := range f {
			mean[i] += v
		}
	}
	for i := range mean {
		mean[i] /= float64(n)
	}
	cov := mat.NewSymDense(d, nil)
	for i := range d {
		for j := i; j < d; j++ {
			var s float64
			for _, f := range features {
				s += (f[i] - mean[i]) * (f[j] - mean[j])
			}
			cov.SetSym(i, j, s/float64(n-1))
		}
	}
	return Gaussian{mean, cov}, nil
}

// FrechetDistance is |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), the distance FID uses,
// with the trace of the square root computed from symmetric eigendecompositions:
// Tr((S1 S2)^(1/2)) = Tr((S1^(1/2) S2 S1^(1/2))^(1/2)).
func FrechetDistance(a, b Gaussian) (float64, error) {
	var d2 float64
	for i := range a.Mean {
		d := a.Mean[i] - b.Mean[i]
		d2 += d * d
	}
	root1, err := sqrtSym(a.Cov)
	if err != nil {
		return 0, err
	}
	var m mat.Dense
	m.Mul(root1, b.Cov)
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
	var trRoot float64
	for _, v := range es.Values(nil) {
		trRoot += math.Sqrt(math.Max(v, 0))
	}
	return d2 + mat.Trace(a.Cov) + mat.Trace(b.Cov) - 2*trRoot, nil
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
