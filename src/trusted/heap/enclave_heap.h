// ConstMigLib enclave heap: the malloc of code running inside an enclave image.
//
// TRUSTED code. Includes only the C++ standard library (and, in ASan builds only, the public
// <sanitizer/asan_interface.h>). It never calls the host's malloc: it *is* malloc inside the
// enclave. It imports nothing but mem* and pthread_mutex_* (through std::mutex) and abort.
//
// Design: size classes over slabs for small blocks, TLSF for everything else.
//
//   base                                                     base+top       base+limit base+reserve
//   |[blk][blk][ slab 64 KiB ][blk][blk]...........[last blk]|  untouched   |  untouched  |
//   '---------------- TLSF physical blocks ------------------'
//
// * The managed range [base, base+reserve) is mapped by the platform and reads as zero until
//   first written. The heap only uses [base, base+top): `top` is a high-water mark bumped under
//   the large lock in chunks of max(request, 1 MiB) (rounded to 64 KiB), never beyond `limit`.
//   Memory above top is never read or written. A block carved from memory that was fresh when
//   top grew keeps a "zero" flag, so calloc can skip the memset (and the page touch).
//
// * Large allocator (> 1 KiB, over-aligned requests, and the slabs themselves): TLSF,
//   two-level segregated fit (Masmano et al., ECRTS 2004): 32 first-level x 32 second-level
//   free lists, two bitmaps, O(1) malloc and free, immediate coalescing with both physical
//   neighbours. The physical blocks tile [base, base+top) exactly; each starts with a 16-byte
//   in-band header:
//       word 0  prev_size   size of the previous physical block (0 for the first): the
//                           boundary tag used to coalesce backwards.
//       word 1  owner word  size (bits 4..43, a multiple of 16) | flags (bits 0..3:
//                           used, small, slab, zero) | 20-bit check (bits 44..63) =
//                           hash(header address, size, flags, per-heap cookie).
//   A free block keeps its free-list links (next, prev) in the first 16 bytes of its payload.
//   Word 0 is only ever written under the large lock; word 1 of a block in use is only ever
//   written by whoever holds the lock *and* owns the block, so free() may read it unlocked.
//
// * Small allocator (<= 1 KiB, 20 size classes 16..1024): each class has its own mutex and
//   a list of partially used slabs. A slab is one 64 KiB TLSF block flagged "slab": a 64-byte
//   slab header (magic, class, slot size, capacity, bump index, live count, free list, list
//   links) followed by slots of (16-byte slot header + class size). Slots are carved lazily
//   by a bump index (an untouched slot is never written), freed slots go on the slab's
//   intrusive free list (link in the slot payload). A slot header has the same layout as a
//   block header: word 0 is a per-address magic, word 1 = offset of the slot from its slab
//   header | small | used | check. A slab whose last slot is freed goes back to TLSF unless
//   it is its class's only slab with free room.
//
// * free(p) tells small from large by the "small" flag in the owner word just before p; the
//   check bits (which mix in the header's own address) reject foreign pointers, stale
//   copies and corruption; "used" is re-checked under the lock to catch double frees. Any
//   invariant violation calls abort(); running out of `limit` returns nullptr.
//
// Where the metadata lives and why the migration stop phase stays constant:
//   all metadata is either in-band (block headers, slab headers, free-list links, all inside
//   [base, base+top)) or in this object, whose size is a compile-time constant (about 11 KiB:
//   TLSF list heads and bitmaps, 20 size-class records, counters) independent of the heap's
//   size. There are no side tables proportional to the heap, no thread caches (thread_local
//   state lives in host threads and would not migrate) and no pointers outside the enclave.
//   At migration the object moves with the enclave globals in the stop phase (a fixed few
//   KiB); the heap pages [base, base+top) follow later, lazily, like any other page. The
//   object holds absolute addresses inside [base, base+top), valid on the target because the
//   enclave range is reproduced at the same address. The object is constant-initialised
//   (constexpr constructor, trivial destructor) so it works before static constructors run.
//
// ASan builds (tests only: enclave images are never built with sanitizers): free blocks, free
// slots and never-carved slab space are poisoned with ASAN_POISON_MEMORY_REGION, so a
// use-after-free inside this heap is reported. Headers and slab headers stay unpoisoned; the
// allocator unpoisons a free-list link around each access to it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>

namespace constmig::trusted {

class EnclaveHeap {
 public:
  static constexpr size_t kAlignment = 16;                // every block is 16-byte aligned
  static constexpr size_t kSmallMax = 1024;               // largest size served by a slab
  static constexpr size_t kNumClasses = 20;               // 16,32,..,128,160,..,256,..,1024
  static constexpr size_t kSlabBytes = 64 * 1024;         // one slab (a TLSF block)
  static constexpr size_t kGrowChunk = 1024 * 1024;       // top grows by at least this much
  static constexpr size_t kGrowGranule = 64 * 1024;       // ... rounded up to this
  static constexpr size_t kMaxReserve = size_t{1} << 39;  // 512 GiB (TLSF index range)

  constexpr EnclaveHeap() = default;
  EnclaveHeap(const EnclaveHeap&) = delete;
  EnclaveHeap& operator=(const EnclaveHeap&) = delete;

