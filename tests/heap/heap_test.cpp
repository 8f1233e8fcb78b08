// Unit tests of the enclave heap: semantics, edge cases, limits, layout, invariant aborts.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "heap_test_util.h"
#include "trusted/heap/enclave_heap.h"

namespace constmig::trusted {
namespace {

using testing::check_pattern;
using testing::fill_pattern;
using testing::TestHeap;

constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kGiB = size_t{1} << 30;

// The heap object is what moves in the migration stop phase: fixed size, constant-initialised
// (usable from static constructors before any code runs), trivially destructible.
static_assert(sizeof(EnclaveHeap) <= 16 * 1024);
static_assert(std::is_trivially_destructible_v<EnclaveHeap>);
constinit EnclaveHeap g_constinit_heap;

bool aligned(const void* p, size_t a) {
  return reinterpret_cast<uintptr_t>(p) % a == 0;
}

void expect_ok(EnclaveHeap& h) {
  std::string why;
  EXPECT_TRUE(h.check(&why)) << why;
}

TEST(EnclaveHeap, ObjectSizeIsConstant) {
  EXPECT_FALSE(g_constinit_heap.initialized());
  EXPECT_EQ(g_constinit_heap.malloc(16), nullptr);  // not initialised: limit 0
  // Two heaps of very different sizes, both used: same object, all metadata in-band.
  TestHeap small(16 * kMiB, 16 * kMiB);
  TestHeap big(1 * kGiB, 1 * kGiB);
  ASSERT_TRUE(small.ok() && big.ok());
  std::vector<void*> a, b;
  for (int i = 0; i < 1000; ++i) {
    a.push_back(small->malloc(100 + i));
    b.push_back(big->malloc(1000 * i + 100));
  }
  EXPECT_EQ(sizeof(*small), sizeof(*big));
  RecordProperty("sizeof_EnclaveHeap", static_cast<int>(sizeof(EnclaveHeap)));
  for (void* p : a) small->free(p);
  for (void* p : b) big->free(p);
  expect_ok(*small);
  expect_ok(*big);
}

TEST(EnclaveHeap, TopGrowsOnlyAsUsed) {
  TestHeap h(1 * kGiB, 1 * kGiB);
  ASSERT_TRUE(h.ok());
  EXPECT_TRUE(h->initialized());
  EXPECT_EQ(h->base(), reinterpret_cast<uintptr_t>(h.base()));
  EXPECT_EQ(h->top(), 0u);
  void* p = h->malloc(16);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(h->top(), EnclaveHeap::kGrowChunk);
  // Only the pages holding headers were touched; nothing above top.
  EXPECT_LE(h.resident_pages(0, h->top()), 4u);
  EXPECT_EQ(h.resident_pages(h->top(), h.reserve() - h->top()), 0u);

  std::vector<void*> blocks;
  for (int i = 0; i < 32; ++i) {
    void* q = h->malloc(kMiB);
    ASSERT_NE(q, nullptr);
    blocks.push_back(q);
  }
  size_t top = h->top();
  EXPECT_GE(top, 32 * kMiB);
  EXPECT_LE(top, 32 * kMiB + 2 * EnclaveHeap::kGrowChunk);
  EXPECT_EQ(h.resident_pages(top, h.reserve() - top), 0u);
  // Freeing and reallocating the same sizes reuses memory: top stays.
  for (void* q : blocks) h->free(q);
  for (auto& q : blocks) q = h->malloc(kMiB);
  EXPECT_EQ(h->top(), top);
  for (void* q : blocks) h->free(q);
  h->free(p);
  EXPECT_EQ(h->stats().in_use_bytes, 0u);
  expect_ok(*h);
}

TEST(EnclaveHeap, SixtyFourGiBReserve) {
  TestHeap h(64 * kGiB, 64 * kGiB);
  if (!h.ok()) GTEST_SKIP() << "cannot map 64 GiB of address space here";
  void* p = h->malloc(100);
  void* q = h->malloc(10 * kMiB);
  void* r = h->aligned_alloc(kMiB, 3 * kMiB);
  ASSERT_TRUE(p && q && r);
  EXPECT_TRUE(aligned(r, kMiB));
  EXPECT_LE(h->top(), 16 * kMiB);
  EXPECT_EQ(h->stats().limit_bytes, 64 * kGiB);
  h->free(p);
  h->free(q);
  h->free(r);
  expect_ok(*h);
}

TEST(EnclaveHeap, InitTwiceIsNoOp) {
  TestHeap h(16 * kMiB, 8 * kMiB);
  ASSERT_TRUE(h.ok());
  void* p = h->malloc(64);
  h->init(h.base(), 16 * kMiB, 8 * kMiB);
  EXPECT_EQ(h->stats().live_allocations, 1u);
  EXPECT_EQ(h->stats().limit_bytes, 8 * kMiB);
  h->free(p);
}

TEST(EnclaveHeap, MallocBasics) {
  TestHeap h(64 * kMiB, 64 * kMiB);
  ASSERT_TRUE(h.ok());
  void* z1 = h->malloc(0);
  void* z2 = h->malloc(0);
  ASSERT_NE(z1, nullptr);
  ASSERT_NE(z2, nullptr);
  EXPECT_NE(z1, z2);
  std::set<void*> seen;
  std::vector<std::pair<void*, size_t>> live;
  for (size_t n = 1; n <= 70000; n = n < 2100 ? n + 1 : n * 5 / 4) {
    void* p = h->malloc(n);
    ASSERT_NE(p, nullptr) << n;
    EXPECT_TRUE(aligned(p, 16)) << n;
    EXPECT_TRUE(h->owns(p));
    EXPECT_GE(h->usable_size(p), n);
    EXPECT_TRUE(seen.insert(p).second);
    fill_pattern(p, n);
    live.emplace_back(p, n);
  }
  auto st = h->stats();
  EXPECT_EQ(st.live_allocations, live.size() + 2);
  EXPECT_EQ(st.total_allocations, live.size() + 2);
  expect_ok(*h);
  for (auto [p, n] : live) {
    ASSERT_TRUE(check_pattern(p, n, reinterpret_cast<uintptr_t>(p))) << n;
    h->free(p);
  }
  h->free(z1);
  h->free(z2);
  h->free(nullptr);
  st = h->stats();
  EXPECT_EQ(st.in_use_bytes, 0u);
  EXPECT_EQ(st.live_allocations, 0u);
  EXPECT_FALSE(h->owns(nullptr));
  int on_stack = 0;
  EXPECT_FALSE(h->owns(&on_stack));
  EXPECT_EQ(h->usable_size(nullptr), 0u);
  expect_ok(*h);
}

TEST(EnclaveHeap, SmallSizeClassesAndReuse) {
  TestHeap h(64 * kMiB, 64 * kMiB);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->usable_size(h->malloc(1)), 16u);
  EXPECT_EQ(h->usable_size(h->malloc(17)), 32u);
  EXPECT_EQ(h->usable_size(h->malloc(129)), 160u);
  EXPECT_EQ(h->usable_size(h->malloc(1000)), 1024u);
  EXPECT_GE(h->usable_size(h->malloc(1025)), 1025u);
  // LIFO reuse of a freed slot.
  void* a = h->malloc(40);
  h->free(a);
  EXPECT_EQ(h->malloc(40), a);
  // Many slabs of one class, then all freed: empty slabs go back to TLSF, and large blocks
  // reuse that memory without raising top.
  std::vector<void*> v;
  for (int i = 0; i < 20000; ++i) v.push_back(h->malloc(48));
  size_t top = h->top();
  for (void* p : v) h->free(p);
  expect_ok(*h);
  v.clear();
  for (int i = 0; i < 300; ++i) v.push_back(h->malloc(3000));
  EXPECT_EQ(h->top(), top);
  for (void* p : v) h->free(p);
  expect_ok(*h);
}

TEST(EnclaveHeap, HugeSizesFail) {
  TestHeap h(64 * kMiB, 32 * kMiB);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->malloc(SIZE_MAX), nullptr);
  EXPECT_EQ(h->malloc(SIZE_MAX - 15), nullptr);
  EXPECT_EQ(h->malloc(EnclaveHeap::kMaxReserve), nullptr);
  EXPECT_EQ(h->malloc(33 * kMiB), nullptr);
  EXPECT_EQ(h->aligned_alloc(kMiB, SIZE_MAX), nullptr);
  EXPECT_EQ(h->aligned_alloc(size_t{1} << 62, 16), nullptr);
  EXPECT_EQ(h->calloc(SIZE_MAX, 1), nullptr);
  EXPECT_EQ(h->stats().live_allocations, 0u);
  EXPECT_EQ(h->top(), 0u);  // nothing grew for requests that cannot fit
  void* p = h->malloc(16);
  EXPECT_EQ(h->realloc(p, SIZE_MAX), nullptr);
  EXPECT_EQ(h->usable_size(p), 16u);  // still valid after a failed realloc
  h->free(p);
  expect_ok(*h);
}

