package allreduce

import (
	"errors"
	"fmt"
	"math"
	"math/rand"
	"testing"
)

// memNet carries frames between Rings with seeded loss, duplication, reordering and delay.
// Time is the tick count; nothing sleeps.
type memNet struct {
	t        *testing.T
	rng      *rand.Rand
	now      int
	rings    []*Ring
	inflight []inflight
	dropP    float64 // chance a frame is lost
	dupP     float64 // chance a frame arrives twice
	maxDelay int     // ticks a frame may wait; frames overtake each other
	dead     []bool  // crashed: not ticked, receives nothing, sends nothing
	isolated []bool  // alive but every frame to or from it is lost
	deaf     []int   // frames to or from the rank before this tick are lost (not started yet)
	log      [][]byte
}

type inflight struct {
	at    int
	to    int
	frame []byte
}

func newMemNet(t *testing.T, seed int64, n int, cfg Config) *memNet {
	t.Helper()
	nt := &memNet{t: t, rng: rand.New(rand.NewSource(seed)), dead: make([]bool, n), isolated: make([]bool, n), deaf: make([]int, n)}
	for i := 0; i < n; i++ {
		r, err := NewRing(cfg, View{Generation: 7, Self: i, Size: n})
		if err != nil {
			t.Fatal(err)
		}
		nt.rings = append(nt.rings, r)
	}
	return nt
}

// collect takes the Ready of rank i onto the wire; marshalling copies the data, as NATS would.
func (nt *memNet) collect(i int) {
	for _, m := range nt.rings[i].Ready().Messages {
		if nt.dead[i] || nt.isolated[i] || nt.isolated[m.To] || nt.now < nt.deaf[i] {
			continue
		}
		f, err := Marshal(&m)
		if err != nil {
			nt.t.Fatalf("rank %d: marshal %v: %v", i, m, err)
		}
		nt.log = append(nt.log, f)
		if nt.rng.Float64() < nt.dropP {
			continue
		}
		nt.inflight = append(nt.inflight, inflight{at: nt.now + nt.rng.Intn(nt.maxDelay+1), to: m.To, frame: f})
		if nt.rng.Float64() < nt.dupP {
			nt.inflight = append(nt.inflight, inflight{at: nt.now + nt.rng.Intn(nt.maxDelay+1), to: m.To, frame: f})
		}
	}
}

// deliver hands over every frame due now, in random order, including those sent meanwhile
// with no delay.
func (nt *memNet) deliver() {
	for {
		var due []int
		for k, f := range nt.inflight {
			if f.at <= nt.now {
				due = append(due, k)
			}
		}
		if len(due) == 0 {
			return
		}
		k := due[nt.rng.Intn(len(due))]
		f := nt.inflight[k]
		nt.inflight = append(nt.inflight[:k], nt.inflight[k+1:]...)
		if nt.dead[f.to] || nt.isolated[f.to] || nt.now < nt.deaf[f.to] {
			continue
		}
		m, err := Unmarshal(f.frame)
		if err != nil {
			nt.t.Fatalf("unmarshal: %v", err)
		}
		_ = nt.rings[f.to].Step(m)
		nt.collect(f.to)
	}
}

func (nt *memNet) tick() {
	for i, r := range nt.rings {
		if !nt.dead[i] {
			r.Tick()
			nt.collect(i)
		}
	}
	nt.now++
}

// job is one rank's part of one all-reduce: its buckets and when each is submitted.
type job struct {
	step     uint64
	beginAt  int
	buckets  [][]float32
	submitAt []int
	next     int // buckets are submitted in order, as backward produces them
	begun    bool
}

func (nt *memNet) drive(i int, j *job) {
	r := nt.rings[i]
	if nt.dead[i] {
		return
	}
	if !j.begun && nt.now >= j.beginAt {
		if err := r.Begin(j.step, len(j.buckets)); err != nil {
			nt.t.Fatalf("rank %d begin: %v", i, err)
		}
		j.begun = true
		nt.collect(i)
	}
	for j.begun && r.Active() && j.next < len(j.buckets) && nt.now >= j.submitAt[j.next] {
		if err := r.Submit(j.next, j.buckets[j.next]); err != nil {
			nt.t.Fatalf("rank %d submit %d: %v", i, j.next, err)
		}
		j.next++
		nt.collect(i)
	}
}

