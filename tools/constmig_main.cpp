// constmig: run, inspect and (in later verbs) migrate enclave applications.
// EMULATED SGX platform: see docs/security.md for what is and is not protected.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "host/host_app.h"
#include "kvstore/host/kvstore_app.h"
#include "pagecounter/host/pagecounter_app.h"
#include "platform/host_enclave.h"

using namespace constmig;
namespace fs = std::filesystem;

namespace {

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop = true; }

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
};

int cmd_run(const RunArgs& a) {
  banner();
  auto& reg = host::app_registry();
  auto it = reg.find(a.app);
  if (it == reg.end()) {
    std::string names;
    for (auto& [n, f] : reg) names += (names.empty() ? "" : ", ") + n;
    return fail(make_error(Errc::kInvalidArgument, "unknown app '" + a.app + "' (known: " + names + ")"));
  }
  auto heap = host::parse_size(a.max_memory);
  if (!heap.ok()) return fail(heap.error());
  auto app = it->second(a.app_opts);
  auto plat = platform::Platform::create_emulated(platform_options(a.state_dir));
  if (!plat.ok()) return fail(plat.error());
  platform::EnclaveConfig cfg;
  cfg.image_path = find_image(a.image, app->image_file());
  cfg.heap_limit = *heap;
  cfg.thread_slots = a.slots;
  cfg.expected_ecalls = app->ecall_names();
  cfg.ocalls = app->ocalls();
  auto t0 = std::chrono::steady_clock::now();
  auto enclave = (*plat)->create_enclave(cfg);
  if (!enclave.ok()) return fail(enclave.error());
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "enclave %s loaded in %.1f ms: image %s\n  measurement %s\n  heap limit %s at 0x%llx, %u thread slots\n",
               (*enclave)->app_name().c_str(), ms, cfg.image_path.c_str(),
               platform::to_hex((*enclave)->measurement()).c_str(),
               host::format_bytes(*heap).c_str(),
               static_cast<unsigned long long>((*enclave)->ranges().heap_base), cfg.thread_slots);
  if (auto st = app->start(**enclave); !st.ok()) return fail(st.error());
  std::fprintf(stderr, "%s (Ctrl-C to stop)\n", app->endpoint().c_str());
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  auto start = std::chrono::steady_clock::now();
  auto last = start;
  while (!g_stop) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    auto now = std::chrono::steady_clock::now();
    if (a.duration > 0 && std::chrono::duration<double>(now - start).count() >= a.duration) break;
    if (a.stats_interval > 0 && std::chrono::duration<double>(now - last).count() >= a.stats_interval) {
      last = now;
      nlohmann::json j = app->stats();
      if (auto hs = (*enclave)->heap_stats(); hs.ok()) {
        j["heap"] = {{"in_use", hs->in_use}, {"top", hs->top}, {"limit", hs->limit}};
      }
      std::fprintf(stderr, "stats %s\n", j.dump().c_str());
    }
  }
  app->stop();
  nlohmann::json j = app->stats();
  std::printf("%s\n", j.dump(2).c_str());
  return 0;
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
  std::printf("trust store  %s (%zu keys)\n",
              opts.trust_store_path.empty() ? "(this platform only)" : opts.trust_store_path.c_str(),
              (*plat)->trust_store().size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  host::app_registry()["kvstore"] = kvstore_app::make_kvstore_app;
  host::app_registry()["pagecounter"] = pagecounter::make_pagecounter_app;

  CLI::App cli{
      "constmig: secure live migration of enclave applications (ConstMig).\n"
      "Runs on an EMULATED SGX platform: enclave memory is memfd_secret (hidden from other\n"
      "processes), images are measured and quotes are signed by a per-platform key, but there\n"
      "is NO hardware protection. See docs/security.md."};
  cli.require_subcommand(1);
  std::string state_dir = platform::default_state_dir();
  cli.add_option("--state-dir", state_dir,
                 "platform key and trust store folder (platform.key, trust/*.pem); env CONSTMIG_HOME")
      ->capture_default_str();

  RunArgs ra;
  auto* run = cli.add_subcommand("run", "start an enclave app and serve until Ctrl-C");
  run->add_option("--app", ra.app, "app to run: kvstore (Redis RESP subset) or pagecounter (oracle)")
      ->capture_default_str();
  run->add_option("--image", ra.image, "enclave image (default: <app>_enclave.enclave.so next to constmig)");
  run->add_option("--max-memory", ra.max_memory, "enclave heap limit, e.g. 256M, 4G")->capture_default_str();
  run->add_option("--slots", ra.slots, "ECALL thread slots (TCS analogue)")->capture_default_str()->check(CLI::Range(1, 256));
  run->add_option("--bind", ra.app_opts.bind, "kvstore: listen address")->capture_default_str();
  run->add_option("--port", ra.app_opts.port, "kvstore: TCP port (0 = any free port)")->capture_default_str();
  run->add_option("--io-threads", ra.app_opts.io_threads, "kvstore: network threads")->capture_default_str()->check(CLI::Range(1, 64));
  run->add_option("--pages", ra.app_opts.pages_mib, "pagecounter: MiB of oracle pages")->capture_default_str()->check(CLI::Range(1, 65536));
  run->add_option("--duration", ra.duration, "stop after this many seconds (0 = until Ctrl-C)")->capture_default_str();
  run->add_option("--stats-interval", ra.stats_interval, "seconds between stats lines on stderr (0 = off)")->capture_default_str();

  std::vector<std::string> images;
  uint32_t slots = 8;
  auto* image = cli.add_subcommand("image", "enclave image tools");
  image->require_subcommand(1);
  auto* check = image->add_subcommand("check", "run the loader's checks and print the measurement");
  check->add_option("images", images, "enclave image files")->required()->check(CLI::ExistingFile);
  check->add_option("--slots", slots, "thread slots the measurement is computed for")->capture_default_str();

  bool export_key = false;
  auto* plat = cli.add_subcommand("platform", "the emulated platform's signing key and trust store");
  plat->add_flag("--export-key", export_key, "print this platform's public key (PEM) for other hosts' trust/ folder");

  CLI11_PARSE(cli, argc, argv);
  ra.state_dir = state_dir;
  if (run->parsed()) return cmd_run(ra);
  if (check->parsed()) return cmd_image_check(images, slots);
  if (plat->parsed()) return cmd_platform_info(state_dir, export_key);
  return 0;
}
