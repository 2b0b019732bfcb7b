/* RMSNorm kernels of the CUDA backend (see kernels.h): the norm, the residual add fused with the norm that reads
 * it, and the backward pass with its weight gradient summed over rows in a fixed order (no atomics). */
#include "kernel_common.cuh"
#include "kernels.h"

namespace cx {
namespace cuda {
namespace {

constexpr int kNormRows = 64;  // rows per partial sum of the norm weight's gradient

template <typename T>
__global__ void rmsnorm_fwd(T* out, float* rstd, const T* inp, const T* w, int64_t C, float eps, bool round) {
  __shared__ float sh[kThreads];
  const T* x = inp + blockIdx.x * C;
  float ss = 0.f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    const float xc = ld(x + c);
    ss += xc * xc;
  }
  const float r = rsqrtf(block_sum(ss, sh) / (float)C + eps);
  if (threadIdx.x == 0) rstd[blockIdx.x] = r;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) st(out + blockIdx.x * C + c, ld(x + c) * r * ld(w + c), round);
}
/* The residual add and the norm that reads its sum, one block per row: the sum is stored (rounded as stored) and
 * normalised from that stored value, so the result equals residual_forward then rmsnorm_forward bit for bit,
 * without a second kernel reading the sum back from memory. */
template <typename T>
__global__ void residual_rmsnorm_fwd(T* sum, T* out, float* rstd, const T* a, const T* b, const T* w, int64_t C, float eps, bool round) {
  __shared__ float sh[kThreads];
  const int64_t row = blockIdx.x * C;
  float ss = 0.f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    st(sum + row + c, ld(a + row + c) + ld(b + row + c), round);
    const float v = ld(sum + row + c);
    ss += v * v;
  }
  const float r = rsqrtf(block_sum(ss, sh) / (float)C + eps);
  if (threadIdx.x == 0) rstd[blockIdx.x] = r;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) st(out + row + c, ld(sum + row + c) * r * ld(w + c), round);
}

template <typename T>
__global__ void rmsnorm_bwd_inp(T* dinp, const T* dout, const T* inp, const T* w, const float* rstd, int64_t C, bool round) {
  __shared__ float sh[kThreads];
  const int64_t n = blockIdx.x;
  const T* x = inp + n * C;
  const T* g = dout + n * C;
  const float r = rstd[n];
  float dot = 0.f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) dot += ld(g + c) * ld(w + c) * ld(x + c);
  const float k = block_sum(dot, sh) * r * r / (float)C;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
    st(dinp + n * C + c, ld(dinp + n * C + c) + r * (ld(g + c) * ld(w + c) - ld(x + c) * k), round);
}
/* The row kernels for packed bf16 when C is a multiple of 8: each thread takes chunks of 8 channels (one 16-byte
 * access when the pointers allow it, else 8 scalar ones, summed in the same order either way, so the fused
 * residual + norm and the norm alone still agree bit for bit). */
__device__ __forceinline__ void load_chunk(float (&f)[kVec], const bf16_t* p, bool aligned) {
  if (aligned) return load8(f, p);
#pragma unroll
  for (int k = 0; k < kVec; k++) f[k] = ld(p + k);
}
__device__ __forceinline__ void store_chunk(bf16_t* p, const float (&f)[kVec], bool aligned) {
  if (aligned) return store8(p, f);
#pragma unroll
  for (int k = 0; k < kVec; k++) st(p + k, f[k], true);
}
__device__ __forceinline__ float as_stored(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }

/* out = x · r · w over one row, chunk by chunk (the second half of both norm kernels). */
__device__ __forceinline__ void write_normalised(bf16_t* out, const bf16_t* x_row, const bf16_t* w, float r, int64_t C, bool aligned) {
  for (int64_t c = threadIdx.x * kVec; c < C; c += (int64_t)blockDim.x * kVec) {
    float x[kVec], wv[kVec];
    load_chunk(x, x_row + c, aligned);
    load_chunk(wv, w + c, aligned);
#pragma unroll
    for (int k = 0; k < kVec; k++) x[k] = x[k] * r * wv[k];
    store_chunk(out + c, x, aligned);
  }
}

