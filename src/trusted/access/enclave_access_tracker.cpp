// Access Tracker runtime (TRUSTED). See enclave_access_tracker.h and docs/access_tracker.md.
//
// This file is never compiled with the pass (it is the pass's slow path), and it neither
// allocates nor touches the migrated heap: the thread that calls __constmig_at_fetch may hold
// the heap allocator's lock, or be in the middle of any app data structure.
#include "trusted/access/enclave_access_tracker.h"

#include <atomic>
#include <cstddef>
#include <cstring>

#include "common/enclave_abi.h"
#include "trusted/enclave_runtime.h"

// The symbols the instrumented code references (the pass declares them with these exact names
// and types). Per instance: .cm_instance is never migrated. Hidden: resolved inside the image.
extern "C" {
CONSTMIG_INSTANCE __attribute__((visibility("hidden"))) uint8_t __constmig_at_active = 0;
CONSTMIG_INSTANCE __attribute__((visibility("hidden"))) uint64_t __constmig_at_heap_base = 0;
CONSTMIG_INSTANCE __attribute__((visibility("hidden"))) uint64_t __constmig_at_heap_size = 0;
CONSTMIG_INSTANCE __attribute__((visibility("hidden"))) const uint64_t* __constmig_at_bitmap =
    nullptr;
// Defined by the marker object that constmig_add_enclave(... TRACKER access) links in; absent
// (address null) in an image built without the pass.
__attribute__((weak, visibility("hidden"))) extern const uint8_t __constmig_at_instrumented;
__attribute__((visibility("hidden"), noinline, cold)) void __constmig_at_fetch(const void* addr,
                                                                               uint64_t len);
}

namespace constmig::trusted::at {
namespace {

CONSTMIG_INSTANCE std::atomic<uint64_t> g_fetch_calls{0};

std::atomic_ref<uint8_t> active_flag() {
  return std::atomic_ref<uint8_t>(__constmig_at_active);
}

bool restored(uint64_t page) {
  return (__atomic_load_n(&__constmig_at_bitmap[page >> 6], __ATOMIC_ACQUIRE) >> (page & 63)) & 1;
}

// Decimal digits of v at the end of buf[0, n); returns the first digit's index.
size_t put_u64(char* buf, size_t n, uint64_t v) {
  size_t i = n;
  do {
    buf[--i] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0 && i > 0);
  return i;
}

// A thread that needs a page which cannot come must not run on: it would compute on bytes that
// are not the app's. Logged (without allocating), then the process stops.
[[noreturn]] void cannot_fetch(uint64_t page, int32_t status) {
  const abi::BootPage& bp = boot_page();
  char msg[160] = "access tracker: heap page ";
  size_t len = std::strlen(msg);
  char num[24];
  size_t at = put_u64(num, sizeof num, page);
  std::memcpy(msg + len, num + at, sizeof num - at);
  len += sizeof num - at;
  const char tail[] = " is not restored and the host cannot fetch it (status ";
  std::memcpy(msg + len, tail, sizeof tail - 1);
  len += sizeof tail - 1;
  at = put_u64(num, sizeof num, static_cast<uint64_t>(status < 0 ? -status : status));
  std::memcpy(msg + len, num + at, sizeof num - at);
  len += sizeof num - at;
  msg[len++] = ')';
  if (bp.ocall != nullptr) {
    size_t got = 0;
    (void)bp.ocall(bp.ocall_ctx, abi::kOcallLog, reinterpret_cast<const uint8_t*>(msg), len,
                   nullptr, 0, &got);
  }
  __builtin_trap();
}

// Asks the host for pages [first, first + count) and waits; the caller re-checks the bits (the
// host's word is never taken for it).
void request(uint64_t first, uint32_t count) {
  const abi::BootPage& bp = boot_page();
  if (bp.ocall == nullptr) cannot_fetch(first, abi::kEcallRefused);
  uint8_t in[12];
  std::memcpy(in, &first, 8);
  std::memcpy(in + 8, &count, 4);
  size_t got = 0;
  g_fetch_calls.fetch_add(1, std::memory_order_relaxed);
  int32_t st = bp.ocall(bp.ocall_ctx, abi::kOcallFetchPages, in, sizeof in, nullptr, 0, &got);
  if (st != abi::kEcallOk) cannot_fetch(first, st);
}

}  // namespace

bool instrumented() {
  return &__constmig_at_instrumented != nullptr;
}

void activate(uint64_t heap_base, uint64_t bytes, const uint64_t* bitmap) {
  __constmig_at_heap_base = heap_base;
  __constmig_at_heap_size = bytes;
  __constmig_at_bitmap = bitmap;
  active_flag().store(1, std::memory_order_release);
}

void deactivate() {
  active_flag().store(0, std::memory_order_release);
}

bool active() {
  return active_flag().load(std::memory_order_acquire) != 0;
}

uint64_t fetch_calls() {
  return g_fetch_calls.load(std::memory_order_relaxed);
}

}  // namespace constmig::trusted::at

// The pass calls this when a check found (or, for a memory intrinsic of dynamic length, may
// have found) a page of [addr, addr + len) not restored. Returns when every heap page of the
// range is restored; a range outside the heap, or len 0, returns at once.
extern "C" void __constmig_at_fetch(const void* addr, uint64_t len) {
  namespace at = constmig::trusted::at;
  if (!at::active()) return;
  const uint64_t base = __constmig_at_heap_base, size = __constmig_at_heap_size;
  const auto a = reinterpret_cast<uint64_t>(addr);
  if (len == 0 || a >= base + size) return;
  uint64_t lo = a < base ? base : a;
  uint64_t end = (len > UINT64_MAX - a) ? UINT64_MAX : a + len;
  uint64_t hi = end < base + size ? end : base + size;
  if (lo >= hi) return;
  const uint64_t last = (hi - 1 - base) / constmig::abi::kPageSize;
  constexpr uint32_t kMaxRun = 256;  // wire::kMaxPagesPerRequest
  for (uint64_t p = (lo - base) / constmig::abi::kPageSize; p <= last;) {
    if (at::active() == false) return;  // the manifest proved every page in meanwhile
    if (at::restored(p)) {
      ++p;
      continue;
    }
    uint64_t q = p + 1;
    while (q <= last && q - p < kMaxRun && !at::restored(q)) ++q;
    at::request(p, static_cast<uint32_t>(q - p));
  }
}
