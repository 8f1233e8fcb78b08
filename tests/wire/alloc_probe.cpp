// Replaces the global operator new/delete of the wire test binary with a malloc-backed version
// that records the largest single allocation while armed (its own translation unit, so the
// compiler never sees new and free paired inline).
#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>

namespace {
std::atomic<bool> g_armed{false};
std::atomic<size_t> g_largest{0};
}  // namespace

void wire_alloc_probe_arm(bool on) {
  if (on) g_largest = 0;
  g_armed = on;
}
size_t wire_alloc_probe_largest() {
  return g_largest.load();
}

void* operator new(size_t n) {
  if (g_armed.load(std::memory_order_relaxed)) {
    size_t cur = g_largest.load();
    while (n > cur && !g_largest.compare_exchange_weak(cur, n)) {
    }
  }
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t n) {
  return operator new(n);
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p, size_t) noexcept {
  std::free(p);
}
