// Multi-threaded stress test of the enclave heap: random sizes, random frees (some by another
// thread), every block filled with an address-derived pattern and verified before it is freed,
// a concurrent check() from the main thread, and a full consistency check at the end.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "heap_test_util.h"
#include "trusted/heap/enclave_heap.h"

namespace constmig::trusted {
namespace {

using testing::check_pattern;
using testing::fill_pattern;
using testing::TestHeap;

constexpr size_t kMiB = size_t{1} << 20;

struct Block {
  void* p = nullptr;
  size_t n = 0;
};

// Mostly log-uniform in [1 B, 256 KiB]; one in 200 in [256 KiB, 4 MiB].
size_t pick_size(std::mt19937_64& rng) {
  if (rng() % 200 == 0) return 256 * 1024 + rng() % (4 * kMiB - 256 * 1024);
  std::uniform_real_distribution<double> d(0.0, std::log(256.0 * 1024.0));
  return static_cast<size_t>(std::exp(d(rng)));
}

TEST(EnclaveHeapStress, FourThreadsRandomSizes) {
  TestHeap h(1024 * kMiB, 768 * kMiB);
  ASSERT_TRUE(h.ok());
  constexpr int kThreads = 4;
  constexpr int kOps = 60000;
  constexpr size_t kSlots = 128;

  std::atomic<int> errors{0};
  std::atomic<int> running{kThreads};
  std::mutex handoff_mu;
  std::vector<Block> handoff;  // blocks allocated by one thread, freed by another
  std::mutex err_mu;
  std::string first_error;
  auto fail = [&](const std::string& what) {
    std::lock_guard<std::mutex> lk(err_mu);
    if (errors.fetch_add(1) == 0) first_error = what;
  };

  auto verify_and_free = [&](const Block& b) {
    if (!check_pattern(b.p, b.n, reinterpret_cast<uintptr_t>(b.p))) {
      fail("pattern mismatch before free, size " + std::to_string(b.n));
    }
    h->free(b.p);
  };

  auto worker = [&](int t) {
    std::mt19937_64 rng(0xC0FFEE + t);
    std::vector<Block> slots(kSlots);
    for (int op = 0; op < kOps && errors.load() == 0; ++op) {
      Block& b = slots[rng() % kSlots];
      if (b.p != nullptr) {
        unsigned action = rng() % 100;
        if (action < 10) {
          // realloc: the common prefix must survive, then refill for the new address.
          size_t n = pick_size(rng);
          uintptr_t origin = reinterpret_cast<uintptr_t>(b.p);
          if (!check_pattern(b.p, b.n, origin)) fail("pattern mismatch before realloc");
          void* q = h->realloc(b.p, n);
          if (q == nullptr) {
            fail("realloc returned nullptr, size " + std::to_string(n));
            continue;
          }
          if (!check_pattern(q, std::min(n, b.n), origin)) fail("realloc lost data");
          b = {q, n};
          fill_pattern(b.p, b.n);
        } else if (action < 15) {
          std::lock_guard<std::mutex> lk(handoff_mu);
          handoff.push_back(b);
          b = {};
        } else {
          verify_and_free(b);
          b = {};
        }
        continue;
      }
      if (rng() % 20 == 0) {
        Block other;
        {
          std::lock_guard<std::mutex> lk(handoff_mu);
          if (!handoff.empty()) {
            other = handoff.back();
            handoff.pop_back();
          }
        }
        if (other.p != nullptr) verify_and_free(other);
      }
      size_t n = pick_size(rng);
      unsigned kind = rng() % 10;
      void* p;
      if (kind == 0) {
        p = h->calloc(n, 1);
        if (p != nullptr) {
          for (size_t i = 0; i < n; ++i) {
            if (static_cast<unsigned char*>(p)[i] != 0) {
              fail("calloc memory not zero, size " + std::to_string(n));
              break;
            }
          }
        }
      } else if (kind == 1) {
        size_t align = size_t{32} << (rng() % 8);  // 32 .. 4096
        p = h->aligned_alloc(align, n);
        if (p != nullptr && reinterpret_cast<uintptr_t>(p) % align != 0) fail("misaligned");
      } else {
        p = h->malloc(n);
      }
      if (p == nullptr) {
        fail("allocation returned nullptr, size " + std::to_string(n));
        continue;
      }
      if (reinterpret_cast<uintptr_t>(p) % 16 != 0) fail("not 16-byte aligned");
      if (h->usable_size(p) < n) fail("usable_size too small");
      b = {p, n};
      fill_pattern(p, n);
    }
    for (const Block& b : slots) {
      if (b.p != nullptr) verify_and_free(b);
    }
    running.fetch_sub(1);
  };

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back(worker, t);
  // check() takes every lock: run it while the workers hammer the heap.
  int checks = 0;
  while (running.load() > 0) {
    std::string why;
    if (!h->check(&why)) fail("concurrent check failed: " + why);
    ++checks;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (auto& th : threads) th.join();
  for (const Block& b : handoff) verify_and_free(b);

  EXPECT_EQ(errors.load(), 0) << first_error;
  std::string why;
  EXPECT_TRUE(h->check(&why)) << why;
  auto st = h->stats();
  EXPECT_EQ(st.in_use_bytes, 0u);
  EXPECT_EQ(st.live_allocations, 0u);
  EXPECT_GT(st.total_allocations, uint64_t{kThreads} * kOps / 3);
  EXPECT_LE(st.top_bytes, st.limit_bytes);
  RecordProperty("concurrent_checks", checks);
  RecordProperty("top_mib", static_cast<int>(st.top_bytes >> 20));
}

}  // namespace
}  // namespace constmig::trusted
