// Writes the fuzz targets' seed corpus (fuzz/corpus/<target>/) with the project's own encoders:
// valid inputs of every kind, plus a few hand-made edge cases. Deterministic: running it again
// rewrites the same bytes (Ed25519 signatures are deterministic; the key is fuzz_test_key.h).
//
//   build-fuzz/bin/make_corpus fuzz/corpus
//
// Input layouts (the selector bytes in front) are described at the top of each fuzz_*.cpp.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/quote_format.h"
#include "common/wire_format.h"
#include "fuzz_test_key.h"
#include "host/resp.h"
#include "kvstore_protocol.h"
#include "platform/host_quote.h"
#include "trusted/migration/small_state_format.h"

namespace fs = std::filesystem;
using namespace constmig;
using namespace constmig::wire;
using Bytes = std::vector<uint8_t>;

namespace {

fs::path g_root;
int g_files = 0;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "make_corpus: %s\n", what.c_str());
  std::exit(1);
}

void must(const Status& st, const char* what) {
  if (!st.ok()) die(std::string(what) + ": " + st.error().message);
}

void write(const std::string& target, const std::string& name, const Bytes& bytes) {
  fs::path dir = g_root / target;
  fs::create_directories(dir);
  std::ofstream f(dir / name, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!f) die("cannot write " + (dir / name).string());
  ++g_files;
}

Bytes prefixed(uint8_t first, ByteView rest) {
  Bytes b{first};
  b.insert(b.end(), rest.begin(), rest.end());
  return b;
}
Bytes prefixed(uint8_t a, uint8_t b2, ByteView rest) {
  Bytes b{a, b2};
  b.insert(b.end(), rest.begin(), rest.end());
  return b;
}

Bytes pattern(size_t n, uint8_t seed) {
  Bytes v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 31);
  return v;
}

// --------------------------------------------------------------------------------- quotes

platform::PlatformKey& fuzz_key() {
  static platform::PlatformKey* key = [] {
    char path[] = "/tmp/constmig-fuzz-key-XXXXXX";
    int fd = ::mkstemp(path);  // mode 0600
    if (fd < 0) die("mkstemp failed");
    const size_t n = std::strlen(fuzz::kFuzzPlatformKeyPem);
    if (::write(fd, fuzz::kFuzzPlatformKeyPem, n) != static_cast<ssize_t>(n)) die("write key");
    ::close(fd);
    auto k = platform::PlatformKey::load(path);
    ::unlink(path);
    if (!k.ok()) die("loading the fuzz key: " + k.error().message);
    return new platform::PlatformKey(std::move(k).value());
  }();
  return *key;
}

Bytes signed_quote(uint8_t measurement_byte, uint8_t report_seed) {
  quote::Measurement m;
  m.fill(measurement_byte);
  std::array<uint8_t, 64> rd{};
  for (size_t i = 0; i < rd.size(); ++i) rd[i] = static_cast<uint8_t>(report_seed + i);
  auto q = fuzz_key().sign_quote(m, rd);
  if (!q.ok()) die("sign_quote: " + q.error().message);
  return quote::encode_quote(*q);
}

// -------------------------------------------------------------------------------- payloads

Hello sample_hello(Role role) {
  Hello h;
  h.role = role;
  h.mode = Mode::kConstMig;
  h.thread_slots = 8;
  h.heap_limit = 256ull << 20;
  for (size_t i = 0; i < h.x25519_public.size(); ++i) h.x25519_public[i] = static_cast<uint8_t>(i);
  for (size_t i = 0; i < h.nonce.size(); ++i) h.nonce[i] = static_cast<uint8_t>(0xA0 + i);
  Bytes q = signed_quote(fuzz::kFuzzMeasurementByte, role == Role::kSource ? 1 : 2);
  std::copy(q.begin(), q.end(), h.quote.begin());
  h.app_name = "kvstore";
  return h;
}

Bytes hello_payload(Role role) {
  Bytes p;
  must(encode_hello(sample_hello(role), p), "hello");
  return p;
}

