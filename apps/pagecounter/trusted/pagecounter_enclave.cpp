// pagecounter enclave (TRUSTED): see pagecounter_edl.h.
#include <atomic>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "pagecounter/pagecounter_edl.h"
#include "trusted/enclave_edl.h"

CONSTMIG_ENCLAVE(pagecounter, PAGECOUNTER_EDL)

// Tests build a variant with other bytes (so another measurement) from this same source.
#ifndef PAGECOUNTER_VARIANT
#define PAGECOUNTER_VARIANT ""
#endif

using constmig::ByteReader;
using constmig::trusted::EcallIo;
namespace abi = constmig::abi;
using namespace pagecounter;

namespace {

constexpr uint64_t kChunk = 1ull << 20;  // pages are allocated in 1 MiB chunks
constexpr unsigned kStripes = 64;

struct State {
  std::mutex init_mu;
  std::vector<uint8_t*>* chunks = nullptr;  // heap-allocated
  uint64_t pages = 0;
  uint64_t round = 0;
  std::atomic<uint64_t> touches{0};
  std::mutex stripes[kStripes];
  std::mutex step_mu;
};
State g;

uint8_t* page(uint64_t i) {
  return (*g.chunks)[i / (kChunk / kPageSize)] + (i % (kChunk / kPageSize)) * kPageSize;
}

void put_u64(std::vector<uint8_t>& v, uint64_t x) {
  uint8_t b[8];
  std::memcpy(b, &x, 8);
  v.insert(v.end(), b, b + 8);
}

uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

bool ready(EcallIo& io) {
  if (g.chunks == nullptr) {
    io.error = "pagecounter not initialised: call pc_init first";
    return false;
  }
  return true;
}

}  // namespace

int32_t ecall_pc_init(EcallIo& io) {
  ByteReader r(io.in);
  uint64_t mib = r.u64();
  if (!r.at_end() || mib == 0 || mib > kMaxMib) {
    io.error =
        PAGECOUNTER_VARIANT "pc_init expects one u64: MiB of pages, 1.." + std::to_string(kMaxMib);
    return abi::kEcallBadInput;
  }
  std::lock_guard lk(g.init_mu);
  if (g.chunks != nullptr) {
    io.error = "pagecounter already initialised";
    return abi::kEcallAppError;
  }
  auto* chunks = new std::vector<uint8_t*>();
  chunks->reserve(mib);
  for (uint64_t c = 0; c < mib; ++c) {
    void* p = aligned_alloc(kPageSize, kChunk);
    if (p == nullptr) {
      for (uint8_t* q : *chunks) free(q);
      delete chunks;
      io.error = "enclave heap too small for " + std::to_string(mib) + " MiB of pages";
      return abi::kEcallOutOfMemory;
    }
    chunks->push_back(static_cast<uint8_t*>(p));
  }
  g.chunks = chunks;
  g.pages = mib * (kChunk / kPageSize);
  for (uint64_t i = 0; i < g.pages; ++i) {
    uint8_t* p = page(i);
    uint64_t hdr[3] = {i ^ kSalt, 0, 0};
    std::memcpy(p, hdr, sizeof hdr);
    for (uint64_t j = sizeof hdr; j < kPageSize; ++j) p[j] = pattern_byte(i, j);
  }
  put_u64(io.out, g.pages);
  return abi::kEcallOk;
}

int32_t ecall_pc_step(EcallIo& io) {
  if (!ready(io)) return abi::kEcallAppError;
  std::lock_guard lk(g.step_mu);
  for (uint64_t i = 0; i < g.pages; ++i) {
    uint64_t* hdr = reinterpret_cast<uint64_t*>(page(i));
    hdr[1] += 1;
  }
  g.round += 1;
  put_u64(io.out, g.round);
  return abi::kEcallOk;
}

int32_t ecall_pc_touch(EcallIo& io) {
  if (!ready(io)) return abi::kEcallAppError;
  ByteReader r(io.in);
  uint64_t seed = r.u64();
  uint64_t count = r.u64();
  if (!r.at_end() || count > (1ull << 32)) {
    io.error = "pc_touch expects u64 seed, u64 count (<= 2^32)";
    return abi::kEcallBadInput;
  }
  for (uint64_t k = 0; k < count; ++k) {
    uint64_t i = splitmix(seed) % g.pages;
    std::lock_guard lk(g.stripes[i % kStripes]);
    reinterpret_cast<uint64_t*>(page(i))[2] += 1;
    g.touches.fetch_add(1, std::memory_order_relaxed);  // under the stripe lock: check sees both
  }
  put_u64(io.out, count);
  return abi::kEcallOk;
}

int32_t ecall_pc_check(EcallIo& io) {
  if (!ready(io)) return abi::kEcallAppError;
  std::lock_guard lk(g.step_mu);
  for (auto& m : g.stripes) m.lock();
  uint64_t touches = 0;
  std::string err;
  for (uint64_t i = 0; i < g.pages && err.empty(); ++i) {
    const uint8_t* p = page(i);
    uint64_t hdr[3];
    std::memcpy(hdr, p, sizeof hdr);
    if (hdr[0] != (i ^ kSalt)) {
      err = "page " + std::to_string(i) + " holds another page's content (index mismatch)";
    } else if (hdr[1] != g.round) {
      err = "page " + std::to_string(i) + " is at round " + std::to_string(hdr[1]) + ", expected " +
            std::to_string(g.round) + " (stale or applied twice)";
    } else {
      for (uint64_t j = sizeof hdr; j < kPageSize; ++j) {
        if (p[j] != pattern_byte(i, j)) {
          err = "page " + std::to_string(i) + " byte " + std::to_string(j) + " is corrupted";
          break;
        }
      }
    }
    touches += hdr[2];
  }
  uint64_t want = g.touches.load();
  for (auto& m : g.stripes) m.unlock();
  if (err.empty() && touches != want) {
    err = "touch counters sum to " + std::to_string(touches) + ", expected " +
          std::to_string(want) + " (lost or duplicated page updates)";
  }
  if (!err.empty()) {
    io.error = "pagecounter check failed: " + err;
    return abi::kEcallAppError;
  }
  put_u64(io.out, g.round);
  put_u64(io.out, g.pages);
  put_u64(io.out, touches);
  return abi::kEcallOk;
}