TEST(EnclaveHeap, Calloc) {
  TestHeap h(64 * kMiB, 64 * kMiB);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->calloc(SIZE_MAX / 2 + 1, 2), nullptr);
  EXPECT_EQ(h->calloc(2, SIZE_MAX / 2 + 1), nullptr);
  EXPECT_EQ(h->calloc(size_t{1} << 32, size_t{1} << 32), nullptr);
  void* z = h->calloc(0, 100);
  ASSERT_NE(z, nullptr);
  h->free(z);
  // calloc must zero reused memory of every kind: slots, large blocks, split remainders.
  for (size_t n :
       {size_t{8}, size_t{100}, size_t{1024}, size_t{1500}, size_t{70000}, size_t{3 * kMiB}}) {
    std::vector<void*> dirty;
    for (int i = 0; i < 8; ++i) {
      void* p = h->malloc(n);
      std::memset(p, 0xAB, h->usable_size(p));
      dirty.push_back(p);
    }
    for (void* p : dirty) h->free(p);
    for (int i = 0; i < 8; ++i) {
      auto* c = static_cast<unsigned char*>(h->calloc(n, 1));
      ASSERT_NE(c, nullptr);
      for (size_t k = 0; k < n; ++k) ASSERT_EQ(c[k], 0) << n << " @" << k;
      dirty[i] = c;
    }
    for (void* p : dirty) h->free(p);
  }
  // Fresh memory (skips the memset) reads as zero too.
  auto* f = static_cast<unsigned char*>(h->calloc(5, kMiB));
  ASSERT_NE(f, nullptr);
  for (size_t k = 0; k < 5 * kMiB; k += 511) ASSERT_EQ(f[k], 0);
  h->free(f);
  expect_ok(*h);
}

