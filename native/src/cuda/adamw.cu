/* The optimizer step: the global gradient norm as per-block partial sums in a fixed order, the clip factor from
 * them on the device, and AdamW writing the compute copy in the same pass. */
#include <cfloat>

#include "kernel_common.cuh"
#include "kernels.h"

namespace cx {
namespace cuda {
namespace {

__global__ void sum_squares_kernel(double* partial, const float* x, int64_t n) {
  __shared__ double sh[kThreads];
  double s = 0.0;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) s += (double)x[i] * x[i];
  sh[threadIdx.x] = s;
  __syncthreads();
  for (int k = blockDim.x / 2; k > 0; k >>= 1) {
    if (threadIdx.x < k) sh[threadIdx.x] += sh[threadIdx.x + k];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[blockIdx.x] = sh[0];
}

template <typename T>
__global__ void adamw_kernel(float* p, T* copy, const float* g, float* m, float* v, int64_t n, AdamWParams hp, bool round) {
  const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i >= n) return;
  if (hp.clip && !(hp.clip[1] > 0)) return;  // a non-finite gradient norm: nothing moves
  const float gi = g[i] * (hp.clip ? (float)hp.clip[1] : hp.grad_scale);
  m[i] = hp.beta1 * m[i] + (1.f - hp.beta1) * gi;
  v[i] = hp.beta2 * v[i] + (1.f - hp.beta2) * gi * gi;
  const float mhat = m[i] / hp.bias1, vhat = v[i] / hp.bias2;
  p[i] -= hp.lr * (mhat / (sqrtf(vhat) + hp.eps) + hp.weight_decay * p[i]);
  if (copy) st(copy + i, p[i], round);
}

/* The partial sums in order on one thread (as the host summed them), then the clip factor (backend.h). */
__global__ void clip_factor_kernel(double* clip, const double* partial, int blocks, float max_norm) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  double total = 0.0;
  for (int b = 0; b < blocks; b++) total += partial[b];
  const double norm = sqrt(total);
  clip[0] = norm;
  const bool finite = norm <= DBL_MAX;  // false for NaN and infinity
  clip[1] = !finite ? 0.0 : max_norm > 0 && norm > max_norm ? (double)max_norm / norm : 1.0;
}

}  // namespace

template <typename T>
void adamw(float* param, T* copy, const float* grad, float* m, float* v, int64_t n, const AdamWParams& hp, bool round) {
  CX_LAUNCH(adamw_kernel<T>, n, param, copy, grad, m, v, n, hp, round);
}
void sum_squares_partial(double* partial, const float* x, int64_t n) {
  CX_KERNEL_LAUNCH(sum_squares_kernel, kSumBlocks, kThreads, 0, partial, x, n);
  CX_CUDA(cudaGetLastError());
}
void clip_factor(double* clip, double* partial, const float* x, int64_t n, float max_norm) {
  sum_squares_partial(partial, x, n);
  CX_KERNEL_LAUNCH(clip_factor_kernel, 1, 32, 0, clip, partial, kSumBlocks, max_norm);
  CX_CUDA(cudaGetLastError());
}

#define CX_INSTANTIATE(T) \
  template void adamw<T>(float*, T*, const float*, float*, float*, int64_t, const AdamWParams&, bool); \

CX_INSTANTIATE(float)
CX_INSTANTIATE(bf16_t)

}  // namespace cuda
}  // namespace cx
