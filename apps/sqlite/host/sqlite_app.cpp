#include "sqlite/host/sqlite_app.h"

#include "platform/host_edl.h"
#include "sqlite/sqlite_edl.h"
#include "workload_common/host/workload_app.h"

CONSTMIG_HOST_EDL(sq_edl, SQLITE_EDL)

namespace sqlitewl {
namespace {

using namespace constmig;
using workload::VerifyResult;

constexpr uint64_t kSeed = 0x5917e5eedull;

class SqliteApp final : public workload::WorkloadApp {
 public:
  using WorkloadApp::WorkloadApp;
  ~SqliteApp() override { stop(); }
  std::string name() const override { return "sqlite"; }
  std::string image_file() const override { return "sqlite_enclave.enclave.so"; }
  std::vector<std::string> ecall_names() const override { return sq_edl::ecall_names(); }
  platform::OcallTable ocalls() override { return sq_edl::ocall_table(this); }
  Status probe(platform::Enclave& e) override {
    auto r = sq_edl::sq_info(e);
    return r.ok() ? ok_status() : Status(r.take_error());
  }

 protected:
  Status init_data(platform::Enclave& e) override {
    nrows_ = std::max<uint64_t>(1, data_bytes() / kBytesPerRow);
    CM_TRY(sq_edl::sq_init(e, u64s({kSeed, nrows_})));
    return run_build("INSERT of " + std::to_string(nrows_) + " rows",
                     [&] { return sq_edl::sq_build(e, u64s({kBuildBudget})); });
  }
  Result<uint64_t> load_once(platform::Enclave& e, unsigned, uint64_t& rng) override {
    std::vector<uint8_t> in;
    ByteWriter w(in);
    w.u64(workload::splitmix(rng));
    w.u32(kOpsPerBatch);
    w.u32(kWritePermille);
    CM_ASSIGN_OR_RETURN(auto out, sq_edl::sq_ops(e, in));
    ByteReader r(out);
    uint64_t v[8];
    for (auto& x : v) x = r.u64();
    if (!r.at_end()) return make_error(Errc::kInternal, "sq_ops: malformed reply");
    std::lock_guard lk(view_mu_);
    if (v[4] > seq_) {  // the latest batch this host saw, and the query digest after it
      seq_ = v[4];
      digest_ = v[5];
    }
    rows_ = v[6];
    return uint64_t{kOpsPerBatch};  // SQL operations (each one statement or a lookup + write)
  }
  Result<VerifyResult> after_restore(platform::Enclave& e) override {
    uint64_t seq, digest;
    {
      std::lock_guard lk(view_mu_);
      seq = seq_;
      digest = digest_;
    }
    CM_ASSIGN_OR_RETURN(auto out, sq_edl::sq_anchor(e, u64s({seq, digest})));
    ByteReader r(out);
    bool ok = r.u8() != 0;
    uint64_t cseq = r.u64(), cdigest = r.u64();
    std::string why(r.str32(4096));
    if (!r.at_end()) return make_error(Errc::kInternal, "sq_anchor: malformed reply");
    if (!ok) return VerifyResult{false, cdigest, "sqlite restore check: " + why};
    std::lock_guard lk(view_mu_);
    seq_ = cseq;  // batches the source applied after the host's last view
    digest_ = cdigest;
    return VerifyResult{true, cdigest, ""};
  }
  bool verify_quiesces_load() const override { return true; }
  Result<VerifyResult> verify(platform::Enclave& e) override {
    uint64_t seq, digest;
    {
      std::lock_guard lk(view_mu_);
      seq = seq_;
      digest = digest_;
    }
    bool begin = true;
    return run_verify_steps([&] {
      std::vector<uint8_t> in;
      ByteWriter w(in);
      w.u8(begin ? 1 : 0);
      w.u64(kVerifyBudget);
      w.u64(seq);
      w.u64(digest);
      begin = false;
      return sq_edl::sq_verify(e, in);
    });
  }
  Status corrupt(platform::Enclave& e) override {
    auto r = sq_edl::sq_corrupt(e);
    return r.ok() ? ok_status() : Status(r.take_error());
  }
  void save_app(ByteWriter& w) override {
    std::lock_guard lk(view_mu_);
    w.u64(nrows_);
    w.u64(seq_);
    w.u64(digest_);
  }
  Status restore_app(ByteReader& r) override {
    std::lock_guard lk(view_mu_);
    nrows_ = r.u64();
    seq_ = r.u64();
    digest_ = r.u64();
    return r.ok() ? ok_status() : make_error(Errc::kFormat, "sqlite host state is truncated");
  }
  void extra_stats(nlohmann::json& j) override {
    std::lock_guard lk(view_mu_);
    j["rows_loaded"] = nrows_;
    j["rows"] = rows_;
    j["batch_seq"] = seq_;
  }

 private:
  std::mutex view_mu_;
  uint64_t nrows_ = 0, rows_ = 0, seq_ = 0, digest_ = 0;
};

}  // namespace

std::unique_ptr<host::HostApp> make_sqlite_app(const host::AppOptions& o) {
  return std::make_unique<SqliteApp>(o);
}

}  // namespace sqlitewl
