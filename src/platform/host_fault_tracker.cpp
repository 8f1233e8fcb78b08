// Fault Tracker (host half). UNTRUSTED code, EMULATED SGX platform. Design: host_fault_tracker.h.
//
// Per-granule state word (std::atomic<uint32_t>, also the futex word faulting threads sleep on):
//
//   value (bits 0-2)  kMissing   no data; app view inaccessible
//                     kClaimed   one path (on-demand fetch, coalescing fetch, or install) owns it
//                                and is writing its data; nobody else may
//                     kInstalled data in, app view still PROT_NONE ("staged", kMprotect only)
//                     kOpen      data in and accessible (also: the whole range while disarmed)
//   kReq (bit 3)      a fault request for this granule is queued (posted once per granule)
//   kWaiter (bit 4)   a thread sleeps on the word: whoever sets kOpen must futex-wake it
//
// Transitions: Missing -> Claimed by CAS (exactly one winner: that is the "installed at most
// once" rule); Claimed -> Missing if the winner's fill fails (a waiter is re-posted); Claimed ->
// Installed/Open and Installed -> Open only after the data is written and (for Open) mprotect or
// UFFDIO_COPY has made it accessible, so a thread that sees kOpen and re-executes its access
// cannot fault on that granule again (kMprotect: these transitions happen under map_mu).
// A faulting thread first spins (spin_ns) with only kReq set, then sets kWaiter and sleeps.
//
// Locks (never taken in the signal handler): life_mu is shared by installs and fetches and
// exclusive for arm()/disarm() (so disarm waits for in-flight writes through the restorer's
// view); map_mu (inside life_mu) guards the open/staged run sets of kMprotect.
#include "platform/host_fault_tracker.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <fstream>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <sstream>
#include <string>
#include <thread>

namespace constmig::platform {
namespace {

constexpr uint32_t kMissing = 0;
constexpr uint32_t kClaimed = 1;
constexpr uint32_t kInstalled = 2;
constexpr uint32_t kOpen = 3;
constexpr uint32_t kValMask = 7;
constexpr uint32_t kReq = 8;
constexpr uint32_t kWaiter = 16;
constexpr uint64_t kStopRequest = UINT64_MAX;
constexpr unsigned kForeignRetries = 64;  // see on_segv

static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t) &&
                  std::atomic<uint32_t>::is_always_lock_free,
              "the futex word must be a plain lock-free 32-bit atomic");
static_assert(std::atomic<uint64_t>::is_always_lock_free, "stats are updated in a signal handler");

size_t page_size() {
  static const size_t p = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return p;
}

// Async-signal-safe: a raw syscall.
long futex_op(std::atomic<uint32_t>* word, int op, uint32_t val) {
  return syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), op, val, nullptr, nullptr, 0);
}

