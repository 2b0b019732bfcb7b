/* The reference kernels (see kernels.h): a tiled fp32 GEMM and per-query / per-key attention under the document
 * mask, written to be obviously right and deterministic rather than fast. The "cuda-reference" backend runs on
 * them alone; the GPU check holds cuBLASLt and the fused attention to them. */
#include "common.cuh"
#include "kernels.h"

namespace cx {
namespace cuda {
namespace {

constexpr int kTile = 16;

template <typename TI, typename TO>
__global__ void gemm_kernel(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const TI* A, int64_t lda, const TI* B, int64_t ldb, TO* C,
                            int64_t ldc, bool acc, bool round) {
  __shared__ float As[kTile][kTile + 1], Bs[kTile][kTile + 1];
  const int64_t row = blockIdx.y * kTile + threadIdx.y, col = blockIdx.x * kTile + threadIdx.x;
  float sum = 0.f;
  for (int64_t k0 = 0; k0 < K; k0 += kTile) {
    const int64_t ka = k0 + threadIdx.x, kb = k0 + threadIdx.y;
    As[threadIdx.y][threadIdx.x] = (row < M && ka < K) ? ld(ta ? A + ka * lda + row : A + row * lda + ka) : 0.f;
    Bs[threadIdx.y][threadIdx.x] = (col < N && kb < K) ? ld(tb ? B + col * ldb + kb : B + kb * ldb + col) : 0.f;
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kTile; k++) sum = fmaf(As[threadIdx.y][k], Bs[k][threadIdx.x], sum);
    __syncthreads();
  }
  if (row < M && col < N) {
    TO* c = C + row * ldc + col;
    st(c, acc ? ld(c) + sum : sum, round);
  }
}

/* One thread per (row, head, query): two passes over its document's keys (max, then softmax-weighted sum). */
template <typename T>
__global__ void attn_fwd(T* out, float* lse, const T* q, const T* k, const T* v, const int32_t* start, int64_t B, int64_t T_, int64_t H, int64_t D,
                         bool round) {
  const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= B * H * T_) return;
  const int64_t b = idx / (H * T_), h = (idx / T_) % H, t = idx % T_;
  const float scale = rsqrtf((float)D);
  const T* qt = q + ((b * T_ + t) * H + h) * D;
  const int64_t first = start[b * T_ + t];
  float mx = -INFINITY;
  for (int64_t j = first; j <= t; j++) {
    const T* kj = k + ((b * T_ + j) * H + h) * D;
    float s = 0.f;
    for (int64_t d = 0; d < D; d++) s = fmaf(ld(qt + d) * scale, ld(kj + d), s);
    mx = fmaxf(mx, s);
  }
  float acc[kReferenceMaxHead];
  for (int64_t d = 0; d < D; d++) acc[d] = 0.f;
  float sum = 0.f;
  for (int64_t j = first; j <= t; j++) {
    const T* kj = k + ((b * T_ + j) * H + h) * D;
    const T* vj = v + ((b * T_ + j) * H + h) * D;
    float s = 0.f;
    for (int64_t d = 0; d < D; d++) s = fmaf(ld(qt + d) * scale, ld(kj + d), s);
    const float p = expf(s - mx);
    sum += p;
    for (int64_t d = 0; d < D; d++) acc[d] = fmaf(p, ld(vj + d), acc[d]);
  }
  T* o = out + ((b * T_ + t) * H + h) * D;
  for (int64_t d = 0; d < D; d++) st(o + d, acc[d] / sum, round);
  lse[(b * H + h) * T_ + t] = mx + logf(sum);
}

template <typename T>
__device__ float attn_p(const T* q, const T* k, const float* lse, int64_t b, int64_t h, int64_t i, int64_t j, int64_t T_, int64_t H, int64_t D,
                        float scale) {
  const T* qi = q + ((b * T_ + i) * H + h) * D;
  const T* kj = k + ((b * T_ + j) * H + h) * D;
  float s = 0.f;
  for (int64_t d = 0; d < D; d++) s = fmaf(ld(qi + d) * scale, ld(kj + d), s);
  return expf(s - lse[(b * H + h) * T_ + i]);
}

template <typename T>
__device__ float attn_dp(const T* dout, const T* v, int64_t b, int64_t h, int64_t i, int64_t j, int64_t T_, int64_t H, int64_t D) {
  const T* gi = dout + ((b * T_ + i) * H + h) * D;
  const T* vj = v + ((b * T_ + j) * H + h) * D;
  float s = 0.f;
  for (int64_t d = 0; d < D; d++) s = fmaf(ld(gi + d), ld(vj + d), s);
  return s;
}

/* dq: one thread per query, over its keys. */
template <typename T>
__global__ void attn_bwd_q(T* dq, const T* dout, const float* lse, const float* delta, const T* q, const T* k, const T* v, const int32_t* start,
                           int64_t B, int64_t T_, int64_t H, int64_t D, bool round) {
  const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= B * H * T_) return;
  const int64_t b = idx / (H * T_), h = (idx / T_) % H, i = idx % T_;
  const float scale = rsqrtf((float)D);
  float acc[kReferenceMaxHead];
  for (int64_t d = 0; d < D; d++) acc[d] = 0.f;
  for (int64_t j = start[b * T_ + i]; j <= i; j++) {
    const float p = attn_p(q, k, lse, b, h, i, j, T_, H, D, scale);
    const float ds = p * (attn_dp(dout, v, b, h, i, j, T_, H, D) - delta[idx]) * scale;
    const T* kj = k + ((b * T_ + j) * H + h) * D;
    for (int64_t d = 0; d < D; d++) acc[d] = fmaf(ds, ld(kj + d), acc[d]);
  }
  T* o = dq + ((b * T_ + i) * H + h) * D;
  for (int64_t d = 0; d < D; d++) st(o + d, acc[d], round);
}

