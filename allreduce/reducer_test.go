package allreduce

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

const testToken = "s3cret-allreduce-test"

// startNATS runs a token-protected nats-server on a random loopback port.
func startNATS(t testing.TB) string {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, Authorization: testToken, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(s.Shutdown)
	return s.ClientURL()
}

func connect(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.Token(testToken))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func fastConfig() Config {
	c := DefaultLocalConfig()
	c.ChunkBytes = 1 << 10 // many chunks per bucket
	c.TickInterval = 5 * time.Millisecond
	c.HeartbeatTicks = 10
	c.TimeoutTicks = 100 // 0.5 s
	return c
}

func testSubjects(n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = Subject("test", fmt.Sprintf("node%d", i))
	}
	return s
}

// cluster starts n Reducers in generation gen, each on its own connection.
func cluster(t *testing.T, url string, n int, gen uint64, cfg Config) ([]*Reducer, []*nats.Conn) {
	t.Helper()
	var rs []*Reducer
	var ncs []*nats.Conn
	for i := 0; i < n; i++ {
		nc := connect(t, url)
		r, err := New(nc, cfg, View{Generation: gen, Self: i, Size: n}, testSubjects(n))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Close() })
		rs, ncs = append(rs, r), append(ncs, nc)
	}
	return rs, ncs
}

func TestReducerAllReduceOverNATS(t *testing.T) {
	url := startNATS(t)
	for n := 1; n <= 4; n++ {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			rs, _ := cluster(t, url, n, 3, fastConfig())
			rng := rand.New(rand.NewSource(int64(n)))
			for step := uint64(1); step <= 3; step++ {
				in, mean, scale := randomInputs(rng, n, 4)
				if step == 3 {
					in[0][0] = nil
					for i := 0; i < n; i++ { // one big bucket, many chunks
						x := make([]float32, 100_003)
						for e := range x {
							x[e] = float32(rng.NormFloat64())
						}
						in[i][0] = x
					}
					mean[0], scale[0] = make([]float64, len(in[0][0])), make([]float64, len(in[0][0]))
					for i := 0; i < n; i++ {
						for e, v := range in[i][0] {
							mean[0][e] += float64(v) / float64(n)
							scale[0][e] += math.Abs(float64(v)) / float64(n)
						}
					}
				}
				var wg sync.WaitGroup
				errs := make([]error, n)
				for i, r := range rs {
					wg.Add(1)
					go func() {
						defer wg.Done()
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						defer cancel()
						errs[i] = r.AllReduce(ctx, 3, step, in[i])
					}()
				}
				wg.Wait()
				for i, err := range errs {
					if err != nil {
						t.Fatalf("step %d rank %d: %v", step, i, err)
					}
				}
				ranks := make([]int, n)
				for i := range ranks {
					ranks[i] = i
				}
				checkMean(t, in, mean, scale, ranks)
			}
		})
	}
}

// Buckets given one at a time, in reverse layer order, while other ranks are still "computing".
func TestReducerPerBucketOverlap(t *testing.T) {
	url := startNATS(t)
	const n, nb = 3, 5
	rs, _ := cluster(t, url, n, 1, fastConfig())
	rng := rand.New(rand.NewSource(11))
	in, mean, scale := randomInputs(rng, n, nb)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, r := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if errs[i] = r.Begin(1, 7, nb); errs[i] != nil {
				return
			}
			for b := nb - 1; b >= 0; b-- {
				time.Sleep(time.Duration(i*3) * time.Millisecond) // backward of the next layer
				if errs[i] = r.Submit(b, in[i][b]); errs[i] != nil {
					return
				}
			}
			for b := nb - 1; b >= 0; b-- {
				if errs[i] = r.WaitBucket(ctx, b); errs[i] != nil {
					return
				}
			}
			errs[i] = r.Wait(ctx)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", i, err)
		}
	}
	checkMean(t, in, mean, scale, []int{0, 1, 2})
}

