package allreduce

import (
	"errors"
	"fmt"
	"math"
)

// Stats counts what a Ring did with the messages it was given. Counts are cumulative.
type Stats struct {
	Processed  int // chunks reduced or copied into a bucket
	Duplicates int // chunks seen before, dropped
	Stale      int // messages of an older generation or step, or of a finished all-reduce, dropped
	Rejected   int // messages that break the protocol (wrong sender, segment, offset, too far ahead)
	Held       int // messages held because they arrived early
	HeldBytes  int // payload held now, in bytes
}

// Ready is what the Ring wants done since the last call to Ready.
type Ready struct {
	// Messages to deliver, in order, to Message.To. Chunk data aliases the buckets: marshal it
	// before the next call into the Ring.
	Messages []Message
	// Completed lists the buckets of the current all-reduce that finished, in order of completion.
	Completed []int
}

// neighbour is what a rank knows of the rank on one side of it.
type neighbour struct {
	rank      int
	seen      bool // heard from in this view: it is subscribed, so chunks to it are not lost
	idle      int  // ticks since it was last heard from
	sinceSent int  // ticks since we last sent it anything
}

// bucket is one bucket of the running all-reduce. Segment s is data[seg[s]:seg[s+1]]; its
// chunks are numbered from chunkBase[s].
type bucket struct {
	data      []float32 // (bucket elements), reduced in place
	submitted bool
	done      bool
	seg       []int       // (n+1) segment boundaries
	chunkBase []int       // (n+1) first chunk index of each segment
	got       [2][]uint64 // per phase, a bit per chunk already applied
	need      [2]int      // per phase, elements this rank receives
	have      [2]int
	held      []Message // chunks that arrived before the bucket was submitted
}

// Ring is one rank's state machine for ring all-reduces in one view. It does no I/O, starts no
// goroutine and reads no clock. Not safe for concurrent use.
//
// Rules for messages that do not fit the running all-reduce:
//   - older generation, older step, or the step that already finished: dropped (ErrStale);
//   - the same chunk twice: dropped (ErrDuplicate);
//   - newer generation, or the next step of this generation (a neighbour may run one step
//     ahead), or any step before the first Begin of a view: held, up to Config.MaxHeldBytes,
//     and replayed by Begin or SetView;
//   - two or more steps ahead in this generation: rejected (ErrRejected), as a correct peer
//     cannot get there;
//   - chunks of a bucket not yet submitted: held and applied when Submit gives the bucket.
//
// Chunks of a later ring step need no holding: each rank receives each segment at most once per
// phase, so a chunk can be applied as soon as the rank's own bucket is there.
type Ring struct {
	cfg  Config
	view View
	ce   int // elements per full chunk

	begun  bool // an all-reduce began in this view, so step is meaningful
	active bool
	step   uint64
	err    error

	buckets   []bucket
	remaining int

	nb     []neighbour // left, then right if it is another rank; empty when Size is 1
	future []Message   // held for the next step or a newer generation
	gated  []Message   // chunks for the right neighbour, waiting until it is seen
	held   int         // bytes held in future and in buckets

	// Loss detection: heartbeats say how many chunks the left neighbour sent us; if fewer
	// arrive within TimeoutTicks, chunks were lost and the all-reduce fails instead of hanging.
	sent, prevSent int // chunks sent to the right neighbour in this step and in the step before
	recv           int // distinct chunks of this step received from the left neighbour
	claim          int // chunks the left neighbour said it sent us in this step
	lostTicks      int // ticks since a claim exceeded recv; -1 when none does

	out       []Message
	completed []int
	stats     Stats
}

// NewRing returns the Ring of rank v.Self in view v. Its first Ready greets the neighbours.
func NewRing(cfg Config, v View) (*Ring, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := v.Validate(); err != nil {
		return nil, err
	}
	r := &Ring{cfg: cfg, ce: cfg.ChunkBytes / 4}
	r.enter(v)
	return r, nil
}

