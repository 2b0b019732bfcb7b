/* Cross-entropy over rows of fp32 logits, the loss and (with backward) the logits' gradient in one kernel; the
 * LM head GEMMs around it are in ops.cu. */
#include <cmath>

#include "kernel_common.cuh"
#include "kernels.h"

namespace cx {
namespace cuda {
namespace {

/* One block per row of logits. The logits are rounded as they are read (bf16 runs), not written back rounded:
 * three passes over the row's fp32 logits instead of five. */
template <typename T>
__global__ void cross_entropy_kernel(const float* logits, T* dlogits, float* losses, const int32_t* targets, int64_t V, float scale, bool backward,
                                     bool bf16) {
  __shared__ float sh[kThreads];
  const float* z = logits + blockIdx.x * V;
  T* dz = dlogits ? dlogits + blockIdx.x * V : nullptr;
  const int32_t target = targets[blockIdx.x];
  if (target < 0) {
    if (threadIdx.x == 0) losses[blockIdx.x] = NAN;
    if (backward)
      for (int64_t j = threadIdx.x; j < V; j += blockDim.x) st(dz + j, 0.f, false);
    return;
  }
  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) m = fmaxf(m, rbf(z[j], bf16));
  const float mx = block_max(m, sh);
  float s = 0.f;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) s += expf(rbf(z[j], bf16) - mx);
  const float lse = mx + logf(block_sum(s, sh));
  if (threadIdx.x == 0) losses[blockIdx.x] = lse - rbf(z[target], bf16);
  if (!backward) return;
  // Each thread reads z[j] before writing dz[j], so dz may alias z (float storage); the loss above was read first.
  __syncthreads();
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) st(dz + j, scale * (expf(rbf(z[j], bf16) - lse) - (j == target ? 1.f : 0.f)), bf16);
}

}  // namespace

template <typename T>
void cross_entropy_rows(float* logits, T* dlogits, float* losses, const int32_t* targets, int64_t R, int64_t V, float scale, bool backward,
                        bool bf16) {
  if (R <= 0) return;
  CX_KERNEL_LAUNCH(cross_entropy_kernel<T>, (unsigned)R, kThreads, 0, logits, dlogits, losses, targets, V, scale, backward, bf16);
  CX_CUDA(cudaGetLastError());
}

#define CX_INSTANTIATE(T) \
  template void cross_entropy_rows<T>(float*, T*, float*, const int32_t*, int64_t, int64_t, float, bool, bool); \

CX_INSTANTIATE(float)
CX_INSTANTIATE(bf16_t)

}  // namespace cuda
}  // namespace cx
