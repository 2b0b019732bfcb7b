/* Ring attention's pieces (backend.h: attention_block_forward / _backward / attention_combine), written as the
 * reference kernels are: one thread per (head, query) or (head, key), obviously right and deterministic. Packed
 * bf16 blocks run on the fused kernels (flash_attention.cu, which take the blocks' offsets); these serve fp32 and
 * the head sizes the fused kernels are not built for, and are what the fused ones are checked against. */
#include "kernel_common.cuh"
#include "kernels.h"

namespace cx {
namespace cuda {
namespace {

/* Query i (at row position q_offset + i) sees keys [first, last] of the block (block positions); empty when first > last. */
__device__ inline void key_range(const int32_t* q_start, int64_t q_offset, int64_t k_offset, int64_t Tk, int64_t i, int64_t* first, int64_t* last) {
  *first = max((int64_t)q_start[i], k_offset) - k_offset;
  *last = min(q_offset + i, k_offset + Tk - 1) - k_offset;
}

template <typename T>
__device__ float dot_scaled(const T* a, const T* b, int64_t D, float scale) {
  float s = 0.f;
  for (int64_t d = 0; d < D; d++) s = fmaf(ld(a + d) * scale, ld(b + d), s);
  return s;
}

/* One thread per (head, query): two passes over the keys it sees (max, then the softmax-weighted sum). */
template <typename T>
__global__ void block_fwd(float* out, float* lse, const T* q, const T* k, const T* v, const int32_t* q_start, int64_t q_offset, int64_t k_offset,
                          int64_t Tq, int64_t Tk, int64_t H, int64_t D) {
  const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= H * Tq) return;
  const int64_t h = idx / Tq, i = idx % Tq;
  int64_t first, last;
  key_range(q_start, q_offset, k_offset, Tk, i, &first, &last);
  const float scale = rsqrtf((float)D);
  const T* qi = q + (i * H + h) * D;
  float mx = -INFINITY;
  for (int64_t j = first; j <= last; j++) mx = fmaxf(mx, dot_scaled(qi, k + (j * H + h) * D, D, scale));
  float acc[kReferenceMaxHead];
  for (int64_t d = 0; d < D; d++) acc[d] = 0.f;
  float sum = 0.f;
  for (int64_t j = first; j <= last; j++) {
    const float p = expf(dot_scaled(qi, k + (j * H + h) * D, D, scale) - mx);
    sum += p;
    const T* vj = v + (j * H + h) * D;
    for (int64_t d = 0; d < D; d++) acc[d] = fmaf(p, ld(vj + d), acc[d]);
  }
  float* o = out + (i * H + h) * D;
  for (int64_t d = 0; d < D; d++) o[d] = sum > 0.f ? acc[d] / sum : 0.f;
  lse[h * Tq + i] = sum > 0.f ? mx + logf(sum) : -INFINITY;
}

/* dq += over the keys a query sees: one thread per (head, query). */
template <typename T>
__global__ void block_bwd_q(float* dq, const T* dout, const float* lse, const float* delta, const T* q, const T* k, const T* v, const int32_t* q_start,
                            int64_t q_offset, int64_t k_offset, int64_t Tq, int64_t Tk, int64_t H, int64_t D) {
  const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= H * Tq) return;
  const int64_t h = idx / Tq, i = idx % Tq;
  int64_t first, last;
  key_range(q_start, q_offset, k_offset, Tk, i, &first, &last);
  const float scale = rsqrtf((float)D);
  const T* qi = q + (i * H + h) * D;
  const T* gi = dout + (i * H + h) * D;
  float acc[kReferenceMaxHead];
  for (int64_t d = 0; d < D; d++) acc[d] = 0.f;
  for (int64_t j = first; j <= last; j++) {
    const float p = expf(dot_scaled(qi, k + (j * H + h) * D, D, scale) - lse[h * Tq + i]);
    const float ds = p * (dot_scaled(gi, v + (j * H + h) * D, D, 1.f) - delta[h * Tq + i]) * scale;
    const T* kj = k + (j * H + h) * D;
    for (int64_t d = 0; d < D; d++) acc[d] = fmaf(ds, ld(kj + d), acc[d]);
  }
  float* o = dq + (i * H + h) * D;
  for (int64_t d = 0; d < D; d++) o[d] += acc[d];
}

/* dk, dv += over the queries that see a key: one thread per (head, key). The queries' ranges are monotone, so
 * those that see key j are a contiguous run: scan all (blocks are chunks of a sequence, not whole sequences). */
template <typename T>
__global__ void block_bwd_kv(float* dk, float* dv, const T* dout, const float* lse, const float* delta, const T* q, const T* k, const T* v,
                             const int32_t* q_start, int64_t q_offset, int64_t k_offset, int64_t Tq, int64_t Tk, int64_t H, int64_t D) {
  const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= H * Tk) return;
  const int64_t h = idx / Tk, j = idx % Tk;
  const float scale = rsqrtf((float)D);
  const T* kj = k + (j * H + h) * D;
  const T* vj = v + (j * H + h) * D;
  float gk[kReferenceMaxHead], gv[kReferenceMaxHead];
  for (int64_t d = 0; d < D; d++) gk[d] = gv[d] = 0.f;
  for (int64_t i = 0; i < Tq; i++) {
    int64_t first, last;
    key_range(q_start, q_offset, k_offset, Tk, i, &first, &last);
    if (j < first || j > last) continue;
    const T* qi = q + (i * H + h) * D;
    const T* gi = dout + (i * H + h) * D;
    const float p = expf(dot_scaled(qi, kj, D, scale) - lse[h * Tq + i]);
    const float ds = p * (dot_scaled(gi, vj, D, 1.f) - delta[h * Tq + i]) * scale;
    for (int64_t d = 0; d < D; d++) {
      gk[d] = fmaf(ds, ld(qi + d), gk[d]);
      gv[d] = fmaf(p, ld(gi + d), gv[d]);
    }
  }
  for (int64_t d = 0; d < D; d++) {
    dk[(j * H + h) * D + d] += gk[d];
    dv[(j * H + h) * D + d] += gv[d];
  }
}

