/* Elementwise, loss and optimizer kernels of the CUDA backend (see kernels.h; the RMSNorm kernels are in
 * rmsnorm.cu). Deterministic: reductions run in a fixed tree order and there are no atomics. */
#include <cfloat>

#include "elementwise_common.cuh"
#include "kernels.h"

namespace cx {
namespace cuda {
namespace {

constexpr int kIdBuckets = 32;  // token-id buckets of the embedding gradient

__global__ void fill_kernel(float* p, float v, int64_t n) {
  const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i < n) p[i] = v;
}
template <typename T>
__global__ void copy_round_kernel(T* dst, const float* src, int64_t n, bool round) {
  const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i < n) st(dst + i, src[i], round);
}
__global__ void widen_kernel(float* dst, const bf16_t* src, int64_t n) {
  const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i < n) dst[i] = ld(src + i);
}
template <typename T>
__global__ void embed_fwd(T* out, const int32_t* tok, const T* wte, int64_t N, int64_t C, bool round) {
  const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i < N * C) st(out + i, ld(wte + (int64_t)tok[i / C] * C + i % C), round);
}
/* A thread per (channel, bucket of token ids) walks the tokens in order and adds those of its bucket: each
 * embedding row has one writer, summed in token order (deterministic, no atomics), and kIdBuckets times the
 * threads of one walker per channel. */
template <typename T>
__global__ void embed_bwd(float* dwte, const T* dout, const int32_t* tok, int64_t N, int64_t C) {
  const int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  const int32_t bucket = (int32_t)blockIdx.y;
  if (c >= C) return;
  for (int64_t n = 0; n < N; n++) {
    const int32_t t = tok[n];
    if (t % kIdBuckets == bucket) dwte[(int64_t)t * C + c] += ld(dout + n * C + c);
  }
}
template <typename T>
__global__ void residual_kernel(T* out, const T* a, const T* b, int64_t n, bool round) {
  const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i < n) st(out + i, ld(a + i) + ld(b + i), round);
}


/* A thread per (token, frequency): the angle's cos and sin (pow and sincos in double precision, then float, as
 * the CPU's table) once, applied to that frequency's pair in every head. */
template <typename T>
__global__ void rope_kernel(T* x, const int32_t* pos, int64_t N, int64_t H, int64_t D, float theta, float sign, bool round) {
  const int64_t half = D / 2, i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i >= N * half) return;
  const int64_t f = i % half, n = i / half;
  const double inv_freq = pow((double)theta, -2.0 * (double)f / (double)D);
  const float angle = (float)((double)pos[n] * inv_freq);
  const float c = cosf(angle), s = sign * sinf(angle);
  for (int64_t h = 0; h < H; h++) {
    T* row = x + (n * H + h) * D;
    const float a = ld(row + f), b = ld(row + f + half);
    st(row + f, a * c - b * s, round);
    st(row + f + half, b * c + a * s, round);
  }
}

template <typename T>
__global__ void swiglu_fwd(T* out, const T* g, const T* u, int64_t n, bool round) {
  const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float gi = ld(g + i);
  st(out + i, gi / (1.f + expf(-gi)) * ld(u + i), round);
}
template <typename T>
__global__ void swiglu_bwd(T* dg, T* du, const T* dout, const T* g, const T* u, int64_t n, bool round) {
  const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float gi = ld(g + i), ui = ld(u + i), d = ld(dout + i);
  const float sig = 1.f / (1.f + expf(-gi));
  st(dg + i, d * ui * sig * (1.f + gi * (1.f - sig)), round);
  st(du + i, d * gi * sig, round);
}

__global__ void swiglu_fwd_vec(bf16_t* out, const bf16_t* g, const bf16_t* u, int64_t n) {
  const int64_t i = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) * kVec;
  if (i >= n) return;
  float gv[kVec], uv[kVec], o[kVec];
  load8(gv, g + i);
  load8(uv, u + i);
#pragma unroll
  for (int k = 0; k < kVec; k++) o[k] = gv[k] / (1.f + expf(-gv[k])) * uv[k];
  store8(out + i, o);
}
__global__ void swiglu_bwd_vec(bf16_t* dg, bf16_t* du, const bf16_t* dout, const bf16_t* g, const bf16_t* u, int64_t n) {
  const int64_t i = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) * kVec;
  if (i >= n) return;
  float gv[kVec], uv[kVec], d[kVec], dgv[kVec], duv[kVec];
  load8(gv, g + i);
  load8(uv, u + i);
  load8(d, dout + i);
#pragma unroll
  for (int k = 0; k < kVec; k++) {
    const float sig = 1.f / (1.f + expf(-gv[k]));
    dgv[k] = d[k] * uv[k] * sig * (1.f + gv[k] * (1.f - sig));
    duv[k] = d[k] * gv[k] * sig;
  }
  store8(dg + i, dgv);
  store8(du + i, duv);
}

/* One block per row of logits. The logits are rounded as they are read (bf16 runs), not written back rounded:
 * three passes over the row's fp32 logits instead of five. */
