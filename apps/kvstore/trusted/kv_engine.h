// TRUSTED (runs inside the enclave image). The kvstore's data and command engine.
//
// Includes only the C++ standard library, src/common and apps/kvstore/kvstore_protocol.h: no OS
// headers, no stdio. Inside the enclave, new/malloc come from the ConstMigLib heap, so every key
// and value lives in enclave memory and migrates with it.
//
// Data: 64 shards, each a std::unordered_map<std::string, std::string> under its own mutex; a
// key's shard is picked from the high bits of its (mixed) hash. Commands touching several keys
// (DEL, EXISTS, FLUSHALL, DBSIZE) lock one shard at a time: each per-key step is atomic, the
// command as a whole is not (Redis is single-threaded; nothing here needs more).
//
// Commands (case-insensitive; replies and error strings as Redis 7):
//   PING [msg] | ECHO msg | GET k | SET k v [NX|XX] | DEL k.. | EXISTS k.. | INCR k | DBSIZE |
//   INFO [section..] | FLUSHALL [ASYNC|SYNC] | CONFIG GET pattern.. | COMMAND [DOCS|COUNT ..] |
//   SELECT 0 | DEBUG POPULATE count [prefix] [size]
// Memory: SET and INCR ask the MemInfo hook (the enclave heap's used bytes and limit) and answer
// "-OOM command not allowed when used memory > 'maxmemory'." when used + needed > maxmemory,
// where maxmemory = limit minus a reserve (limit/16, at most 64 MiB) kept for replies, batch
// decoding and allocator slack, so that a full store still answers reads and deletes. A
// std::bad_alloc thrown while running a command becomes the same reply, never a crash.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/bytes.h"
#include "common/result.h"
#include "kvstore/kvstore_protocol.h"

namespace constmig::kvstore {

struct MemInfo {
  uint64_t used_bytes = 0;   // bytes in use (the enclave heap's, or the engine's estimate)
  uint64_t limit_bytes = 0;  // 0 = no limit
};
using MemInfoFn = std::function<MemInfo()>;

struct EngineOptions {
  // Called by SET/INCR (must be cheap and thread-safe) and INFO. Empty: no limit, and INFO
  // reports the engine's own estimate of its data size.
  MemInfoFn mem_info;
  // Shown by INFO server as "environment:"; the no-enclave reference build says so.
  std::string environment = "emulated SGX enclave";
  BatchLimits batch_limits;
};

class KvEngine {
 public:
  static constexpr size_t kShards = 64;
  // Bytes counted per key beyond key and value (node, hash, string headers): for the OOM check
  // and the estimate. Deliberately rough.
  static constexpr size_t kEntryOverhead = 64;
  // Every command that changes data has a reply shorter than this (the longest is the
  // "unknown command" error, < 400 bytes).
  static constexpr size_t kWriteReplyReserve = 1024;
  // Smallest max_reply_bytes execute_batch accepts.
  static constexpr size_t kMinReplyCapacity = 4096;
  // Writes stop at limit - min(limit / kMemoryReserveDivisor, kMemoryReserveMax).
  static constexpr uint64_t kMemoryReserveDivisor = 16;
  static constexpr uint64_t kMemoryReserveMax = 64ull << 20;
  // The "maxmemory" (INFO, CONFIG GET, the OOM check) for a heap limit; 0 = no limit.
  static uint64_t maxmemory_for(uint64_t limit_bytes);

  KvEngine() : KvEngine(EngineOptions{}) {}
  explicit KvEngine(EngineOptions options);
  explicit KvEngine(MemInfoFn mem_info);
  KvEngine(const KvEngine&) = delete;
  KvEngine& operator=(const KvEngine&) = delete;

  // Runs one command (argv[0] is its name; argv must not be empty) and appends its RESP reply.
  // Thread-safe. Throws std::bad_alloc only if even the fixed OOM reply cannot be appended.
  void execute(const std::vector<std::string_view>& argv, std::string& reply);

  // Decodes an encoded batch (kvstore_protocol.h; hostile input: fully validated before anything
  // runs) and executes its commands in order, appending their replies to `replies`.
  //  - Stops early, leaving *commands_done < count, so that the bytes appended never exceed
  //    max_reply_bytes: before a command when fewer than kWriteReplyReserve bytes are left, or
  //    after a side-effect-free command (GET, ECHO, INFO...) whose reply overflowed — that reply
  //    is removed and the command counted as not done, so the caller re-submits it.
  //  - If the FIRST command's reply alone does not fit, returns kResourceExhausted with
  //    *commands_done = 0 and *reply_bytes_needed (if given) = its size: retry with room.
  //  - A malformed batch returns kFormat and runs nothing.
  // max_reply_bytes must be >= kMinReplyCapacity.
  Status execute_batch(ByteView encoded_batch, std::string& replies, size_t max_reply_bytes,
                       uint32_t* commands_done, size_t* reply_bytes_needed = nullptr);

  uint64_t dbsize() const;
  // Order-independent digest of the whole store: the wrapping sum over all pairs of
  // FNV-1a-64(u64 key length | key | u64 value length | value). Equal stores give equal sums.
  uint64_t checksum() const;
  // The hook's answer, or {estimated data bytes, 0} without a hook.
  MemInfo mem_info() const;
  // Estimated bytes of keys, values and per-entry overhead.
  uint64_t data_bytes() const;
  uint64_t commands_processed() const { return commands_.load(std::memory_order_relaxed); }

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept;
  };
  struct Eq {
    using is_transparent = void;
    bool operator()(std::string_view a, std::string_view b) const noexcept { return a == b; }
  };
  using Map = std::unordered_map<std::string, std::string, Hash, Eq>;
  using ShardLock = std::mutex;  // the one place to change if the enclave needs another lock
  struct alignas(64) Shard {
    mutable ShardLock mu;
    Map map;
    uint64_t bytes = 0;  // estimate: sum of key + value + kEntryOverhead
  };

  enum class Cmd : uint8_t;
  static Cmd lookup(std::string_view name);
  static bool changes_data(Cmd c);
  void dispatch(Cmd c, const std::vector<std::string_view>& argv, std::string& reply);
  void run_one(Cmd c, const std::vector<std::string_view>& argv, std::string& reply);
  Shard& shard_for(std::string_view key);
  bool would_exceed_memory(size_t needed) const;

  void cmd_get(const std::vector<std::string_view>& argv, std::string& reply);
  void cmd_set(const std::vector<std::string_view>& argv, std::string& reply);
  void cmd_incr(const std::vector<std::string_view>& argv, std::string& reply);
  void cmd_del_exists(bool del, const std::vector<std::string_view>& argv, std::string& reply);
  void cmd_info(const std::vector<std::string_view>& argv, std::string& reply);
  void cmd_flushall(const std::vector<std::string_view>& argv, std::string& reply);
  void cmd_config(const std::vector<std::string_view>& argv, std::string& reply);
  void cmd_command(const std::vector<std::string_view>& argv, std::string& reply);
  void cmd_debug(const std::vector<std::string_view>& argv, std::string& reply);

  EngineOptions options_;
  Shard shards_[kShards];
  std::atomic<uint64_t> commands_{0};
};

}  // namespace constmig::kvstore
