// Fault Tracker (host half): lazy restore of a memory range, page granule by page granule.
//
// UNTRUSTED code, EMULATED SGX platform. In ConstMig's live mode the target resumes app ECALLs
// before the heap has arrived. Every heap granule not yet restored is inaccessible; the first
// touch faults; the faulting thread waits while a tracker thread fetches that granule with
// priority (FetchFn: the Migration Manager's urgent channel + decryption/verification inside
// the enclave), installs it and makes it accessible; other threads keep running. Background
// restore (the heap stream) installs granules through install()/install_with(). Each granule is
// installed exactly once: whichever path claims it first wins, the other is refused (kState).
//
// Two mechanisms (TrackerKind):
//   kMprotect  the SGX-like one. The app view [base, base+len) is a MAP_SHARED mapping of a
//              memfd_secret file (the caller's). arm() makes it PROT_NONE. The tracker maps the
//              same file a second time, read-write (the restorer's view): data is written there
//              while the app view of that granule is still PROT_NONE, then the granule is
//              opened with mprotect. A SIGSEGV handler catches app touches (see "Signals").
//   kUffd      userfaultfd (MISSING mode) on PRIVATE ANONYMOUS memory (memfd_secret does not
//              support it, DESIGN §6): faults are read from the uffd by tracker threads and
//              resolved with UFFDIO_COPY of the whole granule. For comparison only: the memory
//              is not secret, and UFFDIO_COPY allocates fresh pages, while the mprotect tracker
//              writes into pages populated in the prepare phase (bench_fault_tracker compares
//              them). arm() DISCARDS the range's contents (MADV_DONTNEED).
//
// vm.max_map_count (65530 on the dev VM): every opened island splits the app view's mapping
// (kMprotect only). The tracker keeps the number of separately opened runs bounded by
// `max_open_runs`, so the app view has at most 2 * max_open_runs + 1 mappings (faults may push it
// over for a moment, until idle tracker threads have filled gaps):
//   * the kernel merges adjacent VMAs with equal flags, and the tracker only ever opens whole
//     maximal runs of restored granules, so neighbours coalesce by themselves;
//   * a background-installed granule that would start a NEW island while the budget is spent is
//     "staged": its data is written (via the restorer's view) but its app view stays PROT_NONE
//     until it joins an open run, or until a thread touches it (then it opens without a fetch);
//   * faults always open at once (latency first). If they push the count over the budget, idle
//     tracker threads fill the smallest gap between open runs (FetchFn with
//     FetchReason::kCoalesce) until the count is back within budget.
// Installing every granule (in any order) ends with the whole range as ONE mapping.
//
// Signals (kMprotect). One kMprotect tracker may exist per process at a time (create() of a
// second one fails with kState); kUffd trackers have no process-wide state. The SIGSEGV handler
// (SA_SIGINFO | SA_ONSTACK) is installed on the first create() and chains every fault it does
// not own (outside the range, or not on a tracked granule) to the handler that was installed
// before it (SIG_DFL: the default action runs). Inside the handler only async-signal-safe
// operations are used: atomics on a per-granule state word, write(2) of the granule index to a
// pipe, a bounded spin (pause + clock_gettime, spin_ns) and then futex(2) wait on the state
// word, sched_yield, initial-exec TLS reads, and, on a tracker thread touching tracked memory (a
// deadlock), write(2)+abort(). No locks, no allocation. errno is preserved. A fault on a granule
// that is already open is retried (the access raced with its opening); 64 such faults in a row
// at one address mean someone else protected the page, and go to the previous handler.
//
// Failure policy: the app can never continue on a granule that could not be fetched (its memory
// would be garbage). If FetchFn fails for a faulting thread (or for coalescing), or opening a
// granule fails, the tracker calls `on_fatal` on the tracker thread (faulting threads stay
// blocked) and then aborts the process with a message naming the granule and the error. The
// Migration Manager uses on_fatal to send the source its abort token before the process dies.
//
// Limits (see also docs/security.md for what the host learns):
//   * FetchFn and install fillers run on non-app threads and must not touch the app view, nor
//     take any lock an app thread may hold while touching tracked memory (deadlock); a tracker
//     thread that faults on tracked memory aborts with a message instead of hanging.
//   * kMprotect: a system call whose kernel side touches a PROT_NONE granule (e.g. read(2) into
//     the heap) fails with EFAULT instead of faulting; enclave code reaches the host only
//     through ECALL/OCALL copies done in user space, which fault normally. A thread that blocks
//     SIGSEGV and faults on a tracked granule is killed by the kernel.
//   * kUffd: if the kernel only grants user-mode-only userfaultfd (unprivileged), kernel-side
//     touches of missing pages fail with EFAULT as well. Fault latencies for kUffd are measured
//     on the tracker thread (from reading the fault to UFFDIO_COPY done): they exclude the
//     kernel's delivery, unlike kMprotect's, which the faulting thread measures itself.
//   * Spinning (spin_ns) burns up to that much CPU per fault and per idle period of one tracker
//     thread; set 0 where cores are scarcer than latency matters.
//   * The latency sample buffer keeps the first `latency_capacity` samples (then counts drops).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "common/bytes.h"
#include "common/result.h"

