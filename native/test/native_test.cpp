/* Gradient checks of the CPU backend's differentiable ops and of the whole model (fp32), against central finite
 * differences, as registered cases (check_registry.h). Prints one line per check and a closing
 * "N passed, N failed" line; exits non-zero on failure. */
#include <cmath>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <functional>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "../include/chuxin.h"
#include "../src/model/backend.h"
#include "../src/model/batch_layout.h"
#include "check_registry.h"

using checks::report;
using cx::Backend;
using cx::Op;
using cx::Tensor;

/* Host vectors as the CPU backend's tensors. */
static Tensor t(std::vector<float>& v) { return cx::host_tensor(v.data(), (int64_t)v.size()); }
static Tensor t(std::vector<int32_t>& v) { return cx::host_tensor(v.data(), (int64_t)v.size()); }
static Tensor t(std::vector<double>& v) { return cx::host_tensor(v.data(), (int64_t)v.size()); }

static Backend* be() {
  static std::unique_ptr<Backend> cpu(cx::create_cpu_backend(2));
  return cpu.get();
}
static std::mt19937 rng(1234);
static constexpr int64_t N = 12, C = 16, F = 24, H = 2, D = C / H, B = 2, T = 6, V = 20;

static std::vector<float> randn(size_t n, std::mt19937& rng, float scale = 1.f) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

/* Checks d(sum(out * proj))/d(input) for every element of `input` (or a sample of them). */
static double check(std::vector<float>& input, const std::function<double()>& loss, const std::vector<float>& analytic, size_t samples,
                    std::mt19937& rng, float eps = 1e-2f) {
  double worst = 0;
  std::uniform_int_distribution<size_t> pick(0, input.size() - 1);
  for (size_t s = 0; s < std::min(samples, input.size()); s++) {
    const size_t i = samples >= input.size() ? s : pick(rng);
    const float orig = input[i];
    input[i] = orig + eps;
    const double lp = loss();
    input[i] = orig - eps;
    const double lm = loss();
    input[i] = orig;
    const double numeric = (lp - lm) / (2 * eps);
    const double err = std::fabs(numeric - analytic[i]) / std::max(1e-2, std::fabs(numeric) + std::fabs((double)analytic[i]));
    worst = std::max(worst, err);
  }
  return worst;
}

static double dot(const std::vector<float>& a, const std::vector<float>& b);

/* The derivative along a random direction, against the analytic gradient's projection on it. */
static double check_direction(std::vector<float>& input, const std::function<double()>& loss, const std::vector<float>& analytic, std::mt19937& rng) {
  std::normal_distribution<float> d(0.f, 1.f);
  std::vector<float> u(input.size()), saved = input;
  for (auto& x : u) x = d(rng);
  const float eps = 5e-2f / (float)std::sqrt((double)input.size());
  auto at = [&](float t) {
    for (size_t i = 0; i < input.size(); i++) input[i] = saved[i] + t * u[i];
    return loss();
  };
  const double numeric = (at(eps) - at(-eps)) / (2 * eps);
  input = saved;
  const double exact = dot(analytic, u);
  return std::fabs(numeric - exact) / std::max({std::fabs(numeric), std::fabs(exact), 1e-6});
}

static double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); i++) s += (double)a[i] * b[i];
  return s;
}

CX_CHECK(matmul, "matmul", Op::matmul_forward, Op::matmul_backward) {
  auto x = randn(N * C, rng), w = randn(F * C, rng), proj = randn(N * F, rng);
  std::vector<float> out(N * F), dx(N * C), dw(F * C, 0.f);
  auto loss = [&] { be()->matmul_forward(t(out), t(x), t(w), N, C, F, false); return dot(out, proj); };
  loss();
  be()->matmul_backward(t(dx), t(dw), t(proj), t(x), t(w), N, C, F, false, false);
  // Linear in each input: a wide step has no truncation error and less rounding noise.
  report("matmul dinp", check(x, loss, dx, 1000, rng, 0.25f), 1e-3);
  report("matmul dweight", check(w, loss, dw, 1000, rng, 0.25f), 1e-3);
}

