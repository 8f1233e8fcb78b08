// The migration stream's wire format: framing and payload codecs, NO crypto and NO sockets.
//
// Used on BOTH sides of the trust boundary: the untrusted Migration Managers frame, route and
// count frames; the enclaves parse the same bytes again (they never trust the managers' parse)
// and build the AEAD nonces and AAD with the helpers at the end of this file. It therefore
// includes only the C++ standard library and src/common, and is built (target constmig_wire)
// -fPIC without sanitizers so that enclave images can link it.
//
// Threat model. Every byte here crosses untrusted hosts and the network. The codec's job is to
// turn ANY input into either a well-formed structure or an Error (Errc::kFormat), never into a
// crash, an unbounded allocation or an out-of-bounds read:
//   * every length field is checked against a per-type limit BEFORE anything is allocated or
//     waited for (a frame header announcing 4 GiB is refused when its 24 bytes arrive);
//   * every reserved field and padding byte must be zero, every enum value known, every fixed
//     size exact: one byte string has at most one meaning;
//   * the header's CRC32C and sequence number are framing sanity checks against bugs and
//     desynchronisation, NOT security: an attacker recomputes them. Confidentiality, integrity
//     and replay protection come from AES-256-GCM inside the enclaves, whose AAD (page_aad /
//     record_aad) binds the migration id, the page index or record position, the epoch and the
//     record kind. Decoded views are unauthenticated until the enclave opens them.
//
// The full layout, with a table per frame, is docs/format.md. All integers are little-endian.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.h"
#include "common/enclave_abi.h"
#include "common/quote_format.h"
#include "common/result.h"

