package main

import (
	"fmt"

	"github.com/spf13/pflag"

	"wkd/trainer"
)

// In-process runs of single commands, through the same parsing as the binary.

func runConvert(args []string) error   { return wkd(append([]string{"convert"}, args...)...) }
func runData(args []string) error      { return wkd(append([]string{"data"}, args...)...) }
func runEval(args []string) error      { return wkd(append([]string{"eval"}, args...)...) }
func runSummarize(args []string) error { return wkd(append([]string{"summarize"}, args...)...) }
func runTranslate(args []string) error { return wkd(append([]string{"translate"}, args...)...) }
func runTrainFeatures(args []string) error {
	return wkd(append([]string{"train-features"}, args...)...)
}

// parseRun parses a run's flags, as cobra does for train and distill, and resolves its
// configuration as they do.
func parseRun(fs *pflag.FlagSet, f *runFlags, args []string, distill bool) (trainer.Config, error) {
	if err := fs.Parse(args); err != nil {
		return trainer.Config{}, err
	}
	if fs.NArg() > 0 {
		return trainer.Config{}, fmt.Errorf("unexpected argument %q (flags start with --)", fs.Arg(0))
	}
	return resolveRun(fs, f, distill)
}
