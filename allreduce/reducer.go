package allreduce

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Subject is the subject on which node receives its frames: "<prefix>.ar.<node>". Name nodes,
// not ranks, so that a subscription outlives view changes and no frame of the next generation
// is published to a subject nobody listens on yet.
func Subject(prefix, node string) string { return prefix + ".ar." + node }

// ReducerStats adds the edge's counters to the Ring's.
type ReducerStats struct {
	Stats
	Malformed int   // frames that did not parse, dropped
	FramesOut int   // frames published
	BytesOut  int64 // bytes published
}

// Reducer runs a Ring over a NATS connection: a subscription on its own subject feeds Step, a
// ticker feeds Tick, and one sender goroutine publishes frames in the order the Ring made them
// (NATS keeps order per publisher only). Safe for concurrent use.
type Reducer struct {
	nc  *nats.Conn
	cfg Config

	mu         sync.Mutex
	ring       *Ring
	subjects   []string // (Size) subject of each rank
	sub        *nats.Subscription
	changed    chan struct{} // closed and replaced whenever a bucket or the all-reduce ends
	lastActive bool
	closed     bool
	malformed  int

	qmu      sync.Mutex
	qcond    *sync.Cond
	queue    []outFrame
	qclosed  bool
	frames   int
	bytesOut int64

	pool     sync.Pool
	stop     chan struct{}
	tickDone chan struct{}
	sendDone chan struct{}
}

type outFrame struct {
	subject string
	frame   *[]byte
}

// New starts a Reducer for rank v.Self, subscribed on subjects[v.Self]. subjects maps every rank
// of v to its subject (see Subject). The caller keeps ownership of nc and closes it after Close.
func New(nc *nats.Conn, cfg Config, v View, subjects []string) (*Reducer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := checkSubjects(v, subjects); err != nil {
		return nil, err
	}
	if max := nc.MaxPayload(); int64(cfg.ChunkBytes+HeaderSize) > max {
		return nil, fmt.Errorf("%w: ChunkBytes %d plus a %d-byte header exceeds the server's max_payload %d; lower ChunkBytes",
			ErrBadConfig, cfg.ChunkBytes, HeaderSize, max)
	}
	ring, err := NewRing(cfg, v)
	if err != nil {
		return nil, err
	}
	r := &Reducer{nc: nc, cfg: cfg, ring: ring, subjects: append([]string(nil), subjects...),
		changed: make(chan struct{}), stop: make(chan struct{}), tickDone: make(chan struct{}), sendDone: make(chan struct{})}
	r.qcond = sync.NewCond(&r.qmu)
	size := cfg.ChunkBytes + HeaderSize
	r.pool.New = func() any { b := make([]byte, 0, size); return &b }
	if err := r.subscribe(subjects[v.Self]); err != nil {
		return nil, err
	}
	go r.sender()
	go r.ticker()
	r.mu.Lock()
	r.flushLocked()
	r.mu.Unlock()
	return r, nil
}

func checkSubjects(v View, subjects []string) error {
	if err := v.Validate(); err != nil {
		return err
	}
	if len(subjects) != v.Size {
		return fmt.Errorf("%w: %d subjects for a view of %d ranks", ErrBadArgument, len(subjects), v.Size)
	}
	for i, s := range subjects {
		if s == "" || strings.ContainsAny(s, " \t\r\n*>") {
			return fmt.Errorf("%w: subject %q of rank %d must be a plain NATS subject", ErrBadArgument, s, i)
		}
	}
	return nil
}

func (r *Reducer) subscribe(subject string) error {
	sub, err := r.newSubscription(subject)
	if err != nil {
		return err
	}
	r.sub = sub
	return nil
}

// newSubscription subscribes onMsg to subject and waits until the server has it.
func (r *Reducer) newSubscription(subject string) (*nats.Subscription, error) {
	sub, err := r.nc.Subscribe(subject, r.onMsg)
	if err != nil {
		return nil, fmt.Errorf("allreduce: subscribe %s: %w", subject, err)
	}
	// A dropped chunk costs a timeout, so never drop for being slow: the Ring bounds what it holds.
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("allreduce: pending limits on %s: %w", subject, err)
	}
	// The server must know the subscription before a neighbour answers our greeting.
	if err := r.nc.FlushTimeout(5 * time.Second); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("allreduce: subscribe %s: %w", subject, err)
	}
	return sub, nil
}

