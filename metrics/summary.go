package metrics

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strings"
)

// ErrSummary is returned (wrapped) for reports that cannot be summarized together.
var ErrSummary = errors.New("metrics: summary")

// Num is a float64 that encodes NaN and infinities as JSON null (a mean of nothing, the
// deviation of one seed) instead of failing.
type Num float64

// MarshalJSON writes null for a value JSON cannot hold.
func (n Num) MarshalJSON() ([]byte, error) {
	f := float64(n)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return json.Marshal(f)
}

// UnmarshalJSON reads null as NaN.
func (n *Num) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*n = Num(math.NaN())
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	*n = Num(f)
	return nil
}

// The better direction of a metric.
const (
	Higher  = "higher"
	Lower   = "lower"
	Closer1 = "closer to 1"
)

// summaryMetric is one column of the summary.
type summaryMetric struct {
	key, label, format string
	// better is Higher, Lower or Closer1; "" for a descriptive column that is not compared.
	better string
	// paired: only for paired tasks (PSNR, SSIM, L1), which are also kept per image.
	paired bool
	// constant: the same in every seed (sizes), shown without a deviation.
	constant bool
	// inception: only when the reports have FID and KID.
	inception bool
	value     func(*Report, *Result) float64
	perImage  func(*PerImage) []float64
}

var summaryMetrics = []summaryMetric{
	{key: "params", label: "params", format: "%.3g", constant: true, value: func(_ *Report, r *Result) float64 { return float64(r.Params) }},
	{key: "macs", label: "MACs", format: "%.3g", constant: true, value: func(_ *Report, r *Result) float64 { return float64(r.MACs) }},
	{key: "mac_compression", label: "compression (MACs)", format: "%.2fx", constant: true, value: func(_ *Report, r *Result) float64 { return r.MACRatio }},
	{key: "speedup", label: "speedup", format: "%.2fx", value: func(_ *Report, r *Result) float64 { return r.Speedup }},
	{key: "psnr", label: "PSNR ↑", format: "%.2f", better: Higher, paired: true,
		value: func(_ *Report, r *Result) float64 { return r.PSNR }, perImage: func(p *PerImage) []float64 { return p.PSNR }},
	{key: "ssim", label: "SSIM ↑", format: "%.4f", better: Higher, paired: true,
		value: func(_ *Report, r *Result) float64 { return r.SSIM }, perImage: func(p *PerImage) []float64 { return p.SSIM }},
	{key: "l1", label: "L1 ↓", format: "%.4f", better: Lower, paired: true,
		value: func(_ *Report, r *Result) float64 { return r.L1 }, perImage: func(p *PerImage) []float64 { return p.L1 }},
	{key: "frechet_distance", label: "Frechet ↓", format: "%.2f", better: Lower, value: func(_ *Report, r *Result) float64 { return r.FD }},
	{key: "fid", label: "FID ↓", format: "%.2f", better: Lower, inception: true, value: func(_ *Report, r *Result) float64 { return *r.FID }},
	{key: "kid", label: "KID x 1000 ↓", format: "%.2f", better: Lower, inception: true, value: func(_ *Report, r *Result) float64 { return 1000 * r.KID.Mean }},
	{key: "spectrum_distance", label: "spectrum dist ↓", format: "%.3f", better: Lower, value: func(_ *Report, r *Result) float64 { return r.SpectrumDist }},
	// Better is closer to the real images' energy, not to the teacher's: the teacher is itself a
	// generator whose detail may be off, every other set-level metric (Frechet, spectrum) is
	// measured against the real images, and for CycleGAN they are the target domain. Compared as
	// |ln(ratio)|, so twice too much detail is as far off as half too little.
	{key: "high_band_energy_ratio", label: "high-band energy / real", format: "%.3f", better: Closer1, value: HighBandRatio},
}

