/* A host-memory NCCL for CI, written from nccl.h's documented contract and loaded through the addon's real
 * run-time search (CHUXIN_NCCL): under the CPU emulation of CUDA a device pointer is a host pointer, so each
 * collective runs at once, on gloo, between the rank processes. It lets CI drive the NCCL communicator and the
 * data-parallel path of a GPU model (offsets, in-place layouts, remainders, grouping, staging of host values,
 * a non-blocking communicator's "in progress" answers and a join that never completes); it says nothing about
 * NCCL's speed or its stream semantics (the emulation runs everything when queued).
 * The unique id carries a fresh directory for gloo's file store, where the ranks meet. */
#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/broadcast.h>
#include <gloo/math.h>
#include <gloo/reduce.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/file_store.h>
#include <gloo/transport/tcp/device.h>
#include <gloo/transport/unbound_buffer.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

// nccl.h's values (src/comm/nccl_api.h declares the same slice).
enum Result { kSuccess = 0, kSystemError = 2, kInvalidArgument = 4, kInProgress = 7 };
enum DataType { kUint8 = 1, kFloat32 = 7, kFloat64 = 8, kBfloat16 = 9 };
constexpr int kSum = 0;
struct UniqueId {
  char internal[128];
};

struct Comm {
  int rank = 0, world = 1;
  std::string store_dir;  // the rendezvous's files (ncclGetUniqueId's directory), removed by rank 0 at the end
  std::shared_ptr<gloo::transport::Device> device;
  std::shared_ptr<gloo::rendezvous::Context> context;
  // A non-blocking communicator (ncclConfig_t's blocking = 0): it joins on a thread of its own, and each call
  // answers ncclInProgress, its state staying so for one ncclCommGetAsyncError, as a real one may.
  bool nonblocking = false;
  std::atomic<int> state{kSuccess};
  std::thread joining;
  int polls_in_progress = 0;
  // Point-to-point: each ordered pair numbers its messages (the slot both ends agree on); a group's sends and
  // receives are posted as they are called and waited for when it ends.
  std::vector<uint64_t> sent, received;
  std::vector<std::unique_ptr<gloo::transport::UnboundBuffer>> posted_sends, posted_recvs;
  // A rank's messages to itself: bytes sent before their receive is posted, or a receive waiting for its send.
  std::vector<std::vector<uint8_t>> self_sent;
  std::vector<std::pair<void*, size_t>> self_waiting;
};

// The head of ncclConfig_t (nccl.h): what this reads of it.
struct ConfigHead {
  size_t size;
  unsigned int magic, version;
  int blocking;
};

thread_local int group_depth = 0;
thread_local Comm* grouped_nonblocking = nullptr;

/* What a call on c answers: in a group nothing more; a non-blocking communicator's call outside one is "in
 * progress" until its state is next read. */
int answer(Comm* c, int r) {
  if (r != kSuccess || !c || !c->nonblocking) return r;
  if (group_depth > 0) {
    grouped_nonblocking = c;
    return kSuccess;
  }
  c->polls_in_progress = 1;
  return kInProgress;
}

size_t size_of(int type) { return type == kFloat64 ? 8 : type == kFloat32 ? 4 : type == kBfloat16 ? 2 : 1; }

template <typename T>
void sum_into(void* data, size_t n, Comm* c) {
  gloo::AllreduceOptions o(c->context);
  o.setOutput(static_cast<T*>(data), n);
  o.setReduceFunction(static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<T>));
  gloo::allreduce(o);
}

template <typename T>
void reduce_to(void* data, size_t n, int root, Comm* c) {
  gloo::ReduceOptions o(c->context);
  o.setOutput(static_cast<T*>(data), n);
  o.setRoot(root);
  o.setReduceFunction(static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<T>));
  gloo::reduce(o);
}

