#include "hashjoin/trusted/hashjoin_engine.h"

#include <memory>

namespace hashjoin {

using workload::mix64;
using workload::pair_term;
using workload::splitmix;

namespace {
constexpr uint64_t kSlots = 2 * kRPerPart;  // power of two, load factor 1/2
constexpr uint64_t kEmpty = UINT64_MAX;     // keys are < parts * kKeySpan
uint64_t tuple_digest(const Tuple* r, const Tuple* s) {
  uint64_t d = 0;
  for (uint64_t i = 0; i < kRPerPart; ++i) d += pair_term(r[i].key, r[i].payload);
  for (uint64_t i = 0; i < kSPerPart; ++i) d += pair_term(~s[i].key, s[i].payload);
  return d;
}
}  // namespace

bool JoinStore::init(uint64_t seed, uint64_t parts, std::string* err) {
  if (parts_ != 0) {
    *err = "hashjoin already initialised";
    return false;
  }
  seed_ = seed;
  parts_ = parts;
  r_.assign(parts, nullptr);
  s_.assign(parts, nullptr);
  return true;
}

workload::BuildStep JoinStore::build_step(uint64_t max_parts) {
  uint64_t end = std::min(parts_, built_ + max_parts);
  for (; built_ < end; ++built_) {
    uint64_t p = built_;
    uint64_t rng = mix64(seed_ ^ (p * 0xd1b54a32d192ed03ull));
    auto r = std::make_unique<Tuple[]>(kRPerPart);
    auto s = std::make_unique<Tuple[]>(kSPerPart);
    for (uint64_t j = 0; j < kRPerPart; ++j) r[j].key = p + parts_ * j;
    for (uint64_t j = kRPerPart - 1; j > 0; --j) {  // Fisher-Yates
      uint64_t k = splitmix(rng) % (j + 1);
      std::swap(r[j].key, r[k].key);
    }
    for (uint64_t j = 0; j < kRPerPart; ++j) r[j].payload = r_payload(seed_, r[j].key);
    for (uint64_t j = 0; j < kSPerPart; ++j) {
      uint64_t k = splitmix(rng) % kKeySpan;
      uint64_t key = p + parts_ * k;
      uint64_t pay = splitmix(rng);
      s[j] = {key, pay};
      if (k < kRPerPart) {
        ++gen_.matches;
        gen_.checksum += join_term(key, r_payload(seed_, key), pay);
      }
    }
    gen_.digest += tuple_digest(r.get(), s.get());
    r_[p] = r.release();
    s_[p] = s.release();
  }
  workload::BuildStep st;
  st.phase = "partitions";
  st.progress = built_;
  st.total = parts_;
  st.done = built_ == parts_;
  return st;
}

JoinResult JoinStore::join(uint64_t p, uint64_t first, uint64_t count) const {
  JoinResult res;
  auto keys = std::make_unique<uint64_t[]>(kSlots);
  auto pays = std::make_unique<uint64_t[]>(kSlots);
  for (uint64_t i = 0; i < kSlots; ++i) keys[i] = kEmpty;
  const Tuple* r = r_[p];
  for (uint64_t i = 0; i < kRPerPart; ++i) {
    uint64_t h = mix64(r[i].key) & (kSlots - 1);
    while (keys[h] != kEmpty) h = (h + 1) & (kSlots - 1);
    keys[h] = r[i].key;
    pays[h] = r[i].payload;
  }
  const Tuple* s = s_[p];
  uint64_t end = std::min(kSPerPart, first + count);
  for (uint64_t i = first; i < end; ++i) {
    ++res.probed;
    uint64_t h = mix64(s[i].key) & (kSlots - 1);
    while (keys[h] != kEmpty) {
      if (keys[h] == s[i].key) {
        ++res.matches;
        res.checksum += join_term(s[i].key, pays[h], s[i].payload);
      }
      h = (h + 1) & (kSlots - 1);
    }
  }
  return res;
}

void JoinStore::verify_begin() {
  std::lock_guard lk(verify_mu_);
  vnext_ = 0;
  vacc_ = {};
}

workload::VerifyStep JoinStore::verify_step(uint64_t max_parts) {
  std::lock_guard lk(verify_mu_);
  uint64_t end = std::min(parts_, vnext_ + max_parts);
  for (; vnext_ < end; ++vnext_) {
    JoinResult j = join(vnext_);
    vacc_.matches += j.matches;
    vacc_.checksum += j.checksum;
    vacc_.digest += tuple_digest(r_[vnext_], s_[vnext_]);
  }
  workload::VerifyStep st;
  st.progress = vnext_;
  st.total = parts_;
  st.done = vnext_ == parts_;
  st.digest = combined(vacc_);
  if (st.done) {
    st.detail = "hashjoin: " + std::to_string(vacc_.matches) + " matches of " +
                std::to_string(parts_ * kSPerPart) + " S tuples over " + std::to_string(parts_) +
                " partitions, join checksum " + std::to_string(vacc_.checksum) + ", data digest " +
                std::to_string(vacc_.digest);
  }
  return st;
}

void JoinStore::corrupt() {
  if (parts_ > 0 && r_[0]) r_[0][0].payload ^= 1;
}

}  // namespace hashjoin
