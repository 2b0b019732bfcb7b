/* TcpStore: the rendezvous key-value store (store.h). Requests: 'S' key value → 'k'; 'G' key → value once set. */
#include "store.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace cx {

namespace {

using Clock = std::chrono::steady_clock;

/* Sends or receives exactly n bytes; false when the peer is gone. Receives wait at most until `deadline`. */
bool send_all(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w, n -= (size_t)w;
  }
  return true;
}

enum class Recv { ok, closed, timed_out };

Recv recv_all(int fd, void* data, size_t n, Clock::time_point deadline) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return Recv::timed_out;
    pollfd pfd{fd, POLLIN, 0};
    const int ready = ::poll(&pfd, 1, (int)std::min<long long>(left, 1000));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return Recv::closed;
    if (ready == 0) continue;
    const ssize_t r = ::recv(fd, p, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return Recv::closed;
    p += r, n -= (size_t)r;
  }
  return Recv::ok;
}

bool send_string(int fd, const char* data, size_t n) {
  const uint32_t len = htonl((uint32_t)n);
  return send_all(fd, &len, 4) && send_all(fd, data, n);
}

Recv recv_string(int fd, std::string& out, Clock::time_point deadline) {
  uint32_t len = 0;
  Recv r = recv_all(fd, &len, 4, deadline);
  if (r != Recv::ok) return r;
  out.resize(ntohl(len));
  return out.empty() ? Recv::ok : recv_all(fd, &out[0], out.size(), deadline);
}

bool is_loopback(const std::string& host) { return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1"; }

}  // namespace

struct TcpStore::Server {
  int listen_fd = -1;
  std::atomic<bool> stopping{false};
  std::mutex mu;
  std::condition_variable changed;
  std::map<std::string, std::string> values;
  std::vector<int> clients;
  std::vector<std::thread> threads;
  std::thread acceptor;

  void serve_client(int fd) {
    const auto forever = Clock::now() + std::chrono::hours(24 * 365);
    for (;;) {
      char op = 0;
      std::string key, value;
      if (recv_all(fd, &op, 1, forever) != Recv::ok || recv_string(fd, key, forever) != Recv::ok) return;
      if (op == 'S') {
        if (recv_string(fd, value, forever) != Recv::ok) return;
        {
          std::lock_guard<std::mutex> lock(mu);
          values[key] = value;
        }
        changed.notify_all();
        if (!send_all(fd, "k", 1)) return;
      } else if (op == 'G') {
        std::unique_lock<std::mutex> lock(mu);
        changed.wait(lock, [&] { return stopping.load() || values.count(key) > 0; });
        if (stopping) return;
        value = values[key];
        lock.unlock();
        if (!send_string(fd, value.data(), value.size())) return;
      } else {
        return;
      }
    }
  }

  ~Server() {
    stopping = true;
    changed.notify_all();
    if (listen_fd >= 0) ::shutdown(listen_fd, SHUT_RDWR), ::close(listen_fd);
    if (acceptor.joinable()) acceptor.join();
    {
      std::lock_guard<std::mutex> lock(mu);
      for (int fd : clients) ::shutdown(fd, SHUT_RDWR);
    }
    changed.notify_all();
    for (auto& t : threads) t.join();
    for (int fd : clients) ::close(fd);
  }
};

TcpStore::TcpStore(const std::string& host, int port, bool serve, std::chrono::milliseconds timeout) : timeout_(timeout) {
  where_ = host + ":" + std::to_string(port);
  if (port <= 0 || port > 65535) throw std::runtime_error("rendezvous port " + std::to_string(port) + " is not a TCP port (MASTER_PORT)");
  if (serve) {
    server_.reset(new Server());
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) throw std::runtime_error(std::string("rendezvous: cannot open a socket: ") + std::strerror(errno));
    server_->listen_fd = fd;
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = is_loopback(host) ? htonl(INADDR_LOOPBACK) : htonl(INADDR_ANY);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 1024) != 0)
      throw std::runtime_error("rendezvous: cannot listen on port " + std::to_string(port) + " (" + std::strerror(errno) +
                               "); is another run using MASTER_PORT " + std::to_string(port) + "?");
    Server* s = server_.get();
    s->acceptor = std::thread([s] {
      for (;;) {
        const int c = ::accept(s->listen_fd, nullptr, nullptr);
        if (c < 0) {
          if (errno == EINTR) continue;
          return;
        }
        std::lock_guard<std::mutex> lock(s->mu);
        if (s->stopping) {
          ::close(c);
          return;
        }
        s->clients.push_back(c);
        s->threads.emplace_back([s, c] { s->serve_client(c); });
      }
    });
  }
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  const int gai = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  if (gai != 0) throw std::runtime_error("rendezvous: cannot resolve MASTER_ADDR " + host + ": " + gai_strerror(gai));
  const auto deadline = Clock::now() + timeout;
  std::string last = "no address";
  while (fd_ < 0) {
    for (addrinfo* a = res; a && fd_ < 0; a = a->ai_next) {
      const int fd = ::socket(a->ai_family, a->ai_socktype, a->ai_protocol);
      if (fd < 0) continue;
      if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
        fd_ = fd;
      } else {
        last = std::strerror(errno);
        ::close(fd);
      }
    }
    if (fd_ >= 0) break;
    if (Clock::now() >= deadline) {
      ::freeaddrinfo(res);
      throw std::runtime_error("rendezvous: cannot reach rank 0 at " + where_ + " within " + std::to_string(timeout.count() / 1000) +
                               " s (" + last + "); is rank 0 running, and are MASTER_ADDR and MASTER_PORT the same on every rank?");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ::freeaddrinfo(res);
  const int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

TcpStore::~TcpStore() {
  if (fd_ >= 0) ::close(fd_);
  server_.reset();
}

void TcpStore::set(const std::string& key, const std::vector<char>& value) {
  std::lock_guard<std::mutex> lock(io_);
  char ack = 0;
  if (!send_all(fd_, "S", 1) || !send_string(fd_, key.data(), key.size()) || !send_string(fd_, value.data(), value.size()) ||
      recv_all(fd_, &ack, 1, Clock::now() + timeout_) != Recv::ok)
    throw std::runtime_error("rendezvous: lost the connection to rank 0 at " + where_ + " while publishing " + key);
}

std::vector<char> TcpStore::get(const std::string& key) {
  std::lock_guard<std::mutex> lock(io_);
  std::string value;
  if (!send_all(fd_, "G", 1) || !send_string(fd_, key.data(), key.size()))
    throw std::runtime_error("rendezvous: lost the connection to rank 0 at " + where_ + " while waiting for " + key);
  const Recv r = recv_string(fd_, value, Clock::now() + timeout_);
  if (r == Recv::timed_out)
    throw std::runtime_error("rendezvous: " + key + " was not published within " + std::to_string(timeout_.count() / 1000) +
                             " s; a rank did not start or died (every rank must start with the same WORLD_SIZE)");
  if (r != Recv::ok) throw std::runtime_error("rendezvous: rank 0 at " + where_ + " went away while waiting for " + key);
  return std::vector<char>(value.begin(), value.end());
}

void TcpStore::wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) {
  const auto saved = timeout_;
  timeout_ = timeout;
  try {
    for (const std::string& k : keys) get(k);
  } catch (...) {
    timeout_ = saved;
    throw;
  }
  timeout_ = saved;
}

}  // namespace cx