func (nt *memNet) finished(i int, j *job) bool {
	return nt.dead[i] || (j.begun && !nt.rings[i].Active())
}

// run drives one job per rank until every live rank has finished, and returns the ticks spent.
func (nt *memNet) run(jobs []*job, maxTicks int) int {
	start := nt.now
	for {
		for i, j := range jobs {
			nt.drive(i, j)
		}
		nt.deliver()
		all := true
		for i, j := range jobs {
			all = all && nt.finished(i, j)
		}
		if all {
			return nt.now - start
		}
		if nt.now-start > maxTicks {
			nt.t.Fatalf("ranks still running after %d ticks: a hang", maxTicks)
		}
		nt.tick()
	}
}

func testConfig(chunkElems int) Config {
	c := DefaultLocalConfig()
	c.ChunkBytes = 4 * chunkElems
	c.HeartbeatTicks = 4
	c.TimeoutTicks = 40
	return c
}

// randomInputs returns per rank copies of nb buckets of random sizes (some smaller than n,
// some not divisible by n), and the float64 means.
func randomInputs(rng *rand.Rand, n, nb int) (in [][][]float32, mean [][]float64, scale [][]float64) {
	in = make([][][]float32, n)
	for b := 0; b < nb; b++ {
		size := rng.Intn(3 * n)
		if rng.Intn(3) == 0 {
			size = rng.Intn(200)
		}
		m, s := make([]float64, size), make([]float64, size)
		for i := 0; i < n; i++ {
			x := make([]float32, size)
			for e := range x {
				x[e] = float32(rng.NormFloat64() * math.Pow(10, float64(rng.Intn(5)-2)))
				m[e] += float64(x[e]) / float64(n)
				s[e] += math.Abs(float64(x[e])) / float64(n)
			}
			in[i] = append(in[i], x)
		}
		mean, scale = append(mean, m), append(scale, s)
	}
	return in, mean, scale
}

func checkMean(t *testing.T, got [][][]float32, mean, scale [][]float64, ranks []int) {
	t.Helper()
	for _, i := range ranks {
		for b := range mean {
			for e := range mean[b] {
				g := float64(got[i][b][e])
				if d := math.Abs(g - mean[b][e]); d > 1e-6*scale[b][e]+1e-30 {
					t.Fatalf("rank %d bucket %d elem %d: got %g want %g (|x| mean %g)", i, b, e, g, mean[b][e], scale[b][e])
				}
				if math.Float32bits(got[i][b][e]) != math.Float32bits(got[ranks[0]][b][e]) {
					t.Fatalf("bucket %d elem %d: rank %d has %x, rank %d has %x: replicas differ", b, e, i,
						math.Float32bits(got[i][b][e]), ranks[0], math.Float32bits(got[ranks[0]][b][e]))
				}
			}
		}
	}
}

func TestRingMeanUnderReorderDuplicationDelay(t *testing.T) {
	for n := 1; n <= 5; n++ {
		for seed := int64(0); seed < 12; seed++ {
			t.Run(fmt.Sprintf("n%d/seed%d", n, seed), func(t *testing.T) {
				rng := rand.New(rand.NewSource(seed*31 + int64(n)))
				nt := newMemNet(t, seed, n, testConfig(1+rng.Intn(5)))
				nt.dupP, nt.maxDelay = 0.2, rng.Intn(4)
				// Two consecutive steps: a fast rank starts the second while others finish the first.
				for step := uint64(1); step <= 2; step++ {
					nb := 1 + rng.Intn(4)
					in, mean, scale := randomInputs(rng, n, nb)
					jobs := make([]*job, n)
					for i := range jobs {
						jobs[i] = &job{step: step, beginAt: nt.now + rng.Intn(3), buckets: in[i]}
						at := jobs[i].beginAt
						for range in[i] {
							at += rng.Intn(4)
							jobs[i].submitAt = append(jobs[i].submitAt, at)
						}
					}
					nt.run(jobs, 1000)
					ranks := make([]int, n)
					for i, r := range nt.rings {
						ranks[i] = i
						if !r.Done() {
							t.Fatalf("step %d rank %d: not done, err %v", step, i, r.Err())
						}
						for b := range in[i] {
							if !r.BucketDone(b) {
								t.Fatalf("rank %d bucket %d not marked done", i, b)
							}
						}
					}
					checkMean(t, in, mean, scale, ranks)
				}
				if n > 1 && nt.dupP > 0 && len(nt.log) > 20 {
					dups := 0
					for _, r := range nt.rings {
						dups += r.Stats().Duplicates + r.Stats().Stale
					}
					if dups == 0 {
						t.Errorf("duplicated frames were sent but no rank counted one")
					}
				}
			})
		}
	}
}

