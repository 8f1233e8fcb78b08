// bench_heap: the ConstMigLib enclave heap against glibc malloc, side by side in one run.
//
// Both allocators run the same workloads with the same pre-generated size and order
// sequences, one after the other on the same machine:
//   small   1 thread,  batches of 1000 malloc(16..256 B), then free in shuffled order
//   medium  1 thread,  batches of 256 malloc(1..64 KiB), then free in shuffled order
//   mixed   2 threads, each toggles random slots of 1024 (free if used, else malloc
//           16 B..64 KiB, 3/4 of them <= 256 B): frees interleave with mallocs
// ops = malloc+free pairs per second (all threads together). The enclave heap manages an
// anonymous mapping populated before the run (warm memory, as glibc's heap is after warm-up);
// each case runs a short untimed warm-up first. Speed is reported, never asserted.
//
// glibc is measured twice: with its defaults, and with heap trimming off (M_TRIM_THRESHOLD
// raised), since by default glibc gives freed top memory back to the kernel and faults it in
// again, which the enclave heap never does. The default column is the headline ratio; the
// no-trim one isolates allocator speed from that policy.
//
// The process starts (and joins) a thread before measuring: glibc takes non-atomic fast paths
// in its locks and arenas while a process has never had a second thread, which would favour
// whichever cases happen to run before the first 2-thread case. An enclave host always has
// several threads, so every case runs in the multi-threaded mode.
#include <malloc.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "trusted/heap/enclave_heap.h"

