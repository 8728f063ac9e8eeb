//go:build !amd64 || purego

package ops

// fmaLoop has no vector FMA loop in this build: it does nothing.
func fmaLoop(n int) float64 { return 0 }
