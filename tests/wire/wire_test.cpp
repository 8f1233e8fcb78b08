// Tests of the migration stream's wire format (src/common/wire_format.h, docs/format.md).
#include <gtest/gtest.h>

#include <cstdlib>
#include <set>

#include "common/wire_format.h"
#include "wire_test_util.h"

// Allocation probe (alloc_probe.cpp): records the largest single operator-new allocation while
// armed, to prove that an announced length is refused BEFORE anything of that size is allocated.
void wire_alloc_probe_arm(bool on);
size_t wire_alloc_probe_largest();

namespace constmig::wire {
namespace {

using testing::make_stream;
using testing::pattern;
using testing::read_all;
using testing::sample_hello;

struct AllocProbe {
  AllocProbe() { wire_alloc_probe_arm(true); }
  ~AllocProbe() { wire_alloc_probe_arm(false); }
  size_t largest() const { return wire_alloc_probe_largest(); }
};

std::vector<uint8_t> header_bytes(FrameType t, uint32_t len, uint64_t seq, uint16_t flags = 0,
                                  uint8_t version = kWireVersion) {
  std::vector<uint8_t> b(kHeaderSize);
  FrameHeader h{version, t, flags, len, seq};
  encode_header(h, std::span<uint8_t, kHeaderSize>(b.data(), kHeaderSize));
  return b;
}

void fix_crc(uint8_t* header) {
  uint32_t c = crc32c(ByteView(header, 20));
  std::memcpy(header + 20, &c, 4);
}

std::string msg(const Status& s) {
  return s.ok() ? "ok" : s.error().message;
}
template <typename T>
std::string msg(const Result<T>& r) {
  return r.ok() ? "ok" : r.error().message;
}

const FrameType kAllTypes[] = {
    FrameType::kHello, FrameType::kKeyConfirm,  FrameType::kSmallState, FrameType::kHostState,
    FrameType::kPages, FrameType::kPageRequest, FrameType::kManifest,   FrameType::kCommit,
    FrameType::kAbort, FrameType::kError,       FrameType::kStats};

TEST(WireHeader, Crc32cKnownAnswer) {
  EXPECT_EQ(crc32c(as_bytes_view("123456789")), 0xE3069283u);
  EXPECT_EQ(crc32c({}), 0u);
}

TEST(WireHeader, LayoutAndRoundTrip) {
  auto b = header_bytes(FrameType::kPages, 4129 + 8, 0x0102030405060708ull, kFlagUrgent);
  ASSERT_EQ(b.size(), 24u);
  EXPECT_EQ(std::string(b.begin(), b.begin() + 4), "CMGF");
  EXPECT_EQ(b[4], 1);
  EXPECT_EQ(b[5], 5);
  EXPECT_EQ(b[6], 1);
  EXPECT_EQ(b[12], 0x08);
  EXPECT_EQ(b[19], 0x01);
  auto h = decode_header(b, 0x0102030405060708ull);
  ASSERT_TRUE(h.ok()) << msg(h);
  EXPECT_EQ(h->type, FrameType::kPages);
  EXPECT_EQ(h->flags, kFlagUrgent);
  EXPECT_EQ(h->payload_len, 4137u);
  EXPECT_EQ(frame_type_name(FrameType::kPageRequest), "PAGE_REQUEST");
  EXPECT_EQ(frame_type_name(static_cast<FrameType>(0x42)), "UNKNOWN(0x42)");
}

TEST(WireHeader, QuoteSizeMatchesQuoteFormat) {
  static_assert(kQuoteSize == 208);
  static_assert(kHelloSize == 360);
  static_assert(kDataRecordSize == 4129);
  static_assert(kZeroRecordSize == 37);
  static_assert(kMaxHeapPages == (1ull << 24));
}

TEST(WireHeader, BadMagicVersionCrcTypeFlags) {
  auto good = header_bytes(FrameType::kKeyConfirm, 32, 0);
  ASSERT_TRUE(decode_header(good, 0).ok());

  auto b = good;
  b[0] = 'X';
  auto r = decode_header(b, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::kFormat);
  EXPECT_NE(r.error().message.find("bad frame magic"), std::string::npos) << msg(r);
  EXPECT_NE(r.error().message.find("\"CMGF\""), std::string::npos) << msg(r);

  b = good;
  b[9] ^= 0x01;  // length bit flip without fixing the CRC
  r = decode_header(b, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("CRC32C mismatch"), std::string::npos) << msg(r);

  b = header_bytes(FrameType::kKeyConfirm, 32, 0, 0, 2);  // valid CRC, future version
  r = decode_header(b, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("unsupported wire version 2, expected 1"), std::string::npos)
      << msg(r);

  b = good;
  b[5] = 99;
  fix_crc(b.data());
  r = decode_header(b, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("unknown frame type 99, expected 1..13"), std::string::npos)
      << msg(r);
  b[5] = 0;
  fix_crc(b.data());
  EXPECT_FALSE(decode_header(b, 0).ok());

  b = header_bytes(FrameType::kKeyConfirm, 32, 0, kFlagUrgent);  // urgent only on PAGES
  r = decode_header(b, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("undefined flags"), std::string::npos) << msg(r);
  b = header_bytes(FrameType::kPages, 8 + 4129, 0, 0x8000);
  EXPECT_FALSE(decode_header(b, 0).ok());

  r = decode_header(ByteView(good).first(23), 0);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("truncated frame header: 23 of 24"), std::string::npos);
}

// Every type: min-1 and max+1 and 4 GiB-1 are refused from the header alone, with no
// allocation of that size, by decode_header and by the FrameReader (fed only the header).
TEST(WireLimits, EveryPayloadLengthLimitIsCheckedBeforeAllocation) {
  for (FrameType t : kAllTypes) {
    SCOPED_TRACE(frame_type_name(t));
    const uint32_t lo = min_payload_len(t), hi = max_payload_len(t);
    EXPECT_TRUE(decode_header(header_bytes(t, hi, 0), 0).ok());
    EXPECT_TRUE(decode_header(header_bytes(t, lo, 0), 0).ok());
    std::vector<uint32_t> bad = {hi + 1, 0xFFFFFFFFu, 0x80000000u};
    if (lo > 0) bad.push_back(lo - 1);
    for (uint32_t len : bad) {
      AllocProbe probe;
      auto r = decode_header(header_bytes(t, len, 0), 0);
      ASSERT_FALSE(r.ok()) << len;
      EXPECT_EQ(r.error().code, Errc::kFormat);
      EXPECT_NE(r.error().message.find("payload length " + std::to_string(len)), std::string::npos)
          << r.error().message;
      FrameReader reader;
      reader.feed(header_bytes(t, len, 0));
      Frame f;
      auto n = reader.next(f);
      ASSERT_FALSE(n.ok());
      EXPECT_NE(n.error().message.find("frame at offset 0"), std::string::npos);
      EXPECT_LT(probe.largest(), 64u * 1024) << "allocated before refusing length " << len;
    }
  }
  // The hard limits themselves.
  EXPECT_EQ(max_payload_len(FrameType::kSmallState), 40u + (64u << 20));
  EXPECT_EQ(max_payload_len(FrameType::kHostState), 40u + (16u << 20));
  EXPECT_EQ(max_payload_len(FrameType::kPages), 8u + 1024u * 4129u);
  EXPECT_EQ(max_payload_len(FrameType::kError), 8u + 1024u);
  EXPECT_EQ(max_payload_len(FrameType::kStats), 64u * 1024u);
}

// Length fields INSIDE payloads are refused before allocation too.
TEST(WireLimits, InnerLengthFieldsAreCheckedBeforeAllocation) {
  AllocProbe probe;
  {  // PAGES with a huge batch count, in a payload of legal size.
    std::vector<uint8_t> p(kPagesHeaderSize + kZeroRecordSize, 0);
    uint32_t count = 0xFFFFFFFFu;
    std::memcpy(p.data(), &count, 4);
    std::vector<PageRecord> recs;
    Status st = decode_pages(p, recs);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(msg(st).find("batch count 4294967295 outside 1..1024"), std::string::npos) << msg(st);
    count = 1024;  // legal count, but the payload cannot hold it
    std::memcpy(p.data(), &count, 4);
    st = decode_pages(p, recs);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(msg(st).find("does not fit"), std::string::npos) << msg(st);
  }
  {  // SMALL_STATE announcing 3 GiB of ciphertext.
    std::vector<uint8_t> p;
    ByteWriter w(p);
    w.u64(0), w.u32(0), w.u32(0), w.u32(1), w.u32(3u << 30);
    p.resize(p.size() + 16);
    auto r = decode_sealed(FrameType::kSmallState, p);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(msg(r).find("ciphertext length 3221225472 outside 0..67108864"), std::string::npos)
        << msg(r);
  }
  {  // ERROR message length beyond 1 KiB.
    std::vector<uint8_t> p;
    ByteWriter w(p);
    w.u32(1), w.u32(1u << 30);
    auto r = decode_error(p);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(msg(r).find("exceeds 1024"), std::string::npos) << msg(r);
  }
  {  // HELLO app name length beyond 64.
    std::vector<uint8_t> p;
    ASSERT_TRUE(encode_hello(sample_hello(Role::kSource), p).ok());
    p[2] = 200;
    auto r = decode_hello(p);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(msg(r).find("app name length 200 outside 1..64"), std::string::npos) << msg(r);
  }
  EXPECT_LT(probe.largest(), 64u * 1024);
}

TEST(WireFrames, RoundTripEveryFrameType) {
  auto s = make_stream(/*both_directions=*/true);
  auto frames = read_all(s.bytes);
  ASSERT_TRUE(frames.ok()) << msg(frames);
  ASSERT_EQ(frames->size(), s.types.size());
  std::set<FrameType> seen;
  for (size_t i = 0; i < frames->size(); ++i) {
    const auto& f = (*frames)[i];
    EXPECT_EQ(f.header.type, s.types[i]);
    EXPECT_EQ(f.header.seq, i);
    EXPECT_EQ(f.offset, s.frame_offsets[i]);
    seen.insert(f.header.type);
  }
  EXPECT_EQ(seen.size(), std::size(kAllTypes)) << "the sample stream must hold every type";

  // Typed decode of each, against what make_stream encoded.
  const auto& F = *frames;
  auto hello = decode_hello(F[0].payload);
  ASSERT_TRUE(hello.ok()) << msg(hello);
  Hello want = sample_hello(Role::kSource);
  EXPECT_EQ(hello->role, Role::kSource);
  EXPECT_EQ(hello->mode, Mode::kConstMig);
  EXPECT_EQ(hello->thread_slots, 8u);
  EXPECT_EQ(hello->heap_limit, 256ull << 20);
  EXPECT_EQ(hello->x25519_public, want.x25519_public);
  EXPECT_EQ(hello->nonce, want.nonce);
  EXPECT_EQ(hello->quote, want.quote);
  EXPECT_EQ(hello->app_name, "kvstore");
  EXPECT_TRUE(quote::decode_quote(hello->quote).ok());

  auto kc = decode_key_confirm(F[1].payload);
  ASSERT_TRUE(kc.ok());
  EXPECT_EQ(kc->mac[31], 0x5A);

  for (int i = 0; i < 2; ++i) {
    auto ss = decode_sealed(FrameType::kSmallState, F[2 + i].payload);
    ASSERT_TRUE(ss.ok()) << msg(ss);
    EXPECT_EQ(ss->nonce, static_cast<uint64_t>(i));
    EXPECT_EQ(ss->section, 10u + i);
    EXPECT_EQ(ss->index, static_cast<uint32_t>(i));
    EXPECT_EQ(ss->count, 2u);
    auto want_ct = pattern(100 + 900 * i, static_cast<uint8_t>(i));
    EXPECT_TRUE(
        std::equal(ss->ciphertext.begin(), ss->ciphertext.end(), want_ct.begin(), want_ct.end()));
    EXPECT_EQ(ss->tag.size(), 16u);
    // Views point into the payload: nothing was copied.
    EXPECT_GE(ss->ciphertext.data(), F[2 + i].payload.data());
    EXPECT_LE(ss->ciphertext.data() + ss->ciphertext.size(),
              F[2 + i].payload.data() + F[2 + i].payload.size());
  }
  auto hs = decode_sealed(FrameType::kHostState, F[4].payload);
  ASSERT_TRUE(hs.ok()) << msg(hs);
  EXPECT_EQ(hs->ciphertext.size(), 5000u);

  std::vector<PageRecord> recs;
  ASSERT_TRUE(decode_pages(F[5].payload, recs).ok());
  ASSERT_EQ(recs.size(), 12u);
  EXPECT_EQ(recs[0].index, 0u);
  EXPECT_EQ(recs[0].kind, PageKind::kData);
  EXPECT_EQ(recs[0].nonce, 3u);
  EXPECT_EQ(recs[0].ciphertext.size(), kPageSize);
  EXPECT_EQ(recs[10].kind, PageKind::kZero);
  EXPECT_EQ(recs[10].index, 10u);
  EXPECT_EQ(recs[10].run, 100u);
  EXPECT_TRUE(recs[10].ciphertext.empty());
  EXPECT_EQ(recs[10].tag.size(), 16u);
  EXPECT_EQ(F[6].header.flags, kFlagUrgent);

  auto man = decode_sealed(FrameType::kManifest, F[8].payload);
  ASSERT_TRUE(man.ok()) << msg(man);
  EXPECT_EQ(man->ciphertext.size(), kManifestBodySize);
  auto req = decode_page_request(F[9].payload);
  ASSERT_TRUE(req.ok());
  EXPECT_EQ(req->first, 77u);
  EXPECT_EQ(req->count, 16u);
  EXPECT_TRUE(decode_sealed(FrameType::kCommit, F[10].payload).ok());
  EXPECT_TRUE(decode_sealed(FrameType::kAbort, F[11].payload).ok());
  auto err = decode_error(F[12].payload);
  ASSERT_TRUE(err.ok());
  EXPECT_EQ(err->code, 6u);
  EXPECT_EQ(err->message, "tag mismatch on page 5");
  auto st = decode_stats(F[13].payload);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(*st, R"({"pages-pushed": 18})");
}

TEST(WireFrames, ByteByByteFeedingYieldsIdenticalFrames) {
  auto s = make_stream(true);
  auto whole = read_all(s.bytes);
  ASSERT_TRUE(whole.ok()) << msg(whole);
  for (size_t chunk : {size_t{1}, size_t{7}, size_t{24}, size_t{4096}, size_t{4133}}) {
    auto parts = read_all(s.bytes, chunk);
    ASSERT_TRUE(parts.ok()) << chunk << ": " << msg(parts);
    ASSERT_EQ(parts->size(), whole->size());
    for (size_t i = 0; i < whole->size(); ++i) {
      EXPECT_EQ((*parts)[i].header.seq, (*whole)[i].header.seq);
      EXPECT_EQ((*parts)[i].header.type, (*whole)[i].header.type);
      EXPECT_EQ((*parts)[i].offset, (*whole)[i].offset);
      EXPECT_EQ((*parts)[i].payload, (*whole)[i].payload) << "frame " << i << " chunk " << chunk;
    }
  }
}

TEST(WireFrames, WantedTellsHowManyBytesCompleteTheFrame) {
  auto s = make_stream();
  FrameReader reader;
  EXPECT_EQ(reader.wanted(), kHeaderSize);
  size_t pos = 0, frames = 0;
  while (pos < s.bytes.size()) {
    size_t n = reader.wanted();
    ASSERT_GT(n, 0u);
    reader.feed(ByteView(s.bytes).subspan(pos, n));
    pos += n;
    Frame f;
    auto r = reader.next(f);
    ASSERT_TRUE(r.ok()) << msg(r);
    if (*r) {
      ++frames;
      EXPECT_EQ(reader.buffered(), 0u);
    }
  }
  EXPECT_EQ(frames, s.types.size());
  EXPECT_TRUE(reader.finish().ok());
}

std::vector<uint8_t> frame_slice(const testing::SampleStream& s, size_t i) {
  size_t end = i + 1 < s.frame_offsets.size() ? s.frame_offsets[i + 1] : s.bytes.size();
  return std::vector<uint8_t>(s.bytes.begin() + s.frame_offsets[i], s.bytes.begin() + end);
}

TEST(WireSeq, GapDuplicateAndReorderAreRefused) {
  auto s = make_stream();
  auto f0 = frame_slice(s, 0), f1 = frame_slice(s, 1), f2 = frame_slice(s, 2);
  auto cat = [](std::initializer_list<const std::vector<uint8_t>*> parts) {
    std::vector<uint8_t> v;
    for (auto* p : parts) v.insert(v.end(), p->begin(), p->end());
    return v;
  };
  auto gap = read_all(cat({&f0, &f2}));
  ASSERT_FALSE(gap.ok());
  EXPECT_NE(gap.error().message.find("seq 2, expected 1: 1 frame(s) missing"), std::string::npos)
      << gap.error().message;
  EXPECT_NE(gap.error().message.find("frame at offset " + std::to_string(f0.size())),
            std::string::npos);
  auto dup = read_all(cat({&f0, &f1, &f1}));
  ASSERT_FALSE(dup.ok());
  EXPECT_NE(dup.error().message.find("seq 1, expected 2: duplicated or reordered"),
            std::string::npos)
      << dup.error().message;
  auto reorder = read_all(cat({&f0, &f2, &f1}));
  ASSERT_FALSE(reorder.ok());
  EXPECT_NE(reorder.error().message.find("missing"), std::string::npos);
  auto first = read_all(f1);  // a stream must start at seq 0
  ASSERT_FALSE(first.ok());
  EXPECT_NE(first.error().message.find("seq 1, expected 0"), std::string::npos);

  // Errors are sticky: more bytes do not resurrect the reader.
  FrameReader reader;
  reader.feed(f1);
  Frame f;
  EXPECT_FALSE(reader.next(f).ok());
  reader.feed(f0);
  EXPECT_FALSE(reader.next(f).ok());
  EXPECT_FALSE(reader.finish().ok());
}

TEST(WireStream, TruncationIsReportedAtEveryCut) {
  auto s = make_stream();
  std::set<size_t> boundaries(s.frame_offsets.begin(), s.frame_offsets.end());
  boundaries.insert(s.bytes.size());
  // Every cut inside the first frames, and a sample of cuts across the big PAGES frames.
  for (size_t cut = 1; cut < s.bytes.size(); cut += (cut < 2000 ? 1 : 997)) {
    auto r = read_all(ByteView(s.bytes).first(cut));
    if (boundaries.count(cut)) {
      EXPECT_TRUE(r.ok()) << cut;
      continue;
    }
    ASSERT_FALSE(r.ok()) << "cut at " << cut;
    EXPECT_NE(r.error().message.find("truncated"), std::string::npos) << r.error().message;
  }
  auto r = read_all(ByteView(s.bytes).first(s.frame_offsets[1] + 10));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("10 bytes of a frame header at offset " +
                                   std::to_string(s.frame_offsets[1])),
            std::string::npos)
      << r.error().message;
  r = read_all(ByteView(s.bytes).first(s.frame_offsets[1] + 30));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("KEY_CONFIRM frame at offset " +
                                   std::to_string(s.frame_offsets[1]) + " (seq 1) has 6 of its 32"),
            std::string::npos)
      << r.error().message;
}

