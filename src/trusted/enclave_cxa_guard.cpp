// Thread-safe static initialisation (`static T x = f();` inside functions) for enclave code.
//
// TRUSTED code. libstdc++'s own __cxa_guard_* wait on a futex through syscall(), which an
// enclave must not import. Defining the three entry points here keeps libstdc++'s guard.o out
// of the image. Waiters spin with std::this_thread::yield (sched_yield, an allowed import):
// initialisers are short.
#include <atomic>
#include <cstdint>
#include <mutex>
#include <thread>

namespace {
std::mutex g_guard_mu;
// Itanium ABI: the guard is 64 bits; byte 0 != 0 means "initialised". We use byte 1 as
// "initialisation in progress".
uint8_t* bytes(int64_t* g) {
  return reinterpret_cast<uint8_t*>(g);
}
}  // namespace

extern "C" __attribute__((visibility("hidden"))) int __cxa_guard_acquire(int64_t* g) {
  for (;;) {
    if (std::atomic_ref<uint8_t>(bytes(g)[0]).load(std::memory_order_acquire) != 0) return 0;
    {
      std::lock_guard lk(g_guard_mu);
      if (bytes(g)[0] != 0) return 0;
      if (bytes(g)[1] == 0) {
        bytes(g)[1] = 1;
        return 1;  // caller initialises, then calls __cxa_guard_release
      }
    }
    std::this_thread::yield();
  }
}

extern "C" __attribute__((visibility("hidden"))) void __cxa_guard_release(int64_t* g) {
  std::lock_guard lk(g_guard_mu);
  bytes(g)[1] = 0;
  std::atomic_ref<uint8_t>(bytes(g)[0]).store(1, std::memory_order_release);
}

extern "C" __attribute__((visibility("hidden"))) void __cxa_guard_abort(int64_t* g) {
  std::lock_guard lk(g_guard_mu);
  bytes(g)[1] = 0;
}
