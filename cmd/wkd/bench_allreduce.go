package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/spf13/pflag"

	"wkd/allreduce"
)

func init() {
	register(command{name: "bench-allreduce", summary: "measure the ring all-reduce over NATS against raw NATS and TCP", group: groupBench,
		long: "Starts a nats-server on loopback, runs the all-reduce in separate processes for each\n" +
			"world size and buffer size, and compares its bus bandwidth with raw NATS pub-sub.",
		flags: benchAllreduceFlags})
}

// arBenchOpts are the flags of bench-allreduce; the worker ones are hidden from help.
type arBenchOpts struct {
	nodes, sizes       []int // ranks per run; buffer sizes in MiB
	reps, warmup       int
	chunk              int // all-reduce chunk payload, bytes
	rawMiB, rawMsgKiB  int
	timeout            time.Duration
	worker, url, token string
	rank, size         int
}

const arBenchMaxPayload = 8 << 20 // lets raw NATS send 1 MiB messages and chunks up to the limit

func benchAllreduceFlags(fs *pflag.FlagSet, _ []string) func([]string) error {
	var o arBenchOpts
	nodes := fs.String("nodes", "2,3,4", "comma-separated world sizes; each rank is a separate process")
	sizes := fs.String("sizes", "1,16,64", "comma-separated buffer sizes in MiB")
	fs.IntVar(&o.reps, "reps", 5, "timed repetitions per (nodes, size); the median is reported")
	fs.IntVar(&o.warmup, "warmup", 1, "untimed repetitions before the timed ones")
	fs.IntVar(&o.chunk, "chunk", allreduce.DefaultChunkBytes, "all-reduce chunk payload in bytes (multiple of 4, at most 1 MiB)")
	fs.IntVar(&o.rawMiB, "raw-mib", 64, "MiB sent per repetition by the raw NATS and TCP peers")
	fs.IntVar(&o.rawMsgKiB, "raw-msg-kib", 1024, "raw NATS message size in KiB (at most 1024)")
	fs.DurationVar(&o.timeout, "timeout", 3*time.Minute, "give up after this long")
	fs.StringVar(&o.worker, "worker", "", "internal: run as a worker process (ar, pub, sub)")
	fs.StringVar(&o.url, "worker-url", "", "internal: NATS URL")
	fs.StringVar(&o.token, "worker-token", "", "internal: NATS token")
	fs.IntVar(&o.rank, "worker-rank", 0, "internal: rank")
	fs.IntVar(&o.size, "worker-size", 0, "internal: world size")
	for _, n := range []string{"worker", "worker-url", "worker-token", "worker-rank", "worker-size"} {
		fs.Lookup(n).Hidden = true
	}
	return func(args []string) error {
		var err error
		if o.nodes, err = arParseInts(*nodes, 1, 64); err != nil {
			return fmt.Errorf("--nodes: %w", err)
		}
		if o.sizes, err = arParseInts(*sizes, 1, 4096); err != nil {
			return fmt.Errorf("--sizes: %w", err)
		}
		switch {
		case o.reps < 1:
			return fmt.Errorf("--reps %d: need at least 1", o.reps)
		case o.warmup < 0:
			return fmt.Errorf("--warmup %d: must not be negative", o.warmup)
		case o.chunk < 4 || o.chunk%4 != 0 || o.chunk > allreduce.MaxChunkBytes:
			return fmt.Errorf("--chunk %d: a multiple of 4 in [4, %d]", o.chunk, allreduce.MaxChunkBytes)
		case o.rawMiB < 1:
			return fmt.Errorf("--raw-mib %d: need at least 1", o.rawMiB)
		case o.rawMsgKiB < 1 || o.rawMsgKiB > 1024:
			return fmt.Errorf("--raw-msg-kib %d: must be in [1, 1024]", o.rawMsgKiB)
		}
		switch o.worker {
		case "":
			return arBenchMain(o)
		case "ar":
			return arWorkerAllreduce(o)
		case "pub":
			return arWorkerPub(o)
		case "sub":
			return arWorkerSub(o)
		}
		return fmt.Errorf("--worker %q: want ar, pub or sub", o.worker)
	}
}

