// RESP request parser: split-point invariance, inline commands, limits, hostile input.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "host/resp.h"

// Allocation probe (alloc_probe.cpp): the largest single operator new while tracking is on.
namespace kvtest {
extern std::atomic<bool> g_tracking;
extern std::atomic<size_t> g_max_alloc;
}  // namespace kvtest
using kvtest::g_max_alloc;
using kvtest::g_tracking;

namespace {

using constmig::host::ParseOutcome;
using constmig::host::RespLimits;
using constmig::host::RespParser;

struct Parsed {
  std::vector<std::vector<std::string>> commands;
  bool error = false;
  std::string error_msg;
  bool operator==(const Parsed& o) const {
    return commands == o.commands && error == o.error && error_msg == o.error_msg;
  }
};

void drain(RespParser& p, Parsed& out) {
  std::vector<std::string> argv;
  while (!out.error) {
    ParseOutcome r = p.next(&argv);
    if (r == ParseOutcome::kNeedMore) return;
    if (r == ParseOutcome::kError) {
      out.error = true;
      out.error_msg = p.error();
      return;
    }
    EXPECT_FALSE(argv.empty());
    out.commands.push_back(argv);
  }
}

Parsed parse_chunks(const std::string& s, const std::vector<size_t>& cuts, RespLimits lim = {}) {
  RespParser p(lim);
  Parsed out;
  size_t prev = 0;
  for (size_t c : cuts) {
    p.feed(std::string_view(s).substr(prev, c - prev));
    drain(p, out);
    prev = c;
  }
  p.feed(std::string_view(s).substr(prev));
  drain(p, out);
  return out;
}

Parsed parse_all(const std::string& s, RespLimits lim = {}) {
  return parse_chunks(s, {}, lim);
}

Parsed parse_bytewise(const std::string& s, RespLimits lim = {}) {
  std::vector<size_t> cuts;
  for (size_t i = 1; i < s.size(); ++i) cuts.push_back(i);
  return parse_chunks(s, cuts, lim);
}

std::string mb(const std::vector<std::string>& argv) {
  std::string out;
  constmig::host::resp_append_command(out, argv);
  return out;
}

const std::string kBinary("a\r\nb\0c$*\n", 10);

std::string sample_stream() {
  std::string s;
  s += mb({"SET", "key:1", "value"});
  s += mb({"GET", "key:1"});
  s += "*0\r\n";                            // empty request: skipped
  s += mb({"SET", "bin", kBinary});         // CRLF and NUL inside a bulk
  s += mb({"ECHO", ""});                    // empty bulk
  s += "PING\r\n";                          // inline
  s += "\r\n";                              // blank inline line: skipped
  s += "set k \"a b\\x41\\n\" 'it\\'s'\n";  // inline, quotes, LF only
  s += "*-1\r\n";                           // null multibulk: skipped
  s += mb({"INCR", "counter"});
  return s;
}

std::vector<std::vector<std::string>> sample_expected() {
  return {{"SET", "key:1", "value"},
          {"GET", "key:1"},
          {"SET", "bin", kBinary},
          {"ECHO", ""},
          {"PING"},
          {"set", "k", "a bA\n", "it's"},
          {"INCR", "counter"}};
}

TEST(RespParser, ParsesSampleStream) {
  Parsed p = parse_all(sample_stream());
  EXPECT_FALSE(p.error) << p.error_msg;
  EXPECT_EQ(p.commands, sample_expected());
}

TEST(RespParser, EverySplitPointParsesIdentically) {
  const std::string s = sample_stream();
  const Parsed whole = parse_all(s);
  ASSERT_EQ(whole.commands, sample_expected());
  for (size_t i = 0; i <= s.size(); ++i) {
    EXPECT_EQ(parse_chunks(s, {i}), whole) << "split at " << i;
  }
  for (size_t i = 0; i + 7 <= s.size(); i += 3) {
    EXPECT_EQ(parse_chunks(s, {i, i + 7}), whole) << "splits at " << i << ", " << i + 7;
  }
  EXPECT_EQ(parse_bytewise(s), whole);
}

TEST(RespParser, InlineCommands) {
  auto p = parse_all("  GET   key  \r\nset a \"\" b\r\n'one two'  \"x\\\\y\\\"z\"\n");
  ASSERT_FALSE(p.error) << p.error_msg;
  std::vector<std::vector<std::string>> want = {
      {"GET", "key"}, {"set", "a", "", "b"}, {"one two", "x\\y\"z"}};
  EXPECT_EQ(p.commands, want);
}

TEST(RespParser, InlineErrors) {
  auto a = parse_all("set k \"unterminated\r\n");
  EXPECT_TRUE(a.error);
  EXPECT_EQ(a.error_msg, "Protocol error: unbalanced quotes in request");
  auto b = parse_all("set k \"a\"b\r\n");  // closing quote must be followed by a space
  EXPECT_TRUE(b.error);
  auto c = parse_all("get 'x\r\n");
  EXPECT_TRUE(c.error);
}

TEST(RespParser, InlineLineLimit) {
  RespLimits lim;
  lim.max_inline_len = 100;
  std::string ok(100, 'a');
  auto p = parse_all(ok + "\r\n", lim);
  ASSERT_FALSE(p.error) << p.error_msg;
  EXPECT_EQ(p.commands.size(), 1u);
  auto q = parse_all(std::string(101, 'a') + "\r\n", lim);
  EXPECT_TRUE(q.error);
  // No newline at all: rejected as soon as the line cannot fit, without waiting for more.
  RespParser r(lim);
  r.feed(std::string(102, 'a'));
  std::vector<std::string> argv;
  EXPECT_EQ(r.next(&argv), ParseOutcome::kError);
  EXPECT_EQ(r.error(), "Protocol error: too big inline request");
}

TEST(RespParser, MultibulkErrors) {
  struct Case {
    std::string in;
    std::string msg;
  };
  const std::vector<Case> cases = {
      {"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"},
      {"*1\r\n$-5\r\n", "Protocol error: invalid bulk length"},
      {"*1\r\n$abc\r\n", "Protocol error: invalid bulk length"},
      {"*1\r\n$+3\r\nabc\r\n", "Protocol error: invalid bulk length"},
      {"*1\r\n$03\r\nabc\r\n", "Protocol error: invalid bulk length"},
      {"*1\r\n$ 3\r\nabc\r\n", "Protocol error: invalid bulk length"},
      {"*1\r\n$\r\n", "Protocol error: invalid bulk length"},
      {"*1\r\n$99999999999999999999999\r\n", "Protocol error: invalid bulk length"},
      {"*1\r\n$67108865\r\n", "Protocol error: invalid bulk length"},  // 64 MiB + 1
      {"*x\r\n", "Protocol error: invalid multibulk length"},
      {"*1x\r\n", "Protocol error: invalid multibulk length"},
      {"*01\r\n", "Protocol error: invalid multibulk length"},
      {"*\r\n", "Protocol error: invalid multibulk length"},
      {"*1048577\r\n", "Protocol error: invalid multibulk length"},
      {"*18446744073709551616\r\n", "Protocol error: invalid multibulk length"},
      {"*1\r\nGET\r\n", "Protocol error: expected '$', got 'G'"},
      {"*1\r\n\x01", "Protocol error: expected '$', got '\\x01'"},
      {"*1\r\n$3\r\nabcXY", "Protocol error: expected '\\r\\n' after bulk data"},
      {"*1\n", "Protocol error: expected '\\r\\n' after multibulk length"},
      {"*1\r\n$3\n", "Protocol error: expected '\\r\\n' after bulk length"},
  };
  for (const auto& c : cases) {
    Parsed p = parse_all(c.in);
    EXPECT_TRUE(p.error) << c.in;
    EXPECT_EQ(p.error_msg, c.msg) << c.in;
    EXPECT_EQ(parse_bytewise(c.in), p) << c.in;
  }
}

TEST(RespParser, ErrorIsStickyAndCommandsBeforeItSurvive) {
  RespParser p;
  p.feed(mb({"PING"}) + "*1\r\n$-7\r\n" + mb({"PING"}));
  std::vector<std::string> argv;
  EXPECT_EQ(p.next(&argv), ParseOutcome::kCommand);
  EXPECT_EQ(p.next(&argv), ParseOutcome::kError);
  p.feed(mb({"PING"}));
  EXPECT_EQ(p.next(&argv), ParseOutcome::kError);
  EXPECT_TRUE(p.failed());
}

TEST(RespParser, ConfigurableBulkLimit) {
  RespLimits lim;
  lim.max_bulk_len = 1024;
  auto ok = parse_all(mb({"SET", "k", std::string(1024, 'v')}), lim);
  EXPECT_FALSE(ok.error) << ok.error_msg;
  auto bad = parse_all("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1025\r\n", lim);
  EXPECT_TRUE(bad.error);
  EXPECT_EQ(bad.error_msg, "Protocol error: invalid bulk length");
}

TEST(RespParser, TooManyArgs) {
  RespLimits lim;
  lim.max_args = 3;
  EXPECT_FALSE(parse_all(mb({"a", "b", "c"}), lim).error);
  auto p = parse_all("*4\r\n", lim);
  EXPECT_TRUE(p.error);
  EXPECT_EQ(p.error_msg, "Protocol error: invalid multibulk length");
  auto q = parse_all("a b c d\r\n", lim);  // inline counts too
  EXPECT_TRUE(q.error);
}

TEST(RespParser, CommandSizeAndBufferLimits) {
  RespLimits lim;
  lim.max_command_bytes = 100;
  auto p = parse_all("*3\r\n$60\r\n" + std::string(60, 'a') + "\r\n$60\r\n", lim);
  EXPECT_TRUE(p.error);
  EXPECT_EQ(p.error_msg, "Protocol error: command too large");

  RespLimits lim2;
  lim2.max_bulk_len = 1000;
  lim2.max_buffered = 100;
  auto q = parse_all("*1\r\n$500\r\n" + std::string(200, 'b'), lim2);
  EXPECT_TRUE(q.error);
  EXPECT_EQ(q.error_msg, "Protocol error: too much unparsed data");
  EXPECT_EQ(lim2.effective_max_buffered(), 100u);
  EXPECT_EQ(RespLimits{}.effective_max_buffered(), (64u << 20) + 65536u);
}

TEST(RespParser, LengthsAreCheckedBeforeAllocating) {
  // A legal but large claimed bulk: nothing is allocated for it until its bytes arrive.
  RespParser p;
  std::vector<std::string> argv;
  g_max_alloc = 0;
  g_tracking = true;
  p.feed(std::string_view("*2\r\n$3\r\nGET\r\n$60000000\r\nabc"));
  ParseOutcome r1 = p.next(&argv);
  // A huge claimed argument count is not reserved either.
  RespParser q;
  q.feed(std::string_view("*1000000\r\n$1\r\n"));
  ParseOutcome r2 = q.next(&argv);
  // An over-limit one is refused at once.
  RespParser z;
  z.feed(std::string_view("*1\r\n$4000000000\r\n"));
  ParseOutcome r3 = z.next(&argv);
  g_tracking = false;
  EXPECT_EQ(r1, ParseOutcome::kNeedMore);
  EXPECT_EQ(r2, ParseOutcome::kNeedMore);
  EXPECT_EQ(r3, ParseOutcome::kError);
  EXPECT_GT(g_max_alloc.load(), 0u) << "the allocation probe is not active";
  EXPECT_LT(g_max_alloc.load(), 64u * 1024) << "largest allocation while parsing headers";
}

TEST(RespParser, LargeInputsAreLinear) {
  // 8 MiB bulk fed one byte at a time, a 60 KiB inline line byte by byte, and 200k pipelined
  // commands in one chunk: quadratic rescanning or per-command front-erasure would take minutes.
  const std::string big(8u << 20, 'x');
  std::string s = "*2\r\n$4\r\nECHO\r\n$" + std::to_string(big.size()) + "\r\n" + big + "\r\n";
  RespParser p;
  std::vector<std::string> argv;
  size_t commands = 0;
  for (char c : s) {
    p.feed(std::string_view(&c, 1));
    if (p.next(&argv) == ParseOutcome::kCommand) ++commands;
  }
  EXPECT_EQ(commands, 1u);
  EXPECT_EQ(argv[1].size(), big.size());

  std::string line = "ECHO " + std::string(60000, 'y') + "\r\n";
  commands = 0;
  for (char c : line) {
    p.feed(std::string_view(&c, 1));
    if (p.next(&argv) == ParseOutcome::kCommand) ++commands;
  }
  EXPECT_EQ(commands, 1u);

  std::string many;
  for (int i = 0; i < 200000; ++i) many += mb({"GET", "key:" + std::to_string(i)});
  p.feed(many);
  commands = 0;
  while (p.next(&argv) == ParseOutcome::kCommand) ++commands;
  EXPECT_EQ(commands, 200000u);
  EXPECT_TRUE(p.idle());
}

TEST(RespParser, ReplyWriters) {
  using namespace constmig::host;
  std::string o;
  resp_append_simple(o, "OK");
  resp_append_error(o, "ERR bad\r\nthing");
  resp_append_integer(o, -42);
  resp_append_bulk(o, "hi");
  resp_append_null_bulk(o);
  resp_append_array_header(o, 3);
  EXPECT_EQ(o, "+OK\r\n-ERR bad  thing\r\n:-42\r\n$2\r\nhi\r\n$-1\r\n*3\r\n");
  int64_t v = 0;
  EXPECT_TRUE(resp_parse_int64("-9223372036854775808", &v));
  EXPECT_EQ(v, INT64_MIN);
  EXPECT_TRUE(resp_parse_int64("9223372036854775807", &v));
  EXPECT_FALSE(resp_parse_int64("9223372036854775808", &v));
  EXPECT_FALSE(resp_parse_int64("-0", &v));
  EXPECT_FALSE(resp_parse_int64("", &v));
  EXPECT_FALSE(resp_parse_int64("1 ", &v));
}

// Random and mutated streams: never crash, and the result never depends on how the bytes were
// split (commands, then the same error or need-more state).
TEST(RespParser, FuzzSplitInvariance) {
  std::mt19937_64 rng(0xC0FFEE);
  const std::string base = sample_stream() + mb({"SET", "x", std::string(300, 'z')});
  RespLimits small;
  small.max_bulk_len = 200;
  small.max_args = 8;
  small.max_inline_len = 64;
  const char alphabet[] = "*$\r\n0123456789-+ \"'\\xabcPING";
  for (int iter = 0; iter < 3000; ++iter) {
    std::string s;
    int kind = iter % 3;
    if (kind == 0) {  // random bytes from a RESP-ish alphabet
      size_t n = rng() % 200;
      for (size_t i = 0; i < n; ++i) s.push_back(alphabet[rng() % (sizeof alphabet - 1)]);
    } else {  // a valid stream with a few byte mutations, insertions, deletions, truncation
      s = base;
      int muts = 1 + static_cast<int>(rng() % 4);
      for (int m = 0; m < muts && !s.empty(); ++m) {
        size_t at = rng() % s.size();
        switch (rng() % 4) {
          case 0:
            s[at] = static_cast<char>(rng());
            break;
          case 1:
            s[at] = alphabet[rng() % (sizeof alphabet - 1)];
            break;
          case 2:
            s.insert(at, 1, alphabet[rng() % (sizeof alphabet - 1)]);
            break;
          case 3:
            s.erase(at, 1 + rng() % 5);
            break;
        }
      }
      if (rng() % 4 == 0) s.resize(rng() % (s.size() + 1));
    }
    RespLimits lim = (iter % 2 == 0) ? RespLimits{} : small;
    Parsed whole = parse_all(s, lim);
    std::vector<size_t> cuts;
    size_t pos = 0;
    while (pos < s.size()) {
      pos += 1 + rng() % 17;
      if (pos < s.size()) cuts.push_back(pos);
    }
    ASSERT_EQ(parse_chunks(s, cuts, lim), whole) << "iteration " << iter;
    if (iter % 50 == 0) {
      ASSERT_EQ(parse_bytewise(s, lim), whole) << "iteration " << iter;
    }
  }
}

}  // namespace