func TestRingSingleRankIsIdentity(t *testing.T) {
	r, err := NewRing(testConfig(3), View{Generation: 1, Self: 0, Size: 1})
	if err != nil {
		t.Fatal(err)
	}
	x := []float32{1.5, -2, 3e-7}
	want := append([]float32(nil), x...)
	if err := r.Begin(1, 1); err != nil {
		t.Fatal(err)
	}
	if err := r.Submit(0, x); err != nil {
		t.Fatal(err)
	}
	if !r.Done() || len(r.Ready().Messages) != 0 {
		t.Fatalf("single rank: done=%v", r.Done())
	}
	for i := range x {
		if x[i] != want[i] {
			t.Fatalf("elem %d changed: %g -> %g", i, want[i], x[i])
		}
	}
}

// A rank that subscribes late loses what was sent before; chunks wait for its greeting.
func TestRingLateSubscriberLosesNothing(t *testing.T) {
	const n = 4
	rng := rand.New(rand.NewSource(5))
	nt := newMemNet(t, 5, n, testConfig(2))
	nt.deaf[2] = 10
	in, mean, scale := randomInputs(rng, n, 3)
	jobs := make([]*job, n)
	for i := range jobs {
		jobs[i] = &job{step: 1, buckets: in[i], submitAt: []int{0, 0, 0}}
	}
	nt.run(jobs, 200)
	for i, r := range nt.rings {
		if !r.Done() {
			t.Fatalf("rank %d: %v", i, r.Err())
		}
	}
	checkMean(t, in, mean, scale, []int{0, 1, 2, 3})
}