template <typename T>
__global__ void cross_entropy_kernel(const float* logits, T* dlogits, float* losses, const int32_t* targets, int64_t V, float scale, bool backward,
                                     bool bf16) {
  __shared__ float sh[kThreads];
  const float* z = logits + blockIdx.x * V;
  T* dz = dlogits ? dlogits + blockIdx.x * V : nullptr;
  const int32_t target = targets[blockIdx.x];
  if (target < 0) {
    if (threadIdx.x == 0) losses[blockIdx.x] = NAN;
    if (backward)
      for (int64_t j = threadIdx.x; j < V; j += blockDim.x) st(dz + j, 0.f, false);
    return;
  }
  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) m = fmaxf(m, rbf(z[j], bf16));
  const float mx = block_max(m, sh);
  float s = 0.f;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) s += expf(rbf(z[j], bf16) - mx);
  const float lse = mx + logf(block_sum(s, sh));
  if (threadIdx.x == 0) losses[blockIdx.x] = lse - rbf(z[target], bf16);
  if (!backward) return;
  // Each thread reads z[j] before writing dz[j], so dz may alias z (float storage); the loss above was read first.
  __syncthreads();
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) st(dz + j, scale * (expf(rbf(z[j], bf16) - lse) - (j == target ? 1.f : 0.f)), bf16);
}

template <typename T>
__global__ void gather_kernel(T* out, const T* hidden, const int32_t* rows, int64_t R, int64_t C) {
  const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i < R * C) out[i] = hidden[(int64_t)rows[i / C] * C + i % C];
}

__global__ void sum_squares_kernel(double* partial, const float* x, int64_t n) {
  __shared__ double sh[kThreads];
  double s = 0.0;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) s += (double)x[i] * x[i];
  sh[threadIdx.x] = s;
  __syncthreads();
  for (int k = blockDim.x / 2; k > 0; k >>= 1) {
    if (threadIdx.x < k) sh[threadIdx.x] += sh[threadIdx.x + k];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[blockIdx.x] = sh[0];
}

template <typename T>
__global__ void adamw_kernel(float* p, T* copy, const float* g, float* m, float* v, int64_t n, AdamWParams hp, bool round) {
  const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i >= n) return;
  if (hp.clip && !(hp.clip[1] > 0)) return;  // a non-finite gradient norm: nothing moves
  const float gi = g[i] * (hp.clip ? (float)hp.clip[1] : hp.grad_scale);
  m[i] = hp.beta1 * m[i] + (1.f - hp.beta1) * gi;
  v[i] = hp.beta2 * v[i] + (1.f - hp.beta2) * gi * gi;
  const float mhat = m[i] / hp.bias1, vhat = v[i] / hp.bias2;
  p[i] -= hp.lr * (mhat / (sqrtf(vhat) + hp.eps) + hp.weight_decay * p[i]);
  if (copy) st(copy + i, p[i], round);
}

/* The partial sums in order on one thread (as the host summed them), then the clip factor (backend.h). */
__global__ void clip_factor_kernel(double* clip, const double* partial, int blocks, float max_norm) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  double total = 0.0;
  for (int b = 0; b < blocks; b++) total += partial[b];
  const double norm = sqrt(total);
  clip[0] = norm;
  const bool finite = norm <= DBL_MAX;  // false for NaN and infinity
  clip[1] = !finite ? 0.0 : max_norm > 0 && norm > max_norm ? (double)max_norm / norm : 1.0;
}

template <typename T>
__global__ void attn_delta_kernel(float* delta, const T* dout, const T* out, int64_t B, int64_t T_, int64_t H, int64_t D) {
  const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= B * H * T_) return;
  const int64_t b = idx / (H * T_), h = (idx / T_) % H, t = idx % T_;
  const int64_t row = ((b * T_ + t) * H + h) * D;
  float s = 0.f;
  for (int64_t d = 0; d < D; d++) s += ld(dout + row + d) * ld(out + row + d);
  delta[idx] = s;
}

}  // namespace

