/* Host-side logic of the CUDA backend, tested without a GPU: the fused attention's tile schedule (every pair a
 * query sees is computed, and tiles outside documents are skipped) and the run-time search for cuBLASLt and NCCL,
 * with its messages.
 * Prints one line per check and "N passed, N failed"; exits non-zero on failure. */
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "../src/cuda/attention_tiles.h"
#include "../src/comm/nccl_api.h"
#include "../src/cuda/cublaslt_api.h"

static int passed = 0, failed = 0;

static void expect(bool ok, const std::string& name, const std::string& detail = "") {
  (ok ? passed : failed)++;
  std::printf("%s %s%s%s\n", ok ? "ok  " : "FAIL", name.c_str(), detail.empty() ? "" : ": ", detail.c_str());
}

/* doc_start for one row of T tokens where each token ends its document with probability p (doc_mask off: p < 0). */
static std::vector<int32_t> random_docs(int64_t T, double p, std::mt19937& rng) {
  std::vector<int32_t> start((size_t)T);
  std::bernoulli_distribution eos(p < 0 ? 0 : p);
  int32_t begin = 0;
  for (int64_t t = 0; t < T; t++) {
    start[(size_t)t] = begin;
    if (eos(rng)) begin = (int32_t)t + 1;
  }
  return start;
}

struct Coverage {
  bool complete = true;  // every visible pair was computed
  int64_t units = 0;     // (warp, tile) products computed
};

/* Replays the forward (and dQ) kernel's loops: blocks of 64 queries, warps of 16, key tiles of 64. */
static Coverage forward_schedule(const std::vector<int32_t>& st, const cx::AttnGeometry& g) {
  std::vector<char> done((size_t)(g.Tq * g.Tk), 0);
  Coverage c;
  for (int64_t q0 = 0; q0 < g.Tq; q0 += cx::kAttnTile) {
    const int64_t q_last = std::min(q0 + cx::kAttnTile, g.Tq) - 1;
    for (int64_t k0 = cx::attn_first_key_tile(g, st.data(), q0); k0 <= cx::attn_last_key(g, q_last); k0 += cx::kAttnTile)
      for (int64_t w = q0; w < q0 + cx::kAttnTile; w += 16) {
        if (!cx::attn_warp_sees_keys(g, st.data(), w, k0)) continue;
        c.units++;
        for (int64_t i = w; i < std::min(w + 16, g.Tq); i++)
          for (int64_t j = k0; j < std::min(k0 + cx::kAttnTile, g.Tk); j++) done[(size_t)(i * g.Tk + j)] = 1;
      }
  }
  for (int64_t i = 0; i < g.Tq; i++)
    for (int64_t j = 0; j < g.Tk; j++)
      if (cx::attn_sees(g, i, j, st.data()) && !done[(size_t)(i * g.Tk + j)]) c.complete = false;
  return c;
}
static Coverage forward_schedule(const std::vector<int32_t>& st, int64_t T) { return forward_schedule(st, cx::attn_whole_rows(T)); }

/* Replays the dK/dV kernel's loops: blocks of 64 keys, warps of 16 keys, query tiles up to attn_query_end. */
static Coverage kv_schedule(const std::vector<int32_t>& st, const cx::AttnGeometry& g) {
  std::vector<char> done((size_t)(g.Tq * g.Tk), 0);
  Coverage c;
  for (int64_t k0 = 0; k0 < g.Tk; k0 += cx::kAttnTile) {
    const int64_t k_last = std::min(k0 + cx::kAttnTile, g.Tk) - 1;
    const int64_t q_end = cx::attn_query_end(g, st.data(), k_last);
    for (int64_t qt = cx::attn_first_query_tile(g, k0); qt < q_end; qt += cx::kAttnTile)
      for (int64_t w = k0; w < k0 + cx::kAttnTile; w += 16) {
        if (!cx::attn_warp_seen_by_queries(g, st.data(), w, qt)) continue;
        c.units++;
        for (int64_t j = w; j < std::min(w + 16, g.Tk); j++)
          for (int64_t i = qt; i < std::min(qt + cx::kAttnTile, g.Tq); i++) done[(size_t)(i * g.Tk + j)] = 1;
      }
  }
  for (int64_t i = 0; i < g.Tq; i++)
    for (int64_t j = 0; j < g.Tk; j++)
      if (cx::attn_sees(g, i, j, st.data()) && !done[(size_t)(i * g.Tk + j)]) c.complete = false;
  return c;
}
static Coverage kv_schedule(const std::vector<int32_t>& st, int64_t T) { return kv_schedule(st, cx::attn_whole_rows(T)); }

