//go:build cuda || cudaemu

package cuda

import (
	"fmt"
	"math"
	"runtime"
)

// kernel names one __global__ function of kernels/*.cu.
type kernel int

const (
	kFill kernel = iota
	kAdd
	kAxpy
	kScale
	kReLU
	kReLUBwd
	kLeakyReLU
	kLeakyReLUBwd
	kTanh
	kTanhBwd
	kSigmoid
	kSigmoidBwd
	kBiasAdd
	kBiasGrad
	kReflectPad
	kReflectPadBwd
	kZeroPad
	kZeroPadBwd
	kIm2col
	kCol2im
	kInstanceNorm
	kInstanceNormBwd
	kBatchNorm
	kBatchNormRunning
	kBatchNormEval
	kBatchNormBwd
	kHaarAnalysis
	kHaarSynthesis
	kLossPartial
	kLossFinal
	kLossBwd
	kAdam
	numKernels
)

var kernelNames = [numKernels]string{
	kFill: "wkd_fill", kAdd: "wkd_add", kAxpy: "wkd_axpy", kScale: "wkd_scale",
	kReLU: "wkd_relu", kReLUBwd: "wkd_relu_bwd", kLeakyReLU: "wkd_leaky_relu",
	kLeakyReLUBwd: "wkd_leaky_relu_bwd", kTanh: "wkd_tanh", kTanhBwd: "wkd_tanh_bwd",
	kSigmoid: "wkd_sigmoid", kSigmoidBwd: "wkd_sigmoid_bwd", kBiasAdd: "wkd_bias_add",
	kBiasGrad: "wkd_bias_grad", kReflectPad: "wkd_reflect_pad", kReflectPadBwd: "wkd_reflect_pad_bwd",
	kZeroPad: "wkd_zero_pad", kZeroPadBwd: "wkd_zero_pad_bwd", kIm2col: "wkd_im2col",
	kCol2im: "wkd_col2im", kInstanceNorm: "wkd_instance_norm", kInstanceNormBwd: "wkd_instance_norm_bwd",
	kBatchNorm: "wkd_batch_norm", kBatchNormRunning: "wkd_batch_norm_running",
	kBatchNormEval: "wkd_batch_norm_eval", kBatchNormBwd: "wkd_batch_norm_bwd",
	kHaarAnalysis: "wkd_haar_analysis", kHaarSynthesis: "wkd_haar_synthesis",
	kLossPartial: "wkd_loss_partial", kLossFinal: "wkd_loss_final", kLossBwd: "wkd_loss_bwd",
	kAdam: "wkd_adam",
}

const (
	threads = 256 // WKD_THREADS in kernels/common.cuh
	// maxBlocks caps grid-stride launches: enough to fill any current GPU several times.
	maxBlocks = 8192
	// lossBlocks is the number of partial sums of a loss's first pass.
	lossBlocks = 256
)

// Device is one GPU with its context, the loaded kernels and a cuBLAS handle.
type Device struct {
	drv driver
	err error

	// work holds im2col columns (work[0]) and their gradient (work[1]); grown, never shrunk,
	// so steady-state steps allocate nothing.
	work [2]*Tensor
	// partial holds a loss's per-block sums.
	partial *Tensor
}

// Open initializes GPU ordinal (0 for the first), loads the embedded kernels and creates a
// cuBLAS handle. It locks the calling goroutine to its OS thread for the Device's lifetime.
func Open(ordinal int) (*Device, error) {
	n, err := numDevices()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoDevice, err)
	}
	if ordinal < 0 || ordinal >= n {
		return nil, fmt.Errorf("%w: device %d asked, %d present", ErrNoDevice, ordinal, n)
	}
	runtime.LockOSThread()
	d := &Device{}
	if err := d.drv.open(ordinal); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("%w: %v", ErrDriver, err)
	}
	d.partial = d.NewTensor(lossBlocks)
	if d.err != nil {
		d.drv.close()
		runtime.UnlockOSThread()
		return nil, d.err
	}
	return d, nil
}

// Err returns the first error met since Open, if any. Launches are asynchronous: a kernel
// fault shows here only after Sync.
func (d *Device) Err() error { return d.err }

// Sync waits for all queued work and returns the first error met.
func (d *Device) Sync() error {
	if d.err == nil {
		if err := d.drv.sync(); err != nil {
			d.setErr("cuCtxSynchronize", err)
		}
	}
	return d.err
}

// Close waits for queued work and releases the context. Tensors must be freed before.
func (d *Device) Close() error {
	err := d.Sync()
	for _, t := range d.work {
		d.Free(t)
	}
	d.Free(d.partial)
	if rerr := d.drv.close(); rerr != nil && err == nil {
		err = fmt.Errorf("%w: releasing the context: %v", ErrDriver, rerr)
	}
	runtime.UnlockOSThread()
	return err
}

// Name is the GPU's name, for logs and benchmark reports.
func (d *Device) Name() string { return d.drv.name() }

func (d *Device) setErr(call string, err error) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s: %v", ErrDriver, call, err)
	}
}

// Kernel parameters are passed as 8-byte slots: cu's Launch copies 8 bytes from each
// parameter pointer, and the kernel reads the low 4 bytes of an int or float slot.
func ptrArg(t *Tensor) uint64 {
	if t == nil {
		return 0
	}
	return uint64(t.ptr)
}

func intArg(v int) uint64 {
	if v < 0 || v > math.MaxInt32 {
		panic(fmt.Sprintf("cuda: kernel argument %d out of int32 range", v))
	}
	return uint64(v)
}

func floatArg(v float32) uint64 { return uint64(math.Float32bits(v)) }

func boolArg(v bool) uint64 {
	if v {
		return 1
	}
	return 0
}

// launch runs a grid-stride kernel over n elements.
func (d *Device) launch(k kernel, n int, args ...uint64) {
	if n == 0 {
		return
	}
	d.launchBlocks(k, min((n+threads-1)/threads, maxBlocks), args...)
}

// launchBlocks runs kernel k on blocks blocks of 256 threads.
func (d *Device) launchBlocks(k kernel, blocks int, args ...uint64) {
	if d.err != nil || blocks == 0 {
		return
	}
	if err := d.drv.launch(k, blocks, args); err != nil {
		d.setErr("cuLaunchKernel "+kernelNames[k], err)
	}
}
