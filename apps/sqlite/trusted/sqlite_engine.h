// sqlite engine (TRUSTED, also compiled into host unit tests): an in-memory SQLite database
// (":memory:", pages in the enclave heap through malloc) with
//   grp(id INTEGER PRIMARY KEY, name TEXT, w INTEGER)         kGroups rows, the join side
//   kv(k INTEGER PRIMARY KEY, v TEXT, n INTEGER, g INTEGER)    the data, index kv_n ON kv(n)
// and the store around it: a deterministic load in bounded steps, batches of SQL operations
// (point SELECTs, key and index range aggregates, a join with GROUP BY, UPDATE/INSERT/DELETE),
// running digests of what the verification queries must return (kept in C++ beside the
// database, updated with every write), a history ring of them, and a resumable verifier that
// re-runs the queries (an ordered table scan, an index scan, a join scan, chunked COUNT/SUM
// aggregates, the grp table) and compares.
//
// SQLite is built with SQLITE_THREADSAFE=0: the store's one mutex serializes every call into
// it (ECALLs come from several host threads).
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "workload_common/workload_util.h"

struct sqlite3;
struct sqlite3_stmt;

namespace sqlitewl {

inline constexpr uint64_t kKeyStride = 8;    // bulk row i has key in [i * 8, i * 8 + 8)
inline constexpr uint32_t kGroups = 1024;    // rows of grp
inline constexpr int64_t kNRange = 1 << 20;  // n lies in [0, kNRange)

struct Row {
  uint64_t k = 0;
  std::string v;
  int64_t n = 0;
  uint32_t g = 0;
};

// The deterministic data (the tests build their reference from the same functions).
Row bulk_row(uint64_t seed, uint64_t i);
std::string make_value(uint64_t x);  // 16..47 characters of [0-9a-z]
uint32_t group_weight(uint64_t seed, uint32_t g);
std::string group_name(uint64_t seed, uint32_t g);
uint64_t text_hash(const std::string& s);  // FNV-1a 64
uint64_t row_term(uint64_t k, const std::string& v, int64_t n, uint32_t g);

// What the verification queries return, as order-independent sums (mod 2^64).
struct Digests {
  uint64_t rows = 0;      // SELECT COUNT(*) FROM kv
  uint64_t sum_n = 0;     // SELECT SUM(n) FROM kv
  uint64_t row_sum = 0;   // sum of row_term over a scan of kv
  uint64_t idx_sum = 0;   // sum of pair_term(n, k) over a scan of the index kv_n
  uint64_t join_sum = 0;  // sum of pair_term(k, w) over kv JOIN grp
  void add(const Row& r, uint32_t w);
  void sub(const Row& r, uint32_t w);
  uint64_t combined() const;  // one number for the host to carry
  bool operator==(const Digests&) const = default;
};

// One operation of a batch, planned from the batch seed alone (plan() is deterministic).
enum class OpKind : uint8_t { kPoint, kRangeKey, kRangeN, kJoin, kUpdate, kInsert, kDelete };
struct Op {
  OpKind kind = OpKind::kPoint;
  uint64_t a = 0, b = 0;  // key (point, writes), or the inclusive range [a, b] (k or n)
  std::string v;          // update, insert
  int64_t n = 0;          // update, insert
  uint32_t g = 0;         // insert
  bool operator==(const Op&) const = default;
};

// What each read operation returns folds into BatchResult::reads:
//   point     -> pair_term(i, found ? row_term(k, v, n, g) : 0)
//   range key -> pair_term(i, pair_term(COUNT(*), SUM(n)))       k BETWEEN a AND b
//   range n   -> pair_term(i, pair_term(COUNT(*), SUM(k)))       n BETWEEN a AND b (index)
//   join      -> pair_term(i, sum over groups of pair_term(g, mix(name, COUNT(*), SUM(n),
//                SUM(w))))                                        k BETWEEN a AND b, GROUP BY g
// with i the operation's index in the batch. join_group_term() is that inner term.
uint64_t join_group_term(uint32_t g, const std::string& name, uint64_t count, int64_t sum_n,
                         int64_t sum_w);

struct BatchResult {
  uint64_t points = 0, found = 0, ranges = 0, writes = 0;
  uint64_t seq = 0, digest = 0, rows = 0;  // after this batch
  uint64_t reads = 0;                      // checksum of every read's result (above)
};

// The store behind the sqlite ECALLs: thread-safe (one mutex).
class SqliteStore {
 public:
  static constexpr size_t kRing = 256;
  SqliteStore() = default;
  ~SqliteStore();
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  // Open the database, create the schema and fill grp; false (and *err) on failure or if
  // already initialised.
  bool init(uint64_t seed, uint64_t nrows, std::string* err);
  // Insert up to `budget` rows of kv (one transaction); false on an SQLite error.
  bool build_step(uint64_t budget, workload::BuildStep* step, std::string* err);
  // The operations of one batch (deterministic from seed and the store's plan).
  std::vector<Op> plan(uint64_t seed, uint32_t ops, uint32_t write_permille) const;
  // Runs plan(seed, ...) in one transaction. On an SQLite error the transaction rolls back,
  // the digests stay as they were and false is returned.
  bool run_batch(uint64_t seed, uint32_t ops, uint32_t write_permille, BatchResult* r,
                 std::string* err);
  // Is (seq, digest) the store's state after batch `seq`? (the host's carried view)
  bool anchor(uint64_t seq, uint64_t digest, uint64_t* cur_seq, uint64_t* cur_digest,
              std::string* err);
  // Verification in steps (the caller keeps the load away meanwhile).
  void verify_begin();
  workload::VerifyStep verify_step(uint64_t budget, uint64_t host_seq, uint64_t host_digest);
  // TESTING ONLY: change one row with SQL, not the digests.
  bool corrupt(std::string* err);
  void info(uint64_t* rows, uint64_t* seq, uint64_t* digest, uint64_t* pages);
  bool ready() const { return built_; }

