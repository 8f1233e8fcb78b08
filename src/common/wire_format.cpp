// The migration stream's wire format (see wire_format.h and docs/format.md).
//
// Shared by the untrusted managers and the enclave images: standard library only, no I/O, no
// formatting functions from libc (the enclave import check refuses snprintf): numbers are put
// into messages with std::to_string and a local hex helper.
#include "common/wire_format.h"

#include <algorithm>
#include <cstring>

namespace constmig::wire {
namespace {

std::string hex32(uint64_t v, int digits) {
  static const char* kDigits = "0123456789abcdef";
  std::string s = "0x";
  for (int i = digits - 1; i >= 0; --i) s.push_back(kDigits[(v >> (4 * i)) & 0xF]);
  return s;
}

std::string num(uint64_t v) {
  return std::to_string(v);
}

Error format_error(std::string msg) {
  return make_error(Errc::kFormat, std::move(msg));
}
Error arg_error(std::string msg) {
  return make_error(Errc::kInvalidArgument, std::move(msg));
}

bool valid_type(uint8_t t) {
  return t >= kFirstFrameType && t <= kLastFrameType;
}

bool all_zero(ByteView b) {
  return std::all_of(b.begin(), b.end(), [](uint8_t x) { return x == 0; });
}

void put_u32(uint8_t* p, uint32_t v) {
  std::memcpy(p, &v, 4);
}
void put_u64(uint8_t* p, uint64_t v) {
  std::memcpy(p, &v, 8);
}
void put_u16(uint8_t* p, uint16_t v) {
  std::memcpy(p, &v, 2);
}

// A decoder must consume the payload exactly.
Status expect_end(const ByteReader& r, std::string_view what) {
  if (!r.ok()) return format_error(std::string(what) + ": payload truncated");
  if (!r.at_end()) {
    return format_error(std::string(what) + ": " + num(r.remaining()) +
                        " unexpected trailing bytes");
  }
  return ok_status();
}

Status check_page_range(uint64_t first, uint64_t count, std::string_view what) {
  if (first >= kMaxHeapPages || count > kMaxHeapPages - first) {
    return format_error(std::string(what) + ": pages [" + num(first) + ", " + num(first) + "+" +
                        num(count) + ") exceed the largest heap (" + num(kMaxHeapPages) +
                        " pages)");
  }
  return ok_status();
}

uint32_t sealed_min_ct(FrameType t) {
  switch (t) {
    case FrameType::kManifest:
      return kManifestBodySize;
    case FrameType::kCommit:
    case FrameType::kAbort:
      return kTokenSize;
    case FrameType::kResumeState:
      return 8;
    default:
      return 0;
  }
}
uint32_t sealed_max_ct(FrameType t) {
  switch (t) {
    case FrameType::kSmallState:
      return kMaxSmallStateCiphertext;
    case FrameType::kHostState:
      return kMaxHostStateCiphertext;
    case FrameType::kManifest:
      return kManifestBodySize;
    case FrameType::kCommit:
    case FrameType::kAbort:
      return kTokenSize;
    case FrameType::kResumeState:
      return kMaxResumeStateCiphertext;
    default:
      return 0;
  }
}

}  // namespace

// ------------------------------------------------------------------------------- names, limits

std::string frame_type_name(FrameType t) {
  switch (t) {
    case FrameType::kHello:
      return "HELLO";
    case FrameType::kKeyConfirm:
      return "KEY_CONFIRM";
    case FrameType::kSmallState:
      return "SMALL_STATE";
    case FrameType::kHostState:
      return "HOST_STATE";
    case FrameType::kPages:
      return "PAGES";
    case FrameType::kPageRequest:
      return "PAGE_REQUEST";
    case FrameType::kManifest:
      return "MANIFEST";
    case FrameType::kCommit:
      return "COMMIT";
    case FrameType::kAbort:
      return "ABORT";
    case FrameType::kError:
      return "ERROR";
    case FrameType::kStats:
      return "STATS";
    case FrameType::kResume:
      return "RESUME";
    case FrameType::kResumeState:
      return "RESUME_STATE";
  }
  return "UNKNOWN(" + hex32(static_cast<uint8_t>(t), 2) + ")";
}

std::string_view direction_name(Direction d) {
  switch (d) {
    case Direction::kUnknown:
      return "unknown";
    case Direction::kSourceToTarget:
      return "source->target";
    case Direction::kTargetToSource:
      return "target->source";
  }
  return "invalid";
}

std::string_view role_name(Role r) {
  switch (r) {
    case Role::kSource:
      return "source";
    case Role::kTarget:
      return "target";
  }
  return "invalid";
}

std::string_view mode_name(Mode m) {
  switch (m) {
    case Mode::kStopAndCopy:
      return "stop-and-copy";
    case Mode::kConstMig:
      return "constmig";
  }
  return "invalid";
}

std::string_view page_kind_name(PageKind k) {
  switch (k) {
    case PageKind::kData:
      return "data";
    case PageKind::kZero:
      return "zero";
  }
  return "invalid";
}

bool frame_allowed(FrameType t, Direction d) {
  if (d == Direction::kUnknown) return true;
  switch (t) {
    case FrameType::kHello:
    case FrameType::kKeyConfirm:
    case FrameType::kError:
    case FrameType::kStats:
    case FrameType::kResume:
      return true;
    case FrameType::kSmallState:
    case FrameType::kHostState:
    case FrameType::kPages:
    case FrameType::kManifest:
      return d == Direction::kSourceToTarget;
    case FrameType::kPageRequest:
    case FrameType::kCommit:
    case FrameType::kAbort:
    case FrameType::kResumeState:
      return d == Direction::kTargetToSource;
  }
  return false;
}

uint32_t min_payload_len(FrameType t) {
  switch (t) {
    case FrameType::kHello:
      return kHelloSize;
    case FrameType::kKeyConfirm:
      return kMacSize;
    case FrameType::kSmallState:
    case FrameType::kHostState:
    case FrameType::kManifest:
    case FrameType::kCommit:
    case FrameType::kAbort:
    case FrameType::kResumeState:
      return static_cast<uint32_t>(kSealedOverhead + sealed_min_ct(t));
    case FrameType::kPages:
      return static_cast<uint32_t>(kPagesHeaderSize + kZeroRecordSize);
    case FrameType::kPageRequest:
      return kPageRequestSize;
    case FrameType::kError:
      return 8;
    case FrameType::kStats:
      return 0;
    case FrameType::kResume:
      return kResumeSize;
  }
  return 0;
}

uint32_t max_payload_len(FrameType t) {
  switch (t) {
    case FrameType::kHello:
      return kHelloSize;
    case FrameType::kKeyConfirm:
      return kMacSize;
    case FrameType::kSmallState:
    case FrameType::kHostState:
    case FrameType::kManifest:
    case FrameType::kCommit:
    case FrameType::kAbort:
    case FrameType::kResumeState:
      return static_cast<uint32_t>(kSealedOverhead + sealed_max_ct(t));
    case FrameType::kPages:
      return static_cast<uint32_t>(kMaxPagesPayload);
    case FrameType::kPageRequest:
      return kPageRequestSize;
    case FrameType::kError:
      return 8 + kMaxErrorMessage;
    case FrameType::kStats:
      return kMaxStatsText;
    case FrameType::kResume:
      return kResumeSize;
  }
  return 0;
}

uint16_t allowed_flags(FrameType t) {
  return t == FrameType::kPages ? kFlagUrgent : 0;
}

// ------------------------------------------------------------------------------------- header

uint32_t crc32c(ByteView data) {
  uint32_t crc = 0xFFFFFFFFu;
  for (uint8_t b : data) {
    crc ^= b;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
  }
  return ~crc;
}

void encode_header(const FrameHeader& h, std::span<uint8_t, kHeaderSize> out) {
  uint8_t* p = out.data();
  put_u32(p, kFrameMagic);
  p[4] = h.version;
  p[5] = static_cast<uint8_t>(h.type);
  put_u16(p + 6, h.flags);
  put_u32(p + 8, h.payload_len);
  put_u64(p + 12, h.seq);
  put_u32(p + 20, crc32c(ByteView(p, 20)));
}

Result<FrameHeader> decode_header(ByteView bytes, uint64_t expected_seq) {
  if (bytes.size() < kHeaderSize) {
    return format_error("truncated frame header: " + num(bytes.size()) + " of " + num(kHeaderSize) +
                        " bytes");
  }
  ByteReader r(bytes.first(kHeaderSize));
  uint32_t magic = r.u32();
  if (magic != kFrameMagic) {
    return format_error("bad frame magic " + hex32(magic, 8) + ", expected " +
                        hex32(kFrameMagic, 8) +
                        " (\"CMGF\"): not a constmig migration stream, or the stream is out of "
                        "sync");
  }
  FrameHeader h;
  h.version = r.u8();
  uint8_t type = r.u8();
  h.flags = r.u16();
  h.payload_len = r.u32();
  h.seq = r.u64();
  uint32_t crc = r.u32();
  uint32_t want_crc = crc32c(bytes.first(20));
  if (crc != want_crc) {
    return format_error("frame header CRC32C mismatch: header says " + hex32(crc, 8) +
                        ", bytes give " + hex32(want_crc, 8) + " (corrupted header)");
  }
  if (h.version != kWireVersion) {
    return format_error("unsupported wire version " + num(h.version) + ", expected " +
                        num(kWireVersion) + " (peer runs an incompatible constmig)");
  }
  if (!valid_type(type)) {
    return format_error("unknown frame type " + num(type) + ", expected " + num(kFirstFrameType) +
                        ".." + num(kLastFrameType));
  }
  h.type = static_cast<FrameType>(type);
  const std::string name = frame_type_name(h.type);
  if ((h.flags & ~allowed_flags(h.type)) != 0) {
    return format_error(name + " frame has undefined flags " + hex32(h.flags, 4) + ", allowed " +
                        hex32(allowed_flags(h.type), 4));
  }
  uint32_t lo = min_payload_len(h.type), hi = max_payload_len(h.type);
  if (h.payload_len < lo || h.payload_len > hi) {
    return format_error(name + " frame payload length " + num(h.payload_len) +
                        " outside the allowed " + num(lo) + ".." + num(hi) + " bytes");
  }
  if (h.seq != expected_seq) {
    if (h.seq < expected_seq) {
      return format_error(name + " frame seq " + num(h.seq) + ", expected " + num(expected_seq) +
                          ": duplicated or reordered frame");
    }
    return format_error(name + " frame seq " + num(h.seq) + ", expected " + num(expected_seq) +
                        ": " + num(h.seq - expected_seq) + " frame(s) missing");
  }
  return h;
}

// -------------------------------------------------------------------------------------- HELLO

namespace {

Status check_hello(const Hello& h) {
  if (h.role != Role::kSource && h.role != Role::kTarget) return arg_error("HELLO: bad role");
  if (h.mode != Mode::kStopAndCopy && h.mode != Mode::kConstMig) {
    return arg_error("HELLO: bad mode");
  }
  if (h.thread_slots == 0 || h.thread_slots > abi::kMaxThreadSlots) {
    return arg_error("HELLO: thread_slots " + num(h.thread_slots) + " outside 1.." +
                     num(abi::kMaxThreadSlots));
  }
  if (h.heap_limit == 0 || h.heap_limit > abi::kHeapMaxReserve) {
    return arg_error("HELLO: heap_limit " + num(h.heap_limit) + " outside 1.." +
                     num(abi::kHeapMaxReserve));
  }
  if (h.app_name.empty() || h.app_name.size() > kMaxAppName ||
      h.app_name.find('\0') != std::string::npos) {
    return arg_error("HELLO: app name must be 1.." + num(kMaxAppName) + " bytes without NUL (got " +
                     num(h.app_name.size()) + ")");
  }
  return ok_status();
}

void put_hello(const Hello& h, bool with_quote, std::vector<uint8_t>& out) {
  ByteWriter w(out);
  w.u8(static_cast<uint8_t>(h.role));
  w.u8(static_cast<uint8_t>(h.mode));
  w.u8(static_cast<uint8_t>(h.app_name.size()));
  w.u8(0);
  w.u32(static_cast<uint32_t>(kPageSize));
  w.u32(h.thread_slots);
  w.u32(0);
  w.u64(h.heap_limit);
  w.bytes(h.x25519_public);
  w.bytes(h.nonce);
  if (with_quote) {
    w.bytes(h.quote);
  } else {
    out.insert(out.end(), kQuoteSize, 0);
  }
  w.bytes(as_bytes_view(h.app_name));
  out.insert(out.end(), kMaxAppName - h.app_name.size(), 0);
}

}  // namespace

Status encode_hello(const Hello& h, std::vector<uint8_t>& out) {
  CM_TRY(check_hello(h));
  put_hello(h, true, out);
  return ok_status();
}

Status encode_hello_for_binding(const Hello& h, std::vector<uint8_t>& out) {
  CM_TRY(check_hello(h));
  put_hello(h, false, out);
  return ok_status();
}

Result<Hello> decode_hello(ByteView payload) {
  if (payload.size() != kHelloSize) {
    return format_error("HELLO: payload is " + num(payload.size()) + " bytes, expected " +
                        num(kHelloSize));
  }
  ByteReader r(payload);
  Hello h;
  uint8_t role = r.u8(), mode = r.u8(), name_len = r.u8(), reserved0 = r.u8();
  uint32_t page_size = r.u32();
  h.thread_slots = r.u32();
  uint32_t reserved1 = r.u32();
  h.heap_limit = r.u64();
  ByteView key = r.bytes(kX25519KeySize), nonce = r.bytes(kHelloNonceSize),
           quote = r.bytes(kQuoteSize), name = r.bytes(kMaxAppName);
  CM_TRY(expect_end(r, "HELLO"));
  if (role != 1 && role != 2) {
    return format_error("HELLO: unknown role " + num(role) + ", expected 1 (source) or 2 (target)");
  }
  if (mode != 1 && mode != 2) {
    return format_error("HELLO: unknown mode " + num(mode) +
                        ", expected 1 (stop-and-copy) or 2 (constmig)");
  }
  if (reserved0 != 0 || reserved1 != 0) return format_error("HELLO: reserved field is not zero");
  if (page_size != kPageSize) {
    return format_error("HELLO: peer page size " + num(page_size) + ", expected " + num(kPageSize));
  }
  if (h.thread_slots == 0 || h.thread_slots > abi::kMaxThreadSlots) {
    return format_error("HELLO: thread_slots " + num(h.thread_slots) + " outside 1.." +
                        num(abi::kMaxThreadSlots));
  }
  if (h.heap_limit == 0 || h.heap_limit > abi::kHeapMaxReserve) {
    return format_error("HELLO: heap_limit " + num(h.heap_limit) + " outside 1.." +
                        num(abi::kHeapMaxReserve));
  }
  if (name_len == 0 || name_len > kMaxAppName) {
    return format_error("HELLO: app name length " + num(name_len) + " outside 1.." +
                        num(kMaxAppName));
  }
  ByteView used = name.first(name_len);
  if (std::find(used.begin(), used.end(), uint8_t{0}) != used.end()) {
    return format_error("HELLO: app name contains a NUL byte");
  }
  if (!all_zero(name.subspan(name_len))) {
    return format_error("HELLO: app name padding is not zero");
  }
  h.role = static_cast<Role>(role);
  h.mode = static_cast<Mode>(mode);
  std::copy(key.begin(), key.end(), h.x25519_public.begin());
  std::copy(nonce.begin(), nonce.end(), h.nonce.begin());
  std::copy(quote.begin(), quote.end(), h.quote.begin());
  h.app_name.assign(as_string_view(used));
  return h;
}

// -------------------------------------------------------------------------------- KEY_CONFIRM

void encode_key_confirm(const KeyConfirm& k, std::vector<uint8_t>& out) {
  out.insert(out.end(), k.mac.begin(), k.mac.end());
}

Result<KeyConfirm> decode_key_confirm(ByteView payload) {
  if (payload.size() != kMacSize) {
    return format_error("KEY_CONFIRM: payload is " + num(payload.size()) + " bytes, expected " +
                        num(kMacSize));
  }
  KeyConfirm k;
  std::copy(payload.begin(), payload.end(), k.mac.begin());
  return k;
}

// ------------------------------------------------------------------------------------- RESUME

std::vector<uint8_t> resume_mac_input(const Resume& r) {
  std::vector<uint8_t> out;
  ByteWriter w(out);
  w.u8(static_cast<uint8_t>(r.role));
  w.u8(0);
  w.u16(0);
  w.bytes(r.mig_id);
  w.u32(r.epoch);
  w.bytes(r.x25519_public);
  w.bytes(r.nonce);
  return out;
}

Status encode_resume(const Resume& r, std::vector<uint8_t>& out) {
  if (r.role != Role::kSource && r.role != Role::kTarget) return arg_error("RESUME: bad role");
  if (r.epoch < 2 || r.epoch > kMaxEpoch) {
    return arg_error("RESUME: epoch " + num(r.epoch) + " outside 2.." + num(kMaxEpoch));
  }
  auto body = resume_mac_input(r);
  out.insert(out.end(), body.begin(), body.end());
  out.insert(out.end(), r.mac.begin(), r.mac.end());
  return ok_status();
}

Result<Resume> decode_resume(ByteView payload) {
  if (payload.size() != kResumeSize) {
    return format_error("RESUME: payload is " + num(payload.size()) + " bytes, expected " +
                        num(kResumeSize));
  }
  ByteReader rd(payload);
  Resume r;
  uint8_t role = rd.u8(), reserved0 = rd.u8();
  uint16_t reserved1 = rd.u16();
  ByteView mid = rd.bytes(kMigrationIdSize);
  r.epoch = rd.u32();
  ByteView key = rd.bytes(kX25519KeySize), nonce = rd.bytes(kHelloNonceSize),
           mac = rd.bytes(kMacSize);
  CM_TRY(expect_end(rd, "RESUME"));
  if (role != 1 && role != 2) {
    return format_error("RESUME: unknown role " + num(role) + ", expected 1 or 2");
  }
  if (reserved0 != 0 || reserved1 != 0) return format_error("RESUME: reserved field is not zero");
  if (r.epoch < 2 || r.epoch > kMaxEpoch) {
    return format_error("RESUME: epoch " + num(r.epoch) + " outside 2.." + num(kMaxEpoch));
  }
  r.role = static_cast<Role>(role);
  std::copy(mid.begin(), mid.end(), r.mig_id.begin());
  std::copy(key.begin(), key.end(), r.x25519_public.begin());
  std::copy(nonce.begin(), nonce.end(), r.nonce.begin());
  std::copy(mac.begin(), mac.end(), r.mac.begin());
  return r;
}

// ------------------------------------------------------------------------------------- sealed

bool is_sealed_type(FrameType t) {
  switch (t) {
    case FrameType::kSmallState:
    case FrameType::kHostState:
    case FrameType::kManifest:
    case FrameType::kCommit:
    case FrameType::kAbort:
    case FrameType::kResumeState:
      return true;
    default:
      return false;
  }
}

namespace {
Status check_sealed_fields(FrameType type, uint32_t section, uint32_t index, uint32_t count,
                           uint64_t ct_len, uint64_t tag_len, bool decoding) {
  const std::string name = frame_type_name(type);
  auto err = [&](std::string m) {
    return decoding ? format_error(name + ": " + m) : arg_error(name + ": " + m);
  };
  if (!is_sealed_type(type)) return arg_error(name + " is not a sealed record type");
  if (count == 0 || count > kMaxSealedCount) {
    return err("record count " + num(count) + " outside 1.." + num(kMaxSealedCount));
  }
  if (index >= count) return err("record index " + num(index) + " not below count " + num(count));
  if (type != FrameType::kSmallState && count != 1) {
    return err("record count " + num(count) + ", expected 1");
  }
  if (type != FrameType::kSmallState && section != 0) {
    return err("section " + num(section) + ", expected 0");
  }
  uint32_t lo = sealed_min_ct(type), hi = sealed_max_ct(type);
  if (ct_len < lo || ct_len > hi) {
    return err("ciphertext length " + num(ct_len) + " outside " + num(lo) + ".." + num(hi));
  }
  if (tag_len != kTagSize) return err("tag is " + num(tag_len) + " bytes, expected 16");
  return ok_status();
}
}  // namespace

Status encode_sealed(FrameType type, const SealedRecord& r, std::vector<uint8_t>& out) {
  CM_TRY(check_sealed_fields(type, r.section, r.index, r.count, r.ciphertext.size(), r.tag.size(),
                             false));
  ByteWriter w(out);
  w.u64(r.nonce);
  w.u32(r.section);
  w.u32(r.index);
  w.u32(r.count);
  w.u32(static_cast<uint32_t>(r.ciphertext.size()));
  w.bytes(r.ciphertext);
  w.bytes(r.tag);
  return ok_status();
}

Result<SealedRecord> decode_sealed(FrameType type, ByteView payload) {
  if (!is_sealed_type(type)) return arg_error(frame_type_name(type) + " is not a sealed type");
  ByteReader r(payload);
  SealedRecord s;
  s.nonce = r.u64();
  s.section = r.u32();
  s.index = r.u32();
  s.count = r.u32();
  uint32_t ct_len = r.u32();
  if (!r.ok()) return format_error(frame_type_name(type) + ": payload truncated");
  // Check the announced length against the type's bound first, then against what is there.
  CM_TRY(check_sealed_fields(type, s.section, s.index, s.count, ct_len, kTagSize, true));
  if (r.remaining() != static_cast<uint64_t>(ct_len) + kTagSize) {
    return format_error(frame_type_name(type) + ": ciphertext length " + num(ct_len) +
                        " + 16-byte tag does not match the " + num(r.remaining()) +
                        " payload bytes after the record header");
  }
  s.ciphertext = r.bytes(ct_len);
  s.tag = r.bytes(kTagSize);
  CM_TRY(expect_end(r, frame_type_name(type)));
  return s;
}

std::array<uint8_t, kManifestBodySize> encode_manifest_body(const ManifestBody& m) {
  std::array<uint8_t, kManifestBodySize> b{};
  put_u64(b.data(), m.page_count);
  put_u64(b.data() + 8, m.heap_top);
  put_u32(b.data() + 16, m.epoch);
  std::memcpy(b.data() + 20, m.digest.data(), kDigestSize);
  return b;
}

Result<ManifestBody> decode_manifest_body(ByteView plaintext) {
  if (plaintext.size() != kManifestBodySize) {
    return format_error("manifest body is " + num(plaintext.size()) + " bytes, expected " +
                        num(kManifestBodySize));
  }
  ByteReader r(plaintext);
  ManifestBody m;
  m.page_count = r.u64();
  m.heap_top = r.u64();
  m.epoch = r.u32();
  ByteView d = r.bytes(kDigestSize);
  CM_TRY(expect_end(r, "manifest body"));
  if (m.page_count > kMaxHeapPages) {
    return format_error("manifest: page count " + num(m.page_count) +
                        " exceeds the largest heap (" + num(kMaxHeapPages) + " pages)");
  }
  if (m.heap_top % kPageSize != 0 || m.heap_top / kPageSize != m.page_count) {
    return format_error("manifest: heap top " + num(m.heap_top) + " does not match page count " +
                        num(m.page_count));
  }
  std::copy(d.begin(), d.end(), m.digest.begin());
  return m;
}

// -------------------------------------------------------------------------------------- PAGES

namespace {
Status check_page_record(const PageRecord& p, bool decoding, uint32_t i) {
  auto err = [&](std::string m) {
    m = "PAGES record " + num(i) + ": " + m;
    return decoding ? format_error(std::move(m)) : arg_error(std::move(m));
  };
  if (p.kind == PageKind::kData) {
    if (p.run != 1) return err("a DATA record covers exactly 1 page, not " + num(p.run));
    if (p.ciphertext.size() != kPageSize) {
      return err("DATA ciphertext is " + num(p.ciphertext.size()) + " bytes, expected 4096");
    }
  } else if (p.kind == PageKind::kZero) {
    if (p.run == 0 || p.run > kMaxZeroRun) {
      return err("ZERO run " + num(p.run) + " outside 1.." + num(kMaxZeroRun));
    }
    if (!p.ciphertext.empty()) return err("ZERO record carries ciphertext");
  } else {
    return err("unknown page kind " + num(static_cast<uint8_t>(p.kind)) +
               ", expected 1 (data) or 2 (zero)");
  }
  if (p.tag.size() != kTagSize) return err("tag is " + num(p.tag.size()) + " bytes, expected 16");
  Status range = check_page_range(p.index, p.run, "PAGES record " + num(i));
  if (!range.ok()) return decoding ? range : arg_error(range.error().message);
  return ok_status();
}
}  // namespace

Status encode_pages(std::span<const PageRecord> records, std::vector<uint8_t>& out) {
  if (records.empty() || records.size() > kMaxPagesPerBatch) {
    return arg_error("PAGES: " + num(records.size()) + " records, allowed 1.." +
                     num(kMaxPagesPerBatch));
  }
  for (uint32_t i = 0; i < records.size(); ++i) CM_TRY(check_page_record(records[i], false, i));
  ByteWriter w(out);
  w.u32(static_cast<uint32_t>(records.size()));
  w.u32(0);
  for (const PageRecord& p : records) {
    w.u64(p.index);
    w.u8(static_cast<uint8_t>(p.kind));
    if (p.kind == PageKind::kData) {
      w.u64(p.nonce);
      w.bytes(p.ciphertext);
    } else {
      w.u32(p.run);
      w.u64(p.nonce);
    }
    w.bytes(p.tag);
  }
  return ok_status();
}

Status decode_pages(ByteView payload, std::vector<PageRecord>& out) {
  out.clear();
  ByteReader r(payload);
  uint32_t count = r.u32();
  uint32_t reserved = r.u32();
  if (!r.ok()) return format_error("PAGES: payload shorter than its 8-byte batch header");
  if (count == 0 || count > kMaxPagesPerBatch) {
    return format_error("PAGES: batch count " + num(count) + " outside 1.." +
                        num(kMaxPagesPerBatch));
  }
  if (reserved != 0) return format_error("PAGES: reserved field is not zero");
  // A batch of `count` records needs at least count * kZeroRecordSize bytes: refuse a count the
  // payload cannot hold before reserving space for it.
  if (r.remaining() < static_cast<uint64_t>(count) * kZeroRecordSize) {
    return format_error("PAGES: batch count " + num(count) + " does not fit in " +
                        num(r.remaining()) + " payload bytes");
  }
  out.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    PageRecord p;
    p.index = r.u64();
    uint8_t kind = r.u8();
    if (kind == static_cast<uint8_t>(PageKind::kData)) {
      p.kind = PageKind::kData;
      p.run = 1;
      p.nonce = r.u64();
      p.ciphertext = r.bytes(kPageSize);
    } else if (kind == static_cast<uint8_t>(PageKind::kZero)) {
      p.kind = PageKind::kZero;
      p.run = r.u32();
      p.nonce = r.u64();
    } else {
      out.clear();
      if (!r.ok()) return format_error("PAGES: record " + num(i) + " truncated");
      return format_error("PAGES record " + num(i) + ": unknown page kind " + num(kind) +
                          ", expected 1 (data) or 2 (zero)");
    }
    p.tag = r.bytes(kTagSize);
    if (!r.ok()) {
      out.clear();
      return format_error("PAGES: record " + num(i) + " of " + num(count) + " truncated");
    }
    Status st = check_page_record(p, true, i);
    if (!st.ok()) {
      out.clear();
      return st;
    }
    out.push_back(p);
  }
  if (!r.at_end()) {
    out.clear();
    return format_error("PAGES: " + num(r.remaining()) + " trailing bytes after " + num(count) +
                        " records");
  }
  return ok_status();
}

