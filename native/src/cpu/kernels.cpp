#include "kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#define CX_CLONES __attribute__((target_clones("avx512f", "arch=x86-64-v3", "default")))

namespace cx::kernels {
namespace {

/* expf by range reduction and a degree-6 polynomial (Cephes), branch-free so loops vectorise; within
 * ~2 ulp of expf, and the same bits on every x86-64 machine. */
inline float exp_approx(float x) {
  x = std::min(std::max(x, -87.3f), 88.3f);
  const float t = x * 1.44269504088896341f;
  const float n = (t + 12582912.f) - 12582912.f;  // round to nearest
  const float f = (x - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * f + 1.3981999507e-3f;
  p = p * f + 8.3334519073e-3f;
  p = p * f + 4.1665795894e-2f;
  p = p * f + 1.6666665459e-1f;
  p = p * f + 5.0000001201e-1f;
  const float r = p * f * f + f + 1.f;
  const int32_t bits = ((int32_t)n + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return r * scale;
}

/* S[r][j] = scale * a_r . b_j for the 16 rows of a block and every key panel from p0 to p1, rows of S of
 * stride ld (indexed by absolute key position). a is [rows][D]; b in 16-key panels. 16 x 16 accumulators. */
CX_CLONES void block_scores(float* S, int64_t ld, const float* a, int64_t rows, const float* bp, int64_t D, int64_t p0, int64_t p1, float scale) {
  for (int64_t p = p0; p <= p1; p++) {
    float acc[QB][LANES] = {};
    const float* base = bp + p * D * LANES;
    for (int64_t d = 0; d < D; d++) {
      const float* kd = base + d * LANES;
#pragma GCC unroll 16
      for (int r = 0; r < QB; r++) {
        const float ar = (r < rows ? a[r * D + d] : 0.f) * scale;
        for (int l = 0; l < LANES; l++) acc[r][l] = std::fmaf(ar, kd[l], acc[r][l]);
      }
    }
    for (int r = 0; r < rows; r++)
      for (int l = 0; l < LANES; l++) S[r * ld + p * LANES + l] = acc[r][l];
  }
}

/* out[r][0:D] = sum_j W[r][j] * rows_j[0:D] over j in [j0, j1], 8 query rows at a time. */
CX_CLONES void block_weighted_rows(float* out, const float* W, int64_t ld, int64_t rows, const float* vals, int64_t D, int64_t j0, int64_t j1) {
  for (int64_t r0 = 0; r0 < rows; r0 += 8) {
    const int64_t nr = std::min<int64_t>(8, rows - r0);
    for (int64_t d0 = 0; d0 < D; d0 += 2 * LANES) {
      const int64_t nd = std::min<int64_t>(2 * LANES, D - d0);
      float acc[8][2 * LANES] = {};
      for (int64_t j = j0; j <= j1; j++) {
        float v[2 * LANES];
        for (int l = 0; l < 2 * LANES; l++) v[l] = l < nd ? vals[j * D + d0 + l] : 0.f;
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++) {
          const float w = r < nr ? W[(r0 + r) * ld + j] : 0.f;
          for (int l = 0; l < 2 * LANES; l++) acc[r][l] = std::fmaf(w, v[l], acc[r][l]);
        }
      }
      for (int64_t r = 0; r < nr; r++)
        for (int64_t l = 0; l < nd; l++) out[(r0 + r) * D + d0 + l] = acc[r][l];
    }
  }
}

}  // namespace

CX_CLONES void round_bf16_array(float* dst, const float* src, size_t n) {
  for (size_t i = 0; i < n; i++) {
    uint32_t u;
    std::memcpy(&u, &src[i], 4);
    const bool special = (u & 0x7f800000u) == 0x7f800000u;
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    const uint32_t kept = ((u & 0x007fffffu) ? (u | 0x00400000u) : u) & 0xffff0000u;
    const uint32_t out = special ? kept : rounded;
    std::memcpy(&dst[i], &out, 4);
  }
}

/* Softmax cross-entropy of one row of logits z (overwritten with d loss/d z · scale when backward). */
CX_CLONES float cross_entropy_row(float* z, int64_t V, int32_t target, float scale, bool backward, bool bf16) {
  float mx = -INFINITY;
  for (int64_t j = 0; j < V; j++) mx = z[j] > mx ? z[j] : mx;
  const float zt = z[target];
  // exp once per logit, kept in place; 16 partial sums in a fixed order (vectorisable, deterministic).
  float part[16] = {0};
  int64_t j = 0;
  for (; j + 16 <= V; j += 16)
    for (int l = 0; l < 16; l++) part[l] += (z[j + l] = exp_approx(z[j + l] - mx));
  for (; j < V; j++) part[0] += (z[j] = exp_approx(z[j] - mx));
  double sum = 0.0;
  for (float p : part) sum += p;
  const float lse = mx + (float)std::log(sum);
  if (backward) {
    const float inv = (float)(1.0 / sum);
    for (int64_t k = 0; k < V; k++) z[k] = scale * (z[k] * inv);
    z[target] -= scale;
    if (bf16) round_bf16_array(z, z, (size_t)V);
  }
  return lse - zt;
}

CX_CLONES void swiglu_range(float* out, const float* gate, const float* up, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const float g = gate[i];
    out[i] = g / (1.f + exp_approx(-g)) * up[i];
  }
}

CX_CLONES void swiglu_backward_range(float* dgate, float* dup, const float* dout, const float* gate, const float* up, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const float g = gate[i], sig = 1.f / (1.f + exp_approx(-g));
    dgate[i] = dout[i] * up[i] * sig * (1.f + g * (1.f - sig));
    dup[i] = dout[i] * (g * sig);
  }
}

