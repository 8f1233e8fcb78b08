// ConstMigLib trusted runtime: ECALL entry, boot-page validation, heap bootstrap, OCALLs.
// TRUSTED code: standard library + src/common only.
#include "trusted/enclave_runtime.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>

#include "trusted/enclave_edl.h"
#include "trusted/migration/enclave_migration.h"

extern "C" {
// Provided by the linker: the ELF header of this image, i.e. its (fixed) load address.
extern const char __ehdr_start[] __attribute__((visibility("hidden")));
// From cmake/enclave_sections.ld and the default linker script.
extern char __cm_instance_start[] __attribute__((visibility("hidden")));
extern char __cm_instance_end[] __attribute__((visibility("hidden")));
}

namespace constmig::trusted {
namespace {

// Constant-initialised (lives in .bss): usable from static constructors run inside dlopen.
EnclaveHeap g_heap;
std::atomic<int> g_heap_state{0};  // 0 = not yet, 1 = initialising, 2 = ready

// Output kept per thread slot so that a host whose buffer was too small can fetch it without
// running the ECALL a second time (ECALLs are not idempotent).
CONSTMIG_INSTANCE std::vector<uint8_t>* g_pending[abi::kMaxThreadSlots];

uintptr_t image_base() {
  return reinterpret_cast<uintptr_t>(__ehdr_start);
}

const abi::BootPage* validated_boot_page() {
  auto* bp = reinterpret_cast<const abi::BootPage*>(image_base() + abi::kBootOffset);
  // The boot page is written by the untrusted platform: check everything we rely on. A bad
  // page means the host is broken or hostile; the enclave cannot run safely.
  if (bp->magic != abi::kBootMagic || bp->abi_version != abi::kAbiVersion ||
      bp->image_base != image_base() || bp->heap_base != image_base() + abi::kHeapOffset ||
      bp->heap_limit > abi::kHeapMaxReserve || bp->thread_slots == 0 ||
      bp->scratch_base != image_base() + abi::kScratchOffset ||
      bp->scratch_size != abi::kScratchSize || bp->thread_slots > abi::kMaxThreadSlots) {
    std::abort();
  }
  return bp;
}

void set_error(uint8_t* out, size_t out_cap, size_t* out_len, std::string_view msg) {
  if (out_cap == 0 || out == nullptr) {
    if (out_len) *out_len = 0;
    return;
  }
  size_t n = msg.size() < out_cap - 1 ? msg.size() : out_cap - 1;
  std::memcpy(out, msg.data(), n);
  out[n] = 0;
  if (out_len) *out_len = n + 1;
}

}  // namespace

int32_t deliver_output(std::vector<uint8_t>& result, uint32_t slot, uint8_t* out, size_t out_cap,
                       size_t* out_len) {
  *out_len = result.size();
  if (result.size() > out_cap) {
    // Keep it for kEcallFetchPending on this slot.
    if (g_pending[slot] == nullptr) g_pending[slot] = new std::vector<uint8_t>();
    g_pending[slot]->swap(result);
    return abi::kEcallOutTooSmall;
  }
  if (!result.empty()) std::memcpy(out, result.data(), result.size());
  return abi::kEcallOk;
}

namespace {

void put_u64(std::vector<uint8_t>& v, uint64_t x) {
  uint8_t b[8];
  std::memcpy(b, &x, 8);
  v.insert(v.end(), b, b + 8);
}

int32_t run_builtin(uint32_t slot, uint32_t id, ByteView in, std::vector<uint8_t>& result,
                    std::string& err) {
  switch (id) {
    case kEcallFetchPending:
      if (g_pending[slot] == nullptr || g_pending[slot]->empty()) {
        err = "no pending output on this thread slot";
        return abi::kEcallBadInput;
      }
      result.swap(*g_pending[slot]);
      g_pending[slot]->clear();
      g_pending[slot]->shrink_to_fit();
      return abi::kEcallOk;
    case kEcallHeapStats: {
      auto s = heap().stats();
      put_u64(result, s.top_bytes);
      put_u64(result, s.limit_bytes);
      put_u64(result, s.in_use_bytes);
      put_u64(result, s.live_allocations);
      put_u64(result, s.total_allocations);
      return abi::kEcallOk;
    }
    case abi::kEcallPrefault: {
      // Make the kernel allocate heap pages now (first touch of secret memory is slow), so a
      // migration target does it before the stop phase. Contents are kept: read then write.
      ByteReader r(in);
      uint64_t first = r.u64(), count = r.u64();
      const abi::BootPage& bp = boot_page();
      uint64_t max_pages = bp.heap_limit / abi::kPageSize;
      if (!r.at_end() || first > max_pages || count > max_pages - first) {
        err = "prefault: range outside the heap limit";
        return abi::kEcallBadInput;
      }
      auto* base = reinterpret_cast<volatile uint8_t*>(bp.heap_base);
      for (uint64_t i = first; i < first + count; ++i) {
        volatile uint8_t* p = base + i * abi::kPageSize;
        *p = *p;
      }
      return abi::kEcallOk;
    }
    case kEcallLayout: {
      abi::EnclaveLayout l = layout();
      const auto* b = reinterpret_cast<const uint8_t*>(&l);
      result.assign(b, b + sizeof l);
      return abi::kEcallOk;
    }
    case kEcallSelfCheck: {
      std::string why;
      if (!heap().check(&why)) {
        err = "enclave heap is corrupted: " + why;
        return abi::kEcallInternal;
      }
      return abi::kEcallOk;
    }
    default:
      err = "unknown ECALL id";
      return abi::kEcallUnknownId;
  }
}

}  // namespace

const abi::BootPage& boot_page() {
  static const abi::BootPage* bp = validated_boot_page();
  return *bp;
}

// Start of the migrated globals: the end of PT_GNU_RELRO (page-aligned by the linker), else
// the start of the writable PT_LOAD. Read from this image's own program headers (the ELF
// header is mapped at __ehdr_start; the image is at its linked address, so p_vaddr is
// absolute). Layout per the ELF-64 specification.
uintptr_t globals_begin() {
  const auto* eh = reinterpret_cast<const uint8_t*>(__ehdr_start);
  uint64_t phoff;
  uint16_t phentsize, phnum;
  std::memcpy(&phoff, eh + 32, 8);
  std::memcpy(&phentsize, eh + 54, 2);
  std::memcpy(&phnum, eh + 56, 2);
  constexpr uint32_t kPtLoad = 1, kPtGnuRelro = 0x6474e552, kPfW = 2;
  uintptr_t rw_start = 0, relro_end = 0;
  for (uint16_t i = 0; i < phnum; ++i) {
    const uint8_t* ph = eh + phoff + static_cast<uint64_t>(i) * phentsize;
    uint32_t type, flags;
    uint64_t vaddr, memsz;
    std::memcpy(&type, ph, 4);
    std::memcpy(&flags, ph + 4, 4);
    std::memcpy(&vaddr, ph + 16, 8);
    std::memcpy(&memsz, ph + 40, 8);
    if (type == kPtLoad && (flags & kPfW) && rw_start == 0) rw_start = vaddr;
    if (type == kPtGnuRelro) relro_end = vaddr + memsz;
  }
  return relro_end > rw_start ? relro_end : rw_start;
}

abi::EnclaveLayout layout() {
  const abi::BootPage& bp = boot_page();
  abi::EnclaveLayout l{};
  l.globals_begin = globals_begin();
  l.globals_end = reinterpret_cast<uintptr_t>(__cm_instance_start);
  l.instance_begin = reinterpret_cast<uintptr_t>(__cm_instance_start);
  l.instance_end = reinterpret_cast<uintptr_t>(__cm_instance_end);
  l.scratch_base = bp.scratch_base;
  l.scratch_size = bp.scratch_size;
  l.heap_base = bp.heap_base;
  l.heap_top = heap().top();
  return l;
}

namespace {
// Lazy, thread-safe initialisation without __cxa_guard (usable from malloc during dlopen):
// state 0 = not yet, 1 = initialising, 2 = ready.
template <typename Init>
EnclaveHeap& init_once(std::atomic<int>& state, EnclaveHeap& h, Init&& init) {
  if (state.load(std::memory_order_acquire) == 2) return h;
  int expected = 0;
  if (state.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
    init(h);
    state.store(2, std::memory_order_release);
  } else {
    while (state.load(std::memory_order_acquire) != 2) {
    }
  }
  return h;
}

CONSTMIG_INSTANCE EnclaveHeap g_instance_heap;
CONSTMIG_INSTANCE std::atomic<int> g_instance_state{0};
thread_local bool t_instance_alloc = false;
}  // namespace

EnclaveHeap& instance_heap() {
  return init_once(g_instance_state, g_instance_heap, [](EnclaveHeap& h) {
    const abi::BootPage* bp = validated_boot_page();
    h.init(reinterpret_cast<void*>(bp->scratch_base), bp->scratch_size, bp->scratch_size);
  });
}

InstanceAllocScope::InstanceAllocScope() : prev_(t_instance_alloc) {
  t_instance_alloc = true;
}
InstanceAllocScope::~InstanceAllocScope() {
  t_instance_alloc = prev_;
}
bool instance_alloc_active() {
  return t_instance_alloc;
}

void* route_malloc(size_t n) {
  return t_instance_alloc ? instance_heap().malloc(n) : heap().malloc(n);
}
void* route_aligned(size_t align, size_t n) {
  return t_instance_alloc ? instance_heap().aligned_alloc(align, n)
                          : heap().aligned_alloc(align, n);
}
void route_free(void* p) {
  if (p == nullptr) return;
  if (g_instance_state.load(std::memory_order_acquire) == 2 && g_instance_heap.owns(p)) {
    g_instance_heap.free(p);
  } else {
    heap().free(p);
  }
}
void* route_realloc(void* p, size_t n) {
  if (p != nullptr && g_instance_state.load(std::memory_order_acquire) == 2 &&
      g_instance_heap.owns(p)) {
    return g_instance_heap.realloc(p, n);
  }
  if (p == nullptr && t_instance_alloc) return instance_heap().malloc(n);
  return heap().realloc(p, n);
}
size_t route_usable_size(const void* p) {
  if (g_instance_state.load(std::memory_order_acquire) == 2 && g_instance_heap.owns(p)) {
    return g_instance_heap.usable_size(p);
  }
  return heap().usable_size(p);
}

EnclaveHeap& heap() {
  return init_once(g_heap_state, g_heap, [](EnclaveHeap& h) {
    const abi::BootPage* bp = validated_boot_page();
    h.init(reinterpret_cast<void*>(bp->heap_base), abi::kHeapMaxReserve, bp->heap_limit);
  });
}

int32_t ocall(uint32_t id, ByteView in, std::vector<uint8_t>& out, size_t max_out) {
  const abi::BootPage& bp = boot_page();
  if (bp.ocall == nullptr) return abi::kEcallRefused;
  // The host writes into an enclave buffer we own; the length it reports is checked.
  out.resize(max_out);
  size_t got = 0;
  int32_t st = bp.ocall(bp.ocall_ctx, id, in.data(), in.size(), out.data(), out.size(), &got);
  if (got > out.size()) got = out.size();
  out.resize(st == abi::kEcallOk ? got : 0);
  return st;
}

void log(std::string_view msg) {
  std::vector<uint8_t> out;
  (void)ocall(kOcallLog, as_bytes_view(msg), out, 0);
}

uint64_t untrusted_time_ns() {
  std::vector<uint8_t> out;
  if (ocall(kOcallTimeNs, {}, out, 8) != abi::kEcallOk || out.size() != 8) return 0;
  uint64_t t;
  std::memcpy(&t, out.data(), 8);
  return t;
}

}  // namespace constmig::trusted

