/* The LLaMA graph over a backend's table of ops: the tensor table, batch staging, forward and backward. */
#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <thread>

#include "model.h"
#include "context_parallel.h"

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


void build_tensor_table(cx_model& m) {
  const cx_config& c = m.cfg;
  auto add = [&](const std::string& name, int64_t rows, int64_t cols, bool decay) {
    m.tensors.push_back({name, rows, cols, m.n_params, 0, decay});
    m.n_params += (size_t)(rows * cols);
  };
  // The order is the one BlockTensor and cx_model's index helpers name.
  add("model.embed_tokens.weight", c.vocab, c.hidden, false);
  for (int l = 0; l < c.n_layers; l++) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    static_assert((int)BlockTensor::count == 9, "one line below per block tensor");
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

/* The activation buffers a batch of N tokens needs: activations in the backend's storage (bf16 may be packed),
 * statistics fp32, token ids int32; per-block ones once per slot. */
std::vector<ActivationBuffer> activation_plan(const cx_config& c, int64_t N, DType act, int slots) {
  const size_t NC = (size_t)N * c.hidden, NF = (size_t)N * c.ffn, S = (size_t)slots, n = (size_t)N;
  const DType f32 = DType::F32, i32 = DType::I32;
  return {{&cx_model::x, NC * ((size_t)c.n_layers + 1), act, "residual stream"},
          {&cx_model::xmid, NC * S, act, "residual stream"},
          {&cx_model::h1, NC * S, act, "attention norm"},
          {&cx_model::rstd1, n * S, f32, "norm stats"},
          {&cx_model::q, NC * S, act, "queries"},
          {&cx_model::k, NC * S, act, "keys"},
          {&cx_model::v, NC * S, act, "values"},
          {&cx_model::att, NC * S, act, "attention output"},
          {&cx_model::lse, n * c.n_heads * S, f32, "attention stats"},
          {&cx_model::h2, NC * S, act, "MLP norm"},
          {&cx_model::rstd2, n * S, f32, "norm stats"},
          {&cx_model::gate, NF * S, act, "MLP gate"},
          {&cx_model::up, NF * S, act, "MLP up"},
          {&cx_model::act, NF * S, act, "MLP activation"},
          {&cx_model::hf, NC, act, "final norm"},
          {&cx_model::rstdf, n, f32, "norm stats"},
          {&cx_model::losses, n, f32, "losses"},
          {&cx_model::tmp, NC, act, "scratch"},
          {&cx_model::dx, NC, act, "gradients"},
          {&cx_model::dh, NC, act, "gradients"},
          {&cx_model::dq, NC, act, "gradients"},
          {&cx_model::dk, NC, act, "gradients"},
          {&cx_model::dv, NC, act, "gradients"},
          {&cx_model::datt, NC, act, "gradients"},
          {&cx_model::dgate, NF, act, "gradients"},
          {&cx_model::dup, NF, act, "gradients"},
          {&cx_model::dact, NF, act, "gradients"},
          {&cx_model::tok, n, i32, "token ids"},
          {&cx_model::pos, n, i32, "positions"},
          {&cx_model::doc_start, n, i32, "document starts"},
          {&cx_model::targets, n, i32, "targets"}};
}

size_t plan_bytes(const std::vector<ActivationBuffer>& plan) {
  size_t bytes = 0;
  for (const ActivationBuffer& a : plan) bytes += a.elements * cx::dtype_size(a.dtype);
  return bytes;
}

static void prepare_batch(cx_model& m, const int32_t* tokens, int B, int T, const cx_run_options& o, Batch& out) {
  const cx_config& c = m.cfg;
  if (B <= 0 || T <= 0) fail(CX_INVALID_ARGUMENT, "batch must be at least 1x1 tokens (got %dx%d)", B, T);
  if (T > c.max_seq) fail(CX_INVALID_ARGUMENT, "sequence length %d exceeds the model's context %d", T, c.max_seq);
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) {
      const int32_t id = tokens[(int64_t)b * T + t];
      if (id < 0 || id >= c.vocab) fail(CX_INVALID_ARGUMENT, "token id %d at row %d position %d is outside the vocabulary (size %d)", id, b, t, c.vocab);
    }
  // Under context parallelism this rank stages its two chunks of each row, at their true positions.
  const RingPlace ring = m.cp ? m.cp->place() : RingPlace{};
  m.layout = BatchLayout(tokens, B, T, o, m.cp ? &ring : nullptr);
  const BatchLayout& layout = m.layout;
  const int64_t Tl = layout.local_length();
  const int64_t N = (int64_t)B * Tl;
  Backend* be = m.be.get();
  const DType act = be->activation_dtype(o.precision == CX_BF16);
  // Per-block activations: one slot per block, or one shared slot when the blocks are recomputed in backward.
  const int slots = o.recompute ? 1 : c.n_layers;
  if (N > m.tokens_capacity || act != m.activation_dtype || slots > m.activation_slots) {
    if (m.dp) m.dp->weights_settled();  // freeing device memory waits for the gathers in flight
    const std::vector<ActivationBuffer> plan = activation_plan(c, N, act, slots);
    try {
      for (const ActivationBuffer& a : plan) (m.*a.buffer).ensure(be, a.elements, a.dtype, a.what);
    } catch (const Failure& f) {
      if (f.code != CX_OUT_OF_MEMORY) throw;
      // Give back every activation buffer, so the free memory reported is what activations can have; then say what
      // the whole batch needs, per row, and with recomputation, not just the buffer that failed.
      for (const ActivationBuffer& a : plan) (m.*a.buffer).reset();
      m.tokens_capacity = 0;
      m.activation_slots = 0;
      const double gib = 1024.0 * 1024 * 1024, need = plan_bytes(plan) / gib;
      const double recomputed = plan_bytes(activation_plan(c, N, act, 1)) / gib;
      const std::string mem = be->memory_info();
      char alternative[96] = "";
      if (!o.recompute) snprintf(alternative, sizeof alternative, ", or pass --recompute (%.2f GiB)", recomputed);
      fail(CX_OUT_OF_MEMORY, "out of memory on %s: activations for micro-batch %d x %d tokens need %.2f GiB (%.2f GiB per row)%s%s; lower --micro-batch or --context%s",
           be->name(), B, T, need, need / B, mem.empty() ? "" : " and the device has ", mem.c_str(), alternative);
    }
    m.tokens_capacity = N;
    m.activation_dtype = act;
    m.activation_slots = slots;
  }
  be->upload(m.tok.t, layout.tokens().data(), (size_t)N);
  be->upload(m.pos.t, layout.positions().data(), (size_t)N);
  be->upload(m.doc_start.t, layout.doc_starts().data(), (size_t)N);
  be->upload(m.targets.t, layout.targets().data(), (size_t)N);
  out = {B, Tl, N};
}

