/* CUDA backend: every op of the CPU backend on fp32 buffers with the same bf16 rounding points. Matmuls go
 * through cuBLASLt (gemm_lt.cu, on bf16 tensor cores when the operands are bf16) and bf16 attention through
 * the fused document-masked kernels (flash_attention.cu). The simple kernels below are the reference they
 * are checked against ("cuda-reference" backend): right and deterministic (no atomics) rather than fast.
 * Status: compiled here with nvcc for sm_80 and sm_90a; not yet run on a GPU (native/test/gpu-check.sh). */
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "../model/backend.h"
#include "common.cuh"
#include "flash_attention.h"
#include "gemm_lt.h"

namespace cx {
namespace {

inline unsigned blocks(int64_t n, int threads = 256) { return (unsigned)((n + threads - 1) / threads); }

/* C[M][N] (= or +=) op(A)[M][K] . op(B)[K][N]; 16x16 shared-memory tiles, fp32, fixed k order. */
constexpr int TILE = 16;
__global__ void gemm_kernel(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
                            float* C, int64_t ldc, bool acc, bool bf16) {
  __shared__ float As[TILE][TILE + 1], Bs[TILE][TILE + 1];
  const int64_t row = blockIdx.y * TILE + threadIdx.y, col = blockIdx.x * TILE + threadIdx.x;
  float sum = 0.f;
  for (int64_t k0 = 0; k0 < K; k0 += TILE) {
    const int64_t ka = k0 + threadIdx.x, kb = k0 + threadIdx.y;
    As[threadIdx.y][threadIdx.x] = (row < M && ka < K) ? (ta ? A[ka * lda + row] : A[row * lda + ka]) : 0.f;
    Bs[threadIdx.y][threadIdx.x] = (col < N && kb < K) ? (tb ? B[col * ldb + kb] : B[kb * ldb + col]) : 0.f;
    __syncthreads();
#pragma unroll
    for (int k = 0; k < TILE; k++) sum = fmaf(As[threadIdx.y][k], Bs[k][threadIdx.x], sum);
    __syncthreads();
  }
  if (row < M && col < N) {
    float* c = C + row * ldc + col;
    *c = rbf(acc ? *c + sum : sum, bf16);
  }
}

__global__ void fill_kernel(float* p, float v, int64_t n) {
  const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i < n) p[i] = v;
}
__global__ void round_kernel(float* dst, const float* src, int64_t n, bool bf16) {
  const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i < n) dst[i] = rbf(src[i], bf16);
}
__global__ void embed_fwd(float* out, const int32_t* tok, const float* wte, int64_t N, int64_t C, bool bf16) {
  const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i < N * C) out[i] = rbf(wte[(int64_t)tok[i / C] * C + i % C], bf16);
}
/* One thread per channel walks the tokens in order: deterministic, no atomics. */
__global__ void embed_bwd(float* dwte, const float* dout, const int32_t* tok, int64_t N, int64_t C) {
  const int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (c >= C) return;
  for (int64_t n = 0; n < N; n++) dwte[(int64_t)tok[n] * C + c] += dout[n * C + c];
}
__global__ void residual_kernel(float* out, const float* a, const float* b, int64_t n, bool bf16) {
  const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i < n) out[i] = rbf(a[i] + b[i], bf16);
}

/* Block-wide sum in a fixed tree order. */
__device__ float block_sum(float v, float* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) shared[threadIdx.x] += shared[threadIdx.x + s];
    __syncthreads();
  }
  const float r = shared[0];
  __syncthreads();
  return r;
}
__device__ float block_max(float v, float* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) shared[threadIdx.x] = fmaxf(shared[threadIdx.x], shared[threadIdx.x + s]);
    __syncthreads();
  }
  const float r = shared[0];
  __syncthreads();
  return r;
}