PagesBuilder::PagesBuilder(std::vector<uint8_t>& out, uint32_t capacity)
    : out_(out),
      start_(out.size()),
      capacity_(std::clamp<uint32_t>(capacity, 1, kMaxPagesPerBatch)) {
  out_.reserve(start_ + kPagesHeaderSize + static_cast<size_t>(capacity_) * kDataRecordSize);
  out_.resize(start_ + kPagesHeaderSize, 0);
}

Result<PagesBuilder::DataSlot> PagesBuilder::add_data(uint64_t index, uint64_t nonce) {
  if (finished_ || count_ >= capacity_) return arg_error("PAGES: batch is full or finished");
  CM_TRY(check_page_range(index, 1, "PAGES data record"));
  size_t at = out_.size();
  out_.resize(at + kDataRecordSize);
  uint8_t* p = out_.data() + at;
  put_u64(p, index);
  p[8] = static_cast<uint8_t>(PageKind::kData);
  put_u64(p + 9, nonce);
  ++count_;
  return DataSlot{MutableByteView(p + 17, kPageSize),
                  MutableByteView(p + 17 + kPageSize, kTagSize)};
}

Result<MutableByteView> PagesBuilder::add_zero_run(uint64_t first, uint32_t run, uint64_t nonce) {
  if (finished_ || count_ >= capacity_) return arg_error("PAGES: batch is full or finished");
  if (run == 0 || run > kMaxZeroRun) {
    return arg_error("PAGES: zero run " + num(run) + " outside 1.." + num(kMaxZeroRun));
  }
  CM_TRY(check_page_range(first, run, "PAGES zero record"));
  size_t at = out_.size();
  out_.resize(at + kZeroRecordSize);
  uint8_t* p = out_.data() + at;
  put_u64(p, first);
  p[8] = static_cast<uint8_t>(PageKind::kZero);
  put_u32(p + 9, run);
  put_u64(p + 13, nonce);
  ++count_;
  return MutableByteView(p + 21, kTagSize);
}