__global__ void rmsnorm_fwd_vec(bf16_t* out, float* rstd, const bf16_t* inp, const bf16_t* w, int64_t C, float eps, bool aligned) {
  __shared__ float sh[kThreads];
  const int64_t row = blockIdx.x * C;
  float ss = 0.f;
  for (int64_t c = threadIdx.x * kVec; c < C; c += (int64_t)blockDim.x * kVec) {
    float x[kVec];
    load_chunk(x, inp + row + c, aligned);
#pragma unroll
    for (int k = 0; k < kVec; k++) ss += x[k] * x[k];
  }
  const float r = rsqrtf(block_sum(ss, sh) / (float)C + eps);
  if (threadIdx.x == 0) rstd[blockIdx.x] = r;
  write_normalised(out + row, inp + row, w, r, C, aligned);
}
__global__ void residual_rmsnorm_fwd_vec(bf16_t* sum, bf16_t* out, float* rstd, const bf16_t* a, const bf16_t* b, const bf16_t* w, int64_t C,
                                         float eps, bool aligned) {
  __shared__ float sh[kThreads];
  const int64_t row = blockIdx.x * C;
  float ss = 0.f;
  for (int64_t c = threadIdx.x * kVec; c < C; c += (int64_t)blockDim.x * kVec) {
    float x[kVec], y[kVec];
    load_chunk(x, a + row + c, aligned);
    load_chunk(y, b + row + c, aligned);
#pragma unroll
    for (int k = 0; k < kVec; k++) {
      x[k] = as_stored(x[k] + y[k]);  // what the norm alone would read back
      ss += x[k] * x[k];
    }
    store_chunk(sum + row + c, x, aligned);
  }
  const float r = rsqrtf(block_sum(ss, sh) / (float)C + eps);
  if (threadIdx.x == 0) rstd[blockIdx.x] = r;
  write_normalised(out + row, sum + row, w, r, C, aligned);
}
__global__ void rmsnorm_bwd_inp_vec(bf16_t* dinp, const bf16_t* dout, const bf16_t* inp, const bf16_t* w, const float* rstd, int64_t C,
                                    bool aligned) {
  __shared__ float sh[kThreads];
  const int64_t row = blockIdx.x * C;
  const float r = rstd[blockIdx.x];
  float dot = 0.f;
  for (int64_t c = threadIdx.x * kVec; c < C; c += (int64_t)blockDim.x * kVec) {
    float g[kVec], wv[kVec], x[kVec];
    load_chunk(g, dout + row + c, aligned);
    load_chunk(wv, w + c, aligned);
    load_chunk(x, inp + row + c, aligned);
#pragma unroll
    for (int k = 0; k < kVec; k++) dot += g[k] * wv[k] * x[k];
  }
  const float k_ = block_sum(dot, sh) * r * r / (float)C;
  for (int64_t c = threadIdx.x * kVec; c < C; c += (int64_t)blockDim.x * kVec) {
    float g[kVec], wv[kVec], x[kVec], d[kVec];
    load_chunk(g, dout + row + c, aligned);
    load_chunk(wv, w + c, aligned);
    load_chunk(x, inp + row + c, aligned);
    load_chunk(d, dinp + row + c, aligned);
#pragma unroll
    for (int k = 0; k < kVec; k++) d[k] = d[k] + r * (g[k] * wv[k] - x[k] * k_);
    store_chunk(dinp + row + c, d, aligned);
  }
}

/* The weight gradient sums over every row: first per chunk of kNormRows rows (blocks over channels × chunks, so
 * the whole GPU works), then the chunks in order per channel. Deterministic, no atomics. */
template <typename T>
__global__ void rmsnorm_bwd_weight_partial(float* partial, const T* dout, const T* inp, const float* rstd, int64_t N, int64_t C) {
  const int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, n0 = (int64_t)blockIdx.y * kNormRows;
  if (c >= C) return;
  const int64_t n1 = min(N, n0 + kNormRows);
  float s = 0.f;
  for (int64_t n = n0; n < n1; n++) s += ld(dout + n * C + c) * ld(inp + n * C + c) * rstd[n];
  partial[blockIdx.y * C + c] = s;
}
__global__ void add_partials(float* dw, const float* partial, int64_t chunks, int64_t C) {
  const int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (c >= C) return;
  float s = 0.f;
  for (int64_t k = 0; k < chunks; k++) s += partial[k * C + c];
  dw[c] += s;
}

}  // namespace

