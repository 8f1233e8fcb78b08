// access_pass.runtime: behaviour of code compiled WITH the Access Tracker plugin against a fake
// runtime (fake_runtime.cpp). A fetch "restores" a page by filling it with marker(page), so
// app code that observes the marker proves the fetch happened before its access.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <memory>

#include "fake_runtime.h"

using fake_rt::ActiveScope;
using fake_rt::kPage;
using fake_rt::kWordsPerPage;
using fake_rt::marker;

// ---- "app" code: instrumented by the plugin (noinline so the accesses stay in them) ----
namespace app {

__attribute__((noinline)) uint64_t read_elem(const uint64_t* a, size_t i) {
  return a[i];
}
__attribute__((noinline)) void write_elem(uint64_t* a, size_t i, uint64_t v) {
  a[i] = v;
}
__attribute__((noinline)) void copy(void* d, const void* s, size_t n) {
  std::memcpy(d, s, n);
}
__attribute__((noinline)) void move(void* d, const void* s, size_t n) {
  std::memmove(d, s, n);
}
__attribute__((noinline)) void fill(void* d, int c, size_t n) {
  std::memset(d, c, n);
}

__attribute__((noinline)) uint64_t sum(const uint64_t* a, size_t n) {
  uint64_t s = 0;
  for (size_t i = 0; i < n; ++i) s += a[i];
  return s;
}

// *scale is reloaded every iteration (out may alias it): its check is hoisted before the loop.
__attribute__((noinline)) void scale_into(uint64_t* out, const uint64_t* scale, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = *scale * i;
}

__attribute__((noinline)) uint64_t atomic_inc(uint64_t* p) {
  return __atomic_fetch_add(p, 1, __ATOMIC_SEQ_CST);
}

__attribute__((noinline)) bool cas(uint64_t* p, uint64_t expected, uint64_t desired) {
  return __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_SEQ_CST,
                                     __ATOMIC_SEQ_CST);
}

__attribute__((noinline)) uint64_t atomic_load(const uint64_t* p) {
  return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

struct Rec {
  uint64_t a, b, c, d;
};
__attribute__((noinline)) uint64_t rec_sum(const Rec* r) {
  return r->a + r->b + r->c + r->d;
}

volatile int g_sink;
int g_table[64];

__attribute__((noinline)) int stack_work(int x) {
  volatile int buf[256];
  char tmp[512];
  for (int i = 0; i < 256; ++i) buf[i] = x * i;
  std::memset(tmp, x, sizeof tmp);
  int s = 0;
  for (int i = 0; i < 256; ++i) s += buf[i] + tmp[i];
  return s;
}

// Loops for the whole-loop range checks (docs/access_tracker.md, "Loops"): affine accesses with
// a trip count the compiler does not know (n) or does (sum_two_pages), forwards, backwards,
// strided, writing, and one non-affine access that must stay checked per access.
__attribute__((noinline)) uint64_t sum_every_512th(const uint64_t* a, size_t n) {
  uint64_t s = 0;
  for (size_t i = 0; i < n; i += 512) s += a[i];  // one word per page
  return s;
}
__attribute__((noinline)) uint64_t sum_backwards(const uint64_t* a, size_t n) {
  uint64_t s = 0;
  for (size_t i = n; i-- > 0;) s += a[i] * (i + 1);
  return s;
}
__attribute__((noinline)) void fill_words(uint64_t* a, size_t n, uint64_t v) {
  for (size_t i = 0; i < n; ++i) a[i] = v + (i & 1);
}
__attribute__((noinline)) uint64_t sum_two_pages(const uint64_t* a) {
  uint64_t s = 0;
  for (size_t i = 0; i < 2 * kWordsPerPage; ++i) s += a[i];
  return s;
}
__attribute__((noinline)) uint64_t sum_indirect(const uint64_t* a, const uint32_t* idx, size_t n) {
  uint64_t s = 0;
  for (size_t i = 0; i < n; ++i) s += a[idx[i]];
  return s;
}

__attribute__((noinline)) int global_work(int x) {
  for (int i = 0; i < 64; ++i) g_table[i] += x;
  std::memset(g_table, 0, 16);
  g_sink = g_table[x & 63];
  return g_table[(x + 1) & 63];
}

}  // namespace app