static void tile_schedule_tests() {
  std::mt19937 rng(7);
  bool fwd_ok = true, kv_ok = true, end_ok = true;
  int cases = 0;
  for (int64_t T : {1, 15, 16, 17, 63, 64, 65, 130, 257, 333})
    for (double p : {-1.0, 0.005, 0.02, 0.1, 0.5, 1.0})
      for (int rep = 0; rep < 3; rep++, cases++) {
        const auto st = random_docs(T, p, rng);
        fwd_ok = fwd_ok && forward_schedule(st, T).complete;
        kv_ok = kv_ok && kv_schedule(st, T).complete;
        for (int64_t k0 = 0; k0 < T; k0 += cx::kAttnTile) {
          const int64_t k_last = std::min(k0 + cx::kAttnTile, T) - 1;
          int64_t brute = T;
          for (int64_t i = k0; i < T; i++)
            if (st[(size_t)i] > k_last) {
              brute = i;
              break;
            }
          end_ok = end_ok && brute == cx::attn_query_end(cx::attn_whole_rows(T), st.data(), k_last);
        }
      }
  const std::string n = std::to_string(cases) + " random document layouts";
  expect(fwd_ok, "forward/dQ tiles cover every visible pair", n);
  expect(kv_ok, "dK/dV tiles cover every visible pair", n);
  expect(end_ok, "dK/dV query range ends where the keys' documents end", n);

  // Ring attention's blocks: a row of 2·N chunks, queries of chunk gq against keys of chunk gk <= gq.
  bool block_fwd = true, block_kv = true;
  int block_cases = 0;
  for (int64_t Tc : {1, 15, 16, 64, 65, 100, 130})
    for (double p : {-1.0, 0.01, 0.1, 0.5})
      for (int chunks : {2, 4, 8})
        for (int gq = 0; gq < chunks; gq++)
          for (int gk = 0; gk <= gq; gk++, block_cases++) {
            const auto row = random_docs(Tc * chunks, p, rng);
            const std::vector<int32_t> st(row.begin() + gq * Tc, row.begin() + (gq + 1) * Tc);
            const cx::AttnGeometry g{Tc, Tc, gq * Tc, gk * Tc};
            block_fwd = block_fwd && forward_schedule(st, g).complete;
            block_kv = block_kv && kv_schedule(st, g).complete;
          }
  const std::string nb = std::to_string(block_cases) + " query and key chunks of random rows";
  expect(block_fwd, "forward/dQ tiles of ring attention's blocks cover every visible pair", nb);
  expect(block_kv, "dK/dV tiles of ring attention's blocks cover every visible pair", nb);

  // Documents of 300 tokens in a 4096-token row (the throughput check's layout): the work follows Σ len².
  const int64_t T = 4096;
  std::vector<int32_t> docs((size_t)T), causal((size_t)T, 0);
  for (int64_t t = 0; t < T; t++) docs[(size_t)t] = (int32_t)(t / 300 * 300);
  const double ratio_f = (double)forward_schedule(docs, T).units / forward_schedule(causal, T).units;
  const double ratio_kv = (double)kv_schedule(docs, T).units / kv_schedule(causal, T).units;
  char detail[160];
  std::snprintf(detail, sizeof detail, "forward %.3f, dK/dV %.3f of the causal tiles (Σ len²/T² = %.3f)", ratio_f, ratio_kv,
                (13.0 * 300 * 300 + 196.0 * 196) / (4096.0 * 4096));
  expect(ratio_f < 0.15 && ratio_kv < 0.15, "tiles outside documents are skipped", detail);
}

static std::string temp_dir() {
  char tmpl[] = "/tmp/chuxin-lt-XXXXXX";
  const char* d = mkdtemp(tmpl);
  return d ? d : "/tmp";
}

