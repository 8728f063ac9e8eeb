//go:build !amd64 || purego

package ops

// No vector loops for the norms in this build.
var hasNormVec = false

func affineVec(y, x *float32, n int, s, t float32, relu int) { panic("ops: no vector loops") }

func momentsVec(x *float32, n int, shift float64, acc *[32]float64) {
	panic("ops: no vector loops")
}
