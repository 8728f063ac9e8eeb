package node

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"wkd/allreduce"
)

// Replica is the training state a Runner drives through views (the trainer, in wkd node).
// Its methods are called from the Runner's goroutine only.
type Replica interface {
	// Step is the number of completed steps.
	Step() int64
	// StateBytes encodes everything the replicas share (weights, optimizer state, data
	// position); LoadStateBytes replaces this replica's with it.
	StateBytes() ([]byte, error)
	LoadStateBytes([]byte) error
	// Train runs steps as rank of size ranks, averaging gradients through sync, until the
	// run ends (nil), ctx ends, or a step cannot complete. When the view ends, ctx is
	// cancelled with ErrViewChanged as its cause; the replica must then hold its last
	// completed step. An error that wraps ErrStepAborted is a step abandoned on every rank.
	Train(ctx context.Context, rank, size int, sync *GradSync) error
	// Checkpoint saves the last completed step (rank 0 does, when stopped).
	Checkpoint() error
}

var (
	// ErrViewChanged is the cause a Runner cancels a replica's Train context with when the
	// view it trains in ends.
	ErrViewChanged = errors.New("node: the view changed")
	// ErrStepAborted: a replica abandoned a step on every rank (see Replica.Train).
	ErrStepAborted = errors.New("node: step aborted")
	// ErrStateTransfer: the replicas of a view could not be brought to the same step in
	// time (the state or a step count did not arrive); the member leaves the view.
	ErrStateTransfer = errors.New("node: state transfer")
)

// RunnerConfig configures a Runner.
type RunnerConfig struct {
	// Prefix starts every NATS subject of this cluster, so several can share servers.
	Prefix string
	// Reduce configures the ring all-reduce.
	Reduce allreduce.Config
	// Resend is how often a gather of step counts, or the state, is sent again until every
	// rank has it: NATS drops what is published before a subscriber's interest reaches the
	// publisher's server. Defaults to DefaultResend.
	Resend time.Duration
	// StateTimeout bounds one view's agreement on the state (step counts, the state itself,
	// the check after it); past it the member leaves the view. Defaults to DefaultStateTimeout.
	StateTimeout time.Duration
	// FinishTimeout bounds the wait, at the end of the run, for every rank to have finished
	// (so that none leaves while a peer still needs its last chunks). Defaults to
	// DefaultFinishTimeout.
	FinishTimeout time.Duration
	// StatePart is the payload of one message of the state, at most the server's max_payload
	// less 4 KiB for headers. Defaults to 1 MiB.
	StatePart int
	// OnView, if set, is called with each view before training in it.
	OnView func(v View)
}

// RunnerConfig's defaults.
const (
	DefaultResend        = 200 * time.Millisecond
	DefaultStateTimeout  = 2 * time.Minute
	DefaultFinishTimeout = 10 * time.Second
	stateChunk           = 1 << 20
)

// Runner drives one replica through the views its Node agrees: for each view it points the
// ring all-reduce at the view's ranks, makes every replica hold the most advanced state (a
// joiner receives it), and trains until the run ends or the view changes under a step, which
// the replica rolls back.
type Runner struct {
	n   *Node
	nc  *nats.Conn
	cfg RunnerConfig
	log zerolog.Logger
	red *allreduce.Reducer
}

// NewRunner makes a Runner of n that talks over nc. The caller keeps nc and n.
func NewRunner(n *Node, nc *nats.Conn, cfg RunnerConfig, log zerolog.Logger) *Runner {
	if cfg.Resend <= 0 {
		cfg.Resend = DefaultResend
	}
	if cfg.StateTimeout <= 0 {
		cfg.StateTimeout = DefaultStateTimeout
	}
	if cfg.FinishTimeout <= 0 {
		cfg.FinishTimeout = DefaultFinishTimeout
	}
	return &Runner{n: n, nc: nc, cfg: cfg, log: log}
}