CX_CHECK(rmsnorm, "rmsnorm", Op::rmsnorm_forward, Op::rmsnorm_backward) {
  auto x = randn(N * C, rng), w = randn(C, rng), proj = randn(N * C, rng);
  std::vector<float> out(N * C), rstd(N), dx(N * C, 0.f), dw(C, 0.f);
  auto loss = [&] { be()->rmsnorm_forward(t(out), t(rstd), t(x), t(w), N, C, 1e-5f, false); return dot(out, proj); };
  loss();
  be()->rmsnorm_backward(t(dx), t(dw), t(proj), t(x), t(w), t(rstd), N, C, false);
  report("rmsnorm dinp", check(x, loss, dx, 1000, rng), 2e-3);
  report("rmsnorm dweight", check(w, loss, dw, 1000, rng), 2e-3);
}

CX_CHECK(rope, "rope", Op::rope_forward, Op::rope_backward) {
  auto x = randn(N * C, rng), proj = randn(N * C, rng);
  std::vector<int32_t> pos(N);
  for (int64_t n = 0; n < N; n++) pos[n] = (int32_t)(n % 5) * 7;
  // The base frequencies with cos and sin as they are, and YaRN-like ones with its attention factor.
  for (const float scale : {1.f, 1.1386294f}) {
    std::vector<double> inv(D / 2);
    for (int64_t i = 0; i < D / 2; i++) inv[i] = std::pow(10000.0, -2.0 * (double)i / (double)D) / (scale == 1.f ? 1.0 : 1.0 + (double)i);
    auto loss = [&] { std::vector<float> y = x; be()->rope_forward(t(y), t(pos), N, H, D, t(inv), scale, false); return dot(y, proj); };
    std::vector<float> dx = proj;
    be()->rope_backward(t(dx), t(pos), N, H, D, t(inv), scale, false);
    report(scale == 1.f ? "rope dinp" : "rope dinp (scaled frequencies, cos/sin × 1.14)", check(x, loss, dx, 1000, rng), 1e-3);
  }
}

CX_CHECK(attention, "attention", Op::attention_forward, Op::attention_backward) {
  for (const int64_t AD : {D, (int64_t)32}) {  // two documents in row 0 and three in row 1; head sizes 8 and 32
    const int64_t AC = H * AD;
    auto q = randn(B * T * AC, rng), k = randn(B * T * AC, rng), v = randn(B * T * AC, rng), proj = randn(B * T * AC, rng);
    std::vector<int32_t> start = {0, 0, 0, 3, 3, 3, 0, 0, 2, 2, 4, 4};
    std::vector<float> out(B * T * AC), lse(B * H * T), dq(B * T * AC), dk(B * T * AC), dv(B * T * AC);
    auto loss = [&] { be()->attention_forward(t(out), t(lse), t(q), t(k), t(v), t(start), B, T, H, AD, false); return dot(out, proj); };
    loss();
    be()->attention_backward(t(dq), t(dk), t(dv), t(proj), t(out), t(lse), t(q), t(k), t(v), t(start), B, T,
                           H, AD, false);
    const std::string tag = " (head size " + std::to_string(AD) + ")";
    // Element-wise differences in fp32 carry ~1e-3 of rounding noise here; the directional check does not.
    report("attention dq" + tag, check(q, loss, dq, 1000, rng), 1e-2);
    report("attention dk" + tag, check(k, loss, dk, 1000, rng), 1e-2);
    report("attention dv" + tag, check(v, loss, dv, 1000, rng), 2e-3);
    report("attention dq, directional" + tag, check_direction(q, loss, dq, rng), 1e-3);
    report("attention dk, directional" + tag, check_direction(k, loss, dk, rng), 1e-3);
  }
}

/* Ring attention's pieces put back together: a row cut into 4 chunks, every (query chunk, key chunk) pair run as a
 * block at its offsets and merged by log-sum-exp, gives the whole row's attention; the blocks' backward, from the
 * merged output, sums to the whole row's gradients. Documents cross the chunk edges (0-19, 20-49, 50-63). */
