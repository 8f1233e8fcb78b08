#include "xsbench/host/xsbench_app.h"

#include "platform/host_edl.h"
#include "workload_common/host/workload_app.h"
#include "xsbench/trusted/xsbench_engine.h"
#include "xsbench/xsbench_edl.h"

CONSTMIG_HOST_EDL(xs_edl, XSBENCH_EDL)

namespace xsbench {
namespace {

using namespace constmig;
using workload::VerifyResult;

constexpr uint64_t kSeed = 0x8515eedull;

class XsbenchApp final : public workload::WorkloadApp {
 public:
  using WorkloadApp::WorkloadApp;
  ~XsbenchApp() override { stop(); }
  std::string name() const override { return "xsbench"; }
  std::string image_file() const override { return "xsbench_enclave.enclave.so"; }
  std::vector<std::string> ecall_names() const override { return xs_edl::ecall_names(); }
  platform::OcallTable ocalls() override { return xs_edl::ocall_table(this); }
  Status probe(platform::Enclave& e) override {
    auto r = xs_edl::xs_info(e);
    return r.ok() ? ok_status() : Status(r.take_error());
  }

 protected:
  Status init_data(platform::Enclave& e) override {
    points_ = XsStore::gridpoints_for(data_bytes());
    CM_TRY(xs_edl::xs_init(e, u64s({kSeed, points_})));
    CM_TRY(run_build(
        "nuclide grids: " + std::to_string(kNuclides) + " x " + std::to_string(points_) + " points",
        [&] { return xs_edl::xs_build(e, u64s({kBuildPoints})); }));
    // The baseline: the same verification run now gives the digests the target must match.
    CM_ASSIGN_OR_RETURN(VerifyResult v, steps(e));
    if (!v.passed) return make_error(Errc::kInternal, "xsbench baseline failed: " + v.detail);
    expected_ = v.digest;
    log("baseline " + v.detail);
    return ok_status();
  }
  Result<uint64_t> load_once(platform::Enclave& e, unsigned, uint64_t& rng) override {
    CM_ASSIGN_OR_RETURN(auto out,
                        xs_edl::xs_lookup(e, u64s({workload::splitmix(rng), 0, kLookupsPerBatch})));
    ByteReader r(out);
    uint64_t n = r.u64();
    r.u64();
    if (!r.at_end()) return make_error(Errc::kInternal, "xs_lookup: malformed reply");
    return n;
  }
  Result<VerifyResult> verify(platform::Enclave& e) override {
    CM_ASSIGN_OR_RETURN(VerifyResult v, steps(e));
    if (v.passed && v.digest != expected_) {
      v.passed = false;
      v.detail += "; the digest before the migration was " + std::to_string(expected_);
    }
    return v;
  }
  Status corrupt(platform::Enclave& e) override {
    auto r = xs_edl::xs_corrupt(e);
    return r.ok() ? ok_status() : Status(r.take_error());
  }
  void save_app(ByteWriter& w) override {
    w.u64(points_);
    w.u64(expected_);
  }
  Status restore_app(ByteReader& r) override {
    points_ = r.u64();
    expected_ = r.u64();
    return r.ok() ? ok_status() : make_error(Errc::kFormat, "xsbench host state truncated");
  }
  void extra_stats(nlohmann::json& j) override {
    j["nuclides"] = kNuclides;
    j["gridpoints"] = points_;
  }

 private:
  Result<VerifyResult> steps(platform::Enclave& e) {
    bool begin = true;
    return run_verify_steps([&] {
      std::vector<uint8_t> in;
      ByteWriter w(in);
      w.u8(begin ? 1 : 0);
      w.u64(kVerifyPoints);
      begin = false;
      return xs_edl::xs_verify(e, in);
    });
  }
  uint64_t points_ = 0, expected_ = 0;
};

}  // namespace

std::unique_ptr<host::HostApp> make_xsbench_app(const host::AppOptions& o) {
  return std::make_unique<XsbenchApp>(o);
}

}  // namespace xsbench
