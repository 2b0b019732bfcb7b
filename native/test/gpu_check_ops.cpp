/* The GPU check's per-op part, as registered cases (check_registry.h): every op of the CUDA backend against the
 * CPU backend on fresh random inputs with poisoned outputs, fp32 and bf16, and the fused attention at the ChuXin
 * head size against the CPU and the reference CUDA kernels. The program fails while an op of backend.h's list
 * has no case here. */
#include <cmath>
#include <cstdlib>

#include "gpu_check_util.h"

namespace {

constexpr int64_t B = 2, T = 96, H = 4, D = 32, C = H * D, F = 200, V = 1000, N = B * T;

/* What every case runs per precision: the tolerance and the name tag of its lines. */
struct Precision {
  bool bf16;
  double tol;
  std::string tag;
};
template <typename Fn>
void each_precision(Fn&& fn) {
  for (bool bf16 : {false, true}) fn(Precision{bf16, bf16 ? 1e-2 : 1e-5, bf16 ? " (bf16)" : " (fp32)"});
}

/* Positions, document starts (three documents per row), token ids and targets for a [B][T] batch. */
struct Batch {
  std::vector<int32_t> pos = std::vector<int32_t>(N), start = std::vector<int32_t>(N), tok = std::vector<int32_t>(N),
                       tgt = std::vector<int32_t>(N);
  Batch() {
    for (int64_t n = 0; n < N; n++) {
      const int64_t t = n % T, begin = t < 30 ? 0 : t < 70 ? 30 : 70;
      pos[n] = (int32_t)(t - begin);
      start[n] = (int32_t)begin;
      tok[n] = (int32_t)((n * 7919) % V);
      tgt[n] = t == T - 1 ? -1 : (int32_t)((n * 104729) % V);
    }
  }
};

}  // namespace

CX_CHECK(storage, "storage: fill and rounding into the run's storage", Op::fill, Op::copy_round) {
  each_precision([](const Precision& p) {
    const int64_t n = 4099;  // not a multiple of a vector width
    Pair src(cpu, gpu, n), dst(cpu, gpu, n, p.bf16), filled(cpu, gpu, n, p.bf16);
    src.set(randn(n));
    dst.poison();
    cpu->copy_round(dst.c, src.c, n, p.bf16);
    gpu->copy_round(dst.g, src.g, n, p.bf16);
    report("copy_round" + p.tag, dst.diff(), 0);
    cpu->fill(filled.c, 0.25f, n);
    gpu->fill(filled.g, 0.25f, n);
    report("fill" + p.tag, filled.diff(), 0);
  });
}

