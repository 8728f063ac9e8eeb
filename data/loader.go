package data

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
)

// Loader defaults.
const (
	DefaultPrefetch  = 2
	DefaultBatchSize = 1
)

// LoaderConfig tunes a Loader.
type LoaderConfig struct {
	// Seed drives every random transform together with the epoch and the sample index.
	Seed uint64
	// Workers is the number of decoding goroutines. More overlap decoding with the step but
	// compete with it for cores. Defaults to runtime.GOMAXPROCS(0).
	Workers int
	// Prefetch is the number of batches decoded ahead of the consumer (the bounded queue's
	// capacity); each costs one batch of memory. Defaults to DefaultPrefetch.
	Prefetch int
	// BatchSize is the number of samples per batch for Loader.Epoch. Defaults to DefaultBatchSize.
	BatchSize int
	// DropLast drops a smaller final batch in Loader.Epoch (PyTorch's drop_last). Defaults to false.
	DropLast bool
}

// Validate reports a negative field.
func (c LoaderConfig) Validate() error {
	if c.Workers < 0 || c.Prefetch < 0 || c.BatchSize < 0 {
		return fmt.Errorf("%w: loader workers %d, prefetch %d, batch size %d: want >= 0 (0 = default)",
			ErrBadConfig, c.Workers, c.Prefetch, c.BatchSize)
	}
	return nil
}

// Loader turns index lists into batches, decoding in parallel ahead of the consumer.
type Loader struct {
	ds     *Dataset
	cfg    LoaderConfig
	loaded atomic.Int64 // samples decoded so far, for tests of the queue bound
	free   chan *Batch  // released batches whose buffers the next batches reuse
}

