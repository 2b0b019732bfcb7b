/* The C API (include/chuxin.h) over the model: every entry point returns a status, never throws or exits. */
#include <algorithm>
#include <cmath>
#include <cstring>
#include <thread>

#include "model.h"
#include "context_parallel.h"
#include "../comm/communicator.h"

using namespace cxm;

/* AdamW over every tensor, with the host's grad_scale or the backend's clip factor. */
static void adamw_all(cx_model& m, const cx_adamw* hp, const double* clip) {
  if (!hp) fail(CX_INVALID_ARGUMENT, "AdamW hyperparameters are missing");
  const bool bf = m.compute_precision == CX_BF16;
  cx::AdamWParams p = adamw_params(*hp, hp->grad_scale, clip);
  for (size_t k = 0; k < m.tensors.size(); k++) {
    p.weight_decay = adamw_weight_decay(*hp, m, k);
    const int i = (int)k;
    const cx::Tensor param = m.slice(m.params, i), compute = m.compute_precision < 0 ? param : m.W(i);
    m.be->adamw(param, compute, m.G(i), m.slice(m.adam_m, i), m.slice(m.adam_v, i), m.tensors[k].size(), p, bf);
  }
}

static const char* const kShardedMasters =
    "each rank holds only its share of the fp32 master weights since the first step (ZeRO-1); set the weights before training starts";

/* Every call on a model runs with its device current: Node calls it from any thread of its pool, and the current
 * CUDA device is per thread (a rank on cuda:3 would otherwise queue its kernels on device 0). */
template <typename F>
static int guarded_on(cx_model* m, cx_status* status, F&& body) {
  return guarded(status, [&] {
    if (!m) fail(CX_INVALID_ARGUMENT, "model is required");
    m->be->make_current();
    body();
  });
}

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
    } else if (which == "cuda" || which == "cuda-reference" || which.rfind("cuda:", 0) == 0) {
      // "cuda:N": the device of ordinal N (one rank per GPU); "cuda": device 0.
      int device = 0;
      if (which.rfind("cuda:", 0) == 0) {
        const std::string n = which.substr(5);
        if (n.empty() || n.size() > 3 || n.find_first_not_of("0123456789") != std::string::npos) fail(CX_INVALID_ARGUMENT, "backend '%s': expected cuda:N", which.c_str());
        device = std::stoi(n);
      }
      std::string why;
      m->be.reset(cx::create_cuda_backend(&why, which == "cuda-reference", device));
      if (!m->be) fail(CX_BACKEND_UNAVAILABLE, "CUDA backend unavailable: %s", why.c_str());
    } else {
      fail(CX_INVALID_ARGUMENT, "unknown backend '%s' (cpu, cuda or cuda-reference)", which.c_str());
    }
    if (!m->be) fail(CX_OUT_OF_MEMORY, "cannot create the %s backend", which.c_str());
    build_tensor_table(*m);
    Backend* be = m->be.get();
    // fp32 weights, gradients and AdamW moments (16 bytes per parameter) and the compute copy in the storage of a
    // bf16 run (2 or 4 bytes; an fp32 run on a packed-bf16 backend grows it), whatever the batch.
    char too_big[160];
    snprintf(too_big, sizeof too_big, "the model does not fit this device (it needs %zu bytes per parameter before activations)",
             16 + cx::dtype_size(be->activation_dtype(true)));
    m->params.ensure(be, m->n_params, DType::F32, "parameters", too_big);
    m->grads.ensure(be, m->n_params, DType::F32, "gradients", too_big);
    m->adam_m.ensure(be, m->n_params, DType::F32, "AdamW first moments", too_big);
    m->adam_v.ensure(be, m->n_params, DType::F32, "AdamW second moments", too_big);
    layout_compute_weights(*m, CX_BF16, too_big);
    for (Buffer* b : {&m->params, &m->grads, &m->adam_m, &m->adam_v}) be->fill(b->t, 0.f, m->n_params);
    set_rope_frequencies(*m, cx_rope_scaling{CX_ROPE_DEFAULT, 1.f, 0, 0.f, 0.f, 0.f, 0.f});
    *out = m.release();
  });
}