template <typename T>
void rmsnorm_forward(T* out, float* rstd, const T* inp, const T* weight, int64_t N, int64_t C, float eps, bool round) {
  if (N <= 0) return;
  if constexpr (std::is_same<T, bf16_t>::value) {
    if (C % kVec == 0) {
      CX_KERNEL_LAUNCH(rmsnorm_fwd_vec, (unsigned)N, kThreads, 0, out, rstd, inp, weight, C, eps, aligned16(out, inp, weight));
      CX_CUDA(cudaGetLastError());
      return;
    }
  }
  CX_KERNEL_LAUNCH(rmsnorm_fwd<T>, (unsigned)N, kThreads, 0, out, rstd, inp, weight, C, eps, round);
  CX_CUDA(cudaGetLastError());
}
template <typename T>
void rmsnorm_backward(T* dinp, float* dweight, const T* dout, const T* inp, const T* weight, const float* rstd, int64_t N, int64_t C, bool round,
                      float* workspace) {
  if (N <= 0) return;
  bool done = false;
  if constexpr (std::is_same<T, bf16_t>::value) {
    if (C % kVec == 0) {
      CX_KERNEL_LAUNCH(rmsnorm_bwd_inp_vec, (unsigned)N, kThreads, 0, dinp, dout, inp, weight, rstd, C, aligned16(dinp, dout, inp, weight));
      done = true;
    }
  }
  if (!done) CX_KERNEL_LAUNCH(rmsnorm_bwd_inp<T>, (unsigned)N, kThreads, 0, dinp, dout, inp, weight, rstd, C, round);
  CX_CUDA(cudaGetLastError());
  const int64_t chunks = (N + kNormRows - 1) / kNormRows;
  CX_KERNEL_LAUNCH(rmsnorm_bwd_weight_partial<T>, dim3(grid_for(C, kThreads), (unsigned)chunks), kThreads, 0, workspace, dout, inp, rstd, N, C);
  CX_CUDA(cudaGetLastError());
  CX_LAUNCH(add_partials, C, dweight, workspace, chunks, C);
}
template <typename T>
void residual_rmsnorm_forward(T* sum, T* norm, float* rstd, const T* a, const T* b, const T* weight, int64_t N, int64_t C, float eps, bool round) {
  if (N <= 0) return;
  if constexpr (std::is_same<T, bf16_t>::value) {
    if (C % kVec == 0) {
      CX_KERNEL_LAUNCH(residual_rmsnorm_fwd_vec, (unsigned)N, kThreads, 0, sum, norm, rstd, a, b, weight, C, eps, aligned16(sum, norm, a, b, weight));
      CX_CUDA(cudaGetLastError());
      return;
    }
  }
  CX_KERNEL_LAUNCH(residual_rmsnorm_fwd<T>, (unsigned)N, kThreads, 0, sum, norm, rstd, a, b, weight, C, eps, round);
  CX_CUDA(cudaGetLastError());
}
int64_t rmsnorm_backward_workspace(int64_t N, int64_t C) { return (N + kNormRows - 1) / kNormRows * C; }

#define CX_INSTANTIATE(T)                                                                                                            \
  template void rmsnorm_forward<T>(T*, float*, const T*, const T*, int64_t, int64_t, float, bool);                                   \
  template void residual_rmsnorm_forward<T>(T*, T*, float*, const T*, const T*, const T*, int64_t, int64_t, float, bool);             \
  template void rmsnorm_backward<T>(T*, float*, const T*, const T*, const T*, const float*, int64_t, int64_t, bool, float*);
CX_INSTANTIATE(float)
CX_INSTANTIATE(bf16_t)

}  // namespace cuda
}  // namespace cx
