// KvEngine: command semantics and Redis error strings, memory limit, batches.
#include <gtest/gtest.h>

#include <atomic>
#include <new>
#include <thread>

#include "kvstore/trusted/kv_engine.h"

namespace {

using namespace constmig;
using namespace constmig::kvstore;

std::string run(KvEngine& e, std::vector<std::string> argv) {
  std::vector<std::string_view> v(argv.begin(), argv.end());
  std::string reply;
  e.execute(v, reply);
  return reply;
}

std::string wrong(const std::string& cmd) {
  return "-ERR wrong number of arguments for '" + cmd + "' command\r\n";
}

TEST(KvEngine, PingEcho) {
  KvEngine e;
  EXPECT_EQ(run(e, {"PING"}), "+PONG\r\n");
  EXPECT_EQ(run(e, {"ping", "hi"}), "$2\r\nhi\r\n");
  EXPECT_EQ(run(e, {"PING", "a", "b"}), wrong("ping"));
  EXPECT_EQ(run(e, {"ECHO", "x y"}), "$3\r\nx y\r\n");
  EXPECT_EQ(run(e, {"echo"}), wrong("echo"));
  EXPECT_EQ(run(e, {"EcHo", "a", "b"}), wrong("echo"));
}

TEST(KvEngine, SetGetAndOptions) {
  KvEngine e;
  EXPECT_EQ(run(e, {"GET", "k"}), "$-1\r\n");
  EXPECT_EQ(run(e, {"SET", "k", "v1"}), "+OK\r\n");
  EXPECT_EQ(run(e, {"get", "k"}), "$2\r\nv1\r\n");
  EXPECT_EQ(run(e, {"SET", "k", "v2", "NX"}), "$-1\r\n");
  EXPECT_EQ(run(e, {"GET", "k"}), "$2\r\nv1\r\n");
  EXPECT_EQ(run(e, {"SET", "k", "v3", "xx"}), "+OK\r\n");
  EXPECT_EQ(run(e, {"GET", "k"}), "$2\r\nv3\r\n");
  EXPECT_EQ(run(e, {"SET", "n", "v", "XX"}), "$-1\r\n");
  EXPECT_EQ(run(e, {"GET", "n"}), "$-1\r\n");
  EXPECT_EQ(run(e, {"SET", "n", "v", "nx"}), "+OK\r\n");
  EXPECT_EQ(run(e, {"SET", "n", "v", "NX", "XX"}), "-ERR syntax error\r\n");
  EXPECT_EQ(run(e, {"SET", "n", "v", "EX", "10"}), "-ERR syntax error\r\n");
  EXPECT_EQ(run(e, {"SET", "n", "v", "GET"}), "-ERR syntax error\r\n");
  EXPECT_EQ(run(e, {"SET", "n"}), wrong("set"));
  EXPECT_EQ(run(e, {"GET"}), wrong("get"));
  EXPECT_EQ(run(e, {"GET", "a", "b"}), wrong("get"));
  // binary-safe keys and values
  std::string bk("k\0\r\n", 4), bv("\0\xff", 2);
  EXPECT_EQ(run(e, {"SET", bk, bv}), "+OK\r\n");
  EXPECT_EQ(run(e, {"GET", bk}), std::string("$2\r\n\0\xff\r\n", 8));
  EXPECT_EQ(run(e, {"SET", "empty", ""}), "+OK\r\n");
  EXPECT_EQ(run(e, {"GET", "empty"}), "$0\r\n\r\n");
}

TEST(KvEngine, DelExistsDbsizeFlushall) {
  KvEngine e;
  for (int i = 0; i < 100; ++i) run(e, {"SET", "k" + std::to_string(i), "v"});
  EXPECT_EQ(run(e, {"DBSIZE"}), ":100\r\n");
  EXPECT_EQ(e.dbsize(), 100u);
  EXPECT_EQ(run(e, {"EXISTS", "k1", "k1", "k2", "nope"}), ":3\r\n");
  EXPECT_EQ(run(e, {"DEL", "k1", "k1", "k2", "nope"}), ":2\r\n");
  EXPECT_EQ(run(e, {"EXISTS", "k1"}), ":0\r\n");
  EXPECT_EQ(run(e, {"DEL"}), wrong("del"));
  EXPECT_EQ(run(e, {"EXISTS"}), wrong("exists"));
  EXPECT_EQ(run(e, {"DBSIZE", "x"}), wrong("dbsize"));
  EXPECT_EQ(run(e, {"DBSIZE"}), ":98\r\n");
  EXPECT_EQ(run(e, {"FLUSHALL", "bogus"}), "-ERR syntax error\r\n");
  EXPECT_EQ(run(e, {"FLUSHALL", "ASYNC", "x"}), "-ERR syntax error\r\n");
  EXPECT_EQ(run(e, {"flushall", "sync"}), "+OK\r\n");
  EXPECT_EQ(run(e, {"DBSIZE"}), ":0\r\n");
  run(e, {"SET", "a", "b"});
  EXPECT_EQ(run(e, {"FLUSHALL"}), "+OK\r\n");
  EXPECT_EQ(e.dbsize(), 0u);
  EXPECT_EQ(e.data_bytes(), 0u);
}

TEST(KvEngine, Incr) {
  KvEngine e;
  EXPECT_EQ(run(e, {"INCR", "c"}), ":1\r\n");
  EXPECT_EQ(run(e, {"INCR", "c"}), ":2\r\n");
  EXPECT_EQ(run(e, {"GET", "c"}), "$1\r\n2\r\n");
  run(e, {"SET", "neg", "-5"});
  EXPECT_EQ(run(e, {"INCR", "neg"}), ":-4\r\n");
  const std::string not_int = "-ERR value is not an integer or out of range\r\n";
  for (std::string bad : {"abc", "", " 1", "1 ", "01", "+1", "1.5", "99999999999999999999"}) {
    run(e, {"SET", "s", bad});
    EXPECT_EQ(run(e, {"INCR", "s"}), not_int) << "'" << bad << "'";
    EXPECT_EQ(run(e, {"GET", "s"}), "$" + std::to_string(bad.size()) + "\r\n" + bad + "\r\n");
  }
  run(e, {"SET", "max", "9223372036854775807"});
  EXPECT_EQ(run(e, {"INCR", "max"}), "-ERR increment or decrement would overflow\r\n");
  run(e, {"SET", "min", "-9223372036854775808"});
  EXPECT_EQ(run(e, {"INCR", "min"}), ":-9223372036854775807\r\n");
  EXPECT_EQ(run(e, {"INCR"}), wrong("incr"));
  EXPECT_EQ(run(e, {"INCR", "a", "b"}), wrong("incr"));
}

TEST(KvEngine, InfoConfigCommandSelect) {
  KvEngine e(EngineOptions{});
  run(e, {"SET", "a", "1"});
  run(e, {"SET", "b", "2"});
  std::string info = run(e, {"INFO"});
  ASSERT_EQ(info[0], '$');
  EXPECT_NE(info.find("# Server\r\n"), std::string::npos);
  EXPECT_NE(info.find("emulated SGX enclave"), std::string::npos);
  EXPECT_NE(info.find("# Memory\r\nused_memory:"), std::string::npos);
  EXPECT_NE(info.find("maxmemory:0\r\n"), std::string::npos);
  EXPECT_NE(info.find("# Keyspace\r\ndb0:keys=2,"), std::string::npos);
  std::string ks = run(e, {"INFO", "keyspace"});
  EXPECT_EQ(ks.find("# Server"), std::string::npos);
  EXPECT_NE(ks.find("db0:keys=2"), std::string::npos);
  EXPECT_EQ(run(e, {"INFO", "nosuchsection"}), "$0\r\n\r\n");
  std::string mem = run(e, {"info", "MEMORY"});
  EXPECT_NE(mem.find("used_memory_human:"), std::string::npos);

  EXPECT_EQ(run(e, {"CONFIG", "GET", "save"}), "*2\r\n$4\r\nsave\r\n$0\r\n\r\n");
  EXPECT_EQ(run(e, {"CONFIG", "GET", "appendonly"}), "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n");
  EXPECT_EQ(run(e, {"CONFIG", "GET", "nosuch*"}), "*0\r\n");
  EXPECT_EQ(run(e, {"config", "get", "MAXMEM*"}).substr(0, 4), "*4\r\n");
  EXPECT_EQ(run(e, {"CONFIG", "GET"}), wrong("config|get"));
  EXPECT_EQ(run(e, {"CONFIG"}), wrong("config"));
  EXPECT_EQ(run(e, {"CONFIG", "SET", "x", "y"}),
            "-ERR unknown subcommand 'SET'. Try CONFIG HELP.\r\n");

  EXPECT_EQ(run(e, {"COMMAND"}), "*0\r\n");
  EXPECT_EQ(run(e, {"COMMAND", "DOCS"}), "*0\r\n");
  EXPECT_EQ(run(e, {"command", "docs", "get"}), "*0\r\n");
  EXPECT_EQ(run(e, {"COMMAND", "COUNT"}), ":14\r\n");

  EXPECT_EQ(run(e, {"SELECT", "0"}), "+OK\r\n");
  EXPECT_EQ(run(e, {"SELECT", "1"}), "-ERR DB index is out of range\r\n");
  EXPECT_EQ(run(e, {"SELECT", "x"}), "-ERR value is not an integer or out of range\r\n");
  EXPECT_EQ(run(e, {"SELECT"}), wrong("select"));
}

TEST(KvEngine, UnknownCommandLikeRedis) {
  KvEngine e;
  EXPECT_EQ(run(e, {"FOO"}), "-ERR unknown command 'FOO', with args beginning with: \r\n");
  EXPECT_EQ(run(e, {"foo", "a", "b c"}),
            "-ERR unknown command 'foo', with args beginning with: 'a' 'b c' \r\n");
  // Redis caps the name at 128 bytes and the argument text at about 128 bytes.
  std::string r = run(e, {std::string(300, 'n'), std::string(200, 'a'), "more"});
  EXPECT_EQ(r, "-ERR unknown command '" + std::string(128, 'n') + "', with args beginning with: '" +
                   std::string(128, 'a') + "' \r\n");
  // CR/LF inside a name cannot break the reply framing.
  EXPECT_EQ(run(e, {"a\r\nb"}), "-ERR unknown command 'a  b', with args beginning with: \r\n");
}

TEST(KvEngine, MemoryLimitGivesOomError) {
  std::atomic<uint64_t> used{1000};
  KvEngine e(MemInfoFn([&] { return MemInfo{used.load(), 1200}; }));
  // maxmemory = 1200 - 1200/16 = 1125: the rest is kept for replies and allocator slack.
  EXPECT_EQ(KvEngine::maxmemory_for(1200), 1125u);
  EXPECT_EQ(KvEngine::maxmemory_for(0), 0u);
  EXPECT_EQ(KvEngine::maxmemory_for(16ull << 30), (16ull << 30) - (64ull << 20));
  const std::string oom = "-OOM command not allowed when used memory > 'maxmemory'.\r\n";
  EXPECT_EQ(run(e, {"SET", "k", std::string(50, 'v')}), "+OK\r\n");  // 1000 + 50+1+64 <= 1125
  EXPECT_EQ(run(e, {"SET", "k", std::string(200, 'v')}), oom);
  EXPECT_EQ(run(e, {"GET", "k"}), "$50\r\n" + std::string(50, 'v') + "\r\n");
  used = 1190;
  EXPECT_EQ(run(e, {"INCR", "c"}), oom);
  EXPECT_EQ(run(e, {"GET", "k"}).substr(0, 4), "$50\r");  // reads still work
  EXPECT_EQ(run(e, {"DEL", "k"}), ":1\r\n");              // and deletes
  used = 5000;                                            // already over the limit
  EXPECT_EQ(run(e, {"SET", "x", "y"}), oom);
  std::string info = run(e, {"INFO", "memory"});
  EXPECT_NE(info.find("used_memory:5000\r\n"), std::string::npos);
  EXPECT_NE(info.find("maxmemory:1125\r\n"), std::string::npos);
  EXPECT_NE(info.find("enclave_heap_limit:1200\r\n"), std::string::npos);
}

TEST(KvEngine, BadAllocBecomesOomReply) {
  bool fail = true;
  KvEngine e(MemInfoFn([&]() -> MemInfo {
    if (fail) throw std::bad_alloc();
    return MemInfo{0, 0};
  }));
  EXPECT_EQ(run(e, {"SET", "k", "v"}),
            "-OOM command not allowed when used memory > 'maxmemory'.\r\n");
  EXPECT_EQ(run(e, {"GET", "k"}), "$-1\r\n");
  fail = false;
  EXPECT_EQ(run(e, {"SET", "k", "v"}), "+OK\r\n");
}

std::vector<uint8_t> batch(const std::vector<std::vector<std::string>>& cmds) {
  std::vector<uint8_t> b;
  encode_batch(cmds, b);
  return b;
}

TEST(KvEngine, BatchExecutesInOrder) {
  KvEngine e;
  auto b = batch({{"SET", "a", "1"}, {"INCR", "a"}, {"GET", "a"}, {"NOPE"}});
  std::string out = "prefix:";
  uint32_t done = 0;
  ASSERT_TRUE(e.execute_batch(ByteView(b.data(), b.size()), out, 1 << 20, &done).ok());
  EXPECT_EQ(done, 4u);
  EXPECT_EQ(out,
            "prefix:+OK\r\n:2\r\n$1\r\n2\r\n-ERR unknown command 'NOPE', with args "
            "beginning with: \r\n");
  EXPECT_EQ(e.commands_processed(), 4u);
}

TEST(KvEngine, BatchStopsEarlyAtReplyCapacity) {
  KvEngine e;
  const std::string big(1000, 'v');
  run(e, {"SET", "big", big});
  std::vector<std::vector<std::string>> cmds(10, {"GET", "big"});
  auto b = batch(cmds);
  const size_t one = 5 + 2 + 1000 + 2;  // "$1000\r\n" + value + CRLF
  size_t total = 0;
  uint32_t all = 0;
  BatchBuilder rest;
  for (const auto& c : cmds) rest.add(c);
  std::string out;
  while (rest.count() > 0) {
    uint32_t done = 0;
    size_t before = out.size();
    Status st = e.execute_batch(rest.view(), out, 4096, &done);
    ASSERT_TRUE(st.ok()) << st.error().message;
    ASSERT_GE(done, 1u);
    EXPECT_LE(out.size() - before, 4096u);
    EXPECT_EQ(out.size() - before, done * one);
    all += done;
    total += out.size() - before;
    rest.drop_front(done);
  }
  EXPECT_EQ(all, 10u);
  EXPECT_EQ(total, 10 * one);
  // The first call fit exactly 4 replies (4 x 1009 = 4036 <= 4096).
  std::string first;
  uint32_t done = 0;
  ASSERT_TRUE(e.execute_batch(ByteView(b.data(), b.size()), first, 4096, &done).ok());
  EXPECT_EQ(done, 4u);
}

TEST(KvEngine, BatchWritesKeepRoomAndNeverExceedCapacity) {
  KvEngine e;
  // Writes are not started unless kWriteReplyReserve bytes are left: every reply counted as
  // done is present, and nothing beyond the capacity was written.
  run(e, {"SET", "v", std::string(3100, 'x')});
  auto b = batch({{"GET", "v"}, {"INCR", "n"}, {"INCR", "n"}});
  std::string out;
  uint32_t done = 0;
  ASSERT_TRUE(e.execute_batch(ByteView(b.data(), b.size()), out, 4096, &done).ok());
  EXPECT_EQ(done, 1u);  // 3109 + 1024 reserve > 4096
  EXPECT_EQ(run(e, {"GET", "n"}), "$-1\r\n");
}

TEST(KvEngine, BatchFirstReplyTooBig) {
  KvEngine e;
  run(e, {"SET", "huge", std::string(10000, 'h')});
  auto b = batch({{"GET", "huge"}, {"INCR", "x"}});
  std::string out = "keep";
  uint32_t done = 7;
  size_t needed = 0;
  Status st = e.execute_batch(ByteView(b.data(), b.size()), out, 4096, &done, &needed);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Errc::kResourceExhausted);
  EXPECT_EQ(done, 0u);
  EXPECT_EQ(needed, 10000u + 10);  // "$10000\r\n" + value + "\r\n"
  EXPECT_EQ(out, "keep");
  EXPECT_EQ(run(e, {"GET", "x"}), "$-1\r\n");  // nothing after it ran
  ASSERT_TRUE(e.execute_batch(ByteView(b.data(), b.size()), out, needed, &done).ok());
  EXPECT_EQ(done, 1u);
  ASSERT_TRUE(e.execute_batch(ByteView(b.data(), b.size()), out, needed + 2048, &done).ok());
  EXPECT_EQ(done, 2u);
  EXPECT_FALSE(e.execute_batch(ByteView(b.data(), b.size()), out, 100, &done).ok());  // < min
}