// Run trains r until its run ends (nil), ctx ends (rank 0 then checkpoints the last
// completed step), or a non-retryable error.
func (m *Runner) Run(ctx context.Context, r Replica) (err error) {
	defer func() {
		if m.red != nil {
			m.red.Close()
		}
	}()
	// Stopped (Ctrl-C, docker-compose down): when every node stops at once, the others'
	// leaving may end the view before this node sees the signal, so whichever node was rank 0
	// of the last view saves the last completed step on the way out, wherever the stop finds
	// it; a cluster started again over the run folder continues from there.
	rank0 := false
	defer func() {
		if ctx.Err() != nil && rank0 && r.Step() > 0 {
			m.log.Warn().Int64("step", r.Step()).Msg("stopped: writing a checkpoint")
			if cerr := r.Checkpoint(); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}
	}()
	for {
		v, err := m.waitView(ctx)
		if err != nil {
			return err
		}
		rank0 = v.Rank() == 0
		log := m.log.With().Uint64("generation", v.Generation).Int("rank", v.Rank()).Int("world", v.Size()).Logger()
		log.Info().Strs("members", v.Names()).Msg("view agreed")
		if err := m.setView(v); err != nil {
			return err
		}
		if m.cfg.OnView != nil {
			m.cfg.OnView(v)
		}
		vctx, cancel := m.viewContext(ctx, v.Generation)
		gs := &GradSync{ctx: vctx, red: m.red, gen: v.Generation}
		err = m.agreeState(vctx, r, v, log)
		if err == nil {
			m.n.SetState(StateTraining)
			err = r.Train(vctx, v.Rank(), v.Size(), gs)
		}
		if err == nil {
			// Every rank finished: leaving before a neighbour received this rank's last chunks
			// would end its view under its final step, so say so and wait for the others.
			if ferr := m.finish(vctx, v); ferr != nil {
				log.Warn().Err(ferr).Msg("not every rank confirmed the end of the run")
			}
			cancel()
			log.Info().Int64("step", r.Step()).Msg("run finished")
			return nil
		}
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case retryable(err):
			log.Warn().Err(err).Int64("step", r.Step()).Msg("view changed under the step; resuming from the last completed step")
			if cur, ok := m.n.View(); ok && cur.Generation == v.Generation {
				// The ring broke in an unchanged view (NATS was away, or a stall shorter than
				// failure detection): a ring cannot start again in the same generation, so
				// step out of the view to make the cluster agree a new one.
				log.Warn().Msg("ring broke in an unchanged view; leaving it for a new one")
				m.stepOut(ctx, v.Generation)
			}
			m.n.SetState(StateReady)
		default:
			return err
		}
	}
}

func retryable(err error) bool {
	return errors.Is(err, ErrStepAborted) || errors.Is(err, context.Canceled) || errors.Is(err, ErrStateTransfer) ||
		errors.Is(err, allreduce.ErrTimeout) || errors.Is(err, allreduce.ErrPeerAborted) || errors.Is(err, allreduce.ErrViewChanged)
}

// stepOut announces StateJoining and waits (at most 5 s) until the view of generation gen ends.
func (m *Runner) stepOut(ctx context.Context, gen uint64) {
	m.n.SetState(StateJoining)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m.n.WaitChange(ctx, func() bool { v, ok := m.n.View(); return !ok || v.Generation != gen })
}

// waitView blocks until the node has an agreed, current view, saying every 5 s what it waits for.
func (m *Runner) waitView(ctx context.Context) (View, error) {
	for {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var v View
		ok := m.n.WaitChange(wctx, func() bool { var cur bool; v, cur = m.n.View(); return cur })
		cancel()
		if ok {
			return v, nil
		}
		if ctx.Err() != nil {
			return View{}, ctx.Err()
		}
		if m.n.closed() {
			return View{}, ErrClosed
		}
		m.log.Info().Str("status", m.n.Status().String()).Msg("waiting for a view")
	}
}

// viewContext is cancelled when ctx is, or (with cause ErrViewChanged) when the view of
// generation gen ends.
func (m *Runner) viewContext(ctx context.Context, gen uint64) (context.Context, context.CancelFunc) {
	vctx, cancelCause := context.WithCancelCause(ctx)
	go func() {
		if m.n.WaitChange(vctx, func() bool { v, ok := m.n.View(); return !ok || v.Generation != gen }) {
			cancelCause(ErrViewChanged)
		}
	}()
	return vctx, func() { cancelCause(ErrViewChanged) }
}

func (m *Runner) setView(v View) error {
	av := allreduce.View{Generation: v.Generation, Self: v.Rank(), Size: v.Size()}
	subjects := make([]string, v.Size())
	for r, name := range v.Names() {
		subjects[r] = allreduce.Subject(m.cfg.Prefix, name)
	}
	if m.red == nil {
		red, err := allreduce.New(m.nc, m.cfg.Reduce, av, subjects)
		if err != nil {
			return err
		}
		m.red = red
		return nil
	}
	return m.red.SetView(av, subjects)
}

