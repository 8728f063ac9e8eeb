package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"wkd/allreduce"
	"wkd/bench"
)

func init() {
	register(command{name: "bench-allreduce", summary: "measure the ring all-reduce over NATS against raw NATS and TCP", group: groupBench,
		long: "Starts a nats-server on loopback, runs the all-reduce in separate processes for each\n" +
			"world size and buffer size, and compares its bus bandwidth with raw NATS pub-sub.",
		flags: benchAllreduceFlags})
}

func benchAllreduceFlags(fs *pflag.FlagSet, _ []string) func([]string) error {
	o := bench.AllreduceOptions{Timeout: 3 * time.Minute}
	nodes := fs.String("nodes", "2,3,4", "comma-separated world sizes; each rank is a separate process")
	sizes := fs.String("sizes", "1,16,64", "comma-separated buffer sizes in MiB")
	fs.IntVar(&o.Reps, "reps", 5, "timed repetitions per (nodes, size); the median is reported")
	fs.IntVar(&o.Warmup, "warmup", 1, "untimed repetitions before the timed ones")
	fs.IntVar(&o.Chunk, "chunk", allreduce.DefaultChunkBytes, "all-reduce chunk payload in bytes (multiple of 4, at most 1 MiB)")
	fs.IntVar(&o.RawMiB, "raw-mib", 64, "MiB sent per repetition by the raw NATS and TCP peers")
	fs.IntVar(&o.RawMsgKiB, "raw-msg-kib", 1024, "raw NATS message size in KiB (at most 1024)")
	fs.DurationVar(&o.Timeout, "timeout", o.Timeout, "give up after this long")
	return func(args []string) error {
		if bench.IsWorker() {
			return bench.RunWorker(os.Stdout)
		}
		var err error
		if o.Nodes, err = parseIntList(*nodes, 2, 64); err != nil {
			return fmt.Errorf("--nodes: %w, like 2,3,4", err)
		}
		if o.Sizes, err = parseIntList(*sizes, 1, 4096); err != nil {
			return fmt.Errorf("--sizes: %w, like 1,16,64", err)
		}
		switch {
		case o.Reps < 1:
			return fmt.Errorf("--reps %d: need at least 1, like 5", o.Reps)
		case o.Warmup < 0:
			return fmt.Errorf("--warmup %d: must not be negative, like 1", o.Warmup)
		case o.Chunk < 4 || o.Chunk%4 != 0 || o.Chunk > allreduce.MaxChunkBytes:
			return fmt.Errorf("--chunk %d: a multiple of 4 in [4, %d], like %d", o.Chunk, allreduce.MaxChunkBytes, allreduce.DefaultChunkBytes)
		case o.RawMiB < 1:
			return fmt.Errorf("--raw-mib %d: need at least 1, like 64", o.RawMiB)
		case o.RawMsgKiB < 1 || o.RawMsgKiB > 1024:
			return fmt.Errorf("--raw-msg-kib %d: must be in [1, 1024], like 1024", o.RawMsgKiB)
		case o.Timeout <= 0:
			return fmt.Errorf("--timeout %v: want a positive duration, like 3m", o.Timeout)
		}
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		o.Command = []string{exe, "bench-allreduce"}
		return runBenchAllreduce(o, os.Stdout)
	}
}

// The benchmarks, once their flags are checked; the flag tests replace them.
var (
	runBenchAllreduce = bench.Allreduce
	runBenchNet       = bench.Net
	runBenchOverlap   = bench.Overlap
)

// parseIntList reads comma-separated integers in [lo, hi].
func parseIntList(s string, lo, hi int) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < lo || v > hi {
			return nil, fmt.Errorf("%q: want comma-separated integers in [%d, %d]", f, lo, hi)
		}
		out = append(out, v)
	}
	return out, nil
}
