// kvstore enclave (TRUSTED): the KvEngine behind the kv_batch ECALL. Every key and value lives
// in the ConstMigLib heap.
#include <cstring>

#include "kvstore/kvstore_edl.h"
#include "kvstore/trusted/kv_engine.h"
#include "trusted/enclave_edl.h"

CONSTMIG_ENCLAVE(kvstore, KVSTORE_EDL)

namespace {

using namespace constmig;

kvstore::KvEngine& engine() {
  // Constructed on first use, inside the enclave heap; never destroyed (it migrates).
  static kvstore::KvEngine* e = [] {
    kvstore::EngineOptions o;
    // The engine keeps its own reserve below this limit (KvEngine::maxmemory_for) for
    // transient buffers, so a full store still answers GET/PING.
    o.mem_info = [] {
      auto s = trusted::heap().stats();
      return kvstore::MemInfo{s.in_use_bytes, s.limit_bytes};
    };
    return new kvstore::KvEngine(std::move(o));
  }();
  return *e;
}

void put_u32(std::vector<uint8_t>& v, uint32_t x) {
  uint8_t b[4];
  std::memcpy(b, &x, 4);
  v.insert(v.end(), b, b + 4);
}
void put_u64(std::vector<uint8_t>& v, uint64_t x) {
  uint8_t b[8];
  std::memcpy(b, &x, 8);
  v.insert(v.end(), b, b + 8);
}

}  // namespace

int32_t ecall_kv_batch(trusted::EcallIo& io) {
  ByteReader r(io.in);
  uint32_t max_reply = r.u32();
  if (!r.ok() || max_reply < kvstore::KvEngine::kMinReplyCapacity ||
      max_reply > kvstore::kMaxReplyBytesLimit) {
    io.error = "kv_batch: bad max_reply_bytes";
    return abi::kEcallBadInput;
  }
  ByteView batch = io.in.subspan(4);
  std::string replies;
  uint32_t done = 0;
  size_t needed = 0;
  Status st = engine().execute_batch(batch, replies, max_reply, &done, &needed);
  if (!st.ok() && (st.error().code != Errc::kResourceExhausted || needed == 0)) {
    // kResourceExhausted with needed == 0: the enclave heap itself is exhausted.
    io.error = "kv_batch: " + st.error().message;
    return st.error().code == Errc::kResourceExhausted ? abi::kEcallOutOfMemory
                                                       : abi::kEcallBadInput;
  }
  io.out.reserve(8 + replies.size());
  put_u32(io.out, st.ok() ? done : 0);
  put_u32(io.out, st.ok() ? 0 : static_cast<uint32_t>(needed));
  io.out.insert(io.out.end(), replies.begin(), replies.end());
  return abi::kEcallOk;
}

int32_t ecall_kv_digest(trusted::EcallIo& io) {
  put_u64(io.out, engine().dbsize());
  put_u64(io.out, engine().checksum());
  return abi::kEcallOk;
}
