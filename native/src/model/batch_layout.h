#pragma once
/* A batch's layout, built once per batch (prepare_batch) and read by everything that needs to know where a token
 * is: the model stages the local arrays, ring attention plans its steps from the chunk ownership and the document
 * starts, the losses go back to their row positions, and the trainer's data loader counts this rank's targets
 * through cx_target_mask, which builds the same layout.
 *
 * Whole rows: every token of each row is held here, in order. Split over a ring of `size` members (context
 * parallelism): each row of T tokens is cut into 2·size chunks of Tc = T / (2·size), and member r holds chunks r
 * and 2·size−1−r (zigzag: under a causal mask every member has the same work). Positions, document starts and
 * targets are the tokens' true ones in the row, wherever the tokens are held. */
#include <cstdint>
#include <vector>

#include "../../include/chuxin.h"

namespace cxm {

/* Which member of which size of ring this rank is; the communicator's topology says (comm/topology.h). */
struct RingPlace {
  int size = 1, index = 0;
};

class BatchLayout {
 public:
  BatchLayout() = default;
  /* Lays out B rows of T tokens under the run's masks: whole rows without a ring, this member's two chunks of
   * each with one (T must then divide by 2·size; refused with the fix otherwise). */
  BatchLayout(const int32_t* tokens, int64_t B, int64_t T, const cx_run_options& o, const RingPlace* ring);

  int64_t rows() const { return B_; }
  int64_t row_length() const { return T_; }
  /* Tokens of each row held here, and in all. */
  int64_t local_length() const { return Tl_; }
  int64_t local_tokens() const { return B_ * Tl_; }
  bool split() const { return split_; }
  const RingPlace& ring() const { return ring_; }
  /* Tokens per chunk (the whole row when not split). */
  int64_t chunk() const { return Tc_; }

  /* Row position of local token t (0 <= t < local_length()). */
  int64_t row_position(int64_t t) const { return !split_ || t < Tc_ ? chunk_of(ring_.index, 0) * Tc_ + t : chunk_of(ring_.index, 1) * Tc_ + (t - Tc_); }
  /* Chunk index in the row of member `member`'s first (which 0) or second (which 1) chunk. */
  int64_t chunk_of(int member, int which) const { return !split_ ? which : which == 0 ? member : 2 * ring_.size - 1 - member; }
  /* Whether some query of chunk g of row b sees some key of chunk h (the causal mask and the document starts). */
  bool sees(int64_t b, int64_t g, int64_t h) const;
  /* The last ring step (0..size−1) at which any member holds a key block some query of its own sees: ring steps
   * past it have no work for anyone, so none is taken. The same on every member, which holds the same rows. */
  int last_ring_step() const { return last_ring_step_; }

  /* Local [B][local_length()] arrays: token ids, RoPE positions, document starts (row positions) and targets
   * (the next token, or -1 where the position has none). */
  const std::vector<int32_t>& tokens() const { return tokens_; }
  const std::vector<int32_t>& positions() const { return positions_; }
  const std::vector<int32_t>& doc_starts() const { return doc_starts_; }
  const std::vector<int32_t>& targets() const { return targets_; }
  /* Over the whole rows, in row order: 1 where the position has a target and is held here. */
  void row_target_mask(uint8_t* mask) const;

 private:
  int64_t B_ = 0, T_ = 0, Tl_ = 0, Tc_ = 0;
  bool split_ = false;
  RingPlace ring_;
  int last_ring_step_ = 0;
  std::vector<int32_t> row_starts_;  // [B][T]: the whole rows' document starts, which the ring's plan reads
  std::vector<int32_t> tokens_, positions_, doc_starts_, targets_;
};

}  // namespace cxm