Bytes key_confirm_payload() {
  KeyConfirm k;
  k.mac.fill(0x5A);
  Bytes p;
  encode_key_confirm(k, p);
  return p;
}

Bytes sealed_payload(FrameType t, uint32_t section, uint32_t index, uint32_t count, size_t ct_len,
                     uint64_t nonce) {
  Bytes ct = pattern(ct_len, static_cast<uint8_t>(nonce));
  Bytes tag = pattern(kTagSize, 7);
  SealedRecord r;
  r.nonce = nonce;
  r.section = section;
  r.index = index;
  r.count = count;
  r.ciphertext = ct;
  r.tag = tag;
  Bytes p;
  must(encode_sealed(t, r, p), "sealed");
  return p;
}

// `data` data pages from `first`, then a zero run of `run` pages.
Bytes pages_payload(uint64_t first, uint32_t data, uint32_t run, uint64_t nonce) {
  Bytes p;
  PagesBuilder b(p, data + (run ? 1 : 0));
  for (uint32_t i = 0; i < data; ++i) {
    auto slot = b.add_data(first + i, nonce + i);
    if (!slot.ok()) die("add_data");
    Bytes c = pattern(kPageSize, static_cast<uint8_t>(i));
    std::copy(c.begin(), c.end(), slot->ciphertext.begin());
    std::fill(slot->tag.begin(), slot->tag.end(), 0x33);
  }
  if (run != 0) {
    auto tag = b.add_zero_run(first + data, run, nonce + data);
    if (!tag.ok()) die("add_zero_run");
    std::fill(tag->begin(), tag->end(), 0x44);
  }
  must(b.finish(), "pages");
  return p;
}

Bytes page_request_payload(uint64_t first, uint32_t count) {
  Bytes p;
  must(encode_page_request(PageRequest{first, count}, p), "page request");
  return p;
}

Bytes resume_payload(Role role, uint32_t epoch) {
  Resume r;
  r.role = role;
  r.mig_id.fill(0x6D);
  r.epoch = epoch;
  r.x25519_public.fill(0x55);
  r.nonce.fill(0x4E);
  r.mac.fill(0x3C);
  Bytes p;
  must(encode_resume(r, p), "resume");
  return p;
}

Bytes error_payload(const std::string& msg) {
  Bytes p;
  encode_error(ErrorInfo{static_cast<uint32_t>(Errc::kSecurity), msg}, p);
  return p;
}

Bytes stats_payload(const std::string& json) {
  Bytes p;
  must(encode_stats(json, p), "stats");
  return p;
}

// ---------------------------------------------------------------------------------- streams

struct Stream {
  FrameEncoder enc;
  Bytes bytes;
  void add(FrameType t, const Bytes& payload, uint16_t flags = 0) {
    must(enc.append(t, flags, payload, bytes), "frame");
  }
};

Bytes source_stream() {
  Stream s;
  s.add(FrameType::kHello, hello_payload(Role::kSource));
  s.add(FrameType::kKeyConfirm, key_confirm_payload());
  s.add(FrameType::kStats, stats_payload(R"({"prepare-heap-top": 1048576, "tracker": "fault"})"));
  s.add(FrameType::kSmallState, sealed_payload(FrameType::kSmallState, 10, 0, 2, 100, 1));
  s.add(FrameType::kSmallState, sealed_payload(FrameType::kSmallState, 11, 1, 2, 300, 2));
  s.add(FrameType::kHostState, sealed_payload(FrameType::kHostState, 0, 0, 1, 64, 3));
  s.add(FrameType::kPages, pages_payload(0, 1, 100, 4));
  s.add(FrameType::kPages, pages_payload(500, 1, 0, 6), kFlagUrgent);
  s.add(FrameType::kPages, pages_payload(101, 0, 399, 7));
  s.add(FrameType::kManifest, sealed_payload(FrameType::kManifest, 0, 0, 1, kManifestBodySize, 8));
  s.add(FrameType::kStats, stats_payload(R"({"downtime-ms": 12})"));
  return s.bytes;
}

