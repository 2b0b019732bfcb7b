#pragma once
/* What the kernels of the CUDA backend share (rmsnorm.cu, swiglu.cu, memory.cu, ...): the block size, the launch macro,
 * 16-byte packed-bf16 access and block-wide reductions in a fixed order. */
#include <cstdint>
#include <type_traits>

#include "common.cuh"

namespace cx {
namespace cuda {

constexpr int kThreads = 256;

#define CX_LAUNCH(kernel, n, ...)                                                  \
  do {                                                                             \
    if ((n) > 0) {                                                                 \
      CX_KERNEL_LAUNCH(kernel, grid_for(n, kThreads), kThreads, 0, __VA_ARGS__); \
      CX_CUDA(cudaGetLastError());                                                 \
    }                                                                              \
  } while (0)

/* Packed bf16 moved eight values (16 bytes) per access: the elementwise kernels are bound by bytes, and 2-byte
 * accesses leave most of each memory transaction unused. Widening is exact and narrowing rounds as st() does,
 * so the vector kernels give the scalar kernels' bits. */
constexpr int kVec = 8;
__device__ __forceinline__ void load8(float (&f)[kVec], const bf16_t* p) {
  CX_CHECK_ALIGNED(p, 16);
  const uint4 u = *reinterpret_cast<const uint4*>(p);
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int k = 0; k < 4; k++) {
    f[2 * k] = __uint_as_float(w[k] << 16);
    f[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
  }
}
__device__ __forceinline__ void store8(bf16_t* p, const float (&f)[kVec]) {
  CX_CHECK_ALIGNED(p, 16);
  *reinterpret_cast<uint4*>(p) = make_uint4(pack_bf16x2(f[0], f[1]), pack_bf16x2(f[2], f[3]), pack_bf16x2(f[4], f[5]), pack_bf16x2(f[6], f[7]));
}
template <typename... Ptrs>
inline bool aligned16(const Ptrs*... ptrs) {
  for (const void* p : {static_cast<const void*>(ptrs)...})
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  return true;
}
/* The 8-wide kernels apply: packed bf16, whole chunks of 8, every pointer 16-byte aligned. */
template <typename T, typename... Ptrs>
inline bool vectorizable(int64_t n, const Ptrs*... ptrs) {
  if constexpr (!std::is_same<T, bf16_t>::value) return false;
  else return n % kVec == 0 && aligned16(ptrs...);
}
/* Block-wide sum / max in a fixed tree order. */
__device__ __forceinline__ float block_sum(float v, float* shared) {
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
__device__ __forceinline__ float block_max(float v, float* shared) {
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

}  // namespace cuda
}  // namespace cx
