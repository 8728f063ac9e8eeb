package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeRun is a shell job that logs a training line and n step lines into dir/log.jsonl the way
// the trainer does, then exits with code.
func fakeRun(dir string, n, code int) []string {
	script := fmt.Sprintf(`mkdir -p %[1]q && echo '{"message":"training","total_steps":%[2]d}' > %[1]q/log.jsonl
for i in $(seq 1 %[2]d); do echo "{\"message\":\"step\",\"step\":$i}" >> %[1]q/log.jsonl; done
echo "job output"; exit %[3]d`, dir, n, code)
	return []string{"/bin/sh", "-c", script}
}

func TestDemoJobsRunAndReport(t *testing.T) {
	root := t.TempDir()
	var jobs []demoJob
	for i, n := range []int{3, 5} {
		dir := filepath.Join(root, fmt.Sprint("run", i))
		jobs = append(jobs, demoJob{name: fmt.Sprint("job", i), dir: dir, argv: fakeRun(dir, n, 0)})
	}
	var out bytes.Buffer
	if err := runDemoJobs(jobs, &out, false); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.Contains(got, "job0 3/3, job1 5/5") {
		t.Errorf("progress %q, want both jobs done", got)
	}
	for _, j := range jobs {
		if b, err := os.ReadFile(j.dir + ".log"); err != nil || !strings.Contains(string(b), "job output") {
			t.Errorf("%s.log: %q, %v: want the job's output", j.dir, b, err)
		}
	}
}

func TestDemoJobFailureStopsTheOthers(t *testing.T) {
	root := t.TempDir()
	slow := filepath.Join(root, "slow")
	jobs := []demoJob{
		{name: "broken", dir: filepath.Join(root, "broken"), argv: fakeRun(filepath.Join(root, "broken"), 1, 3)},
		{name: "slow", dir: slow, argv: []string{"/bin/sh", "-c", "sleep 60"}},
	}
	start := time.Now()
	err := runDemoJobs(jobs, &bytes.Buffer{}, false)
	if err == nil || !strings.Contains(err.Error(), "student broken failed") || !strings.Contains(err.Error(), "job output") {
		t.Fatalf("err = %v, want the broken job named with the end of its output", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("took %s: the slow job was not stopped", d)
	}
}

func TestRunProgressReadsTheLog(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "log.jsonl")
	if d, n := runProgress(p); d != 0 || n != 0 {
		t.Errorf("no log: %d/%d, want 0/0", d, n)
	}
	log := `{"message":"training","total_steps":100}
{"message":"step","step":50}
not json
{"message":"checkpoint","step":50}
{"message":"training","total_steps":200}
{"message":"step","step":70}
`
	if err := os.WriteFile(p, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	// The last "training" line starts a new count: a resumed run appends to the log.
	if d, n := runProgress(p); d != 70 || n != 200 {
		t.Errorf("progress %d/%d, want 70/200", d, n)
	}
}
