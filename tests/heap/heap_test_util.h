// Test helpers for the enclave heap: a private anonymous mapping standing in for the enclave's
// heap range (reads as zero until written, like fresh memfd_secret pages).
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "trusted/heap/enclave_heap.h"

#if defined(__SANITIZE_ADDRESS__)
#define HEAP_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HEAP_TEST_ASAN 1
#endif
#endif
#ifdef HEAP_TEST_ASAN
#include <sanitizer/asan_interface.h>
#endif

namespace constmig::trusted::testing {

// A heap on its own mapping. The mapping is unpoisoned before it goes away, so a later mapping
// at the same address does not inherit this heap's ASan poison.
class TestHeap {
 public:
  TestHeap(size_t reserve, size_t limit) : reserve_(reserve) {
    void* p = ::mmap(nullptr, reserve, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return;
    ::madvise(p, reserve, MADV_NOHUGEPAGE);  // page-exact residency for mincore checks
    base_ = p;
    heap_ = std::make_unique<EnclaveHeap>();
    heap_->init(base_, reserve, limit);
  }
  ~TestHeap() {
    if (base_ == nullptr) return;
#ifdef HEAP_TEST_ASAN
    ASAN_UNPOISON_MEMORY_REGION(base_, heap_->top());
#endif
    heap_.reset();
    ::munmap(base_, reserve_);
  }
  TestHeap(const TestHeap&) = delete;
  TestHeap& operator=(const TestHeap&) = delete;

  bool ok() const {
    return base_ != nullptr;
  }
  EnclaveHeap& operator*() {
    return *heap_;
  }
  EnclaveHeap* operator->() {
    return heap_.get();
  }
  void* base() const {
    return base_;
  }
  size_t reserve() const {
    return reserve_;
  }

  // Resident pages of the mapping in [offset, offset+len) (mincore).
  size_t resident_pages(size_t offset, size_t len) const {
    const size_t pg = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    size_t n = (len + pg - 1) / pg;
    if (n == 0) return 0;
    auto vec = std::make_unique<unsigned char[]>(n);
    if (::mincore(static_cast<char*>(base_) + offset, n * pg, vec.get()) != 0) return SIZE_MAX;
    size_t r = 0;
    for (size_t i = 0; i < n; ++i) r += vec[i] & 1;
    return r;
  }

 private:
  size_t reserve_;
  void* base_ = nullptr;
  std::unique_ptr<EnclaveHeap> heap_;
};

// Pattern derived from the address of each byte: a block that overlaps another, or that the
// allocator scribbles on, fails verification. Word-wise for speed (blocks are 16-aligned).
inline uint64_t pattern_word(uintptr_t word_addr) {
  return (word_addr ^ 0x5bd1e9955bd1e995ULL) * 0x9E3779B97F4A7C15ULL;
}
inline uint8_t pattern_byte(uintptr_t a) {
  return static_cast<uint8_t>(pattern_word(a & ~uintptr_t{7}) >> (8 * (a & 7)));
}
inline void fill_pattern(void* p, size_t n) {
  auto* b = static_cast<uint8_t*>(p);
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  size_t i = 0;
  if ((a & 7) == 0) {
    for (; i + 8 <= n; i += 8) {
      uint64_t w = pattern_word(a + i);
      __builtin_memcpy(b + i, &w, 8);
    }
  }
  for (; i < n; ++i) b[i] = pattern_byte(a + i);
}
// Checks the first n bytes against the pattern of the address `origin` (where they were filled).
inline bool check_pattern(const void* p, size_t n, uintptr_t origin) {
  const auto* b = static_cast<const uint8_t*>(p);
  size_t i = 0;
  if ((origin & 7) == 0) {
    for (; i + 8 <= n; i += 8) {
      uint64_t w;
      __builtin_memcpy(&w, b + i, 8);
      if (w != pattern_word(origin + i)) return false;
    }
  }
  for (; i < n; ++i) {
    if (b[i] != pattern_byte(origin + i)) return false;
  }
  return true;
}

}  // namespace constmig::trusted::testing
