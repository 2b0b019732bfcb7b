/* The communicator's part of the C API (include/chuxin.h): every entry point returns a status, never throws. */
#include <cstring>
#include <memory>
#include <numeric>
#include <vector>

#include "../model/model.h"
#include "communicator.h"

using cxm::fail;
using cxm::guarded;

struct cx_comm {
  std::unique_ptr<cx::Communicator> impl;
};

namespace {

std::vector<size_t> counts_of(const cx_comm* c, const size_t* counts) {
  if (!counts) fail(CX_INVALID_ARGUMENT, "counts are required (one per rank)");
  return std::vector<size_t>(counts, counts + c->impl->world());
}

/* The fp32 collectives of the C API take host memory; a device communicator's take its GPU's. */
void host_memory_only(const cx_comm* c, const char* what) {
  if (c->impl->device() != -1)
    fail(CX_INVALID_ARGUMENT, "%s takes host memory, and the %s communicator reduces GPU memory (a model's, through cx_model_data_parallel)", what,
         c->impl->name());
}

}  // namespace

cx::Communicator* cx_comm_impl(cx_comm* comm) { return comm ? comm->impl.get() : nullptr; }
const cx::Communicator* cx_comm_impl(const cx_comm* comm) { return comm ? comm->impl.get() : nullptr; }

extern "C" {

int cx_comm_create(const cx_comm_options* o, cx_comm** out, cx_status* status) {
  return guarded(status, [&] {
    if (!o || !out) fail(CX_INVALID_ARGUMENT, "options and out are required");
    if (o->world < 1 || o->rank < 0 || o->rank >= o->world)
      fail(CX_INVALID_ARGUMENT, "rank %d is not in a world of %d (0 <= RANK < WORLD_SIZE)", o->rank, o->world);
    if (o->timeout_ms < 1) fail(CX_INVALID_ARGUMENT, "the timeout must be positive");
    cx::CommOptions options;
    options.rank = o->rank, options.world = o->world, options.master_port = o->master_port, options.timeout_ms = o->timeout_ms;
    options.master_addr = o->master_addr && *o->master_addr ? o->master_addr : "127.0.0.1";
    options.device = o->device;
    const std::string library = o->library ? o->library : "gloo";
    if (library != "gloo" && library != "nccl") fail(CX_INVALID_ARGUMENT, "unknown collective library '%s' (gloo, nccl)", library.c_str());
    std::unique_ptr<cx_comm> c(new cx_comm());
    std::string why;
    try {
      c->impl.reset(library == "gloo" ? cx::create_gloo_communicator(options, &why) : cx::create_nccl_communicator(options, &why));
    } catch (const std::exception& e) {
      fail(CX_INTERNAL, "rank %d of %d: cannot join the group through %s:%d: %s", o->rank, o->world, options.master_addr.c_str(),
           o->master_port, e.what());
    }
    if (!c->impl) fail(CX_BACKEND_UNAVAILABLE, "%s is unavailable: %s", library.c_str(), why.c_str());
    *out = c.release();
  });
}

void cx_comm_free(cx_comm* comm) { delete comm; }

const char* cx_comm_library(const cx_comm* comm) { return comm->impl->name(); }

int cx_comm_all_reduce_host(cx_comm* c, double* values, size_t n, cx_status* status) {
  return guarded(status, [&] { c->impl->all_reduce_host(values, n); });
}

int cx_comm_reduce_scatter_host(cx_comm* c, float* data, const size_t* counts, cx_status* status) {
  return guarded(status, [&] {
    host_memory_only(c, "cx_comm_reduce_scatter_host");
    c->impl->reduce_scatter(data, counts_of(c, counts));
  });
}

int cx_comm_all_gather_host(cx_comm* c, float* data, const size_t* counts, cx_status* status) {
  return guarded(status, [&] {
    host_memory_only(c, "cx_comm_all_gather_host");
    c->impl->all_gather(data, counts_of(c, counts));
  });
}

int cx_comm_broadcast_host(cx_comm* c, void* data, size_t bytes, int root, cx_status* status) {
  return guarded(status, [&] {
    if (root < 0 || root >= c->impl->world()) fail(CX_INVALID_ARGUMENT, "broadcast root %d is not a rank", root);
    c->impl->broadcast(data, bytes, root);
  });
}

int cx_comm_barrier(cx_comm* c, cx_status* status) {
  return guarded(status, [&] { c->impl->barrier(); });
}

int cx_comm_exchange_host(cx_comm* c, const void* send, size_t send_bytes, int to, void* recv, size_t recv_bytes, int from, cx_status* status) {
  return guarded(status, [&] {
    host_memory_only(c, "cx_comm_exchange_host");
    const int world = c->impl->world();
    if (to < 0 || to >= world || from < 0 || from >= world) fail(CX_INVALID_ARGUMENT, "exchange peers %d and %d are not both ranks of %d", to, from, world);
    c->impl->exchange(send, send_bytes, to, recv, recv_bytes, from);
  });
}

namespace {
void fill_topology(const cx::Topology& t, cx_topology* out) {
  if (!out) fail(CX_INVALID_ARGUMENT, "out is required");
  *out = {t.world, t.rank, t.ring_size, t.ring_index(), t.data_rank(), t.data_ranks()};
}
}  // namespace

int cx_topology_make(int world, int rank, int ring_size, cx_topology* out, cx_status* status) {
  return guarded(status, [&] { fill_topology(cx::Topology::make(world, rank, ring_size), out); });
}

int cx_comm_context_parallel(cx_comm* c, int ring_size, cx_status* status) {
  return guarded(status, [&] { c->impl->set_ring_size(ring_size); });
}

int cx_comm_topology(const cx_comm* c, cx_topology* out, cx_status* status) {
  return guarded(status, [&] { fill_topology(c->impl->topology(), out); });
}

}  // extern "C"