TEST(WirePayloads, HelloIsStrict) {
  Hello h = sample_hello(Role::kTarget);
  std::vector<uint8_t> p;
  ASSERT_TRUE(encode_hello(h, p).ok());
  ASSERT_EQ(p.size(), kHelloSize);
  auto bad = [&](size_t off, uint8_t v, const char* what) {
    auto q = p;
    q[off] = v;
    auto r = decode_hello(q);
    ASSERT_FALSE(r.ok()) << what;
    EXPECT_EQ(r.error().code, Errc::kFormat);
    EXPECT_NE(r.error().message.find(what), std::string::npos) << r.error().message;
  };
  bad(0, 3, "unknown role 3");
  bad(1, 0, "unknown mode 0");
  bad(3, 1, "reserved");
  bad(5, 0x20, "page size");            // 4096 -> 8192
  bad(kHelloSize - 1, 'x', "padding");  // after "kvstore"
  bad(296 + 2, 0, "NUL");               // inside the name
  bad(2, 0, "app name length 0");
  auto q = p;
  q.push_back(0);
  EXPECT_FALSE(decode_hello(q).ok());
  q.resize(kHelloSize - 1);
  EXPECT_FALSE(decode_hello(q).ok());

  h.app_name = std::string(65, 'a');
  EXPECT_EQ(encode_hello(h, p).error().code, Errc::kInvalidArgument);
  h.app_name = "ok";
  h.thread_slots = 0;
  EXPECT_FALSE(encode_hello(h, p).ok());
  h.thread_slots = 1;
  h.heap_limit = abi::kHeapMaxReserve + 1;
  EXPECT_FALSE(encode_hello(h, p).ok());

  // The binding form is the same bytes with the quote zeroed.
  h = sample_hello(Role::kSource);
  std::vector<uint8_t> full, bind;
  ASSERT_TRUE(encode_hello(h, full).ok());
  ASSERT_TRUE(encode_hello_for_binding(h, bind).ok());
  ASSERT_EQ(bind.size(), full.size());
  for (size_t i = 0; i < full.size(); ++i) {
    if (i >= 88 && i < 88 + kQuoteSize) {
      EXPECT_EQ(bind[i], 0) << i;
    } else {
      EXPECT_EQ(bind[i], full[i]) << i;
    }
  }
}

