// The SMALL_STATE plaintext (TRUSTED). See small_state_format.h.
#include "trusted/migration/small_state_format.h"

#include <string>

#include "common/enclave_abi.h"

namespace constmig::trusted::mig {

Result<SmallState> parse_small_state(ByteView plaintext, const SmallStateExpect& expect) {
  ByteReader r(plaintext);
  uint32_t ver = r.u32();
  uint32_t reserved = r.u32();
  SmallState s;
  s.globals_begin = r.u64();
  s.globals_len = r.u64();
  s.heap_base = r.u64();
  s.heap_top = r.u64();
  s.heap_limit = r.u64();
  if (!r.ok() || ver != kSmallStateVersion || reserved != 0) {
    return make_error(Errc::kFormat, "bad small-state header");
  }
  if (s.globals_begin != expect.globals_begin || s.globals_len != expect.globals_len ||
      r.remaining() != s.globals_len) {
    return make_error(Errc::kFormat,
                      "the source's enclave globals do not match this image's layout");
  }
  if (s.heap_base != expect.heap_base || s.heap_top % abi::kPageSize != 0 ||
      s.heap_top > expect.heap_limit) {
    return make_error(Errc::kFormat, "the source's heap (" + std::to_string(s.heap_top >> 20) +
                                         " MiB in use) does not fit this enclave's heap limit (" +
                                         std::to_string(expect.heap_limit >> 20) +
                                         " MiB): start the target with a larger --max-memory");
  }
  s.globals = r.bytes(s.globals_len);
  return s;
}

void encode_small_state(const SmallState& s, std::vector<uint8_t>& out) {
  ByteWriter w(out);
  w.u32(kSmallStateVersion);
  w.u32(0);
  w.u64(s.globals_begin);
  w.u64(s.globals_len);
  w.u64(s.heap_base);
  w.u64(s.heap_top);
  w.u64(s.heap_limit);
  w.bytes(s.globals);
}

}  // namespace constmig::trusted::mig