// HighBandRatio is a model's total energy in every high Haar band (all levels, not LL) over the
// real images'.
func HighBandRatio(rep *Report, r *Result) float64 {
	var g, real float64
	for k, name := range rep.Bands {
		if strings.HasPrefix(name, "LL") || k >= len(r.BandEnergies) || k >= len(rep.RealEnergies) {
			continue
		}
		g += r.BandEnergies[k]
		real += rep.RealEnergies[k]
	}
	return g / real
}

// Pair names two models to compare, A against B.
type Pair struct{ A, B string }

// SummaryConfig is what Summarize compares and how.
type SummaryConfig struct {
	// Compare lists the pairs; nil means DefaultPairs of the reports' models, empty none.
	Compare   []Pair
	Bootstrap BootstrapConfig
}

// DefaultPairs compares every model named "student wavelet..." with "student pixel" and with
// "student none", those of them that are present.
func DefaultPairs(models []string) []Pair {
	have := map[string]bool{}
	for _, m := range models {
		have[m] = true
	}
	var out []Pair
	for _, m := range models {
		if !strings.HasPrefix(m, "student wavelet") {
			continue
		}
		for _, base := range []string{"student pixel", "student none"} {
			if have[base] {
				out = append(out, Pair{m, base})
			}
		}
	}
	return out
}

// Stat is a metric's mean and sample standard deviation over N seeds (SD null for one seed).
type Stat struct {
	Mean Num `json:"mean"`
	SD   Num `json:"sd"`
	N    int `json:"n"`
}

func statOf(v []float64) Stat {
	st := Stat{Mean: Num(math.NaN()), SD: Num(math.NaN()), N: len(v)}
	if len(v) == 0 {
		return st
	}
	var s float64
	for _, x := range v {
		s += x
	}
	m := s / float64(len(v))
	st.Mean = Num(m)
	if len(v) > 1 {
		var ss float64
		for _, x := range v {
			ss += (x - m) * (x - m)
		}
		st.SD = Num(math.Sqrt(ss / float64(len(v)-1)))
	}
	return st
}

// ModelSummary is one model over the seeds: each metric (keyed as in summary.json), and its
// energy in each Haar band relative to the real images' (Summary.Bands' order).
type ModelSummary struct {
	Name      string          `json:"name"`
	Metrics   map[string]Stat `json:"metrics"`
	BandRatio []Stat          `json:"band_energy_ratio"`
}

// Comparison is one metric's paired difference A - B over seeds (and test images).
type Comparison struct {
	A      string `json:"a"`
	B      string `json:"b"`
	Metric string `json:"metric"`
	Label  string `json:"label"`
	// Better says which direction is better for the metric; for Closer1 the difference and
	// its interval are of |ln(ratio)|, so negative means A is closer to the real images.
	Better string `json:"better"`
	Mean   Num    `json:"mean_diff"`
	Lo     Num    `json:"ci_low"`
	Hi     Num    `json:"ci_high"`
	// Resampled is what each draw resampled: "seeds and test images", "seeds" or
	// "test images" (one seed); Interval is empty (null ends) where nothing could be.
	Resampled    string `json:"resampled"`
	ExcludesZero bool   `json:"excludes_zero"`
	// Favours is the better model's name when the interval excludes 0, else "".
	Favours string `json:"favours"`
}

// Summary is several reports of the same models (one per seed) merged.
type Summary struct {
	Dataset   string      `json:"dataset"`
	Task      string      `json:"task"`
	Paired    bool        `json:"paired"`
	Seeds     int         `json:"seeds"`
	Reports   []string    `json:"reports"`
	Images    int         `json:"images"`
	Size      [2]int      `json:"size"`
	SpeedSize int         `json:"speed_size"`
	Features  FeatureInfo `json:"feature_network"`
	// Inception is the network of FID and KID, when the reports have them.
	Inception *InceptionInfo `json:"inception,omitempty"`
	// Models are in the first report's order.
	Models      []ModelSummary  `json:"models"`
	Bands       []string        `json:"bands"`
	Comparisons []Comparison    `json:"comparisons"`
	Bootstrap   BootstrapConfig `json:"bootstrap"`
	Notes       []string        `json:"notes,omitempty"`
}

