// TRUSTED (enclave). See kv_engine.h. Standard library only: no OS headers, no stdio.
#include "kvstore/trusted/kv_engine.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <new>
#include <utility>

namespace constmig::kvstore {

enum class KvEngine::Cmd : uint8_t {
  kGet,
  kSet,
  kIncr,
  kPing,
  kEcho,
  kDel,
  kExists,
  kDbsize,
  kInfo,
  kFlushall,
  kConfig,
  kCommand,
  kSelect,
  kDebug,
  kUnknown,
};

namespace {

constexpr std::string_view kOomError = "OOM command not allowed when used memory > 'maxmemory'.";
constexpr std::string_view kSyntaxError = "ERR syntax error";
constexpr std::string_view kNotInteger = "ERR value is not an integer or out of range";
constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ull;
constexpr uint64_t kFnvPrime = 0x100000001b3ull;

struct Spec {
  std::string_view name;  // lower case, as Redis prints it in errors
  int arity;              // Redis convention: n exact, -n at least n
};

// Indexed by Cmd.
constexpr Spec kSpecs[] = {
    {"get", 2},     {"set", -3},     {"incr", 2},   {"ping", -1},  {"echo", 2},
    {"del", -2},    {"exists", -2},  {"dbsize", 1}, {"info", -1},  {"flushall", -1},
    {"config", -2}, {"command", -1}, {"select", 2}, {"debug", -2}, {"", 0},
};

char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

void fnv_bytes(uint64_t& h, const void* p, size_t n) {
  auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) {
    h ^= b[i];
    h *= kFnvPrime;
  }
}

uint64_t pair_digest(std::string_view k, std::string_view v) {
  uint64_t h = kFnvOffset;
  uint64_t kl = k.size(), vl = v.size();
  fnv_bytes(h, &kl, sizeof kl);
  fnv_bytes(h, k.data(), k.size());
  fnv_bytes(h, &vl, sizeof vl);
  fnv_bytes(h, v.data(), v.size());
  return h;
}

void append_u64(std::string& out, uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, static_cast<size_t>(r.ptr - buf));
}

// "1.50M" style, like Redis's bytesToHuman.
void append_human(std::string& out, uint64_t n) {
  static constexpr char kUnits[] = {'B', 'K', 'M', 'G', 'T', 'P'};
  if (n < 1024) {
    append_u64(out, n);
    out.push_back('B');
    return;
  }
  size_t u = 0;
  uint64_t div = 1;
  while (u + 1 < sizeof kUnits && n / div >= 1024) {
    div *= 1024;
    ++u;
  }
  // value with two decimals, rounded
  uint64_t whole = n / div;
  uint64_t frac = ((n % div) * 100 + div / 2) / div;  // n % div < 2^50: no overflow
  if (frac == 100) {
    ++whole;
    frac = 0;
  }
  append_u64(out, whole);
  out.push_back('.');
  if (frac < 10) out.push_back('0');
  append_u64(out, frac);
  out.push_back(kUnits[u]);
}

// Case-insensitive glob with '*', '?' and '\' escapes (enough for CONFIG GET patterns).
bool glob_match(std::string_view pat, std::string_view str) {
  size_t p = 0, s = 0, star_p = std::string_view::npos, star_s = 0;
  while (s < str.size()) {
    if (p < pat.size() && pat[p] == '*') {
      star_p = p++;
      star_s = s;
    } else if (p < pat.size() &&
               (pat[p] == '?' ||
                (pat[p] == '\\' && p + 1 < pat.size() && lower(pat[p + 1]) == lower(str[s])) ||
                (pat[p] != '\\' && lower(pat[p]) == lower(str[s])))) {
      p += (pat[p] == '\\') ? 2 : 1;
      ++s;
    } else if (star_p != std::string_view::npos) {
      p = star_p + 1;
      s = ++star_s;
    } else {
      return false;
    }
  }
  while (p < pat.size() && pat[p] == '*') ++p;
  return p == pat.size();
}

void wrong_args(std::string& reply, std::string_view name) {
  std::string msg = "ERR wrong number of arguments for '";
  msg.append(name);
  msg.append("' command");
  resp::error(reply, msg);
}

