//go:build amd64 && !purego

package ops

import "golang.org/x/sys/cpu"

//go:noescape
func convKernelAVX512(kc int, a, b *float32, offs *int, c *float32, ldc int, acc int)

func init() {
	if cpu.X86.HasAVX512F {
		directKernel = convKernelAVX512
	}
}