/* dk, dv: one thread per key, over the queries that see it (same document, not earlier). */
template <typename T>
__global__ void attn_bwd_kv(T* dk, T* dv, const T* dout, const float* lse, const float* delta, const T* q, const T* k, const T* v,
                            const int32_t* start, int64_t B, int64_t T_, int64_t H, int64_t D, bool round) {
  const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= B * H * T_) return;
  const int64_t b = idx / (H * T_), h = (idx / T_) % H, j = idx % T_;
  const float scale = rsqrtf((float)D);
  float gk[kReferenceMaxHead], gv[kReferenceMaxHead];
  for (int64_t d = 0; d < D; d++) gk[d] = gv[d] = 0.f;
  for (int64_t i = j; i < T_ && start[b * T_ + i] <= j; i++) {
    const float p = attn_p(q, k, lse, b, h, i, j, T_, H, D, scale);
    const float ds = p * (attn_dp(dout, v, b, h, i, j, T_, H, D) - delta[(b * H + h) * T_ + i]) * scale;
    const T* qi = q + ((b * T_ + i) * H + h) * D;
    const T* gi = dout + ((b * T_ + i) * H + h) * D;
    for (int64_t d = 0; d < D; d++) {
      gk[d] = fmaf(ds, ld(qi + d), gk[d]);
      gv[d] = fmaf(p, ld(gi + d), gv[d]);
    }
  }
  const int64_t row = ((b * T_ + j) * H + h) * D;
  for (int64_t d = 0; d < D; d++) {
    st(dk + row + d, gk[d], round);
    st(dv + row + d, gv[d], round);
  }
}

inline unsigned grid(int64_t n) { return grid_for(n, 256); }

}  // namespace

template <typename T>
void reference_attention_forward(T* out, float* lse, const T* q, const T* k, const T* v, const int32_t* doc_start, int64_t B, int64_t T_,
                                 int64_t H, int64_t D, bool round) {
  if (B * H * T_ <= 0) return;
  CX_KERNEL_LAUNCH(attn_fwd<T>, grid(B * H * T_), 256, 0, out, lse, q, k, v, doc_start, B, T_, H, D, round);
  CX_CUDA(cudaGetLastError());
}

template <typename T>
void reference_attention_backward(T* dq, T* dk, T* dv, const T* dout, const float* lse, const float* delta, const T* q, const T* k, const T* v,
                                  const int32_t* doc_start, int64_t B, int64_t T_, int64_t H, int64_t D, bool round) {
  if (B * H * T_ <= 0) return;
  CX_KERNEL_LAUNCH(attn_bwd_q<T>, grid(B * H * T_), 256, 0, dq, dout, lse, delta, q, k, v, doc_start, B, T_, H, D, round);
  CX_CUDA(cudaGetLastError());
  CX_KERNEL_LAUNCH(attn_bwd_kv<T>, grid(B * H * T_), 256, 0, dk, dv, dout, lse, delta, q, k, v, doc_start, B, T_, H, D, round);
  CX_CUDA(cudaGetLastError());
}

template <typename TI, typename TO>
void reference_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const TI* A, int64_t lda, const TI* B, int64_t ldb, TO* C, int64_t ldc,
                    bool accumulate, bool round) {
  if (M <= 0 || N <= 0) return;
  const dim3 blocks((unsigned)((N + kTile - 1) / kTile), (unsigned)((M + kTile - 1) / kTile)), threads(kTile, kTile);
  const auto kernel = gemm_kernel<TI, TO>;
  CX_KERNEL_LAUNCH(kernel, blocks, threads, 0, ta, tb, M, N, K, A, lda, B, ldb, C, ldc, accumulate, round);
  CX_CUDA(cudaGetLastError());
}

template void reference_attention_forward<float>(float*, float*, const float*, const float*, const float*, const int32_t*, int64_t, int64_t,
                                                 int64_t, int64_t, bool);
template void reference_attention_forward<bf16_t>(bf16_t*, float*, const bf16_t*, const bf16_t*, const bf16_t*, const int32_t*, int64_t,
                                                  int64_t, int64_t, int64_t, bool);
template void reference_attention_backward<float>(float*, float*, float*, const float*, const float*, const float*, const float*, const float*,
                                                  const float*, const int32_t*, int64_t, int64_t, int64_t, int64_t, bool);
template void reference_attention_backward<bf16_t>(bf16_t*, bf16_t*, bf16_t*, const bf16_t*, const float*, const float*, const bf16_t*,
                                                   const bf16_t*, const bf16_t*, const int32_t*, int64_t, int64_t, int64_t, int64_t, bool);
template void reference_gemm<float, float>(bool, bool, int64_t, int64_t, int64_t, const float*, int64_t, const float*, int64_t, float*, int64_t,
                                           bool, bool);
template void reference_gemm<bf16_t, bf16_t>(bool, bool, int64_t, int64_t, int64_t, const bf16_t*, int64_t, const bf16_t*, int64_t, bf16_t*,
                                             int64_t, bool, bool);
template void reference_gemm<bf16_t, float>(bool, bool, int64_t, int64_t, int64_t, const bf16_t*, int64_t, const bf16_t*, int64_t, float*,
                                            int64_t, bool, bool);

}  // namespace cuda
}  // namespace cx