func (r *Reducer) onMsg(msg *nats.Msg) {
	m, err := Unmarshal(msg.Data)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.malformed++
		return
	}
	_ = r.ring.Step(m) // drops are counted in Stats
	r.flushLocked()
}

// flushLocked marshals what the Ring made (chunk data aliases buckets, so before r.mu is let go)
// and wakes waiters.
func (r *Reducer) flushLocked() {
	if r.ring.HasReady() {
		rd := r.ring.Ready()
		if len(rd.Messages) > 0 {
			out := make([]outFrame, 0, len(rd.Messages))
			for i := range rd.Messages {
				m := &rd.Messages[i]
				if m.To < 0 || m.To >= len(r.subjects) {
					continue
				}
				bp := r.pool.Get().(*[]byte)
				b, err := AppendFrame((*bp)[:0], m)
				if err != nil {
					r.pool.Put(bp)
					continue // cannot happen for messages the Ring made
				}
				*bp = b
				out = append(out, outFrame{r.subjects[m.To], bp})
			}
			r.qmu.Lock()
			r.queue = append(r.queue, out...)
			r.qmu.Unlock()
			r.qcond.Signal()
		}
		if len(rd.Completed) > 0 {
			r.notifyLocked()
		}
	}
	if a := r.ring.Active(); a != r.lastActive {
		r.lastActive = a
		r.notifyLocked()
	}
}

func (r *Reducer) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// sender publishes queued frames in order. It is the only goroutine that publishes.
func (r *Reducer) sender() {
	defer close(r.sendDone)
	var batch []outFrame
	for {
		r.qmu.Lock()
		for len(r.queue) == 0 && !r.qclosed {
			r.qcond.Wait()
		}
		if len(r.queue) == 0 {
			r.qmu.Unlock()
			return
		}
		batch, r.queue = r.queue, batch[:0]
		r.qmu.Unlock()
		var perr error
		frames, bytes := 0, int64(0)
		for i, f := range batch {
			if perr == nil {
				if err := r.nc.Publish(f.subject, *f.frame); err != nil {
					perr = fmt.Errorf("%w: %s: %v", ErrPublish, f.subject, err)
				} else {
					frames++
					bytes += int64(len(*f.frame))
				}
			}
			r.pool.Put(f.frame)
			batch[i] = outFrame{}
		}
		r.qmu.Lock()
		r.frames += frames
		r.bytesOut += bytes
		r.qmu.Unlock()
		if perr != nil {
			r.mu.Lock()
			r.ring.Abort(perr)
			r.flushLocked()
			r.mu.Unlock()
		}
	}
}

func (r *Reducer) ticker() {
	defer close(r.tickDone)
	t := time.NewTicker(r.cfg.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.mu.Lock()
			r.ring.Tick()
			r.flushLocked()
			r.mu.Unlock()
		}
	}
}

// Subject is the subject this rank receives on.
func (r *Reducer) Subject() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.subjects[r.ring.View().Self]
}

// View is the current view.
func (r *Reducer) View() View {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ring.View()
}

// Stats returns the counters.
func (r *Reducer) Stats() ReducerStats {
	r.mu.Lock()
	s := ReducerStats{Stats: r.ring.Stats(), Malformed: r.malformed}
	r.mu.Unlock()
	r.qmu.Lock()
	s.FramesOut, s.BytesOut = r.frames, r.bytesOut
	r.qmu.Unlock()
	return s
}

