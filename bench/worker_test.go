package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"wkd/node"
)

// TestMain lets the test binary be a benchmark's worker: the tests start it again with the
// worker's part in the environment, as the benchmarks start wkd.
func TestMain(m *testing.M) {
	if IsWorker() {
		if err := RunWorker(os.Stdout); err != nil {
			os.Stderr.WriteString("worker: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startNATS starts a loopback server that wants token.
func startNATS(t *testing.T, token string) *server.Server {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, Authorization: token, NoLog: true, NoSigs: true, MaxPayload: MaxPayload})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready in 10 s")
	}
	return srv
}

// Three all-reduce workers, each a process of its own on one server, report every timed
// repetition of every buffer, once per rank; each checks its buffer holds the mean after the
// first all-reduce, so a wrong sum fails the run. A worker with the wrong token fails it too.
func TestAllreduceWorkers(t *testing.T) {
	srv := startNATS(t, "secret")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run := func(token string) ([]Result, error) {
		procs := make([]proc, 3)
		for r := range procs {
			wk := Worker{Kind: "ar", URL: srv.ClientURL(), Rank: r, Size: 3, SizesM: []int{1, 2}, Reps: 2, Warmup: 1, Chunk: 64 << 10}
			env, err := wk.env(token)
			if err != nil {
				t.Fatal(err)
			}
			procs[r] = proc{argv: []string{os.Args[0]}, env: env}
		}
		res, _, err := runWorkers(ctx, procs)
		return res, err
	}
	res, err := run("secret")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[[3]int]int{}
	for _, r := range res {
		if r.Kind != "ar" || r.Nodes != 3 || !(r.Sec > 0) {
			t.Errorf("result %+v", r)
		}
		seen[[3]int{r.Bytes >> 20, r.Rep, r.Rank}]++
	}
	for _, mib := range []int{1, 2} {
		for rep := range 2 {
			for rank := range 3 {
				if n := seen[[3]int{mib, rep, rank}]; n != 1 {
					t.Errorf("%d MiB rep %d rank %d: %d results, want 1", mib, rep, rank, n)
				}
			}
		}
	}
	if len(res) != 12 {
		t.Errorf("%d results, want 12", len(res))
	}
	if _, err := run("wrong"); err == nil {
		t.Error("workers with the wrong token: no error")
	}
}

// A worker without its token or with a part it does not know says so.
func TestRunWorkerErrors(t *testing.T) {
	t.Setenv(WorkerEnv, `{"kind":"ar"}`)
	t.Setenv(node.NATSTokenEnv, "")
	if err := RunWorker(&bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), node.NATSTokenEnv) {
		t.Errorf("no token: %v", err)
	}
	srv := startNATS(t, "tok")
	t.Setenv(node.NATSTokenEnv, "tok")
	t.Setenv(WorkerEnv, `{"kind":"nope","url":"`+srv.ClientURL()+`"}`)
	if err := RunWorker(&bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown kind: %v", err)
	}
	t.Setenv(WorkerEnv, `{kind`)
	if err := RunWorker(&bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), WorkerEnv) {
		t.Errorf("bad JSON: %v", err)
	}
}

// The whole of bench-allreduce at a small size: raw NATS, the all-reduce with 2 ranks and raw
// TCP, every one a real process or connection, and a positive ratio last.
func TestAllreduceBenchmark(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 6 processes")
	}
	var out bytes.Buffer
	o := AllreduceOptions{Command: []string{os.Args[0]}, Nodes: []int{2}, Sizes: []int{1}, Reps: 1, Warmup: 0,
		Chunk: 256 << 10, RawMiB: 2, RawMsgKiB: 256, Timeout: time.Minute}
	if err := Allreduce(o, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	last := lines[len(lines)-1]
	v, err := strconv.ParseFloat(strings.TrimPrefix(last, "busbw/nats: "), 64)
	if !strings.HasPrefix(last, "busbw/nats: ") || err != nil || !(v > 0) || math.IsInf(v, 0) {
		t.Errorf("last line %q, want busbw/nats: X with X > 0\n%s", last, out.String())
	}
	if !strings.Contains(out.String(), "     2     1 MiB ") {
		t.Errorf("no row for 2 ranks, 1 MiB:\n%s", out.String())
	}
}

func TestMedian(t *testing.T) {
	v := []float64{5, 1, 3}
	if m := Median(v); m != 3 || v[0] != 5 {
		t.Errorf("Median(5,1,3) = %g (input now %v), want 3 and the input unchanged", m, v)
	}
	if m := Median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("Median(4,1,3,2) = %g, want 2.5", m)
	}
	if m := Median(nil); !math.IsNaN(m) {
		t.Errorf("Median() = %g, want NaN", m)
	}
}

// checkMean finds a wrong element anywhere in the buffer: in the first and in the last chunk.
func TestCheckMean(t *testing.T) {
	const size = 3
	buf := make([]float32, 1<<20)
	for i := range buf {
		buf[i] = float32(size-1)/2 + float32(i%7)
	}
	if err := checkMean(buf, size); err != nil {
		t.Fatal(err)
	}
	if err := checkMean(buf, size+1); err == nil {
		t.Error("the mean over 3 ranks taken for 4: no error")
	}
	for _, i := range []int{0, 4093 * 200} {
		buf[i]++
		if err := checkMean(buf, size); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("element %d ", i)) {
			t.Errorf("element %d wrong: %v", i, err)
		}
		buf[i]--
	}
}

