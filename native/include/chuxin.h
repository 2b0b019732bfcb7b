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

/* RoPE's frequencies past its base, as Hugging Face's rope_scaling (rope_parameters) defines them
 * (transformers' modeling_rope_utils): linear divides every frequency by factor; yarn interpolates the low
 * frequencies, keeps the high ones, ramps between the dimensions beta_slow and beta_fast rotations within
 * original_max_positions, and scales cos and sin by 0.1 ln(factor) + 1; llama3 divides the frequencies whose
 * wavelength exceeds original_max_positions / low_freq_factor, keeps those below original / high_freq_factor and
 * blends between. CX_ROPE_DEFAULT: theta alone (the other fields unread). */
enum cx_rope_type { CX_ROPE_DEFAULT = 0, CX_ROPE_LINEAR = 1, CX_ROPE_YARN = 2, CX_ROPE_LLAMA3 = 3 };
typedef struct cx_rope_scaling {
  int type;
  float factor;
  int original_max_positions;
  float low_freq_factor, high_freq_factor; /* llama3 */
  float beta_fast, beta_slow;              /* yarn */
} cx_rope_scaling;

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
/* Sets RoPE's frequencies from the config's rope_theta and this scaling (CX_ROPE_DEFAULT: the base alone, as a new
 * model has). */
int cx_model_set_rope_scaling(cx_model* model, const cx_rope_scaling* scaling, cx_status* status);
/* The frequencies RoPE rotates by: inv_freq [head_size / 2] and the factor cos and sin are scaled by. */
int cx_model_rope_frequencies(cx_model* model, double* inv_freq, float* scale, cx_status* status);
const char* cx_model_backend(const cx_model* model);
/* How many CUDA devices this process sees (after CUDA_VISIBLE_DEVICES): 0 with no usable driver or device, -1 when
 * the library was built without CUDA. */
int cx_cuda_device_count(void);
/* Ask the kernel to SIGKILL this process when its parent ends (a launcher's rank must not outlive it): 1 when
 * parent_pid is still the parent, 0 when it is already gone, -1 where the system has no such request (not Linux). */
int cx_die_with_parent(int parent_pid);
/* What this library was built with, as JSON: {"cuda": bool, "cuda_gencode": "-gencode ...", "gloo": bool}. */
const char* cx_build_info(void);
/* Tries to load a run-time library, "nccl" or "cublaslt", without keeping it: 1 with the file and its version in buf,
 * 0 with where it looked and why nothing loaded, -1 for another name. */
int cx_probe_library(const char* name, char* buf, size_t n);
int cx_model_init(cx_model* model, uint64_t seed, cx_status* status);

int cx_tensor_count(const cx_model* model);
const char* cx_tensor_name(const cx_model* model, int index);
/* rows x cols; a vector has rows == 1 */
void cx_tensor_shape(const cx_model* model, int index, int64_t* rows, int64_t* cols);
int cx_tensor_get(cx_model* model, int kind, int index, float* dst, cx_status* status);
int cx_tensor_set(cx_model* model, int kind, int index, const float* src, cx_status* status);

/* Forward + backward over tokens [B][T]; adds loss_scale * d(sum of losses) to the gradients.
 * reduce_gradients: nonzero on the step's last micro-batch of a data-parallel model (cx_model_data_parallel) to
 * reduce each gradient bucket as soon as the backward has finished it (on a communication thread, or queued on
 * NCCL's stream), overlapping the rest of the backward; 0 leaves the reduction to cx_clip_adamw_step.
 * loss_sum: sum of per-token losses; count: number of positions with a target. */
int cx_forward_backward(cx_model* model, const int32_t* tokens, int B, int T, const cx_run_options* options,
                        float loss_scale, int reduce_gradients, double* loss_sum, int64_t* count, cx_status* status);
/* Forward only: per-position loss [B][T] (NaN where there is no target). */
int cx_forward_losses(cx_model* model, const int32_t* tokens, int B, int T, const cx_run_options* options,
                      float* losses, cx_status* status);
/* Forward only: logits [B][vocab] at position T-1 of each row. */
int cx_forward_last_logits(cx_model* model, const int32_t* tokens, int B, int T, const cx_run_options* options,
                           float* logits, cx_status* status);
