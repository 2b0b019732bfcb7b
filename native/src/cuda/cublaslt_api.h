#pragma once
/* The slice of cuBLASLt this project uses, declared here so that the addon compiles with nothing but nvcc and
 * cudart; the library itself is found and loaded at run time (cublaslt_loader.cpp). Values and layouts are
 * those of cublasLt.h / cublas_api.h / library_types.h (stable since CUDA 11.4, unchanged in 12 and 13). */
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace cx {
namespace lt {

using Status = int;  // cublasStatus_t; 0 = CUBLAS_STATUS_SUCCESS
constexpr Status kSuccess = 0;
constexpr Status kNotSupported = 15;

using Handle = struct LtContext*;            // cublasLtHandle_t
using MatmulDesc = struct LtMatmulDesc*;     // cublasLtMatmulDesc_t
using Layout = struct LtMatrixLayout*;       // cublasLtMatrixLayout_t
using Preference = struct LtPreference*;     // cublasLtMatmulPreference_t
using Stream = void*;                        // cudaStream_t

struct MatmulAlgo {
  uint64_t data[8];
};
struct HeuristicResult {
  MatmulAlgo algo;
  size_t workspace_size;
  Status state;
  float waves_count;
  int reserved[4];
};
static_assert(sizeof(HeuristicResult) == 96, "cublasLtMatmulHeuristicResult_t is 96 bytes");

// cudaDataType_t
constexpr int kR32F = 0, kR16BF = 14;
// cublasComputeType_t
constexpr int kCompute32F = 68;
// cublasOperation_t
constexpr int32_t kOpN = 0, kOpT = 1;
// cublasLtMatmulDescAttributes_t
constexpr int kDescTransA = 3, kDescTransB = 4;
// cublasLtMatmulPreferenceAttributes_t (the alignments are uint32_t, default 256 bytes)
constexpr int kPrefMaxWorkspaceBytes = 1, kPrefMinAlignA = 5, kPrefMinAlignB = 6, kPrefMinAlignC = 7, kPrefMinAlignD = 8;

struct Api {
  std::string path;     // the file that was loaded
  size_t version = 0;   // cublasLtGetVersion(), e.g. 130001
  Status (*create)(Handle*);
  Status (*destroy)(Handle);
  size_t (*get_version)();
  Status (*desc_create)(MatmulDesc*, int compute_type, int scale_type);
  Status (*desc_destroy)(MatmulDesc);
  Status (*desc_set)(MatmulDesc, int attr, const void* buf, size_t size);
  Status (*layout_create)(Layout*, int type, uint64_t rows, uint64_t cols, int64_t ld);
  Status (*layout_destroy)(Layout);
  Status (*pref_create)(Preference*);
  Status (*pref_destroy)(Preference);
  Status (*pref_set)(Preference, int attr, const void* buf, size_t size);
  Status (*heuristic)(Handle, MatmulDesc, Layout a, Layout b, Layout c, Layout d, Preference, int requested, HeuristicResult* results,
                      int* returned);
  Status (*matmul)(Handle, MatmulDesc, const void* alpha, const void* A, Layout, const void* B, Layout, const void* beta, const void* C, Layout,
                   void* D, Layout, const MatmulAlgo* algo, void* workspace, size_t workspace_size, Stream);
  const char* (*status_string)(Status);  // optional (cublasLtGetStatusString)
};

/* Loads cuBLASLt once per process: CHUXIN_CUBLASLT (a file) if set, else libcublasLt.so.13 then .so.12 from
 * the system search path, the CUDA toolkit and installed Python wheels (nvidia/cublas/lib, nvidia/cu13/lib).
 * Returns nullptr and says where it looked (and why a file found there did not load) in *why. */
const Api* load(std::string* why);

/* The search itself, uncached (load() runs it once per process); false with the reason in *failure. */
bool probe(Api& api, std::string* failure);

/* The files load() tries, in order, after the system search path; exposed for tests and error messages. */
std::vector<std::string> candidate_files();

std::string status_name(const Api* api, Status s);

}  // namespace lt
}  // namespace cx