// Async-signal-safe (clock_gettime is on POSIX's list).
uint64_t mono_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Async-signal-safe message to stderr.
void signal_safe_write(const char* msg) {
  size_t n = std::strlen(msg);
  while (n > 0) {
    ssize_t w = ::write(STDERR_FILENO, msg, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    msg += w;
    n -= static_cast<size_t>(w);
  }
}

std::string hex(uint64_t v) {
  char b[32];
  std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
  return b;
}

std::string errno_str(int e) {
  return std::string(std::strerror(e)) + " (errno " + std::to_string(e) + ")";
}

bool is_pow2(size_t v) {
  return v != 0 && (v & (v - 1)) == 0;
}

struct MapsLine {
  uintptr_t start = 0, end = 0;
  std::string perms;
  uint64_t offset = 0;
  uint64_t inode = 0;
  std::string path;
};

std::vector<MapsLine> read_maps(uintptr_t base, size_t len) {
  std::vector<MapsLine> out;
  std::ifstream f("/proc/self/maps");
  std::string line;
  while (std::getline(f, line)) {
    MapsLine m;
    std::istringstream is(line);
    std::string range, dev;
    is >> range >> m.perms >> std::hex >> m.offset >> dev >> std::dec >> m.inode;
    std::getline(is, m.path);
    size_t dash = range.find('-');
    if (dash == std::string::npos) continue;
    m.start = std::stoull(range.substr(0, dash), nullptr, 16);
    m.end = std::stoull(range.substr(dash + 1), nullptr, 16);
    if (m.end > base && m.start < base + len) out.push_back(std::move(m));
  }
  return out;
}

// Disjoint, non-adjacent half-open granule runs [start, end), kept as start -> end.
class RunSet {
 public:
  using Map = std::map<uint64_t, uint64_t>;
  Map::iterator find(uint64_t g) {
    auto it = m_.upper_bound(g);
    if (it == m_.begin()) return m_.end();
    --it;
    return it->second > g ? it : m_.end();
  }
  bool contains(uint64_t g) { return find(g) != m_.end(); }
  Map::iterator end() { return m_.end(); }
  void erase(Map::iterator it) { m_.erase(it); }
  // [a, b) must not overlap a run; adjacent runs are merged.
  void insert(uint64_t a, uint64_t b) {
    auto next = m_.lower_bound(a);
    if (next != m_.end() && next->first == b) {
      b = next->second;
      next = m_.erase(next);
    }
    if (next != m_.begin()) {
      auto prev = std::prev(next);
      if (prev->second == a) {
        a = prev->first;
        m_.erase(prev);
      }
    }
    m_[a] = b;
  }
  size_t size() const { return m_.size(); }
  void clear() { m_.clear(); }
  const Map& runs() const { return m_; }

 private:
  Map m_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Process-wide SIGSEGV state (kMprotect). One active tracker; the handler stays installed while
// it exists and chains everything else to the previous handler.

namespace {
std::atomic<FaultTracker::Impl*> g_active{nullptr};
std::atomic<int> g_in_handler{0};
struct sigaction g_prev_segv;  // written under g_sig_mu before our handler is installed
std::mutex g_sig_mu;
bool g_handler_installed = false;

// Thread roles, read in the signal handler: initial-exec TLS needs no allocation on access.
struct ThreadRole {
  const void* tracker;   // the tracker this thread works for (tracker thread or installer)
  uint64_t installing;   // granule this thread is filling (UINT64_MAX: none)
  uintptr_t retry_addr;  // see on_segv: a fault on an already-open granule
  unsigned retry_count;
};
thread_local ThreadRole t_role
    __attribute__((tls_model("initial-exec"))) = {nullptr, UINT64_MAX, 0, 0};

void segv_handler(int sig, siginfo_t* si, void* uc);
}  // namespace

struct FaultTracker::Impl {
  TrackerOptions opt;
  FetchFn fetch;
  uintptr_t base = 0;
  size_t len = 0;
  size_t gsize = 0;
  uint64_t n = 0;
  std::unique_ptr<std::atomic<uint32_t>[]> st;

  uint8_t* rw = nullptr;           // kMprotect: the restorer's read-write view
  bool rw_owned = true;            // mapped by us (not TrackerOptions::restorer_view)
  int pipe_rd = -1, pipe_wr = -1;  // kMprotect: fault requests (granule index, 8 bytes)
  int uffd = -1, evfd = -1;        // kUffd
  bool uffd_user_mode_only = false;
  bool signal_registered = false;

  std::atomic<bool> armed{false};
  std::atomic<bool> stopping{false};
  std::atomic<uint64_t> posted{0};  // kMprotect: requests written to the pipe (spinning worker)
  std::atomic<int> spinner{0};      // at most one tracker thread spins for requests
  std::shared_mutex life_mu;
  std::mutex map_mu;
  RunSet open_runs;  // kMprotect, under map_mu
  RunSet staged;     // kMprotect, under map_mu: installed but still PROT_NONE
  std::mutex retry_mu;
  std::deque<uint64_t> retry;  // kUffd: granules to re-serve (an install failed under a waiter)
  std::vector<std::thread> workers;

  // Stats (lock-free: the handler updates some of them).
  std::atomic<uint64_t> faults{0}, fetched_on_demand{0}, fetched_for_coalescing{0},
      opened_staged{0}, installed_background{0}, install_refused{0}, restored{0}, blocktime_ns{0},
      open_run_count{0}, max_open_runs_seen{0}, mprotect_calls{0}, uffd_eexist_pages{0},
      lat_dropped{0};
  std::unique_ptr<std::atomic<uint64_t>[]> lat;
  size_t lat_cap = 0;
  std::atomic<uint64_t> lat_n{0};

  ~Impl() {
    if (rw != nullptr && rw_owned) munmap(rw, len);
    for (int fd : {pipe_rd, pipe_wr, uffd, evfd}) {
      if (fd >= 0) ::close(fd);
    }
  }

  size_t granule_bytes(uint64_t g) const { return std::min(gsize, len - g * gsize); }
  uintptr_t granule_addr(uint64_t g) const { return base + g * gsize; }
  std::string granule_desc(uint64_t g) const {
    return "granule " + std::to_string(g) + " [" + hex(granule_addr(g)) + ", +" +
           std::to_string(granule_bytes(g)) + ")";
  }

  void record_latency(uint64_t ns) {  // async-signal-safe
    blocktime_ns.fetch_add(ns, std::memory_order_relaxed);
    uint64_t i = lat_n.fetch_add(1, std::memory_order_relaxed);
    if (i < lat_cap) {
      lat[i].store(ns, std::memory_order_relaxed);
    } else {
      lat_dropped.fetch_add(1, std::memory_order_relaxed);
    }
  }

  [[noreturn]] void fatal(const Error& e) {
    std::string msg = std::string("constmig fault tracker (") + tracker_kind_name(opt.kind) +
                      "): FATAL: " + e.message +
                      ". The app cannot continue without this memory and the tracker never lets "
                      "it run on missing or unverified data: aborting.\n";
    signal_safe_write(msg.c_str());
    if (opt.on_fatal) {
      try {
        opt.on_fatal(e);
      } catch (...) {
      }
    }
    std::abort();
  }

  Status call_fill(const FillFn& fill, MutableByteView dst) {
    try {
      return fill(dst);
    } catch (const std::exception& ex) {
      return make_error(Errc::kInternal, std::string("exception: ") + ex.what());
    } catch (...) {
      return make_error(Errc::kInternal, "unknown exception");
    }
  }

  Status call_fetch(uint64_t g, FetchReason why, MutableByteView dst) {
    return call_fill([&](MutableByteView d) { return fetch(g, why, d); }, dst);
  }

  // Post a fault request for g from a normal thread (the handler has its own copy of this).
  void post_request(uint64_t g) {
    if (opt.kind == TrackerKind::kMprotect) {
      ssize_t r;
      do {
        r = ::write(pipe_wr, &g, sizeof g);
      } while (r < 0 && errno == EINTR);
      if (r != static_cast<ssize_t>(sizeof g)) {
        fatal(make_error(Errc::kIo, "cannot queue a fault request: " + errno_str(errno)));
      }
      posted.fetch_add(1, std::memory_order_release);
    } else {
      {
        std::lock_guard lk(retry_mu);
        retry.push_back(g);
      }
      uint64_t one = 1;
      if (::write(evfd, &one, sizeof one) != static_cast<ssize_t>(sizeof one)) {
        fatal(make_error(Errc::kIo, "cannot wake a tracker thread: " + errno_str(errno)));
      }
    }
  }

  // Missing|flags -> Claimed|flags. False if the granule is not missing.
  bool claim(uint64_t g) {
    uint32_t s = st[g].load(std::memory_order_acquire);
    while ((s & kValMask) == kMissing) {
      if (st[g].compare_exchange_weak(s, (s & ~kValMask) | kClaimed, std::memory_order_acq_rel)) {
        return true;
      }
    }
    return false;
  }

  // The claimant of g failed to fill it: back to missing. A thread that started waiting
  // meanwhile gets a fresh request (the on-demand path then fetches it).
  void unclaim(uint64_t g) {
    uint32_t s = st[g].load(std::memory_order_acquire);
    for (;;) {
      bool waiter = (s & kWaiter) != 0;
      uint32_t ns = (s & ~kValMask) | kMissing | (waiter ? kReq : 0);
      if (st[g].compare_exchange_weak(s, ns, std::memory_order_acq_rel)) {
        if (waiter && !(s & kReq)) post_request(g);
        return;
      }
    }
  }

  // Set g open (after it was made accessible) and wake its sleepers.
  void set_open(uint64_t g) {
    uint32_t old = st[g].exchange(kOpen, std::memory_order_acq_rel);
    if (old & kWaiter) futex_op(&st[g], FUTEX_WAKE_PRIVATE, INT_MAX);
  }

  // ---- kMprotect -----------------------------------------------------------------------------

  // Under map_mu: make the maximal run of restored granules around g accessible with ONE
  // mprotect (g is claimed by the caller or staged). The kernel merges the result with open
  // neighbours, so the app view keeps one mapping per open run (plus the gaps between them).
  void open_containing(uint64_t g) {
    uint64_t a = g, b = g + 1;
    auto it = staged.find(g);
    if (it != staged.end()) {
      a = it->first;
      b = it->second;
      staged.erase(it);
    } else {
      if (g > 0) {
        auto l = staged.find(g - 1);
        if (l != staged.end()) {
          a = l->first;
          staged.erase(l);
        }
      }
      if (g + 1 < n) {
        auto r = staged.find(g + 1);
        if (r != staged.end()) {
          b = r->second;
          staged.erase(r);
        }
      }
    }
    size_t bytes = std::min<size_t>(b * gsize, len) - a * gsize;
    if (mprotect(reinterpret_cast<void*>(granule_addr(a)), bytes, PROT_READ | PROT_WRITE) != 0) {
      int e = errno;
      fatal(make_error(Errc::kResourceExhausted,
                       "mprotect(PROT_READ|PROT_WRITE) of granules [" + std::to_string(a) + ", " +
                           std::to_string(b) + ") failed: " + errno_str(e) +
                           (e == ENOMEM ? " (vm.max_map_count reached?)" : "")));
    }
    mprotect_calls.fetch_add(1, std::memory_order_relaxed);
    open_runs.insert(a, b);
    uint64_t runs = open_runs.size();
    open_run_count.store(runs, std::memory_order_relaxed);
    if (runs > max_open_runs_seen.load(std::memory_order_relaxed)) {
      max_open_runs_seen.store(runs, std::memory_order_relaxed);
    }
    for (uint64_t i = a; i < b; ++i) set_open(i);
  }

  // Under map_mu: may a background-installed granule g open now? Yes if its run of restored
  // granules touches an open run (no new mapping), or if the budget allows one more island.
  bool background_may_open(uint64_t g) {
    if (open_runs.size() < opt.max_open_runs) return true;
    uint64_t a = g, b = g + 1;
    if (g > 0) {
      auto l = staged.find(g - 1);
      a = l != staged.end() ? l->first : g;
    }
    if (g + 1 < n) {
      auto r = staged.find(g + 1);
      b = r != staged.end() ? r->second : g + 1;
    }
    return (a > 0 && open_runs.contains(a - 1)) || (b < n && open_runs.contains(b));
  }

  // The claimant of g wrote its data through the restorer's view: open it or stage it.
  void finish_mprotect(uint64_t g, bool demanded) {
    std::lock_guard lk(map_mu);
    restored.fetch_add(1, std::memory_order_relaxed);
    uint32_t s = st[g].load(std::memory_order_acquire);
    for (;;) {
      if (demanded || (s & (kReq | kWaiter)) || background_may_open(g)) {
        open_containing(g);
        return;
      }
      // Stage it. A thread that starts waiting after this CAS sees kInstalled and posts a
      // request; one that set kWaiter before it makes the CAS fail and we open instead.
      if (st[g].compare_exchange_weak(s, (s & ~kValMask) | kInstalled, std::memory_order_acq_rel)) {
        staged.insert(g, g + 1);
        return;
      }
    }
  }

  void serve_fault_mprotect(uint64_t g) {
    std::shared_lock life(life_mu);
    if (!armed.load(std::memory_order_acquire) || g >= n) return;
    uint32_t s = st[g].fetch_and(~kReq, std::memory_order_acq_rel) & ~kReq;
    for (;;) {
      uint32_t v = s & kValMask;
      if (v == kMissing) {
        if (!st[g].compare_exchange_weak(s, (s & ~kValMask) | kClaimed,
                                         std::memory_order_acq_rel)) {
          continue;
        }
        fetched_on_demand.fetch_add(1, std::memory_order_relaxed);
        Status f =
            call_fetch(g, FetchReason::kFault, MutableByteView(rw + g * gsize, granule_bytes(g)));
        if (!f.ok()) {
          fatal(make_error(f.error().code,
                           "fetching " + granule_desc(g) + " for a faulting thread failed: " +
                               errc_name(f.error().code) + ": " + f.error().message));
        }
        finish_mprotect(g, /*demanded=*/true);
        return;
      }
      if (v == kInstalled) {
        std::lock_guard lk(map_mu);
        if ((st[g].load(std::memory_order_acquire) & kValMask) == kInstalled) {
          open_containing(g);
          opened_staged.fetch_add(1, std::memory_order_relaxed);
        }
        return;
      }
      // kClaimed: the claimant opens it when done (the waiter bit is set); kOpen: done.
      return;
    }
  }

  // One step of gap filling: fetch one missing granule of the smallest gap between open runs.
  // Returns false if there was nothing to do right now.
  bool coalesce_step() {
    std::shared_lock life(life_mu);
    if (!armed.load(std::memory_order_acquire)) return false;
    uint64_t pick = UINT64_MAX;
    {
      std::lock_guard lk(map_mu);
      if (open_runs.size() <= opt.max_open_runs) return false;
      uint64_t best_a = 0, best_len = UINT64_MAX, prev_end = UINT64_MAX;
      for (const auto& [a, b] : open_runs.runs()) {
        if (prev_end != UINT64_MAX && a - prev_end < best_len) {
          best_len = a - prev_end;
          best_a = prev_end;
        }
        prev_end = b;
      }
      if (best_len == UINT64_MAX) return false;
      for (uint64_t g = best_a; g < best_a + best_len; ++g) {
        if ((st[g].load(std::memory_order_acquire) & kValMask) == kMissing) {
          pick = g;
          break;
        }
      }
    }
    if (pick == UINT64_MAX || !claim(pick)) return false;
    fetched_for_coalescing.fetch_add(1, std::memory_order_relaxed);
    Status f = call_fetch(pick, FetchReason::kCoalesce,
                          MutableByteView(rw + pick * gsize, granule_bytes(pick)));
    if (!f.ok()) {
      fatal(make_error(f.error().code, "fetching " + granule_desc(pick) +
                                           " (to coalesce mappings) failed: " +
                                           errc_name(f.error().code) + ": " + f.error().message));
    }
    finish_mprotect(pick, /*demanded=*/false);
    return true;
  }

  void mprotect_worker() {
    t_role.tracker = this;
    bool stalled = false;
    for (;;) {
      // Requests first. `seen` is read before the pipe: a request written after the read bumps
      // `posted` after its write, so the spin below cannot miss it.
      const uint64_t seen = posted.load(std::memory_order_acquire);
      uint64_t g = 0;
      ssize_t k = ::read(pipe_rd, &g, sizeof g);
      if (k == static_cast<ssize_t>(sizeof g)) {
        if (g == kStopRequest) return;
        serve_fault_mprotect(g);
        continue;
      }
      if (k >= 0 || (errno != EAGAIN && errno != EINTR)) {
        fatal(make_error(Errc::kIo, "reading the fault pipe: " +
                                        (k < 0 ? errno_str(errno) : std::string("short read"))));
      }
      const bool want = armed.load(std::memory_order_acquire) &&
                        open_run_count.load(std::memory_order_relaxed) > opt.max_open_runs;
      if (want && !stalled) {
        stalled = !coalesce_step();
        continue;
      }
      stalled = false;
      // Idle: one tracker thread spins a little before sleeping (waking a sleeping thread costs
      // more than a whole fault on a VM), the others sleep at once.
      int expected = 0;
      if (opt.spin_ns > 0 && spinner.compare_exchange_strong(expected, 1)) {
        const uint64_t deadline = mono_ns() + opt.spin_ns;
        bool got = false;
        for (unsigned i = 1;; ++i) {
          if (posted.load(std::memory_order_acquire) != seen) {
            got = true;
            break;
          }
          if (i % 64 == 0 && mono_ns() > deadline) break;
          cpu_relax();
        }
        spinner.store(0, std::memory_order_release);
        if (got) continue;
      }
      pollfd p{pipe_rd, POLLIN, 0};
      if (poll(&p, 1, want ? 1 : -1) < 0 && errno != EINTR) {
        fatal(make_error(Errc::kIo, "poll(fault pipe): " + errno_str(errno)));
      }
    }
  }

  // Called from the SIGSEGV handler. Async-signal-safe: atomics, write(2), futex(2),
  // clock_gettime, sched_yield, abort. Returns false if the fault is not ours.
  bool on_segv(uintptr_t addr) {
    if (addr < base || addr - base >= len) return false;
    const uint64_t g = (addr - base) / gsize;
    std::atomic<uint32_t>& w = st[g];
    uint32_t s = w.load(std::memory_order_acquire);
    if ((s & kValMask) == kOpen) {
      // The granule was opened between the fault and now (retry the access), or something
      // else made this page inaccessible: after kForeignRetries faults in a row on the same
      // address, hand it to the previous handler.
      if (t_role.retry_addr != addr) {
        t_role.retry_addr = addr;
        t_role.retry_count = 0;
      }
      if (++t_role.retry_count > kForeignRetries) {
        t_role.retry_addr = 0;
        return false;
      }
      sched_yield();
      return true;
    }
    t_role.retry_addr = 0;
    if (t_role.tracker == this) {
      signal_safe_write(
          t_role.installing == g
              ? "constmig fault tracker: FATAL: an install filler touched the app view of the "
                "granule it is installing (write to the view it was given): aborting\n"
              : "constmig fault tracker: FATAL: a tracker thread (FetchFn or an install filler) "
                "touched tracked memory that is not restored; this would deadlock: aborting\n");
      std::abort();
    }
    const uint64_t t0 = mono_ns();
    faults.fetch_add(1, std::memory_order_relaxed);
    // First spin briefly without the waiter bit (no futex wake is needed if the granule opens
    // within opt.spin_ns), then sleep on the futex with it.
    bool spinning = opt.spin_ns > 0;
    const uint64_t spin_deadline = t0 + opt.spin_ns;
    for (unsigned spins = 1;; ++spins) {
      const uint32_t v = s & kValMask;
      if (v == kOpen) break;
      if ((v == kMissing || v == kInstalled) && !(s & kReq)) {
        const uint32_t ns = s | kReq | (spinning ? 0 : kWaiter);
        if (!w.compare_exchange_weak(s, ns, std::memory_order_acq_rel)) continue;
        s = ns;
        ssize_t r;
        do {
          r = ::write(pipe_wr, &g, sizeof g);
        } while (r < 0 && errno == EINTR);
        if (r != static_cast<ssize_t>(sizeof g)) {
          signal_safe_write(
              "constmig fault tracker: FATAL: cannot queue a fault request: aborting\n");
          std::abort();
        }
        posted.fetch_add(1, std::memory_order_release);
        continue;
      }
      if (spinning) {
        if (spins % 64 == 0 && mono_ns() > spin_deadline) spinning = false;
        cpu_relax();
        s = w.load(std::memory_order_acquire);
        continue;
      }
      if (!(s & kWaiter)) {
        const uint32_t ns = s | kWaiter;
        if (!w.compare_exchange_weak(s, ns, std::memory_order_acq_rel)) continue;
        s = ns;
      }
      futex_op(&w, FUTEX_WAIT_PRIVATE, s);  // returns at once if the word changed
      s = w.load(std::memory_order_acquire);
    }
    record_latency(mono_ns() - t0);
    return true;
  }

  // ---- kUffd ---------------------------------------------------------------------------------

  void uffd_wake(uint64_t g) {
    uffdio_range r{granule_addr(g), granule_bytes(g)};
    ioctl(uffd, UFFDIO_WAKE, &r);
  }

  // Resolve granule g with the bytes at src (page-aligned). EEXIST (a page already present:
  // installed by some other means) is skipped and counted; the waiters are woken at the end.
  Status uffd_copy(uint64_t g, const uint8_t* src) {
    const size_t total = granule_bytes(g);
    size_t done = 0;
    bool need_wake = false;
    while (done < total) {
      uffdio_copy c{};
      c.dst = granule_addr(g) + done;
      c.src = reinterpret_cast<uintptr_t>(src + done);
      c.len = total - done;
      c.mode = 0;
      if (ioctl(uffd, UFFDIO_COPY, &c) == 0) {
        done += static_cast<size_t>(c.copy);
        continue;
      }
      int e = errno;
      if (c.copy > 0) {
        done += static_cast<size_t>(c.copy);
        continue;
      }
      if (e == EAGAIN || e == EINTR) continue;
      if (e == EEXIST) {
        done += page_size();
        uffd_eexist_pages.fetch_add(1, std::memory_order_relaxed);
        need_wake = true;
        continue;
      }
      return make_error(Errc::kIo,
                        "UFFDIO_COPY of " + granule_desc(g) + " failed: " + errno_str(e));
    }
    if (need_wake) uffd_wake(g);
    return ok_status();
  }

  // Background installs (install / install_with) share these steps.
  Status check_granule(uint64_t g) const {
    if (g < n) return ok_status();
    return make_error(Errc::kInvalidArgument, "fault tracker: granule " + std::to_string(g) +
                                                  " out of range (" + std::to_string(n) +
                                                  " granules)");
  }
  // Caller holds life_mu shared. Claims g for a background install, or says why not.
  Status claim_for_install(uint64_t g) {
    if (!armed.load(std::memory_order_acquire))
      return make_error(Errc::kState, "fault tracker: not armed");
    if (!claim(g)) {
      install_refused.fetch_add(1, std::memory_order_relaxed);
      return make_error(Errc::kState, "fault tracker: " + granule_desc(g) +
                                          " is already restored or being restored by another path");
    }
    return ok_status();
  }
  // kUffd: UFFDIO_COPY the claimed granule g from src and open it (unclaimed if that fails).
  Status uffd_install(uint64_t g, const uint8_t* src) {
    Status c = uffd_copy(g, src);
    if (!c.ok()) {
      unclaim(g);
      return c;
    }
    set_open(g);
    restored.fetch_add(1, std::memory_order_release);
    return ok_status();
  }

  void serve_fault_uffd(uint64_t g, uint8_t* staging, bool counted) {
    std::shared_lock life(life_mu);
    if (!armed.load(std::memory_order_acquire) || g >= n) return;
    const uint64_t t0 = mono_ns();
    if (counted) faults.fetch_add(1, std::memory_order_relaxed);
    uint32_t s = st[g].load(std::memory_order_acquire);
    for (;;) {
      uint32_t v = s & kValMask;
      if (v == kMissing) {
        if (!st[g].compare_exchange_weak(s, (s & ~kValMask) | kClaimed,
                                         std::memory_order_acq_rel)) {
          continue;
        }
        fetched_on_demand.fetch_add(1, std::memory_order_relaxed);
        Status f = call_fetch(g, FetchReason::kFault, MutableByteView(staging, granule_bytes(g)));
        if (!f.ok()) {
          fatal(make_error(f.error().code,
                           "fetching " + granule_desc(g) + " for a faulting thread failed: " +
                               errc_name(f.error().code) + ": " + f.error().message));
        }
        Status c = uffd_copy(g, staging);
        if (!c.ok()) fatal(c.error());
        set_open(g);
        if (counted) record_latency(mono_ns() - t0);
        // Last: the faulting thread already runs (the copy woke it); a reader that sees the
        // count sees the state and the latency sample too.
        restored.fetch_add(1, std::memory_order_release);
        return;
      }
      if (v == kClaimed) {
        // Another path is installing it: its UFFDIO_COPY wakes the thread; if it fails,
        // unclaim() sees the waiter bit and re-posts the granule to us.
        if (s & kWaiter) return;
        if (st[g].compare_exchange_weak(s, s | kWaiter, std::memory_order_acq_rel)) return;
        continue;
      }
      uffd_wake(g);  // open: the copy raced with this fault's delivery
      return;
    }
  }

  // Reads and serves what the userfaultfd has now. False if it had nothing.
  bool serve_uffd_messages(uint8_t* staging) {
    uffd_msg msgs[16];
    ssize_t k = ::read(uffd, msgs, sizeof msgs);
    if (k < 0) {
      if (errno == EAGAIN || errno == EINTR) return false;
      fatal(make_error(Errc::kIo, "reading the userfaultfd: " + errno_str(errno)));
    }
    for (size_t i = 0; i < static_cast<size_t>(k) / sizeof(uffd_msg); ++i) {
      if (msgs[i].event != UFFD_EVENT_PAGEFAULT) continue;
      uintptr_t a = static_cast<uintptr_t>(msgs[i].arg.pagefault.address);
      if (a < base || a - base >= len) continue;
      serve_fault_uffd((a - base) / gsize, staging, /*counted=*/true);
    }
    return k > 0;
  }

  void uffd_worker() {
    t_role.tracker = this;
    std::unique_ptr<uint8_t, decltype(&std::free)> staging(
        static_cast<uint8_t*>(std::aligned_alloc(page_size(), gsize)), &std::free);
    if (!staging) fatal(make_error(Errc::kResourceExhausted, "cannot allocate a staging buffer"));
    for (;;) {
      if (stopping.load(std::memory_order_acquire)) return;
      for (;;) {  // granules re-posted by a failed install
        uint64_t g;
        {
          std::lock_guard lk(retry_mu);
          if (retry.empty()) break;
          g = retry.front();
          retry.pop_front();
        }
        serve_fault_uffd(g, staging.get(), /*counted=*/false);
      }
      if (serve_uffd_messages(staging.get())) continue;
      // Idle: one tracker thread polls the uffd for a little while before sleeping (the same
      // spin as the mprotect tracker's, for a fair comparison).
      int expected = 0;
      if (opt.spin_ns > 0 && spinner.compare_exchange_strong(expected, 1)) {
        const uint64_t deadline = mono_ns() + opt.spin_ns;
        bool got = false;
        while (!got && mono_ns() < deadline) {
          got = serve_uffd_messages(staging.get());
          if (!got) cpu_relax();
        }
        spinner.store(0, std::memory_order_release);
        if (got) continue;
      }
      pollfd p[2] = {{uffd, POLLIN, 0}, {evfd, POLLIN, 0}};
      if (poll(p, 2, -1) < 0) {
        if (errno == EINTR) continue;
        fatal(make_error(Errc::kIo, "poll(userfaultfd): " + errno_str(errno)));
      }
      if (p[0].revents & (POLLERR | POLLHUP | POLLNVAL)) {
        fatal(make_error(Errc::kIo, "the userfaultfd reported an error"));
      }
      if ((p[1].revents & POLLIN) && !stopping.load(std::memory_order_acquire)) {
        uint64_t cnt = 0;  // reset the wake-up; the retry queue is drained at the loop's top
        ssize_t r = ::read(evfd, &cnt, sizeof cnt);
        (void)r;
      }
    }
  }
};

namespace {

void chain_segv(int sig, siginfo_t* si, void* uc) {
  const struct sigaction& p = g_prev_segv;
  // sa_handler and sa_sigaction share storage: SIG_DFL/SIG_IGN look the same in both.
  if (p.sa_handler != SIG_DFL && p.sa_handler != SIG_IGN) {
    if (p.sa_flags & SA_SIGINFO) {
      p.sa_sigaction(sig, si, uc);
    } else {
      p.sa_handler(sig);
    }
    return;
  }
  // Default action (SIG_IGN cannot ignore a synchronous fault either): reinstate it and return;
  // the access re-executes, faults again and the kernel applies the default (core dump).
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(SIGSEGV, &dfl, nullptr);
}

void segv_handler(int sig, siginfo_t* si, void* uc) {
  const int saved_errno = errno;
  g_in_handler.fetch_add(1, std::memory_order_seq_cst);
  FaultTracker::Impl* t = g_active.load(std::memory_order_seq_cst);
  const bool handled = t != nullptr && t->on_segv(reinterpret_cast<uintptr_t>(si->si_addr));
  g_in_handler.fetch_sub(1, std::memory_order_seq_cst);
  if (!handled) chain_segv(sig, si, uc);
  errno = saved_errno;
}

Status register_signal(FaultTracker::Impl* t) {
  std::lock_guard lk(g_sig_mu);
  if (g_active.load() != nullptr) {
    return make_error(Errc::kState,
                      "another mprotect fault tracker is active in this process (one at a time: "
                      "destroy it first)");
  }
  struct sigaction cur {};
  if (sigaction(SIGSEGV, nullptr, &cur) != 0) {
    return make_error(Errc::kIo, "sigaction(SIGSEGV): " + errno_str(errno));
  }
  const bool ours = (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == &segv_handler;
  if (!ours) {
    struct sigaction sa {};
    sa.sa_sigaction = &segv_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    g_prev_segv = cur;
    if (sigaction(SIGSEGV, &sa, nullptr) != 0) {
      return make_error(Errc::kIo, "installing the SIGSEGV handler: " + errno_str(errno));
    }
  }
  g_handler_installed = true;
  g_active.store(t, std::memory_order_seq_cst);
  return ok_status();
}

void unregister_signal(FaultTracker::Impl* t) {
  std::lock_guard lk(g_sig_mu);
  if (g_active.load() != t) return;
  g_active.store(nullptr, std::memory_order_seq_cst);
  // A thread that entered the handler before the store may still use t: wait for it.
  while (g_in_handler.load(std::memory_order_seq_cst) != 0) sched_yield();
  // Put the previous handler back unless someone installed another one after ours (then ours
  // stays and chains everything, since no tracker is active).
  struct sigaction cur {};
  if (g_handler_installed && sigaction(SIGSEGV, nullptr, &cur) == 0 &&
      (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == &segv_handler) {
    sigaction(SIGSEGV, &g_prev_segv, nullptr);
    g_handler_installed = false;
  }
}

Result<int> open_uffd(bool* user_mode_only) {
  *user_mode_only = false;
  int fd = static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  int first_errno = fd < 0 ? errno : 0;
#ifdef USERFAULTFD_IOC_NEW
  if (fd < 0) {
    int dev = ::open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (dev >= 0) {
      fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
      ::close(dev);
    }
  }
#endif
  if (fd < 0) {
    fd = static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY));
    if (fd >= 0) *user_mode_only = true;
  }
  if (fd < 0) {
    std::string sysctl = "?";
    std::ifstream f("/proc/sys/vm/unprivileged_userfaultfd");
    if (f) f >> sysctl;
    return make_error(Errc::kPermission,
                      "userfaultfd is not available to this process: " + errno_str(first_errno) +
                          " (vm.unprivileged_userfaultfd = " + sysctl +
                          "). Run as root or with CAP_SYS_PTRACE, set sysctl "
                          "vm.unprivileged_userfaultfd=1, or grant access to /dev/userfaultfd; or "
                          "use the mprotect tracker");
  }
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = 0;
  if (ioctl(fd, UFFDIO_API, &api) != 0) {
    int e = errno;
    ::close(fd);
    return make_error(Errc::kIo, "UFFDIO_API: " + errno_str(e));
  }
  if (!(api.ioctls & (1ull << _UFFDIO_REGISTER))) {
    ::close(fd);
    return make_error(Errc::kIo, "this kernel's userfaultfd lacks UFFDIO_REGISTER");
  }
  return fd;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

const char* tracker_kind_name(TrackerKind k) {
  return k == TrackerKind::kMprotect ? "mprotect" : "uffd";
}

Status FaultTracker::uffd_supported() {
  bool umo = false;
  CM_ASSIGN_OR_RETURN(int fd, open_uffd(&umo));
  ::close(fd);
  return ok_status();
}

FaultTracker::FaultTracker(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<FaultTracker>> FaultTracker::create(const TrackerOptions& o, FetchFn fetch) {
  const size_t ps = page_size();
  if (!fetch) return make_error(Errc::kInvalidArgument, "fault tracker: FetchFn is empty");
  if (o.base == 0 || o.base % ps != 0) {
    return make_error(Errc::kInvalidArgument,
                      "fault tracker: base " + hex(o.base) + " is not page-aligned");
  }
  if (o.len == 0 || o.len % ps != 0 || o.base + o.len < o.base) {
    return make_error(Errc::kInvalidArgument, "fault tracker: len " + std::to_string(o.len) +
                                                  " is not a non-zero page multiple");
  }
  if (!is_pow2(o.granule) || o.granule < ps || o.granule > (16u << 20)) {
    return make_error(Errc::kInvalidArgument,
                      "fault tracker: granule " + std::to_string(o.granule) +
                          " must be a power of two between the page size and 16 MiB");
  }
  if (o.fetch_threads == 0 || o.fetch_threads > 64) {
    return make_error(Errc::kInvalidArgument, "fault tracker: fetch_threads must be 1..64");
  }
  if (o.max_open_runs == 0) {
    return make_error(Errc::kInvalidArgument, "fault tracker: max_open_runs must be at least 1");
  }

  auto impl = std::make_unique<Impl>();
  Impl& t = *impl;
  t.opt = o;
  t.fetch = std::move(fetch);
  t.base = o.base;
  t.len = o.len;
  t.gsize = o.granule;
  t.n = (o.len + o.granule - 1) / o.granule;
  t.st = std::make_unique<std::atomic<uint32_t>[]>(t.n);
  for (uint64_t g = 0; g < t.n; ++g) t.st[g].store(kOpen, std::memory_order_relaxed);
  t.lat_cap = o.latency_capacity;
  t.lat = std::make_unique<std::atomic<uint64_t>[]>(std::max<size_t>(t.lat_cap, 1));
  const std::string range = "[" + hex(o.base) + ", " + hex(o.base + o.len) + ")";

  if (o.kind == TrackerKind::kMprotect) {
    struct stat sb {};
    if (o.memfd < 0 || fstat(o.memfd, &sb) != 0) {
      return make_error(
          Errc::kInvalidArgument,
          "mprotect fault tracker: needs the memfd (memfd_secret) that backs " + range);
    }
    // The app view must be exactly the memfd, MAP_SHARED, from memfd_offset, with no holes.
    uintptr_t expect = o.base;
    for (const MapsLine& m : read_maps(o.base, o.len)) {
      uint64_t want_off =
          static_cast<uint64_t>(o.memfd_offset) + (std::max(m.start, o.base) - o.base);
      uint64_t got_off = m.offset + (std::max(m.start, o.base) - m.start);
      if (m.start > expect || m.inode != sb.st_ino || m.perms.size() < 4 || m.perms[3] != 's' ||
          got_off != want_off) {
        return make_error(Errc::kInvalidArgument,
                          "mprotect fault tracker: the app view " + range +
                              " must be a MAP_SHARED mapping of the given memfd (inode " +
                              std::to_string(sb.st_ino) + ", offset " + hex(o.memfd_offset) +
                              "); found " + hex(m.start) + "-" + hex(m.end) + " " + m.perms +
                              " inode " + std::to_string(m.inode) + " offset " + hex(m.offset) +
                              m.path);
      }
      expect = m.end;
    }
    if (expect < o.base + o.len) {
      return make_error(Errc::kInvalidArgument, "mprotect fault tracker: " + range +
                                                    " is not fully mapped (hole at " + hex(expect) +
                                                    ")");
    }
    void* rw = o.restorer_view;
    if (rw != nullptr) {
      // The caller's view: it must map the same file from the same offset, read-write.
      auto ml = read_maps(reinterpret_cast<uintptr_t>(rw), o.len);
      bool good = !ml.empty();
      uintptr_t at = reinterpret_cast<uintptr_t>(rw);
      for (const MapsLine& m : ml) {
        uint64_t want = static_cast<uint64_t>(o.memfd_offset) + (std::max(m.start, at) - at);
        uint64_t got = m.offset + (std::max(m.start, at) - m.start);
        good = good && m.inode == sb.st_ino && m.perms.rfind("rw-s", 0) == 0 && got == want;
      }
      if (!good) {
        return make_error(Errc::kInvalidArgument,
                          "mprotect fault tracker: restorer_view must be a read-write MAP_SHARED "
                          "mapping of the same memfd as " +
                              range);
      }
      t.rw_owned = false;
    } else {
      rw = mmap(nullptr, o.len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, o.memfd,
                o.memfd_offset);
    }
    if (rw == MAP_FAILED) {
      return make_error(Errc::kResourceExhausted,
                        "mprotect fault tracker: mapping the restorer's view of " + range +
                            " failed: " + errno_str(errno));
    }
    t.rw = static_cast<uint8_t*>(rw);
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
      return make_error(Errc::kResourceExhausted, "fault tracker: pipe2: " + errno_str(errno));
    }
    t.pipe_rd = fds[0];
    t.pipe_wr = fds[1];
    // Readers never block (several tracker threads poll it); the handler's writes block if the
    // pipe is full, which needs more than 8192 distinct granules faulting at once.
    fcntl(t.pipe_rd, F_SETFL, fcntl(t.pipe_rd, F_GETFL) | O_NONBLOCK);
    CM_TRY(register_signal(&t));
    t.signal_registered = true;
  } else {
    for (const MapsLine& m : read_maps(o.base, o.len)) {
      if (m.inode != 0 || m.perms.size() < 4 || m.perms[3] != 'p') {
        return make_error(Errc::kInvalidArgument,
                          "uffd fault tracker: " + range +
                              " must be private anonymous memory (userfaultfd does not support "
                              "memfd_secret here, DESIGN §6); found " +
                              hex(m.start) + "-" + hex(m.end) + " " + m.perms + m.path);
      }
    }
    CM_ASSIGN_OR_RETURN(t.uffd, open_uffd(&t.uffd_user_mode_only));
    t.evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (t.evfd < 0)
      return make_error(Errc::kResourceExhausted, "fault tracker: eventfd: " + errno_str(errno));
  }

  std::unique_ptr<FaultTracker> tracker(new FaultTracker(std::move(impl)));
  try {
    for (unsigned i = 0; i < o.fetch_threads; ++i) {
      if (o.kind == TrackerKind::kMprotect) {
        t.workers.emplace_back([&t] { t.mprotect_worker(); });
      } else {
        t.workers.emplace_back([&t] { t.uffd_worker(); });
      }
    }
  } catch (const std::exception& e) {
    return make_error(Errc::kResourceExhausted,
                      std::string("fault tracker: starting threads: ") + e.what());
  }
  return tracker;
}

FaultTracker::~FaultTracker() {
  if (!impl_) return;
  Impl& t = *impl_;
  (void)disarm();
  t.stopping.store(true, std::memory_order_release);
  if (t.opt.kind == TrackerKind::kMprotect) {
    for (size_t i = 0; i < t.workers.size(); ++i) {
      uint64_t stop = kStopRequest;
      ssize_t r;
      do {
        r = ::write(t.pipe_wr, &stop, sizeof stop);
      } while (r < 0 && errno == EINTR);
    }
  } else if (t.evfd >= 0) {
    uint64_t one = 1;
    ssize_t r = ::write(t.evfd, &one, sizeof one);
    (void)r;
  }
  for (auto& w : t.workers) {
    if (w.joinable()) w.join();
  }
  if (t.signal_registered) unregister_signal(&t);
}

Status FaultTracker::arm() {
  Impl& t = *impl_;
  std::unique_lock life(t.life_mu);
  if (t.armed.load()) return make_error(Errc::kState, "fault tracker: already armed");
  {
    std::lock_guard lk(t.map_mu);
    t.open_runs.clear();
    t.staged.clear();
    t.open_run_count.store(0);
  }
  {
    std::lock_guard lk(t.retry_mu);
    t.retry.clear();
  }
  for (uint64_t g = 0; g < t.n; ++g) t.st[g].store(kMissing, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  void* b = reinterpret_cast<void*>(t.base);
  if (t.opt.kind == TrackerKind::kMprotect) {
    if (mprotect(b, t.len, PROT_NONE) != 0) {
      int e = errno;
      for (uint64_t g = 0; g < t.n; ++g) t.st[g].store(kOpen, std::memory_order_relaxed);
      return make_error(Errc::kIo,
                        "fault tracker: mprotect(PROT_NONE) of the app view: " + errno_str(e));
    }
    t.mprotect_calls.fetch_add(1, std::memory_order_relaxed);
  } else {
    uffdio_register reg{};
    reg.range.start = t.base;
    reg.range.len = t.len;
    reg.mode = UFFDIO_REGISTER_MODE_MISSING;
    if (ioctl(t.uffd, UFFDIO_REGISTER, &reg) != 0) {
      int e = errno;
      for (uint64_t g = 0; g < t.n; ++g) t.st[g].store(kOpen, std::memory_order_relaxed);
      return make_error(Errc::kIo, "fault tracker: UFFDIO_REGISTER(MISSING) of [" + hex(t.base) +
                                       ", +" + std::to_string(t.len) + ") failed: " + errno_str(e) +
                                       (e == EINVAL ? " (needs private anonymous memory)" : ""));
    }
    if (!(reg.ioctls & (1ull << _UFFDIO_COPY))) {
      uffdio_range r{t.base, t.len};
      ioctl(t.uffd, UFFDIO_UNREGISTER, &r);
      for (uint64_t g = 0; g < t.n; ++g) t.st[g].store(kOpen, std::memory_order_relaxed);
      return make_error(Errc::kIo, "fault tracker: UFFDIO_COPY is not supported on this range");
    }
    // Drop the contents: the next touch of every page is a MISSING fault.
    if (madvise(b, t.len, MADV_DONTNEED) != 0) {
      int e = errno;
      uffdio_range r{t.base, t.len};
      ioctl(t.uffd, UFFDIO_UNREGISTER, &r);
      for (uint64_t g = 0; g < t.n; ++g) t.st[g].store(kOpen, std::memory_order_relaxed);
      return make_error(Errc::kIo, "fault tracker: madvise(MADV_DONTNEED): " + errno_str(e));
    }
  }
  t.armed.store(true, std::memory_order_release);
  return ok_status();
}

Status FaultTracker::disarm() {
  Impl& t = *impl_;
  std::unique_lock life(t.life_mu);
  if (!t.armed.load()) return ok_status();
  if (t.opt.kind == TrackerKind::kMprotect) {
    if (mprotect(reinterpret_cast<void*>(t.base), t.len, PROT_READ | PROT_WRITE) != 0) {
      return make_error(
          Errc::kIo,
          "fault tracker: mprotect(PROT_READ|PROT_WRITE) of the app view: " + errno_str(errno));
    }
    t.mprotect_calls.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard lk(t.map_mu);
    t.staged.clear();
    t.open_runs.clear();
    t.open_runs.insert(0, t.n);
    t.open_run_count.store(1);
    for (uint64_t g = 0; g < t.n; ++g) t.set_open(g);
  } else {
    uffdio_range r{t.base, t.len};
    if (ioctl(t.uffd, UFFDIO_UNREGISTER, &r) != 0) {  // also wakes blocked threads
      return make_error(Errc::kIo, "fault tracker: UFFDIO_UNREGISTER: " + errno_str(errno));
    }
    for (uint64_t g = 0; g < t.n; ++g) t.set_open(g);
  }
  t.armed.store(false, std::memory_order_release);
  return ok_status();
}

bool FaultTracker::armed() const {
  return impl_->armed.load(std::memory_order_acquire);
}

Status FaultTracker::install(uint64_t granule, ByteView bytes) {
  Impl& t = *impl_;
  CM_TRY(t.check_granule(granule));
  if (bytes.size() != t.granule_bytes(granule)) {
    return make_error(Errc::kInvalidArgument, "fault tracker: install of " +
                                                  t.granule_desc(granule) + " got " +
                                                  std::to_string(bytes.size()) + " bytes");
  }
  if (t.opt.kind == TrackerKind::kUffd &&
      reinterpret_cast<uintptr_t>(bytes.data()) % page_size() == 0) {
    // UFFDIO_COPY can take page-aligned bytes directly: no staging copy.
    std::shared_lock life(t.life_mu);
    CM_TRY(t.claim_for_install(granule));
    CM_TRY(t.uffd_install(granule, bytes.data()));
    t.installed_background.fetch_add(1, std::memory_order_relaxed);
    return ok_status();
  }
  return install_with(granule, [&](MutableByteView dst) {
    std::memcpy(dst.data(), bytes.data(), dst.size());
    return ok_status();
  });
}

Status FaultTracker::install_with(uint64_t granule, const FillFn& fill) {
  Impl& t = *impl_;
  CM_TRY(t.check_granule(granule));
  std::shared_lock life(t.life_mu);
  CM_TRY(t.claim_for_install(granule));
  const size_t nb = t.granule_bytes(granule);
  std::unique_ptr<uint8_t, decltype(&std::free)> staging(nullptr, &std::free);
  MutableByteView dst;
  if (t.opt.kind == TrackerKind::kMprotect) {
    dst = MutableByteView(t.rw + granule * t.gsize, nb);
  } else {
    staging.reset(static_cast<uint8_t*>(std::aligned_alloc(page_size(), t.gsize)));
    if (!staging) {
      t.unclaim(granule);
      return make_error(Errc::kResourceExhausted, "fault tracker: staging buffer");
    }
    dst = MutableByteView(staging.get(), nb);
  }
  const ThreadRole saved = t_role;
  t_role.tracker = &t;
  t_role.installing = granule;
  Status f = t.call_fill(fill, dst);
  t_role = saved;
  if (!f.ok()) {
    t.unclaim(granule);
    return make_error(f.error().code, "fault tracker: filling " + t.granule_desc(granule) + ": " +
                                          f.error().message);
  }
  if (t.opt.kind == TrackerKind::kMprotect) {
    t.finish_mprotect(granule, /*demanded=*/false);
  } else {
    CM_TRY(t.uffd_install(granule, staging.get()));
  }
  t.installed_background.fetch_add(1, std::memory_order_relaxed);
  return ok_status();
}

Status FaultTracker::prefault_restorer_view(uint64_t first_granule, uint64_t count) {
  Impl& t = *impl_;
  if (first_granule > t.n || count > t.n - first_granule) {
    return make_error(Errc::kInvalidArgument, "fault tracker: prefault of granules [" +
                                                  std::to_string(first_granule) + ", +" +
                                                  std::to_string(count) + ") is out of range");
  }
  if (t.opt.kind != TrackerKind::kMprotect || count == 0) return ok_status();
  const size_t begin = first_granule * t.gsize;
  const size_t end = std::min(t.len, (first_granule + count) * t.gsize);
  uint8_t sum = 0;
  for (size_t off = begin; off < end; off += page_size()) {
    sum = static_cast<uint8_t>(sum + *reinterpret_cast<const volatile uint8_t*>(t.rw + off));
  }
  asm volatile("" ::"r"(sum));
  return ok_status();
}

bool FaultTracker::restored(uint64_t granule) const {
  if (granule >= impl_->n) return false;
  uint32_t v = impl_->st[granule].load(std::memory_order_acquire) & kValMask;
  return v == kInstalled || v == kOpen;
}

uint64_t FaultTracker::granule_count() const {
  return impl_->n;
}
size_t FaultTracker::granule_size() const {
  return impl_->gsize;
}
size_t FaultTracker::granule_bytes(uint64_t granule) const {
  return impl_->granule_bytes(granule);
}
uint64_t FaultTracker::granule_of(uintptr_t addr) const {
  return (addr - impl_->base) / impl_->gsize;
}
TrackerKind FaultTracker::kind() const {
  return impl_->opt.kind;
}

FaultTracker::Stats FaultTracker::stats() const {
  const Impl& t = *impl_;
  auto ld = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  Stats s;
  s.faults = ld(t.faults);
  s.fetched_on_demand = ld(t.fetched_on_demand);
  s.fetched_for_coalescing = ld(t.fetched_for_coalescing);
  s.opened_staged = ld(t.opened_staged);
  s.installed_background = ld(t.installed_background);
  s.install_refused = ld(t.install_refused);
  s.restored = ld(t.restored);
  s.blocktime_ns = ld(t.blocktime_ns);
  s.open_runs = ld(t.open_run_count);
  s.max_open_runs_seen = ld(t.max_open_runs_seen);
  s.mprotect_calls = ld(t.mprotect_calls);
  s.uffd_eexist_pages = ld(t.uffd_eexist_pages);
  s.latency_samples_dropped = ld(t.lat_dropped);
  return s;
}

std::vector<uint64_t> FaultTracker::fault_latencies_ns() const {
  const Impl& t = *impl_;
  size_t cnt =
      static_cast<size_t>(std::min<uint64_t>(t.lat_n.load(std::memory_order_acquire), t.lat_cap));
  std::vector<uint64_t> out(cnt);
  for (size_t i = 0; i < cnt; ++i) out[i] = t.lat[i].load(std::memory_order_relaxed);
  return out;
}

size_t FaultTracker::mapping_count() const {
  return read_maps(impl_->base, impl_->len).size();
}

}  // namespace constmig::platform
