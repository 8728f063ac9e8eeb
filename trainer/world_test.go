package trainer

import (
	"context"
	"errors"
	"io"
	"math"
	"sync"
	"testing"

	"wkd/models"
)

// hub is an in-memory synchronizer for n replicas in one process: each Average call blocks
// until all n have called, then every replica gets the same mean, summed in rank order.
type hub struct {
	mu      sync.Mutex
	cond    *sync.Cond
	n       int
	round   int
	pending [][][]float32 // this round's contributions by rank
	count   int
	result  [][]float32 // the last finished round's mean
}

func newHub(n int) *hub {
	h := &hub{n: n, pending: make([][][]float32, n)}
	h.cond = sync.NewCond(&h.mu)
	return h
}

type hubMember struct {
	h    *hub
	rank int
}

func (h *hub) member(rank int) *hubMember { return &hubMember{h: h, rank: rank} }

func (m *hubMember) Average(values [][]float32) error {
	h := m.h
	h.mu.Lock()
	defer h.mu.Unlock()
	contrib := make([][]float32, len(values))
	for i, v := range values {
		contrib[i] = append([]float32(nil), v...)
	}
	h.pending[m.rank] = contrib
	h.count++
	round := h.round
	if h.count == h.n {
		res := make([][]float32, len(values))
		for i := range values {
			res[i] = make([]float32, len(values[i]))
			for k := range res[i] {
				var s float64
				for r := range h.n {
					s += float64(h.pending[r][i][k])
				}
				res[i][k] = float32(s / float64(h.n))
			}
		}
		h.result, h.count = res, 0
		h.round++
		h.cond.Broadcast()
	}
	for h.round == round {
		h.cond.Wait()
	}
	for i, v := range values {
		copy(v, h.result[i])
	}
	return nil
}

func TestReplicasMatchOneProcess(t *testing.T) {
	data := writeUnaligned(t, 8, 16)
	mk := func(dir string) Config {
		c := tinyCycleGAN(data, dir)
		c.BatchSize = 4
		c.PoolSize = 0 // a pool per replica sees only its share: not comparable across world sizes
		return c
	}
	one := runFor(t, mk(t.TempDir()), 3, false)
	for _, world := range []int{2, 4} {
		h := newHub(world)
		trs := make([]*Trainer, world)
		var wg sync.WaitGroup
		errs := make([]error, world)
		for r := range world {
			cfg := mk(t.TempDir())
			cfg.MaxSteps = 3
			tr, err := New(cfg, io.Discard, WithWorld(World{Rank: r, Size: world, Sync: h.member(r)}))
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			trs[r] = tr
			wg.Add(1)
			go func() { defer wg.Done(); errs[r] = tr.Run(context.Background()) }()
		}
		wg.Wait()
		for r, err := range errs {
			if err != nil {
				t.Fatalf("world %d rank %d: %v", world, r, err)
			}
		}
		for r := 1; r < world; r++ {
			sameWeights(t, trs[0], trs[r])
		}
		worst := weightsRelErr(one, trs[0])
		t.Logf("world %d: replicas identical; worst relative difference to one process %.3g", world, worst)
		if worst > 1e-5 {
			t.Errorf("world %d differs from one process by %.3g relative", world, worst)
		}
	}
}

// weightsRelErr is the worst, over tensors, of max|a-b| / max|a|, leaving out the biases an
// InstanceNorm follows (models.InertBiases): their gradient is rounding noise that Adam turns
// into steps of about lr, differently in every run whose rounding differs.
func weightsRelErr(a, b *Trainer) float64 {
	worst := 0.0
	na, nb := a.nets(), b.nets()
	for i := range na {
		inert := map[string]bool{}
		for _, n := range models.InertBiases(na[i].net) {
			inert[n] = true
		}
		sa, sb := na[i].net.State(), nb[i].net.State()
		for j := range sa {
			if inert[sa[j].Name] {
				continue
			}
			var maxDiff, maxRef float64
			for k := range sa[j].Data {
				maxDiff = math.Max(maxDiff, math.Abs(float64(sa[j].Data[k]-sb[j].Data[k])))
				maxRef = math.Max(maxRef, math.Abs(float64(sa[j].Data[k])))
			}
			worst = math.Max(worst, maxDiff/maxRef)
		}
	}
	return worst
}

type failingSync struct{ calls, failAt int }

func (f *failingSync) Average([][]float32) error {
	f.calls++
	if f.calls == f.failAt {
		return errors.New("peer lost")
	}
	return nil
}

