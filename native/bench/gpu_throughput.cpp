/* ChuXin-1.6B training throughput on the GPU, standalone (no Node): sequence 4096, bf16, whole training steps
 * (forward + backward + global grad norm + AdamW), for each micro-batch size that fits, with MFU:
 *   FLOPs/step = 6 · N_matmul · tokens + 12 · L · C · Σ_docs len·(len+1)/2      (per row)
 * N_matmul = every parameter except the input embedding (a lookup), the attention term counts only the
 * query–key pairs the document mask keeps (forward 4·pairs·C per layer, backward twice that), and the peak
 * is 989 TFLOP/s, dense bf16 of an H100 SXM (the H200 has the same).
 * A step is --accumulate micro-batches of forward + backward, then one global grad norm and AdamW update, as
 * training with gradient accumulation runs; the forward + backward rate alone is printed too.
 * First the per-op profile of a micro-step, with the cuBLASLt GEMMs' TFLOP/s (gpu_op_profile.cpp).
 *   chuxin_gpu_throughput [--shard shard.npy] [--rows docs|full] [--micro-batches 1,2,3,4] [--recompute-micro-batches 8]
 *                         [--accumulate 8] [--steps 3] [--config tiny] [--context 4096] [--no-profile] [--largest]
 * (--context: the row length, for long-context training; a model's positions reach it.)
 * (--largest: also predict the longest context the GPU's free memory holds at micro-batch 1, with and without
 * recomputation, from cx_model_activation_bytes, and run one recomputed step at that length to show it holds;
 * --largest-at-most T runs that step at T instead where T is shorter: the CPU emulation's check of the path.)
 * (--recompute-micro-batches: a second sweep on a fresh model that recomputes each block in backward.)
 * (--config tiny: a 2-layer model with a 512-token vocabulary and 256-token rows, to try the program itself.)
 * With a shard, every row is its first 4096 tokens (the build's documents, cut at EOS); else documents of 300.
 * --rows full: one 4096-token document per row (the shard's tokens without their EOS): plain causal attention.
 * MFU is given by two conventions: the attention pairs the document mask keeps (above), and the usual published
 * one, 6 · N_matmul · tokens + 12 · L · C · T(T+1)/2 per row (every causal pair, whatever the documents). */
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "../include/chuxin.h"
#include "../src/model/backend.h"
#include "bench_args.h"
#include "gpu_op_profile.h"
#include "../test/npy.h"

using Clock = std::chrono::steady_clock;
static double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

constexpr double kPeak = 989e12;
constexpr int kEos = 100001;

/* Documents as the model sees them (split after each EOS and at every row's end), by length: how many, and their
 * share of the tokens. */
static void print_length_histogram(const std::string& what, const std::vector<int32_t>& tokens, int T, int eos) {
  const int edges[] = {128, 512, 2048, 4096};
  const char* names[] = {"< 128", "128-511", "512-2047", "2048-4095", "4096"};
  double docs[5] = {0}, share[5] = {0}, total = 0;
  const size_t n = tokens.size() / (size_t)T * (size_t)T;
  for (size_t t = 0, begin = 0; t < n; t++)
    if (tokens[t] == eos || (t + 1) % (size_t)T == 0) {
      const double len = (double)(t - begin + 1);
      int b = 0;
      while (b < 4 && len >= edges[b]) b++;
      docs[b]++, share[b] += len, total++;
      begin = t + 1;
    }
  std::printf("lengths of %s (%.0f): ", what.c_str(), total);
  for (int b = 0; b < 5; b++) std::printf("%s%s %.0f (%.1f%% of tokens)", b ? ", " : "", names[b], docs[b], n ? 100 * share[b] / (double)n : 0.0);
  std::printf("\n");
}

/* The longest context at micro-batch 1, predicted from the activation plan against the GPU's free memory with the
 * model's states in place (multiples of 1,024), then one recomputed step at the predicted length on 4,096-token
 * documents (memory does not depend on the documents; time does) to show that it holds. */