  // For tests: run SQL and return every row as text (NULL -> "NULL"); false and *err on error.
  bool query(const std::string& sql, std::vector<std::vector<std::string>>* rows, std::string* err);
  Digests digests();
  uint64_t seed() const { return seed_; }
  uint64_t planned_rows() const { return nrows_; }

 private:
  struct Verify {
    bool started = false;
    int phase = 0;  // 0 table, 1 index, 2 join, 3 aggregates, 4 grp, 5 done
    uint64_t last_k = 0;
    int64_t last_n = 0;
    bool have_last = false;
    Digests got;
    uint64_t idx_rows = 0, join_rows = 0, agg_rows = 0, agg_sum_n = 0;
    uint64_t ordered = 0;  // chain hash of the ordered table scan (the reported digest)
    std::string error;
  };
  bool exec(const char* sql, std::string* err);
  bool prepare(const char* sql, sqlite3_stmt** st, std::string* err);
  std::string errmsg(const char* what) const;
  bool lookup(uint64_t k, Row* row, bool* found, std::string* err);
  bool apply(const Op& op, size_t i, Digests* d, BatchResult* r, std::string* err);
  bool verify_phase(uint64_t budget, bool* phase_done);
  void record(uint64_t seq, uint64_t digest) { ring_[seq % kRing] = {seq, digest}; }

  std::mutex mu_;
  sqlite3* db_ = nullptr;
  struct Stmts {
    sqlite3_stmt *point = nullptr, *range_k = nullptr, *range_n = nullptr, *join = nullptr;
    sqlite3_stmt *update = nullptr, *insert = nullptr, *del = nullptr;
    sqlite3_stmt *scan = nullptr, *scan_idx = nullptr, *scan_join = nullptr, *agg = nullptr;
    sqlite3_stmt* grp = nullptr;
  } st_;
  uint64_t seed_ = 0, nrows_ = 0, appended_ = 0;
  std::vector<uint32_t> weights_;  // w of each group (deterministic; the digest's reference)
  bool planned_ = false, built_ = false;
  Digests cur_;
  uint64_t seq_ = 0;
  std::array<std::pair<uint64_t, uint64_t>, kRing> ring_{};
  Verify ver_;
};

}  // namespace sqlitewl
