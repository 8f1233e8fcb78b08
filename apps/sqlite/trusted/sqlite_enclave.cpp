// sqlite enclave (TRUSTED): the SqliteStore behind the sqlite ECALLs (sqlite_edl.h).
#include "sqlite/sqlite_edl.h"
#include "sqlite/trusted/sqlite_engine.h"
#include "trusted/enclave_edl.h"

CONSTMIG_ENCLAVE(sqlite, SQLITE_EDL)

using constmig::ByteReader;
using constmig::trusted::EcallIo;
namespace abi = constmig::abi;
using workload::put_str;
using workload::put_u64;

namespace {

sqlitewl::SqliteStore& store() {
  // Constructed on first use inside the enclave heap; never destroyed (it migrates, and so do
  // the database's pages and SQLite's globals).
  static sqlitewl::SqliteStore* s = new sqlitewl::SqliteStore();
  return *s;
}

bool ready(EcallIo& io) {
  if (!store().ready()) {
    io.error = "sqlite not built: call sq_init and sq_build until done";
    return false;
  }
  return true;
}

}  // namespace

int32_t ecall_sq_init(EcallIo& io) {
  ByteReader r(io.in);
  uint64_t seed = r.u64(), rows = r.u64();
  if (!r.at_end() || rows == 0 || rows > (1ull << 32)) {
    io.error = "sq_init expects u64 seed, u64 rows (1..2^32)";
    return abi::kEcallBadInput;
  }
  std::string err;
  if (!store().init(seed, rows, &err)) {
    io.error = err;
    return abi::kEcallAppError;
  }
  return abi::kEcallOk;
}

int32_t ecall_sq_build(EcallIo& io) {
  ByteReader r(io.in);
  uint64_t budget = r.u64();
  if (!r.at_end() || budget == 0 || budget > 1000000) {
    io.error = "sq_build expects u64 budget (1..10^6 rows)";
    return abi::kEcallBadInput;
  }
  workload::BuildStep s;
  std::string err;
  if (!store().build_step(budget, &s, &err)) {
    io.error = err;
    return abi::kEcallAppError;
  }
  s.encode(io.out);
  return abi::kEcallOk;
}

int32_t ecall_sq_ops(EcallIo& io) {
  if (!ready(io)) return abi::kEcallAppError;
  ByteReader r(io.in);
  uint64_t seed = r.u64();
  uint32_t ops = r.u32(), permille = r.u32();
  if (!r.at_end() || ops > 4096 || permille > 1000) {
    io.error = "sq_ops expects u64 seed, u32 ops (<= 4096), u32 write_permille (<= 1000)";
    return abi::kEcallBadInput;
  }
  sqlitewl::BatchResult b;
  std::string err;
  if (!store().run_batch(seed, ops, permille, &b, &err)) {
    io.error = err;
    return abi::kEcallAppError;
  }
  for (uint64_t x : {b.points, b.found, b.ranges, b.writes, b.seq, b.digest, b.rows, b.reads}) {
    put_u64(io.out, x);
  }
  return abi::kEcallOk;
}

int32_t ecall_sq_anchor(EcallIo& io) {
  if (!ready(io)) return abi::kEcallAppError;
  ByteReader r(io.in);
  uint64_t seq = r.u64(), digest = r.u64();
  if (!r.at_end()) {
    io.error = "sq_anchor expects u64 seq, u64 digest";
    return abi::kEcallBadInput;
  }
  uint64_t cs = 0, cd = 0;
  std::string why;
  bool ok = store().anchor(seq, digest, &cs, &cd, &why);
  io.out.push_back(ok ? 1 : 0);
  put_u64(io.out, cs);
  put_u64(io.out, cd);
  put_str(io.out, why);
  return abi::kEcallOk;
}

int32_t ecall_sq_verify(EcallIo& io) {
  if (!ready(io)) return abi::kEcallAppError;
  ByteReader r(io.in);
  uint8_t begin = r.u8();
  uint64_t budget = r.u64(), hseq = r.u64(), hdigest = r.u64();
  if (!r.at_end() || budget == 0 || budget > 10000000) {
    io.error = "sq_verify expects u8 begin, u64 budget (1..10^7), u64 host_seq, u64 host_digest";
    return abi::kEcallBadInput;
  }
  if (begin) store().verify_begin();
  store().verify_step(budget, hseq, hdigest).encode(io.out);
  return abi::kEcallOk;
}

int32_t ecall_sq_corrupt(EcallIo& io) {
  if (!ready(io)) return abi::kEcallAppError;
  std::string err;
  if (!store().corrupt(&err)) {
    io.error = err;
    return abi::kEcallAppError;
  }
  return abi::kEcallOk;
}

int32_t ecall_sq_info(EcallIo& io) {
  if (!ready(io)) return abi::kEcallAppError;
  uint64_t rows, seq, digest, pages;
  store().info(&rows, &seq, &digest, &pages);
  for (uint64_t x : {rows, seq, digest, pages}) put_u64(io.out, x);
  return abi::kEcallOk;
}