  // Manage [base, base+reserve). The memory is already mapped read/write and reads as zero
  // until first written. base is rounded up to 16 bytes, reserve is capped at kMaxReserve,
  // limit at reserve. Called once; a second call with the same base is a no-op, with a
  // different base it aborts.
  void init(void* base, size_t reserve, size_t limit);
  bool initialized() const { return initialized_.load(std::memory_order_acquire); }

  void* malloc(size_t n);             // nullptr when the limit is reached; malloc(0) is unique
  void free(void* p);                 // nullptr ok; foreign/double/corrupt -> abort()
  void* calloc(size_t n, size_t sz);  // nullptr on n*sz overflow
  void* realloc(void* p, size_t n);   // realloc(p, 0) frees p and returns nullptr (glibc)
  // Any power-of-two alignment (tested up to 4 MiB); nullptr if align is not a power of two.
  void* aligned_alloc(size_t align, size_t n);
  size_t usable_size(const void* p) const;  // aborts on a pointer this heap did not return
  bool owns(const void* p) const;           // p in [base, base+top)

  struct Stats {
    uint64_t top_bytes;          // high-water mark: [base, base+top) has ever been used
    uint64_t limit_bytes;        // top never goes above this
    uint64_t in_use_bytes;       // sum of usable_size() of live allocations
    uint64_t live_allocations;   // allocations not yet freed
    uint64_t total_allocations;  // successful allocations ever
  };
  Stats stats() const;

  // Heap layout for migration: the one range [base, base+top) that has ever been used.
  uintptr_t base() const { return base_; }
  size_t top() const { return top_.load(std::memory_order_acquire); }

  // Walks every block, slab, slot and free list under all locks. Returns false and sets *why
  // (if non-null) on the first inconsistency. It does not allocate while holding the locks,
  // so it may be called inside the enclave, where std::string allocates from this heap.
  bool check(std::string* why) const;

  // Lower or raise the limit. Clamped to [top, reserve] and rounded down to 16 bytes.
  void set_limit(size_t limit);

 private:
  struct Header;  // 16-byte block/slot header (see above)
  struct Slab;    // 64-byte slab header

  static constexpr int kFlCount = 32;  // first level: powers of two up to 2^39
  static constexpr int kSlCount = 32;  // second level: 32 linear subdivisions

  struct alignas(64) SizeClass {
    mutable std::mutex mu;
    Slab* partial = nullptr;     // slabs with at least one free or uncarved slot
    uint32_t partial_count = 0;  // length of `partial`
    // Written under `mu` only; atomics so that stats() may read them without the lock.
    std::atomic<uint64_t> in_use{0};
    std::atomic<uint64_t> live{0};
    std::atomic<uint64_t> total{0};
  };

  // --- helpers (enclave_heap.cpp) ---
  uint64_t make_word(const Header* h, uint64_t low) const;
  uint64_t load_word(const Header* h) const;  // aborts if the check bits do not match
  void set_word(Header* h, uint64_t size, uint64_t flags) const;
  Header* header_of(const void* p) const;  // validated header of a user pointer, or abort
  size_t end_addr() const { return base_ + top_.load(std::memory_order_relaxed); }

  // TLSF (caller holds large_mu_).
  void insert_free(Header* h, size_t size);
  void remove_free(Header* h, size_t size);
  Header* find_free(size_t size) const;
  Header* scan_bucket(size_t size) const;
  Header* grow(size_t min_block, size_t* size, uint64_t* zero);
  size_t split(Header* h, size_t size, size_t want, uint64_t flags, uint64_t rest_zero);
  void coalesce_and_insert(Header* h, size_t size, bool zero, bool merge_prev);
  Header* take_block(size_t bsize, size_t align, uint64_t flags, bool* zero, size_t* size);

  void* alloc_impl(size_t n, size_t align, size_t* dirty);
  void* small_alloc(unsigned cls, size_t* dirty);
  void* large_alloc(size_t n, size_t align, size_t* dirty);
  Slab* new_slab(unsigned cls);
  void free_small(Header* slot, uint64_t word);
  void free_large(Header* h, uint64_t word);
  bool check_locked(char* why, size_t why_len) const;
  bool check_slab(const Slab* s, uint64_t* in_use, uint64_t* live, char* why, size_t n) const;

  uintptr_t base_ = 0;
  size_t reserve_ = 0;
  uint64_t cookie_ = 0;
  std::atomic<bool> initialized_{false};
  std::atomic<size_t> top_{0};

  SizeClass classes_[kNumClasses];

  alignas(64) mutable std::mutex large_mu_;
  std::atomic<size_t> limit_{0};
  Header* last_ = nullptr;  // the physically last block, or nullptr when top == 0
  uint32_t fl_bitmap_ = 0;
  uint32_t sl_bitmap_[kFlCount] = {};
  Header* heads_[kFlCount][kSlCount] = {};
  std::atomic<uint64_t> large_in_use_{0};
  std::atomic<uint64_t> large_live_{0};
  std::atomic<uint64_t> large_total_{0};
};

// The object moves in the migration stop phase: keep it small and of fixed size.
static_assert(sizeof(EnclaveHeap) <= 16 * 1024, "EnclaveHeap must stay small");

}  // namespace constmig::trusted
