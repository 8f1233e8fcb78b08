// Tests of the Fault Tracker (src/platform/host_fault_tracker.h) on memory the tests map
// themselves: memfd_secret for the mprotect tracker, private anonymous memory for uffd.
//
// Oracle (after QEMU's migration tests): every 8-byte word of granule g starts as
// pattern(g, word); app threads add 1 to "their" word of a page (word t of the page for thread
// t) and count how often. At the end every touched word must equal pattern + count: a page that
// was lost, stale, or installed twice (overwriting increments) shows up.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <future>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "platform/host_fault_tracker.h"

using namespace constmig;
using namespace constmig::platform;
using namespace std::chrono_literals;

namespace {

constexpr size_t kPage = 4096;
// Granule sizes x spin settings (default spin, and 0: faulting threads sleep at once).
const std::pair<size_t, uint32_t> kGranuleSpinCases[] = {{4096, TrackerOptions{}.spin_ns},
                                                         {64 << 10, TrackerOptions{}.spin_ns},
                                                         {4096, 0},
                                                         {64 << 10, 0}};

uint64_t pattern(uint64_t g, uint64_t word) {
  uint64_t z = g * 0x9e3779b97f4a7c15ull + word + 1;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void fill_pattern(uint64_t g, MutableByteView dst) {
  auto* w = reinterpret_cast<uint64_t*>(dst.data());
  for (size_t i = 0; i < dst.size() / 8; ++i) w[i] = pattern(g, i);
}

uint64_t load(const uint8_t* p) {
  return *reinterpret_cast<const volatile uint64_t*>(p);
}

// Test memory: what each kind needs.
struct Region {
  TrackerKind kind;
  size_t len = 0;
  int fd = -1;
  uint8_t* p = nullptr;

  Region(TrackerKind k, size_t l) : kind(k), len(l) {
    void* m;
    if (k == TrackerKind::kMprotect) {
      fd = static_cast<int>(syscall(SYS_memfd_secret, O_CLOEXEC));
      if (fd < 0) return;
      if (ftruncate(fd, static_cast<off_t>(len)) != 0) return;
      m = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    } else {
      m = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
               -1, 0);
    }
    if (m != MAP_FAILED) p = static_cast<uint8_t*>(m);
  }
  ~Region() {
    if (p) munmap(p, len);
    if (fd >= 0) close(fd);
  }
  TrackerOptions options(size_t granule) const {
    TrackerOptions o;
    o.kind = kind;
    o.base = reinterpret_cast<uintptr_t>(p);
    o.len = len;
    o.granule = granule;
    o.memfd = fd;
    return o;
  }
};

// Counts FetchFn calls per granule and fills the pattern.
struct Fetcher {
  std::vector<std::atomic<int>> calls;
  std::atomic<int> coalesce_calls{0};
  explicit Fetcher(uint64_t n) : calls(n) {}
  FetchFn fn() {
    return [this](uint64_t g, FetchReason why, MutableByteView dst) {
      calls[g].fetch_add(1);
      if (why == FetchReason::kCoalesce) coalesce_calls.fetch_add(1);
      fill_pattern(g, dst);
      return ok_status();
    };
  }
};

std::string kind_name(const testing::TestParamInfo<TrackerKind>& i) {
  return tracker_kind_name(i.param);
}

class FaultTrackerTest : public testing::TestWithParam<TrackerKind> {
 protected:
  void SetUp() override {
    if (GetParam() == TrackerKind::kUffd) {
      Status s = FaultTracker::uffd_supported();
      if (!s.ok()) GTEST_SKIP() << "userfaultfd unavailable: " << s.error().message;
    }
  }
  std::unique_ptr<FaultTracker> make(const TrackerOptions& o, FetchFn f) {
    auto r = FaultTracker::create(o, std::move(f));
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
    return r.ok() ? std::move(r).value() : nullptr;
  }
};

// The oracle: app threads touch random pages, verify a random word, increment their own word.
struct Oracle {
  const Region& r;
  size_t granule;
  unsigned threads;
  // counts[t][page] = increments of word t of that page by thread t
  std::vector<std::vector<uint32_t>> counts;
  Oracle(const Region& reg, size_t g, unsigned t)
      : r(reg), granule(g), threads(t), counts(t, std::vector<uint32_t>(reg.len / kPage)) {}

  uint64_t word_index(size_t page, size_t word_in_page) const {
    return (page * kPage % granule) / 8 + word_in_page;
  }
  uint64_t granule_of(size_t page) const { return page * kPage / granule; }