CX_CHECK(attention_blocks, "attention in blocks at offsets equals the whole row's", Op::attention_block_forward, Op::attention_block_backward,
         Op::attention_combine) {
  constexpr int64_t RT = 64, Tc = 16, AC = H * 32, AD = 32;
  std::mt19937 r(99);
  auto q = randn(RT * AC, r), k = randn(RT * AC, r), v = randn(RT * AC, r), dout = randn(RT * AC, r);
  std::vector<int32_t> start(RT);
  for (int64_t i = 0; i < RT; i++) start[(size_t)i] = i < 20 ? 0 : i < 50 ? 20 : 50;
  std::vector<float> out(RT * AC), lse(H * RT), dq(RT * AC), dk(RT * AC), dv(RT * AC);
  be()->attention_forward(t(out), t(lse), t(q), t(k), t(v), t(start), 1, RT, H, AD, false);
  be()->attention_backward(t(dq), t(dk), t(dv), t(dout), t(out), t(lse), t(q), t(k), t(v), t(start), 1, RT, H, AD, false);
  auto chunk = [&](std::vector<float>& x, int64_t c) { return cx::host_tensor(x.data() + c * Tc * AC, Tc * AC); };
  auto starts = [&](int64_t c) { return cx::host_tensor(start.data() + c * Tc, Tc); };
  double out_err = 0, lse_err = 0, dq_err = 0, dkv_err = 0;
  std::vector<float> bdk(RT * AC, 0.f), bdv(RT * AC, 0.f);
  for (int64_t qc = 0; qc < RT / Tc; qc++) {
    std::vector<float> acc(Tc * AC, 0.f), acc_lse(H * Tc, -INFINITY), o(Tc * AC), l(H * Tc);
    for (int64_t kc = RT / Tc - 1; kc >= 0; kc--) {  // any order: the merge does not depend on it
      be()->attention_block_forward(t(o), t(l), chunk(q, qc), chunk(k, kc), chunk(v, kc), starts(qc), qc * Tc, kc * Tc, Tc, Tc, H, AD);
      be()->attention_combine(t(acc), t(acc_lse), t(o), t(l), Tc, H, AD);
    }
    for (int64_t x = 0; x < Tc * AC; x++) out_err = std::max(out_err, (double)std::fabs(acc[x] - out[qc * Tc * AC + x]));
    for (int64_t h = 0; h < H; h++)
      for (int64_t i = 0; i < Tc; i++) lse_err = std::max(lse_err, (double)std::fabs(acc_lse[h * Tc + i] - lse[h * RT + qc * Tc + i]));
    std::vector<float> bdq(Tc * AC, 0.f);
    for (int64_t kc = 0; kc < RT / Tc; kc++)
      be()->attention_block_backward(t(bdq), chunk(bdk, kc), chunk(bdv, kc), chunk(dout, qc), t(acc), t(acc_lse), chunk(q, qc), chunk(k, kc),
                                     chunk(v, kc), starts(qc), qc * Tc, kc * Tc, Tc, Tc, H, AD);
    for (int64_t x = 0; x < Tc * AC; x++) dq_err = std::max(dq_err, (double)std::fabs(bdq[x] - dq[qc * Tc * AC + x]));
  }
  for (int64_t x = 0; x < RT * AC; x++) dkv_err = std::max({dkv_err, (double)std::fabs(bdk[x] - dk[x]), (double)std::fabs(bdv[x] - dv[x])});
  // Both sides are fp32 with the same exp; the merge reorders sums, so agreement is to fp32 rounding.
  report("attention blocks merged: out", out_err, 1e-5);
  report("attention blocks merged: lse", lse_err, 1e-5);
  report("attention blocks backward: dq", dq_err, 1e-5);
  report("attention blocks backward: dk, dv", dkv_err, 1e-5);
}

/* The batch's layout over rings of 1 to 4: the members' chunks cover every row position once, each at its true
 * position, document start and target (the whole-row layout's); the ring's plan takes exactly the steps a
 * token-level mask needs; and the members' target masks add up to the whole rows'. */