void layout_compute_weights(cx_model& m, int precision, const char* hint) {
  const DType dtype = m.be->activation_dtype(precision == CX_BF16);  // the compute copy is stored as activations are
  const size_t per_256 = 256 / cx::dtype_size(dtype);  // each tensor starts 256-byte aligned, as GEMM operands want
  size_t elements = 0;
  for (TensorInfo& t : m.tensors) {
    t.compute_offset = elements;
    elements += (t.size() + per_256 - 1) / per_256 * per_256;
  }
  m.compute.ensure(m.be.get(), elements, dtype, "compute weights", hint);
}

void ensure_compute_weights(cx_model& m, int precision) {
  if (m.compute_precision == precision) return;
  // Rederiving reads every master weight; a collective gather cannot start here, where one rank may run alone.
  if (m.dp && m.dp->masters_sharded())
    fail(CX_INVALID_ARGUMENT, "each rank holds only its share of the fp32 master weights since the first step (ZeRO-1), and a run at another "
                              "precision needs them whole: keep the training run's precision, or load a checkpoint into a model of its own");
  m.compute_precision = -1;  // until every tensor is rewritten
  layout_compute_weights(m, precision, "the model's compute copy does not fit this device");
  for (size_t i = 0; i < m.tensors.size(); i++)
    m.be->copy_round(m.W((int)i), m.slice(m.params, (int)i), m.tensors[i].size(), precision == CX_BF16);
  m.compute_precision = precision;
}

