// constmig: run, inspect and (in later verbs) migrate enclave applications.
// EMULATED SGX platform: see docs/security.md for what is and is not protected.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>

#include "constmig_inspect.h"
#include "host/host_app.h"
#include "host/host_control.h"
#include "host/host_migration.h"
#include "btree/host/btree_app.h"
#include "graph/host/graph_app.h"
#include "hashjoin/host/hashjoin_app.h"
#include "kvstore/host/kvstore_app.h"
#include "pagecounter/host/pagecounter_app.h"
#include "xsbench/host/xsbench_app.h"
#if CONSTMIG_HAVE_SQLITE  // the SQLite amalgamation was fetched at configure time
#include "sqlite/host/sqlite_app.h"
#endif
#include "platform/host_enclave.h"

using namespace constmig;
namespace fs = std::filesystem;

namespace {

std::atomic<bool> g_stop{false};
void on_signal(int) {
  g_stop = true;
}

void banner() {
  std::fprintf(stderr, "constmig %s | %s\n", CONSTMIG_VERSION,
               std::string(platform::kEmulatedBanner).c_str());
}

std::string exe_dir() {
  std::error_code ec;
  auto p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : p.parent_path().string();
}

// Image lookup: --image, else next to this executable.
std::string find_image(const std::string& explicit_path, const std::string& file) {
  if (!explicit_path.empty()) return explicit_path;
  return exe_dir() + "/" + file;
}

platform::PlatformOptions platform_options(const std::string& state_dir) {
  platform::PlatformOptions o;
  o.key_path = state_dir + "/platform.key";
  std::error_code ec;
  if (fs::is_directory(state_dir + "/trust", ec) && !fs::is_empty(state_dir + "/trust", ec)) {
    o.trust_store_path = state_dir + "/trust";
  }
  return o;
}

int fail(const Error& e) {
  std::fprintf(stderr, "constmig: error (%s): %s\n", errc_name(e.code), e.message.c_str());
  return 1;
}

struct RunArgs {
  std::string app = "kvstore";
  std::string image;
  std::string max_memory = "1G";
  uint32_t slots = 8;
  host::AppOptions app_opts;
  double duration = 0;
  double stats_interval = 5;
  std::string state_dir;
  std::string control;
  // receive only
  std::string listen;
  int accept_timeout = 0;
  int resume_timeout = 30;  // receive: seconds to wait for a lost source to reconnect
  int workers = 2;
  std::string capture;
  std::string data = "0";  // workload suite: --data
};

std::string default_control(const std::string& state_dir, const std::string& app) {
  return state_dir + "/" + app + ".ctl";
}

struct Running {
  std::unique_ptr<platform::Platform> plat;
  std::unique_ptr<platform::Enclave> enclave;
  std::unique_ptr<host::HostApp> app;
};

Result<Running> create_app_enclave(const RunArgs& a) {
  auto& reg = host::app_registry();
  auto it = reg.find(a.app);
  if (it == reg.end()) {
    std::string names;
    for (auto& [n, f] : reg) names += (names.empty() ? "" : ", ") + n;
    return make_error(Errc::kInvalidArgument, "unknown app '" + a.app + "' (known: " + names + ")");
  }
  CM_ASSIGN_OR_RETURN(uint64_t heap, host::parse_size(a.max_memory));
  host::AppOptions ao = a.app_opts;
  ao.heap_limit = heap;
  CM_ASSIGN_OR_RETURN(ao.data_bytes, host::parse_size(a.data));
  if (ao.data_bytes > heap) {
    return make_error(Errc::kInvalidArgument, "--data " + a.data + " does not fit in --max-memory " +
                                                  a.max_memory + ": raise --max-memory");
  }
  Running r;
  r.app = it->second(ao);
  CM_ASSIGN_OR_RETURN(r.plat, platform::Platform::create_emulated(platform_options(a.state_dir)));
  platform::EnclaveConfig cfg;
  cfg.image_path = find_image(a.image, r.app->image_file());
  cfg.heap_limit = heap;
  cfg.thread_slots = a.slots;
  cfg.expected_ecalls = r.app->ecall_names();
  cfg.ocalls = r.app->ocalls();
  auto t0 = std::chrono::steady_clock::now();
  CM_ASSIGN_OR_RETURN(r.enclave, r.plat->create_enclave(cfg));
  double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr,
               "enclave %s loaded in %.1f ms: image %s\n  measurement %s\n  heap limit %s at "
               "0x%llx, %u thread slots\n",
               r.enclave->app_name().c_str(), ms, cfg.image_path.c_str(),
               platform::to_hex(r.enclave->measurement()).c_str(), host::format_bytes(heap).c_str(),
               static_cast<unsigned long long>(r.enclave->ranges().heap_base), cfg.thread_slots);
  return r;
}

