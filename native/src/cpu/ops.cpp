/* CPU backend: the reference implementation of every op. fp32 arithmetic with fp32 accumulation;
 * in bf16 mode, stored results are rounded to bf16 exactly where the CUDA backend stores bf16. */
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include "../model/backend.h"
#include "bf16.h"
#include "kernels.h"
#include "gemm.h"
#include "../util/threadpool.h"

namespace cx {
namespace {

using namespace kernels;

constexpr int64_t ROWS_PER_TASK = 64;

constexpr int64_t ELEMS_PER_TASK = 1 << 14;

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads) : pool_(threads) {}
  const char* name() const override { return "cpu"; }

  Tensor alloc(size_t n, DType dtype) override {
    void* p = nullptr;
    if (posix_memalign(&p, 64, std::max<size_t>(n, 1) * dtype_size(dtype)) != 0) return {};
    return Tensor(p, dtype, (int64_t)n, kHost);
  }
  void release(Tensor t) override { std::free(t.data); }
  void upload(Tensor dst, const void* src, size_t n) override { std::memcpy(dst.data, src, n * dtype_size(dst.dtype)); }
  void download(void* dst, Tensor src, size_t n) override { std::memcpy(dst, src.data, n * dtype_size(src.dtype)); }
  // The CPU stores every float tensor as fp32 (bf16 runs hold bf16 values in it).
  void upload_values(Tensor dst, const float* src, size_t n) override { std::memcpy(dst.f32(), src, n * sizeof(float)); }
  void download_values(float* dst, Tensor src, size_t n) override { std::memcpy(dst, src.f32(), n * sizeof(float)); }

  CX_BACKEND_OPS(CX_OVERRIDE_OP)

 private:
  void round_in_place(float* x, size_t n) {
    for_elements(n, [&](size_t i0, size_t i1) { round_bf16_array(x + i0, x + i0, i1 - i0); });
  }
  template <typename F>
  void for_rows(int64_t N, F&& fn) {
    pool_.parallel_for((N + ROWS_PER_TASK - 1) / ROWS_PER_TASK, [&](int64_t t, int) {
      for (int64_t n = t * ROWS_PER_TASK; n < std::min(N, (t + 1) * ROWS_PER_TASK); n++) fn(n);
    });
  }
  template <typename F>
  void for_elements(size_t n, F&& fn) {
    pool_.parallel_for((int64_t)((n + ELEMS_PER_TASK - 1) / ELEMS_PER_TASK), [&](int64_t t, int) {
      fn((size_t)t * ELEMS_PER_TASK, std::min(n, (size_t)(t + 1) * ELEMS_PER_TASK));
    });
  }

  void rope(float* x, const int32_t* pos, int64_t N, int64_t H, int64_t D, const double* inv_freq, float scale, bool bf16, float sign) {
    const int64_t half = D / 2;
    int32_t max_pos = 0;
    for (int64_t n = 0; n < N; n++) max_pos = std::max(max_pos, pos[n]);
    // cos/sin per (position, frequency): the angle in double, then float, once per call.
    std::vector<float>& table = scratch(4, (size_t)(2 * (max_pos + 1) * half));
    for (int64_t p = 0; p <= max_pos; p++)
      for (int64_t i = 0; i < half; i++) {
        const float angle = (float)((double)p * inv_freq[i]);
        table[(size_t)(2 * (p * half + i))] = std::cos(angle) * scale;
        table[(size_t)(2 * (p * half + i) + 1)] = std::sin(angle) * scale;
      }
    for_rows(N, [&](int64_t n) {
      const float* cs = table.data() + 2 * pos[n] * half;
      for (int64_t h = 0; h < H; h++) {
        float* row = x + (n * H + h) * D;
        for (int64_t i = 0; i < half; i++) {
          const float c = cs[2 * i], s = sign * cs[2 * i + 1];
          const float a = row[i], b = row[i + half];
          row[i] = maybe_bf16(a * c - b * s, bf16);
          row[i + half] = maybe_bf16(b * c + a * s, bf16);
        }
      }
    });
  }

