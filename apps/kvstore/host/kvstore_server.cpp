// UNTRUSTED. epoll TCP front end of the kvstore; see kvstore_server.h for the design.
#include "kvstore/host/kvstore_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "kvstore/kvstore_protocol.h"

namespace constmig::kvstore {
namespace {

constexpr size_t kReadChunk = 64 * 1024;
constexpr int kReadsPerWakeup = 16;  // fairness between connections of one loop
constexpr size_t kShrinkOutputAbove = 1u << 20;

char kWakeTag;
char kListenTag;

std::string errno_text(int e) {
  return std::strerror(e);
}

}  // namespace

struct KvServer::Conn {
  explicit Conn(int f, const host::RespLimits& limits) : fd(f), parser(limits) {}
  int fd;
  host::RespParser parser;
  BatchBuilder batch;  // parsed commands not yet executed
  std::string out;     // replies not yet written: out[out_pos, size)
  size_t out_pos = 0;
  bool proto_error = false;  // the parser failed: answer the commands before it, then the error
  bool close_after_flush = false;
  bool read_eof = false;
  uint32_t interest = 0;  // events registered with epoll

  size_t pending_out() const { return out.size() - out_pos; }
};

struct KvServer::Loop {
  int index = 0;
  int epfd = -1;
  int wake_fd = -1;
  std::mutex mu;
  std::vector<int> incoming;  // accepted fds handed over by loop 0
  std::unordered_map<int, std::unique_ptr<Conn>> conns;
  std::vector<char> rbuf = std::vector<char>(kReadChunk);
  std::vector<std::string> argv;
  int spare_fd = -1;  // loop 0: released on EMFILE so that accept can make progress
};

KvServer::KvServer(ServerOptions options, BatchExecutor& executor)
    : options_(std::move(options)), executor_(executor) {}

KvServer::~KvServer() {
  stop();
}

ServerStats KvServer::stats() const {
  ServerStats s;
  s.connections_accepted = accepted_.load();
  s.connections_current = current_.load();
  s.connections_rejected = rejected_.load();
  s.commands = commands_.load();
  s.batches = batches_.load();
  s.protocol_errors = protocol_errors_.load();
  s.exec_errors = exec_errors_.load();
  s.bytes_in = bytes_in_.load();
  s.bytes_out = bytes_out_.load();
  return s;
}

Status KvServer::start() {
  if (running_) return make_error(Errc::kState, "kvstore server already started");
  if (options_.io_threads < 1 || options_.io_threads > 256) {
    return make_error(Errc::kInvalidArgument, "--threads must be between 1 and 256, got " +
                                                  std::to_string(options_.io_threads));
  }
  const BatchLimits batch_limits;  // what the enclave accepts per batch
  if (options_.limits.max_bulk_len > batch_limits.max_arg_len ||
      options_.limits.max_args > batch_limits.max_args) {
    return make_error(Errc::kInvalidArgument,
                      "RESP limits exceed what a kv batch may carry (arguments up to " +
                          std::to_string(batch_limits.max_arg_len >> 20) + " MiB, " +
                          std::to_string(batch_limits.max_args) + " per command)");
  }
  if (options_.max_batch_commands == 0 || options_.max_batch_commands > batch_limits.max_commands) {
    return make_error(Errc::kInvalidArgument, "max_batch_commands must be between 1 and " +
                                                  std::to_string(batch_limits.max_commands));
  }
  sockaddr_storage ss{};
  socklen_t sslen = 0;
  std::string shown;
  {
    auto* a4 = reinterpret_cast<sockaddr_in*>(&ss);
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&ss);
    if (inet_pton(AF_INET, options_.bind.c_str(), &a4->sin_addr) == 1) {
      a4->sin_family = AF_INET;
      a4->sin_port = htons(options_.port);
      sslen = sizeof(sockaddr_in);
      shown = options_.bind + ":" + std::to_string(options_.port);
    } else if (inet_pton(AF_INET6, options_.bind.c_str(), &a6->sin6_addr) == 1) {
      a6->sin6_family = AF_INET6;
      a6->sin6_port = htons(options_.port);
      sslen = sizeof(sockaddr_in6);
      shown = "[" + options_.bind + "]:" + std::to_string(options_.port);
    } else {
      return make_error(Errc::kInvalidArgument,
                        "invalid --bind address '" + options_.bind +
                            "': expected an IPv4 or IPv6 address literal such as 127.0.0.1");
    }
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return make_error(Errc::kIo, "cannot create a socket: " + errno_text(errno));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  // restart despite TIME_WAIT
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), sslen) != 0 || listen(fd, 511) != 0) {
    int e = errno;
    close(fd);
    std::string msg = "cannot listen on " + shown + ": " + errno_text(e);
    if (e == EADDRINUSE) msg += " \u2014 choose another --port";
    if (e == EACCES) msg += " \u2014 ports below 1024 need privileges; choose another --port";
    if (e == EADDRNOTAVAIL) msg += " \u2014 that address is not on this machine; check --bind";
    return make_error(e == EACCES ? Errc::kPermission : Errc::kIo, msg);
  }
  sockaddr_storage got{};
  socklen_t gotlen = sizeof got;
  getsockname(fd, reinterpret_cast<sockaddr*>(&got), &gotlen);
  port_ = ntohs(got.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&got)->sin6_port
                                          : reinterpret_cast<sockaddr_in*>(&got)->sin_port);
  listen_fd_ = fd;

  auto fail = [&](const std::string& what) -> Status {
    int e = errno;
    for (auto& l : loops_) {
      if (l->epfd >= 0) close(l->epfd);
      if (l->wake_fd >= 0) close(l->wake_fd);
      if (l->spare_fd >= 0) close(l->spare_fd);
    }
    loops_.clear();
    close(listen_fd_);
    listen_fd_ = -1;
    return make_error(Errc::kIo, what + ": " + errno_text(e));
  };
  for (int i = 0; i < options_.io_threads; ++i) {
    auto l = std::make_unique<Loop>();
    l->index = i;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    loops_.push_back(std::move(l));
    Loop& lp = *loops_.back();
    if (lp.epfd < 0 || lp.wake_fd < 0) return fail("cannot create the event loop");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = &kWakeTag;
    if (epoll_ctl(lp.epfd, EPOLL_CTL_ADD, lp.wake_fd, &ev) != 0) {
      return fail("cannot create the event loop");
    }
    if (i == 0) {
      ev.data.ptr = &kListenTag;
      if (epoll_ctl(lp.epfd, EPOLL_CTL_ADD, listen_fd_, &ev) != 0) {
        return fail("cannot watch the listening socket");
      }
      lp.spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
  }
  stopping_ = false;
  running_ = true;
  for (auto& l : loops_) {
    Loop* lp = l.get();
    threads_.emplace_back([this, lp] { run_loop(*lp); });
  }
  return ok_status();
}