namespace constmig::wire {

// ---------------------------------------------------------------------------------------------
// Frame header (24 bytes)
//   0  u32 magic "CMGF"   4  u8 version   5  u8 type   6  u16 flags   8  u32 payload_len
//  12  u64 seq           20  u32 CRC32C of bytes [0, 20)
// ---------------------------------------------------------------------------------------------
inline constexpr uint32_t kFrameMagic = 0x46474D43u;  // bytes 'C' 'M' 'G' 'F'
inline constexpr uint8_t kWireVersion = 1;
inline constexpr size_t kHeaderSize = 24;

enum class FrameType : uint8_t {
  kHello = 1,         // both directions: role, mode, quote, X25519 key, nonce
  kKeyConfirm = 2,    // both: 32-byte MAC proving both derived the same keys
  kSmallState = 3,    // source->target: sealed enclave small state (one section per frame)
  kHostState = 4,     // source->target: sealed host-side app state
  kPages = 5,         // source->target: a batch of sealed heap pages / zero runs
  kPageRequest = 6,   // target->source: urgent fetch (live mode), plain
  kManifest = 7,      // source->target: sealed manifest (page count, heap top, epoch, digest)
  kCommit = 8,        // target->source: sealed commit token
  kAbort = 9,         // target->source: sealed abort token (lets the source resume)
  kError = 10,        // both: plain, informational only (never acted on as a verdict)
  kStats = 11,        // both: plain JSON text, informational
  kResume = 12,       // both: live-mode recovery after a lost connection: new X25519 key for the
                      // next epoch, MACed under the current migration's keys (plain)
  kResumeState = 13,  // target->source: sealed (new epoch) bitmap of the pages the target has
};
inline constexpr uint8_t kFirstFrameType = 1;
inline constexpr uint8_t kLastFrameType = 13;

// Header flags. Undefined bits, or a flag on a type it is not defined for, are refused.
inline constexpr uint16_t kFlagUrgent = 0x0001;  // PAGES only: the batch answers a PAGE_REQUEST

// Direction of one TCP stream (also recorded in a capture header).
enum class Direction : uint32_t { kUnknown = 0, kSourceToTarget = 1, kTargetToSource = 2 };

struct FrameHeader {
  uint8_t version = kWireVersion;
  FrameType type = FrameType::kHello;
  uint16_t flags = 0;
  uint32_t payload_len = 0;
  uint64_t seq = 0;
};

// "HELLO", "PAGES", ... ("UNKNOWN(0xNN)" for a value outside the enum).
std::string frame_type_name(FrameType t);
std::string_view direction_name(Direction d);
// Whether a frame of this type may travel in this direction (kUnknown: any).
bool frame_allowed(FrameType t, Direction d);
// Inclusive payload size bounds per type (valid types only).
uint32_t min_payload_len(FrameType t);
uint32_t max_payload_len(FrameType t);
// Flags defined for this type.
uint16_t allowed_flags(FrameType t);

// Writes the 24-byte header (computes the CRC). Does not validate: FrameEncoder does.
void encode_header(const FrameHeader& h, std::span<uint8_t, kHeaderSize> out);
// Parses and checks the first kHeaderSize bytes of `bytes`, in this order: length available,
// magic, CRC, version, type, flags, payload_len against the type's bounds, seq == expected_seq.
// Every failure is Errc::kFormat with a message naming what was found and what was expected.
Result<FrameHeader> decode_header(ByteView bytes, uint64_t expected_seq);

// CRC32C (Castagnoli), bitwise. Framing sanity only.
uint32_t crc32c(ByteView data);

// ---------------------------------------------------------------------------------------------
// Limits (all checked before allocation; see docs/format.md "Limits")
// ---------------------------------------------------------------------------------------------
inline constexpr size_t kPageSize = abi::kPageSize;                               // 4096
inline constexpr uint64_t kMaxHeapPages = abi::kHeapMaxReserve / abi::kPageSize;  // 2^24
inline constexpr size_t kTagSize = 16;                                            // AES-GCM tag
inline constexpr size_t kNonceSize = 12;  // AES-GCM IV built from a u64 counter (gcm_nonce)
inline constexpr size_t kQuoteSize = quote::kQuoteSize;  // 208, common/quote_format.h
inline constexpr size_t kX25519KeySize = 32;
inline constexpr size_t kHelloNonceSize = 32;
inline constexpr size_t kMaxAppName = 64;
inline constexpr size_t kMacSize = 32;
inline constexpr size_t kTokenSize = 32;
inline constexpr size_t kDigestSize = 32;
inline constexpr size_t kMigrationIdSize = 16;

inline constexpr uint32_t kMaxPagesPerBatch = 1024;
inline constexpr uint32_t kMaxZeroRun = 65536;  // pages one ZERO record may cover
inline constexpr uint32_t kMaxPagesPerRequest = 256;
inline constexpr uint32_t kMaxSealedCount = 1024;  // records of one kind (e.g. sections)
inline constexpr uint32_t kMaxSmallStateCiphertext = 64u << 20;
inline constexpr uint32_t kMaxHostStateCiphertext = 16u << 20;
inline constexpr uint32_t kMaxErrorMessage = 1024;
inline constexpr uint32_t kMaxStatsText = 64u << 10;
inline constexpr uint32_t kMaxEpoch = 1u << 20;  // recoveries of one migration, at most
// RESUME_STATE plaintext: u64 page count, then one bit per page (page i = bit i%8 of byte i/8).
inline constexpr uint32_t kMaxResumeStateCiphertext = static_cast<uint32_t>(8 + kMaxHeapPages / 8);

inline constexpr size_t kHelloSize = 360;
inline constexpr size_t kSealedOverhead = 24 + kTagSize;  // fixed fields + tag
inline constexpr size_t kManifestBodySize = 52;
inline constexpr size_t kPagesHeaderSize = 8;
inline constexpr size_t kDataRecordSize = 8 + 1 + 8 + kPageSize + kTagSize;  // 4129
inline constexpr size_t kZeroRecordSize = 8 + 1 + 4 + 8 + kTagSize;          // 37
inline constexpr size_t kPageRequestSize = 12;
inline constexpr size_t kResumeSize =
    4 + kMigrationIdSize + 4 + kX25519KeySize + kHelloNonceSize + kMacSize;  // 120
inline constexpr size_t kMaxPagesPayload = kPagesHeaderSize + kMaxPagesPerBatch * kDataRecordSize;

// ---------------------------------------------------------------------------------------------
// Payloads. decode_* take exactly one frame's payload; views point into it (no page data is
// copied). encode_* append to `out` and refuse (Errc::kInvalidArgument) what decode would refuse.
// ---------------------------------------------------------------------------------------------
enum class Role : uint8_t { kSource = 1, kTarget = 2 };
enum class Mode : uint8_t { kStopAndCopy = 1, kConstMig = 2 };
std::string_view role_name(Role r);
std::string_view mode_name(Mode m);

struct Hello {
  Role role = Role::kSource;
  Mode mode = Mode::kConstMig;
  uint32_t thread_slots = 0;  // 1..abi::kMaxThreadSlots
  uint64_t heap_limit = 0;    // 1..abi::kHeapMaxReserve
  std::array<uint8_t, kX25519KeySize> x25519_public{};
  std::array<uint8_t, kHelloNonceSize> nonce{};
  std::array<uint8_t, kQuoteSize> quote{};  // opaque here; quote::decode_quote parses it
  std::string app_name;                     // 1..kMaxAppName bytes, no NUL
};
Status encode_hello(const Hello& h, std::vector<uint8_t>& out);
Result<Hello> decode_hello(ByteView payload);
// The HELLO payload with the quote field zeroed: what an enclave hashes into its quote's report
// data so that the quote binds every HELLO field (key, nonce, role, mode, limits, app name),
// not only the key. Same validation as encode_hello.
Status encode_hello_for_binding(const Hello& h, std::vector<uint8_t>& out);

struct KeyConfirm {
  std::array<uint8_t, kMacSize> mac{};
};
void encode_key_confirm(const KeyConfirm& k, std::vector<uint8_t>& out);
Result<KeyConfirm> decode_key_confirm(ByteView payload);

// RESUME (live-mode recovery, docs/format.md): after a lost connection the two enclaves of the
// SAME migration agree on fresh keys for epoch `epoch` (greater than the current one) by a new
// X25519 exchange; `mac` (HKDF over the current keys and the other fields) proves the sender
// holds the current migration's keys, so no new quote is needed. Plain: the MAC protects it.
struct Resume {
  Role role = Role::kSource;
  std::array<uint8_t, kMigrationIdSize> mig_id{};
  uint32_t epoch = 0;  // 2..kMaxEpoch
  std::array<uint8_t, kX25519KeySize> x25519_public{};
  std::array<uint8_t, kHelloNonceSize> nonce{};
  std::array<uint8_t, kMacSize> mac{};
};
// The RESUME payload without its MAC (what the MAC covers).
std::vector<uint8_t> resume_mac_input(const Resume& r);
Status encode_resume(const Resume& r, std::vector<uint8_t>& out);
Result<Resume> decode_resume(ByteView payload);

// A sealed (AES-256-GCM) record: the payload of SMALL_STATE, HOST_STATE, MANIFEST, COMMIT and
// ABORT. `index`/`count` place the record among the records of its kind in this migration
// (0 <= index < count <= kMaxSealedCount); `section` names a SMALL_STATE section (0 elsewhere).
// All three go into the AAD (record_aad), so a dropped, reordered or re-labelled record fails
// to open.
struct SealedRecord {
  uint64_t nonce = 0;  // AES-GCM nonce counter (gcm_nonce)
  uint32_t section = 0;
  uint32_t index = 0;
  uint32_t count = 1;
  ByteView ciphertext;
  ByteView tag;  // kTagSize bytes
};
// `type` is one of the six sealed types; it selects the ciphertext bounds (SMALL_STATE
// 0..64 MiB, HOST_STATE 0..16 MiB, MANIFEST exactly kManifestBodySize, COMMIT/ABORT exactly
// kTokenSize, RESUME_STATE 8..8 + 2 MiB).
bool is_sealed_type(FrameType type);
Status encode_sealed(FrameType type, const SealedRecord& r, std::vector<uint8_t>& out);
Result<SealedRecord> decode_sealed(FrameType type, ByteView payload);

// The MANIFEST's plaintext (what its ciphertext decrypts to), for the enclaves.
struct ManifestBody {
  uint64_t page_count = 0;  // pages in the heap layout (data + zero)
  uint64_t heap_top = 0;    // bytes; page_count == heap_top / kPageSize
  uint32_t epoch = 0;
  std::array<uint8_t, kDigestSize> digest{};
};
std::array<uint8_t, kManifestBodySize> encode_manifest_body(const ManifestBody& m);
Result<ManifestBody> decode_manifest_body(ByteView plaintext);

// One record of a PAGES batch. DATA: one page, ciphertext is kPageSize bytes, run == 1.
// ZERO: `run` consecutive all-zero pages starting at `index`, no ciphertext, but a tag over the
// empty plaintext (GMAC): a zero run is authenticated like a data page, so the host cannot turn
// data into zeros.
enum class PageKind : uint8_t { kData = 1, kZero = 2 };
std::string_view page_kind_name(PageKind k);

struct PageRecord {
  uint64_t index = 0;
  PageKind kind = PageKind::kData;
  uint32_t run = 1;
  uint64_t nonce = 0;
  ByteView ciphertext;  // kPageSize bytes for DATA, empty for ZERO
  ByteView tag;         // kTagSize bytes
};
// 1..kMaxPagesPerBatch records. Checks each index (and index + run) stays below kMaxHeapPages;
// it does NOT check duplicates or the heap layout: the receiving enclave's restored-bitmap does.
Status encode_pages(std::span<const PageRecord> records, std::vector<uint8_t>& out);
// Clears `out`, then fills it with views into `payload`. On error `out` is cleared.
Status decode_pages(ByteView payload, std::vector<PageRecord>& out);

// Builds a PAGES payload in place so that an enclave (or a worker) can encrypt straight into
// the output buffer: no intermediate copy of the ciphertext. `out` is reserved for `capacity`
// DATA records up front; spans returned by add_* stay valid until `out` is touched again by
// anyone else. finish() patches the count.
class PagesBuilder {
 public:
  PagesBuilder(std::vector<uint8_t>& out, uint32_t capacity = kMaxPagesPerBatch);
  struct DataSlot {
    MutableByteView ciphertext;  // kPageSize bytes to fill
    MutableByteView tag;         // kTagSize bytes to fill
  };
  // Errc::kInvalidArgument when full or the index is out of range.
  Result<DataSlot> add_data(uint64_t index, uint64_t nonce);
  // Returns the kTagSize-byte tag slot.
  Result<MutableByteView> add_zero_run(uint64_t first, uint32_t run, uint64_t nonce);
  uint32_t count() const { return count_; }
  bool full() const { return count_ == capacity_; }
  // Errc::kInvalidArgument if empty.
  Status finish();

