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
#include "threadpool.h"

namespace cx {
namespace {

using namespace kernels;

constexpr int64_t ROWS_PER_TASK = 64;

constexpr int64_t ELEMS_PER_TASK = 1 << 14;

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads) : pool_(threads) {}
  const char* name() const override { return "cpu"; }

  float* alloc(size_t n) override {
    void* p = nullptr;
    if (posix_memalign(&p, 64, std::max<size_t>(n, 1) * sizeof(float)) != 0) return nullptr;
    return static_cast<float*>(p);
  }
  void release(float* p) override { std::free(p); }
  void upload(float* dst, const float* src, size_t n) override { std::memcpy(dst, src, n * sizeof(float)); }
  void download(float* dst, const float* src, size_t n) override { std::memcpy(dst, src, n * sizeof(float)); }
  int32_t* alloc_i32(size_t n) override {
    void* p = nullptr;
    if (posix_memalign(&p, 64, std::max<size_t>(n, 1) * sizeof(int32_t)) != 0) return nullptr;
    return static_cast<int32_t*>(p);
  }
  void release_i32(int32_t* p) override { std::free(p); }
  void upload_i32(int32_t* dst, const int32_t* src, size_t n) override { std::memcpy(dst, src, n * sizeof(int32_t)); }
  void fill(float* dst, float value, size_t n) override {
    for_elements(n, [&](size_t i0, size_t i1) { std::fill(dst + i0, dst + i1, value); });
  }
  void copy_round(float* dst, const float* src, size_t n, bool bf16) override {
    for_elements(n, [&](size_t i0, size_t i1) {
      if (bf16) round_bf16_array(dst + i0, src + i0, i1 - i0);
      else if (dst != src) std::memcpy(dst + i0, src + i0, (i1 - i0) * sizeof(float));
    });
  }

  void embedding_forward(float* out, const int32_t* tokens, const float* wte, int64_t N, int64_t C, bool bf16) override {
    for_rows(N, [&](int64_t n) {
      const float* w = wte + (int64_t)tokens[n] * C;
      for (int64_t c = 0; c < C; c++) out[n * C + c] = maybe_bf16(w[c], bf16);
    });
  }

  void embedding_backward(float* dwte, const float* dout, const int32_t* tokens, int64_t N, int64_t C, bool) override {
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

  void matmul_forward(float* out, const float* inp, const float* weight, int64_t N, int64_t Cin, int64_t Cout, bool bf16) override {
    mm(bf16, false, true, N, Cout, Cin, inp, Cin, weight, Cin, out, Cout, false);
    if (bf16) copy_round(out, out, (size_t)(N * Cout), true);
  }

  void matmul_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight, int64_t N, int64_t Cin,
                       int64_t Cout, bool accumulate_dinp, bool bf16) override {
    if (dinp) {
      // Accumulating, the product is added to dinp in fp32 and the sum rounded once, as a GEMM with beta = 1
      // and a bf16 output does on the GPU.
      mm(bf16, false, false, N, Cin, Cout, dout, Cout, weight, Cin, dinp, Cin, accumulate_dinp);
      if (bf16) copy_round(dinp, dinp, (size_t)(N * Cin), true);
    }
    if (dweight) mm(bf16, true, false, Cout, Cin, N, dout, Cout, inp, Cin, dweight, Cin, true);
  }

