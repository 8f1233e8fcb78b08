// kvstore: the command-batch encoding carried by the "kv_batch" ECALL, used by BOTH sides of
// the trust boundary (standard library and src/common only).
//
// The host parses RESP from its clients and hands the enclave one batch per ECALL:
//
//   u32 magic 'KVB1' | u32 count | count x ( u32 argc | argc x ( u32 len | len bytes ) )
//
// little-endian, nothing after the last command. The enclave answers with the RESP replies of
// the first `commands_done` commands, concatenated (see KvEngine::execute_batch).
//
// The enclave must treat a batch as hostile: decode_batch() checks every count and length
// against BatchLimits and against the bytes actually present, and validates the WHOLE batch
// before the callback sees its first command, so a malformed batch runs nothing. The string_views
// handed to the callback point into the input: the ECALL glue must have copied the batch into
// enclave memory first (SGX [in] semantics); the second pass is bounds-checked again anyway, so
// a host that changes the bytes in between can cause an error, never an out-of-bounds read.
//
// Also here: RESP reply writers for the trusted side (src/host/resp.h is host-only).
#pragma once

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "common/bytes.h"
#include "common/result.h"

namespace constmig::kvstore {

inline constexpr uint32_t kBatchMagic = 0x3142564bu;  // bytes "KVB1" little-endian
inline constexpr size_t kBatchHeaderSize = 8;

struct BatchLimits {
  uint32_t max_commands = 65536;     // commands per batch
  uint32_t max_args = 1024 * 1024;   // arguments per command
  uint32_t max_arg_len = 64u << 20;  // bytes per argument
};

// ---- encoding (host side) ----

// Appends a complete batch holding `commands` to out.
inline void encode_batch(const std::vector<std::vector<std::string>>& commands,
                         std::vector<uint8_t>& out) {
  ByteWriter w(out);
  w.u32(kBatchMagic);
  w.u32(static_cast<uint32_t>(commands.size()));
  for (const auto& argv : commands) {
    w.u32(static_cast<uint32_t>(argv.size()));
    for (const auto& a : argv) w.str32(a);
  }
}

// Incremental encoder: begin(), add() per command, then the buffer holds a valid batch at any
// point (the count is patched on every add). Keeps each command's offset so that the host can
// re-submit the commands an ECALL did not get to (tail()).
class BatchBuilder {
 public:
  void clear() {
    if (buf_.capacity() > (1u << 20)) {
      std::vector<uint8_t>().swap(buf_);  // don't keep a huge command's buffer around
    } else {
      buf_.clear();
    }
    offsets_.clear();
    ByteWriter w(buf_);
    w.u32(kBatchMagic);
    w.u32(0);
  }
  BatchBuilder() { clear(); }

  template <typename Argv>  // any range of things convertible to std::string_view
  void add(const Argv& argv) {
    offsets_.push_back(buf_.size());
    ByteWriter w(buf_);
    w.u32(static_cast<uint32_t>(argv.size()));
    for (const auto& a : argv) w.str32(std::string_view(a));
    patch_count();
  }
  uint32_t count() const { return static_cast<uint32_t>(offsets_.size()); }
  size_t size_bytes() const { return buf_.size(); }
  ByteView view() const { return ByteView(buf_.data(), buf_.size()); }

  // Drops the first n commands, keeping the rest as a valid batch.
  void drop_front(uint32_t n) {
    if (n == 0) return;
    if (n >= count()) {
      clear();
      return;
    }
    size_t cut = offsets_[n];
    size_t shift = cut - kBatchHeaderSize;
    buf_.erase(buf_.begin() + static_cast<std::ptrdiff_t>(kBatchHeaderSize),
               buf_.begin() + static_cast<std::ptrdiff_t>(cut));
    offsets_.erase(offsets_.begin(), offsets_.begin() + n);
    for (auto& o : offsets_) o -= shift;
    patch_count();
  }

