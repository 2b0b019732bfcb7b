#pragma once
/* The communicator seam: the collectives data-parallel training needs, over whichever library runs them (gloo
 * on CPUs; NCCL on GPUs). The fp32 collectives take the model's backend memory (host for gloo, the device for
 * NCCL); the _host ones and broadcast take host memory. Every call is collective: each rank makes the same
 * calls in the same order. Failures (a peer gone, a timeout) throw std::runtime_error naming what was running;
 * the C API turns that into a status. */
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "../../include/chuxin.h"
#include "topology.h"

namespace cx {

struct CommOptions {
  int rank = 0, world = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  int timeout_ms = 300000;  // rendezvous and every collective
  int device = -1;          // NCCL: the CUDA device ordinal of this rank's model (gloo: host memory, -1)
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  /* Collectives run one at a time, in the order their tickets were taken, so every rank issues them in the
   * same order even when some run on another thread: a collective called directly takes its ticket then; one
   * queued for later (data_parallel.h's gradient buckets) takes it when queued and runs with in_turn. */
  uint64_t take_ticket() {
    std::lock_guard<std::mutex> lock(order_mu_);
    return next_ticket_++;
  }
  template <typename F>
  void in_turn(uint64_t ticket, F&& body) {
    {
      // Each collective ahead fails within the timeout, so a turn with none of them done for longer than that
      // (plus a margin, so that theirs is the message reported) is a hang: it fails here, and so does every turn
      // after it, instead of waiting without end.
      const auto limit = timeout() + std::chrono::seconds(5);
      std::unique_lock<std::mutex> lock(order_mu_);
      for (uint64_t seen = serving_; !stuck_ && serving_ != ticket; seen = serving_) {
        if (!order_cv_.wait_for(lock, limit, [&] { return stuck_ || serving_ == ticket; }) && serving_ == seen) stuck_ = true;
      }
      if (stuck_ && serving_ != ticket)
        throw std::runtime_error("waited " + std::to_string(std::chrono::duration_cast<std::chrono::seconds>(limit).count()) +
                                 " s for the collectives queued before this one, and none finished");
    }
    struct Done {
      Communicator* c;
      ~Done() {
        in_turn_here() = false;
        {
          std::lock_guard<std::mutex> lock(c->order_mu_);
          c->serving_++;
        }
        c->order_cv_.notify_all();
      }
    } done{this};
    in_turn_here() = true;
    body();
  }

  virtual const char* name() const = 0;
  virtual int rank() const = 0;
  virtual int world() const = 0;
  /* The world as rings of context parallelism times data parallelism (topology.h); rings of 1 until set. */
  Topology topology() const { return {world(), rank(), ring_size_}; }
  /* Throws std::invalid_argument, with the fix, when the ring size does not divide the world. */
  void set_ring_size(int size) { ring_size_ = Topology::make(world(), rank(), size).ring_size; }
  /* How long any one collective may take (--dist-timeout): a wait for one, on any thread, fails past it. */
  virtual std::chrono::milliseconds timeout() const = 0;
  /* Where the fp32 collectives' buffers must be: -1 (host) or a CUDA device ordinal (tensor.h's kHost). */
  virtual int device() const { return -1; }

  /* A stream-ordered library (NCCL) queues each collective on its own stream and returns at once. follow(s)
   * makes the collectives queued after it wait for what stream s (the model's) has queued so far; synchronize()
   * waits on the host until the queued collectives are done, and fails past the timeout or when a peer has
   * failed, so no rank waits forever. A blocking library (gloo) is done when a call returns: both are no-ops. */
  virtual bool stream_ordered() const { return false; }
  virtual void follow(void* stream) { (void)stream; }
  virtual void synchronize() {}
  /* Marks, for a consumer that should wait for part of the queued work only (the next forward waits for each
   * bucket of gathered weights as it needs it): mark(slot) records where the collectives queued so far end;
   * lead(s, slot) makes stream s wait on the device until they are done, without the host waiting; settle(slot)
   * waits on the host, failing as synchronize() does. Slots are small integers, reused once settled. No-ops for
   * a blocking library. */
  virtual void mark(int slot) { (void)slot; }
  virtual void lead(void* stream, int slot) { (void)stream, (void)slot; }
  virtual void settle(int slot) { (void)slot; }

  /* In place over data[sum(counts)]: rank r's piece (counts[r] elements at offset counts[0] + ... + counts[r-1])
   * ends up holding that piece summed over every rank; the other pieces are left undefined. */
  virtual void reduce_scatter(float* data, const std::vector<size_t>& counts) = 0;
  /* In place over data[sum(counts)]: every rank's piece (laid out as above) copied to every rank. */
  virtual void all_gather(float* data, const std::vector<size_t>& counts) = 0;
  /* The same over 16-bit elements (a bf16 compute copy of the weights). */
  virtual void all_gather_bf16(uint16_t* data, const std::vector<size_t>& counts) = 0;
  virtual void all_reduce(float* data, size_t n) = 0;
  /* Host values (counts, losses, norms): summed in double. */
  virtual void all_reduce_host(double* data, size_t n) = 0;
  /* Host fp32 values (a tensor's optimizer moments gathered for a checkpoint), summed in fp32. */
  virtual void all_reduce_host(float* data, size_t n) = 0;
  virtual void broadcast(void* data, size_t bytes, int root) = 0;
  virtual void barrier() = 0;
  /* Point-to-point, for ring attention: sends send_bytes at `send` to rank `to` while receiving recv_bytes into
   * `recv` from rank `from`, in the fp32 collectives' memory (host for gloo, the device for NCCL). Only the peers
   * take part: on a ring every member calls it together (to = next, from = previous), and the pairs' calls
   * match in the order they are made. A rank may send to and receive from itself (a ring of one). */
  virtual void exchange(const void* send, size_t send_bytes, int to, void* recv, size_t recv_bytes, int from) = 0;

 protected:
  /* What each collective of an implementation runs its work through. */
  template <typename F>
  void ordered(F&& body) {
    if (in_turn_here()) body();
    else in_turn(take_ticket(), body);
  }

 private:
  static bool& in_turn_here() {
    static thread_local bool here = false;
    return here;
  }
  std::mutex order_mu_;
  std::condition_variable order_cv_;
  uint64_t next_ticket_ = 0, serving_ = 0;
  bool stuck_ = false;  // a turn waited past the timeout: the order is broken for good
  int ring_size_ = 1;
};

/* nullptr with *why when the library is not there (gloo: built without libgloo-dev; NCCL: built without CUDA,
 * or libnccl.so.2 not found, the message saying where it looked). */
Communicator* create_gloo_communicator(const CommOptions& options, std::string* why);
Communicator* create_nccl_communicator(const CommOptions& options, std::string* why);

}  // namespace cx

/* The communicator behind a C API handle (comm/capi.cpp). */
cx::Communicator* cx_comm_impl(cx_comm* comm);
const cx::Communicator* cx_comm_impl(const cx_comm* comm);
