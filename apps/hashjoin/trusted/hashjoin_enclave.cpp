// hashjoin enclave (TRUSTED): the JoinStore behind the hashjoin ECALLs (hashjoin_edl.h).
#include "hashjoin/hashjoin_edl.h"
#include "hashjoin/trusted/hashjoin_engine.h"
#include "trusted/enclave_edl.h"

CONSTMIG_ENCLAVE(hashjoin, HASHJOIN_EDL)

using constmig::ByteReader;
using constmig::trusted::EcallIo;
namespace abi = constmig::abi;
using workload::put_u64;

namespace {

hashjoin::JoinStore& store() {
  static hashjoin::JoinStore* s = new hashjoin::JoinStore();  // in the enclave heap; migrates
  return *s;
}
std::mutex g_build_mu;

bool ready(EcallIo& io) {
  if (!store().ready()) {
    io.error = "hashjoin relations not built: call hj_init and hj_build until done";
    return false;
  }
  return true;
}

}  // namespace

int32_t ecall_hj_init(EcallIo& io) {
  ByteReader r(io.in);
  uint64_t seed = r.u64(), parts = r.u64();
  if (!r.at_end() || parts == 0 || parts > (1ull << 24)) {
    io.error = "hj_init expects u64 seed, u64 partitions (1..2^24)";
    return abi::kEcallBadInput;
  }
  std::lock_guard lk(g_build_mu);
  std::string err;
  if (!store().init(seed, parts, &err)) {
    io.error = err;
    return abi::kEcallAppError;
  }
  return abi::kEcallOk;
}

int32_t ecall_hj_build(EcallIo& io) {
  ByteReader r(io.in);
  uint64_t n = r.u64();
  if (!r.at_end() || n == 0 || n > 4096) {
    io.error = "hj_build expects u64 max_partitions (1..4096)";
    return abi::kEcallBadInput;
  }
  std::lock_guard lk(g_build_mu);
  if (store().parts() == 0) {
    io.error = "hashjoin: call hj_init first";
    return abi::kEcallAppError;
  }
  store().build_step(n).encode(io.out);
  return abi::kEcallOk;
}

int32_t ecall_hj_join(EcallIo& io) {
  if (!ready(io)) return abi::kEcallAppError;
  ByteReader r(io.in);
  uint64_t p = r.u64();
  if (!r.at_end() || p >= store().parts()) {
    io.error = "hj_join expects u64 partition < " + std::to_string(store().parts());
    return abi::kEcallBadInput;
  }
  hashjoin::JoinResult j = store().join(p);
  put_u64(io.out, j.probed);
  put_u64(io.out, j.matches);
  put_u64(io.out, j.checksum);
  return abi::kEcallOk;
}

int32_t ecall_hj_expected(EcallIo& io) {
  if (!ready(io)) return abi::kEcallAppError;
  hashjoin::Expected e = store().expected();
  put_u64(io.out, e.matches);
  put_u64(io.out, e.checksum);
  put_u64(io.out, e.digest);
  return abi::kEcallOk;
}

int32_t ecall_hj_verify(EcallIo& io) {
  if (!ready(io)) return abi::kEcallAppError;
  ByteReader r(io.in);
  uint8_t begin = r.u8();
  uint64_t n = r.u64();
  if (!r.at_end() || n == 0 || n > 4096) {
    io.error = "hj_verify expects u8 begin, u64 max_partitions (1..4096)";
    return abi::kEcallBadInput;
  }
  if (begin) store().verify_begin();
  store().verify_step(n).encode(io.out);
  return abi::kEcallOk;
}

int32_t ecall_hj_corrupt(EcallIo& io) {
  if (!ready(io)) return abi::kEcallAppError;
  store().corrupt();
  return abi::kEcallOk;
}

int32_t ecall_hj_info(EcallIo& io) {
  put_u64(io.out, store().parts());
  return abi::kEcallOk;
}
