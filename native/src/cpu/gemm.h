#pragma once
#include <cstdint>
#include "../util/threadpool.h"

namespace cx {

/* C[M][N] (=|+=) op(A)[M][K] · op(B)[K][N], fp32 accumulation in a fixed order: results do not depend on
 * the thread count. op(X) is X or its transpose; lda/ldb/ldc are row strides of the stored matrices. */
void sgemm(ThreadPool& pool, bool transA, bool transB, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
           const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate);

/* The same product when every operand already holds a bf16 value: uses AVX512-BF16 dot products (exact
 * products, fp32 sums) where the CPU has them, else sgemm. */
void gemm_bf16_operands(ThreadPool& pool, bool transA, bool transB, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                        const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate);

/* Which micro-kernel runs: "avx512", "avx2" or "portable" (detected once at run time). */
const char* sgemm_kernel_name();

}  // namespace cx
