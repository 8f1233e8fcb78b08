// hashjoin: hash join of two generated relations in the enclave heap (SGXGauge "HashJoin").
#pragma once

#include <cstdint>

#define HASHJOIN_EDL(ECALL, OCALL)                                                          \
  ECALL(hj_init, "in: u64 seed, u64 partitions: plan the relations (once)")                 \
  ECALL(hj_build, "in: u64 max_partitions: generate up to that many; out: BuildStep")       \
  ECALL(hj_join, "in: u64 partition: build R_p, probe S_p; out: u64 probed, matches, sum")  \
  ECALL(hj_expected, "out: u64 matches, u64 checksum, u64 digest of the whole join (gen.)") \
  ECALL(hj_verify, "in: u8 begin, u64 max_partitions: recompute the join; out: VerifyStep") \
  ECALL(hj_corrupt, "TESTING ONLY: flip one R payload")                                     \
  ECALL(hj_info, "out: u64 partitions")

namespace hashjoin {
inline constexpr uint64_t kBuildParts = 32;   // partitions per hj_build (~15 ms)
inline constexpr uint64_t kVerifyParts = 32;  // partitions per hj_verify step
}  // namespace hashjoin