Bytes target_stream(bool commit) {
  Stream s;
  s.add(FrameType::kHello, hello_payload(Role::kTarget));
  s.add(FrameType::kKeyConfirm, key_confirm_payload());
  s.add(FrameType::kStats, stats_payload(R"({"ready": true})"));
  s.add(FrameType::kPageRequest, page_request_payload(500, 16));
  if (commit) {
    s.add(FrameType::kCommit, sealed_payload(FrameType::kCommit, 0, 0, 1, kTokenSize, 1));
  } else {
    s.add(FrameType::kError, error_payload("migration refused: the manifest does not match"));
    s.add(FrameType::kAbort, sealed_payload(FrameType::kAbort, 0, 0, 1, kTokenSize, 1));
  }
  return s.bytes;
}

Bytes concat(const Bytes& a, const Bytes& b) {
  Bytes r = a;
  r.insert(r.end(), b.begin(), b.end());
  return r;
}

Bytes header_bytes(FrameType t, uint16_t flags, uint32_t len, uint64_t seq) {
  FrameHeader h;
  h.type = t;
  h.flags = flags;
  h.payload_len = len;
  h.seq = seq;
  std::array<uint8_t, kHeaderSize> b{};
  encode_header(h, b);
  return Bytes(b.begin(), b.end());
}

// ---------------------------------------------------------------------------------- targets

void frames() {
  const std::string t = "fuzz_frames";
  Bytes src = source_stream(), tgt = target_stream(true);
  write(t, "stream_source", prefixed(0, 0, src));
  write(t, "stream_target_commit", prefixed(0, 5, tgt));
  write(t, "stream_target_abort", prefixed(0, 9, target_stream(false)));
  // Mode 13: the CRC fixer makes a zeroed CRC right again.
  Bytes nocrc = tgt;
  std::memset(nocrc.data() + 20, 0, 4);
  write(t, "stream_crcfix", prefixed(13, 3, nocrc));
  // Edge cases: truncated payload, a 64 MiB announcement, a seq gap, garbage after a frame.
  write(t, "stream_truncated", prefixed(0, 1, ByteView(src).first(src.size() - 100)));
  write(t, "stream_huge_len",
        prefixed(0, 2, header_bytes(FrameType::kSmallState, 0, kSealedOverhead + (64u << 20), 0)));
  write(t, "stream_seq_gap",
        prefixed(0, 4,
                 concat(header_bytes(FrameType::kStats, 0, 0, 0),
                        header_bytes(FrameType::kStats, 0, 0, 2))));
  write(t, "stream_trailing", prefixed(0, 6, concat(tgt, Bytes{'C', 'M', 'G'})));

  write(t, "hello_source", prefixed(1, hello_payload(Role::kSource)));
  write(t, "hello_target", prefixed(1, hello_payload(Role::kTarget)));
  write(t, "key_confirm", prefixed(2, key_confirm_payload()));
  write(t, "small_state_last", prefixed(3, sealed_payload(FrameType::kSmallState, 7, 2, 3, 40, 9)));
  write(t, "small_state_empty", prefixed(3, sealed_payload(FrameType::kSmallState, 0, 0, 1, 0, 1)));
  write(t, "host_state", prefixed(4, sealed_payload(FrameType::kHostState, 0, 0, 1, 17, 2)));
  write(t, "pages_mixed", prefixed(5, pages_payload(0, 1, 65536, 3)));
  write(t, "pages_zero_top",
        prefixed(5, pages_payload(kMaxHeapPages - kMaxZeroRun, 0, kMaxZeroRun, 1)));
  write(t, "page_request", prefixed(6, page_request_payload(kMaxHeapPages - 256, 256)));
  write(t, "manifest", prefixed(7, sealed_payload(FrameType::kManifest, 0, 0, 1, 52, 4)));
  write(t, "commit", prefixed(8, sealed_payload(FrameType::kCommit, 0, 0, 1, 32, 5)));
  write(t, "abort", prefixed(9, sealed_payload(FrameType::kAbort, 0, 0, 1, 32, 6)));
  write(t, "error", prefixed(10, error_payload("bad \"page\"\r\n\x01")));
  write(t, "error_empty", prefixed(10, error_payload("")));
  write(t, "stats", prefixed(11, stats_payload(R"({"pages": 1, "ok": true})")));
  write(t, "header_hello", prefixed(12, 1, header_bytes(FrameType::kHello, 0, kHelloSize, 0)));
  write(t, "header_pages_urgent",
        prefixed(12, 1, header_bytes(FrameType::kPages, kFlagUrgent, 45, 7)));
  write(t, "header_seq_behind", prefixed(12, 6, header_bytes(FrameType::kStats, 0, 2, 1)));
  write(t, "resume_source", prefixed(14, resume_payload(Role::kSource, 2)));
  write(t, "resume_target_max", prefixed(14, resume_payload(Role::kTarget, kMaxEpoch)));
  write(t, "resume_state",
        prefixed(15, sealed_payload(FrameType::kResumeState, 0, 0, 1, 8 + 3, 1)));
}

