//go:build amd64 && !purego

package ops

import "golang.org/x/sys/cpu"

//go:noescape
func fmaLoopAVX512(n int, sum *[16]float32)

//go:noescape
func fmaLoopAVX2(n int, sum *[16]float32)

// fmaLoop runs n iterations of the widest FMA loop this CPU has and returns the FMAs it did,
// as counted by its own accumulators (each FMA adds 1 to one lane); 0 without FMA units.
func fmaLoop(n int) float64 {
	loop := fmaLoopAVX512
	switch {
	case cpu.X86.HasAVX512F:
	case cpu.X86.HasAVX2 && cpu.X86.HasFMA:
		loop = fmaLoopAVX2
	default:
		return 0
	}
	total := 0.0
	for n > 0 {
		var sum [16]float32
		loop(min(n, fmaChunk), &sum)
		n -= fmaChunk
		for _, v := range sum {
			total += float64(v)
		}
	}
	return total
}
