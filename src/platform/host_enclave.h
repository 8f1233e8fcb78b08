// The platform interface: create enclaves, run ECALLs, answer OCALLs, issue quotes.
//
// UNTRUSTED code. Today there is one backend, `emulated`: an EMULATED SGX platform with no
// hardware protection (see docs/security.md). It reproduces SGX's programming model and the
// parts of its protection that Linux can give us:
//   * ELRANGE: the image's fixed base; boot page and heap at fixed offsets from it, so the same
//     layout exists on every host (migrated pointers stay valid);
//   * enclave data, bss and heap live in memfd_secret memory: other processes, ptrace and
//     /proc/PID/mem cannot read it (the kernel and this process still can);
//   * measurement (MRENCLAVE analogue) over exactly the bytes handed to the loader (the image
//     is copied into a sealed memfd, measured, and that memfd is what dlopen maps);
//   * quotes signed by a per-platform Ed25519 key, verified against a trust store;
//   * a bounded set of ECALL thread slots (TCS analogue).
// A hardware SGX backend would implement Platform/Enclave with the SGX driver and DCAP;
// nothing in ConstMigLib (src/trusted) depends on which backend runs it.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.h"
#include "common/enclave_abi.h"
#include "common/result.h"
#include "platform/host_measure.h"
#include "platform/host_quote.h"

namespace constmig::platform {

inline constexpr std::string_view kEmulatedBanner =
    "EMULATED SGX platform: no hardware enclave protection (see docs/security.md)";

// Host-side handler for an app OCALL. Return kEcallOk and fill `out` (at most out_cap bytes).
struct OcallIo {
  ByteView in;
  std::vector<uint8_t>& out;
  size_t out_cap;
};
using OcallHandler = int32_t (*)(void* app_ctx, OcallIo&);
struct OcallTable {
  const char* const* names = nullptr;
  const OcallHandler* handlers = nullptr;
  uint32_t count = 0;
  void* app_ctx = nullptr;
};

struct EnclaveConfig {
  std::string image_path;
  uint64_t heap_limit = 1ull << 30;  // --max-memory: bytes the enclave heap may grow to
  uint32_t thread_slots = 8;         // concurrent ECALLs (TCS analogue)
  // From the host EDL glue: the ECALL names the host was compiled against, in id order.
  std::vector<std::string> expected_ecalls;
  OcallTable ocalls;                               // app OCALLs
  std::function<void(std::string_view)> log_sink;  // enclave log lines (default: stderr)
};

struct HeapStats {
  uint64_t top = 0, limit = 0, in_use = 0, live_allocations = 0, total_allocations = 0;
};

// Address ranges of one enclave, for migration and tests.
struct EnclaveRanges {
  uintptr_t image_base = 0;
  uintptr_t globals_begin = 0, globals_end = 0;  // writable, non-RELRO data of the image
  uintptr_t heap_base = 0;
  uint64_t heap_reserve = 0;
  // The restore window (abi::kRestoreOffset): the heap's backing file mapped a second time,
  // read-write. heap_fd is that file (memfd_secret), owned by the enclave. heap_anonymous: the
  // heap view was switched to anonymous memory (use_anonymous_heap); the window keeps the file.
  uintptr_t restore_base = 0;
  int heap_fd = -1;
  bool heap_anonymous = false;
};

class Enclave {
 public:
  virtual ~Enclave() = default;
  // Run ECALL `id`. Output goes to `out`; returns its length. If `out` is too small the output
  // is kept in the enclave and the error says so (use call() to grow automatically).
  virtual Result<size_t> ecall(uint32_t id, ByteView in, MutableByteView out) = 0;
  // Run ECALL `id`, growing the output buffer as needed (never re-runs the ECALL).
  virtual Result<std::vector<uint8_t>> call(uint32_t id, ByteView in,
                                            size_t initial_out = 64 << 10) = 0;
  virtual const Measurement& measurement() const = 0;
  virtual const EnclaveRanges& ranges() const = 0;
  virtual std::string app_name() const = 0;
  virtual Result<HeapStats> heap_stats() = 0;
  // EREPORT + quoting enclave analogue: a quote over this enclave's measurement.
  virtual Result<Quote> quote(std::span<const uint8_t, 64> report_data) = 0;

  // ECALL gate for migration. hold_app_ecalls(): new app ECALLs wait at entry; returns once no
  // app ECALL is in flight, or kTimeout (ECALLs stay held) naming how many still run.
  // Runtime ECALLs (id >= abi::kFirstRuntimeEcall) are never held.
  virtual Status hold_app_ecalls(std::chrono::milliseconds timeout) = 0;
  virtual void release_app_ecalls() = 0;
  virtual bool app_ecalls_held() const = 0;
  // CLOCK_REALTIME ns when the current/last hold began, and when the first app ECALL completed
  // after the last release (0 = none yet).
  virtual uint64_t hold_started_ns() const = 0;
  virtual uint64_t first_served_after_release_ns() const = 0;

  // userfaultfd tracking needs private anonymous memory, which memfd_secret is not: replaces the
  // heap view [heap_base, +heap_reserve) by empty anonymous memory (NOT secret: other processes
  // with ptrace rights can read it). The restore window keeps the secret file. Only for a target
  // before it imports (the heap contents are dropped); app ECALLs must be held. Irreversible.
  virtual Status use_anonymous_heap() = 0;

  // Access Tracker (live-migration target): serves the enclave's "fetch heap pages [first,
  // first + count)" OCALL. The fetcher blocks until it believes the pages were installed and
  // returns an EcallStatus; without one (null) the OCALL is refused and the enclave thread that
  // needed the page stops the process (it must not compute on pages that will not come).
  using PageFetcher = std::function<int32_t(uint64_t first_page, uint32_t count)>;
  virtual void set_page_fetcher(PageFetcher fetcher) = 0;
};

// CLOCK_REALTIME in ns (what migration timestamps use: comparable across processes).
uint64_t realtime_ns();

struct PlatformOptions {
  // Per-platform signing key (created if missing). Empty: an ephemeral key for this process.
  std::string key_path;
  // Trusted platform public keys (a directory of *.pem or one PEM file). Empty: trust only
  // this platform's own key.
  std::string trust_store_path;
};

class Platform {
 public:
  virtual ~Platform() = default;
  static Result<std::unique_ptr<Platform>> create_emulated(const PlatformOptions& opts);
  virtual std::string_view backend() const = 0;  // "emulated"
  virtual Result<std::unique_ptr<Enclave>> create_enclave(const EnclaveConfig& cfg) = 0;
  virtual const TrustStore& trust_store() const = 0;
  virtual const PlatformKey& key() const = 0;
};

// Read an image and run the loader's static checks (format, base, imports, entry points)
// without loading it. Returns its measurement for `thread_slots`.
Result<Measurement> check_image(const std::string& image_path, uint32_t thread_slots);

// Default paths: $CONSTMIG_HOME or ~/.constmig (platform.key, trust/).
std::string default_state_dir();

}  // namespace constmig::platform