func TestRingStaleDuplicateAndFutureChunks(t *testing.T) {
	const n = 3
	rng := rand.New(rand.NewSource(9))
	nt := newMemNet(t, 9, n, testConfig(2))
	in, mean, scale := randomInputs(rng, n, 1)
	in[0][0], in[1][0], in[2][0] = []float32{1, 2, 3, 4, 5}, []float32{6, 7, 8, 9, 10}, []float32{-1, 0, 1, 2, 3}
	mean[0] = []float64{2, 3, 4, 5, 6}
	scale[0] = []float64{8 / 3., 3, 4, 5, 6}
	jobs := []*job{{step: 4, buckets: in[0], submitAt: []int{0}}, {step: 4, buckets: in[1], submitAt: []int{0}}, {step: 4, buckets: in[2], submitAt: []int{0}}}
	nt.run(jobs, 200)
	checkMean(t, in, mean, scale, []int{0, 1, 2})

	// Replay every chunk rank 1 received: all stale now.
	before := nt.rings[1].Stats()
	replayed := 0
	for _, f := range nt.log {
		m, err := Unmarshal(f)
		if err != nil {
			t.Fatal(err)
		}
		if m.Type != MsgChunk || m.To != 1 {
			continue
		}
		replayed++
		if err := nt.rings[1].Step(m); !errors.Is(err, ErrStale) {
			t.Fatalf("replayed %v: err %v, want ErrStale", m, err)
		}
	}
	if got := nt.rings[1].Stats().Stale - before.Stale; got != replayed || replayed == 0 {
		t.Fatalf("stale count grew by %d for %d replayed chunks", got, replayed)
	}

	r := nt.rings[1]
	chunk := Message{Type: MsgChunk, From: 0, To: 1, Generation: 7, Step: 5, Bucket: 0, BucketLen: 6, Phase: ReduceScatter, Segment: 0, Data: []float32{1, 1}}
	old := chunk
	old.Generation = 6
	if err := r.Step(old); !errors.Is(err, ErrStale) {
		t.Fatalf("older generation: %v, want ErrStale", err)
	}
	far := chunk
	far.Step = 6
	if err := r.Step(far); !errors.Is(err, ErrRejected) {
		t.Fatalf("two steps ahead: %v, want ErrRejected", err)
	}
	// Step 5 is the next one: held, then applied by Begin; a second copy is a duplicate.
	if err := r.Step(chunk); err != nil {
		t.Fatalf("next step chunk: %v, want held", err)
	}
	if r.Stats().HeldBytes != 8 {
		t.Fatalf("held %d bytes, want 8", r.Stats().HeldBytes)
	}
	if err := r.Begin(5, 1); err != nil {
		t.Fatal(err)
	}
	if err := r.Submit(0, []float32{1, 1, 1, 1, 1, 1}); err != nil {
		t.Fatal(err)
	}
	if r.Stats().Processed != before.Processed+1 {
		t.Fatalf("held chunk not applied on submit: processed %d -> %d", before.Processed, r.Stats().Processed)
	}
	if err := r.Step(chunk); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("second copy: %v, want ErrDuplicate", err)
	}
	wrong := chunk
	wrong.From = 2
	if err := r.Step(wrong); !errors.Is(err, ErrRejected) {
		t.Fatalf("chunk from the right neighbour: %v, want ErrRejected", err)
	}
	bad := chunk
	bad.Offset = 1
	if err := r.Step(bad); !errors.Is(err, ErrRejected) {
		t.Fatalf("misaligned offset: %v, want ErrRejected", err)
	}
	if !r.Active() {
		t.Fatalf("dropped messages ended the all-reduce: %v", r.Err())
	}
}

func TestRingShapeMismatchFailsFast(t *testing.T) {
	nt := newMemNet(t, 1, 2, testConfig(4))
	jobs := []*job{{step: 1, buckets: [][]float32{make([]float32, 5)}, submitAt: []int{0}}, {step: 1, buckets: [][]float32{make([]float32, 6)}, submitAt: []int{0}}}
	ticks := nt.run(jobs, 200)
	for i, r := range nt.rings {
		if !errors.Is(r.Err(), ErrMismatch) && !errors.Is(r.Err(), ErrPeerAborted) {
			t.Fatalf("rank %d: %v, want ErrMismatch or ErrPeerAborted", i, r.Err())
		}
	}
	if ticks >= testConfig(4).TimeoutTicks {
		t.Fatalf("mismatch took %d ticks, as long as a timeout", ticks)
	}
}

// A crashed rank makes its neighbours time out after TimeoutTicks; the rest hear an abort.
func TestRingCutNodeTimesOut(t *testing.T) {
	for _, n := range []int{2, 3, 5} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			cfg := testConfig(3)
			rng := rand.New(rand.NewSource(int64(n)))
			nt := newMemNet(t, int64(n), n, cfg)
			nt.maxDelay = 1
			in, _, _ := randomInputs(rng, n, 3)
			victim := n - 1
			jobs := make([]*job, n)
			for i := range jobs {
				jobs[i] = &job{step: 1, buckets: in[i], submitAt: []int{0, 1, 2}}
			}
			jobs[victim].submitAt = []int{0, 1000, 1000} // it crashes before its second bucket
			for i := range jobs {
				nt.drive(i, jobs[i])
			}
			nt.tick()
			nt.deliver()
			nt.dead[victim] = true
			cut := nt.now
			nt.run(jobs, 3*cfg.TimeoutTicks)
			for i, r := range nt.rings {
				if i == victim {
					continue
				}
				err := r.Err()
				neighbour := i == mod(victim+1, n) || i == mod(victim-1, n)
				if neighbour && !errors.Is(err, ErrTimeout) && !errors.Is(err, ErrPeerAborted) {
					t.Fatalf("neighbour %d: %v, want ErrTimeout", i, err)
				}
				if !neighbour && !errors.Is(err, ErrPeerAborted) && !errors.Is(err, ErrTimeout) {
					t.Fatalf("rank %d: %v, want ErrPeerAborted", i, err)
				}
			}
			// Both neighbours start counting at the cut; the first to time out tells the other.
			l, r := nt.rings[mod(victim-1, n)].Err(), nt.rings[mod(victim+1, n)].Err()
			if !errors.Is(l, ErrTimeout) && !errors.Is(r, ErrTimeout) {
				t.Fatalf("neighbours of the victim: %v; %v; want ErrTimeout", l, r)
			}
			if took := nt.now - cut; took < cfg.TimeoutTicks-1 || took > cfg.TimeoutTicks+2*nt.maxDelay+2 {
				t.Fatalf("failed %d ticks after the cut, want about %d", took, cfg.TimeoutTicks)
			}
		})
	}
}

