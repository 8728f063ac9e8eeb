// Shared helpers for wkd's CUDA kernels. Every kernel is extern "C" so the Go side finds it by
// its plain name, indexes with int (tensors here stay below 2^31 elements), and launches with
// 256 threads per block; parameters are device pointers, ints and floats.
#pragma once

#define WKD_THREADS 256

// block_sum returns the sum of v over the block to every thread. Every thread of the block
// must call it (it synchronizes); blocks are at most WKD_THREADS wide.
__device__ __forceinline__ float block_sum(float v) {
  __shared__ float warp_sums[WKD_THREADS / 32];
  __shared__ float total;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // a previous call's readers are done with warp_sums and total
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < ((blockDim.x + 31) >> 5) ? warp_sums[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    if (lane == 0) total = v;
  }
  __syncthreads();
  return total;
}

#define GRID_STRIDE(i, n) \
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += blockDim.x * gridDim.x)