void unknown_command(std::string& reply, const std::vector<std::string_view>& argv) {
  // Redis: "unknown command '%.128s', with args beginning with: " + "'%.*s' " per argument
  // while the argument text is shorter than 128 bytes.
  std::string msg = "ERR unknown command '";
  msg.append(argv[0].substr(0, 128));
  msg.append("', with args beginning with: ");
  std::string args;
  for (size_t i = 1; i < argv.size() && args.size() < 128; ++i) {
    args.push_back('\'');
    args.append(argv[i].substr(0, 128 - args.size() + 1));
    args.append("' ");
  }
  msg.append(args);
  resp::error(reply, msg);
}

}  // namespace

size_t KvEngine::Hash::operator()(std::string_view s) const noexcept {
  return std::hash<std::string_view>{}(s);
}

KvEngine::KvEngine(EngineOptions options) : options_(std::move(options)) {}

KvEngine::KvEngine(MemInfoFn mem_info) {
  options_.mem_info = std::move(mem_info);
}

KvEngine::Shard& KvEngine::shard_for(std::string_view key) {
  uint64_t h = Hash{}(key);
  h *= 0x9e3779b97f4a7c15ull;  // the map uses the low bits; mix before taking the high ones
  return shards_[h >> 58];
}
static_assert(KvEngine::kShards == 64, "shard_for takes 6 bits");

KvEngine::Cmd KvEngine::lookup(std::string_view name) {
  switch (name.size()) {
    case 3:
      if (iequals(name, "get")) return Cmd::kGet;
      if (iequals(name, "set")) return Cmd::kSet;
      if (iequals(name, "del")) return Cmd::kDel;
      break;
    case 4:
      if (iequals(name, "incr")) return Cmd::kIncr;
      if (iequals(name, "ping")) return Cmd::kPing;
      if (iequals(name, "echo")) return Cmd::kEcho;
      if (iequals(name, "info")) return Cmd::kInfo;
      break;
    case 5:
      if (iequals(name, "debug")) return Cmd::kDebug;
      break;
    case 6:
      if (iequals(name, "exists")) return Cmd::kExists;
      if (iequals(name, "dbsize")) return Cmd::kDbsize;
      if (iequals(name, "config")) return Cmd::kConfig;
      if (iequals(name, "select")) return Cmd::kSelect;
      break;
    case 7:
      if (iequals(name, "command")) return Cmd::kCommand;
      break;
    case 8:
      if (iequals(name, "flushall")) return Cmd::kFlushall;
      break;
    default:
      break;
  }
  return Cmd::kUnknown;
}

bool KvEngine::changes_data(Cmd c) {
  return c == Cmd::kSet || c == Cmd::kIncr || c == Cmd::kDel || c == Cmd::kFlushall ||
         c == Cmd::kDebug;
}

MemInfo KvEngine::mem_info() const {
  if (options_.mem_info) return options_.mem_info();
  return MemInfo{data_bytes(), 0};
}

uint64_t KvEngine::data_bytes() const {
  uint64_t total = 0;
  for (const auto& s : shards_) {
    std::lock_guard<ShardLock> g(s.mu);
    total += s.bytes;
  }
  return total;
}

uint64_t KvEngine::maxmemory_for(uint64_t limit_bytes) {
  if (limit_bytes == 0) return 0;
  return limit_bytes - std::min<uint64_t>(limit_bytes / kMemoryReserveDivisor, kMemoryReserveMax);
}

bool KvEngine::would_exceed_memory(size_t needed) const {
  if (!options_.mem_info) return false;
  MemInfo m = options_.mem_info();
  uint64_t max = maxmemory_for(m.limit_bytes);
  return max != 0 && (m.used_bytes > max || needed > max - m.used_bytes);
}

uint64_t KvEngine::dbsize() const {
  uint64_t n = 0;
  for (const auto& s : shards_) {
    std::lock_guard<ShardLock> g(s.mu);
    n += s.map.size();
  }
  return n;
}

