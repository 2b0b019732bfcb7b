/* A host-memory stand-in for libcublasLt, written from cuBLASLt's documented contract, for the CUDA emulation
 * (the real library needs a GPU): column-major D = alpha·op(A)·op(B) + beta·C with fp32 accumulation, A/B and
 * C/D of type fp32 or bf16, the heuristic refusing inconsistent shapes and types, and an algorithm that refuses
 * pointers less aligned than the preference promised (as real kernels may). Loaded through the same run-time
 * search as the real one (CHUXIN_CUBLASLT), so the backend's plans, layouts and transposes are what is tested. */
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

constexpr int kSuccess = 0, kInvalidValue = 7, kNotSupported = 15;
constexpr int kR32F = 0, kR16BF = 14, kCompute32F = 68;

struct Desc {
  int32_t trans_a = 0, trans_b = 0;
};
struct Layout {
  int type;
  uint64_t rows, cols;
  int64_t ld;
};
struct Pref {
  uint64_t workspace = 0;
  uint32_t align[4] = {256, 256, 256, 256};  // A, B, C, D
};
struct Algo {
  uint64_t data[8];
};
struct Heuristic {
  Algo algo;
  size_t workspace_size;
  int state;
  float waves;
  int reserved[4];
};

float load(const void* p, int type, int64_t i) {
  if (type == kR32F) return static_cast<const float*>(p)[i];
  uint32_t bits = (uint32_t) static_cast<const uint16_t*>(p)[i] << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
void store(void* p, int type, int64_t i, float v) {
  if (type == kR32F) {
    static_cast<float*>(p)[i] = v;
    return;
  }
  uint32_t u;
  std::memcpy(&u, &v, 4);
  if ((u & 0x7f800000u) == 0x7f800000u) u |= (u & 0x007fffffu) ? 0x00400000u : 0u;  // NaN stays NaN
  else u += 0x7fffu + ((u >> 16) & 1u);                                              // round to nearest even
  static_cast<uint16_t*>(p)[i] = (uint16_t)(u >> 16);
}
uint32_t alignment(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t align = 256;
  while (align > 1 && a % align != 0) align /= 2;
  return align;
}

}  // namespace

extern "C" {
int cublasLtCreate(void** handle) {
  static int token;
  *handle = &token;
  return kSuccess;
}
int cublasLtDestroy(void*) { return kSuccess; }
size_t cublasLtGetVersion() { return 0; }  // not a real cuBLASLt
const char* cublasLtGetStatusString(int s) { return s == kSuccess ? "SUCCESS (emulated)" : s == kNotSupported ? "NOT_SUPPORTED (emulated)" : "INVALID_VALUE (emulated)"; }

int cublasLtMatmulDescCreate(Desc** desc, int compute, int scale) {
  if (compute != kCompute32F || scale != kR32F) return kNotSupported;
  *desc = new Desc();
  return kSuccess;
}
int cublasLtMatmulDescDestroy(Desc* desc) {
  delete desc;
  return kSuccess;
}
int cublasLtMatmulDescSetAttribute(Desc* desc, int attr, const void* buf, size_t size) {
  if (size != sizeof(int32_t)) return kInvalidValue;
  int32_t v;
  std::memcpy(&v, buf, 4);
  if (v != 0 && v != 1) return kInvalidValue;
  if (attr == 3) desc->trans_a = v;
  else if (attr == 4) desc->trans_b = v;
  else return kInvalidValue;
  return kSuccess;
}
int cublasLtMatrixLayoutCreate(Layout** layout, int type, uint64_t rows, uint64_t cols, int64_t ld) {
  if (type != kR32F && type != kR16BF) return kNotSupported;
  if (rows == 0 || cols == 0 || ld < (int64_t)rows) return kInvalidValue;
  *layout = new Layout{type, rows, cols, ld};
  return kSuccess;
}
int cublasLtMatrixLayoutDestroy(Layout* layout) {
  delete layout;
  return kSuccess;
}
int cublasLtMatmulPreferenceCreate(Pref** pref) {
  *pref = new Pref();
  return kSuccess;
}
int cublasLtMatmulPreferenceDestroy(Pref* pref) {
  delete pref;
  return kSuccess;
}
int cublasLtMatmulPreferenceSetAttribute(Pref* pref, int attr, const void* buf, size_t size) {
  if (attr == 1 && size == 8) std::memcpy(&pref->workspace, buf, 8);
  else if (attr >= 5 && attr <= 8 && size == 4) std::memcpy(&pref->align[attr - 5], buf, 4);
  else return kInvalidValue;
  return kSuccess;
}
int cublasLtMatmulAlgoGetHeuristic(void*, Desc* desc, Layout* a, Layout* b, Layout* c, Layout* d, Pref* pref, int requested, Heuristic* results,
                                   int* returned) {
  *returned = 0;
  if (requested < 1) return kInvalidValue;
  const uint64_t m = d->rows, n = d->cols;
  const uint64_t a_rows = desc->trans_a ? a->cols : a->rows, k = desc->trans_a ? a->rows : a->cols;
  const uint64_t b_rows = desc->trans_b ? b->cols : b->rows, b_cols = desc->trans_b ? b->rows : b->cols;
  if (a_rows != m || b_rows != k || b_cols != n || c->rows != m || c->cols != n || c->ld != d->ld) return kInvalidValue;
  if (a->type != b->type || c->type != d->type) return kNotSupported;
  std::memset(results, 0, sizeof(Heuristic));
  for (int i = 0; i < 4; i++) results[0].algo.data[i] = pref->align[i];
  *returned = 1;
  return kSuccess;
}
int cublasLtMatmul(void*, Desc* desc, const void* alpha, const void* A, Layout* a, const void* B, Layout* b, const void* beta, const void* C,
                   Layout* c, void* D, Layout* d, const Algo* algo, void*, size_t, void*) {
  const void* ptrs[4] = {A, B, C, D};
  for (int i = 0; i < 4; i++)
    if (alignment(ptrs[i]) < algo->data[i]) return kNotSupported;  // the algorithm was chosen for better-aligned data
  float al, be;
  std::memcpy(&al, alpha, 4);
  std::memcpy(&be, beta, 4);
  const int64_t m = (int64_t)d->rows, n = (int64_t)d->cols, k = (int64_t)(desc->trans_a ? a->rows : a->cols);
  std::vector<float> out((size_t)(m * n));
  for (int64_t j = 0; j < n; j++)
    for (int64_t i = 0; i < m; i++) {
      float s = 0.f;
      for (int64_t p = 0; p < k; p++) {
        const float x = load(A, a->type, desc->trans_a ? p + i * a->ld : i + p * a->ld);
        const float y = load(B, b->type, desc->trans_b ? j + p * b->ld : p + j * b->ld);
        s += x * y;
      }
      out[(size_t)(i + j * m)] = al * s + (be != 0.f ? be * load(C, c->type, i + j * c->ld) : 0.f);
    }
  for (int64_t j = 0; j < n; j++)
    for (int64_t i = 0; i < m; i++) store(D, d->type, i + j * d->ld, out[(size_t)(i + j * m)]);
  return kSuccess;
}
}
