// Package cuda is the GPU backend of wkd's engine (build tag `cuda`): float32 NCHW tensors
// resident on one NVIDIA GPU, convolutions as im2col + cuBLAS SGEMM (gorgonia.org/cu/blas), and
// the rest (elementwise, pads, norms, Haar DWT, losses, Adam) as our own kernels, written in
// CUDA C under kernels/, compiled to PTX by `go generate` (kernels/gen.sh, nvcc), committed,
// embedded in the binary and loaded with gorgonia.org/cu's module API.
//
// Contract, mirroring wkd/ops with explicit buffers instead of a tape (llm.c style):
//   - A Device is opened by one goroutine, which it locks to its OS thread (CUDA contexts are
//     per thread); every call on the Device and its tensors comes from that goroutine.
//   - Forward ops write their output; backward ops ACCUMULATE (+=) into every gradient they are
//     given, and skip a nil one. Callers zero gradients (Device.Zero) between steps.
//   - Shape mismatches panic naming both shapes (programming errors). Driver and cuBLAS errors
//     are sticky: the first one is kept, later calls do nothing, Device.Err/Sync return it.
//   - Results match wkd/ops within 1e-4 relative (max|a-b|/max|b|); reductions sum in a tree,
//     not in wkd/ops' float64 order, and the reflection pad's and instance norm's parameter
//     gradients use atomics (order of at most N or 4 terms varies).
//
// Dimension letters: N batch, C channels in, K channels out, H/W height/width, KH/KW kernel.
//
// Without the tag this package holds only this doc and its errors, so `go build ./...` stays
// CGO_ENABLED=0. Build with: eval "$(bash scripts/cuda-deps.sh)"; go build -tags cuda ./...
//
// gorgonia.org/cu v0.9.6 calls cuInit in its package init and exits the process (status 1,
// "Error in initialization ... NoDevice") when no GPU answers, before any test starts. On a
// machine without a GPU run the tests through ./ops/cuda/gpuexec (go test -exec), which
// reports that exit as a skip; see scripts/device-check.sh for the GPU machine.
package cuda