void cx_model_free(cx_model* model) { delete model; }

int cx_model_set_rope_scaling(cx_model* m, const cx_rope_scaling* scaling, cx_status* status) {
  return guarded_on(m, status, [&] {
    if (!scaling) fail(CX_INVALID_ARGUMENT, "scaling is required");
    set_rope_frequencies(*m, *scaling);
  });
}

int cx_model_rope_frequencies(cx_model* m, double* inv_freq, float* scale, cx_status* status) {
  return guarded_on(m, status, [&] {
    if (!inv_freq || !scale) fail(CX_INVALID_ARGUMENT, "inv_freq and scale are required");
    std::copy(m->rope_host.begin(), m->rope_host.end(), inv_freq);
    *scale = m->rope_scale;
  });
}

const char* cx_model_backend(const cx_model* model) { return model->be->name(); }

int cx_cuda_device_count(void) { return cx::cuda_device_count(); }

int cx_model_init(cx_model* m, uint64_t seed, cx_status* status) {
  return guarded_on(m, status, [&] {
    if (m->dp && m->dp->masters_sharded()) fail(CX_INVALID_ARGUMENT, "%s", kShardedMasters);
    // Tensors are generated in parallel, a group of about 2^28 values (1 GiB) at a time, then uploaded in order:
    // host memory stays bounded, and the values do not depend on the thread count.
    const size_t workers = std::max(1u, std::min(16u, std::thread::hardware_concurrency()));
    for (size_t first = 0; first < m->tensors.size();) {
      size_t last = first, values = 0;
      while (last < m->tensors.size() && (last == first || values + m->tensors[last].size() <= (size_t)1 << 28)) values += m->tensors[last++].size();
      std::vector<std::vector<float>> host(last - first);
      std::vector<std::thread> pool;
      for (size_t w = 0; w < std::min(workers, last - first); w++)
        pool.emplace_back([&, w] {
          for (size_t i = first + w; i < last; i += workers) init_tensor(host[i - first], m->tensors[i], seed, i);
        });
      for (auto& th : pool) th.join();
      for (size_t i = first; i < last; i++) m->be->upload(m->slice(m->params, (int)i), host[i - first].data(), m->tensors[i].size());
      first = last;
    }
    for (Buffer* b : {&m->grads, &m->adam_m, &m->adam_v}) m->be->fill(b->t, 0.f, (size_t)b->t.numel());  // moments may be a share
    m->compute_precision = -1;
  });
}

int cx_tensor_count(const cx_model* m) { return (int)m->tensors.size(); }
const char* cx_tensor_name(const cx_model* m, int i) { return m->tensors[(size_t)i].name.c_str(); }
void cx_tensor_shape(const cx_model* m, int i, int64_t* rows, int64_t* cols) {
  *rows = m->tensors[(size_t)i].rows;
  *cols = m->tensors[(size_t)i].cols;
}

static const Buffer& tensor_array(cx_model* m, int kind) {
  switch (kind) {
    case CX_PARAM: return m->params;
    case CX_GRAD: return m->grads;
    case CX_ADAM_M: return m->adam_m;
    case CX_ADAM_V: return m->adam_v;
    default: fail(CX_INVALID_ARGUMENT, "unknown tensor kind %d", kind);
  }
}

int cx_tensor_get(cx_model* m, int kind, int i, float* dst, cx_status* status) {
  return guarded_on(m, status, [&] {
    if (i < 0 || i >= (int)m->tensors.size()) fail(CX_INVALID_ARGUMENT, "tensor index %d out of range", i);
    if (m->dp && (kind == CX_ADAM_M || kind == CX_ADAM_V)) return m->dp->get_moments(kind, i, dst);
    if (m->dp && kind == CX_PARAM && m->dp->masters_sharded()) return m->dp->get_params(i, dst);  // collective
    m->be->download(dst, m->slice(tensor_array(m, kind), i), m->tensors[(size_t)i].size());
  });
}

