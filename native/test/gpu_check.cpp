/* GPU check, standalone (no Node): every op of the CUDA backend (cuBLASLt matmuls, fused attention) against
 * the CPU backend on fresh random inputs with poisoned outputs; the fused attention against the reference CUDA
 * kernels at the ChuXin head size; the whole model's loss and gradients on a small config with several
 * documents per row, for both CUDA backends; determinism; and, given a shard (.npy), the tiny model's loss
 * curve on the GPU against the CPU's. Throughput is gpu_throughput.cpp.
 *   chuxin_gpu_check [shard.npy]
 * Every part is a registered case (check_registry.h; the per-op ones are in gpu_check_ops.cpp). Prints one line
 * per check and "N passed, N failed"; exits non-zero on failure, or while an op has no case. Run by gpu-check.sh. */
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "../include/chuxin.h"
#include "../src/model/backend.h"
#include "gpu_check_util.h"
#include "npy.h"

/* The sample shard given on the command line (the loss curve on it), or null. */
static const char* shard_path = nullptr;

/* A tiny model trained on consecutive rows of `tokens`, CPU and GPU from the same initial weights and batches:
 * the loss curves must agree within bf16 noise, and the GPU's must fall. */
static void loss_curve(const std::vector<int32_t>& tokens, const cx_config& cfg, int eos, int B, int T, int steps, const char* what) {
  if (tokens.size() < (size_t)B * T * steps) {
    std::printf("FAIL loss curve: %s has too few tokens\n", what);
    failed++;
    return;
  }
  cx_run_options o{CX_BF16, 1, 1, 1, eos, 0};
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
      cx_forward_backward(m, batch, B, T, &o, 1.f / (B * T), 0, &loss, &count, &st);
      const float lr = 3e-3f * std::min(1.f, step / 10.f);
      cx_adamw hp{lr, 0.9f, 0.95f, 1e-8f, 0.1f, 1.f, step};
      if (cx_clip_adamw_step(m, &hp, 1.f, &norm, &st)) {  // clipping at 1, as the trainer does
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

/* More rows than the device holds: the error must say what the batch needs (in all and per row), what the device
 * has free, and the flags that reduce it; the process goes on. */
static void out_of_memory_message() {
  size_t free_b = 0, total_b = 0;
  if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) throw std::runtime_error("cudaMemGetInfo failed");
  const int T = 4096;
  const cx_config cfg{2, 512, 8, 1024, 512, T, 10000.f, 1e-5f};
  cx_model* m = nullptr;
  cx_status st{};
  if (cx_model_create(&cfg, "cuda", 0, &m, &st) || cx_model_init(m, 1, &st)) throw std::runtime_error(st.message);
  const cx_run_options o{CX_BF16, 1, 1, 1, 511, 0};
  auto tokens_for = [](int rows) {
    std::vector<int32_t> tokens((size_t)rows * T);
    for (size_t i = 0; i < tokens.size(); i++) tokens[i] = i % 300 == 299 ? 511 : (int32_t)(i % 500);
    return tokens;
  };
  // One row's activation footprint, as the model reports it; two rows more than the whole card then cannot fit.
  double loss = 0;
  int64_t count = 0;
  size_t per_row = 0;
  if (cx_forward_backward(m, tokens_for(1).data(), 1, T, &o, 1.f, 0, &loss, &count, &st)) throw std::runtime_error(st.message);
  cx_model_memory(m, nullptr, &per_row);
  const int B = (int)(total_b / per_row) + 2;
  const int code = cx_forward_backward(m, tokens_for(B).data(), B, T, &o, 1.f, 0, &loss, &count, &st);
  cx_model_free(m);
  const std::string msg = st.message;
  std::printf("     %d rows of %d: %s\n", B, T, msg.c_str());
  const bool names_all = msg.find("micro-batch " + std::to_string(B) + " x 4096 tokens need") != std::string::npos &&
                         msg.find("per row") != std::string::npos && msg.find("MB free of") != std::string::npos &&
                         msg.find("--micro-batch") != std::string::npos && msg.find("--recompute (") != std::string::npos;
  report("out of memory: an error naming the need, the free memory and the flags", code == CX_OUT_OF_MEMORY && names_all ? 0 : 1, 0);
}

CX_CHECK(whole_model, "the whole model against the CPU, determinism and recomputation") {
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
        cx_model_init(mg, 1, &st))
      throw std::runtime_error(std::string("model: ") + st.message);
    const int B = 2;
    std::vector<int32_t> tokens(B * T);
    for (int i = 0; i < B * T; i++) tokens[i] = i % 61 == 60 ? V - 1 : (i * 131) % (V - 48);  // EOS (V-1) every 61 tokens
    cx_run_options o{precision, 1, 1, 1, V - 1, 0};
    double lc = 0, lg = 0, lg2 = 0;
    int64_t n = 0;
    cx_zero_grad(mc, &st);
    cx_zero_grad(mg, &st);
    cx_forward_backward(mc, tokens.data(), B, T, &o, 1.f / (B * T), 0, &lc, &n, &st);
    if (cx_forward_backward(mg, tokens.data(), B, T, &o, 1.f / (B * T), 0, &lg, &n, &st)) std::printf("cuda error: %s\n", st.message);
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
    cx_forward_backward(mg, tokens.data(), B, T, &o, 1.f / (B * T), 0, &lg2, &n, &st);
    report("same loss twice in a row" + tag, std::fabs(lg - lg2), 0);
    // Recomputing the blocks in backward must not change a bit: the attention norm is redone unfused from the
    // stored residual, which the fused residual + norm kernel normalised too.
    std::vector<std::vector<float>> kept((size_t)cx_tensor_count(mg));
    for (int i = 0; i < cx_tensor_count(mg); i++) {
      int64_t r, c;
      cx_tensor_shape(mg, i, &r, &c);
      kept[(size_t)i].resize(r * c);
      cx_tensor_get(mg, CX_GRAD, i, kept[(size_t)i].data(), &st);
    }
    // A forward at the other precision first: the compute copy is laid out anew for it (packed bf16 takes half
    // the space of fp32) and must come back the same.
    cx_run_options other = o;
    other.precision = precision == CX_BF16 ? CX_FP32 : CX_BF16;
    std::vector<float> scratch((size_t)B * T);
    if (cx_forward_losses(mg, tokens.data(), B, T, &other, scratch.data(), &st)) std::printf("cuda error: %s\n", st.message);
    cx_run_options rec = o;
    rec.recompute = 1;
    double lr = 0;
    cx_zero_grad(mg, &st);
    if (cx_forward_backward(mg, tokens.data(), B, T, &rec, 1.f / (B * T), 0, &lr, &n, &st)) std::printf("cuda error: %s\n", st.message);
    int differing = lr != lg2;
    for (int i = 0; i < cx_tensor_count(mg); i++) {
      std::vector<float> g(kept[(size_t)i].size());
      cx_tensor_get(mg, CX_GRAD, i, g.data(), &st);
      differing += g != kept[(size_t)i];
    }
    report("recompute, after a run at the other precision: loss and gradient tensors that differ" + tag, differing, 0);
    cx_model_free(mc);
    cx_model_free(mg);
  }

}

