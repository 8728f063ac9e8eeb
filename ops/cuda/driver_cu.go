//go:build cuda

package cuda

// #include <cuda.h>
// #cgo LDFLAGS: -lcuda
import "C"

import (
	"fmt"
	"io/fs"
	"sort"
	"unsafe"

	"gonum.org/v1/gonum/blas"
	"gorgonia.org/cu"
	cublas "gorgonia.org/cu/blas"
)

// The driver seam: what Device needs from CUDA, here through gorgonia.org/cu and cu/blas (the
// cudaemu build swaps in a host emulator, driver_emu.go, for checks on machines without a GPU).

// devPtr is a device address.
type devPtr uintptr

// emulated is true in the cudaemu build.
const emulated = false

// setEmuBlockWidth is the emulator's knob; a GPU's blocks are always 256 threads here.
func setEmuBlockWidth(int) {}

type driver struct {
	dev  cu.Device
	ctx  cu.CUContext
	blas *cublas.Standard
	fn   [numKernels]cu.Function
}

func numDevices() (int, error) { return cu.NumDevices() }

func (v *driver) open(ordinal int) error {
	var err error
	if v.dev, err = cu.GetDevice(ordinal); err != nil {
		return fmt.Errorf("cuDeviceGet: %w", err)
	}
	// The primary context is the one the CUDA runtime (and so cuBLAS) uses too.
	if v.ctx, err = v.dev.RetainPrimaryCtx(); err != nil {
		return fmt.Errorf("cuDevicePrimaryCtxRetain: %w", err)
	}
	if err = cu.SetCurrentContext(v.ctx); err != nil {
		v.dev.ReleasePrimaryCtx()
		return fmt.Errorf("cuCtxSetCurrent: %w", err)
	}
	if err = v.loadKernels(); err != nil {
		v.dev.ReleasePrimaryCtx()
		return err
	}
	if v.blas, err = newBLAS(); err != nil {
		v.dev.ReleasePrimaryCtx()
		return fmt.Errorf("cublasCreate: %w", err)
	}
	return nil
}

func newBLAS() (b *cublas.Standard, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	return cublas.New(), nil
}

// loadKernels loads every embedded PTX module and finds every kernel in one of them.
func (v *driver) loadKernels() error {
	names, err := fs.Glob(ptxFiles, "kernels/*.ptx")
	if err != nil || len(names) == 0 {
		return fmt.Errorf("no embedded PTX (run go generate -tags cuda ./ops/cuda/): %v", err)
	}
	sort.Strings(names)
	var mods []cu.Module
	for _, name := range names {
		src, err := ptxFiles.ReadFile(name)
		if err != nil {
			return err
		}
		m, err := cu.LoadData(string(src))
		if err != nil {
			return fmt.Errorf("cuModuleLoadData %s: %w", name, err)
		}
		mods = append(mods, m)
	}
	for k, name := range kernelNames {
		found := false
		for _, m := range mods {
			if f, err := m.Function(name); err == nil {
				v.fn[k], found = f, true
				break
			}
		}
		if !found {
			return fmt.Errorf("kernel %s is in no PTX module (regenerate with go generate)", name)
		}
	}
	return nil
}

func (v *driver) close() error {
	berr := v.blas.Close()
	if err := v.dev.ReleasePrimaryCtx(); err != nil {
		return err
	}
	if berr != nil {
		return fmt.Errorf("cublasDestroy: %w", berr)
	}
	return nil
}

func (v *driver) name() string {
	name, err := v.dev.Name()
	if err != nil {
		return "unknown GPU"
	}
	return name
}

func (v *driver) sync() error { return cu.Synchronize() }

func (v *driver) alloc(bytes int) (devPtr, error) {
	p, err := cu.MemAlloc(int64(bytes))
	return devPtr(p), err
}

func (v *driver) free(p devPtr) error        { return cu.MemFree(cu.DevicePtr(p)) }
func (v *driver) zero(p devPtr, n int) error { return cu.MemsetD32(cu.DevicePtr(p), 0, int64(n)) }
func (v *driver) dtod(dst, src devPtr, b int) error {
	return cu.MemcpyDtoD(cu.DevicePtr(dst), cu.DevicePtr(src), int64(b))
}

func (v *driver) htod(dst devPtr, src unsafe.Pointer, bytes int) error {
	return cu.MemcpyHtoD(cu.DevicePtr(dst), src, int64(bytes))
}

func (v *driver) dtoh(dst unsafe.Pointer, src devPtr, bytes int) error {
	return cu.MemcpyDtoH(dst, cu.DevicePtr(src), int64(bytes))
}

// hostAlloc returns page-locked host memory (cu v0.9.6 wraps only its release).
func (v *driver) hostAlloc(bytes int) (unsafe.Pointer, error) {
	var p unsafe.Pointer
	if r := C.cuMemHostAlloc(&p, C.size_t(bytes), 0); r != C.CUDA_SUCCESS {
		return nil, fmt.Errorf("cuMemHostAlloc %d bytes: CUresult %d", bytes, int(r))
	}
	return p, nil
}

func (v *driver) hostFree(p unsafe.Pointer) error { return cu.MemFreeHost(p) }

// launch runs kernel k on blocks blocks of 256 threads. cu's Launch copies 8 bytes from each
// parameter pointer, hence the 8-byte slots.
func (v *driver) launch(k kernel, blocks int, args []uint64) error {
	params := make([]unsafe.Pointer, len(args))
	for i := range args {
		params[i] = unsafe.Pointer(&args[i])
	}
	return v.fn[k].Launch(blocks, 1, 1, threads, 1, 1, 0, cu.NoStream, params)
}

// sgemm is cublasSgemm: COLUMN-major C = alpha*op(A)*op(B) + beta*C, C: m x n.
func (v *driver) sgemm(transA, transB bool, m, n, k int, alpha float32, a devPtr, lda int, b devPtr, ldb int,
	beta float32, c devPtr, ldc int) error {
	v.blas.Sgemm(trans(transA), trans(transB), m, n, k, alpha, devSlice(a), lda, devSlice(b), ldb, beta, devSlice(c), ldc)
	return v.blas.Err()
}

func trans(t bool) blas.Transpose {
	if t {
		return blas.Trans
	}
	return blas.NoTrans
}

// devSlice dresses a device address as the one-element []float32 that cu/blas takes (it only
// passes &s[0] on to cuBLAS). The address is never dereferenced on the host.
func devSlice(p devPtr) []float32 {
	return unsafe.Slice((*float32)(*(*unsafe.Pointer)(unsafe.Pointer(&p))), 1)
}

// Ptr is t's device address, for callers that hand it to other CUDA libraries.
func (t *Tensor) Ptr() cu.DevicePtr { return cu.DevicePtr(t.ptr) }
