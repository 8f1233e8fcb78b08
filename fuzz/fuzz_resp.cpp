// libFuzzer target: the RESP request parser the kvstore server runs on every client connection
// (src/host/resp.cpp, RespParser; apps/kvstore/host/kvstore_server.cpp).
//
// Input: byte 0 selects (byte 0 % 4):
//   0  default limits     1  small limits (short lines and bulks, few arguments)
//   2  resp_parse_int64 on the rest: a parsed value prints back to the same text
//   3  small limits, one byte per feed()
// then the client's bytes. The parser is fed in chunks (sizes from byte 0's high bits) and run
// like the server runs it; every command must be non-empty, within the limits, and come out
// the same when fed in one piece; re-encoded as a multibulk request (resp_append_command) it
// must parse back to the same arguments.
#include <algorithm>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "host/resp.h"

using namespace constmig;
using namespace constmig::host;

namespace {

struct Run {
  std::vector<std::vector<std::string>> commands;
  bool failed = false;
  std::string error;
};

RespLimits small_limits() {
  RespLimits l;
  l.max_bulk_len = 64;
  l.max_args = 8;
  l.max_inline_len = 48;
  l.max_command_bytes = 200;
  return l;
}

// Feeds `in` in chunks of `chunk` bytes (0 = all at once) and drains the parser after each.
Run parse_all(ByteView in, const RespLimits& limits, size_t chunk) {
  Run run;
  RespParser p(limits);
  size_t pos = 0;
  std::vector<std::string> argv;
  do {
    size_t n = chunk == 0 ? in.size() : std::min(chunk, in.size() - pos);
    p.feed(in.subspan(pos, n));
    pos += n;
    for (;;) {
      ParseOutcome o = p.next(&argv);
      if (o == ParseOutcome::kNeedMore) {
        FUZZ_CHECK(p.buffered() <= limits.effective_max_buffered());
        break;
      }
      if (o == ParseOutcome::kError) {
        FUZZ_CHECK(p.failed() && !p.error().empty());
        FUZZ_CHECK(p.next(&argv) == ParseOutcome::kError);  // sticky
        run.failed = true;
        run.error = p.error();
        return run;
      }
      FUZZ_CHECK(!argv.empty() && argv.size() <= limits.max_args);
      size_t bytes = 0;
      for (const auto& a : argv) bytes += a.size();
      FUZZ_CHECK(bytes <= std::max(limits.max_command_bytes, limits.max_inline_len));
      run.commands.push_back(argv);
    }
  } while (pos < in.size());
  return run;
}

void check_parser(ByteView in, const RespLimits& limits, size_t chunk) {
  Run a = parse_all(in, limits, chunk);
  Run b = parse_all(in, limits, 0);
  FUZZ_CHECK(a.failed == b.failed && a.error == b.error);
  FUZZ_CHECK(a.commands == b.commands);
  // Every command, re-sent as redis-cli would, parses back to the same arguments.
  std::string wire;
  for (const auto& argv : a.commands) resp_append_command(wire, argv);
  Run c = parse_all(as_bytes_view(wire), RespLimits{}, 0);
  FUZZ_CHECK(!c.failed && c.commands == a.commands);
}

void check_int(ByteView in) {
  std::string_view s = as_string_view(in);
  int64_t v = 0;
  if (!resp_parse_int64(s, &v)) return;
  FUZZ_CHECK(std::to_string(v) == s);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  ByteView rest(data + 1, size - 1);
  static constexpr size_t kChunks[] = {1, 2, 3, 5, 16, 64, 1000, 0};
  const size_t chunk = kChunks[(data[0] >> 2) % std::size(kChunks)];
  switch (data[0] % 4) {
    case 0:
      check_parser(rest, RespLimits{}, chunk);
      break;
    case 1:
      check_parser(rest, small_limits(), chunk);
      break;
    case 2:
      check_int(rest);
      break;
    default:
      check_parser(rest, small_limits(), 1);
      break;
  }
  return 0;
}