static bool longest_context(cx_config cfg, int eos, int at_most) {
  cfg.max_seq = 1 << 30;
  cx_model* m = nullptr;
  cx_status st{};
  if (cx_model_create(&cfg, "cuda", 0, &m, &st) || cx_model_init(m, 1, &st)) {
    std::printf("FAIL the model on the GPU: %s\n", st.message);
    return false;
  }
  size_t free_b = 0, total_b = 0;
  cx_model_device_memory(m, &free_b, &total_b);
  const double per_token = cx_model_activation_bytes(m, 1 << 20, CX_BF16, 0) / double(1 << 20);
  const double per_token_recompute = cx_model_activation_bytes(m, 1 << 20, CX_BF16, 1) / double(1 << 20);
  // What the rest of a step allocates besides activations (the LM head's logits chunk, cuBLASLt's workspace,
  // AdamW's partial sums) is not in the plan: hold back 2 GiB for it.
  const double usable = (double)free_b - 2.0 * (1 << 30);
  const int longest = (int)std::min<double>(usable / per_token / 1024, 1 << 20) * 1024;
  const int longest_recompute = (int)std::min<double>(usable / per_token_recompute / 1024, 1 << 20) * 1024;
  std::printf("longest context at micro-batch 1: %.0f MiB free after the model states (%.0f MiB in all), activations %.0f B/token "
              "(%.0f recomputed): %d tokens, %d with recomputation (2 GiB held back for the rest of a step)\n",
              free_b / 1048576.0, total_b / 1048576.0, per_token, per_token_recompute, longest, longest_recompute);
  const int T = at_most > 0 ? std::min(at_most, longest_recompute) : longest_recompute;
  std::vector<int32_t> tokens((size_t)T);
  for (int t = 0; t < T; t++) tokens[(size_t)t] = (t + 1) % 4096 == 0 ? eos : (int32_t)(((int64_t)t * 7919) % std::min(100000, cfg.vocab - 1));
  const cx_run_options o{CX_BF16, 1, 1, 1, eos, 1};
  double loss = 0, norm = 0;
  int64_t count = 0;
  const auto t0 = Clock::now();
  const cx_adamw hp{1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.f, 1};
  const bool ok = cx_zero_grad(m, &st) == CX_OK && cx_forward_backward(m, tokens.data(), 1, T, &o, 1.f / T, 0, &loss, &count, &st) == CX_OK &&
                  cx_clip_adamw_step(m, &hp, 1.f, &norm, &st) == CX_OK;
  size_t after_free = 0;
  cudaMemGetInfo(&after_free, &total_b);
  if (ok)
    std::printf("a recomputed step at %d tokens holds: %.1f s, %.1f GiB of GPU memory in use, loss %.4f\n", T, seconds_since(t0),
                (double)(total_b - after_free) / (1 << 30), loss / std::max<int64_t>(count, 1));
  else
    std::printf("FAIL a recomputed step at %d tokens: %s\n", T, st.message);
  cx_model_free(m);
  return ok;
}

int main(int argc, char** argv) {
  std::string shard;
  std::vector<int> micro_batches{1, 2, 3, 4}, recompute_micro_batches;
  int steps = 3, accumulate = 8, context = 4096, largest_at_most = 0;
  bool tiny = false, full_rows = false, profile = true, largest = false;
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    if (a == "--no-profile") {
      profile = false;
      continue;
    }
    if (a == "--largest") {
      largest = true;
      continue;
    }
    if (i + 1 >= argc) break;
    if (a == "--context") context = std::atoi(argv[i + 1]);
    else if (a == "--largest-at-most") largest_at_most = std::atoi(argv[i + 1]);
    else if (a == "--shard") shard = argv[i + 1];
    else if (a == "--steps") steps = std::atoi(argv[i + 1]);
    else if (a == "--accumulate") accumulate = std::max(1, std::atoi(argv[i + 1]));
    else if (a == "--config") tiny = std::string(argv[i + 1]) == "tiny";
    else if (a == "--micro-batches") micro_batches = parse_list(argv[i + 1]);
    else if (a == "--recompute-micro-batches") recompute_micro_batches = parse_list(argv[i + 1]);
    else if (a == "--rows") full_rows = std::string(argv[i + 1]) == "full";
    i++;
  }
