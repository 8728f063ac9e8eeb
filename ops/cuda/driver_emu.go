//go:build cudaemu && !cuda

package cuda

// #cgo CXXFLAGS: -std=c++20 -O2
// #cgo LDFLAGS: -lpthread
// #include <stdint.h>
// #include <stdlib.h>
// void wkd_emu_set_width(int w);
// int wkd_emu_launch(const char* name, int blocks, const uint64_t* args, int nargs);
// void wkd_emu_sgemm(int ta, int tb, int m, int n, int k, float alpha, const float* a, int lda,
//                    const float* b, int ldb, float beta, float* c, int ldc);
import "C"

import (
	"fmt"
	"unsafe"
)

// The host emulator behind the driver seam (build tag cudaemu, no CUDA needed): the kernels of
// kernels/*.cu compiled as C++ (emu.cc), each block run by 256 real threads with barriers for
// __syncthreads and warp shuffles, blocks one after another; "device" memory from malloc, and
// a plain column-major SGEMM standing in for cuBLAS. It checks the kernels' arithmetic, their
// strided loops and block reductions, the argument lists, the GEMM orientation and the Go side
// on any machine. It cannot show what only a GPU shows (blocks racing each other, the memory
// model, PTX loading, cuBLAS itself): scripts/device-check.sh runs the same tests on a GPU.

type devPtr uintptr

// emulated tells tests to keep sizes small.
const emulated = true

type driver struct{}

func numDevices() (int, error) { return 1, nil }

func (v *driver) open(int) error { return nil }
func (v *driver) close() error   { return nil }
func (v *driver) name() string   { return "host emulator (cudaemu)" }
func (v *driver) sync() error    { return nil }

func (v *driver) alloc(bytes int) (devPtr, error) {
	p := C.malloc(C.size_t(bytes))
	if p == nil {
		return 0, fmt.Errorf("out of memory allocating %d bytes", bytes)
	}
	return devPtr(uintptr(p)), nil
}

// ptr turns an emulated device address back into a host pointer. The memory is C's, never
// Go's, so the garbage collector has nothing to track.
func (p devPtr) ptr() unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(&p)) }

func (v *driver) free(p devPtr) error { C.free(p.ptr()); return nil }

func (v *driver) zero(p devPtr, n int) error {
	clear(unsafe.Slice((*float32)(p.ptr()), n))
	return nil
}

func (v *driver) dtod(dst, src devPtr, bytes int) error {
	copy(unsafe.Slice((*byte)(dst.ptr()), bytes), unsafe.Slice((*byte)(src.ptr()), bytes))
	return nil
}

func (v *driver) htod(dst devPtr, src unsafe.Pointer, bytes int) error {
	copy(unsafe.Slice((*byte)(dst.ptr()), bytes), unsafe.Slice((*byte)(src), bytes))
	return nil
}

func (v *driver) dtoh(dst unsafe.Pointer, src devPtr, bytes int) error {
	copy(unsafe.Slice((*byte)(dst), bytes), unsafe.Slice((*byte)(src.ptr()), bytes))
	return nil
}

func (v *driver) hostAlloc(bytes int) (unsafe.Pointer, error) {
	p, err := v.alloc(bytes)
	return p.ptr(), err
}

func (v *driver) hostFree(p unsafe.Pointer) error { C.free(p); return nil }

func (v *driver) launch(k kernel, blocks int, args []uint64) error {
	name := C.CString(kernelNames[k])
	defer C.free(unsafe.Pointer(name))
	var a *C.uint64_t
	if len(args) > 0 {
		a = (*C.uint64_t)(unsafe.Pointer(&args[0]))
	}
	switch r := C.wkd_emu_launch(name, C.int(blocks), a, C.int(len(args))); r {
	case 0:
		return nil
	case -1:
		return fmt.Errorf("kernel %s not in the emulator", kernelNames[k])
	default:
		return fmt.Errorf("kernel %s takes %d arguments, got %d", kernelNames[k], int(r), len(args))
	}
}

func (v *driver) sgemm(transA, transB bool, m, n, k int, alpha float32, a devPtr, lda int, b devPtr, ldb int,
	beta float32, c devPtr, ldc int) error {
	C.wkd_emu_sgemm(cbool(transA), cbool(transB), C.int(m), C.int(n), C.int(k), C.float(alpha),
		(*C.float)(a.ptr()), C.int(lda), (*C.float)(b.ptr()), C.int(ldb), C.float(beta), (*C.float)(c.ptr()), C.int(ldc))
	return nil
}

// setEmuBlockWidth sets the emulator's threads per block (256, the GPU's, by default); a test
// composing thousands of launches uses 1 to stay fast.
func setEmuBlockWidth(w int) { C.wkd_emu_set_width(C.int(w)) }

func cbool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}