func arParseInts(s string, lo, hi int) ([]int, error) {
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

// arBenchResult is one timed repetition of one worker, printed as a JSON line.
type arBenchResult struct {
	Kind  string  `json:"kind"` // "ar" or "nats"
	Nodes int     `json:"nodes"`
	Bytes int     `json:"bytes"`
	Rep   int     `json:"rep"`
	Rank  int     `json:"rank"`
	Sec   float64 `json:"sec"`
}

func arBenchMain(o arBenchOpts) error {
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return err
	}
	o.token = hex.EncodeToString(tok)
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, Authorization: o.token, NoLog: true, NoSigs: true,
		MaxPayload: arBenchMaxPayload, MaxPending: 1 << 30})
	if err != nil {
		return fmt.Errorf("nats-server: %w", err)
	}
	go srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(10 * time.Second) {
		return errors.New("nats-server did not start within 10 s")
	}
	o.url = srv.ClientURL()
	self, err := os.Executable()
	if err != nil {
		return err
	}

	// Raw NATS is measured before and after the all-reduce runs and the median taken over both,
	// so a load change on a shared machine shifts both sides of the ratio alike.
	var natsSec []float64
	var natsCPU, natsBytes, arCPU, arBytes float64 // CPU seconds, and bytes published, of each
	rawNATS := func() error {
		fmt.Fprintf(os.Stderr, "raw NATS pub-sub...\n")
		sub := arWorkerArgs(o, "sub", 1, 2)
		pub := arWorkerArgs(o, "pub", 0, 2)
		res, cpu, err := arRunWorkers(ctx, self, [][]string{sub, pub}, []string{"ready", ""})
		natsCPU += cpu
		natsBytes += float64((o.warmup + o.reps) * (o.rawMiB << 20))
		if err != nil {
			return fmt.Errorf("raw NATS: %w", err)
		}
		if len(res) == 0 {
			return errors.New("raw NATS: no result from the publisher")
		}
		for _, x := range res {
			natsSec = append(natsSec, x.Sec)
		}
		return nil
	}
	if err := rawNATS(); err != nil {
		return err
	}

	type key struct{ nodes, bytes int }
	perRep := map[key]map[int]float64{} // max over ranks of each repetition
	for _, n := range o.nodes {
		fmt.Fprintf(os.Stderr, "all-reduce: %d ranks...\n", n)
		var args [][]string
		for r := 0; r < n; r++ {
			args = append(args, arWorkerArgs(o, "ar", r, n))
		}
		res, cpu, err := arRunWorkers(ctx, self, args, nil)
		arCPU += cpu
		for _, s := range o.sizes {
			arBytes += float64((o.warmup+o.reps)*2*(n-1)) * float64(s<<20)
		}
		if err != nil {
			return fmt.Errorf("all-reduce with %d ranks: %w", n, err)
		}
		for _, x := range res {
			k := key{x.Nodes, x.Bytes}
			if perRep[k] == nil {
				perRep[k] = map[int]float64{}
			}
			perRep[k][x.Rep] = max(perRep[k][x.Rep], x.Sec)
		}
	}
	if err := rawNATS(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "raw TCP...\n")
	tcpSec, err := arRawTCP(ctx, o)
	if err != nil {
		return fmt.Errorf("raw TCP: %w", err)
	}

	raw := float64(o.rawMiB << 20)
	natsBW, tcpBW := raw/arMedian(natsSec), raw/arMedian(tcpSec)
	fmt.Printf("ring all-reduce over NATS: embedded nats-server on 127.0.0.1, one process per rank, chunk %d KiB, median of %d reps\n", o.chunk>>10, o.reps)
	fmt.Printf("%6s %9s %11s %12s %12s\n", "nodes", "size", "time", "algbw", "busbw")
	var ratioBus float64
	ratioAt := ""
	for _, n := range o.nodes {
		for _, s := range o.sizes {
			reps := perRep[key{n, s << 20}]
			var secs []float64
			for _, v := range reps {
				secs = append(secs, v)
			}
			if len(secs) == 0 {
				return fmt.Errorf("no result for %d ranks, %d MiB", n, s)
			}
			t := arMedian(secs)
			alg := float64(s<<20) / t
			bus := alg * 2 * float64(n-1) / float64(n)
			fmt.Printf("%6d %5d MiB %8.2f ms %7.3f GB/s %7.3f GB/s\n", n, s, t*1e3, alg/1e9, bus/1e9)
			if n == o.nodes[len(o.nodes)-1] && s == o.sizes[len(o.sizes)-1] {
				ratioBus, ratioAt = bus, fmt.Sprintf("%d ranks, %d MiB", n, s)
			}
		}
	}
	fmt.Printf("raw NATS pub-sub, 1 publisher, 1 subscriber, %d MiB in %d KiB messages: %.3f GB/s (median of %d reps, before and after)\n",
		o.rawMiB, o.rawMsgKiB, natsBW/1e9, len(natsSec))
	fmt.Printf("raw TCP over loopback, %d MiB: %.3f GB/s\n", o.rawMiB, tcpBW/1e9)
	// CPU per byte published does not depend on how busy the machine is: the all-reduce
	// publishes 2(n-1) times the buffer per all-reduce, raw NATS the buffer once.
	fmt.Printf("CPU per GB published (workers and server): all-reduce %.2f s/GB, raw NATS %.2f s/GB\n",
		arCPU/(arBytes/1e9), natsCPU/(natsBytes/1e9))
	fmt.Printf("ratio taken at %s\n", ratioAt)
	fmt.Printf("busbw/nats: %.2f\n", ratioBus/natsBW)
	return nil
}

