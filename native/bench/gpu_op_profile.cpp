/* Where a bf16 training micro-step's time goes: every op of the fast CUDA backend timed alone at the model's
 * shapes for one row (random data, the row's documents), times the number of calls in a micro-step. The sum is
 * an estimate to hold against the measured step: the gap is launch and host overhead. Part of gpu_throughput.
 * Each op also gets its floor: its FLOPs over the GEMM rate and its fewest bytes (every input read once, every
 * output written once) over the copy bandwidth, both measured first on this card; the larger is the floor, and
 * measured / floor says how far each op is from it and whether bytes or arithmetic bound it. */
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <stdexcept>
#include <random>
#include <string>
#include <vector>

#include "gpu_op_profile.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Entry {
  std::string op;
  double calls, ms;
  double flops, bytes;  // per call: the work the op must do and the fewest bytes it must move
  bool gemm = false;    // a cuBLASLt product: its TFLOP/s is printed
};

}  // namespace

namespace {

struct Ceilings {
  double flops_per_s, bytes_per_s;
  int gemm_size;
};

/* The card's two rates, measured as METHOD.md asks: a bf16 GEMM through the backend (cuBLASLt) on random data,
 * and a device-to-device copy counting bytes read and written. Small sizes for a small model (the emulation). */
Ceilings measure_ceilings(cx::Backend* gpu, bool full_size) {
  const int S = full_size ? 8192 : 256;
  const size_t copy_floats = full_size ? (size_t)256 << 20 : (size_t)1 << 20;  // 1 GiB or 4 MiB
  std::vector<cx::Tensor> bufs;
  auto fresh = [&](size_t n, bool packed) {
    const cx::Tensor p = gpu->alloc(n, gpu->activation_dtype(packed));
    if (!p) throw std::runtime_error("op profile: out of GPU memory for the ceilings");
    bufs.push_back(p);
    std::mt19937 rng(5);
    std::normal_distribution<float> normal(0.f, 1.f);
    std::vector<float> h(n);
    for (auto& x : h) x = normal(rng);
    gpu->upload_values(p, h.data(), n);
    return p;
  };
  Ceilings c{0, 0, S};
  try {
    const cx::Tensor a = fresh((size_t)S * S, true), b = fresh((size_t)S * S, true), out = fresh((size_t)S * S, true);
    const cx::Tensor src = fresh(copy_floats, false), dst = fresh(copy_floats, false);
    auto best_ms = [&](const std::function<void()>& fn) {
      fn();
      if (cudaDeviceSynchronize() != cudaSuccess) throw std::runtime_error("op profile: a ceiling run failed");
      double best = 1e30;
      for (int r = 0; r < 5; r++) {
        const auto t0 = Clock::now();
        fn();
        if (cudaDeviceSynchronize() != cudaSuccess) throw std::runtime_error("op profile: a ceiling run failed");
        best = std::min(best, std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      }
      return best;
    };
    c.flops_per_s = 2.0 * S * S * S / (best_ms([&] { gpu->matmul_forward(out, a, b, S, S, S, true); }) * 1e-3);
    c.bytes_per_s = 2.0 * copy_floats * sizeof(float) /
                    (best_ms([&] { cudaMemcpy(dst.data, src.data, copy_floats * sizeof(float), cudaMemcpyDeviceToDevice); }) * 1e-3);
  } catch (...) {
    for (const cx::Tensor& p : bufs) gpu->release(p);
    throw;
  }
  for (const cx::Tensor& p : bufs) gpu->release(p);
  return c;
}

}  // namespace

static void profile(cx::Backend* gpu, std::vector<cx::Tensor>& owned, const ProfileDims& d, const std::vector<int32_t>& row, int eos);

void op_profile(const ProfileDims& d, const std::vector<int32_t>& row, int eos) {
  std::string why;
  std::unique_ptr<cx::Backend> gpu(cx::create_cuda_backend(&why));
  if (!gpu) {
    std::printf("op profile: no CUDA backend: %s\n", why.c_str());
    return;
  }
  std::vector<cx::Tensor> owned;
  try {
    profile(gpu.get(), owned, d, row, eos);
  } catch (const std::exception& e) {
    std::printf("op profile stopped: %s\n", e.what());
  }
  for (const cx::Tensor& t : owned) gpu->release(t);
}

static void profile(cx::Backend* gpu, std::vector<cx::Tensor>& owned, const ProfileDims& d, const std::vector<int32_t>& row, int eos) {
  const int64_t N = d.T, C = d.C, F = d.F, H = d.H, D = C / H, V = d.V, L = d.L;
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.f, 1.f);
  auto tensor = [&](int64_t n, float scale, bool packed) {  // packed: stored as a bf16 run stores activations
    const cx::Tensor p = gpu->alloc((size_t)n, gpu->activation_dtype(packed));
    if (!p) throw std::runtime_error("op profile: out of GPU memory");
    owned.push_back(p);
    std::vector<float> h((size_t)n);
    for (auto& x : h) x = scale * normal(rng);
    gpu->upload_values(p, h.data(), (size_t)n);
    return p;
  };
  auto ints = [&](const std::vector<int32_t>& v) {
    const cx::Tensor p = gpu->alloc(v.size(), cx::DType::I32);
    if (!p) throw std::runtime_error("op profile: out of GPU memory");
    owned.push_back(p);
    gpu->upload(p, v.data(), v.size());
    return p;
  };
  // The row's documents, positions and targets, as prepare_batch makes them.
  std::vector<int32_t> start((size_t)N), pos((size_t)N), target((size_t)N);
  for (int64_t t = 0, begin = 0; t < N; t++) {
    start[(size_t)t] = (int32_t)begin;
    pos[(size_t)t] = (int32_t)(t - begin);
    target[(size_t)t] = t + 1 < N && row[(size_t)t] != eos ? row[(size_t)t + 1] % (int32_t)V : -1;
    if (row[(size_t)t] == eos) begin = t + 1;
  }
  std::vector<int32_t> tok((size_t)N);
  for (int64_t t = 0; t < N; t++) tok[(size_t)t] = row[(size_t)t] % (int32_t)V;
  const cx::Tensor d_start = ints(start), d_pos = ints(pos), d_tgt = ints(target), d_tok = ints(tok);
  std::vector<double> inv_freq((size_t)(D / 2));
  for (int64_t i = 0; i < D / 2; i++) inv_freq[(size_t)i] = std::pow(10000.0, -2.0 * (double)i / (double)D);
  const cx::Tensor d_inv_freq = gpu->alloc(inv_freq.size(), cx::DType::F64);
  if (!d_inv_freq) throw std::runtime_error("op profile: out of GPU memory");
  owned.push_back(d_inv_freq);
  gpu->upload(d_inv_freq, inv_freq.data(), inv_freq.size());

