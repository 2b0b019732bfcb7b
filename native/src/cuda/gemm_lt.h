#pragma once
/* Row-major GEMM on the GPU through cuBLASLt (loaded at run time): C[M][N] (= or +=) op(A)[M][K] · op(B)[K][N],
 * fp32 accumulation. Operands fp32 or bf16 (bf16 tensor cores); C fp32 or bf16 (cuBLASLt rounds to nearest even,
 * as rbf does). Plans (descriptors + the heuristic's algorithm) are cached per shape and types.
 * Fusion: accumulating products (weight gradients over micro-batches, input gradients that add up) use beta = 1.
 * cuBLASLt's epilogues (bias, ReLU/GELU and their gradients) have nothing to fuse in this model: it has no biases,
 * and SwiGLU combines two GEMM outputs, which no epilogue does; so none is set. */
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
  /* Types are lt::kR32F or lt::kR16BF. Throws when cuBLASLt has no algorithm for the shape, types and
   * alignments, or the product fails: a silent fall-back to a slow kernel would hide both. */
  void run(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const void* A, int64_t lda, const void* B, int64_t ldb, void* C, int64_t ldc,
           bool accumulate, int operand_type, int output_type);
  const lt::Api* api() const { return api_; }

 private:
  struct Plan {
    lt::MatmulDesc desc = nullptr;
    lt::Layout a = nullptr, b = nullptr, c = nullptr;
    lt::MatmulAlgo algo{};
  };
  // transposes, M, N, K, leading dimensions, operand and output types, alignments of A, B, C (bytes, up to 256)
  using Key = std::tuple<bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int, int, uint32_t, uint32_t, uint32_t>;
  Plan& plan_for(const Key& key);
  void release(Plan& p);
  const lt::Api* api_ = nullptr;
  lt::Handle handle_ = nullptr;
  lt::Preference pref_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_size_ = 0;
  std::map<Key, Plan> plans_;
};

}  // namespace cx
