#pragma once
/* The table of ops a backend implements; src/cpu and src/cuda provide the same ops under the same names.
 * Operands are typed views (tensor.h) of the backend's memory (host for CPU, a device for CUDA). Shapes: N
 * tokens, C channels, H heads of D dims, F FFN width, V vocab. `bf16` means a bf16 run: stored results are
 * rounded to bf16.
 *
 * Storage. In a bf16 run a backend may keep activations, their gradients and the compute copy of the weights as
 * packed bf16 (the fast CUDA backend does; the CPU keeps fp32 holding bf16 values): activation_dtype() says
 * which, the model allocates those buffers in it, and every op reads the storage from its operands' dtype.
 * Master weights, weight gradients, AdamW moments, rstd, lse, losses and logits are fp32; token ids int32.
 *
 * Adding an op: one line in CX_BACKEND_OPS below, its CPU version (cpu/ops.cpp), its CUDA version
 * (cuda/ops.cu and the kernel's file), and a registered check in native/test (the check program fails while
 * an op of this list has none). */
#include <cstddef>
#include <cstdint>
#include <string>

#include "tensor.h"

namespace cx {

struct AdamWParams {
  float lr, beta1, beta2, eps, weight_decay, grad_scale, bias1, bias2;
  /* Backend memory written by clip_factor, or nullptr. When set, its factor replaces grad_scale, and a factor
   * of 0 (a non-finite norm) leaves the tensor and its moments untouched. */
  const double* clip = nullptr;
};

/* X(return type, name, (parameters), (arguments)): every compute op of a backend, once. It declares the
 * backend table below and each backend's overrides (CX_OVERRIDE_OP), and names the ops (Op, op_name) for
 * the checks and the op profile. Contracts:
 *  fill / copy_round: dst = value; dst = src rounded to dst's storage (to bf16 values when bf16).
 *  matmul_forward: out[N][Cout] = inp[N][Cin] · weight[Cout][Cin]^T
 *  matmul_backward: dinp (= or += if accumulate) dout · weight; dweight += dout^T · inp (either may be null)
 *  rmsnorm_backward: dinp += ..., dweight += ...
 *  residual_rmsnorm_forward: sum = a + b, then norm = RMSNorm(sum)·weight with its rstd: residual_forward then
 *    rmsnorm_forward, which a backend may fuse into one pass (same rounding points).
 *  rope_forward / rope_backward: rotate x[N][H][D] in place (Hugging Face rotate_half) by pos[n] · inv_freq[i]
 *    (inv_freq: D/2 fp64 in backend memory), cos and sin scaled by `scale`; or the transpose (the backward).
 *  attention_*: causal attention within documents: token t of row b sees [doc_start[b*T+t], t]; doc_start never
 *    decreases along t. q,k,v,out: [B][T][H][D]; lse: [B][H][T].
 *  attention_block_forward / attention_block_backward / attention_combine: ring attention's pieces. Queries
 *    q [Tq][H][D] at row positions q_offset.., with their documents' starts q_start[Tq] (row positions), against
 *    keys and values [Tk][H][D] at k_offset..: query i sees key j when q_start[i] <= j <= i. The forward writes
 *    this block's softmax alone, out [Tq][H][D] and lse [H][Tq] in fp32 (0 and -inf for a query that sees none
 *    of the keys); attention_combine merges such a block into acc_out, acc_lse by their log-sum-exp, so blocks in
 *    any order give the softmax over all their keys. The backward, from the queries' final out, lse ([H][Tq])
 *    and dout, adds this block's share to dq [Tq][H][D] and dk, dv [Tk][H][D] (fp32).
 *  lm_head_cross_entropy: fused LM head + cross-entropy over row chunks, never holding fp32 logits for all
 *    rows. Writes per-row losses (NaN where target < 0). With dhidden also backward: dhidden = scale·dlogits·W,
 *    dweight += scale·dlogits^T·hidden.
 *  lm_head_logits: out[R][V] = hidden[rows[r]] · weight^T (fp32).
 *  clip_factor: global-norm clipping where the gradients are, with no host round trip: clip[0] = ‖g‖ (the same
 *    sum as sum_squares), clip[1] = min(1, max_norm / ‖g‖) (1 when max_norm <= 0), or 0 when ‖g‖ is not
 *    finite. clip: two fp64 in backend memory.
 *  adamw: one AdamW step over a tensor; decay applies when weight_decay != 0; writes the compute copy too. */
#define CX_BACKEND_OPS(X)                                                                                                              \
  X(void, fill, (Tensor dst, float value, size_t n), (dst, value, n))                                                                 \
  X(void, copy_round, (Tensor dst, Tensor src, size_t n, bool bf16), (dst, src, n, bf16))                                             \
  X(void, embedding_forward, (Tensor out, Tensor tokens, Tensor wte, int64_t N, int64_t C, bool bf16), (out, tokens, wte, N, C, bf16)) \
  X(void, embedding_backward, (Tensor dwte, Tensor dout, Tensor tokens, int64_t N, int64_t C, bool bf16),                             \
    (dwte, dout, tokens, N, C, bf16))                                                                                                 \
  X(void, matmul_forward, (Tensor out, Tensor inp, Tensor weight, int64_t N, int64_t Cin, int64_t Cout, bool bf16),                   \
    (out, inp, weight, N, Cin, Cout, bf16))                                                                                           \
  X(void, matmul_backward,                                                                                                            \
    (Tensor dinp, Tensor dweight, Tensor dout, Tensor inp, Tensor weight, int64_t N, int64_t Cin, int64_t Cout, bool accumulate_dinp,  \
     bool bf16),                                                                                                                      \
    (dinp, dweight, dout, inp, weight, N, Cin, Cout, accumulate_dinp, bf16))                                                          \
  X(void, rmsnorm_forward, (Tensor out, Tensor rstd, Tensor inp, Tensor weight, int64_t N, int64_t C, float eps, bool bf16),          \
    (out, rstd, inp, weight, N, C, eps, bf16))                                                                                        \
  X(void, rmsnorm_backward,                                                                                                           \
    (Tensor dinp, Tensor dweight, Tensor dout, Tensor inp, Tensor weight, Tensor rstd, int64_t N, int64_t C, bool bf16),              \
    (dinp, dweight, dout, inp, weight, rstd, N, C, bf16))                                                                             \
  X(void, residual_forward, (Tensor out, Tensor a, Tensor b, int64_t n, bool bf16), (out, a, b, n, bf16))                             \
  X(void, residual_rmsnorm_forward,                                                                                                   \
    (Tensor sum, Tensor norm, Tensor rstd, Tensor a, Tensor b, Tensor weight, int64_t N, int64_t C, float eps, bool bf16),            \
    (sum, norm, rstd, a, b, weight, N, C, eps, bf16))                                                                                 \
  X(void, rope_forward, (Tensor x, Tensor pos, int64_t N, int64_t H, int64_t D, Tensor inv_freq, float scale, bool bf16),            \
    (x, pos, N, H, D, inv_freq, scale, bf16))                                                                                         \
  X(void, rope_backward, (Tensor dx, Tensor pos, int64_t N, int64_t H, int64_t D, Tensor inv_freq, float scale, bool bf16),          \
    (dx, pos, N, H, D, inv_freq, scale, bf16))                                                                                        \
  X(void, attention_forward,                                                                                                          \
    (Tensor out, Tensor lse, Tensor q, Tensor k, Tensor v, Tensor doc_start, int64_t B, int64_t T, int64_t H, int64_t D, bool bf16),  \
    (out, lse, q, k, v, doc_start, B, T, H, D, bf16))                                                                                 \
  X(void, attention_backward,                                                                                                         \
    (Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor out, Tensor lse, Tensor q, Tensor k, Tensor v, Tensor doc_start, int64_t B, \
     int64_t T, int64_t H, int64_t D, bool bf16),                                                                                     \
    (dq, dk, dv, dout, out, lse, q, k, v, doc_start, B, T, H, D, bf16))                                                               \
  /* Ring attention (context parallelism): a block of queries against a block of keys of one row; see below. */                       \
  X(void, attention_block_forward,                                                                                                    \
    (Tensor out, Tensor lse, Tensor q, Tensor k, Tensor v, Tensor q_start, int64_t q_offset, int64_t k_offset, int64_t Tq, int64_t Tk,  \
     int64_t H, int64_t D),                                                                                                           \
    (out, lse, q, k, v, q_start, q_offset, k_offset, Tq, Tk, H, D))                                                                   \
  X(void, attention_block_backward,                                                                                                   \
    (Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor out, Tensor lse, Tensor q, Tensor k, Tensor v, Tensor q_start,              \
     int64_t q_offset, int64_t k_offset, int64_t Tq, int64_t Tk, int64_t H, int64_t D),                                              \
    (dq, dk, dv, dout, out, lse, q, k, v, q_start, q_offset, k_offset, Tq, Tk, H, D))                                                 \
  X(void, attention_combine, (Tensor acc_out, Tensor acc_lse, Tensor out, Tensor lse, int64_t Tq, int64_t H, int64_t D),              \
    (acc_out, acc_lse, out, lse, Tq, H, D))                                                                                           \
  /* Incremental decoding: appends k, v [Tq][H*D] to the caches at row `past`, then query i attends cache rows 0..past+i. */           \
  X(void, attention_cached,                                                                                                           \
    (Tensor out, Tensor kcache, Tensor vcache, Tensor q, Tensor k, Tensor v, int64_t Tq, int64_t past, int64_t H, int64_t D, bool bf16), \
    (out, kcache, vcache, q, k, v, Tq, past, H, D, bf16))                                                                             \
  X(void, swiglu_forward, (Tensor out, Tensor gate, Tensor up, int64_t n, bool bf16), (out, gate, up, n, bf16))                       \
  X(void, swiglu_backward, (Tensor dgate, Tensor dup, Tensor dout, Tensor gate, Tensor up, int64_t n, bool bf16),                     \
    (dgate, dup, dout, gate, up, n, bf16))                                                                                            \
  X(void, lm_head_cross_entropy,                                                                                                      \
    (Tensor losses, Tensor dhidden, Tensor dweight, Tensor hidden, Tensor weight, Tensor targets, int64_t N, int64_t C, int64_t V,    \
     float scale, bool bf16),                                                                                                         \
    (losses, dhidden, dweight, hidden, weight, targets, N, C, V, scale, bf16))                                                        \
  X(void, lm_head_logits, (Tensor out, Tensor hidden, Tensor weight, Tensor rows, int64_t R, int64_t C, int64_t V, bool bf16),        \
    (out, hidden, weight, rows, R, C, V, bf16))                                                                                       \
  X(double, sum_squares, (Tensor x, size_t n), (x, n))                                                                                \
  X(void, clip_factor, (Tensor clip, Tensor grad, size_t n, float max_norm), (clip, grad, n, max_norm))                               \
  X(void, adamw, (Tensor param, Tensor compute_copy, Tensor grad, Tensor m, Tensor v, size_t n, const AdamWParams& hp, bool bf16),    \
    (param, compute_copy, grad, m, v, n, hp, bf16))

enum class Op {
#define CX_OP_ENUM(ret, name, params, args) name,
  CX_BACKEND_OPS(CX_OP_ENUM)
#undef CX_OP_ENUM
};
inline constexpr const char* kOpNames[] = {
#define CX_OP_NAME(ret, name, params, args) #name,
    CX_BACKEND_OPS(CX_OP_NAME)
#undef CX_OP_NAME
};
constexpr int kOpCount = (int)(sizeof kOpNames / sizeof kOpNames[0]);
inline const char* op_name(Op op) { return kOpNames[(int)op]; }

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  /* Where its memory is: kHost, or the CUDA device ordinal. */
  virtual int device() const { return kHost; }
  /* The stream its ops are queued on (cudaStream_t; nullptr: the device's default stream, or the CPU). A
   * communicator or a second backend on the same device synchronises against it. */
  virtual void* stream() const { return nullptr; }
  /* Makes the backend's device the calling thread's current one (CUDA's is per thread); the CPU has nothing to do. */
  virtual void make_current() {}
  /* n elements of dtype; an empty view when the memory is not there (the model turns that into CX_OUT_OF_MEMORY). */
  virtual Tensor alloc(size_t n, DType dtype) = 0;
  virtual void release(Tensor t) = 0;
  /* Raw elements of dst's type in and out. */
  virtual void upload(Tensor dst, const void* src, size_t n) = 0;
  virtual void download(void* dst, Tensor src, size_t n) = 0;
  /* fp32 values in and out of a tensor of any float storage, converted (rounded to nearest even into bf16). */
  virtual void upload_values(Tensor dst, const float* src, size_t n) = 0;
  virtual void download_values(float* dst, Tensor src, size_t n) = 0;
  /* How this backend stores activations, their gradients and the compute weights in a run of this precision. */
  virtual DType activation_dtype(bool bf16) const { return (void)bf16, DType::F32; }

#define CX_DECLARE_OP(ret, name, params, args) virtual ret name params = 0;
  CX_BACKEND_OPS(CX_DECLARE_OP)
#undef CX_DECLARE_OP

