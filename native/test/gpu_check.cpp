/* GPU check, standalone (no Node): every op of the CUDA backend (cuBLASLt matmuls, fused attention) against
 * the CPU backend on fresh random inputs with poisoned outputs; the fused attention against the reference CUDA
 * kernels at the ChuXin head size; the whole model's loss and gradients on a small config with several
 * documents per row, for both CUDA backends; determinism; and, given a shard (.npy), the tiny model's loss
 * curve on the GPU against the CPU's. Throughput is gpu_throughput.cpp.
 *   chuxin_gpu_check [shard.npy]
 * Prints one line per check and "N passed, N failed"; exits non-zero on failure. Run by gpu-check.sh. */
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "../include/chuxin.h"
#include "../src/model/backend.h"
#include "npy.h"

using cx::Backend;
static int passed = 0, failed = 0;

static void report(const std::string& name, double err, double tol) {
  const bool ok = err <= tol && !std::isnan(err);
  (ok ? passed : failed)++;
  std::printf("%s %-44s max relative error %.3e (tolerance %.0e)\n", ok ? "ok  " : "FAIL", name.c_str(), err, tol);
}

static double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
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
static float poison_value() {
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

/* The fused attention at the ChuXin head size (64), random documents, rows not a multiple of the tile:
 * CPU vs the fast CUDA backend, and the fast against the reference CUDA kernels. */
static void attention_at_head_size_64(Backend* cpu, Backend* gpu, Backend* ref, std::mt19937& rng) {
  const int64_t B = 2, T = 700, H = 4, D = 64, N = B * T, C = H * D;
  std::vector<int32_t> start(N);
  std::bernoulli_distribution eos(0.01);
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0, begin = 0; t < T; t++) {
      start[b * T + t] = (int32_t)begin;
      if (eos(rng)) begin = t + 1;
    }
  IntPair s(cpu, gpu, start);
  int32_t* s_ref = ref->alloc_i32(N);
  ref->upload_i32(s_ref, start.data(), N);
  std::normal_distribution<float> d(0.f, 1.f);
  auto bf16_randn = [&](size_t n) {
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    cpu->copy_round(v.data(), v.data(), n, true);  // CPU buffers are host memory
    return v;
  };
  Pair q(cpu, gpu, N * C, true), k(cpu, gpu, N * C, true), v(cpu, gpu, N * C, true), o(cpu, gpu, N * C, true), lse(cpu, gpu, B * H * T),
      go(cpu, gpu, N * C, true), dq(cpu, gpu, N * C, true), dk(cpu, gpu, N * C, true), dv(cpu, gpu, N * C, true);
  const auto hq = bf16_randn(N * C), hk = bf16_randn(N * C), hv = bf16_randn(N * C), hgo = bf16_randn(N * C);
  q.set(hq);
  k.set(hk);
  v.set(hv);
  go.set(hgo);
  for (Pair* p : {&o, &lse, &dq, &dk, &dv}) p->poison();
  cpu->attention_forward(o.c, lse.c, q.c, k.c, v.c, s.c, B, T, H, D, true);
  gpu->attention_forward(o.g, lse.g, q.g, k.g, v.g, s.g, B, T, H, D, true);
  report("fused attention D=64 forward out (bf16)", o.diff(), 1e-2);
  report("fused attention D=64 forward lse (bf16)", lse.diff(), 1e-5);
  cpu->attention_backward(dq.c, dk.c, dv.c, go.c, o.c, lse.c, q.c, k.c, v.c, s.c, B, T, H, D, true);
  gpu->attention_backward(dq.g, dk.g, dv.g, go.g, o.g, lse.g, q.g, k.g, v.g, s.g, B, T, H, D, true);
  report("fused attention D=64 backward dq (bf16)", dq.diff(), 1e-2);
  report("fused attention D=64 backward dk (bf16)", dk.diff(), 1e-2);
  report("fused attention D=64 backward dv (bf16)", dv.diff(), 1e-2);

  // The same inputs through the reference CUDA kernels.
  std::vector<float*> r;
  for (int i = 0; i < 9; i++) r.push_back(ref->alloc(i == 4 ? B * H * T : N * C));
  ref->upload(r[0], hq.data(), N * C);
  ref->upload(r[1], hk.data(), N * C);
  ref->upload(r[2], hv.data(), N * C);
  ref->upload(r[5], hgo.data(), N * C);
  ref->attention_forward(r[3], r[4], r[0], r[1], r[2], s_ref, B, T, H, D, true);
  report("fused vs reference CUDA attention out", o.diff(ref, r[3]), 1e-2);
  ref->attention_backward(r[6], r[7], r[8], r[5], r[3], r[4], r[0], r[1], r[2], s_ref, B, T, H, D, true);
  report("fused vs reference CUDA attention dq", dq.diff(ref, r[6]), 1e-2);
  report("fused vs reference CUDA attention dk", dk.diff(ref, r[7]), 1e-2);
  report("fused vs reference CUDA attention dv", dv.diff(ref, r[8]), 1e-2);
  for (float* p : r) ref->release(p);
  ref->release_i32(s_ref);
}