using constmig::trusted::app_table;

extern "C" __attribute__((visibility("default"))) int32_t constmig_enclave_ecall(
    uint32_t slot, uint32_t id, const uint8_t* in, size_t in_len, uint8_t* out, size_t out_cap,
    size_t* out_len) {
  namespace abi = constmig::abi;
  using namespace constmig::trusted;
  if (out_len == nullptr) return abi::kEcallBadInput;
  *out_len = 0;
  const abi::BootPage& bp = boot_page();
  if (slot >= bp.thread_slots) {
    set_error(out, out_cap, out_len, "thread slot out of range");
    return abi::kEcallBadInput;
  }
  if (in == nullptr && in_len != 0) {
    set_error(out, out_cap, out_len, "null input with non-zero length");
    return abi::kEcallBadInput;
  }
  if (id >= abi::kEcallMigFirst && id <= abi::kEcallMigLast) {
    return constmig::trusted::mig::dispatch(slot, id, in, in_len, out, out_cap, out_len);
  }
  // Refusals allocate nothing: in a failed live migration the heap may hold pages that never
  // arrived, and touching them would block this thread for good.
  if (const char* why = nullptr;
      id < abi::kFirstRuntimeEcall && !constmig::trusted::mig::app_enter(&why)) {
    set_error(out, out_cap, out_len, why);
    return abi::kEcallRefused;
  }
  std::string err;
  int32_t st = abi::kEcallOk;
  try {
    std::vector<uint8_t> result;
    if (id >= 0xFFFF0000u) {
      std::vector<uint8_t> in_copy(in, in + in_len);
      st = run_builtin(slot, id, constmig::ByteView(in_copy.data(), in_copy.size()), result, err);
    } else {
      const AppTable& t = app_table();
      if (id >= t.ecall_count) {
        constmig::trusted::mig::app_exit();
        err = "unknown ECALL id " + std::to_string(id);
        st = abi::kEcallUnknownId;
      } else {
        // [in] semantics: copy host memory into the enclave once, so the handler never
        // reads memory the host can change underneath it.
        std::vector<uint8_t> in_copy(in, in + in_len);
        EcallIo io{slot, constmig::ByteView(in_copy.data(), in_copy.size()), result, err};
        struct Exit {
          ~Exit() { constmig::trusted::mig::app_exit(); }
        } exit_guard;
        st = t.handlers[id](io);
      }
    }
    if (st == abi::kEcallOk) return deliver_output(result, slot, out, out_cap, out_len);
  } catch (const std::bad_alloc&) {
    st = abi::kEcallOutOfMemory;
    err = "enclave heap exhausted (raise --max-memory)";
  } catch (const std::exception& e) {
    st = abi::kEcallInternal;
    err = std::string("uncaught exception in enclave: ") + e.what();
  } catch (...) {
    st = abi::kEcallInternal;
    err = "uncaught non-standard exception in enclave";
  }
  set_error(out, out_cap, out_len, err.empty() ? "ECALL failed" : err);
  return st;
}

extern "C" __attribute__((visibility("default"))) const constmig::abi::EnclaveInfo*
constmig_enclave_info() {
  using namespace constmig::trusted;
  static const constmig::abi::EnclaveInfo info = {
      constmig::abi::kAbiVersion, app_table().ecall_count, app_table().name,
      app_table().ecall_names,    app_table().ocall_count, app_table().ocall_names};
  return &info;
}
