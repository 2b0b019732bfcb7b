#include "gemm.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define CX_X86 1
#endif

namespace cx {
namespace {

constexpr int64_t KC = 256;

struct Kernel {
  int mr, nr;
  /* C tile (mr x nr, row stride ldc) = (accumulate ? C : 0) + Ap · Bp over kc */
  void (*run)(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc, bool accumulate);
  const char* name;
};

void kernel_portable(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc, bool accumulate) {
  constexpr int MR = 4, NR = 16;
  float acc[MR][NR];
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++) acc[i][j] = accumulate ? C[i * ldc + j] : 0.f;
  for (int64_t k = 0; k < kc; k++) {
    const float* a = Ap + k * MR;
    const float* b = Bp + k * NR;
    for (int i = 0; i < MR; i++)
      for (int j = 0; j < NR; j++) acc[i][j] += a[i] * b[j];
  }
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++) C[i * ldc + j] = acc[i][j];
}

#ifdef CX_X86
__attribute__((target("avx2,fma"))) void kernel_avx2(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc,
                                                    bool accumulate) {
  constexpr int MR = 6;
  __m256 c[MR][2];
  for (int i = 0; i < MR; i++) {
    c[i][0] = accumulate ? _mm256_loadu_ps(C + i * ldc) : _mm256_setzero_ps();
    c[i][1] = accumulate ? _mm256_loadu_ps(C + i * ldc + 8) : _mm256_setzero_ps();
  }
  for (int64_t k = 0; k < kc; k++) {
    __m256 b0 = _mm256_loadu_ps(Bp + k * 16);
    __m256 b1 = _mm256_loadu_ps(Bp + k * 16 + 8);
    const float* a = Ap + k * MR;
    for (int i = 0; i < MR; i++) {
      __m256 ai = _mm256_broadcast_ss(a + i);
      c[i][0] = _mm256_fmadd_ps(ai, b0, c[i][0]);
      c[i][1] = _mm256_fmadd_ps(ai, b1, c[i][1]);
    }
  }
  for (int i = 0; i < MR; i++) {
    _mm256_storeu_ps(C + i * ldc, c[i][0]);
    _mm256_storeu_ps(C + i * ldc + 8, c[i][1]);
  }
}

__attribute__((target("avx512f"))) void kernel_avx512(int64_t kc, const float* Ap, const float* Bp, float* C,
                                                     int64_t ldc, bool accumulate) {
  constexpr int MR = 12;
  __m512 c[MR][2];
  for (int i = 0; i < MR; i++) {
    c[i][0] = accumulate ? _mm512_loadu_ps(C + i * ldc) : _mm512_setzero_ps();
    c[i][1] = accumulate ? _mm512_loadu_ps(C + i * ldc + 16) : _mm512_setzero_ps();
  }
  for (int64_t k = 0; k < kc; k++) {
    __m512 b0 = _mm512_loadu_ps(Bp + k * 32);
    __m512 b1 = _mm512_loadu_ps(Bp + k * 32 + 16);
    const float* a = Ap + k * MR;
    for (int i = 0; i < MR; i++) {
      __m512 ai = _mm512_set1_ps(a[i]);
      c[i][0] = _mm512_fmadd_ps(ai, b0, c[i][0]);
      c[i][1] = _mm512_fmadd_ps(ai, b1, c[i][1]);
    }
  }
  for (int i = 0; i < MR; i++) {
    _mm512_storeu_ps(C + i * ldc, c[i][0]);
    _mm512_storeu_ps(C + i * ldc + 16, c[i][1]);
  }
}
#endif

/* bf16 pairs: C tile (12 x 32) += Ap · Bp over kc2 k-pairs with VDPBF16PS (products exact, fp32 sums). */
__attribute__((target("avx512f,avx512bf16"))) void kernel_avx512_bf16(int64_t kc2, const uint32_t* Ap, const uint32_t* Bp, float* C,
                                                                    int64_t ldc, bool accumulate) {
  constexpr int MR = 12;
  __m512 c[MR][2];
  for (int i = 0; i < MR; i++) {
    c[i][0] = accumulate ? _mm512_loadu_ps(C + i * ldc) : _mm512_setzero_ps();
    c[i][1] = accumulate ? _mm512_loadu_ps(C + i * ldc + 16) : _mm512_setzero_ps();
  }
  for (int64_t p = 0; p < kc2; p++) {
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(Bp + p * 32);
    const __m512bh b1 = (__m512bh)_mm512_loadu_si512(Bp + p * 32 + 16);
    const uint32_t* a = Ap + p * MR;
    for (int i = 0; i < MR; i++) {
      const __m512bh ai = (__m512bh)_mm512_set1_epi32((int)a[i]);
      c[i][0] = _mm512_dpbf16_ps(c[i][0], ai, b0);
      c[i][1] = _mm512_dpbf16_ps(c[i][1], ai, b1);
    }
  }
  for (int i = 0; i < MR; i++) {
    _mm512_storeu_ps(C + i * ldc, c[i][0]);
    _mm512_storeu_ps(C + i * ldc + 16, c[i][1]);
  }
}

