/* CUDA backend: every op of the CPU backend, under the same names, with the same rounding points.
 *   "cuda": bf16 runs store activations and the compute copy of the weights as packed bf16 (backend.h says how
 *     the model addresses them); matmuls through cuBLASLt on bf16 tensor cores with fp32 accumulation; attention
 *     through the fused document-masked kernels. fp32 runs: cuBLASLt in fp32, reference attention.
 *   "cuda-reference": fp32 storage (bf16 values rounded in place) and the simple kernels of reference.cu only:
 *     the yardstick the fast path is checked against on the GPU (native/test/gpu-check.sh).
 * Weight gradients, master weights, AdamW moments and statistics are fp32 in every mode.
 * CHUXIN_CUDA_GEMM=reference makes the fast backend use the reference GEMM instead of cuBLASLt (to tell a
 * cuBLASLt problem from a kernel problem).
 * Status: checked on an H200 (native/test/gpu-check.sh, 2026-11-26: 104 of 104 against the CPU backend;
 * bench/gpu-notes.md has the throughput) and run in CI under the CPU emulation of CUDA (native/test/emu);
 * the sm_80 build is compiled but has not run on an A100. */
#include <cuda_runtime.h>

#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "../model/backend.h"
#include "common.cuh"
#include "flash_attention.h"
#include "gemm_lt.h"
#include "kernels.h"

namespace cx {
namespace {

using cuda::bf16_t;

/* A float* handed over by the model, as the packed bf16 array the fast backend keeps there. */
inline bf16_t* P(float* p) { return reinterpret_cast<bf16_t*>(p); }
inline const bf16_t* P(const float* p) { return reinterpret_cast<const bf16_t*>(p); }
inline float* F(bf16_t* p) { return reinterpret_cast<float*>(p); }
inline const float* F(const bf16_t* p) { return reinterpret_cast<const float*>(p); }

/* How a GEMM stores its output: as the run stores activations, or always fp32 (optionally rounded to bf16 values). */
enum class Out { Activation, Fp32, Fp32Rounded };

class CudaBackend final : public Backend {
 public:
  /* Throws with the reason (no cuBLASLt, no memory). */
  explicit CudaBackend(bool reference) : reference_(reference) {
    CX_CUDA(cudaMalloc(&partial_, cuda::kSumBlocks * sizeof(double)));
    const char* gemm = std::getenv("CHUXIN_CUDA_GEMM");
    if (!reference_ && !(gemm && std::string(gemm) == "reference")) {
      lt_ = std::make_unique<LtGemm>();
      std::string why;
      if (!lt_->init(&why)) {
        cudaFree(partial_);
        throw std::runtime_error(why);
      }
    }
  }
  ~CudaBackend() override {
    lt_.reset();
    cudaFree(partial_);
    cudaFree(scratch_);
  }
  const char* name() const override { return reference_ ? "cuda-reference" : "cuda"; }
  float* alloc(size_t n) override {
    void* p = nullptr;
    return cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(float)) == cudaSuccess ? static_cast<float*>(p) : (cudaGetLastError(), nullptr);
  }
  void release(float* p) override { cudaFree(p); }
  int32_t* alloc_i32(size_t n) override {
    void* p = nullptr;
    return cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(int32_t)) == cudaSuccess ? static_cast<int32_t*>(p) : (cudaGetLastError(), nullptr);
  }
  void release_i32(int32_t* p) override { cudaFree(p); }
  void upload_i32(int32_t* dst, const int32_t* src, size_t n) override { CX_CUDA(cudaMemcpy(dst, src, n * 4, cudaMemcpyHostToDevice)); }
  void upload(float* dst, const float* src, size_t n) override { CX_CUDA(cudaMemcpy(dst, src, n * 4, cudaMemcpyHostToDevice)); }
  void download(float* dst, const float* src, size_t n) override { CX_CUDA(cudaMemcpy(dst, src, n * 4, cudaMemcpyDeviceToHost)); }
  void upload_values(float* dst, const float* src, size_t n, bool bf16) override {
    if (!packed(bf16)) return upload(dst, src, n);
    float* staged = scratch(n);
    upload(staged, src, n);
    cuda::copy_round(P(dst), staged, (int64_t)n, true);
  }
  void download_values(float* dst, const float* src, size_t n, bool bf16) override {
    if (!packed(bf16)) return download(dst, src, n);
    float* staged = scratch(n);
    cuda::widen(staged, P(src), (int64_t)n);
    download(dst, staged, n);
  }
  size_t activation_bytes(bool bf16) const override { return packed(bf16) ? sizeof(bf16_t) : sizeof(float); }
  float* advance(float* p, size_t n, bool bf16) const override { return packed(bf16) ? F(P(p) + n) : p + n; }
  void fill(float* dst, float value, size_t n) override { cuda::fill(dst, value, (int64_t)n); }
  void copy_round(float* dst, const float* src, size_t n, bool bf16) override {
    if (packed(bf16)) cuda::copy_round(P(dst), src, (int64_t)n, true);
    else cuda::copy_round(dst, src, (int64_t)n, bf16);
  }

