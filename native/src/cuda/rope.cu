/* Rotary position embedding: forward rotates, backward applies the inverse rotation (sign -1), one kernel. */
#include "kernel_common.cuh"
#include "kernels.h"

namespace cx {
namespace cuda {
namespace {

/* A thread per (token, frequency): the angle's cos and sin (pow and sincos in double precision, then float, as
 * the CPU's table) once, applied to that frequency's pair in every head. */
template <typename T>
__global__ void rope_kernel(T* x, const int32_t* pos, int64_t N, int64_t H, int64_t D, float theta, float sign, bool round) {
  const int64_t half = D / 2, i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i >= N * half) return;
  const int64_t f = i % half, n = i / half;
  const double inv_freq = pow((double)theta, -2.0 * (double)f / (double)D);
  const float angle = (float)((double)pos[n] * inv_freq);
  const float c = cosf(angle), s = sign * sinf(angle);
  for (int64_t h = 0; h < H; h++) {
    T* row = x + (n * H + h) * D;
    const float a = ld(row + f), b = ld(row + f + half);
    st(row + f, a * c - b * s, round);
    st(row + f + half, b * c + a * s, round);
  }
}

}  // namespace

template <typename T>
void rope(T* x, const int32_t* pos, int64_t N, int64_t H, int64_t D, float theta, float sign, bool round) {
  CX_LAUNCH(rope_kernel<T>, N * (D / 2), x, pos, N, H, D, theta, sign, round);
}

#define CX_INSTANTIATE(T) \
  template void rope<T>(T*, const int32_t*, int64_t, int64_t, int64_t, float, float, bool); \

CX_INSTANTIATE(float)
CX_INSTANTIATE(bf16_t)

}  // namespace cuda
}  // namespace cx
