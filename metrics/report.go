package metrics

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Curve is one logged loss over steps.
type Curve struct {
	Name  string    `json:"name"`
	Steps []float64 `json:"steps"`
	Vals  []float64 `json:"values"`
}

// Result is one generator's evaluation.
type Result struct {
	Name string `json:"name"`
	Run  string `json:"run"`
	Arch string `json:"arch"`
	// Params and MACs (at the evaluation size and at SpeedSize); the ratios are the
	// teacher's over this model's (compression).
	Params      int64   `json:"params"`
	MACs        int64   `json:"macs"`
	MACsSpeed   int64   `json:"macs_at_speed_size"`
	ParamRatio  float64 `json:"param_compression"`
	MACRatio    float64 `json:"mac_compression"`
	InferenceMs float64 `json:"inference_ms"`
	Speedup     float64 `json:"speedup"`
	// PSNR, SSIM and L1 are means over the test images (paired tasks); PerImage holds each
	// image's values, so differences between models can be bootstrapped over images.
	PSNR     float64   `json:"psnr,omitempty"`
	SSIM     float64   `json:"ssim,omitempty"`
	L1       float64   `json:"l1,omitempty"`
	PerImage *PerImage `json:"per_image,omitempty"`
	FD       float64   `json:"frechet_distance"`
	// FID and KID are on Report.Inception's network; absent without its weights.
	FID *float64  `json:"fid,omitempty"`
	KID *KIDValue `json:"kid,omitempty"`
	// SpectrumDist is the distance of this model's spectrum to the real images'.
	SpectrumDist float64 `json:"spectrum_distance"`
	// BandEnergies are the set's Haar band energies, in Report.Bands' order.
	BandEnergies []float64 `json:"band_energies"`
	Spectrum     []float64 `json:"spectrum"`
	Curves       []Curve   `json:"loss_curves,omitempty"`
	Steps        int64     `json:"steps"`
}

// PerImage is one model's metric of each test image, in test-set order (the order of every
// model in a report, and of every report of the same test set).
type PerImage struct {
	PSNR []float64 `json:"psnr"`
	SSIM []float64 `json:"ssim"`
	L1   []float64 `json:"l1"`
}

// MaxPSNR stands for the infinite PSNR of an image identical to its target, so that means stay
// finite and report.json valid JSON.
const MaxPSNR = 100.0

// FeatureInfo says which network produced a report's Frechet distances.
type FeatureInfo struct {
	FeatureSpec
	// File is the weights file as given to --features.
	File string `json:"file"`
	// Accuracy is the network's test accuracy on its dataset in percent; absent when the file
	// does not record it.
	Accuracy *float64 `json:"test_accuracy,omitempty"`
}

// NewFeatureInfo describes a loaded network; accuracy is a fraction, NaN when unknown.
func NewFeatureInfo(n *FeatureNet, file string, accuracy float64) FeatureInfo {
	info := FeatureInfo{FeatureSpec: n.Spec(), File: file}
	if !math.IsNaN(accuracy) {
		pct := 100 * accuracy
		info.Accuracy = &pct
	}
	return info
}

// String is the one-line description the report and the summary print.
func (f FeatureInfo) String() string {
	s := fmt.Sprintf("%s trained on %s (%d classes, %dx%dx%d input", f.Kind, f.Dataset, len(f.Classes), f.Channels, f.Size, f.Size)
	if f.Accuracy != nil {
		s += fmt.Sprintf(", test accuracy %.1f%%", *f.Accuracy)
	}
	return s + ")"
}

// KIDValue is a kernel Inception distance: mean and standard deviation over subsets.
type KIDValue struct {
	Mean float64 `json:"mean"`
	Std  float64 `json:"std"`
}