// Summarize merges reports (one per seed, names their files for errors) of the same models.
func Summarize(reps []Report, names []string, cfg SummaryConfig) (*Summary, error) {
	if len(reps) == 0 {
		return nil, fmt.Errorf("%w: no reports", ErrSummary)
	}
	if len(names) != len(reps) {
		names = make([]string, len(reps))
		for i := range names {
			names[i] = fmt.Sprintf("report %d", i+1)
		}
	}
	if cfg.Bootstrap == (BootstrapConfig{}) {
		cfg.Bootstrap = DefaultBootstrapConfig()
	}
	if err := cfg.Bootstrap.Validate(); err != nil {
		return nil, err
	}
	first := &reps[0]
	s := &Summary{Dataset: first.Dataset, Task: first.Task, Paired: first.Paired, Seeds: len(reps), Reports: names,
		Images: first.Images, Size: first.Size, SpeedSize: first.SpeedSize, Features: first.Features, Bands: first.Bands,
		Bootstrap: cfg.Bootstrap, Inception: first.Inception}
	if s.Features.Kind == "" && first.FeatureNet != "" {
		s.Features = FeatureInfo{File: first.FeatureNet} // a report from before feature_network
	}
	// byName[k][model] is report k's result of that model.
	byName := make([]map[string]*Result, len(reps))
	var models []string
	for k := range reps {
		rep := &reps[k]
		if rep.Task != first.Task || rep.Paired != first.Paired {
			return nil, fmt.Errorf("%w: %s is %s and %s is %s: summarize reports of one task", ErrSummary, names[0], first.Task, names[k], rep.Task)
		}
		if !slices.Equal(rep.Bands, first.Bands) {
			return nil, fmt.Errorf("%w: %s has bands %v and %s %v: evaluate every seed with the same --levels", ErrSummary, names[0], first.Bands, names[k], rep.Bands)
		}
		if !sameFeatures(first, rep) {
			return nil, fmt.Errorf("%w: %s and %s measured Frechet distances with different feature networks (%s; %s): evaluate every seed with the same --features", ErrSummary, names[0], names[k], featureKey(first), featureKey(rep))
		}
		if (rep.Inception == nil) != (first.Inception == nil) || (rep.Inception != nil && rep.Inception.SHA256 != first.Inception.SHA256) {
			return nil, fmt.Errorf("%w: %s and %s have FID and KID from different Inception weights, or only one has them: evaluate every seed with the same --fid-weights", ErrSummary, names[0], names[k])
		}
		byName[k] = map[string]*Result{}
		for i := range rep.Results {
			r := &rep.Results[i]
			if rep.Inception != nil && (r.FID == nil || r.KID == nil) {
				return nil, fmt.Errorf("%w: %s: model %q has no FID or KID though the report names Inception weights", ErrSummary, names[k], r.Name)
			}
			if byName[k][r.Name] != nil {
				return nil, fmt.Errorf("%w: %s has two models named %q: give eval distinct --names", ErrSummary, names[k], r.Name)
			}
			byName[k][r.Name] = r
			if k == 0 {
				models = append(models, r.Name)
			}
		}
		for _, m := range models {
			if byName[k][m] == nil {
				return nil, fmt.Errorf("%w: %s has no model %q, which %s has: summarize reports of the same models (one eval per seed with the same --names)", ErrSummary, names[k], m, names[0])
			}
		}
		if len(byName[k]) != len(models) {
			for _, r := range rep.Results {
				if byName[0][r.Name] == nil {
					return nil, fmt.Errorf("%w: %s has model %q, which %s lacks: summarize reports of the same models (one eval per seed with the same --names)", ErrSummary, names[k], r.Name, names[0])
				}
			}
		}
	}
	metrics := s.metrics()
	for _, m := range models {
		ms := ModelSummary{Name: m, Metrics: map[string]Stat{}}
		for _, c := range metrics {
			var v []float64
			for k := range reps {
				v = append(v, c.value(&reps[k], byName[k][m]))
			}
			ms.Metrics[c.key] = statOf(v)
		}
		for b := range first.Bands {
			var v []float64
			for k := range reps {
				r := byName[k][m]
				if b < len(r.BandEnergies) && b < len(reps[k].RealEnergies) {
					v = append(v, r.BandEnergies[b]/reps[k].RealEnergies[b])
				}
			}
			ms.BandRatio = append(ms.BandRatio, statOf(v))
		}
		s.Models = append(s.Models, ms)
	}

	pairs := cfg.Compare
	if pairs == nil {
		pairs = DefaultPairs(models)
	}
	for _, p := range pairs {
		for _, m := range []string{p.A, p.B} {
			if byName[0][m] == nil {
				return nil, fmt.Errorf("--compare: no model %q in the reports (models: %s)", m, strings.Join(models, ", "))
			}
		}
		if p.A == p.B {
			return nil, fmt.Errorf("--compare %s:%s: a model compared with itself", p.A, p.B)
		}
	}
	imagesOK, why := perImageUsable(reps, byName, models, names)
	if s.Paired && !imagesOK && len(pairs) > 0 {
		s.Notes = append(s.Notes, "PSNR, SSIM and L1 resample seeds only: "+why+".")
	}
	if len(pairs) > 0 && len(reps) < 2 {
		s.Notes = append(s.Notes, "One seed: set-level metrics have no interval, and intervals over test images say nothing about another seed.")
	} else if len(pairs) > 0 && len(reps) < 10 {
		s.Notes = append(s.Notes, fmt.Sprintf("With %d seeds a resample of seeds takes few distinct values and percentile intervals run narrow; read them as a guide.", len(reps)))
	}
	for _, p := range pairs {
		for _, c := range metrics {
			if c.better == "" {
				continue
			}
			cmp, err := compare(reps, byName, p, c, imagesOK, cfg.Bootstrap)
			if err != nil {
				return nil, err
			}
			s.Comparisons = append(s.Comparisons, cmp)
		}
	}
	return s, nil
}