CX_CHECK(matmul, "matmul", Op::matmul_forward, Op::matmul_backward) {
  each_precision([](const Precision& p) {
    const bool bf16 = p.bf16, A = bf16;  // activations and compute weights of a bf16 run
    const double tol = p.tol;
    const std::string& tag = p.tag;
    Pair x(cpu, gpu, N * C, A), w(cpu, gpu, F * C, A), y(cpu, gpu, N * F, A), dx(cpu, gpu, N * C, A), dw(cpu, gpu, F * C);
    x.set(rounded(randn(N * C), bf16));
    w.set(rounded(randn(F * C, 0.1f), bf16));
    y.poison();
    cpu->matmul_forward(y.c, x.c, w.c, N, C, F, bf16);
    gpu->matmul_forward(y.g, x.g, w.g, N, C, F, bf16);
    report("matmul_forward" + tag, y.diff(), tol);
    y.set(rounded(randn(N * F), bf16));
    dx.poison();
    dw.set(std::vector<float>(F * C, 0.f));
    cpu->matmul_backward(dx.c, dw.c, y.c, x.c, w.c, N, C, F, false, bf16);
    gpu->matmul_backward(dx.g, dw.g, y.g, x.g, w.g, N, C, F, false, bf16);
    report("matmul_backward dinp" + tag, dx.diff(), tol);
    report("matmul_backward dweight" + tag, dw.diff(), bf16 ? 1e-4 : tol);
    dx.set(rounded(randn(N * C), bf16));  // accumulating into what an earlier projection left (beta = 1, one rounding)
    cpu->matmul_backward(dx.c, nullptr, y.c, x.c, w.c, N, C, F, true, bf16);
    gpu->matmul_backward(dx.g, nullptr, y.g, x.g, w.g, N, C, F, true, bf16);
    report("matmul_backward dinp, accumulating" + tag, dx.diff(), tol);
    // Operands and output one element past an allocation's start, so not 256-byte aligned (as the LM head's row
    // chunks can be): every access goes through the offset view, as the storage contract asks.
    Pair xo(cpu, gpu, N * C + 1, A), wo(cpu, gpu, F * C + 1, A), yo(cpu, gpu, N * F + 1, A);
    const auto hx = rounded(randn(N * C), bf16), hw = rounded(randn(F * C, 0.1f), bf16);
    for (Backend* be : {cpu, gpu}) {
      const bool on_cpu = be == cpu;
      be->upload_values((on_cpu ? xo.c : xo.g) + 1, hx.data(), N * C);
      be->upload_values((on_cpu ? wo.c : wo.g) + 1, hw.data(), F * C);
      be->fill(on_cpu ? yo.c : yo.g, poison_value(), N * F + 1);
      be->matmul_forward((on_cpu ? yo.c : yo.g) + 1, (on_cpu ? xo.c : xo.g) + 1, (on_cpu ? wo.c : wo.g) + 1, N, C, F, bf16);
    }
    std::vector<float> a(N * F), b(N * F);
    cpu->download_values(a.data(), yo.c + 1, N * F);
    gpu->download_values(b.data(), yo.g + 1, N * F);
    report("matmul_forward, unaligned pointers" + tag, rel_err(a, b), tol);
  });
}

CX_CHECK(rmsnorm, "rmsnorm and the residual add", Op::rmsnorm_forward, Op::rmsnorm_backward, Op::residual_forward,
         Op::residual_rmsnorm_forward) {
  each_precision([](const Precision& p) {
    const bool bf16 = p.bf16, A = bf16;
    const double tol = p.tol;
    const std::string& tag = p.tag;
    Pair x(cpu, gpu, N * C, A), nw(cpu, gpu, C, A), rs(cpu, gpu, N), out(cpu, gpu, N * C, A), dx(cpu, gpu, N * C, A), dnw(cpu, gpu, C);
    x.set(rounded(randn(N * C), bf16));
    nw.set(rounded(randn(C), bf16));
    out.poison();
    cpu->rmsnorm_forward(out.c, rs.c, x.c, nw.c, N, C, 1e-5f, bf16);
    gpu->rmsnorm_forward(out.g, rs.g, x.g, nw.g, N, C, 1e-5f, bf16);
    report("rmsnorm_forward" + tag, out.diff(), tol);
    {  // the same norm through views one element off 16-byte alignment: the bf16 row kernels' scalar branch
       // must sum in the vector branch's order, so the bits match
      Pair xo(cpu, gpu, N * C + 1, A), wo(cpu, gpu, C + 1, A), oo(cpu, gpu, N * C + 1, A), ro(cpu, gpu, N);
      std::vector<float> hx(N * C), hw(C);
      gpu->download_values(hx.data(), x.g, N * C);
      gpu->download_values(hw.data(), nw.g, C);
      gpu->upload_values(xo.g + 1, hx.data(), N * C);
      gpu->upload_values(wo.g + 1, hw.data(), C);
      gpu->fill(oo.g, poison_value(), N * C + 1);
      gpu->rmsnorm_forward(oo.g + 1, ro.g, xo.g + 1, wo.g + 1, N, C, 1e-5f, bf16);
      std::vector<float> a(N * C), b(N * C);
      gpu->download_values(a.data(), out.g, N * C);
      gpu->download_values(b.data(), oo.g + 1, N * C);
      report("rmsnorm_forward, unaligned pointers, same bits (GPU)" + tag, std::max(rel_err(a, b), ro.diff(gpu, rs.g)), 0);
    }
    dx.set(std::vector<float>(N * C, 0.f));
    dnw.set(std::vector<float>(C, 0.f));
    out.set(rounded(randn(N * C), bf16));
    cpu->rmsnorm_backward(dx.c, dnw.c, out.c, x.c, nw.c, rs.c, N, C, bf16);
    gpu->rmsnorm_backward(dx.g, dnw.g, out.g, x.g, nw.g, rs.g, N, C, bf16);
    report("rmsnorm_backward dinp" + tag, dx.diff(), tol);
    report("rmsnorm_backward dweight" + tag, dnw.diff(), 1e-4);
    // The fused residual add + norm: against the CPU, and bit for bit against the two GPU ops in turn.
    Pair b2(cpu, gpu, N * C, A), sum(cpu, gpu, N * C, A), norm(cpu, gpu, N * C, A), rs2(cpu, gpu, N), sum2(cpu, gpu, N * C, A),
        norm2(cpu, gpu, N * C, A), rs3(cpu, gpu, N);
    b2.set(rounded(randn(N * C), bf16));
    for (Pair* q : {&sum, &norm, &rs2, &sum2, &norm2, &rs3}) q->poison();
    cpu->residual_rmsnorm_forward(sum.c, norm.c, rs2.c, x.c, b2.c, nw.c, N, C, 1e-5f, bf16);
    gpu->residual_rmsnorm_forward(sum.g, norm.g, rs2.g, x.g, b2.g, nw.g, N, C, 1e-5f, bf16);
    report("residual_rmsnorm_forward sum" + tag, sum.diff(), bf16 ? tol : 1e-6);
    report("residual_rmsnorm_forward norm" + tag, std::max(norm.diff(), rs2.diff()), tol);
    cpu->residual_forward(sum2.c, x.c, b2.c, N * C, bf16);
    gpu->residual_forward(sum2.g, x.g, b2.g, N * C, bf16);
    report("residual_forward" + tag, sum2.diff(), bf16 ? tol : 1e-6);
    gpu->rmsnorm_forward(norm2.g, rs3.g, sum2.g, nw.g, N, C, 1e-5f, bf16);
    report("residual_rmsnorm_forward = residual then rmsnorm (GPU)" + tag, std::max(norm.diff(gpu, norm2.g), rs2.diff(gpu, rs3.g)), 0);
  });
}

