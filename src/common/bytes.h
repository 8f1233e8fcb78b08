// Bounds-checked little-endian byte reader/writer for wire formats and ECALL marshalling.
// Every length read from untrusted input is checked against the remaining input (and the
// caller's limit) before anything is allocated.
#pragma once

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace constmig {

using ByteView = std::span<const uint8_t>;
using MutableByteView = std::span<uint8_t>;

inline ByteView as_bytes_view(std::string_view s) {
  return ByteView(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}
inline std::string_view as_string_view(ByteView b) {
  return std::string_view(reinterpret_cast<const char*>(b.data()), b.size());
}

class ByteWriter {
 public:
  explicit ByteWriter(std::vector<uint8_t>& out) : out_(out) {}
  void u8(uint8_t v) { out_.push_back(v); }
  void u16(uint16_t v) { put(&v, 2); }
  void u32(uint32_t v) { put(&v, 4); }
  void u64(uint64_t v) { put(&v, 8); }
  void bytes(ByteView b) { out_.insert(out_.end(), b.begin(), b.end()); }
  void str32(std::string_view s) {  // u32 length + bytes
    u32(static_cast<uint32_t>(s.size()));
    bytes(as_bytes_view(s));
  }

 private:
  void put(const void* p, size_t n) {  // host is little-endian (x86-64); static_assert below
    auto* b = static_cast<const uint8_t*>(p);
    out_.insert(out_.end(), b, b + n);
  }
  std::vector<uint8_t>& out_;
};

// The little-endian u64s, one after the other (a typical ECALL input).
inline std::vector<uint8_t> u64s(std::initializer_list<uint64_t> v) {
  std::vector<uint8_t> out;
  ByteWriter w(out);
  for (uint64_t x : v) w.u64(x);
  return out;
}

class ByteReader {
 public:
  explicit ByteReader(ByteView in) : in_(in) {}
  bool ok() const { return ok_; }
  size_t remaining() const { return ok_ ? in_.size() - pos_ : 0; }
  bool at_end() const { return ok_ && pos_ == in_.size(); }
  uint8_t u8() { return get<uint8_t>(); }
  uint16_t u16() { return get<uint16_t>(); }
  uint32_t u32() { return get<uint32_t>(); }
  uint64_t u64() { return get<uint64_t>(); }
  // A view of the next n bytes (empty and !ok() if not available).
  ByteView bytes(size_t n) {
    if (!ok_ || n > in_.size() - pos_) {
      ok_ = false;
      return {};
    }
    ByteView v = in_.subspan(pos_, n);
    pos_ += n;
    return v;
  }
  // u32 length (<= limit) + bytes.
  std::string_view str32(uint32_t limit) {
    uint32_t n = u32();
    if (!ok_ || n > limit) {
      ok_ = false;
      return {};
    }
    return as_string_view(bytes(n));
  }

 private:
  template <typename T>
  T get() {
    T v{};
    if (!ok_ || sizeof(T) > in_.size() - pos_) {
      ok_ = false;
      return v;
    }
    std::memcpy(&v, in_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  ByteView in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "constmig wire formats assume LE hosts");

}  // namespace constmig