CX_CHECK(batch_layout, "the batch's layout: zigzag chunks at their true positions, and the ring's plan") {
  constexpr int kEos = 2;
  const int64_t LB = 2, LT = 48;
  // Batch 0, row 0: documents 0-6, 7-40, 41-47; row 1: one document, then short ones at the end. Batch 1: documents
  // of 6 tokens, which chunks of 6 or 12 (rings of 4 or 2) hold whole, so no ring step is needed under the mask.
  std::vector<int32_t> crossing((size_t)(LB * LT), 5), aligned((size_t)(LB * LT), 5);
  for (int64_t at : {(int64_t)6, (int64_t)40, LT + 41, LT + 44}) crossing[(size_t)at] = kEos;
  for (size_t at = 5; at < aligned.size(); at += 6) aligned[at] = kEos;
  double misplaced = 0, plan = 0, masks = 0;
  int fewer_steps = 0;  // cases where the plan skips ring steps (so the plan check is not trivially size − 1)
  for (const std::vector<int32_t>* batch : {&crossing, &aligned})
    for (int doc_mask : {1, 0})
      for (int size : {1, 2, 3, 4}) {
        const std::vector<int32_t>& tokens = *batch;
        const cx_run_options o{CX_FP32, doc_mask, doc_mask, 1, kEos, 0};
        const cxm::BatchLayout whole(tokens.data(), LB, LT, o, nullptr);
        std::vector<int> held((size_t)(LB * LT), 0);
        std::vector<uint8_t> sum((size_t)(LB * LT), 0), want((size_t)(LB * LT)), mask((size_t)(LB * LT));
        whole.row_target_mask(want.data());
        int last = -1;
        for (int r = 0; r < size; r++) {
          const cxm::RingPlace ring{size, r};
          const cxm::BatchLayout l(tokens.data(), LB, LT, o, &ring);
          for (int64_t b = 0; b < LB; b++)
            for (int64_t t = 0; t < l.local_length(); t++) {
              const int64_t p = l.row_position(t), chunk = p / l.chunk();
              const size_t at = (size_t)(b * l.local_length() + t), row = (size_t)(b * LT + p);
              held[row]++;
              misplaced += chunk != r && chunk != 2 * size - 1 - r;  // zigzag: chunks r and 2·size−1−r
              misplaced += l.tokens()[at] != whole.tokens()[row] || l.positions()[at] != whole.positions()[row] ||
                           l.doc_starts()[at] != whole.doc_starts()[row] || l.targets()[at] != whole.targets()[row];
            }
          l.row_target_mask(mask.data());
          for (size_t i = 0; i < mask.size(); i++) sum[i] += mask[i];
          if (last >= 0) plan += l.last_ring_step() != last;  // every member plans the same steps
          last = l.last_ring_step();
        }
        for (int h : held) misplaced += h != 1;
        // The steps a token-level mask needs: at step s member r holds member r−s's keys.
        int need = 0;
        for (int s = 1; s < size; s++)
          for (int r = 0; r < size; r++) {
            const cxm::RingPlace q{size, r}, k{size, ((r - s) % size + size) % size};
            const cxm::BatchLayout lq(tokens.data(), LB, LT, o, &q), lk(tokens.data(), LB, LT, o, &k);
            for (int64_t b = 0; b < LB; b++)
              for (int64_t i = 0; i < lq.local_length(); i++)
                for (int64_t j = 0; j < lk.local_length(); j++) {
                  const int64_t qi = lq.row_position(i), kj = lk.row_position(j);
                  if (kj <= qi && kj >= lq.doc_starts()[(size_t)(b * lq.local_length() + i)]) need = std::max(need, s);
                }
          }
        plan += last != need;
        fewer_steps += last < size - 1;
        masks += sum != want;
      }
  report("layout: chunks held once, at their true places", misplaced, 0);
  report("layout: the ring's plan takes the steps the mask needs", plan, 0);
  report("layout: some plans skip ring steps", fewer_steps > 0 ? 0 : 1, 0);
  report("layout: the members' target masks add up to the rows'", masks, 0);
  bool refused = false;
  try {
    const cxm::RingPlace three{3, 0};
    const cx_run_options o{CX_FP32, 1, 1, 1, kEos, 0};
    cxm::BatchLayout(crossing.data(), 1, 40, o, &three);
  } catch (const std::exception& e) {
    refused = std::strstr(e.what(), "divisible by 6") != nullptr;
  }
  report("layout: a context not divisible by 2 x ring size is refused with the fix", refused ? 0 : 1, 0);
}

