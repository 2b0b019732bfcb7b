/* Ring attention over the zigzag layout (context_parallel.h). */
#include "context_parallel.h"

#include <cmath>
#include <exception>
#include <thread>

#include "../comm/communicator.h"

namespace cxm {

/* An exchange in flight on its own thread. Joined however it ends: a step that throws between starting and finishing
 * an exchange leaves one behind, and a joinable std::thread destroyed would end the process. */
struct ContextParallel::Pending {
  std::thread thread;
  std::exception_ptr error;
  ~Pending() {
    if (thread.joinable()) thread.join();
  }
};

ContextParallel::ContextParallel(cx_model& m, cx::Communicator* comm) : m_(m), comm_(comm), topology_(comm ? comm->topology() : cx::Topology{}) {
  if (comm && comm->device() != m.be->device())
    fail(CX_INVALID_ARGUMENT, "the communicator (%s) reduces %s memory but the model lives on %s", comm->name(), comm->device() < 0 ? "host" : "GPU",
         m.be->name());
}

ContextParallel::~ContextParallel() = default;  // here, where Pending is complete

void ContextParallel::ensure_buffers(const Batch& bt, DType act) {
  const size_t NC = (size_t)(bt.N * m_.cfg.hidden);
  for (Buffer& b : kv_) b.ensure(m_.be.get(), 2 * NC, act, "ring attention's key/value blocks");
  for (Buffer& b : grads_) b.ensure(m_.be.get(), 2 * NC, DType::F32, "ring attention's key/value gradients");
  acc_.ensure(m_.be.get(), NC, DType::F32, "ring attention's merged outputs");
  const int64_t Tc = m_.layout.chunk();
  part_.ensure(m_.be.get(), (size_t)(Tc * m_.cfg.hidden), DType::F32, "ring attention's block output");
  part_lse_.ensure(m_.be.get(), (size_t)(Tc * m_.cfg.n_heads), DType::F32, "ring attention's block statistics");
}

size_t ContextParallel::bytes() const {
  size_t n = acc_.bytes() + part_.bytes() + part_lse_.bytes();
  for (const Buffer& b : kv_) n += b.bytes();
  for (const Buffer& b : grads_) n += b.bytes();
  return n;
}

void ContextParallel::start_exchange(std::vector<Transfer> transfers, int to, int from) {
  if (comm_->stream_ordered()) {
    // Queued on the library's stream after what the model's stream has queued (the blocks being sent).
    comm_->follow(m_.be->stream());
    for (const Transfer& t : transfers) comm_->exchange(t.send.data, t.send.bytes(), to, t.recv.data, t.recv.bytes(), from);
    return;
  }
  pending_.reset(new Pending());
  const uint64_t ticket = comm_->take_ticket();  // taken here, so every rank's collectives keep one order
  Pending* p = pending_.get();
  p->thread = std::thread([this, p, ticket, transfers = std::move(transfers), to, from] {
    try {
      comm_->in_turn(ticket, [&] {
        for (const Transfer& t : transfers) comm_->exchange(t.send.data, t.send.bytes(), to, t.recv.data, t.recv.bytes(), from);
      });
    } catch (...) {
      p->error = std::current_exception();
    }
  });
}

void ContextParallel::finish_exchange() {
  if (comm_->stream_ordered()) {
    // The model's stream waits on the device for the received block; the slot is past every gradient bucket's.
    const int slot = m_.cfg.n_layers + 4;
    comm_->mark(slot);
    comm_->lead(m_.be->stream(), slot);
    return;
  }
  if (!pending_) return;
  pending_->thread.join();
  std::exception_ptr error = pending_->error;
  pending_.reset();
  if (error) std::rethrow_exception(error);
}

template <typename F>
void ContextParallel::for_visible_pairs(const Batch& bt, int step, F&& body) const {
  const BatchLayout& layout = m_.layout;
  const int index = topology_.ring_index(), size = topology_.ring_size;
  const int source = ((index - step) % size + size) % size;  // whose block this rank holds at this step
  const int64_t Tc = layout.chunk(), Tl = layout.local_length(), H = m_.cfg.n_heads;
  for (int64_t b = 0; b < bt.B; b++)
    for (int qc = 0; qc < 2; qc++)
      for (int kc = 0; kc < 2; kc++) {
        const int64_t g = layout.chunk_of(index, qc), h = layout.chunk_of(source, kc);
        if (layout.sees(b, g, h)) body(Pair{b * Tl + qc * Tc, b * Tl + kc * Tc, (b * 2 + qc) * H * Tc, g * Tc, h * Tc});
      }
}

void ContextParallel::attention_forward(const Batch& bt, Tensor att, Tensor lse, Tensor q, Tensor k, Tensor v, bool bf16) {
  Backend* be = m_.be.get();
  const int64_t N = bt.N, C = m_.cfg.hidden, H = m_.cfg.n_heads, D = C / H, NC = N * C;
  const int64_t Tc = m_.layout.chunk();
  const int last = m_.layout.last_ring_step(), index = topology_.ring_index();
  ensure_buffers(bt, q.dtype);
  be->fill(acc_.t, 0.f, (size_t)NC);
  be->fill(lse, -INFINITY, (size_t)(N * H));
  // The block in hand: this rank's own keys and values first, then those received into kv_[0] and kv_[1] in turn.
  Tensor hold_k = k.shaped(1, NC), hold_v = v.shaped(1, NC);
  int into = 0;
  for (int s = 0; s <= last; s++) {
    const Tensor next_k = kv_[into].t.shaped(1, NC), next_v = (kv_[into].t + NC).shaped(1, NC);
    if (s < last) start_exchange({{hold_k, next_k}, {hold_v, next_v}}, topology_.ring_member(index + 1), topology_.ring_member(index - 1));
    for_visible_pairs(bt, s, [&](const Pair& p) {
      be->attention_block_forward(part_.t, part_lse_.t, q + p.qo * C, hold_k + p.ko * C, hold_v + p.ko * C, m_.doc_start.t + p.qo, p.q_offset,
                                  p.k_offset, Tc, Tc, H, D);
      be->attention_combine(acc_.t + p.qo * C, lse + p.lse, part_.t, part_lse_.t, Tc, H, D);
    });
    if (s < last) {
      finish_exchange();
      hold_k = next_k, hold_v = next_v, into = 1 - into;
    }
  }
  be->copy_round(att, acc_.t, (size_t)NC, bf16);
}

void ContextParallel::attention_backward(const Batch& bt, Tensor dq, Tensor dk, Tensor dv, Tensor datt, Tensor att, Tensor lse, Tensor q, Tensor k,
                                         Tensor v, bool bf16) {
  Backend* be = m_.be.get();
  const int64_t N = bt.N, C = m_.cfg.hidden, H = m_.cfg.n_heads, D = C / H, NC = N * C;
  const int64_t Tc = m_.layout.chunk();
  const int last = m_.layout.last_ring_step(), index = topology_.ring_index();
  ensure_buffers(bt, q.dtype);
  be->fill(acc_.t, 0.f, (size_t)NC);  // dq, summed over the blocks
  be->fill(grads_[0].t, 0.f, (size_t)(2 * NC));
  const int next = topology_.ring_member(index + 1), previous = topology_.ring_member(index - 1);
  auto whole = [&](const Buffer& b) { return b.t.shaped(1, 2 * NC); };
  Tensor hold_k = k.shaped(1, NC), hold_v = v.shaped(1, NC);
  int into = 0, grad = 0;
  for (int s = 0; s <= last; s++) {
    const Tensor next_k = kv_[into].t.shaped(1, NC), next_v = (kv_[into].t + NC).shaped(1, NC);
    if (s < last) start_exchange({{hold_k, next_k}, {hold_v, next_v}}, next, previous);
    for_visible_pairs(bt, s, [&](const Pair& p) {
      be->attention_block_backward(acc_.t + p.qo * C, grads_[grad].t + p.ko * C, grads_[grad].t + (NC + p.ko * C), datt + p.qo * C, att + p.qo * C,
                                   lse + p.lse, q + p.qo * C, hold_k + p.ko * C, hold_v + p.ko * C, m_.doc_start.t + p.qo, p.q_offset, p.k_offset, Tc,
                                   Tc, H, D);
    });
    if (s < last) {
      finish_exchange();
      hold_k = next_k, hold_v = next_v, into = 1 - into;
      // The block's gradients so far go with it to the next rank, which adds its share.
      start_exchange({{whole(grads_[grad]), whole(grads_[1 - grad])}}, next, previous);
      finish_exchange();
      grad = 1 - grad;
    }
  }
  if (last > 0) {
    // The block in hand is that of ring index - last, its gradients complete: home they go, and ours come.
    start_exchange({{whole(grads_[grad]), whole(grads_[1 - grad])}}, topology_.ring_member(index - last), topology_.ring_member(index + last));
    finish_exchange();
    grad = 1 - grad;
  }
  be->copy_round(dq, acc_.t, (size_t)NC, bf16);
  be->copy_round(dk, grads_[grad].t, (size_t)NC, bf16);
  be->copy_round(dv, grads_[grad].t + NC, (size_t)NC, bf16);
}

}  // namespace cxm
