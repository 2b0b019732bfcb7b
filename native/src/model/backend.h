#pragma once
/* The table of ops a backend implements; src/cpu and src/cuda provide the same ops under the same names.
 * Pointers are the backend's memory (host for CPU, device for CUDA). Shapes: N tokens, C channels,
 * H heads of D dims, F FFN width, V vocab. `bf16` means a bf16 run: stored results are rounded to bf16.
 *
 * Storage. Buffers are allocated as fp32 arrays. In a bf16 run a backend may keep activations, their gradients
 * and the compute copy of the weights as packed bf16 (the fast CUDA backend does; the CPU keeps fp32 holding
 * bf16 values): activation_bytes() says how many bytes an element takes, and the model sizes activation buffers
 * by it and offsets into them only through advance(). Each compute weight is written and read through its own
 * pointer. Values move to and from such tensors only through upload_values / download_values. Master weights,
 * weight gradients, AdamW moments, rstd, lse, losses and logits are fp32. */
#include <cstddef>
#include <cstdint>
#include <string>

namespace cx {

struct AdamWParams {
  float lr, beta1, beta2, eps, weight_decay, grad_scale, bias1, bias2;
  /* Backend memory written by clip_factor, or nullptr. When set, its factor replaces grad_scale, and a factor
   * of 0 (a non-finite norm) leaves the tensor and its moments untouched. */
  const double* clip = nullptr;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  /* Allocation failures return nullptr; the model turns that into CX_OUT_OF_MEMORY. */
  virtual float* alloc(size_t n) = 0;
  virtual void release(float* p) = 0;
  virtual void upload(float* dst, const float* src, size_t n) = 0;
  virtual void download(float* dst, const float* src, size_t n) = 0;
  virtual int32_t* alloc_i32(size_t n) = 0;
  virtual void release_i32(int32_t* p) = 0;
  virtual void upload_i32(int32_t* dst, const int32_t* src, size_t n) = 0;
  /* Bytes per activation element in a run of this precision, and a pointer advanced by n such elements. */
  virtual size_t activation_bytes(bool bf16) const { return (void)bf16, sizeof(float); }
  virtual float* advance(float* p, size_t n, bool bf16) const { return (void)bf16, p + n; }
  /* Values in and out of a tensor stored as a run of this precision stores activations (tests). */
  virtual void upload_values(float* dst, const float* src, size_t n, bool bf16) { (void)bf16, upload(dst, src, n); }
  virtual void download_values(float* dst, const float* src, size_t n, bool bf16) { (void)bf16, download(dst, src, n); }
  virtual void fill(float* dst, float value, size_t n) = 0;
  virtual void copy_round(float* dst, const float* src, size_t n, bool bf16) = 0;

  virtual void embedding_forward(float* out, const int32_t* tokens, const float* wte, int64_t N, int64_t C, bool bf16) = 0;
  virtual void embedding_backward(float* dwte, const float* dout, const int32_t* tokens, int64_t N, int64_t C, bool bf16) = 0;
  /* out[N][Cout] = inp[N][Cin] · weight[Cout][Cin]^T */
  virtual void matmul_forward(float* out, const float* inp, const float* weight, int64_t N, int64_t Cin, int64_t Cout, bool bf16) = 0;
  /* dinp (= or += if accumulate) dout · weight; dweight += dout^T · inp */
  virtual void matmul_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight, int64_t N,
                               int64_t Cin, int64_t Cout, bool accumulate_dinp, bool bf16) = 0;
  virtual void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t N, int64_t C, float eps, bool bf16) = 0;
  /* dinp += ..., dweight += ... */
  virtual void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight, const float* rstd,
                                int64_t N, int64_t C, bool bf16) = 0;
  virtual void residual_forward(float* out, const float* a, const float* b, int64_t n, bool bf16) = 0;
  /* sum = a + b, then norm = RMSNorm(sum)·weight with its rstd: residual_forward then rmsnorm_forward, which a
   * backend may fuse into one pass (same rounding points). */
  virtual void residual_rmsnorm_forward(float* sum, float* norm, float* rstd, const float* a, const float* b, const float* weight, int64_t N,
                                        int64_t C, float eps, bool bf16) {
    residual_forward(sum, a, b, N * C, bf16);
    rmsnorm_forward(norm, rstd, sum, weight, N, C, eps, bf16);
  }
  /* Rotates x[N][H][D] in place (Hugging Face rotate_half convention); backward applies the inverse rotation. */
  virtual void rope_forward(float* x, const int32_t* pos, int64_t N, int64_t H, int64_t D, float theta, bool bf16) = 0;
  virtual void rope_backward(float* dx, const int32_t* pos, int64_t N, int64_t H, int64_t D, float theta, bool bf16) = 0;
  /* Causal attention within documents: token t of row b sees [doc_start[b*T+t], t]; doc_start never decreases
   * along t. q,k,v,out: [B][T][H][D]; lse: [B][H][T]. */
  virtual void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, const int32_t* doc_start,
                                 int64_t B, int64_t T, int64_t H, int64_t D, bool bf16) = 0;
  virtual void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out, const float* lse, const float* q,
                                  const float* k, const float* v, const int32_t* doc_start, int64_t B, int64_t T, int64_t H, int64_t D,
                                  bool bf16) = 0;
  virtual void swiglu_forward(float* out, const float* gate, const float* up, int64_t n, bool bf16) = 0;
  virtual void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n, bool bf16) = 0;
  /* Fused LM head + cross-entropy over row chunks, never holding fp32 logits for all rows. Writes per-row
   * losses (NaN where target < 0). With dhidden != nullptr also backward: dhidden = scale·dlogits·W,
   * dweight += scale·dlogits^T·hidden. */
  virtual void lm_head_cross_entropy(float* losses, float* dhidden, float* dweight, const float* hidden, const float* weight,
                                     const int32_t* targets, int64_t N, int64_t C, int64_t V, float scale, bool bf16) = 0;
  /* Logits of selected rows: out[R][V] = hidden[rows[r]] · weight^T. */
  virtual void lm_head_logits(float* out, const float* hidden, const float* weight, const int32_t* rows, int64_t R, int64_t C, int64_t V,
                              bool bf16) = 0;
  virtual double sum_squares(const float* x, size_t n) = 0;
  /* Global-norm clipping where the gradients are, with no host round trip: clip[0] = ‖g‖ (the same sum as
   * sum_squares), clip[1] = min(1, max_norm / ‖g‖) (1 when max_norm <= 0), or 0 when ‖g‖ is not finite.
   * clip is backend memory holding two doubles. */
  virtual void clip_factor(double* clip, const float* grad, size_t n, float max_norm) = 0;
  /* One AdamW step over a tensor; decay applies when weight_decay != 0. Writes the compute copy too. */
  virtual void adamw(float* param, float* compute_copy, const float* grad, float* m, float* v, size_t n, const AdamWParams& hp, bool bf16) = 0;
  /* For out-of-memory messages: e.g. "1234 MB free of 81559 MB". */
  virtual std::string memory_info() { return ""; }
};

Backend* create_cpu_backend(int threads);
/* nullptr with a reason in *why when CUDA (or cuBLASLt) is not available. reference_kernels: the simple,
 * obviously-right kernels only (no cuBLASLt, no fused attention), the yardstick for the fast ones. */
Backend* create_cuda_backend(std::string* why, bool reference_kernels = false);

}  // namespace cx