void KvServer::stop() {
  if (!running_) return;
  stopping_ = true;
  for (auto& l : loops_) {
    uint64_t one = 1;
    ssize_t w = write(l->wake_fd, &one, sizeof one);
    (void)w;
  }
  for (auto& t : threads_) t.join();
  threads_.clear();
  for (auto& l : loops_) {
    for (int fd : l->incoming) {
      close(fd);
      current_.fetch_sub(1);
    }
    close(l->epfd);
    close(l->wake_fd);
    if (l->spare_fd >= 0) close(l->spare_fd);
  }
  loops_.clear();
  close(listen_fd_);
  listen_fd_ = -1;
  running_ = false;
}

void KvServer::run_loop(Loop& loop) {
  constexpr int kMaxEvents = 256;
  epoll_event evs[kMaxEvents];
  while (!stopping_.load(std::memory_order_relaxed)) {
    int n = epoll_wait(loop.epfd, evs, kMaxEvents, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;  // EBADF/EINVAL: only if the loop was torn down under us
    }
    for (int i = 0; i < n; ++i) {
      void* tag = evs[i].data.ptr;
      if (tag == &kWakeTag) {
        uint64_t v;
        while (read(loop.wake_fd, &v, sizeof v) > 0) {
        }
        std::vector<int> fds;
        {
          std::lock_guard<std::mutex> g(loop.mu);
          fds.swap(loop.incoming);
        }
        for (int fd : fds) adopt(loop, fd);
      } else if (tag == &kListenTag) {
        accept_ready(loop);
      } else {
        on_event(loop, *static_cast<Conn*>(tag), evs[i].events);
      }
    }
  }
  for (auto& [fd, c] : loop.conns) {
    close(fd);
    current_.fetch_sub(1);
  }
  loop.conns.clear();
}