func arWorkerArgs(o arBenchOpts, kind string, rank, size int) []string {
	return []string{"bench-allreduce", "--worker", kind, "--worker-url", o.url, "--worker-token", o.token,
		"--worker-rank", strconv.Itoa(rank), "--worker-size", strconv.Itoa(size),
		"--sizes", arJoinInts(o.sizes), "--reps", strconv.Itoa(o.reps), "--warmup", strconv.Itoa(o.warmup),
		"--chunk", strconv.Itoa(o.chunk), "--raw-mib", strconv.Itoa(o.rawMiB), "--raw-msg-kib", strconv.Itoa(o.rawMsgKiB)}
}

func arJoinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

// arRunWorkers starts one process per args, in order; where waitFor[i] is set, the next one
// starts only after process i printed that line. It returns every JSON result line.
func arRunWorkers(ctx context.Context, self string, args [][]string, waitFor []string) ([]arBenchResult, float64, error) {
	var (
		mu      sync.Mutex
		results []arBenchResult
		wg      sync.WaitGroup
		cmds    []*exec.Cmd
		cpu     float64 // CPU seconds of the workers and of this process (the server)
	)
	cpu -= arSelfCPU()
	errs := make([]error, len(args))
	defer func() {
		for _, c := range cmds {
			_ = c.Process.Kill() // on early return; harmless after exit
		}
	}()
	for i, a := range args {
		cmd := exec.CommandContext(ctx, self, a...)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, 0, err
		}
		if err := cmd.Start(); err != nil {
			return nil, 0, err
		}
		cmds = append(cmds, cmd)
		ready := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(out)
			signalled := false
			for sc.Scan() {
				line := sc.Text()
				if waitFor != nil && waitFor[i] != "" && line == waitFor[i] && !signalled {
					signalled = true
					close(ready)
					continue
				}
				var r arBenchResult
				if json.Unmarshal([]byte(line), &r) == nil && r.Kind != "" {
					mu.Lock()
					results = append(results, r)
					mu.Unlock()
				}
			}
			if !signalled {
				close(ready)
			}
			if err := cmd.Wait(); err != nil {
				errs[i] = fmt.Errorf("worker %s: %w", strings.Join(a[:3], " "), err)
			}
			mu.Lock()
			cpu += (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
			mu.Unlock()
		}()
		if waitFor != nil && waitFor[i] != "" {
			select {
			case <-ready:
			case <-ctx.Done():
				return nil, 0, ctx.Err()
			}
		}
	}
	wg.Wait()
	cmds = nil
	return results, cpu + arSelfCPU(), errors.Join(errs...)
}

// arSelfCPU is the CPU time of this process so far, in seconds.
func arSelfCPU() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func arConnect(o arBenchOpts, name string) (*nats.Conn, error) {
	return nats.Connect(o.url, nats.Token(o.token), nats.Name(name), nats.NoReconnect())
}

func arEmit(r arBenchResult) {
	b, _ := json.Marshal(r)
	fmt.Println(string(b))
}

