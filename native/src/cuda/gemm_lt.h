#pragma once
/* Row-major GEMM on the GPU through cuBLASLt (loaded at run time): C[M][N] (= or +=) op(A)[M][K] · op(B)[K][N].
 * fp32 storage throughout. With bf16 operands (values already rounded to bf16, as the model stores them) the
 * product runs on bf16 tensor cores (CUBLAS_COMPUTE_32F_FAST_16BF: the down-conversion is exact) with fp32
 * accumulation; otherwise in plain fp32. Plans (descriptors + the heuristic's algorithm) are cached per shape. */
#include <cstdint>
#include <map>
#include <string>
#include <tuple>

#include "cublaslt_api.h"

namespace cx {

class LtGemm {
 public:
  /* false with the reason (where cuBLASLt was looked for) in *why. */
  bool init(std::string* why);
  ~LtGemm();
  /* Returns false when cuBLASLt has no algorithm for this shape (the caller falls back to its own kernel). */
  bool run(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc,
           bool accumulate, bool bf16_operands);
  const lt::Api* api() const { return api_; }

 private:
  struct Plan {
    lt::MatmulDesc desc = nullptr;
    lt::Layout a = nullptr, b = nullptr, c = nullptr;
    lt::MatmulAlgo algo{};
    bool usable = false;
  };
  using Key = std::tuple<bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool, bool>;
  Plan& plan_for(const Key& key);
  const lt::Api* api_ = nullptr;
  lt::Handle handle_ = nullptr;
  lt::Preference pref_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_size_ = 0;
  std::map<Key, Plan> plans_;
};

}  // namespace cx