// SetView moves to a newer generation. A running all-reduce fails with ErrViewChanged; held
// messages of the new generation are replayed.
func (r *Ring) SetView(v View) error {
	if err := v.Validate(); err != nil {
		return err
	}
	if v.Generation <= r.view.Generation {
		return fmt.Errorf("%w: generation %d is not after %d", ErrBadArgument, v.Generation, r.view.Generation)
	}
	r.fail(fmt.Errorf("%w: generation %d -> %d", ErrViewChanged, r.view.Generation, v.Generation), false)
	r.enter(v)
	fut := r.future
	r.future, r.held = nil, 0
	for _, m := range fut {
		_ = r.Step(m)
	}
	return nil
}

func (r *Ring) enter(v View) {
	r.view = v
	r.begun, r.active, r.step = false, false, 0 // err stays: it says why the last all-reduce ended
	r.buckets, r.remaining, r.gated = nil, 0, nil
	r.prevSent, r.sent, r.recv, r.claim, r.lostTicks = 0, 0, 0, 0, -1
	r.nb = r.nb[:0]
	if v.Size > 1 {
		r.nb = append(r.nb, neighbour{rank: v.Left()})
		if v.Right() != v.Left() {
			r.nb = append(r.nb, neighbour{rank: v.Right()})
		}
	}
	for i := range r.nb {
		r.heartbeat(i)
	}
}

// View is the view the Ring is in.
func (r *Ring) View() View { return r.view }

// Stats returns the counters.
func (r *Ring) Stats() Stats { s := r.stats; s.HeldBytes = r.held; return s }

// NeighboursSeen reports whether both neighbours have been heard from in this view.
func (r *Ring) NeighboursSeen() bool {
	for _, n := range r.nb {
		if !n.seen {
			return false
		}
	}
	return true
}

// Active reports whether an all-reduce is running.
func (r *Ring) Active() bool { return r.active }

// Done reports whether the last all-reduce begun finished without error.
func (r *Ring) Done() bool { return r.begun && !r.active && r.err == nil }

// Err is why the last all-reduce failed, or nil.
func (r *Ring) Err() error { return r.err }

// BucketDone reports whether bucket b of the running (or last) all-reduce is complete.
func (r *Ring) BucketDone(b int) bool { return b >= 0 && b < len(r.buckets) && r.buckets[b].done }

// HasReady reports whether Ready has something.
func (r *Ring) HasReady() bool { return len(r.out) > 0 || len(r.completed) > 0 }

// Ready hands over the messages to send and the buckets completed since the last call.
func (r *Ring) Ready() Ready {
	rd := Ready{Messages: r.out, Completed: r.completed}
	r.out, r.completed = nil, nil
	return rd
}

// Begin starts the all-reduce of training step `step` over nbuckets buckets. Steps must grow
// within a generation.
func (r *Ring) Begin(step uint64, nbuckets int) error {
	if r.active {
		return fmt.Errorf("%w: step %d", ErrBusy, r.step)
	}
	if nbuckets < 1 {
		return fmt.Errorf("%w: %d buckets, need at least 1", ErrBadArgument, nbuckets)
	}
	if r.begun && step <= r.step {
		return fmt.Errorf("%w: step %d is not after step %d of generation %d", ErrBadArgument, step, r.step, r.view.Generation)
	}
	r.begun, r.active, r.step, r.err = true, true, step, nil
	r.buckets, r.remaining, r.completed = make([]bucket, nbuckets), nbuckets, nil
	r.prevSent, r.sent, r.recv, r.claim, r.lostTicks = r.sent, 0, 0, 0, -1
	fut := r.future
	r.future, r.held = nil, 0
	for _, m := range fut {
		_ = r.Step(m)
	}
	return nil
}

