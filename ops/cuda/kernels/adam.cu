// One torch.optim.Adam step over a parameter (same float32 operation order as ops/adam.go):
// g += wd*p; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g;
// p += negStep*m / (sqrt(v)/sqrt(1-b2^t) + eps), negStep = -lr/(1-b1^t) computed on the host.
#include "common.cuh"

extern "C" __global__ void wkd_adam(float* p, const float* g, float* m, float* v, float b1, float b2,
                                    float c1, float c2, float eps, float wd, float negStep, float bc2sqrt,
                                    int n) {
  GRID_STRIDE(i, n) {
    float gi = g[i];
    if (wd != 0.0f) gi = wd * p[i] + gi;
    float mi = c1 * gi + m[i] * b1;
    float vi = (c2 * gi) * gi + v[i] * b2;
    m[i] = mi;
    v[i] = vi;
    float denom = sqrtf(vi) / bc2sqrt + eps;
    p[i] += (negStep * mi) / denom;
  }
}
