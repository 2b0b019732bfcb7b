#pragma once
/* Shared by the GPU check's files: pass/fail counting, the error measure, and buffers mirrored on two backends. */
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../src/model/backend.h"
#include "check_registry.h"

using checks::failed;
using checks::passed;
using checks::report;
using cx::Backend;
using cx::DType;
using cx::Op;
using cx::Tensor;

/* What the registered cases run on, set by main before run_cases: the CPU backend (the yardstick), the fast
 * CUDA backend, the reference CUDA backend, and one seeded random stream (cases run in registration order). */
inline Backend *cpu = nullptr, *gpu = nullptr, *ref = nullptr;
inline std::mt19937 rng(42);

inline std::vector<float> randn(size_t n, float scale = 1.f) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}
/* Values as a bf16 run holds them (bf16 true), or as they are. */
inline std::vector<float> rounded(std::vector<float> v, bool bf16) {
  if (bf16) cpu->copy_round(cx::host_tensor(v.data(), (int64_t)v.size()), cx::host_tensor(v.data(), (int64_t)v.size()), v.size(), true);
  return v;
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
 * may store packed (backend.h): each side allocates it in its activation_dtype, and values move converted. */
struct Pair {
  Backend *cpu, *gpu;
  size_t n;
  Tensor c, g;
  Pair(Backend* a, Backend* b, size_t n_, bool act = false)
      : cpu(a), gpu(b), n(n_), c(a->alloc(n_, a->activation_dtype(act))), g(b->alloc(n_, b->activation_dtype(act))) {}
  ~Pair() {
    cpu->release(c);
    gpu->release(g);
  }
  Pair(const Pair&) = delete;
  void set(const std::vector<float>& v) {
    cpu->upload_values(c, v.data(), n);
    gpu->upload_values(g, v.data(), n);
  }
  void poison() {
    cpu->fill(c, poison_value(), n);
    gpu->fill(g, poison_value(), n);
  }
  double diff(Backend* other_backend, Tensor other) {  // this pair's GPU buffer against another GPU backend's
    std::vector<float> a(n), b(n);
    gpu->download_values(a.data(), g, n);
    other_backend->download_values(b.data(), other, n);
    return rel_err(a, b);
  }
  double diff() {
    std::vector<float> a(n), b(n);
    cpu->download_values(a.data(), c, n);
    gpu->download_values(b.data(), g, n);
    return rel_err(a, b);
  }
};

/* The same raw elements in both backends (positions, document starts, RoPE's fp64 frequencies). */
template <typename E>
struct RawPair {
  Backend *cpu, *gpu;
  Tensor c, g;
  RawPair(Backend* a, Backend* b, const std::vector<E>& v)
      : cpu(a), gpu(b), c(a->alloc(v.size(), cx::dtype_of<E>::value)), g(b->alloc(v.size(), cx::dtype_of<E>::value)) {
    a->upload(c, v.data(), v.size());
    b->upload(g, v.data(), v.size());
  }
  ~RawPair() {
    cpu->release(c);
    gpu->release(g);
  }
  RawPair(const RawPair&) = delete;
};
using IntPair = RawPair<int32_t>;

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