  void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t N, int64_t C, float eps, bool bf16) override {
    for_rows(N, [&](int64_t n) {
      const float* x = inp + n * C;
      float ss = 0.f;
      for (int64_t c = 0; c < C; c++) ss += x[c] * x[c];
      const float r = 1.0f / std::sqrt(ss / (float)C + eps);
      rstd[n] = r;
      for (int64_t c = 0; c < C; c++) out[n * C + c] = maybe_bf16(x[c] * r * weight[c], bf16);
    });
  }

  void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight, const float* rstd,
                        int64_t N, int64_t C, bool bf16) override {
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

  void residual_forward(float* out, const float* a, const float* b, int64_t n, bool bf16) override {
    for_elements((size_t)n, [&](size_t i0, size_t i1) {
      for (size_t i = i0; i < i1; i++) out[i] = maybe_bf16(a[i] + b[i], bf16);
    });
  }

  void rope_forward(float* x, const int32_t* pos, int64_t N, int64_t H, int64_t D, float theta, bool bf16) override {
    rope(x, pos, N, H, D, theta, bf16, 1.f);
  }
  void rope_backward(float* dx, const int32_t* pos, int64_t N, int64_t H, int64_t D, float theta, bool bf16) override {
    rope(dx, pos, N, H, D, theta, bf16, -1.f);
  }

  void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, const int32_t* doc_start, int64_t B,
                         int64_t T, int64_t H, int64_t D, bool bf16) override {
    const float scale = 1.0f / std::sqrt((float)D);
    pool_.parallel_for(B * H, [&](int64_t task, int thread) {
      const int64_t b = task / H, h = task % H;
      const int64_t Tp = (T + LANES - 1) / LANES * LANES;
      std::vector<float>& buf = thread_scratch(thread, (size_t)(3 * T * D + Tp * D + QB * Tp));
      float *qh = buf.data(), *kt = qh + T * D, *vh = kt + Tp * D, *oh = vh + T * D, *s = oh + T * D;
      gather_head(qh, kt, vh, nullptr, q, k, v, b, h, T, Tp, H, D);
      attention_head_forward(oh, lse + (b * H + h) * T, qh, kt, vh, doc_start + b * T, T, Tp, D, scale, s);
      for (int64_t t = 0; t < T; t++)
        for (int64_t d = 0; d < D; d++) out[((b * T + t) * H + h) * D + d] = maybe_bf16(oh[t * D + d], bf16);
    });
  }

  void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out, const float* lse, const float* q,
                          const float* k, const float* v, const int32_t* doc_start, int64_t B, int64_t T, int64_t H, int64_t D,
                          bool bf16) override {
    const float scale = 1.0f / std::sqrt((float)D);
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
      attention_head_backward(gq, gk, gv, gh, oh, lse + (b * H + h) * T, qh, kh, kt, vt, doc_start + b * T, T, Tp, D, scale, s, dp);
      for (int64_t t = 0; t < T; t++)
        for (int64_t d = 0; d < D; d++) {
          const int64_t at = ((b * T + t) * H + h) * D + d;
          dq[at] = maybe_bf16(gq[t * D + d], bf16);
          dk[at] = maybe_bf16(gk[t * D + d], bf16);
          dv[at] = maybe_bf16(gv[t * D + d], bf16);
        }
    });
  }

  void swiglu_forward(float* out, const float* gate, const float* up, int64_t n, bool bf16) override {
    for_elements((size_t)n, [&](size_t i0, size_t i1) {
      swiglu_range(out + i0, gate + i0, up + i0, i1 - i0);
      if (bf16) round_bf16_array(out + i0, out + i0, i1 - i0);
    });
  }

  void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n, bool bf16) override {
    for_elements((size_t)n, [&](size_t i0, size_t i1) {
      swiglu_backward_range(dgate + i0, dup + i0, dout + i0, gate + i0, up + i0, i1 - i0);
      if (bf16) {
        round_bf16_array(dgate + i0, dgate + i0, i1 - i0);
        round_bf16_array(dup + i0, dup + i0, i1 - i0);
      }
    });
  }

  void lm_head_cross_entropy(float* losses, float* dhidden, float* dweight, const float* hidden, const float* weight, const int32_t* targets,
                             int64_t N, int64_t C, int64_t V, float scale, bool bf16) override {
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
        if (bf16) copy_round(dhidden + r0 * C, dhidden + r0 * C, (size_t)(R * C), true);
        mm(bf16, true, false, V, C, R, logits.data(), V, hidden + r0 * C, C, dweight, C, true);
      }
    }
  }

  void lm_head_logits(float* out, const float* hidden, const float* weight, const int32_t* rows, int64_t R, int64_t C, int64_t V,
                      bool bf16) override {
    std::vector<float>& h = scratch(3, (size_t)(R * C));
    for (int64_t r = 0; r < R; r++) std::memcpy(h.data() + r * C, hidden + (int64_t)rows[r] * C, sizeof(float) * C);
    mm(bf16, false, true, R, V, C, h.data(), C, weight, C, out, V, false);
    if (bf16) copy_round(out, out, (size_t)(R * V), true);
  }

  double sum_squares(const float* x, size_t n) override {
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

  void clip_factor(double* clip, const float* grad, size_t n, float max_norm) override {
    const double norm = std::sqrt(sum_squares(grad, n));
    clip[0] = norm;
    clip[1] = !std::isfinite(norm) ? 0.0 : max_norm > 0 && norm > max_norm ? (double)max_norm / norm : 1.0;
  }

  void adamw(float* param, float* compute_copy, const float* grad, float* m, float* v, size_t n, const AdamWParams& given, bool bf16) override {
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

 private:
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

  void rope(float* x, const int32_t* pos, int64_t N, int64_t H, int64_t D, float theta, bool bf16, float sign) {
    const int64_t half = D / 2;
    int32_t max_pos = 0;
    for (int64_t n = 0; n < N; n++) max_pos = std::max(max_pos, pos[n]);
    // cos/sin per (position, frequency), computed once per call in double, as the per-element path did.
    std::vector<float>& table = scratch(4, (size_t)(2 * (max_pos + 1) * half));
    for (int64_t p = 0; p <= max_pos; p++)
      for (int64_t i = 0; i < half; i++) {
        const double inv_freq = std::pow((double)theta, -2.0 * (double)i / (double)D);
        const float angle = (float)((double)p * inv_freq);
        table[(size_t)(2 * (p * half + i))] = std::cos(angle);
        table[(size_t)(2 * (p * half + i) + 1)] = std::sin(angle);
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
    std::fill(kt, kt + Tp * D, 0.f);
    if (v_transposed) std::fill(vh, vh + Tp * D, 0.f);
    for (int64_t t = 0; t < T; t++) {
      const int64_t at = ((b * T + t) * H + h) * D;
      for (int64_t d = 0; d < D; d++) {
        qh[t * D + d] = q[at + d];
        kt[panel_index(t, d, D)] = k[at + d];
        if (kh) kh[t * D + d] = k[at + d];
        if (v_transposed) vh[panel_index(t, d, D)] = v[at + d];
        else vh[t * D + d] = v[at + d];
      }
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

}  // namespace

Backend* create_cpu_backend(int threads) { return new (std::nothrow) CpuBackend(std::min(threads, 256)); }

}  // namespace cx
