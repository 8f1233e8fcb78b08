#include "workload_common/host/workload_app.h"

#include <cinttypes>
#include <cstdio>

#include "common/enclave_abi.h"

namespace workload {

using namespace constmig;
using Clock = std::chrono::steady_clock;

namespace {
constexpr uint32_t kStateMagic = 0x4c574d43;  // "CMWL"
constexpr uint32_t kStateVersion = 2;
constexpr size_t kTimelineMax = 3000;  // 5 minutes of 100 ms samples

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

std::string hex64(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "%016" PRIx64, v);
  return b;
}
}  // namespace

uint64_t WorkloadApp::data_bytes() const {
  if (opts_.data_bytes) return opts_.data_bytes;
  uint64_t heap = opts_.heap_limit ? opts_.heap_limit : (1ull << 30);
  return heap / 4 * 3;
}

std::string WorkloadApp::endpoint() const {
  return "workload " + name() + ": " + host::format_bytes(data_bytes()) + " of data, " +
         std::to_string(opts_.io_threads) +
         " load threads; `constmig status` shows ops/s and runs the verification";
}

void WorkloadApp::log(const std::string& line) const {
  std::fprintf(stderr, "workload %s: %s\n", name().c_str(), line.c_str());
  std::fflush(stderr);
}

Status WorkloadApp::run_build(const std::string& what,
                              const std::function<Result<std::vector<uint8_t>>()>& step) {
  auto t0 = Clock::now();
  auto last = t0;
  uint64_t calls = 0;
  for (;;) {
    auto r = served(step);
    if (!r.ok()) return make_error(r.error().code, what + ": " + r.error().message);
    ++calls;
    ByteReader rd(*r);
    bool done = rd.u8() != 0;
    uint64_t progress = rd.u64(), total = rd.u64();
    std::string phase(rd.str32(256));
    if (!rd.ok())
      return make_error(Errc::kInternal, what + ": malformed progress from the enclave");
    auto now = Clock::now();
    if (done || ms_between(last, now) >= 1000) {
      last = now;
      char buf[256];
      std::snprintf(
          buf, sizeof buf, "%s: %s %" PRIu64 "/%" PRIu64 " (%.0f%%), %.1f s, %" PRIu64 " ECALLs",
          what.c_str(), phase.c_str(), progress, total,
          total ? 100.0 * static_cast<double>(progress) / static_cast<double>(total) : 100.0,
          ms_between(t0, now) / 1000, calls);
      log(buf);
    }
    if (done) return ok_status();
    if (!running_) return make_error(Errc::kState, what + ": stopped");
  }
}

Result<VerifyResult> WorkloadApp::run_verify_steps(
    const std::function<Result<std::vector<uint8_t>>()>& step) {
  for (;;) {
    auto r = served(step);
    if (!r.ok()) return r.take_error();
    ByteReader rd(*r);
    bool done = rd.u8() != 0;
    bool failed = rd.u8() != 0;
    rd.u64();
    rd.u64();
    uint64_t digest = rd.u64();
    std::string detail(rd.str32(4096));
    if (!rd.ok())
      return make_error(Errc::kInternal, "malformed verification step from the enclave");
    if (failed) return VerifyResult{false, digest, detail};
    if (done) return VerifyResult{true, digest, detail};
    if (!running_) return make_error(Errc::kState, "stopped during the verification");
  }
}

Status WorkloadApp::start(platform::Enclave& e) {
  enclave_ = &e;
  running_ = true;
  {
    std::lock_guard lk(mu_);
    phase_ = "init";
  }
  log("building " + host::format_bytes(data_bytes()) + " of data in the enclave heap");
  auto t = Clock::now();
  if (Status st = init_data(e); !st.ok()) {
    running_ = false;
    return make_error(st.error().code,
                      name() + " init failed: " + st.error().message +
                          " (a smaller --data, or a larger --max-memory, may help)");
  }
  init_ms_ = ms_between(t, Clock::now());
  char buf[96];
  std::snprintf(buf, sizeof buf, "init done in %.2f s", init_ms_ / 1000);
  log(buf);
  start_load();
  return ok_status();
}

