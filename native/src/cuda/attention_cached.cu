/* Attention of a few new queries over a key/value cache (generation): the keys of one query are few compared with
 * training batches, so one block per (query, head) holds the scores in shared memory and reduces in a fixed order. */
#include "kernel_common.cuh"
#include "kernels.h"

namespace cx {
namespace cuda {
namespace {

template <typename T>
__global__ void append_kernel(T* cache, const T* src, int64_t n) {
  const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i < n) cache[i] = src[i];
}

template <typename T>
__global__ void cached_attention_kernel(T* out, const T* kc, const T* vc, const T* q, int64_t past, int64_t H, int64_t D, float scale, bool round) {
  __shared__ float sh[kThreads];
  CX_DYNAMIC_SHARED(raw);
  float* s = reinterpret_cast<float*>(raw);
  const int64_t i = blockIdx.x, h = blockIdx.y, C = H * D, keys = past + i + 1;
  const T* qi = q + i * C + h * D;
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < keys; j += blockDim.x) {
    const T* kj = kc + j * C + h * D;
    float dot = 0.f;
    for (int64_t d = 0; d < D; d++) dot += ld(qi + d) * ld(kj + d);
    s[j] = dot * scale;
    mx = fmaxf(mx, s[j]);
  }
  mx = block_max(mx, sh);
  float sum = 0.f;
  for (int64_t j = threadIdx.x; j < keys; j += blockDim.x) sum += (s[j] = expf(s[j] - mx));
  sum = block_sum(sum, sh);
  __syncthreads();
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    float acc = 0.f;
    for (int64_t j = 0; j < keys; j++) acc += s[j] * ld(vc + j * C + h * D + d);
    st(out + i * C + h * D + d, acc / sum, round);
  }
}

}  // namespace

template <typename T>
void attention_cached(T* out, T* kcache, T* vcache, const T* q, const T* k, const T* v, int64_t Tq, int64_t past, int64_t H, int64_t D, bool round) {
  const int64_t C = H * D, n = Tq * C;
  if (past + Tq > kCachedAttentionMaxKeys) throw std::runtime_error("cached attention holds at most " + std::to_string(kCachedAttentionMaxKeys) + " keys");
  CX_LAUNCH(append_kernel<T>, n, kcache + past * C, k, n);
  CX_LAUNCH(append_kernel<T>, n, vcache + past * C, v, n);
  if (Tq == 0) return;
  CX_KERNEL_LAUNCH(cached_attention_kernel<T>, dim3((unsigned)Tq, (unsigned)H), kThreads, (size_t)(past + Tq) * sizeof(float), out, kcache, vcache, q, past, H, D,
                   1.0f / sqrtf((float)D), round);
  CX_CUDA(cudaGetLastError());
}

#define CX_INSTANTIATE(T) template void attention_cached<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t, bool);

CX_INSTANTIATE(float)
CX_INSTANTIATE(bf16_t)

}  // namespace cuda
}  // namespace cx