func sh(script string) proc { return proc{argv: []string{"/bin/sh", "-c", script}} }

// runWorkers keeps the result lines (and only those), starts a process only after the one
// before printed its ready line, and returns as soon as one process fails, stopping the rest.
func TestRunWorkers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	first := sh(`echo '{}'; echo noise; echo '{"kind":"ar","rank":1,"sec":0.5}'; sleep 0.3; touch ` + dir + `/a; echo ready; sleep 0.2`)
	first.waitFor = "ready"
	res, cpu, err := runWorkers(ctx, []proc{first, sh(`test -e ` + dir + `/a && echo '{"kind":"nats","rep":2}'`)})
	if err != nil {
		t.Fatal(err)
	}
	want := []Result{{Kind: "ar", Rank: 1, Sec: 0.5}, {Kind: "nats", Rep: 2}}
	if len(res) != 2 || !slices.Contains(res, want[0]) || !slices.Contains(res, want[1]) {
		t.Errorf("results %+v, want %+v", res, want)
	}
	if cpu < 0 {
		t.Errorf("cpu %g", cpu)
	}

	// One fails at once, the other would run 30 s: the error comes at once and the other is gone.
	start := time.Now()
	_, _, err = runWorkers(ctx, []proc{sh(`echo $$ > ` + dir + `/pid; exec sleep 30`), sh(`sleep 0.2; exit 3`)})
	if err == nil || !strings.Contains(err.Error(), "worker 2 of 2") || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("a failing worker: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("returned after %v, want at once", d)
	}
	b, _ := os.ReadFile(dir + "/pid")
	if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); pid <= 0 || syscall.Kill(pid, 0) == nil {
		t.Errorf("the other worker (pid %q) still runs", b)
	}

	// A process that cannot start: the one waiting for its ready line is stopped too.
	waiting := sh(`echo $$ > ` + dir + `/pid2; echo ready; exec sleep 30`)
	waiting.waitFor = "ready"
	if _, _, err := runWorkers(ctx, []proc{waiting, {argv: []string{dir + "/missing"}}}); err == nil || !strings.Contains(err.Error(), "worker 2 of 2") {
		t.Errorf("a missing program: %v", err)
	}
	b, _ = os.ReadFile(dir + "/pid2")
	if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); pid <= 0 || syscall.Kill(pid, 0) == nil {
		t.Errorf("the started worker (pid %q) still runs", b)
	}
}

// The report takes each series' median, the ratio at the last series listed, and says which
// series has no result.
func TestAllreduceReport(t *testing.T) {
	o := AllreduceOptions{Nodes: []int{2, 4}, Sizes: []int{1, 2}, Reps: 3, Chunk: 512 << 10, RawMiB: 4, RawMsgKiB: 1024}
	perRep := func(secs ...float64) map[int]float64 {
		m := map[int]float64{}
		for i, s := range secs {
			m[i] = s
		}
		return m
	}
	m := arMeasured{
		perRep: map[arKey]map[int]float64{
			{2, 1 << 20}: perRep(0.001, 0.002, 0.009),
			{2, 2 << 20}: perRep(0.004, 0.004, 0.004),
			{4, 1 << 20}: perRep(0.002, 0.002, 0.002),
			// 2 MiB over 4 ranks in 4 ms (median): algbw 0.524 GB/s, busbw 1.5x that, 0.786.
			{4, 2 << 20}: perRep(0.003, 0.004, 0.005),
		},
		natsSec: []float64{0.004, 0.1, 0.004, 0.004}, // 4 MiB in 4 ms: 1.049 GB/s
		tcpSec:  []float64{0.002},
		arCPU:   1, arBytes: 2e9, natsCPU: 1, natsBytes: 4e9,
	}
	var b strings.Builder
	if err := allreduceReport(&b, o, m); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"     2     1 MiB     2.00 ms   0.524 GB/s   0.524 GB/s\n",
		"     4     2 MiB     4.00 ms   0.524 GB/s   0.786 GB/s\n",
		"1.049 GB/s (median of 4 reps, before and after)\n",
		"raw TCP over loopback, 4 MiB: 2.097 GB/s\n",
		"all-reduce 0.50 s/GB, raw NATS 0.25 s/GB\n",
		"ratio taken at 4 ranks, 2 MiB\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
	if !strings.HasSuffix(out, "busbw/nats: 0.75\n") {
		t.Errorf("last line not busbw/nats: 0.75:\n%s", out)
	}
	delete(m.perRep, arKey{4, 1 << 20})
	if err := allreduceReport(io.Discard, o, m); err == nil || !strings.Contains(err.Error(), "4 ranks, 1 MiB") {
		t.Errorf("a series without results: %v", err)
	}
}

// rawTCP times every repetition but the warmup ones.
func TestRawTCP(t *testing.T) {
	secs, err := rawTCP(context.Background(), 3<<20, 2, 3)
	if err != nil || len(secs) != 3 {
		t.Fatalf("rawTCP = %v, %v; want 3 times", secs, err)
	}
	for _, s := range secs {
		if !(s > 0) {
			t.Errorf("time %g", s)
		}
	}
}
