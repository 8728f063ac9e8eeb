// Package cuda is the GPU backend of wkd's engine (build tag `cuda`): float32 NCHW tensors
// resident on one NVIDIA GPU, convolutions as im2col + cuBLAS SGEMM (gorgonia.org/cu/blas), and
// the rest (elementwise, pads, norms, Haar DWT, losses, Adam) as our own kernels, written in
// CUDA C under kernels/, compiled to PTX by `go generate` (kernels/gen.sh runs nvcc), committed,
// embedded in the binary and loaded with gorgonia.org/cu's module API.
//
// Contract, mirroring wkd/ops with explicit buffers instead of a tape (llm.c style):
//   - A Device is opened by one goroutine, which it locks to its OS thread (CUDA contexts are
//     per thread); every call on the Device and its tensors comes from that goroutine.
//   - Forward ops write their output; backward ops ACCUMULATE (+=) into every gradient they are
//     given and skip a nil one. Callers zero gradients (Device.Zero) between steps.
//   - Shape mismatches panic naming both shapes (programming errors). Driver and cuBLAS errors
//     are sticky: the first one is kept, later calls do nothing, Device.Err and Sync return it.
//   - Results match wkd/ops within 1e-4 relative (max|a-b|/max|b|), checked per kernel by the
//     parity tests. Summation order differs from wkd/ops' float64 sums: reductions (norm
//     statistics, bias and loss sums) add float32 in a tree, SGEMM in cuBLAS's order, and the
//     reflection pad's backward and instance norm's dgamma/dbeta add with atomics (at most 4
//     and N terms, in no fixed order).
//   - Gradient buckets (NewBucket) are one device allocation with a pinned host mirror, moved
//     in one copy each way, for the all-reduce.
//   - Device.Backend is the same Device as a wkd/ops Device (backend.go): ops' tensors, tape
//     and models run on it. The package registers it as "cuda" (ops.OpenDevice), so importing
//     it is what gives a binary `--device cuda`.
//
// Dimension letters: N batch, C channels in, K channels out, H/W height/width, KH/KW kernel.
//
// Builds:
//   - no tag: only this doc, the errors and the kernel fingerprint test (CGO_ENABLED=0 stays).
//   - cuda: the real backend; eval "$(bash scripts/cuda-deps.sh)" provides headers and
//     libraries on a machine without CUDA.
//   - cudaemu: the same Go code and kernel sources on a host emulator (driver_emu.go, emu.cc,
//     needs only g++), so the parity tests check the kernels' arithmetic and argument lists on
//     any machine. It cannot show what only a GPU shows (warp shuffles, inter-block races, PTX
//     loading): scripts/device-check.sh runs the tests on a GPU.
//
// gorgonia.org/cu v0.9.6 calls cuInit in its package init and exits the process (status 1,
// "Error in initialization ... NoDevice") when no GPU answers, before any test can skip. Run
// `-tags cuda` tests on GPU-less machines with `go test -exec` and ./ops/cuda/gpuexec, which
// reports that exit as a skip.
package cuda
