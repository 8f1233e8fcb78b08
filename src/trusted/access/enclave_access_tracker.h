// Access Tracker runtime (TRUSTED): the in-enclave half of the compiler-based tracker.
//
// Enclave code compiled with the constmig-access-tracker pass (src/compiler/access_tracker,
// docs/access_tracker.md) checks, before every access that may touch the heap:
//     if (__constmig_at_active) { in heap range? restored bit set? else __constmig_at_fetch(); }
// The symbols the pass references are defined here, per instance (never migrated: a target's
// flag must not be overwritten by the source's globals). They change only so:
//   * active goes 0 -> 1 when a live-migration target enters LIVE with the access tracker, and
//     1 -> 0 when the manifest proved every page arrived (MigFinish). While app code runs it only
//     goes 1 -> 0, so a check the compiler hoisted or merged stays valid, and a loop the
//     compiler versioned on the flag may run its unchecked copy to the end once it entered it
//     with the flag clear (MigGoLive raises it only with no app ECALL in flight);
//   * a bit of the restored bitmap goes 0 -> 1 after the page's bytes were decrypted, verified
//     and written (release order), never back while the app runs.
// The bitmap is the enclave's own: the host cannot set a bit. A host that does not deliver a
// page only stalls the thread that needs it (availability is never in the enclave's hands).
#pragma once

#include <cstdint>

namespace constmig::trusted::at {

// True when this image was compiled with the pass (the build links a marker object).
bool instrumented();

// Starts guarding [heap_base, heap_base + bytes) with `bitmap` (bit i = page i restored; the
// words live in the instance arena and outlive the guard).
void activate(uint64_t heap_base, uint64_t bytes, const uint64_t* bitmap);
// Every page is in (or no migration): checks take the one-branch fast path again.
void deactivate();
bool active();

// Pages fetched through the slow path since the image loaded (this instance).
uint64_t fetch_calls();

}  // namespace constmig::trusted::at