TEST(WirePayloads, SealedRecordFieldsAreChecked) {
  auto ct = pattern(32, 1), tag = pattern(16, 2);
  std::vector<uint8_t> p;
  SealedRecord r{.nonce = 1, .ciphertext = ct, .tag = tag};
  EXPECT_TRUE(encode_sealed(FrameType::kCommit, r, p).ok());
  EXPECT_EQ(p.size(), 72u);
  p.clear();
  r.count = 2;
  EXPECT_FALSE(encode_sealed(FrameType::kCommit, r, p).ok()) << "one COMMIT record only";
  r.count = 1;
  r.section = 3;
  EXPECT_FALSE(encode_sealed(FrameType::kHostState, r, p).ok()) << "sections are SMALL_STATE's";
  EXPECT_TRUE(encode_sealed(FrameType::kSmallState, r, p).ok());
  p.clear();
  r.index = 1;
  EXPECT_FALSE(encode_sealed(FrameType::kSmallState, r, p).ok()) << "index < count";
  r.index = 0;
  auto short_ct = pattern(31, 1);
  r.ciphertext = short_ct;
  EXPECT_FALSE(encode_sealed(FrameType::kAbort, r, p).ok()) << "tokens are exactly 32 bytes";
  EXPECT_FALSE(encode_sealed(FrameType::kPages, r, p).ok()) << "PAGES is not sealed";
  EXPECT_TRUE(p.empty());

  // Decoding: a ciphertext length field that disagrees with the payload.
  r.ciphertext = ct;
  r.section = 0;
  ASSERT_TRUE(encode_sealed(FrameType::kCommit, r, p).ok());
  auto q = p;
  q[20] = 31;
  auto d = decode_sealed(FrameType::kCommit, q);
  ASSERT_FALSE(d.ok());
  q = p;
  q.push_back(0);
  d = decode_sealed(FrameType::kCommit, q);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.error().message.find("does not match"), std::string::npos) << d.error().message;
  q = p;
  q[16] = 0;  // count 0
  EXPECT_FALSE(decode_sealed(FrameType::kCommit, q).ok());
  EXPECT_FALSE(decode_sealed(FrameType::kCommit, ByteView(p).first(10)).ok());
}