namespace {

using Clock = std::chrono::steady_clock;
using constmig::trusted::EnclaveHeap;

constexpr size_t kHeapReserve = size_t{512} << 20;
constexpr size_t kHeapPopulate = size_t{256} << 20;
constexpr double kDefaultSeconds = 1.25;

struct GlibcAlloc {
  void* malloc(size_t n) { return std::malloc(n); }
  void free(void* p) { std::free(p); }
};

struct EnclaveAlloc {
  EnclaveHeap* heap;
  void* malloc(size_t n) { return heap->malloc(n); }
  void free(void* p) { heap->free(p); }
};

// Pre-generated sequences so that both allocators see identical work.
struct Script {
  std::vector<uint32_t> sizes;  // cycled
  std::vector<uint32_t> order;  // free order within a batch / slot sequence
};

Script batch_script(uint32_t lo, uint32_t hi, size_t batch, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Script s;
  std::uniform_int_distribution<uint32_t> d(lo, hi);
  s.sizes.resize(1 << 16);
  for (auto& v : s.sizes) v = d(rng);
  s.order.resize(batch);
  for (size_t i = 0; i < batch; ++i) s.order[i] = static_cast<uint32_t>(i);
  std::shuffle(s.order.begin(), s.order.end(), rng);
  return s;
}

Script mixed_script(size_t slots, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Script s;
  s.sizes.resize(1 << 16);
  for (auto& v : s.sizes) {
    v = (rng() % 4 != 0) ? static_cast<uint32_t>(16 + rng() % 241)
                         : static_cast<uint32_t>(257 + rng() % (64 * 1024 - 256));
  }
  s.order.resize(1 << 16);
  for (auto& v : s.order) v = static_cast<uint32_t>(rng() % slots);
  return s;
}

// One thread: allocate a batch, touch each block, free it in shuffled order. Returns pairs.
template <typename A>
uint64_t run_batches(A& a, const Script& s, double seconds) {
  const size_t batch = s.order.size();
  std::vector<void*> ptrs(batch);
  size_t si = 0;
  uint64_t pairs = 0;
  auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
  do {
    for (int rep = 0; rep < 8; ++rep) {
      for (size_t i = 0; i < batch; ++i) {
        size_t n = s.sizes[si++ & (s.sizes.size() - 1)];
        auto* p = static_cast<char*>(a.malloc(n));
        if (p == nullptr) std::abort();
        p[0] = static_cast<char>(i);
        ptrs[i] = p;
      }
      for (uint32_t i : s.order) a.free(ptrs[i]);
      pairs += batch;
    }
  } while (Clock::now() < deadline);
  return pairs;
}

// One thread of the mixed workload. Returns malloc+free pairs (frees / mallocs average).
template <typename A>
uint64_t run_mixed(A& a, const Script& s, size_t slots, double seconds,
                   const std::atomic<bool>& go) {
  while (!go.load(std::memory_order_acquire)) {
  }
  std::vector<char*> slot(slots, nullptr);
  size_t si = 0, oi = 0;
  uint64_t calls = 0;
  auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
  do {
    for (int k = 0; k < 4096; ++k) {
      char*& p = slot[s.order[oi++ & (s.order.size() - 1)]];
      if (p != nullptr) {
        a.free(p);
        p = nullptr;
      } else {
        p = static_cast<char*>(a.malloc(s.sizes[si++ & (s.sizes.size() - 1)]));
        if (p == nullptr) std::abort();
        p[0] = 1;
      }
    }
    calls += 4096;
  } while (Clock::now() < deadline);
  for (char* p : slot) {
    if (p != nullptr) a.free(p);
  }
  return calls / 2;
}

template <typename A>
double measure_batches(A& a, const Script& s, double seconds) {
  run_batches(a, s, seconds / 8);  // warm-up
  auto t0 = Clock::now();
  uint64_t pairs = run_batches(a, s, seconds);
  return static_cast<double>(pairs) / std::chrono::duration<double>(Clock::now() - t0).count();
}

template <typename A>
double measure_mixed(A& a, int threads, double seconds) {
  constexpr size_t kSlots = 1024;
  std::vector<Script> scripts;
  for (int t = 0; t < threads; ++t) scripts.push_back(mixed_script(kSlots, 77 + t));
  double result = 0;
  for (int pass = 0; pass < 2; ++pass) {  // pass 0: warm-up
    double secs = pass == 0 ? seconds / 8 : seconds;
    std::atomic<bool> go{false};
    std::vector<uint64_t> pairs(threads);
    std::vector<std::thread> th;
    for (int t = 0; t < threads; ++t) {
      th.emplace_back([&, t] { pairs[t] = run_mixed(a, scripts[t], kSlots, secs, go); });
    }
    auto t0 = Clock::now();
    go.store(true, std::memory_order_release);
    for (auto& x : th) x.join();
    double el = std::chrono::duration<double>(Clock::now() - t0).count();
    uint64_t total = 0;
    for (uint64_t p : pairs) total += p;
    result = static_cast<double>(total) / el;
  }
  return result;
}

void usage(const char* argv0) {
  std::printf(
      "usage: %s [--json PATH] [--seconds S]\n"
      "\n"
      "Measures the ConstMigLib enclave heap (EnclaveHeap on a populated anonymous mapping)\n"
      "against glibc malloc in one run, on the same machine, with identical workloads:\n"
      "  small   1 thread, malloc 16..256 B in batches of 1000, free in shuffled order\n"
      "  medium  1 thread, malloc 1..64 KiB in batches of 256, free in shuffled order\n"
      "  mixed   2 threads, random malloc (16 B..64 KiB) / free over 1024 slots each\n"
      "Prints ops/s (malloc+free pairs per second, all threads) and the ratio enclave/glibc\n"
      "(> 1: the enclave heap is faster), and writes the same as JSON. glibc runs twice:\n"
      "with defaults, then with trimming off (mallopt M_TRIM_THRESHOLD), so that its\n"
      "give-back-to-the-kernel policy can be told apart from allocator speed. All cases run\n"
      "with the process in multi-threaded mode (a thread is started first), as in an\n"
      "enclave host.\n"
      "\n"
      "  --json PATH    JSON output (default bench-results/heap.json; directories are created)\n"
      "  --seconds S    timed seconds per allocator and case (default %.2f; total ~%.0f s)\n"
      "  --help         this text\n",
      argv0, kDefaultSeconds, kDefaultSeconds * 3 * 3 * 1.15 + 1);
}

}  // namespace

