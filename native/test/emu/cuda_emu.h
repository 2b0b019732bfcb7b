#pragma once
/* A CPU emulation of the CUDA execution model, force-included (-include) into the CUDA backend's sources when
 * they are built as plain C++ for CI, where there is no GPU: every CUDA thread of a block is a fiber on one OS
 * thread; __syncthreads, __syncwarp and warp shuffles are barriers between fibers (a barrier that some thread
 * never reaches is reported, not hung); shared memory starts filled with NaN bytes, so reading what no thread
 * wrote shows up; mma.sync fragments are exchanged between the lanes in the layouts the PTX ISA documents.
 * It checks the kernels' logic (indexing, masks, tile schedules, barriers, fragment layouts, rounding) against
 * the CPU backend; it says nothing about speed, and cuBLASLt is not part of it (GEMMs use the reference kernel). */
#define __global__
#define __device__
#define __host__
#define __shared__ static
#define __launch_bounds__(...)
#define CX_CUDA_EMULATION 1

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>

namespace cx_emu {
/* The running fiber's coordinates (one OS thread runs every fiber, so plain globals). */
extern uint3 current_thread, current_block;
extern dim3 current_block_dim, current_grid_dim;
extern int current_lane;
inline int lane() { return current_lane; }
void sync_threads();
void sync_warp();
float shfl_xor(float v, int lane_mask);
/* PTX mma.sync.m16n8k16 (bf16 in, fp32 accumulate) as a warp-collective over the documented fragment layouts
 * (src/cuda/mma.cuh): every lane posts its registers, then computes its own four outputs. */
void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]);
unsigned char* dynamic_shared();
[[noreturn]] void fail(const char* what);  // ends the kernel with an error the launch reports
/* A vector access of `bytes` must be aligned to them on a GPU (x86 would not mind). */
inline void check_aligned(const void* p, size_t bytes) {
  if (reinterpret_cast<uintptr_t>(p) % bytes != 0) fail("misaligned vector access");
}
void launch(dim3 grid, dim3 block, size_t shared_bytes, const std::function<void()>& body);
}  // namespace cx_emu

#define threadIdx (static_cast<const uint3&>(::cx_emu::current_thread))
#define blockIdx (static_cast<const uint3&>(::cx_emu::current_block))
#define blockDim (static_cast<const dim3&>(::cx_emu::current_block_dim))
#define gridDim (static_cast<const dim3&>(::cx_emu::current_grid_dim))

inline void __syncthreads() { cx_emu::sync_threads(); }
inline void __syncwarp(unsigned = 0xffffffffu) { cx_emu::sync_warp(); }
inline float __shfl_xor_sync(unsigned, float v, int lane_mask) { return cx_emu::shfl_xor(v, lane_mask); }
inline float rsqrtf(float x) { return 1.f / std::sqrt(x); }
inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
using std::max;
using std::min;

