//go:build cudaemu && !cuda

// The kernels of kernels/*.cu compiled for the host (see driver_emu.go): CUDA's qualifiers
// and built-ins are defined away for one thread per block, and each kernel is called through
// a template that unpacks the Go side's 8-byte argument slots by the kernel's own parameter
// types, so a wrong argument count is reported, not guessed.
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <thread>
#include <utility>
#include <vector>

#include "kernels_sum.h"  // rebuilds this file when a kernel changes

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static

// A block is blockDim.x real threads (a persistent pool per width, WKD_THREADS = 256 by
// default), blocks run one after another: __syncthreads is a barrier of the block, a warp
// shuffle a barrier of the warp's threads around a per-warp exchange buffer, atomicAdd a real
// atomic. So the kernels' strided loops, block reductions and atomics run as on a GPU, only
// slower and without blocks in parallel. A narrower pool (wkd_emu_set_width) trades that
// fidelity for speed in tests that compose many kernels.
namespace {
constexpr int kMaxThreads = 256;  // WKD_THREADS in kernels/common.cuh
constexpr int kMaxWarps = kMaxThreads / 32;

struct Dim3 { unsigned x = 0, y = 0, z = 0; };
thread_local Dim3 threadIdx, blockIdx;
Dim3 blockDim{kMaxThreads, 1, 1}, gridDim{1, 1, 1};

struct Pool;
thread_local Pool* pool;  // the pool the calling worker belongs to

struct Pool {
  int width;
  std::barrier<> block_bar, start_bar, done_bar;
  std::vector<std::barrier<>*> warp_bar;
  float shfl_buf[kMaxWarps][32];
  std::function<void()> job;
  int blocks = 0;

  explicit Pool(int w) : width(w), block_bar(w), start_bar(w + 1), done_bar(w + 1) {
    for (int t = 0; t < w; t += 32) warp_bar.push_back(new std::barrier<>(std::min(32, w - t)));
    for (int t = 0; t < w; t++) std::thread(&Pool::worker, this, t).detach();
  }

  // worker runs every block of each job, meeting the others between blocks (shared memory is
  // reused by the next block).
  void worker(unsigned tid) {
    threadIdx.x = tid;
    pool = this;
    for (;;) {
      start_bar.arrive_and_wait();
      for (int b = 0; b < blocks; b++) {
        blockIdx.x = static_cast<unsigned>(b);
        job();
        block_bar.arrive_and_wait();
      }
      done_bar.arrive_and_wait();
    }
  }

  void launch(int nblocks, std::function<void()> fn) {
    job = std::move(fn);
    blocks = nblocks;
    blockDim.x = static_cast<unsigned>(width);
    start_bar.arrive_and_wait();
    done_bar.arrive_and_wait();
  }
};

Pool* pools[kMaxThreads + 1];
int current_width = kMaxThreads;

inline void __syncthreads() { pool->block_bar.arrive_and_wait(); }

inline float __shfl_down_sync(unsigned, float v, int o) {
  unsigned lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int active = std::min(32, pool->width - static_cast<int>(warp) * 32);
  pool->shfl_buf[warp][lane] = v;
  pool->warp_bar[warp]->arrive_and_wait();
  // Past the warp's end CUDA returns v; lanes a narrow pool lacks contribute nothing.
  float r = static_cast<int>(lane) + o < active ? pool->shfl_buf[warp][lane + o] : (lane + o < 32 ? 0.0f : v);
  pool->warp_bar[warp]->arrive_and_wait();  // nobody overwrites the buffer before all have read
  return r;
}

inline float atomicAdd(float* p, float v) { return std::atomic_ref<float>(*p).fetch_add(v); }
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

// run returns 0, or the kernel's parameter count when nargs differs. Launches come from one
// Go goroutine at a time (a Device is single-threaded), so a pool needs no queue.
template <typename... P>
int run(void (*fn)(P...), int blocks, const uint64_t* a, int nargs) {
  if (nargs != static_cast<int>(sizeof...(P))) return static_cast<int>(sizeof...(P));
  Pool*& p = pools[current_width];
  if (!p) p = new Pool(current_width);
  gridDim.x = static_cast<unsigned>(blocks);
  p->launch(blocks, [fn, a] { call(fn, a, std::index_sequence_for<P...>{}); });
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

// wkd_emu_set_width sets the threads per block of later launches (1 to 256).
extern "C" void wkd_emu_set_width(int w) { current_width = std::max(1, std::min(kMaxThreads, w)); }

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
