/* Data parallelism over NCCL on this machine's GPUs, standalone (no Node), in one device call:
 *   1. One GPU, every data-parallel path at world size 1 (gradient buckets reduced while the backward goes on,
 *      ZeRO-1's sharded AdamW and its all-gather, host sums, the replica digest, moments gathered as a checkpoint
 *      takes them) against the same steps without a communicator: losses and gradient norms side by side, and
 *      what the path costs in tokens/s (the bound: 3%). Also --no-overlap and ZeRO-0, for what they change.
 *   2. With several GPUs, R ranks as threads (one GPU and one NCCL rank each) on the same global batch as one GPU
 *      accumulating it all: the same trajectory to rounding, identical replicas, and the scaling efficiency.
 *   chuxin_nccl_data_parallel [--config tiny|1.6b] [--micro-batch 2] [--accumulate 4] [--steps 4] [--shard shard.npy] [--port 29611]
 * Rows are the shard's consecutive 4096-token windows (else documents of 300 tokens), a different window for each
 * micro-batch, so ranks see different data. NCCL is found as the addon finds it (CHUXIN_NCCL to name it).
 * CI runs it at --config tiny under the CUDA emulation (chuxin_nccl_data_parallel_emulated), for its logic. */
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "../include/chuxin.h"
#include "../test/npy.h"

using Clock = std::chrono::steady_clock;

namespace {

struct Setup {
  cx_config cfg;
  int eos, micro_batch, accumulate, steps;
  std::vector<int32_t> tokens;  // a pool of rows, T each
};

struct Run {
  std::vector<double> losses, norms;
  double tokens_per_s = 0;  // timed steps (after the first), rank 0's clock
  int identical = -1;       // the replica check (-1: no communicator)
  double moments_sum = 0;   // of the LM head's first moment, gathered as a checkpoint does
  std::string error;
};

enum class Mode { plain, nccl };

/* Micro-batch a of step s: rows from the pool, in order. */
std::vector<int32_t> batch(const Setup& s, int step, int a) {
  const int T = s.cfg.max_seq, B = s.micro_batch;
  const size_t rows = s.tokens.size() / (size_t)T;
  std::vector<int32_t> out((size_t)B * T);
  for (int b = 0; b < B; b++) {
    const size_t row = ((size_t)step * s.accumulate * B + (size_t)a * B + b) % rows;
    std::copy(s.tokens.begin() + row * T, s.tokens.begin() + (row + 1) * T, out.begin() + (size_t)b * T);
  }
  return out;
}

#define TRY(call)                          \
  if ((call) != CX_OK) {                   \
    run.error = st.message;                \
    return;                                \
  }

void rank_main(const Setup& s, Mode mode, int zero, bool overlap, int rank, int ranks, int port, Run& run) {
  cx_status st{};
  cx_model* m = nullptr;
  cx_comm* comm = nullptr;
  const std::string device = "cuda:" + std::to_string(rank);
  struct Free {
    cx_model*& m;
    cx_comm*& c;
    ~Free() {
      cx_model_free(m);  // before its communicator
      if (c) cx_comm_free(c);
    }
  } free_them{m, comm};
  TRY(cx_model_create(&s.cfg, device.c_str(), 0, &m, &st));
  TRY(cx_model_init(m, 1, &st));
  if (mode == Mode::nccl) {
    const cx_comm_options o{"nccl", rank, ranks, "127.0.0.1", port, 120000, rank};
    TRY(cx_comm_create(&o, &comm, &st));
    TRY(cx_model_data_parallel(m, comm, zero, &st));
  }
  const cx_run_options o{CX_BF16, 1, 1, 1, s.eos, 0};
  const int T = s.cfg.max_seq;
  const float scale = 1.f / ((float)s.accumulate * s.micro_batch * T);
  double timed = 0;
  for (int step = 0; step < s.steps; step++) {
    const auto t0 = Clock::now();
    TRY(cx_zero_grad(m, &st));
    double local[2] = {0, 0};
    for (int a = rank; a < s.accumulate; a += ranks) {
      const std::vector<int32_t> tokens = batch(s, step, a);
      double loss = 0;
      int64_t count = 0;
      TRY(cx_forward_backward(m, tokens.data(), s.micro_batch, T, &o, scale, comm && overlap && a + ranks >= s.accumulate, &loss, &count, &st));
      local[0] += loss, local[1] += (double)count;
    }
    if (comm) TRY(cx_comm_all_reduce_host(comm, local, 2, &st));
    const cx_adamw hp{1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.f, step + 1};
    double norm = 0;
    TRY(cx_clip_adamw_step(m, &hp, 1.f, &norm, &st));
    if (step > 0) timed += std::chrono::duration<double>(Clock::now() - t0).count();
    run.losses.push_back(local[0] / std::max(local[1], 1.0));
    run.norms.push_back(norm);
  }
  if (s.steps > 1) run.tokens_per_s = (double)(s.steps - 1) * s.accumulate * s.micro_batch * T / timed;
  if (comm) {
    uint64_t digest = 0;
    TRY(cx_model_replicas_identical(m, &run.identical, &digest, &st));
  }
  // The LM head's first moment, as a checkpoint reads it (collective under ZeRO-1: every rank's share summed).
  const int head = cx_tensor_count(m) - 1;
  int64_t rows = 0, cols = 0;
  cx_tensor_shape(m, head, &rows, &cols);
  std::vector<float> moments((size_t)(rows * cols));
  TRY(cx_tensor_get(m, CX_ADAM_M, head, moments.data(), &st));
  for (float v : moments) run.moments_sum += std::fabs(v);
}

/* Every rank of one run; rank 0's record, or the first failure. */
Run train(const Setup& s, Mode mode, int zero, bool overlap, int ranks, int port) {
  std::vector<Run> runs((size_t)ranks);
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; r++) threads.emplace_back([&, r] { rank_main(s, mode, zero, overlap, r, ranks, port, runs[(size_t)r]); });
  for (auto& t : threads) t.join();
  for (int r = 0; r < ranks; r++)
    if (!runs[(size_t)r].error.empty()) {
      Run failed;
      failed.error = "rank " + std::to_string(r) + ": " + runs[(size_t)r].error;
      return failed;
    }
  return runs[0];
}

