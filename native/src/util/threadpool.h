#pragma once
#include <atomic>
#include <condition_variable>
#include <exception>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace cx {

/* A fixed pool. parallel_for hands out task indices; each task's result must not depend on which
 * thread runs it (only thread-local scratch), so results are the same for any thread count.
 * Workers spin briefly before sleeping: a training step issues hundreds of short parallel loops.
 * An exception in a task (out of memory, say) never escapes a worker thread: parallel_for rethrows it. */
class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  int size() const { return (int)workers_.size() + 1; }
  void parallel_for(int64_t tasks, const std::function<void(int64_t task, int thread)>& fn);

 private:
  void worker_loop(int index);
  void run_tasks(int thread);
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(int64_t, int)>* job_ = nullptr;
  int64_t tasks_ = 0;
  std::atomic<int64_t> next_{0};
  std::atomic<int> active_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stop_{false};
  std::mutex error_mutex_;
  std::exception_ptr error_;  // the first exception a task threw; rethrown by parallel_for
};

}  // namespace cx