  // Returns the number of wrong reads seen.
  int touch(unsigned t, size_t page, std::mt19937_64& rng) {
    int bad = 0;
    size_t w = threads + rng() % (kPage / 8 - threads);  // a word nobody increments
    uint8_t* pg = r.p + page * kPage;
    if (load(pg + w * 8) != pattern(granule_of(page), word_index(page, w))) ++bad;
    std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(pg + t * 8)).fetch_add(1);
    counts[t][page]++;
    return bad;
  }
  // After all threads joined (and the memory is accessible): every incremented word.
  int verify() const {
    int bad = 0;
    for (size_t page = 0; page < r.len / kPage; ++page) {
      for (unsigned t = 0; t < threads; ++t) {
        if (counts[t][page] == 0) continue;
        uint64_t v = load(r.p + page * kPage + t * 8);
        if (v != pattern(granule_of(page), word_index(page, t)) + counts[t][page]) ++bad;
      }
    }
    return bad;
  }
  std::set<uint64_t> touched_granules() const {
    std::set<uint64_t> s;
    for (unsigned t = 0; t < threads; ++t) {
      for (size_t page = 0; page < counts[t].size(); ++page) {
        if (counts[t][page]) s.insert(granule_of(page));
      }
    }
    return s;
  }
};

template <typename Pred>
bool wait_for(Pred p, std::chrono::milliseconds limit = 10s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!p()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

}  // namespace

// A fault blocks only the faulting thread, until its granule is fetched; then it sees exactly
// the fetched bytes. Meanwhile other threads run, read restored granules, and get their own
// faults served (a second tracker thread) while the first fetch is stuck.
TEST_P(FaultTrackerTest, FaultBlocksOnlyTheFaultingThreadUntilFetched) {
  constexpr size_t G = 64 << 10;
  Region r(GetParam(), 16 * G);
  ASSERT_NE(r.p, nullptr);
  Fetcher counter(16);
  std::promise<void> gate;
  std::shared_future<void> gate_f = gate.get_future().share();
  std::atomic<bool> fetch3_entered{false};
  auto tr = make(r.options(G), [&](uint64_t g, FetchReason why, MutableByteView dst) {
    if (g == 3) {
      fetch3_entered = true;
      gate_f.wait();
    }
    return counter.fn()(g, why, dst);
  });
  ASSERT_TRUE(tr);
  ASSERT_TRUE(tr->arm().ok());
  std::vector<uint8_t> five(G);
  fill_pattern(5, five);
  ASSERT_TRUE(tr->install(5, five).ok());

  std::atomic<bool> a_done{false};
  uint64_t a_seen = 0;
  auto t0 = std::chrono::steady_clock::now();
  std::thread a([&] {
    a_seen = load(r.p + 3 * G + 17 * 8);
    a_done = true;
  });
  ASSERT_TRUE(wait_for([&] { return fetch3_entered.load(); }));
  std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(a_done.load()) << "the faulting thread ran before its granule was fetched";

  // Other threads keep running: a restored granule reads fine, another fault is served.
  EXPECT_EQ(load(r.p + 5 * G + 8), pattern(5, 1));
  std::atomic<bool> b_done{false};
  uint64_t b_seen = 0;
  std::thread b([&] {
    b_seen = load(r.p + 7 * G + 4096);
    b_done = true;
  });
  EXPECT_TRUE(wait_for([&] { return b_done.load(); }, 5s)) << "a second fault waited for the first";
  EXPECT_FALSE(a_done.load());

  gate.set_value();
  a.join();
  b.join();
  // kUffd: the copy wakes the thread before the tracker thread updates its counters.
  EXPECT_TRUE(wait_for([&] { return tr->stats().restored == 3; }));
  auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(a_seen, pattern(3, 17));
  EXPECT_EQ(b_seen, pattern(7, 4096 / 8));
  std::vector<uint8_t> expect(G);
  fill_pattern(3, expect);
  EXPECT_EQ(std::memcmp(r.p + 3 * G, expect.data(), G), 0);
  EXPECT_EQ(counter.calls[3].load(), 1);
  EXPECT_EQ(counter.calls[7].load(), 1);
  EXPECT_EQ(counter.calls[5].load(), 0);
  EXPECT_TRUE(tr->restored(3));
  EXPECT_TRUE(tr->restored(5));
  EXPECT_FALSE(tr->restored(4));

  auto s = tr->stats();
  EXPECT_EQ(s.faults, 2u);
  EXPECT_EQ(s.fetched_on_demand, 2u);
  EXPECT_EQ(s.installed_background, 1u);
  EXPECT_EQ(s.restored, 3u);
  auto lat = tr->fault_latencies_ns();
  ASSERT_EQ(lat.size(), 2u);
  EXPECT_EQ(std::accumulate(lat.begin(), lat.end(), uint64_t{0}), s.blocktime_ns);
  // The blocked thread waited at least the 50 ms (kMprotect measures in the faulting thread;
  // kUffd on the tracker thread from reading the fault: also covers the gated fetch).
  EXPECT_GE(*std::max_element(lat.begin(), lat.end()), 50'000'000u);
  EXPECT_LE(s.blocktime_ns, static_cast<uint64_t>(std::chrono::nanoseconds(waited).count()) * 2);
}