bool has_avx512_bf16() {
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
  }();
  return yes;
}

const Kernel& pick_kernel() {
  static const Kernel kernel = [] {
#ifdef CX_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return Kernel{12, 32, kernel_avx512, "avx512"};
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Kernel{6, 16, kernel_avx2, "avx2"};
#endif
    return Kernel{4, 16, kernel_portable, "portable"};
  }();
  return kernel;
}

/* Packs rows [i0, i0+mr) x k-slice [p0, p0+kc) of op(A) as kc groups of mr values (zero-padded). */
void pack_a(bool transA, const float* A, int64_t lda, int64_t M, int64_t i0, int64_t p0, int64_t kc, int mr, float* out) {
  int64_t rows = std::min<int64_t>(mr, M - i0);
  for (int64_t k = 0; k < kc; k++) {
    float* o = out + k * mr;
    if (transA) {
      const float* src = A + (p0 + k) * lda + i0;
      for (int64_t r = 0; r < rows; r++) o[r] = src[r];
    } else {
      for (int64_t r = 0; r < rows; r++) o[r] = A[(i0 + r) * lda + p0 + k];
    }
    for (int64_t r = rows; r < mr; r++) o[r] = 0.f;
  }
}

/* Packs k-slice [p0, p0+kc) x columns [j0, j0+nr) of op(B) as kc groups of nr values (zero-padded). */
void pack_b(bool transB, const float* B, int64_t ldb, int64_t N, int64_t j0, int64_t p0, int64_t kc, int nr, float* out) {
  int64_t cols = std::min<int64_t>(nr, N - j0);
  if (!transB) {
    for (int64_t k = 0; k < kc; k++) {
      float* o = out + k * nr;
      std::memcpy(o, B + (p0 + k) * ldb + j0, sizeof(float) * cols);
      for (int64_t c = cols; c < nr; c++) o[c] = 0.f;
    }
  } else {
    for (int64_t c = 0; c < cols; c++) {
      const float* src = B + (j0 + c) * ldb + p0;
      for (int64_t k = 0; k < kc; k++) out[k * nr + c] = src[k];
    }
    for (int64_t c = cols; c < nr; c++)
      for (int64_t k = 0; k < kc; k++) out[k * nr + c] = 0.f;
  }
}

/* The upper half of an fp32 that already holds a bf16 value is that bf16, exactly. */
inline uint32_t bf16_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u >> 16;
}

/* 32-bit views of float arrays (may_alias keeps the reads well-defined). */
typedef uint32_t __attribute__((may_alias)) u32_alias;

/* A k-pair of bf16 in one 32-bit word: k=2p in the low half, k=2p+1 in the high half. */
inline uint32_t pair_bits(uint32_t lo, uint32_t hi) { return (lo >> 16) | (hi & 0xffff0000u); }

/* Pairs from two k-rows, contiguous along the other dimension (vectorises). */
__attribute__((target_clones("avx512f", "avx2", "default"))) void pairs_from_rows(const float* k0, const float* k1, uint32_t* out, int64_t n) {
  for (int64_t c = 0; c < n; c++) {
    uint32_t a, b = 0;
    std::memcpy(&a, k0 + c, 4);
    if (k1) std::memcpy(&b, k1 + c, 4);
    out[c] = pair_bits(a, b);
  }
}

/* Packs rows [i0, i0+mr) x k [p0, p0+kc) of op(A) as k-pairs of bf16, mr words per pair (zero-padded). */
void pack_a_bf16(bool transA, const float* A, int64_t lda, int64_t M, int64_t i0, int64_t p0, int64_t kc, int mr, uint32_t* out) {
  const int64_t rows = std::min<int64_t>(mr, M - i0), kc2 = (kc + 1) / 2;
  std::memset(out, 0, sizeof(uint32_t) * (size_t)(kc2 * mr));
  if (transA) {  // k rows are contiguous along i
    for (int64_t p = 0; p < kc2; p++) {
      const float* k0 = A + (p0 + 2 * p) * lda + i0;
      const float* k1 = 2 * p + 1 < kc ? k0 + lda : nullptr;
      pairs_from_rows(k0, k1, out + p * mr, rows);
    }
  } else {  // each row holds its k-pairs side by side
    for (int64_t r = 0; r < rows; r++) {
      const u32_alias* src = reinterpret_cast<const u32_alias*>(A + (i0 + r) * lda + p0);
      for (int64_t p = 0; p < kc / 2; p++) out[p * mr + r] = pair_bits(src[2 * p], src[2 * p + 1]);
      if (kc % 2) out[(kc2 - 1) * mr + r] = pair_bits(src[kc - 1], 0);
    }
  }
}

