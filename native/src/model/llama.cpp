/* The LLaMA graph over a backend's table of ops: the tensor table, batch staging, forward and backward. */
#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <thread>

#include "model.h"

namespace cxm {

using cx::Backend;

void fail(int code, const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  throw Failure(code, buf);
}

namespace {
// Layer tensor indices: 1 + 9*l + {0 ln1, 1 q, 2 k, 3 v, 4 o, 5 ln2, 6 gate, 7 up, 8 down}
int L(int layer, int which) { return 1 + 9 * layer + which; }
}  // namespace


void build_tensor_table(cx_model& m) {
  const cx_config& c = m.cfg;
  auto add = [&](const std::string& name, int64_t rows, int64_t cols, bool decay) {
    m.tensors.push_back({name, rows, cols, m.n_params, 0, decay});
    m.n_params += (size_t)(rows * cols);
  };
  add("model.embed_tokens.weight", c.vocab, c.hidden, false);
  for (int l = 0; l < c.n_layers; l++) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", 1, c.hidden, false);
    add(p + "self_attn.q_proj.weight", c.hidden, c.hidden, true);
    add(p + "self_attn.k_proj.weight", c.hidden, c.hidden, true);
    add(p + "self_attn.v_proj.weight", c.hidden, c.hidden, true);
    add(p + "self_attn.o_proj.weight", c.hidden, c.hidden, true);
    add(p + "post_attention_layernorm.weight", 1, c.hidden, false);
    add(p + "mlp.gate_proj.weight", c.ffn, c.hidden, true);
    add(p + "mlp.up_proj.weight", c.ffn, c.hidden, true);
    add(p + "mlp.down_proj.weight", c.hidden, c.ffn, true);
  }
  add("model.norm.weight", 1, c.hidden, false);
  add("lm_head.weight", c.vocab, c.hidden, true);
}

/* The fp32 slots that hold `elements` activations stored at `bytes` each. */
static size_t storage_floats(size_t elements, size_t bytes) { return (elements * bytes + sizeof(float) - 1) / sizeof(float); }

/* The activation buffers a batch of N tokens needs, in fp32 slots: activations in the backend's storage (bf16 may
 * be packed, 2 bytes), statistics fp32; per-block ones once per slot. */
std::vector<ActivationBuffer> activation_plan(const cx_config& c, int64_t N, size_t act_bytes, int slots) {
  const size_t NC = storage_floats((size_t)N * c.hidden, act_bytes), NF = storage_floats((size_t)N * c.ffn, act_bytes), S = (size_t)slots;
  return {{&cx_model::x, NC * ((size_t)c.n_layers + 1), "residual stream"},
          {&cx_model::xmid, NC * S, "residual stream"},
          {&cx_model::h1, NC * S, "attention norm"},
          {&cx_model::rstd1, (size_t)N * S, "norm stats"},
          {&cx_model::q, NC * S, "queries"},
          {&cx_model::k, NC * S, "keys"},
          {&cx_model::v, NC * S, "values"},
          {&cx_model::att, NC * S, "attention output"},
          {&cx_model::lse, (size_t)N * c.n_heads * S, "attention stats"},
          {&cx_model::h2, NC * S, "MLP norm"},
          {&cx_model::rstd2, (size_t)N * S, "norm stats"},
          {&cx_model::gate, NF * S, "MLP gate"},
          {&cx_model::up, NF * S, "MLP up"},
          {&cx_model::act, NF * S, "MLP activation"},
          {&cx_model::hf, NC, "final norm"},
          {&cx_model::rstdf, (size_t)N, "norm stats"},
          {&cx_model::losses, (size_t)N, "losses"},
          {&cx_model::tmp, NC, "scratch"},
          {&cx_model::dx, NC, "gradients"},
          {&cx_model::dh, NC, "gradients"},
          {&cx_model::dq, NC, "gradients"},
          {&cx_model::dk, NC, "gradients"},
          {&cx_model::dv, NC, "gradients"},
          {&cx_model::datt, NC, "gradients"},
          {&cx_model::dgate, NF, "gradients"},
          {&cx_model::dup, NF, "gradients"},
          {&cx_model::dact, NF, "gradients"}};
}

/* Bytes of a plan, with the four token-id buffers. */
static size_t plan_bytes(const std::vector<ActivationBuffer>& plan, int64_t N) {
  size_t bytes = 4 * (size_t)N * sizeof(int32_t);
  for (const ActivationBuffer& a : plan) bytes += a.floats * sizeof(float);
  return bytes;
}

