#include "gemm.h"

#include <algorithm>
#include <cstring>
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

}  // namespace

const char* sgemm_kernel_name() { return pick_kernel().name; }

void sgemm(ThreadPool& pool, bool transA, bool transB, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
           const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (!accumulate)
      for (int64_t i = 0; i < M; i++) std::memset(C + i * ldc, 0, sizeof(float) * N);
    return;
  }
  const Kernel& kern = pick_kernel();
  const int mr = kern.mr, nr = kern.nr;
  const int64_t m_panels = (M + mr - 1) / mr, n_panels = (N + nr - 1) / nr;
  // Packing buffers live with the calling thread and only grow: no allocation or zeroing per call.
  thread_local std::vector<float> apack, bpack;
  if (apack.size() < (size_t)m_panels * mr * KC) apack.resize((size_t)m_panels * mr * KC);
  if (bpack.size() < (size_t)n_panels * nr * KC) bpack.resize((size_t)n_panels * nr * KC);
  // thread_local names resolve per thread inside the lambdas, so hand the workers plain pointers.
  float* const a_buf = apack.data();
  float* const b_buf = bpack.data();
  // Tiles of (rows of panels) x (cols of panels), enough of them to keep every thread busy.
  const int64_t mp_per_task = std::max<int64_t>(1, std::min<int64_t>(8, m_panels / std::max(1, pool.size())));
  const int64_t np_per_task = std::max<int64_t>(1, std::min<int64_t>(16, n_panels));
  const int64_t m_tasks = (m_panels + mp_per_task - 1) / mp_per_task;
  const int64_t n_tasks = (n_panels + np_per_task - 1) / np_per_task;
  for (int64_t p0 = 0; p0 < K; p0 += KC) {
    const int64_t kc = std::min(KC, K - p0);
    const bool acc = accumulate || p0 > 0;
    pool.parallel_for(m_panels + n_panels, [&](int64_t t, int) {
      if (t < m_panels) pack_a(transA, A, lda, M, t * mr, p0, kc, mr, a_buf + t * mr * kc);
      else pack_b(transB, B, ldb, N, (t - m_panels) * nr, p0, kc, nr, b_buf + (t - m_panels) * nr * kc);
    });
    pool.parallel_for(m_tasks * n_tasks, [&](int64_t task, int) {
      const int64_t mt = task / n_tasks, nt = task % n_tasks;
      float tile[12 * 32];
      for (int64_t ip = mt * mp_per_task; ip < std::min(m_panels, (mt + 1) * mp_per_task); ip++) {
        const int64_t i0 = ip * mr, rows = std::min<int64_t>(mr, M - i0);
        for (int64_t jp = nt * np_per_task; jp < std::min(n_panels, (nt + 1) * np_per_task); jp++) {
          const int64_t j0 = jp * nr, cols = std::min<int64_t>(nr, N - j0);
          const float* Ap = a_buf + ip * mr * kc;
          const float* Bp = b_buf + jp * nr * kc;
          if (rows == mr && cols == nr) {
            kern.run(kc, Ap, Bp, C + i0 * ldc + j0, ldc, acc);
          } else {
            for (int64_t r = 0; r < mr; r++)
              for (int64_t c = 0; c < nr; c++) tile[r * nr + c] = (acc && r < rows && c < cols) ? C[(i0 + r) * ldc + j0 + c] : 0.f;
            kern.run(kc, Ap, Bp, tile, nr, true);
            for (int64_t r = 0; r < rows; r++)
              for (int64_t c = 0; c < cols; c++) C[(i0 + r) * ldc + j0 + c] = tile[r * nr + c];
          }
        }
      }
    });
  }
}

}  // namespace cx
