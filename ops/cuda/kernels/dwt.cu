// One level of the orthonormal 2-D Haar transform as pytorch_wavelets (mode='zero') computes it;
// see ops/dwt.go for the derivation. For the 2x2 block a b / c d:
//   ll = (a+b+c+d)/2, h0 (LH) = (a+b-c-d)/2, h1 (HL) = (a-b+c-d)/2, h2 (HH) = (a-b-c+d)/2.
// Synthesis is the transpose of that matrix, so it is the adjoint of analysis.
#include "common.cuh"

// Analysis of x (planes, H, W) into ll (planes, *, llw) and hi (planes, 3, HO, WO),
// HO = ceil(H/2); an odd side reads a zero past its end. ll or hi may be null;
// accumulate adds into them (the inverse's backward) instead of writing.
extern "C" __global__ void wkd_haar_analysis(float* ll, float* hi, const float* x, int planes, int h, int w,
                                             int ho, int wo, int llh, int llw, int accumulate) {
  int n = planes * ho * wo;
  GRID_STRIDE(i, n) {
    int j = i % wo, t = i / wo, r = t % ho, pl = t / ho;
    const float* xp = x + (size_t)pl * h * w;
    int y0 = 2 * r, x0 = 2 * j;
    float a = xp[y0 * w + x0];
    float b = x0 + 1 < w ? xp[y0 * w + x0 + 1] : 0.0f;
    float c = y0 + 1 < h ? xp[(y0 + 1) * w + x0] : 0.0f;
    float d = (y0 + 1 < h && x0 + 1 < w) ? xp[(y0 + 1) * w + x0 + 1] : 0.0f;
    float vl = 0.5f * (a + b + c + d), v0 = 0.5f * (a + b - c - d);
    float v1 = 0.5f * (a - b + c - d), v2 = 0.5f * (a - b - c + d);
    if (ll) {
      float* q = ll + ((size_t)pl * llh + r) * llw + j;
      *q = accumulate ? *q + vl : vl;
    }
    if (hi) {
      size_t bw = (size_t)ho * wo, k = (size_t)pl * 3 * bw + (size_t)r * wo + j;
      hi[k] = accumulate ? hi[k] + v0 : v0;
      hi[k + bw] = accumulate ? hi[k + bw] + v1 : v1;
      hi[k + 2 * bw] = accumulate ? hi[k + 2 * bw] + v2 : v2;
    }
  }
}

// Synthesis: x (planes, H, W) from ll (planes, llh, llw) (only its first HO x WO used: the
// inverse drops ll's extra row/column) and hi (planes, 3, HO, WO); H <= 2*HO crops (the DWT's
// backward to an odd input). accumulate adds into x.
extern "C" __global__ void wkd_haar_synthesis(float* x, const float* ll, const float* hi, int planes, int h,
                                              int w, int ho, int wo, int llh, int llw, int accumulate) {
  int n = planes * h * w;
  GRID_STRIDE(i, n) {
    int xx = i % w, t = i / w, yy = t % h, pl = t / h;
    int r = yy >> 1, j = xx >> 1;
    size_t bw = (size_t)ho * wo, k = (size_t)pl * 3 * bw + (size_t)r * wo + j;
    float l = ll ? ll[((size_t)pl * llh + r) * llw + j] : 0.0f;
    float h0 = hi ? hi[k] : 0.0f, h1 = hi ? hi[k + bw] : 0.0f, h2 = hi ? hi[k + 2 * bw] : 0.0f;
    float sy = (yy & 1) ? -1.0f : 1.0f, sx = (xx & 1) ? -1.0f : 1.0f;
    // a: (+,+,+), b: (+,-,-), c: (-,+,-), d: (-,-,+) for (h0, h1, h2).
    float v = 0.5f * (l + sy * h0 + sx * h1 + sy * sx * h2);
    x[i] = accumulate ? x[i] + v : v;
  }
}