Status WorkloadApp::resume(platform::Enclave& e) {
  // Migration target: app ECALLs wait at the gate until the state has arrived; the coordinator
  // waits for restore_state, then checks and loads.
  enclave_ = &e;
  running_ = true;
  {
    std::lock_guard lk(mu_);
    phase_ = "waiting-for-migration";
  }
  coordinator_ = std::thread([this] { coordinator(); });
  return ok_status();
}

void WorkloadApp::start_load() {
  {
    std::lock_guard lk(mu_);
    phase_ = "running";
  }
  t0_ = Clock::now();
  load_started_ = true;
  sampler_ = std::thread([this] { sample_loop(); });
  for (int i = 0; i < opts_.io_threads; ++i) {
    loaders_.emplace_back([this, i] { load_loop(static_cast<unsigned>(i)); });
  }
}

void WorkloadApp::load_loop(unsigned thread) {
  uint64_t rng = mix64(load_seed_ * 0x100000001b3ull + thread);
  while (running_) {
    {
      std::unique_lock lk(pause_mu_);
      pause_cv_.wait(lk, [&] { return !pause_ || !running_; });
      if (!running_) break;
      ++active_;
    }
    auto r = served([&] { return load_once(*enclave_, thread, rng); });
    {
      std::lock_guard lk(pause_mu_);
      --active_;
    }
    pause_cv_.notify_all();
    if (r.ok()) {
      ops_here_ += *r;
    } else if (running_) {
      ++errors_;
      note_error(r.error().message);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
}

void WorkloadApp::sample_loop() {
  uint64_t last_ops = ops_here_;
  auto last = Clock::now();
  while (running_) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    auto now = Clock::now();
    uint64_t ops = ops_here_;
    double dt = ms_between(last, now) / 1000;
    double rate = dt > 0 ? static_cast<double>(ops - last_ops) / dt : 0;
    std::lock_guard lk(mu_);
    last_rate_ = rate;
    timeline_.emplace_back(ms_between(t0_, now), rate);
    if (timeline_.size() > kTimelineMax) timeline_.pop_front();
    last = now;
    last_ops = ops;
  }
}

void WorkloadApp::coordinator() {
  {
    std::unique_lock lk(restore_mu_);
    restore_cv_.wait(lk, [&] { return restored_ || !running_; });
    if (!running_) return;
  }
  // The first app ECALL waits at the gate until the target releases them.
  auto t = Clock::now();
  auto ar = served([&] { return after_restore(*enclave_); });
  if (!running_) return;
  if (!ar.ok()) {
    note_error("restore check: " + ar.error().message);
    record_verification("restore-check", VerifyResult{false, 0, ar.error().message},
                        ms_between(t, Clock::now()));
  } else if (!ar->passed) {
    record_verification("restore-check", *ar, ms_between(t, Clock::now()));
  }
  start_load();
  // Verify once the migration committed: the enclave's migration state is RUNNING again (live
  // mode: the whole heap has arrived; the verification does not fetch pages on demand).
  for (;;) {
    if (!running_) return;
    auto st = enclave_->call(abi::kEcallMigStatus, {});
    if (st.ok() && st->size() >= 4) {
      uint32_t s = 0;
      std::memcpy(&s, st->data(), 4);
      if (s == abi::kMigRunning) break;
      if (s == abi::kMigFailed || s == abi::kMigDead) return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  run_verification("after-migration", opts_.self_test_corrupt);
}

void WorkloadApp::run_verification(const std::string& reason, bool corrupt_first) {
  {
    std::lock_guard lk(mu_);
    verify_state_ = "running";
    verify_reason_ = reason;
  }
  bool quiesce = verify_quiesces_load();
  if (quiesce) {
    std::unique_lock lk(pause_mu_);
    pause_ = true;
    pause_cv_.wait(lk, [&] { return active_ == 0 || !running_; });
  }
  auto t = Clock::now();
  Result<VerifyResult> v = VerifyResult{};
  if (corrupt_first) {
    log("TESTING ONLY (--self-test-corrupt): corrupting one value in the enclave before verifying");
    if (Status c = served([&] { return corrupt(*enclave_); }); !c.ok()) v = c.take_error();
  }
  if (v.ok()) v = verify(*enclave_);
  double ms = ms_between(t, Clock::now());
  if (quiesce) {
    {
      std::lock_guard lk(pause_mu_);
      pause_ = false;
    }
    pause_cv_.notify_all();
  }
  if (!v.ok()) {
    if (!running_) {
      std::lock_guard lk(mu_);
      verify_state_ = "never";
      return;
    }
    record_verification(
        reason, VerifyResult{false, 0, "verification did not run to the end: " + v.error().message},
        ms);
    return;
  }
  record_verification(reason, *v, ms);
}

void WorkloadApp::record_verification(const std::string& reason, const VerifyResult& v, double ms) {
  {
    std::lock_guard lk(mu_);
    verify_state_ = "done";
    verify_reason_ = reason;
    verify_digest_ = v.digest;
    verify_ms_ = ms;
    // A failure sticks: a later pass does not make a corrupted instance trustworthy again.
    if (!v.passed) {
      verified_ = 0;
      verify_detail_ = v.detail;
    } else if (verified_ != 0) {
      verified_ = 1;
      verify_detail_ = v.detail;
    }
    ++verifications_;
  }
  char buf[128];
  std::snprintf(buf, sizeof buf, " (%s, %.1f ms, digest %s)", reason.c_str(), ms,
                hex64(v.digest).c_str());
  if (v.passed) {
    log("verification passed" + std::string(buf) + ": " + v.detail);
  } else {
    log("VERIFICATION FAILED" + std::string(buf) + ": " + v.detail +
        " -- the enclave's data is NOT what the source had; do not trust this instance");
  }
}

void WorkloadApp::note_error(const std::string& msg) {
  std::lock_guard lk(mu_);
  if (last_error_ != msg) {
    std::fprintf(stderr, "workload %s: load error: %s\n", name().c_str(), msg.c_str());
  }
  last_error_ = msg;
}

Result<std::vector<uint8_t>> WorkloadApp::save_state() {
  std::vector<uint8_t> out;
  ByteWriter w(out);
  w.u32(kStateMagic);
  w.u32(kStateVersion);
  w.str32(name());
  w.u64(ops_carried_ + ops_here_.load());
  w.u64(load_seed_);
  w.u64(data_bytes());
  save_app(w);
  return out;
}

Status WorkloadApp::restore_state(ByteView in) {
  ByteReader r(in);
  uint32_t magic = r.u32(), version = r.u32();
  std::string n(r.str32(64));
  uint64_t ops = r.u64(), seed = r.u64(), bytes = r.u64();
  if (!r.ok() || magic != kStateMagic || version != kStateVersion || n != name()) {
    return make_error(Errc::kFormat, "the " + name() +
                                         " host state from the source is malformed or from another "
                                         "app/version: run the same constmig build on both hosts");
  }
  CM_TRY(restore_app(r));
  if (!r.at_end()) {
    return make_error(Errc::kFormat, name() + " host state has trailing bytes: version mismatch?");
  }
  ops_carried_ = ops;
  opts_.data_bytes = bytes;  // the source's size (stats, endpoint)
  load_seed_ = mix64(seed) | 1;
  {
    std::lock_guard lk(restore_mu_);
    restored_ = true;
    migrated_in_ = true;
  }
  restore_cv_.notify_all();
  return ok_status();
}

void WorkloadApp::stop() {
  running_ = false;
  restore_cv_.notify_all();
  pause_cv_.notify_all();
  if (coordinator_.joinable()) coordinator_.join();
  if (verifier_.joinable()) verifier_.join();
  for (auto& t : loaders_) t.join();
  loaders_.clear();
  if (sampler_.joinable()) sampler_.join();
}

nlohmann::json WorkloadApp::stats(bool detailed) {
  // On demand: `constmig status` asks for a verification once (in the background; it pauses
  // the load only for apps whose load mutates what is verified).
  if (detailed && load_started_ && running_) {
    std::lock_guard lk(mu_);
    bool awaiting_commit = migrated_in_ && verifications_ == 0;
    if (verify_state_ == "never" && !awaiting_commit && !verifier_.joinable()) {
      verify_state_ = "running";
      verifier_ = std::thread([this] { run_verification("on-demand", opts_.self_test_corrupt); });
    }
  }
  std::lock_guard lk(mu_);
  nlohmann::json j = {
      {"workload", name()},           {"phase", phase_},
      {"data_bytes", data_bytes()},   {"threads", opts_.io_threads},
      {"init_ms", init_ms_},          {"ops_total", ops_carried_ + ops_here_.load()},
      {"ops_here", ops_here_.load()}, {"ops_per_s", last_rate_},
      {"errors", errors_.load()},     {"last_error", last_error_},
      {"migrated_in", migrated_in_}};
  j["verified"] = verified_ < 0 ? nlohmann::json(nullptr) : nlohmann::json(verified_ == 1);
  j["verification"] = {
      {"state", verify_state_},   {"reason", verify_reason_}, {"digest", hex64(verify_digest_)},
      {"detail", verify_detail_}, {"ms", verify_ms_},         {"runs", verifications_}};
  if (detailed) {
    nlohmann::json tl = nlohmann::json::array();
    for (auto& [t, r] : timeline_) tl.push_back({std::llround(t), std::llround(r)});
    j["timeline"] = tl;
  }
  extra_stats(j);
  return j;
}

// ---- AnchoredWorkloadApp ------------------------------------------------------------------

void AnchoredWorkloadApp::saw_batch(uint64_t seq, uint64_t digest, uint64_t items) {
  std::lock_guard lk(view_mu_);
  if (seq > seq_) {  // the latest batch this host saw, and the digest after it
    seq_ = seq;
    digest_ = digest;
  }
  items_ = items;
}

constmig::Result<VerifyResult> AnchoredWorkloadApp::after_restore(constmig::platform::Enclave& e) {
  uint64_t seq, digest;
  {
    std::lock_guard lk(view_mu_);
    seq = seq_;
    digest = digest_;
  }
  CM_ASSIGN_OR_RETURN(auto out, anchor_ecall(e, constmig::u64s({seq, digest})));
  constmig::ByteReader r(out);
  bool ok = r.u8() != 0;
  uint64_t cseq = r.u64(), cdigest = r.u64();
  std::string why(r.str32(4096));
  if (!r.at_end()) {
    return constmig::make_error(constmig::Errc::kInternal, name() + " anchor: malformed reply");
  }
  if (!ok) return VerifyResult{false, cdigest, name() + " restore check: " + why};
  std::lock_guard lk(view_mu_);
  seq_ = cseq;  // batches the source applied after the host's last view
  digest_ = cdigest;
  return VerifyResult{true, cdigest, ""};
}

constmig::Result<VerifyResult> AnchoredWorkloadApp::verify(constmig::platform::Enclave& e) {
  uint64_t seq, digest;
  {
    std::lock_guard lk(view_mu_);
    seq = seq_;
    digest = digest_;
  }
  bool begin = true;
  return run_verify_steps([&] {
    std::vector<uint8_t> in;
    constmig::ByteWriter w(in);
    w.u8(begin ? 1 : 0);
    w.u64(verify_budget());
    w.u64(seq);
    w.u64(digest);
    begin = false;
    return verify_ecall(e, in);
  });
}

void AnchoredWorkloadApp::save_app(constmig::ByteWriter& w) {
  std::lock_guard lk(view_mu_);
  w.u64(loaded_);
  w.u64(seq_);
  w.u64(digest_);
}

constmig::Status AnchoredWorkloadApp::restore_app(constmig::ByteReader& r) {
  std::lock_guard lk(view_mu_);
  loaded_ = r.u64();
  seq_ = r.u64();
  digest_ = r.u64();
  return r.ok()
             ? constmig::ok_status()
             : constmig::make_error(constmig::Errc::kFormat, name() + " host state is truncated");
}

void AnchoredWorkloadApp::anchored_stats(nlohmann::json& j, const std::string& item) {
  std::lock_guard lk(view_mu_);
  j[item + "s_loaded"] = loaded_;
  j[item + "s"] = items_;
  j["batch_seq"] = seq_;
}

}  // namespace workload
