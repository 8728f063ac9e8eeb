//go:build cudaemu && !cuda

// The kernels of kernels/*.cu compiled for the host (see driver_emu.go): CUDA's qualifiers
// and built-ins are defined away for one thread per block, and each kernel is called through
// a template that unpacks the Go side's 8-byte argument slots by the kernel's own parameter
// types, so a wrong argument count is reported, not guessed.
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

// A block is WKD_THREADS real threads (a persistent pool), run one block after another:
// __syncthreads is a barrier of the block, a warp shuffle a barrier of the warp's 32 threads
// around a per-warp exchange buffer, atomicAdd a real atomic. So the kernels' strided loops,
// reductions and atomics run as they do on a GPU, only slower and without blocks in parallel.
namespace {
constexpr int kThreads = 256;  // WKD_THREADS in kernels/common.cuh, the Go side's block size
constexpr int kWarps = kThreads / 32;

struct Dim3 { unsigned x = 0, y = 0, z = 0; };
thread_local Dim3 threadIdx, blockIdx;
Dim3 blockDim{kThreads, 1, 1}, gridDim{1, 1, 1};

std::barrier<>* block_bar;
std::barrier<>* warp_bar[kWarps];
float shfl_buf[kWarps][32];

inline void __syncthreads() { block_bar->arrive_and_wait(); }

inline float __shfl_down_sync(unsigned, float v, int o) {
  unsigned lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  shfl_buf[warp][lane] = v;
  warp_bar[warp]->arrive_and_wait();
  float r = lane + o < 32 ? shfl_buf[warp][lane + o] : v;
  warp_bar[warp]->arrive_and_wait();  // nobody overwrites the buffer before all have read
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

// The pool: the launching thread publishes a job and waits at `done`; each worker runs every
// block of it, meeting the others at a block barrier between blocks (shared memory is reused).
std::function<void()> job;
int job_blocks;
std::barrier<>* start_bar;
std::barrier<>* done_bar;

void worker(unsigned tid) {
  threadIdx.x = tid;
  for (;;) {
    start_bar->arrive_and_wait();
    for (int b = 0; b < job_blocks; b++) {
      blockIdx.x = static_cast<unsigned>(b);
      job();
      block_bar->arrive_and_wait();
    }
    done_bar->arrive_and_wait();
  }
}

void start_pool() {
  static bool started = false;
  if (started) return;
  started = true;
  block_bar = new std::barrier<>(kThreads);
  for (auto& w : warp_bar) w = new std::barrier<>(32);
  start_bar = new std::barrier<>(kThreads + 1);
  done_bar = new std::barrier<>(kThreads + 1);
  for (unsigned t = 0; t < kThreads; t++) std::thread(worker, t).detach();
}

// run returns 0, or the kernel's parameter count when nargs differs. Launches come from one
// Go goroutine at a time (a Device is single-threaded), so the pool needs no queue.
template <typename... P>
int run(void (*fn)(P...), int blocks, const uint64_t* a, int nargs) {
  if (nargs != static_cast<int>(sizeof...(P))) return static_cast<int>(sizeof...(P));
  start_pool();
  gridDim.x = static_cast<unsigned>(blocks);
  job = [fn, a] { call(fn, a, std::index_sequence_for<P...>{}); };
  job_blocks = blocks;
  start_bar->arrive_and_wait();
  done_bar->arrive_and_wait();
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
