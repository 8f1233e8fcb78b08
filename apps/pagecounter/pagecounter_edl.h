// pagecounter: the migration oracle (QEMU migration-test style). ECALLs and OCALLs are
// declared here once; both sides' glue is generated from this list.
//
// Each 4 KiB page of an N MiB heap area holds: u64 (index ^ salt), u64 round, u64 touches,
// then 4072 pattern bytes derived from the index. pc_step increments `round` on every page;
// pc_touch increments `touches` on pseudo-random pages; pc_check proves every page is
// present, in place, not stale and not applied twice.
#pragma once

#include <cstdint>

#define PAGECOUNTER_EDL(ECALL, OCALL)                                                   \
  ECALL(pc_init, "in: u64 MiB of pages to allocate (once)")                             \
  ECALL(pc_step, "increment the round counter of every page; out: u64 new round")       \
  ECALL(pc_touch, "in: u64 seed, u64 count: increment `touches` of count random pages") \
  ECALL(pc_check, "verify every page; out: u64 round, u64 pages, u64 touches")

namespace pagecounter {
inline constexpr uint64_t kPageSize = 4096;
inline constexpr uint64_t kSalt = 0x9e3779b97f4a7c15ull;
inline constexpr uint64_t kMaxMib = 64ull << 10;  // 64 GiB
inline uint8_t pattern_byte(uint64_t index, uint64_t j) {
  return static_cast<uint8_t>((index * 131u + j * 7u + (index >> 8)) & 0xff);
}
}  // namespace pagecounter
