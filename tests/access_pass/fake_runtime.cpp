#include "fake_runtime.h"

#include <sys/mman.h>

#include <cstdio>
#include <cstdlib>

namespace {
uint64_t g_bits[1];
fake_rt::FetchCall g_calls[256];
size_t g_ncalls = 0;
uint8_t* g_heap = nullptr;
}  // namespace

extern "C" {
uint8_t __constmig_at_active = 0;
uint64_t __constmig_at_heap_base = 0;
uint64_t __constmig_at_heap_size = 0;
uint64_t* __constmig_at_bitmap = g_bits;

CONSTMIG_NO_ACCESS_CHECK void __constmig_at_fetch(const void* addr, uint64_t len) {
  if (g_ncalls < sizeof g_calls / sizeof g_calls[0]) {
    g_calls[g_ncalls] = {reinterpret_cast<uintptr_t>(addr), len};
  }
  ++g_ncalls;
  if (len == 0) return;
  const uintptr_t base = __constmig_at_heap_base;
  const uintptr_t lo = reinterpret_cast<uintptr_t>(addr);
  const uintptr_t hi = lo + len;  // exclusive
  const uintptr_t end = base + __constmig_at_heap_size;
  if (hi <= base || lo >= end) return;
  const size_t first = (lo < base ? 0 : lo - base) / fake_rt::kPage;
  const size_t last = ((hi > end ? end : hi) - base - 1) / fake_rt::kPage;
  for (size_t p = first; p <= last; ++p) {
    if (g_bits[0] & (uint64_t{1} << p)) continue;
    auto* words = reinterpret_cast<volatile uint64_t*>(g_heap + p * fake_rt::kPage);
    for (size_t w = 0; w < fake_rt::kWordsPerPage; ++w) words[w] = fake_rt::marker(p);
    __atomic_fetch_or(&g_bits[0], uint64_t{1} << p, __ATOMIC_RELEASE);
  }
}
}

namespace fake_rt {

CONSTMIG_NO_ACCESS_CHECK void reset() {
  __constmig_at_active = 0;
  if (!g_heap) {
    void* m =
        mmap(nullptr, kPages * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
      std::perror("mmap");
      std::abort();
    }
    g_heap = static_cast<uint8_t*>(m);
  }
  auto* words = reinterpret_cast<volatile uint64_t*>(g_heap);
  for (size_t w = 0; w < kPages * kWordsPerPage; ++w) words[w] = 0;
  __constmig_at_heap_base = reinterpret_cast<uintptr_t>(g_heap);
  __constmig_at_heap_size = kPages * kPage;
  g_bits[0] = 0;
  g_ncalls = 0;
}

CONSTMIG_NO_ACCESS_CHECK uint8_t* heap() {
  return g_heap;
}
CONSTMIG_NO_ACCESS_CHECK uint64_t* heap64() {
  return reinterpret_cast<uint64_t*>(g_heap);
}
CONSTMIG_NO_ACCESS_CHECK size_t fetch_count() {
  return g_ncalls;
}
CONSTMIG_NO_ACCESS_CHECK FetchCall fetch_call(size_t i) {
  return g_calls[i];
}
CONSTMIG_NO_ACCESS_CHECK bool restored(size_t page) {
  return (g_bits[0] >> page) & 1;
}
CONSTMIG_NO_ACCESS_CHECK void set_all_restored() {
  g_bits[0] = (uint64_t{1} << kPages) - 1;
}

CONSTMIG_NO_ACCESS_CHECK ActiveScope::ActiveScope() {
  __atomic_store_n(&__constmig_at_active, 1, __ATOMIC_SEQ_CST);
}
CONSTMIG_NO_ACCESS_CHECK ActiveScope::~ActiveScope() {
  __atomic_store_n(&__constmig_at_active, 0, __ATOMIC_SEQ_CST);
}

}  // namespace fake_rt
