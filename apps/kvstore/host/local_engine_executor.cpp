// UNTRUSTED. See local_engine_executor.h.
#include "kvstore/host/local_engine_executor.h"

#include <algorithm>

namespace constmig::kvstore {

Result<ExecResult> LocalEngineExecutor::exec(ByteView encoded_batch, std::string& replies) {
  size_t cap = std::max(max_reply_bytes_, KvEngine::kMinReplyCapacity);
  // A single reply larger than the usual capacity (a GET of a big value) gets a one-off larger
  // buffer, as the enclave glue does after kEcallOutTooSmall. Retried because a concurrent SET
  // may change the value's size in between.
  for (int attempt = 0; attempt < 4; ++attempt) {
    uint32_t done = 0;
    size_t needed = 0;
    Status st = engine_.execute_batch(encoded_batch, replies, cap, &done, &needed);
    if (st.ok()) return ExecResult{done};
    if (st.error().code != Errc::kResourceExhausted || needed <= cap) return st.take_error();
    cap = std::max(needed, cap * 2);
  }
  return make_error(Errc::kResourceExhausted, "kv batch: reply size kept changing; retry");
}

}  // namespace constmig::kvstore