 private:
  std::vector<uint8_t>& out_;
  size_t start_;
  uint32_t capacity_;
  uint32_t count_ = 0;
  bool finished_ = false;
};

struct PageRequest {
  uint64_t first = 0;
  uint32_t count = 1;  // 1..kMaxPagesPerRequest; first + count <= kMaxHeapPages
};
Status encode_page_request(const PageRequest& r, std::vector<uint8_t>& out);
Result<PageRequest> decode_page_request(ByteView payload);

struct ErrorInfo {
  uint32_t code = 0;    // an Errc value, informational
  std::string message;  // <= kMaxErrorMessage bytes
};
// Truncates a longer message to kMaxErrorMessage bytes (an error report must never fail).
void encode_error(const ErrorInfo& e, std::vector<uint8_t>& out);
Result<ErrorInfo> decode_error(ByteView payload);

// STATS: the payload is the JSON text itself (<= kMaxStatsText, no NUL bytes). The codec does
// not parse JSON (it is shared with the enclave side); consumers do.
Status encode_stats(std::string_view json, std::vector<uint8_t>& out);
Result<std::string_view> decode_stats(ByteView payload);

// Runs the typed decoder for the header's type over `payload` and checks the header's flags.
Status validate_payload(const FrameHeader& h, ByteView payload);

// ---------------------------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------------------------

// Appends frames to a buffer with consecutive sequence numbers (one encoder per direction).
// Zero-copy use: size_t m = enc.begin(type, flags, buf); <append payload to buf>; enc.finish(m,
// buf). finish() validates the whole frame (validate_payload) before consuming a sequence number:
// an encoder never emits a frame the decoder would refuse. On error the buffer is cut back to `m`.
class FrameEncoder {
 public:
  explicit FrameEncoder(uint64_t first_seq = 0) : next_seq_(first_seq) {}
  size_t begin(FrameType type, uint16_t flags, std::vector<uint8_t>& out);
  Status finish(size_t mark, std::vector<uint8_t>& out);
  // Drops an open frame (e.g. its payload encoder failed): cuts `out` back to `mark`.
  void abandon(size_t mark, std::vector<uint8_t>& out);
  // begin + copy payload + finish.
  Status append(FrameType type, uint16_t flags, ByteView payload, std::vector<uint8_t>& out);
  uint64_t next_seq() const { return next_seq_; }

