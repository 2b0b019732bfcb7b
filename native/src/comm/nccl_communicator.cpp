/* The communicator over NCCL, loaded at run time (nccl_api.h): rank 0's unique id travels through the
 * rendezvous store; every collective is queued on the communicator's own stream, after what the model's stream
 * had queued when follow() was called, so gradient buckets are reduced while the backward goes on. Host values
 * (losses, norms, rank 0's bytes) go through a small device buffer. Built with CUDA only. */
#include <cuda_runtime.h>

#include <chrono>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "communicator.h"
#include "nccl_api.h"
#include "store.h"

namespace cx {

namespace {

std::string cuda_message(cudaError_t e) { return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e); }

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(const CommOptions& o, const nccl::Api* api)
      : api_(api), rank_(o.rank), world_(o.world), device_(o.device), timeout_(o.timeout_ms) {
    cuda(cudaSetDevice(device_), "selecting the model's GPU");
    store_.reset(new TcpStore(o.master_addr, o.master_port, o.rank == 0, timeout_));
    nccl::UniqueId id{};
    if (rank_ == 0) {
      check(api_->get_unique_id(&id), "creating the group's unique id");
      store_->set("chuxin-nccl/unique-id", std::vector<char>(id.internal, id.internal + sizeof id.internal));
    } else {
      const std::vector<char> bytes = store_->get("chuxin-nccl/unique-id");
      if (bytes.size() != sizeof id.internal) throw std::runtime_error("rank 0 published a unique id of the wrong size");
      std::memcpy(id.internal, bytes.data(), sizeof id.internal);
    }
    join(id);
    cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "creating the communication stream");
    cuda(cudaEventCreateWithFlags(&follow_, cudaEventDisableTiming), "creating an event");
    cuda(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), "creating an event");
  }

  ~NcclCommunicator() override {
    if (comm_) {
      cudaSetDevice(device_);
      // After a failed collective the group is aborted already. Work still queued (a step that failed between its
      // buckets) may wait on peers that are gone, and destroying would wait for it: abort instead.
      if (stream_ && cudaStreamQuery(stream_) == cudaSuccess) api_->comm_destroy(comm_);
      else api_->comm_abort(comm_);
    }
    if (staging_) cudaFree(staging_);
    if (pinned_) cudaFreeHost(pinned_);
    if (follow_) cudaEventDestroy(follow_);
    if (done_) cudaEventDestroy(done_);
    for (cudaEvent_t e : marks_) cudaEventDestroy(e);
    if (stream_) cudaStreamDestroy(stream_);
  }

  const char* name() const override { return "nccl"; }
  int rank() const override { return rank_; }
  int world() const override { return world_; }
  std::chrono::milliseconds timeout() const override { return timeout_; }
  int device() const override { return device_; }
  bool stream_ordered() const override { return true; }

  void follow(void* stream) override {
    ordered([&] {
      on_device("ordering after the model's stream");
      cuda(cudaEventRecord(follow_, static_cast<cudaStream_t>(stream)), "recording the model's progress");
      cuda(cudaStreamWaitEvent(stream_, follow_, 0), "ordering the communication stream");
    });
  }

  void synchronize() override {
    ordered([&] { wait_done("the collectives queued so far"); });
  }

  void mark(int slot) override {
    ordered([&] {
      on_device("marking the communication stream");
      while ((int)marks_.size() <= slot) {
        cudaEvent_t e = nullptr;
        cuda(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "creating an event");
        marks_.push_back(e);
      }
      cuda(cudaEventRecord(marks_[(size_t)slot], stream_), "marking the communication stream");
    });
  }

  void lead(void* stream, int slot) override {
    ordered([&] {
      on_device("ordering the model's stream");
      cuda(cudaStreamWaitEvent(static_cast<cudaStream_t>(stream), marks_.at((size_t)slot), 0), "ordering the model's stream after a collective");
    });
  }

  void settle(int slot) override {
    ordered([&] { wait_event(marks_.at((size_t)slot), "the weights' all-gather"); });
  }

  /* Pieces laid out as data_parallel.cpp splits a bucket (every rank's piece alike, the last one longer by the
   * remainder) take NCCL's in-place reduce-scatter plus one reduce of the remainder; any other split takes one
   * rooted reduce per piece. Either way grouped, so NCCL runs them as one launch. */
  void reduce_scatter(float* data, const std::vector<size_t>& counts) override {
    ordered([&] {
      on_device("reduce-scatter");
      size_t q = 0, rem = 0;
      group([&] {
        if (even_split(counts, &q, &rem)) {
          if (q > 0) check(api_->reduce_scatter(data, data + (size_t)rank_ * q, q, nccl::kFloat32, nccl::kSum, comm_, stream_), "reduce-scatter");
          if (rem > 0) {
            float* tail = data + (size_t)world_ * q;
            check(api_->reduce(tail, tail, rem, nccl::kFloat32, nccl::kSum, world_ - 1, comm_, stream_), "reduce-scatter (remainder)");
          }
          return;
        }
        size_t offset = 0;
        for (int root = 0; root < world_; root++) {
          const size_t n = counts[(size_t)root];
          if (n > 0) check(api_->reduce(data + offset, data + offset, n, nccl::kFloat32, nccl::kSum, root, comm_, stream_), "reduce-scatter");
          offset += n;
        }
      });
    });
  }

  void all_gather(float* data, const std::vector<size_t>& counts) override { gather(data, counts, nccl::kFloat32); }
  void all_gather_bf16(uint16_t* data, const std::vector<size_t>& counts) override { gather(data, counts, nccl::kBfloat16); }

  void all_reduce(float* data, size_t n) override {
    ordered([&] {
      on_device("all-reduce");
      if (n > 0) check(api_->all_reduce(data, data, n, nccl::kFloat32, nccl::kSum, comm_, stream_), "all-reduce");
    });
  }

  void all_reduce_host(double* data, size_t n) override { host_all_reduce(data, n, nccl::kFloat64, "summing host values"); }
  void all_reduce_host(float* data, size_t n) override { host_all_reduce(data, n, nccl::kFloat32, "summing host fp32 values"); }

  void broadcast(void* data, size_t bytes, int root) override {
    ordered([&] {
      on_device("broadcast");
      if (bytes == 0) return;
      void* d = stage_in(data, bytes, "broadcast");
      check(api_->broadcast(d, d, bytes, nccl::kUint8, root, comm_, stream_), "broadcast");
      stage_out(data, bytes, "broadcast");
    });
  }

  void barrier() override {
    ordered([&] {
      on_device("barrier");
      float one = 1;
      void* d = stage_in(&one, sizeof one, "barrier");
      check(api_->all_reduce(d, d, 1, nccl::kFloat32, nccl::kSum, comm_, stream_), "barrier");
      stage_out(&one, sizeof one, "barrier");
    });
  }

  void exchange(const void* send, size_t send_bytes, int to, void* recv, size_t recv_bytes, int from) override {
    ordered([&] {
      on_device("exchange");
      // Both halves in one group, so neither waits for the other (ncclSend/ncclRecv, NCCL 2.7).
      group([&] {
        if (send_bytes > 0) check(api_->send(send, send_bytes, nccl::kUint8, to, comm_, stream_), "exchange (send)");
        if (recv_bytes > 0) check(api_->recv(recv, recv_bytes, nccl::kUint8, from, comm_, stream_), "exchange (receive)");
      });
    });
  }

 private:
  /* Every rank's piece but the last the same size, the last longer by less than the world (data_parallel.cpp). */
  bool even_split(const std::vector<size_t>& counts, size_t* q, size_t* rem) const {
    *q = counts[0];
    for (int r = 0; r + 1 < world_; r++)
      if (counts[(size_t)r] != *q) return false;
    if (counts[(size_t)world_ - 1] < *q) return false;
    *rem = counts[(size_t)world_ - 1] - *q;
    return true;
  }

  template <typename T>
  void gather(T* data, const std::vector<size_t>& counts, nccl::DataType type) {
    ordered([&] {
      on_device("all-gather");
      size_t q = 0, rem = 0;
      group([&] {
        if (even_split(counts, &q, &rem)) {
          if (q > 0) check(api_->all_gather(data + (size_t)rank_ * q, data, q, type, comm_, stream_), "all-gather");
          if (rem > 0) {
            T* tail = data + (size_t)world_ * q;
            check(api_->broadcast(tail, tail, rem, type, world_ - 1, comm_, stream_), "all-gather (remainder)");
          }
          return;
        }
        size_t offset = 0;
        for (int root = 0; root < world_; root++) {
          const size_t n = counts[(size_t)root];
          if (n > 0) check(api_->broadcast(data + offset, data + offset, n, type, root, comm_, stream_), "all-gather");
          offset += n;
        }
      });
    });
  }

  template <typename F>
  void group(F&& body) {
    check(api_->group_start(), "starting a group");
    in_group_ = true;
    try {
      body();
    } catch (...) {
      in_group_ = false;
      api_->group_end();
      throw;
    }
    in_group_ = false;
    check(api_->group_end(), "ending a group");
  }

  /* Joins the group. A non-blocking communicator (NCCL 2.14+) lets this rank give up when the others do not all
   * come within the timeout (a rank that died before joining, a wrong MASTER_ADDR on one node), where
   * ncclCommInitRank would wait forever; older libraries join blocking. */
  void join(const nccl::UniqueId& id) {
    nonblocking_ = api_->comm_init_rank_config && api_->version >= nccl::kNonBlockingSince;
    if (!nonblocking_) return check(api_->comm_init_rank(&comm_, world_, id, rank_), "joining the NCCL group");
    nccl::Config config;
    config.blocking = 0;
    const nccl::Result r = api_->comm_init_rank_config(&comm_, world_, id, rank_, &config);
    if (r != nccl::kSuccess && r != nccl::kInProgress) {
      const std::string detail = describe(r);
      abort_group();
      throw std::runtime_error("joining the NCCL group: NCCL " + detail);
    }
    until_settled("joining the NCCL group", "not every rank joined");
  }

  /* A non-blocking communicator's call may return ncclInProgress before its work is queued; nothing else may be
   * called on the communicator until its state leaves that (nccl.h), so wait, within the timeout. */
  void until_settled(const char* what, const char* silent = "no answer from the other ranks") {
    const auto deadline = std::chrono::steady_clock::now() + timeout_;
    for (;;) {
      nccl::Result state = nccl::kSuccess;
      const nccl::Result r = api_->comm_get_async_error(comm_, &state);
      if (r != nccl::kSuccess) state = r;
      if (state == nccl::kSuccess) return;
      if (state != nccl::kInProgress) {
        const std::string detail = describe(state);
        abort_group();
        throw std::runtime_error(std::string(what) + ": NCCL failed (" + detail + "); another rank stopped or its link broke");
      }
      if (std::chrono::steady_clock::now() > deadline) {
        abort_group();
        throw std::runtime_error(std::string(what) + ": " + silent + " within " + std::to_string(timeout_.count() / 1000) +
                                 " s (--dist-timeout); one of them stopped or hangs");
      }
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  template <typename T>
  void host_all_reduce(T* data, size_t n, nccl::DataType type, const char* what) {
    ordered([&] {
      on_device(what);
      if (n == 0) return;
      void* d = stage_in(data, n * sizeof(T), what);
      check(api_->all_reduce(d, d, n, type, nccl::kSum, comm_, stream_), what);
      stage_out(data, n * sizeof(T), what);
    });
  }

  /* Host values reach NCCL through a device buffer, by way of pinned host memory: a copy to pageable memory
   * would block until the collective is done, past the reach of wait_done's timeout. */
  void* stage_in(const void* data, size_t bytes, const char* what) {
    if (bytes > staging_bytes_) {
      // Work queued on the stream may still use the old buffers.
      wait_done(what);
      if (staging_) cudaFree(staging_);
      if (pinned_) cudaFreeHost(pinned_);
      staging_ = pinned_ = nullptr, staging_bytes_ = 0;
      cuda(cudaMalloc(&staging_, bytes), "allocating the staging buffer");
      cuda(cudaMallocHost(&pinned_, bytes), "allocating the pinned staging buffer");
      staging_bytes_ = bytes;
    }
    wait_done(what);  // the pinned buffer is free once the stream is
    std::memcpy(pinned_, data, bytes);
    cuda(cudaMemcpyAsync(staging_, pinned_, bytes, cudaMemcpyHostToDevice, stream_), what);
    return staging_;
  }

  void stage_out(void* data, size_t bytes, const char* what) {
    cuda(cudaMemcpyAsync(pinned_, staging_, bytes, cudaMemcpyDeviceToHost, stream_), what);
    wait_done(what);
    std::memcpy(data, pinned_, bytes);
  }

  /* Polls the stream rather than blocking in cudaStreamSynchronize: a peer that died leaves NCCL's kernels
   * waiting forever, and only the async-error check and the timeout get this rank out. */
  void wait_done(const char* what) {
    broken_check(what);
    cuda(cudaEventRecord(done_, stream_), what);
    wait_event(done_, what);
  }

  void wait_event(cudaEvent_t event, const char* what) {
    broken_check(what);
    const auto deadline = std::chrono::steady_clock::now() + timeout_;
    for (;;) {
      const cudaError_t e = cudaEventQuery(event);
      if (e == cudaSuccess) return;
      if (e != cudaErrorNotReady) {
        abort_group();
        throw std::runtime_error(std::string(what) + ": " + cuda_message(e));
      }
      nccl::Result async = nccl::kSuccess;
      if (api_->comm_get_async_error(comm_, &async) == nccl::kSuccess && async != nccl::kSuccess && async != nccl::kInProgress) {
        const std::string detail = describe(async);
        abort_group();
        throw std::runtime_error(std::string(what) + ": NCCL failed (" + detail + "); another rank stopped or its link broke");
      }
      if (std::chrono::steady_clock::now() > deadline) {
        abort_group();
        throw std::runtime_error(std::string(what) + ": no answer from the other ranks within " + std::to_string(timeout_.count() / 1000) +
                                 " s (--dist-timeout); one of them stopped or hangs");
      }
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  void abort_group() {
    if (!comm_) return;
    api_->comm_abort(comm_);
    comm_ = nullptr;
  }

  void broken_check(const char* what) const {
    if (!comm_) throw std::runtime_error(std::string(what) + ": the NCCL group was aborted after an earlier failure");
  }

  /* Collectives run on whichever thread calls them (the backward's, a Node worker's): each selects the device. */
  void on_device(const char* what) {
    broken_check(what);
    cuda(cudaSetDevice(device_), what);
  }

  std::string describe(nccl::Result r) const {
    std::string s = api_->get_error_string(r);
    if (api_->get_last_error && comm_) {
      const char* last = api_->get_last_error(comm_);
      if (last && *last) s += ": " + std::string(last);
    }
    return s;
  }

  void check(nccl::Result r, const char* what) {
    if (r == nccl::kSuccess) return;
    if (r == nccl::kInProgress && nonblocking_) {
      // Inside a group the calls are only recorded; the group's end is what may still be in progress.
      if (!in_group_) until_settled(what);
      return;
    }
    throw std::runtime_error(std::string(what) + ": NCCL " + describe(r));
  }

  void cuda(cudaError_t e, const char* what) {
    if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cuda_message(e));
  }

  const nccl::Api* api_;
  int rank_, world_, device_;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<TcpStore> store_;
  nccl::Comm comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t follow_ = nullptr, done_ = nullptr;
  std::vector<cudaEvent_t> marks_;
  bool nonblocking_ = false, in_group_ = false;
  void* staging_ = nullptr;  // device
  void* pinned_ = nullptr;   // host, page-locked
  size_t staging_bytes_ = 0;
};

}  // namespace

Communicator* create_nccl_communicator(const CommOptions& options, std::string* why) {
  if (options.device < 0) {
    *why = "NCCL reduces GPU memory; give the communicator the model's CUDA device";
    return nullptr;
  }
  const nccl::Api* api = nccl::load(why);
  if (!api) return nullptr;
  return new NcclCommunicator(options, api);
}

}  // namespace cx
