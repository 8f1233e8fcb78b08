// xsbench enclave (TRUSTED): the XsStore behind the xsbench ECALLs (xsbench_edl.h).
#include "trusted/enclave_edl.h"
#include "xsbench/trusted/xsbench_engine.h"
#include "xsbench/xsbench_edl.h"

CONSTMIG_ENCLAVE(xsbench, XSBENCH_EDL)

using constmig::ByteReader;
using constmig::trusted::EcallIo;
namespace abi = constmig::abi;
using workload::put_u64;

namespace {

xsbench::XsStore& store() {
  static xsbench::XsStore* s = new xsbench::XsStore();  // in the enclave heap; migrates
  return *s;
}
std::mutex g_build_mu;

bool ready(EcallIo& io) {
  if (!store().ready()) {
    io.error = "xsbench table not built: call xs_init and xs_build until done";
    return false;
  }
  return true;
}

}  // namespace

int32_t ecall_xs_init(EcallIo& io) {
  ByteReader r(io.in);
  uint64_t seed = r.u64(), n = r.u64();
  if (!r.at_end() || n < 16 || n > (1ull << 30)) {
    io.error = "xs_init expects u64 seed, u64 gridpoints (16..2^30)";
    return abi::kEcallBadInput;
  }
  std::lock_guard lk(g_build_mu);
  std::string err;
  if (!store().init(seed, n, &err)) {
    io.error = err;
    return abi::kEcallAppError;
  }
  return abi::kEcallOk;
}

int32_t ecall_xs_build(EcallIo& io) {
  ByteReader r(io.in);
  uint64_t budget = r.u64();
  if (!r.at_end() || budget == 0) {
    io.error = "xs_build expects u64 budget (> 0)";
    return abi::kEcallBadInput;
  }
  std::lock_guard lk(g_build_mu);
  if (store().gridpoints() == 0) {
    io.error = "xsbench: call xs_init first";
    return abi::kEcallAppError;
  }
  store().build_step(budget).encode(io.out);
  return abi::kEcallOk;
}

int32_t ecall_xs_lookup(EcallIo& io) {
  if (!ready(io)) return abi::kEcallAppError;
  ByteReader r(io.in);
  uint64_t seed = r.u64(), first = r.u64(), count = r.u64();
  if (!r.at_end() || count > 4096) {
    io.error = "xs_lookup expects u64 seed, u64 first, u64 count (<= 4096)";
    return abi::kEcallBadInput;
  }
  put_u64(io.out, count);
  put_u64(io.out, store().lookups(seed, first, count));
  return abi::kEcallOk;
}

int32_t ecall_xs_verify(EcallIo& io) {
  if (!ready(io)) return abi::kEcallAppError;
  ByteReader r(io.in);
  uint8_t begin = r.u8();
  uint64_t budget = r.u64();
  if (!r.at_end() || budget == 0) {
    io.error = "xs_verify expects u8 begin, u64 budget (> 0)";
    return abi::kEcallBadInput;
  }
  if (begin) store().verify_begin();
  store().verify_step(budget).encode(io.out);
  return abi::kEcallOk;
}

int32_t ecall_xs_corrupt(EcallIo& io) {
  if (!ready(io)) return abi::kEcallAppError;
  store().corrupt();
  return abi::kEcallOk;
}

int32_t ecall_xs_info(EcallIo& io) {
  put_u64(io.out, store().gridpoints());
  return abi::kEcallOk;
}
