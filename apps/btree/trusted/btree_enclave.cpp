// btree enclave (TRUSTED): the BtreeStore behind the btree ECALLs (btree_edl.h).
#include "btree/btree_edl.h"
#include "btree/trusted/btree_engine.h"
#include "trusted/enclave_edl.h"

CONSTMIG_ENCLAVE(btree, BTREE_EDL)

using constmig::ByteReader;
using constmig::trusted::EcallIo;
namespace abi = constmig::abi;
using workload::put_str;
using workload::put_u32;
using workload::put_u64;

namespace {

btree::BtreeStore& store() {
  // Constructed on first use inside the enclave heap; never destroyed (it migrates).
  static btree::BtreeStore* s = new btree::BtreeStore();
  return *s;
}

bool ready(EcallIo& io) {
  if (!store().ready()) {
    io.error = "btree not built: call bt_init and bt_build until done";
    return false;
  }
  return true;
}

}  // namespace

int32_t ecall_bt_init(EcallIo& io) {
  ByteReader r(io.in);
  uint64_t seed = r.u64(), keys = r.u64();
  if (!r.at_end() || keys == 0 || keys > (1ull << 36)) {
    io.error = "bt_init expects u64 seed, u64 keys (1..2^36)";
    return abi::kEcallBadInput;
  }
  std::string err;
  if (!store().init(seed, keys, &err)) {
    io.error = err;
    return abi::kEcallAppError;
  }
  return abi::kEcallOk;
}

int32_t ecall_bt_build(EcallIo& io) {
  ByteReader r(io.in);
  uint64_t budget = r.u64();
  if (!r.at_end() || budget == 0 || budget > 10000000) {
    io.error = "bt_build expects u64 budget (1..10^7 keys)";
    return abi::kEcallBadInput;
  }
  store().build_step(budget).encode(io.out);
  return abi::kEcallOk;
}

int32_t ecall_bt_ops(EcallIo& io) {
  if (!ready(io)) return abi::kEcallAppError;
  ByteReader r(io.in);
  uint64_t seed = r.u64();
  uint32_t ops = r.u32(), permille = r.u32();
  if (!r.at_end() || ops > 65536 || permille > 1000) {
    io.error = "bt_ops expects u64 seed, u32 ops (<= 65536), u32 write_permille (<= 1000)";
    return abi::kEcallBadInput;
  }
  btree::BatchResult b = store().run_batch(seed, ops, permille);
  for (uint64_t x : {b.lookups, b.found, b.writes, b.inserted, b.seq, b.sum, b.count}) {
    put_u64(io.out, x);
  }
  return abi::kEcallOk;
}

int32_t ecall_bt_anchor(EcallIo& io) {
  if (!ready(io)) return abi::kEcallAppError;
  ByteReader r(io.in);
  uint64_t seq = r.u64(), sum = r.u64();
  if (!r.at_end()) {
    io.error = "bt_anchor expects u64 seq, u64 sum";
    return abi::kEcallBadInput;
  }
  uint64_t cs = 0, csum = 0;
  std::string why;
  bool ok = store().anchor(seq, sum, &cs, &csum, &why);
  io.out.push_back(ok ? 1 : 0);
  put_u64(io.out, cs);
  put_u64(io.out, csum);
  put_str(io.out, why);
  return abi::kEcallOk;
}

int32_t ecall_bt_verify(EcallIo& io) {
  if (!ready(io)) return abi::kEcallAppError;
  ByteReader r(io.in);
  uint8_t begin = r.u8();
  uint64_t budget = r.u64(), hseq = r.u64(), hsum = r.u64();
  if (!r.at_end() || budget == 0) {
    io.error = "bt_verify expects u8 begin, u64 budget (> 0), u64 host_seq, u64 host_sum";
    return abi::kEcallBadInput;
  }
  if (begin) store().verify_begin();
  store().verify_step(budget, hseq, hsum).encode(io.out);
  return abi::kEcallOk;
}

int32_t ecall_bt_corrupt(EcallIo& io) {
  if (!ready(io)) return abi::kEcallAppError;
  store().corrupt();
  return abi::kEcallOk;
}

int32_t ecall_bt_info(EcallIo& io) {
  if (!ready(io)) return abi::kEcallAppError;
  uint64_t n, seq, sum;
  int depth;
  store().info(&n, &seq, &sum, &depth);
  put_u64(io.out, n);
  put_u64(io.out, seq);
  put_u64(io.out, sum);
  put_u32(io.out, static_cast<uint32_t>(depth));
  return abi::kEcallOk;
}