Status PagesBuilder::finish() {
  if (count_ == 0) return arg_error("PAGES: empty batch");
  put_u32(out_.data() + start_, count_);
  finished_ = true;
  return ok_status();
}

// ------------------------------------------------------------------------------- PAGE_REQUEST

Status encode_page_request(const PageRequest& q, std::vector<uint8_t>& out) {
  if (q.count == 0 || q.count > kMaxPagesPerRequest) {
    return arg_error("PAGE_REQUEST: count " + num(q.count) + " outside 1.." +
                     num(kMaxPagesPerRequest));
  }
  Status range = check_page_range(q.first, q.count, "PAGE_REQUEST");
  if (!range.ok()) return arg_error(range.error().message);
  ByteWriter w(out);
  w.u64(q.first);
  w.u32(q.count);
  return ok_status();
}

Result<PageRequest> decode_page_request(ByteView payload) {
  ByteReader r(payload);
  PageRequest q;
  q.first = r.u64();
  q.count = r.u32();
  CM_TRY(expect_end(r, "PAGE_REQUEST"));
  if (q.count == 0 || q.count > kMaxPagesPerRequest) {
    return format_error("PAGE_REQUEST: count " + num(q.count) + " outside 1.." +
                        num(kMaxPagesPerRequest));
  }
  CM_TRY(check_page_range(q.first, q.count, "PAGE_REQUEST"));
  return q;
}

