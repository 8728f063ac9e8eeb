package main

import (
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"wkd/bench"
)

func init() {
	register(command{name: "bench-overlap", summary: "share of a distributed distillation step spent waiting on the all-reduce, overlap off and on", group: groupBench, flags: benchOverlapFlags})
}

func benchOverlapFlags(fs *pflag.FlagSet, _ []string) func([]string) error {
	var o bench.OverlapOptions
	fs.IntVar(&o.Nodes, "nodes", 2, "node processes")
	fs.IntVar(&o.Steps, "steps", 30, "steps per run (the first 5 are not counted)")
	fs.IntVar(&o.NGF, "ngf", 32, "student width (more parameters, more to communicate)")
	fs.IntVar(&o.Size, "size", 64, "image side")
	return func(args []string) error {
		switch {
		case o.Nodes < 2 || o.Nodes > maxLocalNodes:
			return fmt.Errorf("--nodes %d: want 2 to %d, like 2", o.Nodes, maxLocalNodes)
		case o.Steps < 6:
			return fmt.Errorf("--steps %d: want at least 6 (the first 5 are not counted), like 30", o.Steps)
		case o.NGF < 1 || o.NGF > 256:
			return fmt.Errorf("--ngf %d: want 1 to 256, like 32", o.NGF)
		case o.Size < 16 || o.Size > 1024:
			return fmt.Errorf("--size %d: want 16 to 1024, like 64", o.Size)
		}
		var err error
		if o.Exe, err = os.Executable(); err != nil {
			return err
		}
		return runBenchOverlap(o, os.Stdout)
	}
}