// Submit gives bucket b of the running all-reduce. data is averaged in place and must not be
// touched by the caller until the bucket completes. Every rank must give the same length.
func (r *Ring) Submit(b int, data []float32) error {
	if !r.active {
		if r.err != nil {
			return r.err
		}
		return ErrNotActive
	}
	if b < 0 || b >= len(r.buckets) {
		return fmt.Errorf("%w: bucket %d of %d", ErrBadArgument, b, len(r.buckets))
	}
	if len(data) > math.MaxUint32 {
		return fmt.Errorf("%w: bucket %d has %d elements, at most %d fit a frame", ErrBadArgument, b, len(data), uint32(math.MaxUint32))
	}
	bk := &r.buckets[b]
	if bk.submitted {
		return fmt.Errorf("%w: bucket %d submitted twice", ErrBadArgument, b)
	}
	n, self := r.view.Size, r.view.Self
	bk.data, bk.submitted = data, true
	bk.seg, bk.chunkBase = make([]int, n+1), make([]int, n+1)
	for s := 0; s <= n; s++ {
		bk.seg[s] = int(int64(s) * int64(len(data)) / int64(n))
		if s > 0 {
			bk.chunkBase[s] = bk.chunkBase[s-1] + (bk.seg[s]-bk.seg[s-1]+r.ce-1)/r.ce
		}
	}
	for p := range bk.got {
		bk.got[p] = make([]uint64, (bk.chunkBase[n]+63)/64)
	}
	segLen := func(s int) int { return bk.seg[s+1] - bk.seg[s] }
	bk.need[ReduceScatter] = len(data) - segLen(self)
	bk.need[AllGather] = len(data) - segLen(r.view.Right())
	if n > 1 {
		lo, l := bk.seg[self], segLen(self)
		for off := 0; off < l; off += r.ce {
			r.send(r.chunkMsg(b, len(data), ReduceScatter, 0, self, off, data[lo+off:lo+min(off+r.ce, l)]))
		}
	}
	held := bk.held
	bk.held = nil
	for _, m := range held {
		r.held -= 4 * len(m.Data)
	}
	for _, m := range held {
		if !r.active {
			break
		}
		if err := r.apply(m, true); errors.Is(err, ErrDuplicate) || errors.Is(err, ErrRejected) {
			r.recv-- // it was counted as received when held
		}
	}
	if r.active {
		r.check(b)
	}
	return nil
}

// Abort ends the running all-reduce with err (ErrAborted if nil) and tells every peer.
func (r *Ring) Abort(err error) {
	if err == nil {
		err = ErrAborted
	}
	r.fail(err, true)
}

// Tick advances time by one tick: heartbeats go out and silent neighbours time out.
func (r *Ring) Tick() {
	for i := range r.nb {
		n := &r.nb[i]
		n.idle++
		n.sinceSent++
		if n.sinceSent >= r.cfg.HeartbeatTicks {
			r.heartbeat(i)
		}
	}
	if !r.active {
		return
	}
	if r.lostTicks >= 0 {
		r.lostTicks++
		if r.lostTicks >= r.cfg.TimeoutTicks {
			r.fail(fmt.Errorf("%w: rank %d sent %d chunks, %d arrived in %d ticks (generation %d, step %d)",
				ErrTimeout, r.view.Left(), r.claim, r.recv, r.lostTicks, r.view.Generation, r.step), true)
			return
		}
	}
	for _, n := range r.nb {
		if n.idle >= r.cfg.TimeoutTicks {
			r.fail(fmt.Errorf("%w: rank %d silent for %d ticks (generation %d, step %d)",
				ErrTimeout, n.rank, n.idle, r.view.Generation, r.step), true)
			return
		}
	}
}

// Step hands the Ring one message. It returns nil when the message was used or held, and an
// error wrapping ErrStale, ErrDuplicate or ErrRejected when it was dropped (already counted).
func (r *Ring) Step(m Message) error {
	v := r.view
	if m.Generation < v.Generation {
		r.stats.Stale++
		return fmt.Errorf("%w: %v, now at generation %d", ErrStale, m, v.Generation)
	}
	if m.Generation > v.Generation {
		if m.Type == MsgHeartbeat {
			return nil // it will beat again once we are in its view
		}
		return r.hold(m)
	}
	if m.To != v.Self || m.From < 0 || m.From >= v.Size || m.From == v.Self {
		return r.reject(m, "not addressed from a peer to this rank")
	}
	if m.Type == MsgHeartbeat {
		if m.From != v.Left() && m.From != v.Right() {
			return r.reject(m, "heartbeat from a rank that is not a neighbour")
		}
		r.heard(m.From)
		if m.From == v.Left() && r.active {
			// The neighbour's count for our step: its current one, or its previous one when it
			// already moved on (it is at most one all-reduce ahead).
			switch {
			case m.Step == r.step && m.Sent > r.claim:
				r.claim = m.Sent
			case m.Step > r.step && m.PrevSent > r.claim:
				r.claim = m.PrevSent
			}
			if r.claim > r.recv && r.lostTicks < 0 {
				r.lostTicks = 0
			}
		}
		return nil
	}
	switch {
	case !r.begun || m.Step > r.step:
		if r.begun && m.Step > r.step+1 {
			return r.reject(m, fmt.Sprintf("more than one step ahead of step %d", r.step))
		}
		return r.hold(m)
	case m.Step < r.step || !r.active:
		r.stats.Stale++
		return fmt.Errorf("%w: %v, step %d finished", ErrStale, m, r.step)
	}
	if m.Type == MsgAbort {
		r.fail(fmt.Errorf("%w: rank %d gave up generation %d step %d", ErrPeerAborted, m.From, m.Generation, m.Step), false)
		return nil
	}
	if m.From != v.Left() {
		return r.reject(m, "chunk not from the left neighbour")
	}
	r.heard(m.From)
	return r.chunk(m)
}

