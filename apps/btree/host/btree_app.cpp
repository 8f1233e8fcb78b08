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

class BtreeApp final : public workload::WorkloadApp {
 public:
  using WorkloadApp::WorkloadApp;
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
    nkeys_ = std::max<uint64_t>(1, data_bytes() / kBytesPerKey);
    CM_TRY(bt_edl::bt_init(e, u64s({kSeed, nkeys_})));
    return run_build("bulk load of " + std::to_string(nkeys_) + " keys",
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
    std::lock_guard lk(view_mu_);
    if (v[4] > seq_) {  // the latest batch this host saw, and the checksum after it
      seq_ = v[4];
      sum_ = v[5];
    }
    keys_ = v[6];
    return v[0] + v[2];
  }
  Result<VerifyResult> after_restore(platform::Enclave& e) override {
    uint64_t seq, sum;
    {
      std::lock_guard lk(view_mu_);
      seq = seq_;
      sum = sum_;
    }
    CM_ASSIGN_OR_RETURN(auto out, bt_edl::bt_anchor(e, u64s({seq, sum})));
    ByteReader r(out);
    bool ok = r.u8() != 0;
    uint64_t cseq = r.u64(), csum = r.u64();
    std::string why(r.str32(4096));
    if (!r.at_end()) return make_error(Errc::kInternal, "bt_anchor: malformed reply");
    if (!ok) return VerifyResult{false, csum, "btree restore check: " + why};
    std::lock_guard lk(view_mu_);
    seq_ = cseq;  // batches the source applied after the host's last view
    sum_ = csum;
    return VerifyResult{true, csum, ""};
  }
  bool verify_quiesces_load() const override { return true; }
  Result<VerifyResult> verify(platform::Enclave& e) override {
    uint64_t seq, sum;
    {
      std::lock_guard lk(view_mu_);
      seq = seq_;
      sum = sum_;
    }
    bool begin = true;
    return run_verify_steps([&] {
      std::vector<uint8_t> in;
      ByteWriter w(in);
      w.u8(begin ? 1 : 0);
      w.u64(kVerifyBudget);
      w.u64(seq);
      w.u64(sum);
      begin = false;
      return bt_edl::bt_verify(e, in);
    });
  }
  Status corrupt(platform::Enclave& e) override {
    auto r = bt_edl::bt_corrupt(e);
    return r.ok() ? ok_status() : Status(r.take_error());
  }
  void save_app(ByteWriter& w) override {
    std::lock_guard lk(view_mu_);
    w.u64(nkeys_);
    w.u64(seq_);
    w.u64(sum_);
  }
  Status restore_app(ByteReader& r) override {
    std::lock_guard lk(view_mu_);
    nkeys_ = r.u64();
    seq_ = r.u64();
    sum_ = r.u64();
    return r.ok() ? ok_status() : make_error(Errc::kFormat, "btree host state is truncated");
  }
  void extra_stats(nlohmann::json& j) override {
    std::lock_guard lk(view_mu_);
    j["keys_loaded"] = nkeys_;
    j["keys"] = keys_;
    j["batch_seq"] = seq_;
  }

 private:
  std::mutex view_mu_;
  uint64_t nkeys_ = 0, keys_ = 0, seq_ = 0, sum_ = 0;
};

}  // namespace

std::unique_ptr<host::HostApp> make_btree_app(const host::AppOptions& o) {
  return std::make_unique<BtreeApp>(o);
}

}  // namespace btree