CX_CHECK(swiglu, "swiglu", Op::swiglu_forward, Op::swiglu_backward) {
  auto g = randn(N * F, rng), u = randn(N * F, rng), proj = randn(N * F, rng);
  std::vector<float> out(N * F), dg(N * F), du(N * F);
  auto loss = [&] { be()->swiglu_forward(t(out), t(g), t(u), N * F, false); return dot(out, proj); };
  loss();
  be()->swiglu_backward(t(dg), t(du), t(proj), t(g), t(u), N * F, false);
  report("swiglu dgate", check(g, loss, dg, 1000, rng), 1e-3);
  report("swiglu dup", check(u, loss, du, 1000, rng), 1e-3);
}

CX_CHECK(embedding, "embedding", Op::embedding_forward, Op::embedding_backward) {
  auto wte = randn(V * C, rng), proj = randn(N * C, rng);
  std::vector<int32_t> tok(N);
  for (int64_t n = 0; n < N; n++) tok[n] = (int32_t)((n * 7) % V);
  tok[3] = tok[0];  // a repeated token accumulates
  std::vector<float> out(N * C), dw(V * C, 0.f);
  auto loss = [&] { be()->embedding_forward(t(out), t(tok), t(wte), N, C, false); return dot(out, proj); };
  be()->embedding_backward(t(dw), t(proj), t(tok), N, C, false);
  report("embedding dweight", check(wte, loss, dw, 1000, rng), 1e-3);
}

CX_CHECK(cross_entropy, "fused LM head + cross-entropy, with ignored targets", Op::lm_head_cross_entropy) {
  auto h = randn(N * C, rng, 0.5f), w = randn(V * C, rng, 0.5f);
  std::vector<int32_t> tgt(N);
  for (int64_t n = 0; n < N; n++) tgt[n] = n % 4 == 3 ? -1 : (int32_t)((n * 5) % V);
  std::vector<float> losses(N), dh(N * C), dw(V * C, 0.f);
  const float scale = 1.f / 9.f;
  auto loss = [&] {
    be()->lm_head_cross_entropy(t(losses), nullptr, nullptr, t(h), t(w), t(tgt), N, C, V, 1.f, false);
    double s = 0;
    for (float l : losses) if (!std::isnan(l)) s += l;
    return s * scale;
  };
  be()->lm_head_cross_entropy(t(losses), t(dh), t(dw), t(h), t(w), t(tgt), N, C, V, scale, false);
  report("cross-entropy dhidden", check(h, loss, dh, 1000, rng), 2e-3);
  report("cross-entropy dweight", check(w, loss, dw, 1000, rng), 2e-3);
}

