/* The fused attention alone on the GPU (issue 16): forward and backward TFLOP/s at head size 64, 32 heads, for
 * rows of 16,384 tokens cut into documents of 128, 512, 2,048, 4,096 and 16,384 tokens (causal within each), bf16.
 * FLOPs count the pairs the document mask keeps: 4·C per pair forward (QKᵀ, PV), 10·C backward (S recomputed, dP,
 * dV, dQ, dK), C = heads · 64, as the op profile and FlashAttention's papers count them. Each time is the best of
 * 5 after a warm-up. bench/attention_torch.py runs PyTorch's kernels on the same shapes in the same call.
 *   chuxin_attention_bench [--tokens 16384] [--lengths 128,512,2048,4096,16384] [--heads 32] [--reference]
 * (--reference: the obviously-right CUDA kernels instead of the fused ones, for the yardstick.) */
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "../src/model/backend.h"
#include "bench_args.h"

using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  int64_t T = 16384, H = 32;
  const int64_t D = 64;
  std::vector<int> lengths{128, 512, 2048, 4096, 16384};
  bool reference = false;
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    if (a == "--reference") reference = true;
    else if (i + 1 < argc && a == "--tokens") T = std::atoll(argv[++i]);
    else if (i + 1 < argc && a == "--heads") H = std::atoll(argv[++i]);
    else if (i + 1 < argc && a == "--lengths") lengths = parse_list(argv[++i]);
  }
#ifdef CX_GPU_CHECK_EMULATED
  setenv("CHUXIN_CUBLASLT", CX_EMULATED_CUBLASLT, 1);
  std::printf("under the CPU emulation of CUDA: timings mean nothing here\n");
#endif
  std::string why;
  std::unique_ptr<cx::Backend> gpu(cx::create_cuda_backend(&why, reference));
  if (!gpu) {
    std::printf("FAIL no CUDA backend: %s\n", why.c_str());
    return 1;
  }
  const int64_t C = H * D, NC = T * C;
  std::vector<cx::Tensor> owned;
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.f, 1.f);
  auto tensor = [&](int64_t n, bool packed) {
    const cx::Tensor p = gpu->alloc((size_t)n, gpu->activation_dtype(packed));
    if (!p) throw std::runtime_error("out of GPU memory");
    owned.push_back(p);
    std::vector<float> h((size_t)n);
    for (auto& x : h) x = normal(rng);
    gpu->upload_values(p, h.data(), (size_t)n);
    return p;
  };
  int failures = 0;
  try {
    const cx::Tensor q = tensor(NC, true), k = tensor(NC, true), v = tensor(NC, true), o = tensor(NC, true), dout = tensor(NC, true),
                     dq = tensor(NC, true), dk = tensor(NC, true), dv = tensor(NC, true), lse = tensor(H * T, false);
    const cx::Tensor start = gpu->alloc((size_t)T, cx::DType::I32);
    if (!start) throw std::runtime_error("out of GPU memory");
    owned.push_back(start);
    auto best_ms = [&](const std::function<void()>& fn) {
      fn();
      if (cudaDeviceSynchronize() != cudaSuccess) throw std::runtime_error("a kernel failed");
      double best = 1e30;
      for (int r = 0; r < 5; r++) {
        const auto t0 = Clock::now();
        fn();
        if (cudaDeviceSynchronize() != cudaSuccess) throw std::runtime_error("a kernel failed");
        best = std::min(best, std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      }
      return best;
    };
    std::printf("%s attention, %lld tokens, %lld heads of %lld, bf16; TFLOP/s over the pairs each document keeps\n", gpu->name(), (long long)T,
                (long long)H, (long long)D);
    std::printf("| document length | documents | forward ms | forward TFLOP/s | backward ms | backward TFLOP/s |\n|---:|---:|---:|---:|---:|---:|\n");
    for (int len : lengths) {
      if (len < 1 || len > T) {
        std::printf("skip length %d: not within 1..%lld\n", len, (long long)T);
        continue;
      }
      std::vector<int32_t> doc_start((size_t)T);
      double pairs = 0;
      for (int64_t t = 0; t < T; t++) {
        doc_start[(size_t)t] = (int32_t)(t / len * len);
        pairs += (double)(t - doc_start[(size_t)t] + 1);
      }
      gpu->upload(start, doc_start.data(), doc_start.size());
      const double fwd = best_ms([&] { gpu->attention_forward(o, lse, q, k, v, start, 1, T, H, D, true); });
      const double bwd = best_ms([&] { gpu->attention_backward(dq, dk, dv, dout, o, lse, q, k, v, start, 1, T, H, D, true); });
      std::printf("| %d | %lld | %.3f | %.1f | %.3f | %.1f |\n", len, (long long)((T + len - 1) / len), fwd, 4.0 * C * pairs / (fwd * 1e-3) / 1e12, bwd,
                  10.0 * C * pairs / (bwd * 1e-3) / 1e12);
    }
  } catch (const std::exception& e) {
    std::printf("FAIL %s\n", e.what());
    failures++;
  }
  for (const cx::Tensor& t : owned) gpu->release(t);
  return failures ? 1 : 0;
}
