// Mutation loop over a valid multi-frame stream: random bit flips, byte overwrites,
// truncations, insertions and deletions, with the header CRCs sometimes repaired so that the
// mutations reach the payload decoders. Every outcome must be a clean decode or an Error: no
// crash, no sanitizer report (run it in the ASan build), no hang.
#include <gtest/gtest.h>

#include <random>

#include "common/wire_format.h"
#include "wire_test_util.h"

namespace constmig::wire {
namespace {

// Recompute the CRC of every header that still parses as far as the magic, walking the
// mutated stream by its (possibly mutated) lengths.
void repair_crcs(std::vector<uint8_t>& b) {
  size_t pos = 0;
  while (pos + kHeaderSize <= b.size()) {
    uint32_t magic, len;
    std::memcpy(&magic, b.data() + pos, 4);
    if (magic != kFrameMagic) return;
    uint32_t c = crc32c(ByteView(b.data() + pos, 20));
    std::memcpy(b.data() + pos + 20, &c, 4);
    std::memcpy(&len, b.data() + pos + 8, 4);
    pos += kHeaderSize + len;
  }
}

// Decodes the whole stream; also runs every typed decoder on every frame's payload regardless
// of its type (decoders must survive any bytes).
struct Outcome {
  bool ok = false;
  size_t frames = 0;
};
Outcome decode_everything(ByteView bytes, size_t chunk, bool validate) {
  FrameReader reader(0, validate);
  Outcome o;
  size_t pos = 0;
  std::vector<PageRecord> recs;
  while (pos < bytes.size()) {
    size_t n = std::min(chunk, bytes.size() - pos);
    reader.feed(bytes.subspan(pos, n));
    pos += n;
    for (;;) {
      Frame f;
      auto r = reader.next(f);
      if (!r.ok()) {
        EXPECT_FALSE(r.error().message.empty());
        EXPECT_EQ(r.error().code, Errc::kFormat);
        return o;
      }
      if (!*r) break;
      ++o.frames;
      (void)decode_hello(f.payload);
      (void)decode_key_confirm(f.payload);
      for (FrameType t : {FrameType::kSmallState, FrameType::kHostState, FrameType::kManifest,
                          FrameType::kCommit, FrameType::kAbort}) {
        (void)decode_sealed(t, f.payload);
      }
      (void)decode_pages(f.payload, recs);
      for (const PageRecord& p : recs) {
        // Views must lie inside the payload.
        EXPECT_TRUE(p.tag.size() == kTagSize);
        if (!p.ciphertext.empty()) {
          EXPECT_GE(p.ciphertext.data(), f.payload.data());
          EXPECT_LE(p.ciphertext.data() + p.ciphertext.size(), f.payload.data() + f.payload.size());
        }
      }
      (void)decode_page_request(f.payload);
      (void)decode_error(f.payload);
      (void)decode_stats(f.payload);
      (void)decode_manifest_body(f.payload);
    }
  }
  o.ok = reader.finish().ok();
  return o;
}

TEST(WireFuzz, RandomMutationsNeverCrash) {
  const auto base = testing::make_stream(/*both_directions=*/true).bytes;
  ASSERT_TRUE(decode_everything(base, base.size(), true).ok);
  std::mt19937_64 rng(0xC0FFEE);
  auto pick = [&](size_t n) { return n == 0 ? size_t{0} : static_cast<size_t>(rng() % n); };
  int decoded = 0, refused = 0;
  const int kIterations = 4000;
  for (int it = 0; it < kIterations; ++it) {
    std::vector<uint8_t> b = base;
    const int ops = 1 + static_cast<int>(pick(4));
    for (int k = 0; k < ops; ++k) {
      switch (pick(7)) {
        case 0:  // bit flip anywhere
        case 1:
          b[pick(b.size())] ^= static_cast<uint8_t>(1u << pick(8));
          break;
        case 2:  // bit flip in a header-heavy region (the first 600 bytes hold 3 headers)
          b[pick(std::min<size_t>(b.size(), 600))] ^= static_cast<uint8_t>(1u << pick(8));
          break;
        case 3:  // random byte
          b[pick(b.size())] = static_cast<uint8_t>(rng());
          break;
        case 4:  // truncate
          b.resize(pick(b.size()) + 1);
          break;
        case 5: {  // insert 1..8 random bytes
          size_t at = pick(b.size());
          std::vector<uint8_t> ins(1 + pick(8));
          for (auto& x : ins) x = static_cast<uint8_t>(rng());
          b.insert(b.begin() + static_cast<std::ptrdiff_t>(at), ins.begin(), ins.end());
          break;
        }
        case 6: {  // delete 1..8 bytes
          size_t at = pick(b.size());
          size_t n = std::min(b.size() - at, 1 + pick(8));
          if (b.size() > n)
            b.erase(b.begin() + static_cast<std::ptrdiff_t>(at),
                    b.begin() + static_cast<std::ptrdiff_t>(at + n));
          break;
        }
      }
    }
    if (pick(2) == 0) repair_crcs(b);  // half the time, reach past the CRC
    const size_t chunk = pick(3) == 0 ? 1 + pick(64) : b.size();
    Outcome o = decode_everything(b, chunk, /*validate=*/pick(4) != 0);
    (o.ok ? decoded : refused)++;
  }
  // Both outcomes must occur, or the loop is not exercising anything.
  EXPECT_GT(decoded, 0);
  EXPECT_GT(refused, kIterations / 2);
  std::printf("mutations: %d decoded cleanly, %d refused\n", decoded, refused);
}

// Random bytes after a valid header: every type's decoder sees arbitrary payloads of legal size.
TEST(WireFuzz, RandomPayloadsBehindValidHeaders) {
  std::mt19937_64 rng(42);
  const FrameType types[] = {FrameType::kHello,     FrameType::kKeyConfirm, FrameType::kSmallState,
                             FrameType::kHostState, FrameType::kPages,      FrameType::kPageRequest,
                             FrameType::kManifest,  FrameType::kCommit,     FrameType::kAbort,
                             FrameType::kError,     FrameType::kStats};
  for (int it = 0; it < 3000; ++it) {
    FrameType t = types[rng() % std::size(types)];
    uint32_t lo = min_payload_len(t), hi = std::min<uint32_t>(max_payload_len(t), 20000);
    uint32_t len = lo + static_cast<uint32_t>(rng() % (hi - lo + 1));
    std::vector<uint8_t> payload(len);
    for (auto& x : payload) x = static_cast<uint8_t>(rng() & (rng() % 3 == 0 ? 0x03 : 0xFF));
    if (t == FrameType::kPages && len >= 8) {  // plausible counts reach the record loop
      uint32_t c = 1 + static_cast<uint32_t>(rng() % 8);
      std::memcpy(payload.data(), &c, 4);
      std::memset(payload.data() + 4, 0, 4);
    }
    std::vector<uint8_t> frame(kHeaderSize);
    encode_header(FrameHeader{kWireVersion, t, 0, len, 0},
                  std::span<uint8_t, kHeaderSize>(frame.data(), kHeaderSize));
    frame.insert(frame.end(), payload.begin(), payload.end());
    (void)decode_everything(frame, frame.size(), true);
  }
}

}  // namespace
}  // namespace constmig::wire