TEST(EnclaveHeap, Realloc) {
  TestHeap h(256 * kMiB, 256 * kMiB);
  ASSERT_TRUE(h.ok());
  // realloc(nullptr) == malloc; realloc(p, 0) frees.
  void* p = h->realloc(nullptr, 40);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(h->realloc(p, 0), nullptr);
  EXPECT_EQ(h->stats().live_allocations, 0u);

  // Grow through every regime, checking the data each time.
  size_t n = 10;
  p = h->malloc(n);
  fill_pattern(p, n);
  uintptr_t origin = reinterpret_cast<uintptr_t>(p);
  for (size_t next : {size_t{16}, size_t{100}, size_t{1000}, size_t{1100}, size_t{5000},
                      size_t{70000}, size_t{kMiB}, size_t{9 * kMiB}, size_t{20 * kMiB}}) {
    void* q = h->realloc(p, next);
    ASSERT_NE(q, nullptr) << next;
    EXPECT_TRUE(aligned(q, 16));
    ASSERT_TRUE(check_pattern(q, n, origin)) << n << " -> " << next;
    EXPECT_GE(h->usable_size(q), next);
    p = q;
    n = next;
    fill_pattern(p, n);
    origin = reinterpret_cast<uintptr_t>(p);
    expect_ok(*h);
  }
  // Shrink through the same regimes.
  for (size_t next :
       {size_t{5 * kMiB}, size_t{100000}, size_t{3000}, size_t{900}, size_t{64}, size_t{1}}) {
    void* q = h->realloc(p, next);
    ASSERT_NE(q, nullptr) << next;
    ASSERT_TRUE(check_pattern(q, next, origin)) << n << " -> " << next;
    p = q;
    n = next;
    fill_pattern(p, n);
    origin = reinterpret_cast<uintptr_t>(p);
    expect_ok(*h);
  }
  h->free(p);

  // In-place growth into a free neighbour and at the end of the heap.
  void* a = h->malloc(100000);
  void* b = h->malloc(100000);
  void* c = h->malloc(100000);
  fill_pattern(b, 100000);
  h->free(c);
  void* b2 = h->realloc(b, 190000);
  EXPECT_EQ(b2, b);
  EXPECT_TRUE(check_pattern(b2, 100000, reinterpret_cast<uintptr_t>(b)));
  expect_ok(*h);
  h->free(a);
  h->free(b2);
  EXPECT_EQ(h->stats().in_use_bytes, 0u);
  expect_ok(*h);
}