__global__ void combine(float* acc, float* acc_lse, const float* out, const float* lse, int64_t Tq, int64_t H, int64_t D) {
  const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= H * Tq) return;
  const int64_t h = idx / Tq, i = idx % Tq;
  const float la = acc_lse[idx], lb = lse[idx], m = fmaxf(la, lb);
  if (m == -INFINITY) return;
  const float wa = expf(la - m), wb = expf(lb - m), sum = wa + wb;
  float* a = acc + (i * H + h) * D;
  const float* b = out + (i * H + h) * D;
  for (int64_t d = 0; d < D; d++) a[d] = (wa * a[d] + wb * b[d]) / sum;
  acc_lse[idx] = m + logf(sum);
}

}  // namespace

template <typename T>
void attention_block_forward(float* out, float* lse, const T* q, const T* k, const T* v, const int32_t* q_start, int64_t q_offset, int64_t k_offset,
                             int64_t Tq, int64_t Tk, int64_t H, int64_t D) {
  CX_LAUNCH(block_fwd<T>, H * Tq, out, lse, q, k, v, q_start, q_offset, k_offset, Tq, Tk, H, D);
}

template <typename T>
void attention_block_backward(float* dq, float* dk, float* dv, const T* dout, const float* lse, const float* delta, const T* q, const T* k, const T* v,
                              const int32_t* q_start, int64_t q_offset, int64_t k_offset, int64_t Tq, int64_t Tk, int64_t H, int64_t D) {
  CX_LAUNCH(block_bwd_q<T>, H * Tq, dq, dout, lse, delta, q, k, v, q_start, q_offset, k_offset, Tq, Tk, H, D);
  CX_LAUNCH(block_bwd_kv<T>, H * Tk, dk, dv, dout, lse, delta, q, k, v, q_start, q_offset, k_offset, Tq, Tk, H, D);
}

void attention_combine(float* acc, float* acc_lse, const float* out, const float* lse, int64_t Tq, int64_t H, int64_t D) {
  CX_LAUNCH(combine, H * Tq, acc, acc_lse, out, lse, Tq, H, D);
}

#define CX_INSTANTIATE(T)                                                                                                                 \
  template void attention_block_forward<T>(float*, float*, const T*, const T*, const T*, const int32_t*, int64_t, int64_t, int64_t, int64_t, \
                                           int64_t, int64_t);                                                                            \
  template void attention_block_backward<T>(float*, float*, float*, const T*, const float*, const float*, const T*, const T*, const T*,     \
                                            const int32_t*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t);

CX_INSTANTIATE(float)
CX_INSTANTIATE(bf16_t)

}  // namespace cuda
}  // namespace cx
