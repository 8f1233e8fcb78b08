#include "kvstore/host/kvstore_app.h"

#include <cstring>

#include "kvstore/kvstore_edl.h"
#include "kvstore/kvstore_protocol.h"
#include "platform/host_edl.h"

CONSTMIG_HOST_EDL(kv_edl, KVSTORE_EDL)

namespace kvstore_app {

using namespace constmig;

Result<constmig::kvstore::ExecResult> EnclaveExecutor::exec(ByteView batch, std::string& replies) {
  uint32_t cap = max_reply_;
  std::vector<uint8_t> in;
  for (int attempt = 0; attempt < 4; ++attempt) {
    in.clear();
    ByteWriter w(in);
    w.u32(cap);
    w.bytes(batch);
    auto out = enclave_.call(static_cast<uint32_t>(kv_edl::Ecall::kv_batch), in, cap + 64);
    if (!out.ok()) return out.take_error();
    ByteReader r(*out);
    uint32_t done = r.u32();
    uint32_t needed = r.u32();
    if (!r.ok()) return make_error(Errc::kInternal, "kv_batch: short reply from enclave");
    if (done == 0 && needed > 0) {
      // One reply (a large GET) does not fit: retry with room for it.
      if (needed > constmig::kvstore::kMaxReplyBytesLimit) {
        return make_error(Errc::kResourceExhausted, "reply larger than the ECALL limit");
      }
      cap = needed + 4096;
      continue;
    }
    ByteView rest = ByteView(*out).subspan(8);
    replies.append(reinterpret_cast<const char*>(rest.data()), rest.size());
    return constmig::kvstore::ExecResult{done};
  }
  return make_error(Errc::kResourceExhausted, "kv_batch: reply size kept changing; retry");
}

Result<std::pair<uint64_t, uint64_t>> EnclaveExecutor::digest() {
  auto out = kv_edl::kv_digest(enclave_);
  if (!out.ok()) return out.take_error();
  ByteReader r(*out);
  uint64_t n = r.u64(), sum = r.u64();
  if (!r.ok()) return make_error(Errc::kInternal, "kv_digest: short reply");
  return std::make_pair(n, sum);
}

std::vector<std::string> kvstore_ecall_names() {
  return kv_edl::ecall_names();
}

namespace {

class KvstoreApp final : public host::HostApp {
 public:
  explicit KvstoreApp(const host::AppOptions& o) : opts_(o) {}
  ~KvstoreApp() override { stop(); }
  std::string name() const override { return "kvstore"; }
  std::string image_file() const override { return "kvstore_enclave.enclave.so"; }
  std::vector<std::string> ecall_names() const override { return kv_edl::ecall_names(); }
  platform::OcallTable ocalls() override { return kv_edl::ocall_table(this); }
  std::string endpoint() const override {
    return "kvstore (Redis RESP subset) listening on " + opts_.bind + ":" +
           std::to_string(server_ ? server_->port() : opts_.port);
  }
  Status start(platform::Enclave& e) override {
    executor_ = std::make_unique<EnclaveExecutor>(e);
    constmig::kvstore::ServerOptions so;
    so.bind = opts_.bind;
    so.port = opts_.port;
    so.io_threads = opts_.io_threads;
    server_ = std::make_unique<constmig::kvstore::KvServer>(so, *executor_);
    return server_->start();
  }
  Status probe(platform::Enclave& e) override {
    EnclaveExecutor ex(e);
    std::vector<uint8_t> batch;
    constmig::kvstore::encode_batch({{"PING"}}, batch);
    std::string replies;
    auto r = ex.exec(batch, replies);
    if (!r.ok()) return r.take_error();
    if (replies != "+PONG\r\n")
      return make_error(Errc::kInternal, "probe: unexpected reply " + replies);
    return ok_status();
  }
  void stop() override {
    if (server_) server_->stop();
  }
  nlohmann::json stats(bool detailed) override {
    nlohmann::json j;
    if (server_) {
      auto s = server_->stats();
      j["connections"] = s.connections_current;
      j["connections_accepted"] = s.connections_accepted;
      j["commands"] = s.commands;
      j["batches"] = s.batches;
      j["protocol_errors"] = s.protocol_errors;
      j["bytes_in"] = s.bytes_in;
      j["bytes_out"] = s.bytes_out;
    }
    if (executor_ && detailed) {  // kv_digest scans every key and value
      if (auto d = executor_->digest(); d.ok()) {
        j["keys"] = d->first;
        j["digest"] = d->second;
      }
    }
    return j;
  }

 private:
  host::AppOptions opts_;
  std::unique_ptr<EnclaveExecutor> executor_;
  std::unique_ptr<constmig::kvstore::KvServer> server_;
};

}  // namespace

std::unique_ptr<host::HostApp> make_kvstore_app(const host::AppOptions& o) {
  return std::make_unique<KvstoreApp>(o);
}

}  // namespace kvstore_app