constexpr int ROW_THREADS = 256;
__global__ void rmsnorm_fwd(float* out, float* rstd, const float* inp, const float* w, int64_t C, float eps, bool bf16) {
  __shared__ float sh[ROW_THREADS];
  const float* x = inp + blockIdx.x * C;
  float ss = 0.f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) ss += x[c] * x[c];
  const float r = rsqrtf(block_sum(ss, sh) / (float)C + eps);
  if (threadIdx.x == 0) rstd[blockIdx.x] = r;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) out[blockIdx.x * C + c] = rbf(x[c] * r * w[c], bf16);
}
__global__ void rmsnorm_bwd_inp(float* dinp, const float* dout, const float* inp, const float* w, const float* rstd, int64_t C, bool bf16) {
  __shared__ float sh[ROW_THREADS];
  const int64_t n = blockIdx.x;
  const float* x = inp + n * C;
  const float* g = dout + n * C;
  const float r = rstd[n];
  float dot = 0.f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) dot += g[c] * w[c] * x[c];
  const float k = block_sum(dot, sh) * r * r / (float)C;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) dinp[n * C + c] = rbf(dinp[n * C + c] + r * (g[c] * w[c] - x[c] * k), bf16);
}
__global__ void rmsnorm_bwd_weight(float* dw, const float* dout, const float* inp, const float* rstd, int64_t N, int64_t C) {
  const int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (c >= C) return;
  float s = 0.f;
  for (int64_t n = 0; n < N; n++) s += dout[n * C + c] * inp[n * C + c] * rstd[n];
  dw[c] += s;
}

__global__ void rope_kernel(float* x, const int32_t* pos, int64_t N, int64_t H, int64_t D, float theta, bool bf16, float sign) {
  const int64_t half = D / 2, i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i >= N * H * half) return;
  const int64_t f = i % half, h = (i / half) % H, n = i / (half * H);
  const double inv_freq = pow((double)theta, -2.0 * (double)f / (double)D);
  const float angle = (float)((double)pos[n] * inv_freq);
  const float c = cosf(angle), s = sign * sinf(angle);
  float* row = x + (n * H + h) * D;
  const float a = row[f], b = row[f + half];
  row[f] = rbf(a * c - b * s, bf16);
  row[f + half] = rbf(b * c + a * s, bf16);
}

constexpr int MAX_D = 256;
/* One thread per (row, head, query): two passes over its document's keys (max, then softmax-weighted sum). */
__global__ void attn_fwd(float* out, float* lse, const float* q, const float* k, const float* v, const int32_t* start, int64_t B, int64_t T,
                         int64_t H, int64_t D, bool bf16) {
  const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= B * H * T) return;
  const int64_t b = idx / (H * T), h = (idx / T) % H, t = idx % T;
  const float scale = rsqrtf((float)D);
  const float* qt = q + ((b * T + t) * H + h) * D;
  const int64_t st = start[b * T + t];
  float mx = -INFINITY;
  for (int64_t j = st; j <= t; j++) {
    const float* kj = k + ((b * T + j) * H + h) * D;
    float s = 0.f;
    for (int64_t d = 0; d < D; d++) s = fmaf(qt[d] * scale, kj[d], s);
    mx = fmaxf(mx, s);
  }
  float acc[MAX_D];
  for (int64_t d = 0; d < D; d++) acc[d] = 0.f;
  float sum = 0.f;
  for (int64_t j = st; j <= t; j++) {
    const float* kj = k + ((b * T + j) * H + h) * D;
    const float* vj = v + ((b * T + j) * H + h) * D;
    float s = 0.f;
    for (int64_t d = 0; d < D; d++) s = fmaf(qt[d] * scale, kj[d], s);
    const float p = expf(s - mx);
    sum += p;
    for (int64_t d = 0; d < D; d++) acc[d] = fmaf(p, vj[d], acc[d]);
  }
  float* o = out + ((b * T + t) * H + h) * D;
  for (int64_t d = 0; d < D; d++) o[d] = rbf(acc[d] / sum, bf16);
  lse[(b * H + h) * T + t] = mx + logf(sum);
}

