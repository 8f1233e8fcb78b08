#include "host/host_app.h"

#include <cctype>
#include <cstdio>

namespace constmig::host {

std::map<std::string, AppFactory>& app_registry() {
  static std::map<std::string, AppFactory> r;
  return r;
}

Result<uint64_t> parse_size(const std::string& text) {
  size_t i = 0;
  uint64_t v = 0;
  if (text.empty() || !std::isdigit(static_cast<unsigned char>(text[0]))) {
    return make_error(Errc::kInvalidArgument,
                      "'" + text + "' is not a size: use e.g. 256M, 1G, 4GiB or a byte count");
  }
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
    uint64_t d = static_cast<uint64_t>(text[i] - '0');
    if (v > (UINT64_MAX - d) / 10) return make_error(Errc::kInvalidArgument, "size too large");
    v = v * 10 + d;
    ++i;
  }
  std::string unit;
  for (; i < text.size(); ++i) unit += static_cast<char>(std::toupper(text[i]));
  int shift = 0;
  if (unit.empty() || unit == "B") {
    shift = 0;
  } else if (unit == "K" || unit == "KB" || unit == "KIB") {
    shift = 10;
  } else if (unit == "M" || unit == "MB" || unit == "MIB") {
    shift = 20;
  } else if (unit == "G" || unit == "GB" || unit == "GIB") {
    shift = 30;
  } else if (unit == "T" || unit == "TB" || unit == "TIB") {
    shift = 40;
  } else {
    return make_error(Errc::kInvalidArgument,
                      "unknown size unit in '" + text + "': use K, M, G or T (powers of 1024)");
  }
  if (shift && v > (UINT64_MAX >> shift))
    return make_error(Errc::kInvalidArgument, "size too large");
  return v << shift;
}

std::string format_bytes(uint64_t b) {
  char buf[32];
  if (b >= (1ull << 30)) {
    std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(b) / (1ull << 30));
  } else if (b >= (1ull << 20)) {
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(b) / (1ull << 20));
  } else if (b >= 1024) {
    std::snprintf(buf, sizeof buf, "%.1f KiB", static_cast<double>(b) / 1024);
  } else {
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(b));
  }
  return buf;
}

}  // namespace constmig::host