// arWorkerAllreduce is one rank: a barrier (a one-element all-reduce) before each timed
// repetition, so every rank starts together, then the all-reduce of one buffer.
func arWorkerAllreduce(o arBenchOpts) error {
	nc, err := arConnect(o, fmt.Sprintf("bench-ar-%d", o.rank))
	if err != nil {
		return err
	}
	defer nc.Close()
	cfg := allreduce.DefaultConfig()
	cfg.ChunkBytes = o.chunk
	cfg.TimeoutTicks = 1000 // 10 s: two cores are shared by every rank and the server
	subjects := make([]string, o.size)
	for i := range subjects {
		subjects[i] = allreduce.Subject(fmt.Sprintf("bench.n%d", o.size), strconv.Itoa(i))
	}
	red, err := allreduce.New(nc, cfg, allreduce.View{Generation: 1, Self: o.rank, Size: o.size}, subjects)
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
	for _, mib := range o.sizes {
		buf := make([]float32, (mib<<20)/4)
		for i := range buf {
			buf[i] = float32(o.rank + i%7)
		}
		for rep := -o.warmup; rep < o.reps; rep++ {
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
			if rep == -o.warmup {
				// After one all-reduce every element is the mean of rank + i%7 over ranks.
				want := float32(o.size-1)/2 + float32(3%7)
				if buf[3] != want {
					return fmt.Errorf("%d MiB: element 3 is %g, want %g", mib, buf[3], want)
				}
			}
			if rep >= 0 {
				arEmit(arBenchResult{Kind: "ar", Nodes: o.size, Bytes: mib << 20, Rep: rep, Rank: o.rank, Sec: sec})
			}
		}
	}
	return nil
}

const arRawSubject, arRawAck = "bench.raw", "bench.raw.ack"

func arWorkerSub(o arBenchOpts) error {
	nc, err := arConnect(o, "bench-sub")
	if err != nil {
		return err
	}
	defer nc.Close()
	want := o.rawMiB << 20
	got := 0
	sub, err := nc.Subscribe(arRawSubject, func(m *nats.Msg) {
		got += len(m.Data)
		if got >= want {
			got = 0
			_ = nc.Publish(arRawAck, nil)
		}
	})
	if err != nil {
		return err
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return err
	}
	done, err := nc.SubscribeSync(arRawAck + ".done")
	if err != nil {
		return err
	}
	if err := nc.Flush(); err != nil {
		return err
	}
	fmt.Println("ready")
	_, err = done.NextMsg(2 * time.Minute)
	return err
}

func arWorkerPub(o arBenchOpts) error {
	nc, err := arConnect(o, "bench-pub")
	if err != nil {
		return err
	}
	defer nc.Close()
	acks, err := nc.SubscribeSync(arRawAck)
	if err != nil {
		return err
	}
	msg := make([]byte, o.rawMsgKiB<<10)
	total := o.rawMiB << 20
	for rep := -o.warmup; rep < o.reps; rep++ {
		t0 := time.Now()
		for sent := 0; sent < total; sent += len(msg) {
			if err := nc.Publish(arRawSubject, msg[:min(len(msg), total-sent)]); err != nil {
				return err
			}
		}
		if _, err := acks.NextMsg(time.Minute); err != nil {
			return fmt.Errorf("waiting for the subscriber: %w", err)
		}
		if rep >= 0 {
			arEmit(arBenchResult{Kind: "nats", Nodes: 2, Bytes: total, Rep: rep, Sec: time.Since(t0).Seconds()})
		}
	}
	return nc.Publish(arRawAck+".done", nil)
}

// arRawTCP times sending rawMiB over one loopback TCP connection, writer and reader in this
// process, in 1 MiB writes, until the reader acknowledges.
func arRawTCP(ctx context.Context, o arBenchOpts) ([]float64, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	total := o.rawMiB << 20
	rounds := o.warmup + o.reps
	errc := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		buf := make([]byte, 1<<20)
		for r := 0; r < rounds; r++ {
			for got := 0; got < total; {
				n, err := c.Read(buf[:min(len(buf), total-got)])
				if err != nil {
					errc <- err
					return
				}
				got += n
			}
			if _, err := c.Write([]byte{1}); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	msg, ack := make([]byte, 1<<20), make([]byte, 1)
	var secs []float64
	for r := 0; r < rounds; r++ {
		t0 := time.Now()
		for sent := 0; sent < total; sent += len(msg) {
			if _, err := c.Write(msg[:min(len(msg), total-sent)]); err != nil {
				return nil, err
			}
		}
		if _, err := io.ReadFull(c, ack); err != nil {
			return nil, err
		}
		if r >= o.warmup {
			secs = append(secs, time.Since(t0).Seconds())
		}
	}
	return secs, <-errc
}

func arMedian(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
