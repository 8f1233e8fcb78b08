#include "sqlite/trusted/sqlite_engine.h"

#include <algorithm>

#include "sqlite3.h"

namespace sqlitewl {

using workload::BuildStep;
using workload::mix64;
using workload::pair_term;
using workload::splitmix;
using workload::VerifyStep;

namespace {

constexpr char kAlphabet[] = "0123456789abcdefghijklmnopqrstuvwxyz";
constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ull;

uint64_t bulk_key(uint64_t seed, uint64_t i) {
  return i * kKeyStride + mix64(seed ^ (i * 0x9e3779b97f4a7c15ull)) % kKeyStride;
}

std::string column_text(sqlite3_stmt* st, int col) {
  const unsigned char* p = sqlite3_column_text(st, col);
  int n = sqlite3_column_bytes(st, col);
  return p == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(p), n);
}

bool bind_text(sqlite3_stmt* st, int col, const std::string& s) {
  return sqlite3_bind_text(st, col, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT) ==
         SQLITE_OK;
}

// Resets a statement when leaving the scope (it holds no read transaction open afterwards).
struct Reset {
  sqlite3_stmt* st;
  explicit Reset(sqlite3_stmt* s) : st(s) {}
  ~Reset() {
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
  }
  Reset(const Reset&) = delete;
  Reset& operator=(const Reset&) = delete;
};

}  // namespace

std::string make_value(uint64_t x) {
  uint64_t s = x;
  size_t len = 16 + x % 32;
  std::string v(len, '0');
  uint64_t bits = 0;
  int left = 0;
  for (size_t i = 0; i < len; ++i) {
    if (left == 0) {
      bits = splitmix(s);
      left = 10;  // 6 bits per character
    }
    v[i] = kAlphabet[(bits & 63) % 36];
    bits >>= 6;
    --left;
  }
  return v;
}

Row bulk_row(uint64_t seed, uint64_t i) {
  Row r;
  r.k = bulk_key(seed, i);
  uint64_t x = mix64(seed + r.k * 0xd1b54a32d192ed03ull);
  r.v = make_value(x);
  r.n = static_cast<int64_t>(mix64(x ^ 0x6a09e667f3bcc908ull) % kNRange);
  r.g = static_cast<uint32_t>(mix64(x ^ 0xbb67ae8584caa73bull) % kGroups);
  return r;
}

uint32_t group_weight(uint64_t seed, uint32_t g) {
  return static_cast<uint32_t>(mix64(seed ^ (0x3c6ef372fe94f82bull + g)) % 1000) + 1;
}

std::string group_name(uint64_t seed, uint32_t g) {
  return "group-" + std::to_string(g) + "-" + make_value(mix64(seed * 31 + g)).substr(0, 8);
}

uint64_t text_hash(const std::string& s) {
  uint64_t h = kFnvOffset;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

uint64_t row_term(uint64_t k, const std::string& v, int64_t n, uint32_t g) {
  return pair_term(k, text_hash(v) ^ mix64(static_cast<uint64_t>(n) * 0x9e3779b97f4a7c15ull + g));
}

uint64_t join_group_term(uint32_t g, const std::string& name, uint64_t count, int64_t sum_n,
                         int64_t sum_w) {
  uint64_t h = mix64(text_hash(name) ^ count);
  h = mix64(h ^ static_cast<uint64_t>(sum_n));
  h = mix64(h ^ static_cast<uint64_t>(sum_w));
  return pair_term(g, h);
}

void Digests::add(const Row& r, uint32_t w) {
  ++rows;
  sum_n += static_cast<uint64_t>(r.n);
  row_sum += row_term(r.k, r.v, r.n, r.g);
  idx_sum += pair_term(static_cast<uint64_t>(r.n), r.k);
  join_sum += pair_term(r.k, w);
}

void Digests::sub(const Row& r, uint32_t w) {
  --rows;
  sum_n -= static_cast<uint64_t>(r.n);
  row_sum -= row_term(r.k, r.v, r.n, r.g);
  idx_sum -= pair_term(static_cast<uint64_t>(r.n), r.k);
  join_sum -= pair_term(r.k, w);
}

uint64_t Digests::combined() const {
  uint64_t h = mix64(rows);
  for (uint64_t x : {sum_n, row_sum, idx_sum, join_sum}) h = mix64(h ^ x);
  return h;
}

SqliteStore::~SqliteStore() {
  for (sqlite3_stmt* s : {st_.point, st_.range_k, st_.range_n, st_.join, st_.update, st_.insert,
                          st_.del, st_.scan, st_.scan_idx, st_.scan_join, st_.agg, st_.grp}) {
    sqlite3_finalize(s);
  }
  sqlite3_close(db_);
}

std::string SqliteStore::errmsg(const char* what) const {
  int code = db_ ? sqlite3_extended_errcode(db_) : SQLITE_ERROR;
  std::string m = std::string("SQLite: ") + what + ": " +
                  (db_ ? sqlite3_errmsg(db_) : "no database") + " (code " + std::to_string(code) +
                  ")";
  if ((code & 0xff) == SQLITE_NOMEM || (code & 0xff) == SQLITE_FULL) {
    m += ": the enclave heap is full";
  }
  return m;
}

bool SqliteStore::exec(const char* sql, std::string* err) {
  char* msg = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &msg) == SQLITE_OK) return true;
  *err = errmsg(sql);
  sqlite3_free(msg);
  return false;
}

