#pragma once
/* Shared by the GPU check's files: pass/fail counting, the error measure, and buffers mirrored on two backends. */
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "../src/model/backend.h"

using cx::Backend;

inline int passed = 0, failed = 0;

inline void report(const std::string& name, double err, double tol) {
  const bool ok = err <= tol && !std::isnan(err);
  (ok ? passed : failed)++;
  std::printf("%s %-44s max relative error %.3e (tolerance %.0e)\n", ok ? "ok  " : "FAIL", name.c_str(), err, tol);
}

inline double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0, worst_nan = 0;
  for (size_t i = 0; i < a.size(); i++) {
    if (std::isnan(a[i]) != std::isnan(b[i])) worst_nan = NAN;
    if (std::isnan(a[i])) continue;
    num = std::max(num, std::fabs((double)a[i] - b[i]));
    den = std::max(den, std::fabs((double)a[i]));
  }
  return std::isnan(worst_nan) ? NAN : num / std::max(den, 1e-20);
}

/* A NaN whose two 16-bit halves are NaNs too, so poisoning also covers tensors stored as packed bf16. */
inline float poison_value() {
  const uint32_t bits = 0x7fc07fc0u;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

/* A buffer mirrored on both backends. act: an activation (or compute weight) of a bf16 run, which a backend
 * may store packed (backend.h), so it is moved with upload_values / download_values. */
struct Pair {
  Backend *cpu, *gpu;
  size_t n;
  bool act;
  float *c, *g;
  Pair(Backend* a, Backend* b, size_t n_, bool act_ = false) : cpu(a), gpu(b), n(n_), act(act_), c(a->alloc(n_)), g(b->alloc(n_)) {}
  ~Pair() {
    cpu->release(c);
    gpu->release(g);
  }
  void set(const std::vector<float>& v) {
    cpu->upload_values(c, v.data(), n, act);
    gpu->upload_values(g, v.data(), n, act);
  }
  void poison() {
    cpu->fill(c, poison_value(), n);
    gpu->fill(g, poison_value(), n);
  }
  double diff(Backend* other_backend, float* other) {  // this pair's GPU buffer against another GPU backend's
    std::vector<float> a(n), b(n);
    gpu->download_values(a.data(), g, n, act);
    other_backend->download_values(b.data(), other, n, act);
    return rel_err(a, b);
  }
  double diff() {
    std::vector<float> a(n), b(n);
    cpu->download_values(a.data(), c, n, act);
    gpu->download_values(b.data(), g, n, act);
    return rel_err(a, b);
  }
};

struct IntPair {
  Backend *cpu, *gpu;
  int32_t *c, *g;
  IntPair(Backend* a, Backend* b, const std::vector<int32_t>& v) : cpu(a), gpu(b), c(a->alloc_i32(v.size())), g(b->alloc_i32(v.size())) {
    a->upload_i32(c, v.data(), v.size());
    b->upload_i32(g, v.data(), v.size());
  }
  ~IntPair() {
    cpu->release_i32(c);
    gpu->release_i32(g);
  }
};

/* A CUDA error or a failed library call inside a section is one failed check, not the end of the run. */
template <typename F>
void guarded(const char* section, F&& body) {
  try {
    body();
  } catch (const std::exception& e) {
    std::printf("FAIL %s stopped: %s\n", section, e.what());
    failed++;
  }
}