// ------------------------------------------------------------------------------ ERROR / STATS

void encode_error(const ErrorInfo& e, std::vector<uint8_t>& out) {
  std::string_view msg = e.message;
  if (msg.size() > kMaxErrorMessage) msg = msg.substr(0, kMaxErrorMessage);
  ByteWriter w(out);
  w.u32(e.code);
  w.str32(msg);
}

Result<ErrorInfo> decode_error(ByteView payload) {
  ByteReader r(payload);
  ErrorInfo e;
  e.code = r.u32();
  uint32_t len = r.u32();
  if (!r.ok()) return format_error("ERROR: payload truncated");
  if (len > kMaxErrorMessage) {
    return format_error("ERROR: message length " + num(len) + " exceeds " + num(kMaxErrorMessage));
  }
  ByteView msg = r.bytes(len);
  CM_TRY(expect_end(r, "ERROR"));
  e.message.assign(as_string_view(msg));
  return e;
}

Status encode_stats(std::string_view json, std::vector<uint8_t>& out) {
  if (json.size() > kMaxStatsText) {
    return arg_error("STATS: " + num(json.size()) + " bytes exceed " + num(kMaxStatsText));
  }
  if (json.find('\0') != std::string_view::npos) return arg_error("STATS: text contains NUL");
  ByteWriter(out).bytes(as_bytes_view(json));
  return ok_status();
}

