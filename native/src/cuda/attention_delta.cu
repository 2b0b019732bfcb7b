/* delta = rowsum(dout · out) per (row, head, position): the first step of every attention backward (fused or
 * reference). */
#include "kernel_common.cuh"
#include "kernels.h"

namespace cx {
namespace cuda {
namespace {

template <typename T>
__global__ void attn_delta_kernel(float* delta, const T* dout, const T* out, int64_t B, int64_t T_, int64_t H, int64_t D) {
  const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= B * H * T_) return;
  const int64_t b = idx / (H * T_), h = (idx / T_) % H, t = idx % T_;
  const int64_t row = ((b * T_ + t) * H + h) * D;
  float s = 0.f;
  for (int64_t d = 0; d < D; d++) s += ld(dout + row + d) * ld(out + row + d);
  delta[idx] = s;
}

}  // namespace

template <typename T>
void attention_delta(float* delta, const T* dout, const T* out, int64_t B, int64_t T_, int64_t H, int64_t D) {
  CX_LAUNCH(attn_delta_kernel<T>, B * H * T_, delta, dout, out, B, T_, H, D);
}

#define CX_INSTANTIATE(T) \
  template void attention_delta<T>(float*, const T*, const T*, int64_t, int64_t, int64_t, int64_t); \

CX_INSTANTIATE(float)
CX_INSTANTIATE(bf16_t)

}  // namespace cuda
}  // namespace cx
