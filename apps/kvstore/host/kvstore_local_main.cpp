// UNTRUSTED. kvstore_local: the kvstore server with the engine in-process (no enclave), for
// tests, manual redis-cli/redis-benchmark runs and as the benchmarks' "no enclave" baseline.
#include <csignal>
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

#include "kvstore/host/kvstore_server.h"
#include "kvstore/host/local_engine_executor.h"

int main(int argc, char** argv) {
  using namespace constmig::kvstore;
  ServerOptions opt;
  size_t max_bulk_mib = opt.limits.max_bulk_len >> 20;
  CLI::App app{"kvstore_local: Redis-RESP kvstore with an in-process engine (no enclave)"};
  app.add_option("--bind", opt.bind, "address to listen on")->capture_default_str();
  app.add_option("--port", opt.port, "TCP port (0 = pick a free one)")->capture_default_str();
  app.add_option("--threads", opt.io_threads, "io threads")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  app.add_option("--max-clients", opt.max_clients, "connection limit")->capture_default_str();
  app.add_option("--max-bulk-mib", max_bulk_mib, "largest RESP bulk string, MiB")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  CLI11_PARSE(app, argc, argv);
  opt.limits.max_bulk_len = max_bulk_mib << 20;

  // Block the stop signals in every thread; the main thread waits for them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  EngineOptions eo;
  eo.environment = "host process (no enclave: kvstore_local)";
  KvEngine engine(eo);
  LocalEngineExecutor exec(engine);
  KvServer server(opt, exec);
  if (auto st = server.start(); !st.ok()) {
    std::fprintf(stderr, "kvstore_local: %s\n", st.error().message.c_str());
    return 1;
  }
  std::printf("kvstore_local listening on %s port %u (%d io threads)\n", opt.bind.c_str(),
              static_cast<unsigned>(server.port()), opt.io_threads);
  std::fflush(stdout);
  int sig = 0;
  sigwait(&set, &sig);
  server.stop();
  ServerStats s = server.stats();
  std::printf(
      "kvstore_local: stopped; %llu connections, %llu commands, %llu batches, "
      "%llu protocol errors\n",
      static_cast<unsigned long long>(s.connections_accepted),
      static_cast<unsigned long long>(s.commands), static_cast<unsigned long long>(s.batches),
      static_cast<unsigned long long>(s.protocol_errors));
  return 0;
}
