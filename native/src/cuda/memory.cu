/* Storage kernels of the CUDA backend: fill, rounding fp32 into a storage type, widening packed bf16 back to
 * fp32, and gathering rows (the logits read-back). */
#include "kernel_common.cuh"
#include "kernels.h"

namespace cx {
namespace cuda {
namespace {

template <typename T>
__global__ void fill_kernel(T* p, float v, int64_t n) {
  const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i < n) st(p + i, v, false);
}
template <typename T>
__global__ void copy_round_kernel(T* dst, const float* src, int64_t n, bool round) {
  const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i < n) st(dst + i, src[i], round);
}
__global__ void widen_kernel(float* dst, const bf16_t* src, int64_t n) {
  const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i < n) dst[i] = ld(src + i);
}
template <typename T>
__global__ void gather_kernel(T* out, const T* hidden, const int32_t* rows, int64_t R, int64_t C) {
  const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i < R * C) out[i] = hidden[(int64_t)rows[i / C] * C + i % C];
}

}  // namespace

template <typename T>
void fill(T* p, float value, int64_t n) {
  CX_LAUNCH(fill_kernel<T>, n, p, value, n);
}
template <typename T>
void copy_round(T* dst, const float* src, int64_t n, bool round) {
  CX_LAUNCH(copy_round_kernel<T>, n, dst, src, n, round);
}
void widen(float* dst, const bf16_t* src, int64_t n) { CX_LAUNCH(widen_kernel, n, dst, src, n); }
template <typename T>
void gather_rows(T* out, const T* hidden, const int32_t* rows, int64_t R, int64_t C) {
  CX_LAUNCH(gather_kernel<T>, R * C, out, hidden, rows, R, C);
}

#define CX_INSTANTIATE(T) \
  template void fill<T>(T*, float, int64_t); \
  template void copy_round<T>(T*, const float*, int64_t, bool); \
  template void gather_rows<T>(T*, const T*, const int32_t*, int64_t, int64_t); \

CX_INSTANTIATE(float)
CX_INSTANTIATE(bf16_t)

}  // namespace cuda
}  // namespace cx