static void prepare_batch(cx_model& m, const int32_t* tokens, int B, int T, const cx_run_options& o, Batch& out) {
  const cx_config& c = m.cfg;
  if (B <= 0 || T <= 0) fail(CX_INVALID_ARGUMENT, "batch must be at least 1x1 tokens (got %dx%d)", B, T);
  if (T > c.max_seq) fail(CX_INVALID_ARGUMENT, "sequence length %d exceeds the model's context %d", T, c.max_seq);
  const int64_t N = (int64_t)B * T;
  std::vector<int32_t> pos((size_t)N), start((size_t)N), target((size_t)N);
  for (int b = 0; b < B; b++) {
    int begin = 0;
    for (int t = 0; t < T; t++) {
      const int64_t n = (int64_t)b * T + t;
      const int32_t id = tokens[n];
      if (id < 0 || id >= c.vocab) fail(CX_INVALID_ARGUMENT, "token id %d at row %d position %d is outside the vocabulary (size %d)", id, b, t, c.vocab);
      start[(size_t)n] = o.doc_mask ? begin : 0;
      pos[(size_t)n] = o.reset_positions ? t - begin : t;
      const bool has_target = t + 1 < T && !(o.mask_eos_loss && id == o.eos_id);
      target[(size_t)n] = has_target ? tokens[n + 1] : -1;
      if (id == o.eos_id) begin = t + 1;
    }
  }
  Backend* be = m.be.get();
  const size_t act_bytes = be->activation_bytes(o.precision == CX_BF16);
  // Per-block activations: one slot per block, or one shared slot when the blocks are recomputed in backward.
  const int slots = o.recompute ? 1 : c.n_layers;
  if (N > m.tokens_capacity || act_bytes > m.activation_bytes || slots > m.activation_slots) {
    const std::vector<ActivationBuffer> plan = activation_plan(c, N, act_bytes, slots);
    try {
      for (const ActivationBuffer& a : plan) (m.*a.buffer).ensure(be, a.floats, a.what);
      for (IntBuffer* b : {&m.tok, &m.pos, &m.doc_start, &m.targets}) b->ensure(be, (size_t)N);
    } catch (const Failure& f) {
      if (f.code != CX_OUT_OF_MEMORY) throw;
      // Give back every activation buffer, so the free memory reported is what activations can have; then say what
      // the whole batch needs, per row, and with recomputation, not just the buffer that failed.
      for (const ActivationBuffer& a : plan) (m.*a.buffer).reset();
      for (IntBuffer* b : {&m.tok, &m.pos, &m.doc_start, &m.targets}) b->reset();
      m.tokens_capacity = 0;
      m.activation_slots = 0;
      const double gib = 1024.0 * 1024 * 1024, need = plan_bytes(plan, N) / gib;
      const double recomputed = plan_bytes(activation_plan(c, N, act_bytes, 1), N) / gib;
      const std::string mem = be->memory_info();
      char alternative[96] = "";
      if (!o.recompute) snprintf(alternative, sizeof alternative, ", or pass --recompute (%.2f GiB)", recomputed);
      fail(CX_OUT_OF_MEMORY, "out of memory on %s: activations for micro-batch %d x %d tokens need %.2f GiB (%.2f GiB per row)%s%s; lower --micro-batch or --context%s",
           be->name(), B, T, need, need / B, mem.empty() ? "" : " and the device has ", mem.c_str(), alternative);
    }
    m.tokens_capacity = N;
    m.activation_bytes = act_bytes;
    m.activation_slots = slots;
  }
  be->upload_i32(m.tok.p, tokens, (size_t)N);
  be->upload_i32(m.pos.p, pos.data(), (size_t)N);
  be->upload_i32(m.doc_start.p, start.data(), (size_t)N);
  be->upload_i32(m.targets.p, target.data(), (size_t)N);
  m.host_targets = std::move(target);
  out = {B, T, N};
}

void layout_compute_weights(cx_model& m, int precision, const char* hint) {
  const size_t bytes = m.be->activation_bytes(precision == CX_BF16);  // the compute copy is stored as activations are
  size_t floats = 0;
  for (TensorInfo& t : m.tensors) {
    t.compute_offset = floats;
    floats += (storage_floats(t.size(), bytes) + 63) / 64 * 64;  // each tensor starts 256-byte aligned, as GEMM operands want
  }
  m.compute.ensure(m.be.get(), floats, "compute weights", hint);
}

void ensure_compute_weights(cx_model& m, int precision) {
  if (m.compute_precision == precision) return;
  m.compute_precision = -1;  // until every tensor is rewritten
  layout_compute_weights(m, precision, "the model's compute copy does not fit this device");
  // Tensor by tensor: each is later addressed by its own pointer (see the storage note in backend.h).
  for (const TensorInfo& t : m.tensors)
    m.be->copy_round(m.compute.p + t.compute_offset, m.params.p + t.offset, t.size(), precision == CX_BF16);
  m.compute_precision = precision;
}