// chunk applies a chunk of the running all-reduce, already checked for generation, step and sender.
func (r *Ring) chunk(m Message) error { return r.apply(m, false) }

func (r *Ring) apply(m Message, fromHeld bool) error {
	n, self := r.view.Size, r.view.Self
	if m.Bucket < 0 || m.Bucket >= len(r.buckets) {
		err := fmt.Errorf("%w: rank %d sent bucket %d, this rank has %d buckets", ErrMismatch, m.From, m.Bucket, len(r.buckets))
		r.fail(err, true)
		return err
	}
	bk := &r.buckets[m.Bucket]
	if !bk.submitted {
		if err := r.reserve(4 * len(m.Data)); err != nil {
			return err
		}
		bk.held = append(bk.held, m)
		r.stats.Held++
		r.received()
		return nil
	}
	if bk.done {
		r.stats.Duplicates++
		return fmt.Errorf("%w: %v, bucket complete", ErrDuplicate, m)
	}
	if m.BucketLen != len(bk.data) {
		err := fmt.Errorf("%w: rank %d has %d elements in bucket %d, this rank %d", ErrMismatch, m.From, m.BucketLen, m.Bucket, len(bk.data))
		r.fail(err, true)
		return err
	}
	k := m.RingStep
	if k < 0 || k > n-2 || m.Phase > AllGather {
		return r.reject(m, "ring step out of range")
	}
	want := mod(self-k-1, n)
	if m.Phase == AllGather {
		want = mod(self-k, n)
	}
	if m.Segment != want {
		return r.reject(m, fmt.Sprintf("segment should be %d", want))
	}
	lo, l := bk.seg[m.Segment], bk.seg[m.Segment+1]-bk.seg[m.Segment]
	if m.Offset < 0 || m.Offset%r.ce != 0 || m.Offset >= l || len(m.Data) != min(r.ce, l-m.Offset) {
		return r.reject(m, "offset or length does not match the chunking")
	}
	idx := bk.chunkBase[m.Segment] + m.Offset/r.ce
	got := bk.got[m.Phase]
	if got[idx/64]&(1<<(idx%64)) != 0 {
		r.stats.Duplicates++
		return fmt.Errorf("%w: %v", ErrDuplicate, m)
	}
	got[idx/64] |= 1 << (idx % 64)
	dst := bk.data[lo+m.Offset : lo+m.Offset+len(m.Data)]
	src := m.Data[:len(dst)]
	switch {
	case m.Phase == ReduceScatter && k < n-2:
		for i := range dst {
			dst[i] = src[i] + dst[i]
		}
		r.send(r.chunkMsg(m.Bucket, len(bk.data), ReduceScatter, k+1, m.Segment, m.Offset, dst))
	case m.Phase == ReduceScatter:
		// The last partial sum: this rank owns the segment, so only it scales, and the
		// all-gather copies its bits everywhere.
		fn := float32(n)
		for i := range dst {
			dst[i] = (src[i] + dst[i]) / fn
		}
		r.send(r.chunkMsg(m.Bucket, len(bk.data), AllGather, 0, m.Segment, m.Offset, dst))
	default:
		copy(dst, src)
		if k < n-2 {
			r.send(r.chunkMsg(m.Bucket, len(bk.data), AllGather, k+1, m.Segment, m.Offset, dst))
		}
	}
	bk.have[m.Phase] += len(dst)
	r.stats.Processed++
	if !fromHeld {
		r.received()
	}
	r.check(m.Bucket)
	return nil
}

