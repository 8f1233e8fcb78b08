// libFuzzer target: the kvstore command batch the enclave decodes for every "kv_batch" ECALL
// (apps/kvstore/kvstore_protocol.h: validate_batch, decode_batch; BatchBuilder).
//
// Input: byte 0 selects the limits (byte 0 % 2: 0 the defaults, 1 small ones) and, in its high
// bits, where a second decode stops early; the rest is the batch. A batch that decodes must
// have been checked whole before the first callback, re-encode (encode_batch and BatchBuilder)
// to exactly the input, and keep a valid tail after BatchBuilder::drop_front.
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "kvstore_protocol.h"

using namespace constmig;
using namespace constmig::kvstore;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  ByteView in(data + 1, size - 1);
  BatchLimits limits;
  if (data[0] % 2 == 1) limits = BatchLimits{16, 8, 64};

  uint32_t count = 0;
  Status valid = validate_batch(in, limits, &count);
  std::vector<std::vector<std::string>> cmds;
  Status st = decode_batch(in, limits, [&](uint32_t i, const std::vector<std::string_view>& argv) {
    FUZZ_CHECK(i == cmds.size());
    FUZZ_CHECK(!argv.empty() && argv.size() <= limits.max_args);
    std::vector<std::string> c;
    for (std::string_view a : argv) {
      FUZZ_CHECK(a.size() <= limits.max_arg_len && fuzz::inside(as_bytes_view(a), in));
      c.emplace_back(a);
    }
    cmds.push_back(std::move(c));
  });
  FUZZ_CHECK(st.ok() == valid.ok());
  if (!st.ok()) {
    FUZZ_CHECK(cmds.empty());  // a malformed batch runs nothing
    FUZZ_CHECK(st.error().code == Errc::kFormat);
    return 0;
  }
  FUZZ_CHECK(cmds.size() == count && count <= limits.max_commands);

  std::vector<uint8_t> out;
  encode_batch(cmds, out);
  FUZZ_CHECK(fuzz::same_bytes(out, in));
  BatchBuilder b;
  for (const auto& c : cmds) b.add(c);
  FUZZ_CHECK(b.count() == count && fuzz::same_bytes(b.view(), in));

  // Stopping early visits exactly the first `stop + 1` commands.
  const uint32_t stop = data[0] >> 1;
  uint32_t visited = 0;
  Status early = decode_batch(in, limits, [&](uint32_t i, const std::vector<std::string_view>&) {
    ++visited;
    return i < stop;
  });
  FUZZ_CHECK(early.ok() && visited == std::min(count, stop + 1));

  // The tail left by drop_front is the batch of the remaining commands.
  const uint32_t drop = std::min(count, stop);
  b.drop_front(drop);
  std::vector<std::vector<std::string>> tail(cmds.begin() + drop, cmds.end());
  std::vector<uint8_t> tail_bytes;
  encode_batch(tail, tail_bytes);
  FUZZ_CHECK(b.count() == tail.size() && fuzz::same_bytes(b.view(), tail_bytes));
  uint32_t tail_count = 0;
  FUZZ_CHECK(validate_batch(b.view(), limits, &tail_count).ok() && tail_count == tail.size());
  return 0;
}
