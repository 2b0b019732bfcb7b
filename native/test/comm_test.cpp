/* The communicator seam (include/chuxin.h, src/comm) over gloo: R ranks as threads of this process, each with
 * its own communicator joined through the TCP rendezvous on loopback, checked against sums computed here.
 * Values are small integers, so every sum is exact whatever order the library adds in.
 *   chuxin_comm_test [PORT]   (default: a port from the process id) */
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <numeric>
#include <stdexcept>
#include <thread>
#include <vector>

#include "../include/chuxin.h"
#include "../src/comm/communicator.h"
#include "check_registry.h"

using checks::report;

namespace {

int base_port = 0;

/* Runs body(rank, comm) on `world` ranks joined on a fresh port; returns the first failure's message, or "". */
std::string on_ranks(int world, const std::function<void(int, cx_comm*)>& body, int timeout_ms = 20000) {
  const int port = base_port++;
  std::vector<std::string> errors((size_t)world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; r++)
    threads.emplace_back([&, r] {
      cx_comm_options o{"gloo", r, world, "127.0.0.1", port, timeout_ms, -1};
      cx_comm* comm = nullptr;
      cx_status st{};
      if (cx_comm_create(&o, &comm, &st) != CX_OK) {
        errors[(size_t)r] = st.message;
        return;
      }
      try {
        body(r, comm);
      } catch (const std::exception& e) {
        errors[(size_t)r] = e.what();
      }
      cx_comm_free(comm);
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (!e.empty()) return e;
  return "";
}

void ok_or_throw(int code, const cx_status& st) {
  if (code != CX_OK) throw std::runtime_error(st.message);
}

/* Pieces of n elements over R ranks as the model splits a bucket. */
std::vector<size_t> pieces(size_t n, int R) {
  std::vector<size_t> c;
  for (int i = 0; i < R; i++) c.push_back(n * (size_t)(i + 1) / (size_t)R - n * (size_t)i / (size_t)R);
  return c;
}

}  // namespace

CX_CHECK(comm_collectives, "gloo collectives on 1, 2 and 3 ranks") {
  for (int world : {1, 2, 3}) {
    for (size_t n : {(size_t)1, (size_t)7, (size_t)1000, (size_t)65537}) {
      std::vector<double> worst((size_t)world, 0);
      const std::string error = on_ranks(world, [&](int r, cx_comm* comm) {
        cx_status st{};
        const std::vector<size_t> counts = pieces(n, world);
        const size_t own = std::accumulate(counts.begin(), counts.begin() + r, (size_t)0);
        // reduce-scatter: element i of rank r holds r + i % 97; the sum over ranks is world·(i % 97) + world(world-1)/2.
        std::vector<float> data(n);
        for (size_t i = 0; i < n; i++) data[i] = (float)(r + (int)(i % 97));
        ok_or_throw(cx_comm_reduce_scatter_host(comm, data.data(), counts.data(), &st), st);
        double err = 0;
        for (size_t i = own; i < own + counts[(size_t)r]; i++)
          err = std::max(err, std::fabs(data[i] - (double)(world * (int)(i % 97) + world * (world - 1) / 2)));
        // all-gather: each rank's piece is its rank number + 1.
        for (size_t i = 0; i < n; i++) data[i] = -1;
        for (size_t i = own; i < own + counts[(size_t)r]; i++) data[i] = (float)(r + 1);
        ok_or_throw(cx_comm_all_gather_host(comm, data.data(), counts.data(), &st), st);
        size_t at = 0;
        for (int q = 0; q < world; q++)
          for (size_t k = 0; k < counts[(size_t)q]; k++, at++) err = std::max(err, std::fabs(data[at] - (double)(q + 1)));
        // all-reduce of host doubles, broadcast, barrier.
        double values[2] = {(double)r, 1.0};
        ok_or_throw(cx_comm_all_reduce_host(comm, values, 2, &st), st);
        err = std::max(err, std::fabs(values[0] - world * (world - 1) / 2.0) + std::fabs(values[1] - world));
        uint64_t token = r == world - 1 ? 0x1234567890abcdefull : 0;
        ok_or_throw(cx_comm_broadcast_host(comm, &token, sizeof token, world - 1, &st), st);
        err = std::max(err, token == 0x1234567890abcdefull ? 0.0 : 1.0);
        ok_or_throw(cx_comm_barrier(comm, &st), st);
        worst[(size_t)r] = err;
      });
      if (!error.empty()) throw std::runtime_error(error);
      report("gloo: " + std::to_string(world) + " ranks, " + std::to_string(n) + " elements", *std::max_element(worst.begin(), worst.end()), 0);
    }
  }
}

/* Ring steps as ring attention takes them: each rank sends its block to the next and receives the previous one's,
 * several times in a row (a block goes round the whole ring), with the sizes a ring uses (equal) and unequal
 * ones (a key/value block and its gradients travel together, or alone on the way back). */
CX_CHECK(comm_exchange, "gloo point-to-point exchange around a ring of 1, 2 and 3 ranks") {
  for (int world : {1, 2, 3}) {
    std::vector<int> wrong((size_t)world, 0);
    const std::string err = on_ranks(world, [&](int r, cx_comm* comm) {
      cx_status st{};
      std::vector<float> held(1000), incoming(1000);
      for (size_t i = 0; i < held.size(); i++) held[i] = (float)(r * 10000 + (int)i);
      const int next = (r + 1) % world, previous = (r + world - 1) % world;
      for (int step = 1; step <= world; step++) {
        ok_or_throw(cx_comm_exchange_host(comm, held.data(), held.size() * 4, next, incoming.data(), incoming.size() * 4, previous, &st), st);
        held.swap(incoming);
        // After `step` steps this rank holds the block of rank r - step.
        const int owner = ((r - step) % world + world) % world;
        for (size_t i = 0; i < held.size(); i++) wrong[(size_t)r] += held[i] != (float)(owner * 10000 + (int)i);
      }
      // Unequal sizes in the two directions: this rank sends r + 1 values and receives previous + 1.
      std::vector<double> out((size_t)r + 1, r), in((size_t)previous + 1, -1);
      ok_or_throw(cx_comm_exchange_host(comm, out.data(), out.size() * 8, next, in.data(), in.size() * 8, previous, &st), st);
      for (double x : in) wrong[(size_t)r] += x != previous;
    });
    int bad = 0;
    for (int w : wrong) bad += w;
    report("exchange around a ring of " + std::to_string(world) + (err.empty() ? "" : " (" + err + ")"), err.empty() ? bad : 1, 0);
  }
}

/* Context parallelism against one rank: the tiny model's losses, gradient norms, first gradients and weights
 * after two AdamW steps on two rows (documents crossing the chunk edges in row 0, one document the whole row 1;
 * then the document mask off), on rings of 2 and 4 ranks and on 2 rings of 2 (data-parallel over the rings).
 * fp32 throughout: the ring merges each query's softmax from blocks (log-sum-exp) and sums the keys' gradients in
 * another order, so the results agree to fp32 rounding, not bit for bit: losses and norms to 1e-6 and the first
 * step's gradient to 1e-6 of its norm. The weights get a looser bound, 2e-3 of what two steps can move them
 * (lr · steps): AdamW divides each gradient element by its own magnitude, so an element whose gradient is near
 * zero turns its rounding into a visible share of its step. */
CX_CHECK(comm_topology, "the world's topology: rings of adjacent ranks, data parallelism over them, and each rank's targets") {
  cx_status st{};
  cx_topology t{};
  const bool refused = cx_topology_make(4, 0, 3, &t, &st) == CX_INVALID_ARGUMENT && std::strstr(st.message, "use a divisor of 4");
  report("topology: a ring size that does not divide the world is refused with the fix", refused ? 0 : 1, 0);
  const int world = 4;
  std::vector<cx_topology> seen((size_t)world);
  std::vector<std::vector<uint8_t>> masks((size_t)world);
  std::vector<int> comm_refused((size_t)world, 0);
  // Two rows of 16 with documents crossing the chunks of a ring of 2 (chunks of 4).
  constexpr int B = 2, T = 16, kEos = 2;
  std::vector<int32_t> tokens((size_t)(B * T), 5);
  tokens[6] = tokens[T + 2] = tokens[T + 13] = kEos;
  const cx_run_options o{CX_FP32, 1, 1, 1, kEos, 0};
  const std::string error = on_ranks(world, [&](int r, cx_comm* comm) {
    cx_status s{};
    comm_refused[(size_t)r] = cx_comm_context_parallel(comm, 3, &s) == CX_INVALID_ARGUMENT;
    ok_or_throw(cx_comm_context_parallel(comm, 2, &s), s);
    ok_or_throw(cx_comm_topology(comm, &seen[(size_t)r], &s), s);
    masks[(size_t)r].resize((size_t)(B * T));
    ok_or_throw(cx_target_mask(tokens.data(), B, T, &o, comm, masks[(size_t)r].data(), &s), s);
    ok_or_throw(cx_comm_barrier(comm, &s), s);  // nothing above talks to the peers: stay until all have joined
  });
  if (!error.empty()) throw std::runtime_error(error);
  double wrong = 0;
  for (int r = 0; r < world; r++) {
    const cx_topology& g = seen[(size_t)r];
    wrong += !comm_refused[(size_t)r];
    wrong += g.world != world || g.rank != r || g.ring_size != 2 || g.ring_index != r % 2 || g.data_rank != r / 2 || g.data_ranks != 2;
  }
  report("topology: rings of 2 on 4 ranks (members, shares; 3 refused)", wrong, 0);
  // Each ring's members hold disjoint positions, which together are the whole rows' targets.
  std::vector<uint8_t> whole((size_t)(B * T));
  ok_or_throw(cx_target_mask(tokens.data(), B, T, &o, nullptr, whole.data(), &st), st);
  double masks_wrong = 0;
  for (int ring = 0; ring < 2; ring++)
    for (size_t i = 0; i < whole.size(); i++) masks_wrong += masks[(size_t)(2 * ring)][i] + masks[(size_t)(2 * ring + 1)][i] != whole[i];
  report("topology: a ring's members' targets are the rows' targets, each once", masks_wrong, 0);
}

CX_CHECK(context_parallel, "a sequence split over a ring gives one rank's trajectory") {
  const cx_config cfg{2, 32, 2, 64, 128, 64, 10000.f, 1e-5f};
  constexpr int B = 2, T = 64, kEos = 127, kSteps = 2;
  std::vector<int32_t> tokens((size_t)B * T);
  for (size_t i = 0; i < tokens.size(); i++) tokens[i] = (int32_t)((i * 37 + 11) % 120);
  for (int t : {5, 21, 40}) tokens[(size_t)t] = kEos;  // row 0: documents 0-5, 6-21, 22-40, 41-63
  struct Result {
    std::vector<double> losses, norms;
    std::vector<float> weights, first_gradient;
  };
  auto all_tensors = [](cx_model* m, int kind) {
    std::vector<float> all;
    cx_status st{};
    for (int i = 0; i < cx_tensor_count(m); i++) {
      int64_t rows_i = 0, cols = 0;
      cx_tensor_shape(m, i, &rows_i, &cols);
      std::vector<float> w((size_t)(rows_i * cols));
      ok_or_throw(cx_tensor_get(m, kind, i, w.data(), &st), st);
      all.insert(all.end(), w.begin(), w.end());
    }
    return all;
  };
  // Steps of the rows [first, first + rows), the gradient scaled by the whole batch's targets.
  auto train = [&](cx_model* m, cx_comm* comm, int first, int rows, int doc_mask) {
    Result out;
    cx_status st{};
    const cx_run_options o{CX_FP32, doc_mask, doc_mask, 1, kEos, 0};
    std::vector<uint8_t> mask((size_t)B * T);
    ok_or_throw(cx_target_mask(tokens.data(), B, T, &o, nullptr, mask.data(), &st), st);
    const double targets = std::accumulate(mask.begin(), mask.end(), 0.0);
    for (int step = 1; step <= kSteps; step++) {
      ok_or_throw(cx_zero_grad(m, &st), st);
      double loss = 0;
      int64_t count = 0;
      ok_or_throw(cx_forward_backward(m, tokens.data() + (size_t)first * T, rows, T, &o, (float)(1 / targets), 0, &loss, &count, &st), st);
      double sums[2] = {loss, (double)count};
      if (comm) ok_or_throw(cx_comm_all_reduce_host(comm, sums, 2, &st), st);
      const cx_adamw hp{1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.f, step};
      double norm = 0;
      ok_or_throw(cx_clip_adamw_step(m, &hp, 1.f, &norm, &st), st);
      out.losses.push_back(sums[0] / sums[1]);
      out.norms.push_back(norm);
      if (step == 1) out.first_gradient = all_tensors(m, CX_GRAD);  // summed over the ranks by then
    }
    out.weights = all_tensors(m, CX_PARAM);
    return out;
  };
  auto fresh = [&] {
    cx_model* m = nullptr;
    cx_status st{};
    ok_or_throw(cx_model_create(&cfg, "cpu", 1, &m, &st), st);
    ok_or_throw(cx_model_init(m, 7, &st), st);
    return m;
  };
  for (int doc_mask : {1, 0}) {
    cx_model* single = fresh();
    const Result want = train(single, nullptr, 0, B, doc_mask);
    cx_model_free(single);
    for (auto [world, ring] : {std::pair{2, 2}, std::pair{4, 4}, std::pair{4, 2}}) {
      std::vector<Result> got((size_t)world);
      const std::string error = on_ranks(world, [&](int r, cx_comm* comm) {
        cx_status st{};
        cx_model* m = fresh();
        ok_or_throw(cx_model_data_parallel(m, comm, 0, &st), st);
        ok_or_throw(cx_comm_context_parallel(comm, ring, &st), st);
        ok_or_throw(cx_model_context_parallel(m, comm, &st), st);
        cx_topology topology{};
        ok_or_throw(cx_comm_topology(comm, &topology, &st), st);
        const int rows = B / topology.data_ranks;  // each ring takes its rows of the batch
        got[(size_t)r] = train(m, comm, topology.data_rank * rows, rows, doc_mask);
        cx_model_free(m);
      });
      if (!error.empty()) throw std::runtime_error(error);
      double loss = 0, norm = 0, weight = 0, gradient = 0;
      double reference = 0;
      for (float x : want.first_gradient) reference += (double)x * x;
      for (const Result& g : got) {
        double diff = 0;
        for (size_t i = 0; i < want.first_gradient.size(); i++) diff += std::pow((double)g.first_gradient[i] - want.first_gradient[i], 2);
        gradient = std::max(gradient, std::sqrt(diff / reference));
        for (int s = 0; s < kSteps; s++) {
          loss = std::max(loss, std::fabs(g.losses[(size_t)s] - want.losses[(size_t)s]) / want.losses[(size_t)s]);
          norm = std::max(norm, std::fabs(g.norms[(size_t)s] - want.norms[(size_t)s]) / want.norms[(size_t)s]);
        }
        for (size_t i = 0; i < want.weights.size(); i++) weight = std::max(weight, (double)std::fabs(g.weights[i] - want.weights[i]));
      }
      const std::string tag = std::to_string(world / ring) + " ring(s) of " + std::to_string(ring) + (doc_mask ? ", documents" : ", no document mask");
      report("context parallel loss, " + tag, loss, 1e-6);
      report("context parallel gradient norm, " + tag, norm, 1e-6);
      report("context parallel first gradient (|diff| / |g|), " + tag, gradient, 1e-6);
      report("context parallel weights (|diff| / (lr · steps)), " + tag, weight / (1e-2 * kSteps), 2e-3);
    }
  }
}

CX_CHECK(comm_repeated, "gloo reduce-scatter called back to back, the buffer rewritten at once (as training does)") {
  for (int world : {2, 3}) {
    const size_t n = 100003;
    std::vector<double> worst((size_t)world, 0);
    const std::string error = on_ranks(world, [&](int r, cx_comm* comm) {
      cx_status st{};
      const std::vector<size_t> counts = pieces(n, world);
      const size_t own = std::accumulate(counts.begin(), counts.begin() + r, (size_t)0);
      std::vector<float> data(n);
      for (int it = 0; it < 200; it++) {
        for (size_t i = 0; i < n; i++) data[i] = (float)((r + 1) * (it + 1) + (int)(i % 61));
        ok_or_throw(cx_comm_reduce_scatter_host(comm, data.data(), counts.data(), &st), st);
        for (size_t i = own; i < own + counts[(size_t)r]; i++)
          worst[(size_t)r] = std::max(worst[(size_t)r], std::fabs(data[i] - (double)((it + 1) * world * (world + 1) / 2 + world * (int)(i % 61))));
        std::fill(data.begin(), data.end(), -7.f);  // what zeroing the gradients does right after a step
      }
    });
    if (!error.empty()) throw std::runtime_error(error);
    report("gloo: 200 reduce-scatters back to back on " + std::to_string(world) + " ranks", *std::max_element(worst.begin(), worst.end()), 0);
  }
}

CX_CHECK(comm_failures, "a communicator's failures are statuses with messages") {
  cx_status st{};
  cx_comm* comm = nullptr;
  cx_comm_options bad{"gloo", 3, 2, "127.0.0.1", base_port++, 1000, -1};
  report("comm: a rank outside the world is refused", cx_comm_create(&bad, &comm, &st) == CX_INVALID_ARGUMENT && std::strstr(st.message, "rank 3") ? 0 : 1, 0);
  cx_comm_options unknown{"carrier-pigeon", 0, 1, "127.0.0.1", base_port++, 1000, -1};
  report("comm: an unknown library is refused, naming the known ones",
         cx_comm_create(&unknown, &comm, &st) == CX_INVALID_ARGUMENT && std::strstr(st.message, "gloo, nccl") ? 0 : 1, 0);
  // NCCL reduces GPU memory: a communicator without a device is refused before any library is looked for.
  cx_comm_options hostless{"nccl", 0, 1, "127.0.0.1", base_port++, 1000, -1};
  const int nccl_code = cx_comm_create(&hostless, &comm, &st);
  std::printf("     nccl without a device: %s\n", st.message);
#ifdef CX_WITH_CUDA
  const char* nccl_expected = "give the communicator the model's CUDA device";
#else
  const char* nccl_expected = "built without CUDA";
#endif
  report("comm: nccl without a CUDA device is unavailable, with the reason",
         nccl_code == CX_BACKEND_UNAVAILABLE && std::strstr(st.message, nccl_expected) ? 0 : 1, 0);
  // Rank 1 never comes: rank 0 gives up after its timeout, naming the rendezvous.
  const auto start = std::chrono::steady_clock::now();
  cx_comm_options alone{"gloo", 0, 2, "127.0.0.1", base_port++, 1500, -1};
  const int code = cx_comm_create(&alone, &comm, &st);
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("     missing rank: %.1f s: %s\n", waited, st.message);
  report("comm: a missing rank times out with a message", code != CX_OK && std::strstr(st.message, "rank 0 of 2") && waited < 10 ? 0 : 1, 0);
  // A peer that leaves: rank 1 frees its communicator at once, while rank 0 finishes joining or is in an
  // all-reduce; either call fails with a message (which one depends on timing), within the timeout.
  const auto left = std::chrono::steady_clock::now();
  const std::string error = on_ranks(2, [&](int r, cx_comm* c) {
    if (r == 1) return;
    double v = 1;
    cx_status s{};
    if (cx_comm_all_reduce_host(c, &v, 1, &s) == CX_OK) throw std::runtime_error("an all-reduce without its peer succeeded");
    throw std::runtime_error(s.message);
  }, 3000);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - left).count();
  std::printf("     peer gone: %.1f s: %s\n", took, error.c_str());
  report("comm: a peer that leaves fails the collective, not hangs", !error.empty() && error.find("succeeded") == std::string::npos && took < 10 ? 0 : 1, 0);
}

CX_CHECK(comm_turn_bounded, "a collective whose turn never comes fails after the timeout, and so does every later one") {
  // A ticket taken and never run stands for a collective ahead that hangs without failing: the next turn gives
  // up once the timeout (1 s here) and its 5 s margin pass with nothing done, and later turns fail at once.
  cx_comm_options o{"gloo", 0, 1, "127.0.0.1", base_port++, 1000, -1};
  cx_comm* comm = nullptr;
  cx_status st{};
  if (cx_comm_create(&o, &comm, &st) != CX_OK) {
    report("comm: a turn that never comes fails", 1, 0);
    return;
  }
  cx::Communicator* c = cx_comm_impl(comm);
  c->take_ticket();
  auto attempt = [&] {
    const auto start = std::chrono::steady_clock::now();
    std::string error;
    try {
      c->in_turn(c->take_ticket(), [] {});
    } catch (const std::exception& e) {
      error = e.what();
    }
    return std::make_pair(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), error);
  };
  const auto [first, why] = attempt();
  const auto [second, again] = attempt();
  std::printf("     first turn: %.1f s: %s; the next: %.2f s\n", first, why.c_str(), second);
  report("comm: a turn that never comes fails after the timeout with a message",
         first > 5.5 && first < 9 && why.find("waited 6 s for the collectives queued before this one") != std::string::npos ? 0 : 1, 0);
  report("comm: once a turn has failed so, later ones fail at once", second < 0.5 && !again.empty() ? 0 : 1, 0);
  cx_comm_free(comm);
}

int main(int argc, char** argv) {
  base_port = argc > 1 ? std::atoi(argv[1]) : 20000 + (int)(getpid() % 20000);
  return checks::run_cases(false);
}
