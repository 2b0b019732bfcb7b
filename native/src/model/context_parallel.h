#pragma once
/* Context parallelism (cx_model_context_parallel): every sequence of a batch is split over the `size` ranks of a
 * ring, in the zigzag layout: the row is cut into 2·size chunks of Tc tokens, and ring index r holds chunks r and
 * 2·size−1−r, so under a causal mask every rank has the same work. Everything but attention is per token and runs
 * on the local 2·Tc tokens of each row as usual (positions and document starts are the tokens' true ones, from the
 * batch's layout). Attention is ring attention: the key/value blocks travel round the ring
 * (Communicator::exchange, send to the next rank, receive from the previous one, overlapped with the attention on
 * the block in hand), each block's partial softmax merged by its log-sum-exp (attention_combine); the backward
 * sends the keys' and values' gradients round with their block and home at the end.
 *
 * Block pairs that no query of one sees any key of the other (another document, or the future) are skipped; ring
 * steps past the last one any rank needs are not taken, so rows of short documents exchange nothing at all. The
 * ranks of a ring hold the same rows, so each lays out the same plan.
 *
 * The ring is the one the communicator's topology puts this rank in (comm/topology.h); the batch's layout
 * (batch_layout.h) says which chunks each member holds and which block pairs have work. Gradients are reduced over
 * the whole world as data parallelism does (every rank's tokens are distinct), so the two compose without a
 * communicator of their own. */
#include <cstdint>
#include <vector>

#include "model.h"
#include "../comm/topology.h"

namespace cx {
class Communicator;
}

namespace cxm {

class ContextParallel {
 public:
  /* comm null: a ring of one. */
  ContextParallel(cx_model& m, cx::Communicator* comm);
  ~ContextParallel();

  /* This rank's place in its ring, for the batch's layout. */
  RingPlace place() const { return {topology_.ring_size, topology_.ring_index()}; }

  void attention_forward(const Batch& bt, Tensor att, Tensor lse, Tensor q, Tensor k, Tensor v, bool bf16);
  void attention_backward(const Batch& bt, Tensor dq, Tensor dk, Tensor dv, Tensor datt, Tensor att, Tensor lse, Tensor q, Tensor k, Tensor v,
                          bool bf16);
  /* Backend memory of the ring's buffers (for cx_model_memory). */
  size_t bytes() const;

 private:
  /* A block pair of a ring step: the query chunk's and key chunk's first local tokens, where the query chunk's
   * statistics start in the lse slot ([B][2][H][Tc]), and the chunks' row positions. */
  struct Pair {
    int64_t qo, ko, lse, q_offset, k_offset;
  };
  /* body(pair) for each pair of this rank's query chunks and the key chunks it holds at `step` that some query sees. */
  template <typename F>
  void for_visible_pairs(const Batch& bt, int step, F&& body) const;
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
  cx::Topology topology_;
  Buffer kv_[2], grads_[2], acc_, part_, part_lse_;
  struct Pending;
  std::unique_ptr<Pending> pending_;
};

}  // namespace cxm
