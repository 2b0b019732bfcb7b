/* Finds and loads NCCL at run time (nccl_api.h). Host code only, built with or without CUDA, so the search and
 * its messages are tested on machines without a GPU. */
#include "../util/runtime_library.h"
#include "nccl_api.h"

namespace cx {
namespace nccl {
namespace {

/* The CUDA toolkit's NCCL packages install libnccl.so.2 beside the system libraries; PyTorch's CUDA wheels
 * depend on nvidia-nccl-cu12 / -cu13 (site-packages/nvidia/nccl/lib), and some builds carry it in torch/lib. */
const RuntimeLibrary kLibrary{"NCCL", {"libnccl.so.2"}, "CHUXIN_NCCL", {"nvidia/nccl/lib", "torch/lib"},
                              "Install NCCL (NVIDIA's libnccl2 package) or PyTorch with CUDA (its nvidia-nccl wheel)"};

bool bind_all(void* lib, Api& api, std::string* why) {
  const char* missing = nullptr;
  auto need = [&](const char* name, auto& fn) {
    if (!missing && !bind_symbol(lib, name, fn)) missing = name;
  };
  need("ncclGetVersion", api.get_version);
  need("ncclGetUniqueId", api.get_unique_id);
  need("ncclCommInitRank", api.comm_init_rank);
  need("ncclCommDestroy", api.comm_destroy);
  need("ncclCommAbort", api.comm_abort);
  need("ncclCommGetAsyncError", api.comm_get_async_error);
  need("ncclGetErrorString", api.get_error_string);
  need("ncclAllReduce", api.all_reduce);
  need("ncclReduceScatter", api.reduce_scatter);
  need("ncclAllGather", api.all_gather);
  need("ncclBroadcast", api.broadcast);
  need("ncclReduce", api.reduce);
  need("ncclSend", api.send);
  need("ncclRecv", api.recv);
  need("ncclGroupStart", api.group_start);
  need("ncclGroupEnd", api.group_end);
  if (missing) {
    *why = std::string("lacks ") + missing;
    return false;
  }
  bind_symbol(lib, "ncclGetLastError", api.get_last_error);
  bind_symbol(lib, "ncclCommInitRankConfig", api.comm_init_rank_config);
  return true;
}

}  // namespace

bool probe(Api& api, std::string* failure) {
  void* lib = open_runtime_library(kLibrary, [&](void* handle, std::string* why) { return bind_all(handle, api, why); }, &api.path, failure);
  if (!lib) return false;
  if (api.get_version(&api.version) != kSuccess) api.version = 0;
  return true;
}

std::vector<std::string> candidate_files() { return cx::candidate_files(kLibrary); }

const Api* load(std::string* why) { return load_once(&probe, why); }

std::string version_string(int v) {
  // NCCL_VERSION(X,Y,Z): X*1000+Y*100+Z before 2.9, X*10000+Y*100+Z since.
  const int major = v >= 10000 ? v / 10000 : v / 1000, minor = v >= 10000 ? v / 100 % 100 : v / 100 % 10, patch = v % 100;
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

}  // namespace nccl
}  // namespace cx