namespace {

class AccessPassRuntime : public ::testing::Test {
 protected:
  void SetUp() override { fake_rt::reset(); }
  static size_t pages_restored() {
    size_t n = 0;
    for (size_t p = 0; p < fake_rt::kPages; ++p) n += fake_rt::restored(p) ? 1 : 0;
    return n;
  }
  // How a loop over `pages` missing pages fetched them: with range checks (access_pass.runtime)
  // a few calls cover the whole loop; over the cap (access_pass.runtime_smallcap, compiled with
  // CONSTMIG_AT_RANGE_CAP=ACCESS_PASS_RANGE_CAP) the per-iteration checks fetch page by page and
  // no call is longer than the cap.
  static void expect_loop_fetches(size_t pages) {
#if defined(ACCESS_PASS_RANGE_CAP)
    EXPECT_GE(fake_rt::fetch_count(), pages);
    for (size_t c = 0; c < fake_rt::fetch_count(); ++c) {
      EXPECT_LE(fake_rt::fetch_call(c).len, uint64_t{ACCESS_PASS_RANGE_CAP}) << c;
    }
#elif defined(__OPTIMIZE__)
    EXPECT_LT(fake_rt::fetch_count(), pages) << "no whole-loop range check ran";
#else
    (void)pages;  // -O0: no versioning, no range checks; one check per access
#endif
  }
};

TEST_F(AccessPassRuntime, InactiveNeverFetches) {
  uint64_t* h = fake_rt::heap64();
  app::write_elem(h, 3 * kWordsPerPage + 1, 7);
  EXPECT_EQ(app::read_elem(h, 3 * kWordsPerPage + 1), 7u);
  char buf[3 * 4096];
  app::copy(buf, fake_rt::heap() + 100, sizeof buf);
  app::fill(fake_rt::heap() + 8 * kPage, 1, 3 * kPage);
  EXPECT_EQ(app::sum(h, 4 * kWordsPerPage), 7u);
  EXPECT_EQ(app::atomic_inc(h + 12 * kWordsPerPage), 0u);
  EXPECT_EQ(fake_rt::fetch_count(), 0u);
  EXPECT_EQ(pages_restored(), 0u);
}

TEST_F(AccessPassRuntime, ReadFetchesExactlyThatPageFirst) {
  const size_t i = 3 * kWordsPerPage + 7;
  uint64_t v;
  {
    ActiveScope active;
    v = app::read_elem(fake_rt::heap64(), i);
  }
  EXPECT_EQ(v, marker(3)) << "the load ran before the page was fetched";
  ASSERT_EQ(fake_rt::fetch_count(), 1u);
  EXPECT_EQ(fake_rt::fetch_call(0).addr, reinterpret_cast<uintptr_t>(fake_rt::heap64() + i));
  EXPECT_EQ(fake_rt::fetch_call(0).len, 8u);
  EXPECT_TRUE(fake_rt::restored(3));
  EXPECT_EQ(pages_restored(), 1u);
}

TEST_F(AccessPassRuntime, WriteFetchesBeforeTheStore) {
  uint64_t* h = fake_rt::heap64();
  {
    ActiveScope active;
    app::write_elem(h, 5 * kWordsPerPage + 1, 42);
  }
  // Had the fetch come after the store, the marker would have overwritten 42.
  EXPECT_EQ(h[5 * kWordsPerPage + 1], 42u);
  EXPECT_EQ(h[5 * kWordsPerPage], marker(5));
  EXPECT_EQ(fake_rt::fetch_count(), 1u);
  EXPECT_EQ(pages_restored(), 1u);
}

TEST_F(AccessPassRuntime, RestoredPageIsNotFetchedAgain) {
  uint64_t a, b;
  {
    ActiveScope active;
    a = app::read_elem(fake_rt::heap64(), 2 * kWordsPerPage);
    b = app::read_elem(fake_rt::heap64(), 2 * kWordsPerPage + 9);
  }
  EXPECT_EQ(a, marker(2));
  EXPECT_EQ(b, marker(2));
  EXPECT_EQ(fake_rt::fetch_count(), 1u);
}

TEST_F(AccessPassRuntime, MemcpyAcrossThreePagesFetchesThem) {
  const uint8_t* src = fake_rt::heap() + 2 * kPage + 100;
  const size_t n = 2 * kPage + 50;  // pages 2, 3 and 4
  auto dst = std::make_unique<uint8_t[]>(n);
  {
    ActiveScope active;
    app::copy(dst.get(), src, n);
  }
  EXPECT_TRUE(fake_rt::restored(2));
  EXPECT_TRUE(fake_rt::restored(3));
  EXPECT_TRUE(fake_rt::restored(4));
  EXPECT_EQ(pages_restored(), 3u);
  ASSERT_GE(fake_rt::fetch_count(), 1u);
  bool src_call = false;
  for (size_t c = 0; c < fake_rt::fetch_count(); ++c) {
    src_call |= fake_rt::fetch_call(c).addr == reinterpret_cast<uintptr_t>(src) &&
                fake_rt::fetch_call(c).len == n;
  }
  EXPECT_TRUE(src_call);
  uint64_t w;
  std::memcpy(&w, dst.get() + (kPage - 100), sizeof w);  // first word of page 3 in the copy
  EXPECT_EQ(w, marker(3));
  std::memcpy(&w, dst.get() + (4 * kPage - (2 * kPage + 100)) + 8, sizeof w);  // page 4 + 8
  EXPECT_EQ(w, marker(4));
}

TEST_F(AccessPassRuntime, MemsetAndMemmoveFetchBeforeWriting) {
  uint8_t* h = fake_rt::heap();
  {
    ActiveScope active;
    app::fill(h + 6 * kPage + 8, 0xab, 2 * kPage);          // pages 6, 7, 8
    app::move(h + 10 * kPage + 16, h + 13 * kPage, kPage);  // dst 10-11, src 13
  }
  for (size_t p : {6, 7, 8, 10, 11, 13}) EXPECT_TRUE(fake_rt::restored(p)) << p;
  EXPECT_EQ(pages_restored(), 6u);
  uint64_t w;
  std::memcpy(&w, h + 6 * kPage, 8);  // before the memset's start: the fetched marker
  EXPECT_EQ(w, marker(6));
  EXPECT_EQ(h[6 * kPage + 8], 0xab);
  EXPECT_EQ(h[8 * kPage + 7], 0xab);
  std::memcpy(&w, h + 8 * kPage + 8, 8);  // after its end
  EXPECT_EQ(w, marker(8));
  std::memcpy(&w, h + 10 * kPage + 16, 8);  // moved from page 13
  EXPECT_EQ(w, marker(13));
  std::memcpy(&w, h + 10 * kPage, 8);  // page 10 before the move's start
  EXPECT_EQ(w, marker(10));
}

TEST_F(AccessPassRuntime, LoopFetchesEveryPageItReads) {
  uint64_t s;
  {
    ActiveScope active;
    s = app::sum(fake_rt::heap64() + 11 * kWordsPerPage, 2 * kWordsPerPage);
  }
  EXPECT_EQ(s, kWordsPerPage * marker(11) + kWordsPerPage * marker(12));
  EXPECT_TRUE(fake_rt::restored(11));
  EXPECT_TRUE(fake_rt::restored(12));
  EXPECT_EQ(pages_restored(), 2u);
}

TEST_F(AccessPassRuntime, HoistedInvariantCheckStillFetches) {
  uint64_t* h = fake_rt::heap64();
  {
    ActiveScope active;
    app::scale_into(h + 1 * kWordsPerPage, h + 14 * kWordsPerPage + 3, 16);
  }
  EXPECT_TRUE(fake_rt::restored(14));
  EXPECT_TRUE(fake_rt::restored(1));
  EXPECT_EQ(h[kWordsPerPage + 2], marker(14) * 2);
  EXPECT_EQ(h[kWordsPerPage + 16], marker(1));
}

TEST_F(AccessPassRuntime, AtomicsFetchFirst) {
  uint64_t* h = fake_rt::heap64();
  uint64_t old, loaded;
  bool swapped;
  {
    ActiveScope active;
    old = app::atomic_inc(h + 13 * kWordsPerPage + 5);
    swapped = app::cas(h + 14 * kWordsPerPage, marker(14), 99);
    loaded = app::atomic_load(h + 15 * kWordsPerPage + 1);
  }
  EXPECT_EQ(old, marker(13));
  EXPECT_EQ(h[13 * kWordsPerPage + 5], marker(13) + 1);
  EXPECT_TRUE(swapped) << "cmpxchg ran before its page was fetched";
  EXPECT_EQ(h[14 * kWordsPerPage], 99u);
  EXPECT_EQ(loaded, marker(15));
  EXPECT_EQ(pages_restored(), 3u);
}

TEST_F(AccessPassRuntime, StructFieldsShareOneFetch) {
  const auto* r = reinterpret_cast<const app::Rec*>(fake_rt::heap() + 9 * kPage + 64);
  uint64_t s;
  {
    ActiveScope active;
    s = app::rec_sum(r);
  }
  EXPECT_EQ(s, 4 * marker(9));
  ASSERT_EQ(fake_rt::fetch_count(), 1u);
  EXPECT_EQ(fake_rt::fetch_call(0).addr, reinterpret_cast<uintptr_t>(r));
#ifdef __OPTIMIZE__
  // One merged range check for the four fields.
  EXPECT_EQ(fake_rt::fetch_call(0).len, sizeof(app::Rec));
#else
  // -O0 reloads r for every field: four checks, the first fetches, the others find the bit.
  EXPECT_EQ(fake_rt::fetch_call(0).len, sizeof(uint64_t));
#endif
}

TEST_F(AccessPassRuntime, StackGlobalsAndOtherMemoryNeverFetch) {
  auto outside = std::make_unique<uint64_t[]>(1024);  // the process heap, not the fake one
  int a, b;
  uint64_t c;
  {
    ActiveScope active;
    a = app::stack_work(3);
    b = app::global_work(5);
    app::write_elem(outside.get(), 100, 1);
    c = app::read_elem(outside.get(), 100);
  }
  EXPECT_NE(a, 0);
  EXPECT_EQ(b, 5);
  EXPECT_EQ(c, 1u);
  EXPECT_EQ(fake_rt::fetch_count(), 0u);
  EXPECT_EQ(pages_restored(), 0u);
}

TEST_F(AccessPassRuntime, RestoredBitsMeanNoFetch) {
  fake_rt::set_all_restored();
  uint64_t* h = fake_rt::heap64();
  uint64_t v;
  {
    ActiveScope active;
    app::write_elem(h, 4 * kWordsPerPage, 5);
    v = app::read_elem(h, 4 * kWordsPerPage);
    app::fill(fake_rt::heap() + kPage, 1, 8);
    app::rec_sum(reinterpret_cast<const app::Rec*>(fake_rt::heap() + 7 * kPage));
  }
  EXPECT_EQ(v, 5u);
  // Only the constant-length paths test the bitmap inline; a dynamic memset hands its range to
  // the runtime's fetch, which (the real one) finds the bits set and returns.
  for (size_t c = 0; c < fake_rt::fetch_count(); ++c) {
    EXPECT_EQ(fake_rt::fetch_call(c).addr, reinterpret_cast<uintptr_t>(fake_rt::heap() + kPage));
  }
  EXPECT_LE(fake_rt::fetch_count(), 1u);
  EXPECT_EQ(h[kWordsPerPage + 1], 0u) << "a fetch refilled a restored page";
}

TEST_F(AccessPassRuntime, LoopEnteredWithFlagClearRunsUncheckedAndFetchesNothing) {
  uint64_t* h = fake_rt::heap64();
  EXPECT_EQ(app::sum(h, fake_rt::kPages * kWordsPerPage), 0u);
  EXPECT_EQ(app::sum_every_512th(h, fake_rt::kPages * kWordsPerPage), 0u);
  app::fill_words(h + 2 * kWordsPerPage, kWordsPerPage, 5);
  EXPECT_EQ(app::sum_two_pages(h + 2 * kWordsPerPage), kWordsPerPage * 5 + kWordsPerPage / 2);
  EXPECT_EQ(fake_rt::fetch_count(), 0u);
  EXPECT_EQ(pages_restored(), 0u);
}

TEST_F(AccessPassRuntime, RangeCheckFetchesEveryPageTheLoopReads) {
  const size_t first = 2, pages = 8;
  uint64_t s;
  {
    ActiveScope active;
    s = app::sum(fake_rt::heap64() + first * kWordsPerPage, pages * kWordsPerPage);
  }
  uint64_t want = 0;
  for (size_t p = first; p < first + pages; ++p) want += kWordsPerPage * marker(p);
  EXPECT_EQ(s, want) << "the loop read a page before it was fetched";
  for (size_t p = first; p < first + pages; ++p) EXPECT_TRUE(fake_rt::restored(p)) << p;
  EXPECT_EQ(pages_restored(), pages) << "the range reached past the loop's array";
  expect_loop_fetches(pages);
}

TEST_F(AccessPassRuntime, StridedLoopFetchesEveryPageItTouches) {
  uint64_t s;
  {
    ActiveScope active;
    s = app::sum_every_512th(fake_rt::heap64(), fake_rt::kPages * kWordsPerPage);
  }
  uint64_t want = 0;
  for (size_t p = 0; p < fake_rt::kPages; ++p) want += marker(p);
  EXPECT_EQ(s, want);
  EXPECT_EQ(pages_restored(), fake_rt::kPages);
  expect_loop_fetches(fake_rt::kPages);
}

TEST_F(AccessPassRuntime, BackwardsLoopFetchesEveryPageItReads) {
  const size_t first = 9, pages = 3;
  uint64_t s;
  {
    ActiveScope active;
    s = app::sum_backwards(fake_rt::heap64() + first * kWordsPerPage, pages * kWordsPerPage);
  }
  uint64_t want = 0;
  for (size_t i = 0; i < pages * kWordsPerPage; ++i)
    want += marker(first + i / kWordsPerPage) * (i + 1);
  EXPECT_EQ(s, want);
  for (size_t p = first; p < first + pages; ++p) EXPECT_TRUE(fake_rt::restored(p)) << p;
  EXPECT_EQ(pages_restored(), pages);
  expect_loop_fetches(pages);
}

TEST_F(AccessPassRuntime, ConstantTripCountLoopFetchesBeforeItsFirstIteration) {
  uint64_t s;
  {
    ActiveScope active;
    s = app::sum_two_pages(fake_rt::heap64() + 6 * kWordsPerPage);
  }
  EXPECT_EQ(s, kWordsPerPage * (marker(6) + marker(7)));
  EXPECT_EQ(pages_restored(), 2u);
  expect_loop_fetches(2);
}

TEST_F(AccessPassRuntime, LoopStoresComeAfterTheRangeFetch) {
  uint64_t* h = fake_rt::heap64();
  {
    ActiveScope active;
    app::fill_words(h + 12 * kWordsPerPage + 1, 3 * kWordsPerPage - 2, 40);  // pages 12-14
  }
  // A fetch after a store would have put the marker back over it.
  for (size_t i = 1; i < 3 * kWordsPerPage - 1; ++i) {
    ASSERT_EQ(h[12 * kWordsPerPage + i], 40 + ((i - 1) & 1)) << i;
  }
  EXPECT_EQ(h[12 * kWordsPerPage], marker(12));
  EXPECT_EQ(h[15 * kWordsPerPage - 1], marker(14));
  EXPECT_EQ(pages_restored(), 3u);
  expect_loop_fetches(3);
}

TEST_F(AccessPassRuntime, IndirectAccessStaysCheckedPerAccess) {
  // idx lives outside the fake heap; a[idx[i]] is not affine: only the pages it reads come in.
  const uint32_t idx[] = {3 * kWordsPerPage + 1, 7 * kWordsPerPage + 2, 11 * kWordsPerPage + 3,
                          7 * kWordsPerPage + 5};
  uint64_t s;
  {
    ActiveScope active;
    s = app::sum_indirect(fake_rt::heap64(), idx, 4);
  }
  EXPECT_EQ(s, marker(3) + 2 * marker(7) + marker(11));
  EXPECT_TRUE(fake_rt::restored(3));
  EXPECT_TRUE(fake_rt::restored(7));
  EXPECT_TRUE(fake_rt::restored(11));
  EXPECT_EQ(pages_restored(), 3u);
}

}  // namespace