uint64_t KvEngine::checksum() const {
  uint64_t sum = 0;
  for (const auto& s : shards_) {
    std::lock_guard<ShardLock> g(s.mu);
    for (const auto& [k, v] : s.map) sum += pair_digest(k, v);
  }
  return sum;
}

void KvEngine::execute(const std::vector<std::string_view>& argv, std::string& reply) {
  commands_.fetch_add(1, std::memory_order_relaxed);
  run_one(lookup(argv.empty() ? std::string_view() : argv[0]), argv, reply);
}

void KvEngine::run_one(Cmd c, const std::vector<std::string_view>& argv, std::string& reply) {
  size_t mark = reply.size();
  try {
    dispatch(c, argv, reply);
  } catch (const std::bad_alloc&) {
    reply.resize(mark);             // shrinking never allocates
    resp::error(reply, kOomError);  // may throw again: the caller gets bad_alloc
  }
}

void KvEngine::dispatch(Cmd c, const std::vector<std::string_view>& argv, std::string& reply) {
  if (argv.empty()) {
    resp::error(reply, "ERR empty command");
    return;
  }
  if (c == Cmd::kUnknown) {
    unknown_command(reply, argv);
    return;
  }
  const Spec& spec = kSpecs[static_cast<size_t>(c)];
  int argc = static_cast<int>(std::min<size_t>(argv.size(), 1u << 30));
  if ((spec.arity > 0 && argc != spec.arity) || (spec.arity < 0 && argc < -spec.arity)) {
    wrong_args(reply, spec.name);
    return;
  }
  switch (c) {
    case Cmd::kGet:
      cmd_get(argv, reply);
      return;
    case Cmd::kSet:
      cmd_set(argv, reply);
      return;
    case Cmd::kIncr:
      cmd_incr(argv, reply);
      return;
    case Cmd::kPing:
      if (argc > 2) return wrong_args(reply, spec.name);
      if (argc == 2) return resp::bulk(reply, argv[1]);
      return resp::simple(reply, "PONG");
    case Cmd::kEcho:
      resp::bulk(reply, argv[1]);
      return;
    case Cmd::kDel:
      cmd_del_exists(true, argv, reply);
      return;
    case Cmd::kExists:
      cmd_del_exists(false, argv, reply);
      return;
    case Cmd::kDbsize:
      resp::integer(reply, static_cast<int64_t>(dbsize()));
      return;
    case Cmd::kInfo:
      cmd_info(argv, reply);
      return;
    case Cmd::kFlushall:
      cmd_flushall(argv, reply);
      return;
    case Cmd::kConfig:
      cmd_config(argv, reply);
      return;
    case Cmd::kCommand:
      cmd_command(argv, reply);
      return;
    case Cmd::kSelect: {
      int64_t db = 0;
      if (!resp::parse_int64(argv[1], &db)) return resp::error(reply, kNotInteger);
      if (db != 0) return resp::error(reply, "ERR DB index is out of range");
      return resp::simple(reply, "OK");
    }
    case Cmd::kDebug:
      cmd_debug(argv, reply);
      return;
    case Cmd::kUnknown:
      break;
  }
}