// 8 threads touch random pages concurrently: everyone reads the right bytes, every touched
// granule is fetched exactly once, nothing else is fetched, and no increment is lost.
TEST_P(FaultTrackerTest, EightThreadsRandomTouchesEachGranuleFetchedOnce) {
  for (auto [granule, spin_ns] : kGranuleSpinCases) {
    const size_t G = granule;  // captured by the lambdas below (structured bindings are not)
    const uint32_t spin = spin_ns;
    SCOPED_TRACE("granule " + std::to_string(G) + ", spin_ns " + std::to_string(spin));
    Region r(GetParam(), 16 << 20);
    ASSERT_NE(r.p, nullptr);
    const uint64_t n = r.len / G;
    Fetcher f(n);
    auto o = r.options(G);
    o.fetch_threads = 2;
    o.spin_ns = spin;
    auto tr = make(o, f.fn());
    ASSERT_TRUE(tr);
    ASSERT_TRUE(tr->arm().ok());
    constexpr unsigned kThreads = 8;
    Oracle oracle(r, G, kThreads);
    std::atomic<int> bad{0};
    std::vector<std::thread> ts;
    for (unsigned t = 0; t < kThreads; ++t) {
      ts.emplace_back([&, t] {
        std::mt19937_64 rng(1000 + t);
        for (int i = 0; i < 1500; ++i) bad += oracle.touch(t, rng() % (r.len / kPage), rng);
      });
    }
    for (auto& t : ts) t.join();
    EXPECT_TRUE(wait_for([&] {
      auto s = tr->stats();
      return s.restored == s.fetched_on_demand;
    }));
    EXPECT_EQ(bad.load(), 0);
    EXPECT_EQ(oracle.verify(), 0);
    auto touched = oracle.touched_granules();
    uint64_t fetched = 0;
    for (uint64_t g = 0; g < n; ++g) {
      int c = f.calls[g].load();
      ASSERT_EQ(c, touched.count(g) ? 1 : 0) << "granule " << g;
      fetched += static_cast<uint64_t>(c);
    }
    auto s = tr->stats();
    EXPECT_EQ(s.fetched_on_demand, fetched);
    EXPECT_EQ(s.fetched_for_coalescing, 0u);
    EXPECT_EQ(s.restored, fetched);
    EXPECT_GE(s.faults, fetched);
    auto lat = tr->fault_latencies_ns();
    EXPECT_EQ(std::accumulate(lat.begin(), lat.end(), uint64_t{0}), s.blocktime_ns);
    EXPECT_EQ(s.latency_samples_dropped, 0u);
    if (GetParam() == TrackerKind::kMprotect) {
      EXPECT_EQ(lat.size(), s.faults);  // one sample per faulting thread
    } else {
      EXPECT_EQ(lat.size(), s.fetched_on_demand);  // one per resolved fault
    }
    std::vector<uint64_t> sorted = lat;
    std::sort(sorted.begin(), sorted.end());
    ASSERT_FALSE(sorted.empty());
    EXPECT_LE(sorted[sorted.size() / 2], sorted[sorted.size() * 99 / 100]);
    EXPECT_GT(sorted.front(), 0u);
  }
}

// Background installs race with faults on the same granules: each granule ends up installed
// by exactly one path, refused installs are kState, no page is lost or applied twice, and (for
// mprotect) installing everything ends with ONE mapping without disarm().
TEST_P(FaultTrackerTest, BackgroundInstallRacesWithFaults) {
  for (auto [granule, spin_ns] : kGranuleSpinCases) {
    const size_t G = granule;  // captured by the lambdas below (structured bindings are not)
    const uint32_t spin = spin_ns;
    SCOPED_TRACE("granule " + std::to_string(G) + ", spin_ns " + std::to_string(spin));
    Region r(GetParam(), 16 << 20);
    ASSERT_NE(r.p, nullptr);
    const uint64_t n = r.len / G;
    Fetcher f(n);
    auto o = r.options(G);
    o.max_open_runs = 64;  // exercise staging too
    o.spin_ns = spin;
    auto tr = make(o, [&](uint64_t g, FetchReason why, MutableByteView dst) {
      // widen the race window a little
      auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(g % 7 * 5);
      while (std::chrono::steady_clock::now() < until) {
      }
      return f.fn()(g, why, dst);
    });
    ASSERT_TRUE(tr);
    ASSERT_TRUE(tr->arm().ok());

    std::vector<int> installed_ok(n, 0);
    std::atomic<int> other_errors{0};
    std::atomic<bool> bg_done{false};
    std::thread bg([&] {
      std::vector<uint64_t> order(n);
      std::iota(order.begin(), order.end(), 0);
      std::shuffle(order.begin(), order.end(), std::mt19937_64(7));
      // page-aligned source for even granules, misaligned for odd ones (uffd staging path)
      auto* buf = static_cast<uint8_t*>(std::aligned_alloc(kPage, G + kPage));
      for (uint64_t g : order) {
        uint8_t* src = buf + (g % 2 ? 8 : 0);
        fill_pattern(g, MutableByteView(src, G));
        Status s = tr->install(g, ByteView(src, G));
        if (s.ok()) {
          installed_ok[g] = 1;
        } else if (s.error().code != Errc::kState) {
          other_errors++;
        }
      }
      std::free(buf);
      bg_done = true;
    });
    constexpr unsigned kThreads = 6;
    Oracle oracle(r, G, kThreads);
    std::atomic<int> bad{0};
    std::vector<std::thread> ts;
    for (unsigned t = 0; t < kThreads; ++t) {
      ts.emplace_back([&, t] {
        std::mt19937_64 rng(77 + t);
        int i = 0;
        while (!bg_done.load() || i < 500) {
          bad += oracle.touch(t, rng() % (r.len / kPage), rng);
          ++i;
        }
      });
    }
    bg.join();
    for (auto& t : ts) t.join();
    EXPECT_TRUE(wait_for([&] { return tr->stats().restored == n; }));
    EXPECT_EQ(other_errors.load(), 0);
    EXPECT_EQ(bad.load(), 0);
    EXPECT_EQ(oracle.verify(), 0);
    uint64_t ok_installs = 0, fetched = 0;
    for (uint64_t g = 0; g < n; ++g) {
      ASSERT_EQ(f.calls[g].load() + installed_ok[g], 1) << "granule " << g;
      ASSERT_TRUE(tr->restored(g));
      ok_installs += static_cast<uint64_t>(installed_ok[g]);
      fetched += static_cast<uint64_t>(f.calls[g].load());
    }
    auto s = tr->stats();
    EXPECT_EQ(s.installed_background, ok_installs);
    EXPECT_EQ(s.install_refused, n - ok_installs);
    EXPECT_EQ(s.fetched_on_demand + s.fetched_for_coalescing, fetched);
    EXPECT_EQ(s.restored, n);
    EXPECT_GT(fetched, 0u) << "the race never happened: the test proves nothing";
    EXPECT_GT(ok_installs, 0u);
    // Every word of every granule not incremented still holds the pattern.
    for (uint64_t g = 0; g < n; ++g) {
      ASSERT_EQ(load(r.p + g * G + G - 8), pattern(g, G / 8 - 1)) << "granule " << g;
    }
    if (GetParam() == TrackerKind::kMprotect) {
      EXPECT_EQ(tr->mapping_count(), 1u) << "everything installed must coalesce to one mapping";
      EXPECT_EQ(s.open_runs, 1u);
    }
  }
}

