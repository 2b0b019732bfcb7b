/* The communicator over gloo (Debian's libgloo-dev): TCP pairs between every two ranks, connected through the
 * rendezvous store; reduce-scatter as one rooted reduce per piece, all-reduce, allgatherv, broadcast and barrier
 * from gloo itself. Host memory only (the CPU backend's). */
#include <gloo/allgatherv.h>
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/math.h>
#include <gloo/reduce.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>
#include <gloo/transport/unbound_buffer.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <numeric>
#include <string>
#include <vector>
#include <stdexcept>

#include "communicator.h"
#include "store.h"

namespace cx {

namespace {

/* gloo's view of the rendezvous store. */
class GlooStore : public gloo::rendezvous::Store {
 public:
  explicit GlooStore(TcpStore& store) : store_(store) {}
  void set(const std::string& key, const std::vector<char>& data) override { store_.set(key, data); }
  std::vector<char> get(const std::string& key) override { return store_.get(key); }
  void wait(const std::vector<std::string>& keys) override { store_.wait(keys, store_.timeout()); }
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override { store_.wait(keys, timeout); }

 private:
  TcpStore& store_;
};

bool loopback(const std::string& host) { return host == "localhost" || host.rfind("127.", 0) == 0; }

class GlooCommunicator : public Communicator {
 public:
  explicit GlooCommunicator(const CommOptions& o) : rank_(o.rank), world_(o.world), timeout_(o.timeout_ms) {
    store_.reset(new TcpStore(o.master_addr, o.master_port, o.rank == 0, timeout_));
    GlooStore store(*store_);
    gloo::rendezvous::PrefixStore prefixed("chuxin-gloo", store);
    gloo::transport::tcp::attr attr;
    // The address peers reach this rank on: loopback for a one-machine group; otherwise GLOO_SOCKET_IFNAME's
    // interface (PyTorch's variable) or this host's name.
    if (const char* iface = std::getenv("GLOO_SOCKET_IFNAME"); iface && *iface) {
      attr.iface = iface;
    } else if (loopback(o.master_addr)) {
      attr.hostname = "127.0.0.1";
    } else {
      char host[256] = {0};
      ::gethostname(host, sizeof host - 1);
      attr.hostname = host;
    }
    device_ = gloo::transport::tcp::CreateDevice(attr);
    auto context = std::make_shared<gloo::rendezvous::Context>(rank_, world_);
    context->setTimeout(timeout_);
    context->connectFullMesh(prefixed, device_);
    context_ = context;
  }

  const char* name() const override { return "gloo"; }
  int rank() const override { return rank_; }
  int world() const override { return world_; }
  std::chrono::milliseconds timeout() const override { return timeout_; }

  void reduce_scatter(float* data, const std::vector<size_t>& counts) override {
    ordered([&] { reduce_scatter_now(data, counts); });
  }

  void all_gather(float* data, const std::vector<size_t>& counts) override {
    ordered([&] { all_gather_now(data, counts); });
  }
  void all_gather_bf16(uint16_t* data, const std::vector<size_t>& counts) override {
    ordered([&] { all_gather_now(data, counts); });
  }

  void all_reduce(float* data, size_t n) override {
    ordered([&] { reduce_sum(data, n); });
  }
  void all_reduce_host(double* data, size_t n) override {
    ordered([&] { reduce_sum(data, n); });
  }
  void all_reduce_host(float* data, size_t n) override {
    ordered([&] { reduce_sum(data, n); });
  }

  void broadcast(void* data, size_t bytes, int root) override {
    ordered([&] {
      if (world_ == 1 || bytes == 0) return;
      gloo::BroadcastOptions opts(context_);
      opts.setOutput(static_cast<uint8_t*>(data), bytes);
      opts.setRoot(root);
      opts.setTimeout(timeout_);
      gloo::broadcast(opts);
    });
  }