// NewLoader returns a loader over ds; zero fields of cfg take their defaults.
func NewLoader(ds *Dataset, cfg LoaderConfig) (*Loader, error) {
	if ds == nil {
		panic("data: NewLoader with a nil dataset")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Workers == 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.Prefetch == 0 {
		cfg.Prefetch = DefaultPrefetch
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	return &Loader{ds: ds, cfg: cfg, free: make(chan *Batch, cfg.Prefetch+2)}, nil
}

// Release hands b's buffers back for reuse by later batches, so a steady training loop does
// not allocate them per step. b must not be used afterwards. Releasing is optional.
func (l *Loader) Release(b *Batch) {
	if b == nil {
		return
	}
	select {
	case l.free <- b:
	default: // enough spares already; let the GC have it
	}
}

// Dataset returns the loader's dataset.
func (l *Loader) Dataset() *Dataset { return l.ds }

// Batch is a batch of samples, in the order of its indices.
type Batch struct {
	Epoch   int
	Indices []int     // the sample indices, as handed to the loader
	N       int       // len(Indices); 0 for an empty share of a global batch
	A       []float32 // A: (N, C, H, W) generator input
	B       []float32 // B: (N, C, H, W) target / other domain
	AShape  [4]int    // (N, C, H, W) of A
	BShape  [4]int    // (N, C, H, W) of B
	APaths  []string  // source file of each A
	BPaths  []string  // source file of each B
}

// Epoch streams the samples of indices in batches of BatchSize (the last one smaller unless
// DropLast). The stream must be closed.
func (l *Loader) Epoch(ctx context.Context, epoch int, indices []int) *Batches {
	var batches [][]int
	for i := 0; i < len(indices); i += l.cfg.BatchSize {
		end := min(i+l.cfg.BatchSize, len(indices))
		if end-i < l.cfg.BatchSize && l.cfg.DropLast {
			break
		}
		batches = append(batches, indices[i:end])
	}
	return l.EpochBatches(ctx, epoch, batches)
}

// EpochBatches streams one batch per index list, in order (for a rank's shares of the global
// batches; an empty list gives a Batch with N 0). The stream must be closed.
func (l *Loader) EpochBatches(ctx context.Context, epoch int, batches [][]int) *Batches {
	ctx, cancel := context.WithCancel(ctx)
	s := &Batches{ctx: ctx, cancel: cancel, ready: make(chan *pending, l.cfg.Prefetch)}
	jobs := make(chan job)
	s.wg.Add(1 + l.cfg.Workers)
	go func() { // dispatcher: reserves a queue slot, then hands out the batch's samples
		defer s.wg.Done()
		defer close(jobs)
		defer close(s.ready)
		for _, idx := range batches {
			p := l.newPending(epoch, idx)
			select {
			case s.ready <- p:
			case <-ctx.Done():
				return
			}
			for j := range idx {
				select {
				case jobs <- job{p, j}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	for w := 0; w < l.cfg.Workers; w++ {
		go func() {
			defer s.wg.Done()
			for jb := range jobs {
				l.run(ctx, jb)
			}
		}()
	}
	return s
}

type job struct {
	p    *pending
	slot int
}

// pending is a batch being filled; done closes when every slot is written (or failed).
type pending struct {
	b         *Batch
	errs      []error
	remaining atomic.Int32
	done      chan struct{}
}

func (l *Loader) newPending(epoch int, idx []int) *pending {
	a, b := l.ds.Shapes()
	n := len(idx)
	p := &pending{done: make(chan struct{}), errs: make([]error, n)}
	na, nb := n*a[0]*a[1]*a[2], n*b[0]*b[1]*b[2]
	var old *Batch
	select {
	case old = <-l.free:
	default:
		old = &Batch{}
	}
	// every element is overwritten by the workers, so reused buffers need no clearing
	p.b = &Batch{Epoch: epoch, Indices: idx, N: n,
		AShape: [4]int{n, a[0], a[1], a[2]}, BShape: [4]int{n, b[0], b[1], b[2]},
		A: grow(old.A, na), B: grow(old.B, nb), APaths: grow(old.APaths, n), BPaths: grow(old.BPaths, n)}
	p.remaining.Store(int32(n))
	if n == 0 {
		close(p.done)
	}
	return p
}

// grow returns s resized to n, reusing its array when large enough.
func grow[T any](s []T, n int) []T {
	if cap(s) >= n {
		return s[:n]
	}
	return make([]T, n)
}

func (l *Loader) run(ctx context.Context, jb job) {
	p, j := jb.p, jb.slot
	if ctx.Err() == nil {
		b := p.b
		sa, sb := b.AShape[1]*b.AShape[2]*b.AShape[3], b.BShape[1]*b.BShape[2]*b.BShape[3]
		b.APaths[j], b.BPaths[j], p.errs[j] = l.ds.loadInto(l.cfg.Seed, b.Epoch, b.Indices[j],
			b.A[j*sa:(j+1)*sa], b.B[j*sb:(j+1)*sb])
		l.loaded.Add(1)
	}
	if p.remaining.Add(-1) == 0 {
		close(p.done)
	}
}

// Batches is one epoch's stream of batches. Next and Close are for one goroutine.
type Batches struct {
	ctx    context.Context
	cancel context.CancelFunc
	ready  chan *pending
	wg     sync.WaitGroup
	err    error // sticky: what Next returns once the stream has ended
}

// Next returns the next batch, io.EOF after the last one, or the error of the first sample
// that failed (naming its file); after an error the stream is stopped.
func (s *Batches) Next() (*Batch, error) {
	if s.err != nil {
		return nil, s.err
	}
	p, ok := <-s.ready
	if ok {
		select {
		case <-p.done:
		case <-s.ctx.Done():
			ok = false
		}
	}
	if !ok {
		s.err = io.EOF
		if s.ctx.Err() != nil {
			s.err = fmt.Errorf("%w: %w", ErrLoaderClosed, context.Cause(s.ctx))
		}
		s.stop()
		return nil, s.err
	}
	for _, err := range p.errs {
		if err != nil {
			s.err = err
			s.stop()
			return nil, err
		}
	}
	return p.b, nil
}

// Close stops the workers and waits for them; Next then returns ErrLoaderClosed. It is safe to
// call more than once, and must be called when the consumer stops early.
func (s *Batches) Close() {
	if s.err == nil {
		s.err = ErrLoaderClosed
	}
	s.stop()
}

func (s *Batches) stop() {
	s.cancel()
	for range s.ready { // let a dispatcher blocked on a full queue see the cancellation
	}
	s.wg.Wait()
}
