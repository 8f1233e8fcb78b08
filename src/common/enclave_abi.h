// The binary interface between the (untrusted) emulated SGX platform and an enclave image.
//
// EMULATED SGX PLATFORM. An enclave image is a self-contained shared object linked at a fixed
// base address (the first PT_LOAD's p_vaddr). The platform lays out the enclave range
// (ELRANGE analogue) relative to that base, the same way on every host, so that pointers kept
// in migrated memory (vtables, function pointers, literals, heap links) stay valid:
//
//   base + 0              enclave image (code: ordinary memory, measured; data/bss: moved into
//                         memfd_secret after loading)            at most kImageMaxSize
//   base + kBootOffset    boot page: written by the platform before the image is loaded,
//                         per process, NEVER migrated (holds host pointers such as the OCALL
//                         dispatcher). Read by the trusted runtime, which validates it.
//   base + kScratchOffset per-instance trusted scratch: memfd_secret, NEVER migrated. Holds what
//                         belongs to this enclave instance only: the migration context and
//                         keys, restored-page bitmaps, the crypto library's allocations.
//   base + kHeapOffset    ConstMigLib heap, memfd_secret, reserved kHeapMaxReserve bytes;
//                         pages materialise on first touch.
//   base + kRestoreOffset the restore window: a second mapping of the SAME memfd_secret file as
//                         the heap, always read-write. In a live migration (ConstMig mode) the
//                         target's heap pages stay inaccessible until restored (Fault Tracker);
//                         the enclave decrypts incoming pages through this window, then the
//                         host opens them in the heap view. Never used by app code.
//
// Only standard-library headers may be included here: both sides use this file.
#pragma once

#include <cstddef>
#include <cstdint>

namespace constmig::abi {

inline constexpr uint32_t kAbiVersion = 1;
inline constexpr uint64_t kPageSize = 4096;
inline constexpr uint64_t kImageMaxSize = 256ull << 20;
inline constexpr uint64_t kBootOffset = 512ull << 20;
inline constexpr uint64_t kBootSize = 64ull << 10;
inline constexpr uint64_t kScratchOffset = 768ull << 20;
inline constexpr uint64_t kScratchSize = 64ull << 20;
inline constexpr uint64_t kHeapOffset = 1ull << 30;
inline constexpr uint64_t kHeapMaxReserve = 64ull << 30;
inline constexpr uint64_t kHeapMinSize = 16ull << 20;
inline constexpr uint64_t kRestoreOffset = kHeapOffset + kHeapMaxReserve;
inline constexpr uint64_t kEnclaveSpan = kRestoreOffset + kHeapMaxReserve;  // whole range
inline constexpr uint32_t kMaxThreadSlots = 256;
inline constexpr uint64_t kBootMagic = 0x544f4f42474d4343ull;  // "CCMGBOOT"

// Status codes returned by ECALL/OCALL entry points. On a non-zero status the output buffer
// holds a NUL-terminated human-readable message (truncated to the buffer).
enum EcallStatus : int32_t {
  kEcallOk = 0,
  kEcallUnknownId = 1,
  kEcallBadInput = 2,
  kEcallOutTooSmall = 3,  // *out_len holds the size needed
  kEcallOutOfMemory = 4,
  kEcallAppError = 5,
  kEcallRefused = 6,  // e.g. the enclave is frozen for migration
  kEcallInternal = 7,
};

// Built-in OCALL ids (app OCALLs start at kFirstAppOcall).
enum RuntimeOcall : uint32_t {
  kOcallLog = 0,     // in: UTF-8 message
  kOcallTimeNs = 1,  // out: u64 CLOCK_MONOTONIC ns (UNTRUSTED time)
  // Access Tracker: in u64 first heap page, u32 count (<= 256). Returns when the host believes
  // those pages were installed (the enclave re-checks its own bitmap); an error status means
  // they never will be (no live migration, or it failed).
  kOcallFetchPages = 2,
  kFirstAppOcall = 64,
};

// Built-in ECALL ids, above any app id.
enum RuntimeEcall : uint32_t {
  kFirstRuntimeEcall = 0xFFFF0000u,
  kEcallFetchPending = 0xFFFF0000u,  // re-fetch the output of the last ECALL on this slot
  kEcallHeapStats = 0xFFFF0001u,     // out: 5 x u64 (top, limit, in_use, live, total allocs)
  kEcallSelfCheck = 0xFFFF0002u,     // walk the heap; error if corrupted
  kEcallLayout = 0xFFFF0003u,        // out: EnclaveLayout
  kEcallPrefault = 0xFFFF0004u,      // in: u64 first page, u64 count: touch heap pages (EAUG
                                     // analogue) without changing their contents

