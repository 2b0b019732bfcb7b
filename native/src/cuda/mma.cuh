#pragma once
/* Warp-level bf16 tensor-core products held in registers (PTX mma.sync m16n8k16, fp32 accumulators), as
 * FlashAttention-2 keeps its scores: a 16×8 accumulator tile's layout is, two columns at a time, the layout of
 * the A operand of the next product, so probabilities never go through shared memory.
 * Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16"), with g = lane / 4 and t = lane % 4:
 *   A 16×16 (row-major): a[0] = row g, columns 2t, 2t+1; a[1] = row g+8; a[2] = row g, columns 2t+8, 2t+9; a[3] = row g+8, those;
 *   B 16×8 (k × n):      b[0] = rows (k) 2t, 2t+1 of column n = g; b[1] = rows 2t+8, 2t+9;
 *   C 16×8 fp32:         c[0], c[1] = row g, columns 2t, 2t+1; c[2], c[3] = row g+8.
 * Each 32-bit register holds two bf16, the lower column (or row, for B) in the low half.
 * Under the CPU emulation (native/test/emu) the product is a warp-collective over the same layouts. */
#include <cstdint>

#include "common.cuh"

namespace cx {

/* d += a · b for one 16×16 (A) by 16×8 (B) bf16 product. Every lane of the warp must call it together. */
__device__ __forceinline__ void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#ifdef CX_CUDA_EMULATION
  ::cx_emu::mma_bf16_16816(d, a, b);
#else
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

__device__ __forceinline__ uint32_t load_u32(const bf16_t* p) {
  CX_CHECK_ALIGNED(p, sizeof(uint32_t));
  return *reinterpret_cast<const uint32_t*>(p);
}

__device__ __forceinline__ uint32_t join_u16(const bf16_t* lo, const bf16_t* hi) {
  return (uint32_t)__bfloat16_as_ushort(*lo) | ((uint32_t)__bfloat16_as_ushort(*hi) << 16);
}

/* The A operand from a row-major bf16 tile (leading dimension ld): rows row0.., columns k0... */
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const bf16_t* tile, int ld, int row0, int k0) {
  const int g = (int)(threadIdx.x % 32) / 4, t = (int)(threadIdx.x % 4);
  const bf16_t* p = tile + (row0 + g) * ld + k0 + 2 * t;
  a[0] = load_u32(p);
  a[1] = load_u32(p + 8 * ld);
  a[2] = load_u32(p + 8);
  a[3] = load_u32(p + 8 * ld + 8);
}

/* The B operand when the tile holds it transposed, one row per output column n (B[k][n] = tile[n][k]): the
 * keys of S = Q·Kᵀ. */
__device__ __forceinline__ void load_b_rows(uint32_t (&b)[2], const bf16_t* tile, int ld, int n0, int k0) {
  const int g = (int)(threadIdx.x % 32) / 4, t = (int)(threadIdx.x % 4);
  const bf16_t* p = tile + (n0 + g) * ld + k0 + 2 * t;
  b[0] = load_u32(p);
  b[1] = load_u32(p + 8);
}

/* The B operand when the tile holds it as is, one row per k (B[k][n] = tile[k][n]): the values of P·V. */
__device__ __forceinline__ void load_b_cols(uint32_t (&b)[2], const bf16_t* tile, int ld, int k0, int n0) {
  const int g = (int)(threadIdx.x % 32) / 4, t = (int)(threadIdx.x % 4);
  const bf16_t* p = tile + (k0 + 2 * t) * ld + n0 + g;
  b[0] = join_u16(p, p + ld);
  b[1] = join_u16(p + 8 * ld, p + 9 * ld);
}

}  // namespace cx
