/* cuBLASLt GEMM for the CUDA backend (see gemm_lt.h). */
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <utility>

#include "gemm_lt.h"

namespace cx {
namespace {
constexpr size_t kWorkspaceBytes = 32u << 20;  // what cuBLAS recommends for Hopper

/* The largest power of two (up to 256) that divides the address: cuBLASLt's heuristic assumes 256 unless told,
 * and an algorithm picked for 256 may refuse a less aligned pointer (layer slices, LM-head row chunks). */
uint32_t alignment(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t align = 256;
  while (align > 1 && a % align != 0) align /= 2;
  return align;
}
}

bool LtGemm::init(std::string* why) {
  api_ = lt::load(why);
  if (!api_) return false;
  lt::Status s = api_->create(&handle_);
  if (s != lt::kSuccess) {
    *why = "cublasLtCreate failed (" + lt::status_name(api_, s) + ") with " + api_->path;
    return false;
  }
  if (cudaMalloc(&workspace_, kWorkspaceBytes) != cudaSuccess) {
    cudaGetLastError();
    *why = "cannot allocate the 32 MB cuBLASLt workspace";
    return false;
  }
  workspace_size_ = kWorkspaceBytes;
  if ((s = api_->pref_create(&pref_)) != lt::kSuccess ||
      (s = api_->pref_set(pref_, lt::kPrefMaxWorkspaceBytes, &workspace_size_, sizeof workspace_size_)) != lt::kSuccess) {
    *why = "cuBLASLt preference setup failed (" + lt::status_name(api_, s) + ")";
    return false;
  }
  return true;
}

LtGemm::~LtGemm() {
  if (!api_) return;
  for (auto& entry : plans_) release(entry.second);
  if (pref_) api_->pref_destroy(pref_);
  if (handle_) api_->destroy(handle_);
  cudaFree(workspace_);
}

/* Row-major C[M][N] = op(A)·op(B) is column-major C^T[N][M] = op(B)^T·op(A)^T: cuBLASLt's A is our B and
 * its B is our A, each with its own transpose flag; a row-major [r][c] array with leading dimension ld is
 * the column-major c×r matrix with the same ld. */
LtGemm::Plan& LtGemm::plan_for(const Key& key) {
  auto found = plans_.find(key);
  if (found != plans_.end()) return found->second;
  const auto [ta, tb, M, N, K, lda, ldb, ldc, ab_type, c_type, align_a, align_b, align_c] = key;
  Plan p;
  // Only a complete plan enters the cache; a failed one releases what it created.
  auto fail = [&](const std::string& message) {
    release(p);
    throw std::runtime_error(message);
  };
  auto check = [&](lt::Status s, const char* what) {
    if (s != lt::kSuccess) fail(std::string(what) + " failed: " + lt::status_name(api_, s));
  };
  const int32_t op_a = tb ? lt::kOpT : lt::kOpN, op_b = ta ? lt::kOpT : lt::kOpN;
  check(api_->desc_create(&p.desc, lt::kCompute32F, lt::kR32F), "cublasLtMatmulDescCreate");
  check(api_->desc_set(p.desc, lt::kDescTransA, &op_a, sizeof op_a), "cublasLtMatmulDescSetAttribute(TRANSA)");
  check(api_->desc_set(p.desc, lt::kDescTransB, &op_b, sizeof op_b), "cublasLtMatmulDescSetAttribute(TRANSB)");
  check(api_->layout_create(&p.a, ab_type, (uint64_t)(tb ? K : N), (uint64_t)(tb ? N : K), ldb), "cublasLtMatrixLayoutCreate(A)");
  check(api_->layout_create(&p.b, ab_type, (uint64_t)(ta ? M : K), (uint64_t)(ta ? K : M), lda), "cublasLtMatrixLayoutCreate(B)");
  check(api_->layout_create(&p.c, c_type, (uint64_t)N, (uint64_t)M, ldc), "cublasLtMatrixLayoutCreate(C)");
  // cuBLASLt's A is our B, its B our A (see above).
  for (auto [attr, value] : {std::pair<int, uint32_t>{lt::kPrefMinAlignA, align_b}, {lt::kPrefMinAlignB, align_a}, {lt::kPrefMinAlignC, align_c},
                             {lt::kPrefMinAlignD, align_c}})
    check(api_->pref_set(pref_, attr, &value, sizeof value), "cublasLtMatmulPreferenceSetAttribute(alignment)");
  lt::HeuristicResult result{};
  int returned = 0;
  const lt::Status s = api_->heuristic(handle_, p.desc, p.a, p.b, p.c, p.c, pref_, 1, &result, &returned);
  if (s != lt::kSuccess || returned < 1 || result.state != lt::kSuccess)
    fail("cuBLASLt has no algorithm for the GEMM " + std::string(ta ? "T" : "N") + (tb ? "T" : "N") + " " + std::to_string(M) + "x" +
         std::to_string(N) + "x" + std::to_string(K) + (ab_type == lt::kR16BF ? " bf16" : " fp32") + "->" +
         (c_type == lt::kR16BF ? "bf16" : "fp32") + " (" + lt::status_name(api_, s) + ", " + api_->path +
         "); CHUXIN_CUDA_GEMM=reference uses the reference kernel instead");
  p.algo = result.algo;
  return plans_.emplace(key, p).first->second;
}

void LtGemm::release(Plan& p) {
  if (p.a) api_->layout_destroy(p.a);
  if (p.b) api_->layout_destroy(p.b);
  if (p.c) api_->layout_destroy(p.c);
  if (p.desc) api_->desc_destroy(p.desc);
  p = Plan{};
}

void LtGemm::run(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const void* A, int64_t lda, const void* B, int64_t ldb, void* C,
                 int64_t ldc, bool accumulate, int operand_type, int output_type) {
  if (M <= 0 || N <= 0) return;
  Plan& p = plan_for(Key{ta, tb, M, N, K, lda, ldb, ldc, operand_type, output_type, alignment(A), alignment(B), alignment(C)});
  const float alpha = 1.f, beta = accumulate ? 1.f : 0.f;
  // The default (legacy) stream, which every kernel of the backend uses too, so the order is kept.
  const lt::Status s = api_->matmul(handle_, p.desc, &alpha, B, p.a, A, p.b, &beta, C, p.c, C, p.c, &p.algo, workspace_, workspace_size_, nullptr);
  if (s != lt::kSuccess)
    throw std::runtime_error("cublasLtMatmul (" + std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K) + ") failed: " +
                             lt::status_name(api_, s));
}

}  // namespace cx