// DEBUG POPULATE count [prefix] [size]: like Redis's, creates keys prefix:0..count-1 (existing
// keys are kept) with `size`-byte values (default 16). Values are a deterministic non-zero
// pattern of the key number, so benchmarks move real data, not zero pages.
void KvEngine::cmd_debug(const std::vector<std::string_view>& argv, std::string& reply) {
  if (!iequals(argv[1], "populate")) {
    return resp::error(reply, "ERR DEBUG subcommand not supported (only POPULATE)");
  }
  if (argv.size() < 3 || argv.size() > 5) return wrong_args(reply, "debug");
  int64_t count = 0, size = 16;
  if (!resp::parse_int64(argv[2], &count) || count < 0 || count > 100000000) {
    return resp::error(reply, "ERR count must be 0..100000000");
  }
  std::string prefix = argv.size() >= 4 ? std::string(argv[3]) : std::string("key");
  if (argv.size() == 5 && (!resp::parse_int64(argv[4], &size) || size < 1 || size > (1 << 20))) {
    return resp::error(reply, "ERR size must be 1..1048576");
  }
  // A 64 KiB pseudo-random pool; key i takes a window of it at an offset derived from i.
  std::string pool(64 << 10, 'x');
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (char& ch : pool) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    ch = static_cast<char>('!' + (x % 90));
  }
  std::string key, value(static_cast<size_t>(size), 'x');
  for (int64_t i = 0; i < count; ++i) {
    key = prefix + ":" + std::to_string(i);
    size_t off = static_cast<size_t>((static_cast<uint64_t>(i) * 7919u) % (pool.size() - 1));
    for (size_t j = 0; j < value.size();) {
      size_t n = std::min(value.size() - j, pool.size() - off);
      std::memcpy(&value[j], pool.data() + off, n);
      j += n;
      off = 0;
    }
    if (would_exceed_memory(key.size() + value.size() + kEntryOverhead)) {
      return resp::error(reply, kOomError);
    }
    Shard& s = shard_for(key);
    std::lock_guard<ShardLock> g(s.mu);
    if (s.map.find(key) != s.map.end()) continue;
    s.map.emplace(key, value);
    s.bytes += key.size() + value.size() + kEntryOverhead;
  }
  resp::simple(reply, "OK");
}

void KvEngine::cmd_get(const std::vector<std::string_view>& argv, std::string& reply) {
  Shard& s = shard_for(argv[1]);
  std::lock_guard<ShardLock> g(s.mu);
  auto it = s.map.find(argv[1]);
  if (it == s.map.end()) {
    resp::null_bulk(reply);
  } else {
    resp::bulk(reply, it->second);
  }
}

void KvEngine::cmd_set(const std::vector<std::string_view>& argv, std::string& reply) {
  bool nx = false, xx = false;
  for (size_t i = 3; i < argv.size(); ++i) {
    if (iequals(argv[i], "nx") && !xx) {
      nx = true;
    } else if (iequals(argv[i], "xx") && !nx) {
      xx = true;
    } else {
      return resp::error(reply, kSyntaxError);  // EX/PX/GET/KEEPTTL... are not supported
    }
  }
  std::string_view key = argv[1], value = argv[2];
  if (would_exceed_memory(key.size() + value.size() + kEntryOverhead)) {
    return resp::error(reply, kOomError);
  }
  Shard& s = shard_for(key);
  std::lock_guard<ShardLock> g(s.mu);
  auto it = s.map.find(key);
  if (it != s.map.end()) {
    if (nx) return resp::null_bulk(reply);
    size_t old = it->second.size();
    it->second.assign(value);  // strong guarantee: unchanged if this throws
    s.bytes = s.bytes - old + value.size();
  } else {
    if (xx) return resp::null_bulk(reply);
    s.map.emplace(std::string(key), std::string(value));
    s.bytes += key.size() + value.size() + kEntryOverhead;
  }
  resp::simple(reply, "OK");
}

void KvEngine::cmd_incr(const std::vector<std::string_view>& argv, std::string& reply) {
  std::string_view key = argv[1];
  if (would_exceed_memory(key.size() + 20 + kEntryOverhead)) return resp::error(reply, kOomError);
  Shard& s = shard_for(key);
  std::lock_guard<ShardLock> g(s.mu);
  auto it = s.map.find(key);
  int64_t v = 0;
  if (it != s.map.end()) {
    if (!resp::parse_int64(it->second, &v)) return resp::error(reply, kNotInteger);
    if (v == INT64_MAX) return resp::error(reply, "ERR increment or decrement would overflow");
  }
  ++v;
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  std::string_view text(buf, static_cast<size_t>(r.ptr - buf));
  if (it != s.map.end()) {
    size_t old = it->second.size();
    it->second.assign(text);
    s.bytes = s.bytes - old + text.size();
  } else {
    s.map.emplace(std::string(key), std::string(text));
    s.bytes += key.size() + text.size() + kEntryOverhead;
  }
  resp::integer(reply, v);
}

