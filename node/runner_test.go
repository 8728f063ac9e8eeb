package node

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"wkd/allreduce"
)

// toyReplica is a Replica whose "training" is deterministic: at step s, rank r of n
// contributes the gradient g_i = (r+1)*(s+i) to a vector, and the weights move by the mean.
// Equal weights on every rank after the run show equal averaging and state transfer.
type toyReplica struct {
	name  string
	total int64
	pause time.Duration // per step, to leave room for joins

	mu     sync.Mutex
	step   int64
	w      []float32
	loaded int // LoadStateBytes calls
	ckpts  []int64
}

func newToy(name string, total int64, pause time.Duration) *toyReplica {
	return &toyReplica{name: name, total: total, pause: pause, w: make([]float32, 300)}
}

func (r *toyReplica) Step() int64 { r.mu.Lock(); defer r.mu.Unlock(); return r.step }

func (r *toyReplica) StateBytes() ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := binary.LittleEndian.AppendUint64(nil, uint64(r.step))
	for _, x := range r.w {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b, nil
}

func (r *toyReplica) LoadStateBytes(b []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(b) != 8+4*len(r.w) {
		return fmt.Errorf("state of %d bytes", len(b))
	}
	r.step = int64(binary.LittleEndian.Uint64(b))
	for i := range r.w {
		r.w[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[8+4*i:]))
	}
	r.loaded++
	return nil
}

func (r *toyReplica) Train(ctx context.Context, rank, size int, sync *GradSync) error {
	for r.Step() < r.total {
		if err := ctx.Err(); err != nil {
			return err
		}
		s := r.Step()
		g := make([]float32, len(r.w))
		for i := range g {
			g[i] = float32(rank+1) * float32(int(s)+i%7)
		}
		if err := sync.Average([][]float32{g}); err != nil {
			return err // the step is not applied: the replica holds its last completed step
		}
		r.mu.Lock()
		for i := range r.w {
			r.w[i] -= 0.01 * g[i]
		}
		r.step++
		r.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(r.pause):
		}
	}
	return nil
}

func (r *toyReplica) Checkpoint() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ckpts = append(r.ckpts, r.step)
	return nil
}

// runnerMember is a routed node in a test cluster and its Runner.
type runnerMember struct {
	*routedNode
	run   *Runner
	rep   *toyReplica
	done  chan error    // Run's result
	ended chan struct{} // closed once Run returned
	stop  context.CancelFunc
}

func startRunner(t *testing.T, key []byte, name string, minNodes int, rep *toyReplica, seeds ...string) *runnerMember {
	t.Helper()
	rn := startRoutedNode(t, key, name, minNodes, seeds...)
	ar := allreduce.DefaultLocalConfig()
	ar.ChunkBytes = 256 // several chunks per all-reduce
	// Parts of 100 bytes: the 1208-byte state goes in 13 messages.
	r := NewRunner(rn.n, rn.nc, RunnerConfig{Prefix: "t", Reduce: ar, Resend: 20 * time.Millisecond, StateTimeout: 20 * time.Second, StatePart: 100}, testLogger(t, name))
	ctx, stop := context.WithCancel(context.Background())
	m := &runnerMember{routedNode: rn, run: r, rep: rep, done: make(chan error, 1), ended: make(chan struct{}), stop: stop}
	go func() { m.done <- r.Run(ctx, rep); close(m.ended) }()
	// Run ends before the node and its server go (cleanups run last first).
	t.Cleanup(func() {
		stop()
		select {
		case <-m.ended:
		case <-time.After(10 * time.Second):
			t.Errorf("%s: Run did not end within 10 s of its stop", name)
		}
	})
	return m
}

// waitStep waits until m's replica has completed step.
func waitStep(t *testing.T, m *runnerMember, step int64) {
	t.Helper()
	eventually(t, 30*time.Second, fmt.Sprintf("%s at step %d", m.rep.name, step), func() bool { return m.rep.Step() >= step })
}