/* A tiny model trained on consecutive rows of `tokens`, CPU and GPU from the same initial weights and batches:
 * the loss curves must agree within bf16 noise, and the GPU's must fall. */
static void loss_curve(const std::vector<int32_t>& tokens, const cx_config& cfg, int eos, int B, int T, int steps, const char* what) {
  if (tokens.size() < (size_t)B * T * steps) {
    std::printf("FAIL loss curve: %s has too few tokens\n", what);
    failed++;
    return;
  }
  cx_run_options o{CX_BF16, 1, 1, 1, eos};
  std::vector<double> curves[2];
  const char* backends[2] = {"cpu", "cuda"};
  for (int which = 0; which < 2; which++) {
    cx_model* m = nullptr;
    cx_status st{};
    if (cx_model_create(&cfg, backends[which], 16, &m, &st) || cx_model_init(m, 1, &st)) {
      std::printf("FAIL loss curve on %s: %s\n", backends[which], st.message);
      failed++;
      return;
    }
    for (int step = 1; step <= steps; step++) {
      double loss = 0, norm = 0;
      int64_t count = 0;
      const int32_t* batch = tokens.data() + (size_t)(step - 1) * B * T;
      cx_zero_grad(m, &st);
      cx_forward_backward(m, batch, B, T, &o, 1.f / (B * T), &loss, &count, &st);
      cx_grad_norm(m, &norm, &st);
      const float lr = 3e-3f * std::min(1.f, step / 10.f);
      cx_adamw hp{lr, 0.9f, 0.95f, 1e-8f, 0.1f, norm > 1.0 ? (float)(1.0 / norm) : 1.f, step};
      if (cx_adamw_step(m, &hp, &st)) {
        std::printf("FAIL loss curve on %s: %s\n", backends[which], st.message);
        failed++;
        cx_model_free(m);
        return;
      }
      curves[which].push_back(loss / std::max<int64_t>(count, 1));
    }
    cx_model_free(m);
  }
  double worst = 0, tail_cpu = 0, tail_gpu = 0;
  for (int s = 0; s < steps; s++) {
    worst = std::max(worst, std::fabs(curves[1][s] - curves[0][s]) / curves[0][s]);
    if (s >= steps - 10) {
      tail_cpu += curves[0][s] / 10;
      tail_gpu += curves[1][s] / 10;
    }
  }
  std::printf("     loss curve, tiny model, bf16, %s, %d steps of %dx%d tokens: CPU %.4f -> %.4f, GPU %.4f -> %.4f (largest step gap %.2e)\n",
              what, steps, B, T, curves[0][0], tail_cpu, curves[1][0], tail_gpu, worst);
  report("tiny model loss curve, last 10 steps, GPU vs CPU", std::fabs(tail_gpu - tail_cpu) / tail_cpu, 2e-2);
  report("tiny model learns on the GPU (last 10 steps vs first)", tail_gpu < curves[1][0] - 0.5 ? 0 : 1, 0);
}

/* A CUDA error or a failed library call inside a section is one failed check, not the end of the run. */
template <typename F>
static void guarded(const char* section, F&& body) {
  try {
    body();
  } catch (const std::exception& e) {
    std::printf("FAIL %s stopped: %s\n", section, e.what());
    failed++;
  }
}

