/* The residual add (the add fused with the norm that reads it is in rmsnorm.cu). */
#include "kernel_common.cuh"
#include "kernels.h"

namespace cx {
namespace cuda {
namespace {

template <typename T>
__global__ void residual_kernel(T* out, const T* a, const T* b, int64_t n, bool round) {
  const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i < n) st(out + i, ld(a + i) + ld(b + i), round);
}

}  // namespace

template <typename T>
void residual_forward(T* out, const T* a, const T* b, int64_t n, bool round) {
  CX_LAUNCH(residual_kernel<T>, n, out, a, b, n, round);
}

#define CX_INSTANTIATE(T) \
  template void residual_forward<T>(T*, const T*, const T*, int64_t, bool); \

CX_INSTANTIATE(float)
CX_INSTANTIATE(bf16_t)

}  // namespace cuda
}  // namespace cx
