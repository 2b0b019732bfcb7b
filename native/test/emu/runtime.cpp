/* The CPU emulation's scheduler and the slice of the CUDA runtime API the backend calls (see cuda_emu.h).
 * Fibers start once, through ucontext, and then live for the whole process, running one block's thread after
 * another; they switch with _setjmp/_longjmp (no signal-mask system call per switch). */
#undef _FORTIFY_SOURCE  // its longjmp check rejects the jump between fiber stacks
#include <setjmp.h>
#include <ucontext.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <unordered_map>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_emu.h"

namespace cx_emu {
uint3 current_thread{}, current_block{};
dim3 current_block_dim, current_grid_dim;
int current_lane = 0;

namespace {

enum class State { Ready, AtBlockBarrier, AtWarpBarrier, Done };

struct Fiber {
  ucontext_t start;
  jmp_buf env;
  bool started = false;
  State state = State::Ready;
  uint3 tid{};
  int linear = 0;
  std::vector<char> stack;
};

constexpr size_t kStackBytes = 256u << 10;
constexpr int kMaxWarps = 32;

struct Machine {
  std::vector<Fiber> fibers;
  jmp_buf scheduler;
  int current = -1;
  uint3 bid{};
  dim3 grid, block;
  const std::function<void()>* body = nullptr;
  std::vector<unsigned char> shared;
  float shuffle[kMaxWarps][32];
  uint32_t mma_a[kMaxWarps][32][4], mma_b[kMaxWarps][32][2];
  std::string error;
} m;

void yield(State s) {
  Fiber& f = m.fibers[(size_t)m.current];
  f.state = s;
  if (_setjmp(f.env) == 0) _longjmp(m.scheduler, 1);
}

/* A fiber runs the current kernel body as thread `current` of the current block, again for every block. */
void fiber_main() {
  for (;;) {
    try {
      (*m.body)();
    } catch (const std::exception& e) {
      if (m.error.empty()) m.error = e.what();
    }
    yield(State::Done);
  }
}

void resume(int i) {
  Fiber& f = m.fibers[(size_t)i];
  m.current = i;
  current_thread = f.tid;
  current_lane = f.linear % 32;
  if (_setjmp(m.scheduler) == 0) {
    if (!f.started) {
      f.started = true;
      setcontext(&f.start);
    }
    _longjmp(f.env, 1);
  }
  m.current = -1;
}

/* Runs one block to completion, releasing barriers when every live thread (or warp lane) has reached them. */
void run_block(int n) {
  const int warps = (n + 31) / 32;
  for (;;) {
    bool progress = false;
    for (int i = 0; i < n; i++)
      if (m.fibers[(size_t)i].state == State::Ready) {
        resume(i);
        progress = true;
      }
    int live = 0, at_block = 0;
    for (int i = 0; i < n; i++) {
      const State s = m.fibers[(size_t)i].state;
      live += s != State::Done;
      at_block += s == State::AtBlockBarrier;
    }
    if (live == 0) return;
    if (at_block == live) {
      for (int i = 0; i < n; i++)
        if (m.fibers[(size_t)i].state == State::AtBlockBarrier) m.fibers[(size_t)i].state = State::Ready;
      continue;
    }
    for (int w = 0; w < warps; w++) {
      int lanes_live = 0, lanes_waiting = 0;
      for (int i = w * 32; i < std::min(n, w * 32 + 32); i++) {
        lanes_live += m.fibers[(size_t)i].state != State::Done;
        lanes_waiting += m.fibers[(size_t)i].state == State::AtWarpBarrier;
      }
      if (lanes_waiting > 0 && lanes_waiting == lanes_live) {
        for (int i = w * 32; i < std::min(n, w * 32 + 32); i++)
          if (m.fibers[(size_t)i].state == State::AtWarpBarrier) m.fibers[(size_t)i].state = State::Ready;
        progress = true;
      }
    }
    if (!progress) {
      char buf[200];
      std::snprintf(buf, sizeof buf, "barrier never completes in block (%u,%u,%u): %d threads live, %d at __syncthreads", m.bid.x, m.bid.y,
                    m.bid.z, live, at_block);
      throw std::runtime_error(m.error.empty() ? std::string(buf) : "emulated kernel failed: " + m.error + " (then: " + buf + ")");
    }
  }
}

}  // namespace

void sync_threads() { yield(State::AtBlockBarrier); }
void sync_warp() { yield(State::AtWarpBarrier); }
float shfl_xor(float v, int lane_mask) {
  const int linear = m.fibers[(size_t)m.current].linear, warp = linear / 32, l = linear % 32;
  m.shuffle[warp][l] = v;
  yield(State::AtWarpBarrier);
  const float r = m.shuffle[warp][l ^ lane_mask];
  yield(State::AtWarpBarrier);
  return r;
}
void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  const int linear = m.fibers[(size_t)m.current].linear, warp = linear / 32, l = linear % 32;
  std::copy(a, a + 4, m.mma_a[warp][l]);
  std::copy(b, b + 2, m.mma_b[warp][l]);
  yield(State::AtWarpBarrier);
  // Element (row, k) of A sits in lane (row % 8) * 4 + (k % 8) / 2, register (k >= 8) * 2 + (row >= 8), half k % 2;
  // element (k, n) of B in lane n * 4 + (k % 8) / 2, register k >= 8, half k % 2.
  auto half = [](uint32_t u, int hi) { return __uint_as_float((hi ? u >> 16 : u & 0xffffu) << 16); };
  const int g = l / 4, t = l % 4;
  for (int e = 0; e < 4; e++) {
    const int row = g + (e >= 2 ? 8 : 0), col = 2 * t + (e & 1);
    float s = d[e];
    for (int k = 0; k < 16; k++) {
      const float x = half(m.mma_a[warp][(row % 8) * 4 + (k % 8) / 2][(k >= 8) * 2 + (row >= 8)], k % 2);
      const float y = half(m.mma_b[warp][col * 4 + (k % 8) / 2][k >= 8], k % 2);
      s += x * y;
    }
    d[e] = s;
  }
  yield(State::AtWarpBarrier);  // nobody posts the next product's registers before every lane has read these
}
/* 128-byte aligned, as the kernels declare their dynamic shared memory. */
unsigned char* dynamic_shared() {
  const uintptr_t base = reinterpret_cast<uintptr_t>(m.shared.data());
  return m.shared.data() + ((128 - base % 128) % 128);
}
void fail(const char* what) { throw std::runtime_error(what); }

