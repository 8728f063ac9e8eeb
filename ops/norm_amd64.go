//go:build amd64 && !purego

package ops

import "golang.org/x/sys/cpu"

//go:noescape
func affineAVX512(y, x *float32, n int, s, t float32, relu int)

//go:noescape
func momentsAVX512(x *float32, n int, shift float64, acc *[32]float64)

func init() {
	if cpu.X86.HasAVX512F {
		affineVec, momentsVec = affineAVX512, momentsAVX512
	}
}
