// UNTRUSTED. The kvstore's TCP front end: speaks the Redis RESP subset to clients and hands
// each connection's parsed commands, as ONE encoded batch (kvstore_protocol.h), to a
// BatchExecutor — the enclave's "kv_batch" ECALL, or LocalEngineExecutor without an enclave.
//
// Threads: `io_threads` event loops, each with its own epoll set and its own connections. Thread 0
// also owns the listening socket and deals accepted connections round-robin (via a queue and an
// eventfd) so that load spreads evenly, which SO_REUSEPORT's 4-tuple hash does not guarantee for
// a few dozen connections.
//
// Per readable connection: read what is available (bounded per wake-up for fairness), parse every
// complete command (pipelining), encode them as one batch, exec; if the executor did fewer
// commands than submitted, re-submit the rest; then write the replies (non-blocking, buffered).
// Backpressure: while a connection's unsent output exceeds `max_output_buffer`, the server stops
// reading from it and stops executing its already-buffered commands; it resumes once the output
// drains below half of that. A protocol error sends "-ERR Protocol error: ..." after the replies
// of the commands before it and closes that connection only.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/bytes.h"
#include "common/result.h"
#include "host/resp.h"

namespace constmig::kvstore {

struct ExecResult {
  uint32_t commands_done = 0;  // the first commands_done commands ran; their replies were appended
};

// Runs an encoded batch. Called concurrently from every io thread.
class BatchExecutor {
 public:
  virtual ~BatchExecutor() = default;
  // Appends the RESP replies of the first commands_done commands of encoded_batch to replies.
  // Must make progress (commands_done >= 1) or return an error; on error nothing of the batch
  // ran, and the server answers each of its commands with "-ERR <message>".
  virtual Result<ExecResult> exec(ByteView encoded_batch, std::string& replies) = 0;
};

struct ServerOptions {
  std::string bind = "127.0.0.1";  // IPv4 or IPv6 literal
  uint16_t port = 6380;            // 0 = ephemeral; port() reports the one bound
  int io_threads = 2;
  size_t max_clients = 10000;
  host::RespLimits limits;
  // Unsent reply bytes above which a connection is not read from (backpressure).
  size_t max_output_buffer = 8u << 20;
  // A batch is submitted once it holds this many bytes or commands (or input runs dry).
  size_t max_batch_bytes = 1u << 20;
  uint32_t max_batch_commands = 4096;
};

struct ServerStats {
  uint64_t connections_accepted = 0;
  uint64_t connections_current = 0;
  uint64_t connections_rejected = 0;  // over max_clients
  uint64_t commands = 0;              // commands answered by the executor
  uint64_t batches = 0;               // exec() calls
  uint64_t protocol_errors = 0;
  uint64_t exec_errors = 0;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
};

class KvServer {
 public:
  KvServer(ServerOptions options, BatchExecutor& executor);
  ~KvServer();  // stop()s
  KvServer(const KvServer&) = delete;
  KvServer& operator=(const KvServer&) = delete;

  // Binds, listens and starts the io threads. Errors are written for the operator, e.g.
  // "cannot listen on 127.0.0.1:6380: Address already in use — choose another --port".
  Status start();
  // Closes the listener and every connection, joins the threads. Idempotent.
  void stop();
  bool running() const { return running_; }
  uint16_t port() const { return port_; }
  ServerStats stats() const;

 private:
  struct Loop;
  struct Conn;
  void run_loop(Loop& loop);
  void accept_ready(Loop& loop);
  void adopt(Loop& loop, int fd);
  void on_event(Loop& loop, Conn& c, uint32_t events);
  // Reads, parses and executes; returns false when the connection must be closed now.
  bool handle_input(Loop& loop, Conn& c);
  bool process_buffered(Loop& loop, Conn& c);
  void run_batch(Conn& c);
  bool flush_output(Conn& c);  // false on a write error
  void update_interest(Loop& loop, Conn& c);
  void close_conn(Loop& loop, Conn& c);

  ServerOptions options_;
  BatchExecutor& executor_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  bool running_ = false;
  std::atomic<bool> stopping_{false};
  std::vector<std::unique_ptr<Loop>> loops_;
  std::vector<std::thread> threads_;
  std::atomic<uint64_t> next_loop_{0};

  std::atomic<uint64_t> accepted_{0}, current_{0}, rejected_{0}, commands_{0}, batches_{0},
      protocol_errors_{0}, exec_errors_{0}, bytes_in_{0}, bytes_out_{0};
};

}  // namespace constmig::kvstore