/* Forward only: logits [n][vocab] at the n flat positions b*T+t given (a batch of right-padded rows, each read where
 * its own text ends: evaluation scores several continuations of one context from one pass). */
int cx_forward_logits_at(cx_model* model, const int32_t* tokens, int B, int T, const cx_run_options* options,
                         const int32_t* positions, int n, float* logits, cx_status* status);
/* Generation with a key/value cache. cx_decode_reset starts a sequence of at most max_tokens tokens (the cache
 * takes 2 x layers x max_tokens x hidden values); each cx_decode_step runs n new tokens (the prompt, then one at
 * a time) at the positions after those cached, with plain causal attention, and gives the logits [vocab] after
 * the last of them: the same as cx_forward_last_logits over the whole sequence, at a cost per step that grows
 * with the sequence instead of recomputing it. A step keeps the precision the sequence started with. */
int cx_decode_reset(cx_model* model, int max_tokens, cx_status* status);
int cx_decode_step(cx_model* model, const int32_t* tokens, int n, const cx_run_options* options, float* logits, cx_status* status);
/* A communicator over the ranks of a run (the data-parallel section below). */
typedef struct cx_comm cx_comm;
/* Which positions of tokens [B][T] have a target (1) under these options: every position but a row's last, and
 * (mask_eos_loss) not one whose input is EOS, and, when comm's topology has rings of more than one rank, one this
 * rank holds (cx_model_context_parallel). The one definition of the rule (the batch's layout, which the model
 * builds too); comm may be null: whole rows. */
int cx_target_mask(const int32_t* tokens, int B, int T, const cx_run_options* options, const cx_comm* comm, uint8_t* mask, cx_status* status);
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
/* Activation memory (buffers and the backend's batch-sized scratch) that a micro-batch of `tokens` tokens needs
 * on this model's backend at this precision, with or without recompute: cx_model_memory's activations after such
 * a step, plus the scratch the backend sizes by the batch. Linear in tokens. */
size_t cx_model_activation_bytes(const cx_model* model, int64_t tokens, int precision, int recompute);
/* The device's free and total memory in bytes; 0 where the backend cannot tell (the CPU: ask the OS). */
int cx_model_device_memory(const cx_model* model, size_t* free_bytes, size_t* total_bytes);

/* ---- Data parallelism: a communicator over a collective library joins R processes (ranks); a model attached
 * to one reduces its gradients across them (src/model/data_parallel.h). Every call on a communicator, and every
 * model call marked collective, must be made by every rank in the same order. */

typedef struct cx_comm_options {
  const char* library;     /* "gloo" (host memory, TCP) or "nccl" (GPU memory; libnccl.so.2 loaded at run time) */
  int rank, world;         /* 0 <= rank < world */
  const char* master_addr; /* where rank 0 serves the rendezvous (MASTER_ADDR) */
  int master_port;         /* MASTER_PORT */
  int timeout_ms;          /* rendezvous and each collective; past it the call fails naming what it waited for */
  int device;              /* nccl: the CUDA device ordinal of this rank's model; gloo: -1 */
} cx_comm_options;

/* Blocks until every rank has joined, or the timeout. */
int cx_comm_create(const cx_comm_options* options, cx_comm** out, cx_status* status);
void cx_comm_free(cx_comm* comm);
const char* cx_comm_library(const cx_comm* comm);
/* Sums host values over the ranks (in double). */
int cx_comm_all_reduce_host(cx_comm* comm, double* values, size_t n, cx_status* status);
/* Host fp32 in place over data[sum(counts)]: rank r's piece (counts[r] at offset counts[0..r) summed) summed over
 * the ranks (the other pieces are left undefined); or every piece copied to every rank. counts: world values. */
int cx_comm_reduce_scatter_host(cx_comm* comm, float* data, const size_t* counts, cx_status* status);
int cx_comm_all_gather_host(cx_comm* comm, float* data, const size_t* counts, cx_status* status);
int cx_comm_broadcast_host(cx_comm* comm, void* data, size_t bytes, int root, cx_status* status);
int cx_comm_barrier(cx_comm* comm, cx_status* status);
/* Point-to-point in host memory (ring attention's step): sends send_bytes to rank `to` while receiving
 * recv_bytes from rank `from`; the peers' calls match in the order they are made. */