CX_CHECK(decode, "generation with a key/value cache against the full forward pass") {
  const int V = 512, T = 48, prompt = 40;
  cx_config cfg{2, 128, 4, 344, V, 64, 10000.f, 1e-5f};
  for (const char* backend : {"cpu", "cuda"})
  for (int precision : {CX_FP32, CX_BF16}) {
    cx_model *full = nullptr, *m = nullptr;
    cx_status st{};
    if (cx_model_create(&cfg, "cpu", 16, &full, &st) || cx_model_create(&cfg, backend, 16, &m, &st) || cx_model_init(full, 3, &st) || cx_model_init(m, 3, &st))
      throw std::runtime_error(std::string("model: ") + st.message);
    std::vector<int32_t> tokens(T);
    for (int i = 0; i < T; i++) tokens[i] = (i * 37 + 11) % V;
    cx_run_options o{precision, 0, 0, 0, V - 1, 0};
    std::vector<float> want(V), got(V);
    double worst = 0;
    cx_decode_reset(m, T, &st);
    // The prompt in one step, then one token at a time; each step's logits against the whole prefix run at once.
    for (int end = prompt; end <= T; end++) {
      const int start = end == prompt ? 0 : end - 1;
      if (cx_decode_step(m, tokens.data() + start, end - start, &o, got.data(), &st)) throw std::runtime_error(std::string("decode: ") + st.message);
      cx_forward_last_logits(full, tokens.data(), 1, end, &o, want.data(), &st);
      for (int v = 0; v < V; v++) worst = std::max(worst, (double)std::fabs(want[v] - got[v]) / (1.0 + std::fabs(want[v])));
    }
    const int overflow = cx_decode_step(m, tokens.data(), 1, &o, got.data(), &st);
    report(std::string("decode logits (") + (precision == CX_FP32 ? "fp32, " : "bf16, ") + backend + ")", worst, precision == CX_FP32 ? 1e-4 : 5e-2);
    report(std::string("decode past its capacity is an error (") + backend + ")", overflow == CX_INVALID_ARGUMENT ? 0 : 1, 0);
    cx_model_free(full);
    cx_model_free(m);
  }
}

