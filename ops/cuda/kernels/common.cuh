// Shared helpers for wkd's CUDA kernels. Every kernel is extern "C" so the Go side finds it by
// its plain name, indexes with int (tensors here stay below 2^31 elements), and launches with
// 256 threads per block; parameters are device pointers, ints and floats.
#pragma once

#define WKD_THREADS 256

// block_sum returns the sum of v over the block to every thread. Blocks are WKD_THREADS wide.
__device__ __forceinline__ float block_sum(float v) {
  __shared__ float warp_sums[WKD_THREADS / 32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // warp_sums may still be read by a previous call
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  v = lane < ((blockDim.x + 31) >> 5) ? warp_sums[lane] : 0.0f;
  if (warp == 0) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    if (lane == 0) warp_sums[0] = v;
  }
  __syncthreads();
  return warp_sums[0];
}

#define GRID_STRIDE(i, n) \
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += blockDim.x * gridDim.x)
