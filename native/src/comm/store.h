#pragma once
/* The rendezvous of a group of ranks: a key-value store served by rank 0 on MASTER_ADDR:MASTER_PORT over TCP,
 * as torchrun's c10d store is. Ranks publish what the collective library needs to connect (gloo's addresses,
 * NCCL's unique id) and wait for each other's keys. It carries a few kilobytes at start-up, never tensors. */
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace cx {

class TcpStore {
 public:
  /* Rank 0 listens on port (bound to host when it is a loopback address, else to every interface); every rank,
   * rank 0 included, connects to host:port, retrying until timeout. Throws std::runtime_error naming the
   * address on failure. */
  TcpStore(const std::string& host, int port, bool serve, std::chrono::milliseconds timeout);
  ~TcpStore();
  TcpStore(const TcpStore&) = delete;
  TcpStore& operator=(const TcpStore&) = delete;

  void set(const std::string& key, const std::vector<char>& value);
  /* Blocks until the key is set or the timeout passes (then throws, naming the key). */
  std::vector<char> get(const std::string& key);
  void wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout);
  std::chrono::milliseconds timeout() const { return timeout_; }

 private:
  struct Server;
  std::unique_ptr<Server> server_;
  int fd_ = -1;
  std::mutex io_;  // one request at a time on this rank's connection
  std::chrono::milliseconds timeout_;
  std::string where_;
};

}  // namespace cx