__global__ void attn_delta(float* delta, const float* dout, const float* out, int64_t B, int64_t T, int64_t H, int64_t D) {
  const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= B * H * T) return;
  const int64_t b = idx / (H * T), h = (idx / T) % H, t = idx % T;
  const int64_t row = ((b * T + t) * H + h) * D;
  float s = 0.f;
  for (int64_t d = 0; d < D; d++) s += dout[row + d] * out[row + d];
  delta[idx] = s;
}

__device__ float attn_p(const float* q, const float* k, const float* lse, int64_t b, int64_t h, int64_t i, int64_t j, int64_t T, int64_t H,
                        int64_t D, float scale) {
  const float* qi = q + ((b * T + i) * H + h) * D;
  const float* kj = k + ((b * T + j) * H + h) * D;
  float s = 0.f;
  for (int64_t d = 0; d < D; d++) s = fmaf(qi[d] * scale, kj[d], s);
  return expf(s - lse[(b * H + h) * T + i]);
}

__device__ float attn_dp(const float* dout, const float* v, int64_t b, int64_t h, int64_t i, int64_t j, int64_t T, int64_t H, int64_t D) {
  const float* gi = dout + ((b * T + i) * H + h) * D;
  const float* vj = v + ((b * T + j) * H + h) * D;
  float s = 0.f;
  for (int64_t d = 0; d < D; d++) s = fmaf(gi[d], vj[d], s);
  return s;
}

/* dq: one thread per query, over its keys. */
__global__ void attn_bwd_q(float* dq, const float* dout, const float* lse, const float* delta, const float* q, const float* k, const float* v,
                           const int32_t* start, int64_t B, int64_t T, int64_t H, int64_t D, bool bf16) {
  const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= B * H * T) return;
  const int64_t b = idx / (H * T), h = (idx / T) % H, i = idx % T;
  const float scale = rsqrtf((float)D);
  float acc[MAX_D];
  for (int64_t d = 0; d < D; d++) acc[d] = 0.f;
  for (int64_t j = start[b * T + i]; j <= i; j++) {
    const float p = attn_p(q, k, lse, b, h, i, j, T, H, D, scale);
    const float ds = p * (attn_dp(dout, v, b, h, i, j, T, H, D) - delta[idx]) * scale;
    const float* kj = k + ((b * T + j) * H + h) * D;
    for (int64_t d = 0; d < D; d++) acc[d] = fmaf(ds, kj[d], acc[d]);
  }
  float* o = dq + ((b * T + i) * H + h) * D;
  for (int64_t d = 0; d < D; d++) o[d] = rbf(acc[d], bf16);
}

/* dk, dv: one thread per key, over the queries that see it (same document, not earlier). */
__global__ void attn_bwd_kv(float* dk, float* dv, const float* dout, const float* lse, const float* delta, const float* q, const float* k,
                            const float* v, const int32_t* start, int64_t B, int64_t T, int64_t H, int64_t D, bool bf16) {
  const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= B * H * T) return;
  const int64_t b = idx / (H * T), h = (idx / T) % H, j = idx % T;
  const float scale = rsqrtf((float)D);
  float gk[MAX_D], gv[MAX_D];
  for (int64_t d = 0; d < D; d++) gk[d] = gv[d] = 0.f;
  for (int64_t i = j; i < T && start[b * T + i] <= j; i++) {
    const float p = attn_p(q, k, lse, b, h, i, j, T, H, D, scale);
    const float ds = p * (attn_dp(dout, v, b, h, i, j, T, H, D) - delta[(b * H + h) * T + i]) * scale;
    const float* qi = q + ((b * T + i) * H + h) * D;
    const float* gi = dout + ((b * T + i) * H + h) * D;
    for (int64_t d = 0; d < D; d++) {
      gk[d] = fmaf(ds, qi[d], gk[d]);
      gv[d] = fmaf(p, gi[d], gv[d]);
    }
  }
  const int64_t row = ((b * T + j) * H + h) * D;
  for (int64_t d = 0; d < D; d++) {
    dk[row + d] = rbf(gk[d], bf16);
    dv[row + d] = rbf(gv[d], bf16);
  }
}

