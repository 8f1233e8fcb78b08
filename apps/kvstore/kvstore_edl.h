// kvstore ECALL/OCALL declarations, shared by both sides (see src/trusted/enclave_edl.h).
//
// kv_batch  in:  u32 max_reply_bytes, then a command batch (kvstore_protocol.h)
//           out: u32 commands_done, u32 reply_bytes_needed (non-zero only when the first
//                command's reply alone exceeds max_reply_bytes), then the RESP replies of the
//                first commands_done commands.
// kv_digest out: u64 dbsize, u64 checksum (order-independent digest of every key/value pair)
#pragma once

#include <cstdint>

#define KVSTORE_EDL(ECALL, OCALL)                                       \
  ECALL(kv_batch, "run a batch of Redis commands, return RESP replies") \
  ECALL(kv_digest, "number of keys and a digest of the whole store")

namespace constmig::kvstore {
inline constexpr uint32_t kMaxReplyBytesLimit = 256u << 20;
}