  /* For out-of-memory messages: e.g. "1234 MB free of 81559 MB". */
  virtual std::string memory_info() { return ""; }
  /* The device's free and total memory in bytes; false where the backend cannot tell (the host: ask the OS). */
  virtual bool memory_available(size_t* free_bytes, size_t* total_bytes) { return (void)free_bytes, (void)total_bytes, false; }
  /* Scratch memory a micro-batch of N tokens needs beyond the model's activation buffers (a workspace that grows
   * with the batch), for a model of this width and head count. */
  virtual size_t workspace_bytes(int64_t N, int64_t hidden, int64_t heads) const { return (void)N, (void)hidden, (void)heads, 0; }
};

/* In a backend's class: `CX_BACKEND_OPS(CX_OVERRIDE_OP)` declares every op, defined out of the class. */
#define CX_OVERRIDE_OP(ret, name, params, args) ret name params override;

Backend* create_cpu_backend(int threads);
/* nullptr with a reason in *why when CUDA (or cuBLASLt) is not available. reference_kernels: the simple,
 * obviously-right kernels only (no cuBLASLt, no fused attention), the yardstick for the fast ones. device: the
 * CUDA ordinal the backend's memory and work live on. */
Backend* create_cuda_backend(std::string* why, bool reference_kernels = false, int device = 0);
/* CUDA devices visible to this process: 0 without a usable driver, -1 in a build without CUDA. */
int cuda_device_count();

}  // namespace cx