__global__ void swiglu_fwd(float* out, const float* g, const float* u, int64_t n, bool bf16) {
  const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i < n) out[i] = rbf(g[i] / (1.f + expf(-g[i])) * u[i], bf16);
}
__global__ void swiglu_bwd(float* dg, float* du, const float* dout, const float* g, const float* u, int64_t n, bool bf16) {
  const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float sig = 1.f / (1.f + expf(-g[i]));
  dg[i] = rbf(dout[i] * u[i] * sig * (1.f + g[i] * (1.f - sig)), bf16);
  du[i] = rbf(dout[i] * g[i] * sig, bf16);
}

/* One block per row of logits: loss, and (when backward) scale * (softmax - onehot) in place. */
__global__ void cross_entropy_rows(float* logits, float* losses, const int32_t* targets, int64_t V, float scale, bool backward, bool bf16) {
  __shared__ float sh[ROW_THREADS];
  float* z = logits + blockIdx.x * V;
  const int32_t target = targets[blockIdx.x];
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) z[j] = rbf(z[j], bf16);
  __syncthreads();
  if (target < 0) {
    if (threadIdx.x == 0) losses[blockIdx.x] = NAN;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) z[j] = 0.f;
    return;
  }
  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) m = fmaxf(m, z[j]);
  const float mx = block_max(m, sh);
  float s = 0.f;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) s += expf(z[j] - mx);
  const float lse = mx + logf(block_sum(s, sh));
  if (threadIdx.x == 0) losses[blockIdx.x] = lse - z[target];
  __syncthreads();
  if (!backward) return;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) z[j] = rbf(scale * (expf(z[j] - lse) - (j == target ? 1.f : 0.f)), bf16);
}

__global__ void gather_rows(float* out, const float* hidden, const int32_t* rows, int64_t R, int64_t C) {
  const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i < R * C) out[i] = hidden[(int64_t)rows[i / C] * C + i % C];
}

