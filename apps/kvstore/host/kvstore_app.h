// kvstore host half (UNTRUSTED): the RESP server whose commands run in the enclave.
#pragma once

#include <memory>

#include "host/host_app.h"
#include "kvstore/host/kvstore_server.h"
#include "platform/host_enclave.h"

namespace kvstore_app {

// Runs batches through the kv_batch ECALL.
class EnclaveExecutor : public constmig::kvstore::BatchExecutor {
 public:
  explicit EnclaveExecutor(constmig::platform::Enclave& e, uint32_t max_reply_bytes = 1u << 20)
      : enclave_(e), max_reply_(max_reply_bytes) {}
  constmig::Result<constmig::kvstore::ExecResult> exec(constmig::ByteView batch,
                                                       std::string& replies) override;
  // dbsize and order-independent checksum of the store (kv_digest).
  constmig::Result<std::pair<uint64_t, uint64_t>> digest();

 private:
  constmig::platform::Enclave& enclave_;
  uint32_t max_reply_;
};

std::unique_ptr<constmig::host::HostApp> make_kvstore_app(const constmig::host::AppOptions&);
std::vector<std::string> kvstore_ecall_names();

}  // namespace kvstore_app
