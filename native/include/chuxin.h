/*
 * chuxin native C API: a LLaMA-2-style model (RMSNorm pre-norm, RoPE, SwiGLU, no biases, untied head)
 * trained with document-masked attention, in bf16 mixed precision or fp32.
 * Every function returns 0 on success or a non-zero code with a message in *status; nothing here
 * exits or aborts the process.
 */
#ifndef CHUXIN_H
#define CHUXIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum cx_code {
  CX_OK = 0,
  CX_INVALID_ARGUMENT = 1,
  CX_OUT_OF_MEMORY = 2,
  CX_BACKEND_UNAVAILABLE = 3,
  CX_NUMERIC = 4,
  CX_INTERNAL = 5,
};

typedef struct cx_status {
  int code;
  char message[512];
} cx_status;

typedef struct cx_config {
  int n_layers;
  int hidden;
  int n_heads;
  int ffn;
  int vocab;
  int max_seq;
  float rope_theta;
  float norm_eps;
} cx_config;

enum cx_precision { CX_BF16 = 0, CX_FP32 = 1 };

typedef struct cx_run_options {
  int precision;        /* cx_precision */
  int doc_mask;         /* 1: a token attends only to earlier tokens of its own document */
  int reset_positions;  /* 1: RoPE positions restart at 0 after every EOS */
  int mask_eos_loss;    /* 1: the position whose input is EOS does not contribute to the loss */
  int eos_id;
  int recompute;        /* 1: keep only each block's input; rerun the block's forward during backward (less memory,
                           about a third more compute, the same results bit for bit) */
} cx_run_options;

typedef struct cx_adamw {
  float lr, beta1, beta2, eps, weight_decay;
  float grad_scale; /* multiplies every gradient first (global-norm clipping) */
  int step;         /* 1-based, for bias correction */
  int decay_embeddings; /* 1: the token embedding decays too (Hugging Face's Trainer); 0: only the projection and
                           LM-head matrices do (OLMo, and this tool's default); norms never */
} cx_adamw;

typedef struct cx_model cx_model;

enum cx_tensor_kind { CX_PARAM = 0, CX_GRAD = 1, CX_ADAM_M = 2, CX_ADAM_V = 3 };

/* backend: "cpu" or "cuda". threads: CPU worker threads (0 = all cores). */
int cx_model_create(const cx_config* config, const char* backend, int threads, cx_model** out, cx_status* status);
void cx_model_free(cx_model* model);
const char* cx_model_backend(const cx_model* model);
int cx_model_init(cx_model* model, uint64_t seed, cx_status* status);

int cx_tensor_count(const cx_model* model);
const char* cx_tensor_name(const cx_model* model, int index);
/* rows x cols; a vector has rows == 1 */
void cx_tensor_shape(const cx_model* model, int index, int64_t* rows, int64_t* cols);
int cx_tensor_get(cx_model* model, int kind, int index, float* dst, cx_status* status);
int cx_tensor_set(cx_model* model, int kind, int index, const float* src, cx_status* status);

/* Forward + backward over tokens [B][T]; adds loss_scale * d(sum of losses) to the gradients.
 * loss_sum: sum of per-token losses; count: number of positions with a target. */
int cx_forward_backward(cx_model* model, const int32_t* tokens, int B, int T, const cx_run_options* options,
                        float loss_scale, double* loss_sum, int64_t* count, cx_status* status);
/* Forward only: per-position loss [B][T] (NaN where there is no target). */
int cx_forward_losses(cx_model* model, const int32_t* tokens, int B, int T, const cx_run_options* options,
                      float* losses, cx_status* status);
/* Forward only: logits [B][vocab] at position T-1 of each row. */
int cx_forward_last_logits(cx_model* model, const int32_t* tokens, int B, int T, const cx_run_options* options,
                           float* logits, cx_status* status);
int cx_zero_grad(cx_model* model, cx_status* status);
int cx_grad_norm(cx_model* model, double* norm, cx_status* status);
int cx_adamw_step(cx_model* model, const cx_adamw* hp, cx_status* status);
/* One optimizer step with global-norm clipping computed on the backend: the norm, the clip factor
 * min(1, max_norm / norm) and AdamW are queued with no host round trip; *norm is read back after them (the
 * step's one sync). A non-finite norm leaves weights and moments untouched: check *norm. max_norm <= 0: no
 * clipping. hp->grad_scale is not used. */
int cx_clip_adamw_step(cx_model* model, const cx_adamw* hp, float max_norm, double* norm, cx_status* status);
/* Backend memory the model holds now, in bytes: weights, gradients and optimizer state; activations (grow
 * with micro-batch × context, shrink with recompute) and their gradients. */
void cx_model_memory(const cx_model* model, size_t* states, size_t* activations);

#ifdef __cplusplus
}
#endif
#endif