TEST_P(FaultTrackerTest, InstallRules) {
  constexpr size_t G = 64 << 10;
  Region r(GetParam(), 8 * G);
  ASSERT_NE(r.p, nullptr);
  Fetcher f(8);
  auto tr = make(r.options(G), f.fn());
  ASSERT_TRUE(tr);
  std::vector<uint8_t> bytes(G);
  fill_pattern(1, bytes);
  Status s = tr->install(1, bytes);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, Errc::kState) << "install before arm()";

  ASSERT_TRUE(tr->arm().ok());
  EXPECT_EQ(tr->arm().error().code, Errc::kState) << "double arm";
  EXPECT_EQ(tr->install(8, bytes).error().code, Errc::kInvalidArgument);
  EXPECT_EQ(tr->install(1, ByteView(bytes.data(), G - 1)).error().code, Errc::kInvalidArgument);
  ASSERT_TRUE(tr->install(1, bytes).ok());
  std::vector<uint8_t> other(G, 0xee);
  s = tr->install(1, other);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, Errc::kState);
  EXPECT_NE(s.error().message.find("already restored"), std::string::npos) << s.error().message;
  EXPECT_EQ(load(r.p + G), pattern(1, 0)) << "a refused install must not write";

  // After an on-demand fetch, installing that granule is refused and writes nothing.
  EXPECT_EQ(load(r.p + 2 * G + 64), pattern(2, 8));
  EXPECT_EQ(tr->install(2, other).error().code, Errc::kState);
  EXPECT_EQ(load(r.p + 2 * G + 64), pattern(2, 8));

  // A failing filler leaves the granule missing; the next touch fetches it.
  s = tr->install_with(4, [](MutableByteView) { return make_error(Errc::kSecurity, "bad tag"); });
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, Errc::kSecurity);
  EXPECT_FALSE(tr->restored(4));
  EXPECT_EQ(load(r.p + 4 * G), pattern(4, 0));
  EXPECT_EQ(f.calls[4].load(), 1);

  // A filler fails while a thread waits on that granule: the thread gets it fetched.
  std::promise<void> go;
  auto go_f = go.get_future();
  std::atomic<bool> filling{false};
  std::thread inst([&] {
    Status st = tr->install_with(6, [&](MutableByteView) {
      filling = true;
      go_f.wait();
      return make_error(Errc::kSecurity, "injected");
    });
    EXPECT_FALSE(st.ok());
  });
  ASSERT_TRUE(wait_for([&] { return filling.load(); }));
  std::atomic<bool> done{false};
  uint64_t seen = 0;
  std::thread waiter([&] {
    seen = load(r.p + 6 * G + 8);
    done = true;
  });
  std::this_thread::sleep_for(30ms);
  EXPECT_FALSE(done.load()) << "a thread ran on a granule that was still being filled";
  go.set_value();
  inst.join();
  waiter.join();
  EXPECT_EQ(seen, pattern(6, 1));
  EXPECT_EQ(f.calls[6].load(), 1);
  EXPECT_TRUE(wait_for([&] { return tr->restored(6); }));
}

