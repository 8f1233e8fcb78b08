// Test helpers for the kvstore: a blocking TCP client that reads whole RESP replies.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kvtest {

// Length of the complete RESP reply at the start of buf, or 0 if it is incomplete.
// Returns SIZE_MAX for something that is not RESP.
inline size_t reply_length(std::string_view buf, size_t pos = 0) {
  if (pos >= buf.size()) return 0;
  size_t nl = buf.find("\r\n", pos);
  if (nl == std::string_view::npos) return 0;
  char t = buf[pos];
  std::string_view num = buf.substr(pos + 1, nl - pos - 1);
  size_t after = nl + 2;
  switch (t) {
    case '+':
    case '-':
    case ':':
      return after - pos;
    case '$': {
      long long n = std::stoll(std::string(num));
      if (n < 0) return after - pos;
      size_t end = after + static_cast<size_t>(n) + 2;
      if (buf.size() < end) return 0;
      return end - pos;
    }
    case '*': {
      long long n = std::stoll(std::string(num));
      size_t p = after;
      for (long long i = 0; i < n; ++i) {
        size_t l = reply_length(buf, p);
        if (l == 0 || l == SIZE_MAX) return l;
        p += l;
      }
      return p - pos;
    }
    default:
      return SIZE_MAX;
  }
}

class Client {
 public:
  explicit Client(uint16_t port, const char* ip = "127.0.0.1") {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, ip, &a.sin_addr);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      close(fd_);
      fd_ = -1;
      return;
    }
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  ~Client() {
    if (fd_ >= 0) close(fd_);
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool ok() const { return fd_ >= 0; }
  int fd() const { return fd_; }

  bool send_all(std::string_view s) {
    while (!s.empty()) {
      ssize_t n = ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      s.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }
  void shutdown_write() { ::shutdown(fd_, SHUT_WR); }

  // Reads until one complete reply is buffered; returns it (raw RESP) or nullopt on
  // EOF/timeout/garbage.
  std::optional<std::string> read_reply(int timeout_ms = 10000) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (true) {
      size_t l = reply_length(buf_);
      if (l == SIZE_MAX) return std::nullopt;
      if (l > 0) {
        std::string r = buf_.substr(0, l);
        buf_.erase(0, l);
        return r;
      }
      if (!fill(deadline)) return std::nullopt;
    }
  }
  // Sends an inline-free multibulk command and reads its reply.
  std::string cmd(const std::vector<std::string>& argv) {
    std::string req = "*" + std::to_string(argv.size()) + "\r\n";
    for (const auto& a : argv) req += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
    if (!send_all(req)) return "<send failed>";
    auto r = read_reply();
    return r ? *r : "<no reply>";
  }
  // True if the server closes the connection within the timeout (after any pending bytes,
  // which are appended to *rest).
  bool wait_eof(int timeout_ms = 5000, std::string* rest = nullptr) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (true) {
      if (!fill(deadline)) break;
    }
    if (rest != nullptr) *rest = buf_;
    return eof_;
  }
  const std::string& buffered() const { return buf_; }

 private:
  bool fill(std::chrono::steady_clock::time_point deadline) {
    if (eof_) return false;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left)) <= 0) return false;
    char tmp[65536];
    ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) {
      eof_ = true;
      return false;
    }
    buf_.append(tmp, static_cast<size_t>(n));
    return true;
  }
  int fd_ = -1;
  bool eof_ = false;
  std::string buf_;
};

}  // namespace kvtest