host::MigrateOptions migrate_options_from(const nlohmann::json& req) {
  host::MigrateOptions o;
  std::string mode = req.value("mode", "constmig");
  o.mode = mode == "stop-and-copy" ? wire::Mode::kStopAndCopy : wire::Mode::kConstMig;
  if (auto t = host::parse_tracker(req.value("tracker", "fault")); t.ok()) o.tracker = *t;
  o.granule_pages = req.value("granule_pages", 16u);
  o.workers = req.value("workers", 2);
  o.batch_pages = req.value("batch_pages", 0u);
  o.capture_path = req.value("capture", "");
  o.replay_capture = req.value("replay_capture", "");
  if (auto f = host::parse_fault(req.value("fault", "none")); f.ok()) o.fault = *f;
  o.resume_timeout = std::chrono::seconds(req.value("resume_timeout", 30));
  o.cut_at_percent = req.value("cut_at", 0);
  return o;
}

// Serve until Ctrl-C, --duration, or a committed migration away. Returns the exit status.
int serve(Running& r, const RunArgs& a) {
  std::atomic<bool> migrated{false};
  std::mutex mig_mu;    // held for the whole of a migration
  std::mutex stats_mu;  // guards last_migration and current_migration
  nlohmann::json last_migration;
  nlohmann::json current_migration;  // latest progress of a running migration
  host::ControlServer ctl;
  std::string ctl_path = a.control.empty() ? default_control(a.state_dir, a.app) : a.control;
  std::error_code ec;
  fs::create_directories(fs::path(ctl_path).parent_path(), ec);
  auto handler = [&](const nlohmann::json& req,
                     const std::function<void(const nlohmann::json&)>& emit) {
    std::string cmd = req.value("cmd", "");
    if (cmd == "status") {
      nlohmann::json j = {{"event", "result"},
                          {"ok", true},
                          {"app", r.app->name()},
                          {"platform", "emulated"},
                          {"app_stats", r.app->stats(true)},
                          {"migrated_away", migrated.load()}};
      if (!migrated && !r.enclave->app_ecalls_held()) {
        if (auto hs = r.enclave->heap_stats(); hs.ok()) {
          j["heap"] = {{"in_use", hs->in_use}, {"top", hs->top}, {"limit", hs->limit}};
        }
      }
      std::lock_guard lk(stats_mu);
      if (!last_migration.is_null()) j["last_migration"] = last_migration;
      if (!current_migration.is_null()) j["migration_in_progress"] = current_migration;
      emit(j);
      return;
    }
    if (cmd == "resume") {
      if (!req.value("force", false)) {
        emit({{"event", "result"},
              {"ok", false},
              {"error", "resume needs force: it is only safe if the target never committed"}});
        return;
      }
      auto rr = r.enclave->call(abi::kEcallMigForceResume, {});
      if (rr.ok()) r.enclave->release_app_ecalls();
      emit({{"event", "result"}, {"ok", rr.ok()}, {"error", rr.ok() ? "" : rr.error().message}});
      return;
    }
    if (cmd != "migrate") {
      emit({{"event", "result"},
            {"ok", false},
            {"error", "unknown command '" + cmd + "' (status, migrate, resume)"}});
      return;
    }
    std::unique_lock lk(mig_mu, std::try_to_lock);
    if (!lk.owns_lock() || migrated) {
      emit({{"event", "result"},
            {"ok", false},
            {"error",
             migrated ? "this enclave already migrated away" : "a migration is already running"}});
      return;
    }
    auto fd = host::tcp_connect(req.value("to", ""), 10000);
    if (!fd.ok()) {
      emit({{"event", "result"}, {"ok", false}, {"error", fd.error().message}});
      return;
    }
    auto o = migrate_options_from(req);
    o.urgent_to = req.value("to", "");  // live mode's urgent connection goes to the same place
    auto outcome =
        host::run_source(*r.enclave, *r.plat, *r.app, *fd, o, [&](const nlohmann::json& p) {
          nlohmann::json j = p;
          j["event"] = "progress";
          emit(j);
          std::lock_guard sl(stats_mu);
          current_migration = p;
        });
    ::close(*fd);
    {
      std::lock_guard sl(stats_mu);
      last_migration = outcome.stats;
      current_migration = nullptr;
    }
    bool ok = outcome.kind == host::MigrationOutcome::kCommitted;
    nlohmann::json res = {{"event", "result"}, {"ok", ok}, {"stats", outcome.stats}};
    if (!ok) res["error"] = outcome.error;
    if (outcome.kind == host::MigrationOutcome::kFailed &&
        outcome.stats.value("source-frozen", false)) {
      res["hint"] =
          "the source enclave stays FROZEN (no abort token arrived): if you are sure the target "
          "did not commit, `constmig resume --force --control " +
          ctl_path + "`";
    }
    emit(res);
    if (ok) {
      migrated = true;
      g_stop = true;
    }
  };
  if (auto st = ctl.start(ctl_path, handler); !st.ok()) return fail(st.error());
  std::fprintf(stderr, "%s\n  control socket %s (constmig status/migrate --control %s)\n",
               r.app->endpoint().c_str(), ctl_path.c_str(), ctl_path.c_str());
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  auto start = std::chrono::steady_clock::now();
  auto last = start;
  while (!g_stop) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    auto now = std::chrono::steady_clock::now();
    if (a.duration > 0 && std::chrono::duration<double>(now - start).count() >= a.duration) break;
    if (a.stats_interval > 0 &&
        std::chrono::duration<double>(now - last).count() >= a.stats_interval) {
      last = now;
      std::unique_lock lk(mig_mu, std::try_to_lock);
      if (!lk.owns_lock()) continue;  // migrating
      nlohmann::json j = r.app->stats();
      if (auto hs = r.enclave->heap_stats(); hs.ok()) {
        j["heap"] = {{"in_use", hs->in_use}, {"top", hs->top}, {"limit", hs->limit}};
      }
      std::fprintf(stderr, "stats %s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    }
  }
  ctl.stop();
  // App threads may wait at a held ECALL gate (a source left FROZEN without a verdict): let them
  // in so that stop() can join them; the enclave itself refuses what it must (FROZEN, DEAD).
  r.enclave->release_app_ecalls();
  r.app->stop();
  nlohmann::json j = migrated
                         ? nlohmann::json{{"migrated_away", true}, {"migration", last_migration}}
                         : r.app->stats();
  std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  return 0;
}

int cmd_run(const RunArgs& a) {
  banner();
  auto r = create_app_enclave(a);
  if (!r.ok()) return fail(r.error());
  if (auto st = r->app->start(*r->enclave); !st.ok()) return fail(st.error());
  return serve(*r, a);
}

int cmd_receive(const RunArgs& a) {
  banner();
  auto r = create_app_enclave(a);
  if (!r.ok()) return fail(r.error());
  auto lfd = host::tcp_listen(a.listen);
  if (!lfd.ok()) return fail(lfd.error());
  // App ECALLs wait at the gate until the state has arrived; the host half may already serve
  // (kvstore accepts clients, whose requests wait).
  (void)r->enclave->hold_app_ecalls(std::chrono::milliseconds(0));
  if (auto st = r->app->resume(*r->enclave); !st.ok()) return fail(st.error());
  std::fprintf(stderr, "waiting for an incoming migration on %s\n", a.listen.c_str());
  if (a.accept_timeout > 0) {
    pollfd p{*lfd, POLLIN, 0};
    if (::poll(&p, 1, a.accept_timeout * 1000) != 1) {
      return fail(make_error(Errc::kTimeout, "no migration arrived within " +
                                                 std::to_string(a.accept_timeout) + " s"));
    }
  }
  int fd = ::accept4(*lfd, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) {
    ::close(*lfd);
    return fail(make_error(Errc::kIo, std::string("accept: ") + std::strerror(errno)));
  }
  host::MigrateOptions o;
  o.workers = a.workers;
  o.capture_path = a.capture;
  o.listen_fd = *lfd;  // a live migration's urgent connection (and a recovery) arrives here too
  o.resume_timeout = std::chrono::seconds(a.resume_timeout);
  auto outcome = host::run_target(*r->enclave, *r->plat, *r->app, fd, o, nullptr);
  ::close(fd);
  ::close(*lfd);
  if (outcome.kind != host::MigrationOutcome::kCommitted) {
    std::fprintf(stderr,
                 "constmig: the incoming migration was refused; this enclave will not run it: %s\n",
                 outcome.error.c_str());
    std::printf("%s\n", outcome.stats.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    // Let the host half's waiting ECALLs in: the FAILED enclave refuses them, so they end.
    r->enclave->release_app_ecalls();
    r->app->stop();
    return 1;
  }
  std::fprintf(stderr, "migration received: %s\n", outcome.stats.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  return serve(*r, a);
}

std::string progress_bar(const nlohmann::json& p) {
  uint64_t total = p.value("pages_total", 0ull), done = p.value("pages_done", 0ull);
  double frac = total ? static_cast<double>(done) / static_cast<double>(total) : 0.0;
  int w = 30, fill = static_cast<int>(frac * w);
  std::string bar(static_cast<size_t>(fill), '=');
  bar.resize(static_cast<size_t>(w), ' ');
  char buf[160];
  std::snprintf(buf, sizeof buf, "\r[%s] %3.0f%% %llu/%llu pages  %-14s", bar.c_str(), frac * 100,
                static_cast<unsigned long long>(done), static_cast<unsigned long long>(total),
                p.value("phase", "").c_str());
  return buf;
}

int cmd_migrate(const std::string& control, const nlohmann::json& req) {
  bool tty = isatty(STDERR_FILENO);
  auto res = host::control_request(control, req, [&](const nlohmann::json& line) {
    if (tty) {
      std::fprintf(stderr, "%s", progress_bar(line).c_str());
    } else if (line.value("phase", "") != "heap-stream") {
      std::fprintf(stderr, "progress %s\n", line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    }
  });
  if (tty) std::fprintf(stderr, "\n");
  if (!res.ok()) return fail(res.error());
  if (res->contains("stats")) std::printf("%s\n", (*res)["stats"].dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  if (!res->value("ok", false)) {
    std::fprintf(stderr, "constmig: migration did not complete: %s\n",
                 res->value("error", std::string("?")).c_str());
    if (res->contains("hint"))
      std::fprintf(stderr, "hint: %s\n", (*res)["hint"].get<std::string>().c_str());
    return 1;
  }
  return 0;
}

int cmd_simple(const std::string& control, const nlohmann::json& req) {
  auto res = host::control_request(control, req, nullptr);
  if (!res.ok()) return fail(res.error());
  std::printf("%s\n", res->dump(2).c_str());
  return res->value("ok", false) ? 0 : 1;
}

int cmd_image_check(const std::vector<std::string>& images, uint32_t slots) {
  int rc = 0;
  for (const auto& img : images) {
    auto m = platform::check_image(img, slots);
    if (!m.ok()) {
      fail(m.error());
      rc = 1;
      continue;
    }
    std::printf("%s: ok (emulated SGX platform checks)\n  measurement %s (%u thread slots)\n",
                img.c_str(), platform::to_hex(*m).c_str(), slots);
  }
  return rc;
}

int cmd_platform_info(const std::string& state_dir, bool export_key) {
  auto opts = platform_options(state_dir);
  auto plat = platform::Platform::create_emulated(opts);
  if (!plat.ok()) return fail(plat.error());
  if (export_key) {
    std::printf("%s", (*plat)->key().public_key_pem().c_str());
    return 0;
  }
  auto id = (*plat)->key().key_id();
  std::printf("backend      %s\n", std::string((*plat)->backend()).c_str());
  std::printf("warning      %s\n", std::string(platform::kEmulatedBanner).c_str());
  std::printf("key          %s\n", opts.key_path.c_str());
  std::printf("key id       %s\n", platform::to_hex(ByteView(id.data(), id.size())).c_str());
  std::printf(
      "trust store  %s (%zu keys)\n",
      opts.trust_store_path.empty() ? "(this platform only)" : opts.trust_store_path.c_str(),
      (*plat)->trust_store().size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  host::app_registry()["kvstore"] = kvstore_app::make_kvstore_app;
  host::app_registry()["pagecounter"] = pagecounter::make_pagecounter_app;
  host::app_registry()["btree"] = btree::make_btree_app;
  host::app_registry()["hashjoin"] = hashjoin::make_hashjoin_app;
  host::app_registry()["graph"] = graph::make_graph_app;
  host::app_registry()["xsbench"] = xsbench::make_xsbench_app;
#if CONSTMIG_HAVE_SQLITE
  host::app_registry()["sqlite"] = sqlitewl::make_sqlite_app;
#endif

  CLI::App cli{
      "constmig: secure live migration of enclave applications (ConstMig).\n"
      "Runs on an EMULATED SGX platform: enclave memory is memfd_secret (hidden from other\n"
      "processes), images are measured and quotes are signed by a per-platform key, but there\n"
      "is NO hardware protection. See docs/security.md."};
  cli.require_subcommand(1);
  std::string state_dir = platform::default_state_dir();
  cli.add_option(
         "--state-dir", state_dir,
         "platform key and trust store folder (platform.key, trust/*.pem); env CONSTMIG_HOME")
      ->capture_default_str();

  RunArgs ra;
  auto* run = cli.add_subcommand("run", "start an enclave app and serve until Ctrl-C");
  run->add_option("--app", ra.app,
                  "app to run: kvstore (Redis RESP subset), pagecounter (oracle), or a workload: "
                  "btree, hashjoin, graph, xsbench, sqlite (if built: CONSTMIG_SQLITE)")
      ->capture_default_str();
  run->add_option("--image", ra.image,
                  "enclave image (default: <app>_enclave.enclave.so next to constmig)");
  run->add_option("--max-memory", ra.max_memory, "enclave heap limit, e.g. 256M, 4G")
      ->capture_default_str();
  run->add_option("--slots", ra.slots, "ECALL thread slots (TCS analogue)")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  run->add_option("--bind", ra.app_opts.bind, "kvstore: listen address")->capture_default_str();
  run->add_option("--port", ra.app_opts.port, "kvstore: TCP port (0 = any free port)")
      ->capture_default_str();
  run->add_option("--io-threads", ra.app_opts.io_threads,
                  "kvstore: network threads; workloads: load threads")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  run->add_option("--pages", ra.app_opts.pages_mib, "pagecounter: MiB of oracle pages")
      ->capture_default_str()
      ->check(CLI::Range(1, 65536));
  run->add_option("--data", ra.data,
                  "workloads: data to build in the heap, e.g. 256M, 1G (0 = 3/4 of --max-memory)")
      ->capture_default_str();
  run->add_flag("--self-test-corrupt", ra.app_opts.self_test_corrupt,
                "TESTING ONLY (workloads): corrupt one value before the first verification");
  run->add_option("--duration", ra.duration, "stop after this many seconds (0 = until Ctrl-C)")
      ->capture_default_str();
  run->add_option("--stats-interval", ra.stats_interval,
                  "seconds between stats lines on stderr (0 = off)")
      ->capture_default_str();
  run->add_option("--control", ra.control, "control socket (default: <state-dir>/<app>.ctl)");

  // receive: the same app options, plus where to listen.
  auto* recv = cli.add_subcommand(
      "receive",
      "start an app's enclave as a migration TARGET: wait for its state, then serve. The mode "
      "and tracker are the source's choice (migrate --mode/--tracker); in live mode the app "
      "serves as soon as the small state is in and the heap arrives behind it");
  recv->add_option("--app", ra.app, "app (must match the source)")->capture_default_str();
  recv->add_option("--image", ra.image, "enclave image (must have the source's measurement)");
  recv->add_option("--max-memory", ra.max_memory,
                   "enclave heap limit (>= the source's heap in use)")
      ->capture_default_str();
  recv->add_option("--slots", ra.slots, "ECALL thread slots")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  recv->add_option("--listen", ra.listen, "HOST:PORT to accept the migration on")->required();
  recv->add_option("--bind", ra.app_opts.bind, "kvstore: listen address for clients")
      ->capture_default_str();
  recv->add_option("--port", ra.app_opts.port, "kvstore: client TCP port")->capture_default_str();
  recv->add_option("--io-threads", ra.app_opts.io_threads,
                   "kvstore: network threads; workloads: load threads")
      ->capture_default_str();
  recv->add_flag("--self-test-corrupt", ra.app_opts.self_test_corrupt,
                 "TESTING ONLY (workloads): corrupt one value in the enclave before the "
                 "post-migration verification, which must then fail");
  recv->add_option("--workers", ra.workers, "decrypt/verify workers")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  recv->add_option("--accept-timeout", ra.accept_timeout,
                   "give up if no migration arrives within N s (0 = wait)")
      ->capture_default_str();
  recv->add_option("--capture", ra.capture,
                   "record the stream this side sends (for constmig inspect)");
  recv->add_option("--resume-timeout", ra.resume_timeout,
                   "live mode: if the connection to the source is lost while the heap streams, "
                   "keep the app running and wait this many seconds for the source to reconnect "
                   "(it does so by itself); then stop the app (0 = stop at once)")
      ->capture_default_str()
      ->check(CLI::Range(0, 3600));
  recv->add_option("--control", ra.control,
                   "control socket after the migration (default: <state-dir>/<app>.ctl)");
  recv->add_option("--duration", ra.duration,
                   "after the migration, stop after N s (0 = until Ctrl-C)")
      ->capture_default_str();
  recv->add_option("--stats-interval", ra.stats_interval, "seconds between stats lines (0 = off)")
      ->capture_default_str();

  std::string control, to, mode = "constmig", tracker = "fault", fault = "none", capture, replay;
  int workers = 2;
  uint32_t batch = 0, granule = 16;
  auto* mig = cli.add_subcommand(
      "migrate", "send a running app (constmig run --control PATH) to a target (constmig receive)");
  mig->add_option("--control", control, "control socket of the SOURCE process")->required();
  mig->add_option("--to", to, "HOST:PORT where `constmig receive --listen` waits")->required();
  mig->add_option("--mode", mode,
                  "constmig: live, the target resumes after the small state and fetches the heap "
                  "in the background and on demand; stop-and-copy: the whole heap moves while "
                  "the app is stopped (the MigSGX baseline)")
      ->capture_default_str()
      ->check(CLI::IsMember({"stop-and-copy", "constmig"}));
  mig->add_option("--tracker", tracker,
                  "constmig mode: how the target keeps the app off pages not yet arrived: fault "
                  "(mprotect + SIGSEGV on the secret heap), uffd (userfaultfd; the target heap "
                  "becomes ordinary, non-secret memory: for comparison) or access (the enclave's "
                  "compiled-in checks and its own restored-bitmap; no page faults, nothing for "
                  "the host to get wrong; needs an image built with TRACKER access, as the "
                  "shipped apps are)")
      ->capture_default_str()
      ->check(CLI::IsMember({"fault", "uffd", "access"}));
  mig->add_option("--granule-pages", granule,
                  "constmig mode: pages fetched together when the app touches a missing page")
      ->capture_default_str()
      ->check(CLI::IsMember({1, 2, 4, 8, 16, 32, 64, 128, 256}));
  mig->add_option("--workers", workers, "encrypt workers on the source")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  mig->add_option("--batch-pages", batch,
                  "pages per PAGES frame (0 = auto: stream buffers <= 1% of the heap)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  mig->add_option("--capture", capture,
                  "record the source's outgoing stream (constmig inspect FILE)");
  mig->add_option("--fault", fault,
                  "TESTING ONLY: corrupt the outgoing stream: " + host::fault_names())
      ->capture_default_str();
  mig->add_option("--replay-capture", replay,
                  "TESTING ONLY: capture of an earlier migration (--fault earlier-migration)");
  int resume_timeout = 30, cut_at = 0;
  mig->add_option("--resume-timeout", resume_timeout,
                  "live mode: if the connection is lost while the heap streams, reconnect "
                  "(backoff 0.1..2 s) for up to this many seconds and go on from what the target "
                  "has (fresh keys, next epoch); the source stays FROZEN if that fails (0 = no "
                  "reconnection)")
      ->capture_default_str()
      ->check(CLI::Range(0, 3600));
  mig->add_option("--cut-at", cut_at,
                  "TESTING ONLY (live mode): drop both connections once this percentage of the "
                  "heap has been streamed")
      ->capture_default_str()
      ->check(CLI::Range(0, 100));

  auto* status =
      cli.add_subcommand("status", "JSON status and stats of a running constmig process");
  status->add_option("--control", control, "control socket")->required();
  bool force = false;
  auto* resume = cli.add_subcommand(
      "resume", "resume a FROZEN source whose target never answered (operator override)");
  resume->add_option("--control", control, "control socket of the source")->required();
  resume
      ->add_flag("--force", force, "confirm: the target did not commit (otherwise two copies run)")
      ->required();

  std::string inspect_file;
  bool inspect_json = false;
  auto* insp = cli.add_subcommand("inspect",
                                  "decode a captured migration stream's framing (never plaintext)");
  insp->add_option("file", inspect_file, "capture file (--capture)")
      ->required()
      ->check(CLI::ExistingFile);
  insp->add_flag("--json", inspect_json, "machine-readable output");

  std::vector<std::string> images;
  uint32_t slots = 8;
  auto* image = cli.add_subcommand("image", "enclave image tools");
  image->require_subcommand(1);
  auto* check = image->add_subcommand("check", "run the loader's checks and print the measurement");
  check->add_option("images", images, "enclave image files")->required()->check(CLI::ExistingFile);
  check->add_option("--slots", slots, "thread slots the measurement is computed for")
      ->capture_default_str();

  bool export_key = false;
  auto* plat =
      cli.add_subcommand("platform", "the emulated platform's signing key and trust store");
  plat->add_flag("--export-key", export_key,
                 "print this platform's public key (PEM) for other hosts' trust/ folder");

  CLI11_PARSE(cli, argc, argv);
  ra.state_dir = state_dir;
  if (run->parsed()) return cmd_run(ra);
  if (recv->parsed()) return cmd_receive(ra);
  if (mig->parsed()) {
    if (auto f = host::parse_fault(fault); !f.ok()) return fail(f.error());
    return cmd_migrate(control, {{"cmd", "migrate"},
                                 {"to", to},
                                 {"mode", mode},
                                 {"tracker", tracker},
                                 {"granule_pages", granule},
                                 {"workers", workers},
                                 {"batch_pages", batch},
                                 {"fault", fault},
                                 {"capture", capture},
                                 {"replay_capture", replay},
                                 {"resume_timeout", resume_timeout},
                                 {"cut_at", cut_at}});
  }
  if (status->parsed()) return cmd_simple(control, {{"cmd", "status"}});
  if (resume->parsed()) return cmd_simple(control, {{"cmd", "resume"}, {"force", force}});
  if (insp->parsed()) return constmig_inspect_main(inspect_file, inspect_json);
  if (check->parsed()) return cmd_image_check(images, slots);
  if (plat->parsed()) return cmd_platform_info(state_dir, export_key);
  return 0;
}