func (r *Ring) check(b int) {
	bk := &r.buckets[b]
	if bk.done || !bk.submitted || bk.have != bk.need {
		return
	}
	bk.done = true
	bk.got = [2][]uint64{}
	r.completed = append(r.completed, b)
	r.remaining--
	if r.remaining == 0 {
		r.active = false
	}
}

func (r *Ring) chunkMsg(b, blen int, p Phase, k, seg, off int, data []float32) Message {
	return Message{Type: MsgChunk, From: r.view.Self, To: r.view.Right(), Generation: r.view.Generation,
		Step: r.step, Bucket: b, BucketLen: blen, Phase: p, RingStep: k, Segment: seg, Offset: off, Data: data}
}

// send queues m; chunks wait until the right neighbour has been heard from, since NATS drops
// what is published before the receiver subscribes.
func (r *Ring) send(m Message) {
	if m.Type == MsgChunk {
		r.sent++
	}
	if m.Type == MsgChunk && !r.rightSeen() {
		r.gated = append(r.gated, m)
		return
	}
	r.out = append(r.out, m)
	for i := range r.nb {
		if r.nb[i].rank == m.To {
			r.nb[i].sinceSent = 0
		}
	}
}

func (r *Ring) rightSeen() bool { return len(r.nb) > 0 && r.nb[len(r.nb)-1].seen }

func (r *Ring) heartbeat(i int) {
	m := Message{Type: MsgHeartbeat, From: r.view.Self, To: r.nb[i].rank, Generation: r.view.Generation, Step: r.step}
	if m.To == r.view.Right() && r.begun {
		m.Sent, m.PrevSent = r.sent, r.prevSent
	}
	r.send(m)
}

// heard notes a valid message from rank. The first one is answered at once, so a neighbour that
// subscribed after our greeting learns of us without waiting for a heartbeat.
func (r *Ring) heard(rank int) {
	for i := range r.nb {
		n := &r.nb[i]
		if n.rank != rank {
			continue
		}
		n.idle = 0
		if !n.seen {
			n.seen = true
			r.heartbeat(i)
		}
	}
	if r.rightSeen() && len(r.gated) > 0 {
		g := r.gated
		r.gated = nil
		for _, m := range g {
			r.send(m)
		}
	}
}

func (r *Ring) hold(m Message) error {
	if err := r.reserve(4 * len(m.Data)); err != nil {
		return err
	}
	r.future = append(r.future, m)
	r.stats.Held++
	return nil
}

func (r *Ring) reserve(n int) error {
	if r.held+n > r.cfg.MaxHeldBytes {
		r.stats.Rejected++
		err := fmt.Errorf("%w: %d bytes held, %d more, limit %d", ErrHeldOverflow, r.held, n, r.cfg.MaxHeldBytes)
		r.fail(err, true)
		return err
	}
	r.held += n
	return nil
}

func (r *Ring) reject(m Message, why string) error {
	r.stats.Rejected++
	return fmt.Errorf("%w: %v: %s", ErrRejected, m, why)
}

// fail ends the running all-reduce; with tell, every peer gets an abort.
func (r *Ring) fail(err error, tell bool) {
	if !r.active {
		return
	}
	r.active, r.err, r.gated = false, err, nil
	for i := range r.buckets {
		for _, m := range r.buckets[i].held {
			r.held -= 4 * len(m.Data)
		}
		r.buckets[i].held = nil
	}
	if !tell {
		return
	}
	for p := 0; p < r.view.Size; p++ {
		if p != r.view.Self {
			r.send(Message{Type: MsgAbort, From: r.view.Self, To: p, Generation: r.view.Generation, Step: r.step})
		}
	}
}

func (r *Ring) received() {
	r.recv++
	if r.recv >= r.claim {
		r.lostTicks = -1
	}
}

func mod(a, n int) int { return ((a % n) + n) % n }
