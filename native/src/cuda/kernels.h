#pragma once
/* Launchers of the CUDA backend's kernels, one file per concern with forward and backward side by side
 * (memory.cu, embedding.cu, residual.cu, rmsnorm.cu, rope.cu, swiglu.cu, cross_entropy.cu, adamw.cu,
 * attention_delta.cu, reference.cu; the fused attention in flash_attention.cu). Each storage-typed launcher exists for
 * T = float (fp32 runs; `round` rounds stored values to bf16, as the reference backend's bf16 runs do) and
 * T = bf16_t (the fast backend's bf16 runs: values stored packed, so always rounded). Statistics (rstd, lse,
 * losses), weight gradients and optimizer state stay fp32. All on the default stream; each checks its launch. */
#include <cuda_bf16.h>

#include <cstdint>

#include "../model/backend.h"

namespace cx {

template <>
struct dtype_of<__nv_bfloat16> {
  static constexpr DType value = DType::BF16;
};

namespace cuda {

using bf16_t = __nv_bfloat16;

template <typename T>
void fill(T* p, float value, int64_t n);
/* Rounds an fp32 array into storage type T (the compute copy of the weights). */
template <typename T>
void copy_round(T* dst, const float* src, int64_t n, bool round);
/* Stored values back to fp32 (tests and the logits read-back). */
void widen(float* dst, const bf16_t* src, int64_t n);

template <typename T>
void embedding_forward(T* out, const int32_t* tokens, const T* wte, int64_t N, int64_t C, bool round);
template <typename T>
void embedding_backward(float* dwte, const T* dout, const int32_t* tokens, int64_t N, int64_t C);
template <typename T>
void residual_forward(T* out, const T* a, const T* b, int64_t n, bool round);
template <typename T>
void rmsnorm_forward(T* out, float* rstd, const T* inp, const T* weight, int64_t N, int64_t C, float eps, bool round);
/* sum = a + b and norm = RMSNorm(sum)·weight in one pass, equal to the two ops in turn. */
template <typename T>
void residual_rmsnorm_forward(T* sum, T* norm, float* rstd, const T* a, const T* b, const T* weight, int64_t N, int64_t C, float eps, bool round);
/* dinp += ..., dweight += ...; workspace: rmsnorm_backward_workspace(N, C) floats. */
int64_t rmsnorm_backward_workspace(int64_t N, int64_t C);
template <typename T>
void rmsnorm_backward(T* dinp, float* dweight, const T* dout, const T* inp, const T* weight, const float* rstd, int64_t N, int64_t C, bool round,
                      float* workspace);
/* sign +1 rotates (forward), -1 applies the inverse rotation (backward). */
template <typename T>
void rope(T* x, const int32_t* pos, int64_t N, int64_t H, int64_t D, const double* inv_freq, float scale, float sign, bool round);
template <typename T>
void swiglu_forward(T* out, const T* gate, const T* up, int64_t n, bool round);
template <typename T>
void swiglu_backward(T* dgate, T* dup, const T* dout, const T* gate, const T* up, int64_t n, bool round);
/* One row of fp32 logits per target: logits are first rounded to bf16 when bf16 (as the CPU does), the loss
 * written, and with backward dlogits = scale·(softmax − onehot) stored as T (dlogits may alias logits for T = float). */
template <typename T>
void cross_entropy_rows(float* logits, T* dlogits, float* losses, const int32_t* targets, int64_t R, int64_t V, float scale, bool backward,
                        bool bf16);
template <typename T>
void gather_rows(T* out, const T* hidden, const int32_t* rows, int64_t R, int64_t C);
/* One AdamW step; the compute copy (when not the parameter itself) is written in the same pass. */
template <typename T>
void adamw(float* param, T* copy, const float* grad, float* m, float* v, int64_t n, const AdamWParams& hp, bool round);
constexpr int kSumBlocks = 1024;
/* Per-block partial sums of squares (kSumBlocks doubles), in a fixed order. */
void sum_squares_partial(double* partial, const float* x, int64_t n);
/* sum_squares_partial, then the clip factor from its partials on the device (backend.h, clip_factor). */
void clip_factor(double* clip, double* partial, const float* x, int64_t n, float max_norm);

/* delta [B][H][T] = rowsum(dout · out), fp32. */
template <typename T>
void attention_delta(float* delta, const T* dout, const T* out, int64_t B, int64_t T_, int64_t H, int64_t D);

/* Incremental decoding (attention_cached.cu): k, v appended to the caches at row `past`, then each of the Tq queries
 * attends the cache rows up to its own position, one block per (query, head); the scores live in shared memory. */
constexpr int64_t kCachedAttentionMaxKeys = 12288;
template <typename T>
void attention_cached(T* out, T* kcache, T* vcache, const T* q, const T* k, const T* v, int64_t Tq, int64_t past, int64_t H, int64_t D, bool round);

/* The reference kernels (reference.cu): simple, obviously right, deterministic. */
constexpr int kReferenceMaxHead = 256;
template <typename T>
void reference_attention_forward(T* out, float* lse, const T* q, const T* k, const T* v, const int32_t* doc_start, int64_t B, int64_t T_,
                                 int64_t H, int64_t D, bool round);
template <typename T>
void reference_attention_backward(T* dq, T* dk, T* dv, const T* dout, const float* lse, const float* delta, const T* q, const T* k, const T* v,
                                  const int32_t* doc_start, int64_t B, int64_t T_, int64_t H, int64_t D, bool round);
/* Ring attention's block pair and the log-sum-exp merge (attention_block.cu; backend.h says the contract). The
 * backward takes delta = rowsum(dout · out) of the queries ([H][Tq], attention_delta with B = 1). */
template <typename T>
void attention_block_forward(float* out, float* lse, const T* q, const T* k, const T* v, const int32_t* q_start, int64_t q_offset, int64_t k_offset,
                             int64_t Tq, int64_t Tk, int64_t H, int64_t D);
template <typename T>
void attention_block_backward(float* dq, float* dk, float* dv, const T* dout, const float* lse, const float* delta, const T* q, const T* k, const T* v,
                              const int32_t* q_start, int64_t q_offset, int64_t k_offset, int64_t Tq, int64_t Tk, int64_t H, int64_t D);
void attention_combine(float* acc, float* acc_lse, const float* out, const float* lse, int64_t Tq, int64_t H, int64_t D);
/* Row-major C[M][N] (= or +=) op(A)[M][K] · op(B)[K][N] in 16×16 shared-memory tiles, fp32 accumulation. */
template <typename TI, typename TO>
void reference_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const TI* A, int64_t lda, const TI* B, int64_t ldb, TO* C, int64_t ldc,
                    bool accumulate, bool round);

}  // namespace cuda
}  // namespace cx