TEST(EnclaveHeap, ReallocGrowsInPlaceAtTheEnd) {
  TestHeap h(256 * kMiB, 256 * kMiB);
  ASSERT_TRUE(h.ok());
  void* p = h->malloc(2 * kMiB);  // the last block but for a small free remainder
  fill_pattern(p, 2 * kMiB);
  void* q = h->realloc(p, 5 * kMiB);  // absorbs the remainder and raises top
  EXPECT_EQ(q, p);
  EXPECT_TRUE(check_pattern(q, 2 * kMiB, reinterpret_cast<uintptr_t>(p)));
  void* r = h->realloc(q, 9 * kMiB);  // q is now the very last block
  EXPECT_EQ(r, p);
  EXPECT_TRUE(check_pattern(r, 2 * kMiB, reinterpret_cast<uintptr_t>(p)));
  EXPECT_LE(h->top(), 9 * kMiB + 2 * EnclaveHeap::kGrowChunk);
  expect_ok(*h);
  h->free(r);
  expect_ok(*h);
}

TEST(EnclaveHeap, AlignedAlloc) {
  TestHeap h(512 * kMiB, 512 * kMiB);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->aligned_alloc(0, 16), nullptr);
  EXPECT_EQ(h->aligned_alloc(48, 16), nullptr);
  EXPECT_EQ(h->aligned_alloc(3, 16), nullptr);
  std::vector<void*> v;
  for (size_t align = 1; align <= 4 * kMiB; align *= 2) {
    for (size_t n : {size_t{0}, size_t{1}, size_t{100}, size_t{5000}, align, 2 * align + 7}) {
      void* p = h->aligned_alloc(align, n);
      ASSERT_NE(p, nullptr) << align << " " << n;
      EXPECT_TRUE(aligned(p, std::max<size_t>(align, 16))) << align << " " << n;
      EXPECT_GE(h->usable_size(p), n);
      fill_pattern(p, n);
      v.push_back(p);
    }
  }
  expect_ok(*h);
  for (void* p : v) h->free(p);
  EXPECT_EQ(h->stats().in_use_bytes, 0u);
  expect_ok(*h);
}