TEST(KvEngine, HostileBatchRunsNothing) {
  KvEngine e;
  auto good = batch({{"SET", "a", "1"}, {"SET", "b", "2"}});
  for (size_t cut = 0; cut < good.size(); ++cut) {
    std::string out;
    uint32_t done = 9;
    Status st = e.execute_batch(ByteView(good.data(), cut), out, 1 << 20, &done);
    EXPECT_FALSE(st.ok());
    EXPECT_EQ(st.error().code, Errc::kFormat);
    EXPECT_EQ(done, 0u);
    EXPECT_TRUE(out.empty());
  }
  auto bad = good;
  bad[0] ^= 1;
  std::string out;
  uint32_t done = 0;
  EXPECT_FALSE(e.execute_batch(ByteView(bad.data(), bad.size()), out, 1 << 20, &done).ok());
  EXPECT_EQ(e.dbsize(), 0u);
}

TEST(KvEngine, ChecksumIsOrderIndependentAndSensitive) {
  KvEngine a, b;
  for (int i = 0; i < 500; ++i) run(a, {"SET", "k" + std::to_string(i), "v" + std::to_string(i)});
  for (int i = 499; i >= 0; --i) run(b, {"SET", "k" + std::to_string(i), "v" + std::to_string(i)});
  EXPECT_EQ(a.checksum(), b.checksum());
  EXPECT_NE(a.checksum(), 0u);
  run(b, {"SET", "k7", "v8"});
  EXPECT_NE(a.checksum(), b.checksum());
  run(b, {"SET", "k7", "v7"});
  EXPECT_EQ(a.checksum(), b.checksum());
  // key/value boundary matters
  KvEngine c, d;
  run(c, {"SET", "ab", "c"});
  run(d, {"SET", "a", "bc"});
  EXPECT_NE(c.checksum(), d.checksum());
  EXPECT_EQ(KvEngine().checksum(), 0u);
}

