//go:build amd64 && !purego

package ops

import "golang.org/x/sys/cpu"

//go:noescape
func affineAVX512(y, x *float32, n int, s, t float32, relu int)

//go:noescape
func momentsAVX512(x *float32, n int, shift float64, acc *[32]float64)

// hasNormVec says the norms may use their vector loops; tests turn it off to check the Go
// loops.
var hasNormVec = cpu.X86.HasAVX512F

// affineVec writes y = x*s + t, rectified when relu != 0; n is a multiple of 16.
func affineVec(y, x *float32, n int, s, t float32, relu int) { affineAVX512(y, x, n, s, t, relu) }

// momentsVec sums x - shift and its square in float64 over 16 lanes; n is a multiple of 16.
func momentsVec(x *float32, n int, shift float64, acc *[32]float64) {
	momentsAVX512(x, n, shift, acc)
}