  const cx::Tensor x = tensor(N * C, 1.f, true), y = tensor(N * C, 1.f, true), q = tensor(N * C, 1.f, true), k = tensor(N * C, 1.f, true),
        v = tensor(N * C, 1.f, true), o = tensor(N * C, 1.f, true), g = tensor(N * F, 1.f, true), u = tensor(N * F, 1.f, true),
        a = tensor(N * F, 1.f, true), dg = tensor(N * F, 1.f, true), du = tensor(N * F, 1.f, true), dq = tensor(N * C, 1.f, true),
        dk = tensor(N * C, 1.f, true), dv = tensor(N * C, 1.f, true);
  const cx::Tensor w_cc = tensor(C * C, 0.02f, true), w_cf = tensor(F * C, 0.02f, true), w_fc = tensor(C * F, 0.02f, true),
                   w_norm = tensor(C, 1.f, true);
  const cx::Tensor w_head = tensor(V * C, 0.02f, true), w_emb = tensor(V * C, 0.02f, true);
  const cx::Tensor dw_cc = tensor(C * C, 0.f, false), dw_cf = tensor(F * C, 0.f, false), dw_head = tensor(V * C, 0.f, false),
                   dw_norm = tensor(C, 0.f, false);
  const cx::Tensor rstd = tensor(N, 1.f, false), lse = tensor(H * N, 1.f, false), losses = tensor(N, 0.f, false);
  const int64_t chunk = std::min<int64_t>(64 << 20, L * (4 * C * C + 3 * C * F) + 2 * V * C);  // AdamW over a slice, scaled up
  const cx::Tensor p = tensor(chunk, 0.02f, false), pc = tensor(chunk, 0.f, true), pg = tensor(chunk, 1e-3f, false), pm = tensor(chunk, 0.f, false),
                   pv = tensor(chunk, 0.f, false);

