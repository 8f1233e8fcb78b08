// kvstore with its data in the emulated enclave: redis-benchmark unmodified, malformed input,
// memory limit. Each test is its own process (one enclave per process).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <random>
#include <string>

#include "kvstore/host/kvstore_app.h"

using namespace constmig;

namespace {

struct Fixture {
  std::unique_ptr<platform::Platform> plat;
  std::unique_ptr<platform::Enclave> enclave;
  std::unique_ptr<kvstore_app::EnclaveExecutor> exec;
  std::unique_ptr<kvstore::KvServer> server;
};

Fixture start(uint64_t heap_limit = 256ull << 20) {
  Fixture f;
  auto p = platform::Platform::create_emulated({});
  EXPECT_TRUE(p.ok());
  f.plat = std::move(p).value();
  platform::EnclaveConfig cfg;
  cfg.image_path = KVSTORE_IMAGE;
  cfg.heap_limit = heap_limit;
  cfg.expected_ecalls = kvstore_app::kvstore_ecall_names();
  auto e = f.plat->create_enclave(cfg);
  EXPECT_TRUE(e.ok()) << (e.ok() ? "" : e.error().message);
  if (!e.ok()) return f;
  f.enclave = std::move(e).value();
  f.exec = std::make_unique<kvstore_app::EnclaveExecutor>(*f.enclave);
  kvstore::ServerOptions so;
  so.port = 0;
  f.server = std::make_unique<kvstore::KvServer>(so, *f.exec);
  auto st = f.server->start();
  EXPECT_TRUE(st.ok()) << (st.ok() ? "" : st.error().message);
  return f;
}

int connect_to(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

// Send a command and read until `expect_bytes` are in or the peer closes / times out.
std::string roundtrip(uint16_t port, const std::string& req) {
  int fd = connect_to(port);
  if (fd < 0) return "<connect failed>";
  (void)!write(fd, req.data(), req.size());
  shutdown(fd, SHUT_WR);
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

std::string run(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

bool have(const char* tool) {
  return std::system((std::string("command -v ") + tool + " >/dev/null 2>&1").c_str()) == 0;
}

}  // namespace

TEST(KvstoreEnclave, RedisBenchmarkUnmodifiedAndDbsizeMatches) {
  if (!have("redis-benchmark")) GTEST_SKIP() << "redis-benchmark not installed (scripts/setup.sh)";
  auto f = start();
  ASSERT_TRUE(f.server);
  std::string port = std::to_string(f.server->port());
  std::string out = run("redis-benchmark -p " + port +
                        " -c 50 -P 16 -n 20000 -r 1000 -t ping,set,get,incr -q 2>&1");
  EXPECT_NE(out.find("SET:"), std::string::npos) << out;
  EXPECT_NE(out.find("INCR:"), std::string::npos) << out;
  EXPECT_EQ(out.find("rror"), std::string::npos) << out;
  // What the enclave holds agrees with what the wire says.
  auto d = f.exec->digest();
  ASSERT_TRUE(d.ok()) << d.error().message;
  std::string dbsize = roundtrip(f.server->port(), "DBSIZE\r\n");
  EXPECT_EQ(dbsize, ":" + std::to_string(d->first) + "\r\n");
  // -r 1000: SET writes key:000000000000..key:000000000999 with value "xxx" (-d 3), INCR
  // counter:000000000000..999. With 20000 SETs over 1000 keys essentially all keys exist.
  EXPECT_GT(d->first, 1000u);
  EXPECT_LE(d->first, 2000u);
  // Every key redis-benchmark could have written is either absent or holds a 3-byte value
  // (-d 3), and almost all are present.
  std::string pipeline;
  for (int i = 0; i < 1000; ++i) {
    char k[32];
    std::snprintf(k, sizeof k, "key:%012d", i);
    pipeline += "GET " + std::string(k) + "\r\n";
  }
  std::string replies = roundtrip(f.server->port(), pipeline);
  size_t present = 0, absent = 0, pos = 0;
  while (pos < replies.size()) {
    if (replies.compare(pos, 4, "$3\r\n") == 0 && pos + 9 <= replies.size() &&
        replies.compare(pos + 7, 2, "\r\n") == 0) {
      ++present;
      pos += 9;
    } else if (replies.compare(pos, 5, "$-1\r\n") == 0) {
      ++absent;
      pos += 5;
    } else {
      ADD_FAILURE() << "unexpected reply at " << pos << ": " << replies.substr(pos, 40);
      break;
    }
  }
  EXPECT_EQ(present + absent, 1000u);
  EXPECT_GT(present, 900u);
}

TEST(KvstoreEnclave, SurvivesMalformedStreamsAndKeepsData) {
  auto f = start();
  ASSERT_TRUE(f.server);
  uint16_t port = f.server->port();
  EXPECT_EQ(roundtrip(port, "SET survivor yes\r\n"), "+OK\r\n");
  std::mt19937_64 rng(1234);
  const std::string seeds[] = {"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\nb\r\n",
                               "*1\r\n$4\r\nPING\r\n",
                               "*2\r\n$3\r\nGET\r\n$8\r\nsurvivor\r\n",
                               "*-5\r\n",
                               "$99999999999\r\n",
                               "*2\r\n$3\r\nGET\r\n$2147483648\r\n"};
  for (int i = 0; i < 300; ++i) {
    std::string s = seeds[rng() % std::size(seeds)];
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < edits && !s.empty(); ++k) {
      size_t at = rng() % s.size();
      switch (rng() % 3) {
        case 0:
          s[at] = static_cast<char>(rng());
          break;
        case 1:
          s.erase(at, 1);
          break;
        default:
          s.insert(at, 1, static_cast<char>(rng()));
          break;
      }
    }
    (void)roundtrip(port, s);
  }
  EXPECT_EQ(roundtrip(port, "PING\r\n"), "+PONG\r\n");
  EXPECT_EQ(roundtrip(port, "GET survivor\r\n"), "$3\r\nyes\r\n");
  std::string bad = roundtrip(port, "*1\r\n$-7\r\n");
  EXPECT_EQ(bad.rfind("-ERR Protocol error", 0), 0u) << bad;
}

TEST(KvstoreEnclave, MaxMemoryAnswersOomCleanly) {
  auto f = start(16ull << 20);  // the smallest heap the platform accepts
  ASSERT_TRUE(f.server);
  uint16_t port = f.server->port();
  std::string value(64 << 10, 'v');
  bool oom = false;
  for (int i = 0; i < 1000 && !oom; ++i) {
    std::string key = "big" + std::to_string(i);
    std::string req = "*3\r\n$3\r\nSET\r\n$" + std::to_string(key.size()) + "\r\n" + key + "\r\n$" +
                      std::to_string(value.size()) + "\r\n" + value + "\r\n";
    std::string r = roundtrip(port, req);
    if (r.rfind("-OOM", 0) == 0)
      oom = true;
    else
      ASSERT_EQ(r, "+OK\r\n");
  }
  EXPECT_TRUE(oom) << "16 MiB heap never filled with 64 MiB of writes";
  EXPECT_EQ(roundtrip(port, "PING\r\n"), "+PONG\r\n");
  EXPECT_EQ(roundtrip(port, "GET big0\r\n").substr(0, 8), "$65536\r\n");
  auto hs = f.enclave->heap_stats();
  ASSERT_TRUE(hs.ok());
  EXPECT_LE(hs->top, 16ull << 20);
}
