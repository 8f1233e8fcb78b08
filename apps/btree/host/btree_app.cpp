#include "btree/host/btree_app.h"

#include "btree/btree_edl.h"
#include "platform/host_edl.h"
#include "workload_common/host/workload_app.h"

CONSTMIG_HOST_EDL(bt_edl, BTREE_EDL)

namespace btree {
namespace {

using namespace constmig;
using workload::VerifyResult;

constexpr uint64_t kSeed = 0xb7ee5eedull;

class BtreeApp final : public workload::AnchoredWorkloadApp {
 public:
  using AnchoredWorkloadApp::AnchoredWorkloadApp;
  ~BtreeApp() override { stop(); }
  std::string name() const override { return "btree"; }
  std::string image_file() const override { return "btree_enclave.enclave.so"; }
  std::vector<std::string> ecall_names() const override { return bt_edl::ecall_names(); }
  platform::OcallTable ocalls() override { return bt_edl::ocall_table(this); }
  Status probe(platform::Enclave& e) override {
    auto r = bt_edl::bt_info(e);
    return r.ok() ? ok_status() : Status(r.take_error());
  }

 protected:
  Status init_data(platform::Enclave& e) override {
    loaded_ = std::max<uint64_t>(1, data_bytes() / kBytesPerKey);
    CM_TRY(bt_edl::bt_init(e, u64s({kSeed, loaded_})));
    return run_build("bulk load of " + std::to_string(loaded_) + " keys",
                     [&] { return bt_edl::bt_build(e, u64s({kBuildBudget})); });
  }
  Result<uint64_t> load_once(platform::Enclave& e, unsigned, uint64_t& rng) override {
    std::vector<uint8_t> in;
    ByteWriter w(in);
    w.u64(workload::splitmix(rng));
    w.u32(kOpsPerBatch);
    w.u32(kWritePermille);
    CM_ASSIGN_OR_RETURN(auto out, bt_edl::bt_ops(e, in));
    ByteReader r(out);
    uint64_t v[7];
    for (auto& x : v) x = r.u64();
    if (!r.at_end()) return make_error(Errc::kInternal, "bt_ops: malformed reply");
    saw_batch(v[4], v[5], v[6]);
    return v[0] + v[2];
  }
  Result<std::vector<uint8_t>> anchor_ecall(platform::Enclave& e,
                                            const std::vector<uint8_t>& in) override {
    return bt_edl::bt_anchor(e, in);
  }
  Result<std::vector<uint8_t>> verify_ecall(platform::Enclave& e,
                                            const std::vector<uint8_t>& in) override {
    return bt_edl::bt_verify(e, in);
  }
  uint64_t verify_budget() const override { return kVerifyBudget; }
  Status corrupt(platform::Enclave& e) override {
    auto r = bt_edl::bt_corrupt(e);
    return r.ok() ? ok_status() : Status(r.take_error());
  }
  void extra_stats(nlohmann::json& j) override { anchored_stats(j, "key"); }
};

}  // namespace

std::unique_ptr<host::HostApp> make_btree_app(const host::AppOptions& o) {
  return std::make_unique<BtreeApp>(o);
}

}  // namespace btree