 private:
  uint64_t next_seq_;
  FrameType pending_type_ = FrameType::kHello;
  uint16_t pending_flags_ = 0;
  bool open_ = false;
};

struct Frame {
  FrameHeader header;
  uint64_t offset = 0;  // stream offset of the header
  ByteView payload;     // valid until the next feed()/next() on the reader
};

// Reassembles frames from a byte stream delivered in arbitrary chunks. It checks each header
// as soon as its 24 bytes are in (so an oversized length is refused before the payload is
// waited for or buffered), enforces consecutive sequence numbers, and (by default) validates
// each payload with its typed decoder. Errors are sticky and name the stream offset.
class FrameReader {
 public:
  explicit FrameReader(uint64_t first_seq = 0, bool validate_payloads = true)
      : next_seq_(first_seq), validate_(validate_payloads) {}
  // Offsets (Frame::offset, error messages) count from `offset` instead of 0, e.g. the size of
  // a capture header. Only before the first feed().
  void set_start_offset(uint64_t offset) {
    if (buf_.empty() && pos_ == 0) base_offset_ = offset;
  }
  // Appends bytes. Callers bound their reads with wanted() to keep the buffer at one frame.
  void feed(ByteView chunk);
  // true: `out` holds the next frame. false: more bytes are needed. Error: the stream is bad.
  Result<bool> next(Frame& out);
  // Call at end of stream: Errc::kFormat ("truncated ...") if a partial frame is buffered.
  Status finish() const;
  // Bytes still needed to complete the frame being assembled (>= 1 until a frame is ready).
  size_t wanted() const;
  uint64_t offset() const { return base_offset_ + pos_; }  // stream offset of the next frame
  uint64_t next_seq() const { return next_seq_; }
  size_t buffered() const { return buf_.size() - pos_ - release_; }  // not yet handed out
  bool failed() const { return error_.has_value(); }

