// Control socket of a running `constmig run`/`receive` process (UNTRUSTED).
//
// A Unix-domain stream socket; one request per connection, as one JSON line:
//   {"cmd":"status"}
//   {"cmd":"migrate","to":"10.77.0.2:7000","mode":"stop-and-copy","workers":2,
//    "batch_pages":256,"capture":"/tmp/s.cap","fault":"none","replay_capture":""}
//   {"cmd":"resume","force":true}
// The process answers with JSON lines: {"event":"progress",...}* then one
// {"event":"result","ok":true|false,"stats":{...},"error":"..."}.
// Requests are limited to 64 KiB.
#pragma once

#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"

namespace constmig::host {

class ControlServer {
 public:
  // handler(request, emit): emit() sends one JSON line to the client.
  using Handler = std::function<void(const nlohmann::json& request,
                                     const std::function<void(const nlohmann::json&)>& emit)>;
  ~ControlServer();
  Status start(const std::string& path, Handler handler);
  void stop();
  const std::string& path() const { return path_; }

 private:
  void loop();
  void serve_one(int client_fd);
  std::mutex conn_mu_;
  std::vector<std::thread> conns_;
  std::string path_;
  Handler handler_;
  int fd_ = -1;
  int wake_[2] = {-1, -1};
  std::thread thread_;
};

// Client side: send one request, call on_line for each JSON line until the result arrives.
Result<nlohmann::json> control_request(const std::string& path, const nlohmann::json& request,
                                       const std::function<void(const nlohmann::json&)>& on_line);

// "host:port" / "[v6]:port" -> connected TCP socket (timeout applies to connect).
Result<int> tcp_connect(const std::string& addr, int timeout_ms);
// Listen on "host:port"; returns the listening fd.
Result<int> tcp_listen(const std::string& addr);

}  // namespace constmig::host