  void exchange(const void* send, size_t send_bytes, int to, void* recv, size_t recv_bytes, int from) override {
    ordered([&] {
      if (to == rank_ && from == rank_) {
        if (send_bytes != recv_bytes) throw std::runtime_error("exchange with itself of unequal sizes");
        if (send != recv) std::memmove(recv, send, send_bytes);
        return;
      }
      // Each ordered pair of ranks numbers its messages; both ends count the same, so the slot matches. The
      // slots sit above every collective's (gloo builds those from small prefixes and tags).
      const uint64_t send_slot = kExchangeSlots + sent_[(size_t)to]++, recv_slot = kExchangeSlots + received_[(size_t)from]++;
      auto out = context_->createUnboundBuffer(const_cast<void*>(send), send_bytes);
      auto in = context_->createUnboundBuffer(recv, recv_bytes);
      in->recv(from, recv_slot);
      out->send(to, send_slot);
      const std::string what = "exchanging " + std::to_string(send_bytes) + " bytes with ranks " + std::to_string(to) + " and " + std::to_string(from);
      try {
        if (!in->waitRecv(timeout_)) throw std::runtime_error("timed out");
        if (!out->waitSend(timeout_)) throw std::runtime_error("timed out");
      } catch (const std::exception& e) {
        throw std::runtime_error(what + ": " + e.what());
      }
    });
  }

  void barrier() override {
    ordered([&] {
      if (world_ == 1) return;
      gloo::BarrierOptions opts(context_);
      opts.setTimeout(timeout_);
      gloo::barrier(opts);
    });
  }

 private:
  /* One rooted reduce per rank's piece (gloo's new-style reduce, which waits for its own sends), not
   * ReduceScatterHalvingDoubling: that one moves the result to the buffer's start while its last sends from there
   * may still be in flight, and on 2 ranks one training run in about ten here got other gradient sums. */
  void reduce_scatter_now(float* data, const std::vector<size_t>& counts) {
    if (world_ == 1) return;
    size_t offset = 0;
    for (int root = 0; root < world_; root++) {
      const size_t n = counts[(size_t)root];
      if (n > 0) {
        gloo::ReduceOptions opts(context_);
        opts.setOutput(data + offset, n);
        opts.setRoot(root);
        opts.setReduceFunction(static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<float>));
        opts.setTimeout(timeout_);
        gloo::reduce(opts);
      }
      offset += n;
    }
  }

  template <typename T>
  void all_gather_now(T* data, const std::vector<size_t>& counts) {
    if (world_ == 1) return;
    size_t offset = 0;
    for (int r = 0; r < rank_; r++) offset += counts[(size_t)r];
    // allgatherv reads its input while it writes the output: give it a copy of this rank's piece.
    std::vector<T> mine(data + offset, data + offset + counts[(size_t)rank_]);
    gloo::AllgathervOptions opts(context_);
    opts.setInput(mine.data(), mine.size());
    opts.setOutput(data, counts);
    opts.setTimeout(timeout_);
    gloo::allgatherv(opts);
  }

  template <typename T>
  void reduce_sum(T* data, size_t n) {
    if (world_ == 1 || n == 0) return;
    gloo::AllreduceOptions opts(context_);
    opts.setOutput(data, n);
    opts.setReduceFunction(static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<T>));
    opts.setTimeout(timeout_);
    gloo::allreduce(opts);
  }

  int rank_, world_;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<TcpStore> store_;
  static constexpr uint64_t kExchangeSlots = 1ull << 48;
  std::vector<uint64_t> sent_ = std::vector<uint64_t>((size_t)world_), received_ = std::vector<uint64_t>((size_t)world_);
  std::shared_ptr<gloo::transport::Device> device_;
  std::shared_ptr<gloo::Context> context_;
};

}  // namespace

Communicator* create_gloo_communicator(const CommOptions& options, std::string* why) {
  (void)why;
  return new GlooCommunicator(options);
}

}  // namespace cx