int cx_tensor_set(cx_model* m, int kind, int i, const float* src, cx_status* status) {
  return guarded_on(m, status, [&] {
    if (i < 0 || i >= (int)m->tensors.size()) fail(CX_INVALID_ARGUMENT, "tensor index %d out of range", i);
    if (m->dp && (kind == CX_ADAM_M || kind == CX_ADAM_V)) return m->dp->set_moments(kind, i, src);
    if (m->dp && kind == CX_PARAM && m->dp->masters_sharded()) fail(CX_INVALID_ARGUMENT, "%s", kShardedMasters);
    m->be->upload(m->slice(tensor_array(m, kind), i), src, m->tensors[(size_t)i].size());
    if (kind == CX_PARAM) m->compute_precision = -1;
  });
}

int cx_forward_backward(cx_model* m, const int32_t* tokens, int B, int T, const cx_run_options* o, float loss_scale, int reduce_gradients,
                        double* loss_sum, int64_t* count, cx_status* status) {
  return guarded_on(m, status, [&] {
    if (reduce_gradients) {
      if (!m->dp) fail(CX_INVALID_ARGUMENT, "reduce_gradients: the model is not data-parallel (cx_model_data_parallel)");
      m->dp->reduce_on_next_backward();
    }
    const Batch bt = run_forward(*m, tokens, B, T, o, false);
    if (m->dp) m->dp->backward_started();
    const int head = m->lm_head_tensor();
    m->be->lm_head_cross_entropy(m->losses.t, m->dh.t, m->G(head), m->hf.t, m->W(head), m->targets.t, bt.N, m->cfg.hidden, m->cfg.vocab,
                                 loss_scale, o->precision == CX_BF16);
    backward_blocks(*m, bt, *o);
    if (m->dp) m->dp->weights_settled();  // before the read-back below waits on the model's stream
    std::vector<float> losses((size_t)bt.N);
    m->be->download(losses.data(), m->losses.t, (size_t)bt.N);
    // Sum over positions with a target: a NaN there is a real NaN and must reach the caller.
    double sum = 0;
    int64_t n = 0;
    for (size_t i = 0; i < losses.size(); i++)
      if (m->layout.targets()[i] >= 0) sum += losses[i], n++;
    *loss_sum = sum;
    *count = n;
  });
}

int cx_forward_losses(cx_model* m, const int32_t* tokens, int B, int T, const cx_run_options* o, float* losses, cx_status* status) {
  return guarded_on(m, status, [&] {
    const Batch bt = run_forward(*m, tokens, B, T, o);
    m->be->lm_head_cross_entropy(m->losses.t, nullptr, nullptr, m->hf.t, m->W(m->lm_head_tensor()), m->targets.t, bt.N, m->cfg.hidden,
                                 m->cfg.vocab, 1.f, o->precision == CX_BF16);
    if (!m->cp) return m->be->download(losses, m->losses.t, (size_t)bt.N);
    // This rank's positions land at their places in the rows, 0 elsewhere: summed over the ring, the whole rows.
    std::vector<float> own((size_t)bt.N);
    m->be->download(own.data(), m->losses.t, own.size());
    std::fill(losses, losses + (int64_t)B * T, 0.f);
    for (int64_t b = 0; b < B; b++)
      for (int64_t t = 0; t < bt.T; t++) losses[b * T + m->layout.row_position(t)] = own[(size_t)(b * bt.T + t)];
  });
}

/* Logits at chosen flat positions of the batch just run forward. */
static void logits_at(cx_model* m, const Batch& bt, const int32_t* positions, int n, const cx_run_options* o, float* logits) {
  if (m->cp) fail(CX_INVALID_ARGUMENT, "logits are read on one rank; this model splits its sequences over a ring (context parallelism)");
  for (int i = 0; i < n; i++)
    if (positions[i] < 0 || positions[i] >= bt.N) fail(CX_INVALID_ARGUMENT, "position %d is outside the batch of %lld", positions[i], (long long)bt.N);
  m->rows.ensure(m->be.get(), (size_t)n, DType::I32, "row indices");
  m->be->upload(m->rows.t, positions, (size_t)n);
  Buffer out;
  out.ensure(m->be.get(), (size_t)n * m->cfg.vocab, DType::F32, "logits");
  m->be->lm_head_logits(out.t, m->hf.t, m->W(m->lm_head_tensor()), m->rows.t, n, m->cfg.hidden, m->cfg.vocab, o->precision == CX_BF16);
  m->be->download(logits, out.t, (size_t)n * m->cfg.vocab);
}

