package main

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"wkd/bench"
)

// TestMain: the benchmarks start this program again as their workers and servers. The flag
// tests below replace the benchmarks, so none should start; if one does, the test binary
// must not run the whole suite again inside it.
func TestMain(m *testing.M) {
	if bench.IsWorker() || (len(os.Args) > 1 && os.Args[1] == "nats") {
		os.Stderr.WriteString("the cmd/wkd test binary was started as a benchmark's worker or server\n")
		os.Exit(2)
	}
	os.Exit(m.Run())
}

var errBenchReached = errors.New("the benchmark was reached: its flags passed every check")

// stubBenchmarks replaces the benchmarks for the test and records the options they get.
func stubBenchmarks(t *testing.T) (ar *bench.AllreduceOptions, nt *bench.NetOptions, ov *bench.OverlapOptions) {
	ar, nt, ov = new(bench.AllreduceOptions), new(bench.NetOptions), new(bench.OverlapOptions)
	oldAR, oldNet, oldOV := runBenchAllreduce, runBenchNet, runBenchOverlap
	t.Cleanup(func() { runBenchAllreduce, runBenchNet, runBenchOverlap = oldAR, oldNet, oldOV })
	runBenchAllreduce = func(o bench.AllreduceOptions, _ io.Writer) error { *ar = o; return errBenchReached }
	runBenchNet = func(o bench.NetOptions, _, _ string, _ io.Writer) error { *nt = o; return errBenchReached }
	runBenchOverlap = func(o bench.OverlapOptions, _ io.Writer) error { *ov = o; return errBenchReached }
	return ar, nt, ov
}

// Bad flags fail before any benchmark starts, naming the flag and a value that works.
func TestBenchFlagErrors(t *testing.T) {
	stubBenchmarks(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"bench-net", "--link", "fast"}, "like 100mbit"},
		{[]string{"bench-net", "--link", "50kbit"}, "100kbit"},
		{[]string{"bench-net", "--ranks", "1,4"}, "like 2,4,8"},
		{[]string{"bench-net", "--ranks", "2,x"}, "like 2,4,8"},
		{[]string{"bench-net", "--ranks", "33"}, "like 2,4,8"},
		{[]string{"bench-net", "--size-mib", "0"}, "like 8"},
		{[]string{"bench-net", "--size-mib", "2000"}, "like 8"},
		{[]string{"bench-net", "--reps", "0"}, "like 3"},
		{[]string{"bench-net", "--timeout", "0s"}, "like 10m"},
		{[]string{"bench-net", "--tcp", "cubic;reboot"}, "like cubic"},
		{[]string{"bench-net", "--tcp", "Cubic"}, "want the name of a TCP congestion control"},
		{[]string{"bench-allreduce", "--nodes", "1"}, "like 2,3,4"},
		{[]string{"bench-allreduce", "--nodes", "0"}, "like 2,3,4"},
		{[]string{"bench-allreduce", "--sizes", "1,x"}, "like 1,16,64"},
		{[]string{"bench-allreduce", "--sizes", "5000"}, "like 1,16,64"},
		{[]string{"bench-allreduce", "--chunk", "6"}, "like 524288"},
		{[]string{"bench-allreduce", "--chunk", "2097152"}, "like 524288"},
		{[]string{"bench-allreduce", "--reps", "0"}, "like 5"},
		{[]string{"bench-allreduce", "--warmup", "-1"}, "like 1"},
		{[]string{"bench-allreduce", "--raw-mib", "0"}, "like 64"},
		{[]string{"bench-allreduce", "--raw-msg-kib", "0"}, "like 1024"},
		{[]string{"bench-allreduce", "--raw-msg-kib", "2048"}, "like 1024"},
		{[]string{"bench-allreduce", "--timeout", "-1s"}, "like 3m"},
		{[]string{"bench-overlap", "--nodes", "1"}, "like 2"},
		{[]string{"bench-overlap", "--nodes", "99"}, "like 2"},
		{[]string{"bench-overlap", "--steps", "5"}, "like 30"},
		{[]string{"bench-overlap", "--ngf", "0"}, "like 32"},
		{[]string{"bench-overlap", "--size", "8"}, "like 64"},
		{[]string{"bench-overlap", "--size", "2048"}, "like 64"},
	} {
		err := wkd(c.args...)
		if err == nil || errors.Is(err, errBenchReached) || !strings.Contains(err.Error(), c.args[1]) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("wkd %v: error %v, want one naming %s and %q", c.args, err, c.args[1], c.want)
		}
	}
}

// Good flags reach the benchmarks as the options they say; the workers are this program's
// same command, bench-net's servers its nats command.
func TestBenchFlagsReachOptions(t *testing.T) {
	ar, nt, ov := stubBenchmarks(t)
	if err := wkd("bench-allreduce", "--nodes", "2,5", "--sizes", "3", "--chunk", "4096", "--warmup", "0"); !errors.Is(err, errBenchReached) {
		t.Fatalf("bench-allreduce: %v", err)
	}
	if !slices.Equal(ar.Nodes, []int{2, 5}) || !slices.Equal(ar.Sizes, []int{3}) || ar.Chunk != 4096 || ar.Warmup != 0 || ar.Reps != 5 ||
		len(ar.Command) != 2 || ar.Command[1] != "bench-allreduce" {
		t.Errorf("bench-allreduce options %+v", *ar)
	}
	if err := wkd("bench-overlap", "--nodes", "3", "--steps", "12"); !errors.Is(err, errBenchReached) {
		t.Fatalf("bench-overlap: %v", err)
	}
	if ov.Nodes != 3 || ov.Steps != 12 || ov.NGF != 32 || ov.Size != 64 || ov.Exe == "" {
		t.Errorf("bench-overlap options %+v", *ov)
	}
	if os.Geteuid() != 0 {
		t.Skip("bench-net's flags reach it only as root")
	}
	if _, _, err := bench.NetPreflight(0, exec.LookPath); err != nil {
		t.Skip(err)
	}
	if err := wkd("bench-net", "--link", "1gbit", "--ranks", "2,3"); !errors.Is(err, errBenchReached) {
		t.Fatalf("bench-net: %v", err)
	}
	if nt.Link != 1e9 || !slices.Equal(nt.Ranks, []int{2, 3}) || nt.TCP != bench.NetDefaultTCP || nt.TCPExplicit ||
		len(nt.Command) != 2 || nt.Command[1] != "bench-net" || len(nt.Server) != 2 || nt.Server[1] != "nats" {
		t.Errorf("bench-net options %+v", *nt)
	}
	if err := wkd("bench-net", "--tcp", ""); !errors.Is(err, errBenchReached) || nt.TCP != "" || !nt.TCPExplicit {
		t.Errorf("bench-net --tcp \"\": %v, options %+v", err, *nt)
	}
}
