#pragma once
/* Data parallelism over a communicator (comm/communicator.h): the model's fp32 gradients are reduced in buckets
 * (the LM head and final norm, then each block from the last, then the embedding: the order the backward
 * finishes them), on a communication thread while the backward goes on; AdamW then runs on this rank's share.
 *   ZeRO-1 (zero = 1): each bucket is split into one contiguous piece per rank; gradients are reduce-scattered,
 *     this rank keeps the AdamW moments of its pieces only (1/R of them), updates its pieces of the fp32 master
 *     weights and of the compute copy (bf16 in a bf16 run on the GPU), and the compute copy's pieces are
 *     all-gathered: 2 bytes a parameter instead of 4. The gather of each bucket is queued as soon as its AdamW is,
 *     in the order the next forward reads them (the embedding, block 0, ..., the final norm and LM head), and that
 *     forward waits for each bucket only when it reaches it (await_weights), so the gathers run under the
 *     optimizer step and the forward, as FSDP's prefetch does. From that first step on this rank keeps only its pieces of
 *     the fp32 master weights too (laid out as its moments are): the whole array is freed, and a checkpoint reads a
 *     tensor by gathering its bucket, in fp32 (get_params).
 *   zero = 0: gradients are all-reduced and every rank runs the whole AdamW step (the plain DDP baseline).
 * Global-norm clipping sums the squares of every rank's pieces, so it sees the whole gradient. */
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "../comm/communicator.h"

struct cx_model;

namespace cxm {

struct Buffer;  // model.h

struct GradientBucket {
  int first_tensor = 0, last_tensor = 0;
  size_t begin = 0, end = 0;         // in elements of the flat fp32 arrays
  std::vector<size_t> counts;        // each rank's piece, in rank order
  size_t own_begin = 0, own_end = 0; // this rank's piece
  size_t moment_offset = 0;          // where this rank's piece starts in its (sharded) moment arrays
};

class DataParallel {
 public:
  DataParallel(cx_model& m, cx::Communicator* comm, int zero);
  ~DataParallel();

  int zero() const { return zero_; }
  cx::Communicator& comm() { return *comm_; }
  size_t owned_elements() const { return owned_; }
  const std::vector<GradientBucket>& buckets() const { return buckets_; }

  /* The next backward queues each bucket's reduction as soon as its gradients are complete (the last
   * micro-batch of a step); otherwise they are reduced when the step asks for them, and the step's gathers are
   * waited for before it returns (no overlap at all). */
  void reduce_on_next_backward() { overlap_next_ = true; }
  bool overlapping() const { return overlap_this_; }
  void backward_started() { overlap_this_ = overlap_next_, overlap_next_ = false; }
  /* Called by the backward as bucket k's gradients become final (buckets in order). */
  void gradients_ready(int k);
  /* The optimizer step over this rank's share: reductions finished, norm over all ranks, AdamW, all-gather queued. */
  double clip_adamw_step(const cx_adamw& hp, float max_norm);
  /* The forward is about to read the weights of buckets 0..j in forward order (0: the embedding, l + 1: block l,
   * the last: the final norm and LM head): the model's stream waits for their gathers (on the device under NCCL,
   * on the host under gloo). */
  void await_weights(int j);
  /* Every queued gather done, waited for on the host within the timeout: before anything that blocks the host on
   * the model's stream (a read-back, a free), which would otherwise wait on a dead peer's gather forever. */
  void weights_settled();
  /* A tensor's moments gathered from every rank (collective under ZeRO-1), or stored into this rank's share. */
  void get_moments(int kind, int tensor, float* dst);
  void set_moments(int kind, int tensor, const float* src);
  /* Whether this rank holds only its pieces of the fp32 master weights (ZeRO-1, from the first step on). */
  bool masters_sharded() const { return sharded_; }
  /* Collective while sharded: tensor i's fp32 master weights, whole (its bucket gathered, kept until the next step). */
  void get_params(int tensor, float* dst);
  /* Backend memory this holds (the sharded masters, a gathered bucket), for cx_model_memory. */
  size_t state_bytes() const;

 private:
  void enqueue(int k);
  void reduce(int k);  // bucket k's collective
  void gather_bucket(int j);   // queues the gather of the compute copy's bucket j in forward order
  void gather_compute(int k);  // bucket k's all-gather of the compute copy
  /* Bucket g's pieces in the compute copy (each tensor 256-byte aligned there): where they start, and their
   * lengths in rank order. */
  size_t compute_begin(const GradientBucket& g) const;
  std::vector<size_t> compute_counts(const GradientBucket& g) const;
  void gather_masters();
  void shard_masters();
  void wait_reduced();
  void worker();
  /* Waits on cv_ until ready(), failing with a message naming `what` past the communicator's timeout. */
  template <typename Ready>
  void wait_worker(std::unique_lock<std::mutex>& lock, Ready ready, const char* what);

  cx_model& m_;
  cx::Communicator* comm_;
  int zero_;
  size_t owned_ = 0;
  std::vector<GradientBucket> buckets_;
  bool overlap_next_ = false, overlap_this_ = false;
  bool sharded_ = false;
  // This rank's pieces of the fp32 master weights once sharded; one bucket gathered whole for reading.
  std::unique_ptr<Buffer> masters_, gathered_;
  int gathered_bucket_ = -1;
  // The communication thread and its queue of buckets to reduce.
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  struct Queued {
    int bucket;
    uint64_t ticket;  // its place among the communicator's collectives, taken when queued
    bool gather;      // the compute copy's all-gather (else the gradients' reduction)
  };
  std::vector<Queued> queue_;
  int queued_ = 0, reduced_ = 0;
  // The compute copy's gathers since the last step: whether some are not yet settled, how many (in forward order)
  // the forward has waited for, and how many the communication thread has done.
  bool gathering_ = false;
  int awaited_ = 0, weights_gathered_ = 0;
  bool stopping_ = false;
  std::string error_;
};

}  // namespace cxm
