// libFuzzer target: the migration stream's framing and every payload decoder
// (src/common/wire_format.cpp).
//
// Input: byte 0 selects what the rest is (mode = byte 0 % 16):
//   0      a stream: FrameReader fed two ways (by wanted(), and in pseudo-random chunks), with
//          and without payload validation; both feeds must agree frame by frame and on the
//          error, and every frame must re-encode (FrameEncoder) to its exact input bytes
//   13     the same after fixing every locatable header's CRC (reaches the checks behind it)
//   1..11  one payload of that FrameType: the typed decoder, then its encoder must reproduce
//          the input exactly (PAGES also through PagesBuilder); validate_payload must agree
//   12     a frame header: byte 1 picks the expected seq, decode_header, then encode_header
//          must reproduce the 24 bytes
//   14, 15 one payload of FrameType 12 (RESUME) / 13 (RESUME_STATE), as for 1..11
#include <algorithm>
#include <string>
#include <vector>

#include "common/quote_format.h"
#include "common/wire_format.h"
#include "fuzz_util.h"

namespace {

using namespace constmig;
using namespace constmig::wire;
using constmig::fuzz::inside;
using constmig::fuzz::same_bytes;

// ------------------------------------------------------------------------------ typed payloads

bool check_hello(ByteView p) {
  auto r = decode_hello(p);
  if (!r.ok()) return false;
  std::vector<uint8_t> out;
  FUZZ_CHECK(encode_hello(*r, out).ok());
  FUZZ_CHECK(same_bytes(out, p));
  std::vector<uint8_t> binding;
  FUZZ_CHECK(encode_hello_for_binding(*r, binding).ok());
  std::vector<uint8_t> want(p.begin(), p.end());
  std::fill(want.begin() + 88, want.begin() + 88 + kQuoteSize, 0);
  FUZZ_CHECK(binding == want);
  (void)quote::decode_quote(r->quote);  // opaque to the codec; fuzz_quote checks it
  return true;
}

bool check_key_confirm(ByteView p) {
  auto r = decode_key_confirm(p);
  if (!r.ok()) return false;
  std::vector<uint8_t> out;
  encode_key_confirm(*r, out);
  FUZZ_CHECK(same_bytes(out, p));
  return true;
}

bool check_sealed(FrameType t, ByteView p) {
  auto r = decode_sealed(t, p);
  if (!r.ok()) return false;
  FUZZ_CHECK(inside(r->ciphertext, p) && inside(r->tag, p));
  FUZZ_CHECK(r->tag.size() == kTagSize);
  FUZZ_CHECK(r->count >= 1 && r->count <= kMaxSealedCount && r->index < r->count);
  FUZZ_CHECK(record_kind_for(t).has_value());
  std::vector<uint8_t> out;
  FUZZ_CHECK(encode_sealed(t, *r, out).ok());
  FUZZ_CHECK(same_bytes(out, p));
  return true;
}

bool check_pages(ByteView p) {
  std::vector<PageRecord> recs;
  Status st = decode_pages(p, recs);
  if (!st.ok()) {
    FUZZ_CHECK(recs.empty());  // documented: cleared on error
    return false;
  }
  FUZZ_CHECK(!recs.empty() && recs.size() <= kMaxPagesPerBatch);
  for (const PageRecord& r : recs) {
    FUZZ_CHECK(inside(r.ciphertext, p) && inside(r.tag, p));
    FUZZ_CHECK(r.index < kMaxHeapPages && r.run <= kMaxHeapPages - r.index);
  }
  std::vector<uint8_t> out;
  FUZZ_CHECK(encode_pages(recs, out).ok());
  FUZZ_CHECK(same_bytes(out, p));
  // The zero-copy builder lays out the same bytes.
  std::vector<uint8_t> built;
  PagesBuilder b(built, static_cast<uint32_t>(recs.size()));
  for (const PageRecord& r : recs) {
    if (r.kind == PageKind::kData) {
      auto slot = b.add_data(r.index, r.nonce);
      FUZZ_CHECK(slot.ok());
      std::copy(r.ciphertext.begin(), r.ciphertext.end(), slot->ciphertext.begin());
      std::copy(r.tag.begin(), r.tag.end(), slot->tag.begin());
    } else {
      auto tag = b.add_zero_run(r.index, r.run, r.nonce);
      FUZZ_CHECK(tag.ok());
      std::copy(r.tag.begin(), r.tag.end(), tag->begin());
    }
  }
  FUZZ_CHECK(b.full() && b.count() == recs.size());
  FUZZ_CHECK(b.finish().ok());
  FUZZ_CHECK(same_bytes(built, p));
  return true;
}

bool check_page_request(ByteView p) {
  auto r = decode_page_request(p);
  if (!r.ok()) return false;
  FUZZ_CHECK(r->count >= 1 && r->count <= kMaxPagesPerRequest);
  std::vector<uint8_t> out;
  FUZZ_CHECK(encode_page_request(*r, out).ok());
  FUZZ_CHECK(same_bytes(out, p));
  return true;
}

bool check_resume(ByteView p) {
  auto r = decode_resume(p);
  if (!r.ok()) return false;
  FUZZ_CHECK(r->epoch >= 2 && r->epoch <= kMaxEpoch);
  std::vector<uint8_t> out;
  FUZZ_CHECK(encode_resume(*r, out).ok());
  FUZZ_CHECK(same_bytes(out, p));
  return true;
}

bool check_error(ByteView p) {
  auto r = decode_error(p);
  if (!r.ok()) return false;
  FUZZ_CHECK(r->message.size() <= kMaxErrorMessage);
  std::vector<uint8_t> out;
  encode_error(*r, out);
  FUZZ_CHECK(same_bytes(out, p));
  return true;
}

bool check_stats(ByteView p) {
  auto r = decode_stats(p);
  if (!r.ok()) return false;
  std::vector<uint8_t> out;
  FUZZ_CHECK(encode_stats(*r, out).ok());
  FUZZ_CHECK(same_bytes(out, p));
  return true;
}

bool check_typed(FrameType t, ByteView p) {
  switch (t) {
    case FrameType::kHello:
      return check_hello(p);
    case FrameType::kKeyConfirm:
      return check_key_confirm(p);
    case FrameType::kSmallState:
    case FrameType::kHostState:
    case FrameType::kManifest:
    case FrameType::kCommit:
    case FrameType::kAbort:
    case FrameType::kResumeState:
      return check_sealed(t, p);
    case FrameType::kResume:
      return check_resume(p);
    case FrameType::kPages:
      return check_pages(p);
    case FrameType::kPageRequest:
      return check_page_request(p);
    case FrameType::kError:
      return check_error(p);
    case FrameType::kStats:
      return check_stats(p);
  }
  return false;
}

// The typed decoder and validate_payload() must agree (validate also checks the header's
// length bounds and flags).
void check_payload(FrameType t, uint16_t flags, ByteView p) {
  const bool typed_ok = check_typed(t, p);
  FrameHeader h;
  h.type = t;
  h.flags = flags;
  h.payload_len = static_cast<uint32_t>(p.size());
  const bool framing_ok = (flags & ~allowed_flags(t)) == 0 && p.size() >= min_payload_len(t) &&
                          p.size() <= max_payload_len(t);
  Status v = validate_payload(h, p);
  FUZZ_CHECK(v.ok() == (typed_ok && framing_ok));
  if (!v.ok()) FUZZ_CHECK(!v.error().message.empty());
}

// ------------------------------------------------------------------------------------ streams

struct Event {
  uint64_t offset = 0;
  FrameHeader h;
};
struct Trace {
  std::vector<Event> frames;
  bool failed = false;
  std::string error;  // next()'s or finish()'s message
};

bool same_header(const FrameHeader& a, const FrameHeader& b) {
  return a.version == b.version && a.type == b.type && a.flags == b.flags &&
         a.payload_len == b.payload_len && a.seq == b.seq;
}

// Feeds `stream` to a FrameReader: by wanted() (chunk_seed == 0) or in chunks whose sizes
// follow a small generator seeded with chunk_seed.
Trace read_stream(ByteView stream, bool validate, uint8_t chunk_seed) {
  Trace t;
  FrameReader reader(0, validate);
  size_t pos = 0;
  uint32_t rng = chunk_seed * 2654435761u + 1;
  for (;;) {
    Frame f;
    auto r = reader.next(f);
    if (!r.ok()) {
      t.failed = true;
      t.error = r.error().message;
      FUZZ_CHECK(reader.failed());
      FUZZ_CHECK(!reader.finish().ok());
      return t;
    }
    if (*r) {
      const FrameHeader& h = f.header;
      FUZZ_CHECK(h.seq == t.frames.size());
      FUZZ_CHECK(f.offset + kHeaderSize + h.payload_len <= pos);
      FUZZ_CHECK(same_bytes(f.payload, stream.subspan(f.offset + kHeaderSize, h.payload_len)));
      if (validate) {
        FUZZ_CHECK(validate_payload(h, f.payload).ok());
        // An encoder starting at this seq reproduces the frame's bytes exactly.
        FrameEncoder enc(h.seq);
        std::vector<uint8_t> out;
        FUZZ_CHECK(enc.append(h.type, h.flags, f.payload, out).ok());
        FUZZ_CHECK(same_bytes(out, stream.subspan(f.offset, kHeaderSize + h.payload_len)));
        FUZZ_CHECK(enc.next_seq() == h.seq + 1);
      }
      t.frames.push_back(Event{f.offset, h});
      continue;
    }
    FUZZ_CHECK(reader.wanted() >= 1);
    if (pos == stream.size()) break;
    size_t n;
    if (chunk_seed == 0) {
      n = reader.wanted();
    } else {
      rng = rng * 1103515245u + 12345u;
      static constexpr size_t kSizes[] = {1, 2, 3, 7, 23, 24, 25, 100, 4096, 1u << 20};
      n = kSizes[(rng >> 16) % std::size(kSizes)];
    }
    n = std::min(n, stream.size() - pos);
    reader.feed(stream.subspan(pos, n));
    pos += n;
  }
  Status fin = reader.finish();
  if (!fin.ok()) {
    t.failed = true;
    t.error = fin.error().message;
  }
  FUZZ_CHECK(reader.offset() <= stream.size());
  return t;
}

void check_stream(ByteView stream, uint8_t chunk_seed) {
  Trace a = read_stream(stream, true, 0);
  Trace b = read_stream(stream, true, chunk_seed == 0 ? 1 : chunk_seed);
  FUZZ_CHECK(a.failed == b.failed && a.error == b.error);
  FUZZ_CHECK(a.frames.size() == b.frames.size());
  for (size_t i = 0; i < a.frames.size(); ++i) {
    FUZZ_CHECK(a.frames[i].offset == b.frames[i].offset);
    FUZZ_CHECK(same_header(a.frames[i].h, b.frames[i].h));
  }
  // Without payload validation the reader sees at least the same frames.
  Trace raw = read_stream(stream, false, chunk_seed);
  FUZZ_CHECK(raw.frames.size() >= a.frames.size());
  for (size_t i = 0; i < a.frames.size(); ++i) {
    FUZZ_CHECK(raw.frames[i].offset == a.frames[i].offset);
    FUZZ_CHECK(same_header(raw.frames[i].h, a.frames[i].h));
  }
  // Every frame's payload through its typed decoder and round trip.
  for (const Event& e : a.frames) {
    check_payload(e.h.type, e.h.flags, stream.subspan(e.offset + kHeaderSize, e.h.payload_len));
    FUZZ_CHECK(!frame_type_name(e.h.type).empty());
  }
}

void check_header(uint8_t sel, ByteView bytes) {
  uint64_t expected = sel >> 1;
  if ((sel & 1) != 0 && bytes.size() >= kHeaderSize) std::memcpy(&expected, bytes.data() + 12, 8);
  auto r = decode_header(bytes, expected);
  if (!r.ok()) {
    FUZZ_CHECK(r.error().code == Errc::kFormat && !r.error().message.empty());
    return;
  }
  FUZZ_CHECK(bytes.size() >= kHeaderSize);
  FUZZ_CHECK(r->seq == expected && r->version == kWireVersion);
  FUZZ_CHECK(r->payload_len >= min_payload_len(r->type) &&
             r->payload_len <= max_payload_len(r->type));
  std::array<uint8_t, kHeaderSize> out{};
  encode_header(*r, out);
  FUZZ_CHECK(same_bytes(out, bytes.first(kHeaderSize)));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0] % 16;
  ByteView rest(data + 1, size - 1);
  if (mode == 0 || mode == 13) {
    if (rest.empty()) return 0;
    // Byte 1 seeds the chunking; the stream follows.
    const uint8_t seed = rest[0];
    ByteView stream = rest.subspan(1);
    if (mode == 0) {
      check_stream(stream, seed);
    } else {
      std::vector<uint8_t> fixed = constmig::fuzz::fix_header_crcs(stream);
      check_stream(fixed, seed);
    }
  } else if (mode == 12) {
    if (rest.empty()) return 0;
    check_header(rest[0], rest.subspan(1));
  } else {
    const auto t = static_cast<FrameType>(mode >= 14 ? mode - 2 : mode);
    check_payload(t, 0, rest);
    if (t == FrameType::kPages) check_payload(t, kFlagUrgent, rest);
  }
  return 0;
}
