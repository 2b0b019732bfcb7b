#pragma once
/* The CPU backend's hot loops, compiled for AVX-512, AVX2+FMA (x86-64-v3) and baseline x86-64 and picked at
 * load time (target_clones). The build uses -ffp-contract=off and the loops use explicit fmaf, so every clone
 * computes the same bits. */
#include <cstddef>
#include <cstdint>

#include "../model/backend.h"

namespace cx::kernels {

constexpr int64_t LANES = 16;  // keys per panel
constexpr int64_t QB = 16;     // queries per attention block

/* Keys (and values, for the backward) are stored in panels of 16 positions: element (j, d) at
 * (j / 16) * D * 16 + d * 16 + j % 16, so one panel's 16 x D block is contiguous. */
inline int64_t panel_index(int64_t j, int64_t d, int64_t D) { return (j / LANES) * D * LANES + d * LANES + j % LANES; }

void round_bf16_array(float* dst, const float* src, size_t n);
/* Softmax cross-entropy of one row of logits z (overwritten with d loss/d z * scale when backward). */
float cross_entropy_row(float* z, int64_t V, int32_t target, float scale, bool backward, bool bf16);
void swiglu_range(float* out, const float* gate, const float* up, size_t n);
void swiglu_backward_range(float* dgate, float* dup, const float* dout, const float* gate, const float* up, size_t n);
void adamw_range(float* param, float* compute_copy, const float* grad, float* m, float* v, size_t n, AdamWParams hp);
/* Attention for one (row, head) in blocks of 16 queries: q, v, o as [Tq][D]; keys (and values for the
 * backward) in panels padded to Tp; query i sees keys [lo[i], hi[i]] (empty when lo > hi), both bounds
 * non-decreasing in i; S and dP are 16 x Tp scratch. The backward writes dq and dk, dv ([Tk][D]) whole. */
void attention_head_forward(float* o, float* lse, const float* q, const float* kp, const float* v, const int32_t* lo, const int32_t* hi, int64_t Tq,
                            int64_t Tp, int64_t D, float scale, float* S);
void attention_head_backward(float* dq, float* dk, float* dv, const float* dout, const float* o, const float* lse, const float* q, const float* k,
                             const float* kp, const float* vp, const int32_t* lo, const int32_t* hi, int64_t Tq, int64_t Tk, int64_t Tp, int64_t D,
                             float scale, float* S, float* dP);

}  // namespace cx::kernels