void KvServer::accept_ready(Loop& loop) {
  for (int burst = 0; burst < 1024; ++burst) {
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if ((errno == EMFILE || errno == ENFILE) && loop.spare_fd >= 0) {
        // Out of descriptors: accept with the spare and close at once, so that the listener does
        // not stay readable forever (and the client learns it was refused).
        close(loop.spare_fd);
        int cfd = accept(listen_fd_, nullptr, nullptr);
        if (cfd >= 0) {
          rejected_.fetch_add(1);
          close(cfd);
        }
        loop.spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        continue;
      }
      return;  // EAGAIN, or an error the next wake-up will retry
    }
    if (current_.load() >= options_.max_clients) {
      static constexpr char kMsg[] = "-ERR max number of clients reached\r\n";
      rejected_.fetch_add(1);  // before the client can see the close
      ssize_t w = send(fd, kMsg, sizeof kMsg - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
      (void)w;
      close(fd);
      continue;
    }
    current_.fetch_add(1);
    accepted_.fetch_add(1);
    size_t target = static_cast<size_t>(next_loop_.fetch_add(1) % loops_.size());
    if (target == static_cast<size_t>(loop.index)) {
      adopt(loop, fd);
    } else {
      Loop& other = *loops_[target];
      {
        std::lock_guard<std::mutex> g(other.mu);
        other.incoming.push_back(fd);
      }
      uint64_t one = 1;
      ssize_t w = write(other.wake_fd, &one, sizeof one);
      (void)w;
    }
  }
}

