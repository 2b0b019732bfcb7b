/* Fused document-masked attention (see flash_attention.h). Blocks of 4 warps own 64 queries (forward, dQ) or
 * 64 keys (dK/dV); each warp owns 16 of them. Matrix products are 16×16×16 bf16 WMMA tiles with fp32
 * accumulators; scores go through shared memory, where two lanes per row apply the mask and the softmax. */
#include <cuda_bf16.h>
#include <mma.h>

#include "attention_tiles.h"
#include "common.cuh"
#include "flash_attention.h"

namespace cx {
namespace {

using namespace nvcuda;

constexpr int kRows = kAttnTile;  // queries (or keys) per block, and keys (or queries) per tile
constexpr int kWarps = 4, kThreads = 32 * kWarps;
constexpr int kSLd = kRows + 4;  // fp32 score rows (padded against bank conflicts)
constexpr int kPLd = kRows + 8;  // bf16 probability rows

using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16_t, wmma::row_major>;
using FragBRow = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16_t, wmma::row_major>;
using FragBCol = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16_t, wmma::col_major>;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

template <int D>
struct Shape {
  static constexpr int kLd = D + 8;        // bf16 tile rows
  static constexpr int kOLd = D + 4;       // fp32 staging rows
  static constexpr int kPerLane = D / 2;   // output columns per lane (two lanes per row)
  static constexpr size_t kTile = (size_t)kRows * kLd * sizeof(bf16_t);
  static constexpr size_t kScores = (size_t)kWarps * 16 * kSLd * sizeof(float);
  static constexpr size_t kProbs = (size_t)kWarps * 16 * kPLd * sizeof(bf16_t);
  static constexpr size_t kStage = (size_t)kWarps * 16 * kOLd * sizeof(float);
};

/* Rows [t0, t0+64) of head h of batch row b of x ([B][T][H][D], packed bf16) into a shared-memory tile, four
 * values (8 bytes) per access; rows past T are zero. */
template <int D>
__device__ void load_tile(bf16_t* tile, const bf16_t* x, int64_t b, int64_t t0, int64_t T, int64_t H, int64_t h) {
  constexpr int kVec = D / 4;
  for (int i = threadIdx.x; i < kRows * kVec; i += kThreads) {
    const int r = i / kVec, c = (i % kVec) * 4;
    const int64_t t = t0 + r;
    uint2 u = make_uint2(0u, 0u);
    const bf16_t* src = x + ((b * T + t) * H + h) * D + c;
    bf16_t* dst = tile + r * Shape<D>::kLd + c;
    CX_CHECK_ALIGNED(dst, sizeof(uint2));
    if (t < T) {
      CX_CHECK_ALIGNED(src, sizeof(uint2));
      u = *reinterpret_cast<const uint2*>(src);
    }
    *reinterpret_cast<uint2*>(dst) = u;
  }
}

/* S[16][64] (row stride kSLd) = A[16][D] · Bt[64][D]^T, A and Bt bf16 tiles with stride D+8. */
template <int D>
__device__ void scores(float* S, const bf16_t* A, const bf16_t* Bt) {
  constexpr int kLd = Shape<D>::kLd;
#pragma unroll
  for (int n = 0; n < kRows / 16; n++) {
    FragC acc;
    wmma::fill_fragment(acc, 0.f);
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
      FragA a;
      FragBCol bt;
      wmma::load_matrix_sync(a, A + kk * 16, kLd);
      wmma::load_matrix_sync(bt, Bt + n * 16 * kLd + kk * 16, kLd);
      wmma::mma_sync(acc, a, bt, acc);
    }
    wmma::store_matrix_sync(S + n * 16, acc, kSLd, wmma::mem_row_major);
  }
}

/* acc[D/16] (a 16×D accumulator) += P[16][64] (stride kPLd) · X[64][D] (stride D+8). */
template <int D>
__device__ void accumulate(FragC (&acc)[D / 16], const bf16_t* P, const bf16_t* X) {
  constexpr int kLd = Shape<D>::kLd;
#pragma unroll
  for (int dn = 0; dn < D / 16; dn++) {
#pragma unroll
    for (int kk = 0; kk < kRows / 16; kk++) {
      FragA a;
      FragBRow x;
      wmma::load_matrix_sync(a, P + kk * 16, kPLd);
      wmma::load_matrix_sync(x, X + kk * 16 * kLd + dn * 16, kLd);
      wmma::mma_sync(acc[dn], a, x, acc[dn]);
    }
  }
}

/* Writes a warp's 16×D accumulator, times `scale`, to rows row0.. of head h in dst ([B][T][H][D]). */
template <int D, typename T>
__device__ void store_rows(T* dst, FragC (&acc)[D / 16], float* stage, int64_t b, int64_t row0, int64_t T_, int64_t H, int64_t h, float scale,
                           bool round) {
  constexpr int kOLd = Shape<D>::kOLd, kPer = Shape<D>::kPerLane;
  const int lane = threadIdx.x % 32, r = lane / 2, half = lane % 2;
  __syncwarp();
#pragma unroll
  for (int dn = 0; dn < D / 16; dn++) wmma::store_matrix_sync(stage + dn * 16, acc[dn], kOLd, wmma::mem_row_major);
  __syncwarp();
  const int64_t t = row0 + r;
  if (t < T_) {
    T* out = dst + ((b * T_ + t) * H + h) * D + half * kPer;
#pragma unroll
    for (int c = 0; c < kPer; c++) st(out + c, stage[r * kOLd + half * kPer + c] * scale, round);
  }
  __syncwarp();
}

template <int D, typename TS>
__global__ void __launch_bounds__(kThreads) flash_forward_kernel(TS* out, float* lse, const TS* q, const TS* k, const TS* v,
                                                                 const int32_t* doc_start, int64_t T, int64_t H, float scale, bool round) {
  using S = Shape<D>;
  CX_DYNAMIC_SHARED(smem);
  bf16_t* Qs = reinterpret_cast<bf16_t*>(smem);
  bf16_t* Ks = reinterpret_cast<bf16_t*>(smem + S::kTile);
  bf16_t* Vs = reinterpret_cast<bf16_t*>(smem + 2 * S::kTile);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r = lane / 2, half = lane % 2;
  float* scr = reinterpret_cast<float*>(smem + 3 * S::kTile) + warp * 16 * kSLd;
  bf16_t* prob = reinterpret_cast<bf16_t*>(smem + 3 * S::kTile + S::kScores) + warp * 16 * kPLd;
  float* stage = reinterpret_cast<float*>(smem + 3 * S::kTile + S::kScores + S::kProbs) + warp * 16 * S::kOLd;

  const int64_t b = blockIdx.z, h = blockIdx.y, q0 = (int64_t)blockIdx.x * kRows;
  const int64_t q_last = min(q0 + kRows, T) - 1;
  const int32_t* starts = doc_start + b * T;
  const int64_t w_first = q0 + warp * 16;
  const int64_t i = w_first + r;
  const bool row_valid = i < T;
  load_tile<D>(Qs, q, b, q0, T, H, h);

  float o[S::kPerLane];
#pragma unroll
  for (int c = 0; c < S::kPerLane; c++) o[c] = 0.f;
  float m_run = -INFINITY, l_run = 0.f;
  // Key tiles from the tile holding the first query's document start: everything before it is masked.
  for (int64_t k0 = attn_first_key_tile(starts, q0); k0 <= q_last; k0 += kRows) {
    __syncthreads();
    load_tile<D>(Ks, k, b, k0, T, H, h);
    load_tile<D>(Vs, v, b, k0, T, H, h);
    __syncthreads();
    if (!attn_warp_sees_keys(starts, w_first, k0, T)) continue;  // warp-uniform: nothing here is visible to this warp
    scores<D>(scr, Qs + warp * 16 * S::kLd, Ks);
    __syncwarp();
    float s[32], mx = -INFINITY;
#pragma unroll
    for (int c = 0; c < 32; c++) {
      const int64_t j = k0 + half * 32 + c;
      const bool visible = row_valid && attn_visible(i, j, starts);
      s[c] = visible ? scr[r * kSLd + half * 32 + c] * scale : -INFINITY;
      mx = fmaxf(mx, s[c]);
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    const float m_new = fmaxf(m_run, mx);
    const float alpha = m_new == -INFINITY ? 1.f : expf(m_run - m_new);
    float sum = 0.f;
#pragma unroll
    for (int c = 0; c < 32; c++) {
      const float p = s[c] == -INFINITY ? 0.f : expf(s[c] - m_new);
      sum += p;
      prob[r * kPLd + half * 32 + c] = __float2bfloat16_rn(p);
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    l_run = l_run * alpha + sum;
    m_run = m_new;
    __syncwarp();
    FragC pv[D / 16];
#pragma unroll
    for (int dn = 0; dn < D / 16; dn++) wmma::fill_fragment(pv[dn], 0.f);
    accumulate<D>(pv, prob, Vs);
#pragma unroll
    for (int dn = 0; dn < D / 16; dn++) wmma::store_matrix_sync(stage + dn * 16, pv[dn], S::kOLd, wmma::mem_row_major);
    __syncwarp();
#pragma unroll
    for (int c = 0; c < S::kPerLane; c++) o[c] = o[c] * alpha + stage[r * S::kOLd + half * S::kPerLane + c];
    __syncwarp();
  }
  if (row_valid) {
    TS* dst = out + ((b * T + i) * H + h) * D + half * S::kPerLane;
    const float inv = 1.f / l_run;
#pragma unroll
    for (int c = 0; c < S::kPerLane; c++) st(dst + c, o[c] * inv, round);
    if (half == 0) lse[(b * H + h) * T + i] = m_run + logf(l_run);
  }
}

/* dK, dV for 64 keys: over the query tiles that can see them (from the keys' own tile to the end of the last
 * document that holds one of them). */
template <int D, typename TS>
__global__ void __launch_bounds__(kThreads) flash_backward_kv_kernel(TS* dk, TS* dv, const TS* dout, const float* lse, const float* delta,
                                                                     const TS* q, const TS* k, const TS* v, const int32_t* doc_start, int64_t T,
                                                                     int64_t H, float scale, bool round) {
  using S = Shape<D>;
  CX_DYNAMIC_SHARED(smem);
  bf16_t* Ks = reinterpret_cast<bf16_t*>(smem);
  bf16_t* Vs = reinterpret_cast<bf16_t*>(smem + S::kTile);
  bf16_t* Qs = reinterpret_cast<bf16_t*>(smem + 2 * S::kTile);
  bf16_t* Gs = reinterpret_cast<bf16_t*>(smem + 3 * S::kTile);  // dout
  unsigned char* rest = smem + 4 * S::kTile;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r = lane / 2, half = lane % 2;
  float* st_scores = reinterpret_cast<float*>(rest) + warp * 16 * kSLd;
  float* st_dprobs = reinterpret_cast<float*>(rest + S::kScores) + warp * 16 * kSLd;
  bf16_t* pt = reinterpret_cast<bf16_t*>(rest + 2 * S::kScores) + warp * 16 * kPLd;
  bf16_t* dst_t = reinterpret_cast<bf16_t*>(rest + 2 * S::kScores + S::kProbs) + warp * 16 * kPLd;
  float* stage = reinterpret_cast<float*>(rest + 2 * S::kScores + 2 * S::kProbs) + warp * 16 * S::kOLd;
  float* lse_s = reinterpret_cast<float*>(rest + 2 * S::kScores + 2 * S::kProbs + S::kStage);
  float* delta_s = lse_s + kRows;
  int32_t* start_s = reinterpret_cast<int32_t*>(delta_s + kRows);
  __shared__ int64_t q_end_shared;

  const int64_t b = blockIdx.z, h = blockIdx.y, k0 = (int64_t)blockIdx.x * kRows;
  const int64_t k_last = min(k0 + kRows, T) - 1;
  const int32_t* starts = doc_start + b * T;
  const int64_t j_first = k0 + warp * 16;
  const int64_t j = j_first + r;
  load_tile<D>(Ks, k, b, k0, T, H, h);
  load_tile<D>(Vs, v, b, k0, T, H, h);
  if (threadIdx.x == 0) q_end_shared = attn_query_end(starts, k0, k_last, T);
  __syncthreads();
  const int64_t q_end = q_end_shared;

  FragC acc_k[D / 16], acc_v[D / 16];
#pragma unroll
  for (int dn = 0; dn < D / 16; dn++) {
    wmma::fill_fragment(acc_k[dn], 0.f);
    wmma::fill_fragment(acc_v[dn], 0.f);
  }
  for (int64_t qt = (k0 / kRows) * kRows; qt < q_end; qt += kRows) {
    __syncthreads();
    load_tile<D>(Qs, q, b, qt, T, H, h);
    load_tile<D>(Gs, dout, b, qt, T, H, h);
    for (int x = threadIdx.x; x < kRows; x += kThreads) {
      const int64_t i = qt + x;
      lse_s[x] = i < T ? lse[(b * H + h) * T + i] : 0.f;
      delta_s[x] = i < T ? delta[(b * H + h) * T + i] : 0.f;
      start_s[x] = i < T ? starts[i] : INT32_MAX;
    }
    __syncthreads();
    if (!attn_warp_seen_by_queries(starts, j_first, qt, T)) continue;  // no query here sees these keys
    scores<D>(st_scores, Ks + warp * 16 * S::kLd, Qs);  // S^T: keys × queries
    scores<D>(st_dprobs, Vs + warp * 16 * S::kLd, Gs);  // dP^T = V · dO^T
    __syncwarp();
#pragma unroll 8
    for (int c = 0; c < 32; c++) {
      const int col = half * 32 + c;
      const int64_t i = qt + col;
      const bool visible = j < T && i < T && j <= i && j >= start_s[col];  // attn_visible, with doc_start staged
      const float p = visible ? expf(st_scores[r * kSLd + col] * scale - lse_s[col]) : 0.f;
      const float ds = p * (st_dprobs[r * kSLd + col] - delta_s[col]);
      pt[r * kPLd + col] = __float2bfloat16_rn(p);
      dst_t[r * kPLd + col] = __float2bfloat16_rn(ds);
    }
    __syncwarp();
    accumulate<D>(acc_v, pt, Gs);     // dV += P^T · dO
    accumulate<D>(acc_k, dst_t, Qs);  // dK += dS^T · Q (times scale at the end)
  }
  store_rows<D>(dk, acc_k, stage, b, j_first, T, H, h, scale, round);
  store_rows<D>(dv, acc_v, stage, b, j_first, T, H, h, 1.f, round);
}

/* dQ for 64 queries: over the same key tiles as the forward pass. */
template <int D, typename TS>
__global__ void __launch_bounds__(kThreads) flash_backward_q_kernel(TS* dq, const TS* dout, const float* lse, const float* delta, const TS* q,
                                                                    const TS* k, const TS* v, const int32_t* doc_start, int64_t T, int64_t H,
                                                                    float scale, bool round) {
  using S = Shape<D>;
  CX_DYNAMIC_SHARED(smem);
  bf16_t* Qs = reinterpret_cast<bf16_t*>(smem);
  bf16_t* Gs = reinterpret_cast<bf16_t*>(smem + S::kTile);
  bf16_t* Ks = reinterpret_cast<bf16_t*>(smem + 2 * S::kTile);
  bf16_t* Vs = reinterpret_cast<bf16_t*>(smem + 3 * S::kTile);
  unsigned char* rest = smem + 4 * S::kTile;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r = lane / 2, half = lane % 2;
  float* scr = reinterpret_cast<float*>(rest) + warp * 16 * kSLd;
  float* dprobs = reinterpret_cast<float*>(rest + S::kScores) + warp * 16 * kSLd;
  bf16_t* ds_tile = reinterpret_cast<bf16_t*>(rest + 2 * S::kScores) + warp * 16 * kPLd;
  float* stage = reinterpret_cast<float*>(rest + 2 * S::kScores + 2 * S::kProbs) + warp * 16 * S::kOLd;

  const int64_t b = blockIdx.z, h = blockIdx.y, q0 = (int64_t)blockIdx.x * kRows;
  const int64_t q_last = min(q0 + kRows, T) - 1;
  const int32_t* starts = doc_start + b * T;
  const int64_t w_first = q0 + warp * 16;
  const int64_t i = w_first + r;
  const bool row_valid = i < T;
  const float lse_i = row_valid ? lse[(b * H + h) * T + i] : 0.f, delta_i = row_valid ? delta[(b * H + h) * T + i] : 0.f;
  load_tile<D>(Qs, q, b, q0, T, H, h);
  load_tile<D>(Gs, dout, b, q0, T, H, h);

  FragC acc[D / 16];
#pragma unroll
  for (int dn = 0; dn < D / 16; dn++) wmma::fill_fragment(acc[dn], 0.f);
  for (int64_t k0 = attn_first_key_tile(starts, q0); k0 <= q_last; k0 += kRows) {
    __syncthreads();
    load_tile<D>(Ks, k, b, k0, T, H, h);
    load_tile<D>(Vs, v, b, k0, T, H, h);
    __syncthreads();
    if (!attn_warp_sees_keys(starts, w_first, k0, T)) continue;
    scores<D>(scr, Qs + warp * 16 * S::kLd, Ks);
    scores<D>(dprobs, Gs + warp * 16 * S::kLd, Vs);  // dP = dO · V^T
    __syncwarp();
#pragma unroll 8
    for (int c = 0; c < 32; c++) {
      const int col = half * 32 + c;
      const int64_t j = k0 + col;
      const bool visible = row_valid && attn_visible(i, j, starts);
      const float p = visible ? expf(scr[r * kSLd + col] * scale - lse_i) : 0.f;
      ds_tile[r * kPLd + col] = __float2bfloat16_rn(p * (dprobs[r * kSLd + col] - delta_i));
    }
    __syncwarp();
    accumulate<D>(acc, ds_tile, Ks);  // dQ += dS · K (times scale at the end)
  }
  store_rows<D>(dq, acc, stage, b, w_first, T, H, h, scale, round);
}

template <int D>
constexpr size_t forward_smem() {
  return 3 * Shape<D>::kTile + Shape<D>::kScores + Shape<D>::kProbs + Shape<D>::kStage;
}
template <int D>
constexpr size_t backward_smem() {
  return 4 * Shape<D>::kTile + 2 * Shape<D>::kScores + 2 * Shape<D>::kProbs + Shape<D>::kStage + 3 * kRows * sizeof(float);
}

template <typename Kernel>
void allow_smem(Kernel kernel, size_t bytes) {
  // Above 48 KB a kernel must opt in; harmless to repeat, so no cached flag to get wrong across devices.
  CX_CUDA(cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

template <int D, typename TS>
void forward_d(TS* out, float* lse, const TS* q, const TS* k, const TS* v, const int32_t* doc_start, int64_t B, int64_t T, int64_t H, bool round) {
  const dim3 grid((unsigned)((T + kRows - 1) / kRows), (unsigned)H, (unsigned)B);
  constexpr size_t smem = forward_smem<D>();
  allow_smem(flash_forward_kernel<D, TS>, smem);
  const auto kernel = flash_forward_kernel<D, TS>;
  CX_KERNEL_LAUNCH(kernel, grid, kThreads, smem, out, lse, q, k, v, doc_start, T, H, 1.f / sqrtf((float)D), round);
  CX_CUDA(cudaGetLastError());
}

template <int D, typename TS>
void backward_d(TS* dq, TS* dk, TS* dv, const TS* dout, const float* lse, const float* delta, const TS* q, const TS* k, const TS* v,
                const int32_t* doc_start, int64_t B, int64_t T, int64_t H, bool round) {
  const dim3 grid((unsigned)((T + kRows - 1) / kRows), (unsigned)H, (unsigned)B);
  constexpr size_t smem = backward_smem<D>();
  const float scale = 1.f / sqrtf((float)D);
  allow_smem(flash_backward_kv_kernel<D, TS>, smem);
  const auto kv_kernel = flash_backward_kv_kernel<D, TS>;
  CX_KERNEL_LAUNCH(kv_kernel, grid, kThreads, smem, dk, dv, dout, lse, delta, q, k, v, doc_start, T, H, scale, round);
  CX_CUDA(cudaGetLastError());
  allow_smem(flash_backward_q_kernel<D, TS>, smem);
  const auto q_kernel = flash_backward_q_kernel<D, TS>;
  CX_KERNEL_LAUNCH(q_kernel, grid, kThreads, smem, dq, dout, lse, delta, q, k, v, doc_start, T, H, scale, round);
  CX_CUDA(cudaGetLastError());
}

}  // namespace

bool flash_attention_supports(int64_t D) { return D == 16 || D == 32 || D == 64 || D == 128; }

template <typename TS>
void flash_attention_forward(TS* out, float* lse, const TS* q, const TS* k, const TS* v, const int32_t* doc_start, int64_t B, int64_t T,
                             int64_t H, int64_t D, bool round) {
  if (B <= 0 || T <= 0) return;
  switch (D) {
    case 16: return forward_d<16>(out, lse, q, k, v, doc_start, B, T, H, round);
    case 32: return forward_d<32>(out, lse, q, k, v, doc_start, B, T, H, round);
    case 64: return forward_d<64>(out, lse, q, k, v, doc_start, B, T, H, round);
    case 128: return forward_d<128>(out, lse, q, k, v, doc_start, B, T, H, round);
    default: throw std::runtime_error("flash attention is not built for head size " + std::to_string(D));
  }
}

template <typename TS>
void flash_attention_backward(TS* dq, TS* dk, TS* dv, const TS* dout, const float* lse, const float* delta, const TS* q, const TS* k,
                              const TS* v, const int32_t* doc_start, int64_t B, int64_t T, int64_t H, int64_t D, bool round) {
  if (B <= 0 || T <= 0) return;
  switch (D) {
    case 16: return backward_d<16>(dq, dk, dv, dout, lse, delta, q, k, v, doc_start, B, T, H, round);
    case 32: return backward_d<32>(dq, dk, dv, dout, lse, delta, q, k, v, doc_start, B, T, H, round);
    case 64: return backward_d<64>(dq, dk, dv, dout, lse, delta, q, k, v, doc_start, B, T, H, round);
    case 128: return backward_d<128>(dq, dk, dv, dout, lse, delta, q, k, v, doc_start, B, T, H, round);
    default: throw std::runtime_error("flash attention is not built for head size " + std::to_string(D));
  }
}

template void flash_attention_forward<bf16_t>(bf16_t*, float*, const bf16_t*, const bf16_t*, const bf16_t*, const int32_t*, int64_t, int64_t,
                                              int64_t, int64_t, bool);
template void flash_attention_backward<bf16_t>(bf16_t*, bf16_t*, bf16_t*, const bf16_t*, const float*, const float*, const bf16_t*,
                                               const bf16_t*, const bf16_t*, const int32_t*, int64_t, int64_t, int64_t, int64_t, bool);

}  // namespace cx
