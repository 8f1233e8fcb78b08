// ConstMigLib enclave heap: size-class slabs over TLSF. See enclave_heap.h for the layout.
//
// TRUSTED code: standard library only. No printf (the enclave has no I/O), no malloc (this is
// the enclave's malloc). Invariant violations call std::abort().
#include "trusted/heap/enclave_heap.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <new>

#if defined(__SANITIZE_ADDRESS__)
#define CONSTMIG_HEAP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CONSTMIG_HEAP_ASAN 1
#endif
#endif
#ifdef CONSTMIG_HEAP_ASAN
#include <sanitizer/asan_interface.h>
#endif

namespace constmig::trusted {

// In-band header before every TLSF block and every slab slot. Accessed only through rd64/wr64
// below (memcpy: no aliasing assumptions about what the user stores around it).
struct EnclaveHeap::Header {
  uint64_t prev_size;  // TLSF: size of the previous physical block. Slot: per-address magic.
  uint64_t word;       // size-or-offset | flags | check bits
};

// Slab header: the first 64 bytes of a slab's TLSF payload. A real object (placement new).
struct EnclaveHeap::Slab {
  uint64_t magic;  // kSlabMagic ^ address ^ cookie; zeroed when the slab is released
  Slab* next;      // partial list of its class
  Slab* prev;
  Header* free_list;  // freed slots; the link is in the first 8 bytes of the slot payload
  uint32_t cls;
  uint32_t slot_size;  // 16-byte slot header + class size
  uint32_t capacity;
  uint32_t carved;  // slots [0, carved) have been handed out at least once
  uint32_t live;    // slots in use
  uint32_t fresh;   // the slot area was zero when the slab was made (calloc may skip memset)
  uint32_t in_list;
  uint32_t reserved;
};

namespace {

constexpr uint64_t kUsed = 1;
constexpr uint64_t kSmall = 2;
constexpr uint64_t kSlabFlag = 4;
constexpr uint64_t kZero = 8;  // free block: payload is zero except its first 16 bytes
constexpr uint64_t kFlagMask = 15;
constexpr int kCheckShift = 44;
constexpr uint64_t kLowMask = (uint64_t{1} << kCheckShift) - 1;
constexpr uint64_t kSizeMask = kLowMask & ~kFlagMask;

constexpr size_t kHdr = 16;
constexpr size_t kMinBlock = 32;  // header + two free-list links
constexpr size_t kSlabHdr = 64;
constexpr int kSlLog2 = 5;
constexpr size_t kSmallBlock = size_t{1} << (kSlLog2 + 4);  // 512: below, fl = 0, sl = size/16

constexpr uint64_t kSlotMagic = 0x51075107a11c0de5ULL;
constexpr uint64_t kSlabMagic = 0x5ab5ab5ab0c0ffeeULL;

constexpr std::array<uint32_t, EnclaveHeap::kNumClasses> kClassSize = {
    16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896, 1024};
static_assert(kClassSize.back() == EnclaveHeap::kSmallMax);
static_assert(sizeof(EnclaveHeap::Stats) == 40);

// Class index by (n + 15) / 16 for n <= kSmallMax.
constexpr std::array<uint8_t, EnclaveHeap::kSmallMax / 16 + 1> kClassOf = [] {
  std::array<uint8_t, EnclaveHeap::kSmallMax / 16 + 1> t{};
  for (size_t i = 0; i < t.size(); ++i) {
    size_t n = std::max<size_t>(i * 16, 1);
    uint8_t c = 0;
    while (kClassSize[c] < n) ++c;
    t[i] = c;
  }
  return t;
}();

constexpr uint32_t slot_size_of(unsigned cls) {
  return kClassSize[cls] + kHdr;
}
constexpr uint32_t capacity_of(unsigned cls) {
  return static_cast<uint32_t>((EnclaveHeap::kSlabBytes - kHdr - kSlabHdr) / slot_size_of(cls));
}

inline uint64_t rd64(uintptr_t a) {
  uint64_t v;
  std::memcpy(&v, reinterpret_cast<const void*>(a), sizeof v);
  return v;
}
inline void wr64(uintptr_t a, uint64_t v) {
  std::memcpy(reinterpret_cast<void*>(a), &v, sizeof v);
}
inline uintptr_t addr(const void* p) {
  return reinterpret_cast<uintptr_t>(p);
}
constexpr uintptr_t align_up(uintptr_t v, uintptr_t a) {
  return (v + a - 1) & ~(a - 1);
}

inline uint64_t mix(uint64_t x) {
  x ^= x >> 31;
  x *= 0x7fb5d329728ea185ULL;
  x ^= x >> 27;
  x *= 0x81dadef4bc2dd44dULL;
  x ^= x >> 33;
  return x;
}

[[noreturn]] inline void die() {
  std::abort();
}

// --- ASan: poison what the user must not touch; unpoison metadata around our own accesses ---
#ifdef CONSTMIG_HEAP_ASAN
inline void poison(uintptr_t a, size_t n) {
  ASAN_POISON_MEMORY_REGION(reinterpret_cast<void*>(a), n);
}
inline void unpoison(uintptr_t a, size_t n) {
  ASAN_UNPOISON_MEMORY_REGION(reinterpret_cast<void*>(a), n);
}
// A free-list link inside a poisoned free payload: unpoison, access, restore the poison.
inline uint64_t meta_load(uintptr_t a) {
  void* p = reinterpret_cast<void*>(a);
  if (__asan_address_is_poisoned(p) == 0) return rd64(a);
  ASAN_UNPOISON_MEMORY_REGION(p, 8);
  uint64_t v = rd64(a);
  ASAN_POISON_MEMORY_REGION(p, 8);
  return v;
}
inline void meta_store(uintptr_t a, uint64_t v) {
  void* p = reinterpret_cast<void*>(a);
  if (__asan_address_is_poisoned(p) == 0) return wr64(a, v);
  ASAN_UNPOISON_MEMORY_REGION(p, 8);
  wr64(a, v);
  ASAN_POISON_MEMORY_REGION(p, 8);
}
#else
inline void poison(uintptr_t, size_t) {}
inline void unpoison(uintptr_t, size_t) {}
inline uint64_t meta_load(uintptr_t a) {
  return rd64(a);
}
inline void meta_store(uintptr_t a, uint64_t v) {
  wr64(a, v);
}
#endif

// Links of a free TLSF block / free slot live at the start of its payload.
inline uintptr_t link_next(uintptr_t h) {
  return h + kHdr;
}
inline uintptr_t link_prev(uintptr_t h) {
  return h + kHdr + 8;
}

// TLSF index of a block size (>= kMinBlock, < 2^40).
inline void mapping(size_t size, int* fl, int* sl) {
  if (size < kSmallBlock) {
    *fl = 0;
    *sl = static_cast<int>(size >> 4);
  } else {
    int f = 63 - __builtin_clzll(size);
    *sl = static_cast<int>((size >> (f - kSlLog2)) ^ (size_t{1} << kSlLog2));
    *fl = f - 8;
  }
}

// Lock-free counter update for a counter only written under one lock.
inline void add(std::atomic<uint64_t>& c, int64_t d) {
  c.store(c.load(std::memory_order_relaxed) + static_cast<uint64_t>(d), std::memory_order_relaxed);
}

// Fixed-buffer message for check(): no allocation while the heap's locks are held.
struct Why {
  char* buf;
  size_t cap;
  size_t len = 0;
  Why& s(const char* t) {
    while (*t != 0 && len + 1 < cap) buf[len++] = *t++;
    buf[len] = 0;
    return *this;
  }
  Why& x(uint64_t v) {
    char tmp[19] = "0x";
    int n = 2;
    int shift = 60;
    while (shift > 0 && ((v >> shift) & 15) == 0) shift -= 4;
    for (; shift >= 0; shift -= 4) tmp[n++] = "0123456789abcdef"[(v >> shift) & 15];
    tmp[n] = 0;
    return s(tmp);
  }
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Header words.

// Check bits: the top 20 bits of a multiplicative hash of (header address, low bits, cookie).
// Every bit of the address and of the low bits reaches them, so a flipped bit, a header copied
// elsewhere or a pointer into the middle of a block is caught with probability 1 - 2^-20.
inline uint64_t EnclaveHeap::make_word(const Header* h, uint64_t low) const {
  uint64_t x = (addr(h) ^ cookie_) + low * 0xC2B2AE3D27D4EB4FULL;
  x *= 0x9E3779B97F4A7C15ULL;
  return low | (x & ~kLowMask);
}

inline uint64_t EnclaveHeap::load_word(const Header* h) const {
  uint64_t w = rd64(addr(h) + 8);
  if (make_word(h, w & kLowMask) != w) die();  // corrupted header or not one of ours
  return w;
}

inline void EnclaveHeap::set_word(Header* h, uint64_t size, uint64_t flags) const {
  wr64(addr(h) + 8, make_word(h, size | flags));
}

EnclaveHeap::Header* EnclaveHeap::header_of(const void* p) const {
  uintptr_t a = addr(p);
  if ((a & (kAlignment - 1)) != 0 || a < base_ + kHdr || a >= base_ + top()) die();
  return reinterpret_cast<Header*>(a - kHdr);
}

// ---------------------------------------------------------------------------------------------
// Setup.

void EnclaveHeap::init(void* base, size_t reserve, size_t limit) {
  uintptr_t b = align_up(addr(base), kAlignment);
  if (initialized()) {
    if (b == base_) return;
    die();
  }
  size_t skew = b - addr(base);
  reserve = reserve > skew ? reserve - skew : 0;
  reserve = std::min(reserve, kMaxReserve) & ~(kAlignment - 1);
  limit = std::min(limit, reserve) & ~(kAlignment - 1);
  base_ = b;
  reserve_ = reserve;
  cookie_ = mix(b ^ 0x3c6ef372fe94f82bULL) | 1;
  last_ = nullptr;
  top_.store(0, std::memory_order_relaxed);
  limit_.store(limit, std::memory_order_relaxed);
  initialized_.store(true, std::memory_order_release);
}

void EnclaveHeap::set_limit(size_t limit) {
  std::lock_guard<std::mutex> lk(large_mu_);
  limit = std::min(limit, reserve_) & ~(kAlignment - 1);
  limit = std::max(limit, top_.load(std::memory_order_relaxed));
  limit_.store(limit, std::memory_order_relaxed);
}

bool EnclaveHeap::owns(const void* p) const {
  uintptr_t a = addr(p);
  return a >= base_ && a < base_ + top();
}

EnclaveHeap::Stats EnclaveHeap::stats() const {
  Stats s{};
  s.top_bytes = top();
  s.limit_bytes = limit_.load(std::memory_order_relaxed);
  s.in_use_bytes = large_in_use_.load(std::memory_order_relaxed);
  s.live_allocations = large_live_.load(std::memory_order_relaxed);
  s.total_allocations = large_total_.load(std::memory_order_relaxed);
  for (const SizeClass& c : classes_) {
    s.in_use_bytes += c.in_use.load(std::memory_order_relaxed);
    s.live_allocations += c.live.load(std::memory_order_relaxed);
    s.total_allocations += c.total.load(std::memory_order_relaxed);
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// TLSF. Every function in this section runs with large_mu_ held. Sizes are passed along once a
// header has been validated, so each header is hashed about once per visit.

void EnclaveHeap::insert_free(Header* h, size_t size) {
  uintptr_t a = addr(h);
  int fl, sl;
  mapping(size, &fl, &sl);
  Header* next = heads_[fl][sl];
  meta_store(link_next(a), addr(next));
  meta_store(link_prev(a), 0);
  if (next != nullptr) meta_store(link_prev(addr(next)), a);
  heads_[fl][sl] = h;
  fl_bitmap_ |= 1u << fl;
  sl_bitmap_[fl] |= 1u << sl;
}

void EnclaveHeap::remove_free(Header* h, size_t size) {
  uintptr_t a = addr(h);
  int fl, sl;
  mapping(size, &fl, &sl);
  uintptr_t next = meta_load(link_next(a));
  uintptr_t prev = meta_load(link_prev(a));
  if (prev != 0) {
    meta_store(link_next(prev), next);
  } else {
    if (heads_[fl][sl] != h) die();  // free list corrupted
    heads_[fl][sl] = reinterpret_cast<Header*>(next);
    if (next == 0) {
      sl_bitmap_[fl] &= ~(1u << sl);
      if (sl_bitmap_[fl] == 0) fl_bitmap_ &= ~(1u << fl);
    }
  }
  if (next != 0) meta_store(link_prev(next), prev);
}

// Good fit: the head of the first non-empty list whose every block is >= size.
EnclaveHeap::Header* EnclaveHeap::find_free(size_t size) const {
  if (size >= kSmallBlock) size += (size_t{1} << (63 - __builtin_clzll(size) - kSlLog2)) - 1;
  int fl, sl;
  mapping(size, &fl, &sl);
  uint32_t sm = sl_bitmap_[fl] & (~0u << sl);
  if (sm == 0) {
    uint32_t fm = fl + 1 < kFlCount ? fl_bitmap_ & (~0u << (fl + 1)) : 0;
    if (fm == 0) return nullptr;
    fl = __builtin_ctz(fm);
    sm = sl_bitmap_[fl];
  }
  return heads_[fl][__builtin_ctz(sm)];
}

// The good-fit search skips the list that size itself maps to (its blocks may be smaller).
// Before growing top, look at a few of them: near the limit this is the difference between
// success and nullptr.
EnclaveHeap::Header* EnclaveHeap::scan_bucket(size_t size) const {
  int fl, sl;
  mapping(size, &fl, &sl);
  Header* h = heads_[fl][sl];
  for (int i = 0; h != nullptr && i < 32; ++i) {
    if ((load_word(h) & kSizeMask) >= size) return h;
    h = reinterpret_cast<Header*>(meta_load(link_next(addr(h))));
  }
  return nullptr;
}

// Makes a free block of at least min_block bytes at the end of the heap by raising top
// (merging with the last block if that one is free). Returns it out of the free lists, with
// its size and zero flag, or nullptr if the limit does not allow it.
EnclaveHeap::Header* EnclaveHeap::grow(size_t min_block, size_t* size, uint64_t* zero) {
  size_t top = top_.load(std::memory_order_relaxed);
  size_t limit = limit_.load(std::memory_order_relaxed);
  Header* last = last_;
  size_t avail = 0;
  uint64_t lw = 0;
  if (last != nullptr) {
    lw = load_word(last);
    if ((lw & kUsed) == 0) avail = lw & kSizeMask;
  }
  if (avail >= min_block) {
    remove_free(last, avail);
    *size = avail;
    *zero = lw & kZero;
    return last;
  }
  size_t need = min_block - avail;
  if (limit < top || need > limit - top) return nullptr;
  size_t inc = align_up(std::max(need, kGrowChunk), kGrowGranule);
  inc = std::min(inc, limit - top);
  uintptr_t nb = base_ + top;
  poison(nb, inc);
  top_.store(top + inc, std::memory_order_release);
  if (avail != 0) {
    // The fresh chunk extends the free last block; no header is written into it.
    remove_free(last, avail);
    set_word(last, avail + inc, lw & kZero);
    *size = avail + inc;
    *zero = lw & kZero;
    return last;
  }
  Header* h = reinterpret_cast<Header*>(nb);
  unpoison(nb, kHdr);
  wr64(nb, last != nullptr ? (lw & kSizeMask) : 0);
  set_word(h, inc, kZero);
  last_ = h;
  *size = inc;
  *zero = kZero;
  return h;
}

// h (size bytes, out of the free lists) becomes `want` bytes marked `flags`; the rest, if it
// is big enough to be a block, goes back to the free lists (kZero if rest_zero says so).
// Returns h's final size.
size_t EnclaveHeap::split(Header* h, size_t size, size_t want, uint64_t flags, uint64_t rest_zero) {
  if (size - want < kMinBlock) {
    set_word(h, size, flags);
    return size;
  }
  uintptr_t r = addr(h) + want;
  unpoison(r, kHdr);
  wr64(r, want);
  set_word(h, want, flags);
  uintptr_t next = r + (size - want);
  if (next < end_addr()) {
    wr64(next, size - want);
  } else {
    last_ = reinterpret_cast<Header*>(r);
  }
  // The previous block is h, in use: only a forward merge is possible.
  coalesce_and_insert(reinterpret_cast<Header*>(r), size - want, (rest_zero & kZero) != 0,
                      /*merge_prev=*/false);
  return want;
}

// h (size bytes) is free and in no list; its boundary tag is valid. Merge it with free
// physical neighbours, poison it and put it on its free list.
void EnclaveHeap::coalesce_and_insert(Header* h, size_t size, bool zero, bool merge_prev) {
  uintptr_t a = addr(h);
  uintptr_t end = end_addr();
  uintptr_t next = a + size;
  if (next < end) {
    uint64_t wn = load_word(reinterpret_cast<Header*>(next));
    if ((wn & kUsed) == 0) {
      remove_free(reinterpret_cast<Header*>(next), wn & kSizeMask);
      size += wn & kSizeMask;
      zero = false;
    }
  }
  if (merge_prev && a != base_) {
    size_t ps = rd64(a);
    uintptr_t p = a - ps;
    if (ps < kMinBlock || (ps & (kAlignment - 1)) != 0 || ps > a - base_) die();
    uint64_t wp = load_word(reinterpret_cast<Header*>(p));
    if ((wp & kSizeMask) != ps) die();  // boundary tag does not match
    if ((wp & kUsed) == 0) {
      remove_free(reinterpret_cast<Header*>(p), ps);
      size += ps;
      a = p;
      zero = false;
    }
  }
  Header* m = reinterpret_cast<Header*>(a);
  set_word(m, size, zero ? kZero : 0);
  next = a + size;
  if (next < end) {
    wr64(next, size);
  } else {
    last_ = m;
  }
  poison(a + kHdr, size - kHdr);
  insert_free(m, size);
}

// A block of bsize bytes (header included) whose payload is `align`-aligned, marked with
// `flags` (which include kUsed). *zero: the payload was zero except its first 16 bytes.
// *size: the block's final size (bsize, or up to kMinBlock - 16 more).
EnclaveHeap::Header* EnclaveHeap::take_block(size_t bsize, size_t align, uint64_t flags, bool* zero,
                                             size_t* out_size) {
  size_t search = bsize;
  if (align > kAlignment) search = bsize + align + kMinBlock;
  if (search >= kMaxReserve) return nullptr;
  Header* h = find_free(search);
  if (h == nullptr) h = scan_bucket(search);
  size_t size;
  uint64_t zflag;
  if (h != nullptr) {
    uint64_t w = load_word(h);
    size = w & kSizeMask;
    zflag = w & kZero;
    remove_free(h, size);
  } else {
    h = grow(search, &size, &zflag);
    if (h == nullptr) return nullptr;
  }
  if (align > kAlignment) {
    uintptr_t a = addr(h);
    uintptr_t payload = a + kHdr;
    uintptr_t aligned = align_up(payload, align);
    if (aligned != payload && aligned - payload < kMinBlock) {
      aligned = align_up(payload + kMinBlock, align);
    }
    size_t gap = aligned - payload;
    if (gap != 0) {
      // Split off the front as a free block; its neighbours are in use, so no merging.
      uintptr_t nh = a + gap;
      unpoison(nh, kHdr);
      wr64(nh, gap);
      set_word(h, gap, zflag);
      if (a + size < end_addr()) {
        wr64(a + size, size - gap);
      } else {
        last_ = reinterpret_cast<Header*>(nh);
      }
      insert_free(h, gap);
      h = reinterpret_cast<Header*>(nh);
      size -= gap;
    }
  }
  *zero = zflag != 0;
  *out_size = split(h, size, bsize, flags, zflag);
  return h;
}

// ---------------------------------------------------------------------------------------------
// Allocation.

void* EnclaveHeap::large_alloc(size_t n, size_t align, size_t* dirty) {
  if (n >= kMaxReserve) return nullptr;
  size_t bsize = std::max(kMinBlock, align_up(n + kHdr, kAlignment));
  bool zero = false;
  size_t usable;
  uintptr_t p;
  {
    std::lock_guard<std::mutex> lk(large_mu_);
    size_t size;
    Header* h = take_block(bsize, align, kUsed, &zero, &size);
    if (h == nullptr) return nullptr;
    usable = size - kHdr;
    add(large_in_use_, static_cast<int64_t>(usable));
    add(large_live_, 1);
    add(large_total_, 1);
    p = addr(h) + kHdr;
  }
  unpoison(p, usable);
  *dirty = zero ? std::min<size_t>(kHdr, usable) : usable;
  return reinterpret_cast<void*>(p);
}

// Called with the class lock held; takes the large lock.
EnclaveHeap::Slab* EnclaveHeap::new_slab(unsigned cls) {
  bool zero = false;
  Header* h;
  {
    std::lock_guard<std::mutex> lk(large_mu_);
    size_t size;
    h = take_block(kSlabBytes, kAlignment, kUsed | kSlabFlag, &zero, &size);
  }
  if (h == nullptr) return nullptr;
  static_assert(sizeof(Slab) == kSlabHdr);
  uintptr_t mem = addr(h) + kHdr;
  unpoison(mem, kSlabHdr);
  poison(mem + kSlabHdr, kSlabBytes - kHdr - kSlabHdr);
  Slab* s = new (reinterpret_cast<void*>(mem)) Slab{};
  s->magic = kSlabMagic ^ mem ^ cookie_;
  s->cls = cls;
  s->slot_size = slot_size_of(cls);
  s->capacity = capacity_of(cls);
  s->fresh = zero ? 1 : 0;  // slot area untouched: the TLSF links were in the slab header
  return s;
}

void* EnclaveHeap::small_alloc(unsigned cls, size_t* dirty) {
  SizeClass& c = classes_[cls];
  const size_t csize = kClassSize[cls];
  std::lock_guard<std::mutex> lk(c.mu);
  Slab* s = c.partial;
  if (s == nullptr) {
    s = new_slab(cls);
    if (s == nullptr) return nullptr;
    s->next = nullptr;
    s->prev = nullptr;
    s->in_list = 1;
    c.partial = s;
    c.partial_count = 1;
  }
  uintptr_t slot;
  if (s->free_list != nullptr) {
    slot = addr(s->free_list);
    s->free_list = reinterpret_cast<Header*>(meta_load(link_next(slot)));
    *dirty = csize;
  } else {
    slot = addr(s) + kSlabHdr + uintptr_t{s->carved} * s->slot_size;
    ++s->carved;
    unpoison(slot, kHdr);
    wr64(slot, kSlotMagic ^ slot ^ cookie_);
    *dirty = s->fresh != 0 ? 0 : csize;
  }
  set_word(reinterpret_cast<Header*>(slot), slot - addr(s), kSmall | kUsed);
  ++s->live;
  if (s->free_list == nullptr && s->carved == s->capacity) {
    // Full: leave the partial list.
    c.partial = s->next;
    if (s->next != nullptr) s->next->prev = nullptr;
    s->next = s->prev = nullptr;
    s->in_list = 0;
    --c.partial_count;
  }
  add(c.in_use, static_cast<int64_t>(csize));
  add(c.live, 1);
  add(c.total, 1);
  unpoison(slot + kHdr, csize);
  return reinterpret_cast<void*>(slot + kHdr);
}

void* EnclaveHeap::alloc_impl(size_t n, size_t align, size_t* dirty) {
  if (align <= kAlignment && n <= kSmallMax) {
    void* p = small_alloc(kClassOf[(n + 15) >> 4], dirty);
    if (p != nullptr) return p;
    // No room for a new slab: a small TLSF block may still fit under the limit.
  }
  return large_alloc(n, align, dirty);
}

void* EnclaveHeap::malloc(size_t n) {
  size_t dirty;
  return alloc_impl(n, kAlignment, &dirty);
}

void* EnclaveHeap::calloc(size_t n, size_t sz) {
  size_t total;
  if (__builtin_mul_overflow(n, sz, &total)) return nullptr;
  size_t dirty;
  void* p = alloc_impl(total, kAlignment, &dirty);
  if (p != nullptr) std::memset(p, 0, std::min(total, dirty));
  return p;
}

void* EnclaveHeap::aligned_alloc(size_t align, size_t n) {
  if (align == 0 || (align & (align - 1)) != 0) return nullptr;
  if (align >= kMaxReserve) return nullptr;
  size_t dirty;
  return alloc_impl(n, std::max(align, kAlignment), &dirty);
}

// ---------------------------------------------------------------------------------------------
// Free.

void EnclaveHeap::free(void* p) {
  if (p == nullptr) return;
  Header* h = header_of(p);
  uint64_t w = load_word(h);
  if ((w & kSmall) != 0) {
    free_small(h, w);
  } else {
    free_large(h, w);
  }
}

// w: the owner word free() read (and validated) without the lock.
void EnclaveHeap::free_large(Header* h, uint64_t w) {
  if ((w & (kUsed | kSmall | kSlabFlag)) != kUsed) die();  // double free, or a slab
  std::lock_guard<std::mutex> lk(large_mu_);
  if (rd64(addr(h) + 8) != w) die();  // freed (or resized) by another thread meanwhile
  size_t size = w & kSizeMask;
  add(large_in_use_, -static_cast<int64_t>(size - kHdr));
  add(large_live_, -1);
  coalesce_and_insert(h, size, false, /*merge_prev=*/true);
}

void EnclaveHeap::free_small(Header* slot_h, uint64_t w) {
  uintptr_t slot = addr(slot_h);
  size_t off = w & kSizeMask;
  if (off < kSlabHdr || off >= kSlabBytes || slot - off < base_ + kHdr) die();
  Slab* s = reinterpret_cast<Slab*>(slot - off);
  // The slab header fields read here do not change while the slab holds a live slot.
  if (s->magic != (kSlabMagic ^ addr(s) ^ cookie_)) die();
  unsigned cls = s->cls;
  if (cls >= kNumClasses || s->slot_size != slot_size_of(cls)) die();
  if ((off - kSlabHdr) % s->slot_size != 0) die();
  if (rd64(slot) != (kSlotMagic ^ slot ^ cookie_)) die();
  SizeClass& c = classes_[cls];
  const size_t csize = kClassSize[cls];

  std::unique_lock<std::mutex> lk(c.mu);
  w = load_word(slot_h);
  if ((w & (kSmall | kUsed)) != (kSmall | kUsed)) die();  // double free
  if ((off - kSlabHdr) / s->slot_size >= s->carved) die();
  set_word(slot_h, off, kSmall);
  poison(slot + kHdr, csize);
  meta_store(link_next(slot), addr(s->free_list));
  s->free_list = slot_h;
  --s->live;
  add(c.in_use, -static_cast<int64_t>(csize));
  add(c.live, -1);

  if (s->live == 0 && c.partial_count > (s->in_list != 0 ? 1u : 0u)) {
    // Empty and not the class's last slab with room: give it back to TLSF.
    if (s->in_list != 0) {
      if (s->prev != nullptr) {
        s->prev->next = s->next;
      } else {
        c.partial = s->next;
      }
      if (s->next != nullptr) s->next->prev = s->prev;
      --c.partial_count;
    }
    s->magic = 0;
    Header* bh = reinterpret_cast<Header*>(addr(s) - kHdr);
    std::lock_guard<std::mutex> lk2(large_mu_);
    uint64_t bw = load_word(bh);
    if ((bw & (kUsed | kSlabFlag)) != (kUsed | kSlabFlag)) die();
    coalesce_and_insert(bh, bw & kSizeMask, false, /*merge_prev=*/true);
    return;
  }
  if (s->in_list == 0) {
    s->prev = nullptr;
    s->next = c.partial;
    if (c.partial != nullptr) c.partial->prev = s;
    c.partial = s;
    s->in_list = 1;
    ++c.partial_count;
  }
}

size_t EnclaveHeap::usable_size(const void* p) const {
  if (p == nullptr) return 0;
  const Header* h = header_of(p);
  uint64_t w = load_word(h);
  if ((w & kSmall) != 0) {
    size_t off = w & kSizeMask;
    if (off < kSlabHdr || off >= kSlabBytes) die();
    const Slab* s = reinterpret_cast<const Slab*>(addr(h) - off);
    if (s->magic != (kSlabMagic ^ addr(s) ^ cookie_) || s->cls >= kNumClasses) die();
    return kClassSize[s->cls];
  }
  if ((w & (kUsed | kSlabFlag)) != kUsed) die();
  return (w & kSizeMask) - kHdr;
}

// ---------------------------------------------------------------------------------------------
// Realloc.

void* EnclaveHeap::realloc(void* p, size_t n) {
  if (p == nullptr) return malloc(n);
  if (n == 0) {
    free(p);
    return nullptr;
  }
  Header* h = header_of(p);
  uint64_t w = load_word(h);
  if ((w & kSmall) != 0) {
    size_t usable = usable_size(p);
    if (n <= usable && (n > usable / 2 || usable <= 16)) return p;
    void* q = malloc(n);
    if (q == nullptr) return n <= usable ? p : nullptr;
    std::memcpy(q, p, std::min(n, usable));
    free(p);
    return q;
  }

  if (n >= kMaxReserve) return nullptr;
  size_t want = std::max(kMinBlock, align_up(n + kHdr, kAlignment));
  size_t old_usable;
  if ((w & (kUsed | kSmall | kSlabFlag)) != kUsed) die();
  {
    std::lock_guard<std::mutex> lk(large_mu_);
    if (rd64(addr(h) + 8) != w) die();
    size_t size = w & kSizeMask;
    old_usable = size - kHdr;
    uintptr_t a = addr(h);
    if (want <= size) {
      // Shrink in place; the tail (if a block's worth) goes back, merged with a free next.
      size_t now = split(h, size, want, kUsed, 0);
      add(large_in_use_, -static_cast<int64_t>(size - now));
      return p;
    }
    // Grow in place into a free next block, or past the end by raising top.
    uintptr_t next = a + size;
    uintptr_t end = end_addr();
    Header* ext = nullptr;
    size_t ext_size = 0;
    uint64_t ext_zero = 0;
    if (next < end) {
      uint64_t wn = load_word(reinterpret_cast<Header*>(next));
      if ((wn & kUsed) == 0) {
        if (size + (wn & kSizeMask) >= want) {
          ext = reinterpret_cast<Header*>(next);
          ext_size = wn & kSizeMask;
          remove_free(ext, ext_size);
        } else if (reinterpret_cast<Header*>(next) == last_) {
          ext = grow(want - size, &ext_size, &ext_zero);  // extends the free last block
        }
      }
    } else {
      // h is the last block: a new one right after it.
      ext = grow(std::max(want - size, kMinBlock), &ext_size, &ext_zero);
    }
    if (ext != nullptr) {
      size_t total = size + ext_size;
      end = end_addr();
      if (a + total < end) {
        wr64(a + total, total);
      } else {
        last_ = h;
      }
      size_t now = split(h, total, want, kUsed, 0);
      add(large_in_use_, static_cast<int64_t>(now - size));
      unpoison(a + kHdr, now - kHdr);
      return p;
    }
  }
  void* q = malloc(n);
  if (q == nullptr) return nullptr;
  std::memcpy(q, p, std::min(n, old_usable));
  free(p);
  return q;
}

// ---------------------------------------------------------------------------------------------
// Consistency check (tests, self-check ECALL).

bool EnclaveHeap::check(std::string* why) const {
  char buf[192];
  buf[0] = 0;
  bool ok;
  for (const SizeClass& c : classes_) c.mu.lock();
  large_mu_.lock();
  ok = check_locked(buf, sizeof buf);
  large_mu_.unlock();
  for (size_t i = kNumClasses; i-- > 0;) classes_[i].mu.unlock();
  if (!ok && why != nullptr) *why = buf;  // allocates only now, with no lock held
  return ok;
}

bool EnclaveHeap::check_slab(const Slab* s, uint64_t* in_use, uint64_t* live, char* why_buf,
                             size_t why_len) const {
  Why why{why_buf, why_len};
  uintptr_t sa = addr(s);
  if (s->magic != (kSlabMagic ^ sa ^ cookie_)) {
    why.s("bad slab magic at offset ").x(sa - base_);
    return false;
  }
  unsigned cls = s->cls;
  if (cls >= kNumClasses || s->slot_size != slot_size_of(cls) || s->capacity != capacity_of(cls) ||
      s->carved > s->capacity || s->live > s->carved) {
    why.s("bad slab header at offset ").x(sa - base_);
    return false;
  }
  uint32_t used = 0;
  for (uint32_t i = 0; i < s->carved; ++i) {
    uintptr_t slot = sa + kSlabHdr + uintptr_t{i} * s->slot_size;
    uint64_t w = rd64(slot + 8);
    if (make_word(reinterpret_cast<const Header*>(slot), w & kLowMask) != w ||
        (w & (kSmall | kSlabFlag | kZero)) != kSmall || (w & kSizeMask) != slot - sa ||
        rd64(slot) != (kSlotMagic ^ slot ^ cookie_)) {
      why.s("bad slot header at offset ").x(slot - base_);
      return false;
    }
    if ((w & kUsed) != 0) ++used;
  }
  if (used != s->live) {
    why.s("slab live count mismatch at offset ").x(sa - base_);
    return false;
  }
  uint32_t nfree = 0;
  for (uintptr_t f = addr(s->free_list); f != 0; f = meta_load(link_next(f))) {
    if (f < sa + kSlabHdr || (f - sa - kSlabHdr) % s->slot_size != 0 ||
        (f - sa - kSlabHdr) / s->slot_size >= s->carved || (rd64(f + 8) & kUsed) != 0 ||
        ++nfree > s->carved - s->live) {
      why.s("bad slab free list at offset ").x(sa - base_);
      return false;
    }
  }
  if (nfree != s->carved - s->live) {
    why.s("slab free list length mismatch at offset ").x(sa - base_);
    return false;
  }
  bool room = s->free_list != nullptr || s->carved < s->capacity;
  if (room != (s->in_list != 0)) {
    why.s("slab list membership wrong at offset ").x(sa - base_);
    return false;
  }
  in_use[cls] += uint64_t{s->live} * kClassSize[cls];
  live[cls] += s->live;
  return true;
}

bool EnclaveHeap::check_locked(char* why_buf, size_t why_len) const {
  Why why{why_buf, why_len};
  if (!initialized()) return true;
  const size_t top = top_.load(std::memory_order_relaxed);
  const size_t limit = limit_.load(std::memory_order_relaxed);
  if ((top & (kAlignment - 1)) != 0 || top > limit || limit > reserve_) {
    why.s("bad top/limit/reserve");
    return false;
  }
  const uintptr_t end = base_ + top;
  uint64_t cls_in_use[kNumClasses] = {};
  uint64_t cls_live[kNumClasses] = {};
  uint32_t cls_listed[kNumClasses] = {};
  uint64_t large_in_use = 0, large_live = 0, free_blocks = 0;
  uint64_t prev_size = 0;
  bool prev_free = false;
  uintptr_t last = 0;
  uintptr_t a = base_;
  while (a < end) {
    uint64_t w = rd64(a + 8);
    if (make_word(reinterpret_cast<const Header*>(a), w & kLowMask) != w) {
      why.s("bad block header at offset ").x(a - base_);
      return false;
    }
    size_t size = w & kSizeMask;
    if ((w & kSmall) != 0 || size < kMinBlock || size > end - a) {
      why.s("bad block size/flags at offset ").x(a - base_);
      return false;
    }
    if (rd64(a) != prev_size) {
      why.s("boundary tag mismatch at offset ").x(a - base_);
      return false;
    }
    bool is_free = (w & kUsed) == 0;
    if (is_free) {
      if (prev_free || (w & kSlabFlag) != 0) {
        why.s("uncoalesced free block at offset ").x(a - base_);
        return false;
      }
      ++free_blocks;
    } else if ((w & kSlabFlag) != 0) {
      const Slab* s = reinterpret_cast<const Slab*>(a + kHdr);
      size_t used = why.len;
      if (!check_slab(s, cls_in_use, cls_live, why_buf + used, why_len - used)) return false;
      if (s->in_list != 0) ++cls_listed[s->cls];
    } else {
      large_in_use += size - kHdr;
      ++large_live;
    }
    prev_free = is_free;
    prev_size = size;
    last = a;
    a += size;
  }
  if (a != end || last != addr(last_)) {
    why.s("blocks do not tile [base, top) or last block wrong");
    return false;
  }
  // Free lists and bitmaps.
  uint64_t listed = 0;
  for (int fl = 0; fl < kFlCount; ++fl) {
    if (((fl_bitmap_ >> fl) & 1) != (sl_bitmap_[fl] != 0 ? 1u : 0u)) {
      why.s("first-level bitmap wrong at fl ").x(fl);
      return false;
    }
    for (int sl = 0; sl < kSlCount; ++sl) {
      uintptr_t h = addr(heads_[fl][sl]);
      if (((sl_bitmap_[fl] >> sl) & 1) != (h != 0 ? 1u : 0u)) {
        why.s("second-level bitmap wrong at fl ").x(fl).s(" sl ").x(sl);
        return false;
      }
      uintptr_t prev = 0;
      for (; h != 0; h = meta_load(link_next(h))) {
        if (h < base_ || h >= end || (h & (kAlignment - 1)) != 0 || ++listed > free_blocks) {
          why.s("free list corrupted at fl ").x(fl).s(" sl ").x(sl);
          return false;
        }
        uint64_t w = rd64(h + 8);
        int f, s;
        mapping(w & kSizeMask, &f, &s);
        if (make_word(reinterpret_cast<const Header*>(h), w & kLowMask) != w || (w & kUsed) != 0 ||
            f != fl || s != sl || meta_load(link_prev(h)) != prev) {
          why.s("bad free block in list at offset ").x(h - base_);
          return false;
        }
        prev = h;
      }
    }
  }
  if (listed != free_blocks) {
    why.s("free blocks missing from free lists");
    return false;
  }
  // Size classes: list membership and counters.
  for (unsigned cls = 0; cls < kNumClasses; ++cls) {
    const SizeClass& c = classes_[cls];
    uint32_t n = 0;
    for (const Slab* s = c.partial; s != nullptr; s = s->next) {
      if (++n > cls_listed[cls] || s->cls != cls || s->in_list == 0 ||
          (s->next != nullptr && s->next->prev != s)) {
        why.s("partial slab list corrupted for class ").x(cls);
        return false;
      }
    }
    if (n != c.partial_count || n != cls_listed[cls]) {
      why.s("partial slab count mismatch for class ").x(cls);
      return false;
    }
    if (c.in_use.load(std::memory_order_relaxed) != cls_in_use[cls] ||
        c.live.load(std::memory_order_relaxed) != cls_live[cls]) {
      why.s("counters disagree with slabs for class ").x(cls);
      return false;
    }
  }
  if (large_in_use_.load(std::memory_order_relaxed) != large_in_use ||
      large_live_.load(std::memory_order_relaxed) != large_live) {
    why.s("large counters disagree with blocks");
    return false;
  }
  return true;
}

}  // namespace constmig::trusted