void fill(float* p, float value, int64_t n) { CX_LAUNCH(fill_kernel, n, p, value, n); }
template <typename T>
void copy_round(T* dst, const float* src, int64_t n, bool round) {
  CX_LAUNCH(copy_round_kernel<T>, n, dst, src, n, round);
}
void widen(float* dst, const bf16_t* src, int64_t n) { CX_LAUNCH(widen_kernel, n, dst, src, n); }
template <typename T>
void embedding_forward(T* out, const int32_t* tokens, const T* wte, int64_t N, int64_t C, bool round) {
  CX_LAUNCH(embed_fwd<T>, N * C, out, tokens, wte, N, C, round);
}
template <typename T>
void embedding_backward(float* dwte, const T* dout, const int32_t* tokens, int64_t N, int64_t C) {
  if (C <= 0) return;
  CX_KERNEL_LAUNCH(embed_bwd<T>, dim3(grid_for(C, kThreads), kIdBuckets), kThreads, 0, dwte, dout, tokens, N, C);
  CX_CUDA(cudaGetLastError());
}
template <typename T>
void residual_forward(T* out, const T* a, const T* b, int64_t n, bool round) {
  CX_LAUNCH(residual_kernel<T>, n, out, a, b, n, round);
}
template <typename T>
void rope(T* x, const int32_t* pos, int64_t N, int64_t H, int64_t D, float theta, float sign, bool round) {
  CX_LAUNCH(rope_kernel<T>, N * (D / 2), x, pos, N, H, D, theta, sign, round);
}
template <typename T>
void swiglu_forward(T* out, const T* gate, const T* up, int64_t n, bool round) {
  if (vectorizable<T>(n, out, gate, up))
    CX_LAUNCH(swiglu_fwd_vec, n / kVec, reinterpret_cast<bf16_t*>(out), reinterpret_cast<const bf16_t*>(gate), reinterpret_cast<const bf16_t*>(up), n);
  else
    CX_LAUNCH(swiglu_fwd<T>, n, out, gate, up, n, round);
}
template <typename T>
void swiglu_backward(T* dgate, T* dup, const T* dout, const T* gate, const T* up, int64_t n, bool round) {
  if (vectorizable<T>(n, dgate, dup, dout, gate, up))
    CX_LAUNCH(swiglu_bwd_vec, n / kVec, reinterpret_cast<bf16_t*>(dgate), reinterpret_cast<bf16_t*>(dup), reinterpret_cast<const bf16_t*>(dout),
              reinterpret_cast<const bf16_t*>(gate), reinterpret_cast<const bf16_t*>(up), n);
  else
    CX_LAUNCH(swiglu_bwd<T>, n, dgate, dup, dout, gate, up, n, round);
}
template <typename T>
void cross_entropy_rows(float* logits, T* dlogits, float* losses, const int32_t* targets, int64_t R, int64_t V, float scale, bool backward,
                        bool bf16) {
  if (R <= 0) return;
  CX_KERNEL_LAUNCH(cross_entropy_kernel<T>, (unsigned)R, kThreads, 0, logits, dlogits, losses, targets, V, scale, backward, bf16);
  CX_CUDA(cudaGetLastError());
}
template <typename T>
void gather_rows(T* out, const T* hidden, const int32_t* rows, int64_t R, int64_t C) {
  CX_LAUNCH(gather_kernel<T>, R * C, out, hidden, rows, R, C);
}
template <typename T>
void adamw(float* param, T* copy, const float* grad, float* m, float* v, int64_t n, const AdamWParams& hp, bool round) {
  CX_LAUNCH(adamw_kernel<T>, n, param, copy, grad, m, v, n, hp, round);
}
void sum_squares_partial(double* partial, const float* x, int64_t n) {
  CX_KERNEL_LAUNCH(sum_squares_kernel, kSumBlocks, kThreads, 0, partial, x, n);
  CX_CUDA(cudaGetLastError());
}
void clip_factor(double* clip, double* partial, const float* x, int64_t n, float max_norm) {
  sum_squares_partial(partial, x, n);
  CX_KERNEL_LAUNCH(clip_factor_kernel, 1, 32, 0, clip, partial, kSumBlocks, max_norm);
  CX_CUDA(cudaGetLastError());
}
template <typename T>
void attention_delta(float* delta, const T* dout, const T* out, int64_t B, int64_t T_, int64_t H, int64_t D) {
  CX_LAUNCH(attn_delta_kernel<T>, B * H * T_, delta, dout, out, B, T_, H, D);
}

#define CX_INSTANTIATE(T)                                                                                                            \
  template void copy_round<T>(T*, const float*, int64_t, bool);                                                                      \
  template void embedding_forward<T>(T*, const int32_t*, const T*, int64_t, int64_t, bool);                                          \
  template void embedding_backward<T>(float*, const T*, const int32_t*, int64_t, int64_t);                                           \
  template void residual_forward<T>(T*, const T*, const T*, int64_t, bool);                                                          \
  template void rope<T>(T*, const int32_t*, int64_t, int64_t, int64_t, float, float, bool);                                          \
  template void swiglu_forward<T>(T*, const T*, const T*, int64_t, bool);                                                            \
  template void swiglu_backward<T>(T*, T*, const T*, const T*, const T*, int64_t, bool);                                             \
  template void cross_entropy_rows<T>(float*, T*, float*, const int32_t*, int64_t, int64_t, float, bool, bool);                      \
  template void gather_rows<T>(T*, const T*, const int32_t*, int64_t, int64_t);                                                      \
  template void adamw<T>(float*, T*, const float*, float*, float*, int64_t, const AdamWParams&, bool);                               \
  template void attention_delta<T>(float*, const T*, const T*, int64_t, int64_t, int64_t, int64_t);
CX_INSTANTIATE(float)
CX_INSTANTIATE(bf16_t)

}  // namespace cuda
}  // namespace cx