  void embedding_forward(float* out, const int32_t* tokens, const float* wte, int64_t N, int64_t C, bool bf16) override {
    if (packed(bf16)) cuda::embedding_forward(P(out), tokens, P(wte), N, C, true);
    else cuda::embedding_forward(out, tokens, wte, N, C, bf16);
  }
  void embedding_backward(float* dwte, const float* dout, const int32_t* tokens, int64_t N, int64_t C, bool bf16) override {
    if (packed(bf16)) cuda::embedding_backward(dwte, P(dout), tokens, N, C);
    else cuda::embedding_backward(dwte, dout, tokens, N, C);
  }
  void matmul_forward(float* out, const float* inp, const float* weight, int64_t N, int64_t Cin, int64_t Cout, bool bf16) override {
    gemm(false, true, N, Cout, Cin, inp, Cin, weight, Cin, out, Cout, false, bf16, Out::Activation);
  }
  void matmul_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight, int64_t N, int64_t Cin,
                       int64_t Cout, bool accumulate_dinp, bool bf16) override {
    // Accumulating, the GEMM adds the product to dinp (beta = 1) in fp32 and rounds the sum once: no separate pass.
    if (dinp) gemm(false, false, N, Cin, Cout, dout, Cout, weight, Cin, dinp, Cin, accumulate_dinp, bf16, Out::Activation);
    if (dweight) gemm(true, false, Cout, Cin, N, dout, Cout, inp, Cin, dweight, Cin, true, bf16, Out::Fp32);
  }
  void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t N, int64_t C, float eps, bool bf16) override {
    if (packed(bf16)) cuda::rmsnorm_forward(P(out), rstd, P(inp), P(weight), N, C, eps, true);
    else cuda::rmsnorm_forward(out, rstd, inp, weight, N, C, eps, bf16);
  }
  void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight, const float* rstd, int64_t N,
                        int64_t C, bool bf16) override {
    float* workspace = scratch((size_t)cuda::rmsnorm_backward_workspace(N, C));
    if (packed(bf16)) cuda::rmsnorm_backward(P(dinp), dweight, P(dout), P(inp), P(weight), rstd, N, C, true, workspace);
    else cuda::rmsnorm_backward(dinp, dweight, dout, inp, weight, rstd, N, C, bf16, workspace);
  }
  void residual_rmsnorm_forward(float* sum, float* norm, float* rstd, const float* a, const float* b, const float* weight, int64_t N, int64_t C,
                                float eps, bool bf16) override {
    if (packed(bf16)) cuda::residual_rmsnorm_forward(P(sum), P(norm), rstd, P(a), P(b), P(weight), N, C, eps, true);
    else cuda::residual_rmsnorm_forward(sum, norm, rstd, a, b, weight, N, C, eps, bf16);
  }
  void residual_forward(float* out, const float* a, const float* b, int64_t n, bool bf16) override {
    if (packed(bf16)) cuda::residual_forward(P(out), P(a), P(b), n, true);
    else cuda::residual_forward(out, a, b, n, bf16);
  }
  void rope_forward(float* x, const int32_t* pos, int64_t N, int64_t H, int64_t D, float theta, bool bf16) override { rope(x, pos, N, H, D, theta, 1.f, bf16); }
  void rope_backward(float* dx, const int32_t* pos, int64_t N, int64_t H, int64_t D, float theta, bool bf16) override {
    rope(dx, pos, N, H, D, theta, -1.f, bf16);
  }
  void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, const int32_t* doc_start, int64_t B, int64_t T,
                         int64_t H, int64_t D, bool bf16) override {
    if (packed(bf16) && flash_attention_supports(D)) return flash_attention_forward(P(out), lse, P(q), P(k), P(v), doc_start, B, T, H, D, true);
    check_reference_head(D);
    if (packed(bf16)) cuda::reference_attention_forward(P(out), lse, P(q), P(k), P(v), doc_start, B, T, H, D, true);
    else cuda::reference_attention_forward(out, lse, q, k, v, doc_start, B, T, H, D, bf16);
  }
  void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out, const float* lse, const float* q, const float* k,
                          const float* v, const int32_t* doc_start, int64_t B, int64_t T, int64_t H, int64_t D, bool bf16) override {
    float* delta = scratch((size_t)(B * H * T));
    if (packed(bf16)) {
      cuda::attention_delta(delta, P(dout), P(out), B, T, H, D);
      if (flash_attention_supports(D))
        return flash_attention_backward(P(dq), P(dk), P(dv), P(dout), lse, delta, P(q), P(k), P(v), doc_start, B, T, H, D, true);
      check_reference_head(D);
      return cuda::reference_attention_backward(P(dq), P(dk), P(dv), P(dout), lse, delta, P(q), P(k), P(v), doc_start, B, T, H, D, true);
    }
    check_reference_head(D);
    cuda::attention_delta(delta, dout, out, B, T, H, D);
    cuda::reference_attention_backward(dq, dk, dv, dout, lse, delta, q, k, v, doc_start, B, T, H, D, bf16);
  }
  void swiglu_forward(float* out, const float* gate, const float* up, int64_t n, bool bf16) override {
    if (packed(bf16)) cuda::swiglu_forward(P(out), P(gate), P(up), n, true);
    else cuda::swiglu_forward(out, gate, up, n, bf16);
  }
  void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n, bool bf16) override {
    if (packed(bf16)) cuda::swiglu_backward(P(dgate), P(dup), P(dout), P(gate), P(up), n, true);
    else cuda::swiglu_backward(dgate, dup, dout, gate, up, n, bf16);
  }
  void lm_head_cross_entropy(float* losses, float* dhidden, float* dweight, const float* hidden, const float* weight, const int32_t* targets,
                             int64_t N, int64_t C, int64_t V, float scale, bool bf16) override {
    const bool pk = packed(bf16);
    // Chunks of up to 2^28 fp32 logits (1 GiB; 2,621 rows at ChuXin's vocabulary): every chunk reads the head's
    // weight twice and reads and writes its fp32 gradient once (840 MB at ChuXin), so few large chunks keep
    // the head compute-bound. CHUXIN_LM_HEAD_CHUNK (logits per chunk) exists for the checks, to force many.
    const char* chunk = std::getenv("CHUXIN_LM_HEAD_CHUNK");
    const int64_t budget = chunk && std::atoll(chunk) > 0 ? std::atoll(chunk) : (int64_t)1 << 28;
    const int64_t rows = std::max<int64_t>(16, std::min<int64_t>(N, budget / V));
    // fp32 logits for a chunk of rows, then (packed runs) their gradient in bf16 for the two GEMMs after it.
    float* logits = scratch((size_t)(rows * V + (pk ? (rows * V + 1) / 2 : 0)));
    float* dlogits = pk ? logits + rows * V : logits;
    for (int64_t r0 = 0; r0 < N; r0 += rows) {
      const int64_t R = std::min(rows, N - r0);
      const float* h = pk ? F(P(hidden) + r0 * C) : hidden + r0 * C;
      gemm(false, true, R, V, C, h, C, weight, C, logits, V, false, bf16, Out::Fp32);
      if (pk) cuda::cross_entropy_rows(logits, dhidden ? P(dlogits) : nullptr, losses + r0, targets + r0, R, V, scale, dhidden != nullptr, true);
      else cuda::cross_entropy_rows(logits, dhidden ? dlogits : nullptr, losses + r0, targets + r0, R, V, scale, dhidden != nullptr, bf16);
      if (dhidden) {
        float* dh = pk ? F(P(dhidden) + r0 * C) : dhidden + r0 * C;
        gemm(false, false, R, C, V, dlogits, V, weight, C, dh, C, false, bf16, Out::Activation);
        gemm(true, false, V, C, R, dlogits, V, h, C, dweight, C, true, bf16, Out::Fp32);
      }
    }
  }
  void lm_head_logits(float* out, const float* hidden, const float* weight, const int32_t* rows, int64_t R, int64_t C, int64_t V,
                      bool bf16) override {
    float* h = scratch((size_t)(R * C));
    if (packed(bf16)) cuda::gather_rows(P(h), P(hidden), rows, R, C);
    else cuda::gather_rows(h, hidden, rows, R, C);
    gemm(false, true, R, V, C, h, C, weight, C, out, V, false, bf16, Out::Fp32Rounded);
  }
  double sum_squares(const float* x, size_t n) override {
    cuda::sum_squares_partial(partial_, x, (int64_t)n);
    std::vector<double> host(cuda::kSumBlocks);
    CX_CUDA(cudaMemcpy(host.data(), partial_, host.size() * sizeof(double), cudaMemcpyDeviceToHost));
    double total = 0;
    for (double s : host) total += s;
    return total;
  }
  void clip_factor(double* clip, const float* grad, size_t n, float max_norm) override {
    cuda::clip_factor(clip, partial_, grad, (int64_t)n, max_norm);
  }
  void adamw(float* param, float* compute_copy, const float* grad, float* m, float* v, size_t n, const AdamWParams& hp, bool bf16) override {
    float* copy = compute_copy == param ? nullptr : compute_copy;
    if (packed(bf16)) cuda::adamw(param, copy ? P(copy) : nullptr, grad, m, v, (int64_t)n, hp, true);
    else cuda::adamw(param, copy, grad, m, v, (int64_t)n, hp, bf16);
  }
  std::string memory_info() override {
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) return "";
    return std::to_string(free_b >> 20) + " MB free of " + std::to_string(total_b >> 20) + " MB";
  }

 private:
  /* bf16 runs of the fast backend keep activations packed. */
  bool packed(bool bf16) const { return bf16 && !reference_; }
  void rope(float* x, const int32_t* pos, int64_t N, int64_t H, int64_t D, float theta, float sign, bool bf16) {
    if (packed(bf16)) cuda::rope(P(x), pos, N, H, D, theta, sign, true);
    else cuda::rope(x, pos, N, H, D, theta, sign, bf16);
  }
  static void check_reference_head(int64_t D) {
    if (D > cuda::kReferenceMaxHead)
      throw std::runtime_error("head size " + std::to_string(D) + " exceeds the CUDA reference kernels' limit of " +
                               std::to_string(cuda::kReferenceMaxHead));
  }
  /* Row-major C[M][N] (= or +=) op(A)·op(B). Packed runs: A and B packed bf16, C as `out` says; fp32 runs: fp32.
   * cuBLASLt, or the reference kernel in the reference backend (and with CHUXIN_CUDA_GEMM=reference). */
  void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc,
            bool acc, bool bf16, Out out) {
    if (M <= 0 || N <= 0) return;
    const bool pk = packed(bf16), c_packed = pk && out == Out::Activation;
    const bool round_fp32 = bf16 && out == Out::Fp32Rounded;
    if (lt_) {
      lt_->run(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, acc, pk ? lt::kR16BF : lt::kR32F, c_packed ? lt::kR16BF : lt::kR32F);
      if (round_fp32) {
        if (ldc != N) throw std::runtime_error("internal: bf16 rounding of a strided GEMM output");
        cuda::copy_round(C, C, M * N, true);
      }
      return;
    }
    if (c_packed) cuda::reference_gemm(ta, tb, M, N, K, P(A), lda, P(B), ldb, P(C), ldc, acc, true);
    else if (pk) cuda::reference_gemm(ta, tb, M, N, K, P(A), lda, P(B), ldb, C, ldc, acc, round_fp32);
    else cuda::reference_gemm(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, acc, bf16 && out != Out::Fp32);
  }
  /* Grows once to the largest size asked for (the first step), then is reused: no allocation in later steps. */
  float* scratch(size_t n) {
    if (n > scratch_n_) {
      cudaFree(scratch_);
      scratch_ = nullptr;
      if (cudaMalloc(&scratch_, n * sizeof(float)) != cudaSuccess) {
        cudaGetLastError();
        scratch_n_ = 0;
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        throw std::runtime_error("out of GPU memory: a scratch buffer needs " + std::to_string(n * 4 >> 20) + " MB, " +
                                 std::to_string(free_b >> 20) + " MB free; lower --micro-batch or --context");
      }
      scratch_n_ = n;
    }
    return scratch_;
  }
  bool reference_;
  std::unique_ptr<LtGemm> lt_;
  double* partial_ = nullptr;
  float* scratch_ = nullptr;
  size_t scratch_n_ = 0;
};

}  // namespace

Backend* create_cuda_backend(std::string* why, bool reference_kernels) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    if (why) *why = std::string("no usable CUDA driver or device (") + cudaGetErrorString(err) + ")";
    cudaGetLastError();
    return nullptr;
  }
  if (count == 0) {
    if (why) *why = "no CUDA device is visible";
    return nullptr;
  }
  try {
    return new CudaBackend(reference_kernels);
  } catch (const std::exception& e) {
    if (why) *why = e.what();
    return nullptr;
  }
}

}  // namespace cx
