#pragma once
/* Shared libraries found at run time instead of linked (cuBLASLt, NCCL): the addon then builds with nvcc and
 * cudart alone and loads on machines without them, and a missing library is an error that says where it
 * looked. Host code only, so the search and its messages are tested without a GPU. */
#include <dlfcn.h>

#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace cx {

struct RuntimeLibrary {
  std::string name;                     // "NCCL", in messages
  std::vector<std::string> sonames;     // tried in order: "libnccl.so.2"
  std::string env_var;                  // names a file that replaces the search: "CHUXIN_NCCL"
  std::vector<std::string> wheel_dirs;  // under each Python site-packages: "nvidia/nccl/lib"
  std::string install_hint;             // the last sentence of a not-found error
};

/* Directories that may hold a CUDA library: CUDA_HOME / CUDA_PATH / CUDA_ROOT, /usr/local/cuda*, the
 * distribution's library folders, then wheel_dirs under every Python environment in sight (PYTHONPATH,
 * VIRTUAL_ENV, CONDA_PREFIX, ~/.local, virtual environments on PATH, /opt/conda, /usr/local, /usr/lib/python3). */
std::vector<std::string> cuda_library_dirs(const std::vector<std::string>& wheel_dirs);

/* The files open_runtime_library tries, in order, after the system search path. */
std::vector<std::string> candidate_files(const RuntimeLibrary& library);

/* Opens the library: the env_var file if set, else each soname on the system search path, else each candidate
 * file; bind resolves the entry points of a handle (false with the missing symbol in *why). Returns the handle
 * (kept open for the life of the process) and the loaded file in *path, or nullptr with *failure saying where
 * it looked, why a file found there did not load, and how to fix it. */
void* open_runtime_library(const RuntimeLibrary& library, const std::function<bool(void* handle, std::string* why)>& bind,
                           std::string* path, std::string* failure);

/* One entry point of an opened library into a typed function pointer; false when the library lacks it. */
template <typename F>
bool bind_symbol(void* handle, const char* name, F& fn) {
  fn = reinterpret_cast<F>(dlsym(handle, name));
  return fn != nullptr;
}

/* probe run once per process for each Api type; later calls return its result (nullptr with the reason in *why). */
template <typename Api>
const Api* load_once(bool (*probe)(Api&, std::string*), std::string* why) {
  static std::once_flag once;
  static Api api;
  static bool ok = false;
  static std::string failure;
  std::call_once(once, [&] { ok = probe(api, &failure); });
  if (!ok && why) *why = failure;
  return ok ? &api : nullptr;
}

}  // namespace cx
