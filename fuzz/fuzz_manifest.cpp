// libFuzzer target: the MANIFEST plaintext (decode_manifest_body, src/common/wire_format.cpp),
// what the target enclave parses after opening the sealed MANIFEST record.
//
// Input: the plaintext. A decoded body must satisfy the documented invariants and re-encode
// (encode_manifest_body) to exactly the input.
#include "common/wire_format.h"
#include "fuzz_util.h"

using namespace constmig;
using namespace constmig::wire;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ByteView in(data, size);
  auto r = decode_manifest_body(in);
  if (!r.ok()) {
    FUZZ_CHECK(r.error().code == Errc::kFormat && !r.error().message.empty());
    return 0;
  }
  FUZZ_CHECK(size == kManifestBodySize);
  FUZZ_CHECK(r->page_count <= kMaxHeapPages);
  FUZZ_CHECK(r->heap_top % kPageSize == 0 && r->heap_top / kPageSize == r->page_count);
  auto out = encode_manifest_body(*r);
  FUZZ_CHECK(constmig::fuzz::same_bytes(out, in));
  return 0;
}
