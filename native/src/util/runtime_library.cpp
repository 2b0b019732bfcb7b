/* The run-time library search (runtime_library.h). */
#include "runtime_library.h"

#include <dlfcn.h>
#include <glob.h>
#include <link.h>
#include <sys/stat.h>

#include <cstdlib>
#include <set>

namespace cx {
namespace {

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

std::vector<std::string> split_path(const std::string& list) {
  std::vector<std::string> parts;
  for (size_t at = 0; !list.empty() && at <= list.size();) {
    const size_t colon = list.find(':', at);
    const std::string part = list.substr(at, colon == std::string::npos ? std::string::npos : colon - at);
    if (!part.empty()) parts.push_back(part);
    if (colon == std::string::npos) break;
    at = colon + 1;
  }
  return parts;
}

/* One attempt: dlopen + bind. On failure appends "<what>: <reason>" to problems. */
void* try_open(const std::string& what, const std::function<bool(void*, std::string*)>& bind, std::string* path,
               std::vector<std::string>& problems) {
  void* lib = dlopen(what.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char* reason = dlerror();  // dlerror() clears itself: read it once
    // A bare soname that is simply absent is the normal case; only report files that exist but fail.
    if (what.find('/') != std::string::npos) problems.push_back(what + ": " + (reason ? reason : "cannot be loaded"));
    return nullptr;
  }
  std::string why;
  if (!bind(lib, &why)) {
    problems.push_back(what + ": " + why);
    dlclose(lib);
    return nullptr;
  }
  link_map* map = nullptr;
  *path = dlinfo(lib, RTLD_DI_LINKMAP, &map) == 0 && map && map->l_name && *map->l_name ? map->l_name : what;
  return lib;
}

std::string joined(const std::vector<std::string>& names) {
  std::string s;
  for (size_t i = 0; i < names.size(); i++) s += (i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + names[i];
  return s;
}

}  // namespace

std::vector<std::string> cuda_library_dirs(const std::vector<std::string>& wheel_dirs) {
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

  std::vector<std::string> site = split_path(env("PYTHONPATH"));
  for (const char* var : {"VIRTUAL_ENV", "CONDA_PREFIX"}) {
    const std::string root = env(var);
    if (!root.empty()) glob_into(root + "/lib/python3*/site-packages", site);
  }
  const std::string home = env("HOME");
  if (!home.empty()) glob_into(home + "/.local/lib/python3*/site-packages", site);
  // Virtual environments on PATH (bin/python3 beside lib/python3.X/site-packages), e.g. /opt/torch/.venv.
  for (const std::string& dir : split_path(env("PATH")))
    if (is_file(dir + "/python3")) glob_into(dir + "/../lib/python3*/site-packages", site);
  glob_into("/opt/conda/lib/python3*/site-packages", site);
  glob_into("/usr/local/lib/python3*/dist-packages", site);
  glob_into("/usr/local/lib/python3*/site-packages", site);
  site.push_back("/usr/lib/python3/dist-packages");
  for (const std::string& s : site)
    for (const std::string& w : wheel_dirs) dirs.push_back(s + "/" + w);
  return dirs;
}

std::vector<std::string> candidate_files(const RuntimeLibrary& library) {
  std::vector<std::string> files;
  for (const std::string& dir : cuda_library_dirs(library.wheel_dirs))
    for (const std::string& soname : library.sonames) files.push_back(dir + "/" + soname);
  return files;
}

void* open_runtime_library(const RuntimeLibrary& library, const std::function<bool(void*, std::string*)>& bind, std::string* path,
                           std::string* failure) {
  std::vector<std::string> problems;
  const std::string forced = env(library.env_var.c_str());
  if (!forced.empty()) {
    if (!is_file(forced)) problems.push_back(forced + ": no such file");
    else if (void* lib = try_open(forced, bind, path, problems)) return lib;
    *failure = library.name + " could not be loaded from " + library.env_var + " (" + problems.front() + "); point it at " +
               joined(library.sonames) + ", or unset it to search the usual places";
    return nullptr;
  }
  for (const std::string& soname : library.sonames)
    if (void* lib = try_open(soname, bind, path, problems)) return lib;
  for (const std::string& file : candidate_files(library))
    if (is_file(file))
      if (void* lib = try_open(file, bind, path, problems)) return lib;
  std::set<std::string> seen;
  std::string looked = "the system library path (LD_LIBRARY_PATH, ldconfig)";
  for (const std::string& dir : cuda_library_dirs(library.wheel_dirs))
    if (seen.insert(dir).second) looked += ", " + dir;
  *failure = library.name + " (" + joined(library.sonames) + ") was not found; looked in " + looked;
  for (const std::string& p : problems) *failure += "; " + p;
  *failure += ". " + library.install_hint + ", or set " + library.env_var + " to the library file";
  return nullptr;
}

}  // namespace cx
