// UNTRUSTED. Incremental RESP2 request parser and reply writers (the Redis wire protocol subset
// that redis-cli, redis-benchmark and telnet speak).
//
// Requests come from the network: every length is checked against RespLimits before anything is
// allocated, and no allocation is ever sized from a number the peer claims — a bulk's bytes are
// copied out only once they have arrived. The parser keeps its scan position across feed() calls,
// so a line or a bulk that arrives one byte at a time costs O(n) in total, and it consumes its
// buffer through a read offset (the buffer is compacted only when the consumed prefix is at least
// as large as what is left), so draining a large pipelined input is linear too.
//
// Usage (one parser per connection):
//   parser.feed(bytes_just_read);
//   std::vector<std::string> argv;
//   while (true) {
//     auto r = parser.next(&argv);
//     if (r == ParseOutcome::kNeedMore) break;          // read more
//     if (r == ParseOutcome::kError) { reply("-ERR " + parser.error()); close; }
//     run(argv);
//   }
// Call next() until it says kNeedMore after every feed(): the buffered-bytes limit is checked
// there (a caller that only feeds would grow the buffer without bound).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.h"

namespace constmig::host {

struct RespLimits {
  // Largest bulk string ($len) accepted. Redis's proto-max-bulk-len is 512 MiB; ours is smaller
  // because a value also has to fit in an ECALL batch and in the enclave heap.
  size_t max_bulk_len = 64ull << 20;
  // Largest multibulk count (*N) accepted (Redis: 1024*1024).
  size_t max_args = 1024 * 1024;
  // Longest inline command line, and longest *N / $len header line (Redis: 64 KiB).
  size_t max_inline_len = 64 * 1024;
  // Unparsed bytes the parser may hold while waiting for the rest of a command.
  // 0 = max_bulk_len + 64 KiB.
  size_t max_buffered = 0;
  // Sum of the argument sizes of one command (the arguments already parsed are held while the
  // rest arrives). Redis's client-query-buffer-limit is 1 GiB.
  size_t max_command_bytes = 256ull << 20;

  size_t effective_max_buffered() const {
    return max_buffered != 0 ? max_buffered : max_bulk_len + 64 * 1024;
  }
};

enum class ParseOutcome {
  kNeedMore,  // no complete command buffered: feed() more bytes
  kCommand,   // *argv holds one command (at least one argument)
  kError,     // protocol error (sticky): error() says why; close the connection
};

class RespParser {
 public:
  explicit RespParser(RespLimits limits = {});

  // Appends bytes received from the peer.
  void feed(ByteView data);
  void feed(std::string_view data) { feed(as_bytes_view(data)); }

  // Parses the next complete command into *argv (replacing its contents).
  ParseOutcome next(std::vector<std::string>* argv);

  // The protocol error, Redis-style: "Protocol error: invalid bulk length". Empty if none.
  const std::string& error() const { return error_; }
  bool failed() const { return !error_.empty(); }

  // Bytes received but not yet consumed by a complete command or argument.
  size_t buffered() const { return buf_.size() - pos_; }
  // True when no part of a command is pending (nothing buffered, no half-built argv).
  bool idle() const { return buffered() == 0 && state_ == State::kStart; }

  const RespLimits& limits() const { return limits_; }

 private:
  enum class State { kStart, kMultibulkArgHeader, kMultibulkArgData };

  ParseOutcome fail(std::string msg);
  // Offset (from pos_) of the '\n' ending the line that starts at pos_, or npos if it has not
  // arrived; *too_long when it cannot end within max_len content bytes. Resumes at scanned_.
  size_t find_line(size_t max_len, bool* too_long);
  void consume(size_t n);
  ParseOutcome parse_inline(std::vector<std::string>* argv);

  RespLimits limits_;
  std::string buf_;  // received bytes; buf_[0, pos_) are consumed
  size_t pos_ = 0;
  size_t scanned_ = 0;  // bytes after pos_ already searched for '\n' in the current line
  State state_ = State::kStart;
  size_t args_left_ = 0;          // multibulk arguments still to come
  size_t bulk_len_ = 0;           // length of the bulk being received
  size_t command_bytes_ = 0;      // sum of the argument sizes parsed so far
  std::vector<std::string> cur_;  // arguments of the multibulk command being parsed
  std::string error_;
};

// Strict decimal integer, as Redis's string2ll: optional '-', no '+', no spaces, no leading
// zeros, must fit int64. Returns false on anything else.
bool resp_parse_int64(std::string_view s, int64_t* out);

// ---- Reply writers (append to out) ----
void resp_append_simple(std::string& out, std::string_view s);  // +s\r\n
// -msg\r\n. msg carries its own prefix ("ERR ...", "OOM ..."); CR/LF in msg become spaces.
void resp_append_error(std::string& out, std::string_view msg);
void resp_append_integer(std::string& out, int64_t v);        // :v\r\n
void resp_append_bulk(std::string& out, std::string_view s);  // $len\r\ns\r\n
void resp_append_null_bulk(std::string& out);                 // $-1\r\n
void resp_append_array_header(std::string& out, int64_t n);   // *n\r\n
// A full request as redis-cli sends it: *argc then one bulk per argument.
void resp_append_command(std::string& out, const std::vector<std::string>& argv);

}  // namespace constmig::host
