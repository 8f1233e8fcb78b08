#include "graph/host/graph_app.h"

#include "graph/graph_edl.h"
#include "graph/trusted/graph_engine.h"
#include "platform/host_edl.h"
#include "workload_common/host/workload_app.h"

CONSTMIG_HOST_EDL(gr_edl, GRAPH_EDL)

namespace graph {
namespace {

using namespace constmig;
using workload::VerifyResult;

constexpr uint64_t kSeed = 0x94a9115eedull;

class GraphApp final : public workload::WorkloadApp {
 public:
  using WorkloadApp::WorkloadApp;
  ~GraphApp() override { stop(); }
  std::string name() const override { return "graph"; }
  std::string image_file() const override { return "graph_enclave.enclave.so"; }
  std::vector<std::string> ecall_names() const override { return gr_edl::ecall_names(); }
  platform::OcallTable ocalls() override { return gr_edl::ocall_table(this); }
  Status probe(platform::Enclave& e) override {
    auto r = gr_edl::gr_info(e);
    return r.ok() ? ok_status() : Status(r.take_error());
  }

 protected:
  Status init_data(platform::Enclave& e) override {
    slots_ = static_cast<uint32_t>(std::clamp(opts_.io_threads, 1, static_cast<int>(kMaxSlots)));
    vertices_ = GraphStore::vertices_for(data_bytes(), slots_);
    std::vector<uint8_t> in = u64s({kSeed, vertices_});
    ByteWriter(in).u32(slots_);
    CM_TRY(gr_edl::gr_init(e, in));
    CM_TRY(run_build("R-MAT graph: " + std::to_string(vertices_) + " vertices, " +
                         std::to_string(vertices_ * kEdgeFactor) + " edges",
                     [&] { return gr_edl::gr_build(e, u64s({kBuildBudget})); }));
    // The baseline: BFS from vertex 0 and PageRank now; the target must compute the same.
    CM_ASSIGN_OR_RETURN(VerifyResult v, steps(e));
    if (!v.passed) return make_error(Errc::kInternal, "graph baseline failed: " + v.detail);
    expected_ = v.digest;
    log("baseline " + v.detail);
    return ok_status();
  }
  Result<uint64_t> load_once(platform::Enclave& e, unsigned thread, uint64_t& rng) override {
    // Alternate: PageRank slices (shared iteration) and BFS steps (this thread's own search).
    uint64_t x = workload::splitmix(rng);
    if (x & 1) {
      CM_ASSIGN_OR_RETURN(auto out, gr_edl::gr_pagerank(e, u64s({kLoadBudget})));
      ByteReader r(out);
      uint64_t edges = r.u64();
      pr_iterations_ = r.u64();
      if (!r.at_end()) return make_error(Errc::kInternal, "gr_pagerank: malformed reply");
      if (edges > 0) return edges;
    }
    std::vector<uint8_t> in;
    ByteWriter w(in);
    w.u32(thread % slots_);
    w.u64(x >> 1);
    w.u64(kLoadBudget);
    CM_ASSIGN_OR_RETURN(auto out, gr_edl::gr_bfs(e, in));
    ByteReader r(out);
    uint64_t edges = r.u64();
    r.u64();
    bool finished = r.u8() != 0;
    if (!r.at_end()) return make_error(Errc::kInternal, "gr_bfs: malformed reply");
    if (finished) ++bfs_done_;
    return edges;
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
    auto r = gr_edl::gr_corrupt(e);
    return r.ok() ? ok_status() : Status(r.take_error());
  }
  void save_app(ByteWriter& w) override {
    w.u64(vertices_);
    w.u32(slots_);
    w.u64(expected_);
  }
  Status restore_app(ByteReader& r) override {
    vertices_ = r.u64();
    slots_ = r.u32();
    expected_ = r.u64();
    if (!r.ok() || slots_ == 0) return make_error(Errc::kFormat, "graph host state truncated");
    return ok_status();
  }
  void extra_stats(nlohmann::json& j) override {
    j["vertices"] = vertices_;
    j["edges"] = vertices_ * kEdgeFactor;
    j["bfs_completed"] = bfs_done_.load();
    j["pagerank_iterations"] = pr_iterations_.load();
  }

 private:
  Result<VerifyResult> steps(platform::Enclave& e) {
    bool begin = true;
    return run_verify_steps([&] {
      std::vector<uint8_t> in;
      ByteWriter w(in);
      w.u8(begin ? 1 : 0);
      w.u64(kVerifyBudget);
      begin = false;
      return gr_edl::gr_verify(e, in);
    });
  }
  uint64_t vertices_ = 0, expected_ = 0;
  uint32_t slots_ = 1;
  std::atomic<uint64_t> bfs_done_{0}, pr_iterations_{0};
};

}  // namespace

std::unique_ptr<host::HostApp> make_graph_app(const host::AppOptions& o) {
  return std::make_unique<GraphApp>(o);
}

}  // namespace graph
