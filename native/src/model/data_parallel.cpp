/* Data parallelism: gradient buckets, their reduction on a communication thread, and ZeRO-1's sharded AdamW
 * (data_parallel.h). */
#include "data_parallel.h"

#include <algorithm>
#include <cmath>

#include "model.h"

namespace cxm {

DataParallel::DataParallel(cx_model& m, cx::Communicator* comm, int zero) : m_(m), comm_(comm), zero_(zero) {
  if (zero != 0 && zero != 1) fail(CX_INVALID_ARGUMENT, "ZeRO stage %d is not implemented (0: all-reduce, 1: sharded optimizer)", zero);
  if (comm->device() != m.be->device()) {
    if (comm->device() == cx::kHost)
      fail(CX_INVALID_ARGUMENT, "%s reduces host memory; the %s backend's gradients are on a GPU (use nccl)", comm->name(), m.be->name());
    fail(CX_INVALID_ARGUMENT, "the %s communicator reduces the memory of CUDA device %d; the model's %s backend is on %s", comm->name(),
         comm->device(), m.be->name(), m.be->device() == cx::kHost ? "the host (use gloo)" : ("device " + std::to_string(m.be->device())).c_str());
  }
  auto range = [&](int first, int last) {
    const TensorInfo &a = m.tensors[(size_t)first], &b = m.tensors[(size_t)last];
    GradientBucket g;
    g.first_tensor = first, g.last_tensor = last;
    g.begin = a.offset, g.end = b.offset + b.size();
    return g;
  };
  // The order the backward completes them in.
  buckets_.push_back(range(m.final_norm_tensor(), m.lm_head_tensor()));
  for (int l = m.cfg.n_layers - 1; l >= 0; l--)
    buckets_.push_back(range(m.block_tensor(l, BlockTensor::attn_norm), m.block_tensor(l, BlockTensor::down)));
  buckets_.push_back(range(0, 0));
  const size_t R = (size_t)comm->world(), r = (size_t)comm->rank();
  for (GradientBucket& g : buckets_) {
    // Every rank's piece the same size and the last longer by the remainder (< R elements): the shape NCCL's
    // reduce-scatter and all-gather take in place (communicator.h).
    const size_t n = g.end - g.begin, q = n / R;
    for (size_t i = 0; i < R; i++) g.counts.push_back(i + 1 < R ? q : n - q * (R - 1));
    g.own_begin = zero == 1 ? g.begin + q * r : g.begin;
    g.own_end = zero == 1 ? (r + 1 < R ? g.own_begin + q : g.end) : g.end;
    g.moment_offset = zero == 1 ? owned_ : g.begin;
    owned_ += g.own_end - g.own_begin;
  }
  if (zero == 1) {
    // This rank's share of the moments only: 8 bytes per parameter / R.
    for (Buffer* b : {&m.adam_m, &m.adam_v}) {
      b->reset();
      b->ensure(m.be.get(), std::max<size_t>(owned_, 1), DType::F32, "AdamW moments (this rank's share)");
      m.be->fill(b->t, 0.f, std::max<size_t>(owned_, 1));
    }
  }
  // A blocking library reduces on a thread of its own while the backward goes on; a stream-ordered one only
  // queues the reductions, which the backward's thread does between its kernels.
  if (!comm->stream_ordered()) thread_ = std::thread([this] { worker(); });
}

DataParallel::~DataParallel() {
  // Freed with collectives still queued only when the run failed (training settles its gathers before it ends:
  // a checkpoint reads the weights). Nothing queued runs now: a collective here would wait on peers that may be
  // gone, and the error that ended the run would not be reported until it failed. The others' next collective
  // fails when this process leaves. Under NCCL the model's memory is freed next, which waits for the device:
  // settle on the host first, within the timeout (a failure aborts the group, releasing its kernels).
  if (comm_->stream_ordered()) {
    try {
      comm_->synchronize();
    } catch (const std::exception&) {
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void DataParallel::reduce(int k) {
  const GradientBucket& g = buckets_[(size_t)k];
  float* grads = (m_.grads.t + (int64_t)g.begin).f32();
  if (zero_ == 1) comm_->reduce_scatter(grads, g.counts);
  else comm_->all_reduce(grads, g.end - g.begin);
}

void DataParallel::worker() {
  for (;;) {
    Queued q;
    bool skip;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      q = queue_.front();
      queue_.erase(queue_.begin());
      // The group is broken (the step fails anyway) or the model is being freed: the ticket is served, not run,
      // so a collective taken after it on another thread is not left waiting.
      skip = stopping_ || !error_.empty();
    }
    std::string error;
    try {
      comm_->in_turn(q.ticket, [&] {
        if (skip) return;
        if (q.gather) gather_compute(q.bucket);
        else reduce(q.bucket);
      });
    } catch (const std::exception& e) {
      error = e.what();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!error.empty() && error_.empty()) error_ = error;
      (q.gather ? weights_gathered_ : reduced_)++;
    }
    cv_.notify_all();
  }
}

template <typename Ready>
void DataParallel::wait_worker(std::unique_lock<std::mutex>& lock, Ready ready, const char* what) {
  // Each of the communication thread's collectives fails within the timeout, so a wait with no collective done for
  // longer than that (plus a margin, so that the collective's own message is the one reported) is a hang: it fails
  // here instead of waiting without end.
  const auto limit = comm_->timeout() + std::chrono::seconds(5);
  for (int done = -1; !ready();) {
    const int now = reduced_ + weights_gathered_;
    if (now == done)
      fail(CX_INTERNAL, "rank %d of %d: waited %lld s for %s (%s) with no collective done on the communication thread; a peer is gone or hung",
           comm_->rank(), comm_->world(), (long long)std::chrono::duration_cast<std::chrono::seconds>(limit).count(), what, comm_->name());
    done = now;
    cv_.wait_for(lock, limit, ready);
  }
}

void DataParallel::enqueue(int k) {
  if (comm_->stream_ordered()) {
    // Queued behind the backward kernels that finished bucket k, ahead of those still to come.
    try {
      comm_->in_turn(comm_->take_ticket(), [&] {
        if (!error_.empty()) return;
        comm_->follow(m_.be->stream());
        reduce(k);
      });
    } catch (const std::exception& e) {
      if (error_.empty()) error_ = e.what();
    }
    queued_++, reduced_++;
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back({k, comm_->take_ticket(), false});
    queued_++;
  }
  cv_.notify_all();
}

void DataParallel::gradients_ready(int k) {
  if (overlap_this_) enqueue(k);
}

void DataParallel::wait_reduced() {
  overlap_this_ = false;
  for (int k = queued_; k < (int)buckets_.size(); k++) enqueue(k);
  if (comm_->stream_ordered() && error_.empty()) {
    try {
      comm_->synchronize();
    } catch (const std::exception& e) {
      error_ = e.what();
    }
  }
  std::unique_lock<std::mutex> lock(mu_);
  wait_worker(lock, [&] { return reduced_ == (int)buckets_.size(); }, "the gradient reduction");
  queued_ = reduced_ = 0;
  if (!error_.empty()) {
    const std::string e = error_;
    error_.clear();
    fail(CX_INTERNAL, "rank %d of %d: gradient reduction failed (%s): %s", comm_->rank(), comm_->world(), comm_->name(), e.c_str());
  }
}

double DataParallel::clip_adamw_step(const cx_adamw& hp, float max_norm) {
  if (hp.step < 1) fail(CX_INVALID_ARGUMENT, "AdamW step must be 1 or more");  // before any collective
  weights_settled();  // a rank that ran no forward since the last step (fewer micro-batches than ranks)
  // A step whose backward did not overlap its reductions overlaps nothing: its gathers are waited for before it
  // returns, the baseline the overlap is measured against (train --no-overlap).
  const bool overlapped = overlap_this_;
  wait_reduced();
  Backend* be = m_.be.get();
  // Sum of squares of this rank's pieces (under zero = 0 every rank holds the whole sum), then over the ranks.
  double squares = 0;
  for (const GradientBucket& g : buckets_) squares += be->sum_squares(m_.grads.t + (int64_t)g.own_begin, g.own_end - g.own_begin);
  if (zero_ == 1) comm_->all_reduce_host(&squares, 1);
  const double norm = std::sqrt(squares);
  // clip_factor's rule, on the host: every rank has the same norm, so every rank skips a non-finite step.
  const double factor = !std::isfinite(norm) ? 0.0 : max_norm > 0 && norm > max_norm ? (double)max_norm / norm : 1.0;
  if (!(factor > 0)) return norm;
  const bool bf = m_.compute_precision == CX_BF16;
  cx::AdamWParams p = adamw_params(hp, (float)factor, nullptr);
  gathered_.reset();  // a checkpoint's gathered bucket is stale now (and freeing device memory waits for the device)
  gathered_bucket_ = -1;
  // Under NCCL the gather runs at world size 1 too, so one GPU exercises every path a run of many does.
  const bool gather = zero_ == 1 && (comm_->world() > 1 || comm_->stream_ordered());
  const bool compute_copy = m_.compute_precision >= 0;
  // Each bucket's gather queued right after its AdamW, once the masters are sharded (the first step shards them
  // first: that frees memory, which would wait for gathers in flight).
  const bool interleave = gather && compute_copy && sharded_;
  const int nb = (int)buckets_.size();
  if (gather && compute_copy) {
    std::lock_guard<std::mutex> lock(mu_);  // the communication thread is idle: every earlier collective is done
    gathering_ = true, awaited_ = 0, weights_gathered_ = 0;
  }
  for (int j = 0; j < nb; j++) {  // in the order the next forward reads them
    const GradientBucket& g = buckets_[(size_t)(nb - 1 - j)];
    for (size_t i = 0; i < m_.tensors.size(); i++) {
      const TensorInfo& t = m_.tensors[i];
      const size_t lo = std::max(g.own_begin, t.offset), hi = std::min(g.own_end, t.offset + t.size());
      if (lo >= hi) continue;
      p.weight_decay = adamw_weight_decay(hp, m_, i);
      const int64_t within = (int64_t)(lo - t.offset), moment = (int64_t)(g.moment_offset + (lo - g.own_begin));
      const cx::Tensor param = sharded_ ? masters_->t + moment : m_.params.t + (int64_t)lo;
      const cx::Tensor compute = m_.compute_precision < 0 ? param : m_.W((int)i) + within;
      be->adamw(param, compute, m_.grads.t + (int64_t)lo, m_.adam_m.t + moment, m_.adam_v.t + moment, hi - lo, p, bf);
    }
    if (interleave) gather_bucket(j);
  }
  if (gather && compute_copy && !sharded_) {
    shard_masters();
    for (int j = 0; j < nb; j++) gather_bucket(j);
  }
  if (gather && !compute_copy) gather_masters();  // no compute copy yet: AdamW wrote the master pieces alone
  if (!overlapped) weights_settled();
  return norm;
}

void DataParallel::gather_compute(int k) {
  const GradientBucket& g = buckets_[(size_t)k];
  const cx::Tensor at = m_.compute.t + (int64_t)compute_begin(g);
  if (at.dtype == DType::BF16) comm_->all_gather_bf16(static_cast<uint16_t*>(at.data), compute_counts(g));
  else comm_->all_gather(at.f32(), compute_counts(g));
}

void DataParallel::gather_bucket(int j) {
  const int k = (int)buckets_.size() - 1 - j;
  if (comm_->stream_ordered()) {
    // Queued behind this bucket's AdamW kernels; the mark is what the forward's stream will wait for.
    try {
      comm_->in_turn(comm_->take_ticket(), [&] {
        comm_->follow(m_.be->stream());
        gather_compute(k);
        comm_->mark(j);
      });
    } catch (const std::exception& e) {
      fail(CX_INTERNAL, "rank %d of %d: gathering the updated weights failed (%s): %s", comm_->rank(), comm_->world(), comm_->name(), e.what());
    }
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back({k, comm_->take_ticket(), true});
  }
  cv_.notify_all();
}

void DataParallel::await_weights(int j) {
  if (!gathering_) return;
  j = std::min(j, (int)buckets_.size() - 1);
  if (j < awaited_) return;
  if (comm_->stream_ordered()) {
    try {
      for (; awaited_ <= j; awaited_++) comm_->lead(m_.be->stream(), awaited_);
    } catch (const std::exception& e) {
      fail(CX_INTERNAL, "rank %d of %d: waiting for the updated weights failed (%s): %s", comm_->rank(), comm_->world(), comm_->name(), e.what());
    }
    return;
  }
  std::unique_lock<std::mutex> lock(mu_);
  wait_worker(lock, [&] { return weights_gathered_ > j || !error_.empty(); }, "the updated weights' all-gather");
  if (!error_.empty())
    fail(CX_INTERNAL, "rank %d of %d: gathering the updated weights failed (%s): %s", comm_->rank(), comm_->world(), comm_->name(), error_.c_str());
  awaited_ = j + 1;
  if (awaited_ == (int)buckets_.size()) gathering_ = false;
}

void DataParallel::weights_settled() {
  if (!gathering_) return;
  const int last = (int)buckets_.size() - 1;
  await_weights(last);
  if (comm_->stream_ordered()) {
    try {
      comm_->settle(last);
    } catch (const std::exception& e) {
      fail(CX_INTERNAL, "rank %d of %d: gathering the updated weights failed (%s): %s", comm_->rank(), comm_->world(), comm_->name(), e.what());
    }
  }
  gathering_ = false;
}

void DataParallel::shard_masters() {
  // This rank's pieces, in the order of its moments; then the whole array goes.
  masters_.reset(new Buffer());
  masters_->ensure(m_.be.get(), std::max<size_t>(owned_, 1), DType::F32, "fp32 master weights (this rank's share)");
  for (const GradientBucket& g : buckets_)
    if (g.own_end > g.own_begin)
      m_.be->copy_round(masters_->t + (int64_t)g.moment_offset, m_.params.t + (int64_t)g.own_begin, g.own_end - g.own_begin, false);
  m_.params.reset();
  sharded_ = true;
}

void DataParallel::get_params(int tensor, float* dst) {
  const TensorInfo& t = m_.tensors[(size_t)tensor];
  int k = 0;
  while (!(buckets_[(size_t)k].begin <= t.offset && t.offset < buckets_[(size_t)k].end)) k++;
  const GradientBucket& g = buckets_[(size_t)k];
  if (gathered_bucket_ != k) {
    // Every rank calls this for the same tensors in the same order (a checkpoint reads them all), so each bucket
    // is gathered once per checkpoint: this rank's pieces into place, then NCCL's or gloo's all-gather, in fp32.
    if (!gathered_) gathered_.reset(new Buffer());
    gathered_->ensure(m_.be.get(), g.end - g.begin, DType::F32, "a gathered bucket of fp32 master weights");
    if (g.own_end > g.own_begin)
      m_.be->copy_round(gathered_->t + (int64_t)(g.own_begin - g.begin), masters_->t + (int64_t)g.moment_offset, g.own_end - g.own_begin, false);
    comm_->in_turn(comm_->take_ticket(), [&] {
      comm_->follow(m_.be->stream());
      comm_->all_gather(gathered_->t.f32(), g.counts);
      comm_->synchronize();
    });
    gathered_bucket_ = k;
  }
  m_.be->download(dst, gathered_->t + (int64_t)(t.offset - g.begin), t.size());
}

size_t DataParallel::state_bytes() const { return (masters_ ? masters_->bytes() : 0) + (gathered_ ? gathered_->bytes() : 0); }

size_t DataParallel::compute_begin(const GradientBucket& g) const { return m_.tensors[(size_t)g.first_tensor].compute_offset; }

std::vector<size_t> DataParallel::compute_counts(const GradientBucket& g) const {
  // Where flat element x of the bucket sits in the compute copy; a piece runs to the next piece's start, so the
  // padding between two tensors goes with the piece before it (its values are never read).
  auto position = [&](size_t x) {
    for (int i = g.first_tensor; i <= g.last_tensor; i++) {
      const TensorInfo& t = m_.tensors[(size_t)i];
      if (x < t.offset + t.size()) return t.compute_offset + (x - t.offset);
    }
    const TensorInfo& last = m_.tensors[(size_t)g.last_tensor];
    return last.compute_offset + last.size();
  };
  std::vector<size_t> counts;
  size_t at = g.begin, from = position(at);
  for (size_t n : g.counts) {
    at += n;
    const size_t to = position(at);
    counts.push_back(to - from);
    from = to;
  }
  return counts;
}

void DataParallel::gather_masters() {
  comm_->in_turn(comm_->take_ticket(), [&] {
    comm_->follow(m_.be->stream());
    for (const GradientBucket& g : buckets_) comm_->all_gather((m_.params.t + (int64_t)g.begin).f32(), g.counts);
    comm_->synchronize();
  });
  // Called before any compute copy exists (AdamW wrote the master pieces alone): the next forward derives it.
}

void DataParallel::get_moments(int kind, int tensor, float* dst) {
  const Buffer& moments = kind == CX_ADAM_M ? m_.adam_m : m_.adam_v;
  const TensorInfo& t = m_.tensors[(size_t)tensor];
  if (zero_ == 0) return m_.be->download(dst, moments.t + (int64_t)t.offset, t.size());
  // Every rank fills in its pieces and zeros elsewhere; the sum over ranks is then exact (x + 0 = x).
  std::fill(dst, dst + t.size(), 0.f);
  for (const GradientBucket& g : buckets_) {
    const size_t lo = std::max(g.own_begin, t.offset), hi = std::min(g.own_end, t.offset + t.size());
    if (lo < hi) m_.be->download(dst + (lo - t.offset), moments.t + (int64_t)(g.moment_offset + (lo - g.own_begin)), hi - lo);
  }
  comm_->all_reduce_host(dst, t.size());
}

void DataParallel::set_moments(int kind, int tensor, const float* src) {
  const Buffer& moments = kind == CX_ADAM_M ? m_.adam_m : m_.adam_v;
  const TensorInfo& t = m_.tensors[(size_t)tensor];
  if (zero_ == 0) return m_.be->upload(moments.t + (int64_t)t.offset, src, t.size());
  for (const GradientBucket& g : buckets_) {
    const size_t lo = std::max(g.own_begin, t.offset), hi = std::min(g.own_end, t.offset + t.size());
    if (lo < hi) m_.be->upload(moments.t + (int64_t)(g.moment_offset + (lo - g.own_begin)), src + (lo - t.offset), hi - lo);
  }
}

}  // namespace cxm
