// hashjoin engine (TRUSTED, also compiled into host unit tests): relations R and S generated
// from a seed in the enclave heap, radix-partitioned by key (key mod P), and a hash join over one
// partition at a time (build R_p, probe S_p), so every ECALL does a bounded piece of work.
// Keys of R_p are p + P*j (j < kRPerPart, shuffled), payload = r_payload(seed, key); an S tuple
// of partition p has key p + P*k with k uniform in [0, 5/4 kRPerPart): it matches iff
// k < kRPerPart. The generator therefore knows the whole join's result as it writes S.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "workload_common/workload_util.h"

namespace hashjoin {

inline constexpr uint64_t kRPerPart = 4096;
inline constexpr uint64_t kSPerPart = 16384;
inline constexpr uint64_t kKeySpan = kRPerPart + kRPerPart / 4;
inline constexpr uint64_t kBytesPerPart = (kRPerPart + kSPerPart) * 16;

struct Tuple {
  uint64_t key, payload;
};

inline uint64_t r_payload(uint64_t seed, uint64_t key) {
  return workload::mix64((seed * 3 + 1) ^ key);
}
inline uint64_t join_term(uint64_t key, uint64_t rpay, uint64_t spay) {
  return workload::pair_term(key ^ rpay, spay);
}

struct JoinResult {
  uint64_t probed = 0, matches = 0, checksum = 0;
};
struct Expected {
  uint64_t matches = 0, checksum = 0, digest = 0;  // digest: over every tuple of R and S
};
// The verification digest of a whole-relation result.
inline uint64_t combined(const Expected& e) {
  return workload::pair_term(e.matches ^ workload::mix64(e.checksum), e.digest);
}

class JoinStore {
 public:
  static uint64_t partitions_for(uint64_t bytes) {
    return bytes / kBytesPerPart ? bytes / kBytesPerPart : 1;
  }
  bool init(uint64_t seed, uint64_t parts, std::string* err);
  workload::BuildStep build_step(uint64_t max_parts);
  // Build R_p, probe S_p[first, first + count).
  JoinResult join(uint64_t p, uint64_t first = 0, uint64_t count = kSPerPart) const;
  // Generation-time expectation of the whole join (valid once built).
  Expected expected() const { return gen_; }
  // Recompute the whole join and the data digest, max_parts partitions per step.
  void verify_begin();
  workload::VerifyStep verify_step(uint64_t max_parts);
  void corrupt();  // TESTING ONLY: flip one R payload
  bool ready() const { return built_ == parts_ && parts_ > 0; }
  uint64_t parts() const { return parts_; }
  const Tuple* r(uint64_t p) const { return r_[p]; }
  const Tuple* s(uint64_t p) const { return s_[p]; }

 private:
  uint64_t seed_ = 0, parts_ = 0, built_ = 0;
  std::vector<Tuple*> r_, s_;
  Expected gen_;
  std::mutex verify_mu_;
  uint64_t vnext_ = 0;
  Expected vacc_;
};

}  // namespace hashjoin