Result<std::string_view> decode_stats(ByteView payload) {
  if (payload.size() > kMaxStatsText) {
    return format_error("STATS: " + num(payload.size()) + " bytes exceed " + num(kMaxStatsText));
  }
  if (std::find(payload.begin(), payload.end(), uint8_t{0}) != payload.end()) {
    return format_error("STATS: text contains a NUL byte");
  }
  return as_string_view(payload);
}

// -------------------------------------------------------------------------------- validation

Status validate_payload(const FrameHeader& h, ByteView payload) {
  if (!valid_type(static_cast<uint8_t>(h.type))) {
    return format_error("unknown frame type " + num(static_cast<uint8_t>(h.type)));
  }
  if ((h.flags & ~allowed_flags(h.type)) != 0) {
    return format_error(frame_type_name(h.type) + " frame has undefined flags " +
                        hex32(h.flags, 4));
  }
  if (payload.size() < min_payload_len(h.type) || payload.size() > max_payload_len(h.type)) {
    return format_error(frame_type_name(h.type) + " payload length " + num(payload.size()) +
                        " outside " + num(min_payload_len(h.type)) + ".." +
                        num(max_payload_len(h.type)));
  }
  switch (h.type) {
    case FrameType::kHello: {
      auto r = decode_hello(payload);
      return r.ok() ? ok_status() : Status(r.take_error());
    }
    case FrameType::kKeyConfirm: {
      auto r = decode_key_confirm(payload);
      return r.ok() ? ok_status() : Status(r.take_error());
    }
    case FrameType::kSmallState:
    case FrameType::kHostState:
    case FrameType::kManifest:
    case FrameType::kCommit:
    case FrameType::kAbort:
    case FrameType::kResumeState: {
      auto r = decode_sealed(h.type, payload);
      return r.ok() ? ok_status() : Status(r.take_error());
    }
    case FrameType::kResume: {
      auto r = decode_resume(payload);
      return r.ok() ? ok_status() : Status(r.take_error());
    }
    case FrameType::kPages: {
      std::vector<PageRecord> recs;
      return decode_pages(payload, recs);
    }
    case FrameType::kPageRequest: {
      auto r = decode_page_request(payload);
      return r.ok() ? ok_status() : Status(r.take_error());
    }
    case FrameType::kError: {
      auto r = decode_error(payload);
      return r.ok() ? ok_status() : Status(r.take_error());
    }
    case FrameType::kStats: {
      auto r = decode_stats(payload);
      return r.ok() ? ok_status() : Status(r.take_error());
    }
  }
  return format_error("unknown frame type");
}