/* Where block l's activations live: its own slot, or the one shared slot when they are recomputed. */
static size_t slot(const cx_run_options& o, int l) { return o.recompute ? 0 : (size_t)l; }

/* Block l's forward from its input x[l]. Recomputing (backward of a recompute run) first redoes the attention
 * norm from x[l] (the same arithmetic as the fused residual + norm that wrote it; backend.h) and stops once the
 * activations the backward reads are back, before the down projection, whose sum x[l+1] is kept. */
static void block_forward(cx_model& m, const Batch& bt, const cx_run_options& o, int l, bool recomputing, const int64_t* kv_past = nullptr) {
  Backend* be = m.be.get();
  const cx_config& c = m.cfg;
  const bool bf = o.precision == CX_BF16;
  const int64_t N = bt.N, C = c.hidden, F = c.ffn, H = c.n_heads, D = C / H;
  auto W = [&](BlockTensor which) { return m.W(m.block_tensor(l, which)); };
  const int64_t s = (int64_t)slot(o, l), oc = s * N * C, of = s * N * F, ox = (int64_t)l * N * C;
  // This block's slot of each activation buffer (views count elements of the buffer's storage).
  const Tensor xin = m.x.t + ox, h1 = m.h1.t + oc, q = m.q.t + oc, k = m.k.t + oc, v = m.v.t + oc, att = m.att.t + oc;
  const Tensor xmid = m.xmid.t + oc, h2 = m.h2.t + oc, gate = m.gate.t + of, up = m.up.t + of, act = m.act.t + of;
  if (recomputing) be->rmsnorm_forward(h1, m.rstd1.t + s * N, xin, W(BlockTensor::attn_norm), N, C, c.norm_eps, bf);
  be->matmul_forward(q, h1, W(BlockTensor::q), N, C, C, bf);
  be->matmul_forward(k, h1, W(BlockTensor::k), N, C, C, bf);
  be->matmul_forward(v, h1, W(BlockTensor::v), N, C, C, bf);
  be->rope_forward(q, m.pos.t, N, H, D, m.rope_inv_freq.t, m.rope_scale, bf);
  be->rope_forward(k, m.pos.t, N, H, D, m.rope_inv_freq.t, m.rope_scale, bf);
  if (kv_past) {
    const int64_t layer = (int64_t)l * m.kv_capacity * C;
    be->attention_cached(att, m.kcache.t + layer, m.vcache.t + layer, q, k, v, N, *kv_past, H, D, bf);
  } else {
    if (m.cp) m.cp->attention_forward(bt, att, m.lse.t + s * N * H, q, k, v, bf);
    else be->attention_forward(att, m.lse.t + s * N * H, q, k, v, m.doc_start.t, bt.B, bt.T, H, D, bf);
  }
  be->matmul_forward(m.tmp.t, att, W(BlockTensor::o), N, C, C, bf);
  be->residual_rmsnorm_forward(xmid, h2, m.rstd2.t + s * N, xin, m.tmp.t, W(BlockTensor::mlp_norm), N, C, c.norm_eps, bf);
  be->matmul_forward(gate, h2, W(BlockTensor::gate), N, C, F, bf);
  be->matmul_forward(up, h2, W(BlockTensor::up), N, C, F, bf);
  be->swiglu_forward(act, gate, up, N * F, bf);
  if (recomputing) return;
  be->matmul_forward(m.tmp.t, act, W(BlockTensor::down), N, F, C, bf);
  // The residual add fused with the norm that reads its sum: the next block's first norm, or the final norm
  // (whose gathered weights the forward waits for here, data_parallel.h).
  if (m.dp) m.dp->await_weights(l + 2);
  const bool final = l + 1 == c.n_layers;
  const int64_t next = final ? 0 : (int64_t)slot(o, l + 1);
  be->residual_rmsnorm_forward(m.x.t + (ox + N * C), final ? m.hf.t : m.h1.t + next * N * C, final ? m.rstdf.t : m.rstd1.t + next * N, xmid,
                               m.tmp.t, m.W(final ? m.final_norm_tensor() : m.block_tensor(l + 1, BlockTensor::attn_norm)), N, C, c.norm_eps,
                               bf);
}