CX_CLONES void adamw_range(float* param, float* compute_copy, const float* grad, float* m, float* v, size_t n, AdamWParams hp) {
  for (size_t i = 0; i < n; i++) {
    const float g = grad[i] * hp.grad_scale;
    m[i] = hp.beta1 * m[i] + (1.f - hp.beta1) * g;
    v[i] = hp.beta2 * v[i] + (1.f - hp.beta2) * g * g;
    const float mhat = m[i] / hp.bias1, vhat = v[i] / hp.bias2;
    param[i] -= hp.lr * (mhat / (std::sqrt(vhat) + hp.eps) + hp.weight_decay * param[i]);
    compute_copy[i] = param[i];
  }
}

/* Attention for one (row, head) in blocks of 16 queries; q, v, o as [Tq][D], keys (and values) in panels.
 * Query i sees keys [lo[i], hi[i]] (empty when lo > hi: its output 0, its lse -inf); both bounds never decrease
 * along i, so a block's keys run from its first query's lo to its last query's hi, and each row masks its own. */
CX_CLONES void attention_head_forward(float* o, float* lse, const float* q, const float* kp, const float* v, const int32_t* lo, const int32_t* hi,
                                      int64_t Tq, int64_t Tp, int64_t D, float scale, float* S) {
  for (int64_t i0 = 0; i0 < Tq; i0 += QB) {
    const int64_t rows = std::min(QB, Tq - i0), j0 = lo[i0], j1 = hi[i0 + rows - 1];
    if (j1 < j0) {  // no query of the block sees a key
      for (int64_t x = i0 * D; x < (i0 + rows) * D; x++) o[x] = 0.f;
      for (int64_t r = 0; r < rows; r++) lse[i0 + r] = -INFINITY;
      continue;
    }
    block_scores(S, Tp, q + i0 * D, rows, kp, D, j0 / LANES, j1 / LANES, scale);
    for (int64_t r = 0; r < rows; r++) {
      float* s = S + r * Tp;
      const int64_t i = i0 + r, st = lo[i], en = hi[i];
      float mx = -INFINITY;
      for (int64_t j = st; j <= en; j++) mx = s[j] > mx ? s[j] : mx;
      float sum = 0.f;
      for (int64_t j = st; j <= en; j++) sum += (s[j] = exp_approx(s[j] - mx));
      const float inv = 1.f / sum;
      for (int64_t j = j0; j <= j1; j++) s[j] = (j >= st && j <= en) ? s[j] * inv : 0.f;
      lse[i] = st <= en ? mx + std::log(sum) : -INFINITY;
    }
    block_weighted_rows(o + i0 * D, S, Tp, rows, v, D, j0, j1);
  }
}

