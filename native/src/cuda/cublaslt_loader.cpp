/* Finds and loads cuBLASLt at run time (see cublaslt_api.h) through the shared search (util/runtime_library.h).
 * Host code only, built with or without CUDA, so the search and its error messages are tested without a GPU. */
#include "../util/runtime_library.h"
#include "cublaslt_api.h"

namespace cx {
namespace lt {
namespace {

/* PyTorch's wheels bring cuBLAS as nvidia-cublas-cu12 (nvidia/cublas/lib), or for CUDA 13 as nvidia/cu13/lib. */
const RuntimeLibrary kLibrary{"cuBLASLt", {"libcublasLt.so.13", "libcublasLt.so.12"}, "CHUXIN_CUBLASLT", {"nvidia/cublas/lib", "nvidia/cu13/lib"},
                              "Install the CUDA toolkit's cuBLAS or PyTorch's wheel (nvidia-cublas)"};

/* Resolves every entry point; false with the missing symbol's name in *why. */
bool bind_all(void* lib, Api& api, std::string* why) {
  const char* missing = nullptr;
  auto need = [&](const char* name, auto& fn) {
    if (!missing && !bind_symbol(lib, name, fn)) missing = name;
  };
  need("cublasLtCreate", api.create);
  need("cublasLtDestroy", api.destroy);
  need("cublasLtGetVersion", api.get_version);
  need("cublasLtMatmulDescCreate", api.desc_create);
  need("cublasLtMatmulDescDestroy", api.desc_destroy);
  need("cublasLtMatmulDescSetAttribute", api.desc_set);
  need("cublasLtMatrixLayoutCreate", api.layout_create);
  need("cublasLtMatrixLayoutDestroy", api.layout_destroy);
  need("cublasLtMatmulPreferenceCreate", api.pref_create);
  need("cublasLtMatmulPreferenceDestroy", api.pref_destroy);
  need("cublasLtMatmulPreferenceSetAttribute", api.pref_set);
  need("cublasLtMatmulAlgoGetHeuristic", api.heuristic);
  need("cublasLtMatmul", api.matmul);
  if (missing) {
    *why = std::string("lacks ") + missing;
    return false;
  }
  bind_symbol(lib, "cublasLtGetStatusString", api.status_string);
  return true;
}

}  // namespace

bool probe(Api& api, std::string* failure) {
  void* lib = open_runtime_library(kLibrary, [&](void* handle, std::string* why) { return bind_all(handle, api, why); }, &api.path, failure);
  if (!lib) return false;
  api.version = api.get_version();
  return true;
}

std::vector<std::string> candidate_files() { return cx::candidate_files(kLibrary); }

const Api* load(std::string* why) { return load_once(&probe, why); }

std::string status_name(const Api* api, Status s) {
  if (api && api->status_string) {
    const char* name = api->status_string(s);
    if (name) return name;
  }
  return "cuBLAS status " + std::to_string(s);
}

}  // namespace lt
}  // namespace cx