/* Runs a collective, turning gloo's exceptions into NCCL's system error (NCCL's word for a peer gone). */
template <typename F>
int run(Comm* c, F&& body) {
  if (!c) return kInvalidArgument;
  // nccl.h: on a non-blocking communicator, no call until its state has been read out of "in progress".
  if (c->state != kSuccess || c->polls_in_progress > 0) {
    std::fprintf(stderr, "emulated NCCL: called while the communicator's state is still in progress\n");
    return kInvalidArgument;
  }
  try {
    if (c->world > 1) body();
    return answer(c, kSuccess);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "emulated NCCL: %s\n", e.what());
    return kSystemError;
  }
}

/* Meets the other ranks (gloo's full mesh over a file store in the id's directory). */
int meet(Comm* c, const std::string& dir) {
  try {
    c->store_dir = dir;
    gloo::rendezvous::FileStore store(dir);
    gloo::transport::tcp::attr attr;
    attr.hostname = "127.0.0.1";
    c->device = gloo::transport::tcp::CreateDevice(attr);
    c->context = std::make_shared<gloo::rendezvous::Context>(c->rank, c->world);
    c->context->setTimeout(std::chrono::seconds(60));
    c->context->connectFullMesh(store, c->device);
    return kSuccess;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "emulated NCCL: joining: %s\n", e.what());
    return kSystemError;
  }
}

}  // namespace

extern "C" {

int ncclGetVersion(int* version) {
  // The contract it follows: NCCL 2.27's nccl.h; CHUXIN_EMULATED_NCCL_VERSION claims another (2.13: before
  // non-blocking communicators), so both ways of joining are checked.
  const char* claimed = std::getenv("CHUXIN_EMULATED_NCCL_VERSION");
  *version = claimed && *claimed ? std::atoi(claimed) : 22703;
  return kSuccess;
}

const char* ncclGetErrorString(int r) {
  return r == kSuccess ? "no error" : r == kInvalidArgument ? "invalid argument (emulated NCCL)" : "system error (emulated NCCL: a peer is gone)";
}

int ncclGetUniqueId(UniqueId* id) {
  const char* tmp = std::getenv("TMPDIR");
  std::string dir = std::string(tmp && *tmp ? tmp : "/tmp") + "/chuxin-nccl-emulated-XXXXXX";
  if (!mkdtemp(dir.data()) || dir.size() >= sizeof id->internal) return kSystemError;
  std::memset(id->internal, 0, sizeof id->internal);
  std::memcpy(id->internal, dir.data(), dir.size());
  return kSuccess;
}

int ncclCommInitRank(Comm** out, int nranks, UniqueId id, int rank) {
  if (nranks < 1 || rank < 0 || rank >= nranks) return kInvalidArgument;
  std::unique_ptr<Comm> c(new Comm());
  c->rank = rank, c->world = nranks;
  const int r = meet(c.get(), std::string(id.internal, strnlen(id.internal, sizeof id.internal)));
  if (r == kSuccess) *out = c.release();
  return r;
}

int ncclCommInitRankConfig(Comm** out, int nranks, UniqueId id, int rank, ConfigHead* config) {
  if (!config || config->magic != 0xcafebeef || config->size < sizeof(ConfigHead)) return kInvalidArgument;
  if (config->blocking != 0) return ncclCommInitRank(out, nranks, id, rank);
  if (nranks < 1 || rank < 0 || rank >= nranks) return kInvalidArgument;
  Comm* c = new Comm();
  c->rank = rank, c->world = nranks, c->nonblocking = true;
  c->state = kInProgress;
  const std::string dir(id.internal, strnlen(id.internal, sizeof id.internal));
  c->joining = std::thread([c, dir] { c->state = meet(c, dir); });
  *out = c;  // as NCCL does: the handle at once, its state in progress until every rank has come
  return kInProgress;
}

int ncclCommDestroy(Comm* c) {
  if (c->joining.joinable()) {
    if (c->state == kInProgress) {
      // Given up while still joining: the thread goes on (gloo's own timeout ends it), so it keeps the memory.
      c->joining.detach();
      return kSuccess;
    }
    c->joining.join();
  }
  // Every rank has met by the time rank 0 is done with a joined communicator: the store is not read again.
  if (c->rank == 0 && c->state == kSuccess && !c->store_dir.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(c->store_dir, ignored);
  }
  delete c;
  return kSuccess;
}
int ncclCommAbort(Comm* c) { return ncclCommDestroy(c); }
int ncclCommGetAsyncError(Comm* c, int* error) {
  if (!c) return kInvalidArgument;
  // Every collective has finished by the time it returns; a non-blocking call reads as in progress once.
  *error = c->state;
  if (*error == kSuccess && c->polls_in_progress > 0) c->polls_in_progress--, *error = kInProgress;
  return kSuccess;
}
// Collectives run when called, in the order every rank calls them; a group is that order.
int ncclGroupStart() {
  group_depth++;
  return kSuccess;
}
/* Waits for the sends and receives posted on c (at a group's end, or at once outside one). */
int complete_point_to_point(Comm* c) {
  try {
    for (auto& b : c->posted_recvs) b->waitRecv(std::chrono::seconds(60));
    for (auto& b : c->posted_sends) b->waitSend(std::chrono::seconds(60));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "emulated NCCL: send/recv: %s\n", e.what());
    c->posted_recvs.clear(), c->posted_sends.clear();
    return kSystemError;
  }
  c->posted_recvs.clear(), c->posted_sends.clear();
  return kSuccess;
}
thread_local std::vector<Comm*> grouped_point_to_point;