// SetView moves to a newer generation; a running all-reduce fails with ErrViewChanged.
func (r *Reducer) SetView(v View, subjects []string) error {
	if err := checkSubjects(v, subjects); err != nil {
		return err
	}
	check := func() error {
		if r.closed {
			return ErrClosed
		}
		if v.Generation <= r.ring.View().Generation {
			return fmt.Errorf("%w: generation %d is not after %d", ErrBadArgument, v.Generation, r.ring.View().Generation)
		}
		return nil
	}
	r.mu.Lock()
	err := check()
	own := subjects[v.Self]
	resubscribe := own != r.subjects[r.ring.View().Self]
	r.mu.Unlock()
	if err != nil {
		return err
	}
	// A subscription on a new subject waits for the server's acknowledgement (seconds, when
	// NATS is away): without the lock, so that ticks and frames of the current view go on.
	var sub *nats.Subscription
	if resubscribe {
		if sub, err = r.newSubscription(own); err != nil {
			return err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := check(); err != nil { // closed, or a newer view set, meanwhile
		if sub != nil {
			_ = sub.Unsubscribe()
		}
		return err
	}
	if sub != nil {
		_ = r.sub.Unsubscribe()
		r.sub = sub
	}
	r.subjects = append([]string(nil), subjects...)
	if err := r.ring.SetView(v); err != nil {
		return err
	}
	r.flushLocked()
	return nil
}

// WaitPeers waits until both neighbours have answered in this view: chunks sent before then
// wait anyway, so this is for callers that want to time a clean start.
func (r *Reducer) WaitPeers(ctx context.Context) error {
	for {
		r.mu.Lock()
		ok, ch := r.ring.NeighboursSeen(), r.changed
		r.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-time.After(r.cfg.TickInterval):
		case <-ctx.Done():
			return fmt.Errorf("allreduce: waiting for neighbours: %w", ctx.Err())
		}
	}
}

// Begin starts the all-reduce of step in generation gen over nbuckets buckets, to be given one
// by one with Submit as backward produces them.
func (r *Reducer) Begin(gen, step uint64, nbuckets int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	if g := r.ring.View().Generation; g != gen {
		return fmt.Errorf("%w: all-reduce for generation %d, reducer is in %d", ErrViewChanged, gen, g)
	}
	if err := r.ring.Begin(step, nbuckets); err != nil {
		return err
	}
	r.flushLocked()
	return nil
}

// Submit gives bucket b. data is averaged in place; leave it alone until WaitBucket(b) returns.
func (r *Reducer) Submit(b int, data []float32) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.ring.Submit(b, data); err != nil {
		return err
	}
	r.flushLocked()
	return nil
}

// WaitBucket waits until bucket b is averaged, the all-reduce fails, or ctx ends (which aborts
// the all-reduce on every rank).
func (r *Reducer) WaitBucket(ctx context.Context, b int) error {
	return r.wait(ctx, func() bool { return r.ring.BucketDone(b) })
}

// Wait waits until every bucket is averaged, the all-reduce fails, or ctx ends (which aborts
// the all-reduce on every rank).
func (r *Reducer) Wait(ctx context.Context) error {
	return r.wait(ctx, r.ring.Done)
}

func (r *Reducer) wait(ctx context.Context, done func() bool) error {
	for {
		r.mu.Lock()
		if done() {
			r.mu.Unlock()
			return nil
		}
		if !r.ring.Active() {
			err := r.ring.Err()
			r.mu.Unlock()
			if err == nil {
				err = ErrNotActive
			}
			return err
		}
		ch := r.changed
		r.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			err := fmt.Errorf("allreduce: %w", ctx.Err())
			r.mu.Lock()
			r.ring.Abort(err)
			r.flushLocked()
			r.mu.Unlock()
			return err
		}
	}
}

// Abort ends the running all-reduce with err (ErrAborted if nil) and tells every peer: this
// rank cannot hand over the rest of its buckets. Nothing happens when none is running.
func (r *Reducer) Abort(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ring.Abort(err)
	r.flushLocked()
}

// AllReduce averages buckets in place across the ranks of generation gen: Begin, Submit each
// bucket, Wait.
func (r *Reducer) AllReduce(ctx context.Context, gen, step uint64, buckets [][]float32) error {
	if err := r.Begin(gen, step, len(buckets)); err != nil {
		return err
	}
	for b, d := range buckets {
		if err := r.Submit(b, d); err != nil {
			return err
		}
	}
	return r.Wait(ctx)
}

// Close aborts a running all-reduce (peers are told), publishes what is queued and stops.
func (r *Reducer) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.ring.Abort(ErrClosed)
	r.flushLocked()
	r.mu.Unlock()
	close(r.stop)
	<-r.tickDone
	err := r.sub.Unsubscribe()
	r.qmu.Lock()
	r.qclosed = true
	r.qmu.Unlock()
	r.qcond.Broadcast()
	<-r.sendDone
	if ferr := r.nc.FlushTimeout(time.Second); err == nil && ferr != nil && r.nc.IsConnected() {
		err = ferr
	}
	if err != nil {
		return fmt.Errorf("allreduce: close: %w", err)
	}
	return nil
}
