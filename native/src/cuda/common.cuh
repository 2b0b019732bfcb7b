#pragma once
/* Shared by the CUDA backend's translation units: error checking, the bf16 rounding every op applies where the
 * model stores bf16 (round to nearest even, NaN kept quiet), bit-identical to the CPU's, and the two storage
 * types kernels are instantiated for: float (fp32 runs, and the reference backend's bf16 runs, rounded in
 * place) and packed bf16 (the fast backend's bf16 runs). */
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include <stdexcept>
#include <string>

/* Kernel launches and dynamic shared memory through macros, so that the same sources also build for the CPU
 * emulation of the CUDA execution model (native/test/emu) that runs the kernels in CI, where there is no GPU. */
#ifdef CX_CUDA_EMULATION
#define CX_KERNEL_LAUNCH(kernel, grid, block, smem, ...) ::cx_emu::launch(dim3(grid), dim3(block), (smem), [=] { kernel(__VA_ARGS__); })
#define CX_DYNAMIC_SHARED(name) unsigned char* name = ::cx_emu::dynamic_shared()
#define CX_CHECK_ALIGNED(p, bytes) ::cx_emu::check_aligned((p), (bytes))
#else
#define CX_CHECK_ALIGNED(p, bytes) ((void)0)  // the emulation checks what a GPU would not report
#define CX_KERNEL_LAUNCH(kernel, grid, block, smem, ...) kernel<<<(grid), (block), (smem)>>>(__VA_ARGS__)
#define CX_DYNAMIC_SHARED(name) extern __shared__ __align__(128) unsigned char name[]
#endif

#define CX_CUDA(call)                                                                                         \
  do {                                                                                                        \
    cudaError_t err_ = (call);                                                                                \
    if (err_ != cudaSuccess) throw std::runtime_error(std::string(#call) + ": " + cudaGetErrorString(err_)); \
  } while (0)

namespace cx {

__device__ __forceinline__ float rbf(float x, bool bf16) {
  if (!bf16) return x;
  unsigned u = __float_as_uint(x);
  if ((u & 0x7f800000u) == 0x7f800000u) {
    if (u & 0x007fffffu) u |= 0x00400000u;
  } else {
    u += 0x7fffu + ((u >> 16) & 1u);
  }
  return __uint_as_float(u & 0xffff0000u);
}

using bf16_t = __nv_bfloat16;

__device__ __forceinline__ float ld(const float* p) { return *p; }
__device__ __forceinline__ float ld(const bf16_t* p) { return __bfloat162float(*p); }
/* round: for float storage, round the value to bf16 first (bf16 runs of the reference backend); packed bf16
 * storage always rounds (to nearest even, as rbf). */
__device__ __forceinline__ void st(float* p, float v, bool round) { *p = rbf(v, round); }
__device__ __forceinline__ void st(bf16_t* p, float v, bool) { *p = __float2bfloat16_rn(v); }

/* Two floats as packed bf16 in one 32-bit word, the first in the low half (memory order), rounded as st(). */
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  return (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(lo)) | ((uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(hi)) << 16);
}

inline unsigned grid_for(int64_t n, int threads = 256) { return (unsigned)((n + threads - 1) / threads); }

}  // namespace cx