/* Runs the blocks and the final norm; leaves hidden states in m.hf. With kv_past, over the key/value cache. */
static void forward_blocks(cx_model& m, const Batch& bt, const cx_run_options& o, const int64_t* kv_past = nullptr) {
  Backend* be = m.be.get();
  const cx_config& c = m.cfg;
  const bool bf = o.precision == CX_BF16;
  // Under ZeRO-1 each bucket of weights is waited for as the forward reaches it (0: the embedding, l + 1: block l).
  if (m.dp) m.dp->await_weights(1);
  be->embedding_forward(m.x.t, m.tok.t, m.W(0), bt.N, c.hidden, bf);
  be->rmsnorm_forward(m.h1.t, m.rstd1.t, m.x.t, m.W(m.block_tensor(0, BlockTensor::attn_norm)), bt.N, c.hidden, c.norm_eps, bf);
  for (int l = 0; l < c.n_layers; l++) {
    if (m.dp) m.dp->await_weights(l + 1);
    block_forward(m, bt, o, l, false, kv_past);
  }
}

void backward_blocks(cx_model& m, const Batch& bt, const cx_run_options& o) {
  Backend* be = m.be.get();
  const cx_config& c = m.cfg;
  const bool bf = o.precision == CX_BF16;
  const int64_t N = bt.N, C = c.hidden, F = c.ffn, H = c.n_heads, D = C / H;
  const int last = m.final_norm_tensor();
  // m.dh holds d(final norm output) from the fused cross-entropy.
  be->fill(m.dx.t, 0.f, (size_t)(N * C));
  be->rmsnorm_backward(m.dx.t, m.G(last), m.dh.t, m.x.t + (int64_t)c.n_layers * N * C, m.W(last), m.rstdf.t, N, C, bf);
  // Buckets of data parallelism (data_parallel.h), in the order their gradients become final here.
  int bucket = 0;
  if (m.dp) m.dp->gradients_ready(bucket++);
  for (int l = c.n_layers - 1; l >= 0; l--) {
    if (o.recompute) block_forward(m, bt, o, l, true);
    auto W = [&](BlockTensor which) { return m.W(m.block_tensor(l, which)); };
    auto G = [&](BlockTensor which) { return m.G(m.block_tensor(l, which)); };
    const int64_t s = (int64_t)slot(o, l), oc = s * N * C, of = s * N * F, ox = (int64_t)l * N * C;
    const Tensor h1 = m.h1.t + oc, q = m.q.t + oc, k = m.k.t + oc, v = m.v.t + oc, att = m.att.t + oc;
    const Tensor xmid = m.xmid.t + oc, h2 = m.h2.t + oc, gate = m.gate.t + of, up = m.up.t + of, act = m.act.t + of;
    be->matmul_backward(m.dact.t, G(BlockTensor::down), m.dx.t, act, W(BlockTensor::down), N, F, C, false, bf);
    be->swiglu_backward(m.dgate.t, m.dup.t, m.dact.t, gate, up, N * F, bf);
    be->matmul_backward(m.dh.t, G(BlockTensor::gate), m.dgate.t, h2, W(BlockTensor::gate), N, C, F, false, bf);
    be->matmul_backward(m.dh.t, G(BlockTensor::up), m.dup.t, h2, W(BlockTensor::up), N, C, F, true, bf);
    be->rmsnorm_backward(m.dx.t, G(BlockTensor::mlp_norm), m.dh.t, xmid, W(BlockTensor::mlp_norm), m.rstd2.t + s * N, N, C, bf);
    be->matmul_backward(m.datt.t, G(BlockTensor::o), m.dx.t, att, W(BlockTensor::o), N, C, C, false, bf);
    if (m.cp) m.cp->attention_backward(bt, m.dq.t, m.dk.t, m.dv.t, m.datt.t, att, m.lse.t + s * N * H, q, k, v, bf);
    else be->attention_backward(m.dq.t, m.dk.t, m.dv.t, m.datt.t, att, m.lse.t + s * N * H, q, k, v, m.doc_start.t, bt.B, bt.T, H, D, bf);
    be->rope_backward(m.dq.t, m.pos.t, N, H, D, m.rope_inv_freq.t, m.rope_scale, bf);
    be->rope_backward(m.dk.t, m.pos.t, N, H, D, m.rope_inv_freq.t, m.rope_scale, bf);
    be->matmul_backward(m.dh.t, G(BlockTensor::q), m.dq.t, h1, W(BlockTensor::q), N, C, C, false, bf);
    be->matmul_backward(m.dh.t, G(BlockTensor::k), m.dk.t, h1, W(BlockTensor::k), N, C, C, true, bf);
    be->matmul_backward(m.dh.t, G(BlockTensor::v), m.dv.t, h1, W(BlockTensor::v), N, C, C, true, bf);
    be->rmsnorm_backward(m.dx.t, G(BlockTensor::attn_norm), m.dh.t, m.x.t + ox, W(BlockTensor::attn_norm), m.rstd1.t + s * N, N, C, bf);
    if (m.dp) m.dp->gradients_ready(bucket++);
  }
  be->embedding_backward(m.G(0), m.dx.t, m.tok.t, N, C, bf);
  if (m.dp) m.dp->gradients_ready(bucket++);
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
Batch run_forward(cx_model& m, const int32_t* tokens, int B, int T, const cx_run_options* o, bool settle) {
  check_options(o);
  Batch bt;
  prepare_batch(m, tokens, B, T, *o, bt);
  ensure_compute_weights(m, o->precision);
  forward_blocks(m, bt, *o);
  if (settle && m.dp) m.dp->weights_settled();
  return bt;
}

void decode_reset(cx_model& m, int capacity) {
  if (m.cp) fail(CX_INVALID_ARGUMENT, "generation runs on one rank; this model splits its sequences over a ring (context parallelism)");
  if (capacity < 1 || capacity > m.cfg.max_seq) fail(CX_INVALID_ARGUMENT, "decode capacity %d must be 1 to the model's context %d", capacity, m.cfg.max_seq);
  m.kv_capacity = capacity;
  m.kv_length = 0;
  m.kv_precision = -1;
}

Batch run_decode(cx_model& m, const int32_t* tokens, int n, const cx_run_options* o) {
  check_options(o);
  if (m.kv_capacity == 0) fail(CX_INVALID_ARGUMENT, "no decoding sequence: call cx_decode_reset first");
  if (n < 1) fail(CX_INVALID_ARGUMENT, "a decode step needs at least one token");
  if (m.kv_length + n > m.kv_capacity) {
    fail(CX_INVALID_ARGUMENT, "the sequence would hold %lld tokens, more than the %lld cx_decode_reset allowed", (long long)(m.kv_length + n),
         (long long)m.kv_capacity);
  }
  if (m.kv_precision != -1 && m.kv_precision != o->precision) fail(CX_INVALID_ARGUMENT, "a decoding sequence keeps the precision it started with");
  // One sequence, plain causal attention at positions after the cached ones; one activation slot (nothing is kept for a backward).
  cx_run_options step = *o;
  step.doc_mask = 0;
  step.reset_positions = 0;
  step.recompute = 1;
  Batch bt;
  prepare_batch(m, tokens, 1, n, step, bt);
  std::vector<int32_t> pos((size_t)n);
  for (int t = 0; t < n; t++) pos[(size_t)t] = (int32_t)(m.kv_length + t);
  m.be->upload(m.pos.t, pos.data(), (size_t)n);
  if (m.kv_precision == -1) {
    const DType act = m.be->activation_dtype(o->precision == CX_BF16);
    const size_t elements = (size_t)m.cfg.n_layers * (size_t)m.kv_capacity * (size_t)m.cfg.hidden;
    m.kcache.ensure(m.be.get(), elements, act, "key cache");
    m.vcache.ensure(m.be.get(), elements, act, "value cache");
    m.kv_precision = o->precision;
  }
  ensure_compute_weights(m, o->precision);
  const int64_t past = m.kv_length;
  forward_blocks(m, bt, step, &past);
  if (m.dp) m.dp->weights_settled();
  m.kv_length += n;
  return bt;
}

}  // namespace cxm