TEST(KvEngine, ConcurrentIncrementsAreExact) {
  KvEngine e;
  constexpr int kThreads = 4, kPer = 5000;
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&e, t] {
      for (int i = 0; i < kPer; ++i) {
        run(e, {"INCR", "shared"});
        run(e, {"SET", "t" + std::to_string(t) + ":" + std::to_string(i % 100), "x"});
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(run(e, {"GET", "shared"}), "$5\r\n20000\r\n");
  EXPECT_EQ(e.dbsize(), 1u + kThreads * 100);
}

}  // namespace

TEST(KvEngine, DebugPopulateCreatesDeterministicValues) {
  KvEngine e;
  EXPECT_EQ(run(e, {"DEBUG", "POPULATE", "100", "p", "64"}), "+OK\r\n");
  EXPECT_EQ(e.dbsize(), 100u);
  std::string v = run(e, {"GET", "p:7"});
  EXPECT_EQ(v.substr(0, 5), "$64\r\n");
  EXPECT_EQ(v.find('\0'), std::string::npos);
  uint64_t sum = e.checksum();
  KvEngine e2;
  EXPECT_EQ(run(e2, {"DEBUG", "POPULATE", "100", "p", "64"}), "+OK\r\n");
  EXPECT_EQ(e2.checksum(), sum);  // same keys, same values
  EXPECT_EQ(run(e, {"DEBUG", "POPULATE", "-1"}).substr(0, 4), "-ERR");
  EXPECT_EQ(run(e, {"DEBUG", "RELOAD"}).substr(0, 4), "-ERR");
}
