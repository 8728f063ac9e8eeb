//go:build cudaemu && !cuda

// The kernels of kernels/*.cu compiled for the host (see driver_emu.go): CUDA's qualifiers
// and built-ins are defined away for one thread per block, and each kernel is called through
// a template that unpacks the Go side's 8-byte argument slots by the kernel's own parameter
// types, so a wrong argument count is reported, not guessed.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>

#include "kernels_sum.h"  // rebuilds this file when a kernel changes

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static

namespace {
struct Dim3 { unsigned x = 0, y = 0, z = 0; };
Dim3 threadIdx, blockIdx, blockDim{1, 1, 1}, gridDim{1, 1, 1};

// One thread per block: no other lane to read, so a shuffle contributes nothing.
inline float __shfl_down_sync(unsigned, float, int) { return 0.0f; }
inline void __syncthreads() {}
inline float atomicAdd(float* p, float v) { float old = *p; *p += v; return old; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
}  // namespace

#include "kernels/adam.cu"
#include "kernels/conv.cu"
#include "kernels/dwt.cu"
#include "kernels/elementwise.cu"
#include "kernels/loss.cu"
#include "kernels/norm.cu"

namespace {
template <typename T> T slot(uint64_t v);
template <> float* slot<float*>(uint64_t v) { return reinterpret_cast<float*>(static_cast<uintptr_t>(v)); }
template <> const float* slot<const float*>(uint64_t v) { return reinterpret_cast<const float*>(static_cast<uintptr_t>(v)); }
template <> int slot<int>(uint64_t v) { return static_cast<int>(static_cast<uint32_t>(v)); }
template <> float slot<float>(uint64_t v) {
  uint32_t u = static_cast<uint32_t>(v);
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

template <typename... P, size_t... I>
void call(void (*fn)(P...), const uint64_t* a, std::index_sequence<I...>) { fn(slot<P>(a[I])...); }

// run returns 0, or the kernel's parameter count when nargs differs.
template <typename... P>
int run(void (*fn)(P...), int blocks, const uint64_t* a, int nargs) {
  if (nargs != static_cast<int>(sizeof...(P))) return static_cast<int>(sizeof...(P));
  gridDim.x = static_cast<unsigned>(blocks);
  for (int b = 0; b < blocks; b++) {
    blockIdx.x = static_cast<unsigned>(b);
    call(fn, a, std::index_sequence_for<P...>{});
  }
  return 0;
}

struct Entry { const char* name; int (*fn)(int, const uint64_t*, int); };
#define K(f) {#f, [](int g, const uint64_t* a, int n) { return run(f, g, a, n); }}
const Entry table[] = {
    K(wkd_fill), K(wkd_add), K(wkd_axpy), K(wkd_scale), K(wkd_relu), K(wkd_relu_bwd), K(wkd_leaky_relu),
    K(wkd_leaky_relu_bwd), K(wkd_tanh), K(wkd_tanh_bwd), K(wkd_sigmoid), K(wkd_sigmoid_bwd), K(wkd_bias_add),
    K(wkd_bias_grad), K(wkd_reflect_pad), K(wkd_reflect_pad_bwd), K(wkd_zero_pad), K(wkd_zero_pad_bwd),
    K(wkd_im2col), K(wkd_col2im), K(wkd_instance_norm), K(wkd_instance_norm_bwd), K(wkd_batch_norm),
    K(wkd_batch_norm_running), K(wkd_batch_norm_eval), K(wkd_batch_norm_bwd), K(wkd_haar_analysis),
    K(wkd_haar_synthesis), K(wkd_loss_partial), K(wkd_loss_final), K(wkd_loss_bwd), K(wkd_adam),
};
#undef K
}  // namespace

extern "C" int wkd_emu_launch(const char* name, int blocks, const uint64_t* args, int nargs) {
  for (const Entry& e : table)
    if (std::strcmp(e.name, name) == 0) return e.fn(blocks, args, nargs);
  return -1;
}

// cublasSgemm's contract, column-major: C (m x n) = alpha*op(A)*op(B) + beta*C; beta = 0
// does not read C.
extern "C" void wkd_emu_sgemm(int ta, int tb, int m, int n, int k, float alpha, const float* a, int lda,
                              const float* b, int ldb, float beta, float* c, int ldc) {
  for (int j = 0; j < n; j++)
    for (int i = 0; i < m; i++) {
      double s = 0;
      for (int l = 0; l < k; l++) {
        float av = ta ? a[l + (size_t)i * lda] : a[i + (size_t)l * lda];
        float bv = tb ? b[j + (size_t)l * ldb] : b[l + (size_t)j * ldb];
        s += (double)av * bv;
      }
      float* cij = &c[i + (size_t)j * ldc];
      *cij = (float)(alpha * s) + (beta == 0.0f ? 0.0f : beta * *cij);
    }
}