void KvEngine::cmd_del_exists(bool del, const std::vector<std::string_view>& argv,
                              std::string& reply) {
  int64_t n = 0;
  for (size_t i = 1; i < argv.size(); ++i) {
    Shard& s = shard_for(argv[i]);
    std::lock_guard<ShardLock> g(s.mu);
    auto it = s.map.find(argv[i]);
    if (it == s.map.end()) continue;
    ++n;  // EXISTS counts a key named twice twice, as Redis does
    if (del) {
      s.bytes -= it->first.size() + it->second.size() + kEntryOverhead;
      s.map.erase(it);
    }
  }
  resp::integer(reply, n);
}

void KvEngine::cmd_flushall(const std::vector<std::string_view>& argv, std::string& reply) {
  if (argv.size() > 2 ||
      (argv.size() == 2 && !iequals(argv[1], "async") && !iequals(argv[1], "sync"))) {
    return resp::error(reply, kSyntaxError);
  }
  for (auto& s : shards_) {
    Map old;
    {
      std::lock_guard<ShardLock> g(s.mu);
      old.swap(s.map);
      s.bytes = 0;
    }
    // `old` is freed here, outside the lock
  }
  resp::simple(reply, "OK");
}

void KvEngine::cmd_info(const std::vector<std::string_view>& argv, std::string& reply) {
  bool server = argv.size() == 1, memory = server, stats = server, keyspace = server;
  for (size_t i = 1; i < argv.size(); ++i) {
    std::string_view a = argv[i];
    if (iequals(a, "all") || iequals(a, "default") || iequals(a, "everything")) {
      server = memory = stats = keyspace = true;
    } else if (iequals(a, "server")) {
      server = true;
    } else if (iequals(a, "memory")) {
      memory = true;
    } else if (iequals(a, "stats")) {
      stats = true;
    } else if (iequals(a, "keyspace")) {
      keyspace = true;
    }  // unknown sections contribute nothing, as in Redis
  }
  std::string t;
  auto section = [&](std::string_view title) {
    if (!t.empty()) t.append("\r\n");
    t.append("# ");
    t.append(title);
    t.append("\r\n");
  };
  auto field = [&](std::string_view k, std::string_view v) {
    t.append(k);
    t.push_back(':');
    t.append(v);
    t.append("\r\n");
  };
  auto num_field = [&](std::string_view k, uint64_t v) {
    t.append(k);
    t.push_back(':');
    append_u64(t, v);
    t.append("\r\n");
  };
  if (server) {
    section("Server");
    field("redis_version", "7.0.0");
    field("redis_mode", "standalone");
    field("server_name", "constmig-kvstore");
    field("constmig_kvstore_version", "0.1.0");
    field("environment", options_.environment);
    num_field("shards", kShards);
  }
  MemInfo m = mem_info();
  if (memory) {
    section("Memory");
    num_field("used_memory", m.used_bytes);
    t.append("used_memory_human:");
    append_human(t, m.used_bytes);
    t.append("\r\n");
    num_field("used_memory_dataset", data_bytes());
    num_field("maxmemory", maxmemory_for(m.limit_bytes));
    t.append("maxmemory_human:");
    append_human(t, maxmemory_for(m.limit_bytes));
    t.append("\r\n");
    num_field("enclave_heap_limit", m.limit_bytes);
    field("maxmemory_policy", "noeviction");
  }
  if (stats) {
    section("Stats");
    num_field("total_commands_processed", commands_processed());
  }
  if (keyspace) {
    section("Keyspace");
    t.append("db0:keys=");
    append_u64(t, dbsize());
    t.append(",expires=0,avg_ttl=0\r\n");
  }
  resp::bulk(reply, t);
}

void KvEngine::cmd_config(const std::vector<std::string_view>& argv, std::string& reply) {
  std::string_view sub = argv[1];
  if (!iequals(sub, "get")) {
    std::string msg = "ERR unknown subcommand '";
    msg.append(sub.substr(0, 128));
    msg.append("'. Try CONFIG HELP.");
    return resp::error(reply, msg);
  }
  if (argv.size() < 3) return wrong_args(reply, "config|get");
  // A few read-only parameters clients ask about (redis-benchmark: save, appendonly).
  std::string maxmemory;
  append_u64(maxmemory, maxmemory_for(mem_info().limit_bytes));
  const std::pair<std::string_view, std::string_view> params[] = {
      {"save", ""},
      {"appendonly", "no"},
      {"maxmemory", maxmemory},
      {"maxmemory-policy", "noeviction"},
      {"databases", "1"},
  };
  std::string body;
  int64_t n = 0;
  for (const auto& [name, value] : params) {
    for (size_t i = 2; i < argv.size(); ++i) {
      if (glob_match(argv[i], name)) {
        resp::bulk(body, name);
        resp::bulk(body, value);
        n += 2;
        break;
      }
    }
  }
  resp::array_header(reply, n);
  reply.append(body);
}