CX_CHECK(rope, "rope", Op::rope_forward, Op::rope_backward) {
  each_precision([](const Precision& p) {
    const Batch batch;
    IntPair pos(cpu, gpu, batch.pos);
    // The base frequencies, and scaled ones with cos and sin × YaRN's attention factor for factor 4.
    for (const float scale : {1.f, 1.1386294f}) {
      std::vector<double> table(D / 2);
      for (int64_t i = 0; i < D / 2; i++) table[i] = std::pow(10000.0, -2.0 * (double)i / (double)D) / (scale == 1.f ? 1.0 : 4.0);
      RawPair<double> inv(cpu, gpu, table);
      const std::string tag = p.tag + (scale == 1.f ? "" : " (scaled)");
      Pair x(cpu, gpu, N * C, p.bf16);
      x.set(rounded(randn(N * C), p.bf16));
      cpu->rope_forward(x.c, pos.c, N, H, D, inv.c, scale, p.bf16);
      gpu->rope_forward(x.g, pos.g, N, H, D, inv.g, scale, p.bf16);
      report("rope_forward" + tag, x.diff(), p.bf16 ? p.tol : 1e-5);
      cpu->rope_backward(x.c, pos.c, N, H, D, inv.c, scale, p.bf16);
      gpu->rope_backward(x.g, pos.g, N, H, D, inv.g, scale, p.bf16);
      report("rope_backward" + tag, x.diff(), p.bf16 ? p.tol : 1e-5);
    }
  });
}