TEST(WirePayloads, ManifestBody) {
  ManifestBody m{.page_count = 300, .heap_top = 300 * kPageSize, .epoch = 7};
  m.digest.fill(0xEE);
  auto b = encode_manifest_body(m);
  auto d = decode_manifest_body(b);
  ASSERT_TRUE(d.ok()) << msg(d);
  EXPECT_EQ(d->page_count, 300u);
  EXPECT_EQ(d->heap_top, 300 * kPageSize);
  EXPECT_EQ(d->epoch, 7u);
  EXPECT_EQ(d->digest, m.digest);
  m.heap_top += 1;
  EXPECT_FALSE(decode_manifest_body(encode_manifest_body(m)).ok());
  m.page_count = kMaxHeapPages + 1;
  m.heap_top = m.page_count * kPageSize;
  EXPECT_FALSE(decode_manifest_body(encode_manifest_body(m)).ok());
  EXPECT_FALSE(decode_manifest_body(ByteView(b).first(51)).ok());
}

TEST(WirePayloads, PagesRecordsAreChecked) {
  auto page = pattern(kPageSize, 1), tag = pattern(16, 2);
  std::vector<uint8_t> p;
  std::vector<PageRecord> recs = {{5, PageKind::kData, 1, 9, page, tag}};
  ASSERT_TRUE(encode_pages(recs, p).ok());
  EXPECT_EQ(p.size(), kPagesHeaderSize + kDataRecordSize);

  auto refuse = [&](PageRecord r, const char* what) {
    std::vector<uint8_t> o;
    std::vector<PageRecord> one = {r};
    Status st = encode_pages(one, o);
    ASSERT_FALSE(st.ok()) << what;
    EXPECT_NE(msg(st).find(what), std::string::npos) << msg(st);
  };
  refuse({kMaxHeapPages, PageKind::kData, 1, 0, page, tag}, "exceed the largest heap");
  refuse({kMaxHeapPages - 10, PageKind::kZero, 11, 0, {}, tag}, "exceed the largest heap");
  refuse({0, PageKind::kZero, 0, 0, {}, tag}, "ZERO run 0");
  refuse({0, PageKind::kZero, kMaxZeroRun + 1, 0, {}, tag}, "ZERO run 65537");
  refuse({0, PageKind::kZero, 1, 0, page, tag}, "carries ciphertext");
  refuse({0, PageKind::kData, 2, 0, page, tag}, "exactly 1 page");
  refuse({0, PageKind::kData, 1, 0, ByteView(page).first(100), tag}, "expected 4096");
  refuse({0, static_cast<PageKind>(3), 1, 0, {}, tag}, "unknown page kind 3");
  refuse({0, PageKind::kData, 1, 0, page, ByteView(tag).first(15)}, "tag is 15 bytes");
  EXPECT_FALSE(encode_pages({}, p).ok());
  std::vector<PageRecord> many(kMaxPagesPerBatch + 1, recs[0]);
  EXPECT_FALSE(encode_pages(many, p).ok());

  // Decoder side: unknown kind, trailing bytes, reserved field, index out of range.
  std::vector<PageRecord> out;
  auto q = p;
  q[kPagesHeaderSize + 8] = 7;
  Status st = decode_pages(q, out);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(msg(st).find("unknown page kind 7"), std::string::npos) << msg(st);
  EXPECT_TRUE(out.empty());
  q = p;
  q.push_back(0);
  EXPECT_FALSE(decode_pages(q, out).ok());
  q = p;
  q[4] = 1;
  EXPECT_FALSE(decode_pages(q, out).ok());
  q = p;
  uint64_t huge = kMaxHeapPages;
  std::memcpy(q.data() + kPagesHeaderSize, &huge, 8);
  EXPECT_FALSE(decode_pages(q, out).ok());
}