bool SqliteStore::prepare(const char* sql, sqlite3_stmt** st, std::string* err) {
  if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, st, nullptr) == SQLITE_OK) {
    return true;
  }
  *err = errmsg(sql);
  return false;
}

bool SqliteStore::init(uint64_t seed, uint64_t nrows, std::string* err) {
  std::lock_guard lk(mu_);
  if (planned_ || db_ != nullptr) {
    *err = planned_ ? "sqlite already initialised"
                    : "an earlier sq_init failed half-way: start a new enclave";
    return false;
  }
  if (sqlite3_initialize() != SQLITE_OK) {
    *err = "SQLite: sqlite3_initialize failed";
    return false;
  }
  int rc = sqlite3_open_v2(":memory:", &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  if (rc != SQLITE_OK) {
    *err = errmsg("open :memory:");
    return false;
  }
  seed_ = seed;
  nrows_ = nrows;
  if (!exec("PRAGMA journal_mode=MEMORY; PRAGMA synchronous=OFF; PRAGMA temp_store=MEMORY;"
            "CREATE TABLE grp(id INTEGER PRIMARY KEY, name TEXT NOT NULL, w INTEGER NOT NULL);"
            "CREATE TABLE kv(k INTEGER PRIMARY KEY, v TEXT NOT NULL, n INTEGER NOT NULL,"
            "                g INTEGER NOT NULL);"
            "CREATE INDEX kv_n ON kv(n);",
            err)) {
    return false;
  }
  const char* sql[] = {
      "SELECT v, n, g FROM kv WHERE k = ?1",
      "SELECT COUNT(*), SUM(n) FROM kv WHERE k BETWEEN ?1 AND ?2",
      "SELECT COUNT(*), SUM(k) FROM kv WHERE n BETWEEN ?1 AND ?2",
      "SELECT kv.g, grp.name, COUNT(*), SUM(kv.n), SUM(grp.w) FROM kv CROSS JOIN grp "
      "ON grp.id = kv.g WHERE kv.k BETWEEN ?1 AND ?2 GROUP BY kv.g ORDER BY kv.g",
      "UPDATE kv SET v = ?2, n = ?3 WHERE k = ?1",
      "INSERT INTO kv(k, v, n, g) VALUES(?1, ?2, ?3, ?4)",
      "DELETE FROM kv WHERE k = ?1",
      "SELECT k, v, n, g FROM kv WHERE k > ?1 ORDER BY k LIMIT ?2",
      "SELECT n, k FROM kv INDEXED BY kv_n WHERE (n, k) > (?1, ?2) ORDER BY n, k LIMIT ?3",
      "SELECT kv.k, grp.w FROM kv CROSS JOIN grp ON grp.id = kv.g WHERE kv.k > ?1 "
      "ORDER BY kv.k LIMIT ?2",
      "SELECT COUNT(*), SUM(n), MAX(k) FROM (SELECT k, n FROM kv WHERE k > ?1 ORDER BY k "
      "LIMIT ?2)",
      "SELECT id, name, w FROM grp ORDER BY id",
  };
  sqlite3_stmt** out[] = {&st_.point,    &st_.range_k,   &st_.range_n, &st_.join,
                          &st_.update,   &st_.insert,    &st_.del,     &st_.scan,
                          &st_.scan_idx, &st_.scan_join, &st_.agg,     &st_.grp};
  for (size_t i = 0; i < std::size(sql); ++i) {
    if (!prepare(sql[i], out[i], err)) return false;
  }
  weights_.resize(kGroups);
  sqlite3_stmt* ins = nullptr;
  if (!prepare("INSERT INTO grp(id, name, w) VALUES(?1, ?2, ?3)", &ins, err)) return false;
  if (!exec("BEGIN", err)) return false;
  for (uint32_t g = 0; g < kGroups; ++g) {
    weights_[g] = group_weight(seed, g);
    sqlite3_bind_int64(ins, 1, g);
    bind_text(ins, 2, group_name(seed, g));
    sqlite3_bind_int64(ins, 3, weights_[g]);
    if (sqlite3_step(ins) != SQLITE_DONE) {
      *err = errmsg("INSERT INTO grp");
      sqlite3_finalize(ins);
      return false;
    }
    sqlite3_reset(ins);
  }
  sqlite3_finalize(ins);
  if (!exec("COMMIT", err)) return false;
  planned_ = true;
  return true;
}

bool SqliteStore::build_step(uint64_t budget, BuildStep* s, std::string* err) {
  std::lock_guard lk(mu_);
  if (!planned_) {
    *err = "sqlite not initialised: call sq_init first";
    return false;
  }
  s->phase = "INSERT INTO kv";
  uint64_t end = std::min(nrows_, appended_ + budget);
  Digests d = cur_;
  if (appended_ < end) {
    if (!exec("BEGIN", err)) return false;
    for (uint64_t i = appended_; i < end; ++i) {
      Row r = bulk_row(seed_, i);
      Reset rs(st_.insert);
      sqlite3_bind_int64(st_.insert, 1, static_cast<int64_t>(r.k));
      bind_text(st_.insert, 2, r.v);
      sqlite3_bind_int64(st_.insert, 3, r.n);
      sqlite3_bind_int64(st_.insert, 4, r.g);
      if (sqlite3_step(st_.insert) != SQLITE_DONE) {
        *err = errmsg("bulk INSERT INTO kv");
        if (!sqlite3_get_autocommit(db_)) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
        return false;
      }
      d.add(r, weights_[r.g]);
    }
    if (!exec("COMMIT", err)) {
      if (!sqlite3_get_autocommit(db_)) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      return false;
    }
    appended_ = end;
    cur_ = d;
  }
  if (appended_ == nrows_ && !built_) {
    built_ = true;
    seq_ = 0;
    record(0, cur_.combined());
  }
  s->done = built_;
  s->progress = appended_;
  s->total = nrows_;
  return true;
}

std::vector<Op> SqliteStore::plan(uint64_t seed, uint32_t ops, uint32_t write_permille) const {
  std::vector<Op> out;
  out.reserve(ops);
  uint64_t rng = seed;
  const uint64_t n_span = std::max<uint64_t>(1, static_cast<uint64_t>(kNRange) * 32 / nrows_);
  for (uint32_t i = 0; i < ops; ++i) {
    uint64_t x = splitmix(rng);
    Op op;
    op.a = bulk_key(seed_, (x >> 24) % nrows_);
    if (x % 1000 < write_permille) {
      switch ((x >> 10) % 4) {
        case 0:
        case 1:
          op.kind = OpKind::kUpdate;
          break;
        case 2:
          op.kind = OpKind::kInsert;
          op.a = splitmix(rng) % (nrows_ * kKeyStride);
          op.g = static_cast<uint32_t>(splitmix(rng) % kGroups);
          break;
        default:
          op.kind = OpKind::kDelete;
          break;
      }
      if (op.kind != OpKind::kDelete) {
        op.v = make_value(splitmix(rng));
        op.n = static_cast<int64_t>(splitmix(rng) % kNRange);
      }
    } else {
      uint64_t r = (x >> 10) % 100;
      if (r < 80) {
        op.kind = OpKind::kPoint;
      } else if (r < 88) {
        op.kind = OpKind::kRangeKey;
        op.b = op.a + 32 * kKeyStride - 1;
      } else if (r < 94) {
        op.kind = OpKind::kRangeN;
        op.a = splitmix(rng) % kNRange;
        op.b = op.a + n_span - 1;
      } else {
        op.kind = OpKind::kJoin;
        op.b = op.a + 16 * kKeyStride - 1;
      }
    }
    out.push_back(std::move(op));
  }
  return out;
}

bool SqliteStore::lookup(uint64_t k, Row* row, bool* found, std::string* err) {
  Reset rs(st_.point);
  sqlite3_bind_int64(st_.point, 1, static_cast<int64_t>(k));
  int rc = sqlite3_step(st_.point);
  if (rc == SQLITE_DONE) {
    *found = false;
    return true;
  }
  if (rc != SQLITE_ROW) {
    *err = errmsg("point SELECT");
    return false;
  }
  *found = true;
  row->k = k;
  row->v = column_text(st_.point, 0);
  row->n = sqlite3_column_int64(st_.point, 1);
  row->g = static_cast<uint32_t>(sqlite3_column_int64(st_.point, 2));
  return true;
}

bool SqliteStore::apply(const Op& op, size_t i, Digests* d, BatchResult* r, std::string* err) {
  const uint64_t cap = nrows_ + nrows_ / 4;
  const uint64_t floor = std::max<uint64_t>(1, nrows_ - nrows_ / 4);
  auto step_done = [&](sqlite3_stmt* st, const char* what) {
    if (sqlite3_step(st) == SQLITE_DONE) return true;
    *err = errmsg(what);
    return false;
  };
  switch (op.kind) {
    case OpKind::kPoint: {
      Row row;
      bool found = false;
      if (!lookup(op.a, &row, &found, err)) return false;
      ++r->points;
      if (found) ++r->found;
      r->reads += pair_term(i, found ? row_term(row.k, row.v, row.n, row.g) : 0);
      return true;
    }
    case OpKind::kRangeKey:
    case OpKind::kRangeN: {
      sqlite3_stmt* st = op.kind == OpKind::kRangeKey ? st_.range_k : st_.range_n;
      Reset rs(st);
      sqlite3_bind_int64(st, 1, static_cast<int64_t>(op.a));
      sqlite3_bind_int64(st, 2, static_cast<int64_t>(op.b));
      if (sqlite3_step(st) != SQLITE_ROW) {
        *err = errmsg("range aggregate");
        return false;
      }
      ++r->ranges;
      uint64_t count = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
      uint64_t sum = static_cast<uint64_t>(sqlite3_column_int64(st, 1));
      r->reads += pair_term(i, pair_term(count, sum));
      return true;
    }
    case OpKind::kJoin: {
      Reset rs(st_.join);
      sqlite3_bind_int64(st_.join, 1, static_cast<int64_t>(op.a));
      sqlite3_bind_int64(st_.join, 2, static_cast<int64_t>(op.b));
      uint64_t t = 0;
      int rc;
      while ((rc = sqlite3_step(st_.join)) == SQLITE_ROW) {
        t += join_group_term(static_cast<uint32_t>(sqlite3_column_int64(st_.join, 0)),
                             column_text(st_.join, 1),
                             static_cast<uint64_t>(sqlite3_column_int64(st_.join, 2)),
                             sqlite3_column_int64(st_.join, 3), sqlite3_column_int64(st_.join, 4));
      }
      if (rc != SQLITE_DONE) {
        *err = errmsg("join GROUP BY");
        return false;
      }
      ++r->ranges;
      r->reads += pair_term(i, t);
      return true;
    }
    case OpKind::kUpdate:
    case OpKind::kInsert:
    case OpKind::kDelete:
      break;
  }
  Row old;
  bool found = false;
  if (!lookup(op.a, &old, &found, err)) return false;
  if (op.kind == OpKind::kUpdate && found) {
    Reset rs(st_.update);
    sqlite3_bind_int64(st_.update, 1, static_cast<int64_t>(op.a));
    bind_text(st_.update, 2, op.v);
    sqlite3_bind_int64(st_.update, 3, op.n);
    if (!step_done(st_.update, "UPDATE kv")) return false;
    d->sub(old, weights_[old.g]);
    Row nw{op.a, op.v, op.n, old.g};
    d->add(nw, weights_[nw.g]);
  } else if (op.kind == OpKind::kInsert && !found && d->rows < cap) {
    Reset rs(st_.insert);
    sqlite3_bind_int64(st_.insert, 1, static_cast<int64_t>(op.a));
    bind_text(st_.insert, 2, op.v);
    sqlite3_bind_int64(st_.insert, 3, op.n);
    sqlite3_bind_int64(st_.insert, 4, op.g);
    if (!step_done(st_.insert, "INSERT INTO kv")) return false;
    d->add(Row{op.a, op.v, op.n, op.g}, weights_[op.g]);
  } else if (op.kind == OpKind::kDelete && found && d->rows > floor) {
    Reset rs(st_.del);
    sqlite3_bind_int64(st_.del, 1, static_cast<int64_t>(op.a));
    if (!step_done(st_.del, "DELETE FROM kv")) return false;
    d->sub(old, weights_[old.g]);
  } else {
    return true;  // nothing to write (missing key, existing key, size bound)
  }
  ++r->writes;
  return true;
}

bool SqliteStore::run_batch(uint64_t seed, uint32_t ops, uint32_t write_permille, BatchResult* r,
                            std::string* err) {
  std::vector<Op> todo = plan(seed, ops, write_permille);
  std::lock_guard lk(mu_);
  *r = BatchResult{};
  Digests d = cur_;
  if (!exec("BEGIN", err)) return false;
  bool ok = true;
  for (size_t i = 0; i < todo.size() && ok; ++i) ok = apply(todo[i], i, &d, r, err);
  if (ok) ok = exec("COMMIT", err);
  if (!ok) {
    if (!sqlite3_get_autocommit(db_)) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    return false;
  }
  cur_ = d;
  if (r->writes > 0) {
    ++seq_;
    record(seq_, cur_.combined());
  }
  r->seq = seq_;
  r->digest = cur_.combined();
  r->rows = cur_.rows;
  return true;
}

bool SqliteStore::anchor(uint64_t seq, uint64_t digest, uint64_t* cur_seq, uint64_t* cur_digest,
                         std::string* err) {
  std::lock_guard lk(mu_);
  *cur_seq = seq_;
  *cur_digest = cur_.combined();
  if (seq > seq_ || seq + kRing <= seq_) {
    *err = "the host saw batch " + std::to_string(seq) + " but the enclave is at batch " +
           std::to_string(seq_) + " (state from another point in time)";
    return false;
  }
  auto e = ring_[seq % kRing];
  if (e.first != seq || e.second != digest) {
    *err = "query digest after batch " + std::to_string(seq) + " differs from what the host saw";
    return false;
  }
  return true;
}

void SqliteStore::verify_begin() {
  std::lock_guard lk(mu_);
  ver_ = Verify{};
  ver_.started = true;
}

// One bounded piece of the current phase; *phase_done when it reached its end. Returns false
// on an SQLite error (ver_.error set).
bool SqliteStore::verify_phase(uint64_t budget, bool* phase_done) {
  Verify& v = ver_;
  *phase_done = false;
  auto fail = [&](const std::string& e) {
    v.error = e;
    return false;
  };
  const auto limit = static_cast<int64_t>(budget);
  int rc = SQLITE_DONE;
  uint64_t seen = 0;
  switch (v.phase) {
    case 0: {  // SELECT k, v, n, g ... ORDER BY k: every row, in key order
      sqlite3_stmt* st = st_.scan;
      Reset rs(st);
      sqlite3_bind_int64(st, 1, v.have_last ? static_cast<int64_t>(v.last_k) : -1);
      sqlite3_bind_int64(st, 2, limit);
      while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        ++seen;
        int64_t k = sqlite3_column_int64(st, 0);
        if (sqlite3_column_type(st, 1) != SQLITE_TEXT ||
            sqlite3_column_type(st, 2) != SQLITE_INTEGER ||
            sqlite3_column_type(st, 3) != SQLITE_INTEGER) {
          return fail("row " + std::to_string(k) + " has a column of the wrong type");
        }
        Row r{static_cast<uint64_t>(k), column_text(st, 1), sqlite3_column_int64(st, 2),
              static_cast<uint32_t>(sqlite3_column_int64(st, 3))};
        if (k < 0 || (v.have_last && r.k <= v.last_k)) {
          return fail("table scan: key " + std::to_string(k) + " out of order");
        }
        if (r.n < 0 || r.n >= kNRange || sqlite3_column_int64(st, 3) < 0 || r.g >= kGroups) {
          return fail("row " + std::to_string(k) + " has n or g out of range");
        }
        v.last_k = r.k;
        v.have_last = true;
        ++v.got.rows;
        v.got.sum_n += static_cast<uint64_t>(r.n);
        uint64_t t = row_term(r.k, r.v, r.n, r.g);
        v.got.row_sum += t;
        v.ordered = mix64(v.ordered ^ t);
      }
      break;
    }
    case 1: {  // the index kv_n, in (n, k) order
      sqlite3_stmt* st = st_.scan_idx;
      Reset rs(st);
      sqlite3_bind_int64(st, 1, v.have_last ? v.last_n : -1);
      sqlite3_bind_int64(st, 2, v.have_last ? static_cast<int64_t>(v.last_k) : -1);
      sqlite3_bind_int64(st, 3, limit);
      while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        ++seen;
        int64_t n = sqlite3_column_int64(st, 0);
        int64_t k = sqlite3_column_int64(st, 1);
        if (v.have_last &&
            (n < v.last_n || (n == v.last_n && k <= static_cast<int64_t>(v.last_k)))) {
          return fail("index scan: (n, k) out of order");
        }
        v.last_n = n;
        v.last_k = static_cast<uint64_t>(k);
        v.have_last = true;
        ++v.idx_rows;
        v.got.idx_sum += pair_term(static_cast<uint64_t>(n), static_cast<uint64_t>(k));
      }
      break;
    }
    case 2: {  // kv JOIN grp: every row joins, w as grp holds it
      sqlite3_stmt* st = st_.scan_join;
      Reset rs(st);
      sqlite3_bind_int64(st, 1, v.have_last ? static_cast<int64_t>(v.last_k) : -1);
      sqlite3_bind_int64(st, 2, limit);
      while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        ++seen;
        uint64_t k = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
        v.last_k = k;
        v.have_last = true;
        ++v.join_rows;
        v.got.join_sum += pair_term(k, static_cast<uint64_t>(sqlite3_column_int64(st, 1)));
      }
      break;
    }
    case 3: {  // COUNT(*), SUM(n) in chunks of the key order
      sqlite3_stmt* st = st_.agg;
      Reset rs(st);
      sqlite3_bind_int64(st, 1, v.have_last ? static_cast<int64_t>(v.last_k) : -1);
      sqlite3_bind_int64(st, 2, limit);
      rc = sqlite3_step(st);
      if (rc == SQLITE_ROW) {
        seen = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
        v.agg_rows += seen;
        v.agg_sum_n += static_cast<uint64_t>(sqlite3_column_int64(st, 1));
        if (seen > 0) {
          v.last_k = static_cast<uint64_t>(sqlite3_column_int64(st, 2));
          v.have_last = true;
        }
        rc = SQLITE_DONE;
      }
      break;
    }
    case 4: {  // grp as generated
      sqlite3_stmt* st = st_.grp;
      Reset rs(st);
      uint32_t expect = 0;
      while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        if (id != expect || expect >= kGroups) {
          return fail("grp: row " + std::to_string(id) + " where " + std::to_string(expect) +
                      " was expected");
        }
        if (column_text(st, 1) != group_name(seed_, expect) ||
            sqlite3_column_int64(st, 2) != weights_[expect]) {
          return fail("grp: row " + std::to_string(id) + " differs from the generated one");
        }
        ++expect;
      }
      if (rc == SQLITE_DONE && expect != kGroups) {
        return fail("grp has " + std::to_string(expect) + " rows, not " + std::to_string(kGroups));
      }
      seen = 0;  // one pass
      break;
    }
    default:
      *phase_done = true;
      return true;
  }
  if (rc != SQLITE_DONE) return fail(errmsg("verification query"));
  if (v.phase == 4 || seen < budget) *phase_done = true;
  return true;
}