void manifest() {
  const std::string t = "fuzz_manifest";
  ManifestBody m;
  m.epoch = 1;
  for (size_t i = 0; i < m.digest.size(); ++i) m.digest[i] = static_cast<uint8_t>(i);
  auto put = [&](const std::string& name, uint64_t pages, uint64_t top) {
    m.page_count = pages;
    m.heap_top = top;
    auto b = encode_manifest_body(m);
    write(t, name, Bytes(b.begin(), b.end()));
  };
  put("empty_heap", 0, 0);
  put("heap_1mib", 256, 256 * kPageSize);
  put("largest_heap", kMaxHeapPages, kMaxHeapPages * kPageSize);
  put("top_mismatch", 256, 255 * kPageSize);  // refused
}

void quotes() {
  const std::string t = "fuzz_quote";
  write(t, "quote_valid", prefixed(0, signed_quote(fuzz::kFuzzMeasurementByte, 9)));
  write(t, "quote_other_measurement", prefixed(0, signed_quote(0x42, 9)));
  Bytes bad = signed_quote(fuzz::kFuzzMeasurementByte, 9);
  bad[60] ^= 1;  // report data altered: the signature no longer verifies
  write(t, "quote_altered", prefixed(0, bad));
  quote::Quote unsigned_q;
  unsigned_q.measurement.fill(fuzz::kFuzzMeasurementByte);
  unsigned_q.platform_key_id.fill(0x22);  // not in the trust store
  write(t, "quote_unknown_platform", prefixed(0, quote::encode_quote(unsigned_q)));
  std::string pub = fuzz::kFuzzPlatformPublicPem;
  write(t, "pem_public", prefixed(1, as_bytes_view(pub)));
  write(t, "pem_two_keys", prefixed(1, as_bytes_view(pub + pub)));
  write(t, "pem_private", prefixed(1, as_bytes_view(std::string(fuzz::kFuzzPlatformKeyPem))));
  write(t, "pem_empty", Bytes{1});
}

void small_state() {
  const std::string t = "fuzz_small_state";
  using namespace constmig::trusted::mig;
  Bytes globals = pattern(256, 5);
  SmallState s;
  s.globals_begin = 0x7f0000001000ull;
  s.globals_len = globals.size();
  s.heap_base = 0x7f1000000000ull;
  s.heap_top = 1u << 20;
  s.heap_limit = 64ull << 20;
  s.globals = globals;
  Bytes b;
  encode_small_state(s, b);
  write(t, "fixed_layout", prefixed(0, b));
  write(t, "own_layout", prefixed(1, b));
  write(t, "header_only", prefixed(0, ByteView(b).first(kSmallStateHeader)));
  s.heap_top = 128ull << 20;  // larger than the heap limit
  b.clear();
  encode_small_state(s, b);
  write(t, "heap_too_large", prefixed(0, b));
  Bytes none;
  SmallState empty;
  empty.heap_limit = 4096;
  empty.heap_top = 4096;
  encode_small_state(empty, none);
  write(t, "no_globals", prefixed(1, none));
}