func TestAbortedStepRollsBack(t *testing.T) {
	data := writeUnaligned(t, 4, 16)
	cfg := tinyCycleGAN(data, t.TempDir())
	cfg.BatchSize, cfg.MaxSteps = 2, 2
	fs := &failingSync{failAt: 4} // step 1: G grads, D grads, (no BN) -> step 2 G grads ok, D grads fail
	tr, err := New(cfg, io.Discard, WithWorld(World{Rank: 0, Size: 2, Sync: fs}))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	err = tr.Run(context.Background())
	if !errors.Is(err, ErrStepAborted) {
		t.Fatalf("err = %v, want ErrStepAborted", err)
	}
	if tr.Step() != 1 {
		t.Fatalf("after an aborted second step the trainer is at step %d, want 1", tr.Step())
	}
	// The rolled-back state is the state after step 1, exactly: compare with the same replica
	// stopped there.
	ref := tinyCycleGAN(data, t.TempDir())
	ref.BatchSize, ref.MaxSteps = 2, 1
	stopped, err := New(ref, io.Discard, WithWorld(World{Rank: 0, Size: 2, Sync: &failingSync{}}))
	if err != nil {
		t.Fatal(err)
	}
	defer stopped.Close()
	if err := stopped.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	sameWeights(t, stopped, tr)
	a, _ := stopped.optG.State()["G_A/exp_avg/model.1.weight"], 0
	b := tr.optG.State()["G_A/exp_avg/model.1.weight"]
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("Adam moments not rolled back: [%d] %v vs %v", i, a[i], b[i])
		}
	}
	tr.SetWorld(World{Rank: 0, Size: 1})
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if tr.Step() != 2 {
		t.Fatalf("step %d, want 2", tr.Step())
	}
}

// bucketMember adds Begin/Submit/Wait to a hub member: buckets are collected and averaged
// together at Wait, which exercises the trainer's bucketing (copies, weights, order).
type bucketMember struct {
	*hubMember
	buckets   [][]float32
	submitted int
}

func (m *bucketMember) Begin(n int) error {
	m.buckets, m.submitted = make([][]float32, n), 0
	return nil
}

func (m *bucketMember) Submit(b int, data []float32) error {
	if m.buckets[b] != nil {
		return errors.New("bucket submitted twice")
	}
	m.buckets[b] = data
	m.submitted++
	return nil
}

func (m *bucketMember) Wait() error {
	if m.submitted != len(m.buckets) {
		return errors.New("Wait before every bucket was submitted")
	}
	return m.Average(m.buckets)
}

func TestOverlappedBucketsMatchWholeGroupSync(t *testing.T) {
	data := writeAligned(t, 8, 32)
	run := func(overlap bool) *Trainer {
		h := newHub(2)
		trs := make([]*Trainer, 2)
		var wg sync.WaitGroup
		for r := range 2 {
			cfg := tinyPix2Pix(data, t.TempDir())
			cfg.BatchSize, cfg.MaxSteps = 2, 3
			var s GradSync = h.member(r)
			if overlap {
				s = &bucketMember{hubMember: h.member(r)}
			}
			tr, err := New(cfg, io.Discard, WithWorld(World{Rank: r, Size: 2, Sync: s}), WithOverlap(overlap))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tr.Close() })
			trs[r] = tr
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := tr.Run(context.Background()); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		sameWeights(t, trs[0], trs[1])
		return trs[0]
	}
	whole, buckets := run(false), run(true)
	sameWeights(t, whole, buckets)
}

func TestTailSmallerThanTheWorldIsSkipped(t *testing.T) {
	// 5 images, global batch 2, 2 replicas: each epoch ends with a 1-sample batch that one
	// rank would get nothing of; both skip it alike and stay identical.
	data := writeAligned(t, 5, 32)
	h := newHub(2)
	trs := make([]*Trainer, 2)
	var wg sync.WaitGroup
	for r := range 2 {
		cfg := tinyPix2Pix(data, t.TempDir())
		cfg.BatchSize, cfg.MaxSteps = 2, 5 // crosses the first epoch's tail
		tr, err := New(cfg, io.Discard, WithWorld(World{Rank: r, Size: 2, Sync: h.member(r)}))
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		trs[r] = tr
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := tr.Run(context.Background()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if trs[0].Step() != 5 {
		t.Fatalf("step %d, want 5", trs[0].Step())
	}
	sameWeights(t, trs[0], trs[1])
}