double max_relative(const std::vector<double>& a, const std::vector<double>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); i++) worst = std::max(worst, std::fabs(a[i] - b[i]) / std::max(std::fabs(b[i]), 1e-30));
  return worst;
}

}  // namespace

int main(int argc, char** argv) {
  std::string shard, config = "1.6b";
  int micro_batch = 2, accumulate = 4, steps = 4, port = 29611;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--config") config = argv[i + 1];
    else if (a == "--micro-batch") micro_batch = std::max(1, std::atoi(argv[i + 1]));
    else if (a == "--accumulate") accumulate = std::max(1, std::atoi(argv[i + 1]));
    else if (a == "--steps") steps = std::max(2, std::atoi(argv[i + 1]));
    else if (a == "--shard") shard = argv[i + 1];
    else if (a == "--port") port = std::atoi(argv[i + 1]);
  }
#ifdef CX_GPU_CHECK_EMULATED
  setenv("CHUXIN_CUBLASLT", CX_EMULATED_CUBLASLT, 1);
  setenv("CHUXIN_NCCL", CX_EMULATED_NCCL, 1);
  std::printf("under the CPU emulation of CUDA, NCCL's contract over gloo: timings mean nothing here\n");
#endif
  const bool tiny = config == "tiny";
  const int T = tiny ? 256 : 4096, V = tiny ? 512 : 102400;
  Setup s{{tiny ? 2 : 24, tiny ? 64 : 2048, tiny ? 4 : 32, tiny ? 172 : 5632, V, T, 10000.f, 1e-5f}, tiny ? V - 1 : 100001, micro_batch, accumulate, steps, {}};
  if (!shard.empty()) {
    std::string err;
    s.tokens = read_npy_tokens(shard, &err);
    if (s.tokens.size() < (size_t)T) {
      std::printf("FAIL %s\n", err.empty() ? "the shard holds less than one row" : err.c_str());
      return 1;
    }
    s.tokens.resize(s.tokens.size() / T * T);
    if (tiny)
      for (auto& t : s.tokens) t = t == 100001 ? s.eos : t % (V - 1);
  } else {
    s.tokens.resize((size_t)T * 8);
    for (size_t t = 0; t < s.tokens.size(); t++) s.tokens[t] = t % 300 == 299 ? s.eos : (int32_t)((t * 7919) % (V - 1));
  }
  int gpus = 0;
  if (cudaGetDeviceCount(&gpus) != cudaSuccess || gpus < 1) {
    std::printf("FAIL no CUDA device\n");
    return 1;
  }
  std::printf("%s, seq %d, %d micro-batches of %d rows per step, %d steps (the first untimed), %d GPU(s) visible, %zu rows in the pool\n",
              tiny ? "tiny model" : "ChuXin-1.6B", T, accumulate, micro_batch, steps, gpus, s.tokens.size() / T);
  int failures = 0;
  auto show = [&](const char* name, const Run& r) {
    if (!r.error.empty()) {
      std::printf("FAIL %s: %s\n", name, r.error.c_str());
      failures++;
      return;
    }
    std::printf("%-44s %9.0f tokens/s  losses", name, r.tokens_per_s);
    for (double l : r.losses) std::printf(" %.6f", l);
    std::printf("  norms");
    for (double n : r.norms) std::printf(" %.5f", n);
    std::printf("  moments %.6e%s\n", r.moments_sum, r.identical == 1 ? "  replicas identical" : r.identical == 0 ? "  REPLICAS DIFFER" : "");
  };

  // 1. One GPU: the plain step, then the data-parallel paths at world size 1 (each a fresh model from seed 1).
  const Run plain = train(s, Mode::plain, 0, false, 1, port++);
  show("1 GPU, no communicator", plain);
  const Run zero1 = train(s, Mode::nccl, 1, true, 1, port++);
  show("1 GPU, NCCL, ZeRO-1, overlapped", zero1);
  const Run after = train(s, Mode::nccl, 1, false, 1, port++);
  show("1 GPU, NCCL, ZeRO-1, after the backward", after);
  const Run zero0 = train(s, Mode::nccl, 0, true, 1, port++);
  show("1 GPU, NCCL, ZeRO-0 (all-reduce), overlapped", zero0);
  if (failures) return 1;
  auto verdict = [&](bool ok, const std::string& what) {
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
    failures += ok ? 0 : 1;
  };
  char line[400];
  for (const Run* r : {&zero1, &after, &zero0}) {
    const double dl = max_relative(r->losses, plain.losses), dn = max_relative(r->norms, plain.norms);
    std::snprintf(line, sizeof line, "world size 1 follows the plain run: losses within %.2e, gradient norms within %.2e (relative)%s", dl, dn,
                  r == &zero1 ? " [ZeRO-1, overlapped]" : r == &after ? " [ZeRO-1, after]" : " [ZeRO-0]");
    // One rank's reductions add nothing, so only the norm's sum order (per bucket) differs: rounding, not more.
    verdict(dl < 1e-5 && dn < 1e-5 && r->identical == 1 && std::fabs(r->moments_sum - plain.moments_sum) <= 1e-5 * plain.moments_sum, line);
  }
  const double cost = 1 - zero1.tokens_per_s / plain.tokens_per_s;
  std::snprintf(line, sizeof line, "the NCCL path at world size 1 costs %.1f%% of tokens/s (%.0f against %.0f; bound 3%%)", 100 * cost, zero1.tokens_per_s,
                plain.tokens_per_s);
  if (tiny) std::printf("note %s: not held to it on the tiny model\n", line);
  else verdict(cost <= 0.03, line);
  std::printf("overlap at world size 1: %.1f%% more tokens/s than reducing after the backward (no peer to wait for: this is the cost of the "
              "in-backward queueing, not the overlap's gain)\n",
              100 * (zero1.tokens_per_s / after.tokens_per_s - 1));

  // 2. Several GPUs: R ranks on the same global batch.
  for (int R = 2; R <= gpus; R *= 2) {
    if (accumulate % R != 0) {
      std::printf("skip %d ranks: %d micro-batches per step do not split over them\n", R, accumulate);
      continue;
    }
    const Run many = train(s, Mode::nccl, 1, true, R, port++);
    std::snprintf(line, sizeof line, "%d GPUs, NCCL, ZeRO-1, overlapped", R);
    show(line, many);
    if (!many.error.empty()) continue;
    const double dl = max_relative(many.losses, plain.losses), dn = max_relative(many.norms, plain.norms);
    std::snprintf(line, sizeof line, "%d ranks follow one GPU's trajectory: losses within %.2e, norms within %.2e; scaling efficiency %.1f%%", R, dl, dn,
                  100 * many.tokens_per_s / (R * plain.tokens_per_s));
    verdict(dl < 1e-3 && dn < 1e-3 && many.identical == 1, line);
  }
  std::printf("%s\n", failures ? "FAIL data parallelism over NCCL" : "data parallelism over NCCL: every check passed");
  return failures ? 1 : 0;
}
