// bench_tracker_crossover: Access Tracker vs Fault Tracker in one process, without network:
// what each costs per newly touched page and per access, and from which number of accesses
// per newly touched page on the Fault Tracker is cheaper (the crossover).
//
// One loop (crossover_loop.inc) touches N pages in a random order, K 8-byte accesses per page
// (read, write, or mixed). Five variants of it, interleaved in every round, over the same
// memfd_secret region (the enclave heap's memory; warmed: every page exists):
//   base       the loop without the pass, nothing tracked (all pages present)
//   fault      the same loop; the region armed under platform::FaultTracker (kMprotect, 4 KiB
//              granules, restorer view prefaulted as in the prepare phase): the first touch of
//              each page faults, the FetchFn copies a prepared 4 KiB page, the granule opens
//   at-active  the loop compiled WITH the pass, flag 1, bitmap clear: the first check of each
//              page misses and __constmig_at_fetch copies the same 4 KiB page and sets the bit
//              (crossover_fake_runtime.cpp), every other access passes its check
//   at-restored  compiled with the pass, flag 1, bitmap full: the per-access check alone
//   at-committed compiled with the pass, flag 0 (after commit): one load + branch per check
// Derived per new page: fault = (fault - base) / N; access fetch = (at-active - at-restored) / N.
// Per access: check = (at-restored - base) / (N K); after commit = (at-committed - base) / (N K).
// The crossover K* is where at-active and fault take equally long (log-interpolated between the
// swept K); the model's K* = (fault per page - access fetch per page) / check per access.
// A workload doing A accesses/s and touching P new pages/s has K = A / P; with A = the loop's
// own baseline access rate, the Access Tracker is the cheaper one above P* = A / K* pages/s.
// Excluded (identical for both trackers): the network round trip to the source and its answer.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "crossover_loop.h"
#include "platform/host_fault_tracker.h"

using namespace constmig;
using namespace constmig::platform;
using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kPage = 4096;
using LoopFn = uint64_t (*)(uint8_t*, const uint32_t*, size_t, uint32_t);

struct Mode {
  const char* name;
  LoopFn plain, at;
};
const Mode kModes[] = {{"read", xover_plain_read, xover_at_read},
                       {"write", xover_plain_write, xover_at_write},
                       {"mixed", xover_plain_mixed, xover_at_mixed}};

const char* kVariants[] = {"base", "fault", "at-active", "at-restored", "at-committed"};
constexpr int kBase = 0, kFault = 1, kActive = 2, kRestored = 3, kCommitted = 4;
constexpr int kNumVariants = 5;

// memfd_secret like the enclave heap and the Fault Tracker's tests (tests/fault_tracker),
// every page written once (the EAUG analogue is paid before, in the prepare phase).
struct Region {
  int fd = -1;
  uint8_t* p = nullptr;
  size_t len = 0;
  bool secret = false;
  Region() = default;
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;
  ~Region() {
    if (p) munmap(p, len);
    if (fd >= 0) close(fd);
  }
  bool map(size_t bytes) {
    len = bytes;
    fd = static_cast<int>(syscall(SYS_memfd_secret, O_CLOEXEC));
    secret = fd >= 0;
    if (fd < 0)
      fd = memfd_create("bench_tracker_crossover", MFD_CLOEXEC);  // same shape, not secret
    if (fd < 0 || ftruncate(fd, static_cast<off_t>(len)) != 0) return false;
    void* m = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (m == MAP_FAILED) return false;
    p = static_cast<uint8_t*>(m);
    for (size_t off = 0; off < len; off += kPage) p[off] = 1;
    return true;
  }
};

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::vector<uint32_t> parse_list(const std::string& s) {
  std::vector<uint32_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (!item.empty()) out.push_back(static_cast<uint32_t>(std::stoul(item)));
  }
  return out;
}

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