// InceptionInfo says which network produced a report's FID and KID.
type InceptionInfo struct {
	Network string `json:"network"`
	File    string `json:"file"`
	SHA256  string `json:"sha256"`
	// Published is true for pytorch-fid's pt_inception-2015-12-05-6726825d.pth (its SHA-256
	// starts with 6726825d), the weights published FIDs are computed with.
	Published     bool `json:"published_weights"`
	Dims          int  `json:"dims"`
	KIDSubsets    int  `json:"kid_subsets"`
	KIDSubsetSize int  `json:"kid_subset_size"`
}

// PublishedInceptionPrefix is the start of the SHA-256 of pytorch-fid's weights file, which
// its name carries.
const PublishedInceptionPrefix = "6726825d"

// String is the one-line description the report prints.
func (i InceptionInfo) String() string {
	s := fmt.Sprintf("%s (%d-d pool3 features), weights %s (sha256 %.12s)", i.Network, i.Dims, i.File, i.SHA256)
	if !i.Published {
		s += ": not pytorch-fid's pt_inception-2015-12-05-6726825d.pth, so not comparable with published FIDs"
	}
	return s
}

// Report is a whole evaluation.
type Report struct {
	Dataset   string `json:"dataset"`
	Task      string `json:"task"`
	Paired    bool   `json:"paired"`
	Images    int    `json:"images"`
	Size      [2]int `json:"size"`
	SpeedSize int    `json:"speed_size"`
	Threads   int    `json:"threads"`
	// Features is the network of the Frechet distance. FeatureNet (its file) and
	// FeatureAccuracy (percent, 0 if unknown) repeat it for readers of older reports.
	Features FeatureInfo `json:"feature_network"`
	// Inception is the network of FID and KID; when it is nil, FIDAbsent says why and how to
	// get them.
	Inception       *InceptionInfo `json:"inception,omitempty"`
	FIDAbsent       string         `json:"fid_absent,omitempty"`
	FeatureNet      string         `json:"feature_net"`
	FeatureAccuracy float64        `json:"feature_net_accuracy"`
	// TestSetDigest identifies the real test images (their pixels, in order), so that reports
	// of several seeds can be checked to share them before per-image pairing.
	TestSetDigest string    `json:"test_set_digest,omitempty"`
	Bands         []string  `json:"bands"`
	RealEnergies  []float64 `json:"real_band_energies"`
	RealSpectrum  []float64 `json:"real_spectrum"`
	Results       []Result  `json:"results"`
	// Grid is a PNG: one row per sample (input, each model's output, target).
	Grid    []byte   `json:"-"`
	Columns []string `json:"grid_columns"`
}

// WriteJSON writes the report's numbers.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ErrReport is returned (wrapped) for a report.json that cannot be read as one.
var ErrReport = errors.New("metrics: report")