  /* Copies one head out of [B][T][H][D]: q as [T][D], k in panels (and as [T][D] into kh when given),
   * v as [T][D] or in panels. Panels are zero-padded to Tp positions. */
  static void gather_head(float* qh, float* kt, float* vh, float* kh, const float* q, const float* k, const float* v, int64_t b, int64_t h,
                          int64_t T, int64_t Tp, int64_t H, int64_t D, bool v_transposed = false) {
    gather_rows(qh, q, b, h, T, H, D);
    gather_keys(kt, vh, kh, k, v, b, h, T, Tp, H, D, v_transposed);
  }
  /* One head of rows [B][T][H][D] as [T][D]. */
  static void gather_rows(float* xh, const float* x, int64_t b, int64_t h, int64_t T, int64_t H, int64_t D) {
    for (int64_t t = 0; t < T; t++)
      for (int64_t d = 0; d < D; d++) xh[t * D + d] = x[((b * T + t) * H + h) * D + d];
  }
  static void gather_keys(float* kt, float* vh, float* kh, const float* k, const float* v, int64_t b, int64_t h, int64_t T, int64_t Tp, int64_t H,
                          int64_t D, bool v_transposed) {
    std::fill(kt, kt + Tp * D, 0.f);
    if (v_transposed) std::fill(vh, vh + Tp * D, 0.f);
    for (int64_t t = 0; t < T; t++) {
      const int64_t at = ((b * T + t) * H + h) * D;
      for (int64_t d = 0; d < D; d++) {
        kt[panel_index(t, d, D)] = k[at + d];
        if (kh) kh[t * D + d] = k[at + d];
        if (v_transposed) vh[panel_index(t, d, D)] = v[at + d];
        else vh[t * D + d] = v[at + d];
      }
    }
  }
  /* Each query's visible keys [lo, hi] within a key block at k_offset (attention_block_*'s rule), in the block's
   * own positions; both never decrease along the queries. */
  static void key_ranges(std::vector<int32_t>& lo, std::vector<int32_t>& hi, const int32_t* q_start, int64_t q_offset, int64_t k_offset, int64_t Tq,
                         int64_t Tk) {
    lo.resize((size_t)Tq);
    hi.resize((size_t)Tq);
    for (int64_t i = 0; i < Tq; i++) {
      const int64_t first = std::max<int64_t>(q_start[i], k_offset) - k_offset, last = std::min(q_offset + i, k_offset + Tk - 1) - k_offset;
      // An empty range keeps lo within the block and never above a later query's (so the bounds stay monotone).
      lo[(size_t)i] = (int32_t)std::min(first, Tk);
      hi[(size_t)i] = (int32_t)std::max<int64_t>(last, -1);
    }
  }