// An isolated rank (alive, cut off) times out too, and so do its neighbours.
func TestRingIsolatedNodeTimesOut(t *testing.T) {
	const n = 4
	cfg := testConfig(2)
	rng := rand.New(rand.NewSource(3))
	nt := newMemNet(t, 3, n, cfg)
	in, _, _ := randomInputs(rng, n, 2)
	jobs := make([]*job, n)
	for i := range jobs {
		jobs[i] = &job{step: 1, buckets: in[i], submitAt: []int{0, 0}}
	}
	jobs[1].submitAt = []int{5, 5}
	nt.isolated[1] = true
	nt.run(jobs, 3*cfg.TimeoutTicks)
	for i, r := range nt.rings {
		if !errors.Is(r.Err(), ErrTimeout) && !errors.Is(r.Err(), ErrPeerAborted) {
			t.Fatalf("rank %d: %v, want ErrTimeout or ErrPeerAborted", i, r.Err())
		}
	}
	if !errors.Is(nt.rings[1].Err(), ErrTimeout) || !errors.Is(nt.rings[2].Err(), ErrTimeout) {
		t.Fatalf("isolated rank: %v; its right neighbour: %v; want ErrTimeout", nt.rings[1].Err(), nt.rings[2].Err())
	}
}

// Loss is never a hang: each rank either finishes with the right answer or fails.
func TestRingLossEndsEveryRank(t *testing.T) {
	for seed := int64(0); seed < 10; seed++ {
		const n = 4
		cfg := testConfig(2)
		rng := rand.New(rand.NewSource(seed))
		nt := newMemNet(t, seed, n, cfg)
		nt.dropP, nt.maxDelay = 0.03, 2
		in, mean, scale := randomInputs(rng, n, 3)
		jobs := make([]*job, n)
		for i := range jobs {
			jobs[i] = &job{step: 1, buckets: in[i], submitAt: []int{0, 1, 2}}
		}
		nt.run(jobs, 4*cfg.TimeoutTicks)
		var ok []int
		for i, r := range nt.rings {
			if r.Done() {
				ok = append(ok, i)
			} else if !errors.Is(r.Err(), ErrTimeout) && !errors.Is(r.Err(), ErrPeerAborted) {
				t.Fatalf("seed %d rank %d: %v", seed, i, r.Err())
			}
		}
		if len(ok) > 0 {
			checkMean(t, in, mean, scale, ok)
		}
	}
}