CX_CHECK(whole_model, "the whole model, fp32, several documents per row") {
  cx_config cfg{2, 16, 2, 24, 40, 16, 10000.f, 1e-5f};
  cx_model* m = nullptr;
  cx_status st{};
  if (cx_model_create(&cfg, "cpu", 2, &m, &st) != CX_OK || cx_model_init(m, 5, &st) != CX_OK) {
    throw std::runtime_error(std::string("model create: ") + st.message);
  }
  // Larger weights than the 0.02 init, so gradients stand well above fp32 rounding in the differences.
  for (int i = 0; i < cx_tensor_count(m); i++) {
    int64_t r, c;
    cx_tensor_shape(m, i, &r, &c);
    std::vector<float> p(r * c);
    cx_tensor_get(m, CX_PARAM, i, p.data(), &st);
    std::normal_distribution<float> jitter(0.f, 0.2f);
    for (auto& x : p) x = r > 1 ? x * 5.f : 1.f + jitter(rng);
    cx_tensor_set(m, CX_PARAM, i, p.data(), &st);
  }
  const int Bm = 2, Tm = 12;
  std::vector<int32_t> tokens(Bm * Tm);
  for (int i = 0; i < Bm * Tm; i++) tokens[i] = (i * 13 + 5) % 39;
  tokens[4] = 39;  // EOS ends a document mid-row
  tokens[15] = 39;
  tokens[19] = 39;
  cx_run_options o{CX_FP32, 1, 1, 1, 39, 0};
  double sum = 0;
  int64_t count = 0;
  auto loss = [&] {
    std::vector<float> l(Bm * Tm);
    cx_forward_losses(m, tokens.data(), Bm, Tm, &o, l.data(), &st);
    double s = 0;
    for (float x : l) if (!std::isnan(x)) s += x;
    return s;
  };
  cx_zero_grad(m, &st);
  cx_forward_backward(m, tokens.data(), Bm, Tm, &o, 1.f, 0, &sum, &count, &st);
  // Per tensor, the derivative along a random direction: many elements at once, so the difference
  // stands far above fp32 rounding.
  double worst = 0;
  for (int i = 0; i < cx_tensor_count(m); i++) {
    int64_t r, c;
    cx_tensor_shape(m, i, &r, &c);
    std::vector<float> p(r * c), g(r * c), moved(r * c);
    cx_tensor_get(m, CX_PARAM, i, p.data(), &st);
    cx_tensor_get(m, CX_GRAD, i, g.data(), &st);
    const std::vector<float> u = randn(r * c, rng);
    const float eps = 5e-2f / (float)std::sqrt((double)(r * c));
    auto at = [&](float t) {
      for (size_t j = 0; j < p.size(); j++) moved[j] = p[j] + t * u[j];
      cx_tensor_set(m, CX_PARAM, i, moved.data(), &st);
      return loss();
    };
    const double numeric = (at(eps) - at(-eps)) / (2 * eps);
    cx_tensor_set(m, CX_PARAM, i, p.data(), &st);
    const double analytic = dot(g, u);
    const double err = std::fabs(numeric - analytic) / std::max({std::fabs(numeric), std::fabs(analytic), 1e-3});
    if (err > 1e-3) std::printf("     %s: numeric %.6g analytic %.6g\n", cx_tensor_name(m, i), numeric, analytic);
    worst = std::max(worst, err);
  }
  report("whole model, every tensor (directional)", worst, 1e-2);
  cx_model_free(m);
}

CX_CHECK(recompute, "recomputation: the same loss and gradients bit for bit, with the activations of one block instead of all") {
  cx_config cfg{3, 16, 2, 24, 40, 16, 10000.f, 1e-5f};
  cx_status st{};
  cx_model *full = nullptr, *rec = nullptr;
  if (cx_model_create(&cfg, "cpu", 2, &full, &st) != CX_OK || cx_model_init(full, 9, &st) != CX_OK ||
      cx_model_create(&cfg, "cpu", 2, &rec, &st) != CX_OK || cx_model_init(rec, 9, &st) != CX_OK) {
    throw std::runtime_error(std::string("model create: ") + st.message);
  }
  const int Bm = 2, Tm = 16;
  std::vector<int32_t> tokens(Bm * Tm);
  for (int i = 0; i < Bm * Tm; i++) tokens[i] = (i * 7 + 3) % 39;
  tokens[5] = tokens[20] = 39;
  for (int precision : {CX_FP32, CX_BF16}) {
    cx_run_options o{precision, 1, 1, 1, 39, 0}, r{precision, 1, 1, 1, 39, 1};
    double sf = 0, sr = 0;
    int64_t cf = 0, cr = 0;
    cx_zero_grad(full, &st);
    cx_zero_grad(rec, &st);
    const bool ran = cx_forward_backward(full, tokens.data(), Bm, Tm, &o, 0.1f, 0, &sf, &cf, &st) == CX_OK &&
                     cx_forward_backward(rec, tokens.data(), Bm, Tm, &r, 0.1f, 0, &sr, &cr, &st) == CX_OK;
    size_t differing = ran ? 0 : 1;
    for (int i = 0; ran && i < cx_tensor_count(full); i++) {
      int64_t rows, cols;
      cx_tensor_shape(full, i, &rows, &cols);
      std::vector<float> a(rows * cols), b(rows * cols);
      cx_tensor_get(full, CX_GRAD, i, a.data(), &st);
      cx_tensor_get(rec, CX_GRAD, i, b.data(), &st);
      differing += std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) != 0;
    }
    const std::string tag = precision == CX_FP32 ? " (fp32)" : " (bf16)";
    report("recompute: same loss" + tag, sf == sr && cf == cr ? 0 : 1, 0);
    report("recompute: gradient tensors that differ" + tag, (double)differing, 0);
  }
  size_t states_full, states_rec, act_full, act_rec;
  cx_model_memory(full, &states_full, &act_full);
  cx_model_memory(rec, &states_rec, &act_rec);
  std::printf("     activations: %zu bytes kept, %zu recomputed (3 blocks)\n", act_full, act_rec);
  report("recompute: less activation memory", act_rec < act_full && states_rec == states_full ? 0 : 1, 0);
  cx_model_free(full);
  cx_model_free(rec);
}