int ncclGroupEnd() {
  if (group_depth == 0) return kInvalidArgument;
  if (group_depth == 1) {
    std::vector<Comm*> comms;
    comms.swap(grouped_point_to_point);
    for (Comm* c : comms)
      if (const int r = complete_point_to_point(c); r != kSuccess) {
        group_depth--;
        return r;
      }
  }
  if (--group_depth > 0 || !grouped_nonblocking) return kSuccess;
  Comm* c = grouped_nonblocking;
  grouped_nonblocking = nullptr;
  return answer(c, kSuccess);
}

int ncclAllReduce(const void* send, void* recv, size_t count, int type, int op, Comm* c, void*) {
  if (op != kSum || (type != kFloat32 && type != kFloat64)) return kInvalidArgument;
  if (send != recv) std::memmove(recv, send, count * size_of(type));
  return run(c, [&] { type == kFloat32 ? sum_into<float>(recv, count, c) : sum_into<double>(recv, count, c); });
}

int ncclReduce(const void* send, void* recv, size_t count, int type, int op, int root, Comm* c, void*) {
  if (op != kSum || type != kFloat32 || !c || root < 0 || root >= c->world) return kInvalidArgument;
  // recv matters only at the root; elsewhere reduce a copy, leaving send as it was.
  std::vector<float> copy;
  float* data = c->rank == root ? static_cast<float*>(recv) : nullptr;
  if (!data) copy.assign(static_cast<const float*>(send), static_cast<const float*>(send) + count), data = copy.data();
  else if (send != recv) std::memmove(recv, send, count * 4);
  return run(c, [&] { reduce_to<float>(data, count, root, c); });
}

int ncclReduceScatter(const void* send, void* recv, size_t recv_count, int type, int op, Comm* c, void*) {
  if (op != kSum || type != kFloat32 || !c) return kInvalidArgument;
  // send holds world pieces of recv_count; this rank's piece of the sum lands in recv (in place when
  // recv == send + rank * recv_count, as nccl.h allows).
  std::vector<float> all(static_cast<const float*>(send), static_cast<const float*>(send) + recv_count * (size_t)c->world);
  const int r = run(c, [&] {
    for (int root = 0; root < c->world; root++) reduce_to<float>(all.data() + (size_t)root * recv_count, recv_count, root, c);
  });
  if (r == kSuccess || r == kInProgress) std::memmove(recv, all.data() + (size_t)c->rank * recv_count, recv_count * 4);
  return r;
}

