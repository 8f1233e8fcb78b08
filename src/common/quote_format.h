// Emulated quote: wire layout and codec, shared by the untrusted platform (which signs and
// verifies with OpenSSL on the host) and the trusted side (which verifies a migration peer's
// quote inside the enclave). Standard library + src/common only.
//
// Wire layout of an encoded quote (all integers little-endian), 208 bytes:
//   offset  size  field
//        0     8  magic "CMQUOTE\0"
//        8     2  version = 1
//       10     2  flags = 0 (no flags defined; anything else is refused)
//       12     4  body length = 192 (bytes after this 16-byte header)
//       16    32  measurement (host_measure.h)
//       48    64  report_data (chosen by the enclave, e.g. a hash binding an ephemeral key)
//      112    32  platform_key_id = SHA-256 of the platform's raw 32-byte Ed25519 public key
//      144    64  signature: Ed25519 (pure, RFC 8032) over bytes [0, 144)
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common/bytes.h"
#include "common/result.h"

namespace constmig::quote {

using Measurement = std::array<uint8_t, 32>;
using PlatformKeyId = std::array<uint8_t, 32>;

inline constexpr char kQuoteMagic[8] = {'C', 'M', 'Q', 'U', 'O', 'T', 'E', '\0'};
inline constexpr uint16_t kQuoteVersion = 1;
inline constexpr size_t kQuoteHeaderSize = 16;
inline constexpr size_t kQuoteBodySize = 32 + 64 + 32 + 64;
inline constexpr size_t kQuoteSize = kQuoteHeaderSize + kQuoteBodySize;  // 208
inline constexpr size_t kQuoteSignedSize = kQuoteSize - 64;  // 144: all but the signature

struct Quote {
  Measurement measurement{};
  std::array<uint8_t, 64> report_data{};
  PlatformKeyId platform_key_id{};
  std::array<uint8_t, 64> signature{};
};

// Bytes [0, kQuoteSignedSize) of the encoding: what the signature covers.
inline void write_signed_part(const Quote& q, std::vector<uint8_t>& out) {
  ByteWriter w(out);
  w.bytes(ByteView(reinterpret_cast<const uint8_t*>(kQuoteMagic), sizeof kQuoteMagic));
  w.u16(kQuoteVersion);
  w.u16(0);
  w.u32(static_cast<uint32_t>(kQuoteBodySize));
  w.bytes(q.measurement);
  w.bytes(q.report_data);
  w.bytes(q.platform_key_id);
}

inline std::vector<uint8_t> encode_quote(const Quote& q) {
  std::vector<uint8_t> out;
  out.reserve(kQuoteSize);
  write_signed_part(q, out);
  ByteWriter(out).bytes(q.signature);
  return out;
}

inline Result<Quote> decode_quote(ByteView bytes) {
  if (bytes.size() < sizeof kQuoteMagic ||
      std::memcmp(bytes.data(), kQuoteMagic, sizeof kQuoteMagic) != 0) {
    return make_error(Errc::kFormat,
                      "the peer's quote does not start with the magic \"CMQUOTE\": the "
                      "peer is not a constmig platform or the stream is out of step");
  }
  ByteReader r(bytes);
  (void)r.bytes(sizeof kQuoteMagic);
  uint16_t version = r.u16();
  uint16_t flags = r.u16();
  uint32_t body_len = r.u32();
  if (!r.ok())
    return make_error(Errc::kFormat, "the peer's quote is truncated inside its 16-byte header");
  if (version != kQuoteVersion) {
    return make_error(Errc::kFormat, "the peer's quote has version " + std::to_string(version) +
                                         ", this build understands version " +
                                         std::to_string(kQuoteVersion) +
                                         ": run the same constmig release on both hosts");
  }
  if (flags != 0) {
    return make_error(Errc::kFormat, "the peer's quote has unknown flags " + std::to_string(flags) +
                                         ": run the same constmig release on both hosts");
  }
  if (body_len != kQuoteBodySize || bytes.size() != kQuoteSize) {
    return make_error(Errc::kFormat,
                      "the peer's quote is " + std::to_string(bytes.size()) +
                          " bytes with a body length of " + std::to_string(body_len) +
                          "; a version-1 quote is exactly " + std::to_string(kQuoteSize) +
                          " bytes (body " + std::to_string(kQuoteBodySize) +
                          "): it was truncated or corrupted in transit");
  }
  Quote q;
  auto copy = [&](auto& field) {
    ByteView b = r.bytes(field.size());
    std::copy(b.begin(), b.end(), field.begin());
  };
  copy(q.measurement);
  copy(q.report_data);
  copy(q.platform_key_id);
  copy(q.signature);
  if (!r.ok() || !r.at_end())
    return make_error(Errc::kInternal, "quote decoder length bookkeeping is wrong: please report");
  return q;
}

}  // namespace constmig::quote