// agreeState makes every replica of the view hold the state of the most advanced one (the
// highest completed step; the lowest rank among equals), which sends it over NATS to those
// behind. A joiner thus receives the current state before its first step, and survivors never
// lose a completed step. The step counts go round as plain messages (gather), and a last
// gather, in which every rank must report the same step, acknowledges the transfer; the
// source sends the state again until it does.
func (m *Runner) agreeState(ctx context.Context, r Replica, v View, log zerolog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.StateTimeout)
	defer cancel()
	subject := fmt.Sprintf("%s.state.%d.%s", m.cfg.Prefix, v.Generation, viewKey(v))
	inbox := make(chan *nats.Msg, 1024)
	sub, err := m.nc.ChanSubscribe(subject, inbox)
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()
	SetPendingLimits(sub)

	steps, err := m.gather(ctx, v, "steps", r.Step(), nil)
	if err != nil {
		return stateErr(ctx, "step counts", err)
	}
	src, best := 0, steps[0]
	for rank, st := range steps {
		if st > best {
			src, best = rank, st
		}
	}
	if steps[v.Rank()] == best {
		// Only the replicas behind take the state in.
		sub.Unsubscribe()
	}
	behind := false
	for _, st := range steps {
		behind = behind || st != best
	}
	if !behind {
		return nil
	}
	var resend func()
	if v.Rank() == src {
		b, err := r.StateBytes()
		if err != nil {
			return err
		}
		t0 := time.Now()
		if err := m.sendState(subject, b); err != nil {
			return err
		}
		// Again while the check below waits, in case a part was lost, but no more often than
		// every second send's time: a large state must not crowd out the check's messages.
		every, last := max(2*time.Since(t0), time.Second), time.Now()
		resend = func() {
			if time.Since(last) >= every {
				if err := m.sendState(subject, b); err != nil {
					log.Warn().Err(err).Msg("state not sent again")
				}
				last = time.Now()
			}
		}
		log.Info().Int64("step", best).Int("bytes", len(b)).Msg("sent the state to the replicas behind")
	} else if steps[v.Rank()] != best {
		b, err := receiveState(ctx, inbox)
		sub.Unsubscribe()
		if err != nil {
			return stateErr(ctx, "the state", err)
		}
		if err := r.LoadStateBytes(b); err != nil {
			return err
		}
		log.Info().Int64("step", r.Step()).Int("from_rank", src).Msg("received the state")
	}
	// Everyone holds the same step now: a last gather checks it, and is the receivers'
	// acknowledgement; the source sends the state again while it waits.
	steps, err = m.gather(ctx, v, "check", r.Step(), resend)
	if err != nil {
		return stateErr(ctx, "the check after the state transfer", err)
	}
	for rank, st := range steps {
		if st != r.Step() {
			return fmt.Errorf("%w: rank %d is at step %d after the state transfer, this one at %d", ErrStateTransfer, rank, st, r.Step())
		}
	}
	return nil
}

func stateErr(ctx context.Context, what string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) && context.Cause(ctx) == context.DeadlineExceeded {
		return fmt.Errorf("%w: %s did not arrive within the state timeout: %w", ErrStateTransfer, what, err)
	}
	return err
}

// sendState publishes b in parts that fit the server's largest message (at least one part).
func (m *Runner) sendState(subject string, b []byte) error {
	chunk := int(min(int64(cmp.Or(m.cfg.StatePart, stateChunk)), m.nc.MaxPayload()-4096))
	if chunk < 1 {
		return fmt.Errorf("%w: the NATS server's max_payload %d leaves no room for the state's parts", ErrStateTransfer, m.nc.MaxPayload())
	}
	total := max(1, (len(b)+chunk-1)/chunk)
	for i := range total {
		msg := nats.NewMsg(subject)
		msg.Header.Set("part", fmt.Sprintf("%d/%d", i, total))
		msg.Data = b[i*chunk : min(len(b), (i+1)*chunk)]
		if err := m.nc.PublishMsg(msg); err != nil {
			return fmt.Errorf("%w: send part %d of %d: %w", ErrStateTransfer, i, total, err)
		}
	}
	return nil
}