int cx_comm_exchange_host(cx_comm* comm, const void* send, size_t send_bytes, int to, void* recv, size_t recv_bytes, int from, cx_status* status);

/* Attaches the model to comm (which must outlive it). zero 1: ZeRO-1 (gradients reduce-scattered, this rank
 * keeps 1/R of the AdamW moments and, from the first step on, of the fp32 master weights; the updated compute
 * weights all-gathered); zero 0: gradients all-reduced. The moments are zeroed: attach before loading optimizer
 * state, and set the weights before the first step. Then cx_clip_adamw_step reduces and steps collectively, and
 * cx_tensor_get of CX_ADAM_M / CX_ADAM_V (and of CX_PARAM once sharded) is collective (gathered) while
 * cx_tensor_set of the moments stores this rank's share. */
int cx_model_data_parallel(cx_model* model, cx_comm* comm, int zero, cx_status* status);
/* The world's shape (src/comm/topology.h): rings of ring_size adjacent ranks share each sequence (context
 * parallelism; ring_index: this rank's member), and data parallelism runs over the rings (data_rank of data_ranks). */
typedef struct cx_topology {
  int world, rank, ring_size;
  int ring_index, data_rank, data_ranks;
} cx_topology;
/* A world's topology without a communicator (one process); refused, with the fix, when ring_size does not divide it. */
int cx_topology_make(int world, int rank, int ring_size, cx_topology* out, cx_status* status);
/* Shapes comm's world into rings of ring_size (1 until set), refused as above; and reads the shape back. */
int cx_comm_context_parallel(cx_comm* comm, int ring_size, cx_status* status);
int cx_comm_topology(const cx_comm* comm, cx_topology* out, cx_status* status);
/* Context parallelism: every sequence of a batch is split over the ring comm's topology puts this rank in
 * (cx_comm_context_parallel), each member holding 2 of its 2·size equal chunks (zigzag: chunks r and 2·size−1−r),
 * and attention runs as ring attention (src/model/context_parallel.h). Each member passes the whole rows to
 * cx_forward_backward and cx_forward_losses (T divisible by 2·size) and gets its own tokens' loss sum and count,
 * or its positions' losses in place with 0 at the others (cx_target_mask with the same comm says which); the
 * gradients are summed over the world as cx_model_data_parallel does (attach that too). Generation and logits are
 * refused. */
int cx_model_context_parallel(cx_model* model, cx_comm* comm, cx_status* status);
/* Collective: whether every rank holds the same weights, bit for bit (the fp32 masters, or the compute copy once the
 * masters are sharded); digest: this rank's 64-bit hash of them. */
int cx_model_replicas_identical(cx_model* model, int* identical, uint64_t* digest, cx_status* status);

/* ---- Tokenizer: byte-level BPE over the subset of tokenizer.json the DeepSeek LLM file uses (src/tokenizer/spec.ts
 * reads the file and refuses what this does not implement). Code point sets are ranges: lo0, hi0, lo1, hi1, ... */

enum cx_pretokenize_kind {
  CX_ISOLATE_EACH = 0,            /* each character of the class on its own */
  CX_ISOLATE_RUNS = 1,            /* runs of the class */
  CX_OPTIONAL_SPACE_THEN_RUN = 2, /* an optional space, then a run of the class */
  CX_TRAILING_SPACE = 3,          /* the whitespace that ends a piece */
  CX_DIGITS = 4,                  /* each digit on its own */
};

typedef struct cx_pretokenize_step {
  int kind; /* cx_pretokenize_kind */
  const uint32_t* ranges;
  size_t n_ranges; /* values, two per range; 0 for CX_TRAILING_SPACE and CX_DIGITS */
} cx_pretokenize_step;

typedef struct cx_added_token {
  const char* content; /* UTF-8, as matched in text */
  size_t content_len;
  uint32_t id;
  int special;
  const uint8_t* bytes; /* what decoding gives back */
  size_t n_bytes;
} cx_added_token;

