// The crossover benchmark's loops (crossover_loop.inc), with and without the Access Tracker pass.
#pragma once

#include <cstddef>
#include <cstdint>

extern "C" {
uint64_t xover_at_read(uint8_t* base, const uint32_t* order, size_t n, uint32_t k);
uint64_t xover_at_write(uint8_t* base, const uint32_t* order, size_t n, uint32_t k);
uint64_t xover_at_mixed(uint8_t* base, const uint32_t* order, size_t n, uint32_t k);
uint64_t xover_plain_read(uint8_t* base, const uint32_t* order, size_t n, uint32_t k);
uint64_t xover_plain_write(uint8_t* base, const uint32_t* order, size_t n, uint32_t k);
uint64_t xover_plain_mixed(uint8_t* base, const uint32_t* order, size_t n, uint32_t k);

// The Access Tracker runtime contract (docs/access_tracker.md), defined by
// crossover_fake_runtime.cpp (not compiled with the pass).
__attribute__((visibility("hidden"))) extern uint8_t __constmig_at_active;
__attribute__((visibility("hidden"))) extern uint64_t __constmig_at_heap_base;
__attribute__((visibility("hidden"))) extern uint64_t __constmig_at_heap_size;
__attribute__((visibility("hidden"))) extern uint64_t* __constmig_at_bitmap;
__attribute__((visibility("hidden"))) void __constmig_at_fetch(const void* addr, uint64_t len);
}

namespace xover_rt {
// The "heap" the checks guard, its bitmap (all clear: nothing restored) and the page a fetch
// copies in (the same 4 KiB copy the Fault Tracker side's FetchFn does).
void setup(uint8_t* heap, size_t pages, const uint8_t* source_page);
void clear_bitmap();  // nothing restored
void fill_bitmap();   // everything restored
void set_active(bool on);
uint64_t fetch_calls();    // __constmig_at_fetch calls since setup
uint64_t pages_fetched();  // pages it copied since setup
}  // namespace xover_rt