#ifdef CX_GPU_CHECK_EMULATED
  setenv("CHUXIN_CUBLASLT", CX_EMULATED_CUBLASLT, 1);
  std::printf("under the CPU emulation of CUDA: timings mean nothing here\n");
#endif
  const int T = tiny ? 256 : context, L = tiny ? 2 : 24, C = tiny ? 64 : 2048, F = tiny ? 172 : 5632, V = tiny ? 512 : 102400, H = tiny ? 4 : 32;
  std::vector<int32_t> row(T);
  if (!shard.empty()) {
    std::string err;
    auto tokens = read_npy_tokens(shard, &err);
    if (tokens.size() < (size_t)T) {
      std::printf("FAIL %s\n", err.empty() ? "the shard holds less than one sequence" : err.c_str());
      return 1;
    }
    print_length_histogram("the shard's documents (cut at rows of " + std::to_string(T) + ")", tokens, T, kEos);
    if (full_rows) tokens.erase(std::remove(tokens.begin(), tokens.end(), kEos), tokens.end());
    if (tokens.size() < (size_t)T) {
      std::printf("FAIL the shard holds less than one sequence without its EOS\n");
      return 1;
    }
    row.assign(tokens.begin(), tokens.begin() + T);
  } else if (full_rows) {
    for (int t = 0; t < T; t++) row[t] = (t * 7919) % 100000;
  } else {
    for (int t = 0, begin = 0; t < T; t++) {
      row[t] = (t * 7919) % 100000;
      if (t - begin == 299) {
        row[t] = kEos;
        begin = t + 1;
      }
    }
  }
  const int eos = tiny ? V - 1 : kEos;
  if (tiny)  // the same documents in the small vocabulary
    for (auto& t : row) t = t == kEos ? eos : t % (V - 1);
  // The pairs the document mask keeps, as prepare_batch in llama.cpp splits documents (a document ends after EOS).
  double pairs = 0, docs = 0;
  for (int t = 0, begin = 0; t < T; t++)
    if (row[t] == eos || t == T - 1) {
      const double len = t - begin + 1;
      pairs += len * (len + 1) / 2;
      docs++;
      begin = t + 1;
    }
  std::printf("row: %d tokens, %.0f documents, mean length %.0f, attention pairs %.3g (%.1f%% of causal)\n", T, docs, T / docs, pairs,
              100 * pairs / (T * (T + 1.0) / 2));
  print_length_histogram("the row's documents", row, T, eos);
  if (profile) op_profile(ProfileDims{L, C, H, F, V, T}, row, eos);

  const double matmul_params = L * (4.0 * C * C + 3.0 * C * F) + (double)V * C;  // blocks + LM head
  const cx_config cfg{L, C, H, F, V, T, 10000.f, 1e-5f};
  double best_tps = 0, best_mfu = 0;
  int best_mb = 0;
  // A sweep keeps one model (activation buffers grow with the micro-batch); the recomputing sweep gets a fresh one,
  // so its memory reading holds only what recomputation keeps.
  for (int recompute : {0, 1}) {
    const std::vector<int>& sizes = recompute ? recompute_micro_batches : micro_batches;
    if (sizes.empty()) continue;
    const cx_run_options o{CX_BF16, 1, 1, 1, eos, recompute};
    cx_model* m = nullptr;
    cx_status st{};
    if (cx_model_create(&cfg, "cuda", 0, &m, &st) || cx_model_init(m, 1, &st)) {
      std::printf("FAIL the model on the GPU: %s\n", st.message);
      return 1;
    }
    for (int B : sizes) {
      std::vector<int32_t> tokens((size_t)B * T);
      for (int b = 0; b < B; b++) std::copy(row.begin(), row.end(), tokens.begin() + (size_t)b * T);
      double fb = 0, opt = 0, loss = 0, norm = 0, used_gb = 0;
      int64_t count = 0;
      bool ok = true;
      for (int s = 0; s <= steps && ok; s++) {  // step 0 warms up (plans, scratch buffers)
        const auto t0 = Clock::now();
        ok = cx_zero_grad(m, &st) == CX_OK;
        for (int a = 0; a < accumulate && ok; a++)
          ok = cx_forward_backward(m, tokens.data(), B, T, &o, 1.f / ((float)accumulate * B * T), 0, &loss, &count, &st) == CX_OK;
        const double t_fb = seconds_since(t0);
        const auto t1 = Clock::now();
        const cx_adamw hp{1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.f, s + 1};
        // Clipping at 1 and AdamW as the trainer runs them: on the GPU, the norm read back once they are queued.
        ok = ok && cx_clip_adamw_step(m, &hp, 1.f, &norm, &st) == CX_OK;
        if (s == 0) {  // after the first step every buffer exists: the step's whole footprint
          size_t free_b = 0, total_b = 0;
          if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) used_gb = (double)(total_b - free_b) / (1 << 30);
        }
        if (s > 0) {
          fb += t_fb / steps;
          opt += seconds_since(t1) / steps;
        }
      }
      if (!ok) {
        std::printf("micro-batch %d%s does not run: %s\n", B, recompute ? " with recomputation" : "", st.message);
        break;
      }
      size_t states = 0, activations = 0;
      cx_model_memory(m, &states, &activations);
      const double sec = fb + opt, tokens_per_step = (double)accumulate * B * T;
      // Model FLOPs only: the recomputed forward is not counted, as MFU is defined.
      const double flops = accumulate * B * (6.0 * matmul_params * T + 12.0 * L * C * pairs);
      const double mfu = flops / sec / kPeak;
      const double published = accumulate * B * (6.0 * matmul_params * T + 12.0 * L * C * (T * (T + 1.0) / 2)) / sec / kPeak;
      std::printf("%s, seq %d, micro-batch %d x %d per step%s: %.3f s/step (forward+backward %.3f, grad norm + AdamW %.3f), %.0f tokens/s, "
                  "%.0f TFLOP/s, MFU %.1f%% (forward+backward alone %.1f%%; published convention %.1f%%), %.1f GiB of GPU memory in use "
                  "(model states %.0f MiB, activations %.0f MiB) (loss %.4f)\n",
                  tiny ? "tiny model" : "ChuXin-1.6B", T, B, accumulate, recompute ? " with recomputation" : "", sec, fb, opt, tokens_per_step / sec,
                  flops / sec / 1e12, 100 * mfu, 100 * flops / fb / kPeak, 100 * published, used_gb, states / 1048576.0, activations / 1048576.0,
                  loss / std::max<int64_t>(count, 1));
      if (tokens_per_step / sec > best_tps) {
        best_tps = tokens_per_step / sec;
        best_mfu = mfu;
        best_mb = recompute ? -B : B;
      }
    }
    cx_model_free(m);
  }
  if (largest && !longest_context(cfg, eos, largest_at_most)) return 1;
  if (best_mb == 0) return largest && micro_batches.empty() && recompute_micro_batches.empty() ? 0 : 1;
  std::printf("ours best: micro-batch %d x %d per step%s, %.0f tokens/s, MFU %.1f%%%s\n", std::abs(best_mb), accumulate,
              best_mb < 0 ? " with recomputation" : "", best_tps, 100 * best_mfu, full_rows ? " (full rows)" : "");
  return 0;
}
