// The untrusted half of an enclave application, as the constmig tool drives it.
//
// UNTRUSTED code. An app = an enclave image (trusted half, built by constmig_add_enclave) + a
// HostApp (this interface): it names its image and EDL, serves clients through ECALLs, and
// reports stats. The migration verbs will add Persist-style save/restore hooks here.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "platform/host_enclave.h"

namespace constmig::host {

struct AppOptions {
  std::string bind = "127.0.0.1";
  uint16_t port = 6380;
  int io_threads = 2;
  uint64_t pages_mib = 64;  // pagecounter: MiB of oracle pages
  // Workload suite (btree, hashjoin, graph, xsbench): bytes of data to build in the enclave heap
  // (0 = three quarters of the heap limit, which the tool fills in).
  uint64_t data_bytes = 0;
  uint64_t heap_limit = 0;  // the enclave's --max-memory, for apps that size themselves by it
  // TESTING ONLY: a migration target corrupts one value in the enclave before its post-migration
  // verification, which must then report failure.
  bool self_test_corrupt = false;
};

class HostApp {
 public:
  virtual ~HostApp() = default;
  virtual std::string name() const = 0;
  virtual std::string image_file() const = 0;  // file name of the enclave image
  virtual std::vector<std::string> ecall_names() const = 0;
  virtual platform::OcallTable ocalls() = 0;
  // Start serving on a FRESH enclave (initialise app state). Non-blocking.
  virtual Status start(platform::Enclave& enclave) = 0;
  // Start serving on an enclave whose state arrived by migration (no initialisation).
  virtual Status resume(platform::Enclave& enclave) { return start(enclave); }
  // Persist-style host-state hooks: what the host half must carry to the target (sealed by the
  // source enclave in the stop phase). Called with app ECALLs held.
  virtual Result<std::vector<uint8_t>> save_state() { return std::vector<uint8_t>{}; }
  virtual Status restore_state(ByteView) { return ok_status(); }
  // One cheap app ECALL: the migration target runs it right after resuming, so that
  // `downtime` ends at the first ECALL served (DESIGN §3), even before clients return.
  virtual Status probe(platform::Enclave& enclave) = 0;
  virtual void stop() = 0;
  // detailed: also what is costly to compute (e.g. a digest of the whole store); asked by
  // `constmig status`, never by the periodic stats line.
  virtual nlohmann::json stats(bool detailed = false) = 0;
  // One line telling the user how to reach the app.
  virtual std::string endpoint() const = 0;
};

using AppFactory = std::function<std::unique_ptr<HostApp>(const AppOptions&)>;

// Apps known to the constmig tool (registered in tools/).
std::map<std::string, AppFactory>& app_registry();

// "64M", "1G", "512MiB", "1073741824" -> bytes.
Result<uint64_t> parse_size(const std::string& text);
std::string format_bytes(uint64_t bytes);

}  // namespace constmig::host
