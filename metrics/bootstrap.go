package metrics

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
)

// ErrBootstrap is returned (wrapped) for observations a paired bootstrap cannot use.
var ErrBootstrap = errors.New("metrics: bootstrap")

// BootstrapConfig is how PairedBootstrap resamples. Summarize takes the zero value for
// DefaultBootstrapConfig().
type BootstrapConfig struct {
	// Draws is the number of resamples; more draws make the interval's ends less noisy
	// (10000 puts them within about 2% of the interval's width). Defaults to DefaultDraws.
	Draws int `json:"draws"`
	// Seed fixes the draws, so a summary is reproducible. Defaults to DefaultBootstrapSeed.
	Seed uint64 `json:"seed"`
	// Level is the interval's coverage, in (0, 1). Defaults to DefaultLevel.
	Level float64 `json:"level"`
}

// The defaults of BootstrapConfig.
const (
	DefaultDraws                = 10000
	DefaultBootstrapSeed uint64 = 1
	DefaultLevel                = 0.95
)

// The draws a summary accepts. Below MinDraws an interval's ends rest on a handful of draws
// (at 95%, 1000 draws leave 25 beyond each end), too few for a verdict; above MaxDraws the
// ends move by less than 0.2% of the width while memory (8 bytes a draw) and time keep growing.
const (
	MinDraws = 1000
	MaxDraws = 1000000
)

// DefaultBootstrapConfig is 10000 draws, seed 1, 95%.
func DefaultBootstrapConfig() BootstrapConfig {
	return BootstrapConfig{Draws: DefaultDraws, Seed: DefaultBootstrapSeed, Level: DefaultLevel}
}

// Validate says what is wrong with a configuration that a summary's verdicts would rest on,
// naming the summarize flag.
func (c BootstrapConfig) Validate() error {
	if c.Draws < MinDraws || c.Draws > MaxDraws {
		return fmt.Errorf("--draws %d: want %d to %d (%d is the default); fewer draws make the interval's ends too noisy for a verdict", c.Draws, MinDraws, MaxDraws, DefaultDraws)
	}
	if !(c.Level > 0 && c.Level < 1) {
		return fmt.Errorf("--level %v: want a coverage in (0, 1), such as %v", c.Level, DefaultLevel)
	}
	return nil
}

// Interval is a difference of means and its bootstrap confidence interval.
type Interval struct {
	// Mean is the observed mean difference, over every seed and image.
	Mean float64 `json:"mean_diff"`
	// Lo and Hi are the percentile interval's ends.
	Lo float64 `json:"ci_low"`
	Hi float64 `json:"ci_high"`
}

// ExcludesZero reports whether the interval lies wholly on one side of 0.
func (iv Interval) ExcludesZero() bool { return iv.Lo > 0 || iv.Hi < 0 }

// PairedBootstrap estimates mean(a - b) and a percentile confidence interval for it, where
// a[s][i] and b[s][i] are two models' values of a metric on seed s's run and test image i: the
// two models were trained with the same seed and evaluated on the same images, so each draw
// resamples the differences a - b, never a and b apart. A draw picks S seeds with replacement
// and, when images is true, I image indices with replacement, the same indices for every seed
// (the seeds were evaluated on the same test set: seeds and images are crossed, not nested),
// and takes the mean difference over the drawn seeds and images. With images false (a
// set-level metric: one value per seed, I = 1) only seeds are drawn.
// stream separates the random draws of different comparisons that share cfg.Seed.
func PairedBootstrap(a, b [][]float64, images bool, cfg BootstrapConfig, stream uint64) (Interval, error) {
	d, err := differences(a, b)
	if err != nil {
		return Interval{}, err
	}
	if cfg.Draws < 1 || cfg.Draws > MaxDraws || !(cfg.Level > 0 && cfg.Level < 1) {
		return Interval{}, fmt.Errorf("%w: %d draws at level %v: want 1 to %d draws and a level in (0, 1)", ErrBootstrap, cfg.Draws, cfg.Level, MaxDraws)
	}
	s, n := len(d), len(d[0])
	var mean float64
	for _, row := range d {
		for _, v := range row {
			mean += v
		}
	}
	mean /= float64(s * n)

	r := rand.New(rand.NewPCG(cfg.Seed, stream))
	seedCount := make([]float64, s)
	imageCount := make([]float64, n)
	stats := make([]float64, cfg.Draws)
	for k := range stats {
		drawCounts(r, seedCount)
		if images {
			drawCounts(r, imageCount)
		} else {
			for i := range imageCount {
				imageCount[i] = 1
			}
		}
		stats[k] = weightedMean(d, seedCount, imageCount)
	}
	alpha := (1 - cfg.Level) / 2
	sort.Float64s(stats)
	return Interval{Mean: mean, Lo: Percentile(stats, alpha), Hi: Percentile(stats, 1-alpha)}, nil
}

// differences is a - b, checked to be a non-empty (S, I) table of finite values.
func differences(a, b [][]float64) ([][]float64, error) {
	if len(a) == 0 || len(a) != len(b) {
		return nil, fmt.Errorf("%w: %d and %d seeds: want the same number, at least 1", ErrBootstrap, len(a), len(b))
	}
	n := len(a[0])
	d := make([][]float64, len(a))
	for s := range a {
		if len(a[s]) != n || len(b[s]) != n || n == 0 {
			return nil, fmt.Errorf("%w: seed %d has %d and %d values, seed 0 %d: every seed needs the same images", ErrBootstrap, s, len(a[s]), len(b[s]), n)
		}
		d[s] = make([]float64, n)
		for i := range n {
			d[s][i] = a[s][i] - b[s][i]
			if math.IsNaN(d[s][i]) || math.IsInf(d[s][i], 0) {
				return nil, fmt.Errorf("%w: seed %d image %d: difference of %v and %v is not a number", ErrBootstrap, s, i, a[s][i], b[s][i])
			}
		}
	}
	return d, nil
}

// drawCounts draws len(count) indices uniformly with replacement and stores how often each
// was drawn: a resample as multiplicities.
func drawCounts(r *rand.Rand, count []float64) {
	clear(count)
	for range count {
		count[r.IntN(len(count))]++
	}
}

// weightedMean is sum_s sum_i ws[s] wi[i] d[s][i] / (sum ws * sum wi): the mean over a
// resample given as multiplicities.
func weightedMean(d [][]float64, ws, wi []float64) float64 {
	var total, sumS, sumI float64
	for _, w := range wi {
		sumI += w
	}
	for s, row := range d {
		if ws[s] == 0 {
			continue
		}
		var t float64
		for i, v := range row {
			t += wi[i] * v
		}
		total += ws[s] * t
		sumS += ws[s]
	}
	return total / (sumS * sumI)
}

// Percentile is the q-quantile (q in [0, 1]) of sorted values by linear interpolation between
// the closest ranks, numpy.percentile's default ("linear").
func Percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	pos := q * float64(len(sorted)-1)
	lo := int(math.Floor(pos))
	if lo >= len(sorted)-1 {
		return sorted[len(sorted)-1]
	}
	f := pos - float64(lo)
	return sorted[lo] + f*(sorted[lo+1]-sorted[lo])
}