func TestRingViewChange(t *testing.T) {
	r, err := NewRing(testConfig(2), View{Generation: 1, Self: 0, Size: 3})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Begin(1, 1); err != nil {
		t.Fatal(err)
	}
	// A chunk of generation 2 arrives before we move there: held, then replayed.
	next := Message{Type: MsgChunk, From: 1, To: 0, Generation: 2, Step: 9, Bucket: 0, BucketLen: 2, Phase: ReduceScatter, Segment: 1, Data: []float32{3}}
	if err := r.Step(next); err != nil {
		t.Fatalf("newer generation chunk: %v, want held", err)
	}
	if err := r.SetView(View{Generation: 2, Self: 0, Size: 2}); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(r.Err(), ErrViewChanged) {
		t.Fatalf("running all-reduce after a view change: %v, want ErrViewChanged", r.Err())
	}
	if err := r.SetView(View{Generation: 2, Self: 0, Size: 2}); !errors.Is(err, ErrBadArgument) {
		t.Fatalf("same generation again: %v, want ErrBadArgument", err)
	}
	if err := r.Begin(9, 1); err != nil {
		t.Fatal(err)
	}
	x := []float32{1, 1}
	if err := r.Submit(0, x); err != nil {
		t.Fatal(err)
	}
	// n=2: rank 0 owns segment 1: (3+1)/2.
	if x[1] != 2 {
		t.Fatalf("held chunk of the new generation not applied: %v", x)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	if err := DefaultLocalConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, mut := range []func(*Config){
		func(c *Config) { c.ChunkBytes = 6 },
		func(c *Config) { c.ChunkBytes = MaxChunkBytes + 4 },
		func(c *Config) { c.TickInterval = 0 },
		func(c *Config) { c.HeartbeatTicks = 0 },
		func(c *Config) { c.TimeoutTicks = c.HeartbeatTicks },
		func(c *Config) { c.MaxHeldBytes = -1 },
	} {
		c := DefaultConfig()
		mut(&c)
		if err := c.Validate(); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%+v: %v, want ErrBadConfig", c, err)
		}
	}
}

// Early data is bounded: past MaxHeldBytes the all-reduce fails instead of growing.
func TestRingHeldOverflowFails(t *testing.T) {
	cfg := testConfig(4)
	cfg.MaxHeldBytes = 20
	r, err := NewRing(cfg, View{Generation: 1, Self: 1, Size: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Begin(1, 2); err != nil {
		t.Fatal(err)
	}
	c := Message{Type: MsgChunk, From: 0, To: 1, Generation: 1, Step: 1, Bucket: 1, BucketLen: 16, Phase: ReduceScatter, Segment: 0, Data: []float32{1, 2, 3, 4}}
	if err := r.Step(c); err != nil {
		t.Fatalf("first early chunk (16 bytes): %v, want held", err)
	}
	c.Offset = 4
	if err := r.Step(c); !errors.Is(err, ErrHeldOverflow) {
		t.Fatalf("second early chunk (32 bytes held): %v, want ErrHeldOverflow", err)
	}
	if !errors.Is(r.Err(), ErrHeldOverflow) || r.Active() {
		t.Fatalf("all-reduce state after overflow: active=%v err=%v", r.Active(), r.Err())
	}
	aborts := 0
	for _, m := range r.Ready().Messages {
		if m.Type == MsgAbort && m.To == 0 {
			aborts++
		}
	}
	if aborts != 1 || r.Stats().HeldBytes != 0 {
		t.Fatalf("%d aborts sent to the peer, %d bytes still held; want 1 and 0", aborts, r.Stats().HeldBytes)
	}
}

// The ring's own reduction order is fixed: rank s-1 sums segment s as ((x_s + x_s+1) + ...) + x_s-1.
func TestRingReductionOrderIsTheRing(t *testing.T) {
	const n = 3
	nt := newMemNet(t, 2, n, testConfig(8))
	// Values where float32 addition order matters: 1e8 + 1 + -1e8.
	in := [][]float32{{1e8, 1e8, 1e8}, {1, 1, 1}, {-1e8, -1e8, -1e8}}
	jobs := make([]*job, n)
	for i := range jobs {
		jobs[i] = &job{step: 1, buckets: [][]float32{in[i]}, submitAt: []int{0}}
	}
	nt.run(jobs, 100)
	// Segment s (one element each) starts at rank s and goes around the ring.
	for s := 0; s < n; s++ {
		var sum float32
		for k := 0; k < n; k++ {
			sum = sum + []float32{1e8, 1, -1e8}[(s+k)%n]
		}
		want := sum / n
		for i := 0; i < n; i++ {
			if in[i][s] != want {
				t.Fatalf("segment %d on rank %d: %g, want %g", s, i, in[i][s], want)
			}
		}
	}
}
