package ops

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Body is the loop body ParallelFor runs on [lo, hi). It runs concurrently with
// other ranges of the same call, so it must only write what its range owns.
type Body interface{ Run(lo, hi int) }

// funcBody adapts a closure to Body for ParallelFunc.
type funcBody func(lo, hi int)

func (f funcBody) Run(lo, hi int) { f(lo, hi) }

var (
	threads atomic.Int32 // worker count kernels use; see SetThreads

	poolMu  sync.Mutex
	workers atomic.Int32 // helper goroutines started so far (they never exit)
	work    chan pfTask  // batches that want help; a helper may get one already finished

	freeBatches = make(chan *pfBatch, 64) // recycled batches so a call allocates nothing
)

// maxThreads bounds SetThreads: a batch counts its chunks in 16 bits.
const maxThreads = 1 << 12

func init() {
	threads.Store(int32(min(runtime.GOMAXPROCS(0), maxThreads)))
	work = make(chan pfTask, 1024)
}

// Threads returns the number of worker goroutines ops kernels use.
func Threads() int { return int(threads.Load()) }

// SetThreads sets the number of worker goroutines ops kernels use; it is clamped to
// [1, 4096].
func SetThreads(n int) {
	threads.Store(int32(min(max(n, 1), maxThreads)))
}

// ensureWorkers starts helpers until there are n-1 of them (the caller is the n-th).
func ensureWorkers(n int) {
	if int(workers.Load()) >= n-1 {
		return
	}
	poolMu.Lock()
	for int(workers.Load()) < n-1 {
		workers.Add(1)
		go helper()
	}
	poolMu.Unlock()
}

// helperSpin is how long an idle helper keeps polling for work before it parks. Waking
// a parked goroutine's thread takes 50-200 µs on the VMs we run on, as long as a whole
// 256^3 Sgemm, so helpers stay awake across the short gaps between kernels of a
// training step, as OpenMP runtimes do.
const helperSpin = 200 * time.Microsecond

func helper() {
	for {
		t, ok := pollWork()
		if !ok {
			t = <-work
		}
		t.b.help(t.gen, false)
	}
}

// pollWork polls the work queue for up to helperSpin, yielding the thread between polls.
func pollWork() (pfTask, bool) {
	var start time.Time
	for i := 0; ; i++ {
		select {
		case t := <-work:
			return t, true
		default:
		}
		if i%32 == 0 {
			if i == 0 {
				start = time.Now()
			} else if time.Since(start) > helperSpin {
				return pfTask{}, false
			}
		}
		runtime.Gosched()
	}
}

// pfTask asks a helper to join generation gen of batch b.
type pfTask struct {
	b   *pfBatch
	gen uint32
}

// pfBatch is one ParallelFor call. Chunks are claimed by the caller and by any helper
// told about the batch, so a caller never waits on a chunk nobody has started and nested
// ParallelFor calls cannot deadlock. The batch is reused by later calls as soon as its
// chunks are done; a helper that arrives late sees a newer generation and leaves.
type pfBatch struct {
	body Body
	n    int
	gen  uint32 // owned by the caller between get and put
	// state packs generation (bits 32-63), next chunk to claim (16-31) and chunk count
	// (0-15), so a claim and its generation check are one compare-and-swap.
	state     atomic.Uint64
	remaining atomic.Int32 // chunks not yet finished
	done      chan struct{}
}

// help runs chunks of generation gen until none are left to claim. It reports whether
// this goroutine finished the last chunk; a helper that does so signals done instead.
func (b *pfBatch) help(gen uint32, caller bool) (last bool) {
	for {
		s := b.state.Load()
		next, chunks := int(s>>16&0xffff), int(s&0xffff)
		if uint32(s>>32) != gen || next >= chunks {
			return last
		}
		if !b.state.CompareAndSwap(s, s+1<<16) {
			continue
		}
		lo := next * b.n / chunks
		hi := (next + 1) * b.n / chunks
		b.body.Run(lo, hi)
		if b.remaining.Add(-1) == 0 {
			if caller {
				last = true
			} else {
				b.done <- struct{}{}
			}
		}
	}
}

// ParallelFor splits [0, n) into contiguous ranges, at most Threads() of them and none
// shorter than grain (one range when n < 2*grain), and runs body.Run(lo, hi) on a
// persistent worker pool, returning when all are done. Calls with a pointer Body
// allocate nothing. body may itself call ParallelFor.
func ParallelFor(n, grain int, body Body) {
	if n <= 0 {
		return
	}
	if grain < 1 {
		grain = 1
	}
	chunks := min(Threads(), max(1, n/grain))
	if chunks <= 1 {
		body.Run(0, n)
		return
	}
	ensureWorkers(chunks)
	var b *pfBatch
	select {
	case b = <-freeBatches:
	default:
		b = &pfBatch{done: make(chan struct{}, 1)}
	}
	b.gen++
	b.body, b.n = body, n
	b.remaining.Store(int32(chunks))
	b.state.Store(uint64(b.gen)<<32 | uint64(chunks)) // publishes body and n to helpers
	for i := 1; i < chunks; i++ {
		select {
		case work <- pfTask{b, b.gen}:
		default:
			// Queue full: the caller does that share itself.
		}
	}
	if !b.help(b.gen, true) {
		<-b.done
	}
	b.body = nil
	select {
	case freeBatches <- b:
	default:
	}
}

// ParallelFunc is ParallelFor for code off the hot path; it may allocate the closure.
func ParallelFunc(n, grain int, fn func(lo, hi int)) {
	ParallelFor(n, grain, funcBody(fn))
}
