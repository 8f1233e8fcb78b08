// libFuzzer target: emulated quotes (src/common/quote_format.h) and the host-side quote
// verification (TrustStore, src/platform/host_quote.cpp) with a fixed platform key
// (fuzz_test_key.h).
//
// Input: byte 0 selects (byte 0 % 2):
//   0  the rest is a quote: decode_quote; a decoded quote re-encodes to exactly the input, and
//      TrustStore::verify (against the fixed measurement and against the quote's own) may only
//      succeed when the measurement matches
//   1  the rest is a trust-store file: TrustStore::add_public_key_pem (PEM block loop, key type
//      checks)
#include <string_view>

#include "common/quote_format.h"
#include "fuzz_test_key.h"
#include "fuzz_util.h"
#include "platform/host_quote.h"

namespace {

using namespace constmig;

const platform::TrustStore& trust_store() {
  static const platform::TrustStore* store = [] {
    auto* s = new platform::TrustStore();
    Status st = s->add_public_key_pem(fuzz::kFuzzPlatformPublicPem);
    FUZZ_CHECK(st.ok() && s->size() == 1);
    return s;
  }();
  return *store;
}

void check_quote(ByteView in) {
  auto q = quote::decode_quote(in);
  if (!q.ok()) {
    FUZZ_CHECK(!q.error().message.empty());
    return;
  }
  FUZZ_CHECK(in.size() == quote::kQuoteSize);
  std::vector<uint8_t> out = quote::encode_quote(*q);
  FUZZ_CHECK(fuzz::same_bytes(out, in));
  quote::Measurement fixed;
  fixed.fill(fuzz::kFuzzMeasurementByte);
  Status v1 = trust_store().verify(*q, fixed);
  if (v1.ok()) FUZZ_CHECK(q->measurement == fixed);
  Status v2 = trust_store().verify(*q, q->measurement);
  if (v1.ok()) FUZZ_CHECK(v2.ok());
  if (!v2.ok()) FUZZ_CHECK(v2.error().code == Errc::kSecurity);
}

void check_pem(ByteView in) {
  platform::TrustStore s;
  Status st = s.add_public_key_pem(as_string_view(in));
  if (st.ok()) {
    FUZZ_CHECK(s.size() >= 1);
    FUZZ_CHECK(s.raw_public_keys().size() == s.size());
  } else {
    FUZZ_CHECK(s.size() == 0 && !st.error().message.empty());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  ByteView rest(data + 1, size - 1);
  if (data[0] % 2 == 0) {
    check_quote(rest);
  } else {
    check_pem(rest);
  }
  return 0;
}
