// The SMALL_STATE plaintext (TRUSTED): what MigFreeze seals on the source and MigImportSmall
// parses on the target after opening the record. Standard library and src/common only.
//
// Layout (little-endian), kSmallStateHeader bytes then the globals:
//    0 u32 version (kSmallStateVersion)   4 u32 reserved (must be 0)
//    8 u64 globals_begin   16 u64 globals_len   24 u64 heap_base   32 u64 heap_top
//   40 u64 heap_limit (the source's; informational)
//   48 globals_len bytes: the source's enclave globals
//
// The plaintext comes out of an AEAD open, so it was produced by a source enclave holding the
// migration key; it is still parsed as untrusted input (a buggy or different image must be
// refused, never installed).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/bytes.h"
#include "common/result.h"

namespace constmig::trusted::mig {

inline constexpr uint32_t kSmallStateVersion = 1;
inline constexpr size_t kSmallStateHeader = 48;  // u32 version, u32 0, 5 x u64 layout

// What the target expects: its own image's layout and heap limit.
struct SmallStateExpect {
  uint64_t globals_begin = 0;
  uint64_t globals_len = 0;
  uint64_t heap_base = 0;
  uint64_t heap_limit = 0;  // this enclave's heap limit (boot page)
};

// A parsed small state. `globals` points into the parsed plaintext.
struct SmallState {
  uint64_t globals_begin = 0;
  uint64_t globals_len = 0;
  uint64_t heap_base = 0;
  uint64_t heap_top = 0;
  uint64_t heap_limit = 0;  // the source's heap limit, not checked
  ByteView globals;
};

// Checks, in this order: the header is complete, has version kSmallStateVersion and a zero
// reserved field; the globals
// (address, length, and exactly that many bytes after the header) match `expect`; the heap base
// matches and the heap top is page-aligned and within expect.heap_limit. Errc::kFormat with the
// message MigImportSmall reports (after "migration refused: ").
Result<SmallState> parse_small_state(ByteView plaintext, const SmallStateExpect& expect);

// Appends the encoding of `s` (reserved field 0, then s.globals) to `out`.
void encode_small_state(const SmallState& s, std::vector<uint8_t>& out);

}  // namespace constmig::trusted::mig