 private:
  void patch_count() {
    uint32_t c = count();
    std::memcpy(buf_.data() + 4, &c, 4);
  }
  std::vector<uint8_t> buf_;
  std::vector<size_t> offsets_;
};

// ---- decoding (enclave side) ----

namespace detail {
// One pass over the batch. With Fn = nullptr-like validation only.
template <typename Fn>
Status walk_batch(ByteView in, const BatchLimits& limits, std::vector<std::string_view>& argv,
                  Fn&& fn, uint32_t* count_out) {
  ByteReader r(in);
  uint32_t magic = r.u32();
  uint32_t count = r.u32();
  if (!r.ok()) return make_error(Errc::kFormat, "kv batch: truncated header");
  if (magic != kBatchMagic) return make_error(Errc::kFormat, "kv batch: bad magic");
  if (count > limits.max_commands) {
    return make_error(Errc::kFormat, "kv batch: " + std::to_string(count) +
                                         " commands, more than the limit of " +
                                         std::to_string(limits.max_commands));
  }
  // Each command needs at least 4 (argc) + 4 (one length) bytes.
  if (static_cast<uint64_t>(count) * 8 > r.remaining()) {
    return make_error(Errc::kFormat, "kv batch: command count larger than the batch");
  }
  if (count_out != nullptr) *count_out = count;
  for (uint32_t i = 0; i < count; ++i) {
    uint32_t argc = r.u32();
    if (!r.ok()) return make_error(Errc::kFormat, "kv batch: truncated command");
    if (argc == 0) return make_error(Errc::kFormat, "kv batch: command with no arguments");
    if (argc > limits.max_args) {
      return make_error(Errc::kFormat, "kv batch: command with " + std::to_string(argc) +
                                           " arguments, more than the limit of " +
                                           std::to_string(limits.max_args));
    }
    if (static_cast<uint64_t>(argc) * 4 > r.remaining()) {
      return make_error(Errc::kFormat, "kv batch: argument count larger than the batch");
    }
    argv.clear();
    for (uint32_t a = 0; a < argc; ++a) {
      uint32_t len = r.u32();
      if (!r.ok()) return make_error(Errc::kFormat, "kv batch: truncated argument");
      if (len > limits.max_arg_len) {
        return make_error(Errc::kFormat, "kv batch: argument of " + std::to_string(len) +
                                             " bytes, more than the limit of " +
                                             std::to_string(limits.max_arg_len));
      }
      ByteView b = r.bytes(len);
      if (!r.ok()) return make_error(Errc::kFormat, "kv batch: truncated argument");
      if constexpr (!std::is_same_v<std::decay_t<Fn>, std::nullptr_t>)
        argv.push_back(as_string_view(b));
    }
    if constexpr (!std::is_same_v<std::decay_t<Fn>, std::nullptr_t>) {
      const auto& cargv = static_cast<const std::vector<std::string_view>&>(argv);
      if constexpr (std::is_void_v<std::invoke_result_t<Fn&, uint32_t,
                                                        const std::vector<std::string_view>&>>) {
        fn(i, cargv);
      } else {
        if (!fn(i, cargv)) return ok_status();
      }
    }
  }
  if (!r.at_end())
    return make_error(Errc::kFormat, "kv batch: trailing bytes after the last command");
  return ok_status();
}
}  // namespace detail

// Checks the whole batch (no allocation beyond what the limits allow) and returns its command
// count in *count.
inline Status validate_batch(ByteView in, const BatchLimits& limits, uint32_t* count) {
  std::vector<std::string_view> unused;
  return detail::walk_batch(in, limits, unused, nullptr, count);
}

// Validates the batch, then calls fn(index, argv) for each command in order; fn returns void,
// or bool where false stops early (the rest is not visited). argv's views point into `in` and are
// valid during the call only.
template <typename Fn>
Status decode_batch(ByteView in, const BatchLimits& limits, Fn&& fn) {
  uint32_t count = 0;
  CM_TRY(validate_batch(in, limits, &count));
  std::vector<std::string_view> argv;
  return detail::walk_batch(in, limits, argv, fn, nullptr);
}

// ---- RESP reply writers for the trusted side ----
namespace resp {
inline void append_int_line(std::string& out, char prefix, int64_t v) {
  char buf[24];
  buf[0] = prefix;
  auto r = std::to_chars(buf + 1, buf + sizeof(buf), v);
  out.append(buf, static_cast<size_t>(r.ptr - buf));
  out.append("\r\n");
}
inline void simple(std::string& out, std::string_view s) {
  out.push_back('+');
  out.append(s);
  out.append("\r\n");
}
// msg carries its own prefix ("ERR ...", "OOM ..."); CR/LF become spaces, as Redis does.
inline void error(std::string& out, std::string_view msg) {
  out.push_back('-');
  size_t start = out.size();
  out.append(msg);
  for (size_t i = start; i < out.size(); ++i) {
    if (out[i] == '\r' || out[i] == '\n') out[i] = ' ';
  }
  out.append("\r\n");
}
inline void integer(std::string& out, int64_t v) {
  append_int_line(out, ':', v);
}
inline void bulk(std::string& out, std::string_view s) {
  append_int_line(out, '$', static_cast<int64_t>(s.size()));
  out.append(s);
  out.append("\r\n");
}
inline void null_bulk(std::string& out) {
  out.append("$-1\r\n");
}
inline void array_header(std::string& out, int64_t n) {
  append_int_line(out, '*', n);
}

// Strict decimal int64 as Redis's string2ll: optional '-', digits, no '+', no spaces, no leading
// zeros, no "-0", must fit. False on anything else.
inline bool parse_int64(std::string_view s, int64_t* out) {
  if (s.empty() || s.size() > 20) return false;
  if (s.size() == 1 && s[0] == '0') {
    *out = 0;
    return true;
  }
  size_t i = 0;
  bool neg = s[0] == '-';
  if (neg) i = 1;
  if (i >= s.size() || s[i] < '1' || s[i] > '9') return false;
  uint64_t v = 0;
  for (; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    uint64_t d = static_cast<uint64_t>(s[i] - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  constexpr uint64_t kMinMag = static_cast<uint64_t>(INT64_MAX) + 1;
  if (neg) {
    if (v > kMinMag) return false;
    *out = v == kMinMag ? INT64_MIN : -static_cast<int64_t>(v);
  } else {
    if (v > static_cast<uint64_t>(INT64_MAX)) return false;
    *out = static_cast<int64_t>(v);
  }
  return true;
}
}  // namespace resp

}  // namespace constmig::kvstore