// ------------------------------------------------------------------------------ FrameEncoder

size_t FrameEncoder::begin(FrameType type, uint16_t flags, std::vector<uint8_t>& out) {
  assert(!open_ && "FrameEncoder::begin while a frame is open");
  size_t mark = out.size();
  out.resize(mark + kHeaderSize, 0);
  pending_type_ = type;
  pending_flags_ = flags;
  open_ = true;
  return mark;
}

Status FrameEncoder::finish(size_t mark, std::vector<uint8_t>& out) {
  if (!open_ || mark + kHeaderSize > out.size()) {
    open_ = false;
    return make_error(Errc::kInternal, "FrameEncoder::finish without a matching begin");
  }
  open_ = false;
  const size_t len = out.size() - mark - kHeaderSize;
  FrameHeader h;
  h.type = pending_type_;
  h.flags = pending_flags_;
  h.seq = next_seq_;
  h.payload_len = static_cast<uint32_t>(len);
  Status st = len > UINT32_MAX ? Status(arg_error("frame payload exceeds 4 GiB"))
                               : validate_payload(h, ByteView(out).subspan(mark + kHeaderSize));
  if (!st.ok()) {
    out.resize(mark);
    Error e = st.take_error();
    return arg_error("refusing to send an invalid " + frame_type_name(h.type) +
                     " frame: " + e.message);
  }
  encode_header(h, std::span<uint8_t, kHeaderSize>(out.data() + mark, kHeaderSize));
  ++next_seq_;
  return ok_status();
}

