// A fake Access Tracker runtime for access_pass.runtime: the contract's globals and a
// __constmig_at_fetch that logs its calls and "restores" pages by filling them with a marker,
// over an mmap'd 16-page "heap". Compiled with the plugin like the test, so every function here
// carries the no-access-check annotation.
#pragma once

#include <cstddef>
#include <cstdint>

#define CONSTMIG_NO_ACCESS_CHECK __attribute__((annotate("constmig_no_access_check"), noinline))

extern "C" {
__attribute__((visibility("hidden"))) extern uint8_t __constmig_at_active;
__attribute__((visibility("hidden"))) extern uint64_t __constmig_at_heap_base;
__attribute__((visibility("hidden"))) extern uint64_t __constmig_at_heap_size;
__attribute__((visibility("hidden"))) extern uint64_t* __constmig_at_bitmap;
__attribute__((visibility("hidden"))) void __constmig_at_fetch(const void* addr, uint64_t len);
}

namespace fake_rt {

constexpr size_t kPage = 4096;
constexpr size_t kPages = 16;
constexpr size_t kWordsPerPage = kPage / sizeof(uint64_t);

// What a restored page holds in every 8-byte word (the page index in the low bits).
constexpr uint64_t marker(size_t page) {
  return 0x4d41524b00000000ull | page;
}

struct FetchCall {
  uintptr_t addr;
  uint64_t len;
};

// Maps a fresh zeroed heap (once), clears the bitmap and the call log, sets active = 0.
void reset();
uint8_t* heap();
uint64_t* heap64();
size_t fetch_count();
FetchCall fetch_call(size_t i);
bool restored(size_t page);
void set_all_restored();

// active = 1 for the scope's lifetime (kept short: test assertions run with active = 0).
struct ActiveScope {
  ActiveScope();
  ~ActiveScope();
  ActiveScope(const ActiveScope&) = delete;
  ActiveScope& operator=(const ActiveScope&) = delete;
};

}  // namespace fake_rt
