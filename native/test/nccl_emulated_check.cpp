/* The NCCL communicator and the data-parallel path of a GPU model, in CI: the CUDA backend under the CPU
 * emulation (test/emu), NCCL's contract over gloo (emu/nccl_emulated.cpp) loaded through the real run-time search,
 * ranks as processes (the emulation is one OS thread's). Checks:
 *   - the communicator alone on 3 ranks, non-blocking (NCCL 2.14+) and blocking (as NCCL 2.13 joins): reduce-scatter
 *     and all-gather in NCCL's even layout with a remainder and in an uneven one, fp32 all-reduce, host sums in
 *     fp64 and fp32, broadcast, barrier; the C API's host-memory collectives refused; a peer that leaves fails the
 *     next collective; a peer that never joins fails the join within the timeout;
 *   - training on the emulated GPU: 1 rank without a communicator; 1 rank through NCCL (every path at world
 *     size 1); 2 and 3 ranks, ZeRO-1 and ZeRO-0, overlapped and not: the same losses and gradient norms to
 *     rounding, identical replicas, the same gathered moments;
 *   - context parallelism on the emulated GPU: a ring of 2, and 2 rings of 2 (fp32), the ring's stream-ordered
 *     exchange and the CUDA block kernels, following 1 rank as above;
 *   - a model whose device is not the communicator's is refused.
 * What it cannot check: NCCL's speed and its stream ordering (the emulation runs work when it is queued).
 * Prints one line per check and "N passed, N failed"; exits non-zero on failure. */
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "../include/chuxin.h"
#include "../src/comm/communicator.h"

