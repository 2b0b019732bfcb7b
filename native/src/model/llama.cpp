/* The LLaMA graph over a backend's table of ops, and the C API (include/chuxin.h). */
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "../../include/chuxin.h"
#include "backend.h"

namespace {

using cx::Backend;

struct Failure : std::runtime_error {
  int code;
  Failure(int c, const std::string& m) : std::runtime_error(m), code(c) {}
};

[[noreturn]] void fail(int code, const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  throw Failure(code, buf);
}

int set_status(cx_status* status, int code, const char* message) {
  if (status) {
    status->code = code;
    snprintf(status->message, sizeof status->message, "%s", message);
  }
  return code;
}

template <typename F>
int guarded(cx_status* status, F&& body) {
  try {
    body();
    return set_status(status, CX_OK, "");
  } catch (const Failure& f) {
    return set_status(status, f.code, f.what());
  } catch (const std::bad_alloc&) {
    return set_status(status, CX_OUT_OF_MEMORY, "out of host memory");
  } catch (const std::exception& e) {
    return set_status(status, CX_INTERNAL, e.what());
  }
}

struct TensorInfo {
  std::string name;
  int64_t rows, cols;
  size_t offset;
  bool decay;  // weight decay applies to matrices, not to norms or embeddings
  size_t size() const { return (size_t)(rows * cols); }
};

/* A buffer in backend memory, released with its owner. */
struct Buffer {
  Backend* be = nullptr;
  float* p = nullptr;
  size_t n = 0;
  void ensure(Backend* backend, size_t count, const char* what, const char* hint = "lower --micro-batch or --context") {
    if (n >= count) return;
    if (p) be->release(p);
    be = backend;
    p = be->alloc(count);
    n = p ? count : 0;
    if (!p) {
      const std::string mem = backend->memory_info();
      fail(CX_OUT_OF_MEMORY, "cannot allocate %zu MB for %s on %s%s%s; %s", count * 4 >> 20, what, backend->name(), mem.empty() ? "" : ": ",
           mem.c_str(), hint);
    }
  }
  ~Buffer() {
    if (p) be->release(p);
  }
};

struct IntBuffer {
  Backend* be = nullptr;
  int32_t* p = nullptr;
  size_t n = 0;
  void ensure(Backend* backend, size_t count) {
    if (n >= count) return;
    if (p) be->release_i32(p);
    be = backend;
    p = be->alloc_i32(count);
    n = p ? count : 0;
    if (!p) fail(CX_OUT_OF_MEMORY, "cannot allocate token buffers on %s", backend->name());
  }
  ~IntBuffer() {
    if (p) be->release_i32(p);
  }
};

}  // namespace

struct cx_model {
  cx_config cfg{};
  std::unique_ptr<Backend> be;
  std::vector<TensorInfo> tensors;
  size_t n_params = 0;
  Buffer params, compute, grads, adam_m, adam_v;
  int compute_precision = -1;
  // Activations for the last forward, sized for `tokens` positions.
  int64_t tokens_capacity = 0;
  size_t activation_bytes = 0;  // per element, as the backend stores the activations these buffers were sized for
  Buffer x, xmid, h1, rstd1, q, k, v, att, lse, h2, rstd2, gate, up, act, hf, rstdf, losses, tmp;
  Buffer dx, dh, dq, dk, dv, datt, dgate, dup, dact;
  IntBuffer tok, pos, doc_start, targets, rows;
  std::vector<int32_t> host_targets;

  int index_of(const std::string& name) const {
    for (size_t i = 0; i < tensors.size(); i++)
      if (tensors[i].name == name) return (int)i;
    return -1;
  }
  const float* W(const float* base, int i) const { return base + tensors[(size_t)i].offset; }
  float* G(int i) { return grads.p + tensors[(size_t)i].offset; }
};

