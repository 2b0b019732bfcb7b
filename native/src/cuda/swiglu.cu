/* SwiGLU, forward and backward: scalar kernels for any storage, and 16-byte vector kernels for aligned packed
 * bf16 that give the scalar kernels' bits. */
#include "kernel_common.cuh"
#include "kernels.h"

namespace cx {
namespace cuda {
namespace {

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

}  // namespace

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

#define CX_INSTANTIATE(T) \
  template void swiglu_forward<T>(T*, const T*, const T*, int64_t, bool); \
  template void swiglu_backward<T>(T*, T*, const T*, const T*, const T*, int64_t, bool); \

CX_INSTANTIATE(float)
CX_INSTANTIATE(bf16_t)

}  // namespace cuda
}  // namespace cx
