/* Finds and loads cuBLASLt at run time (see cublaslt_api.h). Host code only, built with or without CUDA, so
 * the search and its error messages are tested on machines without a GPU. */
#include <dlfcn.h>
#include <glob.h>
#include <sys/stat.h>

#include <cstdlib>
#include <mutex>
#include <set>

#include "cublaslt_api.h"

namespace cx {
namespace lt {
namespace {

const char* const kSonames[] = {"libcublasLt.so.13", "libcublasLt.so.12"};

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

bool is_file(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

void glob_into(const std::string& pattern, std::vector<std::string>& out) {
  glob_t g{};
  if (glob(pattern.c_str(), 0, nullptr, &g) == 0)
    for (size_t i = 0; i < g.gl_pathc; i++) out.push_back(g.gl_pathv[i]);
  globfree(&g);
}

/* Directories that may hold libcublasLt: the CUDA toolkit, then Python environments (PyTorch's wheels
 * bring cuBLAS as nvidia-cublas-cu12, laid out as nvidia/cublas/lib, or for CUDA 13 as nvidia/cu13/lib). */
std::vector<std::string> search_dirs() {
  std::vector<std::string> dirs;
  for (const char* var : {"CUDA_HOME", "CUDA_PATH", "CUDA_ROOT"}) {
    const std::string root = env(var);
    if (!root.empty()) {
      dirs.push_back(root + "/lib64");
      dirs.push_back(root + "/lib");
    }
  }
  dirs.push_back("/usr/local/cuda/lib64");
  dirs.push_back("/usr/local/cuda/targets/x86_64-linux/lib");
  dirs.push_back("/usr/local/cuda/targets/sbsa-linux/lib");
  glob_into("/usr/local/cuda-*/lib64", dirs);
  dirs.push_back("/usr/lib/x86_64-linux-gnu");
  dirs.push_back("/usr/lib/aarch64-linux-gnu");

  std::vector<std::string> site;
  const std::string pythonpath = env("PYTHONPATH");
  for (size_t at = 0; !pythonpath.empty() && at <= pythonpath.size();) {
    const size_t colon = pythonpath.find(':', at);
    const std::string part = pythonpath.substr(at, colon == std::string::npos ? std::string::npos : colon - at);
    if (!part.empty()) site.push_back(part);
    if (colon == std::string::npos) break;
    at = colon + 1;
  }
  for (const char* var : {"VIRTUAL_ENV", "CONDA_PREFIX"}) {
    const std::string root = env(var);
    if (!root.empty()) glob_into(root + "/lib/python3*/site-packages", site);
  }
  const std::string home = env("HOME");
  if (!home.empty()) glob_into(home + "/.local/lib/python3*/site-packages", site);
  // Virtual environments on PATH (bin/python3 beside lib/python3.X/site-packages), e.g. /opt/torch/.venv.
  const std::string path = env("PATH");
  for (size_t at = 0; !path.empty() && at <= path.size();) {
    const size_t colon = path.find(':', at);
    const std::string dir = path.substr(at, colon == std::string::npos ? std::string::npos : colon - at);
    if (!dir.empty() && is_file(dir + "/python3")) glob_into(dir + "/../lib/python3*/site-packages", site);
    if (colon == std::string::npos) break;
    at = colon + 1;
  }
  glob_into("/opt/conda/lib/python3*/site-packages", site);
  glob_into("/usr/local/lib/python3*/dist-packages", site);
  glob_into("/usr/local/lib/python3*/site-packages", site);
  site.push_back("/usr/lib/python3/dist-packages");
  for (const std::string& s : site) {
    dirs.push_back(s + "/nvidia/cublas/lib");
    dirs.push_back(s + "/nvidia/cu13/lib");
  }
  return dirs;
}

template <typename F>
bool bind(void* lib, const char* name, F& fn) {
  fn = reinterpret_cast<F>(dlsym(lib, name));
  return fn != nullptr;
}

/* Resolves every entry point; false with the missing symbol's name in *why. */
bool bind_all(void* lib, Api& api, std::string* why) {
  const char* missing = nullptr;
  auto need = [&](const char* name, auto& fn) {
    if (!missing && !bind(lib, name, fn)) missing = name;
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
  bind(lib, "cublasLtGetStatusString", api.status_string);
  return true;
}

/* One attempt: dlopen + bind. On failure appends "<what>: <reason>" to problems. */
bool try_open(const std::string& what, Api& api, std::vector<std::string>& problems) {
  void* lib = dlopen(what.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char* reason = dlerror();  // dlerror() clears itself: read it once
    // A bare soname that is simply absent is the normal case; only report files that exist but fail.
    if (what.find('/') != std::string::npos) problems.push_back(what + ": " + (reason ? reason : "cannot be loaded"));
    return false;
  }
  std::string why;
  if (!bind_all(lib, api, &why)) {
    problems.push_back(what + ": " + why);
    dlclose(lib);
    return false;
  }
  Dl_info info{};
  api.path = dladdr(reinterpret_cast<void*>(api.matmul), &info) && info.dli_fname ? info.dli_fname : what;
  api.version = api.get_version();
  return true;  // the library stays loaded for the life of the process
}

}  // namespace

bool probe(Api& api, std::string* failure) {
  std::vector<std::string> problems;
  const std::string forced = env("CHUXIN_CUBLASLT");
  if (!forced.empty()) {
    if (!is_file(forced)) problems.push_back(forced + ": no such file");
    else if (try_open(forced, api, problems)) return true;
    *failure = "cuBLASLt could not be loaded from CHUXIN_CUBLASLT (" + problems.front() +
               "); point it at libcublasLt.so.13 or .so.12, or unset it to search the usual places";
    return false;
  }
  for (const char* soname : kSonames)
    if (try_open(soname, api, problems)) return true;
  for (const std::string& file : candidate_files())
    if (is_file(file) && try_open(file, api, problems)) return true;
  std::set<std::string> seen;
  std::string looked = "the system library path (LD_LIBRARY_PATH, ldconfig)";
  for (const std::string& dir : search_dirs())
    if (seen.insert(dir).second) looked += ", " + dir;
  *failure = "cuBLASLt (libcublasLt.so.13 or .so.12) was not found; looked in " + looked;
  for (const std::string& p : problems) *failure += "; " + p;
  *failure += ". Install the CUDA toolkit's cuBLAS or PyTorch's wheel (nvidia-cublas), or set CHUXIN_CUBLASLT to the library file";
  return false;
}

namespace {
std::once_flag once;
Api loaded;
bool loaded_ok = false;
std::string load_failure;
}  // namespace

std::vector<std::string> candidate_files() {
  std::vector<std::string> files;
  for (const std::string& dir : search_dirs())
    for (const char* soname : kSonames) files.push_back(dir + "/" + soname);
  return files;
}

const Api* load(std::string* why) {
  std::call_once(once, [] { loaded_ok = probe(loaded, &load_failure); });
  if (!loaded_ok && why) *why = load_failure;
  return loaded_ok ? &loaded : nullptr;
}

std::string status_name(const Api* api, Status s) {
  if (api && api->status_string) {
    const char* name = api->status_string(s);
    if (name) return name;
  }
  return "cuBLAS status " + std::to_string(s);
}

}  // namespace lt
}  // namespace cx