int cx_forward_last_logits(cx_model* m, const int32_t* tokens, int B, int T, const cx_run_options* o, float* logits, cx_status* status) {
  return guarded_on(m, status, [&] {
    const Batch bt = run_forward(*m, tokens, B, T, o);
    std::vector<int32_t> rows((size_t)B);
    for (int b = 0; b < B; b++) rows[(size_t)b] = b * T + T - 1;
    logits_at(m, bt, rows.data(), B, o, logits);
  });
}

int cx_forward_logits_at(cx_model* m, const int32_t* tokens, int B, int T, const cx_run_options* o, const int32_t* positions, int n,
                         float* logits, cx_status* status) {
  return guarded_on(m, status, [&] {
    if (n < 0 || (n > 0 && (!positions || !logits))) fail(CX_INVALID_ARGUMENT, "positions and logits are required");
    const Batch bt = run_forward(*m, tokens, B, T, o);
    logits_at(m, bt, positions, n, o, logits);
  });
}

int cx_decode_reset(cx_model* m, int max_tokens, cx_status* status) {
  return guarded_on(m, status, [&] { decode_reset(*m, max_tokens); });
}

int cx_decode_step(cx_model* m, const int32_t* tokens, int n, const cx_run_options* o, float* logits, cx_status* status) {
  return guarded_on(m, status, [&] {
    if (!tokens || !logits) fail(CX_INVALID_ARGUMENT, "tokens and logits are required");
    const Batch bt = run_decode(*m, tokens, n, o);
    const int32_t last = n - 1;
    logits_at(m, bt, &last, 1, o, logits);
  });
}

int cx_target_mask(const int32_t* tokens, int B, int T, const cx_run_options* o, const cx_comm* comm, uint8_t* mask, cx_status* status) {
  return guarded(status, [&] {
    if (!o) fail(CX_INVALID_ARGUMENT, "run options are required");
    if (B < 0 || T < 0 || (B * T > 0 && (!tokens || !mask))) fail(CX_INVALID_ARGUMENT, "tokens and mask are required");
    const cx::Communicator* c = cx_comm_impl(comm);
    const cx::Topology topology = c ? c->topology() : cx::Topology{};
    const RingPlace ring{topology.ring_size, topology.ring_index()};
    BatchLayout(tokens, B, T, *o, topology.ring_size > 1 ? &ring : nullptr).row_target_mask(mask);
  });
}

int cx_zero_grad(cx_model* m, cx_status* status) {
  return guarded_on(m, status, [&] { m->be->fill(m->grads.t, 0.f, m->n_params); });
}

int cx_grad_norm(cx_model* m, double* norm, cx_status* status) {
  return guarded_on(m, status, [&] { *norm = std::sqrt(m->be->sum_squares(m->grads.t, m->n_params)); });
}

int cx_adamw_step(cx_model* m, const cx_adamw* hp, cx_status* status) {
  return guarded_on(m, status, [&] {
    if (m->dp) fail(CX_INVALID_ARGUMENT, "a data-parallel model steps with cx_clip_adamw_step");
    adamw_all(*m, hp, nullptr);
  });
}

