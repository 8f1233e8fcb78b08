// xsbench: XSBench-like cross-section lookups in a large nuclide grid table (SGXGauge "XSBench").
#pragma once

#include <cstdint>

#define XSBENCH_EDL(ECALL, OCALL)                                                           \
  ECALL(xs_init, "in: u64 seed, u64 gridpoints per nuclide: plan the table (once)")         \
  ECALL(xs_build, "in: u64 budget (grid points): generate nuclide grids; out: BuildStep")   \
  ECALL(xs_lookup, "in: u64 seed, u64 first, u64 count: lookups; out: u64 count, checksum") \
  ECALL(xs_verify,                                                                          \
        "in: u8 begin, u64 budget: grid digest + fixed lookup checksum; out: VerifyStep")   \
  ECALL(xs_corrupt, "TESTING ONLY: change one micro cross-section")                         \
  ECALL(xs_info, "out: u64 gridpoints per nuclide")

namespace xsbench {
inline constexpr uint64_t kBuildPoints = 1u << 18;   // grid points per xs_build (~40 ms)
inline constexpr uint64_t kVerifyPoints = 1u << 19;  // grid points digested per xs_verify
inline constexpr uint64_t kLookupsPerBatch = 16;
}  // namespace xsbench