// A rank whose process starts late still gets every chunk: nothing is published to it before
// it has answered.
func TestReducerLateJoiner(t *testing.T) {
	url := startNATS(t)
	cfg := fastConfig()
	subs := testSubjects(2)
	r0, err := New(connect(t, url), cfg, View{Generation: 1, Self: 0, Size: 2}, subs)
	if err != nil {
		t.Fatal(err)
	}
	defer r0.Close()
	a, b := []float32{1, 2, 3}, []float32{3, 4, 5}
	done := make(chan error, 1)
	go func() { done <- r0.AllReduce(context.Background(), 1, 1, [][]float32{a}) }()
	time.Sleep(20 * cfg.TickInterval) // within the timeout: rank 1 is slow to start
	r1, err := New(connect(t, url), cfg, View{Generation: 1, Self: 1, Size: 2}, subs)
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	if err := r1.AllReduce(context.Background(), 1, 1, [][]float32{b}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i, want := range []float32{2, 3, 4} {
		if a[i] != want || b[i] != want {
			t.Fatalf("elem %d: %g, %g; want %g", i, a[i], b[i], want)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Frames injected on a rank's subject: duplicates, stale ones and garbage change nothing.
func TestReducerIgnoresInjectedFrames(t *testing.T) {
	url := startNATS(t)
	cfg := fastConfig()
	rs, _ := cluster(t, url, 2, 5, cfg)
	inj := connect(t, url)
	const L = 10
	x := [][]float32{make([]float32, L), make([]float32, L)}
	y := [][]float32{make([]float32, L), make([]float32, L)}
	for e := 0; e < L; e++ {
		x[0][e], x[1][e], y[0][e], y[1][e] = float32(e), float32(2*e), float32(4*e), float32(6*e)
	}
	ctx := context.Background()
	for _, r := range rs {
		if err := r.Begin(5, 2, 2); err != nil {
			t.Fatal(err)
		}
	}
	for i, r := range rs {
		if err := r.Submit(0, [][]float32{x[0], y[0]}[i]); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range rs {
		if err := r.WaitBucket(ctx, 0); err != nil {
			t.Fatal(err)
		}
	}
	before := rs[1].Stats()
	inject := func(m Message) {
		f, err := Marshal(&m)
		if err != nil {
			t.Fatal(err)
		}
		if err := inj.Publish(rs[1].Subject(), f); err != nil {
			t.Fatal(err)
		}
	}
	junk := []float32{1e30, 1e30, 1e30, 1e30, 1e30}
	dup := Message{Type: MsgChunk, From: 0, To: 1, Generation: 5, Step: 2, Bucket: 0, BucketLen: L, Phase: ReduceScatter, Segment: 0, Data: junk}
	inject(dup) // bucket 0 is complete: a duplicate
	old := dup
	old.Generation = 4
	inject(old)
	older := dup
	older.Step = 1
	inject(older)
	if err := inj.Publish(rs[1].Subject(), []byte("not a frame")); err != nil {
		t.Fatal(err)
	}
	_ = inj.Flush()
	waitFor(t, "injected frames to be counted", func() bool {
		s := rs[1].Stats()
		return s.Duplicates > before.Duplicates && s.Stale >= before.Stale+2 && s.Malformed > before.Malformed
	})
	for i, r := range rs {
		if err := r.Submit(1, [][]float32{x[1], y[1]}[i]); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range rs {
		if err := r.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for e := 0; e < L; e++ {
		if x[0][e] != float32(2.5*float64(e)) || y[0][e] != float32(2.5*float64(e)) || x[1][e] != float32(4*e) || y[1][e] != float32(4*e) {
			t.Fatalf("elem %d: %g %g %g %g", e, x[0][e], y[0][e], x[1][e], y[1][e])
		}
	}
}

// A rank whose connection dies mid all-reduce: the others fail within about the timeout.
func TestReducerLostPeerTimesOut(t *testing.T) {
	url := startNATS(t)
	cfg := fastConfig()
	rs, ncs := cluster(t, url, 3, 1, cfg)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	start := time.Now()
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = rs[i].AllReduce(context.Background(), 1, 1, [][]float32{make([]float32, 1000), make([]float32, 1000)})
		}()
	}
	if err := rs[2].Begin(1, 1, 2); err != nil {
		t.Fatal(err)
	}
	if err := rs[2].Submit(0, make([]float32, 1000)); err != nil {
		t.Fatal(err)
	}
	ncs[2].Close() // crash: no abort is sent
	wg.Wait()
	took := time.Since(start)
	for i := 0; i < 2; i++ {
		if !errors.Is(errs[i], ErrTimeout) && !errors.Is(errs[i], ErrPeerAborted) {
			t.Fatalf("rank %d: %v, want ErrTimeout or ErrPeerAborted", i, errs[i])
		}
	}
	if !errors.Is(errs[0], ErrTimeout) && !errors.Is(errs[1], ErrTimeout) {
		t.Fatalf("no rank timed out: %v; %v", errs[0], errs[1])
	}
	if limit := 4 * time.Duration(cfg.TimeoutTicks) * cfg.TickInterval; took > limit {
		t.Fatalf("took %v, want under %v", took, limit)
	}
}

func TestReducerCancelAbortsPeers(t *testing.T) {
	url := startNATS(t)
	rs, _ := cluster(t, url, 2, 1, fastConfig())
	ctx, cancel := context.WithCancel(context.Background())
	if err := rs[1].Begin(1, 1, 1); err != nil {
		t.Fatal(err)
	}
	if err := rs[0].Begin(1, 1, 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := rs[0].Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled wait: %v", err)
	}
	if err := rs[1].Wait(context.Background()); !errors.Is(err, ErrPeerAborted) {
		t.Fatalf("peer of a canceled rank: %v, want ErrPeerAborted", err)
	}
	// Next step works again.
	nextStepWorks(t, rs)
}

// TestReducerAbortStopsPeers: a rank that gives up a step after submitting part of it (a
// device fault) fails its own wait with the reason and its peer's promptly, over real NATS;
// the next step works.
func TestReducerAbortStopsPeers(t *testing.T) {
	url := startNATS(t)
	rs, _ := cluster(t, url, 2, 1, fastConfig())
	for _, r := range rs {
		if err := r.Begin(1, 1, 2); err != nil {
			t.Fatal(err)
		}
	}
	if err := rs[0].Submit(0, []float32{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	fault := errors.New("device fault")
	rs[0].Abort(fault)
	if err := rs[0].Wait(context.Background()); !errors.Is(err, fault) {
		t.Fatalf("the aborting rank's wait: %v, want its reason", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := rs[1].Wait(ctx); !errors.Is(err, ErrPeerAborted) {
		t.Fatalf("the peer's wait: %v, want ErrPeerAborted well before its timeout", err)
	}
	nextStepWorks(t, rs)
}

// nextStepWorks runs step 2 of generation 1 on every reducer at once and fails on any error.
func nextStepWorks(t *testing.T, rs []*Reducer) {
	t.Helper()
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.AllReduce(context.Background(), 1, 2, [][]float32{{1}}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}

func TestReducerBadArguments(t *testing.T) {
	url := startNATS(t)
	nc := connect(t, url)
	if _, err := New(nc, fastConfig(), View{Generation: 1, Self: 2, Size: 2}, testSubjects(2)); !errors.Is(err, ErrBadArgument) {
		t.Errorf("rank out of range: %v", err)
	}
	if _, err := New(nc, fastConfig(), View{Generation: 1, Self: 0, Size: 2}, []string{"a.*", "b"}); !errors.Is(err, ErrBadArgument) {
		t.Errorf("wildcard subject: %v", err)
	}
	cfg := fastConfig()
	cfg.ChunkBytes = MaxChunkBytes
	if _, err := New(nc, cfg, View{Generation: 1, Self: 0, Size: 2}, testSubjects(2)); !errors.Is(err, ErrBadConfig) {
		t.Errorf("chunk over max_payload: %v", err)
	}
	r, err := New(nc, fastConfig(), View{Generation: 1, Self: 0, Size: 2}, testSubjects(2))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Begin(2, 1, 1); !errors.Is(err, ErrViewChanged) {
		t.Errorf("wrong generation: %v", err)
	}
}

// BenchmarkReducerAllReduce runs 4 ranks in this process over a local nats-server; the
// separate-process figure is `wkd bench-allreduce`.
func BenchmarkReducerAllReduce(b *testing.B) {
	url := startNATS(b)
	const n, size = 4, 16 << 20
	cfg := DefaultConfig()
	var rs []*Reducer
	for i := 0; i < n; i++ {
		r, err := New(connect(b, url), cfg, View{Generation: 1, Self: i, Size: n}, testSubjects(n))
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close()
		rs = append(rs, r)
	}
	bufs := make([][]float32, n)
	for i := range bufs {
		bufs[i] = make([]float32, size/4)
	}
	b.SetBytes(size)
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		var wg sync.WaitGroup
		for i, r := range rs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := r.AllReduce(context.Background(), 1, uint64(it+1), [][]float32{bufs[i]}); err != nil {
					b.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	b.ReportMetric(float64(size)*float64(b.N)/b.Elapsed().Seconds()*2*(n-1)/n/1e9, "busGB/s")
}

// SetView onto a new subject waits for the server's acknowledgement of the subscription; it
// must not hold the reducer while it does, or ticks, frames and every other call stall for as
// long as NATS does not answer (up to the 5 s flush timeout). The client talks to the server
// through a proxy that stops forwarding on demand.
func TestSetViewDoesNotStallTheReducer(t *testing.T) {
	url := startNATS(t)
	p := newPauseProxy(t, strings.TrimPrefix(url, "nats://"))
	nc, err := nats.Connect("nats://"+p.addr, nats.Token(testToken))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	r, err := New(nc, fastConfig(), View{Generation: 1, Self: 0, Size: 2}, testSubjects(2))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p.pause()
	set := make(chan error, 1)
	go func() { set <- r.SetView(View{Generation: 2, Self: 1, Size: 2}, testSubjects(2)) }()
	// SetView waits in its flush once its SUB (and the PING after it) reached the proxy.
	for deadline := time.Now().Add(5 * time.Second); p.droppedBytes() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("SetView sent nothing to the server in 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	got := make(chan ReducerStats, 1)
	go func() { got <- r.Stats() }()
	select {
	case <-got:
	case err := <-set:
		t.Fatalf("SetView returned (%v) while the server could not answer", err)
	case <-time.After(2 * time.Second):
		t.Fatal("Stats blocked for 2 s while SetView waited on the server: SetView holds the reducer's lock across I/O")
	}
	if err := <-set; err == nil {
		t.Error("SetView succeeded though the server never acknowledged the subscription")
	}
}

// pauseProxy forwards TCP connections to a server until paused.
type pauseProxy struct {
	addr    string
	mu      sync.Mutex
	paused  bool
	dropped int // bytes not forwarded while paused
}

func (p *pauseProxy) droppedBytes() int { p.mu.Lock(); defer p.mu.Unlock(); return p.dropped }

func newPauseProxy(t *testing.T, target string) *pauseProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	p := &pauseProxy{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			t.Cleanup(func() { c.Close(); s.Close() })
			go p.copy(s, c)
			go p.copy(c, s)
		}
	}()
	return p
}

func (p *pauseProxy) pause() { p.mu.Lock(); p.paused = true; p.mu.Unlock() }

func (p *pauseProxy) copy(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		p.mu.Lock()
		paused := p.paused
		if paused {
			p.dropped += n
		}
		p.mu.Unlock()
		if paused {
			continue // dropped: the peer waits for an answer that never comes
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}