void pack_b_bf16(bool transB, const float* B, int64_t ldb, int64_t N, int64_t j0, int64_t p0, int64_t kc, int nr, uint32_t* out) {
  const int64_t cols = std::min<int64_t>(nr, N - j0), kc2 = (kc + 1) / 2;
  std::memset(out, 0, sizeof(uint32_t) * (size_t)(kc2 * nr));
  if (!transB) {  // k rows are contiguous along j
    for (int64_t p = 0; p < kc2; p++) {
      const float* k0 = B + (p0 + 2 * p) * ldb + j0;
      const float* k1 = 2 * p + 1 < kc ? k0 + ldb : nullptr;
      pairs_from_rows(k0, k1, out + p * nr, cols);
    }
  } else {
    for (int64_t c = 0; c < cols; c++) {
      const u32_alias* src = reinterpret_cast<const u32_alias*>(B + (j0 + c) * ldb + p0);
      for (int64_t p = 0; p < kc / 2; p++) out[p * nr + c] = pair_bits(src[2 * p], src[2 * p + 1]);
      if (kc % 2) out[(kc2 - 1) * nr + c] = pair_bits(src[kc - 1], 0);
    }
  }
}

/* The blocked driver both kernels share: for each KC-deep slice, pack op(A) and op(B) into panels (in
 * parallel), then run the micro-kernel over tiles of panels. Each element of C sums over k in one fixed
 * order, whatever the thread count. `Elem` is float (fp32 panels) or uint32_t (bf16 k-pairs, kstep 2). */
template <typename Elem, typename PackA, typename PackB, typename Run>
void gemm_driver(ThreadPool& pool, int mr, int nr, int kstep, PackA pack_a_fn, PackB pack_b_fn, Run run, int64_t M, int64_t N, int64_t K, float* C,
                 int64_t ldc, bool accumulate) {
  const int64_t m_panels = (M + mr - 1) / mr, n_panels = (N + nr - 1) / nr, kc_max = KC / kstep;
  // Packing buffers live with the calling thread and only grow: no allocation or zeroing per call.
  thread_local std::vector<Elem> apack, bpack;
  if (apack.size() < (size_t)(m_panels * mr * kc_max)) apack.resize((size_t)(m_panels * mr * kc_max));
  if (bpack.size() < (size_t)(n_panels * nr * kc_max)) bpack.resize((size_t)(n_panels * nr * kc_max));
  // thread_local names resolve per thread inside the lambdas, so hand the workers plain pointers.
  Elem* const a_buf = apack.data();
  Elem* const b_buf = bpack.data();
  // Tiles of (rows of panels) x (cols of panels), enough of them to keep every thread busy.
  const int64_t mp_per_task = std::max<int64_t>(1, std::min<int64_t>(8, m_panels / std::max(1, pool.size())));
  const int64_t np_per_task = std::max<int64_t>(1, std::min<int64_t>(16, n_panels));
  const int64_t m_tasks = (m_panels + mp_per_task - 1) / mp_per_task;
  const int64_t n_tasks = (n_panels + np_per_task - 1) / np_per_task;
  for (int64_t p0 = 0; p0 < K; p0 += KC) {
    const int64_t kc = std::min(KC, K - p0), kd = (kc + kstep - 1) / kstep;
    const bool acc = accumulate || p0 > 0;
    pool.parallel_for(m_panels + n_panels, [&](int64_t t, int) {
      if (t < m_panels) pack_a_fn(t * mr, p0, kc, a_buf + t * mr * kd);
      else pack_b_fn((t - m_panels) * nr, p0, kc, b_buf + (t - m_panels) * nr * kd);
    });
    pool.parallel_for(m_tasks * n_tasks, [&](int64_t task, int) {
      const int64_t mt = task / n_tasks, nt = task % n_tasks;
      float tile[12 * 32];
      for (int64_t ip = mt * mp_per_task; ip < std::min(m_panels, (mt + 1) * mp_per_task); ip++) {
        const int64_t i0 = ip * mr, rows = std::min<int64_t>(mr, M - i0);
        for (int64_t jp = nt * np_per_task; jp < std::min(n_panels, (nt + 1) * np_per_task); jp++) {
          const int64_t j0 = jp * nr, cols = std::min<int64_t>(nr, N - j0);
          const Elem* Ap = a_buf + ip * mr * kd;
          const Elem* Bp = b_buf + jp * nr * kd;
          if (rows == mr && cols == nr) {
            run(kd, Ap, Bp, C + i0 * ldc + j0, ldc, acc);
          } else {
            for (int64_t r = 0; r < mr; r++)
              for (int64_t c = 0; c < nr; c++) tile[r * nr + c] = (acc && r < rows && c < cols) ? C[(i0 + r) * ldc + j0 + c] : 0.f;
            run(kd, Ap, Bp, tile, nr, true);
            for (int64_t r = 0; r < rows; r++)
              for (int64_t c = 0; c < cols; c++) C[(i0 + r) * ldc + j0 + c] = tile[r * nr + c];
          }
        }
      }
    });
  }
}

}  // namespace