// sameFeatures reports whether two reports' Frechet distances come from the same network: the
// same kind, dataset, classes, input and accuracy, or where a report is older than
// feature_network, the same file and accuracy.
func sameFeatures(a, b *Report) bool {
	if a.Features.Kind == "" || b.Features.Kind == "" {
		return a.FeatureNet == b.FeatureNet && a.FeatureAccuracy == b.FeatureAccuracy
	}
	return featureKey(a) == featureKey(b)
}

// featureKey identifies the feature network of a report: what it is and its accuracy, or for a
// report from before feature_network, its file.
func featureKey(rep *Report) string {
	f := rep.Features
	if f.Kind == "" {
		return fmt.Sprintf("%s, accuracy %.2f%%", rep.FeatureNet, rep.FeatureAccuracy)
	}
	acc := "unknown"
	if f.Accuracy != nil {
		acc = fmt.Sprintf("%.2f%%", *f.Accuracy)
	}
	return fmt.Sprintf("%s on %s, classes %s, %dx%dx%d, accuracy %s", f.Kind, f.Dataset, strings.Join(f.Classes, "/"), f.Channels, f.Size, f.Size, acc)
}

// metrics are the columns of this summary's task.
func (s *Summary) metrics() []summaryMetric {
	var out []summaryMetric
	for _, c := range summaryMetrics {
		if (!c.paired || s.Paired) && (!c.inception || s.Inception != nil) {
			out = append(out, c)
		}
	}
	return out
}