VerifyStep SqliteStore::verify_step(uint64_t budget, uint64_t host_seq, uint64_t host_digest) {
  std::lock_guard lk(mu_);
  VerifyStep s;
  Verify& v = ver_;
  s.total = cur_.rows * 4 + 1;
  if (!v.started) {
    s.failed = true;
    s.detail = "verification not begun";
    return s;
  }
  bool phase_done = false;
  if (!verify_phase(budget, &phase_done)) {
    v.started = false;
    s.done = true;
    s.failed = true;
    s.detail = "sqlite: " + v.error;
    return s;
  }
  if (phase_done) {
    ++v.phase;
    v.have_last = false;
    v.last_k = 0;
    v.last_n = 0;
  }
  s.progress = v.got.rows + v.idx_rows + v.join_rows + v.agg_rows + (v.phase > 4 ? 1 : 0);
  s.digest = v.ordered;
  if (v.phase <= 4) return s;
  v.started = false;
  s.done = true;
  std::string e;
  auto mismatch = [&](const char* what, uint64_t got, uint64_t want) {
    if (e.empty() && got != want) {
      e = std::string(what) + ": the queries give " + std::to_string(got) + ", the writes made " +
          std::to_string(want);
    }
  };
  mismatch("COUNT(*) over the table scan", v.got.rows, cur_.rows);
  mismatch("COUNT(*) over the index kv_n", v.idx_rows, cur_.rows);
  mismatch("COUNT(*) of kv JOIN grp", v.join_rows, cur_.rows);
  mismatch("COUNT(*) aggregate", v.agg_rows, cur_.rows);
  mismatch("SUM(n) over the table scan", v.got.sum_n, cur_.sum_n);
  mismatch("SUM(n) aggregate", v.agg_sum_n, cur_.sum_n);
  mismatch("hash over the ordered table scan (k, v, n, g)", v.got.row_sum, cur_.row_sum);
  mismatch("hash over the index scan (n, k)", v.got.idx_sum, cur_.idx_sum);
  mismatch("hash over kv JOIN grp (k, w)", v.got.join_sum, cur_.join_sum);
  if (e.empty() && (host_seq != seq_ || host_digest != cur_.combined())) {
    e = "the enclave is at batch " + std::to_string(seq_) + ", the host saw batch " +
        std::to_string(host_seq) + " with " +
        (host_digest == cur_.combined() ? "the same" : "another") + " query digest";
  }
  if (!e.empty()) {
    s.failed = true;
    s.detail = "sqlite: " + e;
    return s;
  }
  s.detail = "sqlite: " + std::to_string(cur_.rows) + " rows, SUM(n) " +
             std::to_string(cur_.sum_n) + ", table/index/join/aggregate scans and " +
             std::to_string(kGroups) + " grp rows agree, batch " + std::to_string(seq_);
  return s;
}

