// Instance and batch normalization. Forward saves each group's mean and 1/sqrt(var+eps)
// (stats); backward recomputes xhat from x. Variance is the biased one, computed in a second
// pass around the mean so a large mean does not cancel it. gamma/beta null = affine=False.
#include "common.cuh"

// One block per (n, c) plane of x (planes, HW). stats: mean[planes], rstd[planes].
extern "C" __global__ void wkd_instance_norm(float* y, float* stats, const float* x, const float* gamma,
                                             const float* beta, int c, int hw, float eps) {
  int pl = blockIdx.x, planes = gridDim.x;
  const float* xp = x + (size_t)pl * hw;
  float s = 0.0f;
  for (int i = threadIdx.x; i < hw; i += blockDim.x) s += xp[i];
  float mean = block_sum(s) / hw;
  float v = 0.0f;
  for (int i = threadIdx.x; i < hw; i += blockDim.x) { float d = xp[i] - mean; v += d * d; }
  float rstd = rsqrtf(block_sum(v) / hw + eps);
  float g = gamma ? gamma[pl % c] : 1.0f, b = beta ? beta[pl % c] : 0.0f;
  for (int i = threadIdx.x; i < hw; i += blockDim.x) y[(size_t)pl * hw + i] = (xp[i] - mean) * rstd * g + b;
  if (threadIdx.x == 0) { stats[pl] = mean; stats[planes + pl] = rstd; }
}

// dx += rstd*g*(dy - mean(dy) - xhat*mean(dy*xhat)); dgamma[c] += sum dy*xhat, dbeta[c] += sum dy.
// Planes of one channel share dgamma/dbeta: atomics, N terms each.
extern "C" __global__ void wkd_instance_norm_bwd(float* dx, float* dgamma, float* dbeta, const float* dy,
                                                 const float* x, const float* stats, const float* gamma,
                                                 int c, int hw) {
  int pl = blockIdx.x, planes = gridDim.x;
  float mean = stats[pl], rstd = stats[planes + pl];
  const float* xp = x + (size_t)pl * hw;
  const float* gp = dy + (size_t)pl * hw;
  float sdy = 0.0f, sdyx = 0.0f;
  for (int i = threadIdx.x; i < hw; i += blockDim.x) {
    float xh = (xp[i] - mean) * rstd;
    sdy += gp[i];
    sdyx += gp[i] * xh;
  }
  sdy = block_sum(sdy);
  sdyx = block_sum(sdyx);
  if (threadIdx.x == 0) {
    if (dgamma) atomicAdd(&dgamma[pl % c], sdyx);
    if (dbeta) atomicAdd(&dbeta[pl % c], sdy);
  }
  if (!dx) return;
  float g = gamma ? gamma[pl % c] : 1.0f;
  float a = sdy / hw, bb = sdyx / hw;
  for (int i = threadIdx.x; i < hw; i += blockDim.x) {
    float xh = (xp[i] - mean) * rstd;
    dx[(size_t)pl * hw + i] += g * rstd * (gp[i] - a - xh * bb);
  }
}

// Training-mode batch norm: one block per channel over (N, HW). stats: mean[C], rstd[C], var[C].
extern "C" __global__ void wkd_batch_norm(float* y, float* stats, const float* x, const float* gamma,
                                          const float* beta, int nb, int hw, float eps) {
  int ch = blockIdx.x, c = gridDim.x, m = nb * hw;
  float s = 0.0f;
  for (int i = threadIdx.x; i < m; i += blockDim.x) { int b = i / hw; s += x[((size_t)b * c + ch) * hw + i - b * hw]; }
  float mean = block_sum(s) / m;
  float v = 0.0f;
  for (int i = threadIdx.x; i < m; i += blockDim.x) {
    int b = i / hw;
    float d = x[((size_t)b * c + ch) * hw + i - b * hw] - mean;
    v += d * d;
  }
  float var = block_sum(v) / m;
  float rstd = rsqrtf(var + eps);
  float g = gamma ? gamma[ch] : 1.0f, bt = beta ? beta[ch] : 0.0f;
  for (int i = threadIdx.x; i < m; i += blockDim.x) {
    int b = i / hw;
    size_t k = ((size_t)b * c + ch) * hw + i - b * hw;
    y[k] = (x[k] - mean) * rstd * g + bt;
  }
  if (threadIdx.x == 0) { stats[ch] = mean; stats[c + ch] = rstd; stats[2 * c + ch] = var; }
}

// run = (1-momentum)*run + momentum*stat with the unbiased variance (var * unbias).
extern "C" __global__ void wkd_batch_norm_running(float* rmean, float* rvar, const float* stats, int c,
                                                  float momentum, float unbias) {
  GRID_STRIDE(ch, c) {
    rmean[ch] = (1.0f - momentum) * rmean[ch] + momentum * stats[ch];
    rvar[ch] = (1.0f - momentum) * rvar[ch] + momentum * stats[2 * c + ch] * unbias;
  }
}

// Eval-mode batch norm with running statistics; also writes stats (mean, rstd) for backward.
extern "C" __global__ void wkd_batch_norm_eval(float* y, float* stats, const float* x, const float* gamma,
                                               const float* beta, const float* rmean, const float* rvar,
                                               int c, int hw, float eps, int n) {
  GRID_STRIDE(i, n) {
    int ch = (i / hw) % c;
    float rstd = rsqrtf(rvar[ch] + eps);
    float g = gamma ? gamma[ch] : 1.0f, b = beta ? beta[ch] : 0.0f;
    y[i] = (x[i] - rmean[ch]) * rstd * g + b;
    if (i < c) { stats[i] = rmean[i]; stats[c + i] = rsqrtf(rvar[i] + eps); }
  }
}

// One block per channel. batch=1: gradients flow through the batch statistics; batch=0
// (running statistics): dx += g*rstd*dy.
extern "C" __global__ void wkd_batch_norm_bwd(float* dx, float* dgamma, float* dbeta, const float* dy,
                                              const float* x, const float* stats, const float* gamma,
                                              int nb, int hw, int batch) {
  int ch = blockIdx.x, c = gridDim.x, m = nb * hw;
  float mean = stats[ch], rstd = stats[c + ch];
  float sdy = 0.0f, sdyx = 0.0f;
  for (int i = threadIdx.x; i < m; i += blockDim.x) {
    int b = i / hw;
    size_t k = ((size_t)b * c + ch) * hw + i - b * hw;
    sdy += dy[k];
    sdyx += dy[k] * (x[k] - mean) * rstd;
  }
  sdy = block_sum(sdy);
  sdyx = block_sum(sdyx);
  if (threadIdx.x == 0) {
    if (dgamma) dgamma[ch] += sdyx;
    if (dbeta) dbeta[ch] += sdy;
  }
  if (!dx) return;
  float g = gamma ? gamma[ch] : 1.0f;
  float a = batch ? sdy / m : 0.0f, bb = batch ? sdyx / m : 0.0f;
  for (int i = threadIdx.x; i < m; i += blockDim.x) {
    int b = i / hw;
    size_t k = ((size_t)b * c + ch) * hw + i - b * hw;
    dx[k] += g * rstd * (dy[k] - a - (x[k] - mean) * rstd * bb);
  }
}
