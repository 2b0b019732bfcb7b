/* Fused document-masked attention (see flash_attention.h), FlashAttention-2 style on mma.sync tensor cores
 * (mma.cuh). Blocks of 4 warps own 64 queries (forward, dQ) or 64 keys (dK/dV); each warp owns 16 of them and
 * keeps its scores, probabilities and output accumulators in registers: the 16×64 score tile of a warp is 8
 * accumulator fragments, its softmax runs on them (row statistics shared by the 4 lanes of a quad), and the
 * probabilities go straight into the A operand of the next product. Shared memory holds only the bf16 tiles.
 * Softmax in base 2: scores are scaled by log2(e)/sqrt(D), so exp2f, and lse is converted back to base e. */
#include <cuda_bf16.h>

#include <type_traits>

#include "attention_tiles.h"
#include "common.cuh"
#include "flash_attention.h"
#include "mma.cuh"

namespace cx {
namespace {

constexpr int kRows = kAttnTile;  // queries (or keys) per block, and keys (or queries) per tile
constexpr int kWarps = 4, kThreads = 32 * kWarps;
constexpr int kNb = kRows / 8;  // 8-column accumulator fragments across a tile
constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;

template <int D>
struct Shape {
  static constexpr int kLd = D + 8;  // bf16 tile rows, padded: the fragment loads of a warp hit 32 different banks
  static constexpr size_t kTile = (size_t)kRows * kLd * sizeof(bf16_t);
};

/* Rows [t0, t0+64) of head h of batch row b of x ([B][T][H][D], packed bf16) into a shared-memory tile, eight
 * values (16 bytes) per access; rows past T are zero. */
template <int D>
__device__ void load_tile(bf16_t* tile, const bf16_t* x, int64_t b, int64_t t0, int64_t T, int64_t H, int64_t h) {
  constexpr int kVec = D / 8;
  for (int i = threadIdx.x; i < kRows * kVec; i += kThreads) {
    const int r = i / kVec, c = (i % kVec) * 8;
    const int64_t t = t0 + r;
    uint4 u = make_uint4(0u, 0u, 0u, 0u);
    const bf16_t* src = x + ((b * T + t) * H + h) * D + c;
    bf16_t* dst = tile + r * Shape<D>::kLd + c;
    CX_CHECK_ALIGNED(dst, sizeof(uint4));
    if (t < T) {
      CX_CHECK_ALIGNED(src, sizeof(uint4));
      u = *reinterpret_cast<const uint4*>(src);
    }
    *reinterpret_cast<uint4*>(dst) = u;
  }
}

/* acc[8][4] = A(16 rows of `rows`, all D) · Bᵀ where B's 64 rows are `cols` (S = Q·Kᵀ, dP = dO·Vᵀ and transposes). */
template <int D>
__device__ __forceinline__ void tile_products(float (&acc)[kNb][4], const bf16_t* rows, const bf16_t* cols) {
#pragma unroll
  for (int nb = 0; nb < kNb; nb++)
#pragma unroll
    for (int e = 0; e < 4; e++) acc[nb][e] = 0.f;
#pragma unroll
  for (int kk = 0; kk < D / 16; kk++) {
    uint32_t a[4];
    load_a(a, rows, Shape<D>::kLd, 0, kk * 16);
#pragma unroll
    for (int nb = 0; nb < kNb; nb++) {
      uint32_t bfrag[2];
      load_b_rows(bfrag, cols, Shape<D>::kLd, nb * 8, kk * 16);
      mma_bf16_16816(acc[nb], a, bfrag);
    }
  }
}

/* out[D/8][4] += P · X, P the 16×64 probabilities (accumulator layout, rounded to bf16 here), X a 64×D tile. */
template <int D>
__device__ __forceinline__ void accumulate_products(float (&out)[D / 8][4], const float (&p)[kNb][4], const bf16_t* x) {
#pragma unroll
  for (int kb = 0; kb < kRows / 16; kb++) {
    const uint32_t a[4] = {pack_bf16x2(p[2 * kb][0], p[2 * kb][1]), pack_bf16x2(p[2 * kb][2], p[2 * kb][3]),
                           pack_bf16x2(p[2 * kb + 1][0], p[2 * kb + 1][1]), pack_bf16x2(p[2 * kb + 1][2], p[2 * kb + 1][3])};
#pragma unroll
    for (int dn = 0; dn < D / 8; dn++) {
      uint32_t bfrag[2];
      load_b_cols(bfrag, x, Shape<D>::kLd, kb * 16, dn * 8);
      mma_bf16_16816(out[dn], a, bfrag);
    }
  }
}

/* One lane's two adjacent outputs: bf16 written as a pair, fp32 written or (kAdd) added to what is there. */
template <bool kAdd>
__device__ __forceinline__ void store_pair(bf16_t* out, float x0, float x1) {
  static_assert(!kAdd, "bf16 outputs are written, not added to");
  uint32_t* p = reinterpret_cast<uint32_t*>(out);
  CX_CHECK_ALIGNED(p, sizeof(uint32_t));
  *p = pack_bf16x2(x0, x1);
}
template <bool kAdd>
__device__ __forceinline__ void store_pair(float* out, float x0, float x1) {
  if (kAdd) out[0] += x0, out[1] += x1;
  else out[0] = x0, out[1] = x1;
}

/* Writes a warp's 16×D accumulator (rows row0 + g and row0 + g + 8 of T), times a per-row scale, into dst
 * [B][T][H][D] (store_pair: bf16, or fp32 set or added, for ring attention's blocks). */
template <int D, bool kAdd, typename Out>
__device__ __forceinline__ void store_rows(Out* dst, const float (&acc)[D / 8][4], int64_t b, int64_t row0, int64_t T, int64_t H, int64_t h,
                                           float scale0, float scale1) {
  const int g = (int)(threadIdx.x % 32) / 4, t = (int)(threadIdx.x % 4);
#pragma unroll
  for (int half = 0; half < 2; half++) {
    const int64_t row = row0 + g + 8 * half;
    if (row >= T) continue;
    const float scale = half ? scale1 : scale0;
    Out* out = dst + ((b * T + row) * H + h) * D + 2 * t;
#pragma unroll
    for (int dn = 0; dn < D / 8; dn++) store_pair<kAdd>(out + dn * 8, acc[dn][2 * half] * scale, acc[dn][2 * half + 1] * scale);
  }
}

/* Query i (whose document starts at `first`, read once per row) sees key j: attn_sees with the start in hand. */
__device__ __forceinline__ bool row_sees(const AttnGeometry& geo, int64_t i, int64_t j, int64_t first) {
  return i < geo.Tq && j < geo.Tk && geo.k_offset + j <= geo.q_offset + i && geo.k_offset + j >= first;
}

/* The column (key or query index within the tile) of accumulator element e of fragment nb. */
__device__ __forceinline__ int frag_col(int nb, int e) { return nb * 8 + 2 * (int)(threadIdx.x % 4) + (e & 1); }

/* f(nb, e, r, i, j) for every element of a warp's 16×64 score tile held by this lane: element e of fragment nb,
 * in the lane's row r (0: rows[0], 1: rows[1] = rows[0] + 8), query i = rows[r], key j. */
template <typename F>
__device__ __forceinline__ void for_each_score(const int64_t (&rows)[2], int64_t k0, F&& f) {
#pragma unroll
  for (int nb = 0; nb < kNb; nb++)
#pragma unroll
    for (int e = 0; e < 4; e++) f(nb, e, e / 2, rows[e / 2], k0 + frag_col(nb, e));
}

/* Out: bf16_t for whole rows (out normalised, as the model stores it), float for ring attention's blocks. */
template <int D, typename Out>
__global__ void __launch_bounds__(kThreads) flash_forward_kernel(Out* out, float* lse, const bf16_t* q, const bf16_t* k, const bf16_t* v,
                                                                 const int32_t* doc_start, AttnGeometry geo, int64_t H, float scale_log2) {
  using S = Shape<D>;
  CX_DYNAMIC_SHARED(smem);
  bf16_t* Qs = reinterpret_cast<bf16_t*>(smem);
  bf16_t* Ks = reinterpret_cast<bf16_t*>(smem + S::kTile);
  bf16_t* Vs = reinterpret_cast<bf16_t*>(smem + 2 * S::kTile);
  const int warp = threadIdx.x / 32, g = (int)(threadIdx.x % 32) / 4;

  const int64_t Tq = geo.Tq, Tk = geo.Tk;
  const int64_t b = blockIdx.z, h = blockIdx.y, q0 = (int64_t)blockIdx.x * kRows;
  const int64_t q_last = min(q0 + kRows, Tq) - 1;
  const int32_t* starts = doc_start + b * Tq;
  const int64_t w_first = q0 + warp * 16;
  const int64_t rows[2] = {w_first + g, w_first + g + 8};
  const int64_t first[2] = {rows[0] < Tq ? starts[rows[0]] : 0, rows[1] < Tq ? starts[rows[1]] : 0};
  load_tile<D>(Qs, q, b, q0, Tq, H, h);

  float o[D / 8][4];
#pragma unroll
  for (int dn = 0; dn < D / 8; dn++)
#pragma unroll
    for (int e = 0; e < 4; e++) o[dn][e] = 0.f;
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.f, 0.f};  // l: this lane's part of the row sum
  // Key tiles from the tile holding the first query's document start: everything before it is masked.
  for (int64_t k0 = attn_first_key_tile(geo, starts, q0); k0 <= attn_last_key(geo, q_last); k0 += kRows) {
    __syncthreads();
    load_tile<D>(Ks, k, b, k0, Tk, H, h);
    load_tile<D>(Vs, v, b, k0, Tk, H, h);
    __syncthreads();
    if (!attn_warp_sees_keys(geo, starts, w_first, k0)) continue;  // warp-uniform: nothing here is visible to this warp
    float s[kNb][4];
    tile_products<D>(s, Qs + warp * 16 * S::kLd, Ks);
    float mx[2] = {-INFINITY, -INFINITY};
    for_each_score(rows, k0, [&](int nb, int e, int r, int64_t i, int64_t j) {
      s[nb][e] = row_sees(geo, i, j, first[r]) ? s[nb][e] * scale_log2 : -INFINITY;
      mx[r] = fmaxf(mx[r], s[nb][e]);
    });
    float alpha[2], m_use[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      const float m_new = fmaxf(m_run[r], mx[r]);
      alpha[r] = m_new == -INFINITY ? 1.f : exp2f(m_run[r] - m_new);
      m_use[r] = m_new == -INFINITY ? 0.f : m_new;  // a row with nothing visible yet: every p is exp2(-inf) = 0
      m_run[r] = m_new;
    }
    float sum[2] = {0.f, 0.f};
#pragma unroll
    for (int nb = 0; nb < kNb; nb++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        s[nb][e] = exp2f(s[nb][e] - m_use[e / 2]);
        sum[e / 2] += s[nb][e];
      }
#pragma unroll
    for (int r = 0; r < 2; r++) l_run[r] = l_run[r] * alpha[r] + sum[r];
#pragma unroll
    for (int dn = 0; dn < D / 8; dn++)
#pragma unroll
      for (int e = 0; e < 4; e++) o[dn][e] *= alpha[e / 2];
    accumulate_products<D>(o, s, Vs);
  }
  float inv[2];
#pragma unroll
  for (int r = 0; r < 2; r++) {
    l_run[r] += __shfl_xor_sync(0xffffffffu, l_run[r], 1);
    l_run[r] += __shfl_xor_sync(0xffffffffu, l_run[r], 2);
    inv[r] = l_run[r] > 0.f ? 1.f / l_run[r] : 0.f;
    // A query that sees none of the keys (a block's, under ring attention): lse -inf, output 0.
    if (threadIdx.x % 4 == 0 && rows[r] < Tq) lse[(b * H + h) * Tq + rows[r]] = l_run[r] > 0.f ? (m_run[r] + log2f(l_run[r])) * kLn2 : -INFINITY;
  }
  store_rows<D, false>(out, o, b, w_first, Tq, H, h, inv[0], inv[1]);
}

/* dK, dV for 64 keys: over the query tiles that can see them (from the keys' own tile to the end of the last
 * document that holds one of them). A warp's 16 keys are the rows of its score tile (Sᵀ = K·Qᵀ). Out and kAdd:
 * bf16 written for whole rows, fp32 added to for ring attention's blocks. */
template <int D, typename Out, bool kAdd>
__global__ void __launch_bounds__(kThreads) flash_backward_kv_kernel(Out* dk, Out* dv, const bf16_t* dout, const float* lse,
                                                                     const float* delta, const bf16_t* q, const bf16_t* k, const bf16_t* v,
                                                                     const int32_t* doc_start, AttnGeometry geo, int64_t H, float scale, float scale_log2) {
  using S = Shape<D>;
  CX_DYNAMIC_SHARED(smem);
  bf16_t* Ks = reinterpret_cast<bf16_t*>(smem);
  bf16_t* Vs = reinterpret_cast<bf16_t*>(smem + S::kTile);
  bf16_t* Qs = reinterpret_cast<bf16_t*>(smem + 2 * S::kTile);
  bf16_t* Gs = reinterpret_cast<bf16_t*>(smem + 3 * S::kTile);  // dout
  float* lse_s = reinterpret_cast<float*>(smem + 4 * S::kTile);  // base 2
  float* delta_s = lse_s + kRows;
  int32_t* start_s = reinterpret_cast<int32_t*>(delta_s + kRows);
  __shared__ int64_t q_end_shared;
  const int warp = threadIdx.x / 32, g = (int)(threadIdx.x % 32) / 4;

  const int64_t Tq = geo.Tq, Tk = geo.Tk;
  const int64_t b = blockIdx.z, h = blockIdx.y, k0 = (int64_t)blockIdx.x * kRows;
  const int64_t k_last = min(k0 + kRows, Tk) - 1;
  const int32_t* starts = doc_start + b * Tq;
  const int64_t j_first = k0 + warp * 16;
  const int64_t keys[2] = {j_first + g, j_first + g + 8};
  load_tile<D>(Ks, k, b, k0, Tk, H, h);
  load_tile<D>(Vs, v, b, k0, Tk, H, h);
  if (threadIdx.x == 0) q_end_shared = attn_query_end(geo, starts, k_last);
  __syncthreads();
  const int64_t q_end = q_end_shared;

  float acc_k[D / 8][4], acc_v[D / 8][4];
#pragma unroll
  for (int dn = 0; dn < D / 8; dn++)
#pragma unroll
    for (int e = 0; e < 4; e++) acc_k[dn][e] = acc_v[dn][e] = 0.f;
  for (int64_t qt = attn_first_query_tile(geo, k0); qt < q_end; qt += kRows) {
    __syncthreads();
    load_tile<D>(Qs, q, b, qt, Tq, H, h);
    load_tile<D>(Gs, dout, b, qt, Tq, H, h);
    for (int x = threadIdx.x; x < kRows; x += kThreads) {
      const int64_t i = qt + x;
      lse_s[x] = i < Tq ? lse[(b * H + h) * Tq + i] * kLog2e : 0.f;
      delta_s[x] = i < Tq ? delta[(b * H + h) * Tq + i] : 0.f;
      start_s[x] = i < Tq ? starts[i] : INT32_MAX;
    }
    __syncthreads();
    if (!attn_warp_seen_by_queries(geo, starts, j_first, qt)) continue;  // no query here sees these keys
    float p[kNb][4], ds[kNb][4];
    tile_products<D>(p, Ks + warp * 16 * S::kLd, Qs);   // Sᵀ: keys × queries
    tile_products<D>(ds, Vs + warp * 16 * S::kLd, Gs);  // dPᵀ = V · dOᵀ
#pragma unroll
    for (int nb = 0; nb < kNb; nb++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int col = frag_col(nb, e);
        const int64_t i = qt + col, j = keys[e / 2];
        const bool visible = row_sees(geo, i, j, start_s[col]);  // with the query's start staged
        p[nb][e] = visible ? exp2f(p[nb][e] * scale_log2 - lse_s[col]) : 0.f;
        ds[nb][e] = p[nb][e] * (ds[nb][e] - delta_s[col]);
      }
    accumulate_products<D>(acc_v, p, Gs);   // dV += Pᵀ · dO
    accumulate_products<D>(acc_k, ds, Qs);  // dK += dSᵀ · Q (times scale at the end)
  }
  store_rows<D, kAdd>(dk, acc_k, b, j_first, Tk, H, h, scale, scale);
  store_rows<D, kAdd>(dv, acc_v, b, j_first, Tk, H, h, 1.f, 1.f);
}

/* dQ for 64 queries: over the same key tiles as the forward pass. */
template <int D, typename Out, bool kAdd>
__global__ void __launch_bounds__(kThreads) flash_backward_q_kernel(Out* dq, const bf16_t* dout, const float* lse, const float* delta,
                                                                    const bf16_t* q, const bf16_t* k, const bf16_t* v, const int32_t* doc_start,
                                                                    AttnGeometry geo, int64_t H, float scale, float scale_log2) {
  using S = Shape<D>;
  CX_DYNAMIC_SHARED(smem);
  bf16_t* Qs = reinterpret_cast<bf16_t*>(smem);
  bf16_t* Gs = reinterpret_cast<bf16_t*>(smem + S::kTile);
  bf16_t* Ks = reinterpret_cast<bf16_t*>(smem + 2 * S::kTile);
  bf16_t* Vs = reinterpret_cast<bf16_t*>(smem + 3 * S::kTile);
  const int warp = threadIdx.x / 32, g = (int)(threadIdx.x % 32) / 4;

  const int64_t Tq = geo.Tq, Tk = geo.Tk;
  const int64_t b = blockIdx.z, h = blockIdx.y, q0 = (int64_t)blockIdx.x * kRows;
  const int64_t q_last = min(q0 + kRows, Tq) - 1;
  const int32_t* starts = doc_start + b * Tq;
  const int64_t w_first = q0 + warp * 16;
  const int64_t rows[2] = {w_first + g, w_first + g + 8};
  int64_t first[2];
  float lse2[2], delta_r[2];
#pragma unroll
  for (int r = 0; r < 2; r++) {
    const bool valid = rows[r] < Tq;
    first[r] = valid ? starts[rows[r]] : 0;
    lse2[r] = valid ? lse[(b * H + h) * Tq + rows[r]] * kLog2e : 0.f;
    delta_r[r] = valid ? delta[(b * H + h) * Tq + rows[r]] : 0.f;
  }
  load_tile<D>(Qs, q, b, q0, Tq, H, h);
  load_tile<D>(Gs, dout, b, q0, Tq, H, h);

  float acc[D / 8][4];
#pragma unroll
  for (int dn = 0; dn < D / 8; dn++)
#pragma unroll
    for (int e = 0; e < 4; e++) acc[dn][e] = 0.f;
  for (int64_t k0 = attn_first_key_tile(geo, starts, q0); k0 <= attn_last_key(geo, q_last); k0 += kRows) {
    __syncthreads();
    load_tile<D>(Ks, k, b, k0, Tk, H, h);
    load_tile<D>(Vs, v, b, k0, Tk, H, h);
    __syncthreads();
    if (!attn_warp_sees_keys(geo, starts, w_first, k0)) continue;
    float ds[kNb][4], dp[kNb][4];
    tile_products<D>(ds, Qs + warp * 16 * S::kLd, Ks);  // S
    tile_products<D>(dp, Gs + warp * 16 * S::kLd, Vs);  // dP = dO · Vᵀ
    for_each_score(rows, k0, [&](int nb, int e, int r, int64_t i, int64_t j) {
      const float p = row_sees(geo, i, j, first[r]) ? exp2f(ds[nb][e] * scale_log2 - lse2[r]) : 0.f;
      ds[nb][e] = p * (dp[nb][e] - delta_r[r]);
    });
    accumulate_products<D>(acc, ds, Ks);  // dQ += dS · K (times scale at the end)
  }
  store_rows<D, kAdd>(dq, acc, b, w_first, Tq, H, h, scale, scale);
}

template <int D>
constexpr size_t forward_smem() {
  return 3 * Shape<D>::kTile;
}
template <int D>
constexpr size_t backward_smem() {
  return 4 * Shape<D>::kTile + 3 * kRows * sizeof(float);
}

template <typename Kernel>
void allow_smem(Kernel kernel, size_t bytes) {
  // Above 48 KB a kernel must opt in; harmless to repeat, so no cached flag to get wrong across devices.
  CX_CUDA(cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

template <int D, typename Out>
void forward_d(Out* out, float* lse, const bf16_t* q, const bf16_t* k, const bf16_t* v, const int32_t* doc_start, int64_t B, AttnGeometry geo,
               int64_t H) {
  const dim3 grid((unsigned)((geo.Tq + kRows - 1) / kRows), (unsigned)H, (unsigned)B);
  constexpr size_t smem = forward_smem<D>();
  allow_smem(flash_forward_kernel<D, Out>, smem);
  const auto kernel = flash_forward_kernel<D, Out>;
  CX_KERNEL_LAUNCH(kernel, grid, kThreads, smem, out, lse, q, k, v, doc_start, geo, H, kLog2e / sqrtf((float)D));
  CX_CUDA(cudaGetLastError());
}

template <int D, typename Out, bool kAdd>
void backward_d(Out* dq, Out* dk, Out* dv, const bf16_t* dout, const float* lse, const float* delta, const bf16_t* q, const bf16_t* k,
                const bf16_t* v, const int32_t* doc_start, int64_t B, AttnGeometry geo, int64_t H) {
  const dim3 keys((unsigned)((geo.Tk + kRows - 1) / kRows), (unsigned)H, (unsigned)B), queries((unsigned)((geo.Tq + kRows - 1) / kRows), (unsigned)H, (unsigned)B);
  constexpr size_t smem = backward_smem<D>();
  const float scale = 1.f / sqrtf((float)D), scale_log2 = kLog2e * scale;
  allow_smem(flash_backward_kv_kernel<D, Out, kAdd>, smem);
  const auto kv_kernel = flash_backward_kv_kernel<D, Out, kAdd>;
  CX_KERNEL_LAUNCH(kv_kernel, keys, kThreads, smem, dk, dv, dout, lse, delta, q, k, v, doc_start, geo, H, scale, scale_log2);
  CX_CUDA(cudaGetLastError());
  allow_smem(flash_backward_q_kernel<D, Out, kAdd>, smem);
  const auto q_kernel = flash_backward_q_kernel<D, Out, kAdd>;
  CX_KERNEL_LAUNCH(q_kernel, queries, kThreads, smem, dq, dout, lse, delta, q, k, v, doc_start, geo, H, scale, scale_log2);
  CX_CUDA(cudaGetLastError());
}

/* body(std::integral_constant<int, D>) for the head sizes the kernels are built for. */
template <typename F>
void by_head_size(int64_t D, F&& body) {
  switch (D) {
    case 16: return body(std::integral_constant<int, 16>{});
    case 32: return body(std::integral_constant<int, 32>{});
    case 64: return body(std::integral_constant<int, 64>{});
    case 128: return body(std::integral_constant<int, 128>{});
    default: throw std::runtime_error("flash attention is not built for head size " + std::to_string(D));
  }
}

}  // namespace

bool flash_attention_supports(int64_t D) { return D == 16 || D == 32 || D == 64 || D == 128; }

template <typename TS>
void flash_attention_forward(TS* out, float* lse, const TS* q, const TS* k, const TS* v, const int32_t* doc_start, int64_t B, int64_t T,
                             int64_t H, int64_t D, bool) {
  static_assert(std::is_same<TS, bf16_t>::value, "the fused kernels read and write packed bf16");
  if (B <= 0 || T <= 0) return;
  by_head_size(D, [&](auto d) { forward_d<decltype(d)::value, bf16_t>(out, lse, q, k, v, doc_start, B, attn_whole_rows(T), H); });
}

template <typename TS>
void flash_attention_backward(TS* dq, TS* dk, TS* dv, const TS* dout, const float* lse, const float* delta, const TS* q, const TS* k,
                              const TS* v, const int32_t* doc_start, int64_t B, int64_t T, int64_t H, int64_t D, bool) {
  static_assert(std::is_same<TS, bf16_t>::value, "the fused kernels read and write packed bf16");
  if (B <= 0 || T <= 0) return;
  by_head_size(D, [&](auto d) { backward_d<decltype(d)::value, bf16_t, false>(dq, dk, dv, dout, lse, delta, q, k, v, doc_start, B, attn_whole_rows(T), H); });
}

template <typename TS>
void flash_attention_block_forward(float* out, float* lse, const TS* q, const TS* k, const TS* v, const int32_t* q_start, int64_t q_offset,
                                   int64_t k_offset, int64_t Tq, int64_t Tk, int64_t H, int64_t D) {
  static_assert(std::is_same<TS, bf16_t>::value, "the fused kernels read packed bf16");
  if (Tq <= 0) return;
  const AttnGeometry geo{Tq, Tk, q_offset, k_offset};
  by_head_size(D, [&](auto d) { forward_d<decltype(d)::value, float>(out, lse, q, k, v, q_start, 1, geo, H); });
}

template <typename TS>
void flash_attention_block_backward(float* dq, float* dk, float* dv, const TS* dout, const float* lse, const float* delta, const TS* q, const TS* k,
                                    const TS* v, const int32_t* q_start, int64_t q_offset, int64_t k_offset, int64_t Tq, int64_t Tk, int64_t H,
                                    int64_t D) {
  static_assert(std::is_same<TS, bf16_t>::value, "the fused kernels read packed bf16");
  if (Tq <= 0 || Tk <= 0) return;
  const AttnGeometry geo{Tq, Tk, q_offset, k_offset};
  by_head_size(D, [&](auto d) { backward_d<decltype(d)::value, float, true>(dq, dk, dv, dout, lse, delta, q, k, v, q_start, 1, geo, H); });
}

template void flash_attention_forward<bf16_t>(bf16_t*, float*, const bf16_t*, const bf16_t*, const bf16_t*, const int32_t*, int64_t, int64_t,
                                              int64_t, int64_t, bool);
template void flash_attention_backward<bf16_t>(bf16_t*, bf16_t*, bf16_t*, const bf16_t*, const float*, const float*, const bf16_t*,
                                               const bf16_t*, const bf16_t*, const int32_t*, int64_t, int64_t, int64_t, int64_t, bool);
template void flash_attention_block_forward<bf16_t>(float*, float*, const bf16_t*, const bf16_t*, const bf16_t*, const int32_t*, int64_t, int64_t,
                                                    int64_t, int64_t, int64_t, int64_t);
template void flash_attention_block_backward<bf16_t>(float*, float*, float*, const bf16_t*, const float*, const float*, const bf16_t*, const bf16_t*,
                                                     const bf16_t*, const int32_t*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t);

}  // namespace cx