CX_CHECK(tokenizer_capi, "the tokenizer's C API") {
  // A byte vocabulary (token i is byte i), one merge ("h" + "i" -> 256), digits split.
  std::vector<uint8_t> bytes(256);
  std::vector<uint32_t> offsets(258);
  for (uint32_t i = 0; i < 256; i++) bytes[i] = (uint8_t)i, offsets[i] = i;
  offsets[256] = 256;
  bytes.push_back('h'), bytes.push_back('i');
  offsets[257] = 258;
  const std::vector<uint32_t> merges = {'h', 'i', 256}, numeric = {'0', '9'}, whitespace = {' ', ' '};
  const cx_pretokenize_step steps[] = {{CX_DIGITS, nullptr, 0}};
  cx_tokenizer_spec spec{bytes.data(), bytes.size(), offsets.data(), offsets.size(), merges.data(), merges.size(), nullptr, 0, steps, 1,
                         whitespace.data(), whitespace.size(), numeric.data(), numeric.size()};
  cx_tokenizer* tok = nullptr;
  cx_status st{};
  if (cx_tokenizer_create(&spec, 2, &tok, &st) != CX_OK) throw std::runtime_error(st.message);
  const char* texts[] = {"hi 42", ""};
  const size_t lengths[] = {5, 0};
  cx_token_batch batch{};
  const bool encoded = cx_tokenizer_encode_batch(tok, texts, lengths, 2, &batch, &st) == CX_OK;
  const std::vector<uint32_t> ids = encoded ? std::vector<uint32_t>(batch.ids, batch.ids + batch.n_ids) : std::vector<uint32_t>();
  const std::vector<uint32_t> expected = {256, ' ', '4', '2'};
  report("tokenizer: a batch encodes with merges and split digits", encoded && ids == expected && batch.lengths[0] == 4 && batch.lengths[1] == 0 ? 0 : 1, 0);
  char* text = nullptr;
  size_t length = 0;
  const bool decoded = cx_tokenizer_decode(tok, ids.data(), ids.size(), 0, &text, &length, &st) == CX_OK;
  report("tokenizer: decode gives the text back", decoded && std::string(text, length) == "hi 42" ? 0 : 1, 0);
  cx_string_free(text);
  cx_token_batch_free(&batch);
  cx_tokenizer_free(tok);
  // A malformed spec is a status with a message, not an abort.
  spec.n_merges = 2;
  const int code = cx_tokenizer_create(&spec, 1, &tok, &st);
  report("tokenizer: a malformed spec returns a status", code == CX_INVALID_ARGUMENT && std::strstr(st.message, "triples") ? 0 : 1, 0);
}

int main() { return checks::run_cases(false); }
