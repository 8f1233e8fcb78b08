// btree: a B+-tree (u64 -> u64) in the enclave heap, the SGXGauge-style "B-tree" workload.
// ECALLs are short (bounded work each) so a migration can quiesce between them.
#pragma once

#include <cstdint>

#define BTREE_EDL(ECALL, OCALL)                                                                 \
  ECALL(bt_init, "in: u64 seed, u64 keys: plan the bulk load (once)")                           \
  ECALL(bt_build, "in: u64 budget: bulk-load up to budget keys; out: BuildStep")                \
  ECALL(bt_ops,                                                                                 \
        "in: u64 seed, u32 ops, u32 write_permille: lookups and upserts; out: u64 lookups, "    \
        "found, writes, inserted, seq, sum, count")                                             \
  ECALL(bt_anchor,                                                                              \
        "in: u64 seq, u64 sum (the host's last view): out: u8 ok, u64 seq, u64 sum, str32 why") \
  ECALL(bt_verify,                                                                              \
        "in: u8 begin, u64 budget, u64 host_seq, u64 host_sum: walk the tree; out: VerifyStep") \
  ECALL(bt_corrupt, "TESTING ONLY: flip one value without updating the checksum")               \
  ECALL(bt_info, "out: u64 keys, u64 seq, u64 sum, u32 depth")

namespace btree {
inline constexpr uint64_t kBytesPerKey = 26;      // leaves at 75% fill + inner nodes + heap headers
inline constexpr uint64_t kBuildBudget = 200000;  // keys per bt_build (~20 ms)
inline constexpr uint32_t kOpsPerBatch = 256;
inline constexpr uint32_t kWritePermille = 100;    // 10% upserts
inline constexpr uint64_t kVerifyBudget = 100000;  // keys per bt_verify step
}  // namespace btree