typedef struct cx_tokenizer_spec {
  const uint8_t* vocab_bytes; /* token i's raw bytes: vocab_bytes[vocab_offsets[i] .. vocab_offsets[i+1]) */
  size_t n_vocab_bytes;
  const uint32_t* vocab_offsets;
  size_t n_vocab_offsets; /* vocabulary size + 1 */
  const uint32_t* merges; /* (left, right, merged) id triples in rank order */
  size_t n_merges;        /* values, three per merge */
  const cx_added_token* added;
  size_t n_added;
  const cx_pretokenize_step* steps;
  size_t n_steps;
  const uint32_t* whitespace;
  size_t n_whitespace;
  const uint32_t* numeric;
  size_t n_numeric;
} cx_tokenizer_spec;

typedef struct cx_tokenizer cx_tokenizer;

/* Token ids of a batch: text i's ids are ids[start .. start + lengths[i]), texts one after another. */
typedef struct cx_token_batch {
  uint32_t* ids;
  size_t n_ids;
  uint32_t* lengths;
  size_t n_texts;
} cx_token_batch;

/* threads: workers of cx_tokenizer_encode_batch (texts are encoded in parallel, ids come back in order). */
int cx_tokenizer_create(const cx_tokenizer_spec* spec, int threads, cx_tokenizer** out, cx_status* status);
void cx_tokenizer_free(cx_tokenizer* tokenizer);
size_t cx_tokenizer_vocab_size(const cx_tokenizer* tokenizer);
/* Ids of UTF-8 texts, without special tokens added (special tokens written in a text are still matched). The
 * batch's arrays are released with cx_token_batch_free. A text that fails names its index in the message. */
int cx_tokenizer_encode_batch(const cx_tokenizer* tokenizer, const char* const* texts, const size_t* lengths, size_t n_texts,
                              cx_token_batch* out, cx_status* status);
void cx_token_batch_free(cx_token_batch* batch);
/* Hugging Face's decode (the ByteLevel decoder over every token, lossy UTF-8) into a string released with
 * cx_string_free. */
int cx_tokenizer_decode(const cx_tokenizer* tokenizer, const uint32_t* ids, size_t n, int skip_special, char** text, size_t* length,
                        cx_status* status);
void cx_string_free(char* text);

/* ---- Near-duplicates: MinHash LSH (src/pipeline/stages/near-dedup.ts) ---- */
typedef struct cx_minhash_spec {
  int ngram;     /* words per shingle */
  int bands;     /* LSH bands: a candidate pair shares one band's key */
  int rows;      /* hash functions per band */
  uint64_t seed; /* the recipe's minhash seed: every hash derives from it */
} cx_minhash_spec;

/* Band keys of UTF-8 texts, in NFKC and lower case where they hold non-ASCII (the caller's ICU does both): text i's
 * keys at keys[i * bands ..]. Words: ASCII lower-cased, Unicode punctuation, symbols and white space separate them,
 * each CJK character is one. shingled[i] is 0 for a text with no words (its keys are 0 and mean nothing). The keys
 * depend only on the texts and the spec, never on `threads`. */
int cx_minhash_bands(const cx_minhash_spec* spec, const char* const* texts, const size_t* lengths, size_t n_texts, int threads,
                     uint64_t* keys, uint8_t* shingled, cx_status* status);
/* The Jaccard similarity of pair i's shingle sets (texts prepared and words made as above; spec's ngram and seed),
 * 1 for two texts with no words. */
int cx_shingle_jaccard(const cx_minhash_spec* spec, const char* const* a, const size_t* a_lengths, const char* const* b, const size_t* b_lengths,
                       size_t n_pairs, int threads, double* jaccard, cx_status* status);

/* ---- Quality filters: Gopher quality and repetition, C4, FineWeb (src/pipeline/stages/quality.ts) ---- */
/* Every threshold, in this order, with datatrove's default (src/datatrove/pipeline/filters/): (preset, name, default).
 * src/pipeline/stages/quality-rules.ts declares the same table; test/native/binding.test.ts fails until they agree. */
