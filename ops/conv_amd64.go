//go:build amd64 && !purego

package ops

import "golang.org/x/sys/cpu"

//go:noescape
func convKernelAVX512(kc int, a, b *float32, offs *int, c *float32, ldc int, acc int)

//go:noescape
func convKernelAVX512Thin(kc int, a, b *float32, offs *int, c *float32, ldc int, acc int)

func init() {
	if cpu.X86.HasAVX512F {
		directKernel = &directKern{name: "avx512", mr: 8, nr: 32, fn: convKernelAVX512}
		directThin = &directKern{name: "avx512thin", mr: 4, nr: 64, fn: convKernelAVX512Thin}
	}
}
