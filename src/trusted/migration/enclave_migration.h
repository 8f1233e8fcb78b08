// ConstMigLib migration core (TRUSTED): the enclave's half of a migration.
//
// Everything secret about a migration happens here, inside the enclave: the X25519 key
// exchange bound to both enclaves' quotes, the HKDF key schedule, AES-256-GCM sealing of the
// small state, host state and every heap page, the restored-bitmap, the manifest check and the
// commit/abort tokens. The untrusted Migration Manager only moves opaque records.
//
// Memory discipline (why it is safe to copy globals and heap byte for byte):
//   * every migration ECALL runs inside an InstanceAllocScope: its allocations, and OpenSSL's,
//     go to the per-instance arena (scratch, never migrated);
//   * a source takes its snapshot of the globals in kEcallMigFreeze and from then on nothing
//     writes to the migrated globals or heap: app ECALLs are refused (FROZEN);
//   * a target refuses app ECALLs from its first migration ECALL until the manifest proved
//     every page arrived (stop-and-copy), and forever if anything failed (FAILED);
//   * a ConstMig (live) target runs app ECALLs from MigGoLive on, before the heap has arrived:
//     the Fault Tracker (host) keeps every page the enclave has not installed inaccessible, and
//     installs go through the restore window, so the app never reads a page that is not in.
//
// ECALLs (ids in common/enclave_abi.h; integers little-endian):
//   MigHello        in  u8 role (1 source, 2 target), u8 mode, str32 app name
//                   out u32 n, HELLO payload (quote zeroed), 64 B report data for the quote
//   MigPeer         in  u32 n, peer HELLO payload, u32 k, k x 32 B trusted platform keys (raw)
//                   out 32 B key confirmation to send
//   MigConfirm      in  32 B peer key confirmation                        -> KEYED
//   MigFreeze       (source) out u64 pages, u64 heap_top, SMALL_STATE payload   -> FROZEN
//   MigSealHostState(source) in host state bytes; out HOST_STATE payload
//   MigExportPages  (source) in u64 first, u32 count (<= 1024); out PAGES payload of the pages
//                   in the range not exported before (each page is claimed once, by the heap
//                   stream or an urgent request, whichever asks first); empty if none is left
//   MigManifest     (source) out MANIFEST payload (refused unless every page was exported)
//   MigImportSmall  (target) in SMALL_STATE payload; out u64 pages, u64 heap_top -> IMPORTING
//   MigOpenHostState(target) in HOST_STATE payload; out plaintext host state
//   MigImportPages  (target) in PAGES payload; out u32 pages installed, u32 n, n x (u64 first
//                   page, u32 run) installed. ConstMig mode writes through the restore window
//                   (abi::kRestoreOffset): the host opens a page for the app only after this.
//   MigGoLive       (target, ConstMig) after small + host state: app ECALLs run while pages
//                   keep arriving                                          -> LIVE
//   MigFinish       (target) in MANIFEST payload; out COMMIT payload  IMPORTING/LIVE -> RUNNING
//   MigMakeAbort    (target) in str32 reason; out ABORT payload               -> FAILED
//   MigCommit       (source) in COMMIT payload                               -> DEAD
//   MigAbort        (source) in ABORT payload                                -> RUNNING
//   MigForceResume  (source) operator override without a token, FROZEN      -> RUNNING
//   MigReset        drop a handshake that has not frozen anything           -> RUNNING
//   MigStatus       out u32 state, u32 role, 16 B migration id, u64 pages, u64 done
//   MigResumeHello  (source, FROZEN, live) out RESUME payload proposing the next epoch
//   MigResumeAccept (target, LIVE) in the source's RESUME; moves to the new epoch's keys;
//                   out u32 n, our RESUME (n bytes), RESUME_STATE payload (sealed page bitmap)
//   MigResumeConfirm(source) in u32 n, target's RESUME, RESUME_STATE; moves to the new keys and
//                   releases claimed pages the target lacks; out u64 pages to send again
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace constmig::trusted::mig {

// Dispatches a migration ECALL (id in [kEcallMigFirst, kEcallMigLast]). Reads `in` (host
// memory) once into the instance arena; writes at most out_cap bytes to `out`.
int32_t dispatch(uint32_t slot, uint32_t id, const uint8_t* in, size_t in_len, uint8_t* out,
                 size_t out_cap, size_t* out_len);

// App ECALL bracket. app_enter() returns false (with *why, a static string) when app ECALLs may
// not run now; otherwise the caller must call app_exit() when the ECALL returns. Neither
// allocates nor touches the migrated heap (a live target's heap may not have arrived). A freeze
// fails while any app ECALL is inside, so a snapshot is never torn even if the host does not
// quiesce.
bool app_enter(const char** why);
void app_exit();

}  // namespace constmig::trusted::mig
