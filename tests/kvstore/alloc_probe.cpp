// Test-only replacement of the global operator new/delete that records the largest single
// allocation while kvtest::g_tracking is set (used to prove that claimed lengths are not
// allocated before their bytes arrive). Kept in its own file so that no caller sees the
// malloc/free pairing inline.
#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>

namespace kvtest {
std::atomic<bool> g_tracking{false};
std::atomic<size_t> g_max_alloc{0};
}  // namespace kvtest

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(size_t n) {
  if (kvtest::g_tracking.load(std::memory_order_relaxed)) {
    size_t cur = kvtest::g_max_alloc.load(std::memory_order_relaxed);
    while (n > cur && !kvtest::g_max_alloc.compare_exchange_weak(cur, n)) {
    }
  }
  void* p = std::malloc(n == 0 ? 1 : n);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, size_t) noexcept {
  std::free(p);
}
#pragma GCC diagnostic pop
