// Workload suite engines (apps/*/trusted) on the host, against simple references: std::map for
// the B+-tree, nested loops for the hash join, textbook BFS/PageRank, linear-search lookups.
#include <gtest/gtest.h>

#include <map>
#include <queue>
#include <thread>

#include "btree/trusted/btree_engine.h"
#include "graph/trusted/graph_engine.h"
#include "hashjoin/trusted/hashjoin_engine.h"
#include "xsbench/trusted/xsbench_engine.h"

namespace {

using workload::VerifyStep;

template <typename F>
VerifyStep run_verify(F&& step) {
  for (int i = 0; i < 1000000; ++i) {
    VerifyStep s = step();
    if (s.done || s.failed) return s;
  }
  ADD_FAILURE() << "verification never finished";
  return {};
}

// ---- btree ------------------------------------------------------------------------------------

TEST(Btree, RandomUpsertsMatchStdMap) {
  btree::BTree t;
  std::map<uint64_t, uint64_t> ref;
  uint64_t rng = 7;
  for (int i = 0; i < 200000; ++i) {
    uint64_t k = workload::splitmix(rng) % 50000, v = workload::splitmix(rng);
    uint64_t old = 0;
    bool fresh = t.upsert(k, v, &old);
    auto it = ref.find(k);
    ASSERT_EQ(fresh, it == ref.end());
    if (!fresh) ASSERT_EQ(old, it->second);
    ref[k] = v;
  }
  EXPECT_EQ(t.size(), ref.size());
  for (uint64_t k = 0; k < 50000; ++k) {
    uint64_t v = 0;
    auto it = ref.find(k);
    ASSERT_EQ(t.find(k, &v), it != ref.end()) << k;
    if (it != ref.end()) ASSERT_EQ(v, it->second);
  }
  btree::VerifyWalk w;
  btree::walk_begin(t, w);
  while (!btree::walk_step(t, w, 1000)) {
  }
  EXPECT_EQ(w.error, "");
  EXPECT_EQ(w.count, ref.size());
  uint64_t sum = 0;
  for (auto& [k, v] : ref) sum += btree::kv_term(k, v);
  EXPECT_EQ(w.sum, sum);
  EXPECT_GE(t.depth(), 3);
}

TEST(Btree, BulkLoadThenUpserts) {
  btree::BTree t;
  std::map<uint64_t, uint64_t> ref;
  for (uint64_t i = 0; i < 100000; ++i) {
    uint64_t k = btree::BtreeStore::bulk_key(3, i);
    t.bulk_append(k, i);
    ref[k] = i;
  }
  uint64_t rng = 9;
  for (int i = 0; i < 50000; ++i) {
    uint64_t k = workload::splitmix(rng) % (100000 * btree::kKeyStride);
    t.upsert(k, 1, nullptr);
    ref[k] = 1;
  }
  btree::VerifyWalk w;
  btree::walk_begin(t, w);
  while (!btree::walk_step(t, w, 777)) {
  }
  EXPECT_EQ(w.error, "");
  EXPECT_EQ(w.count, ref.size());
  EXPECT_EQ(t.size(), ref.size());
}

TEST(Btree, StoreChecksumAnchorAndCorruption) {
  btree::BtreeStore s;
  std::string err;
  ASSERT_TRUE(s.init(11, 50000, &err));
  while (!s.build_step(7000).done) {
  }
  // Concurrent batches; the host view is the latest (seq, sum) returned.
  std::mutex mu;
  uint64_t hseq = 0, hsum = 0;
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < 300; ++i) {
        auto b = s.run_batch(static_cast<uint64_t>(t * 1000 + i), 256, 100);
        std::lock_guard lk(mu);
        if (b.seq > hseq) {
          hseq = b.seq;
          hsum = b.sum;
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  uint64_t cs, csum;
  EXPECT_TRUE(s.anchor(hseq, hsum, &cs, &csum, &err)) << err;
  EXPECT_FALSE(s.anchor(hseq, hsum + 1, &cs, &csum, &err));
  EXPECT_FALSE(s.anchor(hseq + 1, hsum, &cs, &csum, &err));
  s.verify_begin();
  VerifyStep v = run_verify([&] { return s.verify_step(5000, hseq, hsum); });
  EXPECT_FALSE(v.failed) << v.detail;
  // A stale host view fails; so does a corrupted value.
  s.verify_begin();
  v = run_verify([&] { return s.verify_step(5000, hseq - 1, hsum); });
  EXPECT_TRUE(v.failed);
  s.corrupt();
  s.verify_begin();
  v = run_verify([&] { return s.verify_step(5000, hseq, hsum); });
  EXPECT_TRUE(v.failed);
  EXPECT_NE(v.detail.find("checksum"), std::string::npos) << v.detail;
}

// ---- hashjoin ---------------------------------------------------------------------------------

TEST(Hashjoin, PartitionJoinMatchesNestedLoops) {
  hashjoin::JoinStore s;
  std::string err;
  ASSERT_TRUE(s.init(5, 2, &err));
  while (!s.build_step(1).done) {
  }
  // Nested loops over the whole relations (every R tuple against every S tuple).
  uint64_t matches = 0, checksum = 0;
  for (uint64_t ps = 0; ps < 2; ++ps) {
    for (uint64_t j = 0; j < hashjoin::kSPerPart; ++j) {
      const auto& t = s.s(ps)[j];
      for (uint64_t pr = 0; pr < 2; ++pr) {
        for (uint64_t i = 0; i < hashjoin::kRPerPart; ++i) {
          const auto& r = s.r(pr)[i];
          if (r.key == t.key) {
            ++matches;
            checksum += hashjoin::join_term(t.key, r.payload, t.payload);
          }
        }
      }
    }
  }
  uint64_t jm = 0, jc = 0;
  for (uint64_t p = 0; p < 2; ++p) {
    auto j = s.join(p);
    EXPECT_EQ(j.probed, hashjoin::kSPerPart);
    jm += j.matches;
    jc += j.checksum;
  }
  EXPECT_EQ(jm, matches);
  EXPECT_EQ(jc, checksum);
  EXPECT_EQ(s.expected().matches, matches);
  EXPECT_EQ(s.expected().checksum, checksum);
  EXPECT_GT(matches, hashjoin::kSPerPart);  // ~4/5 of S matches
  s.verify_begin();
  VerifyStep v = run_verify([&] { return s.verify_step(1); });
  EXPECT_EQ(v.digest, hashjoin::combined(s.expected()));
  s.corrupt();
  s.verify_begin();
  v = run_verify([&] { return s.verify_step(1); });
  EXPECT_NE(v.digest, hashjoin::combined(s.expected()));
}

// ---- graph ------------------------------------------------------------------------------------

struct RefGraph {
  std::vector<std::vector<uint32_t>> adj;
  explicit RefGraph(uint64_t seed, uint64_t n) : adj(n) {
    for (uint64_t i = 0; i < n * graph::kEdgeFactor; ++i) {
      uint32_t u, v;
      graph::rmat_edge(seed, i, n, &u, &v);
      adj[u].push_back(v);
      adj[v].push_back(u);
    }
  }
  std::vector<uint32_t> bfs(uint32_t root) const {
    std::vector<uint32_t> d(adj.size(), UINT32_MAX);
    std::queue<uint32_t> q;
    d[root] = 0;
    q.push(root);
    while (!q.empty()) {
      uint32_t u = q.front();
      q.pop();
      for (uint32_t w : adj[u]) {
        if (d[w] == UINT32_MAX) {
          d[w] = d[u] + 1;
          q.push(w);
        }
      }
    }
    return d;
  }
  std::vector<uint64_t> pagerank(int iterations) const {
    uint64_t n = adj.size();
    std::vector<uint64_t> r(n, graph::kOne / n), next(n);
    for (int it = 0; it < iterations; ++it) {
      for (uint64_t v = 0; v < n; ++v) {
        uint64_t s = 0;
        for (uint32_t u : adj[v]) s += r[u] / adj[u].size();
        next[v] = graph::kOne * 15 / 100 / n + s * 85 / 100;
      }
      r.swap(next);
    }
    return r;
  }
};

TEST(Graph, CsrBfsAndPagerankMatchTextbook) {
  const uint64_t n = 3000;
  graph::GraphStore s;
  std::string err;
  ASSERT_TRUE(s.init(17, n, 2, &err)) << err;
  while (!s.build_step(997).done) {
  }
  RefGraph ref(17, n);
  for (uint64_t v = 0; v < n; ++v) {
    ASSERT_EQ(s.offsets()[v + 1] - s.offsets()[v], ref.adj[v].size());
    for (size_t k = 0; k < ref.adj[v].size(); ++k) {
      ASSERT_EQ(s.adjacency()[s.offsets()[v] + k], ref.adj[v][k]);
    }
  }
  s.verify_begin();
  VerifyStep v = run_verify([&] { return s.verify_step(501); });
  ASSERT_TRUE(v.done);
  auto d = ref.bfs(0);
  for (uint64_t x = 0; x < n; ++x) ASSERT_EQ(s.verified_distance(x), d[x]) << x;
  auto pr = ref.pagerank(graph::kVerifyIterations);
  for (uint64_t x = 0; x < n; ++x) ASSERT_EQ(s.verified_rank(x), pr[x]) << x;
  // The load's BFS (bounded steps) reaches what the textbook BFS reaches.
  uint64_t reached = 0;
  for (;;) {
    auto b = s.bfs_step(1, 5, 100);
    EXPECT_LE(b.edges, 100u);
    if (b.finished) {
      reached = b.reached;
      break;
    }
  }
  auto d5 = ref.bfs(5);
  EXPECT_EQ(reached, static_cast<uint64_t>(n - std::count(d5.begin(), d5.end(), UINT32_MAX)));
  // The digest is stable across runs; a corrupted edge changes it.
  s.verify_begin();
  EXPECT_EQ(run_verify([&] { return s.verify_step(100000); }).digest, v.digest);
  s.corrupt();
  s.verify_begin();
  EXPECT_NE(run_verify([&] { return s.verify_step(100000); }).digest, v.digest);
}

TEST(Graph, SharedPagerankSlicesAreBoundedAndAdvance) {
  const uint64_t n = 2000;
  graph::GraphStore s;
  std::string err;
  ASSERT_TRUE(s.init(23, n, 1, &err));
  while (!s.build_step(100000).done) {
  }
  // Threads computing slices of shared iterations: every iteration completes, steps stay small.
  std::vector<std::thread> ts;
  std::atomic<uint64_t> max_edges{0};
  for (int t = 0; t < 3; ++t) {
    ts.emplace_back([&] {
      uint64_t it = 0;
      while (it < 4) {
        uint64_t e = s.pr_step(200, &it);
        uint64_t m = max_edges.load();
        while (e > m && !max_edges.compare_exchange_weak(m, e)) {
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_GT(max_edges.load(), 0u);
}

// ---- xsbench ----------------------------------------------------------------------------------

TEST(Xsbench, BinarySearchLookupsMatchLinearSearch) {
  xsbench::XsStore s;
  std::string err;
  ASSERT_TRUE(s.init(29, 300, &err));
  while (!s.build_step(5000).done) {
  }
  for (uint64_t i = 0; i < 300; ++i) {
    uint32_t m;
    double e;
    xsbench::XsStore::pick(41, i, &m, &e);
    xsbench::Macro got = s.lookup(m, e);
    xsbench::Macro want{};
    const auto& nucs = s.material(m);
    for (size_t k = 0; k < nucs.size(); ++k) {
      const xsbench::GridPoint* g = s.grid(nucs[k]);
      uint64_t lo = 0;
      for (uint64_t j = 0; j + 1 < s.gridpoints() - 1; ++j) {
        if (g[j + 1].energy <= e) lo = j + 1;
      }
      const auto& a = g[lo];
      const auto& b = g[lo + 1];
      double f = (b.energy - e) / (b.energy - a.energy);
      const double* av = &a.total;
      const double* bv = &b.total;
      for (int x = 0; x < 5; ++x)
        want.xs[x] += s.concentrations(m)[k] * (bv[x] - f * (bv[x] - av[x]));
    }
    for (int x = 0; x < 5; ++x) ASSERT_EQ(got.xs[x], want.xs[x]) << i << " " << x;
  }
  s.verify_begin();
  uint64_t d1 = run_verify([&] { return s.verify_step(20000); }).digest;
  s.verify_begin();
  EXPECT_EQ(run_verify([&] { return s.verify_step(1000000); }).digest, d1);
  s.corrupt();
  s.verify_begin();
  EXPECT_NE(run_verify([&] { return s.verify_step(20000); }).digest, d1);
}

}  // namespace