CX_CHECK(out_of_memory, "out of memory") { out_of_memory_message(); }

CX_CHECK(loss_curve_shard, "the tiny model's loss curve on the sample shard") {
  if (!shard_path) return;  // no shard given
  std::string err;
  const std::vector<int32_t> tokens = read_npy_tokens(shard_path, &err);
  if (!err.empty()) throw std::runtime_error(err);
  loss_curve(tokens, cx_config{2, 64, 4, 172, 102400, 256, 10000.f, 1e-5f}, 100001, 4, 256, 60, "the sample shard");
}

#ifdef CX_GPU_CHECK_EMULATED
CX_CHECK(loss_curve_synthetic, "the tiny model's loss curve on synthetic documents") {
  // A small vocabulary and synthetic documents: the emulation runs every CUDA thread on the CPU.
  std::vector<int32_t> tokens(2 * 64 * 30);
  for (size_t i = 0; i < tokens.size(); i++) tokens[i] = i % 37 == 36 ? 255 : (int32_t)((i * i + 7 * (i / 37)) % 97);
  loss_curve(tokens, cx_config{2, 64, 4, 172, 256, 64, 10000.f, 1e-5f}, 255, 2, 64, 30, "synthetic documents");
}
#endif

int main(int argc, char** argv) {
#ifdef CX_GPU_CHECK_EMULATED
  // Built against the CPU emulation of the CUDA kernels (test/emu), with its host-memory cuBLASLt; the shard's
  // loss curve is too slow there, a small synthetic one runs instead.
  setenv("CHUXIN_CUBLASLT", CX_EMULATED_CUBLASLT, 1);
  std::printf("CUDA kernels under the CPU emulation, cuBLASLt emulated too (not a GPU)\n");
  argc = 1;
#endif
  std::string why;
  std::unique_ptr<Backend> fast(cx::create_cuda_backend(&why));
  if (!fast) {
    std::printf("FAIL CUDA backend: %s\n0 passed, 1 failed\n", why.c_str());
    return 1;
  }
  std::unique_ptr<Backend> reference(cx::create_cuda_backend(&why, true));
  if (!reference) {
    std::printf("FAIL reference CUDA backend: %s\n0 passed, 1 failed\n", why.c_str());
    return 1;
  }
  std::unique_ptr<Backend> host(cx::create_cpu_backend(16));
  cpu = host.get();
  gpu = fast.get();
  ref = reference.get();
  if (argc > 1) shard_path = argv[1];
  return checks::run_cases(true);
}
