#pragma once
/* Fused, document-masked causal attention on bf16 tensor cores (FlashAttention-2 style): online softmax,
 * never a T×T matrix in memory, and every key tile that lies wholly outside the queries' documents is skipped,
 * so the work follows Σ len² over documents rather than T². Tensors are packed bf16 (the fast backend's bf16
 * storage); accumulation is fp32. Deterministic: no
 * atomics — dK/dV and dQ are two passes, each owning its outputs.
 * Layouts as in backend.h: q, k, v, out [B][T][H][D]; lse [B][H][T]; doc_start [B][T], non-decreasing along t. */
#include <cstdint>

namespace cx {

/* Head sizes the fused kernels are built for; others use the reference kernels. */
bool flash_attention_supports(int64_t D);

/* TS is __nv_bfloat16 (instantiated in flash_attention.cu); `round` is unused for packed storage. */
template <typename TS>
void flash_attention_forward(TS* out, float* lse, const TS* q, const TS* k, const TS* v, const int32_t* doc_start, int64_t B, int64_t T,
                             int64_t H, int64_t D, bool round);
/* delta [B][H][T] = rowsum(dout · out), computed by the caller. */
template <typename TS>
void flash_attention_backward(TS* dq, TS* dk, TS* dv, const TS* dout, const float* lse, const float* delta, const TS* q, const TS* k,
                              const TS* v, const int32_t* doc_start, int64_t B, int64_t T, int64_t H, int64_t D, bool round);

/* Ring attention's blocks (backend.h's attention_block_forward / _backward): queries [Tq] at row positions
 * q_offset.. against keys [Tk] at k_offset.., q_start the queries' document starts; out and lse [H][Tq] fp32
 * written, dq, dk, dv fp32 added to. One row (B = 1). */
template <typename TS>
void flash_attention_block_forward(float* out, float* lse, const TS* q, const TS* k, const TS* v, const int32_t* q_start, int64_t q_offset,
                                   int64_t k_offset, int64_t Tq, int64_t Tk, int64_t H, int64_t D);
/* delta [H][Tq] = rowsum(dout · out) of the queries' final out, computed by the caller. */
template <typename TS>
void flash_attention_block_backward(float* dq, float* dk, float* dv, const TS* dout, const float* lse, const float* delta, const TS* q, const TS* k,
                                    const TS* v, const int32_t* q_start, int64_t q_offset, int64_t k_offset, int64_t Tq, int64_t Tk, int64_t H,
                                    int64_t D);

}  // namespace cx
