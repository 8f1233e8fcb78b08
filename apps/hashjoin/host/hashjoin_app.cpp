#include "hashjoin/host/hashjoin_app.h"

#include "hashjoin/hashjoin_edl.h"
#include "hashjoin/trusted/hashjoin_engine.h"
#include "platform/host_edl.h"
#include "workload_common/host/workload_app.h"

CONSTMIG_HOST_EDL(hj_edl, HASHJOIN_EDL)

namespace hashjoin {
namespace {

using namespace constmig;
using workload::VerifyResult;

constexpr uint64_t kSeed = 0x4a014eedull;

class HashjoinApp final : public workload::WorkloadApp {
 public:
  using WorkloadApp::WorkloadApp;
  ~HashjoinApp() override { stop(); }
  std::string name() const override { return "hashjoin"; }
  std::string image_file() const override { return "hashjoin_enclave.enclave.so"; }
  std::vector<std::string> ecall_names() const override { return hj_edl::ecall_names(); }
  platform::OcallTable ocalls() override { return hj_edl::ocall_table(this); }
  Status probe(platform::Enclave& e) override {
    auto r = hj_edl::hj_info(e);
    return r.ok() ? ok_status() : Status(r.take_error());
  }

 protected:
  Status init_data(platform::Enclave& e) override {
    parts_ = JoinStore::partitions_for(data_bytes());
    CM_TRY(hj_edl::hj_init(e, u64s({kSeed, parts_})));
    CM_TRY(run_build("generating R and S: " + std::to_string(parts_) + " partitions of " +
                         std::to_string(kRPerPart) + " + " + std::to_string(kSPerPart) + " tuples",
                     [&] { return hj_edl::hj_build(e, u64s({kBuildParts})); }));
    CM_ASSIGN_OR_RETURN(auto out, hj_edl::hj_expected(e));
    ByteReader r(out);
    exp_.matches = r.u64();
    exp_.checksum = r.u64();
    exp_.digest = r.u64();
    if (!r.at_end()) return make_error(Errc::kInternal, "hj_expected: malformed reply");
    return ok_status();
  }
  Result<uint64_t> load_once(platform::Enclave& e, unsigned thread, uint64_t&) override {
    if (cursor_.size() <= thread) return make_error(Errc::kInternal, "hashjoin: no cursor");
    uint64_t p = cursor_[thread].fetch_add(1) % parts_;
    CM_ASSIGN_OR_RETURN(auto out, hj_edl::hj_join(e, u64s({p})));
    ByteReader r(out);
    uint64_t probed = r.u64();
    matches_ += r.u64();
    if (!r.ok()) return make_error(Errc::kInternal, "hj_join: malformed reply");
    return probed;
  }
  Result<VerifyResult> verify(platform::Enclave& e) override {
    bool begin = true;
    CM_ASSIGN_OR_RETURN(VerifyResult v, run_verify_steps([&] {
                          std::vector<uint8_t> in;
                          ByteWriter w(in);
                          w.u8(begin ? 1 : 0);
                          w.u64(kVerifyParts);
                          begin = false;
                          return hj_edl::hj_verify(e, in);
                        }));
    if (v.passed && v.digest != combined(exp_)) {
      v.passed = false;
      v.detail += "; expected from generation: " + std::to_string(exp_.matches) +
                  " matches, join checksum " + std::to_string(exp_.checksum) + ", data digest " +
                  std::to_string(exp_.digest);
    }
    return v;
  }
  Status corrupt(platform::Enclave& e) override {
    auto r = hj_edl::hj_corrupt(e);
    return r.ok() ? ok_status() : Status(r.take_error());
  }
  void save_app(ByteWriter& w) override {
    w.u64(parts_);
    w.u64(exp_.matches);
    w.u64(exp_.checksum);
    w.u64(exp_.digest);
  }
  Status restore_app(ByteReader& r) override {
    parts_ = r.u64();
    exp_.matches = r.u64();
    exp_.checksum = r.u64();
    exp_.digest = r.u64();
    if (!r.ok() || parts_ == 0) return make_error(Errc::kFormat, "hashjoin host state truncated");
    return ok_status();
  }
  void extra_stats(nlohmann::json& j) override {
    j["partitions"] = parts_;
    j["expected_matches"] = exp_.matches;
    j["matches_seen"] = matches_.load();
  }

 private:
  uint64_t parts_ = 0;
  Expected exp_;
  std::atomic<uint64_t> matches_{0};
  // Each load thread walks the partitions from its own starting point.
  std::vector<std::atomic<uint64_t>> cursor_ = make_cursors();
  std::vector<std::atomic<uint64_t>> make_cursors() {
    std::vector<std::atomic<uint64_t>> c(static_cast<size_t>(std::max(1, opts_.io_threads)));
    for (size_t i = 0; i < c.size(); ++i) c[i] = i * 7919;
    return c;
  }
};

}  // namespace

std::unique_ptr<host::HostApp> make_hashjoin_app(const host::AppOptions& o) {
  return std::make_unique<HashjoinApp>(o);
}

}  // namespace hashjoin
