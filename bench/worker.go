package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"wkd/allreduce"
	"wkd/node"
)

// WorkerEnv names the environment variable that makes a process a benchmark's worker: it holds
// the worker's part as JSON (a Worker), and the NATS token comes in node.NATSTokenEnv, so
// neither shows on a command line. A command that a benchmark starts as its worker checks
// IsWorker first and runs RunWorker.
const WorkerEnv = "WKD_BENCH_WORKER"

// Worker is one worker process's part in a benchmark.
type Worker struct {
	Kind   string `json:"kind"` // "ar": one rank of the all-reduce; "pub", "sub": raw NATS
	URL    string `json:"url"`
	Rank   int    `json:"rank"`
	Size   int    `json:"size"`   // world size
	SizesM []int  `json:"sizes"`  // buffers in MiB, one timed series each
	Reps   int    `json:"reps"`   // timed repetitions
	Warmup int    `json:"warmup"` // untimed repetitions before them
	Chunk  int    `json:"chunk"`  // all-reduce chunk payload, bytes
	// Raw NATS: bytes per repetition and per message.
	RawBytes int `json:"raw_bytes,omitempty"`
	MsgBytes int `json:"msg_bytes,omitempty"`
}

// IsWorker reports whether this process was started as a benchmark's worker.
func IsWorker() bool { return os.Getenv(WorkerEnv) != "" }

// RunWorker runs the worker part in WorkerEnv and writes its results to w, one JSON Result per
// line.
func RunWorker(w io.Writer) error {
	var wk Worker
	if err := json.Unmarshal([]byte(os.Getenv(WorkerEnv)), &wk); err != nil {
		return fmt.Errorf("%s: %w", WorkerEnv, err)
	}
	tok := os.Getenv(node.NATSTokenEnv)
	if tok == "" {
		return fmt.Errorf("a benchmark worker needs the NATS token in %s", node.NATSTokenEnv)
	}
	nc, err := nats.Connect(wk.URL, nats.Token(tok), nats.Name(fmt.Sprintf("bench-%s-%d", wk.Kind, wk.Rank)), nats.NoReconnect())
	if err != nil {
		return err
	}
	defer nc.Close()
	switch wk.Kind {
	case "ar":
		return wk.allreduce(nc, w)
	case "pub":
		return wk.pub(nc, w)
	case "sub":
		return wk.sub(nc, w)
	}
	return fmt.Errorf("%s: worker kind %q, want ar, pub or sub", WorkerEnv, wk.Kind)
}

// env is the environment of a process running wk with token.
func (wk Worker) env(token string) ([]string, error) {
	b, err := json.Marshal(wk)
	if err != nil {
		return nil, err
	}
	return append(os.Environ(), WorkerEnv+"="+string(b), node.NATSTokenEnv+"="+token), nil
}

// Result is one timed repetition of one worker.
type Result struct {
	Kind  string  `json:"kind"` // "ar" or "nats"
	Nodes int     `json:"nodes"`
	Bytes int     `json:"bytes"`
	Rep   int     `json:"rep"`
	Rank  int     `json:"rank"`
	Sec   float64 `json:"sec"`
}

func emit(w io.Writer, r Result) {
	b, _ := json.Marshal(r)
	fmt.Fprintln(w, string(b))
}

// allreduce is one rank: a barrier (a one-element all-reduce) before each timed repetition,
// so every rank starts together, then the all-reduce of one buffer.
func (wk Worker) allreduce(nc *nats.Conn, w io.Writer) error {
	cfg := allreduce.DefaultConfig()
	cfg.ChunkBytes = wk.Chunk
	cfg.TimeoutTicks = 1000 // 10 s: two cores are shared by every rank and the server
	subjects := make([]string, wk.Size)
	for i := range subjects {
		subjects[i] = allreduce.Subject(fmt.Sprintf("bench.n%d", wk.Size), strconv.Itoa(i))
	}
	red, err := allreduce.New(nc, cfg, allreduce.View{Generation: 1, Self: wk.Rank, Size: wk.Size}, subjects)
	if err != nil {
		return err
	}
	defer red.Close()
	ctx := context.Background()
	if err := red.WaitPeers(ctx); err != nil {
		return err
	}
	step := uint64(0)
	barrier := []float32{1}
	for _, mib := range wk.SizesM {
		buf := make([]float32, (mib<<20)/4)
		for i := range buf {
			buf[i] = float32(wk.Rank + i%7)
		}
		for rep := -wk.Warmup; rep < wk.Reps; rep++ {
			step++
			if err := red.AllReduce(ctx, 1, step, [][]float32{barrier}); err != nil {
				return fmt.Errorf("barrier: %w", err)
			}
			step++
			t0 := time.Now()
			if err := red.AllReduce(ctx, 1, step, [][]float32{buf}); err != nil {
				return fmt.Errorf("%d MiB: %w", mib, err)
			}
			sec := time.Since(t0).Seconds()
			if rep == -wk.Warmup {
				if err := checkMean(buf, wk.Size); err != nil {
					return fmt.Errorf("%d MiB: %w", mib, err)
				}
			}
			if rep >= 0 {
				emit(w, Result{Kind: "ar", Nodes: wk.Size, Bytes: mib << 20, Rep: rep, Rank: wk.Rank, Sec: sec})
			}
		}
	}
	return nil
}