TEST(EnclaveHeap, LimitAndSetLimit) {
  TestHeap h(64 * kMiB, 8 * kMiB);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->stats().limit_bytes, 8 * kMiB);
  std::vector<void*> v;
  for (;;) {
    void* p = h->malloc(100 * 1024);
    if (p == nullptr) break;
    v.push_back(p);
    ASSERT_LT(v.size(), 1000u);
  }
  auto st = h->stats();
  EXPECT_LE(st.top_bytes, 8 * kMiB);
  EXPECT_GE(v.size() * 100 * 1024, 7 * kMiB);
  EXPECT_EQ(st.live_allocations, v.size());
  // Small allocations still fit in what is left (slab or, failing that, small TLSF blocks).
  std::vector<void*> smalls;
  for (;;) {
    void* p = h->malloc(200);
    if (p == nullptr) break;
    smalls.push_back(p);
    ASSERT_LT(smalls.size(), 100000u);
  }
  EXPECT_LE(h->top(), 8 * kMiB);
  expect_ok(*h);
  // Freeing allows reuse.
  h->free(v.back());
  v.pop_back();
  void* again = h->malloc(100 * 1024);
  ASSERT_NE(again, nullptr);
  v.push_back(again);
  EXPECT_EQ(h->malloc(100 * 1024), nullptr);
  // Raise the limit: more fits.
  h->set_limit(16 * kMiB);
  EXPECT_EQ(h->stats().limit_bytes, 16 * kMiB);
  void* more = h->malloc(4 * kMiB);
  ASSERT_NE(more, nullptr);
  EXPECT_LE(h->top(), 16 * kMiB);
  // Lower it below top: clamped to top, nothing above top is ever used.
  h->set_limit(0);
  EXPECT_EQ(h->stats().limit_bytes, h->top());
  EXPECT_EQ(h->malloc(8 * kMiB), nullptr);
  // Above reserve: clamped to reserve.
  h->set_limit(SIZE_MAX);
  EXPECT_EQ(h->stats().limit_bytes, 64 * kMiB);
  expect_ok(*h);
  for (void* p : v) h->free(p);
  for (void* p : smalls) h->free(p);
  h->free(more);
  st = h->stats();
  EXPECT_EQ(st.in_use_bytes, 0u);
  EXPECT_EQ(st.live_allocations, 0u);
  expect_ok(*h);
}

TEST(EnclaveHeap, CheckReportsCorruption) {
  TestHeap h(16 * kMiB, 16 * kMiB);
  ASSERT_TRUE(h.ok());
  void* a = h->malloc(5000);
  void* b = h->malloc(5000);
  expect_ok(*h);
  auto* hdr = reinterpret_cast<uint64_t*>(b) - 1;  // owner word of b's header
  *hdr ^= 1u << 8;
  std::string why;
  EXPECT_FALSE(h->check(&why));
  EXPECT_NE(why.find("offset"), std::string::npos) << why;
  *hdr ^= 1u << 8;
  expect_ok(*h);
  h->free(a);
  h->free(b);
}

// Single-threaded random operations near the limit, with check() all along: every path
// (slabs, TLSF splits and merges, aligned gaps, in-place realloc, growth, out-of-limit) keeps
// the heap consistent and never loses data.
TEST(EnclaveHeap, RandomOpsKeepInvariants) {
  TestHeap h(64 * kMiB, 24 * kMiB);
  ASSERT_TRUE(h.ok());
  std::mt19937_64 rng(42);
  struct Live {
    void* p;
    size_t n;
  };
  std::vector<Live> live;
  size_t failures = 0;
  auto pick = [&]() -> size_t {
    switch (rng() % 4) {
      case 0:
        return rng() % 64;
      case 1:
        return rng() % 1100;
      case 2:
        return rng() % 70000;
      default:
        return rng() % (3 * kMiB);
    }
  };
  for (int op = 0; op < 30000; ++op) {
    unsigned what = rng() % 10;
    if (what < 4 || live.empty()) {
      size_t n = pick();
      void* p;
      switch (rng() % 4) {
        case 0:
          p = h->calloc(n, 1);
          if (p != nullptr) {
            for (size_t i = 0; i < n; ++i) {
              ASSERT_EQ(static_cast<unsigned char*>(p)[i], 0);
            }
          }
          break;
        case 1: {
          size_t align = size_t{1} << (rng() % 21);
          p = h->aligned_alloc(align, n);
          if (p != nullptr) {
            ASSERT_TRUE(aligned(p, align));
          }
          break;
        }
        default:
          p = h->malloc(n);
      }
      if (p == nullptr) {
        ++failures;
        continue;
      }
      fill_pattern(p, n);
      live.push_back({p, n});
    } else if (what < 7) {
      size_t i = rng() % live.size();
      ASSERT_TRUE(check_pattern(live[i].p, live[i].n, reinterpret_cast<uintptr_t>(live[i].p)));
      h->free(live[i].p);
      live[i] = live.back();
      live.pop_back();
    } else {
      size_t i = rng() % live.size();
      size_t n = pick();
      uintptr_t origin = reinterpret_cast<uintptr_t>(live[i].p);
      void* q = h->realloc(live[i].p, n);
      if (n == 0) {
        ASSERT_EQ(q, nullptr);
        live[i] = live.back();
        live.pop_back();
        continue;
      }
      if (q == nullptr) {
        ++failures;  // the old block is still valid
        ASSERT_TRUE(check_pattern(live[i].p, live[i].n, origin));
        continue;
      }
      ASSERT_TRUE(check_pattern(q, std::min(n, live[i].n), origin)) << op;
      fill_pattern(q, n);
      live[i] = {q, n};
    }
    if (op % 250 == 0) {
      std::string why;
      ASSERT_TRUE(h->check(&why)) << "op " << op << ": " << why;
      ASSERT_LE(h->top(), 24 * kMiB);
    }
  }
  EXPECT_GT(failures, 0u);  // the limit was reached along the way
  for (const Live& l : live) {
    ASSERT_TRUE(check_pattern(l.p, l.n, reinterpret_cast<uintptr_t>(l.p)));
    h->free(l.p);
  }
  EXPECT_EQ(h->stats().in_use_bytes, 0u);
  EXPECT_EQ(h->stats().live_allocations, 0u);
  expect_ok(*h);
}

