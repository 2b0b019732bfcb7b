#pragma once
/* Which tiles the fused attention kernels visit, shared by the kernels and the host tests (cuda_host_test.cpp):
 * a mistake here silently drops attention terms, so it is tested on the CPU against every visible pair.
 * Blocks own kAttnTile queries (forward, dQ) or keys (dK/dV); warps own 16 of them.
 *
 * The geometry: queries [0, Tq) at row positions q_offset.., keys [0, Tk) at k_offset..; query i sees key j when
 * starts[i] <= k_offset + j <= q_offset + i, starts being the queries' document starts (row positions, never
 * decreasing). Whole rows are the case Tq = Tk = T and both offsets 0; ring attention's blocks (context
 * parallelism) are any other. */
#include <cstdint>

#ifdef __CUDACC__
#define CX_HD __host__ __device__ __forceinline__
#else
#define CX_HD inline
#endif

namespace cx {

constexpr int kAttnTile = 64;

struct AttnGeometry {
  int64_t Tq, Tk, q_offset, k_offset;
};
CX_HD AttnGeometry attn_whole_rows(int64_t T) { return {T, T, 0, 0}; }

CX_HD int64_t attn_min(int64_t a, int64_t b) { return a < b ? a : b; }
CX_HD int64_t attn_max(int64_t a, int64_t b) { return a > b ? a : b; }

/* Query i sees key j. */
CX_HD bool attn_sees(const AttnGeometry& g, int64_t i, int64_t j, const int32_t* starts) {
  return i < g.Tq && j < g.Tk && g.k_offset + j <= g.q_offset + i && g.k_offset + j >= starts[i];
}

/* Forward / dQ: the key tiles of the block whose queries are [q0, q_last]: from the tile holding the first query's
 * document start (every earlier key is in an earlier document) to the last key no later than the last query;
 * none when the last is before the first. */
CX_HD int64_t attn_first_key_tile(const AttnGeometry& g, const int32_t* starts, int64_t q0) {
  return attn_max(0, (int64_t)starts[q0] - g.k_offset) / kAttnTile * kAttnTile;
}
CX_HD int64_t attn_last_key(const AttnGeometry& g, int64_t q_last) { return attn_min(g.Tk - 1, g.q_offset + q_last - g.k_offset); }

/* Forward / dQ: false when no query of the warp [w_first, w_first+16) sees any key of the tile at k0. */
CX_HD bool attn_warp_sees_keys(const AttnGeometry& g, const int32_t* starts, int64_t w_first, int64_t k0) {
  if (w_first >= g.Tq || k0 >= g.Tk) return false;
  const int64_t w_last = attn_min(w_first + 15, g.Tq - 1), k_last = attn_min(k0 + kAttnTile - 1, g.Tk - 1);
  return g.k_offset + k0 <= g.q_offset + w_last && g.k_offset + k_last >= starts[w_first];
}

/* dK/dV: the query tiles that can see the block's keys [k0, k_last]: from the tile of the first query at or after
 * the first key, to one past the last query whose document starts no later than the last key (binary search over
 * the non-decreasing starts). */
CX_HD int64_t attn_first_query_tile(const AttnGeometry& g, int64_t k0) { return attn_max(0, g.k_offset + k0 - g.q_offset) / kAttnTile * kAttnTile; }
CX_HD int64_t attn_query_end(const AttnGeometry& g, const int32_t* starts, int64_t k_last) {
  int64_t lo = 0, hi = g.Tq;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (starts[mid] > g.k_offset + k_last) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/* dK/dV: false when no query of the tile at qt sees any key of the warp [j_first, j_first+16). */
CX_HD bool attn_warp_seen_by_queries(const AttnGeometry& g, const int32_t* starts, int64_t j_first, int64_t qt) {
  if (j_first >= g.Tk || qt >= g.Tq) return false;
  const int64_t j_last = attn_min(j_first + 15, g.Tk - 1), q_last = attn_min(qt + kAttnTile - 1, g.Tq - 1);
  return g.q_offset + q_last >= g.k_offset + j_first && starts[qt] <= g.k_offset + j_last;
}

}  // namespace cx