int main(int argc, char** argv) {
#ifdef CX_GPU_CHECK_EMULATED
  // Built against the CPU emulation of the CUDA kernels (test/emu), with its host-memory cuBLASLt; no loss curve
  // there (too slow).
  setenv("CHUXIN_CUBLASLT", CX_EMULATED_CUBLASLT, 1);
  std::printf("CUDA kernels under the CPU emulation, cuBLASLt emulated too (not a GPU)\n");
  argc = 1;  // the shard's loss curve is too slow here; a small one runs instead
#endif
  std::string why;
  std::unique_ptr<Backend> gpu(cx::create_cuda_backend(&why));
  if (!gpu) {
    std::printf("FAIL CUDA backend: %s\n0 passed, 1 failed\n", why.c_str());
    return 1;
  }
  std::unique_ptr<Backend> ref(cx::create_cuda_backend(&why, true));
  if (!ref) {
    std::printf("FAIL reference CUDA backend: %s\n0 passed, 1 failed\n", why.c_str());
    return 1;
  }
  std::unique_ptr<Backend> cpu(cx::create_cpu_backend(16));
  std::mt19937 rng(42);
  auto randn = [&](size_t n, float s = 1.f) {
    std::normal_distribution<float> d(0.f, s);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
  };
  guarded("per-op checks", [&] {
  for (bool bf16 : {false, true}) {
    const double tol = bf16 ? 1e-2 : 1e-5;
    const std::string tag = bf16 ? " (bf16)" : " (fp32)";
    const int64_t B = 2, T = 96, H = 4, D = 32, C = H * D, F = 200, V = 1000, N = B * T;
    const bool A = bf16;  // activations and compute weights of a bf16 run
    Pair x(cpu.get(), gpu.get(), N * C, A), w(cpu.get(), gpu.get(), F * C, A), y(cpu.get(), gpu.get(), N * F, A), dx(cpu.get(), gpu.get(), N * C, A),
        dw(cpu.get(), gpu.get(), F * C);
    auto round = [&](std::vector<float> v) {
      if (bf16) cpu->copy_round(v.data(), v.data(), v.size(), true);  // CPU buffers are host memory
      return v;
    };
    x.set(round(randn(N * C)));
    w.set(round(randn(F * C, 0.1f)));
    y.poison();
    cpu->matmul_forward(y.c, x.c, w.c, N, C, F, bf16);
    gpu->matmul_forward(y.g, x.g, w.g, N, C, F, bf16);
    report("matmul_forward" + tag, y.diff(), tol);
    y.set(round(randn(N * F)));
    dx.poison();
    dw.set(std::vector<float>(F * C, 0.f));
    cpu->matmul_backward(dx.c, dw.c, y.c, x.c, w.c, N, C, F, false, bf16);
    gpu->matmul_backward(dx.g, dw.g, y.g, x.g, w.g, N, C, F, false, bf16);
    report("matmul_backward dinp" + tag, dx.diff(), tol);
    report("matmul_backward dweight" + tag, dw.diff(), bf16 ? 1e-4 : tol);
    {  // operands and output one element past an allocation's start, so not 256-byte aligned (as the LM head's
       // row chunks can be): every access goes through the offset pointer, as the storage contract asks
      Pair xo(cpu.get(), gpu.get(), N * C + 1, A), wo(cpu.get(), gpu.get(), F * C + 1, A), yo(cpu.get(), gpu.get(), N * F + 1, A);
      const auto hx = round(randn(N * C)), hw = round(randn(F * C, 0.1f));
      for (Backend* be : {cpu.get(), gpu.get()}) {
        const bool on_cpu = be == cpu.get();
        be->upload_values((on_cpu ? xo.c : xo.g) + 1, hx.data(), N * C, A);
        be->upload_values((on_cpu ? wo.c : wo.g) + 1, hw.data(), F * C, A);
        be->fill(on_cpu ? yo.c : yo.g, poison_value(), N * F + 1);
        be->matmul_forward((on_cpu ? yo.c : yo.g) + 1, (on_cpu ? xo.c : xo.g) + 1, (on_cpu ? wo.c : wo.g) + 1, N, C, F, bf16);
      }
      std::vector<float> a(N * F), b(N * F);
      cpu->download_values(a.data(), yo.c + 1, N * F, A);
      gpu->download_values(b.data(), yo.g + 1, N * F, A);
      report("matmul_forward, unaligned pointers" + tag, rel_err(a, b), tol);
    }

    Pair nw(cpu.get(), gpu.get(), C, A), rs(cpu.get(), gpu.get(), N), out(cpu.get(), gpu.get(), N * C, A), dnw(cpu.get(), gpu.get(), C);
    nw.set(round(randn(C)));
    out.poison();
    cpu->rmsnorm_forward(out.c, rs.c, x.c, nw.c, N, C, 1e-5f, bf16);
    gpu->rmsnorm_forward(out.g, rs.g, x.g, nw.g, N, C, 1e-5f, bf16);
    report("rmsnorm_forward" + tag, out.diff(), tol);
    dx.set(std::vector<float>(N * C, 0.f));
    dnw.set(std::vector<float>(C, 0.f));
    out.set(round(randn(N * C)));
    cpu->rmsnorm_backward(dx.c, dnw.c, out.c, x.c, nw.c, rs.c, N, C, bf16);
    gpu->rmsnorm_backward(dx.g, dnw.g, out.g, x.g, nw.g, rs.g, N, C, bf16);
    report("rmsnorm_backward dinp" + tag, dx.diff(), tol);
    report("rmsnorm_backward dweight" + tag, dnw.diff(), 1e-4);

    std::vector<int32_t> pos(N), start(N), tok(N), tgt(N);
    for (int64_t n = 0; n < N; n++) {
      const int64_t t = n % T, begin = t < 30 ? 0 : t < 70 ? 30 : 70;  // three documents per row
      pos[n] = (int32_t)(t - begin);
      start[n] = (int32_t)begin;
      tok[n] = (int32_t)((n * 7919) % V);
      tgt[n] = t == T - 1 ? -1 : (int32_t)((n * 104729) % V);
    }
    IntPair p(cpu.get(), gpu.get(), pos), s(cpu.get(), gpu.get(), start), tk(cpu.get(), gpu.get(), tok), tg(cpu.get(), gpu.get(), tgt);
    out.set(round(randn(N * C)));
    cpu->rope_forward(out.c, p.c, N, H, D, 10000.f, bf16);
    gpu->rope_forward(out.g, p.g, N, H, D, 10000.f, bf16);
    report("rope_forward" + tag, out.diff(), bf16 ? tol : 1e-5);
    cpu->rope_backward(out.c, p.c, N, H, D, 10000.f, bf16);
    gpu->rope_backward(out.g, p.g, N, H, D, 10000.f, bf16);
    report("rope_backward" + tag, out.diff(), bf16 ? tol : 1e-5);

    Pair q(cpu.get(), gpu.get(), N * C, A), k(cpu.get(), gpu.get(), N * C, A), v(cpu.get(), gpu.get(), N * C, A), o(cpu.get(), gpu.get(), N * C, A),
        lse(cpu.get(), gpu.get(), B * H * T), dq(cpu.get(), gpu.get(), N * C, A), dk(cpu.get(), gpu.get(), N * C, A),
        dv(cpu.get(), gpu.get(), N * C, A), go(cpu.get(), gpu.get(), N * C, A);
    q.set(round(randn(N * C)));
    k.set(round(randn(N * C)));
    v.set(round(randn(N * C)));
    o.poison();
    lse.poison();
    cpu->attention_forward(o.c, lse.c, q.c, k.c, v.c, s.c, B, T, H, D, bf16);
    gpu->attention_forward(o.g, lse.g, q.g, k.g, v.g, s.g, B, T, H, D, bf16);
    report("attention_forward out" + tag, o.diff(), tol);
    report("attention_forward lse" + tag, lse.diff(), 1e-5);
    go.set(round(randn(N * C)));
    dq.poison();
    dk.poison();
    dv.poison();
    cpu->attention_backward(dq.c, dk.c, dv.c, go.c, o.c, lse.c, q.c, k.c, v.c, s.c, B, T, H, D, bf16);
    gpu->attention_backward(dq.g, dk.g, dv.g, go.g, o.g, lse.g, q.g, k.g, v.g, s.g, B, T, H, D, bf16);
    report("attention_backward dq" + tag, dq.diff(), bf16 ? tol : 1e-4);
    report("attention_backward dk" + tag, dk.diff(), bf16 ? tol : 1e-4);
    report("attention_backward dv" + tag, dv.diff(), bf16 ? tol : 1e-4);

    Pair g(cpu.get(), gpu.get(), N * F, A), u(cpu.get(), gpu.get(), N * F, A), a(cpu.get(), gpu.get(), N * F, A), dg(cpu.get(), gpu.get(), N * F, A),
        du(cpu.get(), gpu.get(), N * F, A);
    g.set(round(randn(N * F)));
    u.set(round(randn(N * F)));
    a.poison();
    cpu->swiglu_forward(a.c, g.c, u.c, N * F, bf16);
    gpu->swiglu_forward(a.g, g.g, u.g, N * F, bf16);
    report("swiglu_forward" + tag, a.diff(), bf16 ? tol : 1e-5);
    dg.poison();
    du.poison();
    cpu->swiglu_backward(dg.c, du.c, a.c, g.c, u.c, N * F, bf16);
    gpu->swiglu_backward(dg.g, du.g, a.g, g.g, u.g, N * F, bf16);
    report("swiglu_backward" + tag, std::max(dg.diff(), du.diff()), bf16 ? tol : 1e-5);

    Pair wte(cpu.get(), gpu.get(), V * C, A), dwte(cpu.get(), gpu.get(), V * C), losses(cpu.get(), gpu.get(), N), dh(cpu.get(), gpu.get(), N * C, A);
    wte.set(round(randn(V * C, 0.2f)));
    out.poison();
    cpu->embedding_forward(out.c, tk.c, wte.c, N, C, bf16);
    gpu->embedding_forward(out.g, tk.g, wte.g, N, C, bf16);
    report("embedding_forward" + tag, out.diff(), 0);
    dwte.set(std::vector<float>(V * C, 0.f));
    cpu->embedding_backward(dwte.c, go.c, tk.c, N, C, bf16);
    gpu->embedding_backward(dwte.g, go.g, tk.g, N, C, bf16);
    report("embedding_backward" + tag, dwte.diff(), 1e-6);
    losses.poison();
    dh.poison();
    dwte.set(std::vector<float>(V * C, 0.f));
    cpu->lm_head_cross_entropy(losses.c, dh.c, dwte.c, x.c, wte.c, tg.c, N, C, V, 1.f / N, bf16);
    gpu->lm_head_cross_entropy(losses.g, dh.g, dwte.g, x.g, wte.g, tg.g, N, C, V, 1.f / N, bf16);
    report("lm_head_cross_entropy losses" + tag, losses.diff(), bf16 ? 1e-3 : 1e-5);
    report("lm_head_cross_entropy dhidden" + tag, dh.diff(), bf16 ? tol : 1e-4);
    report("lm_head_cross_entropy dweight" + tag, dwte.diff(), bf16 ? tol : 1e-4);

    // The optimizer: the global gradient norm, and one AdamW step writing the compute copy in the same pass.
    const int64_t P = 5000;
    Pair param(cpu.get(), gpu.get(), P), copy(cpu.get(), gpu.get(), P, A), grad(cpu.get(), gpu.get(), P), m1(cpu.get(), gpu.get(), P),
        m2(cpu.get(), gpu.get(), P);
    param.set(randn(P, 0.02f));
    grad.set(randn(P, 1e-3f));
    m1.set(randn(P, 1e-4f));
    std::vector<float> second = randn(P, 1e-6f);
    for (auto& x : second) x = std::fabs(x);
    m2.set(second);
    copy.poison();
    const double sc = cpu->sum_squares(grad.c, P), sg = gpu->sum_squares(grad.g, P);
    report("sum_squares (global grad norm)" + tag, std::fabs(sc - sg) / sc, 1e-6);
    const cx::AdamWParams hp{1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, 1.f - 0.9f * 0.9f, 1.f - 0.95f * 0.95f};
    cpu->adamw(param.c, copy.c, grad.c, m1.c, m2.c, P, hp, bf16);
    gpu->adamw(param.g, copy.g, grad.g, m1.g, m2.g, P, hp, bf16);
    report("adamw parameters" + tag, param.diff(), 1e-6);
    report("adamw moments" + tag, std::max(m1.diff(), m2.diff()), 1e-6);
    report("adamw compute copy" + tag, copy.diff(), bf16 ? 1e-2 : 1e-6);
  }
  });

  guarded("fused attention at head size 64", [&] { attention_at_head_size_64(cpu.get(), gpu.get(), ref.get(), rng); });

  // The whole model, small config, several documents per row: loss and every gradient, CPU vs CUDA.
  for (const char* backend : {"cuda", "cuda-reference"})
  for (int precision : {CX_FP32, CX_BF16}) {
#ifdef CX_GPU_CHECK_EMULATED
    const int V = 512, T = 128;  // the emulation runs every CUDA thread on the CPU: a smaller vocabulary and row
#else
    const int V = 2048, T = 256;
#endif
    cx_config cfg{2, 128, 4, 344, V, T, 10000.f, 1e-5f};
    cx_model *mc = nullptr, *mg = nullptr;
    cx_status st{};
    if (cx_model_create(&cfg, "cpu", 16, &mc, &st) || cx_model_create(&cfg, backend, 0, &mg, &st) || cx_model_init(mc, 1, &st) ||
        cx_model_init(mg, 1, &st)) {
      std::printf("FAIL model: %s\n", st.message);
      return 1;
    }
    const int B = 2;
    std::vector<int32_t> tokens(B * T);
    for (int i = 0; i < B * T; i++) tokens[i] = i % 61 == 60 ? V - 1 : (i * 131) % (V - 48);  // EOS (V-1) every 61 tokens
    cx_run_options o{precision, 1, 1, 1, V - 1};
    double lc = 0, lg = 0, lg2 = 0;
    int64_t n = 0;
    cx_zero_grad(mc, &st);
    cx_zero_grad(mg, &st);
    cx_forward_backward(mc, tokens.data(), B, T, &o, 1.f / (B * T), &lc, &n, &st);
    if (cx_forward_backward(mg, tokens.data(), B, T, &o, 1.f / (B * T), &lg, &n, &st)) std::printf("cuda error: %s\n", st.message);
    const std::string tag = std::string(precision == CX_FP32 ? " (fp32, " : " (bf16, ") + backend + ")";
    report("whole model loss" + tag, std::fabs(lc - lg) / std::fabs(lc), precision == CX_FP32 ? 1e-5 : 1e-2);
    double worst = 0;
    for (int i = 0; i < cx_tensor_count(mc); i++) {
      int64_t r, c;
      cx_tensor_shape(mc, i, &r, &c);
      std::vector<float> a(r * c), b(r * c);
      cx_tensor_get(mc, CX_GRAD, i, a.data(), &st);
      cx_tensor_get(mg, CX_GRAD, i, b.data(), &st);
      worst = std::max(worst, rel_err(a, b));
    }
    report("whole model gradients" + tag, worst, precision == CX_FP32 ? 1e-4 : 3e-2);
    cx_zero_grad(mg, &st);
    cx_forward_backward(mg, tokens.data(), B, T, &o, 1.f / (B * T), &lg2, &n, &st);
    report("same loss twice in a row" + tag, std::fabs(lg - lg2), 0);
    cx_model_free(mc);
    cx_model_free(mg);
  }

  if (argc > 1)
    guarded("loss curve", [&] {
      std::string err;
      const std::vector<int32_t> tokens = read_npy_tokens(argv[1], &err);
      if (!err.empty()) throw std::runtime_error(err);
      loss_curve(tokens, cx_config{2, 64, 4, 172, 102400, 256, 10000.f, 1e-5f}, 100001, 4, 256, 60, "the sample shard");
    });
#ifdef CX_GPU_CHECK_EMULATED
  guarded("loss curve", [&] {  // a small vocabulary and synthetic documents: the emulation runs every CUDA thread on the CPU
    std::vector<int32_t> tokens(2 * 64 * 30);
    for (size_t i = 0; i < tokens.size(); i++) tokens[i] = i % 37 == 36 ? 255 : (int32_t)((i * i + 7 * (i / 37)) % 97);
    loss_curve(tokens, cx_config{2, 64, 4, 172, 256, 64, 10000.f, 1e-5f}, 255, 2, 64, 30, "synthetic documents");
  });
#endif
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