// perImageUsable says whether every model of every report has per-image values for the same
// test images, and why not.
func perImageUsable(reps []Report, byName []map[string]*Result, models, names []string) (bool, string) {
	n := -1
	for k := range reps {
		if reps[k].TestSetDigest != reps[0].TestSetDigest {
			for _, j := range []int{0, k} {
				if reps[j].TestSetDigest == "" {
					return false, fmt.Sprintf("%s has no test_set_digest (made by an older wkd eval), so its test images cannot be matched with %s's", names[j], names[k-j])
				}
			}
			return false, fmt.Sprintf("%s and %s evaluated different test images", names[0], names[k])
		}
		for _, m := range models {
			p := byName[k][m].PerImage
			if p == nil {
				return false, fmt.Sprintf("%s has no per-image values for %q (made by an older wkd eval)", names[k], m)
			}
			if n < 0 {
				n = len(p.PSNR)
			}
			if len(p.PSNR) != n || len(p.SSIM) != n || len(p.L1) != n || n == 0 {
				return false, fmt.Sprintf("%s has per-image values of %q for another number of test images", names[k], m)
			}
		}
	}
	return true, ""
}

func compare(reps []Report, byName []map[string]*Result, p Pair, c summaryMetric, imagesOK bool, cfg BootstrapConfig) (Comparison, error) {
	cmp := Comparison{A: p.A, B: p.B, Metric: c.key, Label: strings.TrimRight(c.label, " ↑↓"), Better: c.better}
	perImage := c.perImage != nil && imagesOK
	var a, b [][]float64
	for k := range reps {
		ra, rb := byName[k][p.A], byName[k][p.B]
		if perImage {
			a, b = append(a, c.perImage(ra.PerImage)), append(b, c.perImage(rb.PerImage))
			continue
		}
		va, vb := c.value(&reps[k], ra), c.value(&reps[k], rb)
		if c.better == Closer1 {
			va, vb = math.Abs(math.Log(va)), math.Abs(math.Log(vb))
		}
		a, b = append(a, []float64{va}), append(b, []float64{vb})
	}
	switch {
	case perImage && len(reps) > 1:
		cmp.Resampled = "seeds and test images"
	case perImage:
		cmp.Resampled = "test images (one seed)"
	case len(reps) > 1:
		cmp.Resampled = "seeds"
	default:
		cmp.Resampled = "nothing (one seed)"
	}
	for s := range a {
		for i := range a[s] {
			if d := a[s][i] - b[s][i]; math.IsNaN(d) || math.IsInf(d, 0) {
				cmp.Mean, cmp.Lo, cmp.Hi = Num(math.NaN()), Num(math.NaN()), Num(math.NaN())
				cmp.Resampled = fmt.Sprintf("nothing (seed %d's value is not a number)", s+1)
				return cmp, nil
			}
		}
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%s\x00%s\x00%s", p.A, p.B, c.key)
	iv, err := PairedBootstrap(a, b, perImage, cfg, h.Sum64())
	if err != nil {
		return Comparison{}, fmt.Errorf("%s vs %s, %s: %w", p.A, p.B, c.label, err)
	}
	cmp.Mean, cmp.Lo, cmp.Hi = Num(iv.Mean), Num(iv.Lo), Num(iv.Hi)
	if !perImage && len(reps) < 2 {
		cmp.Lo, cmp.Hi = Num(math.NaN()), Num(math.NaN())
		return cmp, nil
	}
	cmp.ExcludesZero = iv.ExcludesZero()
	if cmp.ExcludesZero {
		aBetter := iv.Lo > 0
		if c.better != Higher {
			aBetter = iv.Hi < 0
		}
		cmp.Favours = p.B
		if aBetter {
			cmp.Favours = p.A
		}
	}
	return cmp, nil
}

// Markdown renders the summary: the table of means ± deviations, the paired differences, the
// band energies relative to the real images'.
func (s *Summary) Markdown() string {
	var b strings.Builder
	seeds := "seeds"
	if s.Seeds == 1 {
		seeds = "seed"
	}
	fmt.Fprintf(&b, "%s (%s), %d %s, %d test images at %dx%d; speedup measured at %dpx\n\n", s.Dataset, s.Task, s.Seeds, seeds, s.Images, s.Size[0], s.Size[1], s.SpeedSize)
	if s.Features.Kind != "" {
		fmt.Fprintf(&b, "Frechet distance on the features of %s.\n\n", s.Features)
	}
	if s.Inception != nil {
		fmt.Fprintf(&b, "FID and KID on %s.\n\n", s.Inception)
	}
	metrics := s.metrics()
	b.WriteString("| model | n |")
	for _, c := range metrics {
		b.WriteString(" " + c.label + " |")
	}
	b.WriteString("\n|---|---|" + strings.Repeat("---|", len(metrics)) + "\n")
	for _, m := range s.Models {
		fmt.Fprintf(&b, "| %s | %d |", m.Name, s.Seeds)
		for _, c := range metrics {
			st := m.Metrics[c.key]
			if c.constant {
				fmt.Fprintf(&b, " "+c.format+" |", float64(st.Mean))
			} else {
				fmt.Fprintf(&b, " %s |", meanSD(c.format, st))
			}
		}
		b.WriteString("\n")
	}

	if len(s.Comparisons) > 0 {
		fmt.Fprintf(&b, "\n## Paired differences A − B (%.0f%% bootstrap intervals)\n\n", 100*s.Bootstrap.Level)
		fmt.Fprintf(&b, "%d draws, seed %d. Each draw resamples seeds with replacement and, for PSNR, SSIM and L1, the test images too, the same ones for A and B and for every seed. "+
			"**Bold**: the interval excludes 0. High-band energy / real is compared as |ln(ratio)|, the distance from the real images' energy (1) on a log scale, so a model with too much detail is as far off as one with too little; negative means A is closer.\n\n",
			s.Bootstrap.Draws, s.Bootstrap.Seed)
		for _, n := range s.Notes {
			b.WriteString(n + "\n")
		}
		if len(s.Notes) > 0 {
			b.WriteString("\n")
		}
		b.WriteString("| A | B | metric | better | A − B | interval | resampled | verdict |\n|---|---|---|---|---|---|---|---|\n")
		for _, c := range s.Comparisons {
			format := diffFormat(c.Metric)
			better := c.Better
			if better == Closer1 {
				better = "closer to 1" // compared as |ln(ratio)|, as the note above says
			}
			iv := "—"
			if !math.IsNaN(float64(c.Lo)) {
				iv = fmt.Sprintf("["+format+", "+format+"]", float64(c.Lo), float64(c.Hi))
			}
			verdict := "no clear difference"
			switch {
			case math.IsNaN(float64(c.Mean)):
				verdict = "not computed"
			case math.IsNaN(float64(c.Lo)):
				verdict = "needs 2+ seeds"
			case c.ExcludesZero:
				iv = "**" + iv + "**"
				verdict = "**" + c.Favours + " better**"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | "+format+" | %s | %s | %s |\n", c.A, c.B, c.Label, better, float64(c.Mean), iv, c.Resampled, verdict)
		}
	}

	if len(s.Bands) > 0 {
		b.WriteString("\n## Wavelet band energy / real images' (mean over seeds; 1 = as much as real)\n\n| model |")
		for _, name := range s.Bands {
			b.WriteString(" " + name + " |")
		}
		b.WriteString("\n|---|" + strings.Repeat("---|", len(s.Bands)) + "\n")
		for _, m := range s.Models {
			fmt.Fprintf(&b, "| %s |", m.Name)
			for _, st := range m.BandRatio {
				fmt.Fprintf(&b, " %.3f |", float64(st.Mean))
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

// meanSD is "mean ± sd", with "—" for the deviation of one seed.
func meanSD(format string, st Stat) string {
	m := fmt.Sprintf(format, float64(st.Mean))
	if st.N < 2 || math.IsNaN(float64(st.SD)) {
		return m + " ± —"
	}
	return m + " ± " + fmt.Sprintf(strings.TrimSuffix(format, "x"), float64(st.SD))
}

// diffFormat is a signed format with a digit more than the metric's column.
func diffFormat(key string) string {
	switch key {
	case "psnr":
		return "%+.3f"
	case "ssim", "l1", "spectrum_distance":
		return "%+.5f"
	case "frechet_distance":
		return "%+.3f"
	}
	return "%+.4f"
}