// ReadReport reads a report.json of 'wkd eval' and checks that it has models and that no
// per-image value is null: encoding/json would read a null as 0, a perfect L1 or a PSNR of 0
// that no image had, and the paired differences would rest on it.
func ReadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w: not a report.json of 'wkd eval': %v", path, ErrReport, err)
	}
	if len(r.Results) == 0 {
		return nil, fmt.Errorf("%s: %w: a report with no models: give the report.json of 'wkd eval'", path, ErrReport)
	}
	// The per-image values again, as pointers: a null is nil here.
	var probe struct {
		Results []struct {
			Name     string `json:"name"`
			PerImage *struct {
				PSNR []*float64 `json:"psnr"`
				SSIM []*float64 `json:"ssim"`
				L1   []*float64 `json:"l1"`
			} `json:"per_image"`
		} `json:"results"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, fmt.Errorf("%s: %w: not a report.json of 'wkd eval': %v", path, ErrReport, err)
	}
	for _, res := range probe.Results {
		p := res.PerImage
		if p == nil {
			continue // a report from before per_image: summaries resample its seeds only
		}
		for _, m := range []struct {
			key  string
			vals []*float64
		}{{"psnr", p.PSNR}, {"ssim", p.SSIM}, {"l1", p.L1}} {
			for i, v := range m.vals {
				if v == nil {
					return nil, fmt.Errorf("%s: %w: model %q has null as per_image.%s[%d] (test image %d): re-run 'wkd eval' for this seed", path, ErrReport, res.Name, m.key, i, i+1)
				}
			}
		}
	}
	return &r, nil
}

// Grid renders rows of images side by side (each (C, H, W) in [-1, 1]) at scale, as PNG.
func Grid(rows [][]Image, scale int) []byte {
	if len(rows) == 0 || len(rows[0]) == 0 {
		return nil
	}
	h, w := rows[0][0].H*scale, rows[0][0].W*scale
	const gap = 2
	img := image.NewRGBA(image.Rect(0, 0, len(rows[0])*(w+gap), len(rows)*(h+gap)))
	for i := range img.Pix {
		img.Pix[i] = 255
	}
	for r, row := range rows {
		for c, im := range row {
			plane := im.H * im.W
			for y := range h {
				for x := range w {
					sy, sx := y/scale, x/scale
					var px [3]uint8
					for k := range 3 {
						v := im.Pix[min(k, im.C-1)*plane+sy*im.W+sx]
						px[k] = uint8(math.Max(0, math.Min(255, float64(v+1)*127.5+0.5)))
					}
					img.SetRGBA(c*(w+gap)+x, r*(h+gap)+y, color.RGBA{px[0], px[1], px[2], 255})
				}
			}
		}
	}
	var buf bytes.Buffer
	png.Encode(&buf, img)
	return buf.Bytes()
}

// WriteHTML writes the self-contained report page.
func (r *Report) WriteHTML(path string) error {
	var buf bytes.Buffer
	if err := reportPage.Execute(&buf, r.view()); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

type pageView struct {
	*Report
	GridURI  template.URL
	Curves   []template.HTML
	Bands    template.HTML
	Spectra  template.HTML
	Best     map[string]string
	Verdicts []string
}

var palette = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"}

func (r *Report) view() pageView {
	v := pageView{Report: r}
	if len(r.Grid) > 0 {
		v.GridURI = template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(r.Grid))
	}
	for _, res := range r.Results {
		if len(res.Curves) > 0 {
			v.Curves = append(v.Curves, lineChart(res.Name+": training losses", "step", curveSeries(res.Curves), false))
		}
	}
	// Band energies relative to the real images: 1 is right, below 1 is missing detail.
	var series []series
	for i, res := range r.Results {
		ratio := make([]float64, len(res.BandEnergies))
		for k, e := range res.BandEnergies {
			ratio[k] = e / r.RealEnergies[k]
		}
		series = append(series, seriesOf(res.Name, palette[i%len(palette)], nil, ratio))
	}
	v.Bands = barChart("Wavelet band energy / real images' (1 = as much detail as real)", r.Bands, series)
	var spec []seriesT
	real := seriesOf("real", "#000000", nil, r.RealSpectrum)
	spec = append(spec, real)
	for i, res := range r.Results {
		spec = append(spec, seriesOf(res.Name, palette[i%len(palette)], nil, res.Spectrum))
	}
	v.Spectra = lineChart("Azimuthally averaged power spectrum (log10)", "radius (cycles per image)", spec, false)
	return v
}

type seriesT = series

type series struct {
	Name, Color string
	X, Y        []float64
}

func seriesOf(name, col string, x, y []float64) series {
	if x == nil {
		x = make([]float64, len(y))
		for i := range x {
			x[i] = float64(i)
		}
	}
	return series{name, col, x, y}
}

func curveSeries(cs []Curve) []series {
	sort.Slice(cs, func(i, j int) bool { return cs[i].Name < cs[j].Name })
	var out []series
	for i, c := range cs {
		out = append(out, seriesOf(c.Name, palette[i%len(palette)], c.Steps, c.Vals))
	}
	return out
}

// legendW is the strip at the right where series are named, clear of the plot.
const chartW, chartH, padL, padB, padT, legendW = 700.0, 260.0, 56.0, 36.0, 28.0, 140.0

func lineChart(title, xlabel string, ss []series, logY bool) template.HTML {
	var minX, maxX, minY, maxY = math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, s := range ss {
		for i := range s.X {
			if math.IsNaN(s.Y[i]) || math.IsInf(s.Y[i], 0) {
				continue
			}
			minX, maxX = math.Min(minX, s.X[i]), math.Max(maxX, s.X[i])
			minY, maxY = math.Min(minY, s.Y[i]), math.Max(maxY, s.Y[i])
		}
	}
	if maxX <= minX {
		maxX = minX + 1
	}
	if maxY <= minY {
		maxY = minY + 1
	}
	px := func(x float64) float64 { return padL + (x-minX)/(maxX-minX)*(chartW-padL-legendW) }
	py := func(y float64) float64 { return chartH - padB - (y-minY)/(maxY-minY)*(chartH-padB-padT) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg width="%.0f" height="%.0f" class="chart"><text x="%.0f" y="16" class="title">%s</text>`, chartW, chartH+20, padL, template.HTMLEscapeString(title))
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#888"/>`, padL, chartH-padB, chartW-legendW, chartH-padB)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#888"/>`, padL, padT, padL, chartH-padB)
	for k := 0; k <= 4; k++ {
		y := minY + float64(k)/4*(maxY-minY)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" class="tick" text-anchor="end">%.3g</text>`, padL-4, py(y)+4, y)
		x := minX + float64(k)/4*(maxX-minX)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" class="tick" text-anchor="middle">%.4g</text>`, px(x), chartH-padB+14, x)
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" class="tick" text-anchor="middle">%s</text>`, (chartW+padL)/2, chartH-4, template.HTMLEscapeString(xlabel))
	for i, s := range ss {
		var pts strings.Builder
		for k := range s.X {
			if math.IsNaN(s.Y[k]) || math.IsInf(s.Y[k], 0) {
				continue
			}
			fmt.Fprintf(&pts, "%.1f,%.1f ", px(s.X[k]), py(s.Y[k]))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, s.Color, pts.String())
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" class="legend" fill="%s">%s</text>`, chartW-legendW+10, padT+14*float64(i), s.Color, template.HTMLEscapeString(s.Name))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func barChart(title string, labels []string, ss []series) template.HTML {
	maxY := 1.0
	for _, s := range ss {
		for _, y := range s.Y {
			if !math.IsNaN(y) && !math.IsInf(y, 0) {
				maxY = math.Max(maxY, y)
			}
		}
	}
	w := math.Max(chartW, padL+float64(len(labels)*(len(ss)*9+10))+legendW)
	groupW := (w - padL - legendW) / float64(len(labels))
	barW := (groupW - 8) / float64(max(len(ss), 1))
	py := func(y float64) float64 { return chartH - padB - y/maxY*(chartH-padB-padT) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg width="%.0f" height="%.0f" class="chart"><text x="%.0f" y="16" class="title">%s</text>`, w, chartH+20, padL, template.HTMLEscapeString(title))
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#000" stroke-dasharray="4 3"/>`, padL, py(1), w-legendW, py(1))
	for k := 0; k <= 4; k++ {
		y := float64(k) / 4 * maxY
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" class="tick" text-anchor="end">%.2f</text>`, padL-4, py(y)+4, y)
	}
	for li, l := range labels {
		x0 := padL + float64(li)*groupW + 4
		for si, s := range ss {
			y := s.Y[li]
			if math.IsNaN(y) || math.IsInf(y, 0) {
				continue
			}
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s: %.3f</title></rect>`,
				x0+float64(si)*barW, py(y), barW-1, chartH-padB-py(y), s.Color, template.HTMLEscapeString(s.Name), l, y)
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" class="tick" text-anchor="middle">%s</text>`, x0+groupW/2-4, chartH-padB+14, l)
	}
	for i, s := range ss {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" class="legend" fill="%s">%s</text>`, w-legendW+10, padT+14*float64(i), s.Color, template.HTMLEscapeString(s.Name))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

var reportPage = template.Must(template.New("report").Funcs(template.FuncMap{
	"f":    func(format string, v float64) string { return fmt.Sprintf(format, v) },
	"big":  func(v int64) string { return humanCount(v) },
	"kilo": func(v float64) float64 { return 1000 * v },
}).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>wkd report: {{.Dataset}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:12px 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.chart{margin:8px 16px 8px 0;background:#fafafa;border:1px solid #eee}.title{font-weight:600;font-size:13px}
.tick{font-size:10px;fill:#555}.legend{font-size:11px}.note{color:#555;font-size:13px}
img.grid{image-rendering:pixelated;border:1px solid #ddd}
</style></head><body>
<h1>wkd evaluation: {{.Dataset}}</h1>
<p class="note">{{.Task}}, {{.Images}} test images at {{index .Size 0}}x{{index .Size 1}}; inference timed at {{.SpeedSize}}x{{.SpeedSize}}, batch 1, {{.Threads}} threads.
Frechet distance on the features of {{.Features}}{{with .Features.File}}, weights {{.}}{{end}}.
{{with .Inception}}FID and KID (x 1000, mean ± sd over {{.KIDSubsets}} subsets of {{.KIDSubsetSize}}) on {{.}}.{{else}}No FID or KID: {{.FIDAbsent}}{{end}}
Arrows show the better direction.</p>
<table>
<tr><th>model</th><th>architecture</th><th>params</th><th>MACs ({{index .Size 0}}px)</th><th>compression (MACs)</th><th>ms @{{.SpeedSize}}px</th><th>speedup</th>
{{if .Paired}}<th>PSNR ↑</th><th>SSIM ↑</th><th>L1 ↓</th>{{end}}<th>Frechet ↓</th>{{if .Inception}}<th>FID ↓</th><th>KID x 1000 ↓</th>{{end}}<th>spectrum dist ↓</th><th>steps</th></tr>
{{range .Results}}<tr><td>{{.Name}}</td><td>{{.Arch}}</td><td>{{big .Params}}</td><td>{{big .MACs}}</td><td>{{f "%.2fx" .MACRatio}}</td><td>{{f "%.1f" .InferenceMs}}</td><td>{{f "%.2fx" .Speedup}}</td>
{{if $.Paired}}<td>{{f "%.2f" .PSNR}}</td><td>{{f "%.4f" .SSIM}}</td><td>{{f "%.4f" .L1}}</td>{{end}}<td>{{f "%.3f" .FD}}</td>{{if $.Inception}}<td>{{with .FID}}{{f "%.2f" .}}{{end}}</td><td>{{with .KID}}{{f "%.2f" (kilo .Mean)}} ± {{f "%.2f" (kilo .Std)}}{{end}}</td>{{end}}<td>{{f "%.4f" .SpectrumDist}}</td><td>{{.Steps}}</td></tr>
{{end}}</table>
<h2>Samples</h2>
<p class="note">Columns: {{range $i, $c := .Columns}}{{if $i}}, {{end}}{{$c}}{{end}}.</p>
{{if .GridURI}}<img class="grid" src="{{.GridURI}}">{{end}}
<h2>High frequencies</h2>
{{.Bands}}
{{.Spectra}}
<h2>Training</h2>
{{range .Curves}}{{.}}{{end}}
</body></html>
`))

func humanCount(v int64) string {
	switch {
	case v >= 1e9:
		return fmt.Sprintf("%.2f G", float64(v)/1e9)
	case v >= 1e6:
		return fmt.Sprintf("%.2f M", float64(v)/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1f k", float64(v)/1e3)
	}
	return fmt.Sprint(v)
}