namespace {

void build_tensor_table(cx_model& m) {
  const cx_config& c = m.cfg;
  auto add = [&](const std::string& name, int64_t rows, int64_t cols, bool decay) {
    m.tensors.push_back({name, rows, cols, m.n_params, decay});
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

// Layer tensor indices: 1 + 9*l + {0 ln1, 1 q, 2 k, 3 v, 4 o, 5 ln2, 6 gate, 7 up, 8 down}
int L(int layer, int which) { return 1 + 9 * layer + which; }

struct Batch {
  int64_t B, T, N;
};

void prepare_batch(cx_model& m, const int32_t* tokens, int B, int T, const cx_run_options& o, Batch& out) {
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
  if (N > m.tokens_capacity || act_bytes > m.activation_bytes) {
    // Activations in the backend's storage (bf16 may be packed, 2 bytes); statistics stay fp32.
    const size_t NC = ((size_t)N * c.hidden * act_bytes + 3) / 4, NF = ((size_t)N * c.ffn * act_bytes + 3) / 4, Ls = (size_t)c.n_layers;
    m.x.ensure(be, NC * (Ls + 1), "residual stream");
    m.xmid.ensure(be, NC * Ls, "residual stream");
    m.h1.ensure(be, NC * Ls, "attention norm");
    m.rstd1.ensure(be, (size_t)N * Ls, "norm stats");
    m.q.ensure(be, NC * Ls, "queries");
    m.k.ensure(be, NC * Ls, "keys");
    m.v.ensure(be, NC * Ls, "values");
    m.att.ensure(be, NC * Ls, "attention output");
    m.lse.ensure(be, (size_t)N * c.n_heads * Ls, "attention stats");
    m.h2.ensure(be, NC * Ls, "MLP norm");
    m.rstd2.ensure(be, (size_t)N * Ls, "norm stats");
    m.gate.ensure(be, NF * Ls, "MLP gate");
    m.up.ensure(be, NF * Ls, "MLP up");
    m.act.ensure(be, NF * Ls, "MLP activation");
    m.hf.ensure(be, NC, "final norm");
    m.rstdf.ensure(be, (size_t)N, "norm stats");
    m.losses.ensure(be, (size_t)N, "losses");
    m.tmp.ensure(be, NC, "scratch");
    for (Buffer* b : {&m.dx, &m.dh, &m.dq, &m.dk, &m.dv, &m.datt}) b->ensure(be, NC, "gradients");
    for (Buffer* b : {&m.dgate, &m.dup, &m.dact}) b->ensure(be, NF, "gradients");
    m.tok.ensure(be, (size_t)N);
    m.pos.ensure(be, (size_t)N);
    m.doc_start.ensure(be, (size_t)N);
    m.targets.ensure(be, (size_t)N);
    m.tokens_capacity = N;
    m.activation_bytes = act_bytes;
  }
  be->upload_i32(m.tok.p, tokens, (size_t)N);
  be->upload_i32(m.pos.p, pos.data(), (size_t)N);
  be->upload_i32(m.doc_start.p, start.data(), (size_t)N);
  be->upload_i32(m.targets.p, target.data(), (size_t)N);
  m.host_targets = std::move(target);
  out = {B, T, N};
}

void ensure_compute_weights(cx_model& m, int precision) {
  if (m.compute_precision == precision) return;
  // Tensor by tensor: each is later addressed by its own pointer (see the storage note in backend.h).
  for (const TensorInfo& t : m.tensors) m.be->copy_round(m.compute.p + t.offset, m.params.p + t.offset, t.size(), precision == CX_BF16);
  m.compute_precision = precision;
}

/* Runs the blocks and the final norm; leaves hidden states in m.hf. */
void forward_blocks(cx_model& m, const Batch& bt, const cx_run_options& o) {
  Backend* be = m.be.get();
  const cx_config& c = m.cfg;
  const bool bf = o.precision == CX_BF16;
  const int64_t N = bt.N, C = c.hidden, F = c.ffn, H = c.n_heads, D = C / H;
  const float* w = m.compute.p;
  // Activations are addressed through the backend, which may store them packed (backend.h).
  auto at = [&](Buffer& b, size_t elements) { return be->advance(b.p, elements, bf); };
  be->embedding_forward(m.x.p, m.tok.p, m.W(w, 0), N, C, bf);
  for (int l = 0; l < c.n_layers; l++) {
    const size_t oc = (size_t)l * N * C, of = (size_t)l * N * F;
    float* xin = at(m.x, oc);
    be->rmsnorm_forward(at(m.h1, oc), m.rstd1.p + (size_t)l * N, xin, m.W(w, L(l, 0)), N, C, c.norm_eps, bf);
    be->matmul_forward(at(m.q, oc), at(m.h1, oc), m.W(w, L(l, 1)), N, C, C, bf);
    be->matmul_forward(at(m.k, oc), at(m.h1, oc), m.W(w, L(l, 2)), N, C, C, bf);
    be->matmul_forward(at(m.v, oc), at(m.h1, oc), m.W(w, L(l, 3)), N, C, C, bf);
    be->rope_forward(at(m.q, oc), m.pos.p, N, H, D, c.rope_theta, bf);
    be->rope_forward(at(m.k, oc), m.pos.p, N, H, D, c.rope_theta, bf);
    be->attention_forward(at(m.att, oc), m.lse.p + (size_t)l * N * H, at(m.q, oc), at(m.k, oc), at(m.v, oc), m.doc_start.p, bt.B, bt.T, H, D, bf);
    be->matmul_forward(m.tmp.p, at(m.att, oc), m.W(w, L(l, 4)), N, C, C, bf);
    be->residual_forward(at(m.xmid, oc), xin, m.tmp.p, N * C, bf);
    be->rmsnorm_forward(at(m.h2, oc), m.rstd2.p + (size_t)l * N, at(m.xmid, oc), m.W(w, L(l, 5)), N, C, c.norm_eps, bf);
    be->matmul_forward(at(m.gate, of), at(m.h2, oc), m.W(w, L(l, 6)), N, C, F, bf);
    be->matmul_forward(at(m.up, of), at(m.h2, oc), m.W(w, L(l, 7)), N, C, F, bf);
    be->swiglu_forward(at(m.act, of), at(m.gate, of), at(m.up, of), N * F, bf);
    be->matmul_forward(m.tmp.p, at(m.act, of), m.W(w, L(l, 8)), N, F, C, bf);
    be->residual_forward(at(m.x, oc + (size_t)N * C), at(m.xmid, oc), m.tmp.p, N * C, bf);
  }
  const int last = 1 + 9 * c.n_layers;
  be->rmsnorm_forward(m.hf.p, m.rstdf.p, at(m.x, (size_t)c.n_layers * N * C), m.W(w, last), N, C, c.norm_eps, bf);
}

void backward_blocks(cx_model& m, const Batch& bt, const cx_run_options& o) {
  Backend* be = m.be.get();
  const cx_config& c = m.cfg;
  const bool bf = o.precision == CX_BF16;
  const int64_t N = bt.N, C = c.hidden, F = c.ffn, H = c.n_heads, D = C / H;
  const float* w = m.compute.p;
  // Activations are addressed through the backend, which may store them packed (backend.h).
  auto at = [&](Buffer& b, size_t elements) { return be->advance(b.p, elements, bf); };
  const int last = 1 + 9 * c.n_layers;
  // m.dh holds d(final norm output) from the fused cross-entropy.
  be->fill(m.dx.p, 0.f, ((size_t)(N * C) * be->activation_bytes(bf) + 3) / 4);  // zero bits are a zero in any storage
  be->rmsnorm_backward(m.dx.p, m.G(last), m.dh.p, at(m.x, (size_t)c.n_layers * N * C), m.W(w, last), m.rstdf.p, N, C, bf);
  for (int l = c.n_layers - 1; l >= 0; l--) {
    const size_t oc = (size_t)l * N * C, of = (size_t)l * N * F;
    be->matmul_backward(m.dact.p, m.G(L(l, 8)), m.dx.p, at(m.act, of), m.W(w, L(l, 8)), N, F, C, false, bf);
    be->swiglu_backward(m.dgate.p, m.dup.p, m.dact.p, at(m.gate, of), at(m.up, of), N * F, bf);
    be->matmul_backward(m.dh.p, m.G(L(l, 6)), m.dgate.p, at(m.h2, oc), m.W(w, L(l, 6)), N, C, F, false, bf);
    be->matmul_backward(m.dh.p, m.G(L(l, 7)), m.dup.p, at(m.h2, oc), m.W(w, L(l, 7)), N, C, F, true, bf);
    be->rmsnorm_backward(m.dx.p, m.G(L(l, 5)), m.dh.p, at(m.xmid, oc), m.W(w, L(l, 5)), m.rstd2.p + (size_t)l * N, N, C, bf);
    be->matmul_backward(m.datt.p, m.G(L(l, 4)), m.dx.p, at(m.att, oc), m.W(w, L(l, 4)), N, C, C, false, bf);
    be->attention_backward(m.dq.p, m.dk.p, m.dv.p, m.datt.p, at(m.att, oc), m.lse.p + (size_t)l * N * H, at(m.q, oc), at(m.k, oc), at(m.v, oc),
                           m.doc_start.p, bt.B, bt.T, H, D, bf);
    be->rope_backward(m.dq.p, m.pos.p, N, H, D, c.rope_theta, bf);
    be->rope_backward(m.dk.p, m.pos.p, N, H, D, c.rope_theta, bf);
    be->matmul_backward(m.dh.p, m.G(L(l, 1)), m.dq.p, at(m.h1, oc), m.W(w, L(l, 1)), N, C, C, false, bf);
    be->matmul_backward(m.dh.p, m.G(L(l, 2)), m.dk.p, at(m.h1, oc), m.W(w, L(l, 2)), N, C, C, true, bf);
    be->matmul_backward(m.dh.p, m.G(L(l, 3)), m.dv.p, at(m.h1, oc), m.W(w, L(l, 3)), N, C, C, true, bf);
    be->rmsnorm_backward(m.dx.p, m.G(L(l, 0)), m.dh.p, at(m.x, oc), m.W(w, L(l, 0)), m.rstd1.p + (size_t)l * N, N, C, bf);
  }
  be->embedding_backward(m.G(0), m.dx.p, m.tok.p, N, C, bf);
}

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

double uniform01(uint64_t& state) { return ((double)(splitmix64(state) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

void check_options(const cx_run_options* o) {
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

}  // namespace

extern "C" {

int cx_model_create(const cx_config* config, const char* backend, int threads, cx_model** out, cx_status* status) {
  return guarded(status, [&] {
    if (!config || !out) fail(CX_INVALID_ARGUMENT, "config and out are required");
    const cx_config& c = *config;
    if (c.n_layers < 1 || c.hidden < 2 || c.n_heads < 1 || c.ffn < 1 || c.vocab < 2 || c.max_seq < 1)
      fail(CX_INVALID_ARGUMENT, "model sizes must be positive (layers %d, hidden %d, heads %d, ffn %d, vocab %d, context %d)", c.n_layers,
           c.hidden, c.n_heads, c.ffn, c.vocab, c.max_seq);
    if (c.hidden % c.n_heads != 0 || (c.hidden / c.n_heads) % 2 != 0)
      fail(CX_INVALID_ARGUMENT, "hidden %d must split into %d heads of an even size", c.hidden, c.n_heads);
    std::unique_ptr<cx_model> m(new cx_model());
    m->cfg = c;
    const std::string which = backend ? backend : "cpu";
    if (which == "cpu") {
      int n = threads > 0 ? threads : (int)std::thread::hardware_concurrency();
      m->be.reset(cx::create_cpu_backend(n > 0 ? n : 1));
    } else if (which == "cuda" || which == "cuda-reference") {
      std::string why;
      m->be.reset(cx::create_cuda_backend(&why, which == "cuda-reference"));
      if (!m->be) fail(CX_BACKEND_UNAVAILABLE, "CUDA backend unavailable: %s", why.c_str());
    } else {
      fail(CX_INVALID_ARGUMENT, "unknown backend '%s' (cpu, cuda or cuda-reference)", which.c_str());
    }
    if (!m->be) fail(CX_OUT_OF_MEMORY, "cannot create the %s backend", which.c_str());
    build_tensor_table(*m);
    Backend* be = m->be.get();
    // Weights, gradients and AdamW moments: 5 x 4 bytes per parameter, whatever the batch.
    const char* too_big = "the model does not fit this device (it needs 20 bytes per parameter before activations)";
    m->params.ensure(be, m->n_params, "parameters", too_big);
    m->compute.ensure(be, m->n_params, "compute weights", too_big);
    m->grads.ensure(be, m->n_params, "gradients", too_big);
    m->adam_m.ensure(be, m->n_params, "AdamW first moments", too_big);
    m->adam_v.ensure(be, m->n_params, "AdamW second moments", too_big);
    for (Buffer* b : {&m->params, &m->grads, &m->adam_m, &m->adam_v}) be->fill(b->p, 0.f, m->n_params);
    *out = m.release();
  });
}

void cx_model_free(cx_model* model) { delete model; }

const char* cx_model_backend(const cx_model* model) { return model->be->name(); }

int cx_model_init(cx_model* m, uint64_t seed, cx_status* status) {
  return guarded(status, [&] {
    std::vector<float> host;
    for (size_t i = 0; i < m->tensors.size(); i++) {
      const TensorInfo& t = m->tensors[i];
      host.assign(t.size(), 1.f);
      if (t.rows > 1) {
        // Normal(0, 0.02) by Box-Muller over splitmix64, seeded per tensor: the same on every machine.
        uint64_t state = seed * 0x100000001b3ull + i * 0x9e3779b97f4a7c15ull;
        for (size_t j = 0; j < host.size(); j += 2) {
          const double u1 = uniform01(state), u2 = uniform01(state);
          const double r = std::sqrt(-2.0 * std::log(u1));
          host[j] = (float)(0.02 * r * std::cos(2 * M_PI * u2));
          if (j + 1 < host.size()) host[j + 1] = (float)(0.02 * r * std::sin(2 * M_PI * u2));
        }
      }
      m->be->upload(m->params.p + t.offset, host.data(), t.size());
    }
    for (Buffer* b : {&m->grads, &m->adam_m, &m->adam_v}) m->be->fill(b->p, 0.f, m->n_params);
    m->compute_precision = -1;
  });
}

int cx_tensor_count(const cx_model* m) { return (int)m->tensors.size(); }
const char* cx_tensor_name(const cx_model* m, int i) { return m->tensors[(size_t)i].name.c_str(); }
void cx_tensor_shape(const cx_model* m, int i, int64_t* rows, int64_t* cols) {
  *rows = m->tensors[(size_t)i].rows;
  *cols = m->tensors[(size_t)i].cols;
}

static float* tensor_base(cx_model* m, int kind) {
  switch (kind) {
    case CX_PARAM: return m->params.p;
    case CX_GRAD: return m->grads.p;
    case CX_ADAM_M: return m->adam_m.p;
    case CX_ADAM_V: return m->adam_v.p;
    default: fail(CX_INVALID_ARGUMENT, "unknown tensor kind %d", kind);
  }
}

int cx_tensor_get(cx_model* m, int kind, int i, float* dst, cx_status* status) {
  return guarded(status, [&] {
    if (i < 0 || i >= (int)m->tensors.size()) fail(CX_INVALID_ARGUMENT, "tensor index %d out of range", i);
    m->be->download(dst, tensor_base(m, kind) + m->tensors[(size_t)i].offset, m->tensors[(size_t)i].size());
  });
}

int cx_tensor_set(cx_model* m, int kind, int i, const float* src, cx_status* status) {
  return guarded(status, [&] {
    if (i < 0 || i >= (int)m->tensors.size()) fail(CX_INVALID_ARGUMENT, "tensor index %d out of range", i);
    m->be->upload(tensor_base(m, kind) + m->tensors[(size_t)i].offset, src, m->tensors[(size_t)i].size());
    if (kind == CX_PARAM) m->compute_precision = -1;
  });
}

int cx_forward_backward(cx_model* m, const int32_t* tokens, int B, int T, const cx_run_options* o, float loss_scale, double* loss_sum,
                        int64_t* count, cx_status* status) {
  return guarded(status, [&] {
    const Batch bt = run_forward(*m, tokens, B, T, o);
    const int last = 1 + 9 * m->cfg.n_layers;
    m->be->lm_head_cross_entropy(m->losses.p, m->dh.p, m->G(last + 1), m->hf.p, m->W(m->compute.p, last + 1), m->targets.p, bt.N,
                                 m->cfg.hidden, m->cfg.vocab, loss_scale, o->precision == CX_BF16);
    backward_blocks(*m, bt, *o);
    std::vector<float> losses((size_t)bt.N);
    m->be->download(losses.data(), m->losses.p, (size_t)bt.N);
    // Sum over positions with a target: a NaN there is a real NaN and must reach the caller.
    double sum = 0;
    int64_t n = 0;
    for (size_t i = 0; i < losses.size(); i++)
      if (m->host_targets[i] >= 0) sum += losses[i], n++;
    *loss_sum = sum;
    *count = n;
  });
}

int cx_forward_losses(cx_model* m, const int32_t* tokens, int B, int T, const cx_run_options* o, float* losses, cx_status* status) {
  return guarded(status, [&] {
    const Batch bt = run_forward(*m, tokens, B, T, o);
    const int last = 1 + 9 * m->cfg.n_layers;
    m->be->lm_head_cross_entropy(m->losses.p, nullptr, nullptr, m->hf.p, m->W(m->compute.p, last + 1), m->targets.p, bt.N, m->cfg.hidden,
                                 m->cfg.vocab, 1.f, o->precision == CX_BF16);
    m->be->download(losses, m->losses.p, (size_t)bt.N);
  });
}

int cx_forward_last_logits(cx_model* m, const int32_t* tokens, int B, int T, const cx_run_options* o, float* logits, cx_status* status) {
  return guarded(status, [&] {
    const Batch bt = run_forward(*m, tokens, B, T, o);
    std::vector<int32_t> rows((size_t)B);
    for (int b = 0; b < B; b++) rows[(size_t)b] = b * T + T - 1;
    m->rows.ensure(m->be.get(), (size_t)B);
    m->be->upload_i32(m->rows.p, rows.data(), (size_t)B);
    Buffer out;
    out.ensure(m->be.get(), (size_t)B * m->cfg.vocab, "logits");
    const int last = 1 + 9 * m->cfg.n_layers;
    m->be->lm_head_logits(out.p, m->hf.p, m->W(m->compute.p, last + 1), m->rows.p, B, m->cfg.hidden, m->cfg.vocab, o->precision == CX_BF16);
    m->be->download(logits, out.p, (size_t)B * m->cfg.vocab);
  });
}

int cx_zero_grad(cx_model* m, cx_status* status) {
  return guarded(status, [&] { m->be->fill(m->grads.p, 0.f, m->n_params); });
}

int cx_grad_norm(cx_model* m, double* norm, cx_status* status) {
  return guarded(status, [&] { *norm = std::sqrt(m->be->sum_squares(m->grads.p, m->n_params)); });
}

int cx_adamw_step(cx_model* m, const cx_adamw* hp, cx_status* status) {
  return guarded(status, [&] {
    if (!hp || hp->step < 1) fail(CX_INVALID_ARGUMENT, "AdamW step must be 1 or more");
    const bool bf = m->compute_precision == CX_BF16;
    cx::AdamWParams p{hp->lr, hp->beta1, hp->beta2, hp->eps, 0.f, hp->grad_scale, 1.f - std::pow(hp->beta1, (float)hp->step),
                      1.f - std::pow(hp->beta2, (float)hp->step)};
    for (const TensorInfo& t : m->tensors) {
      p.weight_decay = t.decay ? hp->weight_decay : 0.f;
      float* compute = m->compute_precision < 0 ? m->params.p + t.offset : m->compute.p + t.offset;
      m->be->adamw(m->params.p + t.offset, compute, m->grads.p + t.offset, m->adam_m.p + t.offset, m->adam_v.p + t.offset, t.size(), p, bf);
    }
  });
}

}  // extern "C"