// Invariant violations abort (never a silent corruption).
using EnclaveHeapDeathTest = ::testing::Test;

TEST(EnclaveHeapDeathTest, InvariantViolationsAbort) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  TestHeap h(16 * kMiB, 16 * kMiB);
  ASSERT_TRUE(h.ok());
  void* small = h->malloc(32);
  void* large = h->malloc(50000);
  int on_stack = 0;
  EXPECT_DEATH(h->free(&on_stack), "");                         // foreign pointer
  EXPECT_DEATH(h->free(static_cast<char*>(small) + 8), "");     // misaligned
  EXPECT_DEATH(h->free(static_cast<char*>(small) + 16), "");    // interior, no header
  EXPECT_DEATH(h->free(static_cast<char*>(large) + 4096), "");  // interior of a block
  EXPECT_DEATH(h->usable_size(&on_stack), "");
  EXPECT_DEATH(
      {
        h->free(small);
        h->free(small);
      },
      "");
  EXPECT_DEATH(
      {
        h->free(large);
        h->free(large);
      },
      "");
  EXPECT_DEATH(
      {
        reinterpret_cast<uint64_t*>(large)[-1] += 16;  // corrupt the size in the header
        h->free(large);
      },
      "");
  EXPECT_DEATH(
      {
        void* c = h->malloc(50000);
        reinterpret_cast<uint64_t*>(c)[-2] = 48;  // corrupt the boundary tag
        h->free(c);
      },
      "");
  h->free(small);
  h->free(large);
  expect_ok(*h);
}

#ifdef HEAP_TEST_ASAN
// Under ASan, the heap poisons freed blocks: a use-after-free inside our heap is reported.
TEST(EnclaveHeapDeathTest, AsanReportsUseAfterFree) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  TestHeap h(64 * kMiB, 64 * kMiB);
  ASSERT_TRUE(h.ok());
  for (size_t n : {size_t{24}, size_t{1000}, size_t{40000}, size_t{3 * kMiB}}) {
    auto* p = static_cast<volatile char*>(h->malloc(n));
    ASSERT_NE(p, nullptr);
    p[0] = 1;
    p[n - 1] = 2;
    h->free(const_cast<char*>(p));
    EXPECT_DEATH((void)p[0], "use-after-poison") << n;
    EXPECT_DEATH((void)p[n / 2], "use-after-poison") << n;
    EXPECT_DEATH(p[n - 1] = 3, "use-after-poison") << n;
  }
  // Never-carved slab space is off limits too.
  auto* q = static_cast<volatile char*>(h->malloc(64));
  EXPECT_DEATH((void)q[64 + 16 + 4], "use-after-poison");
  h->free(const_cast<char*>(q));
  expect_ok(*h);
}
#endif

}  // namespace
}  // namespace constmig::trusted
