#pragma once
/* Fused, document-masked causal attention on bf16 tensor cores (FlashAttention-2 style): online softmax,
 * never a T×T matrix in memory, and every key tile that lies wholly outside the queries' documents is skipped,
 * so the work follows Σ len² over documents rather than T². Storage is the backend's fp32 (values already
 * rounded to bf16); tiles are converted to bf16 in shared memory, accumulation is fp32. Deterministic: no
 * atomics — dK/dV and dQ are two passes, each owning its outputs.
 * Layouts as in backend.h: q, k, v, out [B][T][H][D]; lse [B][H][T]; doc_start [B][T], non-decreasing along t. */
#include <cstdint>

namespace cx {

/* Head sizes the fused kernels are built for; others use the reference kernels. */
bool flash_attention_supports(int64_t D);

void flash_attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, const int32_t* doc_start, int64_t B,
                             int64_t T, int64_t H, int64_t D, bool bf16_out);
/* delta [B][H][T] = rowsum(dout · out), computed by the caller. */
void flash_attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* lse, const float* delta, const float* q,
                              const float* k, const float* v, const int32_t* doc_start, int64_t B, int64_t T, int64_t H, int64_t D,
                              bool bf16_out);

}  // namespace cx