constexpr int SUM_BLOCKS = 1024;
__global__ void sum_squares_kernel(double* partial, const float* x, int64_t n) {
  __shared__ double sh[ROW_THREADS];
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

__global__ void adamw_kernel(float* p, float* copy, const float* g, float* m, float* v, int64_t n, AdamWParams hp, bool bf16) {
  const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float gi = g[i] * hp.grad_scale;
  m[i] = hp.beta1 * m[i] + (1.f - hp.beta1) * gi;
  v[i] = hp.beta2 * v[i] + (1.f - hp.beta2) * gi * gi;
  const float mhat = m[i] / hp.bias1, vhat = v[i] / hp.bias2;
  p[i] -= hp.lr * (mhat / (sqrtf(vhat) + hp.eps) + hp.weight_decay * p[i]);
  if (copy != p) copy[i] = rbf(p[i], bf16);
}

class CudaBackend final : public Backend {
 public:
  /* reference: the simple kernels only (no cuBLASLt, no fused attention). Throws with the reason. */
  explicit CudaBackend(bool reference) : reference_(reference) {
    CX_CUDA(cudaMalloc(&partial_, SUM_BLOCKS * sizeof(double)));
    if (!reference_) {
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
  void fill(float* dst, float value, size_t n) override { launch(fill_kernel, (int64_t)n, dst, value, (int64_t)n); }
  void copy_round(float* dst, const float* src, size_t n, bool bf16) override { launch(round_kernel, (int64_t)n, dst, src, (int64_t)n, bf16); }

  void embedding_forward(float* out, const int32_t* tokens, const float* wte, int64_t N, int64_t C, bool bf16) override {
    launch(embed_fwd, N * C, out, tokens, wte, N, C, bf16);
  }
  void embedding_backward(float* dwte, const float* dout, const int32_t* tokens, int64_t N, int64_t C) override {
    launch(embed_bwd, C, dwte, dout, tokens, N, C);
  }
  void matmul_forward(float* out, const float* inp, const float* weight, int64_t N, int64_t Cin, int64_t Cout, bool bf16) override {
    gemm(false, true, N, Cout, Cin, inp, Cin, weight, Cin, out, Cout, false, bf16, bf16);
  }
  void matmul_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight, int64_t N, int64_t Cin,
                       int64_t Cout, bool accumulate_dinp, bool bf16) override {
    if (dinp) {
      if (accumulate_dinp && bf16) {
        float* tmp = scratch((size_t)(N * Cin));
        gemm(false, false, N, Cin, Cout, dout, Cout, weight, Cin, tmp, Cin, false, true, true);
        launch(residual_kernel, N * Cin, dinp, dinp, tmp, N * Cin, true);
      } else {
        gemm(false, false, N, Cin, Cout, dout, Cout, weight, Cin, dinp, Cin, accumulate_dinp, bf16, bf16);
      }
    }
    if (dweight) gemm(true, false, Cout, Cin, N, dout, Cout, inp, Cin, dweight, Cin, true, false, bf16);
  }
  void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t N, int64_t C, float eps, bool bf16) override {
    rmsnorm_fwd<<<(unsigned)N, ROW_THREADS>>>(out, rstd, inp, weight, C, eps, bf16);
    check();
  }
  void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight, const float* rstd, int64_t N,
                        int64_t C, bool bf16) override {
    rmsnorm_bwd_inp<<<(unsigned)N, ROW_THREADS>>>(dinp, dout, inp, weight, rstd, C, bf16);
    check();
    launch(rmsnorm_bwd_weight, C, dweight, dout, inp, rstd, N, C);
  }
  void residual_forward(float* out, const float* a, const float* b, int64_t n, bool bf16) override { launch(residual_kernel, n, out, a, b, n, bf16); }
  void rope_forward(float* x, const int32_t* pos, int64_t N, int64_t H, int64_t D, float theta, bool bf16) override {
    launch(rope_kernel, N * H * (D / 2), x, pos, N, H, D, theta, bf16, 1.f);
  }
  void rope_backward(float* dx, const int32_t* pos, int64_t N, int64_t H, int64_t D, float theta, bool bf16) override {
    launch(rope_kernel, N * H * (D / 2), dx, pos, N, H, D, theta, bf16, -1.f);
  }
  void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, const int32_t* doc_start, int64_t B, int64_t T,
                         int64_t H, int64_t D, bool bf16) override {
    if (fused_attention(bf16, D)) return flash_attention_forward(out, lse, q, k, v, doc_start, B, T, H, D, bf16);
    if (D > MAX_D) throw std::runtime_error("head size " + std::to_string(D) + " exceeds the CUDA kernels' limit of " + std::to_string(MAX_D));
    launch(attn_fwd, B * H * T, out, lse, q, k, v, doc_start, B, T, H, D, bf16);
  }
  void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out, const float* lse, const float* q, const float* k,
                          const float* v, const int32_t* doc_start, int64_t B, int64_t T, int64_t H, int64_t D, bool bf16) override {
    float* delta = scratch((size_t)(B * H * T));
    launch(attn_delta, B * H * T, delta, dout, out, B, T, H, D);
    if (fused_attention(bf16, D)) return flash_attention_backward(dq, dk, dv, dout, lse, delta, q, k, v, doc_start, B, T, H, D, bf16);
    launch(attn_bwd_q, B * H * T, dq, dout, lse, delta, q, k, v, doc_start, B, T, H, D, bf16);
    launch(attn_bwd_kv, B * H * T, dk, dv, dout, lse, delta, q, k, v, doc_start, B, T, H, D, bf16);
  }
  void swiglu_forward(float* out, const float* gate, const float* up, int64_t n, bool bf16) override { launch(swiglu_fwd, n, out, gate, up, n, bf16); }
  void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n, bool bf16) override {
    launch(swiglu_bwd, n, dgate, dup, dout, gate, up, n, bf16);
  }
  void lm_head_cross_entropy(float* losses, float* dhidden, float* dweight, const float* hidden, const float* weight, const int32_t* targets,
                             int64_t N, int64_t C, int64_t V, float scale, bool bf16) override {
    const int64_t rows = std::max<int64_t>(16, std::min<int64_t>(N, (int64_t)(1 << 26) / V));
    float* logits = scratch((size_t)(rows * V));
    for (int64_t r0 = 0; r0 < N; r0 += rows) {
      const int64_t R = std::min(rows, N - r0);
      gemm(false, true, R, V, C, hidden + r0 * C, C, weight, C, logits, V, false, false, bf16);
      cross_entropy_rows<<<(unsigned)R, ROW_THREADS>>>(logits, losses + r0, targets + r0, V, scale, dhidden != nullptr, bf16);
      check();
      if (dhidden) {
        gemm(false, false, R, C, V, logits, V, weight, C, dhidden + r0 * C, C, false, bf16, bf16);
        gemm(true, false, V, C, R, logits, V, hidden + r0 * C, C, dweight, C, true, false, bf16);
      }
    }
  }
  void lm_head_logits(float* out, const float* hidden, const float* weight, const int32_t* rows, int64_t R, int64_t C, int64_t V,
                      bool bf16) override {
    float* h = scratch((size_t)(R * C));
    launch(gather_rows, R * C, h, hidden, rows, R, C);
    gemm(false, true, R, V, C, h, C, weight, C, out, V, false, bf16, bf16);
  }
  double sum_squares(const float* x, size_t n) override {
    sum_squares_kernel<<<SUM_BLOCKS, ROW_THREADS>>>(partial_, x, (int64_t)n);
    check();
    std::vector<double> host(SUM_BLOCKS);
    CX_CUDA(cudaMemcpy(host.data(), partial_, SUM_BLOCKS * sizeof(double), cudaMemcpyDeviceToHost));
    double total = 0;
    for (double s : host) total += s;
    return total;
  }
  void adamw(float* param, float* compute_copy, const float* grad, float* m, float* v, size_t n, const AdamWParams& hp, bool bf16) override {
    launch(adamw_kernel, (int64_t)n, param, compute_copy, grad, m, v, (int64_t)n, hp, bf16);
  }
  std::string memory_info() override {
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) return "";
    return std::to_string(free_b >> 20) + " MB free of " + std::to_string(total_b >> 20) + " MB";
  }

 private:
  template <typename... KArgs, typename... Args>
  void launch(void (*kernel)(KArgs...), int64_t n, Args... args) {
    if (n <= 0) return;
    kernel<<<blocks(n), 256>>>(args...);
    check();
  }
  void check() { CX_CUDA(cudaGetLastError()); }
  bool fused_attention(bool bf16, int64_t D) const { return !reference_ && bf16 && flash_attention_supports(D); }
  /* round_out: round C to bf16 after the product (and the accumulation); bf16_operands: A and B hold
   * bf16 values, so cuBLASLt may run them on bf16 tensor cores without changing them. */
  void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc,
            bool acc, bool round_out, bool bf16_operands) {
    if (M <= 0 || N <= 0) return;
    if (lt_ && lt_->run(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, acc, bf16_operands)) {
      if (round_out) {
        if (ldc != N) throw std::runtime_error("internal: bf16 rounding of a strided GEMM output");
        launch(round_kernel, M * N, C, C, M * N, true);
      }
      return;
    }
    dim3 grid((unsigned)((N + TILE - 1) / TILE), (unsigned)((M + TILE - 1) / TILE)), block(TILE, TILE);
    gemm_kernel<<<grid, block>>>(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, acc, round_out);
    check();
  }
  /* Grows once to the largest size asked for (the first step), then is reused: no allocation in later steps. */
  static float* grow(float*& buf, size_t& have, size_t n) {
    if (n > have) {
      cudaFree(buf);
      buf = nullptr;
      if (cudaMalloc(&buf, n * sizeof(float)) != cudaSuccess) {
        cudaGetLastError();
        have = 0;
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        throw std::runtime_error("out of GPU memory: a scratch buffer needs " + std::to_string(n * 4 >> 20) + " MB, " +
                                 std::to_string(free_b >> 20) + " MB free; lower --micro-batch or --context");
      }
      have = n;
    }
    return buf;
  }
  float* scratch(size_t n) { return grow(scratch_, scratch_n_, n); }
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
