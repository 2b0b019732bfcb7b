/* A batch's layout (batch_layout.h). */
#include "batch_layout.h"

#include <algorithm>

#include "model.h"

namespace cxm {

BatchLayout::BatchLayout(const int32_t* tokens, int64_t B, int64_t T, const cx_run_options& o, const RingPlace* ring)
    : B_(B), T_(T), split_(ring != nullptr), ring_(ring ? *ring : RingPlace{}) {
  if (B < 0 || T < 0) fail(CX_INVALID_ARGUMENT, "a batch has 0 or more rows of 0 or more tokens (got %lldx%lld)", (long long)B, (long long)T);
  if (split_) {
    if (ring_.size < 1 || ring_.index < 0 || ring_.index >= ring_.size)
      fail(CX_INVALID_ARGUMENT, "member %d of a ring of %d does not exist", ring_.index, ring_.size);
    if (T % (2 * ring_.size) != 0)
      fail(CX_INVALID_ARGUMENT, "context %lld does not split into %d equal chunks for --context-parallel %d: use a context divisible by %d",
           (long long)T, 2 * ring_.size, ring_.size, 2 * ring_.size);
    Tc_ = T / (2 * ring_.size), Tl_ = 2 * Tc_;
  } else {
    Tc_ = T, Tl_ = T;
  }
  // The whole rows first: document starts, positions and targets are properties of a token's place in its row.
  const size_t n_row = (size_t)(B * T);
  std::vector<int32_t> pos(n_row), target(n_row);
  row_starts_.resize(n_row);
  for (int64_t b = 0; b < B; b++) {
    const int32_t* row = tokens + b * T;
    int32_t begin = 0;
    for (int64_t t = 0; t < T; t++) {
      const size_t n = (size_t)(b * T + t);
      row_starts_[n] = o.doc_mask ? begin : 0;
      pos[n] = (int32_t)(o.reset_positions ? t - begin : t);
      target[n] = has_target(row, (int)t, (int)T, o) ? row[t + 1] : -1;
      if (row[t] == o.eos_id) begin = (int32_t)(t + 1);
    }
  }
  // Then the tokens held here, in local order.
  const size_t n_local = (size_t)(B * Tl_);
  tokens_.resize(n_local), positions_.resize(n_local), doc_starts_.resize(n_local), targets_.resize(n_local);
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < Tl_; t++) {
      const size_t from = (size_t)(b * T + row_position(t)), to = (size_t)(b * Tl_ + t);
      tokens_[to] = tokens[from], positions_[to] = pos[from], doc_starts_[to] = row_starts_[from], targets_[to] = target[from];
    }
  // The ring's plan: at step s member rho holds the block of member rho − s.
  if (split_)
    for (int s = 1; s < ring_.size; s++)
      for (int rho = 0; rho < ring_.size; rho++) {
        const int sigma = ((rho - s) % ring_.size + ring_.size) % ring_.size;
        for (int64_t b = 0; b < B; b++)
          for (int qc = 0; qc < 2; qc++)
            for (int kc = 0; kc < 2; kc++)
              if (sees(b, chunk_of(rho, qc), chunk_of(sigma, kc))) last_ring_step_ = s;
      }
}

bool BatchLayout::sees(int64_t b, int64_t g, int64_t h) const {
  if (h > g) return false;  // every key of the chunk is in the queries' future
  if (h == g) return true;  // each query sees itself
  // The chunk's first query has the earliest document start (starts never decrease along a row).
  return row_starts_[(size_t)(b * T_ + g * Tc_)] <= (h + 1) * Tc_ - 1;
}

void BatchLayout::row_target_mask(uint8_t* mask) const {
  std::fill(mask, mask + B_ * T_, (uint8_t)0);
  for (int64_t b = 0; b < B_; b++)
    for (int64_t t = 0; t < Tl_; t++) mask[b * T_ + row_position(t)] = targets_[(size_t)(b * Tl_ + t)] >= 0 ? 1 : 0;
}

}  // namespace cxm