namespace constmig::platform {

enum class TrackerKind : uint8_t {
  kMprotect,  // memfd_secret app view, PROT_NONE + SIGSEGV, restorer's read-write view
  kUffd,      // anonymous private memory, userfaultfd MISSING + UFFDIO_COPY
};
const char* tracker_kind_name(TrackerKind k);  // "mprotect" / "uffd"

// Why the tracker asks for a granule: a thread is blocked on it (urgent), or the tracker fills a
// gap between open runs to keep the mapping count within budget (not urgent, kMprotect only).
enum class FetchReason : uint8_t { kFault, kCoalesce };

// Produces the plaintext of one granule into `dst` (exactly the granule's bytes; the last
// granule of a range may be shorter). Called on a tracker thread, never in a signal handler,
// never twice for one granule per arm(). For kMprotect, `dst` is the restorer's view of the
// granule (write in place: no extra copy); for kUffd, a staging buffer that is then
// UFFDIO_COPYed. An error is fatal (see "Failure policy").
using FetchFn = std::function<Status(uint64_t granule, FetchReason why, MutableByteView dst)>;
// Fills one granule in place (install_with): same contract as FetchFn.
using FillFn = std::function<Status(MutableByteView dst)>;

struct TrackerOptions {
  TrackerKind kind = TrackerKind::kMprotect;
  uintptr_t base = 0;         // page-aligned start of the app view
  size_t len = 0;             // multiple of the page size
  size_t granule = 64 << 10;  // power of two, 4 KiB .. 16 MiB
  // kMprotect: the memfd_secret (or any shared file) mapped MAP_SHARED at [base, base+len) from
  // `memfd_offset`. create() checks this against /proc/self/maps. Not owned (not closed).
  int memfd = -1;
  off_t memfd_offset = 0;
  // kMprotect: an existing read-write MAP_SHARED view of the same file from memfd_offset, len
  // bytes, to use as the restorer's view instead of mapping one (e.g. the enclave's restore
  // window, which trusted code decrypts into). Not owned. nullptr: the tracker maps its own.
  void* restorer_view = nullptr;
  unsigned fetch_threads = 2;  // tracker threads serving faults (1..64)
  // Waking a sleeping thread costs more than a whole fault on a VM, so: one idle tracker thread
  // polls for the next request this long before sleeping (both kinds), and a faulting thread
  // spins this long on its granule before sleeping on it (kMprotect; a uffd-faulting thread
  // sleeps in the kernel). 0: always sleep at once.
  uint32_t spin_ns = 20000;
  size_t max_open_runs = 4096;        // kMprotect mapping budget (see above); SIZE_MAX: no bound
  size_t latency_capacity = 1 << 18;  // fault latency samples kept
  // Called on a tracker thread before the process aborts (see "Failure policy"). Default: none
  // (the message alone goes to stderr).
  std::function<void(const Error&)> on_fatal;
};

class FaultTracker {
 public:
  // Counters (names follow QEMU's query-migrate where one exists).
  struct Stats {
    uint64_t faults = 0;                  // faulting-thread events on tracked granules
    uint64_t fetched_on_demand = 0;       // FetchFn calls for faults (postcopy-requests)
    uint64_t fetched_for_coalescing = 0;  // FetchFn calls to fill gaps (kMprotect)
    uint64_t opened_staged = 0;           // faults served by opening a staged granule (no fetch)
    uint64_t installed_background = 0;    // successful install()/install_with()
    uint64_t install_refused = 0;         // install of a granule another path claimed first
    uint64_t restored = 0;                // granules whose data is in (any path)
    uint64_t blocktime_ns = 0;            // sum over faults of the time waited (postcopy-blocktime)
    uint64_t open_runs = 0;               // kMprotect: separately opened runs now
    uint64_t max_open_runs_seen = 0;      // kMprotect: peak of open_runs
    uint64_t mprotect_calls = 0;
    uint64_t uffd_eexist_pages = 0;  // kUffd: pages found already present by UFFDIO_COPY
    uint64_t latency_samples_dropped = 0;
  };

