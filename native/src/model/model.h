#pragma once
/* The model's private types, shared by the graph (llama.cpp) and the C API (capi.cpp). */
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "../../include/chuxin.h"
#include "backend.h"
#include "batch_layout.h"
#include "data_parallel.h"
#include "../util/status.h"

namespace cxm {

using cx::Backend;

using cx::Failure;
using cx::guarded;
using cx::set_status;

/* Throws a Failure with a printf-style message; the C API turns it into a status (util/status.h). */
[[noreturn]] void fail(int code, const char* fmt, ...);

using cx::DType;
using cx::Tensor;

struct TensorInfo {
  std::string name;
  int64_t rows, cols;
  size_t offset;          // in elements of the fp32 arrays: parameters, gradients, AdamW moments
  size_t compute_offset;  // in elements of the compute copy, laid out for its storage (layout_compute_weights)
  bool decay;  // weight decay applies to the projection and LM-head matrices; the embedding only on request (cx_adamw)
  size_t size() const { return (size_t)(rows * cols); }
};

/* The tensors of one block, in the tensor table's order (build_tensor_table); the table is the embedding, the
 * blocks' tensors, the final norm and the LM head. */
enum class BlockTensor { attn_norm, q, k, v, o, mlp_norm, gate, up, down, count };

/* Backend memory of one element type, released with its owner. */
struct Buffer {
  Backend* be = nullptr;
  Tensor t;
  void ensure(Backend* backend, size_t count, DType dtype, const char* what, const char* hint = "lower --micro-batch or --context") {
    if (t && (size_t)t.numel() >= count && t.dtype == dtype) return;
    reset();
    be = backend;
    t = be->alloc(count, dtype);
    if (!t) {
      const std::string mem = backend->memory_info();
      fail(CX_OUT_OF_MEMORY, "cannot allocate %zu MB for %s on %s%s%s; %s", count * cx::dtype_size(dtype) >> 20, what, backend->name(),
           mem.empty() ? "" : ": ", mem.c_str(), hint);
    }
  }
  size_t bytes() const { return t ? t.bytes() : 0; }
  void reset() {
    if (t) be->release(t);
    t = Tensor();
  }
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { reset(); }
};

class ContextParallel;

}  // namespace cxm

struct cx_model {
  cx_config cfg{};
  std::unique_ptr<cx::Backend> be;
  std::vector<cxm::TensorInfo> tensors;
  size_t n_params = 0;
  cxm::Buffer params, compute, grads, adam_m, adam_v;
  cxm::Buffer clip;  // two fp64: the global gradient norm and the clip factor (backend memory)
  cxm::Buffer rope_inv_freq;  // fp64 [head size / 2]: RoPE's frequencies (set_rope_frequencies)
  std::vector<double> rope_host;  // the same, on the host
  float rope_scale = 1.f;         // cos and sin are scaled by it (YaRN's attention factor; 1 otherwise)
  cx_rope_scaling rope_scaling{};
  int compute_precision = -1;
  // Activations for the last forward, sized for `tokens` positions.
  int64_t tokens_capacity = 0;
  cx::DType activation_dtype = cx::DType::F32;  // how the activation buffers store their elements (Backend::activation_dtype)
  int activation_slots = 0;     // blocks whose activations they hold: all of them, or 1 when recomputed
  cxm::Buffer x, xmid, h1, rstd1, q, k, v, att, lse, h2, rstd2, gate, up, act, hf, rstdf, losses, tmp;
  cxm::Buffer dx, dh, dq, dk, dv, datt, dgate, dup, dact;
  cxm::Buffer tok, pos, doc_start, targets, rows;  // int32
  // Generation's key/value cache (cx_decode_*): [layer][kv_capacity][hidden] each, in the activation type of its run.
  cxm::Buffer kcache, vcache;
  int64_t kv_capacity = 0, kv_length = 0;
  int kv_precision = -1;
  cxm::BatchLayout layout;  // the last staged batch's (prepare_batch)
  // Context parallelism (cx_model_context_parallel): this rank's share of each sequence, ring attention.
  std::unique_ptr<cxm::ContextParallel> cp;
  // Data parallelism (cx_model_data_parallel); last, so its thread stops before the buffers it reduces go.
  std::unique_ptr<cxm::DataParallel> dp;

