package bench

import (
	"bytes"
	"context"
	"math"
	"os"
	"strconv"
	"strings"
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
