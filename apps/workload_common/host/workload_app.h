// The workload suite's common host half (UNTRUSTED): what btree, hashjoin, graph and xsbench
// share. A WorkloadApp builds its data set in bounded ECALLs, drives a closed-loop load from
// --io-threads threads (short ECALLs, so a migration can quiesce between them), samples ops/s
// every 100 ms, and verifies the enclave's data against what the host carried across a
// migration: once in the background after the migration committed, or on demand (`constmig
// status` asks stats(true)). A failed verification is reported loudly: stats `verified:false`
// and a log line.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/bytes.h"
#include "host/host_app.h"
#include "workload_common/workload_util.h"

namespace workload {

struct VerifyResult {
  bool passed = false;
  uint64_t digest = 0;
  std::string detail;
};

class WorkloadApp : public constmig::host::HostApp {
 public:
  explicit WorkloadApp(const constmig::host::AppOptions& o) : opts_(o) {}
  ~WorkloadApp() override = default;  // subclasses call stop() in their destructor

  constmig::Status start(constmig::platform::Enclave& e) final;
  constmig::Status resume(constmig::platform::Enclave& e) final;
  constmig::Result<std::vector<uint8_t>> save_state() final;
  constmig::Status restore_state(constmig::ByteView in) final;
  void stop() final;
  nlohmann::json stats(bool detailed) final;
  std::string endpoint() const override;

  // Bytes of data this instance builds (AppOptions::data_bytes, or 3/4 of the heap limit).
  uint64_t data_bytes() const;

 protected:
  // Build the data set (bounded ECALLs, progress via run_build). Called once by start().
  virtual constmig::Status init_data(constmig::platform::Enclave& e) = 0;
  // One short load ECALL for load thread `thread`; returns the operations it did.
  virtual constmig::Result<uint64_t> load_once(constmig::platform::Enclave& e, unsigned thread,
                                               uint64_t& rng) = 0;
  // Whole verification, in bounded ECALLs (each through served()).
  virtual constmig::Result<VerifyResult> verify(constmig::platform::Enclave& e) = 0;
  // TESTING ONLY: change one value inside the enclave (not its digests).
  virtual constmig::Status corrupt(constmig::platform::Enclave& e) = 0;
  // Migration target, after the state arrived and before any load ECALL: a cheap check of what
  // the host carried against the enclave. A failure marks the instance unverified.
  virtual constmig::Result<VerifyResult> after_restore(constmig::platform::Enclave&) {
    return VerifyResult{true, 0, ""};
  }
  // Verification must see no concurrent load ECALLs (the load mutates what it checks).
  virtual bool verify_quiesces_load() const { return false; }
  // What the target needs to verify (expected digests, seeds), after the common header.
  virtual void save_app(constmig::ByteWriter& w) = 0;
  virtual constmig::Status restore_app(constmig::ByteReader& r) = 0;
  virtual void extra_stats(nlohmann::json&) {}

  // An ECALL the enclave refuses for now (frozen for a migration, migrated away: Errc::kState)
  // is waited out, not a failure, until stop().
  template <typename F>
  auto served(F&& call) {
    for (;;) {
      auto r = call();
      if (r.ok() || r.error().code != constmig::Errc::kState || !running_) return r;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  bool running() const { return running_; }
  void log(const std::string& line) const;
  // Calls `step` (one build ECALL, output = BuildStep) until done, logging progress each second.
  constmig::Status run_build(const std::string& what,
                             const std::function<constmig::Result<std::vector<uint8_t>>()>& step);
  // Calls `step` (one verification ECALL, output = VerifyStep) until done or failed.
  constmig::Result<VerifyResult> run_verify_steps(
      const std::function<constmig::Result<std::vector<uint8_t>>()>& step);

  constmig::host::AppOptions opts_;
  constmig::platform::Enclave* enclave_ = nullptr;

 private:
  void start_load();
  void load_loop(unsigned thread);
  void sample_loop();
  void coordinator();  // migration target: restore check, load, commit wait, verification
  void run_verification(const std::string& reason, bool corrupt_first);
  void record_verification(const std::string& reason, const VerifyResult& v, double ms);
  void note_error(const std::string& msg);

  std::atomic<bool> running_{false};
  std::atomic<bool> load_started_{false};
  std::vector<std::thread> loaders_;
  std::thread sampler_, coordinator_, verifier_;

  // Pause of the load for a quiescing verification.
  std::mutex pause_mu_;
  std::condition_variable pause_cv_;
  bool pause_ = false;
  int active_ = 0;

  // Migration target: set by restore_state.
  std::mutex restore_mu_;
  std::condition_variable restore_cv_;
  bool restored_ = false;
  bool migrated_in_ = false;

  std::atomic<uint64_t> ops_here_{0}, errors_{0};
  uint64_t ops_carried_ = 0;  // ops done by earlier instances (source of a migration)
  uint64_t load_seed_ = 1;    // changes per instance, so load streams never repeat
  double init_ms_ = 0;
  std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();

  mutable std::mutex mu_;                           // everything below
  std::deque<std::pair<double, double>> timeline_;  // (t_ms, ops/s), every 100 ms
  double last_rate_ = 0;
  std::string last_error_;
  std::string phase_ = "created";
  // Verification: state "never" / "running" / "done".
  std::string verify_state_ = "never";
  std::string verify_reason_, verify_detail_;
  uint64_t verify_digest_ = 0;
  double verify_ms_ = 0;
  int verified_ = -1;  // -1 unknown (null), 0 failed, 1 passed
  uint64_t verifications_ = 0;
};

// A workload whose enclave keeps a running digest of its data after every load batch (btree,
// sqlite): the host keeps its latest view (batch seq, digest) and carries it across a
// migration; after_restore asks the enclave to match it (the anchor ECALL: in u64 seq, u64
// digest; out u8 ok, u64 seq, u64 digest, str32 why), verify recomputes the digest in bounded
// steps (the verify ECALL: in u8 begin, u64 budget, u64 seq, u64 digest; out VerifyStep).
class AnchoredWorkloadApp : public WorkloadApp {
 public:
  using WorkloadApp::WorkloadApp;

 protected:
  virtual constmig::Result<std::vector<uint8_t>> anchor_ecall(constmig::platform::Enclave& e,
                                                              const std::vector<uint8_t>& in) = 0;
  virtual constmig::Result<std::vector<uint8_t>> verify_ecall(constmig::platform::Enclave& e,
                                                              const std::vector<uint8_t>& in) = 0;
  virtual uint64_t verify_budget() const = 0;
  // The load ECALL's report: batch `seq` left the data with `digest`; `items` are in it now.
  void saw_batch(uint64_t seq, uint64_t digest, uint64_t items);

  constmig::Result<VerifyResult> after_restore(constmig::platform::Enclave& e) override;
  bool verify_quiesces_load() const override { return true; }
  constmig::Result<VerifyResult> verify(constmig::platform::Enclave& e) override;
  void save_app(constmig::ByteWriter& w) override;
  constmig::Status restore_app(constmig::ByteReader& r) override;
  // Adds "<item>s_loaded", "<item>s" and "batch_seq" to the stats.
  void anchored_stats(nlohmann::json& j, const std::string& item);

  uint64_t loaded_ = 0;  // items the bulk load made (set by init_data; carried to the target)

 private:
  std::mutex view_mu_;
  uint64_t items_ = 0, seq_ = 0, digest_ = 0;
};

}  // namespace workload