  /* In bf16 mode every matmul operand holds bf16 values, so the bf16 dot-product kernel applies. */
  void mm(bool bf16, bool transA, bool transB, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
          float* C, int64_t ldc, bool accumulate) {
    if (bf16) gemm_bf16_operands(pool_, transA, transB, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
    else sgemm(pool_, transA, transB, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
  }

  std::vector<float>& scratch(int slot, size_t n) {
    auto& buf = scratch_[slot];
    if (buf.size() < n) buf.resize(n);
    return buf;
  }
  std::vector<float>& thread_scratch(int thread, size_t n) {
    auto& buf = thread_scratch_[(size_t)thread];
    if (buf.size() < n) buf.resize(n);
    return buf;
  }

  ThreadPool pool_;
  std::vector<float> scratch_[5];
  std::vector<std::vector<float>> thread_scratch_ = std::vector<std::vector<float>>(256);
};

void CpuBackend::fill(Tensor dst_, float value, size_t n) {
  float* dst = dst_.f32();
  for_elements(n, [&](size_t i0, size_t i1) { std::fill(dst + i0, dst + i1, value); });
}

void CpuBackend::copy_round(Tensor dst_, Tensor src_, size_t n, bool bf16) {
  float* dst = dst_.f32();
  const float* src = src_.f32();
  for_elements(n, [&](size_t i0, size_t i1) {
    if (bf16) round_bf16_array(dst + i0, src + i0, i1 - i0);
    else if (dst != src) std::memcpy(dst + i0, src + i0, (i1 - i0) * sizeof(float));
  });
}

void CpuBackend::embedding_forward(Tensor out_, Tensor tokens_, Tensor wte_, int64_t N, int64_t C, bool bf16) {
  float* out = out_.f32();
  const int32_t* tokens = tokens_.i32();
  const float* wte = wte_.f32();
  for_rows(N, [&](int64_t n) {
    const float* w = wte + (int64_t)tokens[n] * C;
    for (int64_t c = 0; c < C; c++) out[n * C + c] = maybe_bf16(w[c], bf16);
  });
}

void CpuBackend::embedding_backward(Tensor dwte_, Tensor dout_, Tensor tokens_, int64_t N, int64_t C, bool) {
  float* dwte = dwte_.f32();
  const float* dout = dout_.f32();
  const int32_t* tokens = tokens_.i32();
  // Split by channel blocks so no two threads touch one gradient element; rows are summed in order.
  const int64_t block = 16, blocks = (C + block - 1) / block;
  pool_.parallel_for(blocks, [&](int64_t b, int) {
    const int64_t c0 = b * block, c1 = std::min(C, c0 + block);
    for (int64_t n = 0; n < N; n++) {
      float* d = dwte + (int64_t)tokens[n] * C;
      const float* g = dout + n * C;
      for (int64_t c = c0; c < c1; c++) d[c] += g[c];
    }
  });
}

void CpuBackend::matmul_forward(Tensor out_, Tensor inp_, Tensor weight_, int64_t N, int64_t Cin, int64_t Cout, bool bf16) {
  float* out = out_.f32();
  const float* inp = inp_.f32();
  const float* weight = weight_.f32();
  mm(bf16, false, true, N, Cout, Cin, inp, Cin, weight, Cin, out, Cout, false);
  if (bf16) round_in_place(out, (size_t)(N * Cout));
}

void CpuBackend::matmul_backward(Tensor dinp_, Tensor dweight_, Tensor dout_, Tensor inp_, Tensor weight_, int64_t N, int64_t Cin, int64_t Cout, bool accumulate_dinp, bool bf16) {
  float* dinp = dinp_.f32();
  float* dweight = dweight_.f32();
  const float* dout = dout_.f32();
  const float* inp = inp_.f32();
  const float* weight = weight_.f32();
  if (dinp) {
    // Accumulating, the product is added to dinp in fp32 and the sum rounded once, as a GEMM with beta = 1
    // and a bf16 output does on the GPU.
    mm(bf16, false, false, N, Cin, Cout, dout, Cout, weight, Cin, dinp, Cin, accumulate_dinp);
    if (bf16) round_in_place(dinp, (size_t)(N * Cin));
  }
  if (dweight) mm(bf16, true, false, Cout, Cin, N, dout, Cout, inp, Cin, dweight, Cin, true);
}

void CpuBackend::rmsnorm_forward(Tensor out_, Tensor rstd_, Tensor inp_, Tensor weight_, int64_t N, int64_t C, float eps, bool bf16) {
  float* out = out_.f32();
  float* rstd = rstd_.f32();
  const float* inp = inp_.f32();
  const float* weight = weight_.f32();
  for_rows(N, [&](int64_t n) {
    const float* x = inp + n * C;
    float ss = 0.f;
    for (int64_t c = 0; c < C; c++) ss += x[c] * x[c];
    const float r = 1.0f / std::sqrt(ss / (float)C + eps);
    rstd[n] = r;
    for (int64_t c = 0; c < C; c++) out[n * C + c] = maybe_bf16(x[c] * r * weight[c], bf16);
  });
}

void CpuBackend::rmsnorm_backward(Tensor dinp_, Tensor dweight_, Tensor dout_, Tensor inp_, Tensor weight_, Tensor rstd_, int64_t N, int64_t C, bool bf16) {
  float* dinp = dinp_.f32();
  float* dweight = dweight_.f32();
  const float* dout = dout_.f32();
  const float* inp = inp_.f32();
  const float* weight = weight_.f32();
  const float* rstd = rstd_.f32();
  const int64_t tasks = (N + ROWS_PER_TASK - 1) / ROWS_PER_TASK;
  std::vector<float>& partial = scratch(1, (size_t)(tasks * C));
  pool_.parallel_for(tasks, [&](int64_t t, int) {
    float* pw = partial.data() + t * C;
    std::fill(pw, pw + C, 0.f);
    for (int64_t n = t * ROWS_PER_TASK; n < std::min(N, (t + 1) * ROWS_PER_TASK); n++) {
      const float* x = inp + n * C;
      const float* g = dout + n * C;
      const float r = rstd[n];
      float dot = 0.f;
      for (int64_t c = 0; c < C; c++) dot += g[c] * weight[c] * x[c];
      const float k = dot * r * r / (float)C;
      for (int64_t c = 0; c < C; c++) {
        dinp[n * C + c] = maybe_bf16(dinp[n * C + c] + r * (g[c] * weight[c] - x[c] * k), bf16);
        pw[c] += g[c] * x[c] * r;
      }
    }
  });
  for (int64_t t = 0; t < tasks; t++)
    for (int64_t c = 0; c < C; c++) dweight[c] += partial[t * C + c];
}

void CpuBackend::residual_forward(Tensor out_, Tensor a_, Tensor b_, int64_t n, bool bf16) {
  float* out = out_.f32();
  const float* a = a_.f32();
  const float* b = b_.f32();
  for_elements((size_t)n, [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; i++) out[i] = maybe_bf16(a[i] + b[i], bf16);
  });
}

void CpuBackend::residual_rmsnorm_forward(Tensor sum, Tensor norm, Tensor rstd, Tensor a, Tensor b, Tensor weight, int64_t N, int64_t C,
                                          float eps, bool bf16) {
  residual_forward(sum, a, b, N * C, bf16);
  rmsnorm_forward(norm, rstd, sum, weight, N, C, eps, bf16);
}

void CpuBackend::rope_forward(Tensor x_, Tensor pos_, int64_t N, int64_t H, int64_t D, Tensor inv_freq, float scale, bool bf16) {
  rope(x_.f32(), pos_.i32(), N, H, D, inv_freq.f64(), scale, bf16, 1.f);
}

void CpuBackend::rope_backward(Tensor dx_, Tensor pos_, int64_t N, int64_t H, int64_t D, Tensor inv_freq, float scale, bool bf16) {
  rope(dx_.f32(), pos_.i32(), N, H, D, inv_freq.f64(), scale, bf16, -1.f);
}

void CpuBackend::attention_forward(Tensor out_, Tensor lse_, Tensor q_, Tensor k_, Tensor v_, Tensor doc_start_, int64_t B, int64_t T, int64_t H, int64_t D, bool bf16) {
  float* out = out_.f32();
  float* lse = lse_.f32();
  const float* q = q_.f32();
  const float* k = k_.f32();
  const float* v = v_.f32();
  const int32_t* doc_start = doc_start_.i32();
  const float scale = 1.0f / std::sqrt((float)D);
  std::vector<int32_t> causal((size_t)T);  // query t sees keys up to itself
  for (int64_t t = 0; t < T; t++) causal[(size_t)t] = (int32_t)t;
  pool_.parallel_for(B * H, [&](int64_t task, int thread) {
    const int64_t b = task / H, h = task % H;
    const int64_t Tp = (T + LANES - 1) / LANES * LANES;
    std::vector<float>& buf = thread_scratch(thread, (size_t)(3 * T * D + Tp * D + QB * Tp));
    float *qh = buf.data(), *kt = qh + T * D, *vh = kt + Tp * D, *oh = vh + T * D, *s = oh + T * D;
    gather_head(qh, kt, vh, nullptr, q, k, v, b, h, T, Tp, H, D);
    attention_head_forward(oh, lse + (b * H + h) * T, qh, kt, vh, doc_start + b * T, causal.data(), T, Tp, D, scale, s);
    for (int64_t t = 0; t < T; t++)
      for (int64_t d = 0; d < D; d++) out[((b * T + t) * H + h) * D + d] = maybe_bf16(oh[t * D + d], bf16);
  });
}

void CpuBackend::attention_backward(Tensor dq_, Tensor dk_, Tensor dv_, Tensor dout_, Tensor out_, Tensor lse_, Tensor q_, Tensor k_, Tensor v_, Tensor doc_start_, int64_t B, int64_t T, int64_t H, int64_t D, bool bf16) {
  float* dq = dq_.f32();
  float* dk = dk_.f32();
  float* dv = dv_.f32();
  const float* dout = dout_.f32();
  const float* out = out_.f32();
  const float* lse = lse_.f32();
  const float* q = q_.f32();
  const float* k = k_.f32();
  const float* v = v_.f32();
  const int32_t* doc_start = doc_start_.i32();
  const float scale = 1.0f / std::sqrt((float)D);
  std::vector<int32_t> causal((size_t)T);
  for (int64_t t = 0; t < T; t++) causal[(size_t)t] = (int32_t)t;
  // One task per (row, head): dk and dv sum over queries, so each is owned by a single task.
  pool_.parallel_for(B * H, [&](int64_t task, int thread) {
    const int64_t b = task / H, h = task % H;
    const int64_t Tp = (T + LANES - 1) / LANES * LANES;
    std::vector<float>& buf = thread_scratch(thread, (size_t)(8 * T * D + 2 * Tp * D + 2 * QB * Tp));
    float *qh = buf.data(), *kt = qh + T * D, *vt = kt + Tp * D, *kh = vt + Tp * D, *gh = kh + T * D, *oh = gh + T * D;
    float *gq = oh + T * D, *gk = gq + T * D, *gv = gk + T * D, *s = gv + T * D, *dp = s + QB * Tp;
    gather_head(qh, kt, vt, kh, q, k, v, b, h, T, Tp, H, D, /*v_transposed=*/true);
    for (int64_t t = 0; t < T; t++)
      for (int64_t d = 0; d < D; d++) {
        gh[t * D + d] = dout[((b * T + t) * H + h) * D + d];
        oh[t * D + d] = out[((b * T + t) * H + h) * D + d];
      }
    attention_head_backward(gq, gk, gv, gh, oh, lse + (b * H + h) * T, qh, kh, kt, vt, doc_start + b * T, causal.data(), T, T, Tp, D, scale, s, dp);
    for (int64_t t = 0; t < T; t++)
      for (int64_t d = 0; d < D; d++) {
        const int64_t at = ((b * T + t) * H + h) * D + d;
        dq[at] = maybe_bf16(gq[t * D + d], bf16);
        dk[at] = maybe_bf16(gk[t * D + d], bf16);
        dv[at] = maybe_bf16(gv[t * D + d], bf16);
      }
  });
}

void CpuBackend::attention_block_forward(Tensor out_, Tensor lse_, Tensor q_, Tensor k_, Tensor v_, Tensor q_start_, int64_t q_offset,
                                         int64_t k_offset, int64_t Tq, int64_t Tk, int64_t H, int64_t D) {
  float* out = out_.f32();
  float* lse = lse_.f32();
  const float *q = q_.f32(), *k = k_.f32(), *v = v_.f32();
  const float scale = 1.0f / std::sqrt((float)D);
  std::vector<int32_t> lo, hi;
  key_ranges(lo, hi, q_start_.i32(), q_offset, k_offset, Tq, Tk);
  pool_.parallel_for(H, [&](int64_t h, int thread) {
    const int64_t Tp = (Tk + LANES - 1) / LANES * LANES;
    std::vector<float>& buf = thread_scratch(thread, (size_t)(2 * Tq * D + Tk * D + Tp * D + QB * Tp));
    float *qh = buf.data(), *kt = qh + Tq * D, *vh = kt + Tp * D, *oh = vh + Tk * D, *s = oh + Tq * D;
    gather_rows(qh, q, 0, h, Tq, H, D);
    gather_keys(kt, vh, nullptr, k, v, 0, h, Tk, Tp, H, D, false);
    attention_head_forward(oh, lse + h * Tq, qh, kt, vh, lo.data(), hi.data(), Tq, Tp, D, scale, s);
    for (int64_t t = 0; t < Tq; t++)
      for (int64_t d = 0; d < D; d++) out[(t * H + h) * D + d] = oh[t * D + d];
  });
}

void CpuBackend::attention_block_backward(Tensor dq_, Tensor dk_, Tensor dv_, Tensor dout_, Tensor out_, Tensor lse_, Tensor q_, Tensor k_, Tensor v_,
                                          Tensor q_start_, int64_t q_offset, int64_t k_offset, int64_t Tq, int64_t Tk, int64_t H, int64_t D) {
  float *dq = dq_.f32(), *dk = dk_.f32(), *dv = dv_.f32();
  const float *dout = dout_.f32(), *out = out_.f32(), *lse = lse_.f32(), *q = q_.f32(), *k = k_.f32(), *v = v_.f32();
  const float scale = 1.0f / std::sqrt((float)D);
  std::vector<int32_t> lo, hi;
  key_ranges(lo, hi, q_start_.i32(), q_offset, k_offset, Tq, Tk);
  pool_.parallel_for(H, [&](int64_t h, int thread) {
    const int64_t Tp = (Tk + LANES - 1) / LANES * LANES;
    std::vector<float>& buf = thread_scratch(thread, (size_t)(4 * Tq * D + 3 * Tk * D + 2 * Tp * D + 2 * QB * Tp));
    float *qh = buf.data(), *gh = qh + Tq * D, *oh = gh + Tq * D, *gq = oh + Tq * D, *kt = gq + Tq * D, *vt = kt + Tp * D, *kh = vt + Tp * D;
    float *gk = kh + Tk * D, *gv = gk + Tk * D, *s = gv + Tk * D, *dp = s + QB * Tp;
    gather_rows(qh, q, 0, h, Tq, H, D);
    gather_rows(gh, dout, 0, h, Tq, H, D);
    gather_rows(oh, out, 0, h, Tq, H, D);
    gather_keys(kt, vt, kh, k, v, 0, h, Tk, Tp, H, D, true);
    attention_head_backward(gq, gk, gv, gh, oh, lse + h * Tq, qh, kh, kt, vt, lo.data(), hi.data(), Tq, Tk, Tp, D, scale, s, dp);
    for (int64_t t = 0; t < Tq; t++)
      for (int64_t d = 0; d < D; d++) dq[(t * H + h) * D + d] += gq[t * D + d];
    for (int64_t t = 0; t < Tk; t++)
      for (int64_t d = 0; d < D; d++) {
        dk[(t * H + h) * D + d] += gk[t * D + d];
        dv[(t * H + h) * D + d] += gv[t * D + d];
      }
  });
}

void CpuBackend::attention_combine(Tensor acc_out_, Tensor acc_lse_, Tensor out_, Tensor lse_, int64_t Tq, int64_t H, int64_t D) {
  float *acc = acc_out_.f32(), *acc_lse = acc_lse_.f32();
  const float *out = out_.f32(), *lse = lse_.f32();
  pool_.parallel_for(H, [&](int64_t h, int) {
    for (int64_t i = 0; i < Tq; i++) {
      const float la = acc_lse[h * Tq + i], lb = lse[h * Tq + i], m = std::max(la, lb);
      if (m == -INFINITY) continue;  // neither block has a key for this query yet
      const float wa = std::exp(la - m), wb = std::exp(lb - m), sum = wa + wb;
      float* a = acc + (i * H + h) * D;
      const float* b = out + (i * H + h) * D;
      for (int64_t d = 0; d < D; d++) a[d] = (wa * a[d] + wb * b[d]) / sum;
      acc_lse[h * Tq + i] = m + std::log(sum);
    }
  });
}

void CpuBackend::attention_cached(Tensor out_, Tensor kcache_, Tensor vcache_, Tensor q_, Tensor k_, Tensor v_, int64_t Tq, int64_t past, int64_t H,
                                  int64_t D, bool bf16) {
  const int64_t C = H * D;
  float* out = out_.f32();
  float* kc = kcache_.f32();
  float* vc = vcache_.f32();
  const float* q = q_.f32();
  std::memcpy(kc + past * C, k_.f32(), (size_t)(Tq * C) * sizeof(float));
  std::memcpy(vc + past * C, v_.f32(), (size_t)(Tq * C) * sizeof(float));
  const float scale = 1.0f / std::sqrt((float)D);
  pool_.parallel_for(Tq * H, [&](int64_t task, int thread) {
    const int64_t i = task / H, h = task % H, keys = past + i + 1;
    std::vector<float>& buf = thread_scratch(thread, (size_t)(keys + D));
    float *s = buf.data(), *acc = s + keys;
    const float* qi = q + i * C + h * D;
    float mx = -INFINITY;
    for (int64_t j = 0; j < keys; j++) {
      float dot = 0.f;
      for (int64_t d = 0; d < D; d++) dot += qi[d] * kc[j * C + h * D + d];
      s[j] = dot * scale;
      mx = std::max(mx, s[j]);
    }
    float sum = 0.f;
    for (int64_t j = 0; j < keys; j++) sum += (s[j] = std::exp(s[j] - mx));
    std::fill(acc, acc + D, 0.f);
    for (int64_t j = 0; j < keys; j++)
      for (int64_t d = 0; d < D; d++) acc[d] += s[j] * vc[j * C + h * D + d];
    for (int64_t d = 0; d < D; d++) out[i * C + h * D + d] = maybe_bf16(acc[d] / sum, bf16);
  });
}

void CpuBackend::swiglu_forward(Tensor out_, Tensor gate_, Tensor up_, int64_t n, bool bf16) {
  float* out = out_.f32();
  const float* gate = gate_.f32();
  const float* up = up_.f32();
  for_elements((size_t)n, [&](size_t i0, size_t i1) {
    swiglu_range(out + i0, gate + i0, up + i0, i1 - i0);
    if (bf16) round_bf16_array(out + i0, out + i0, i1 - i0);
  });
}

void CpuBackend::swiglu_backward(Tensor dgate_, Tensor dup_, Tensor dout_, Tensor gate_, Tensor up_, int64_t n, bool bf16) {
  float* dgate = dgate_.f32();
  float* dup = dup_.f32();
  const float* dout = dout_.f32();
  const float* gate = gate_.f32();
  const float* up = up_.f32();
  for_elements((size_t)n, [&](size_t i0, size_t i1) {
    swiglu_backward_range(dgate + i0, dup + i0, dout + i0, gate + i0, up + i0, i1 - i0);
    if (bf16) {
      round_bf16_array(dgate + i0, dgate + i0, i1 - i0);
      round_bf16_array(dup + i0, dup + i0, i1 - i0);
    }
  });
}

void CpuBackend::lm_head_cross_entropy(Tensor losses_, Tensor dhidden_, Tensor dweight_, Tensor hidden_, Tensor weight_, Tensor targets_, int64_t N, int64_t C, int64_t V, float scale, bool bf16) {
  float* losses = losses_.f32();
  float* dhidden = dhidden_.f32();
  float* dweight = dweight_.f32();
  const float* hidden = hidden_.f32();
  const float* weight = weight_.f32();
  const int32_t* targets = targets_.i32();
  // Rows per chunk: the fp32 logits of one chunk stay near 16M floats.
  const int64_t rows = std::max<int64_t>(16, std::min<int64_t>(N, (int64_t)(1 << 24) / V));
  std::vector<float>& logits = scratch(2, (size_t)(rows * V));
  for (int64_t r0 = 0; r0 < N; r0 += rows) {
    const int64_t R = std::min(rows, N - r0);
    mm(bf16, false, true, R, V, C, hidden + r0 * C, C, weight, C, logits.data(), V, false);
    pool_.parallel_for(R, [&](int64_t r, int) {
      float* z = logits.data() + r * V;
      const int32_t target = targets[r0 + r];
      if (bf16) round_bf16_array(z, z, (size_t)V);
      if (target < 0) {
        losses[r0 + r] = NAN;
        std::fill(z, z + V, 0.f);
        return;
      }
      losses[r0 + r] = cross_entropy_row(z, V, target, scale, dhidden != nullptr, bf16);
    });
    if (dhidden) {
      mm(bf16, false, false, R, C, V, logits.data(), V, weight, C, dhidden + r0 * C, C, false);
      if (bf16) round_in_place(dhidden + r0 * C, (size_t)(R * C));
      mm(bf16, true, false, V, C, R, logits.data(), V, hidden + r0 * C, C, dweight, C, true);
    }
  }
}

void CpuBackend::lm_head_logits(Tensor out_, Tensor hidden_, Tensor weight_, Tensor rows_, int64_t R, int64_t C, int64_t V, bool bf16) {
  float* out = out_.f32();
  const float* hidden = hidden_.f32();
  const float* weight = weight_.f32();
  const int32_t* rows = rows_.i32();
  std::vector<float>& h = scratch(3, (size_t)(R * C));
  for (int64_t r = 0; r < R; r++) std::memcpy(h.data() + r * C, hidden + (int64_t)rows[r] * C, sizeof(float) * C);
  mm(bf16, false, true, R, V, C, h.data(), C, weight, C, out, V, false);
  if (bf16) round_in_place(out, (size_t)(R * V));
}

double CpuBackend::sum_squares(Tensor x_, size_t n) {
  const float* x = x_.f32();
  const int64_t tasks = (int64_t)((n + ELEMS_PER_TASK - 1) / ELEMS_PER_TASK);
  std::vector<double> partial((size_t)tasks, 0.0);
  pool_.parallel_for(tasks, [&](int64_t t, int) {
    double s = 0.0;
    for (size_t i = (size_t)t * ELEMS_PER_TASK; i < std::min(n, (size_t)(t + 1) * ELEMS_PER_TASK); i++) s += (double)x[i] * x[i];
    partial[(size_t)t] = s;
  });
  double total = 0.0;
  for (double s : partial) total += s;
  return total;
}

void CpuBackend::clip_factor(Tensor clip_, Tensor grad_, size_t n, float max_norm) {
  double* clip = clip_.f64();
  const float* grad = grad_.f32();
  const double norm = std::sqrt(sum_squares(grad_, n));
  clip[0] = norm;
  clip[1] = !std::isfinite(norm) ? 0.0 : max_norm > 0 && norm > max_norm ? (double)max_norm / norm : 1.0;
}

void CpuBackend::adamw(Tensor param_, Tensor compute_copy_, Tensor grad_, Tensor m_, Tensor v_, size_t n, const AdamWParams& given, bool bf16) {
  float* param = param_.f32();
  float* compute_copy = compute_copy_.f32();
  const float* grad = grad_.f32();
  float* m = m_.f32();
  float* v = v_.f32();
  AdamWParams hp = given;
  if (hp.clip) {
    if (!(hp.clip[1] > 0)) return;  // a non-finite gradient norm: nothing moves
    hp.grad_scale = (float)hp.clip[1];
  }
  for_elements(n, [&](size_t i0, size_t i1) {
    adamw_range(param + i0, compute_copy + i0, grad + i0, m + i0, v + i0, i1 - i0, hp);
    if (bf16 && compute_copy != param) round_bf16_array(compute_copy + i0, compute_copy + i0, i1 - i0);
  });
}

}  // namespace

Backend* create_cpu_backend(int threads) { return new (std::nothrow) CpuBackend(std::min(threads, 256)); }

}  // namespace cx