// disarm() makes everything accessible without fetching, and waits for an in-flight fetch.
TEST_P(FaultTrackerTest, DisarmMakesEverythingAccessible) {
  constexpr size_t G = 64 << 10;
  constexpr uint64_t n = 32;
  Region r(GetParam(), n * G);
  ASSERT_NE(r.p, nullptr);
  Fetcher f(n);
  std::promise<void> gate;
  std::shared_future<void> gate_f = gate.get_future().share();
  std::atomic<bool> entered{false};
  auto tr = make(r.options(G), [&](uint64_t g, FetchReason why, MutableByteView dst) {
    if (g == 9) {
      entered = true;
      gate_f.wait();
    }
    return f.fn()(g, why, dst);
  });
  ASSERT_TRUE(tr);
  ASSERT_TRUE(tr->arm().ok());
  std::vector<uint8_t> bytes(G);
  for (uint64_t g : {1, 2, 20}) {
    fill_pattern(g, bytes);
    ASSERT_TRUE(tr->install(g, bytes).ok());
  }
  uint64_t seen9 = 0;
  std::thread a([&] { seen9 = load(r.p + 9 * G); });
  ASSERT_TRUE(wait_for([&] { return entered.load(); }));
  std::atomic<bool> disarmed{false};
  std::thread d([&] {
    EXPECT_TRUE(tr->disarm().ok());
    disarmed = true;
  });
  std::this_thread::sleep_for(30ms);
  EXPECT_FALSE(disarmed.load()) << "disarm() must wait for the in-flight fetch";
  gate.set_value();
  a.join();
  d.join();
  EXPECT_EQ(seen9, pattern(9, 0));
  EXPECT_FALSE(tr->armed());

  auto before = tr->stats();
  uint64_t sum = 0;
  for (size_t off = 0; off < r.len; off += kPage) sum += load(r.p + off);
  (void)sum;
  for (uint64_t g : {1, 2, 9, 20}) EXPECT_EQ(load(r.p + g * G + 8), pattern(g, 1));
  auto after = tr->stats();
  EXPECT_EQ(after.faults, before.faults);
  EXPECT_EQ(after.fetched_on_demand, 1u);
  for (uint64_t g = 0; g < n; ++g) EXPECT_EQ(f.calls[g].load(), g == 9 ? 1 : 0);
  if (GetParam() == TrackerKind::kMprotect) {
    EXPECT_EQ(tr->mapping_count(), 1u);
  } else {
    EXPECT_EQ(load(r.p + 5 * G), 0u) << "never-installed uffd pages read as zero";
  }
  EXPECT_TRUE(tr->disarm().ok()) << "idempotent";
  // Re-arm works and faults again.
  ASSERT_TRUE(tr->arm().ok());
  EXPECT_EQ(load(r.p + 30 * G), pattern(30, 0));
  EXPECT_EQ(f.calls[30].load(), 1);
}

// FetchFn failing for a faulting thread is fatal: on_fatal runs, then the process aborts with a
// message naming the granule; the thread never runs on garbage.
TEST_P(FaultTrackerTest, FetchErrorIsFatal) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const TrackerKind kind = GetParam();
  auto body = [kind](bool custom) {
    constexpr size_t G = 64 << 10;
    Region r(kind, 8 * G);
    auto o = r.options(G);
    if (custom) {
      o.on_fatal = [](const Error& e) {
        std::fprintf(stderr, "custom on_fatal saw: %s\n", e.message.c_str());
      };
    }
    auto tr = FaultTracker::create(o, [](uint64_t g, FetchReason, MutableByteView dst) {
      if (g == 2) return Status(make_error(Errc::kSecurity, "injected bad tag"));
      std::memset(dst.data(), 0, dst.size());
      return ok_status();
    });
    if (!tr.ok() || !(*tr)->arm().ok()) std::_Exit(3);
    volatile uint64_t v = load(r.p + 2 * G);  // never returns
    std::fprintf(stderr, "RAN ON GARBAGE %llu\n", static_cast<unsigned long long>(v));
    std::_Exit(0);
  };
  EXPECT_DEATH(body(false),
               "FATAL: fetching granule 2 .* for a faulting thread failed: security: injected bad "
               "tag.*aborting");
  EXPECT_DEATH(body(true), "custom on_fatal saw: fetching granule 2");
}

// A FetchFn that touches tracked memory would deadlock: the tracker aborts with a message.
TEST_P(FaultTrackerTest, TrackerThreadTouchingTrackedMemoryAborts) {
  if (GetParam() == TrackerKind::kUffd) GTEST_SKIP() << "uffd cannot tell who faults";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  auto body = [] {
    constexpr size_t G = 64 << 10;
    Region r(TrackerKind::kMprotect, 8 * G);
    const uint8_t* p = r.p;
    auto tr = FaultTracker::create(r.options(G), [p](uint64_t, FetchReason, MutableByteView dst) {
      std::memset(dst.data(), static_cast<int>(load(p + 5 * G)), dst.size());
      return ok_status();
    });
    if (!tr.ok() || !(*tr)->arm().ok()) std::_Exit(3);
    (void)load(r.p);
    std::_Exit(0);
  };
  EXPECT_DEATH(body(), "a tracker thread .* touched tracked memory");
}