int ncclAllGather(const void* send, void* recv, size_t send_count, int type, Comm* c, void*) {
  if ((type != kFloat32 && type != kBfloat16) || !c) return kInvalidArgument;
  // Copies only: gathered as bytes.
  const size_t bytes = send_count * size_of(type);
  std::vector<uint8_t> mine(static_cast<const uint8_t*>(send), static_cast<const uint8_t*>(send) + bytes);
  if (c->world == 1) {
    const int r = run(c, [] {});
    if (r == kSuccess || r == kInProgress) std::memmove(recv, mine.data(), bytes);
    return r;
  }
  return run(c, [&] {
    gloo::AllgatherOptions o(c->context);
    o.setInput(mine.data(), mine.size());
    o.setOutput(static_cast<uint8_t*>(recv), bytes * (size_t)c->world);
    gloo::allgather(o);
  });
}

int ncclBroadcast(const void* send, void* recv, size_t count, int type, int root, Comm* c, void*) {
  if (!c || root < 0 || root >= c->world || (type != kUint8 && type != kFloat32 && type != kFloat64 && type != kBfloat16)) return kInvalidArgument;
  const size_t bytes = count * size_of(type);
  if (c->rank == root && send != recv) std::memmove(recv, send, bytes);
  return run(c, [&] {
    gloo::BroadcastOptions o(c->context);
    o.setOutput(static_cast<uint8_t*>(recv), bytes);
    o.setRoot(root);
    gloo::broadcast(o);
  });
}

/* Posts a send or receive of `bytes` with `peer`; completed at once outside a group, at its end inside one. */
static int point_to_point(bool sending, void* data, size_t count, int type, int peer, Comm* c) {
  if (!c || peer < 0 || peer >= c->world || (type != kUint8 && type != kFloat32 && type != kBfloat16)) return kInvalidArgument;
  const size_t bytes = count * size_of(type);
  if (peer == c->rank) {  // to itself: a copy, matched in order
    if (sending) {
      const uint8_t* from = static_cast<const uint8_t*>(data);
      if (c->self_waiting.empty()) return c->self_sent.emplace_back(from, from + bytes), answer(c, kSuccess);
      auto [to, room] = c->self_waiting.front();
      c->self_waiting.erase(c->self_waiting.begin());
      if (room != bytes) return kInvalidArgument;
      std::memcpy(to, from, bytes);
    } else if (!c->self_sent.empty()) {
      if (c->self_sent.front().size() != bytes) return kInvalidArgument;
      std::memcpy(data, c->self_sent.front().data(), bytes);
      c->self_sent.erase(c->self_sent.begin());
    } else {
      c->self_waiting.emplace_back(data, bytes);
    }
    return answer(c, kSuccess);
  }
  if (c->sent.empty()) c->sent.assign((size_t)c->world, 0), c->received.assign((size_t)c->world, 0);
  return run(c, [&] {
    const uint64_t slot = (1ull << 48) + (sending ? c->sent[(size_t)peer]++ : c->received[(size_t)peer]++);
    auto buffer = c->context->createUnboundBuffer(data, bytes);
    if (sending) buffer->send(peer, slot);
    else buffer->recv(peer, slot);
    (sending ? c->posted_sends : c->posted_recvs).push_back(std::move(buffer));
    if (group_depth == 0) {
      if (complete_point_to_point(c) != kSuccess) throw std::runtime_error("send/recv failed");
    } else if (std::find(grouped_point_to_point.begin(), grouped_point_to_point.end(), c) == grouped_point_to_point.end()) {
      grouped_point_to_point.push_back(c);
    }
  });
}

int ncclSend(const void* send, size_t count, int type, int peer, Comm* c, void*) { return point_to_point(true, const_cast<void*>(send), count, type, peer, c); }
int ncclRecv(void* recv, size_t count, int type, int peer, Comm* c, void*) { return point_to_point(false, recv, count, type, peer, c); }

}  // extern "C"