TEST(WirePayloads, PagesBuilderMatchesEncodePages) {
  auto page = pattern(kPageSize, 4), tag = pattern(16, 5);
  std::vector<PageRecord> recs = {{3, PageKind::kData, 1, 100, page, tag},
                                  {4, PageKind::kZero, 20, 101, {}, tag},
                                  {24, PageKind::kData, 1, 102, page, tag}};
  std::vector<uint8_t> want;
  ASSERT_TRUE(encode_pages(recs, want).ok());

  std::vector<uint8_t> got = {0xAA};  // the builder appends after existing bytes
  PagesBuilder b(got, 3);
  for (const PageRecord& r : recs) {
    if (r.kind == PageKind::kData) {
      auto slot = b.add_data(r.index, r.nonce);
      ASSERT_TRUE(slot.ok());
      std::copy(r.ciphertext.begin(), r.ciphertext.end(), slot->ciphertext.begin());
      std::copy(r.tag.begin(), r.tag.end(), slot->tag.begin());
    } else {
      auto slot = b.add_zero_run(r.index, r.run, r.nonce);
      ASSERT_TRUE(slot.ok());
      std::copy(r.tag.begin(), r.tag.end(), slot->begin());
    }
  }
  EXPECT_TRUE(b.full());
  EXPECT_FALSE(b.add_data(99, 1).ok());
  ASSERT_TRUE(b.finish().ok());
  EXPECT_EQ(std::vector<uint8_t>(got.begin() + 1, got.end()), want);

  std::vector<uint8_t> e;
  PagesBuilder empty(e);
  EXPECT_FALSE(empty.finish().ok());
  EXPECT_FALSE(empty.add_zero_run(0, 0, 0).ok());
  EXPECT_FALSE(empty.add_data(kMaxHeapPages, 0).ok());
}