void resp() {
  const std::string t = "fuzz_resp";
  std::string pipelined;
  host::resp_append_command(pipelined, {"SET", "key:1", "value with spaces"});
  host::resp_append_command(pipelined, {"GET", "key:1"});
  host::resp_append_command(pipelined, {"DEL", "a", "b", "c"});
  host::resp_append_command(pipelined, {"SET", "bin", std::string("\0\r\n\xff", 4)});
  write(t, "multibulk_pipelined", prefixed(0, as_bytes_view(pipelined)));
  write(t, "multibulk_chunked", prefixed(4, as_bytes_view(pipelined)));  // 2-byte chunks
  write(t, "inline", prefixed(0, as_bytes_view("PING\r\nSET k v\nGET k\r\n\r\n")));
  write(t, "inline_quotes",
        prefixed(0, as_bytes_view("SET \"a b\\x41\\n\" 'c\\'d' \"\\\"q\\\"\"\r\n")));
  write(t, "empty_requests", prefixed(0, as_bytes_view("*0\r\n*-1\r\nPING\r\n")));
  write(t, "small_limits", prefixed(1, as_bytes_view(pipelined)));
  write(t, "small_limits_one_byte", prefixed(3, as_bytes_view("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")));
  write(t, "bad_bulk_length", prefixed(0, as_bytes_view("*1\r\n$-5\r\n")));
  write(t, "unbalanced_quotes", prefixed(0, as_bytes_view("SET \"abc\r\n")));
  write(t, "int_min", prefixed(2, as_bytes_view("-9223372036854775808")));
  write(t, "int_max", prefixed(2, as_bytes_view("9223372036854775807")));
}

void kv_batch() {
  const std::string t = "fuzz_kv_batch";
  Bytes b;
  kvstore::encode_batch({{"SET", "k", "v"}, {"GET", "k"}, {"DEL", "k", "x"}}, b);
  write(t, "three_commands", prefixed(2, b));
  write(t, "three_commands_small_limits", prefixed(1, b));
  b.clear();
  kvstore::encode_batch({}, b);
  write(t, "empty", prefixed(0, b));
  b.clear();
  kvstore::encode_batch({{"SET", "binary", std::string("\0\x01\xff", 3)}, {"PING"}}, b);
  write(t, "binary_value", prefixed(4, b));
  b.clear();
  kvstore::encode_batch({{"GET", "k"}}, b);
  b.push_back(0);  // trailing byte: refused
  write(t, "trailing_byte", prefixed(0, b));
}

void capture() {
  const std::string t = "fuzz_capture";
  auto cap = [](Direction d, const Bytes& stream) {
    auto h = encode_capture_header(d);
    Bytes b(h.begin(), h.end());
    b.insert(b.end(), stream.begin(), stream.end());
    return b;
  };
  Bytes src = source_stream(), tgt = target_stream(true);
  write(t, "source_capture", cap(Direction::kSourceToTarget, src));
  write(t, "target_capture", cap(Direction::kTargetToSource, tgt));
  write(t, "unknown_direction", cap(Direction::kUnknown, target_stream(false)));
  write(t, "raw_stream", tgt);
  write(t, "header_only", cap(Direction::kSourceToTarget, {}));
  write(t, "wrong_direction", cap(Direction::kTargetToSource, src));  // refused
  Stream s;
  s.enc = FrameEncoder(0);
  s.add(FrameType::kPages, pages_payload(0, 0, 10, 1));
  s.add(FrameType::kPages, pages_payload(5, 0, 10, 2));  // pages 5..9 twice
  write(t, "duplicate_pages", cap(Direction::kSourceToTarget, s.bytes));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2 || std::string(argv[1]) == "--help") {
    std::fprintf(stderr, "usage: make_corpus DIR   (writes DIR/<fuzz target>/<seed>)\n");
    return argc == 2 ? 0 : 2;
  }
  g_root = argv[1];
  frames();
  manifest();
  quotes();
  small_state();
  resp();
  kv_batch();
  capture();
  std::printf("make_corpus: wrote %d files under %s\n", g_files, g_root.c_str());
  return 0;
}
