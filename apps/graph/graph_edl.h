// graph: R-MAT graph in CSR form with BFS and PageRank (SGXGauge "BFS"/"PageRank").
#pragma once

#include <cstdint>

#define GRAPH_EDL(ECALL, OCALL)                                                                   \
  ECALL(gr_init, "in: u64 seed, u64 vertices, u32 bfs_slots: plan the graph (once)")              \
  ECALL(gr_build, "in: u64 budget: one bounded build step; out: BuildStep")                       \
  ECALL(gr_bfs,                                                                                   \
        "in: u32 slot, u64 root_seed, u64 budget: advance a BFS; out: u64 edges, "                \
        "u64 reached, u8 finished")                                                               \
  ECALL(gr_pagerank, "in: u64 budget: a slice of the shared PageRank; out: u64 edges, u64 it")    \
  ECALL(gr_verify, "in: u8 begin, u64 budget: CSR digest, BFS from 0, PageRank; out: VerifyStep") \
  ECALL(gr_corrupt, "TESTING ONLY: change one adjacency entry")                                   \
  ECALL(gr_info, "out: u64 vertices, u64 edges")

namespace graph {
inline constexpr uint64_t kBuildBudget = 1u << 18;   // edges or vertices per gr_build (~40 ms)
inline constexpr uint64_t kLoadBudget = 32768;       // edges per gr_bfs / gr_pagerank
inline constexpr uint64_t kVerifyBudget = 1u << 18;  // edges or vertices per gr_verify
}  // namespace graph