volatile uint64_t g_sink;

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{
      "bench_tracker_crossover: Access Tracker (compiled-in checks) vs Fault Tracker (mprotect + "
      "SIGSEGV) per newly touched page and per access, one process, no network; sweeps the "
      "accesses per new page (K) and reports the crossover (EMULATED SGX platform)"};
  std::string out_dir = "bench-results";
  size_t pages = 4096;
  unsigned reps = 5;
  std::string ks_s = "1,4,16,64,256,1024,4096,16384,65536";
  std::string modes_s = "read,write,mixed";
  std::string order_s = "random";
  bool quick = false;
  unsigned fetch_threads = TrackerOptions{}.fetch_threads;
  uint32_t spin_ns = TrackerOptions{}.spin_ns;
  size_t scrub_mib = 32;
  cli.add_option("--out", out_dir,
                 "directory for tracker_crossover.json and .txt ('-': JSON to stdout, table to "
                 "stderr)")
      ->capture_default_str();
  cli.add_option("--pages", pages, "N: pages touched per run (the region's size)")
      ->capture_default_str();
  cli.add_option("--reps", reps, "rounds; each runs every variant of every K once (interleaved)")
      ->capture_default_str();
  cli.add_option("--ks", ks_s, "K values: accesses per newly touched page")->capture_default_str();
  cli.add_option("--modes", modes_s, "access kinds: read, write, mixed")->capture_default_str();
  cli.add_option("--order", order_s, "page order: random or seq")->capture_default_str();
  cli.add_option("--fetch-threads", fetch_threads, "Fault Tracker threads")->capture_default_str();
  cli.add_option("--spin-ns", spin_ns, "Fault Tracker spin_ns")->capture_default_str();
  cli.add_option("--scrub-mib", scrub_mib, "MiB read before every timed run (cold caches alike)")
      ->capture_default_str();
  cli.add_flag("--quick", quick, "smoke check: 512 pages, 2 rounds");
  CLI11_PARSE(cli, argc, argv);
  if (quick) {
    pages = 512;
    reps = 2;
  }
  const std::vector<uint32_t> ks = parse_list(ks_s);
  std::vector<const Mode*> modes;
  for (const auto& m : kModes) {
    if (("," + modes_s + ",").find("," + std::string(m.name) + ",") != std::string::npos) {
      modes.push_back(&m);
    }
  }
  if (pages == 0 || reps == 0 || ks.empty() || modes.empty() ||
      std::find(ks.begin(), ks.end(), 0u) != ks.end() ||
      (order_s != "random" && order_s != "seq")) {
    std::fprintf(stderr, "bench_tracker_crossover: bad --pages/--reps/--ks/--modes/--order\n");
    return 2;
  }
  const bool to_stdout = out_dir == "-";
  FILE* tout = to_stdout ? stderr : stdout;
  std::string table;  // what is printed, also written to the .txt
  auto say = [&](const std::string& s) {
    std::fputs(s.c_str(), tout);
    std::fflush(tout);
    table += s;
  };

  Region region;
  if (!region.map(pages * kPage)) {
    std::fprintf(stderr, "bench_tracker_crossover: cannot map %zu pages: %s\n", pages,
                 std::strerror(errno));
    return 1;
  }
  std::vector<uint8_t> source_page(kPage);
  for (size_t i = 0; i < kPage; ++i) source_page[i] = static_cast<uint8_t>(i * 31 + 7);
  std::vector<uint32_t> order(pages);
  std::iota(order.begin(), order.end(), 0u);
  if (order_s == "random") std::shuffle(order.begin(), order.end(), std::mt19937_64(42));
  std::vector<uint8_t> scrub(scrub_mib << 20, 1);

  TrackerOptions o;
  o.kind = TrackerKind::kMprotect;
  o.base = reinterpret_cast<uintptr_t>(region.p);
  o.len = region.len;
  o.granule = kPage;
  o.memfd = region.fd;
  o.fetch_threads = fetch_threads;
  o.spin_ns = spin_ns;
  const uint8_t* src = source_page.data();
  auto tr = FaultTracker::create(o, [src](uint64_t, FetchReason, MutableByteView dst) {
    std::memcpy(dst.data(), src, dst.size());  // the same copy as the fake runtime's fetch
    return ok_status();
  });
  if (!tr.ok()) {
    std::fprintf(stderr, "bench_tracker_crossover: %s\n", tr.error().message.c_str());
    return 1;
  }
  FaultTracker& ft = **tr;
  if (!ft.prefault_restorer_view(0, ft.granule_count()).ok()) return 1;
  xover_rt::setup(region.p, pages, src);

  auto scrub_caches = [&] {
    uint64_t s = 0;
    for (size_t i = 0; i < scrub.size(); i += 64) s += scrub[i];
    g_sink = g_sink + s;
  };

  // samples[mode][k][variant] = ns per run
  std::map<std::string, std::map<uint32_t, std::vector<std::vector<double>>>> samples;
  std::map<std::string, std::map<uint32_t, nlohmann::json>> checks;
  FaultTracker::Stats fstats_before = ft.stats();
  uint64_t fault_runs = 0, at_active_runs = 0;
  uint64_t fetch_pages_before = xover_rt::pages_fetched();
  for (unsigned rep = 0; rep < reps; ++rep) {
    for (const Mode* m : modes) {
      for (uint32_t k : ks) {
        auto& row = samples[m->name][k];
        row.resize(kNumVariants);
        // Rotate the variants' order per round: none always runs right after another.
        for (int vi = 0; vi < kNumVariants; ++vi) {
          const int v = (vi + static_cast<int>(rep)) % kNumVariants;
          LoopFn fn = (v == kBase || v == kFault) ? m->plain : m->at;
          if (v == kFault && !ft.arm().ok()) return 1;
          if (v == kActive) xover_rt::clear_bitmap();
          if (v == kRestored) xover_rt::fill_bitmap();
          xover_rt::set_active(v == kActive || v == kRestored);
          scrub_caches();
          auto t0 = Clock::now();
          g_sink = g_sink + fn(region.p, order.data(), pages, k);
          auto t1 = Clock::now();
          xover_rt::set_active(false);
          if (v == kFault) {
            if (!ft.disarm().ok()) return 1;
            ++fault_runs;
          }
          if (v == kActive) ++at_active_runs;
          row[v].push_back(static_cast<double>(std::chrono::nanoseconds(t1 - t0).count()));
        }
      }
    }
  }
  FaultTracker::Stats fs = ft.stats();
  const uint64_t faults = fs.faults - fstats_before.faults;
  const uint64_t fetched = fs.fetched_on_demand - fstats_before.fetched_on_demand;
  const uint64_t at_pages = xover_rt::pages_fetched() - fetch_pages_before;
  std::vector<uint64_t> lat = ft.fault_latencies_ns();
  std::sort(lat.begin(), lat.end());
  auto lat_pct = [&](double q) {
    return lat.empty() ? 0.0
                       : static_cast<double>(lat[std::min(
                             lat.size() - 1,
                             static_cast<size_t>(q * static_cast<double>(lat.size() - 1) + 0.5))]);
  };

  const double N = static_cast<double>(pages);
  nlohmann::json jmodes = nlohmann::json::object();
  say("EMULATED SGX platform | bench_tracker_crossover: " + std::to_string(pages) + " pages (" +
      (region.secret ? "memfd_secret" : "memfd, memfd_secret unavailable") + "), " + order_s +
      " page order, " + std::to_string(reps) + " interleaved rounds, medians; Fault Tracker " +
      "kMprotect, 4 KiB granules, " + std::to_string(fetch_threads) + " tracker threads, spin " +
      std::to_string(spin_ns) + " ns; " + std::to_string(std::thread::hardware_concurrency()) +
      " CPUs\n");
  say("model, per newly touched page with K accesses: Fault Tracker = C_fault (once); Access "
      "Tracker during migration = C_fetch + K x c_check; after commit it keeps K x c_flag0.\n"
      "excluded (identical for both): the network round trip to the source and its answer; the "
      "fetch here copies a prepared 4 KiB page on both sides.\n\n");
  for (const Mode* m : modes) {
    nlohmann::json rows = nlohmann::json::array();
    char line[512];
    std::snprintf(line, sizeof line,
                  "[%s]\n%6s | %9s %9s %9s %9s %9s | %9s %9s | %8s %8s | %11s %s\n", m->name, "K",
                  "base ms", "fault ms", "at-act ms", "at-rst ms", "at-com ms", "fault/pg",
                  "fetch/pg", "chk/acc", "flag0/acc", "at-act/fault", "cheaper");
    say(line);
    std::vector<double> fault_pp, fetch_pp;
    double first_fetch_pp = 0;
    double prev_d = 0, prev_k = 0;
    bool have_prev = false;
    nlohmann::json crossover = nullptr;
    std::string crossover_note;
    for (uint32_t k : ks) {
      const auto& row = samples[m->name][k];
      double med[kNumVariants];
      for (int v = 0; v < kNumVariants; ++v) med[v] = median(row[v]);
      const double K = static_cast<double>(k);
      const double f_pp = (med[kFault] - med[kBase]) / N;
      const double a_pp = (med[kActive] - med[kRestored]) / N;
      const double chk = (med[kRestored] - med[kBase]) / (N * K);
      const double flag0 = (med[kCommitted] - med[kBase]) / (N * K);
      const double ratio = (med[kActive] - med[kBase]) / (med[kFault] - med[kBase]);
      const double d = med[kActive] - med[kFault];  // > 0: the Fault Tracker is cheaper
      fault_pp.push_back(f_pp);
      // The fetch's cost is a difference of two runs that both do N K checks: resolved where
      // K is small (at large K the checks' noise swamps it).
      if (k <= 64) fetch_pp.push_back(a_pp);
      if (!have_prev) first_fetch_pp = a_pp;
      if (crossover.is_null() && have_prev && prev_d < 0 && d >= 0) {
        const double t = (0 - prev_d) / (d - prev_d);
        crossover = std::exp(std::log(prev_k) + t * (std::log(K) - std::log(prev_k)));
      }
      if (!have_prev && d >= 0)
        crossover_note = "the Fault Tracker is cheaper already at the smallest K";
      prev_d = d;
      prev_k = K;
      have_prev = true;
      std::snprintf(line, sizeof line,
                    "%6u | %9.3f %9.3f %9.3f %9.3f %9.3f | %9.0f %9.0f | %8.3f %8.3f | %11.2f %s\n",
                    k, med[kBase] / 1e6, med[kFault] / 1e6, med[kActive] / 1e6,
                    med[kRestored] / 1e6, med[kCommitted] / 1e6, f_pp, a_pp, chk, flag0, ratio,
                    d < 0 ? "access" : "fault");
      say(line);
      nlohmann::json r = {{"k", k},
                          {"median_ns", nlohmann::json::object()},
                          {"fault_ns_per_new_page", f_pp},
                          {"access_fetch_ns_per_new_page", a_pp},
                          {"access_active_ns_per_new_page_total", (med[kActive] - med[kBase]) / N},
                          {"access_check_ns_per_access", chk},
                          {"access_committed_ns_per_access", flag0},
                          {"access_active_over_fault_extra", ratio},
                          {"base_ns_per_access", med[kBase] / (N * K)},
                          {"cheaper_during_migration", d < 0 ? "access" : "fault"}};
      for (int v = 0; v < kNumVariants; ++v) {
        r["median_ns"][kVariants[v]] = med[v];
        r["samples_ns"][kVariants[v]] = row[v];
      }
      rows.push_back(r);
    }
    if (crossover.is_null() && crossover_note.empty()) {
      crossover_note = "no crossover in the swept K: the Access Tracker is cheaper at every K";
    }
    // The model, from the sweep: per-page costs as medians over K, the check's cost from the
    // largest K (where it is best resolved).
    const auto& big = samples[m->name][ks.back()];
    const double Kmax = static_cast<double>(ks.back());
    const double c_fault = median(fault_pp);
    const double c_fetch = fetch_pp.empty() ? first_fetch_pp : median(fetch_pp);
    const double c_check = (median(big[kRestored]) - median(big[kBase])) / (N * Kmax);
    const double c_flag0 = (median(big[kCommitted]) - median(big[kBase])) / (N * Kmax);
    const double base_rate = N * Kmax / (median(big[kBase]) / 1e9);  // accesses/s
    const double k_model = c_check > 0 ? (c_fault - c_fetch) / c_check : INFINITY;
    const double committed_overhead = median(big[kCommitted]) / median(big[kBase]) - 1;
    const double active_overhead = median(big[kRestored]) / median(big[kBase]) - 1;
    nlohmann::json model = {
        {"fault_ns_per_new_page", c_fault},
        {"access_fetch_ns_per_new_page", c_fetch},
        {"access_check_ns_per_access", c_check},
        {"access_committed_ns_per_access", c_flag0},
        {"crossover_k_model",
         std::isfinite(k_model) ? nlohmann::json(k_model) : nlohmann::json(nullptr)},
        {"baseline_accesses_per_s", base_rate},
        {"crossover_new_pages_per_s_model", std::isfinite(k_model) && k_model > 0
                                                ? nlohmann::json(base_rate / k_model)
                                                : nlohmann::json(nullptr)},
        {"access_active_restored_overhead_at_kmax", active_overhead},
        {"access_committed_overhead_at_kmax", committed_overhead}};
    nlohmann::json measured = {{"crossover_k", crossover}};
    if (!crossover.is_null()) {
      measured["crossover_new_pages_per_s"] = base_rate / crossover.get<double>();
    }
    if (!crossover_note.empty()) measured["note"] = crossover_note;
    std::string xs = crossover.is_null() ? crossover_note : fmt("%.0f", crossover.get<double>());
    say("  per new page: fault " + fmt("%.0f", c_fault) + " ns, access fetch " +
        fmt("%.0f", c_fetch) + " ns (medians over K, fetch over K <= 64); per access (K=" +
        std::to_string(ks.back()) + "): check " + fmt("%.3f", c_check) + " ns during migration (+" +
        fmt("%.1f", active_overhead * 100) + "% over the plain loop), " + fmt("%.3f", c_flag0) +
        " ns after commit (+" + fmt("%.1f", committed_overhead * 100) + "%)\n");
    say("  crossover K (measured, at-active = fault): " + xs +
        "; model (C_fault - C_fetch) / c_check: " +
        (std::isfinite(k_model) ? fmt("%.0f", k_model)
                                : std::string("inf (no measurable check cost)")) +
        "\n");
    say("  baseline access rate A = " + fmt("%.3g", base_rate) +
        " accesses/s -> the Access Tracker is cheaper "
        "while the workload touches more than A / K* = " +
        (crossover.is_null() ? std::string("n/a")
                             : fmt("%.3g", base_rate / crossover.get<double>())) +
        " new pages/s (model: " +
        (std::isfinite(k_model) && k_model > 0 ? fmt("%.3g", base_rate / k_model)
                                               : std::string("n/a")) +
        ")\n\n");
    jmodes[m->name] = {{"rows", rows}, {"model", model}, {"measured", measured}};
  }
  char line[512];
  std::snprintf(line, sizeof line,
                "sanity: %llu Fault Tracker faults / %llu fetches for %llu armed runs x %zu pages; "
                "%llu pages fetched by the access runtime for %llu at-active runs x %zu pages; "
                "Fault Tracker's own fault latency p50 %.2f us, p99 %.2f us\n",
                static_cast<unsigned long long>(faults), static_cast<unsigned long long>(fetched),
                static_cast<unsigned long long>(fault_runs), pages,
                static_cast<unsigned long long>(at_pages),
                static_cast<unsigned long long>(at_active_runs), pages, lat_pct(0.5) / 1e3,
                lat_pct(0.99) / 1e3);
  say(line);

  nlohmann::json out = {
      {"benchmark", "tracker_crossover"},
      {"platform", "EMULATED SGX (memfd_secret; no hardware enclave)"},
      {"config",
       {{"pages", pages},
        {"region", region.secret ? "memfd_secret" : "memfd (memfd_secret unavailable)"},
        {"page_order", order_s},
        {"reps", reps},
        {"ks", ks},
        {"tracker", "FaultTracker kMprotect, 4 KiB granules, restorer view prefaulted"},
        {"fetch_threads", fetch_threads},
        {"spin_ns", spin_ns},
        {"scrub_mib", scrub_mib},
        {"hardware_threads", std::thread::hardware_concurrency()}}},
      {"model",
       "per newly touched page with K accesses: Fault Tracker costs C_fault once (fault, tracker "
       "thread, copy, mprotect, wake-up); Access Tracker costs C_fetch (missed check, "
       "__constmig_at_fetch, copy, bit) + K x c_check during migration, and K x c_flag0 after "
       "commit. Access Tracker cheaper during migration while K < K* = (C_fault - C_fetch) / "
       "c_check; a workload doing A accesses/s that touches P new pages/s has K = A/P, so it "
       "favours the Access Tracker while P > A / K*."},
      {"excluded",
       "the network round trip to the source and its answer (identical for both trackers: both "
       "wait for the same page); the fetch OCALL (emulated: a function call; real SGX: an "
       "enclave exit, as the fault's AEX and exception handling would be too); the source's "
       "encryption and the enclave's decryption of the page"},
      {"variants",
       {{"base", "loop without the pass, pages present"},
        {"fault", "loop without the pass, region armed under the Fault Tracker"},
        {"at-active", "loop with the pass, flag 1, bitmap clear (every page fetched once)"},
        {"at-restored", "loop with the pass, flag 1, bitmap full (checks only)"},
        {"at-committed", "loop with the pass, flag 0 (after commit)"}}},
      {"modes", jmodes},
      {"sanity",
       {{"fault_tracker_faults", faults},
        {"fault_tracker_fetches", fetched},
        {"fault_runs", fault_runs},
        {"access_pages_fetched", at_pages},
        {"access_active_runs", at_active_runs},
        {"fault_tracker_latency_p50_ns", lat_pct(0.5)},
        {"fault_tracker_latency_p99_ns", lat_pct(0.99)}}},
      {"command", [&] {
         std::string c;
         for (int i = 0; i < argc; ++i) c += (i ? " " : "") + std::string(argv[i]);
         return c;
       }()}};
  out["table"] = table;
  if (to_stdout) {
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  std::filesystem::create_directories(out_dir);
  const std::string jp = out_dir + "/tracker_crossover.json",
                    tp = out_dir + "/tracker_crossover.txt";
  std::ofstream(jp) << out.dump(2) << "\n";
  std::ofstream(tp) << "# " << out["command"].get<std::string>() << "\n" << table;
  std::printf("wrote %s and %s\n", jp.c_str(), tp.c_str());
  return 0;
}
