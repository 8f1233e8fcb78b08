// libFuzzer target: capture files as `constmig inspect` reads them: decode_capture_header
// (src/common/wire_format.cpp) and the whole inspector (tools/constmig_inspect.cpp: capture
// header, FrameReader, per-frame describe, page bookkeeping, text and JSON output).
//
// Input: the file's bytes. The inspector reads a path, so the input goes into a memfd opened
// by /proc/self/fd/N; output goes to /dev/null. Text or JSON output and --records follow the
// input size. The inspector must exit 0 or 1 (never 2: the file is readable), and 1 when the
// capture header or a frame header CRC is bad. Inputs whose header CRCs are wrong are mostly
// inspected as a copy with fixed CRCs (fuzz_util.h), so mutations reach the frame decoders.
#include <sys/mman.h>
#include <unistd.h>

#include <string>

#include "common/wire_format.h"
#include "constmig_inspect.h"
#include "fuzz_util.h"

using namespace constmig;
using namespace constmig::wire;

namespace {

int g_memfd = -1;
std::FILE* g_null = nullptr;
std::string g_path;

int inspect(ByteView file, bool json, bool records) {
  FUZZ_CHECK(::ftruncate(g_memfd, 0) == 0);
  size_t done = 0;
  while (done < file.size()) {
    ssize_t n = ::pwrite(g_memfd, file.data() + done, file.size() - done, static_cast<off_t>(done));
    FUZZ_CHECK(n > 0);
    done += static_cast<size_t>(n);
  }
  tools::InspectOptions o;
  o.json = json;
  o.records = records;
  o.out = g_null;
  o.err = g_null;
  return tools::inspect_capture(g_path, o);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  g_memfd = ::memfd_create("fuzz_capture", MFD_CLOEXEC);
  FUZZ_CHECK(g_memfd >= 0);
  g_path = "/proc/self/fd/" + std::to_string(g_memfd);
  g_null = std::fopen("/dev/null", "w");
  FUZZ_CHECK(g_null != nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ByteView in(data, size);
  auto cap = decode_capture_header(in);
  size_t stream_at = 0;
  if (cap.ok() && cap->has_value()) {
    FUZZ_CHECK(size >= kCaptureHeaderSize);
    auto enc = encode_capture_header((*cap)->direction);
    FUZZ_CHECK(fuzz::same_bytes(enc, in.first(kCaptureHeaderSize)));
    stream_at = kCaptureHeaderSize;
  }
  const bool json = size % 2 == 1, records = size % 3 == 0;
  // The inspector costs ~1 ms a run (it allocates a 1 MiB read buffer and a 2 MiB page bitmap),
  // so it runs once: on the input if its header CRCs are right (or cannot be fixed), else on a
  // copy with fixed CRCs. Every 8th input with bad CRCs also runs as is.
  std::vector<uint8_t> fixed;
  if (cap.ok()) {
    fixed.assign(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(stream_at));
    std::vector<uint8_t> stream = fuzz::fix_header_crcs(in.subspan(stream_at));
    fixed.insert(fixed.end(), stream.begin(), stream.end());
  }
  const bool crcs_fixed = cap.ok() && !fuzz::same_bytes(fixed, in);
  if (!crcs_fixed || size % 8 == 0) {
    int rc = inspect(in, json, records);
    FUZZ_CHECK(rc == 0 || rc == 1);
    if (!cap.ok() || crcs_fixed) FUZZ_CHECK(rc == 1);
  }
  if (crcs_fixed) {
    int rc = inspect(fixed, json, records);
    FUZZ_CHECK(rc == 0 || rc == 1);
  }
  return 0;
}