TEST_P(FaultTrackerTest, CreateValidatesOptions) {
  constexpr size_t G = 64 << 10;
  Region r(GetParam(), 8 * G);
  ASSERT_NE(r.p, nullptr);
  auto fetch = [](uint64_t, FetchReason, MutableByteView) { return ok_status(); };
  auto bad = [&](TrackerOptions o) {
    auto t = FaultTracker::create(o, fetch);
    return t.ok() ? Errc::kOk : t.error().code;
  };
  auto o = r.options(G);
  o.granule = 3 * kPage;
  EXPECT_EQ(bad(o), Errc::kInvalidArgument);
  o = r.options(G);
  o.base += 8;
  EXPECT_EQ(bad(o), Errc::kInvalidArgument);
  o = r.options(G);
  o.len = 100;
  EXPECT_EQ(bad(o), Errc::kInvalidArgument);
  o = r.options(G);
  o.fetch_threads = 0;
  EXPECT_EQ(bad(o), Errc::kInvalidArgument);
  EXPECT_EQ(FaultTracker::create(r.options(G), nullptr).error().code, Errc::kInvalidArgument);
  // The wrong kind of memory for the tracker kind.
  TrackerKind other =
      GetParam() == TrackerKind::kMprotect ? TrackerKind::kUffd : TrackerKind::kMprotect;
  Region wrong(other, 8 * G);
  o = wrong.options(G);
  o.kind = GetParam();
  if (GetParam() == TrackerKind::kMprotect) {
    int fd = static_cast<int>(syscall(SYS_memfd_secret, O_CLOEXEC));
    ASSERT_GE(fd, 0);
    o.memfd = fd;  // a memfd, but not the one mapped there
    EXPECT_EQ(bad(o), Errc::kInvalidArgument);
    close(fd);
  } else {
    auto t = FaultTracker::create(o, fetch);
    ASSERT_FALSE(t.ok());
    EXPECT_EQ(t.error().code, Errc::kInvalidArgument);
    EXPECT_NE(t.error().message.find("private anonymous"), std::string::npos) << t.error().message;
  }
  // A last granule shorter than the others.
  Region odd(GetParam(), 3 * G + 2 * kPage);
  ASSERT_NE(odd.p, nullptr);
  Fetcher f(4);
  auto tr = make(odd.options(G), f.fn());
  ASSERT_TRUE(tr);
  EXPECT_EQ(tr->granule_count(), 4u);
  EXPECT_EQ(tr->granule_bytes(3), 2 * kPage);
  ASSERT_TRUE(tr->arm().ok());
  EXPECT_EQ(load(odd.p + 3 * G + kPage + 8), pattern(3, (kPage + 8) / 8));
  EXPECT_EQ(load(odd.p + 3 * G - 8), pattern(2, G / 8 - 1));
}

// kMprotect with a caller's restorer view (the enclave's restore window): fetches and
// install_with write through that exact view, and a view of another file is refused.
TEST(FaultTrackerRestorerView, UsesTheCallersViewOfTheSameFile) {
  constexpr size_t G = 64 << 10;
  Region r(TrackerKind::kMprotect, 8 * G);
  ASSERT_NE(r.p, nullptr);
  void* view = mmap(nullptr, r.len, PROT_READ | PROT_WRITE, MAP_SHARED, r.fd, 0);
  ASSERT_NE(view, MAP_FAILED);
  auto* v = static_cast<uint8_t*>(view);
  std::atomic<int> fetched_in_view{0};
  auto o = r.options(G);
  o.restorer_view = view;
  auto t = FaultTracker::create(o, [&](uint64_t g, FetchReason, MutableByteView dst) {
    if (dst.data() == v + g * G) fetched_in_view++;
    fill_pattern(g, dst);
    return ok_status();
  });
  ASSERT_TRUE(t.ok()) << t.error().message;
  ASSERT_TRUE((*t)->arm().ok());
  EXPECT_EQ(load(r.p + 2 * G + 16), pattern(2, 2));  // fault: fetched into the caller's view
  EXPECT_EQ(fetched_in_view.load(), 1);
  // Background install: the data is already in the view (as the enclave writes it).
  fill_pattern(5, MutableByteView(v + 5 * G, G));
  ASSERT_TRUE((*t)->install_with(5, [](MutableByteView) { return ok_status(); }).ok());
  EXPECT_EQ(load(r.p + 5 * G + 64), pattern(5, 8));
  t->reset();
  EXPECT_EQ(load(v + 5 * G + 64), pattern(5, 8));  // the tracker did not unmap the caller's view
  munmap(view, r.len);
  // A view of another file is refused.
  Region other(TrackerKind::kMprotect, 8 * G);
  ASSERT_NE(other.p, nullptr);
  o.restorer_view = other.p;
  auto bad =
      FaultTracker::create(o, [](uint64_t, FetchReason, MutableByteView) { return ok_status(); });
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, Errc::kInvalidArgument);
  EXPECT_NE(bad.error().message.find("restorer_view"), std::string::npos) << bad.error().message;
}

