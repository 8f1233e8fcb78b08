// sqlite: an in-memory SQLite database in the enclave heap (workload suite). Two tables, kv
// (k INTEGER PRIMARY KEY, v TEXT, n INTEGER, g INTEGER, index on n) and grp (the join side),
// under a load of point SELECTs, range/aggregate/join queries and INSERT/UPDATE/DELETE.
// ECALLs are short (bounded work each) so a migration can quiesce between them.
#pragma once

#include <cstdint>

#define SQLITE_EDL(ECALL, OCALL)                                                                  \
  ECALL(sq_init, "in: u64 seed, u64 rows: open the database, create the schema (once)")           \
  ECALL(sq_build, "in: u64 budget: insert up to budget rows; out: BuildStep")                     \
  ECALL(sq_ops,                                                                                   \
        "in: u64 seed, u32 ops, u32 write_permille: queries and writes; out: u64 points, found, " \
        "ranges, writes, seq, digest, rows, reads")                                               \
  ECALL(sq_anchor,                                                                                \
        "in: u64 seq, u64 digest (the host's last view): out: u8 ok, u64 seq, u64 digest, str32 " \
        "why")                                                                                    \
  ECALL(sq_verify,                                                                                \
        "in: u8 begin, u64 budget, u64 host_seq, u64 host_digest: re-run the verification "       \
        "queries; out: VerifyStep")                                                               \
  ECALL(sq_corrupt, "TESTING ONLY: change one row with SQL without updating the digests")         \
  ECALL(sq_info, "out: u64 rows, u64 seq, u64 digest, u64 pages")

namespace sqlitewl {
inline constexpr uint64_t kBytesPerRow =
    80;  // measured ~76 B of enclave heap per row (pages + index)
inline constexpr uint64_t kBuildBudget = 5000;    // rows per sq_build (~25 ms instrumented)
inline constexpr uint32_t kOpsPerBatch = 64;      // SQL statements per sq_ops
inline constexpr uint32_t kWritePermille = 100;   // 10% writes
inline constexpr uint64_t kVerifyBudget = 50000;  // rows per sq_verify step
}  // namespace sqlitewl