int main(int argc, char** argv) {
  std::string json_path = "bench-results/heap.json";
  double seconds = kDefaultSeconds;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      usage(argv[0]);
      return 0;
    } else if (a == "--json" && i + 1 < argc) {
      json_path = argv[++i];
    } else if (a == "--seconds" && i + 1 < argc) {
      seconds = std::atof(argv[++i]);
      if (!(seconds > 0)) {
        std::fprintf(stderr, "bench_heap: --seconds needs a positive number\n");
        return 2;
      }
    } else {
      std::fprintf(stderr, "bench_heap: unknown argument '%s' (try --help)\n", a.c_str());
      return 2;
    }
  }

  std::thread([] {}).join();  // multi-threaded mode from the start (see the top comment)

  void* region = ::mmap(nullptr, kHeapReserve, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (region == MAP_FAILED) {
    std::perror("bench_heap: mmap");
    return 1;
  }
  std::memset(region, 0, kHeapPopulate);  // pre-touch: warm memory, like glibc's after warm-up
  static EnclaveHeap heap;
  heap.init(region, kHeapReserve, kHeapReserve);
  EnclaveAlloc enclave{&heap};
  GlibcAlloc glibc;

  struct Case {
    std::string name;
    std::string sizes;
    int threads;
    std::function<double(bool)> run;  // true: enclave
  };
  Script small = batch_script(16, 256, 1000, 1);
  Script medium = batch_script(1024, 64 * 1024, 256, 2);
  std::vector<Case> cases = {
      {"small", "16-256 B", 1,
       [&](bool e) {
         return e ? measure_batches(enclave, small, seconds)
                  : measure_batches(glibc, small, seconds);
       }},
      {"medium", "1-64 KiB", 1,
       [&](bool e) {
         return e ? measure_batches(enclave, medium, seconds)
                  : measure_batches(glibc, medium, seconds);
       }},
      {"mixed", "16 B-64 KiB", 2,
       [&](bool e) {
         return e ? measure_mixed(enclave, 2, seconds) : measure_mixed(glibc, 2, seconds);
       }},
  };

  // glibc with defaults first (mallopt below changes it for the rest of the process).
  std::vector<double> g(cases.size()), gn(cases.size()), e(cases.size());
  for (size_t i = 0; i < cases.size(); ++i) g[i] = cases[i].run(false);
  ::mallopt(M_TRIM_THRESHOLD, 1 << 30);
  for (size_t i = 0; i < cases.size(); ++i) {
    gn[i] = cases[i].run(false);
    e[i] = cases[i].run(true);
  }

  nlohmann::json results = nlohmann::json::array();
  std::printf("%-7s %-12s %7s %14s %14s %14s %14s %15s\n", "case", "sizes", "threads",
              "enclave ops/s", "glibc ops/s", "enclave/glibc", "glibc-notrim", "enclave/notrim");
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    std::printf("%-7s %-12s %7d %14.0f %14.0f %14.2f %14.0f %15.2f\n", c.name.c_str(),
                c.sizes.c_str(), c.threads, e[i], g[i], e[i] / g[i], gn[i], e[i] / gn[i]);
    results.push_back({{"case", c.name},
                       {"sizes", c.sizes},
                       {"threads", c.threads},
                       {"enclave_ops_per_s", e[i]},
                       {"glibc_ops_per_s", g[i]},
                       {"ratio_enclave_over_glibc", e[i] / g[i]},
                       {"glibc_notrim_ops_per_s", gn[i]},
                       {"ratio_enclave_over_glibc_notrim", e[i] / gn[i]}});
  }
  auto st = heap.stats();
  std::printf("enclave heap after the run: top %.1f MiB, in use %llu B, %llu allocations\n",
              static_cast<double>(st.top_bytes) / (1 << 20),
              static_cast<unsigned long long>(st.in_use_bytes),
              static_cast<unsigned long long>(st.total_allocations));

  nlohmann::json doc = {
      {"benchmark", "heap"},
      {"unit", "malloc+free pairs per second (all threads)"},
      {"config",
       {{"seconds_per_case", seconds},
        {"heap_reserve_bytes", kHeapReserve},
        {"heap_prepopulated_bytes", kHeapPopulate},
        {"hardware_concurrency", std::thread::hardware_concurrency()},
        {"enclave_heap_object_bytes", sizeof(EnclaveHeap)}}},
      {"results", results},
      {"enclave_heap_final",
       {{"top_bytes", st.top_bytes},
        {"in_use_bytes", st.in_use_bytes},
        {"total_allocations", st.total_allocations}}},
  };
  std::filesystem::path out(json_path);
  std::error_code ec;
  if (out.has_parent_path()) std::filesystem::create_directories(out.parent_path(), ec);
  std::ofstream f(out);
  if (!f) {
    std::fprintf(stderr, "bench_heap: cannot write %s\n", json_path.c_str());
    return 1;
  }
  f << doc.dump(2) << "\n";
  std::printf("wrote %s\n", json_path.c_str());
  ::munmap(region, kHeapReserve);
  return 0;
}