INSTANTIATE_TEST_SUITE_P(Kinds, FaultTrackerTest,
                         testing::Values(TrackerKind::kMprotect, TrackerKind::kUffd), kind_name);

// ---- mprotect-only: signals, one tracker per process, vm.max_map_count ---------------------

namespace {
std::atomic<int> g_foreign_hits{0};
void foreign_handler(int, siginfo_t* si, void*) {
  g_foreign_hits++;
  auto page = reinterpret_cast<uintptr_t>(si->si_addr) & ~(kPage - 1);
  mprotect(reinterpret_cast<void*>(page), kPage, PROT_READ | PROT_WRITE);
}
}  // namespace

// Faults the tracker does not own go to the handler installed before it, which is restored
// when the tracker goes away.
TEST(FaultTrackerSignals, ChainsForeignFaultsAndRestoresPreviousHandler) {
  struct sigaction sa {
  }, old{};
  sa.sa_sigaction = &foreign_handler;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  ASSERT_EQ(sigaction(SIGSEGV, &sa, &old), 0);
  {
    constexpr size_t G = 64 << 10;
    Region r(TrackerKind::kMprotect, 8 * G);
    ASSERT_NE(r.p, nullptr);
    Fetcher f(8);
    auto tr = FaultTracker::create(r.options(G), f.fn());
    ASSERT_TRUE(tr.ok()) << tr.error().message;
    ASSERT_TRUE((*tr)->arm().ok());
    // Outside the range.
    auto* other =
        static_cast<uint8_t*>(mmap(nullptr, kPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    ASSERT_NE(other, MAP_FAILED);
    g_foreign_hits = 0;
    EXPECT_EQ(load(other), 0u);
    EXPECT_EQ(g_foreign_hits.load(), 1);
    munmap(other, kPage);
    // Inside the range: a tracked fault is ours.
    EXPECT_EQ(load(r.p + G), pattern(1, 0));
    EXPECT_EQ(g_foreign_hits.load(), 1);
    // Inside the range, disarmed, but someone else made a page inaccessible: not ours.
    ASSERT_TRUE((*tr)->disarm().ok());
    ASSERT_EQ(mprotect(r.p + 4 * G, kPage, PROT_NONE), 0);
    EXPECT_EQ(load(r.p + 4 * G), 0u);
    EXPECT_EQ(g_foreign_hits.load(), 2);
    // Only one mprotect tracker per process.
    Region r2(TrackerKind::kMprotect, 8 * G);
    auto second = FaultTracker::create(r2.options(G), f.fn());
    ASSERT_FALSE(second.ok());
    EXPECT_EQ(second.error().code, Errc::kState);
  }
  struct sigaction now {};
  ASSERT_EQ(sigaction(SIGSEGV, nullptr, &now), 0);
  EXPECT_EQ(now.sa_sigaction, &foreign_handler) << "the previous handler was not restored";
  ASSERT_EQ(sigaction(SIGSEGV, &old, nullptr), 0);
}

// 1 GiB restored in random order (10% of its 4 KiB granules: ~100 MiB of memfd_secret touched)
// stays within the mapping budget, and the premise holds: without the budget the same order
// splits the app view into tens of thousands of mappings (the limit here is 65530).
TEST(FaultTrackerMappings, RandomInstallsOn1GiBStayWithinBudget) {
  constexpr size_t G = 4096;
  constexpr size_t kLen = 1ull << 30;
  const uint64_t n = kLen / G;
  for (bool bounded : {true, false}) {
    SCOPED_TRACE(bounded ? "bounded (default budget)" : "unbounded");
    Region r(TrackerKind::kMprotect, kLen);
    ASSERT_NE(r.p, nullptr);
    Fetcher f(n);
    auto o = r.options(G);
    if (!bounded) o.max_open_runs = SIZE_MAX;
    auto tr = FaultTracker::create(o, f.fn());
    ASSERT_TRUE(tr.ok()) << tr.error().message;
    FaultTracker& t = **tr;
    ASSERT_TRUE(t.arm().ok());
    EXPECT_EQ(t.mapping_count(), 1u);
    std::vector<uint64_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), std::mt19937_64(42));
    std::vector<uint8_t> bytes(G);
    size_t peak = 0;
    const size_t count = n / 10;
    for (size_t i = 0; i < count; ++i) {
      fill_pattern(order[i], bytes);
      ASSERT_TRUE(t.install(order[i], bytes).ok());
      if (i % 4096 == 4095) peak = std::max(peak, t.mapping_count());
    }
    peak = std::max(peak, t.mapping_count());
    auto s = t.stats();
    if (bounded) {
      EXPECT_LE(s.open_runs, o.max_open_runs);
      EXPECT_LE(peak, 2 * o.max_open_runs + 1);
      EXPECT_GT(s.open_runs, o.max_open_runs / 2) << "the budget should actually be used";
    } else {
      EXPECT_GT(peak, 30000u) << "random 4 KiB opens should split the view into many mappings";
    }
    // Touch some installed (possibly staged) granules: correct bytes, no fetch.
    for (size_t i = 0; i < count; i += 997)
      EXPECT_EQ(load(r.p + order[i] * G + 8), pattern(order[i], 1));
    EXPECT_EQ(t.stats().fetched_on_demand, 0u);
    ASSERT_TRUE(t.disarm().ok());
    EXPECT_EQ(t.mapping_count(), 1u);
    std::printf(
        "[ info ] %s: %zu random 4 KiB installs on 1 GiB: peak %zu mappings, %llu open runs\n",
        bounded ? "bounded" : "unbounded", count, peak,
        static_cast<unsigned long long>(s.open_runs));
  }
}