CX_CHECK(attention, "attention within documents", Op::attention_forward, Op::attention_backward) {
  each_precision([](const Precision& p) {
    const bool bf16 = p.bf16, A = bf16;
    const double tol = p.tol;
    const std::string& tag = p.tag;
    const Batch batch;
    IntPair s(cpu, gpu, batch.start);
    Pair q(cpu, gpu, N * C, A), k(cpu, gpu, N * C, A), v(cpu, gpu, N * C, A), o(cpu, gpu, N * C, A), lse(cpu, gpu, B * H * T),
        dq(cpu, gpu, N * C, A), dk(cpu, gpu, N * C, A), dv(cpu, gpu, N * C, A), go(cpu, gpu, N * C, A);
    q.set(rounded(randn(N * C), bf16));
    k.set(rounded(randn(N * C), bf16));
    v.set(rounded(randn(N * C), bf16));
    o.poison();
    lse.poison();
    cpu->attention_forward(o.c, lse.c, q.c, k.c, v.c, s.c, B, T, H, D, bf16);
    gpu->attention_forward(o.g, lse.g, q.g, k.g, v.g, s.g, B, T, H, D, bf16);
    report("attention_forward out" + tag, o.diff(), tol);
    report("attention_forward lse" + tag, lse.diff(), 1e-5);
    go.set(rounded(randn(N * C), bf16));
    dq.poison();
    dk.poison();
    dv.poison();
    cpu->attention_backward(dq.c, dk.c, dv.c, go.c, o.c, lse.c, q.c, k.c, v.c, s.c, B, T, H, D, bf16);
    gpu->attention_backward(dq.g, dk.g, dv.g, go.g, o.g, lse.g, q.g, k.g, v.g, s.g, B, T, H, D, bf16);
    report("attention_backward dq" + tag, dq.diff(), bf16 ? tol : 1e-4);
    report("attention_backward dk" + tag, dk.diff(), bf16 ? tol : 1e-4);
    report("attention_backward dv" + tag, dv.diff(), bf16 ? tol : 1e-4);
  });
}

/* Ring attention's pieces on one row of the batch's documents (0-29, 30-69, 70-95): a block of queries against
 * an earlier block of keys (queries 70 and 71 see none of them: an empty row) and against its own positions,
 * merged by log-sum-exp; then the backward of both from the merged output. */
CX_CHECK(attention_blocks, "ring attention's blocks at offsets", Op::attention_block_forward, Op::attention_block_backward,
         Op::attention_combine) {
  each_precision([](const Precision& p) {
    const bool A = p.bf16;
    const int64_t Tc = 24, qa = 48, pairs[2] = {24, 48};  // queries [48, 72); key blocks [24, 48) and [48, 72)
    const Batch batch;
    IntPair s(cpu, gpu, std::vector<int32_t>(batch.start.begin() + qa, batch.start.begin() + qa + Tc));
    Pair q(cpu, gpu, Tc * C, A), k(cpu, gpu, Tc * C, A), v(cpu, gpu, Tc * C, A), go(cpu, gpu, Tc * C, A);
    Pair acc(cpu, gpu, Tc * C), acc_lse(cpu, gpu, H * Tc), o(cpu, gpu, Tc * C), lse(cpu, gpu, H * Tc), final_out(cpu, gpu, Tc * C, A);
    Pair dq(cpu, gpu, Tc * C), dk(cpu, gpu, Tc * C), dv(cpu, gpu, Tc * C);
    q.set(rounded(randn(Tc * C), p.bf16));
    go.set(rounded(randn(Tc * C), p.bf16));
    acc.set(std::vector<float>(Tc * C, 0.f));
    acc_lse.set(std::vector<float>(H * Tc, -INFINITY));
    std::vector<std::vector<float>> keys, values;
    for (int64_t ka : pairs) {
      keys.push_back(rounded(randn(Tc * C), p.bf16));
      values.push_back(rounded(randn(Tc * C), p.bf16));
      k.set(keys.back());
      v.set(values.back());
      o.poison();
      lse.poison();
      cpu->attention_block_forward(o.c, lse.c, q.c, k.c, v.c, s.c, qa, ka, Tc, Tc, H, D);
      gpu->attention_block_forward(o.g, lse.g, q.g, k.g, v.g, s.g, qa, ka, Tc, Tc, H, D);
      const std::string at = " keys at " + std::to_string(ka) + p.tag;
      report("attention_block_forward out" + at, o.diff(), p.tol);
      report("attention_block_forward lse" + at, lse.diff(), 1e-5);
      cpu->attention_combine(acc.c, acc_lse.c, o.c, lse.c, Tc, H, D);
      gpu->attention_combine(acc.g, acc_lse.g, o.g, lse.g, Tc, H, D);
      report("attention_combine out" + at, acc.diff(), p.tol);
      report("attention_combine lse" + at, acc_lse.diff(), 1e-5);
    }
    cpu->copy_round(final_out.c, acc.c, Tc * C, p.bf16);
    gpu->copy_round(final_out.g, acc.g, Tc * C, p.bf16);
    dq.set(std::vector<float>(Tc * C, 0.f));
    for (size_t b = 0; b < 2; b++) {
      k.set(keys[b]);
      v.set(values[b]);
      dk.set(std::vector<float>(Tc * C, 0.f));
      dv.set(std::vector<float>(Tc * C, 0.f));
      cpu->attention_block_backward(dq.c, dk.c, dv.c, go.c, final_out.c, acc_lse.c, q.c, k.c, v.c, s.c, qa, pairs[b], Tc, Tc, H, D);
      gpu->attention_block_backward(dq.g, dk.g, dv.g, go.g, final_out.g, acc_lse.g, q.g, k.g, v.g, s.g, qa, pairs[b], Tc, Tc, H, D);
      const std::string at = " keys at " + std::to_string(pairs[b]) + p.tag;
      report("attention_block_backward dk" + at, dk.diff(), p.bf16 ? p.tol : 1e-4);
      report("attention_block_backward dv" + at, dv.diff(), p.bf16 ? p.tol : 1e-4);
    }
    report("attention_block_backward dq, summed" + p.tag, dq.diff(), p.bf16 ? p.tol : 1e-4);
  });
}

