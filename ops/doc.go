// Package ops holds wkd's tensors, its define-by-run autodiff tape and every kernel.
//
// Dimension letters used in shape comments throughout:
//
//	N  batch            C  channels          H, W  height, width
//	K  output channels  KH, KW  kernel size  M, Nn, Kk  GEMM sizes
//
// Tensors are float32, row-major, images in NCHW. Each op is a function that computes its forward
// and, when the tape records, pushes a node whose backward sits beside it in the same file.
//
// The one rule for gradients: every backward ACCUMULATES into the gradients of its inputs
// (g += ...), for parameters and intermediates alike, so two backward passes give twice the
// gradient. Optimizers zero parameter gradients explicitly.
//
// Ops on tensors of mismatched shapes panic with both shapes named (a programming error, as in
// model construction); errors are returned only at I/O boundaries.
//
// Memory: ops draw their outputs from the Tape's Arena. An arena hands out the same buffers in
// the same order every step, so a training step allocates nothing once warm. A nil *Tape is
// allowed everywhere: outputs are then ordinary heap tensors and nothing is recorded.
//
// Devices (device.go): a tensor lives on the host (Data, Grad) or on a Device, a backend that
// registers itself by name (wkd/ops/cuda registers "cuda"; ops imports no backend). Every op
// dispatches on its inputs: host tensors take this package's CPU kernels, unchanged; device
// tensors take the Device's kernels (device_ops.go), with outputs from the same Tape's arena and
// backward recorded on the same Tape, under the same accumulation rule. Operands in different
// places panic; moving data is explicit (MoveTo, CopyFromHost, CopyToHost, HostData).
package ops
