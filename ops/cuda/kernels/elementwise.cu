// Elementwise ops and their backward passes. Backward kernels ACCUMULATE (dx += ...), the
// project's gradient rule. y is the forward output where the derivative is cheaper from it.
#include "common.cuh"

extern "C" __global__ void wkd_fill(float* out, float v, int n) {
  GRID_STRIDE(i, n) out[i] = v;
}

// out = a + b
extern "C" __global__ void wkd_add(float* out, const float* a, const float* b, int n) {
  GRID_STRIDE(i, n) out[i] = a[i] + b[i];
}

// y += alpha * x (gradient accumulation, residual backward, Scale backward)
extern "C" __global__ void wkd_axpy(float* y, const float* x, float alpha, int n) {
  GRID_STRIDE(i, n) y[i] += alpha * x[i];
}

// out = s * x
extern "C" __global__ void wkd_scale(float* out, const float* x, float s, int n) {
  GRID_STRIDE(i, n) out[i] = s * x[i];
}

extern "C" __global__ void wkd_relu(float* y, const float* x, int n) {
  GRID_STRIDE(i, n) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

extern "C" __global__ void wkd_relu_bwd(float* dx, const float* dy, const float* y, int n) {
  GRID_STRIDE(i, n) if (y[i] > 0.0f) dx[i] += dy[i];
}

extern "C" __global__ void wkd_leaky_relu(float* y, const float* x, float slope, int n) {
  GRID_STRIDE(i, n) y[i] = x[i] > 0.0f ? x[i] : slope * x[i];
}

extern "C" __global__ void wkd_leaky_relu_bwd(float* dx, const float* dy, const float* x, float slope, int n) {
  GRID_STRIDE(i, n) dx[i] += x[i] > 0.0f ? dy[i] : slope * dy[i];
}

extern "C" __global__ void wkd_tanh(float* y, const float* x, int n) {
  GRID_STRIDE(i, n) y[i] = tanhf(x[i]);
}

extern "C" __global__ void wkd_tanh_bwd(float* dx, const float* dy, const float* y, int n) {
  GRID_STRIDE(i, n) dx[i] += dy[i] * (1.0f - y[i] * y[i]);
}

__device__ __forceinline__ float sigmoidf(float x) {
  // Stable on both tails: exp of a non-positive number only.
  if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
  float e = expf(x);
  return e / (1.0f + e);
}

extern "C" __global__ void wkd_sigmoid(float* y, const float* x, int n) {
  GRID_STRIDE(i, n) y[i] = sigmoidf(x[i]);
}

extern "C" __global__ void wkd_sigmoid_bwd(float* dx, const float* dy, const float* y, int n) {
  GRID_STRIDE(i, n) dx[i] += dy[i] * y[i] * (1.0f - y[i]);
}

// out (N, C, HW) += b[c]
extern "C" __global__ void wkd_bias_add(float* out, const float* b, int c, int hw, int n) {
  GRID_STRIDE(i, n) out[i] += b[(i / hw) % c];
}

// db[c] += sum over N and HW of dy (N, C, HW); one block per channel.
extern "C" __global__ void wkd_bias_grad(float* db, const float* dy, int nb, int c, int hw) {
  int ch = blockIdx.x;
  float s = 0.0f;
  for (int i = threadIdx.x; i < nb * hw; i += blockDim.x) {
    int b = i / hw, p = i - b * hw;
    s += dy[(b * c + ch) * hw + p];
  }
  s = block_sum(s);
  if (threadIdx.x == 0) db[ch] += s;
}