#define CX_QUALITY_PARAMS(X)                          \
  X(gopher_quality, min_doc_words, 50)                \
  X(gopher_quality, max_doc_words, 100000)            \
  X(gopher_quality, min_avg_word_length, 3)           \
  X(gopher_quality, max_avg_word_length, 10)          \
  X(gopher_quality, max_symbol_word_ratio, 0.1)       \
  X(gopher_quality, max_bullet_lines_ratio, 0.9)      \
  X(gopher_quality, max_ellipsis_lines_ratio, 0.3)    \
  X(gopher_quality, min_alpha_words_ratio, 0.8)       \
  X(gopher_quality, min_stop_words, 2)                \
  X(gopher_repetition, dup_para_frac, 0.3)            \
  X(gopher_repetition, dup_para_char_frac, 0.2)       \
  X(gopher_repetition, dup_line_frac, 0.3)            \
  X(gopher_repetition, dup_line_char_frac, 0.2)       \
  X(gopher_repetition, top_2_gram, 0.2)               \
  X(gopher_repetition, top_3_gram, 0.18)              \
  X(gopher_repetition, top_4_gram, 0.16)              \
  X(gopher_repetition, duplicated_5_n_grams, 0.15)    \
  X(gopher_repetition, duplicated_6_n_grams, 0.14)    \
  X(gopher_repetition, duplicated_7_n_grams, 0.13)    \
  X(gopher_repetition, duplicated_8_n_grams, 0.12)    \
  X(gopher_repetition, duplicated_9_n_grams, 0.11)    \
  X(gopher_repetition, duplicated_10_n_grams, 0.10)   \
  X(c4, min_num_sentences, 5)                         \
  X(c4, min_words_per_line, 3)                        \
  X(c4, max_word_length, 1000)                        \
  X(fineweb, line_punct_thr, 0.12)                    \
  X(fineweb, short_line_thr, 0.67)                    \
  X(fineweb, short_line_length, 30)                   \
  X(fineweb, char_duplicates_ratio, 0.01)             \
  X(fineweb, new_line_ratio, 0.3)

/* Why a text fails, in the order the rules run (the first failing one is reported): (preset, reason). */
#define CX_QUALITY_RULES(X)                                                                                       \
  X(gopher_quality, short_doc) X(gopher_quality, long_doc) X(gopher_quality, below_avg_word_length)               \
  X(gopher_quality, above_avg_word_length) X(gopher_quality, too_many_hashes) X(gopher_quality, too_many_ellipsis) \
  X(gopher_quality, too_many_bullets) X(gopher_quality, too_many_end_ellipsis) X(gopher_quality, below_alpha_words) \
  X(gopher_quality, not_enough_stop_words)                                                                       \
  X(gopher_repetition, dup_para_frac) X(gopher_repetition, dup_para_char_frac) X(gopher_repetition, dup_line_frac) \
  X(gopher_repetition, dup_line_char_frac) X(gopher_repetition, top_2_gram) X(gopher_repetition, top_3_gram)      \
  X(gopher_repetition, top_4_gram) X(gopher_repetition, duplicated_5_n_grams)                                    \
  X(gopher_repetition, duplicated_6_n_grams) X(gopher_repetition, duplicated_7_n_grams)                          \
  X(gopher_repetition, duplicated_8_n_grams) X(gopher_repetition, duplicated_9_n_grams)                          \
  X(gopher_repetition, duplicated_10_n_grams)                                                                    \
  X(c4, lorem_ipsum) X(c4, curly_bracket) X(c4, too_few_sentences)                                               \
  X(fineweb, line_punct_ratio) X(fineweb, short_line_ratio) X(fineweb, char_dup_ratio) X(fineweb, list_ratio)

/* The presets, one bit each in cx_quality_check's per-text mask. */
enum { CX_GOPHER_QUALITY = 1, CX_GOPHER_REPETITION = 2, CX_C4 = 4, CX_FINEWEB = 8 };

int cx_quality_param_count(void);
/* "preset.name" of parameter i, and its default; NULL past the end. */
const char* cx_quality_param_name(int i);
double cx_quality_param_default(int i);
int cx_quality_rule_count(void);
/* "preset.reason" of rule i (a skip reason, e.g. "gopher_repetition.top_2_gram"); NULL past the end. */
const char* cx_quality_rule_name(int i);
/* For each UTF-8 text, the presets of presets[i] run (the bits above) with params (cx_quality_param_count values in
 * the table's order): rule[i] is 0 when it passes, else 1 + the index of the first rule it fails. */
int cx_quality_check(const double* params, const char* const* texts, const size_t* lengths, const uint8_t* presets, size_t n_texts,
                     int threads, uint16_t* rule, cx_status* status);

#ifdef __cplusplus
}
#endif
#endif
