// graph engine (TRUSTED, also compiled into host unit tests): a synthetic R-MAT graph
// (a=0.57, b=0.19, c=0.19; undirected: every edge stored both ways) in CSR arrays in the
// enclave heap, built from a seed in bounded steps (count degrees, prefix sums, fill), with two
// kinds of bounded load steps: BFS from random roots (a per-slot search advanced by at most a
// budget of edges) and PageRank iterations (vertex slices of one shared computation).
// PageRank is in fixed point (kOne = 2^40), so results do not depend on summation order.
// Verification recomputes the CSR digest, the BFS distances from vertex 0 and PageRank after
// kVerifyIterations iterations from the uniform vector, and digests them.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "workload_common/workload_util.h"

namespace graph {

inline constexpr uint64_t kEdgeFactor = 8;  // undirected edges per vertex
inline constexpr uint64_t kOne = 1ull << 40;
inline constexpr uint32_t kVerifyIterations = 5;
inline constexpr uint32_t kMaxSlots = 16;
// R-MAT quadrant thresholds in 1/65536: a = 0.57, a+b = 0.76, a+b+c = 0.95.
inline constexpr uint32_t kRmatA = 37356, kRmatAB = 49807, kRmatABC = 62259;

// Edge i of the graph seeded by `seed` with `vertices` vertices (R-MAT, folded mod vertices).
void rmat_edge(uint64_t seed, uint64_t i, uint64_t vertices, uint32_t* u, uint32_t* v);

// One PageRank step for vertex v from `cur` (deg(u) = off[u+1] - off[u]).
inline uint64_t pr_value(uint64_t vertices, uint64_t sum_contrib) {
  return kOne * 15 / 100 / vertices + sum_contrib * 85 / 100;
}

struct Bfs {
  std::unique_ptr<uint64_t[]> state;  // (epoch << 32) | distance
  std::unique_ptr<uint32_t[]> queue;
  uint64_t head = 0, tail = 0, edge = 0;  // edge: next adjacency index of queue[head]
  uint32_t epoch = 0;
  bool active = false;
  uint64_t reached = 0;
  std::mutex mu;
};

struct BfsResult {
  uint64_t edges = 0, reached = 0;
  bool finished = false;
};

class GraphStore {
 public:
  static uint64_t vertices_for(uint64_t bytes, uint32_t slots) {
    uint64_t per = 8 + 2 * kEdgeFactor * 4 + 16 + 16 + 12 + 12ull * slots;
    uint64_t v = bytes / per;
    return v < 64 ? 64 : v;
  }
  bool init(uint64_t seed, uint64_t vertices, uint32_t slots, std::string* err);
  workload::BuildStep build_step(uint64_t budget);
  // Advance the BFS of `slot` (starting one from root_seed % V if idle) by <= budget edges.
  BfsResult bfs_step(uint32_t slot, uint64_t root_seed, uint64_t budget);
  // Compute a slice of the shared PageRank iteration; returns edges processed (0: nothing to
  // claim right now).
  uint64_t pr_step(uint64_t budget, uint64_t* iterations);
  void verify_begin();
  workload::VerifyStep verify_step(uint64_t budget);
  void corrupt();  // TESTING ONLY

  bool ready() const { return phase_ == kDone; }
  uint64_t vertices() const { return n_; }
  uint64_t edges() const { return m_; }
  uint32_t slots() const { return static_cast<uint32_t>(slots_.size()); }
  // For tests: after a verification, the verifier's BFS distance (UINT32_MAX: unreached) and
  // PageRank value of v; the CSR.
  uint32_t verified_distance(uint64_t v) const;
  uint64_t verified_rank(uint64_t v) const { return vr_cur_[v]; }
  const uint64_t* offsets() const { return off_.get(); }
  const uint32_t* adjacency() const { return adj_.get(); }

 private:
  enum Phase { kZero, kCount, kPrefix, kFill, kDone };
  enum VPhase { kVDigest, kVBfs, kVBfsDigest, kVPrInit, kVPr, kVPrDigest, kVDone };
  // Gather of PageRank for [v0, v1) from cur into next; returns edges.
  uint64_t gather(const uint64_t* cur, uint64_t* next, uint64_t v0, uint64_t v1) const;
  // Vertex range starting at v0 with about `budget` edges (at least one vertex).
  uint64_t slice_end(uint64_t v0, uint64_t budget) const;
  void bfs_start(Bfs& b, uint64_t root);
  uint64_t bfs_advance(Bfs& b, uint64_t budget);

  uint64_t seed_ = 0, n_ = 0, m_ = 0;
  Phase phase_ = kZero;
  uint64_t cursor_ = 0;
  std::unique_ptr<uint64_t[]> off_;  // n + 2 entries during the build; start(v) = off[v]
  std::unique_ptr<uint32_t[]> adj_;  // 2m entries
  std::vector<std::unique_ptr<Bfs>> slots_;
  // Shared PageRank of the load.
  std::mutex pr_mu_;
  std::unique_ptr<uint64_t[]> pr_cur_, pr_next_;
  uint64_t pr_claim_ = 0, pr_done_ = 0, pr_iterations_ = 0;
  // Verification state.
  std::mutex verify_mu_;
  Bfs vbfs_;
  std::unique_ptr<uint64_t[]> vr_cur_, vr_next_;
  VPhase vphase_ = kVDone;
  uint64_t vcursor_ = 0, viter_ = 0;
  uint64_t v_csr_ = 0, v_bfs_ = 0, v_reached_ = 0, v_maxd_ = 0, v_pr_ = 0, v_prsum_ = 0;
};

}  // namespace graph