// Installing every granule in random order: the peak stays within budget and the end is ONE
// mapping, without disarm().
TEST(FaultTrackerMappings, FullRandomRestoreEndsAsOneMapping) {
  constexpr size_t G = 4096;
  constexpr size_t kLen = 64 << 20;
  const uint64_t n = kLen / G;
  Region r(TrackerKind::kMprotect, kLen);
  ASSERT_NE(r.p, nullptr);
  Fetcher f(n);
  auto o = r.options(G);
  o.max_open_runs = 256;
  auto tr = FaultTracker::create(o, f.fn());
  ASSERT_TRUE(tr.ok()) << tr.error().message;
  FaultTracker& t = **tr;
  ASSERT_TRUE(t.arm().ok());
  std::vector<uint64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(5));
  std::vector<uint8_t> bytes(G);
  size_t peak = 0;
  for (size_t i = 0; i < n; ++i) {
    fill_pattern(order[i], bytes);
    ASSERT_TRUE(t.install(order[i], bytes).ok());
    if (i % 256 == 0) peak = std::max(peak, t.mapping_count());
  }
  EXPECT_LE(peak, 2 * o.max_open_runs + 1);
  EXPECT_LE(t.stats().max_open_runs_seen, o.max_open_runs);
  EXPECT_EQ(t.mapping_count(), 1u);
  EXPECT_TRUE(t.armed());
  for (uint64_t g = 0; g < n; g += 61) EXPECT_EQ(load(r.p + g * G + 16), pattern(g, 2));
  EXPECT_EQ(t.stats().faults, 0u);
}

// Faults always open at once; when they push the open runs over budget, idle tracker threads
// fill the smallest gaps (FetchReason::kCoalesce) until the count is back within budget. Each
// granule is still fetched at most once and every byte is right.
TEST(FaultTrackerMappings, FaultsBeyondBudgetAreCoalesced) {
  constexpr size_t G = 4096;
  constexpr size_t kLen = 16 << 20;
  const uint64_t n = kLen / G;
  Region r(TrackerKind::kMprotect, kLen);
  ASSERT_NE(r.p, nullptr);
  Fetcher f(n);
  auto o = r.options(G);
  o.max_open_runs = 32;
  auto tr = FaultTracker::create(o, f.fn());
  ASSERT_TRUE(tr.ok()) << tr.error().message;
  FaultTracker& t = **tr;
  ASSERT_TRUE(t.arm().ok());
  Oracle oracle(r, G, 2);
  std::atomic<int> bad{0};
  std::vector<std::thread> ts;
  for (unsigned i = 0; i < 2; ++i) {
    ts.emplace_back([&, i] {
      std::mt19937_64 rng(9 + i);
      for (int k = 0; k < 300; ++k) bad += oracle.touch(i, rng() % (kLen / kPage), rng);
    });
  }
  for (auto& th : ts) th.join();
  EXPECT_TRUE(wait_for([&] { return t.stats().open_runs <= o.max_open_runs; }, 30s))
      << "open runs stuck at " << t.stats().open_runs;
  EXPECT_LE(t.mapping_count(), 2 * o.max_open_runs + 1);
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(oracle.verify(), 0);
  auto s = t.stats();
  EXPECT_GT(s.fetched_for_coalescing, 0u);
  EXPECT_EQ(static_cast<uint64_t>(f.coalesce_calls.load()), s.fetched_for_coalescing);
  uint64_t fetched = 0;
  for (uint64_t g = 0; g < n; ++g) {
    ASSERT_LE(f.calls[g].load(), 1) << "granule " << g;
    fetched += static_cast<uint64_t>(f.calls[g].load());
    if (t.restored(g)) {
      ASSERT_EQ(load(r.p + g * G + 4000), pattern(g, 500)) << "granule " << g;
    }
  }
  EXPECT_EQ(fetched, s.fetched_on_demand + s.fetched_for_coalescing);
  std::printf(
      "[ info ] 600 random faults, budget 32 runs: %llu on demand + %llu coalescing fetches, %zu "
      "mappings\n",
      static_cast<unsigned long long>(s.fetched_on_demand),
      static_cast<unsigned long long>(s.fetched_for_coalescing), t.mapping_count());
}
