#pragma once
/* A CPU emulation of the CUDA execution model, force-included (-include) into the CUDA backend's sources when
 * they are built as plain C++ for CI, where there is no GPU: every CUDA thread of a block is a fiber on one OS
 * thread; __syncthreads, __syncwarp and warp shuffles are barriers between fibers (a barrier that some thread
 * never reaches is reported, not hung); shared memory starts filled with NaN bytes, so reading what no thread
 * wrote shows up; WMMA fragments are whole 16×16 tiles computed by lane 0 of the warp; mma.sync fragments are
 * exchanged between the lanes in the layouts the PTX ISA documents. It checks the kernels'
 * logic (indexing, masks, tile schedules, barriers, rounding) against the CPU backend; it says nothing about
 * speed, and cuBLASLt is not part of it (GEMMs use the reference kernel). */
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

namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  static_assert(M == 16 && N == 16 && K == 16, "the emulation covers 16x16x16 tiles");
  float x[256];  // row-major tile; only lane 0's copy is used
};

inline float to_float(float v) { return v; }
inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

/* What the CUDA guide requires of load/store_matrix_sync, which a GPU would not report: a 256-bit aligned
 * pointer, and a leading dimension that is a multiple of 16 bytes. */
template <typename T>
void check_tile_pointer(const T* p, unsigned ldm) {
  if (reinterpret_cast<uintptr_t>(p) % 32 != 0 || (ldm * sizeof(T)) % 16 != 0) cx_emu::fail("WMMA tile pointer or leading dimension misaligned");
}

template <typename Use, typename T, typename L>
void fill_fragment(fragment<Use, 16, 16, 16, T, L>& f, float v) {
  if (cx_emu::lane() == 0) std::fill(f.x, f.x + 256, v);
}
template <typename T>
void load_matrix_sync(fragment<matrix_a, 16, 16, 16, T, row_major>& f, const T* p, unsigned ldm) {
  check_tile_pointer(p, ldm);
  if (cx_emu::lane() == 0)
    for (int r = 0; r < 16; r++)
      for (int c = 0; c < 16; c++) f.x[r * 16 + c] = to_float(p[r * ldm + c]);
}
template <typename T>
void load_matrix_sync(fragment<matrix_b, 16, 16, 16, T, row_major>& f, const T* p, unsigned ldm) {
  check_tile_pointer(p, ldm);
  if (cx_emu::lane() == 0)
    for (int k = 0; k < 16; k++)
      for (int n = 0; n < 16; n++) f.x[k * 16 + n] = to_float(p[k * ldm + n]);
}
template <typename T>
void load_matrix_sync(fragment<matrix_b, 16, 16, 16, T, col_major>& f, const T* p, unsigned ldm) {
  check_tile_pointer(p, ldm);
  if (cx_emu::lane() == 0)
    for (int k = 0; k < 16; k++)
      for (int n = 0; n < 16; n++) f.x[k * 16 + n] = to_float(p[n * ldm + k]);
}
template <typename T, typename LA, typename LB>
void mma_sync(fragment<accumulator, 16, 16, 16, float>& d, const fragment<matrix_a, 16, 16, 16, T, LA>& a,
              const fragment<matrix_b, 16, 16, 16, T, LB>& b, const fragment<accumulator, 16, 16, 16, float>& c) {
  if (cx_emu::lane() != 0) return;
  float out[256];
  for (int m = 0; m < 16; m++)
    for (int n = 0; n < 16; n++) {
      float s = c.x[m * 16 + n];
      for (int k = 0; k < 16; k++) s += a.x[m * 16 + k] * b.x[k * 16 + n];
      out[m * 16 + n] = s;
    }
  std::copy(out, out + 256, d.x);
}
inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, float>& f, unsigned ldm, layout_t layout) {
  check_tile_pointer(p, ldm);
  if (cx_emu::lane() != 0) return;
  for (int r = 0; r < 16; r++)
    for (int c = 0; c < 16; c++) (layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.x[r * 16 + c];
}
}  // namespace wmma
}  // namespace nvcuda
