package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"strings"

	"wkd/metrics"
)

func init() {
	register(command{name: "summarize", summary: "merge several eval reports (seeds) into one markdown table: mean ± sd", run: runSummarize})
}

func runSummarize(args []string) error {
	fs := flag.NewFlagSet("summarize", flag.ContinueOnError)
	out := fs.String("out", "", "also write the table to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("give report.json files (one per seed) as arguments")
	}
	var reps []metrics.Report
	for _, p := range fs.Args() {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var r metrics.Report
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("%s: not a report.json: %w", p, err)
		}
		reps = append(reps, r)
	}
	table := summaryTable(reps)
	fmt.Print(table)
	if *out != "" {
		return os.WriteFile(*out, []byte(table), 0o644)
	}
	return nil
}

// summaryTable is one row per model name (in the first report's order) with each metric's
// mean ± sample standard deviation over the reports.
func summaryTable(reps []metrics.Report) string {
	type col struct {
		name   string
		format string
		get    func(metrics.Result) float64
		paired bool
	}
	cols := []col{
		{"params", "%.3g", func(r metrics.Result) float64 { return float64(r.Params) }, false},
		{"MACs", "%.3g", func(r metrics.Result) float64 { return float64(r.MACs) }, false},
		{"compression (MACs)", "%.2fx", func(r metrics.Result) float64 { return r.MACRatio }, false},
		{"speedup", "%.2fx", func(r metrics.Result) float64 { return r.Speedup }, false},
		{"PSNR ↑", "%.2f", func(r metrics.Result) float64 { return r.PSNR }, true},
		{"SSIM ↑", "%.4f", func(r metrics.Result) float64 { return r.SSIM }, true},
		{"L1 ↓", "%.4f", func(r metrics.Result) float64 { return r.L1 }, true},
		{"Frechet ↓", "%.2f", func(r metrics.Result) float64 { return r.FD }, false},
		{"spectrum dist ↓", "%.3f", func(r metrics.Result) float64 { return r.SpectrumDist }, false},
		{"high-band energy / real", "%.3f", func(r metrics.Result) float64 { return 0 }, false},
	}
	paired := reps[0].Paired
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s), %d seeds, %d test images at %dx%d; speedup measured at %dpx\n\n", reps[0].Dataset, reps[0].Task, len(reps), reps[0].Images, reps[0].Size[0], reps[0].Size[1], reps[0].SpeedSize)
	b.WriteString("| model |")
	for _, c := range cols {
		if !c.paired || paired {
			b.WriteString(" " + c.name + " |")
		}
	}
	b.WriteString("\n|---|")
	for _, c := range cols {
		if !c.paired || paired {
			b.WriteString("---|")
		}
	}
	b.WriteString("\n")
	for i, first := range reps[0].Results {
		fmt.Fprintf(&b, "| %s |", first.Name)
		for _, c := range cols {
			if c.paired && !paired {
				continue
			}
			var vals []float64
			for _, r := range reps {
				if i >= len(r.Results) {
					continue
				}
				v := c.get(r.Results[i])
				if c.name == "high-band energy / real" {
					v = highBandRatio(r, r.Results[i])
				}
				vals = append(vals, v)
			}
			m, sd := meanSD(vals)
			if len(vals) > 1 && sd > 0 && c.name != "params" && c.name != "MACs" && c.name != "compression (MACs)" {
				fmt.Fprintf(&b, " "+c.format+" ± "+strings.TrimSuffix(c.format, "x")+" |", m, sd)
			} else {
				fmt.Fprintf(&b, " "+c.format+" |", m)
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

// highBandRatio is the generated images' total high-band energy over the real images'.
func highBandRatio(rep metrics.Report, r metrics.Result) float64 {
	var g, real float64
	for k, name := range rep.Bands {
		if strings.HasPrefix(name, "LL") || k >= len(r.BandEnergies) {
			continue
		}
		g += r.BandEnergies[k]
		real += rep.RealEnergies[k]
	}
	return g / real
}

func meanSD(v []float64) (float64, float64) {
	if len(v) == 0 {
		return math.NaN(), 0
	}
	var s float64
	for _, x := range v {
		s += x
	}
	m := s / float64(len(v))
	if len(v) < 2 {
		return m, 0
	}
	var ss float64
	for _, x := range v {
		ss += (x - m) * (x - m)
	}
	return m, math.Sqrt(ss / float64(len(v)-1))
}