  // Validates the options, maps the restorer's view (kMprotect), opens the userfaultfd (kUffd),
  // starts the tracker threads. The range starts disarmed (fully accessible).
  static Result<std::unique_ptr<FaultTracker>> create(const TrackerOptions& opts, FetchFn fetch);
  // Whether kUffd can be used in this process; the error says why not and what to change.
  static Status uffd_supported();

  // Disarms (everything accessible) if armed, stops the threads, unmaps the restorer's view.
  // App threads must no longer depend on fetches when this runs.
  ~FaultTracker();
  FaultTracker(const FaultTracker&) = delete;
  FaultTracker& operator=(const FaultTracker&) = delete;

  // Every granule becomes not-restored and inaccessible. kState if already armed.
  Status arm();
  // Everything accessible (migration complete). Waits for in-flight installs; granules never
  // installed show the backing's current contents (kUffd: zeros). Idempotent.
  Status disarm();
  bool armed() const;

  // Background restore: write the granule's bytes and make it accessible (or stage it, see the
  // mapping budget). `bytes` must be exactly the granule's size. kState if the granule was
  // already restored or is being restored by another path (on-demand fetch or another
  // install): that data wins and nothing is written. kInvalidArgument: bad index or size.
  Status install(uint64_t granule, ByteView bytes);
  // Same, but `fill` writes the granule in place (kMprotect: straight into the restorer's view).
  // If `fill` fails, the granule returns to not-restored (a waiting thread gets it fetched).
  Status install_with(uint64_t granule, const FillFn& fill);

  // kMprotect: enter the restorer's view of granules [first, first + count) into the page tables
  // (one read per page), so that installs and fetches do not take a minor fault per page
  // (~1.3 µs/page here: 16 per 64 KiB granule; memfd_secret ignores MAP_POPULATE and refuses
  // MADV_POPULATE_WRITE). Pages the memfd does not have yet get allocated (the EAUG analogue,
  // ~15 µs/page). Call it in the prepare phase, off the downtime path; several threads may run it
  // on disjoint ranges. Harmless at any time (it only reads). No-op for kUffd.
  Status prefault_restorer_view(uint64_t first_granule, uint64_t count);

  bool restored(uint64_t granule) const;  // its data is in (it may still be staged)
  uint64_t granule_count() const;
  size_t granule_size() const;
  size_t granule_bytes(uint64_t granule) const;  // granule_size(), or less for the last one
  uint64_t granule_of(uintptr_t addr) const;     // addr must lie in the range
  TrackerKind kind() const;

  Stats stats() const;
  std::vector<uint64_t> fault_latencies_ns() const;  // one per fault, in arrival order
  // Mappings (VMAs) of /proc/self/maps that intersect [base, base+len).
  size_t mapping_count() const;

  struct Impl;

 private:
  explicit FaultTracker(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace constmig::platform
