/* Rotary position embedding: forward rotates, backward applies the inverse rotation (sign -1), one kernel. */
#include "kernel_common.cuh"
#include "kernels.h"

namespace cx {
namespace cuda {
namespace {

/* A thread per (token, frequency): the angle in double precision, then float, as the CPU's table; its cos and sin
 * (scaled) once, applied to that frequency's pair in every head. */
template <typename T>
__global__ void rope_kernel(T* x, const int32_t* pos, int64_t N, int64_t H, int64_t D, const double* inv_freq, float scale, float sign, bool round) {
  const int64_t half = D / 2, i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i >= N * half) return;
  const int64_t f = i % half, n = i / half;
  const float angle = (float)((double)pos[n] * inv_freq[f]);
  const float c = cosf(angle) * scale, s = sign * (sinf(angle) * scale);
  for (int64_t h = 0; h < H; h++) {
    T* row = x + (n * H + h) * D;
    const float a = ld(row + f), b = ld(row + f + half);
    st(row + f, a * c - b * s, round);
    st(row + f + half, b * c + a * s, round);
  }
}

}  // namespace

template <typename T>
void rope(T* x, const int32_t* pos, int64_t N, int64_t H, int64_t D, const double* inv_freq, float scale, float sign, bool round) {
  CX_LAUNCH(rope_kernel<T>, N * (D / 2), x, pos, N, H, D, inv_freq, scale, sign, round);
}

#define CX_INSTANTIATE(T) \
  template void rope<T>(T*, const int32_t*, int64_t, int64_t, int64_t, const double*, float, float, bool); \

CX_INSTANTIATE(float)
CX_INSTANTIATE(bf16_t)

}  // namespace cuda
}  // namespace cx