  int index_of(const std::string& name) const {
    for (size_t i = 0; i < tensors.size(); i++)
      if (tensors[i].name == name) return (int)i;
    return -1;
  }
  /* The compute copy of tensor i (fp32, or packed bf16 in the backend's storage), its fp32 gradient, and its
   * slice of an fp32 array laid out as the parameters are. */
  cx::Tensor W(int i) const { return of(compute.t, i, tensors[(size_t)i].compute_offset); }
  cx::Tensor G(int i) const { return of(grads.t, i, tensors[(size_t)i].offset); }
  cx::Tensor slice(const cxm::Buffer& b, int i) const { return of(b.t, i, tensors[(size_t)i].offset); }

  /* Indices in the tensor table. */
  int block_tensor(int layer, cxm::BlockTensor which) const { return 1 + (int)cxm::BlockTensor::count * layer + (int)which; }
  int final_norm_tensor() const { return 1 + (int)cxm::BlockTensor::count * cfg.n_layers; }
  int lm_head_tensor() const { return final_norm_tensor() + 1; }

 private:
  cx::Tensor of(const cx::Tensor& base, int i, size_t offset) const {
    const cxm::TensorInfo& t = tensors[(size_t)i];
    return (base + (int64_t)offset).shaped(t.rows, t.cols);
  }
};


namespace cxm {

/* A staged batch: B rows of T tokens held here (under context parallelism, this rank's 2 chunks of each row),
 * N = B·T of them. */
struct Batch {
  int64_t B, T, N;
};

/* One activation buffer of the model, its element type and its size for a batch (activation_plan). */
struct ActivationBuffer {
  Buffer cx_model::*buffer;
  size_t elements;
  DType dtype;
  const char* what;
};
std::vector<ActivationBuffer> activation_plan(const cx_config& c, int64_t N, DType activations, int slots);
size_t plan_bytes(const std::vector<ActivationBuffer>& plan);

void build_tensor_table(cx_model& m);
void init_tensor(std::vector<float>& host, const TensorInfo& t, uint64_t seed, size_t index);
/* Sizes the compute copy for a run of this precision and places each tensor at a 256-byte boundary. */
void layout_compute_weights(cx_model& m, int precision, const char* hint);
void ensure_compute_weights(cx_model& m, int precision);
/* Whether position t of a row of T tokens has a target (cx_target_mask). */
inline bool has_target(const int32_t* row, int t, int T, const cx_run_options& o) { return t + 1 < T && !(o.mask_eos_loss && row[t] == o.eos_id); }
/* Checks the options, stages the batch and runs the blocks: what every entry point starts with. */
/* settle: wait on the host for the weights' gathers (data_parallel.h) before returning, for a caller that reads a
 * result back next; a training step settles later, after its backward is queued. */
Batch run_forward(cx_model& m, const int32_t* tokens, int B, int T, const cx_run_options* o, bool settle = true);
void backward_blocks(cx_model& m, const Batch& bt, const cx_run_options& o);
/* AdamW's constants for step hp.step (bias corrections), with this gradient scale or clip factor: the one place the
 * single-rank step (capi.cpp) and the data-parallel one (data_parallel.cpp) take them from, so both stay bit-identical. */
inline cx::AdamWParams adamw_params(const cx_adamw& hp, float grad_scale, const double* clip) {
  if (hp.step < 1) fail(CX_INVALID_ARGUMENT, "AdamW step must be 1 or more");
  return {hp.lr, hp.beta1, hp.beta2, hp.eps, 0.f, grad_scale, 1.f - std::pow(hp.beta1, (float)hp.step), 1.f - std::pow(hp.beta2, (float)hp.step), clip};
}

/* The weight decay of tensor i: the projection and LM-head matrices; tensor 0, the token embedding
 * (build_tensor_table), only when asked. */
inline float adamw_weight_decay(const cx_adamw& hp, const cx_model& m, size_t i) {
  return m.tensors[i].decay || (hp.decay_embeddings && i == 0) ? hp.weight_decay : 0.f;
}

/* RoPE's frequencies for the config's base and this scaling, into the model's table (rope_frequencies.cpp). */
void set_rope_frequencies(cx_model& m, const cx_rope_scaling& s);

/* Generation with a key/value cache: a new sequence of at most `capacity` tokens, then steps of new tokens. */
void decode_reset(cx_model& m, int capacity);
Batch run_decode(cx_model& m, const int32_t* tokens, int n, const cx_run_options* o);

}  // namespace cxm