namespace {

int passed = 0, failed = 0;
void expect(bool ok, const std::string& name, const std::string& detail = "") {
  (ok ? passed : failed)++;
  std::printf("%s %s%s%s\n", ok ? "ok  " : "FAIL", name.c_str(), detail.empty() ? "" : ": ", detail.c_str());
  std::fflush(stdout);
}

int next_port = 0;

/* Runs body(rank) in `ranks` processes; each returns a line of text (or throws); the lines in rank order. */
std::vector<std::string> on_ranks(int ranks, const std::function<std::string(int rank, int port)>& body) {
  const int port = next_port++;
  std::vector<int> fds;
  std::vector<pid_t> pids;
  for (int r = 0; r < ranks; r++) {
    int fd[2];
    if (pipe(fd) != 0) return {};
    const pid_t pid = fork();
    if (pid == 0) {
      close(fd[0]);
      std::string out;
      try {
        out = body(r, port);
      } catch (const std::exception& e) {
        out = std::string("error ") + e.what();
      }
      (void)!write(fd[1], out.data(), out.size());
      close(fd[1]);
      _exit(0);
    }
    close(fd[1]);
    fds.push_back(fd[0]);
    pids.push_back(pid);
  }
  std::vector<std::string> lines;
  for (int r = 0; r < ranks; r++) {
    std::string s;
    char buf[4096];
    for (ssize_t n; (n = read(fds[(size_t)r], buf, sizeof buf)) > 0;) s.append(buf, (size_t)n);
    close(fds[(size_t)r]);
    int status = 0;
    waitpid(pids[(size_t)r], &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) s = "error rank " + std::to_string(r) + " crashed (status " + std::to_string(status) + ")";
    lines.push_back(s);
  }
  return lines;
}

void ok_or_throw(int code, const cx_status& st) {
  if (code != CX_OK) throw std::runtime_error(st.message);
}

cx_comm* join(int rank, int ranks, int port, int device = 0, int timeout_ms = 60000) {
  cx_status st{};
  cx_comm* comm = nullptr;
  const cx_comm_options o{"nccl", rank, ranks, "127.0.0.1", port, timeout_ms, device};
  ok_or_throw(cx_comm_create(&o, &comm, &st), st);
  return comm;
}

/* Point-to-point as ring attention uses it (ncclSend and ncclRecv in one group): each rank sends a block to the
 * next and receives the previous one's, round the whole ring; "" or what differed. */
std::string ring_exchange(cx::Communicator* c, int rank, int ranks) {
  const int next = (rank + 1) % ranks, previous = (rank + ranks - 1) % ranks;
  std::vector<float> held(257), incoming(257);
  for (size_t i = 0; i < held.size(); i++) held[i] = (float)(rank * 1000 + (int)i);
  std::string problems;
  for (int step = 1; step <= ranks; step++) {
    c->exchange(held.data(), held.size() * 4, next, incoming.data(), incoming.size() * 4, previous);
    held.swap(incoming);
    const int owner = ((rank - step) % ranks + ranks) % ranks;
    for (size_t i = 0; i < held.size(); i++)
      if (held[i] != (float)(owner * 1000 + (int)i)) return " exchange (step " + std::to_string(step) + ")";
  }
  return problems;
}

/* The communicator alone: each collective's result checked on every rank; "ok" or what differed. */
std::string collectives(int rank, int ranks, int port) {
  cx_comm* comm = join(rank, ranks, port);
  cx::Communicator* c = cx_comm_impl(comm);
  std::string problems;
  auto value = [](int r, size_t i) { return (float)((r + 1) * 1000 + (int)i); };
  auto sum_over_ranks = [&](size_t i) {
    float s = 0;
    for (int r = 0; r < ranks; r++) s += value(r, i);
    return s;
  };
  // NCCL's even layout with a remainder on the last rank, and an uneven one (one rooted reduce per piece).
  for (const std::vector<size_t>& counts : {std::vector<size_t>{4, 4, 6}, std::vector<size_t>{5, 1, 3}, std::vector<size_t>{0, 0, 2}}) {
    size_t n = 0, own = 0;
    for (int r = 0; r < ranks; r++) (r < rank ? own : n) += counts[(size_t)r];
    n += own;
    std::vector<float> data(n);
    for (size_t i = 0; i < n; i++) data[i] = value(rank, i);
    c->reduce_scatter(data.data(), counts);
    for (size_t i = own; i < own + counts[(size_t)rank]; i++)
      if (data[i] != sum_over_ranks(i)) problems += " reduce-scatter[" + std::to_string(i) + "]";
    for (size_t i = 0; i < n; i++) data[i] = (size_t)i >= own && i < own + counts[(size_t)rank] ? value(rank, i) : -1.f;
    c->all_gather(data.data(), counts);
    size_t at = 0;
    for (int r = 0; r < ranks; r++)
      for (size_t k = 0; k < counts[(size_t)r]; k++, at++)
        if (data[at] != value(r, at)) problems += " all-gather[" + std::to_string(at) + "]";
  }
  std::vector<float> all(7);
  for (size_t i = 0; i < all.size(); i++) all[i] = value(rank, i);
  c->all_reduce(all.data(), all.size());
  for (size_t i = 0; i < all.size(); i++)
    if (all[i] != sum_over_ranks(i)) problems += " all-reduce";
  double host[2] = {0.5 * (rank + 1), 1e-300};
  c->all_reduce_host(host, 2);
  if (host[0] != 0.5 * ranks * (ranks + 1) / 2 || host[1] != ranks * 1e-300) problems += " host sum (fp64)";
  float f = 0.25f * (float)(rank + 1);
  c->all_reduce_host(&f, 1);
  if (f != 0.25f * (float)(ranks * (ranks + 1) / 2)) problems += " host sum (fp32)";
  char bytes[16] = {0};
  if (rank == 1) std::snprintf(bytes, sizeof bytes, "from rank one");
  c->broadcast(bytes, sizeof bytes, 1);
  if (std::string(bytes) != "from rank one") problems += " broadcast";
  c->barrier();
  problems += ring_exchange(c, rank, ranks);
  // The C API's _host collectives take host memory, which NCCL cannot reduce: refused before any rank waits.
  cx_status st{};
  const size_t three[3] = {1, 1, 1};
  float scratch[3] = {0, 0, 0};
  if (cx_comm_reduce_scatter_host(comm, scratch, three, &st) != CX_INVALID_ARGUMENT || !std::strstr(st.message, "takes host memory"))
    problems += " host reduce-scatter accepted";
  const std::string name = c->name();
  cx_comm_free(comm);
  return problems.empty() ? "ok " + name : "differ" + problems;
}

struct Setup {
  int ranks, zero;
  bool through_nccl, overlap;
  int precision = CX_FP32;  // CX_BF16: the compute copy is bf16, and ZeRO-1 gathers it in 16 bits
  int ring = 1;             // > 1: context parallelism, rings of this many ranks sharing each sequence
};

const cx_config kConfig{2, 32, 2, 64, 128, 32, 10000.f, 1e-5f};
constexpr int kMicroBatch = 2, kAccumulate = 6, kSteps = 3, kEos = 127;

/* Micro-batch a of step s (the same stream whatever the ranks): tokens with a document break. */
std::vector<int32_t> batch(int step, int a) {
  std::vector<int32_t> t((size_t)kMicroBatch * kConfig.max_seq);
  for (size_t i = 0; i < t.size(); i++) t[i] = (int32_t)((i * 31 + (size_t)(step * kAccumulate + a) * 17) % 120);
  t[t.size() / 3] = kEos;
  return t;
}

/* One rank's training: "losses ... norms ... moments X identical I", or "error ...". */
std::string train(const Setup& s, int rank, int port) {
  cx_status st{};
  cx_model* m = nullptr;
  ok_or_throw(cx_model_create(&kConfig, "cuda", 0, &m, &st), st);
  ok_or_throw(cx_model_init(m, 7, &st), st);
  cx_comm* comm = s.through_nccl ? join(rank, s.ranks, port) : nullptr;
  if (comm) ok_or_throw(cx_model_data_parallel(m, comm, s.zero, &st), st);
  cx_topology topology{1, 0, 1, 0, 0, 1};  // one rank alone
  if (s.ring > 1) ok_or_throw(cx_comm_context_parallel(comm, s.ring, &st), st);
  if (comm) ok_or_throw(cx_comm_topology(comm, &topology, &st), st);
  if (s.ring > 1) ok_or_throw(cx_model_context_parallel(m, comm, &st), st);
  const cx_run_options o{s.precision, 1, 1, 1, kEos, 0};
  std::ostringstream losses, norms;
  losses.precision(9), norms.precision(9);
  for (int step = 0; step < kSteps; step++) {
    ok_or_throw(cx_zero_grad(m, &st), st);
    double local[2] = {0, 0};
    const int share = topology.data_rank, shares = topology.data_ranks;  // a ring's members read the same rows
    for (int a = share; a < kAccumulate; a += shares) {
      const std::vector<int32_t> tokens = batch(step, a);
      double loss = 0;
      int64_t count = 0;
      ok_or_throw(cx_forward_backward(m, tokens.data(), kMicroBatch, kConfig.max_seq, &o, 1.f / (kAccumulate * kMicroBatch * kConfig.max_seq),
                                      comm && s.overlap && a + shares >= kAccumulate, &loss,
                                      &count, &st),
                  st);
      local[0] += loss, local[1] += (double)count;
    }
    if (comm) ok_or_throw(cx_comm_all_reduce_host(comm, local, 2, &st), st);
    const cx_adamw hp{3e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.f, step + 1};
    double norm = 0;
    ok_or_throw(cx_clip_adamw_step(m, &hp, 0.5f, &norm, &st), st);  // clipping on: the norm over every shard matters
    losses << " " << local[0] / local[1];
    norms << " " << norm;
  }
  int identical = -1;
  if (comm) ok_or_throw(cx_model_replicas_identical(m, &identical, nullptr, &st), st);
  // As a checkpoint reads them (collective: sharded moments gathered, out-of-date master pieces gathered first).
  double moments = 0, weights = 0;
  for (int i = 0; i < cx_tensor_count(m); i++) {
    int64_t rows = 0, cols = 0;
    cx_tensor_shape(m, i, &rows, &cols);
    std::vector<float> v((size_t)(rows * cols));
    ok_or_throw(cx_tensor_get(m, CX_ADAM_V, i, v.data(), &st), st);
    for (float x : v) moments += x;
    ok_or_throw(cx_tensor_get(m, CX_PARAM, i, v.data(), &st), st);
    for (float x : v) weights += std::fabs(x);
  }
  cx_model_free(m);
  if (comm) cx_comm_free(comm);
  std::ostringstream out;
  out.precision(12);
  out << "losses" << losses.str() << " norms" << norms.str() << " moments " << moments << " weights " << weights << " identical " << identical;
  return out.str();
}

std::vector<double> numbers_after(const std::string& line, const std::string& key, int n) {
  std::istringstream in(line.substr(line.find(key) + key.size()));
  std::vector<double> v((size_t)n);
  for (double& x : v) in >> x;
  return v;
}

double max_relative(const std::vector<double>& a, const std::vector<double>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); i++) worst = std::max(worst, std::fabs(a[i] - b[i]) / std::max(std::fabs(b[i]), 1e-30));
  return worst;
}

}  // namespace

