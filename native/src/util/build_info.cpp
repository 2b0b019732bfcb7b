/* What the library was built with, and whether the run-time libraries it loads are found (`chuxin-data doctor`). */
#include <cstdio>
#include <cstring>
#include <string>
#include "../comm/nccl_api.h"
#include "../cuda/cublaslt_api.h"
#include "chuxin.h"

#ifndef CX_CUDA_GENCODE
#define CX_CUDA_GENCODE ""
#endif

const char* cx_build_info(void) {
#ifdef CX_WITH_CUDA
  constexpr bool cuda = true;
#else
  constexpr bool cuda = false;
#endif
#ifdef CX_GLOO_BUILT
  constexpr bool gloo = true;
#else
  constexpr bool gloo = false;
#endif
  static const std::string info = std::string("{\"cuda\":") + (cuda ? "true" : "false") + ",\"cuda_gencode\":\"" + CX_CUDA_GENCODE +
                                  "\",\"gloo\":" + (gloo ? "true" : "false") + "}";
  return info.c_str();
}

int cx_probe_library(const char* name, char* buf, size_t n) {
  std::string text;
  int found = 0;
  if (std::strcmp(name, "nccl") == 0) {
    cx::nccl::Api api;
    std::string why;
    found = cx::nccl::probe(api, &why) ? 1 : 0;
    text = found ? api.path + " (NCCL " + cx::nccl::version_string(api.version) + ")" : why;
  } else if (std::strcmp(name, "cublaslt") == 0) {
    cx::lt::Api api;
    std::string why;
    found = cx::lt::probe(api, &why) ? 1 : 0;
    text = found ? api.path + " (cuBLASLt " + std::to_string(api.version) + ")" : why;
  } else {
    text = std::string("unknown library '") + name + "' (nccl or cublaslt)";
    found = -1;
  }
  if (n > 0) std::snprintf(buf, n, "%s", text.c_str());
  return found;
}
