// Helpers shared by the libFuzzer targets (fuzz/README.md).
//
// FUZZ_CHECK turns a broken invariant (a round trip that does not reproduce its input, two
// equivalent ways of decoding that disagree) into a crash that libFuzzer records, with the
// condition on stderr.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <vector>

#include "common/bytes.h"
#include "common/wire_format.h"

#define FUZZ_CHECK(cond)                                                                  \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "FUZZ_CHECK failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      __builtin_trap();                                                                   \
    }                                                                                     \
  } while (0)

namespace constmig::fuzz {

inline bool same_bytes(ByteView a, ByteView b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

// True when `inner` lies entirely inside `outer` (decoded views must point into their input).
inline bool inside(ByteView inner, ByteView outer) {
  if (inner.empty()) return true;
  auto o = reinterpret_cast<uintptr_t>(outer.data());
  auto i = reinterpret_cast<uintptr_t>(inner.data());
  return i >= o && i + inner.size() <= o + outer.size();
}

// A copy of a migration stream in which every header that can be located (walking from the
// start: 24 bytes with the frame magic, then its announced payload) gets the CRC32C it
// should have. Lets mutations of type, flags, length and seq reach the checks behind the CRC.
inline std::vector<uint8_t> fix_header_crcs(ByteView stream) {
  std::vector<uint8_t> out(stream.begin(), stream.end());
  size_t pos = 0;
  while (out.size() - pos >= wire::kHeaderSize) {
    uint32_t magic = 0, len = 0;
    std::memcpy(&magic, out.data() + pos, 4);
    if (magic != wire::kFrameMagic) break;
    std::memcpy(&len, out.data() + pos + 8, 4);
    uint32_t crc = wire::crc32c(ByteView(out.data() + pos, 20));
    std::memcpy(out.data() + pos + 20, &crc, 4);
    if (len > out.size() - pos - wire::kHeaderSize) break;
    pos += wire::kHeaderSize + len;
  }
  return out;
}

}  // namespace constmig::fuzz