int cx_clip_adamw_step(cx_model* m, const cx_adamw* hp, float max_norm, double* norm, cx_status* status) {
  return guarded_on(m, status, [&] {
    if (!hp) fail(CX_INVALID_ARGUMENT, "AdamW options are required");
    if (m->dp) {
      *norm = m->dp->clip_adamw_step(*hp, max_norm);
      return;
    }
    m->clip.ensure(m->be.get(), 2, DType::F64, "gradient clipping");
    m->be->clip_factor(m->clip.t, m->grads.t, m->n_params, max_norm);
    adamw_all(*m, hp, m->clip.t.f64());
    // The one read-back, once everything is queued.
    double host[2];
    m->be->download(host, m->clip.t, 2);
    *norm = host[0];
  });
}

int cx_model_data_parallel(cx_model* m, cx_comm* comm, int zero, cx_status* status) {
  return guarded_on(m, status, [&] {
    cx::Communicator* c = cx_comm_impl(comm);
    if (!c) fail(CX_INVALID_ARGUMENT, "a communicator is required");
    if (m->dp) fail(CX_INVALID_ARGUMENT, "the model is already data-parallel");
    m->dp.reset(new DataParallel(*m, c, zero));
  });
}

int cx_model_context_parallel(cx_model* m, cx_comm* comm, cx_status* status) {
  return guarded_on(m, status, [&] {
    if (m->cp) fail(CX_INVALID_ARGUMENT, "the model already splits its sequences over a ring");
    m->cp.reset(new ContextParallel(*m, cx_comm_impl(comm)));
  });
}

int cx_model_replicas_identical(cx_model* m, int* identical, uint64_t* digest, cx_status* status) {
  return guarded_on(m, status, [&] {
    if (!m->dp) fail(CX_INVALID_ARGUMENT, "the model is not data-parallel (cx_model_data_parallel)");
    m->dp->weights_settled();
    // FNV-1a over the weights' bit patterns, a value at a time (any flipped bit changes it): the fp32 masters, or
    // once they are sharded the compute copy, which every rank holds whole.
    uint64_t h = 1469598103934665603ull;
    std::vector<float> host;
    for (size_t i = 0; i < m->tensors.size(); i++) {
      host.resize(m->tensors[i].size());
      if (m->dp->masters_sharded()) m->be->download_values(host.data(), m->W((int)i), host.size());
      else m->be->download(host.data(), m->slice(m->params, (int)i), host.size());
      for (float v : host) {
        uint32_t bits;
        std::memcpy(&bits, &v, sizeof bits);
        h = (h ^ bits) * 1099511628211ull;
      }
    }
    uint64_t root = h;
    m->dp->comm().broadcast(&root, sizeof root, 0);
    double differ = root == h ? 0 : 1;
    m->dp->comm().all_reduce_host(&differ, 1);
    *identical = differ == 0 ? 1 : 0;
    if (digest) *digest = h;
  });
}

void cx_model_memory(const cx_model* m, size_t* states, size_t* activations) {
  size_t s = 0, a = 0;
  for (const Buffer* b : {&m->params, &m->compute, &m->grads, &m->adam_m, &m->adam_v}) s += b->bytes();
  if (m->dp) s += m->dp->state_bytes();
  // Every activation buffer (the plan's list; its sizes do not matter here), as held now.
  for (const ActivationBuffer& buffer : activation_plan(m->cfg, 1, DType::F32, 1)) a += (m->*buffer.buffer).bytes();
  a += m->rows.bytes();
  if (m->cp) a += m->cp->bytes();
  if (states) *states = s;
  if (activations) *activations = a;
}

size_t cx_model_activation_bytes(const cx_model* m, int64_t tokens, int precision, int recompute) {
  const DType act = m->be->activation_dtype(precision == CX_BF16);
  const int slots = recompute ? 1 : m->cfg.n_layers;
  return plan_bytes(activation_plan(m->cfg, tokens, act, slots)) + m->be->workspace_bytes(tokens, m->cfg.hidden, m->cfg.n_heads);
}

int cx_model_device_memory(const cx_model* m, size_t* free_bytes, size_t* total_bytes) {
  size_t f = 0, t = 0;
  const bool known = m->be->memory_available(&f, &t);
  if (free_bytes) *free_bytes = f;
  if (total_bytes) *total_bytes = t;
  return known ? 1 : 0;
}

}  // extern "C"