static void touch(const std::string& path) {
  for (size_t at = 1; (at = path.find('/', at)) != std::string::npos; at++) mkdir(path.substr(0, at).c_str(), 0755);
  std::ofstream(path) << "";
}

static bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

/* One library's run-time search (util/runtime_library.h), through its own probe: the override variable naming
 * a missing file or one that does not load, a Python wheel layout under HOME and a toolkit under CUDA_HOME
 * among the candidates, and a not-found message that says where it looked and how to fix it. */
template <typename Probe, typename Candidates>
static void loader_tests(const std::string& name, const std::string& var, const std::string& wheel_dir, const std::string& soname, Probe probe,
                         Candidates candidates) {
  std::string why, path;
  const std::string dir = temp_dir();
  const std::string home = std::getenv("HOME") ? std::getenv("HOME") : "";
  const std::string cuda_home = std::getenv("CUDA_HOME") ? std::getenv("CUDA_HOME") : "";

  setenv(var.c_str(), (dir + "/missing.so").c_str(), 1);
  expect(!probe(&why, &path) && has(why, dir + "/missing.so: no such file") && has(why, var), name + ": " + var + " naming a missing file is reported", why);

  touch(dir + "/empty.so");
  setenv(var.c_str(), (dir + "/empty.so").c_str(), 1);
  why.clear();
  expect(!probe(&why, &path) && has(why, dir + "/empty.so: "), name + ": a file that does not load is reported with the loader's reason", why);
  // A real library that is not this one: the first entry point it lacks is named.
  for (const char* other : {"/usr/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/aarch64-linux-gnu/libm.so.6", "/lib64/libm.so.6"}) {
    if (access(other, R_OK) != 0) continue;
    setenv(var.c_str(), other, 1);
    why.clear();
    expect(!probe(&why, &path) && has(why, std::string(other) + ": lacks "), name + ": a library without its entry points is named with the first one missing", why);
    break;
  }
  unsetenv(var.c_str());

  const std::string wheel = dir + "/home/.local/lib/python3.12/site-packages/" + wheel_dir + "/" + soname;
  touch(wheel);
  setenv("HOME", (dir + "/home").c_str(), 1);
  setenv("CUDA_HOME", (dir + "/cuda").c_str(), 1);
  bool listed = false;
  for (const auto& f : candidates()) listed = listed || f == wheel;
  expect(listed, name + ": the Python wheel layout (site-packages/" + wheel_dir + ") is a candidate");
  why.clear();
  const bool found = probe(&why, &path);
  std::system(("rm -rf '" + dir + "'").c_str());
  setenv("HOME", home.c_str(), 1);
  if (cuda_home.empty()) unsetenv("CUDA_HOME");
  else setenv("CUDA_HOME", cuda_home.c_str(), 1);
  if (found) {
    std::printf("skip the not-found message: this machine has %s (%s)\n", name.c_str(), path.c_str());
    return;
  }
  expect(has(why, "was not found; looked in the system library path") && has(why, dir + "/cuda/lib64") &&
             has(why, dir + "/home/.local/lib/python3.12/site-packages/" + wheel_dir) && has(why, wheel + ": ") && has(why, var),
         name + ": not found: says where it looked, why a file found there failed, and how to fix it", why.substr(0, 160) + "...");
}

static void loader_tests() {
  loader_tests(
      "cuBLASLt", "CHUXIN_CUBLASLT", "nvidia/cublas/lib", "libcublasLt.so.12",
      [](std::string* why, std::string* path) {
        cx::lt::Api api;
        const bool ok = cx::lt::probe(api, why);
        *path = api.path;
        return ok;
      },
      [] { return cx::lt::candidate_files(); });
  loader_tests(
      "NCCL", "CHUXIN_NCCL", "nvidia/nccl/lib", "libnccl.so.2",
      [](std::string* why, std::string* path) {
        cx::nccl::Api api;
        const bool ok = cx::nccl::probe(api, why);
        *path = api.path;
        return ok;
      },
      [] { return cx::nccl::candidate_files(); });
  expect(cx::nccl::version_string(22703) == "2.27.3" && cx::nccl::version_string(2708) == "2.7.8", "NCCL: version numbers read both ways",
         cx::nccl::version_string(22703) + ", " + cx::nccl::version_string(2708));
}

int main() {
  tile_schedule_tests();
  loader_tests();
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
