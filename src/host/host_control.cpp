#include "host/host_control.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace constmig::host {
namespace {

constexpr size_t kMaxRequest = 64 << 10;

std::string err_text() {
  return std::strerror(errno);
}

bool write_all(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    ssize_t n = ::send(fd, s.data() + done, s.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

Result<std::pair<std::string, std::string>> split_addr(const std::string& addr) {
  auto colon = addr.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == addr.size()) {
    return make_error(Errc::kInvalidArgument, "'" + addr + "' is not HOST:PORT");
  }
  std::string host = addr.substr(0, colon), port = addr.substr(colon + 1);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  return std::make_pair(host, port);
}

}  // namespace

ControlServer::~ControlServer() {
  stop();
}

Status ControlServer::start(const std::string& path, Handler handler) {
  sockaddr_un a{};
  if (path.empty() || path.size() >= sizeof a.sun_path) {
    return make_error(Errc::kInvalidArgument, "control socket path must be 1.." +
                                                  std::to_string(sizeof a.sun_path - 1) + " bytes");
  }
  handler_ = std::move(handler);
  path_ = path;
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  // A stale socket from a dead process is replaced; a live one is refused.
  int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (::connect(probe, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    ::close(probe);
    return make_error(Errc::kState,
                      "control socket " + path + " is in use by another constmig process");
  }
  ::close(probe);
  ::unlink(path.c_str());
  if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 8) != 0) {
    return make_error(Errc::kIo, "cannot create control socket " + path + ": " + err_text());
  }
  if (::pipe2(wake_, O_CLOEXEC) != 0) return make_error(Errc::kIo, "pipe: " + err_text());
  thread_ = std::thread([this] { loop(); });
  return ok_status();
}

void ControlServer::stop() {
  if (wake_[1] >= 0) {
    char c = 1;
    (void)!::write(wake_[1], &c, 1);
  }
  if (thread_.joinable()) thread_.join();
  {
    std::lock_guard lk(conn_mu_);
    for (auto& t : conns_) {
      if (t.joinable()) t.join();
    }
    conns_.clear();
  }
  for (int* f : {&fd_, &wake_[0], &wake_[1]}) {
    if (*f >= 0) ::close(*f);
    *f = -1;
  }
  if (!path_.empty()) ::unlink(path_.c_str());
  path_.clear();
}

void ControlServer::loop() {
  for (;;) {
    pollfd p[2] = {{fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (p[1].revents) return;
    if (!(p[0].revents & POLLIN)) continue;
    int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    // One thread per connection: `status` answers while a `migrate` runs.
    std::lock_guard lk(conn_mu_);
    conns_.emplace_back([this, c] { serve_one(c); });
  }
}

void ControlServer::serve_one(int c) {
  {
    std::string req;
    char buf[4096];
    while (req.find('\n') == std::string::npos && req.size() < kMaxRequest) {
      pollfd cp{c, POLLIN, 0};
      if (::poll(&cp, 1, 5000) <= 0) break;
      ssize_t n = ::read(c, buf, sizeof buf);
      if (n <= 0) break;
      req.append(buf, static_cast<size_t>(n));
    }
    auto emit = [c](const nlohmann::json& j) {
      (void)write_all(c, j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
    };
    auto j = nlohmann::json::parse(req.substr(0, req.find('\n')), nullptr, false);
    if (!j.is_object() || !j.contains("cmd")) {
      emit({{"event", "result"},
            {"ok", false},
            {"error", "malformed control request (expected one JSON object line with \"cmd\")"}});
    } else {
      handler_(j, emit);
    }
    ::close(c);
  }
}

Result<nlohmann::json> control_request(const std::string& path, const nlohmann::json& request,
                                       const std::function<void(const nlohmann::json&)>& on_line) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path)
    return make_error(Errc::kInvalidArgument, "control path too long");
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    int e = errno;
    ::close(fd);
    return make_error(Errc::kNotFound, "cannot reach the constmig process at control socket " +
                                           path + ": " + std::strerror(e) +
                                           " (is `constmig run --control " + path + "` running?)");
  }
  if (!write_all(fd,
                 request.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n")) {
    ::close(fd);
    return make_error(Errc::kIo, "writing to control socket: " + err_text());
  }
  std::string buf;
  char tmp[8192];
  for (;;) {
    size_t nl;
    while ((nl = buf.find('\n')) != std::string::npos) {
      auto j = nlohmann::json::parse(buf.substr(0, nl), nullptr, false);
      buf.erase(0, nl + 1);
      if (!j.is_object()) continue;
      if (j.value("event", "") == "result") {
        ::close(fd);
        return j;
      }
      if (on_line) on_line(j);
    }
    ssize_t n = ::read(fd, tmp, sizeof tmp);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    buf.append(tmp, static_cast<size_t>(n));
  }
  ::close(fd);
  return make_error(Errc::kIo,
                    "the constmig process closed the control connection without a result");
}

Result<int> tcp_connect(const std::string& addr, int timeout_ms) {
  CM_ASSIGN_OR_RETURN(auto hp, split_addr(addr));
  addrinfo hints{}, *res = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  int rc = ::getaddrinfo(hp.first.c_str(), hp.second.c_str(), &hints, &res);
  if (rc != 0)
    return make_error(Errc::kInvalidArgument, "cannot resolve '" + addr + "': " + gai_strerror(rc));
  std::string last = "no address";
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) continue;
    int r = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (r != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, timeout_ms) == 1) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
        r = err == 0 ? 0 : -1;
        errno = err ? err : ETIMEDOUT;
      } else {
        errno = ETIMEDOUT;
      }
    }
    if (r == 0) {
      int flags = fcntl(fd, F_GETFL);
      fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      ::freeaddrinfo(res);
      return fd;
    }
    last = err_text();
    ::close(fd);
  }
  ::freeaddrinfo(res);
  return make_error(Errc::kIo, "cannot connect to " + addr + ": " + last +
                                   " (is `constmig receive --listen " + addr + "` running there?)");
}

Result<int> tcp_listen(const std::string& addr) {
  CM_ASSIGN_OR_RETURN(auto hp, split_addr(addr));
  addrinfo hints{}, *res = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  int rc = ::getaddrinfo(hp.first.c_str(), hp.second.c_str(), &hints, &res);
  if (rc != 0)
    return make_error(Errc::kInvalidArgument, "cannot resolve '" + addr + "': " + gai_strerror(rc));
  int fd = ::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, res->ai_addr, res->ai_addrlen) != 0 || ::listen(fd, 4) != 0) {
    std::string e = err_text();
    ::freeaddrinfo(res);
    ::close(fd);
    return make_error(Errc::kIo, "cannot listen on " + addr + ": " + e);
  }
  ::freeaddrinfo(res);
  return fd;
}

}  // namespace constmig::host