CX_CLONES void attention_head_backward(float* dq, float* dk, float* dv, const float* dout, const float* o, const float* lse, const float* q,
                                       const float* k, const float* kp, const float* vp, const int32_t* lo, const int32_t* hi, int64_t Tq, int64_t Tk,
                                       int64_t Tp, int64_t D, float scale, float* S, float* dP) {
  for (int64_t x = 0; x < Tk * D; x++) dk[x] = dv[x] = 0.f;
  for (int64_t i0 = 0; i0 < Tq; i0 += QB) {
    const int64_t rows = std::min(QB, Tq - i0), j0 = lo[i0], i1 = hi[i0 + rows - 1];
    if (i1 < j0) {  // no query of the block sees a key
      for (int64_t x = i0 * D; x < (i0 + rows) * D; x++) dq[x] = 0.f;
      continue;
    }
    block_scores(S, Tp, q + i0 * D, rows, kp, D, j0 / LANES, i1 / LANES, scale);
    block_scores(dP, Tp, dout + i0 * D, rows, vp, D, j0 / LANES, i1 / LANES, 1.f);
    for (int64_t r = 0; r < rows; r++) {
      const int64_t i = i0 + r, st = lo[i], en = hi[i];
      float* s = S + r * Tp;
      float* dp = dP + r * Tp;
      float delta = 0.f;
      for (int64_t d = 0; d < D; d++) delta += dout[i * D + d] * o[i * D + d];
      const float l = lse[i];
      for (int64_t j = j0; j <= i1; j++) s[j] = exp_approx(s[j] - l);
      for (int64_t j = j0; j <= i1; j++) dp[j] = s[j] * (dp[j] - delta) * scale;  // now dS
      for (int64_t j = j0; j < std::min(st, i1 + 1); j++) s[j] = dp[j] = 0.f;  // before its range (another document)
      for (int64_t j = std::max(en + 1, j0); j <= i1; j++) s[j] = dp[j] = 0.f;  // after it (its future)
    }
    block_weighted_rows(dq + i0 * D, dP, Tp, rows, k, D, j0, i1);
    // dK_j += sum_r dS[r][j] q_r and dV_j += sum_r P[r][j] dO_r, each key's rows accumulated in registers.
    for (int64_t j = j0; j <= i1; j++) {
      float* __restrict dkj = dk + j * D;
      float* __restrict dvj = dv + j * D;
      for (int64_t d0 = 0; d0 < D; d0 += 2 * LANES) {
        const int64_t nd = std::min<int64_t>(2 * LANES, D - d0);
        float ak[2 * LANES] = {}, av[2 * LANES] = {};
        if (nd == 2 * LANES) {
          for (int64_t r = 0; r < rows; r++) {
            const float ds = dP[r * Tp + j], p = S[r * Tp + j];
            const float* qr = q + (i0 + r) * D + d0;
            const float* gr = dout + (i0 + r) * D + d0;
            for (int l = 0; l < 2 * LANES; l++) {
              ak[l] = std::fmaf(ds, qr[l], ak[l]);
              av[l] = std::fmaf(p, gr[l], av[l]);
            }
          }
          for (int l = 0; l < 2 * LANES; l++) {
            dkj[d0 + l] += ak[l];
            dvj[d0 + l] += av[l];
          }
        } else {
          for (int64_t r = 0; r < rows; r++) {
            const float ds = dP[r * Tp + j], p = S[r * Tp + j];
            for (int64_t l = 0; l < nd; l++) {
              ak[l] = std::fmaf(ds, q[(i0 + r) * D + d0 + l], ak[l]);
              av[l] = std::fmaf(p, dout[(i0 + r) * D + d0 + l], av[l]);
            }
          }
          for (int64_t l = 0; l < nd; l++) {
            dkj[d0 + l] += ak[l];
            dvj[d0 + l] += av[l];
          }
        }
      }
    }
  }
}

}  // namespace cx::kernels