bool SqliteStore::corrupt(std::string* err) {
  std::lock_guard lk(mu_);
  return exec("UPDATE kv SET n = (n + 1) % 1048576 WHERE k = (SELECT MIN(k) FROM kv)", err);
}

void SqliteStore::info(uint64_t* rows, uint64_t* seq, uint64_t* digest, uint64_t* pages) {
  std::lock_guard lk(mu_);
  *rows = cur_.rows;
  *seq = seq_;
  *digest = cur_.combined();
  *pages = 0;
  sqlite3_stmt* st = nullptr;
  if (db_ && sqlite3_prepare_v2(db_, "PRAGMA page_count", -1, &st, nullptr) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW) {
    *pages = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
  }
  sqlite3_finalize(st);
}

bool SqliteStore::query(const std::string& sql, std::vector<std::vector<std::string>>* rows,
                        std::string* err) {
  std::lock_guard lk(mu_);
  rows->clear();
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
    *err = errmsg(sql.c_str());
    return false;
  }
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    std::vector<std::string> row;
    for (int c = 0; c < sqlite3_column_count(st); ++c) {
      row.push_back(sqlite3_column_type(st, c) == SQLITE_NULL ? "NULL" : column_text(st, c));
    }
    rows->push_back(std::move(row));
  }
  bool ok = rc == SQLITE_DONE;
  if (!ok) *err = errmsg(sql.c_str());
  sqlite3_finalize(st);
  return ok;
}

Digests SqliteStore::digests() {
  std::lock_guard lk(mu_);
  return cur_;
}

}  // namespace sqlitewl