TEST(WirePayloads, PageRequestErrorStats) {
  std::vector<uint8_t> p;
  EXPECT_FALSE(encode_page_request({.first = 0, .count = 0}, p).ok());
  EXPECT_FALSE(encode_page_request({.first = 0, .count = 257}, p).ok());
  EXPECT_FALSE(encode_page_request({.first = kMaxHeapPages - 1, .count = 2}, p).ok());
  ASSERT_TRUE(encode_page_request({.first = kMaxHeapPages - 256, .count = 256}, p).ok());
  EXPECT_TRUE(decode_page_request(p).ok());
  p[8] = 0;
  p[9] = 2;  // count 512
  EXPECT_FALSE(decode_page_request(p).ok());

  // Over-long error messages are truncated by the encoder, never refused.
  p.clear();
  encode_error({.code = 1, .message = std::string(5000, 'e')}, p);
  auto e = decode_error(p);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->message.size(), kMaxErrorMessage);

  p.clear();
  EXPECT_FALSE(encode_stats(std::string(kMaxStatsText + 1, ' '), p).ok());
  EXPECT_FALSE(encode_stats(std::string("a\0b", 3), p).ok());
  std::vector<uint8_t> nul = {'{', 0, '}'};
  EXPECT_FALSE(decode_stats(nul).ok());
}