func waitDone(t *testing.T, ms ...*runnerMember) {
	t.Helper()
	for _, m := range ms {
		select {
		case err := <-m.done:
			if err != nil {
				t.Fatalf("%s: Run = %v", m.rep.name, err)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("%s: Run still running at step %d", m.rep.name, m.rep.Step())
		}
	}
}

func sameWeights(t *testing.T, ms ...*runnerMember) {
	t.Helper()
	a, _ := ms[0].rep.StateBytes()
	for _, m := range ms[1:] {
		b, _ := m.rep.StateBytes()
		if string(a) != string(b) {
			t.Fatalf("%s and %s hold different states (steps %d, %d)", ms[0].rep.name, m.rep.name, ms[0].rep.Step(), m.rep.Step())
		}
	}
}

// Three members, each with its own NATS server, train to the end with identical states; the
// weights are those of the averaged gradients (checked against the arithmetic).
func TestRunnerTrainsTogether(t *testing.T) {
	watchdog(t, 2*time.Minute)
	key := testKey(t)
	const total = 20
	a := startRunner(t, key, "a", 3, newToy("a", total, 0))
	b := startRunner(t, key, "b", 3, newToy("b", total, 0), a.n.Addr())
	c := startRunner(t, key, "c", 3, newToy("c", total, 0), a.n.Addr())
	waitDone(t, a, b, c)
	sameWeights(t, a, b, c)
	// mean over ranks of (r+1) is 2: w_i = -0.01 * sum_s 2*(s + i%7).
	for i, x := range a.rep.w {
		want := float32(0)
		for s := range total {
			want -= 0.01 * 2 * float32(s+i%7)
		}
		if d := math.Abs(float64(x - want)); d > 1e-3*math.Abs(float64(want))+1e-4 {
			t.Fatalf("w[%d] = %g, want %g: the gradients were not averaged over 3 ranks", i, x, want)
		}
	}
}

// A member that joins a running pair receives the state (its LoadStateBytes runs once it is
// behind), trains on with them, and all end identical. (A survivor may receive it too: the
// view change can find one of them a step ahead of the other.)
func TestRunnerJoinerReceivesState(t *testing.T) {
	watchdog(t, 2*time.Minute)
	key := testKey(t)
	const total = 200
	a := startRunner(t, key, "a", 2, newToy("a", total, 5*time.Millisecond))
	b := startRunner(t, key, "b", 2, newToy("b", total, 5*time.Millisecond), a.n.Addr())
	waitStep(t, a, 20)
	c := startRunner(t, key, "c", 2, newToy("c", total, 5*time.Millisecond), a.n.Addr())
	waitDone(t, a, b, c)
	sameWeights(t, a, b, c)
	if c.rep.loaded == 0 {
		t.Fatal("the joiner never loaded a state")
	}
}

// Stopping every member at once (Ctrl-C everywhere) makes the one that was rank 0 save its
// last completed step, and no other.
func TestRunnerStopCheckpointsRank0(t *testing.T) {
	watchdog(t, 2*time.Minute)
	key := testKey(t)
	a := startRunner(t, key, "a", 2, newToy("a", 1<<30, 2*time.Millisecond))
	b := startRunner(t, key, "b", 2, newToy("b", 1<<30, 2*time.Millisecond), a.n.Addr())
	waitStep(t, a, 10)
	// b stops first and leaves: the view ends under a before its own stop arrives, so a is
	// waiting for a new view, not training, when it is stopped.
	b.stop()
	b.n.Leave()
	if !a.n.WaitChange(timeoutCtx(t, 10*time.Second), func() bool { v, ok := a.n.View(); return !ok || v.Size() == 1 }) {
		t.Fatal("a still in the view of 2 after b left")
	}
	a.stop()
	for _, m := range []*runnerMember{a, b} {
		select {
		case err := <-m.done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("%s: Run = %v, want context.Canceled", m.rep.name, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s did not stop", m.rep.name)
		}
	}
	if len(a.rep.ckpts) != 1 || a.rep.ckpts[0] != a.rep.Step() {
		t.Fatalf("rank 0 (a) checkpoints %v at step %d, want one of its last step", a.rep.ckpts, a.rep.Step())
	}
	if len(b.rep.ckpts) != 0 {
		t.Fatalf("rank 1 (b) wrote checkpoints %v", b.rep.ckpts)
	}
}

// gather completes however late each rank's subscription reaches the others' servers: the
// ranks start on five servers at staggered times, and every one learns every value.
func TestGatherAcrossServers(t *testing.T) {
	watchdog(t, 2*time.Minute)
	const n = 5
	servers := []*NATSServer{startClusterNATS(t, "tok")}
	for range n - 1 {
		servers = append(servers, startClusterNATS(t, "tok", routeAddr(servers[0])))
	}
	waitRoutes(t, n-1, servers...)
	members := make([]Member, n)
	for i := range members {
		members[i] = Member{Name: fmt.Sprintf("r%d", i)}
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	got := make([][]int64, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 30 * time.Millisecond)
			m := NewRunner(nil, testConn(t, servers[i], "tok"), RunnerConfig{Prefix: "g", Resend: 20 * time.Millisecond}, testLogger(t, "g"))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			got[i], errs[i] = m.gather(ctx, View{Generation: 7, Members: members, Self: i}, "x", int64(100+i), nil)
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("rank %d: %v", i, errs[i])
		}
		for r, v := range got[i] {
			if v != int64(100+r) {
				t.Fatalf("rank %d got %v, want 100..%d", i, got[i], 100+n-1)
			}
		}
	}
}