void launch(dim3 grid, dim3 block, size_t shared_bytes, const std::function<void()>& body) {
  if (m.current >= 0) throw std::runtime_error("emulation: a kernel launched another kernel");
  const int n = (int)(block.x * block.y * block.z);
  // The limits of the GPUs the backend targets (sm_80 / sm_90): a launch past them fails there.
  if (n <= 0 || n > kMaxWarps * 32) throw std::runtime_error("emulation: bad block size " + std::to_string(n));
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535)
    throw std::runtime_error("emulation: grid " + std::to_string(grid.x) + "x" + std::to_string(grid.y) + "x" + std::to_string(grid.z) +
                             " is outside CUDA's limits");
  if (shared_bytes > 163u * 1024) throw std::runtime_error("emulation: " + std::to_string(shared_bytes) + " bytes of shared memory exceed an A100's 163 KB");
  if (m.fibers.size() < (size_t)n) {
    // Never reallocated (a started fiber's context points into itself): room for the largest block up front.
    m.fibers.reserve((size_t)kMaxWarps * 32);
    const size_t had = m.fibers.size();
    m.fibers.resize((size_t)n);
    for (size_t i = had; i < (size_t)n; i++) {
      Fiber& f = m.fibers[i];
      f.stack.resize(kStackBytes);
      getcontext(&f.start);
      f.start.uc_stack.ss_sp = f.stack.data();
      f.start.uc_stack.ss_size = f.stack.size();
      f.start.uc_link = nullptr;
      makecontext(&f.start, fiber_main, 0);
    }
  }
  m.grid = current_grid_dim = grid;
  m.block = current_block_dim = block;
  m.body = &body;
  m.error.clear();
  for (unsigned bz = 0; bz < grid.z; bz++)
    for (unsigned by = 0; by < grid.y; by++)
      for (unsigned bx = 0; bx < grid.x; bx++) {
        m.bid = current_block = uint3{bx, by, bz};
        m.shared.assign(shared_bytes + 128, 0xff);  // NaN bytes: reading shared memory nobody wrote shows up
        for (int i = 0; i < n; i++) {
          Fiber& f = m.fibers[(size_t)i];
          f.state = State::Ready;
          f.linear = i;
          f.tid = uint3{(unsigned)(i % (int)block.x), (unsigned)((i / (int)block.x) % (int)block.y), (unsigned)(i / (int)(block.x * block.y))};
        }
        run_block(n);
        if (!m.error.empty()) throw std::runtime_error("emulated kernel failed: " + m.error);
      }
}

}  // namespace cx_emu

/* The CUDA runtime calls the backend makes, over host memory. */
extern "C" {
// The emulated device has 8 GiB: allocations past it fail as on a GPU, so out-of-memory paths run here too.
// Untouched host pages cost nothing, so large allocations are cheap.
static std::mutex allocations_lock;
static std::unordered_map<void*, size_t> allocations;
static size_t allocated = 0;
static size_t device_bytes() { return (size_t)8 << 30; }
cudaError_t cudaMalloc(void** p, size_t bytes) {
  const size_t rounded = (bytes + 255) / 256 * 256;
  std::lock_guard<std::mutex> hold(allocations_lock);
  *p = allocated + rounded <= device_bytes() ? std::aligned_alloc(256, rounded) : nullptr;
  if (!*p) return cudaErrorMemoryAllocation;
  allocations[*p] = rounded;
  allocated += rounded;
  return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
  std::lock_guard<std::mutex> hold(allocations_lock);
  auto found = allocations.find(p);
  if (found != allocations.end()) {
    allocated -= found->second;
    allocations.erase(found);
  }
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  std::memcpy(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaGetLastError(void) { return cudaSuccess; }
cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
const char* cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "emulated CUDA error"; }
cudaError_t cudaFuncSetAttribute(const void*, cudaFuncAttribute, int) { return cudaSuccess; }
cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : cudaErrorInvalidDevice; }
const char* cudaGetErrorName(cudaError_t e) { return e == cudaSuccess ? "cudaSuccess" : "cudaErrorEmulated"; }
// Streams and events for the NCCL communicator: work runs when it is queued here, so every event has happened
// by the time it is recorded, and a stream never has anything left to wait for.
static int emulated_handle;
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int) {
  *stream = reinterpret_cast<cudaStream_t>(&emulated_handle);
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaStreamQuery(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int) {
  *event = reinterpret_cast<cudaEvent_t>(&emulated_handle);
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t) { return cudaSuccess; }
cudaError_t cudaEventQuery(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned int) { return cudaSuccess; }
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind, cudaStream_t) {
  std::memcpy(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMallocHost(void** p, size_t bytes) {
  *p = std::malloc(std::max<size_t>(bytes, 1));
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFreeHost(void* p) {
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  std::lock_guard<std::mutex> hold(allocations_lock);
  *total_bytes = device_bytes();
  *free_bytes = *total_bytes - allocated;
  return cudaSuccess;
}
}