CX_CHECK(attention_cached, "attention over a key/value cache (generation)", Op::attention_cached) {
  each_precision([](const Precision& p) {
    const bool bf16 = p.bf16, A = bf16;
    const int64_t past = 37, Tq = 5, cap = 64;  // a prompt already cached, then a few new tokens
    Pair q(cpu, gpu, Tq * C, A), k(cpu, gpu, Tq * C, A), v(cpu, gpu, Tq * C, A), o(cpu, gpu, Tq * C, A), kc(cpu, gpu, cap * C, A),
        vc(cpu, gpu, cap * C, A);
    q.set(rounded(randn(Tq * C), bf16));
    k.set(rounded(randn(Tq * C), bf16));
    v.set(rounded(randn(Tq * C), bf16));
    kc.set(rounded(randn(cap * C), bf16));
    vc.set(rounded(randn(cap * C), bf16));
    o.poison();
    cpu->attention_cached(o.c, kc.c, vc.c, q.c, k.c, v.c, Tq, past, H, D, bf16);
    gpu->attention_cached(o.g, kc.g, vc.g, q.g, k.g, v.g, Tq, past, H, D, bf16);
    report("attention_cached out" + p.tag, o.diff(), p.tol);
    report("attention_cached key cache" + p.tag, kc.diff(), 0);
    report("attention_cached value cache" + p.tag, vc.diff(), 0);
  });
}

CX_CHECK(swiglu, "swiglu", Op::swiglu_forward, Op::swiglu_backward) {
  each_precision([](const Precision& p) {
    const bool bf16 = p.bf16, A = bf16;
    Pair g(cpu, gpu, N * F, A), u(cpu, gpu, N * F, A), a(cpu, gpu, N * F, A), dg(cpu, gpu, N * F, A), du(cpu, gpu, N * F, A);
    g.set(rounded(randn(N * F), bf16));
    u.set(rounded(randn(N * F), bf16));
    a.poison();
    cpu->swiglu_forward(a.c, g.c, u.c, N * F, bf16);
    gpu->swiglu_forward(a.g, g.g, u.g, N * F, bf16);
    report("swiglu_forward" + p.tag, a.diff(), bf16 ? p.tol : 1e-5);
    dg.poison();
    du.poison();
    cpu->swiglu_backward(dg.c, du.c, a.c, g.c, u.c, N * F, bf16);
    gpu->swiglu_backward(dg.g, du.g, a.g, g.g, u.g, N * F, bf16);
    report("swiglu_backward" + p.tag, std::max(dg.diff(), du.diff()), bf16 ? p.tol : 1e-5);
  });
}

