// Helpers shared by the wire-format tests: a valid multi-frame stream with every frame type.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/wire_format.h"

namespace constmig::wire::testing {

inline std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 31);
  return v;
}

inline Hello sample_hello(Role role) {
  Hello h;
  h.role = role;
  h.mode = Mode::kConstMig;
  h.thread_slots = 8;
  h.heap_limit = 256ull << 20;
  for (size_t i = 0; i < h.x25519_public.size(); ++i) h.x25519_public[i] = static_cast<uint8_t>(i);
  for (size_t i = 0; i < h.nonce.size(); ++i) h.nonce[i] = static_cast<uint8_t>(0xA0 + i);
  quote::Quote q;
  q.measurement.fill(0x11);
  q.platform_key_id.fill(0x22);
  auto qb = quote::encode_quote(q);
  std::copy(qb.begin(), qb.end(), h.quote.begin());
  h.app_name = "kvstore";
  return h;
}

struct SampleStream {
  std::vector<uint8_t> bytes;         // the stream (no capture header)
  std::vector<FrameType> types;       // frame types in order
  std::vector<size_t> frame_offsets;  // offset of each frame
  uint64_t data_pages = 0, zero_pages = 0, zero_runs = 0, page_records = 0;
  std::vector<std::vector<uint8_t>> keep;  // backing storage of ciphertexts
};

// A source->target stream: HELLO, KEY_CONFIRM, 2 x SMALL_STATE, HOST_STATE, 3 x PAGES (one
// urgent, with zero runs), MANIFEST, ERROR, STATS. With `both_directions` also the
// target->source types (PAGE_REQUEST, COMMIT, ABORT), for codec tests that ignore direction.
inline SampleStream make_stream(bool both_directions = false) {
  SampleStream s;
  FrameEncoder enc;
  auto add = [&](FrameType t, uint16_t flags, const std::vector<uint8_t>& payload) {
    s.frame_offsets.push_back(s.bytes.size());
    Status st = enc.append(t, flags, payload, s.bytes);
    EXPECT_TRUE(st.ok()) << (st.ok() ? "" : st.error().message);
    s.types.push_back(t);
  };
  std::vector<uint8_t> p;
  EXPECT_TRUE(encode_hello(sample_hello(Role::kSource), p).ok());
  add(FrameType::kHello, 0, p);
  p.clear();
  KeyConfirm kc;
  kc.mac.fill(0x5A);
  encode_key_confirm(kc, p);
  add(FrameType::kKeyConfirm, 0, p);
  auto tag = pattern(16, 7);
  for (uint32_t i = 0; i < 2; ++i) {
    s.keep.push_back(pattern(100 + 900 * i, static_cast<uint8_t>(i)));
    SealedRecord r{.nonce = i,
                   .section = 10 + i,
                   .index = i,
                   .count = 2,
                   .ciphertext = s.keep.back(),
                   .tag = tag};
    p.clear();
    EXPECT_TRUE(encode_sealed(FrameType::kSmallState, r, p).ok());
    add(FrameType::kSmallState, 0, p);
  }
  s.keep.push_back(pattern(5000, 3));
  p.clear();
  EXPECT_TRUE(encode_sealed(FrameType::kHostState,
                            SealedRecord{.nonce = 2, .ciphertext = s.keep.back(), .tag = tag}, p)
                  .ok());
  add(FrameType::kHostState, 0, p);
  uint64_t nonce = 3;
  s.keep.push_back(pattern(kPageSize, 9));
  const auto& page = s.keep.back();
  // Batch 1: pages 0..9 data, then zero run 10..109, then 110 data.
  // Batch 2 (urgent): page 500 data, 501..503 data.
  // Batch 3: zero run 200..263, pages 264..266 data.
  struct B {
    uint16_t flags;
    std::vector<PageRecord> recs;
  };
  std::vector<B> batches(3);
  for (uint64_t i = 0; i < 10; ++i)
    batches[0].recs.push_back({i, PageKind::kData, 1, nonce++, page, tag});
  batches[0].recs.push_back({10, PageKind::kZero, 100, nonce++, {}, tag});
  batches[0].recs.push_back({110, PageKind::kData, 1, nonce++, page, tag});
  batches[1].flags = kFlagUrgent;
  for (uint64_t i = 500; i < 504; ++i)
    batches[1].recs.push_back({i, PageKind::kData, 1, nonce++, page, tag});
  batches[2].recs.push_back({200, PageKind::kZero, 64, nonce++, {}, tag});
  for (uint64_t i = 264; i < 267; ++i)
    batches[2].recs.push_back({i, PageKind::kData, 1, nonce++, page, tag});
  for (const B& b : batches) {
    p.clear();
    EXPECT_TRUE(encode_pages(b.recs, p).ok());
    add(FrameType::kPages, b.flags, p);
    for (const PageRecord& r : b.recs) {
      s.page_records++;
      if (r.kind == PageKind::kData) {
        s.data_pages++;
      } else {
        s.zero_runs++;
        s.zero_pages += r.run;
      }
    }
  }
  s.keep.push_back(pattern(kManifestBodySize, 4));
  p.clear();
  EXPECT_TRUE(encode_sealed(FrameType::kManifest,
                            SealedRecord{.nonce = nonce++, .ciphertext = s.keep.back(), .tag = tag},
                            p)
                  .ok());
  add(FrameType::kManifest, 0, p);
  if (both_directions) {
    p.clear();
    EXPECT_TRUE(encode_page_request(PageRequest{.first = 77, .count = 16}, p).ok());
    add(FrameType::kPageRequest, 0, p);
    s.keep.push_back(pattern(kTokenSize, 5));
    for (FrameType t : {FrameType::kCommit, FrameType::kAbort}) {
      p.clear();
      EXPECT_TRUE(
          encode_sealed(t, SealedRecord{.nonce = 0, .ciphertext = s.keep.back(), .tag = tag}, p)
              .ok());
      add(t, 0, p);
    }
  }
  p.clear();
  encode_error(ErrorInfo{.code = 6, .message = "tag mismatch on page 5"}, p);
  add(FrameType::kError, 0, p);
  p.clear();
  EXPECT_TRUE(encode_stats(R"({"pages-pushed": 18})", p).ok());
  add(FrameType::kStats, 0, p);
  return s;
}

// Reads every frame of `bytes` (fed in chunks of `chunk` bytes); returns the error or the frames
// (payloads copied out).
struct ReadFrame {
  FrameHeader header;
  uint64_t offset;
  std::vector<uint8_t> payload;
};
inline Result<std::vector<ReadFrame>> read_all(ByteView bytes, size_t chunk = SIZE_MAX) {
  FrameReader reader;
  std::vector<ReadFrame> out;
  size_t pos = 0;
  do {
    size_t n = std::min(chunk, bytes.size() - pos);
    reader.feed(bytes.subspan(pos, n));
    pos += n;
    for (;;) {
      Frame f;
      auto r = reader.next(f);
      if (!r.ok()) return r.take_error();
      if (!*r) break;
      out.push_back({f.header, f.offset, std::vector<uint8_t>(f.payload.begin(), f.payload.end())});
    }
  } while (pos < bytes.size());
  CM_TRY(reader.finish());
  return out;
}

}  // namespace constmig::wire::testing
