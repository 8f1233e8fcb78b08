// The Migration Manager (UNTRUSTED): drives a migration between a source and a target
// process over one TCP connection. It moves opaque sealed records between the two enclaves
// (src/trusted/migration/enclave_migration.h does everything secret), runs the stop phase
// (hold app ECALLs, freeze, host-state hooks), pipelines the heap stream through worker
// threads with bounded buffers, and collects the stats (QMP query-migrate names, DESIGN §3).
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "common/wire_format.h"
#include "host/host_app.h"
#include "platform/host_enclave.h"

namespace constmig::host {

// Test-only faults injected into the SOURCE's outgoing stream (CRIU zdtm style). Each one must
// make the target refuse the state and leave the source able to resume.
enum class Fault {
  kNone,
  kCorruptCiphertext,  // flip a byte of a page's ciphertext
  kCorruptTag,         // flip a byte of a page's tag
  kDuplicatePage,      // send one PAGES batch twice (new frame, same records)
  kReplayFrame,        // resend an earlier frame's exact bytes (old sequence number)
  kReorderFrames,      // send two PAGES frames in swapped order
  kDropPage,           // never send one PAGES batch
  kTruncate,           // stop the stream in the middle of a frame
  kForgeManifest,      // flip a byte of the sealed manifest
  kOversizeLength,     // a frame header announcing a 1 GiB payload
  kEarlierMigration,   // inject a PAGES frame recorded from an earlier migration
  kCorruptUrgent,      // live mode: flip a ciphertext byte of the first answer to a page request
  kOldEpochReplay,     // live mode with --cut-at: after the recovery, resend a PAGES payload
                       // sealed under the previous epoch's keys
};
Result<Fault> parse_fault(const std::string& name);

// Default pages per PAGES frame: all stream buffers of both sides within 1% of the heap.
uint32_t auto_batch_pages(uint64_t heap_bytes, int workers);
std::string fault_names();

// How a live (ConstMig) target keeps the app off heap pages that have not arrived yet.
enum class Tracker {
  kFault,   // mprotect + SIGSEGV on the secret heap (default; SGX-like: EAUG'd memory stays secret)
  kUffd,    // userfaultfd + UFFDIO_COPY; the target heap becomes ordinary anonymous memory
  kAccess,  // Access Tracker: the enclave's compiled-in checks and its own restored-bitmap guard
            // the heap (image built with TRACKER access); no page faults, no host protection
};
Result<Tracker> parse_tracker(const std::string& name);
const char* tracker_name(Tracker t);

struct MigrateOptions {
  wire::Mode mode = wire::Mode::kConstMig;
  // Live mode (the source chooses; the target follows what the source's prepare message says).
  Tracker tracker = Tracker::kFault;
  uint32_t granule_pages = 16;  // Fault Tracker granule: pages fetched together on a fault
  int workers = 2;              // encrypt (source) / decrypt (target) workers
  uint32_t batch_pages = 0;     // pages per PAGES frame (<= 1024); 0 = auto_batch_pages
  std::chrono::milliseconds quiesce_timeout{10000};
  std::chrono::milliseconds io_timeout{60000};
  std::string capture_path;  // record the stream this side SENDS (constmig inspect); live mode
                             // records the urgent connection's frames in <capture_path>.urgent
  // Live mode's urgent connection (page requests and their answers, so that they never queue
  // behind the heap stream in either side's socket buffers; QEMU's postcopy-preempt channel).
  // Source: the address it connects the urgent connection to (the target's listen address).
  // Target: the listening socket it accepts that connection on (-1: one connection for all).
  std::string urgent_to;
  int listen_fd = -1;
  // Live mode: after a lost connection, how long the source keeps reconnecting (to urgent_to)
  // and the target waits for it on listen_fd before giving up (0 = no recovery).
  std::chrono::milliseconds resume_timeout{30000};
  int cut_at_percent = 0;  // source, TESTING ONLY: drop both connections at this % of the stream
  Fault fault = Fault::kNone;  // source only, tests only
  std::string replay_capture;  // kEarlierMigration: a capture of an earlier source stream
};

// Progress callback: {"phase": "...", "pages_total": N, "pages_done": M, ...}
using ProgressFn = std::function<void(const nlohmann::json&)>;

struct MigrationOutcome {
  enum Kind { kCommitted, kAborted, kFailed } kind = kFailed;
  std::string error;     // for kAborted/kFailed: what went wrong
  nlohmann::json stats;  // QMP-style names (DESIGN §3)
};

// Source: `fd` is connected to the target. On return the enclave is DEAD (committed), running
// again (aborted: app ECALLs released), or still FROZEN (failed without an abort token: the
// operator decides; see `constmig resume --force`).
MigrationOutcome run_source(platform::Enclave& enclave, const platform::Platform& platform,
                            HostApp& app, int fd, const MigrateOptions& opts,
                            const ProgressFn& progress);

// Target: `fd` is an accepted connection. The caller holds app ECALLs and may resume() the
// host half before calling (its ECALLs wait at the gate). On success this releases the gate
// and probes the app (first ECALL served: downtime ends).
MigrationOutcome run_target(platform::Enclave& enclave, const platform::Platform& platform,
                            HostApp& app, int fd, const MigrateOptions& opts,
                            const ProgressFn& progress);

}  // namespace constmig::host