CX_CHECK(embedding_and_head, "the embedding and the LM head", Op::embedding_forward, Op::embedding_backward, Op::lm_head_cross_entropy,
         Op::lm_head_logits) {
  each_precision([](const Precision& p) {
    const bool bf16 = p.bf16, A = bf16;
    const double tol = p.tol;
    const std::string& tag = p.tag;
    const Batch batch;
    IntPair tk(cpu, gpu, batch.tok), tg(cpu, gpu, batch.tgt);
    Pair x(cpu, gpu, N * C, A), go(cpu, gpu, N * C, A), out(cpu, gpu, N * C, A);
    Pair wte(cpu, gpu, V * C, A), dwte(cpu, gpu, V * C), losses(cpu, gpu, N), dh(cpu, gpu, N * C, A);
    x.set(rounded(randn(N * C), bf16));
    go.set(rounded(randn(N * C), bf16));
    wte.set(rounded(randn(V * C, 0.2f), bf16));
    out.poison();
    cpu->embedding_forward(out.c, tk.c, wte.c, N, C, bf16);
    gpu->embedding_forward(out.g, tk.g, wte.g, N, C, bf16);
    report("embedding_forward" + tag, out.diff(), 0);
    dwte.set(std::vector<float>(V * C, 0.f));
    cpu->embedding_backward(dwte.c, go.c, tk.c, N, C, bf16);
    gpu->embedding_backward(dwte.g, go.g, tk.g, N, C, bf16);
    report("embedding_backward" + tag, dwte.diff(), 1e-6);
    for (const int64_t chunk : {(int64_t)0, 16 * V}) {  // the default chunk, then 12 chunks of 16 rows (ChuXin's batches take several)
      const std::string how = chunk ? " in 16-row chunks," : "";
      if (chunk) setenv("CHUXIN_LM_HEAD_CHUNK", std::to_string(chunk).c_str(), 1);
      losses.poison();
      dh.poison();
      dwte.set(std::vector<float>(V * C, 0.f));
      cpu->lm_head_cross_entropy(losses.c, dh.c, dwte.c, x.c, wte.c, tg.c, N, C, V, 1.f / N, bf16);
      gpu->lm_head_cross_entropy(losses.g, dh.g, dwte.g, x.g, wte.g, tg.g, N, C, V, 1.f / N, bf16);
      unsetenv("CHUXIN_LM_HEAD_CHUNK");
      report("lm_head_cross_entropy" + how + " losses" + tag, losses.diff(), bf16 ? 1e-3 : 1e-5);
      report("lm_head_cross_entropy" + how + " dhidden" + tag, dh.diff(), bf16 ? tol : 1e-4);
      report("lm_head_cross_entropy" + how + " dweight" + tag, dwte.diff(), bf16 ? tol : 1e-4);
    }
    // The logits of three rows (generation reads the last row of each sequence).
    const std::vector<int32_t> picked = {0, (int32_t)N / 2, (int32_t)N - 1};
    IntPair rows(cpu, gpu, picked);
    Pair logits(cpu, gpu, picked.size() * V);
    logits.poison();
    cpu->lm_head_logits(logits.c, x.c, wte.c, rows.c, (int64_t)picked.size(), C, V, bf16);
    gpu->lm_head_logits(logits.g, x.g, wte.g, rows.g, (int64_t)picked.size(), C, V, bf16);
    report("lm_head_logits" + tag, logits.diff(), bf16 ? tol : 1e-5);
  });
}

