// UNTRUSTED. RESP2 request parser; see resp.h for the limits and the usage contract.
//
// Wire forms accepted (as Redis 7 does):
//   multibulk: *<n>\r\n then n times $<len>\r\n<len bytes>\r\n. n <= 0 is an empty request
//              (skipped). Header lines must end in CRLF; bulk data must be followed by CRLF.
//   inline:    a line not starting with '*', terminated by LF (an optional CR before it is
//              dropped), split like sdssplitargs: whitespace separated, "double quotes" with
//              \n \r \t \b \a \\ \" \xHH escapes, 'single quotes' with \'. Empty lines are skipped.
#include "host/resp.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <utility>

namespace constmig::host {
namespace {

constexpr size_t kShrinkAbove = 1u << 20;  // free an idle buffer's storage above this capacity

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string printable_char(char c) {
  auto u = static_cast<unsigned char>(c);
  if (u >= 0x20 && u < 0x7f) return std::string(1, c);
  static const char* kHex = "0123456789abcdef";
  return std::string("\\x") + kHex[u >> 4] + kHex[u & 15];
}

// sdssplitargs semantics (see the file comment). Returns false on unbalanced quotes.
bool split_inline(std::string_view line, std::vector<std::string>* out, size_t max_args,
                  bool* too_many) {
  out->clear();
  *too_many = false;
  const char* p = line.data();
  const char* end = p + line.size();
  while (true) {
    while (p < end && is_space(*p)) ++p;
    if (p == end) return true;
    if (out->size() >= max_args) {
      *too_many = true;
      return false;
    }
    std::string cur;
    bool inq = false, insq = false, done = false;
    while (!done) {
      if (inq) {
        if (p == end) return false;  // unterminated "
        if (*p == '\\' && end - p >= 4 && p[1] == 'x' && hex_digit(p[2]) >= 0 &&
            hex_digit(p[3]) >= 0) {
          cur.push_back(static_cast<char>(hex_digit(p[2]) * 16 + hex_digit(p[3])));
          p += 3;
        } else if (*p == '\\' && end - p >= 2) {
          ++p;
          char c;
          switch (*p) {
            case 'n':
              c = '\n';
              break;
            case 'r':
              c = '\r';
              break;
            case 't':
              c = '\t';
              break;
            case 'b':
              c = '\b';
              break;
            case 'a':
              c = '\a';
              break;
            default:
              c = *p;
              break;
          }
          cur.push_back(c);
        } else if (*p == '"') {
          // The closing quote must be followed by a space or the end of the line.
          if (end - p >= 2 && !is_space(p[1])) return false;
          done = true;
        } else {
          cur.push_back(*p);
        }
      } else if (insq) {
        if (p == end) return false;  // unterminated '
        if (*p == '\\' && end - p >= 2 && p[1] == '\'') {
          ++p;
          cur.push_back('\'');
        } else if (*p == '\'') {
          if (end - p >= 2 && !is_space(p[1])) return false;
          done = true;
        } else {
          cur.push_back(*p);
        }
      } else {
        if (p == end) break;
        switch (*p) {
          case ' ':
          case '\n':
          case '\r':
          case '\t':
          case '\v':
          case '\f':
            done = true;
            break;
          case '"':
            inq = true;
            break;
          case '\'':
            insq = true;
            break;
          default:
            cur.push_back(*p);
            break;
        }
      }
      if (p < end) ++p;
    }
    out->push_back(std::move(cur));
  }
}

}  // namespace

bool resp_parse_int64(std::string_view s, int64_t* out) {
  if (s.empty() || s.size() > 20) return false;
  if (s.size() == 1 && s[0] == '0') {
    *out = 0;
    return true;
  }
  size_t i = 0;
  bool neg = false;
  if (s[0] == '-') {
    neg = true;
    i = 1;
    if (s.size() == 1) return false;
  }
  if (s[i] < '1' || s[i] > '9') return false;  // no leading zeros, no "-0", no '+'
  uint64_t v = 0;
  for (; i < s.size(); ++i) {
    char c = s[i];
    if (c < '0' || c > '9') return false;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  if (neg) {
    if (v > static_cast<uint64_t>(INT64_MAX) + 1) return false;
    *out = v == static_cast<uint64_t>(INT64_MAX) + 1 ? INT64_MIN : -static_cast<int64_t>(v);
  } else {
    if (v > static_cast<uint64_t>(INT64_MAX)) return false;
    *out = static_cast<int64_t>(v);
  }
  return true;
}

RespParser::RespParser(RespLimits limits) : limits_(limits) {}

void RespParser::feed(ByteView data) {
  if (data.empty() || failed()) return;
  // Compact only when the consumed prefix is at least as long as what is left: each byte is
  // then moved at most once per time it is consumed (amortised O(1)).
  if (pos_ > 0 && pos_ >= buf_.size() - pos_) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  buf_.append(reinterpret_cast<const char*>(data.data()), data.size());
}

void RespParser::consume(size_t n) {
  pos_ += n;
  scanned_ = 0;
  if (pos_ == buf_.size()) {
    pos_ = 0;
    if (buf_.capacity() > kShrinkAbove) {
      std::string().swap(buf_);  // don't keep a large bulk's buffer on an idle connection
    } else {
      buf_.clear();
    }
  }
}

ParseOutcome RespParser::fail(std::string msg) {
  error_ = std::move(msg);
  cur_.clear();
  cur_.shrink_to_fit();
  std::string().swap(buf_);
  pos_ = 0;
  scanned_ = 0;
  return ParseOutcome::kError;
}

// Looks for '\n' in the line starting at pos_, resuming where the previous call stopped.
// Returns the offset of '\n' relative to pos_, or npos. *too_long is set when no '\n' can
// arrive within max_len (+1 for a CR) bytes.
size_t RespParser::find_line(size_t max_len, bool* too_long) {
  *too_long = false;
  size_t avail = buf_.size() - pos_;
  size_t limit = std::min(avail, max_len + 2);  // content + CR + LF
  if (scanned_ < limit) {
    const void* nl = std::memchr(buf_.data() + pos_ + scanned_, '\n', limit - scanned_);
    if (nl != nullptr) {
      return static_cast<size_t>(static_cast<const char*>(nl) - (buf_.data() + pos_));
    }
    scanned_ = limit;
  }
  if (avail >= max_len + 2) *too_long = true;
  return std::string::npos;
}

ParseOutcome RespParser::parse_inline(std::vector<std::string>* argv) {
  bool too_long = false;
  size_t nl = find_line(limits_.max_inline_len, &too_long);
  if (nl == std::string::npos) {
    if (too_long) return fail("Protocol error: too big inline request");
    return ParseOutcome::kNeedMore;
  }
  size_t len = nl;
  if (len > 0 && buf_[pos_ + len - 1] == '\r') --len;
  if (len > limits_.max_inline_len) return fail("Protocol error: too big inline request");
  bool too_many = false;
  bool ok =
      split_inline(std::string_view(buf_.data() + pos_, len), argv, limits_.max_args, &too_many);
  if (!ok) {
    if (too_many) return fail("Protocol error: too many arguments in inline request");
    return fail("Protocol error: unbalanced quotes in request");
  }
  consume(nl + 1);
  return ParseOutcome::kCommand;  // caller skips empty argv
}

ParseOutcome RespParser::next(std::vector<std::string>* argv) {
  if (failed()) return ParseOutcome::kError;
  while (true) {
    size_t avail = buf_.size() - pos_;
    switch (state_) {
      case State::kStart: {
        if (avail == 0) return ParseOutcome::kNeedMore;
        if (buf_[pos_] != '*') {
          ParseOutcome r = parse_inline(argv);
          if (r == ParseOutcome::kCommand && argv->empty()) continue;  // blank line
          if (r == ParseOutcome::kNeedMore) break;
          return r;
        }
        bool too_long = false;
        size_t nl = find_line(limits_.max_inline_len, &too_long);
        if (nl == std::string::npos) {
          if (too_long) return fail("Protocol error: too big mbulk count string");
          break;  // need more
        }
        if (nl < 1 || buf_[pos_ + nl - 1] != '\r') {
          return fail("Protocol error: expected '\\r\\n' after multibulk length");
        }
        int64_t n = 0;
        if (!resp_parse_int64(std::string_view(buf_.data() + pos_ + 1, nl - 2), &n) ||
            (n > 0 && static_cast<uint64_t>(n) > limits_.max_args)) {
          return fail("Protocol error: invalid multibulk length");
        }
        consume(nl + 1);
        if (n <= 0) continue;  // empty request, as Redis: nothing to run
        args_left_ = static_cast<size_t>(n);
        command_bytes_ = 0;
        cur_.clear();
        cur_.reserve(std::min<size_t>(args_left_, 1024));  // never sized by the claim alone
        state_ = State::kMultibulkArgHeader;
        continue;
      }
      case State::kMultibulkArgHeader: {
        if (avail == 0) break;
        if (buf_[pos_] != '$') {
          return fail("Protocol error: expected '$', got '" + printable_char(buf_[pos_]) + "'");
        }
        bool too_long = false;
        size_t nl = find_line(limits_.max_inline_len, &too_long);
        if (nl == std::string::npos) {
          if (too_long) return fail("Protocol error: too big bulk count string");
          break;
        }
        if (nl < 1 || buf_[pos_ + nl - 1] != '\r') {
          return fail("Protocol error: expected '\\r\\n' after bulk length");
        }
        int64_t len = 0;
        if (!resp_parse_int64(std::string_view(buf_.data() + pos_ + 1, nl - 2), &len) || len < 0 ||
            static_cast<uint64_t>(len) > limits_.max_bulk_len) {
          return fail("Protocol error: invalid bulk length");
        }
        if (command_bytes_ + static_cast<size_t>(len) > limits_.max_command_bytes) {
          return fail("Protocol error: command too large");
        }
        consume(nl + 1);
        bulk_len_ = static_cast<size_t>(len);
        state_ = State::kMultibulkArgData;
        continue;
      }
      case State::kMultibulkArgData: {
        if (avail < bulk_len_ + 2) break;  // wait: nothing allocated for the bulk until here
        const char* p = buf_.data() + pos_;
        if (p[bulk_len_] != '\r' || p[bulk_len_ + 1] != '\n') {
          return fail("Protocol error: expected '\\r\\n' after bulk data");
        }
        cur_.emplace_back(p, bulk_len_);
        command_bytes_ += bulk_len_;
        consume(bulk_len_ + 2);
        if (--args_left_ == 0) {
          state_ = State::kStart;
          argv->clear();
          argv->swap(cur_);
          return ParseOutcome::kCommand;
        }
        state_ = State::kMultibulkArgHeader;
        continue;
      }
    }
    // Need more input. Everything buffered now belongs to the incomplete command.
    if (buffered() > limits_.effective_max_buffered()) {
      return fail("Protocol error: too much unparsed data");
    }
    return ParseOutcome::kNeedMore;
  }
}

// ---- reply writers ----

void resp_append_simple(std::string& out, std::string_view s) {
  out.push_back('+');
  out.append(s);
  out.append("\r\n");
}

void resp_append_error(std::string& out, std::string_view msg) {
  out.push_back('-');
  size_t start = out.size();
  out.append(msg);
  for (size_t i = start; i < out.size(); ++i) {
    if (out[i] == '\r' || out[i] == '\n') out[i] = ' ';
  }
  out.append("\r\n");
}

namespace {
void append_prefixed_int(std::string& out, char prefix, int64_t v) {
  char buf[24];
  buf[0] = prefix;
  auto r = std::to_chars(buf + 1, buf + sizeof(buf), v);
  out.append(buf, static_cast<size_t>(r.ptr - buf));
  out.append("\r\n");
}
}  // namespace

void resp_append_integer(std::string& out, int64_t v) {
  append_prefixed_int(out, ':', v);
}

void resp_append_bulk(std::string& out, std::string_view s) {
  append_prefixed_int(out, '$', static_cast<int64_t>(s.size()));
  out.append(s);
  out.append("\r\n");
}

void resp_append_null_bulk(std::string& out) {
  out.append("$-1\r\n");
}

void resp_append_array_header(std::string& out, int64_t n) {
  append_prefixed_int(out, '*', n);
}

void resp_append_command(std::string& out, const std::vector<std::string>& argv) {
  resp_append_array_header(out, static_cast<int64_t>(argv.size()));
  for (const auto& a : argv) resp_append_bulk(out, a);
}

}  // namespace constmig::host
