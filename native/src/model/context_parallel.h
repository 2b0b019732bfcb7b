#pragma once
/* Context parallelism (cx_model_context_parallel): every sequence of a batch is split over the `size` ranks of a
 * ring, in the zigzag layout: the row is cut into 2·size chunks of Tc tokens, and ring index r holds chunks r and
 * 2·size−1−r, so under a causal mask every rank has the same work. Everything but attention is per token and runs
 * on the local 2·Tc tokens of each row as usual (positions and document starts are the tokens' true ones, set by
 * prepare_batch through `layout`). Attention is ring attention: the key/value blocks travel round the ring
 * (Communicator::exchange, send to the next rank, receive from the previous one, overlapped with the attention on
 * the block in hand), each block's partial softmax merged by its log-sum-exp (attention_combine); the backward
 * sends the keys' and values' gradients round with their block and home at the end.
 *
 * Block pairs that no query of one sees any key of the other (another document, or the future) are skipped; ring
 * steps past the last one any rank needs are not taken, so rows of short documents exchange nothing at all. The
 * ranks of a ring hold the same rows, so each computes the same plan.
 *
 * The world is data-parallel groups of rings: ring members are adjacent ranks (rank / size is the group, rank %
 * size the ring index). Gradients are reduced over the whole world as data parallelism does (every rank's tokens
 * are distinct), so the two compose without a communicator of their own. */
#include <cstdint>
#include <vector>

#include "model.h"

namespace cx {
class Communicator;
}

namespace cxm {

class ContextParallel {
 public:
  ContextParallel(cx_model& m, cx::Communicator* comm, int size);
  ~ContextParallel();

  /* Row position of local token t (0 <= t < 2·Tc) of this rank. */
  int64_t row_position(int64_t t, int64_t Tc) const { return t < Tc ? index_ * Tc + t : (2 * size_ - 1 - index_) * Tc + (t - Tc); }
  /* Called by prepare_batch with the whole rows' document starts ([B][T], row positions): checks T and plans the
   * ring steps this batch needs. */
  void layout(const std::vector<int32_t>& row_starts, int64_t B, int64_t T);
  int64_t chunk() const { return Tc_; }

  void attention_forward(const Batch& bt, Tensor att, Tensor lse, Tensor q, Tensor k, Tensor v, bool bf16);
  void attention_backward(const Batch& bt, Tensor dq, Tensor dk, Tensor dv, Tensor datt, Tensor att, Tensor lse, Tensor q, Tensor k, Tensor v,
                          bool bf16);
  /* Backend memory of the ring's buffers (for cx_model_memory). */
  size_t bytes() const;

 private:
  /* Whether a query chunk (chunk index g of the row) sees any key of key chunk h in row b. */
  bool visible(int64_t b, int64_t g, int64_t h) const;
  /* A block pair of a ring step: the query chunk's and key chunk's first local tokens, where the query chunk's
   * statistics start in the lse slot ([B][2][H][Tc]), and the chunks' row positions. */
  struct Pair {
    int64_t qo, ko, lse, q_offset, k_offset;
  };
  /* body(pair) for each pair of this rank's query chunks and the key chunks it holds at `step` that some query sees. */
  template <typename F>
  void for_visible_pairs(const Batch& bt, int step, F&& body) const;
  int64_t chunk_of(int ring_index, int which) const { return which == 0 ? ring_index : 2 * size_ - 1 - ring_index; }
  int ring_rank(int ring_index) const { return base_ + ((ring_index % size_) + size_) % size_; }
  /* Sends each transfer's `send` to rank `to` while receiving its `recv` from rank `from`, in order, on a thread
   * (overlapped with the caller's compute) when the library blocks; finish_exchange() waits for them. */
  struct Transfer {
    Tensor send, recv;
  };
  void start_exchange(std::vector<Transfer> transfers, int to, int from);
  void finish_exchange();
  void ensure_buffers(const Batch& bt, DType act);

  cx_model& m_;
  cx::Communicator* comm_;
  int size_, index_, base_;
  int64_t T_ = 0, Tc_ = 0;
  std::vector<int32_t> row_starts_;
  int last_step_ = 0;  // ring steps 0..last_step_ have work for some rank
  Buffer kv_[2], grads_[2], acc_, part_, part_lse_;
  struct Pending;
  std::unique_ptr<Pending> pending_;
};

}  // namespace cxm
