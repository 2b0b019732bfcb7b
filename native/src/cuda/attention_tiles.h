#pragma once
/* Which tiles the fused attention kernels visit, shared by the kernels and the host tests (native_test.cpp):
 * a mistake here silently drops attention terms, so it is tested on the CPU against every visible pair.
 * Blocks own kAttnTile queries (forward, dQ) or keys (dK/dV); warps own 16 of them. doc_start never decreases. */
#include <cstdint>

#ifdef __CUDACC__
#define CX_HD __host__ __device__ __forceinline__
#else
#define CX_HD inline
#endif

namespace cx {

constexpr int kAttnTile = 64;

/* Query i sees key j. */
CX_HD bool attn_visible(int64_t i, int64_t j, const int32_t* doc_start) { return j <= i && j >= doc_start[i]; }

/* Forward / dQ: the first key tile of the block whose first query is q0 (every earlier key is in an earlier document). */
CX_HD int64_t attn_first_key_tile(const int32_t* doc_start, int64_t q0) { return ((int64_t)doc_start[q0] / kAttnTile) * kAttnTile; }

/* Forward / dQ: false when no query of the warp [w_first, w_first+16) sees any key of the tile at k0. */
CX_HD bool attn_warp_sees_keys(const int32_t* doc_start, int64_t w_first, int64_t k0, int64_t T) {
  if (w_first >= T) return false;
  const int64_t w_last = w_first + 15 < T - 1 ? w_first + 15 : T - 1;
  return k0 <= w_last && k0 + kAttnTile - 1 >= doc_start[w_first];
}

/* dK/dV: one past the last query that sees a key of the block [k0, k_last]: the first query at or after k0
 * whose document starts after k_last (binary search over the non-decreasing doc_start). */
CX_HD int64_t attn_query_end(const int32_t* doc_start, int64_t k0, int64_t k_last, int64_t T) {
  int64_t lo = k0, hi = T;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (doc_start[mid] > k_last) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/* dK/dV: false when no query of the tile at qt sees any key of the warp [j_first, j_first+16). */
CX_HD bool attn_warp_seen_by_queries(const int32_t* doc_start, int64_t j_first, int64_t qt, int64_t T) {
  if (j_first >= T) return false;
  const int64_t j_last = j_first + 15 < T - 1 ? j_first + 15 : T - 1;
  return qt + kAttnTile - 1 >= j_first && doc_start[qt] <= j_last;
}

}  // namespace cx