void KvEngine::cmd_command(const std::vector<std::string_view>& argv, std::string& reply) {
  if (argv.size() == 1) return resp::array_header(reply, 0);
  std::string_view sub = argv[1];
  if (iequals(sub, "docs") || iequals(sub, "info") || iequals(sub, "list")) {
    return resp::array_header(reply, 0);
  }
  if (iequals(sub, "count")) {
    return resp::integer(reply, static_cast<int64_t>(static_cast<size_t>(Cmd::kUnknown)));
  }
  std::string msg = "ERR unknown subcommand '";
  msg.append(sub.substr(0, 128));
  msg.append("'. Try COMMAND HELP.");
  resp::error(reply, msg);
}

Status KvEngine::execute_batch(ByteView encoded_batch, std::string& replies, size_t max_reply_bytes,
                               uint32_t* commands_done, size_t* reply_bytes_needed) {
  *commands_done = 0;
  if (reply_bytes_needed != nullptr) *reply_bytes_needed = 0;
  if (max_reply_bytes < kMinReplyCapacity) {
    return make_error(Errc::kInvalidArgument,
                      "kv batch: reply capacity " + std::to_string(max_reply_bytes) +
                          " is below the minimum of " + std::to_string(kMinReplyCapacity));
  }
  const size_t base = replies.size();
  size_t good_end = base;  // end of the replies of the commands counted in `done`
  uint32_t done = 0;
  Status first_too_big;
  Status st;
  try {
    st = decode_batch(encoded_batch, options_.batch_limits,
                      [&](uint32_t i, const std::vector<std::string_view>& argv) -> bool {
                        size_t used = replies.size() - base;
                        if (i > 0 && used + kWriteReplyReserve > max_reply_bytes) return false;
                        // Room for any error reply up front (amortised: reserve grows
                        // geometrically), so that the OOM reply itself never needs memory.
                        replies.reserve(replies.size() + kWriteReplyReserve);
                        size_t mark = replies.size();
                        Cmd c = lookup(argv[0]);
                        run_one(c, argv, replies);
                        if (replies.size() - base > max_reply_bytes && !changes_data(c)) {
                          size_t need = replies.size() - mark;
                          replies.resize(mark);
                          if (i == 0) {
                            if (reply_bytes_needed != nullptr) *reply_bytes_needed = need;
                            first_too_big = make_error(
                                Errc::kResourceExhausted,
                                "kv batch: the first reply needs " + std::to_string(need) +
                                    " bytes, more than the reply capacity of " +
                                    std::to_string(max_reply_bytes));
                          }
                          return false;
                        }
                        done = i + 1;
                        good_end = replies.size();
                        return true;
                      });
  } catch (const std::bad_alloc&) {
    // Even the fixed OOM reply could not be appended. Keep what completed; the host re-submits
    // the rest (a failed std::string append leaves the string as it was).
    replies.resize(good_end);
    st = done > 0 ? ok_status()
                  : Status(make_error(Errc::kResourceExhausted, "kv batch: out of enclave memory"));
  }
  commands_.fetch_add(done, std::memory_order_relaxed);
  *commands_done = done;
  // An error after some commands ran can only come from a batch that changed between the
  // validation pass and the execution pass (a hostile host): report the prefix that ran; the
  // re-submitted rest fails validation.
  if (!st.ok() && done == 0) {
    replies.resize(base);
    return st;
  }
  if (!first_too_big.ok()) return first_too_big;
  return ok_status();
}

}  // namespace constmig::kvstore
