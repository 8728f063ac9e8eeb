//go:build cuda

package cuda

import "embed"

// PTX for compute_80 (A100, H100, H200 JIT it at load), generated from kernels/*.cu.
//
//go:generate bash kernels/gen.sh
//go:embed kernels/*.ptx
var ptxFiles embed.FS
