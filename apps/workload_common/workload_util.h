// Shared by the workload suite's trusted engines and host halves (btree, hashjoin, graph,
// xsbench): deterministic PRNG and mixing, and little-endian output helpers. Standard library
// only, so it may be included on both sides of the trust boundary.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace workload {

// splitmix64: the one deterministic generator of the suite (data depends only on the seed).
inline uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// A stateless 64-bit mix (the finaliser of splitmix64).
inline uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Order-independent digest term of a (a, b) pair: digests are sums of terms (mod 2^64).
inline uint64_t pair_term(uint64_t a, uint64_t b) {
  return mix64(a * 0xff51afd7ed558ccdull ^ mix64(b + 0x632be59bd9b4e019ull));
}

inline void put_u64(std::vector<uint8_t>& v, uint64_t x) {
  uint8_t b[8];
  std::memcpy(b, &x, 8);
  v.insert(v.end(), b, b + 8);
}
inline void put_u32(std::vector<uint8_t>& v, uint32_t x) {
  uint8_t b[4];
  std::memcpy(b, &x, 4);
  v.insert(v.end(), b, b + 4);
}
// u32 length + bytes.
inline void put_str(std::vector<uint8_t>& v, const std::string& s) {
  put_u32(v, static_cast<uint32_t>(s.size()));
  v.insert(v.end(), s.begin(), s.end());
}

// Result of one verification step, as every engine reports it (both sides decode it with
// ByteReader): u8 done, u8 failed, u64 progress, u64 total, u64 digest, str32 detail.
struct VerifyStep {
  bool done = false;
  bool failed = false;
  uint64_t progress = 0, total = 0;
  uint64_t digest = 0;
  std::string detail;
  void encode(std::vector<uint8_t>& out) const {
    out.push_back(done ? 1 : 0);
    out.push_back(failed ? 1 : 0);
    put_u64(out, progress);
    put_u64(out, total);
    put_u64(out, digest);
    put_str(out, detail);
  }
};

// Init progress, likewise: u8 done, u64 progress, u64 total, str32 phase.
struct BuildStep {
  bool done = false;
  uint64_t progress = 0, total = 0;
  std::string phase;
  void encode(std::vector<uint8_t>& out) const {
    out.push_back(done ? 1 : 0);
    put_u64(out, progress);
    put_u64(out, total);
    put_str(out, phase);
  }
};

}  // namespace workload
