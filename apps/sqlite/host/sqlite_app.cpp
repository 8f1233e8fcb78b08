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

class SqliteApp final : public workload::AnchoredWorkloadApp {
 public:
  using AnchoredWorkloadApp::AnchoredWorkloadApp;
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
    loaded_ = std::max<uint64_t>(1, data_bytes() / kBytesPerRow);
    CM_TRY(sq_edl::sq_init(e, u64s({kSeed, loaded_})));
    return run_build("INSERT of " + std::to_string(loaded_) + " rows",
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
    saw_batch(v[4], v[5], v[6]);
    return uint64_t{kOpsPerBatch};  // SQL operations (each one statement or a lookup + write)
  }
  Result<std::vector<uint8_t>> anchor_ecall(platform::Enclave& e,
                                            const std::vector<uint8_t>& in) override {
    return sq_edl::sq_anchor(e, in);
  }
  Result<std::vector<uint8_t>> verify_ecall(platform::Enclave& e,
                                            const std::vector<uint8_t>& in) override {
    return sq_edl::sq_verify(e, in);
  }
  uint64_t verify_budget() const override { return kVerifyBudget; }
  Status corrupt(platform::Enclave& e) override {
    auto r = sq_edl::sq_corrupt(e);
    return r.ok() ? ok_status() : Status(r.take_error());
  }
  void extra_stats(nlohmann::json& j) override { anchored_stats(j, "row"); }
};

}  // namespace

std::unique_ptr<host::HostApp> make_sqlite_app(const host::AppOptions& o) {
  return std::make_unique<SqliteApp>(o);
}

}  // namespace sqlitewl