  auto time_op = [&](const std::function<void()>& fn) {
    fn();  // warm-up: plans, scratch
    if (cudaDeviceSynchronize() != cudaSuccess) throw std::runtime_error("op profile: a kernel failed");
    const int reps = 5;
    const auto t0 = Clock::now();
    for (int r = 0; r < reps; r++) fn();
    if (cudaDeviceSynchronize() != cudaSuccess) throw std::runtime_error("op profile: a kernel failed");
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / reps;
  };
  const bool bf = true;
  const double params = L * (4.0 * C * C + 3.0 * C * F) + 2.0 * V * C;
  const Ceilings top = measure_ceilings(gpu, C >= 1024);
  // The query-key pairs the row's document mask keeps.
  double pairs = 0;
  for (int64_t t = 0; t < N; t++) pairs += (double)(t - start[(size_t)t] + 1);
  const double a2 = 2, s4 = 4;  // bytes of a bf16 activation, of an fp32 statistic or gradient
  const double NC = (double)N * C, NF = (double)N * F;
  // matmul_backward(Cin -> Cout): dinp = dout · W, dW += dout^T · inp (fp32 dW read and written).
  auto mm_bwd_bytes = [&](double cin, double cout) { return a2 * (2 * N * cout + 2 * N * cin + cout * cin) + 2 * s4 * cout * cin; };
  cx::AdamWParams hp{1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.f, 0.1f, 0.05f};
  std::vector<Entry> table = {
      {"matmul_forward CxC (q,k,v,o)", 4.0 * L, time_op([&] { gpu->matmul_forward(y, x, w_cc, N, C, C, bf); }), 2 * NC * C, a2 * (2 * NC + C * C), true},
      {"matmul_forward CxF (gate,up)", 2.0 * L, time_op([&] { gpu->matmul_forward(g, x, w_cf, N, C, F, bf); }), 2 * NC * F, a2 * (NC + NF + C * F), true},
      {"matmul_forward FxC (down)", 1.0 * L, time_op([&] { gpu->matmul_forward(y, a, w_fc, N, F, C, bf); }), 2 * NF * C, a2 * (NF + NC + F * C), true},
      {"matmul_backward CxC", 4.0 * L, time_op([&] { gpu->matmul_backward(x, dw_cc, y, q, w_cc, N, C, C, false, bf); }), 4 * NC * C, mm_bwd_bytes(C, C), true},
      {"matmul_backward CxF", 2.0 * L, time_op([&] { gpu->matmul_backward(x, dw_cf, g, q, w_cf, N, C, F, false, bf); }), 4 * NC * F, mm_bwd_bytes(C, F), true},
      {"matmul_backward FxC", 1.0 * L, time_op([&] { gpu->matmul_backward(a, dw_cf, y, g, w_fc, N, F, C, false, bf); }), 4 * NF * C, mm_bwd_bytes(F, C), true},
      // Attention: 4·C FLOPs per kept pair forward (QK^T, PV), 10·C backward (S recomputed, dP, dV, dQ, dK).
      {"attention_forward", 1.0 * L, time_op([&] { gpu->attention_forward(o, lse, q, k, v, d_start, 1, N, H, D, bf); }), 4 * C * pairs,
       a2 * 4 * NC + s4 * H * N},
      {"attention_backward", 1.0 * L, time_op([&] { gpu->attention_backward(dq, dk, dv, y, o, lse, q, k, v, d_start, 1, N, H, D, bf); }),
       10 * C * pairs, a2 * 8 * NC + s4 * H * N},
      {"rmsnorm_forward (first block)", 1.0, time_op([&] { gpu->rmsnorm_forward(y, rstd, x, w_norm, N, C, 1e-5f, bf); }), 0, a2 * 2 * NC + s4 * N},
      {"residual_rmsnorm_forward", 2.0 * L, time_op([&] { gpu->residual_rmsnorm_forward(q, y, rstd, x, o, w_norm, N, C, 1e-5f, bf); }), 0,
       a2 * 4 * NC + s4 * N},
      {"rmsnorm_backward", 2.0 * L + 1, time_op([&] { gpu->rmsnorm_backward(y, dw_norm, o, x, w_norm, rstd, N, C, bf); }), 0, a2 * 4 * NC + s4 * N},
      {"rope forward+backward", 4.0 * L, time_op([&] { gpu->rope_forward(q, d_pos, N, H, D, d_inv_freq, 1.f, bf); }), 0, a2 * 2 * NC},
      {"swiglu_forward", 1.0 * L, time_op([&] { gpu->swiglu_forward(a, g, u, N * F, bf); }), 0, a2 * 3 * NF},
      {"swiglu_backward", 1.0 * L, time_op([&] { gpu->swiglu_backward(dg, du, a, g, u, N * F, bf); }), 0, a2 * 5 * NF},
      {"embedding forward+backward", 1.0, time_op([&] {
         gpu->embedding_forward(x, d_tok, w_emb, N, C, bf);
         gpu->embedding_backward(dw_head, y, d_tok, N, C, bf);
       }), 0, a2 * 3 * NC + 2 * s4 * NC},
      // The head: hidden and W in, losses, dhidden and dW (fp32, read and written) out; logits need not touch memory.
      {"lm_head_cross_entropy (fwd+bwd)", 1.0, time_op([&] { gpu->lm_head_cross_entropy(losses, y, dw_head, x, w_head, d_tgt, N, C, V, 1.f / N, bf); }),
       6 * NC * V, a2 * (2 * NC + (double)V * C) + 2 * s4 * (double)V * C, true},
  };
  const double optimizer_ms =
      time_op([&] { gpu->adamw(p, pc, pg, pm, pv, (size_t)chunk, hp, bf); }) * params / chunk + time_op([&] { gpu->sum_squares(pg, (size_t)chunk); }) * params / chunk;
  const double optimizer_floor_ms = params * (30 + 4) / top.bytes_per_s * 1e3;  // AdamW 28 B fp32 + 2 B bf16 copy, norm 4 B
  double total = 0, total_floor = 0;
  std::printf("op profile, one row of %lld tokens, bf16 (each op alone, mean of 5 after a warm-up); ceilings measured here: GEMM %.0f TFLOP/s "
              "(bf16 %dx%dx%d), copy %.0f GB/s (read + written)\n",
              (long long)N, top.flops_per_s / 1e12, top.gemm_size, top.gemm_size, top.gemm_size, top.bytes_per_s / 1e9);
  for (const Entry& e : table) {
    const double floor_ms = std::max(e.flops / top.flops_per_s, e.bytes / top.bytes_per_s) * 1e3;
    const bool compute_bound = e.flops / top.flops_per_s > e.bytes / top.bytes_per_s;
    std::printf("  %-38s %5.0f calls x %8.3f ms = %8.2f ms  floor %7.3f ms (%s) x%5.1f", e.op.c_str(), e.calls, e.ms, e.calls * e.ms, floor_ms,
                compute_bound ? "FLOPs" : "bytes", e.ms / floor_ms);
    if (e.gemm || e.flops > 0) std::printf("  %.0f TFLOP/s", e.flops / (e.ms * 1e-3) / 1e12);
    std::printf("\n");
    total += e.calls * e.ms;
    total_floor += e.calls * floor_ms;
  }
  std::printf("  %-38s sum %.1f ms per micro-batch row (floor %.1f ms, x%.2f); grad norm + AdamW over %.3g parameters %.1f ms per optimizer "
              "step (floor %.1f ms)\n",
              "estimate:", total, total_floor, total / total_floor, params, optimizer_ms, optimizer_floor_ms);
  // The ops of backend.h's list this profile does not time (each is small in a step, or not in a training step).
  using cx::Op;
  const std::vector<Op> timed = {Op::matmul_forward,    Op::matmul_backward,  Op::attention_forward,        Op::attention_backward,
                                 Op::rmsnorm_forward,   Op::rmsnorm_backward, Op::residual_rmsnorm_forward, Op::rope_forward, Op::rope_backward,
                                 Op::swiglu_forward,    Op::swiglu_backward,  Op::embedding_forward,        Op::embedding_backward,
                                 Op::lm_head_cross_entropy, Op::adamw,        Op::sum_squares};
  std::string untimed;
  for (int i = 0; i < cx::kOpCount; i++)
    if (std::find(timed.begin(), timed.end(), (Op)i) == timed.end()) untimed += std::string(untimed.empty() ? "" : ", ") + cx::kOpNames[i];
  std::printf("  not timed alone: %s\n", untimed.c_str());
}
