// A fake Access Tracker runtime for bench_tracker_crossover, NOT compiled with the pass (it is
// the pass's slow path, like src/trusted/access/enclave_access_tracker.cpp). Its
// __constmig_at_fetch does what the real one does inside the enclave (range clamp, bitmap test
// per page), and instead of the fetch OCALL and the host's wait for the source's answer it
// copies a prepared 4 KiB page in and sets the bit: the same copy as the Fault Tracker side's
// FetchFn. No network, no OCALL (an emulated OCALL is a function call; see bench/README.md).
#include <atomic>
#include <cstring>
#include <vector>

#include "crossover_loop.h"

extern "C" {
__attribute__((visibility("hidden"))) uint8_t __constmig_at_active = 0;
__attribute__((visibility("hidden"))) uint64_t __constmig_at_heap_base = 0;
__attribute__((visibility("hidden"))) uint64_t __constmig_at_heap_size = 0;
__attribute__((visibility("hidden"))) uint64_t* __constmig_at_bitmap = nullptr;
}

namespace {
constexpr uint64_t kPage = 4096;
std::vector<uint64_t> g_bits;
const uint8_t* g_src = nullptr;
uint64_t g_calls = 0, g_pages = 0;

bool restored(uint64_t p) {
  return (__atomic_load_n(&__constmig_at_bitmap[p >> 6], __ATOMIC_ACQUIRE) >> (p & 63)) & 1;
}
}  // namespace

extern "C" __attribute__((visibility("hidden"), noinline, cold)) void __constmig_at_fetch(
    const void* addr, uint64_t len) {
  if (__atomic_load_n(&__constmig_at_active, __ATOMIC_ACQUIRE) == 0) return;
  const uint64_t base = __constmig_at_heap_base, size = __constmig_at_heap_size;
  const auto a = reinterpret_cast<uint64_t>(addr);
  if (len == 0 || a >= base + size) return;
  const uint64_t lo = a < base ? base : a;
  const uint64_t end = (len > UINT64_MAX - a) ? UINT64_MAX : a + len;
  const uint64_t hi = end < base + size ? end : base + size;
  if (lo >= hi) return;
  ++g_calls;
  for (uint64_t p = (lo - base) / kPage; p <= (hi - 1 - base) / kPage; ++p) {
    if (restored(p)) continue;
    std::memcpy(reinterpret_cast<void*>(base + p * kPage), g_src, kPage);
    __atomic_fetch_or(&__constmig_at_bitmap[p >> 6], uint64_t{1} << (p & 63), __ATOMIC_RELEASE);
    ++g_pages;
  }
}

namespace xover_rt {
void setup(uint8_t* heap, size_t pages, const uint8_t* source_page) {
  g_bits.assign((pages + 63) / 64, 0);
  __constmig_at_bitmap = g_bits.data();
  __constmig_at_heap_base = reinterpret_cast<uint64_t>(heap);
  __constmig_at_heap_size = pages * kPage;
  g_src = source_page;
  g_calls = g_pages = 0;
}
void clear_bitmap() {
  std::fill(g_bits.begin(), g_bits.end(), 0);
}
void fill_bitmap() {
  std::fill(g_bits.begin(), g_bits.end(), ~uint64_t{0});
}
void set_active(bool on) {
  __atomic_store_n(&__constmig_at_active, on ? 1 : 0, __ATOMIC_SEQ_CST);
}
uint64_t fetch_calls() {
  return g_calls;
}
uint64_t pages_fetched() {
  return g_pages;
}
}  // namespace xover_rt
