// bench_ecall: cost of an ECALL (and an OCALL) on the EMULATED SGX platform, side by side with
// a direct in-process call doing the same copying, in one run. Writes JSON.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "bench_edl.h"
#include "platform/host_edl.h"

CONSTMIG_HOST_EDL(bench_edl, BENCH_EDL)

namespace bench_edl {
int32_t ocall_host_nop(void*, constmig::platform::OcallIo&) {
  return 0;
}
}  // namespace bench_edl

using namespace constmig;
using Clock = std::chrono::steady_clock;

namespace {
// The direct-call reference: copy in (as the ECALL does), run, copy out.
__attribute__((noinline)) size_t direct_echo(const uint8_t* in, size_t n, uint8_t* out) {
  std::vector<uint8_t> copy(in, in + n);
  std::vector<uint8_t> result(copy.begin(), copy.end());
  std::memcpy(out, result.data(), result.size());
  return result.size();
}

template <typename F>
double ns_per_op(F&& f, double seconds) {
  for (int i = 0; i < 1000; ++i) f();  // warm
  uint64_t ops = 0;
  auto t0 = Clock::now();
  auto deadline = t0 + std::chrono::duration<double>(seconds);
  while (Clock::now() < deadline) {
    for (int i = 0; i < 256; ++i) f();
    ops += 256;
  }
  return std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / ops;
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{
      "bench_ecall: ECALL/OCALL round-trip cost on the EMULATED SGX platform vs a direct call"};
  std::string json_path = "bench-results/ecall.json";
  std::string image;
  double seconds = 0.5;
  cli.add_option("--json", json_path, "write results here")->capture_default_str();
  cli.add_option("--image", image, "bench enclave image (default: next to this binary)");
  cli.add_option("--seconds", seconds, "time per measurement")->capture_default_str();
  CLI11_PARSE(cli, argc, argv);
  if (image.empty()) {
    image =
        std::filesystem::read_symlink("/proc/self/exe").parent_path() / "bench_enclave.enclave.so";
  }
  auto plat = platform::Platform::create_emulated({});
  if (!plat.ok()) {
    std::fprintf(stderr, "bench_ecall: %s\n", plat.error().message.c_str());
    return 1;
  }
  platform::EnclaveConfig cfg;
  cfg.image_path = image;
  cfg.heap_limit = 64ull << 20;
  cfg.expected_ecalls = bench_edl::ecall_names();
  cfg.ocalls = bench_edl::ocall_table(nullptr);
  auto enc = (*plat)->create_enclave(cfg);
  if (!enc.ok()) {
    std::fprintf(stderr, "bench_ecall: %s\n", enc.error().message.c_str());
    return 1;
  }
  platform::Enclave& e = **enc;
  nlohmann::json results = nlohmann::json::array();
  std::printf("EMULATED SGX platform | %-22s %12s %12s %8s\n", "case", "enclave ns", "direct ns",
              "ratio");
  std::vector<uint8_t> out(1 << 20);
  for (size_t size : {0ul, 64ul, 4096ul, 65536ul}) {
    std::vector<uint8_t> in(size, 0x5a);
    uint32_t id = size == 0 ? static_cast<uint32_t>(bench_edl::Ecall::nop)
                            : static_cast<uint32_t>(bench_edl::Ecall::echo);
    double enc_ns = ns_per_op([&] { (void)e.ecall(id, in, out); }, seconds);
    double dir_ns =
        ns_per_op([&] { (void)direct_echo(in.data(), in.size(), out.data()); }, seconds);
    std::string name = size == 0 ? "ecall nop" : "ecall echo " + std::to_string(size) + " B";
    std::printf("%-44s %12.1f %12.1f %8.2f\n", name.c_str(), enc_ns, dir_ns, enc_ns / dir_ns);
    results.push_back({{"case", name},
                       {"bytes", size},
                       {"enclave_ns", enc_ns},
                       {"direct_ns", dir_ns},
                       {"ratio", enc_ns / dir_ns}});
  }
  uint32_t oid = static_cast<uint32_t>(bench_edl::Ecall::ocall_roundtrip);
  uint32_t nid = static_cast<uint32_t>(bench_edl::Ecall::nop);
  double with_ocall = ns_per_op([&] { (void)e.ecall(oid, {}, out); }, seconds);
  double nop = ns_per_op([&] { (void)e.ecall(nid, {}, out); }, seconds);
  std::printf("%-44s %12.1f %12.1f %8.2f\n", "ecall + 1 ocall (vs ecall nop)", with_ocall, nop,
              with_ocall / nop);
  results.push_back({{"case", "ecall+ocall vs ecall nop"},
                     {"enclave_ns", with_ocall},
                     {"direct_ns", nop},
                     {"ratio", with_ocall / nop}});
  nlohmann::json doc = {{"benchmark", "ecall"}, {"platform", "emulated"}, {"results", results}};
  std::filesystem::path p(json_path);
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
  std::ofstream(p) << doc.dump(2) << "\n";
  std::printf("wrote %s\n", json_path.c_str());
  return 0;
}
