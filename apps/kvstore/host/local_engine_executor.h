// UNTRUSTED test/benchmark helper: runs the kvstore engine in-process, without an enclave — the
// "no enclave" reference point. Same batch interface as the enclave's kv_batch ECALL.
#pragma once

#include <cstddef>
#include <string>

#include "kvstore/host/kvstore_server.h"
#include "kvstore/trusted/kv_engine.h"

namespace constmig::kvstore {

class LocalEngineExecutor : public BatchExecutor {
 public:
  // max_reply_bytes plays the role of the ECALL's output buffer: a batch whose replies exceed
  // it is executed in several exec() calls (the server re-submits the rest).
  explicit LocalEngineExecutor(KvEngine& engine, size_t max_reply_bytes = 1u << 20)
      : engine_(engine), max_reply_bytes_(max_reply_bytes) {}

  Result<ExecResult> exec(ByteView encoded_batch, std::string& replies) override;

  KvEngine& engine() { return engine_; }

 private:
  KvEngine& engine_;
  size_t max_reply_bytes_;
};

}  // namespace constmig::kvstore