// checkMean checks a buffer after its first all-reduce over size ranks, rank r having given
// element i the value r + i%7: every element is then the mean, (size-1)/2 + i%7. Elements at
// every 4093rd place are checked, which reaches every chunk and segment of the buffer.
func checkMean(buf []float32, size int) error {
	for i := 0; i < len(buf); i += 4093 {
		if want := float32(size-1)/2 + float32(i%7); buf[i] != want {
			return fmt.Errorf("element %d is %g after the all-reduce, want the mean %g", i, buf[i], want)
		}
	}
	return nil
}

const rawSubject, rawAck = "bench.raw", "bench.raw.ack"

// sub receives the publisher's repetitions and acknowledges each once it has all its bytes.
// It prints "ready" once subscribed.
func (wk Worker) sub(nc *nats.Conn, w io.Writer) error {
	got := 0
	sub, err := nc.Subscribe(rawSubject, func(m *nats.Msg) {
		got += len(m.Data)
		if got >= wk.RawBytes {
			got = 0
			_ = nc.Publish(rawAck, nil)
		}
	})
	if err != nil {
		return err
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return err
	}
	done, err := nc.SubscribeSync(rawAck + ".done")
	if err != nil {
		return err
	}
	if err := nc.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "ready")
	_, err = done.NextMsg(2 * time.Minute)
	return err
}

// pub publishes RawBytes per repetition in MsgBytes messages and times each until the
// subscriber acknowledges.
func (wk Worker) pub(nc *nats.Conn, w io.Writer) error {
	acks, err := nc.SubscribeSync(rawAck)
	if err != nil {
		return err
	}
	msg := make([]byte, wk.MsgBytes)
	for rep := -wk.Warmup; rep < wk.Reps; rep++ {
		t0 := time.Now()
		for sent := 0; sent < wk.RawBytes; sent += len(msg) {
			if err := nc.Publish(rawSubject, msg[:min(len(msg), wk.RawBytes-sent)]); err != nil {
				return err
			}
		}
		if _, err := acks.NextMsg(time.Minute); err != nil {
			return fmt.Errorf("waiting for the subscriber: %w", err)
		}
		if rep >= 0 {
			emit(w, Result{Kind: "nats", Nodes: 2, Bytes: wk.RawBytes, Rep: rep, Sec: time.Since(t0).Seconds()})
		}
	}
	return nc.Publish(rawAck+".done", nil)
}

// proc is one worker process to start: its command line and environment, and the line it
// prints once the next may start ("" to start the next at once).
type proc struct {
	argv    []string
	env     []string
	waitFor string
}

// runWorkers starts the processes in order and returns every Result line they print, and the
// CPU seconds they and this process used meanwhile (this process may host a server). The first
// process to fail stops the others (a rank waits for its peers without end) and its error is
// the one returned.
func runWorkers(ctx context.Context, procs []proc) ([]Result, float64, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		mu      sync.Mutex
		results []Result
		wg      sync.WaitGroup
		cpu     = -selfCPU()
	)
	defer wg.Wait()
	for i, p := range procs {
		cmd := exec.CommandContext(ctx, p.argv[0], p.argv[1:]...)
		cmd.Env = p.env
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			cancel(err)
			return nil, 0, err
		}
		if err := cmd.Start(); err != nil {
			err = fmt.Errorf("worker %d of %d: %w", i+1, len(procs), err)
			cancel(err)
			return nil, 0, err
		}
		ready := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(out)
			signalled := false
			for sc.Scan() {
				line := sc.Text()
				if p.waitFor != "" && line == p.waitFor && !signalled {
					signalled = true
					close(ready)
					continue
				}
				var r Result
				if json.Unmarshal([]byte(line), &r) == nil && r.Kind != "" {
					mu.Lock()
					results = append(results, r)
					mu.Unlock()
				}
			}
			if !signalled {
				close(ready)
			}
			err := cmd.Wait()
			if err != nil && ctx.Err() == nil {
				cancel(fmt.Errorf("worker %d of %d: %w", i+1, len(procs), err)) // the first cause stays
			}
			mu.Lock()
			cpu += (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
			mu.Unlock()
		}()
		if p.waitFor != "" {
			select {
			case <-ready:
			case <-ctx.Done():
				return nil, 0, context.Cause(ctx)
			}
		}
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil, 0, context.Cause(ctx)
	}
	return results, cpu + selfCPU(), nil
}

// selfCPU is the CPU time of this process so far, in seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// Median is the median of v (the mean of the middle two for an even count, NaN for none); v
// is not changed.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