const char* sgemm_kernel_name() { return has_avx512_bf16() ? (std::string(pick_kernel().name) == "avx512" ? "avx512 (+avx512_bf16 for bf16 operands)" : pick_kernel().name) : pick_kernel().name; }

void gemm_bf16_operands(ThreadPool& pool, bool transA, bool transB, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
                        int64_t ldb, float* C, int64_t ldc, bool accumulate) {
  if (M <= 0 || N <= 0) return;
  if (K > 0 && has_avx512_bf16()) {
    constexpr int mr = 12, nr = 32;
    gemm_driver<uint32_t>(
        pool, mr, nr, 2, [&](int64_t i0, int64_t p0, int64_t kc, uint32_t* out) { pack_a_bf16(transA, A, lda, M, i0, p0, kc, mr, out); },
        [&](int64_t j0, int64_t p0, int64_t kc, uint32_t* out) { pack_b_bf16(transB, B, ldb, N, j0, p0, kc, nr, out); }, kernel_avx512_bf16, M,
        N, K, C, ldc, accumulate);
    return;
  }
  sgemm(pool, transA, transB, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

/* A few rows times a transposed matrix (generation's one new token through a projection or the LM head): packing
 * would copy the whole weight to read it once, so each output is a dot product of two contiguous rows, summed in
 * 16 fixed lanes (vectorised) and then across them, the same order whatever the thread count. */
static void few_rows_times_transposed(ThreadPool& pool, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                                      int64_t ldc, bool accumulate) {
  constexpr int64_t kCols = 64, kLanes = 16;
  pool.parallel_for((N + kCols - 1) / kCols, [&](int64_t t, int) {
    for (int64_t n = t * kCols; n < std::min(N, (t + 1) * kCols); n++) {
      const float* b = B + n * ldb;
      for (int64_t m = 0; m < M; m++) {
        const float* a = A + m * lda;
        float lanes[kLanes] = {};
        int64_t k = 0;
        for (; k + kLanes <= K; k += kLanes)
          for (int64_t j = 0; j < kLanes; j++) lanes[j] += a[k + j] * b[k + j];
        float sum = 0.f;
        for (int64_t j = 0; j < kLanes; j++) sum += lanes[j];
        for (; k < K; k++) sum += a[k] * b[k];
        float& c = C[m * ldc + n];
        c = accumulate ? c + sum : sum;
      }
    }
  });
}

void sgemm(ThreadPool& pool, bool transA, bool transB, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
           const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate) {
  if (M <= 0 || N <= 0) return;
  if (M <= 4 && !transA && transB && K > 0) return few_rows_times_transposed(pool, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
  if (K <= 0) {
    if (!accumulate)
      for (int64_t i = 0; i < M; i++) std::memset(C + i * ldc, 0, sizeof(float) * N);
    return;
  }
  const Kernel& kern = pick_kernel();
  const int mr = kern.mr, nr = kern.nr;
  gemm_driver<float>(
      pool, mr, nr, 1, [&](int64_t i0, int64_t p0, int64_t kc, float* out) { pack_a(transA, A, lda, M, i0, p0, kc, mr, out); },
      [&](int64_t j0, int64_t p0, int64_t kc, float* out) { pack_b(transB, B, ldb, N, j0, p0, kc, nr, out); }, kern.run, M, N, K, C, ldc,
      accumulate);
}

}  // namespace cx
