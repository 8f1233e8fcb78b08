#include "pagecounter/host/pagecounter_app.h"

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "pagecounter/pagecounter_edl.h"
#include "platform/host_edl.h"

CONSTMIG_HOST_EDL(pc_edl, PAGECOUNTER_EDL)

namespace pagecounter {
namespace {

using namespace constmig;

class PagecounterApp final : public host::HostApp {
 public:
  explicit PagecounterApp(const host::AppOptions& o) : opts_(o) {}
  ~PagecounterApp() override { stop(); }
  std::string name() const override { return "pagecounter"; }
  std::string image_file() const override { return "pagecounter_enclave.enclave.so"; }
  std::vector<std::string> ecall_names() const override { return pc_edl::ecall_names(); }
  platform::OcallTable ocalls() override { return pc_edl::ocall_table(this); }
  std::string endpoint() const override {
    return "pagecounter oracle: " + std::to_string(opts_.pages_mib) +
           " MiB of pages, stepping continuously, " + std::to_string(opts_.io_threads) +
           " ECALL threads";
  }

  Status start(platform::Enclave& e) override {
    auto r = pc_edl::pc_init(e, u64s({opts_.pages_mib}));
    if (!r.ok()) return r.take_error();
    return resume(e);
  }
  Status resume(platform::Enclave& e) override {
    enclave_ = &e;
    running_ = true;
    worker_ = std::thread([this] { loop(); });
    // Extra threads keep ECALLs in flight concurrently (pc_touch on random pages).
    for (int i = 1; i < opts_.io_threads; ++i) {
      touchers_.emplace_back([this, i] { touch_loop(static_cast<uint64_t>(i) << 40); });
    }
    return ok_status();
  }
  Status probe(platform::Enclave& e) override {
    auto r = pc_edl::pc_touch(e, u64s({0, 0}));
    return r.ok() ? ok_status() : Status(r.take_error());
  }
  Result<std::vector<uint8_t>> save_state() override {
    std::vector<uint8_t> out;
    ByteWriter w(out);
    w.u64(rounds_);
    w.u64(touches_);
    w.u64(checks_);
    return out;
  }
  Status restore_state(ByteView in) override {
    if (in.empty()) return ok_status();
    ByteReader r(in);
    uint64_t a = r.u64(), b = r.u64(), c = r.u64();
    if (!r.at_end()) return make_error(Errc::kFormat, "pagecounter host state is malformed");
    rounds_ = a;
    touches_ = b;
    checks_ = c;
    return ok_status();
  }
  void stop() override {
    running_ = false;
    if (worker_.joinable()) worker_.join();
    for (auto& t : touchers_) t.join();
    touchers_.clear();
  }
  nlohmann::json stats(bool /*detailed*/) override {
    return {{"rounds", rounds_.load()},
            {"touches", touches_.load()},
            {"checks_passed", checks_.load()},
            {"last_error", last_error()}};
  }

 private:
  std::string last_error() {
    std::lock_guard lk(mu_);
    return err_;
  }
  // An ECALL the enclave refuses for now (frozen for a migration, or migrated away: Errc::kState)
  // is not an oracle failure: wait and ask again, like a client would, until stopped.
  template <typename F>
  auto served(F&& call) {
    for (;;) {
      auto r = call();
      if (r.ok() || r.error().code != Errc::kState || !running_) return r;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  void touch_loop(uint64_t seed) {
    while (running_) {
      auto t = served([&] { return pc_edl::pc_touch(*enclave_, u64s({seed, 256})); });
      ++seed;
      if (!t.ok()) {
        std::lock_guard lk(mu_);
        if (err_.empty() && running_) err_ = t.error().message;
        return;
      }
      touches_ += 256;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  void loop() {
    uint64_t seed = 1;
    while (running_) {
      auto s = served([&] { return pc_edl::pc_step(*enclave_); });
      auto t = s.ok() ? served([&] { return pc_edl::pc_touch(*enclave_, u64s({seed, 1024})); }) : s;
      ++seed;
      if (!s.ok() || !t.ok()) {
        std::lock_guard lk(mu_);
        err_ = !s.ok() ? s.error().message : t.error().message;
        break;
      }
      rounds_++;
      touches_ += 1024;
      if (rounds_ % 16 == 0) {
        auto c = served([&] { return pc_edl::pc_check(*enclave_); });
        if (!c.ok()) {
          std::lock_guard lk(mu_);
          err_ = c.error().message;
          break;
        }
        checks_++;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  host::AppOptions opts_;
  platform::Enclave* enclave_ = nullptr;
  std::atomic<bool> running_{false};
  std::thread worker_;
  std::vector<std::thread> touchers_;
  std::atomic<uint64_t> rounds_{0}, touches_{0}, checks_{0};
  std::mutex mu_;
  std::string err_;
};

}  // namespace

std::unique_ptr<constmig::host::HostApp> make_pagecounter_app(const constmig::host::AppOptions& o) {
  return std::make_unique<PagecounterApp>(o);
}

}  // namespace pagecounter