TEST(WireEncoder, RefusesInvalidFramesWithoutConsumingSeq) {
  FrameEncoder enc;
  std::vector<uint8_t> out = {1, 2, 3};
  std::vector<uint8_t> bad_mac(31, 0);
  Status st = enc.append(FrameType::kKeyConfirm, 0, bad_mac, out);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Errc::kInvalidArgument);
  EXPECT_NE(msg(st).find("refusing to send an invalid KEY_CONFIRM"), std::string::npos) << msg(st);
  EXPECT_EQ(out.size(), 3u) << "the buffer is cut back";
  EXPECT_EQ(enc.next_seq(), 0u);
  std::vector<uint8_t> mac(32, 0);
  EXPECT_FALSE(enc.append(FrameType::kKeyConfirm, kFlagUrgent, mac, out).ok());
  ASSERT_TRUE(enc.append(FrameType::kKeyConfirm, 0, mac, out).ok());
  EXPECT_EQ(enc.next_seq(), 1u);
  auto h = decode_header(ByteView(out).subspan(3), 0);
  ASSERT_TRUE(h.ok()) << msg(h);
  EXPECT_EQ(h->payload_len, 32u);

  // An abandoned frame leaves nothing behind and consumes no seq.
  size_t before = out.size();
  size_t m0 = enc.begin(FrameType::kPages, 0, out);
  out.push_back(1);
  enc.abandon(m0, out);
  EXPECT_EQ(out.size(), before);
  EXPECT_EQ(enc.next_seq(), 1u);

  // Zero-copy path: begin, build the payload in place, finish.
  std::vector<uint8_t> buf;
  size_t m = enc.begin(FrameType::kPages, kFlagUrgent, buf);
  PagesBuilder b(buf, 1);
  auto slot = b.add_zero_run(0, 16, 5);
  ASSERT_TRUE(slot.ok());
  ASSERT_TRUE(b.finish().ok());
  ASSERT_TRUE(enc.finish(m, buf).ok());
  FrameReader reader(1);
  reader.feed(buf);
  Frame f;
  auto r = reader.next(f);
  ASSERT_TRUE(r.ok()) << msg(r);
  ASSERT_TRUE(*r);
  EXPECT_EQ(f.header.type, FrameType::kPages);
  EXPECT_EQ(f.header.seq, 1u);
}

TEST(WireCapture, HeaderRoundTrip) {
  auto b = encode_capture_header(Direction::kTargetToSource);
  EXPECT_EQ(std::string(b.begin(), b.begin() + 8), "CMGCAP01");
  auto c = decode_capture_header(b);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c->has_value());
  EXPECT_EQ((*c)->direction, Direction::kTargetToSource);
  auto raw = decode_capture_header(as_bytes_view("CMGF...."));
  ASSERT_TRUE(raw.ok());
  EXPECT_FALSE(raw->has_value());
  b[12] = 9;
  EXPECT_FALSE(decode_capture_header(b).ok());
  b[12] = 1;
  b[8] = 2;
  EXPECT_FALSE(decode_capture_header(b).ok());
  EXPECT_FALSE(decode_capture_header(ByteView(b).first(12)).ok());
  EXPECT_TRUE(frame_allowed(FrameType::kPages, Direction::kSourceToTarget));
  EXPECT_FALSE(frame_allowed(FrameType::kPages, Direction::kTargetToSource));
  EXPECT_FALSE(frame_allowed(FrameType::kCommit, Direction::kSourceToTarget));
  EXPECT_TRUE(frame_allowed(FrameType::kCommit, Direction::kUnknown));
}

