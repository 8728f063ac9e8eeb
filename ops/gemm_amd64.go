//go:build amd64 && !purego

package ops

import "golang.org/x/sys/cpu"

// Micro-kernels in gemm_amd64.s: C[mr x nr] = alpha * Apanel * Bpanel + beta * C, where
// Apanel is kc columns of mr packed rows and Bpanel is kc rows of nr packed columns.
// ldc is in elements. beta == 0 writes C without reading it.

//go:noescape
func sgemmKernelAVX512(kc int, a, b, c *float32, ldc int, alpha, beta float32)

//go:noescape
func transpose8Pack(dst *float32, w int, src *float32, ld int, blocks int)

//go:noescape
func sgemmKernelAVX512Thin(kc int, a, b, c *float32, ldc int, alpha, beta float32)

//go:noescape
func sgemmKernelAVX2(kc int, a, b, c *float32, ldc int, alpha, beta float32)

var (
	kernelAVX512 = gemmKernel{name: "avx512", mr: 8, nr: 32, fn: sgemmKernelAVX512}
	kernelAVX2   = gemmKernel{name: "avx2", mr: 6, nr: 16, fn: sgemmKernelAVX2}
	// kernelAVX512Thin serves m <= 4 (a conv with 3 output channels), where the 8-row
	// tile would do 8/m times the work.
	kernelAVX512Thin = gemmKernel{name: "avx512thin", mr: 4, nr: 64, fn: sgemmKernelAVX512Thin}
)

// thinKernel returns the kernel for problems with few rows of C, or kern itself.
func thinKernel(kern *gemmKernel, m int) *gemmKernel {
	if kern == &kernelAVX512 && m <= kernelAVX512Thin.mr {
		return &kernelAVX512Thin
	}
	return kern
}

// hasTranspose8 says transpose8 may use the AVX routine; tests turn it off to check the
// portable loop.
var hasTranspose8 = cpu.X86.HasAVX

// transpose8 does dst[(8*q+j)*w + i] = src[i*ld + 8*q + j] for i, j < 8 and q < blocks
// and reports whether it did (false: the caller uses its portable loop).
func transpose8(dst []float32, w int, src []float32, ld, blocks int) bool {
	if !hasTranspose8 || blocks == 0 {
		return false
	}
	_ = dst[(8*blocks-1)*w+7] // bounds, checked once here instead of in the assembly
	_ = src[7*ld+8*blocks-1]
	transpose8Pack(&dst[0], w, &src[0], ld, blocks)
	return true
}

// bestKernel picks the widest kernel this CPU and OS support (x/sys/cpu checks that the
// OS saves the wide registers too).
func bestKernel() *gemmKernel {
	switch {
	case cpu.X86.HasAVX512F:
		return &kernelAVX512
	case cpu.X86.HasAVX2 && cpu.X86.HasFMA:
		return &kernelAVX2
	}
	return &kernelGo
}

// simdKernels lists the kernels this machine can run, for tests.
func simdKernels() []*gemmKernel {
	var ks []*gemmKernel
	if cpu.X86.HasAVX512F {
		ks = append(ks, &kernelAVX512, &kernelAVX512Thin)
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		ks = append(ks, &kernelAVX2)
	}
	return ks
}