 private:
  Error fail(Errc code, std::string msg);
  std::vector<uint8_t> buf_;
  size_t pos_ = 0;            // start of the unconsumed bytes in buf_
  uint64_t base_offset_ = 0;  // stream offset of buf_[0]
  size_t release_ = 0;        // bytes of the frame handed out by the last next()
  uint64_t next_seq_;
  bool validate_;
  std::optional<FrameHeader> pending_;  // validated header of the frame being assembled
  std::optional<Error> error_;
};

// ---------------------------------------------------------------------------------------------
// Capture files: the raw bytes of one direction, optionally after a 16-byte header
//   0 "CMGCAP01"   8 u32 version = 1   12 u32 direction (Direction)
// ---------------------------------------------------------------------------------------------
inline constexpr size_t kCaptureHeaderSize = 16;
inline constexpr uint32_t kCaptureVersion = 1;
struct CaptureHeader {
  uint32_t version = kCaptureVersion;
  Direction direction = Direction::kUnknown;
};
std::array<uint8_t, kCaptureHeaderSize> encode_capture_header(Direction d);
// nullopt if `first_bytes` does not start with the capture magic (a bare stream); an error if
// it does but the rest is invalid or too short.
Result<std::optional<CaptureHeader>> decode_capture_header(ByteView first_bytes);

// ---------------------------------------------------------------------------------------------
// AEAD helpers for the enclaves (no crypto here: they only lay out bytes)
// ---------------------------------------------------------------------------------------------
// Which record an AEAD operation protects; goes into the AAD.
enum class RecordKind : uint8_t {
  kHeapPage = 1,
  kZeroRun = 2,
  kSmallState = 3,
  kHostState = 4,
  kManifest = 5,
  kCommit = 6,
  kAbort = 7,
  kResumeState = 8,
};
// The record kind for a sealed frame type (FrameType::kSmallState -> kSmallState, ...).
std::optional<RecordKind> record_kind_for(FrameType t);

// 96-bit AES-GCM nonce: 4 zero bytes || u64 counter (LE). Keys are per direction, and each
// sender draws counters from one strictly increasing counter per key, so nonces never repeat.
std::array<uint8_t, kNonceSize> gcm_nonce(uint64_t counter);

// AAD, 48 bytes:
//   0 "CMGAAD01"  8 migration id (16)  24 u8 kind  25 u8 wire version  26 u16 0
//  28 u32 epoch  32 u64 index  40 u32 count  44 u32 section
inline constexpr size_t kAadSize = 48;
using Aad = std::array<uint8_t, kAadSize>;
using MigrationId = std::span<const uint8_t, kMigrationIdSize>;
// Heap pages: index = page index; count = 1 for DATA, the run length for ZERO; section 0.
Aad page_aad(MigrationId migration_id, uint64_t page_index, uint32_t epoch, PageKind kind,
             uint32_t run = 1);
// Sealed records: index/count/section as carried in the SealedRecord.
Aad record_aad(MigrationId migration_id, RecordKind kind, uint32_t epoch, uint32_t index,
               uint32_t count, uint32_t section);

}  // namespace constmig::wire
