#pragma once
/* Shared by the CUDA backend's translation units: error checking and the bf16 rounding every op applies
 * where the model stores bf16 (round to nearest even, NaN kept quiet), bit-identical to the CPU's. */
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

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

}  // namespace cx