TEST(WireAad, LayoutBindsEveryField) {
  std::array<uint8_t, 16> mid{};
  for (size_t i = 0; i < 16; ++i) mid[i] = static_cast<uint8_t>(0xC0 + i);
  Aad a = page_aad(mid, 0x1122334455667788ull, 0xAABBCCDD, PageKind::kData);
  EXPECT_EQ(std::string(a.begin(), a.begin() + 8), "CMGAAD01");
  EXPECT_EQ(a[8], 0xC0);
  EXPECT_EQ(a[23], 0xCF);
  EXPECT_EQ(a[24], static_cast<uint8_t>(RecordKind::kHeapPage));
  EXPECT_EQ(a[25], kWireVersion);
  EXPECT_EQ(a[26], 0);
  EXPECT_EQ(a[27], 0);
  EXPECT_EQ(a[28], 0xDD);
  EXPECT_EQ(a[31], 0xAA);
  EXPECT_EQ(a[32], 0x88);
  EXPECT_EQ(a[39], 0x11);
  EXPECT_EQ(a[40], 1);  // count 1 for a data page
  EXPECT_EQ(a[44], 0);

  std::set<Aad> distinct = {a};
  auto mid2 = mid;
  mid2[15] ^= 1;
  distinct.insert(page_aad(mid2, 0x1122334455667788ull, 0xAABBCCDD, PageKind::kData));
  distinct.insert(page_aad(mid, 0x1122334455667789ull, 0xAABBCCDD, PageKind::kData));
  distinct.insert(page_aad(mid, 0x1122334455667788ull, 0xAABBCCDE, PageKind::kData));
  distinct.insert(page_aad(mid, 0x1122334455667788ull, 0xAABBCCDD, PageKind::kZero, 1));
  distinct.insert(page_aad(mid, 0x1122334455667788ull, 0xAABBCCDD, PageKind::kZero, 2));
  distinct.insert(record_aad(mid, RecordKind::kSmallState, 0xAABBCCDD, 0, 2, 0));
  distinct.insert(record_aad(mid, RecordKind::kSmallState, 0xAABBCCDD, 1, 2, 0));
  distinct.insert(record_aad(mid, RecordKind::kSmallState, 0xAABBCCDD, 0, 3, 0));
  distinct.insert(record_aad(mid, RecordKind::kSmallState, 0xAABBCCDD, 0, 2, 5));
  distinct.insert(record_aad(mid, RecordKind::kCommit, 0xAABBCCDD, 0, 1, 0));
  distinct.insert(record_aad(mid, RecordKind::kAbort, 0xAABBCCDD, 0, 1, 0));
  EXPECT_EQ(distinct.size(), 12u);
  // The data-page AAD ignores `run` (a data record covers one page).
  EXPECT_EQ(page_aad(mid, 5, 1, PageKind::kData, 9), page_aad(mid, 5, 1, PageKind::kData, 1));

  EXPECT_EQ(record_kind_for(FrameType::kManifest), RecordKind::kManifest);
  EXPECT_FALSE(record_kind_for(FrameType::kPages).has_value());
  auto n = gcm_nonce(0x0102030405060708ull);
  EXPECT_EQ(n[0], 0);
  EXPECT_EQ(n[3], 0);
  EXPECT_EQ(n[4], 0x08);
  EXPECT_EQ(n[11], 0x01);
}

TEST(WirePayloads, ResumeRoundTripAndStrictness) {
  Resume r;
  r.role = Role::kSource;
  for (size_t i = 0; i < r.mig_id.size(); ++i) r.mig_id[i] = static_cast<uint8_t>(i + 1);
  r.epoch = 2;
  r.x25519_public.fill(0x11);
  r.nonce.fill(0x22);
  r.mac.fill(0x33);
  std::vector<uint8_t> p;
  ASSERT_TRUE(encode_resume(r, p).ok());
  ASSERT_EQ(p.size(), kResumeSize);
  // The MAC covers everything before it.
  auto body = resume_mac_input(r);
  ASSERT_EQ(body.size() + kMacSize, p.size());
  EXPECT_TRUE(std::equal(body.begin(), body.end(), p.begin()));
  auto d = decode_resume(p);
  ASSERT_TRUE(d.ok()) << msg(d);
  EXPECT_EQ(d->role, Role::kSource);
  EXPECT_EQ(d->mig_id, r.mig_id);
  EXPECT_EQ(d->epoch, 2u);
  EXPECT_EQ(d->x25519_public, r.x25519_public);
  EXPECT_EQ(d->nonce, r.nonce);
  EXPECT_EQ(d->mac, r.mac);
  auto bad = [&](size_t off, uint8_t v, const char* what) {
    auto q = p;
    q[off] = v;
    auto x = decode_resume(q);
    ASSERT_FALSE(x.ok()) << what;
    EXPECT_EQ(x.error().code, Errc::kFormat);
    EXPECT_NE(x.error().message.find(what), std::string::npos) << x.error().message;
  };
  bad(0, 3, "unknown role 3");
  bad(1, 1, "reserved");
  bad(20, 1, "epoch 1");  // epoch 1 is the handshake's: a recovery proposes 2 or more
  auto q = p;
  q.pop_back();
  EXPECT_FALSE(decode_resume(q).ok());
  r.epoch = kMaxEpoch + 1;
  EXPECT_EQ(encode_resume(r, p).error().code, Errc::kInvalidArgument);
  // As frames: RESUME both ways, RESUME_STATE (sealed) target->source only, length-bounded.
  EXPECT_TRUE(frame_allowed(FrameType::kResume, Direction::kSourceToTarget));
  EXPECT_TRUE(frame_allowed(FrameType::kResume, Direction::kTargetToSource));
  EXPECT_FALSE(frame_allowed(FrameType::kResumeState, Direction::kSourceToTarget));
  EXPECT_TRUE(is_sealed_type(FrameType::kResumeState));
  EXPECT_EQ(max_payload_len(FrameType::kResumeState), kSealedOverhead + 8 + kMaxHeapPages / 8);
  EXPECT_EQ(frame_type_name(FrameType::kResumeState), "RESUME_STATE");
  EXPECT_EQ(record_kind_for(FrameType::kResumeState), RecordKind::kResumeState);
}

}  // namespace
}  // namespace constmig::wire
