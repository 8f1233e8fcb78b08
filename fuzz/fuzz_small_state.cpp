// libFuzzer target: the SMALL_STATE plaintext parse that MigImportSmall runs inside the target
// enclave after opening the record (src/trusted/migration/small_state_format.cpp).
//
// Input: byte 0 selects the target's expected layout (byte 0 % 3):
//   0  a fixed layout (256 bytes of globals, 64 MiB heap limit)
//   1  the layout the plaintext itself announces (globals address and length, heap base, and
//      its own heap limit as ours), so that the later checks are reached
//   2  like 1 with a zero heap limit
// then the plaintext. A parsed state must satisfy the checks it claims, point into the input,
// and re-encode to exactly the input.
#include <cstring>
#include <vector>

#include "fuzz_util.h"
#include "trusted/migration/small_state_format.h"

using namespace constmig;
using namespace constmig::trusted::mig;

namespace {

uint64_t u64_at(ByteView b, size_t off) {
  uint64_t v = 0;
  if (b.size() >= off + 8) std::memcpy(&v, b.data() + off, 8);
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  ByteView pt(data + 1, size - 1);
  SmallStateExpect e;
  switch (data[0] % 3) {
    case 0:
      e = {0x7f0000001000ull, 256, 0x7f1000000000ull, 64ull << 20};
      break;
    default:
      e = {u64_at(pt, 8), u64_at(pt, 16), u64_at(pt, 24), data[0] % 3 == 1 ? u64_at(pt, 40) : 0};
      break;
  }
  auto r = parse_small_state(pt, e);
  if (!r.ok()) {
    FUZZ_CHECK(r.error().code == Errc::kFormat && !r.error().message.empty());
    return 0;
  }
  const SmallState& s = *r;
  FUZZ_CHECK(pt.size() >= kSmallStateHeader);
  FUZZ_CHECK(s.globals_begin == e.globals_begin && s.globals_len == e.globals_len);
  FUZZ_CHECK(s.globals.size() == s.globals_len && fuzz::inside(s.globals, pt));
  FUZZ_CHECK(pt.size() == kSmallStateHeader + s.globals_len);
  FUZZ_CHECK(s.heap_base == e.heap_base);
  FUZZ_CHECK(s.heap_top % abi::kPageSize == 0 && s.heap_top <= e.heap_limit);
  std::vector<uint8_t> out;
  encode_small_state(s, out);
  std::vector<uint8_t> want(pt.begin(), pt.end());  // (the parser requires reserved == 0)
  FUZZ_CHECK(out == want);
  return 0;
}