void FrameEncoder::abandon(size_t mark, std::vector<uint8_t>& out) {
  if (mark <= out.size()) out.resize(mark);
  open_ = false;
}

Status FrameEncoder::append(FrameType type, uint16_t flags, ByteView payload,
                            std::vector<uint8_t>& out) {
  size_t mark = begin(type, flags, out);
  out.insert(out.end(), payload.begin(), payload.end());
  return finish(mark, out);
}

// ------------------------------------------------------------------------------- FrameReader

Error FrameReader::fail(Errc code, std::string msg) {
  error_ = make_error(code, std::move(msg));
  return *error_;
}

void FrameReader::feed(ByteView chunk) {
  if (error_ || chunk.empty()) return;
  // Drop the frame handed out by the last next() and compact, so the buffer holds at most the
  // unconsumed bytes plus this chunk.
  pos_ += release_;
  release_ = 0;
  if (pos_ > 0) {
    buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(pos_));
    base_offset_ += pos_;
    pos_ = 0;
  }
  buf_.insert(buf_.end(), chunk.begin(), chunk.end());
}

Result<bool> FrameReader::next(Frame& out) {
  if (error_) return *error_;
  pos_ += release_;
  release_ = 0;
  const uint64_t frame_offset = base_offset_ + pos_;
  if (!pending_) {
    if (buf_.size() - pos_ < kHeaderSize) return false;
    auto h = decode_header(ByteView(buf_).subspan(pos_, kHeaderSize), next_seq_);
    if (!h.ok()) {
      return fail(h.error().code, "frame at offset " + num(frame_offset) + " (expected seq " +
                                      num(next_seq_) + "): " + h.error().message);
    }
    pending_ = *h;
  }
  const size_t total = kHeaderSize + pending_->payload_len;
  if (buf_.size() - pos_ < total) {
    // The header is valid and its length bounded: reserving now is safe and saves regrowth.
    buf_.reserve(pos_ + total);
    return false;
  }
  ByteView payload = ByteView(buf_).subspan(pos_ + kHeaderSize, pending_->payload_len);
  if (validate_) {
    Status st = validate_payload(*pending_, payload);
    if (!st.ok()) {
      return fail(st.error().code, "frame at offset " + num(frame_offset) + " (seq " +
                                       num(pending_->seq) + ", " + frame_type_name(pending_->type) +
                                       "): " + st.error().message);
    }
  }
  out.header = *pending_;
  out.offset = frame_offset;
  out.payload = payload;
  pending_.reset();
  release_ = total;
  ++next_seq_;
  return true;
}

