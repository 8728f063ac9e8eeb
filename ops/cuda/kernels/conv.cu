// Padding and the im2col/col2im pair that turn convolutions into cuBLAS GEMMs. Planes are
// (N*C) images of H x W; a column matrix is (C*KH*KW, OH*OW) for one sample.
#include "common.cuh"

__device__ __forceinline__ int reflect(int i, int n) {
  if (i < 0) i = -i;
  if (i >= n) i = 2 * (n - 1) - i;
  return i;
}

// y (planes, H+2p, W+2p) = reflection pad of x (planes, H, W); needs p < H, W.
extern "C" __global__ void wkd_reflect_pad(float* y, const float* x, int planes, int h, int w, int p) {
  int ho = h + 2 * p, wo = w + 2 * p, n = planes * ho * wo;
  GRID_STRIDE(i, n) {
    int ox = i % wo, t = i / wo, oy = t % ho, pl = t / ho;
    y[i] = x[(pl * h + reflect(oy - p, h)) * w + reflect(ox - p, w)];
  }
}

// dx += adjoint of the reflection pad; edge pixels collect up to four gradients (atomic).
extern "C" __global__ void wkd_reflect_pad_bwd(float* dx, const float* dy, int planes, int h, int w, int p) {
  int ho = h + 2 * p, wo = w + 2 * p, n = planes * ho * wo;
  GRID_STRIDE(i, n) {
    int ox = i % wo, t = i / wo, oy = t % ho, pl = t / ho;
    atomicAdd(&dx[(pl * h + reflect(oy - p, h)) * w + reflect(ox - p, w)], dy[i]);
  }
}

extern "C" __global__ void wkd_zero_pad(float* y, const float* x, int planes, int h, int w, int p) {
  int ho = h + 2 * p, wo = w + 2 * p, n = planes * ho * wo;
  GRID_STRIDE(i, n) {
    int ox = i % wo - p, t = i / wo, oy = t % ho - p, pl = t / ho;
    y[i] = (oy >= 0 && oy < h && ox >= 0 && ox < w) ? x[(pl * h + oy) * w + ox] : 0.0f;
  }
}

extern "C" __global__ void wkd_zero_pad_bwd(float* dx, const float* dy, int planes, int h, int w, int p) {
  int n = planes * h * w, ho = h + 2 * p, wo = w + 2 * p;
  GRID_STRIDE(i, n) {
    int xx = i % w, t = i / w, yy = t % h, pl = t / h;
    dx[i] += dy[(pl * ho + yy + p) * wo + xx + p];
  }
}

// col (C*KH*KW, OH*OW) from one image x (C, H, W), zero padding pad.
extern "C" __global__ void wkd_im2col(float* col, const float* x, int c, int h, int w, int kh, int kw,
                                      int stride, int pad, int oh, int ow) {
  int n = c * kh * kw * oh * ow;
  GRID_STRIDE(i, n) {
    int ox = i % ow, t = i / ow, oy = t % oh, r = t / oh;
    int kx = r % kw, t2 = r / kw, ky = t2 % kh, ch = t2 / kh;
    int iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
    col[i] = (iy >= 0 && iy < h && ix >= 0 && ix < w) ? x[(ch * h + iy) * w + ix] : 0.0f;
  }
}

// x (C, H, W) = (accumulate ? x : 0) + col2im(col), the adjoint of wkd_im2col. One thread per
// image pixel gathers its column entries in a fixed order, so the result is deterministic.
extern "C" __global__ void wkd_col2im(float* x, const float* col, int c, int h, int w, int kh, int kw,
                                      int stride, int pad, int oh, int ow, int accumulate) {
  int n = c * h * w;
  GRID_STRIDE(i, n) {
    int ix = i % w, t = i / w, iy = t % h, ch = t / h;
    float s = 0.0f;
    for (int ky = 0; ky < kh; ky++) {
      int ty = iy + pad - ky;
      if (ty < 0 || ty % stride != 0) continue;
      int oy = ty / stride;
      if (oy >= oh) continue;
      for (int kx = 0; kx < kw; kx++) {
        int tx = ix + pad - kx;
        if (tx < 0 || tx % stride != 0) continue;
        int ox = tx / stride;
        if (ox >= ow) continue;
        s += col[(((ch * kh + ky) * kw + kx) * oh + oy) * ow + ox];
      }
    }
    x[i] = accumulate ? x[i] + s : s;
  }
}
