/* Token embedding, forward and backward. The backward is deterministic: one writer per embedding row, summed
 * in token order, no atomics. */
#include "kernel_common.cuh"
#include "kernels.h"

namespace cx {
namespace cuda {
namespace {

constexpr int kIdBuckets = 32;  // token-id buckets of the embedding gradient

template <typename T>
__global__ void embed_fwd(T* out, const int32_t* tok, const T* wte, int64_t N, int64_t C, bool round) {
  const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i < N * C) st(out + i, ld(wte + (int64_t)tok[i / C] * C + i % C), round);
}
/* A thread per (channel, bucket of token ids) walks the tokens in order and adds those of its bucket: each
 * embedding row has one writer, summed in token order (deterministic, no atomics), and kIdBuckets times the
 * threads of one walker per channel. */
template <typename T>
__global__ void embed_bwd(float* dwte, const T* dout, const int32_t* tok, int64_t N, int64_t C) {
  const int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  const int32_t bucket = (int32_t)blockIdx.y;
  if (c >= C) return;
  for (int64_t n = 0; n < N; n++) {
    const int32_t t = tok[n];
    if (t % kIdBuckets == bucket) dwte[(int64_t)t * C + c] += ld(dout + n * C + c);
  }
}

}  // namespace

template <typename T>
void embedding_forward(T* out, const int32_t* tokens, const T* wte, int64_t N, int64_t C, bool round) {
  CX_LAUNCH(embed_fwd<T>, N * C, out, tokens, wte, N, C, round);
}
template <typename T>
void embedding_backward(float* dwte, const T* dout, const int32_t* tokens, int64_t N, int64_t C) {
  if (C <= 0) return;
  CX_KERNEL_LAUNCH(embed_bwd<T>, dim3(grid_for(C, kThreads), kIdBuckets), kThreads, 0, dwte, dout, tokens, N, C);
  CX_CUDA(cudaGetLastError());
}

#define CX_INSTANTIATE(T) \
  template void embedding_forward<T>(T*, const int32_t*, const T*, int64_t, int64_t, bool); \
  template void embedding_backward<T>(float*, const T*, const int32_t*, int64_t, int64_t); \

CX_INSTANTIATE(float)
CX_INSTANTIATE(bf16_t)

}  // namespace cuda
}  // namespace cx
