//go:build !amd64 || purego

package ops

func bestKernel() *gemmKernel { return &kernelGo }

func thinKernel(kern *gemmKernel, m int) *gemmKernel { return kern }

// simdKernels lists the kernels this machine can run, for tests: none in this build.
func simdKernels() []*gemmKernel { return nil }

var hasTranspose8 = false

func transpose8(dst []float32, w int, src []float32, ld, blocks int) bool { return false }