int main(int argc, char** argv) {
  next_port = argc > 1 ? std::atoi(argv[1]) : 24000 + (int)(getpid() % 4000);
  setenv("CHUXIN_NCCL", CX_EMULATED_NCCL, 1);
  setenv("CHUXIN_CUBLASLT", CX_EMULATED_CUBLASLT, 1);

  // A non-blocking communicator (NCCL 2.14+, each call possibly "in progress"), and a blocking one as before 2.14.
  for (const char* version : {"", "21300"}) {
    const std::string how = *version ? "blocking (NCCL 2.13)" : "non-blocking";
    for (const std::string& line : on_ranks(3, [&](int r, int port) {
           if (*version) setenv("CHUXIN_EMULATED_NCCL_VERSION", version, 1);
           return collectives(r, 3, port);
         }))
      expect(line == "ok nccl", "nccl, " + how + ": reduce-scatter, all-gather (even, with a remainder, uneven), all-reduce, host sums, broadcast, barrier, exchange on 3 ranks", line);
  }
  // Point-to-point on rings of 1 (a rank to itself) and 2.
  for (int ranks : {1, 2})
    for (const std::string& line : on_ranks(ranks, [&](int r, int port) {
           cx_comm* comm = join(r, ranks, port);
           const std::string problems = ring_exchange(cx_comm_impl(comm), r, ranks);
           cx_comm_free(comm);
           return problems.empty() ? std::string("ok") : "differ" + problems;
         }))
      expect(line == "ok", "nccl: send/recv round a ring of " + std::to_string(ranks), line);

  // A rank that never comes: the others give up joining within the timeout instead of waiting forever.
  const auto alone = on_ranks(1, [](int r, int port) -> std::string {
    const auto start = std::chrono::steady_clock::now();
    std::string message = "joined";
    try {
      cx_comm_free(join(r, 2, port, 0, 2000));
    } catch (const std::exception& e) {
      message = e.what();
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return message + " (after " + std::to_string(s) + " s)";
  });
  const double waited = std::atof(alone[0].substr(alone[0].rfind("(after ") + 7).c_str());
  expect(alone[0].find("joining the NCCL group: not every rank joined within 2 s") != std::string::npos && waited < 10,
         "nccl: a rank that never joins makes the others fail within --dist-timeout", alone[0]);

  // A peer that leaves: the survivor's next collective fails with NCCL's reason instead of waiting.
  const auto gone = on_ranks(2, [](int r, int port) -> std::string {
    cx_comm* comm = join(r, 2, port);
    cx_status st{};
    ok_or_throw(cx_comm_barrier(comm, &st), st);  // both have joined
    if (r == 1) _exit(0);                          // then gone without a word
    double v = 1;
    const int code = cx_comm_all_reduce_host(comm, &v, 1, &st);
    return code == CX_OK ? "no error" : st.message;
  });
  expect(gone[0].find("NCCL") != std::string::npos && gone[0].find("summing host values") != std::string::npos,
         "nccl: a peer that leaves fails the next collective with a message, not a hang", gone[0]);

  for (const int precision : {CX_FP32, CX_BF16}) {
    const char* pname = precision == CX_FP32 ? "fp32" : "bf16";
    const std::string plain = on_ranks(1, [&](int r, int port) { return train({1, 1, false, false, precision}, r, port); })[0];
    expect(plain.rfind("losses", 0) == 0, std::string("emulated GPU, ") + pname + ", 1 rank without a communicator trains", plain);
    if (plain.rfind("losses", 0) != 0) continue;
    const auto want_losses = numbers_after(plain, "losses", kSteps), want_norms = numbers_after(plain, "norms", kSteps);
    const double want_moments = numbers_after(plain, "moments", 1)[0], want_weights = numbers_after(plain, "weights", 1)[0];
    std::vector<Setup> setups = {Setup{1, 1, true, true, precision}, Setup{3, 1, true, true, precision}, Setup{2, 1, true, true, precision, 2}};
    if (precision == CX_FP32)
      setups = {Setup{1, 1, true, true}, Setup{2, 1, true, true}, Setup{3, 1, true, true}, Setup{2, 0, true, true}, Setup{3, 1, true, false},
                Setup{2, 1, true, true, CX_FP32, 2}, Setup{4, 1, true, true, CX_FP32, 2}};
    for (const Setup& s : setups) {
      const std::string label = std::string(pname) + ", " + std::to_string(s.ranks) + " rank(s) through NCCL, ZeRO-" + std::to_string(s.zero) +
                                (s.overlap ? ", overlapped" : ", after the backward") +
                                (s.ring > 1 ? ", rings of " + std::to_string(s.ring) + " (context parallelism)" : "");
      const auto lines = on_ranks(s.ranks, [&](int r, int port) { return train(s, r, port); });
      bool ran = true;
      for (const std::string& l : lines) ran = ran && l.rfind("losses", 0) == 0;
      if (!ran) {
        for (const std::string& l : lines) expect(l.rfind("losses", 0) == 0, label, l);
        continue;
      }
      // Rank 0's record: every rank holds the same numbers (the replica check says so for the weights).
      const double dl = max_relative(numbers_after(lines[0], "losses", kSteps), want_losses);
      const double dn = max_relative(numbers_after(lines[0], "norms", kSteps), want_norms);
      const double dm = std::fabs(numbers_after(lines[0], "moments", 1)[0] - want_moments) / std::fabs(want_moments);
      const double dw = std::fabs(numbers_after(lines[0], "weights", 1)[0] - want_weights) / std::fabs(want_weights);
      bool identical = true;
      for (const std::string& l : lines) identical = identical && numbers_after(l, "identical", 1)[0] == 1;
      char detail[240];
      std::snprintf(detail, sizeof detail, "losses within %.1e, norms within %.1e, gathered moments within %.1e, weights within %.1e of 1 rank's; replicas %s",
                    dl, dn, dm, dw, identical ? "identical" : "DIFFER");
      // fp32 sums in another order than one rank's accumulation: rounding, as the CPU ranks' test bounds it; in
      // bf16 a rounding-level difference in a gradient can move a bf16 weight by one unit, so looser.
      const double bound = precision == CX_FP32 ? 1e-5 : 1e-3;
      expect(dl < bound && dn < bound && dm < (precision == CX_FP32 ? 1e-4 : 1e-3) && dw < bound && identical, label + " follows 1 rank", detail);
    }
  }

  const std::string mismatch = on_ranks(1, [](int r, int port) {
    cx_status st{};
    cx_model* m = nullptr;
    ok_or_throw(cx_model_create(&kConfig, "cpu", 1, &m, &st), st);
    cx_comm* comm = join(r, 1, port);
    const int code = cx_model_data_parallel(m, comm, 1, &st);
    cx_model_free(m);
    cx_comm_free(comm);
    return std::to_string(code) + " " + st.message;
  })[0];
  expect(mismatch.find("reduces the memory of CUDA device 0; the model's cpu backend is on the host (use gloo)") != std::string::npos,
         "a CPU model is refused by an NCCL communicator, naming both sides", mismatch);
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