// receiveState collects the parts of a state from inbox (repeats are ignored).
func receiveState(ctx context.Context, inbox <-chan *nats.Msg) ([]byte, error) {
	var parts [][]byte
	got := 0
	for got == 0 || got < len(parts) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case msg := <-inbox:
			var i, n int
			if _, err := fmt.Sscanf(msg.Header.Get("part"), "%d/%d", &i, &n); err != nil || n < 1 || n > 1<<20 || i < 0 || i >= n {
				continue
			}
			if parts == nil {
				parts = make([][]byte, n)
			}
			if n == len(parts) && parts[i] == nil {
				parts[i] = msg.Data
				got++
			}
		}
	}
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b, nil
}

// gatherMsg is one rank's value in a gather.
type gatherMsg struct {
	Rank  int   `json:"rank"`
	Value int64 `json:"value"`
}

// gather gives every rank of v the value of every other (index: rank), over the subject of
// (v's generation, phase). Each rank subscribes before it first publishes, and publishes
// again every Resend until it holds every value, then once more: a message from rank q
// arrives only after q's subscription has reached this rank's server (both travel the same
// route, in order), so that last publication reaches everyone. tick, if set, runs at each
// resend.
func (m *Runner) gather(ctx context.Context, v View, phase string, value int64, tick func()) ([]int64, error) {
	subject := fmt.Sprintf("%s.gather.%d.%s.%s", m.cfg.Prefix, v.Generation, viewKey(v), phase)
	in := make(chan *nats.Msg, 4*v.Size()+16)
	sub, err := m.nc.ChanSubscribe(subject, in)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	out := make([]int64, v.Size())
	have := make([]bool, v.Size())
	out[v.Rank()], have[v.Rank()] = value, true
	missing := v.Size() - 1
	payload, _ := json.Marshal(gatherMsg{Rank: v.Rank(), Value: value})
	publish := func() error { return m.nc.Publish(subject, payload) }
	if err := publish(); err != nil {
		return nil, err
	}
	t := time.NewTicker(m.cfg.Resend)
	defer t.Stop()
	for missing > 0 {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("gather %s: %d of %d ranks heard: %w", phase, v.Size()-missing, v.Size(), ctx.Err())
		case <-t.C:
			if err := publish(); err != nil {
				return nil, err
			}
			if tick != nil {
				tick()
			}
		case msg := <-in:
			var g gatherMsg
			if json.Unmarshal(msg.Data, &g) != nil || g.Rank < 0 || g.Rank >= v.Size() || have[g.Rank] {
				continue
			}
			out[g.Rank], have[g.Rank] = g.Value, true
			missing--
		}
	}
	return out, publish()
}

// viewKey tells apart views of the same generation (two halves of a partition may each agree
// one): a hash of the members' names and incarnations, for the subjects of the view's messages.
func viewKey(v View) string {
	h := fnv.New32a()
	for _, x := range v.Members {
		h.Write([]byte(x.key()))
		h.Write([]byte{0})
	}
	return strconv.FormatUint(uint64(h.Sum32()), 36)
}

// finish is the end-of-run barrier: every rank says it finished, bounded by FinishTimeout.
func (m *Runner) finish(ctx context.Context, v View) error {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.FinishTimeout)
	defer cancel()
	_, err := m.gather(ctx, v, "finished", 1, nil)
	return err
}

// GradSync is a replica's gradient averaging over the ring, for one view: each Average (or
// Begin ... Wait) is one all-reduce of the view's generation, numbered in the order every
// replica makes them. It serves the trainer as its GradSync, BucketSync and Aborter. Its
// methods are called from the replica's goroutine; the mutex keeps the numbering consistent
// should they not be.
type GradSync struct {
	ctx context.Context
	red *allreduce.Reducer
	gen uint64

	mu  sync.Mutex
	seq uint64
}

// Average averages every rank's values in place.
func (s *GradSync) Average(values [][]float32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	return s.red.AllReduce(s.ctx, s.gen, s.seq, values)
}

// Begin starts an all-reduce of nbuckets buckets, given one by one with Submit as backward
// produces them.
func (s *GradSync) Begin(nbuckets int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	return s.red.Begin(s.gen, s.seq, nbuckets)
}

// Submit hands over bucket b, averaged in place by the time Wait returns.
func (s *GradSync) Submit(b int, data []float32) error { return s.red.Submit(b, data) }

// Wait returns when every bucket of the all-reduce Begin started is averaged.
func (s *GradSync) Wait() error { return s.red.Wait(s.ctx) }

// Abort ends the all-reduce Begin started on every peer at once (this replica's device
// failed mid-backward) instead of leaving them to time out.
func (s *GradSync) Abort(err error) { s.red.Abort(err) }