CX_CHECK(optimizer, "the optimizer", Op::sum_squares, Op::clip_factor, Op::adamw) {
  each_precision([](const Precision& p) {
    const bool bf16 = p.bf16, A = bf16;
    const std::string& tag = p.tag;
    // The global gradient norm, and one AdamW step writing the compute copy in the same pass.
    const int64_t P = 5000;
    Pair param(cpu, gpu, P), copy(cpu, gpu, P, A), grad(cpu, gpu, P), m1(cpu, gpu, P), m2(cpu, gpu, P);
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

    // Clipping on the backend: the same norm and factor as the host computes, AdamW scaled by it, and with a NaN
    // gradient nothing moves.
    const Tensor clip_c = cpu->alloc(2, DType::F64), clip_g = gpu->alloc(2, DType::F64);
    double on[2][2];
    const float max_norm = (float)(0.5 * std::sqrt(sc));  // the norm is twice the limit: factor 0.5
    for (Backend* be : {cpu, gpu}) {
      const bool c = be == cpu;
      be->clip_factor(c ? clip_c : clip_g, c ? grad.c : grad.g, P, max_norm);
      be->download(on[c ? 0 : 1], c ? clip_c : clip_g, 2);
    }
    report("clip_factor norm, CPU vs sqrt(sum_squares)" + tag, std::fabs(on[0][0] - std::sqrt(sc)), 0);
    report("clip_factor: factor 0.5 for a norm twice the limit" + tag, std::fabs(on[0][1] - 0.5), 1e-6);
    report("clip_factor norm and factor" + tag, std::max(std::fabs(on[0][0] - on[1][0]) / on[0][0], std::fabs(on[0][1] - on[1][1])), 1e-6);
    cx::AdamWParams clipped = hp;
    clipped.grad_scale = 7.f;  // ignored once clip is set
    clipped.clip = clip_c.f64();
    cpu->adamw(param.c, copy.c, grad.c, m1.c, m2.c, P, clipped, bf16);
    clipped.clip = clip_g.f64();
    gpu->adamw(param.g, copy.g, grad.g, m1.g, m2.g, P, clipped, bf16);
    report("adamw with the backend's clip factor" + tag, std::max(param.diff(), m1.diff()), 1e-6);
    std::vector<float> with_nan = randn(P, 1e-3f), before(P), after(P);
    with_nan[P / 2] = NAN;
    grad.set(with_nan);
    double moved = 0;
    for (Backend* be : {cpu, gpu}) {
      const bool c = be == cpu;
      be->download(before.data(), c ? param.c : param.g, P);
      be->clip_factor(c ? clip_c : clip_g, c ? grad.c : grad.g, P, max_norm);
      clipped.clip = (c ? clip_c : clip_g).f64();
      be->adamw(c ? param.c : param.g, c ? copy.c : copy.g, c ? grad.c : grad.g, c ? m1.c : m1.g, c ? m2.c : m2.g, P, clipped, bf16);
      be->download(after.data(), c ? param.c : param.g, P);
      moved += std::memcmp(before.data(), after.data(), P * sizeof(float)) != 0;
    }
    report("a NaN gradient: clipped AdamW moves nothing (backends that moved)" + tag, moved, 0);
    cpu->release(clip_c);
    gpu->release(clip_g);
  });
}

/* The fused attention at the ChuXin head size (64), random documents, rows not a multiple of the tile:
 * CPU vs the fast CUDA backend, and the fast against the reference CUDA kernels. */
CX_CHECK(attention_64, "fused attention at head size 64", Op::attention_forward, Op::attention_backward) {
  const int64_t B = 2, T = 700, H = 4, D = 64, N = B * T, C = H * D;
  std::vector<int32_t> start(N);
  std::bernoulli_distribution eos(0.01);
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0, begin = 0; t < T; t++) {
      start[b * T + t] = (int32_t)begin;
      if (eos(rng)) begin = t + 1;
    }
  IntPair s(cpu, gpu, start);
  const Tensor s_ref = ref->alloc(N, DType::I32);
  ref->upload(s_ref, start.data(), N);
  std::normal_distribution<float> d(0.f, 1.f);
  auto bf16_randn = [&](size_t n) {
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return rounded(v, true);
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
  std::vector<Tensor> r;
  for (int i = 0; i < 9; i++) r.push_back(ref->alloc(i == 4 ? B * H * T : N * C, DType::F32));
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
  for (const Tensor& p : r) ref->release(p);
  ref->release(s_ref);
}

