package ops

import (
	"testing"
	"time"
)

// TestFMALoop: the loop does 12 FMAs per lane and iteration, on all 16 lanes (AVX-512) or 8
// (AVX2), as its accumulators show.
func TestFMALoop(t *testing.T) {
	lanes := fmaLoop(1) / 12
	if lanes == 0 {
		t.Skip("no vector FMA loop in this build or on this CPU")
	}
	if lanes != 8 && lanes != 16 {
		t.Fatalf("one iteration did %v FMAs, want 12 per lane of 8 or 16 lanes", 12*lanes)
	}
	for _, n := range []int{7, 1000, fmaChunk, 20 << 20} { // 20 Mi: past float32's exact counting
		if got := fmaLoop(n); got != 12*lanes*float64(n) {
			t.Errorf("fmaLoop(%d) counted %v FMAs, want %v", n, got, 12*lanes*float64(n))
		}
	}
}

// TestFMAPeak: the measured peak is at least what a matrix product reaches on one thread (a
// product of the same FMAs with loads in between cannot beat the loop).
func TestFMAPeak(t *testing.T) {
	if fmaLoop(1) == 0 {
		t.Skip("no vector FMA loop in this build or on this CPU")
	}
	defer SetThreads(Threads())
	SetThreads(1)
	// The best of several short tries each, taken in turns, so that other processes on the
	// machine slow neither side more than the other.
	one, gemm := 0.0, 0.0
	for range 5 {
		one = max(one, FMAPeakGFLOPS(1, 50*time.Millisecond))
		gemm = max(gemm, SgemmGFLOPS(256, 256, 256, 3))
	}
	if one < 0.8*gemm {
		t.Errorf("FMA peak on one thread %.1f GFLOP/s, below SGEMM's %.1f", one, gemm)
	}
	t.Logf("FMA peak: %.1f GFLOP/s on one thread (SGEMM 256^3: %.1f)", one, gemm)
}
