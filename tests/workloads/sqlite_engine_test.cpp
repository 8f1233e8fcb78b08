// The sqlite workload's engine (apps/sqlite/trusted) on the host: SQL results against a reference
// computed in plain C++ from the same deterministic data and the same planned operations, and
// the verification passing on the real data and failing on every kind of change made behind
// the digests' back.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "sqlite/trusted/sqlite_engine.h"

namespace sqlitewl {
namespace {

using Rows = std::vector<std::vector<std::string>>;
using workload::pair_term;

constexpr uint64_t kSeed = 0x5eed1234;

struct Reference {
  uint64_t seed = 0, planned = 0;
  std::map<uint64_t, Row> rows;
  uint32_t w(uint32_t g) const { return group_weight(seed, g); }
  Digests digests() const {
    Digests d;
    for (auto& [k, r] : rows) d.add(r, w(r.g));
    return d;
  }
};

Reference reference(uint64_t seed, uint64_t n) {
  Reference ref;
  ref.seed = seed;
  ref.planned = n;
  for (uint64_t i = 0; i < n; ++i) {
    Row r = bulk_row(seed, i);
    ref.rows[r.k] = r;
  }
  return ref;
}

Rows q(SqliteStore& s, const std::string& sql) {
  Rows out;
  std::string err;
  EXPECT_TRUE(s.query(sql, &out, &err)) << sql << ": " << err;
  return out;
}

std::string one(SqliteStore& s, const std::string& sql) {
  Rows r = q(s, sql);
  return r.size() == 1 && r[0].size() == 1 ? r[0][0] : "<not one value>";
}

void build(SqliteStore& s, uint64_t seed, uint64_t n, uint64_t budget) {
  std::string err;
  ASSERT_TRUE(s.init(seed, n, &err)) << err;
  workload::BuildStep st;
  int calls = 0;
  do {
    ASSERT_TRUE(s.build_step(budget, &st, &err)) << err;
    ASSERT_LE(st.progress, n);
    ++calls;
  } while (!st.done);
  EXPECT_EQ(calls, static_cast<int>((n + budget - 1) / budget));
  EXPECT_TRUE(s.ready());
}

// What one planned batch must return, computed on the reference (and applied to it).
BatchResult simulate(Reference& ref, const std::vector<Op>& ops) {
  BatchResult r;
  const uint64_t cap = ref.planned + ref.planned / 4;
  const uint64_t floor = ref.planned - ref.planned / 4;
  for (size_t i = 0; i < ops.size(); ++i) {
    const Op& op = ops[i];
    auto it = ref.rows.find(op.a);
    bool found = it != ref.rows.end();
    switch (op.kind) {
      case OpKind::kPoint:
        ++r.points;
        r.found += found ? 1 : 0;
        r.reads += pair_term(
            i, found ? row_term(it->second.k, it->second.v, it->second.n, it->second.g) : 0);
        break;
      case OpKind::kRangeKey: {
        uint64_t count = 0, sum = 0;
        for (auto j = ref.rows.lower_bound(op.a); j != ref.rows.end() && j->first <= op.b; ++j) {
          ++count;
          sum += static_cast<uint64_t>(j->second.n);
        }
        ++r.ranges;
        r.reads += pair_term(i, pair_term(count, sum));
        break;
      }
      case OpKind::kRangeN: {
        uint64_t count = 0, sum = 0;
        for (auto& [k, row] : ref.rows) {
          if (row.n >= static_cast<int64_t>(op.a) && row.n <= static_cast<int64_t>(op.b)) {
            ++count;
            sum += k;
          }
        }
        ++r.ranges;
        r.reads += pair_term(i, pair_term(count, sum));
        break;
      }
      case OpKind::kJoin: {
        std::map<uint32_t, std::pair<uint64_t, std::pair<int64_t, int64_t>>> groups;
        for (auto j = ref.rows.lower_bound(op.a); j != ref.rows.end() && j->first <= op.b; ++j) {
          auto& g = groups[j->second.g];
          ++g.first;
          g.second.first += j->second.n;
          g.second.second += ref.w(j->second.g);
        }
        uint64_t t = 0;
        for (auto& [g, a] : groups) {
          t +=
              join_group_term(g, group_name(ref.seed, g), a.first, a.second.first, a.second.second);
        }
        ++r.ranges;
        r.reads += pair_term(i, t);
        break;
      }
      case OpKind::kUpdate:
        if (found) {
          it->second.v = op.v;
          it->second.n = op.n;
          ++r.writes;
        }
        break;
      case OpKind::kInsert:
        if (!found && ref.rows.size() < cap) {
          ref.rows[op.a] = Row{op.a, op.v, op.n, op.g};
          ++r.writes;
        }
        break;
      case OpKind::kDelete:
        if (found && ref.rows.size() > floor) {
          ref.rows.erase(it);
          ++r.writes;
        }
        break;
    }
  }
  r.rows = ref.rows.size();
  return r;
}

// Runs the verification to the end in steps of `budget` rows.
workload::VerifyStep verify_all(SqliteStore& s, uint64_t budget, uint64_t seq, uint64_t digest,
                                int* steps = nullptr) {
  s.verify_begin();
  workload::VerifyStep v;
  int n = 0;
  do {
    v = s.verify_step(budget, seq, digest);
    ++n;
  } while (!v.done && n < 100000);
  if (steps) *steps = n;
  return v;
}

// The table and the index as SQL returns them, against the reference.
void expect_matches(SqliteStore& s, const Reference& ref) {
  uint64_t sum_n = 0, sum_w = 0;
  std::map<uint32_t, std::pair<uint64_t, int64_t>> by_group;
  for (auto& [k, r] : ref.rows) {
    sum_n += static_cast<uint64_t>(r.n);
    sum_w += ref.w(r.g);
    by_group[r.g].first++;
    by_group[r.g].second += r.n;
  }
  EXPECT_EQ(q(s, "SELECT COUNT(*), SUM(n) FROM kv"),
            (Rows{{std::to_string(ref.rows.size()), std::to_string(sum_n)}}));
  Rows scan = q(s, "SELECT k, v, n, g FROM kv ORDER BY k");
  ASSERT_EQ(scan.size(), ref.rows.size());
  size_t i = 0;
  for (auto& [k, r] : ref.rows) {
    ASSERT_EQ(scan[i], (std::vector<std::string>{std::to_string(k), r.v, std::to_string(r.n),
                                                 std::to_string(r.g)}))
        << "row " << i;
    ++i;
  }
  Rows groups = q(s, "SELECT g, COUNT(*), SUM(n) FROM kv GROUP BY g ORDER BY g");
  ASSERT_EQ(groups.size(), by_group.size());
  i = 0;
  for (auto& [g, a] : by_group) {
    EXPECT_EQ(groups[i++], (std::vector<std::string>{std::to_string(g), std::to_string(a.first),
                                                     std::to_string(a.second)}));
  }
  EXPECT_EQ(q(s, "SELECT COUNT(*), SUM(grp.w) FROM kv JOIN grp ON grp.id = kv.g"),
            (Rows{{std::to_string(ref.rows.size()), std::to_string(sum_w)}}));
  for (int64_t lo : {0LL, 1000LL, 524288LL, 1048000LL}) {
    int64_t hi = lo + 4096;
    uint64_t count = 0, sum = 0;
    for (auto& [k, r] : ref.rows) {
      if (r.n >= lo && r.n <= hi) {
        ++count;
        sum += k;
      }
    }
    EXPECT_EQ(q(s,
                "SELECT COUNT(*), COALESCE(SUM(k), 0) FROM kv INDEXED BY kv_n WHERE n "
                "BETWEEN " +
                    std::to_string(lo) + " AND " + std::to_string(hi)),
              (Rows{{std::to_string(count), std::to_string(sum)}}));
  }
  EXPECT_EQ(s.digests(), ref.digests());
  EXPECT_EQ(one(s, "PRAGMA integrity_check"), "ok");
}

TEST(SqliteEngine, DataIsDeterministicAndVaried) {
  Row a = bulk_row(kSeed, 7), b = bulk_row(kSeed, 7), c = bulk_row(kSeed + 1, 7);
  EXPECT_EQ(a.k, b.k);
  EXPECT_EQ(a.v, b.v);
  EXPECT_TRUE(a.v != c.v || a.n != c.n);
  EXPECT_GE(a.k, 7 * kKeyStride);
  EXPECT_LT(a.k, 8 * kKeyStride);
  for (uint64_t x = 0; x < 200; ++x) {
    std::string v = make_value(x * 977);
    EXPECT_GE(v.size(), 16u);
    EXPECT_LT(v.size(), 48u);
    EXPECT_EQ(v.find_first_not_of("0123456789abcdefghijklmnopqrstuvwxyz"), std::string::npos);
  }
  EXPECT_NE(group_name(kSeed, 1), group_name(kSeed, 2));
}

TEST(SqliteEngine, BulkLoadMatchesReference) {
  SqliteStore s;
  build(s, kSeed, 3000, 700);
  Reference ref = reference(kSeed, 3000);
  expect_matches(s, ref);
  Rows grp = q(s, "SELECT id, name, w FROM grp ORDER BY id");
  ASSERT_EQ(grp.size(), kGroups);
  for (uint32_t g = 0; g < kGroups; ++g) {
    EXPECT_EQ(grp[g], (std::vector<std::string>{std::to_string(g), group_name(kSeed, g),
                                                std::to_string(group_weight(kSeed, g))}));
  }
  std::string err;
  EXPECT_FALSE(s.init(kSeed, 10, &err));  // once only
  EXPECT_NE(err.find("already"), std::string::npos);
}

TEST(SqliteEngine, BatchesMatchReference) {
  SqliteStore s;
  build(s, kSeed, 2000, 2000);
  Reference ref = reference(kSeed, 2000);
  uint64_t writes = 0, points = 0, ranges = 0, found = 0, last_seq = 0;
  for (int b = 0; b < 300; ++b) {
    uint64_t seed = 0x1000 + b * 7919;
    std::vector<Op> ops = s.plan(seed, 64, 300);  // more writes than the app, to move the data
    ASSERT_EQ(ops, s.plan(seed, 64, 300));        // planning is deterministic
    BatchResult want = simulate(ref, ops);
    BatchResult got;
    std::string err;
    ASSERT_TRUE(s.run_batch(seed, 64, 300, &got, &err)) << err;
    ASSERT_EQ(got.points, want.points) << "batch " << b;
    ASSERT_EQ(got.found, want.found) << "batch " << b;
    ASSERT_EQ(got.ranges, want.ranges) << "batch " << b;
    ASSERT_EQ(got.writes, want.writes) << "batch " << b;
    ASSERT_EQ(got.reads, want.reads) << "batch " << b << ": a query returned another result";
    ASSERT_EQ(got.rows, want.rows) << "batch " << b;
    EXPECT_EQ(got.seq, last_seq + (got.writes > 0 ? 1 : 0));
    last_seq = got.seq;
    writes += got.writes;
    points += got.points;
    ranges += got.ranges;
    found += got.found;
  }
  EXPECT_GT(writes, 1000u);
  EXPECT_GT(ranges, 1000u);
  EXPECT_GT(found, points / 2);  // some bulk keys were deleted, most are still there
  EXPECT_LT(found, points);
  expect_matches(s, ref);
}

TEST(SqliteEngine, VerifyPassesInStepsAndAnchors) {
  SqliteStore s;
  build(s, kSeed, 5000, 1234);
  BatchResult r;
  std::string err;
  for (int b = 0; b < 50; ++b) ASSERT_TRUE(s.run_batch(b + 1, 64, 100, &r, &err)) << err;
  int steps = 0;
  workload::VerifyStep v = verify_all(s, 333, r.seq, r.digest, &steps);
  EXPECT_TRUE(v.done);
  EXPECT_FALSE(v.failed) << v.detail;
  EXPECT_GT(steps, 4 * 5000 / 333);  // resumed across many steps, every phase
  EXPECT_EQ(v.progress, 4 * r.rows + 1);
  // The same data gives the same ordered-scan hash whatever the step size.
  workload::VerifyStep v2 = verify_all(s, 1000000, r.seq, r.digest);
  EXPECT_FALSE(v2.failed) << v2.detail;
  EXPECT_EQ(v2.digest, v.digest);

  uint64_t cs = 0, cd = 0;
  EXPECT_TRUE(s.anchor(r.seq, r.digest, &cs, &cd, &err)) << err;
  EXPECT_FALSE(s.anchor(r.seq, r.digest ^ 1, &cs, &cd, &err));
  EXPECT_FALSE(s.anchor(r.seq + 1, r.digest, &cs, &cd, &err));
  EXPECT_EQ(cs, r.seq);
  EXPECT_EQ(cd, r.digest);
  // The host's view must be the enclave's latest.
  EXPECT_TRUE(verify_all(s, 1000, r.seq, r.digest ^ 1).failed);
  EXPECT_TRUE(verify_all(s, 1000, r.seq - 1, r.digest).failed);
  EXPECT_FALSE(s.verify_step(10, r.seq, r.digest).done);  // a step needs verify_begin
}

// Every change made behind the digests' back fails the verification, naming the query.
TEST(SqliteEngine, VerifyDetectsChanges) {
  struct Case {
    const char* sql;
    const char* expect;  // in the failure detail
  };
  const Case cases[] = {
      {"UPDATE kv SET v = v || 'x' WHERE k = (SELECT k FROM kv ORDER BY k LIMIT 1 OFFSET 77)",
       "ordered table scan"},
      {"UPDATE kv SET n = n + 1 WHERE k = (SELECT MAX(k) FROM kv)", "SUM(n)"},
      {"DELETE FROM kv WHERE k = (SELECT k FROM kv ORDER BY k LIMIT 1 OFFSET 500)", "COUNT(*)"},
      {"UPDATE kv SET g = (g + 1) % 1024 WHERE k = (SELECT MIN(k) FROM kv)", "ordered table scan"},
      {"UPDATE grp SET w = w + 1 WHERE id = 5", "grp"},
      {"UPDATE kv SET g = 5000 WHERE k = (SELECT MIN(k) FROM kv)", "out of range"},
      {"UPDATE kv SET n = 'text' WHERE k = (SELECT MIN(k) FROM kv)", "wrong type"},
  };
  for (const Case& c : cases) {
    SqliteStore s;
    build(s, kSeed, 1500, 1500);
    Digests d = s.digests();
    workload::VerifyStep ok = verify_all(s, 200, 0, d.combined());
    ASSERT_FALSE(ok.failed) << ok.detail;
    Rows ignored;
    std::string err;
    ASSERT_TRUE(s.query(c.sql, &ignored, &err)) << err;
    workload::VerifyStep v = verify_all(s, 200, 0, d.combined());
    EXPECT_TRUE(v.done);
    EXPECT_TRUE(v.failed) << c.sql;
    EXPECT_NE(v.detail.find(c.expect), std::string::npos) << c.sql << " -> " << v.detail;
  }
  SqliteStore s;
  build(s, kSeed, 1500, 1500);
  std::string err;
  ASSERT_TRUE(s.corrupt(&err)) << err;  // what --self-test-corrupt does
  workload::VerifyStep v = verify_all(s, 500, 0, s.digests().combined());
  EXPECT_TRUE(v.failed);
  EXPECT_NE(v.detail.find("SUM(n)"), std::string::npos) << v.detail;
}

TEST(SqliteEngine, SqlErrorsAreReported) {
  SqliteStore s;
  build(s, kSeed, 100, 100);
  Rows out;
  std::string err;
  EXPECT_FALSE(s.query("SELECT nope FROM kv", &out, &err));
  EXPECT_NE(err.find("no such column"), std::string::npos) << err;
  // No file can be opened inside the enclave's VFS.
  EXPECT_FALSE(s.query("ATTACH DATABASE '/tmp/constmig-sqlite-test.db' AS f", &out, &err));
  EXPECT_NE(err.find("unable to open"), std::string::npos) << err;
  EXPECT_EQ(one(s, "SELECT sqlite_version()"), "3.51.1");
}

}  // namespace
}  // namespace sqlitewl
