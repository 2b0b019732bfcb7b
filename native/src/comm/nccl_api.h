#pragma once
/* The slice of NCCL this project uses, declared here so the addon builds with nvcc and cudart alone; the library
 * is found and loaded at run time (nccl_loader.cpp), as cuBLASLt is. Values and signatures are those of nccl.h
 * (stable since NCCL 2.7; ncclGetLastError since 2.13, optional here). */
#include <cstddef>
#include <string>
#include <vector>

namespace cx {
namespace nccl {

using Result = int;  // ncclResult_t
constexpr Result kSuccess = 0, kInProgress = 7;
using Comm = struct NcclComm*;  // ncclComm_t
using Stream = void*;           // cudaStream_t
constexpr int kUniqueIdBytes = 128;
struct UniqueId {
  char internal[kUniqueIdBytes];
};
using DataType = int;  // ncclDataType_t
constexpr DataType kUint8 = 1, kFloat32 = 7, kFloat64 = 8, kBfloat16 = 9;
using RedOp = int;  // ncclRedOp_t
constexpr RedOp kSum = 0;

/* The head of ncclConfig_t, as NCCL 2.17 laid it out. The struct is versioned and only grows: NCCL reads the
 * `size` bytes given and the fields the `version` knows, and leaves the rest at its defaults. */
constexpr int kConfigUndefined = -2147483647 - 1;  // NCCL_CONFIG_UNDEF_INT (INT_MIN)
struct Config {
  size_t size = sizeof(Config);
  unsigned int magic = 0xcafebeef;  // NCCL_API_MAGIC
  unsigned int version = 21700;     // NCCL_VERSION(2, 17, 0)
  int blocking = kConfigUndefined, cga_cluster_size = kConfigUndefined, min_ctas = kConfigUndefined, max_ctas = kConfigUndefined;
  const char* net_name = nullptr;
};
/* Non-blocking communicators (ncclCommInitRankConfig with blocking = 0) since NCCL 2.14. */
constexpr int kNonBlockingSince = 21400;

struct Api {
  std::string path;  // the file that was loaded
  int version = 0;   // ncclGetVersion(): 22703 for 2.27.3
  Result (*get_version)(int*);
  Result (*get_unique_id)(UniqueId*);
  Result (*comm_init_rank)(Comm*, int nranks, UniqueId id, int rank);
  Result (*comm_init_rank_config)(Comm*, int nranks, UniqueId id, int rank, Config*) = nullptr;  // optional (2.14+)
  Result (*comm_destroy)(Comm);
  Result (*comm_abort)(Comm);
  Result (*comm_get_async_error)(Comm, Result*);
  const char* (*get_error_string)(Result);
  const char* (*get_last_error)(Comm) = nullptr;  // optional
  Result (*all_reduce)(const void* send, void* recv, size_t count, DataType, RedOp, Comm, Stream);
  Result (*reduce_scatter)(const void* send, void* recv, size_t recv_count, DataType, RedOp, Comm, Stream);
  Result (*all_gather)(const void* send, void* recv, size_t send_count, DataType, Comm, Stream);
  Result (*broadcast)(const void* send, void* recv, size_t count, DataType, int root, Comm, Stream);
  Result (*reduce)(const void* send, void* recv, size_t count, DataType, RedOp, int root, Comm, Stream);
  Result (*send)(const void* send, size_t count, DataType, int peer, Comm, Stream);
  Result (*recv)(void* recv, size_t count, DataType, int peer, Comm, Stream);
  Result (*group_start)();
  Result (*group_end)();
};

/* Loads NCCL once per process: CHUXIN_NCCL (a file) if set, else libnccl.so.2 from the system search path, the
 * CUDA toolkit and installed Python wheels (nvidia/nccl/lib, PyTorch's torch/lib). Returns nullptr and says
 * where it looked (and why a file found there did not load) in *why. */
const Api* load(std::string* why);

/* The search itself, uncached; false with the reason in *failure. */
bool probe(Api& api, std::string* failure);

/* The files load() tries after the system search path; exposed for tests and error messages. */
std::vector<std::string> candidate_files();

/* "2.27.3" from ncclGetVersion's 22703 (or 2704 before 2.9: 2.7.4). */
std::string version_string(int version);

}  // namespace nccl
}  // namespace cx
