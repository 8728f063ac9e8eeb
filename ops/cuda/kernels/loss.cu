// Mean-reduced losses (L1, MSE, BCE with logits) as two deterministic passes: per-block
// partial sums, then one block sums the partials. y null means the constant target.
#include "common.cuh"

#define LOSS_L1 0
#define LOSS_MSE 1
#define LOSS_BCE 2

__device__ __forceinline__ float loss_term(int kind, float x, float y) {
  float d = x - y;
  switch (kind) {
    case LOSS_L1: return fabsf(d);
    case LOSS_MSE: return d * d;
    default: return fmaxf(x, 0.0f) - x * y + log1pf(expf(-fabsf(x)));
  }
}

extern "C" __global__ void wkd_loss_partial(float* partial, const float* x, const float* y, float target,
                                            int kind, int n) {
  float s = 0.0f;
  GRID_STRIDE(i, n) s += loss_term(kind, x[i], y ? y[i] : target);
  s = block_sum(s);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// out[0] = scale * sum(partial[0:m]); one block.
extern "C" __global__ void wkd_loss_final(float* out, const float* partial, int m, float scale) {
  float s = 0.0f;
  for (int i = threadIdx.x; i < m; i += blockDim.x) s += partial[i];
  s = block_sum(s);
  if (threadIdx.x == 0) out[0] = s * scale;
}

__device__ __forceinline__ float sigm(float x) {
  if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
  float e = expf(x);
  return e / (1.0f + e);
}

// dst += (dloss[0] / n) * d term / d(x or y); wrt 0 = x, 1 = y. dloss is the upstream gradient
// of the scalar loss, on the device, so no host round trip sits between forward and backward.
extern "C" __global__ void wkd_loss_bwd(float* dst, const float* dloss, const float* x, const float* y,
                                        float target, int kind, int wrt, int n) {
  float s = dloss[0] / n;
  GRID_STRIDE(i, n) {
    float xv = x[i], yv = y ? y[i] : target, g;
    switch (kind) {
      case LOSS_L1: { float d = xv - yv; g = d > 0.0f ? 1.0f : (d < 0.0f ? -1.0f : 0.0f); if (wrt) g = -g; break; }
      case LOSS_MSE: g = 2.0f * (xv - yv); if (wrt) g = -g; break;
      default: g = wrt ? -xv : sigm(xv) - yv;
    }
    dst[i] += s * g;
  }
}
