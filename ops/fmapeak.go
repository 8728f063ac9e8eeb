package ops

import (
	"runtime"
	"sync"
	"time"
)

// fmaChunk bounds the iterations of one call of the loop: each lane counts to it in float32,
// exactly while below 2^24.
const fmaChunk = 1 << 20

// FMAPeakGFLOPS measures the machine's peak single-precision rate on threads cores: each runs a
// loop of independent vector FMAs for about d, all at once; the best of three tries is
// returned, in GFLOP/s (an FMA counts two). It returns 0 where this build has no such loop.
func FMAPeakGFLOPS(threads int, d time.Duration) float64 {
	threads = max(threads, 1)
	if fmaLoop(1) == 0 {
		return 0
	}
	// Iterations that take about d on one core.
	n := 1 << 16
	for {
		t0 := time.Now()
		fmaLoop(n)
		if el := time.Since(t0); el > d/10 || n > 1<<30 {
			n = int(float64(n) * float64(d) / float64(max(el, time.Microsecond)))
			break
		}
		n *= 4
	}
	best := 0.0
	for range 3 {
		var wg sync.WaitGroup
		var mu sync.Mutex
		total := 0.0
		start := make(chan struct{})
		for range threads {
			wg.Go(func() {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				<-start
				fmas := fmaLoop(n)
				mu.Lock()
				total += 2 * fmas
				mu.Unlock()
			})
		}
		t0 := time.Now()
		close(start)
		wg.Wait()
		best = max(best, total/time.Since(t0).Seconds()/1e9)
	}
	return best
}
