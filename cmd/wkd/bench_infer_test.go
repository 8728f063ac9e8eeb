package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"wkd/internal/torchref"
)

// TestBenchInferRuns runs bench-infer on small generators against PyTorch: every network and
// batch gets a row, the speedup of the wide over the narrow ResNet is printed, and the last
// line is the ratio of the --ratio-net row.
func TestBenchInferRuns(t *testing.T) {
	if ok, msg := torchref.Available(); !ok {
		t.Fatalf("PyTorch unavailable (%s): install Debian's python3-torch\n%s", torchref.Python(), msg)
	}
	f, err := os.CreateTemp(t.TempDir(), "stdout")
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = f
	err = wkd("bench-infer", "--nets", "resnet9-64,resnet9-16", "--size", "16", "--batch-sizes", "1,2", "--reps", "1", "--min-time", "0s", "--warmup", "0", "--threads", "1", "--python", torchref.Python())
	os.Stdout = stdout
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(f.Name())
	out := string(b)
	row := regexp.MustCompile(`(?m)^resnet9-16 +1 +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +([0-9.]+) `)
	m := row.FindStringSubmatch(out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if m == nil || lines[len(lines)-1] != "ratio: "+m[1] || strings.Count(out, "\nresnet9-") != 4 ||
		!strings.Contains(out, "speedup resnet9-64 -> resnet9-16, batch 2: ") {
		t.Errorf("bench-infer printed:\n%s\nwant 4 rows, the speedups and the resnet9-16 batch 1 ratio last", out)
	}
}