/* Where block l's activations live: its own slot, or the one shared slot when they are recomputed. */
static size_t slot(const cx_run_options& o, int l) { return o.recompute ? 0 : (size_t)l; }

/* Block l's forward from its input x[l]. Recomputing (backward of a recompute run) first redoes the attention
 * norm from x[l] (the same arithmetic as the fused residual + norm that wrote it; backend.h) and stops once the
 * activations the backward reads are back, before the down projection, whose sum x[l+1] is kept. */
static void block_forward(cx_model& m, const Batch& bt, const cx_run_options& o, int l, bool recomputing) {
  Backend* be = m.be.get();
  const cx_config& c = m.cfg;
  const bool bf = o.precision == CX_BF16;
  const int64_t N = bt.N, C = c.hidden, F = c.ffn, H = c.n_heads, D = C / H;
  // Activations are addressed through the backend, which may store them packed (backend.h).
  auto at = [&](Buffer& b, size_t elements) { return be->advance(b.p, elements, bf); };
  const size_t s = slot(o, l), oc = s * N * C, of = s * N * F, ox = (size_t)l * N * C;
  float* xin = at(m.x, ox);
  if (recomputing) be->rmsnorm_forward(at(m.h1, oc), m.rstd1.p + s * N, xin, m.W(L(l, 0)), N, C, c.norm_eps, bf);
  be->matmul_forward(at(m.q, oc), at(m.h1, oc), m.W(L(l, 1)), N, C, C, bf);
  be->matmul_forward(at(m.k, oc), at(m.h1, oc), m.W(L(l, 2)), N, C, C, bf);
  be->matmul_forward(at(m.v, oc), at(m.h1, oc), m.W(L(l, 3)), N, C, C, bf);
  be->rope_forward(at(m.q, oc), m.pos.p, N, H, D, c.rope_theta, bf);
  be->rope_forward(at(m.k, oc), m.pos.p, N, H, D, c.rope_theta, bf);
  be->attention_forward(at(m.att, oc), m.lse.p + s * N * H, at(m.q, oc), at(m.k, oc), at(m.v, oc), m.doc_start.p, bt.B, bt.T, H, D, bf);
  be->matmul_forward(m.tmp.p, at(m.att, oc), m.W(L(l, 4)), N, C, C, bf);
  be->residual_rmsnorm_forward(at(m.xmid, oc), at(m.h2, oc), m.rstd2.p + s * N, xin, m.tmp.p, m.W(L(l, 5)), N, C, c.norm_eps, bf);
  be->matmul_forward(at(m.gate, of), at(m.h2, oc), m.W(L(l, 6)), N, C, F, bf);
  be->matmul_forward(at(m.up, of), at(m.h2, oc), m.W(L(l, 7)), N, C, F, bf);
  be->swiglu_forward(at(m.act, of), at(m.gate, of), at(m.up, of), N * F, bf);
  if (recomputing) return;
  be->matmul_forward(m.tmp.p, at(m.act, of), m.W(L(l, 8)), N, F, C, bf);
  // The residual add fused with the norm that reads its sum: the next block's first norm, or the final norm.
  const bool final = l + 1 == c.n_layers;
  const size_t next = final ? 0 : slot(o, l + 1);
  be->residual_rmsnorm_forward(at(m.x, ox + (size_t)N * C), final ? m.hf.p : at(m.h1, next * N * C), final ? m.rstdf.p : m.rstd1.p + next * N,
                               at(m.xmid, oc), m.tmp.p, m.W(final ? 1 + 9 * c.n_layers : L(l + 1, 0)), N, C, c.norm_eps, bf);
}

/* Runs the blocks and the final norm; leaves hidden states in m.hf. */
static void forward_blocks(cx_model& m, const Batch& bt, const cx_run_options& o) {
  Backend* be = m.be.get();
  const cx_config& c = m.cfg;
  const bool bf = o.precision == CX_BF16;
  be->embedding_forward(m.x.p, m.tok.p, m.W(0), bt.N, c.hidden, bf);
  be->rmsnorm_forward(m.h1.p, m.rstd1.p, m.x.p, m.W(L(0, 0)), bt.N, c.hidden, c.norm_eps, bf);
  for (int l = 0; l < c.n_layers; l++) block_forward(m, bt, o, l, false);
}