size_t FrameReader::wanted() const {
  const size_t have = buf_.size() - pos_ - release_;
  if (!pending_) return have >= kHeaderSize ? 0 : kHeaderSize - have;
  const size_t total = kHeaderSize + pending_->payload_len;
  return have >= total ? 0 : total - have;
}

Status FrameReader::finish() const {
  if (error_) return *error_;
  const size_t left = buf_.size() - pos_ - release_;
  if (left == 0) return ok_status();
  const uint64_t off = base_offset_ + pos_ + release_;
  if (pending_) {
    return format_error("truncated stream: the " + frame_type_name(pending_->type) +
                        " frame at offset " + num(off) + " (seq " + num(pending_->seq) + ") has " +
                        num(left - kHeaderSize) + " of its " + num(pending_->payload_len) +
                        " payload bytes");
  }
  if (left >= kHeaderSize) {
    // Bytes that were never asked for with next(): say so rather than guess.
    return format_error("stream ended with " + num(left) + " unread bytes at offset " + num(off) +
                        " (call next() until it returns false)");
  }
  return format_error("truncated stream: " + num(left) + " bytes of a frame header at offset " +
                      num(off) + " (a header is " + num(kHeaderSize) + " bytes)");
}

// ------------------------------------------------------------------------------------ capture

std::array<uint8_t, kCaptureHeaderSize> encode_capture_header(Direction d) {
  std::array<uint8_t, kCaptureHeaderSize> b{};
  std::memcpy(b.data(), "CMGCAP01", 8);
  put_u32(b.data() + 8, kCaptureVersion);
  put_u32(b.data() + 12, static_cast<uint32_t>(d));
  return b;
}

Result<std::optional<CaptureHeader>> decode_capture_header(ByteView first_bytes) {
  if (first_bytes.size() < 8 || std::memcmp(first_bytes.data(), "CMGCAP01", 8) != 0) {
    return std::optional<CaptureHeader>{};
  }
  if (first_bytes.size() < kCaptureHeaderSize) {
    return format_error("capture header truncated: " + num(first_bytes.size()) + " of 16 bytes");
  }
  ByteReader r(first_bytes.subspan(8, 8));
  CaptureHeader c;
  c.version = r.u32();
  uint32_t dir = r.u32();
  if (c.version != kCaptureVersion) {
    return format_error("capture version " + num(c.version) + ", expected " + num(kCaptureVersion));
  }
  if (dir > 2) {
    return format_error("capture direction " + num(dir) +
                        ", expected 0 (unknown), 1 (source->target) or 2 (target->source)");
  }
  c.direction = static_cast<Direction>(dir);
  return std::optional<CaptureHeader>(c);
}

// ---------------------------------------------------------------------------------------- AAD

std::optional<RecordKind> record_kind_for(FrameType t) {
  switch (t) {
    case FrameType::kSmallState:
      return RecordKind::kSmallState;
    case FrameType::kHostState:
      return RecordKind::kHostState;
    case FrameType::kManifest:
      return RecordKind::kManifest;
    case FrameType::kCommit:
      return RecordKind::kCommit;
    case FrameType::kAbort:
      return RecordKind::kAbort;
    case FrameType::kResumeState:
      return RecordKind::kResumeState;
    default:
      return std::nullopt;
  }
}

std::array<uint8_t, kNonceSize> gcm_nonce(uint64_t counter) {
  std::array<uint8_t, kNonceSize> n{};
  put_u64(n.data() + 4, counter);
  return n;
}

namespace {
Aad make_aad(MigrationId mid, RecordKind kind, uint32_t epoch, uint64_t index, uint32_t count,
             uint32_t section) {
  Aad a{};
  std::memcpy(a.data(), "CMGAAD01", 8);
  std::memcpy(a.data() + 8, mid.data(), kMigrationIdSize);
  a[24] = static_cast<uint8_t>(kind);
  a[25] = kWireVersion;
  put_u32(a.data() + 28, epoch);
  put_u64(a.data() + 32, index);
  put_u32(a.data() + 40, count);
  put_u32(a.data() + 44, section);
  return a;
}
}  // namespace

Aad page_aad(MigrationId migration_id, uint64_t page_index, uint32_t epoch, PageKind kind,
             uint32_t run) {
  return make_aad(migration_id,
                  kind == PageKind::kZero ? RecordKind::kZeroRun : RecordKind::kHeapPage, epoch,
                  page_index, kind == PageKind::kZero ? run : 1, 0);
}

Aad record_aad(MigrationId migration_id, RecordKind kind, uint32_t epoch, uint32_t index,
               uint32_t count, uint32_t section) {
  return make_aad(migration_id, kind, epoch, index, count, section);
}

}  // namespace constmig::wire
