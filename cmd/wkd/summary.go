package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"wkd/metrics"
)

func init() {
	register(command{name: "summarize", summary: "merge several eval reports (seeds): mean ± sd, paired bootstrap intervals of differences, band energies", group: groupEval,
		use: "[flags] report.json [report.json ...]",
		long: "Merges several eval reports (seeds): mean ± sd, paired bootstrap intervals of differences, band energies.\n" +
			"The report.json files of 'wkd eval', one per seed, go after the flags.",
		args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return errors.New("give report.json files (one per seed) as arguments, after the flags")
			}
			return nil
		}, flags: summarizeFlags})
}

func summarizeFlags(fs *pflag.FlagSet, _ []string) func([]string) error {
	out := fs.String("out", "", "also write the markdown to this file (summary.md); summary.json goes beside it unless --json says where")
	jsonOut := fs.String("json", "", "write the numbers as JSON here (default: --out with the extension .json)")
	compare := fs.String("compare", "", `pairs to compare as "model A:model B,model A:model B"; "" compares none (default: every "student wavelet*" against "student pixel" and "student none", those present)`)
	draws := fs.Int("draws", metrics.DefaultDraws, fmt.Sprintf("bootstrap draws per comparison, %d to %d", metrics.MinDraws, metrics.MaxDraws))
	seed := fs.Uint64("bootstrap-seed", metrics.DefaultBootstrapSeed, "seed of the bootstrap draws (the same seed gives the same intervals)")
	level := fs.Float64("level", metrics.DefaultLevel, "coverage of the intervals, in (0, 1)")
	return func(args []string) error {
		boot := metrics.BootstrapConfig{Draws: *draws, Seed: *seed, Level: *level}
		if err := boot.Validate(); err != nil {
			return err
		}
		pairs, err := parsePairs(*compare)
		if err != nil {
			return err
		}
		fs.Visit(func(f *pflag.Flag) {
			if f.Name == "compare" && pairs == nil {
				pairs = []metrics.Pair{} // given empty: no comparisons, not the default ones
			}
		})
		var reps []metrics.Report
		for _, p := range args {
			r, err := metrics.ReadReport(p)
			if err != nil {
				return err
			}
			reps = append(reps, *r)
		}
		s, err := metrics.Summarize(reps, args, metrics.SummaryConfig{Compare: pairs, Bootstrap: boot})
		if err != nil {
			return err
		}
		md := s.Markdown()
		fmt.Print(md)
		if *out != "" {
			if err := os.WriteFile(*out, []byte(md), 0o644); err != nil {
				return fmt.Errorf("--out: %w", err)
			}
			if *jsonOut == "" {
				*jsonOut = strings.TrimSuffix(*out, filepath.Ext(*out)) + ".json"
			}
		}
		if *jsonOut != "" {
			b, err := json.MarshalIndent(s, "", "  ")
			if err != nil {
				return err
			}
			if err := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); err != nil {
				return fmt.Errorf("--json: %w", err)
			}
		}
		return nil
	}
}

// parsePairs reads --compare: "A:B,A:B"; empty is nil (the default pairs).
func parsePairs(s string) ([]metrics.Pair, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []metrics.Pair
	for _, item := range strings.Split(s, ",") {
		a, b, ok := strings.Cut(item, ":")
		a, b = strings.TrimSpace(a), strings.TrimSpace(b)
		if !ok || a == "" || b == "" || strings.Contains(b, ":") {
			return nil, fmt.Errorf(`--compare %q: want "model A:model B", pairs separated by commas`, item)
		}
		out = append(out, metrics.Pair{A: a, B: b})
	}
	return out, nil
}