void backward_blocks(cx_model& m, const Batch& bt, const cx_run_options& o) {
  Backend* be = m.be.get();
  const cx_config& c = m.cfg;
  const bool bf = o.precision == CX_BF16;
  const int64_t N = bt.N, C = c.hidden, F = c.ffn, H = c.n_heads, D = C / H;
  auto at = [&](Buffer& b, size_t elements) { return be->advance(b.p, elements, bf); };
  const int last = 1 + 9 * c.n_layers;
  // m.dh holds d(final norm output) from the fused cross-entropy.
  be->fill(m.dx.p, 0.f, storage_floats((size_t)(N * C), be->activation_bytes(bf)));  // zero bits are a zero in any storage
  be->rmsnorm_backward(m.dx.p, m.G(last), m.dh.p, at(m.x, (size_t)c.n_layers * N * C), m.W(last), m.rstdf.p, N, C, bf);
  for (int l = c.n_layers - 1; l >= 0; l--) {
    if (o.recompute) block_forward(m, bt, o, l, true);
    const size_t s = slot(o, l), oc = s * N * C, of = s * N * F, ox = (size_t)l * N * C;
    be->matmul_backward(m.dact.p, m.G(L(l, 8)), m.dx.p, at(m.act, of), m.W(L(l, 8)), N, F, C, false, bf);
    be->swiglu_backward(m.dgate.p, m.dup.p, m.dact.p, at(m.gate, of), at(m.up, of), N * F, bf);
    be->matmul_backward(m.dh.p, m.G(L(l, 6)), m.dgate.p, at(m.h2, oc), m.W(L(l, 6)), N, C, F, false, bf);
    be->matmul_backward(m.dh.p, m.G(L(l, 7)), m.dup.p, at(m.h2, oc), m.W(L(l, 7)), N, C, F, true, bf);
    be->rmsnorm_backward(m.dx.p, m.G(L(l, 5)), m.dh.p, at(m.xmid, oc), m.W(L(l, 5)), m.rstd2.p + s * N, N, C, bf);
    be->matmul_backward(m.datt.p, m.G(L(l, 4)), m.dx.p, at(m.att, oc), m.W(L(l, 4)), N, C, C, false, bf);
    be->attention_backward(m.dq.p, m.dk.p, m.dv.p, m.datt.p, at(m.att, oc), m.lse.p + s * N * H, at(m.q, oc), at(m.k, oc), at(m.v, oc),
                           m.doc_start.p, bt.B, bt.T, H, D, bf);
    be->rope_backward(m.dq.p, m.pos.p, N, H, D, c.rope_theta, bf);
    be->rope_backward(m.dk.p, m.pos.p, N, H, D, c.rope_theta, bf);
    be->matmul_backward(m.dh.p, m.G(L(l, 1)), m.dq.p, at(m.h1, oc), m.W(L(l, 1)), N, C, C, false, bf);
    be->matmul_backward(m.dh.p, m.G(L(l, 2)), m.dk.p, at(m.h1, oc), m.W(L(l, 2)), N, C, C, true, bf);
    be->matmul_backward(m.dh.p, m.G(L(l, 3)), m.dv.p, at(m.h1, oc), m.W(L(l, 3)), N, C, C, true, bf);
    be->rmsnorm_backward(m.dx.p, m.G(L(l, 0)), m.dh.p, at(m.x, ox), m.W(L(l, 0)), m.rstd1.p + s * N, N, C, bf);
  }
  be->embedding_backward(m.G(0), m.dx.p, m.tok.p, N, C, bf);
}

static uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static double uniform01(uint64_t& state) { return ((double)(splitmix64(state) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

/* Normal(0, 0.02) by Box-Muller over splitmix64, seeded per tensor: the same on every machine and for any
 * thread count. Norm weights start at 1. */
void init_tensor(std::vector<float>& host, const TensorInfo& t, uint64_t seed, size_t index) {
  host.assign(t.size(), 1.f);
  if (t.rows <= 1) return;
  uint64_t state = seed * 0x100000001b3ull + index * 0x9e3779b97f4a7c15ull;
  for (size_t j = 0; j < host.size(); j += 2) {
    const double u1 = uniform01(state), u2 = uniform01(state);
    const double r = std::sqrt(-2.0 * std::log(u1));
    host[j] = (float)(0.02 * r * std::cos(2 * M_PI * u2));
    if (j + 1 < host.size()) host[j + 1] = (float)(0.02 * r * std::sin(2 * M_PI * u2));
  }
}

static void check_options(const cx_run_options* o) {
  if (!o) fail(CX_INVALID_ARGUMENT, "run options are required");
  if (o->precision != CX_BF16 && o->precision != CX_FP32) fail(CX_INVALID_ARGUMENT, "precision must be bf16 (0) or fp32 (1)");
}

/* Checks the options, stages the batch and runs the blocks: what every entry point starts with. */
Batch run_forward(cx_model& m, const int32_t* tokens, int B, int T, const cx_run_options* o) {
  check_options(o);
  Batch bt;
  prepare_batch(m, tokens, B, T, *o, bt);
  ensure_compute_weights(m, o->precision);
  forward_blocks(m, bt, *o);
  return bt;
}

}  // namespace cxm