  // Migration (ConstMigLib, src/trusted/migration/enclave_migration.h documents each one).
  // They bypass the host's ECALL gate and never allocate from the migrated heap.
  kEcallMigFirst = 0xFFFF0100u,
  kEcallMigHello = 0xFFFF0100u,
  kEcallMigPeer = 0xFFFF0101u,
  kEcallMigConfirm = 0xFFFF0102u,
  kEcallMigFreeze = 0xFFFF0103u,
  kEcallMigSealHostState = 0xFFFF0104u,
  kEcallMigExportPages = 0xFFFF0105u,
  kEcallMigManifest = 0xFFFF0106u,
  kEcallMigImportSmall = 0xFFFF0107u,
  kEcallMigOpenHostState = 0xFFFF0108u,
  kEcallMigImportPages = 0xFFFF0109u,
  kEcallMigFinish = 0xFFFF010Au,
  kEcallMigMakeAbort = 0xFFFF010Bu,
  kEcallMigCommit = 0xFFFF010Cu,
  kEcallMigAbort = 0xFFFF010Du,
  kEcallMigForceResume = 0xFFFF010Eu,
  kEcallMigReset = 0xFFFF010Fu,
  kEcallMigStatus = 0xFFFF0110u,
  kEcallMigGoLive = 0xFFFF0111u,         // in: [u8 tracker: 0 host page faults, 1 access tracker]
  kEcallMigResumeHello = 0xFFFF0112u,    // live recovery (source): out RESUME payload
  kEcallMigResumeAccept = 0xFFFF0113u,   // live recovery (target): RESUME in, RESUME + STATE out
  kEcallMigResumeConfirm = 0xFFFF0114u,  // live recovery (source): RESUME + STATE in
  kEcallMigLast = 0xFFFF0114u,
};

// Migration state of an enclave instance (kEcallMigStatus).
enum MigState : uint32_t {
  kMigRunning = 0,    // normal: app ECALLs run
  kMigHandshake = 1,  // HELLO made, peer not yet verified
  kMigKeyed = 2,      // keys derived, peer confirmed (source: still runs app ECALLs)
  kMigFrozen = 3,     // source after the snapshot: app ECALLs refused until commit/abort
  kMigImporting = 4,  // target: receiving state; app ECALLs refused
  kMigDead = 5,       // source after commit: refuses every app ECALL, forever
  kMigFailed = 6,     // target that refused the incoming state: never runs the app
  kMigLive = 7,       // target in a live migration: runs app ECALLs while heap pages arrive
};

// What the enclave itself says about its memory (kEcallLayout). The trusted side decides what
// migrates: [globals_begin, globals_end) and [heap_base, heap_base + heap_top).
struct EnclaveLayout {
  uint64_t globals_begin, globals_end;    // migrated enclave globals (.data/.bss)
  uint64_t instance_begin, instance_end;  // per-instance image data (.cm_instance), never migrated
  uint64_t scratch_base, scratch_size;    // per-instance scratch, never migrated
  uint64_t heap_base, heap_top;           // heap layout: the range ever used
};

// Host-side OCALL dispatcher, installed by the platform in the boot page.
using OcallDispatchFn = int32_t (*)(void* ctx, uint32_t id, const uint8_t* in, size_t in_len,
                                    uint8_t* out, size_t out_cap, size_t* out_len);

struct BootPage {
  uint64_t magic;         // kBootMagic
  uint32_t abi_version;   // kAbiVersion
  uint32_t thread_slots;  // number of ECALL slots (TCS analogue)
  uint64_t image_base;    // must equal the image's own base
  uint64_t heap_base;     // must equal image_base + kHeapOffset
  uint64_t heap_limit;    // bytes the heap may grow to (--max-memory), <= kHeapMaxReserve
  OcallDispatchFn ocall;  // host dispatcher (may be null: OCALLs then fail)
  void* ocall_ctx;
  uint64_t scratch_base;  // must equal image_base + kScratchOffset
  uint64_t scratch_size;  // kScratchSize
  // The measurement the platform computed for this image (the enclave compares a migration
  // peer's quoted measurement with it). EMULATION: given by the platform, like MRENCLAVE is
  // given by EREPORT; a malicious emulated platform can lie (docs/security.md).
  uint8_t measurement[32];
  uint64_t flags;  // reserved, 0
};
static_assert(sizeof(BootPage) <= kBootSize);

// Description an image reports about itself (constmig_enclave_info).
struct EnclaveInfo {
  uint32_t abi_version;
  uint32_t ecall_count;
  const char* app_name;
  const char* const* ecall_names;  // ecall_count entries
  uint32_t ocall_count;
  const char* const* ocall_names;
};

}  // namespace constmig::abi

// Symbols every enclave image exports (and nothing else).
extern "C" {
// Run ECALL `id` on thread slot `slot`. `in` is host memory: the trusted side copies it in
// before use. Output is copied to `out` (host memory) on return.
typedef int32_t (*constmig_enclave_ecall_fn)(uint32_t slot, uint32_t id, const uint8_t* in,
                                             size_t in_len, uint8_t* out, size_t out_cap,
                                             size_t* out_len);
typedef const constmig::abi::EnclaveInfo* (*constmig_enclave_info_fn)();
}
#define CONSTMIG_ECALL_SYMBOL "constmig_enclave_ecall"
#define CONSTMIG_INFO_SYMBOL "constmig_enclave_info"
