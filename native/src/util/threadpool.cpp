#include "threadpool.h"

#include <utility>

#if defined(__x86_64__)
#include <immintrin.h>
#define CX_PAUSE() _mm_pause()
#else
#define CX_PAUSE() std::this_thread::yield()
#endif

namespace cx {

namespace {
constexpr int kSpins = 4000;  // about 20-50 microseconds
}

ThreadPool::ThreadPool(int threads) {
  if (threads < 1) threads = 1;
  for (int i = 1; i < threads; i++) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_.store(true);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::run_tasks(int thread) {
  const auto& job = *job_;
  for (int64_t t = next_.fetch_add(1); t < tasks_; t = next_.fetch_add(1)) {
    try {
      job(t, thread);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex_);
      if (!error_) error_ = std::current_exception();
    }
  }
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    for (int spin = 0; spin < kSpins && generation_.load(std::memory_order_acquire) == seen && !stop_.load(); spin++) CX_PAUSE();
    if (generation_.load(std::memory_order_acquire) == seen) {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stop_.load() || generation_.load() != seen; });
    }
    if (stop_.load()) return;
    seen = generation_.load(std::memory_order_acquire);
    run_tasks(index);
    if (active_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mutex_);
      done_.notify_all();
    }
  }
}

void ThreadPool::parallel_for(int64_t tasks, const std::function<void(int64_t, int)>& fn) {
  if (tasks <= 0) return;
  if (workers_.empty() || tasks == 1) {
    for (int64_t t = 0; t < tasks; t++) fn(t, 0);
    return;
  }
  error_ = nullptr;
  job_ = &fn;
  tasks_ = tasks;
  next_.store(0);
  active_.store((int)workers_.size());
  {
    std::lock_guard<std::mutex> lock(mutex_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  run_tasks(0);
  for (int spin = 0; spin < kSpins && active_.load(std::memory_order_acquire) != 0; spin++) CX_PAUSE();
  if (active_.load(std::memory_order_acquire) != 0) {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return active_.load() == 0; });
  }
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
}

}  // namespace cx