void KvServer::adopt(Loop& loop, int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  auto conn = std::make_unique<Conn>(fd, options_.limits);
  Conn* c = conn.get();
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = c;
  if (epoll_ctl(loop.epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
    close(fd);
    current_.fetch_sub(1);
    return;
  }
  c->interest = EPOLLIN;
  loop.conns.emplace(fd, std::move(conn));
}

void KvServer::close_conn(Loop& loop, Conn& c) {
  int fd = c.fd;
  close(fd);  // also leaves the epoll set
  current_.fetch_sub(1);
  loop.conns.erase(fd);  // destroys c
}

bool KvServer::flush_output(Conn& c) {
  while (c.pending_out() > 0) {
    ssize_t n = send(c.fd, c.out.data() + c.out_pos, c.pending_out(), MSG_NOSIGNAL);
    if (n > 0) {
      c.out_pos += static_cast<size_t>(n);
      bytes_out_.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    return false;  // EPIPE, ECONNRESET...
  }
  if (c.out_pos == c.out.size()) {
    c.out_pos = 0;
    if (c.out.capacity() > kShrinkOutputAbove) {
      std::string().swap(c.out);
    } else {
      c.out.clear();
    }
  } else if (c.out_pos >= kShrinkOutputAbove && c.out_pos >= c.pending_out()) {
    c.out.erase(0, c.out_pos);  // amortised: moves at most what was already sent
    c.out_pos = 0;
  }
  return true;
}

void KvServer::run_batch(Conn& c) {
  Result<ExecResult> r = executor_.exec(c.batch.view(), c.out);
  batches_.fetch_add(1, std::memory_order_relaxed);
  if (r.ok() && r->commands_done == 0) {
    r = make_error(Errc::kInternal, "the executor made no progress on a batch");
  }
  if (!r.ok()) {
    // Nothing of the batch ran: answer every command so that the client stays in step.
    exec_errors_.fetch_add(1, std::memory_order_relaxed);
    std::string msg = "ERR " + r.error().message;
    for (uint32_t i = 0; i < c.batch.count(); ++i) host::resp_append_error(c.out, msg);
    c.batch.clear();
    return;
  }
  uint32_t done = std::min(r->commands_done, c.batch.count());
  commands_.fetch_add(done, std::memory_order_relaxed);
  c.batch.drop_front(done);
}

// Executes buffered work while the output has room: the pending batch first, then newly parsed
// commands. Returns false when the connection must be closed now (write error).
bool KvServer::process_buffered(Loop& loop, Conn& c) {
  const size_t max_out = options_.max_output_buffer;
  while (true) {
    while (c.batch.count() > 0 && c.pending_out() <= max_out) {
      run_batch(c);
      if (c.pending_out() > max_out && !flush_output(c)) return false;
    }
    if (c.batch.count() > 0) break;  // output full: wait for EPOLLOUT
    if (c.proto_error) {
      std::string msg = "ERR " + c.parser.error();
      host::resp_append_error(c.out, msg);
      c.proto_error = false;
      c.close_after_flush = true;
      protocol_errors_.fetch_add(1, std::memory_order_relaxed);
      break;
    }
    if (c.close_after_flush || c.parser.failed()) break;
    while (c.batch.count() < options_.max_batch_commands &&
           c.batch.size_bytes() < options_.max_batch_bytes) {
      host::ParseOutcome o = c.parser.next(&loop.argv);
      if (o == host::ParseOutcome::kCommand) {
        c.batch.add(loop.argv);
      } else {
        if (o == host::ParseOutcome::kError) c.proto_error = true;
        break;
      }
    }
    if (c.batch.count() == 0 && !c.proto_error) break;  // need more input
  }
  loop.argv.clear();  // don't keep the last (possibly large) arguments alive
  return flush_output(c);
}

bool KvServer::handle_input(Loop& loop, Conn& c) {
  for (int i = 0; i < kReadsPerWakeup; ++i) {
    if (c.close_after_flush || c.batch.count() > 0 ||
        c.pending_out() > options_.max_output_buffer) {
      break;  // backpressure or closing: stop reading
    }
    ssize_t n = read(c.fd, loop.rbuf.data(), loop.rbuf.size());
    if (n > 0) {
      bytes_in_.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
      c.parser.feed(
          ByteView(reinterpret_cast<const uint8_t*>(loop.rbuf.data()), static_cast<size_t>(n)));
      if (!process_buffered(loop, c)) return false;
      if (static_cast<size_t>(n) < loop.rbuf.size()) break;  // drained, most likely
      continue;
    }
    if (n == 0) {
      c.read_eof = true;  // answer what was complete, then close
      break;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    return false;
  }
  return true;
}

void KvServer::on_event(Loop& loop, Conn& c, uint32_t events) {
  if (events & EPOLLERR) return close_conn(loop, c);
  if ((events & EPOLLOUT) || c.pending_out() > 0) {
    if (!flush_output(c)) return close_conn(loop, c);
  }
  // Resume buffered work (backpressure released).
  if ((c.batch.count() > 0 || !c.parser.idle() || c.proto_error) &&
      c.pending_out() <= options_.max_output_buffer / 2) {
    if (!process_buffered(loop, c)) return close_conn(loop, c);
  }
  if ((events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP)) && !c.read_eof) {
    if (!handle_input(loop, c)) return close_conn(loop, c);
  }
  if ((c.close_after_flush || c.read_eof) && c.pending_out() == 0 && c.batch.count() == 0) {
    return close_conn(loop, c);
  }
  update_interest(loop, c);
}

void KvServer::update_interest(Loop& loop, Conn& c) {
  uint32_t want = 0;
  bool can_read = !c.read_eof && !c.close_after_flush && c.batch.count() == 0 &&
                  c.pending_out() <= options_.max_output_buffer;
  if (can_read) want |= EPOLLIN;
  if (c.pending_out() > 0) want |= EPOLLOUT;
  if (want == c.interest) return;
  epoll_event ev{};
  ev.events = want;
  ev.data.ptr = &c;
  epoll_ctl(loop.epfd, EPOLL_CTL_MOD, c.fd, &ev);
  c.interest = want;
}

}  // namespace constmig::kvstore
