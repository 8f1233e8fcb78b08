// ConstMigLib migration core (TRUSTED). See enclave_migration.h.
#include "trusted/migration/enclave_migration.h"

#include <array>
#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <vector>

#include "common/bytes.h"
#include "common/enclave_abi.h"
#include "common/quote_format.h"
#include "common/wire_format.h"
#include "trusted/access/enclave_access_tracker.h"
#include "trusted/crypto/enclave_crypto.h"
#include "trusted/enclave_runtime.h"
#include "trusted/migration/small_state_format.h"

namespace constmig::trusted::mig {
namespace {

namespace wire = constmig::wire;
namespace crypto = constmig::trusted::crypto;
namespace at = constmig::trusted::at;
using Key32 = std::array<uint8_t, 32>;

constexpr uint32_t kFirstEpoch = 1;
constexpr size_t kMaxTrustKeys = 1024;

// One migration's state. Lives in the per-instance arena; pointed to by an instance global.
struct Context {
  std::mutex mu;  // serialises state transitions; page export/import run concurrently
  std::atomic<uint32_t> state{abi::kMigRunning};
  wire::Role role = wire::Role::kSource;
  wire::Mode mode = wire::Mode::kStopAndCopy;
  std::string app_name;
  std::optional<crypto::X25519KeyPair> kp;
  std::vector<uint8_t> own_binding;  // our HELLO with the quote zeroed
  std::array<uint8_t, 16> mig_id{};
  Key32 k_s2t{}, k_t2s{}, confirm_own{}, confirm_peer{};
  // Epoch of the keys in use (page and record AADs carry it). A live-mode recovery after a lost
  // connection (MigResume*) moves both enclaves to fresh keys and a greater epoch; page export
  // and import hold keys_mu shared, a key switch holds it exclusively.
  uint32_t epoch = kFirstEpoch;
  std::shared_mutex keys_mu;
  std::optional<crypto::X25519KeyPair> resume_kp;  // source: our half of a pending recovery
  std::vector<uint8_t> resume_own;                 // source: our RESUME without its MAC
  uint32_t resume_proposed = kFirstEpoch;          // source: highest epoch proposed so far
  std::atomic<uint64_t> nonce_send{0};             // counter for the key we send with
  // Last nonce counter accepted per receive direction is not needed: each record is
  // identified by (kind, index) in its AAD and accepted at most once (bitmaps / states).
  std::unique_ptr<crypto::Aead> aead_slots_seal[abi::kMaxThreadSlots];
  std::unique_ptr<crypto::Aead> aead_slots_open[abi::kMaxThreadSlots];
  std::mutex aead_mu;
  // Heap layout of this migration.
  uint64_t pages = 0, heap_top = 0;
  // Per page: bit 0 = done (exported on the source, installed on the target), bit 1 = zero.
  std::unique_ptr<std::atomic<uint8_t>[]> page_bits;
  uint64_t page_bits_cap = 0;  // entries allocated (one per page of this enclave's heap limit)
  // Target: bit i of word i/64 = page i decrypted, verified and written (set after the write,
  // release order). The Access Tracker's checks read it (trusted/access).
  std::unique_ptr<std::atomic<uint64_t>[]> restored_words;
  std::atomic<uint64_t> pages_done{0};
  bool small_state_done = false, host_state_done = false;
  std::mutex fail_mu;
  std::string fail_reason;  // the first reason this target refused (FAILED)
};

CONSTMIG_INSTANCE Context* g_ctx = nullptr;
CONSTMIG_INSTANCE std::atomic<int64_t> g_app_inflight{0};
CONSTMIG_INSTANCE std::mutex g_ctx_mu;

Context& ctx() {
  std::lock_guard lk(g_ctx_mu);
  if (g_ctx == nullptr) g_ctx = new Context();  // instance arena (caller holds the scope)
  return *g_ctx;
}

const char* state_name(uint32_t s) {
  switch (s) {
    case abi::kMigRunning:
      return "running";
    case abi::kMigHandshake:
      return "handshake";
    case abi::kMigKeyed:
      return "keyed";
    case abi::kMigFrozen:
      return "frozen";
    case abi::kMigImporting:
      return "importing";
    case abi::kMigDead:
      return "dead";
    case abi::kMigFailed:
      return "failed";
    case abi::kMigLive:
      return "live";
  }
  return "?";
}

struct Call {
  uint32_t slot;
  ByteView in;
  std::vector<uint8_t>& out;
  std::string& err;
};

// A target receiving: IMPORTING (stop-and-copy, app refused) or LIVE (ConstMig, app runs).
bool receiving(const Context& m) {
  uint32_t s = m.state;
  return m.role == wire::Role::kTarget && (s == abi::kMigImporting || s == abi::kMigLive);
}

int32_t fail(Call& c, int32_t code, std::string msg) {
  c.err = std::move(msg);
  return code;
}
int32_t fail(Call& c, const Error& e) {
  c.err = e.message;
  return e.code == Errc::kSecurity || e.code == Errc::kFormat ? abi::kEcallBadInput
                                                              : abi::kEcallInternal;
}

// Moving to FAILED on the target: it will never run the app on what it received.
int32_t fail_target(Context& m, Call& c, std::string msg) {
  if (m.role == wire::Role::kTarget) {
    std::lock_guard lk(m.fail_mu);
    if (m.fail_reason.empty()) m.fail_reason = msg;
    m.state = abi::kMigFailed;
  }
  return fail(c, abi::kEcallBadInput, "migration refused: " + msg);
}

// A target that already refused answers every later call with its first reason (concurrent
// workers then all report the real cause, not "wrong state").
bool already_failed(Context& m, Call& c, int32_t* rc) {
  if (m.role != wire::Role::kTarget || m.state != abi::kMigFailed) return false;
  std::lock_guard lk(m.fail_mu);
  *rc = fail(c, abi::kEcallBadInput, "migration refused: " + m.fail_reason);
  return true;
}

const Key32& send_key(const Context& m) {
  return m.role == wire::Role::kSource ? m.k_s2t : m.k_t2s;
}
const Key32& recv_key(const Context& m) {
  return m.role == wire::Role::kSource ? m.k_t2s : m.k_s2t;
}

Result<crypto::Aead*> slot_aead(Context& m, uint32_t slot, bool seal) {
  auto& arr = seal ? m.aead_slots_seal : m.aead_slots_open;
  if (slot >= abi::kMaxThreadSlots) return make_error(Errc::kInvalidArgument, "bad slot");
  std::lock_guard lk(m.aead_mu);
  if (!arr[slot]) {
    auto a = crypto::Aead::create(seal ? send_key(m) : recv_key(m));
    if (!a.ok()) return a.take_error();
    arr[slot] = std::make_unique<crypto::Aead>(std::move(a).value());
  }
  return arr[slot].get();
}

// Seal one record of a sealed frame type and encode its payload.
Status seal_record(Context& m, uint32_t slot, wire::FrameType type, ByteView plaintext,
                   std::vector<uint8_t>& out) {
  auto kind = wire::record_kind_for(type);
  if (!kind) return make_error(Errc::kInternal, "not a sealed frame type");
  CM_ASSIGN_OR_RETURN(crypto::Aead * aead, slot_aead(m, slot, true));
  uint64_t nonce = m.nonce_send.fetch_add(1) + 1;
  wire::Aad aad = wire::record_aad(m.mig_id, *kind, m.epoch, 0, 1, 0);
  std::vector<uint8_t> ct(plaintext.size());
  std::array<uint8_t, 16> tag{};
  CM_TRY(aead->seal(wire::gcm_nonce(nonce), aad, plaintext, ct.data(), tag));
  wire::SealedRecord r;
  r.nonce = nonce;
  r.ciphertext = ct;
  r.tag = tag;
  return wire::encode_sealed(type, r, out);
}

Result<std::vector<uint8_t>> open_record(Context& m, uint32_t slot, wire::FrameType type,
                                         ByteView payload) {
  CM_ASSIGN_OR_RETURN(wire::SealedRecord r, wire::decode_sealed(type, payload));
  auto kind = wire::record_kind_for(type);
  if (!kind || r.index != 0 || r.count != 1 || r.section != 0) {
    return make_error(Errc::kSecurity,
                      "unexpected record numbering in " + wire::frame_type_name(type));
  }
  CM_ASSIGN_OR_RETURN(crypto::Aead * aead, slot_aead(m, slot, false));
  wire::Aad aad = wire::record_aad(m.mig_id, *kind, m.epoch, 0, 1, 0);
  std::vector<uint8_t> pt(r.ciphertext.size());
  std::array<uint8_t, 16> tag{};
  std::memcpy(tag.data(), r.tag.data(), tag.size());
  Status st = aead->open(wire::gcm_nonce(r.nonce), aad, r.ciphertext, pt.data(), tag);
  if (!st.ok()) {
    return make_error(Errc::kSecurity, wire::frame_type_name(type) +
                                           " record failed authentication (tampered, replayed "
                                           "from another migration, or wrong keys)");
  }
  return pt;
}

Key32 token_plaintext(const Context& m, const char* what) {
  std::vector<uint8_t> b(what, what + std::strlen(what));
  b.insert(b.end(), m.mig_id.begin(), m.mig_id.end());
  return crypto::sha256(b);
}

bool ct_equal(ByteView a, ByteView b) {
  if (a.size() != b.size()) return false;
  uint8_t d = 0;
  for (size_t i = 0; i < a.size(); ++i) d |= a[i] ^ b[i];
  return d == 0;
}

// Drops every thread slot's AEAD context (they hold the keys in use; made again on demand).
void reset_aeads(Context& m) {
  std::lock_guard lk(m.aead_mu);
  for (auto& a : m.aead_slots_seal) a.reset();
  for (auto& a : m.aead_slots_open) a.reset();
}

void wipe_keys(Context& m) {
  crypto::wipe(m.k_s2t);
  crypto::wipe(m.k_t2s);
  crypto::wipe(m.confirm_own);
  crypto::wipe(m.confirm_peer);
  m.kp.reset();
  reset_aeads(m);
}

// ---- handshake ----------------------------------------------------------------------------

int32_t mig_hello(Context& m, Call& c) {
  ByteReader r(c.in);
  uint8_t role = r.u8(), mode = r.u8();
  std::string_view app = r.str32(wire::kMaxAppName);
  if (!r.at_end() || (role != 1 && role != 2) || (mode != 1 && mode != 2) || app.empty()) {
    return fail(c, abi::kEcallBadInput, "MigHello: expected u8 role, u8 mode, app name");
  }
  std::lock_guard lk(m.mu);
  uint32_t s = m.state;
  if (s != abi::kMigRunning && s != abi::kMigHandshake && s != abi::kMigKeyed) {
    return fail(c, abi::kEcallRefused,
                std::string("cannot start a migration: enclave is ") + state_name(s));
  }
  if (s == abi::kMigKeyed && m.role == wire::Role::kSource) {
    return fail(c, abi::kEcallRefused,
                "this source enclave is already bound to a migration target; reset it first");
  }
  if (auto st = crypto::init(); !st.ok()) return fail(c, st.error());
  auto kp = crypto::x25519_generate();
  if (!kp.ok()) return fail(c, kp.error());
  m.kp = std::move(kp).value();
  m.role = static_cast<wire::Role>(role);
  m.mode = static_cast<wire::Mode>(mode);
  m.app_name.assign(app);
  const abi::BootPage& bp = boot_page();
  wire::Hello h;
  h.role = m.role;
  h.mode = m.mode;
  h.thread_slots = bp.thread_slots;
  h.heap_limit = bp.heap_limit;
  h.x25519_public = m.kp->pub;
  if (auto st = crypto::random_bytes(h.nonce); !st.ok()) return fail(c, st.error());
  h.app_name = m.app_name;
  m.own_binding.clear();
  if (auto st = wire::encode_hello_for_binding(h, m.own_binding); !st.ok())
    return fail(c, st.error());
  Key32 digest = crypto::sha256(m.own_binding);
  std::vector<uint8_t> hello;
  if (auto st = wire::encode_hello(h, hello); !st.ok()) return fail(c, st.error());
  ByteWriter w(c.out);
  w.u32(static_cast<uint32_t>(hello.size()));
  w.bytes(hello);
  std::array<uint8_t, 64> rd{};
  std::memcpy(rd.data(), digest.data(), digest.size());
  w.bytes(rd);
  m.state = abi::kMigHandshake;
  return abi::kEcallOk;
}

int32_t mig_peer(Context& m, Call& c) {
  ByteReader r(c.in);
  uint32_t n = r.u32();
  ByteView peer_bytes = r.bytes(n <= wire::kHelloSize ? n : 0);
  uint32_t nkeys = r.u32();
  if (!r.ok() || n != wire::kHelloSize || nkeys == 0 || nkeys > kMaxTrustKeys ||
      r.remaining() != nkeys * 32ull) {
    return fail(c, abi::kEcallBadInput,
                "MigPeer: expected the peer's HELLO and 1.." + std::to_string(kMaxTrustKeys) +
                    " trusted platform keys");
  }
  std::lock_guard lk(m.mu);
  if (m.state != abi::kMigHandshake) {
    return fail(
        c, abi::kEcallRefused,
        std::string("MigPeer: no handshake in progress (enclave is ") + state_name(m.state) + ")");
  }
  auto peer = wire::decode_hello(peer_bytes);
  if (!peer.ok()) return fail_target(m, c, "peer HELLO: " + peer.error().message);
  if (peer->role == m.role) return fail_target(m, c, "the peer claims our own role");
  if (peer->mode != m.mode) {
    return fail_target(m, c,
                       std::string("the peer wants mode ") +
                           std::string(wire::mode_name(peer->mode)) + ", we run " +
                           std::string(wire::mode_name(m.mode)));
  }
  if (peer->app_name != m.app_name) {
    return fail_target(m, c,
                       "the peer runs app '" + peer->app_name + "', we run '" + m.app_name + "'");
  }
  // The quote: signed by a trusted platform, for our own measurement, binding this HELLO.
  auto q = quote::decode_quote(peer->quote);
  if (!q.ok()) return fail_target(m, c, q.error().message);
  std::optional<std::array<uint8_t, 32>> signer;
  for (uint32_t i = 0; i < nkeys; ++i) {
    ByteView k = r.bytes(32);
    if (crypto::sha256(k) == q->platform_key_id) {
      signer.emplace();
      std::memcpy(signer->data(), k.data(), 32);
      break;
    }
  }
  if (!signer) {
    return fail_target(m, c,
                       "the peer's quote is signed by a platform that is not in the "
                       "trust store (add its key with `constmig platform --export-key`)");
  }
  ByteView signed_part(peer->quote.data(), quote::kQuoteSignedSize);
  if (!crypto::ed25519_verify(*signer, signed_part, q->signature).ok()) {
    return fail_target(m, c, "the peer's quote signature is invalid");
  }
  if (!ct_equal(q->measurement, ByteView(boot_page().measurement, 32))) {
    return fail_target(m, c,
                       "the peer enclave's measurement differs from ours: both hosts "
                       "must run the same enclave image");
  }
  std::vector<uint8_t> peer_binding;
  if (auto st = wire::encode_hello_for_binding(*peer, peer_binding); !st.ok()) {
    return fail_target(m, c, st.error().message);
  }
  Key32 pd = crypto::sha256(peer_binding);
  std::array<uint8_t, 32> zero{};
  if (!ct_equal(ByteView(q->report_data.data(), 32), pd) ||
      !ct_equal(ByteView(q->report_data.data() + 32, 32), zero)) {
    return fail_target(m, c, "the peer's quote does not bind its HELLO (key, nonce, role)");
  }
  // Key schedule. Transcript = source binding || target binding.
  auto shared = crypto::x25519_shared(*m.kp, peer->x25519_public);
  if (!shared.ok()) return fail_target(m, c, shared.error().message);
  std::vector<uint8_t> transcript;
  const auto& src = m.role == wire::Role::kSource ? m.own_binding : peer_binding;
  const auto& tgt = m.role == wire::Role::kSource ? peer_binding : m.own_binding;
  transcript.insert(transcript.end(), src.begin(), src.end());
  transcript.insert(transcript.end(), tgt.begin(), tgt.end());
  Key32 th = crypto::sha256(transcript);
  std::array<uint8_t, 32 + 32 + 16 + 32 + 32> okm{};
  static const char kInfo[] = "constmig v1 migration keys";
  Status st = crypto::hkdf_sha256(*shared, th, as_bytes_view(kInfo), okm);
  crypto::wipe(*shared);
  if (!st.ok()) return fail(c, st.error());
  std::memcpy(m.k_s2t.data(), okm.data(), 32);
  std::memcpy(m.k_t2s.data(), okm.data() + 32, 32);
  std::memcpy(m.mig_id.data(), okm.data() + 64, 16);
  const uint8_t* conf_src = okm.data() + 80;
  const uint8_t* conf_tgt = okm.data() + 112;
  bool src_role = m.role == wire::Role::kSource;
  std::memcpy(m.confirm_own.data(), src_role ? conf_src : conf_tgt, 32);
  std::memcpy(m.confirm_peer.data(), src_role ? conf_tgt : conf_src, 32);
  crypto::wipe(okm);
  m.nonce_send = 0;
  // A new migration starts at the first epoch (an earlier one may have recovered to a later one).
  m.epoch = kFirstEpoch;
  m.resume_proposed = kFirstEpoch;
  m.resume_kp.reset();
  c.out.assign(m.confirm_own.begin(), m.confirm_own.end());
  return abi::kEcallOk;
}

int32_t mig_confirm(Context& m, Call& c) {
  std::lock_guard lk(m.mu);
  if (m.state != abi::kMigHandshake || c.in.size() != 32) {
    return fail(c, abi::kEcallRefused, "MigConfirm: no handshake awaiting confirmation");
  }
  if (!ct_equal(c.in, m.confirm_peer)) {
    return fail_target(m, c, "key confirmation mismatch: the peer derived other keys");
  }
  // The page bitmap, for every page this heap may ever have, allocated and touched now: first
  // touches of secret memory are slow (~15 us a page), and the stop phase must not pay them.
  uint64_t cap = boot_page().heap_limit / abi::kPageSize;
  m.page_bits.reset(new std::atomic<uint8_t>[cap ? cap : 1]());
  m.page_bits_cap = cap;
  m.restored_words.reset(new std::atomic<uint64_t>[cap / 64 + 1]());
  m.state = abi::kMigKeyed;
  return abi::kEcallOk;
}

// ---- source ---------------------------------------------------------------------------------

// The bitmap for m.pages pages (allocated at key confirmation, all zero).
Status use_page_bits(Context& m) {
  if (!m.page_bits || m.pages > m.page_bits_cap) {
    return make_error(Errc::kInternal, "page bitmap smaller than the heap layout");
  }
  return ok_status();
}

int32_t mig_freeze(Context& m, Call& c) {
  std::lock_guard lk(m.mu);
  if (m.role != wire::Role::kSource || m.state != abi::kMigKeyed) {
    return fail(
        c, abi::kEcallRefused,
        std::string("MigFreeze: needs a keyed source (enclave is ") + state_name(m.state) + ")");
  }
  // The snapshot. No app ECALL runs (the host held them; the enclave refuses them from here
  // on), and this ECALL allocates only from the instance arena.
  m.state = abi::kMigFrozen;
  if (int64_t n = g_app_inflight.load(); n != 0) {
    m.state = abi::kMigKeyed;
    return fail(c, abi::kEcallRefused,
                std::to_string(n) +
                    " app ECALLs are still running: the host must hold new "
                    "ECALLs and wait for in-flight ones before the freeze");
  }
  abi::EnclaveLayout l = layout();
  uint64_t glen = l.globals_end - l.globals_begin;
  std::vector<uint8_t> pt;
  pt.reserve(kSmallStateHeader + glen);
  SmallState snap;
  snap.globals_begin = l.globals_begin;
  snap.globals_len = glen;
  snap.heap_base = l.heap_base;
  snap.heap_top = l.heap_top;
  snap.heap_limit = boot_page().heap_limit;
  snap.globals = ByteView(reinterpret_cast<const uint8_t*>(l.globals_begin), glen);
  encode_small_state(snap, pt);
  m.heap_top = l.heap_top;
  m.pages = l.heap_top / abi::kPageSize;
  if (auto st = use_page_bits(m); !st.ok()) {
    m.state = abi::kMigKeyed;
    return fail(c, st.error());
  }
  m.pages_done = 0;
  std::vector<uint8_t> rec;
  if (auto st = seal_record(m, c.slot, wire::FrameType::kSmallState, pt, rec); !st.ok()) {
    m.state = abi::kMigKeyed;
    return fail(c, st.error());
  }
  crypto::wipe(pt);
  ByteWriter o(c.out);
  o.u64(m.pages);
  o.u64(m.heap_top);
  o.bytes(rec);
  return abi::kEcallOk;
}

int32_t mig_seal_host_state(Context& m, Call& c) {
  if (m.role != wire::Role::kSource || m.state != abi::kMigFrozen) {
    return fail(c, abi::kEcallRefused, "MigSealHostState: source must be frozen");
  }
  if (c.in.size() > wire::kMaxHostStateCiphertext) {
    return fail(c, abi::kEcallBadInput, "host state larger than 16 MiB");
  }
  if (auto st = seal_record(m, c.slot, wire::FrameType::kHostState, c.in, c.out); !st.ok()) {
    return fail(c, st.error());
  }
  return abi::kEcallOk;
}

bool page_is_zero(const uint8_t* p) {
  uint64_t acc = 0;
  for (size_t i = 0; i < abi::kPageSize; i += 8) {
    uint64_t v;
    std::memcpy(&v, p + i, 8);
    acc |= v;
  }
  return acc == 0;
}

// Claims page i for export: true if this call is the first to take it. Every page is exported
// at most once per migration, whichever path asks first (heap stream or urgent request), so the
// target's "each page arrives once" rule holds in live mode too.
bool claim(Context& m, uint64_t i) {
  return (m.page_bits[i].fetch_or(1) & 1) == 0;
}

int32_t mig_export_pages(Context& m, Call& c) {
  ByteReader r(c.in);
  uint64_t first = r.u64();
  uint32_t count = r.u32();
  if (!r.at_end() || count == 0 || count > wire::kMaxPagesPerBatch) {
    return fail(c, abi::kEcallBadInput, "MigExportPages: expected u64 first, u32 count 1..1024");
  }
  if (m.role != wire::Role::kSource || m.state != abi::kMigFrozen) {
    return fail(c, abi::kEcallRefused, "MigExportPages: source must be frozen");
  }
  if (first >= m.pages || count > m.pages - first) {
    return fail(c, abi::kEcallBadInput, "MigExportPages: pages outside the heap layout");
  }
  std::shared_lock keys(m.keys_mu);
  auto aead = slot_aead(m, c.slot, true);
  if (!aead.ok()) return fail(c, aead.error());
  const uint8_t* heap_base = reinterpret_cast<const uint8_t*>(boot_page().heap_base);
  const uint64_t end = first + count;
  wire::PagesBuilder b(c.out, count);
  auto seal_zero_run = [&](uint64_t at, uint32_t run) -> Status {
    uint64_t nonce = m.nonce_send.fetch_add(1) + 1;
    CM_ASSIGN_OR_RETURN(MutableByteView tag, b.add_zero_run(at, run, nonce));
    wire::Aad aad = wire::page_aad(m.mig_id, at, m.epoch, wire::PageKind::kZero, run);
    std::array<uint8_t, 16> t{};
    CM_TRY((*aead)->seal(wire::gcm_nonce(nonce), aad, {}, nullptr, t));
    std::memcpy(tag.data(), t.data(), t.size());
    for (uint32_t k = 0; k < run; ++k) m.page_bits[at + k].fetch_or(2);
    m.pages_done += run;
    return ok_status();
  };
  auto seal_data = [&](uint64_t at) -> Status {
    uint64_t nonce = m.nonce_send.fetch_add(1) + 1;
    CM_ASSIGN_OR_RETURN(wire::PagesBuilder::DataSlot slot, b.add_data(at, nonce));
    wire::Aad aad = wire::page_aad(m.mig_id, at, m.epoch, wire::PageKind::kData);
    std::array<uint8_t, 16> t{};
    CM_TRY((*aead)->seal(wire::gcm_nonce(nonce), aad,
                         ByteView(heap_base + at * abi::kPageSize, abi::kPageSize),
                         slot.ciphertext.data(), t));
    std::memcpy(slot.tag.data(), t.data(), t.size());
    m.pages_done += 1;
    return ok_status();
  };
  for (uint64_t i = first; i < end;) {
    if (!claim(m, i)) {  // already sent (by the stream or an urgent request)
      ++i;
      continue;
    }
    if (!page_is_zero(heap_base + i * abi::kPageSize)) {
      if (auto st = seal_data(i); !st.ok()) return fail(c, st.error());
      ++i;
      continue;
    }
    // A run of zero pages we own; a claimed non-zero page ends it and goes out as data.
    uint32_t run = 1;
    std::optional<uint64_t> data_after;
    while (i + run < end && run < wire::kMaxZeroRun) {
      uint64_t j = i + run;
      if (!claim(m, j)) break;
      if (!page_is_zero(heap_base + j * abi::kPageSize)) {
        data_after = j;
        break;
      }
      ++run;
    }
    if (auto st = seal_zero_run(i, run); !st.ok()) return fail(c, st.error());
    i += run;
    if (data_after) {
      if (auto st = seal_data(*data_after); !st.ok()) return fail(c, st.error());
      i = *data_after + 1;
    }  // else the next iteration skips the page that ended the run (claimed by someone else)
  }
  if (b.count() == 0) {  // everything was already sent: an empty answer, nothing to frame
    c.out.clear();
    return abi::kEcallOk;
  }
  if (auto st = b.finish(); !st.ok()) return fail(c, st.error());
  return abi::kEcallOk;
}

Key32 zero_digest(const Context& m) {
  // SHA-256 over the zero-page bitmap (bit i = page i was sent as zero): binds the kinds.
  std::vector<uint8_t> bits((m.pages + 7) / 8);
  for (uint64_t i = 0; i < m.pages; ++i) {
    if (m.page_bits[i].load() & 2) bits[i / 8] |= static_cast<uint8_t>(1u << (i % 8));
  }
  return crypto::sha256(bits);
}

int32_t mig_manifest(Context& m, Call& c) {
  std::lock_guard lk(m.mu);
  if (m.role != wire::Role::kSource || m.state != abi::kMigFrozen) {
    return fail(c, abi::kEcallRefused, "MigManifest: source must be frozen");
  }
  for (uint64_t i = 0; i < m.pages; ++i) {
    if (!(m.page_bits[i].load() & 1)) {
      return fail(c, abi::kEcallRefused,
                  "MigManifest: page " + std::to_string(i) + " was never exported");
    }
  }
  wire::ManifestBody body;
  body.page_count = m.pages;
  body.heap_top = m.heap_top;
  body.epoch = m.epoch;
  body.digest = zero_digest(m);
  auto bytes = wire::encode_manifest_body(body);
  if (auto st = seal_record(m, c.slot, wire::FrameType::kManifest, bytes, c.out); !st.ok()) {
    return fail(c, st.error());
  }
  return abi::kEcallOk;
}

// A frozen source accepts the target's verdict: a sealed COMMIT or ABORT token for this
// migration moves it to `next` (DEAD or RUNNING) and wipes the keys.
int32_t accept_verdict(Context& m, Call& c, wire::FrameType type, const char* label,
                       const char* what, uint32_t next) {
  std::lock_guard lk(m.mu);
  if (m.role != wire::Role::kSource || m.state != abi::kMigFrozen) {
    return fail(c, abi::kEcallRefused, std::string(what) + ": source must be frozen");
  }
  auto pt = open_record(m, c.slot, type, c.in);
  if (!pt.ok()) return fail(c, pt.error());
  if (!ct_equal(*pt, token_plaintext(m, label))) {
    return fail(c, abi::kEcallBadInput,
                std::string(type == wire::FrameType::kCommit ? "commit" : "abort") +
                    " token does not match this migration");
  }
  m.state = next;
  wipe_keys(m);
  return abi::kEcallOk;
}

int32_t mig_commit(Context& m, Call& c) {
  return accept_verdict(m, c, wire::FrameType::kCommit, "constmig-commit", "MigCommit",
                        abi::kMigDead);
}

int32_t mig_abort(Context& m, Call& c) {
  return accept_verdict(m, c, wire::FrameType::kAbort, "constmig-abort", "MigAbort",
                        abi::kMigRunning);
}

int32_t mig_force_resume(Context& m, Call& c) {
  std::lock_guard lk(m.mu);
  if (m.role != wire::Role::kSource || m.state != abi::kMigFrozen) {
    return fail(c, abi::kEcallRefused, "MigForceResume: only a frozen source can resume");
  }
  log("WARNING: operator forced this source enclave to resume without an abort token; if the "
      "target committed, two copies of this enclave now run");
  m.state = abi::kMigRunning;
  wipe_keys(m);
  return abi::kEcallOk;
}

int32_t mig_reset(Context& m, Call& c) {
  std::lock_guard lk(m.mu);
  uint32_t s = m.state;
  if (s != abi::kMigHandshake && s != abi::kMigKeyed && s != abi::kMigRunning) {
    return fail(c, abi::kEcallRefused,
                std::string("MigReset: cannot reset an enclave that is ") + state_name(s));
  }
  m.state = abi::kMigRunning;
  wipe_keys(m);
  return abi::kEcallOk;
}

// ---- target ---------------------------------------------------------------------------------

int32_t mig_import_small(Context& m, Call& c) {
  std::lock_guard lk(m.mu);
  if (m.role != wire::Role::kTarget || m.state != abi::kMigKeyed || m.small_state_done) {
    return fail(c, abi::kEcallRefused, "MigImportSmall: needs a keyed target, once");
  }
  m.state = abi::kMigImporting;
  auto pt = open_record(m, c.slot, wire::FrameType::kSmallState, c.in);
  if (!pt.ok()) return fail_target(m, c, pt.error().message);
  abi::EnclaveLayout l = layout();
  auto small =
      parse_small_state(*pt, SmallStateExpect{l.globals_begin, l.globals_end - l.globals_begin,
                                              l.heap_base, boot_page().heap_limit});
  if (!small.ok()) return fail_target(m, c, small.error().message);
  const uint64_t glen = small->globals_len, htop = small->heap_top;
  // Install the globals: from here this instance holds the source's app state (the heap
  // object included). Our own migration context lives in the instance arena and survives.
  std::memcpy(reinterpret_cast<void*>(l.globals_begin), small->globals.data(), glen);
  crypto::wipe(*pt);
  m.heap_top = htop;
  m.pages = htop / abi::kPageSize;
  if (auto st = use_page_bits(m); !st.ok()) return fail_target(m, c, st.error().message);
  m.pages_done = 0;
  m.small_state_done = true;
  ByteWriter w(c.out);
  w.u64(m.pages);
  w.u64(m.heap_top);
  return abi::kEcallOk;
}

int32_t mig_open_host_state(Context& m, Call& c) {
  std::lock_guard lk(m.mu);
  if (int32_t rc; already_failed(m, c, &rc)) return rc;
  if (!receiving(m) || m.host_state_done) {
    return fail(c, abi::kEcallRefused, "MigOpenHostState: needs an importing target, once");
  }
  auto pt = open_record(m, c.slot, wire::FrameType::kHostState, c.in);
  if (!pt.ok()) return fail_target(m, c, pt.error().message);
  m.host_state_done = true;
  c.out = std::move(pt).value();
  return abi::kEcallOk;
}

int32_t mig_import_pages(Context& m, Call& c) {
  if (int32_t rc; already_failed(m, c, &rc)) return rc;
  if (!receiving(m)) {
    return fail(c, abi::kEcallRefused, "MigImportPages: needs an importing target");
  }
  std::vector<wire::PageRecord> recs;
  if (auto st = wire::decode_pages(c.in, recs); !st.ok()) {
    return fail_target(m, c, st.error().message);
  }
  std::shared_lock keys(m.keys_mu);
  auto aead = slot_aead(m, c.slot, false);
  if (!aead.ok()) return fail(c, aead.error());
  // Live mode: the app view of a page not yet restored is inaccessible (Fault Tracker); write
  // through the restore window (the same memory, always writable). The app cannot see a page
  // before the host opens it, which it does only after this ECALL reported it installed.
  const abi::BootPage& bp = boot_page();
  uint8_t* heap_base = reinterpret_cast<uint8_t*>(
      m.mode == wire::Mode::kConstMig ? bp.image_base + abi::kRestoreOffset : bp.heap_base);
  std::array<uint8_t, abi::kPageSize> buf;
  uint32_t installed = 0;
  std::vector<std::pair<uint64_t, uint32_t>> runs;  // what this call installed, for the host
  runs.reserve(recs.size());
  for (const auto& p : recs) {
    if (p.index >= m.pages || p.run > m.pages - p.index) {
      return fail_target(
          m, c, "page " + std::to_string(p.index) + " is outside the source's heap layout");
    }
    std::array<uint8_t, 16> tag{};
    std::memcpy(tag.data(), p.tag.data(), tag.size());
    if (p.kind == wire::PageKind::kZero) {
      wire::Aad aad = wire::page_aad(m.mig_id, p.index, m.epoch, wire::PageKind::kZero, p.run);
      if (!(*aead)->open(wire::gcm_nonce(p.nonce), aad, {}, nullptr, tag).ok()) {
        return fail_target(
            m, c, "zero run at page " + std::to_string(p.index) + " failed authentication");
      }
    } else {
      wire::Aad aad = wire::page_aad(m.mig_id, p.index, m.epoch, wire::PageKind::kData);
      if (!(*aead)->open(wire::gcm_nonce(p.nonce), aad, p.ciphertext, buf.data(), tag).ok()) {
        return fail_target(m, c,
                           "page " + std::to_string(p.index) +
                               " failed authentication (tampered, replayed from another "
                               "migration, or moved)");
      }
    }
    // Accept each page at most once.
    for (uint32_t k = 0; k < p.run; ++k) {
      uint8_t bits = p.kind == wire::PageKind::kZero ? 3 : 1;
      if (m.page_bits[p.index + k].fetch_or(bits) & 1) {
        return fail_target(
            m, c, "page " + std::to_string(p.index + k) + " arrived twice (duplicate or replay)");
      }
    }
    uint8_t* dst = heap_base + p.index * abi::kPageSize;
    if (p.kind == wire::PageKind::kZero) {
      std::memset(dst, 0, static_cast<size_t>(p.run) * abi::kPageSize);
    } else {
      std::memcpy(dst, buf.data(), abi::kPageSize);
    }
    for (uint64_t i = p.index; i < p.index + p.run; ++i) {
      m.restored_words[i / 64].fetch_or(uint64_t{1} << (i % 64), std::memory_order_release);
    }
    installed += p.run;
    m.pages_done += p.run;
    runs.emplace_back(p.index, p.run);
  }
  crypto::wipe(buf);
  ByteWriter w(c.out);
  w.u32(installed);
  w.u32(static_cast<uint32_t>(runs.size()));
  for (auto& [first, run] : runs) {
    w.u64(first);
    w.u32(run);
  }
  return abi::kEcallOk;
}

int32_t mig_finish(Context& m, Call& c) {
  std::lock_guard lk(m.mu);
  if (int32_t rc; already_failed(m, c, &rc)) return rc;
  if (!receiving(m)) {
    return fail(c, abi::kEcallRefused, "MigFinish: needs an importing target");
  }
  auto pt = open_record(m, c.slot, wire::FrameType::kManifest, c.in);
  if (!pt.ok()) return fail_target(m, c, pt.error().message);
  auto body = wire::decode_manifest_body(*pt);
  if (!body.ok()) return fail_target(m, c, body.error().message);
  if (body->page_count != m.pages || body->heap_top != m.heap_top || body->epoch != m.epoch) {
    return fail_target(m, c, "manifest does not match the small state's heap layout");
  }
  uint64_t missing = 0, first_missing = 0;
  for (uint64_t i = 0; i < m.pages; ++i) {
    if (!(m.page_bits[i].load() & 1)) {
      if (missing++ == 0) first_missing = i;
    }
  }
  if (missing) {
    return fail_target(m, c,
                       std::to_string(missing) + " heap pages never arrived (first: " +
                           std::to_string(first_missing) + ")");
  }
  if (!ct_equal(body->digest, zero_digest(m))) {
    return fail_target(m, c, "manifest digest mismatch: pages were re-labelled in transit");
  }
  if (!m.small_state_done) return fail_target(m, c, "no small state was received");
  Key32 tok = token_plaintext(m, "constmig-commit");
  if (auto st = seal_record(m, c.slot, wire::FrameType::kCommit, tok, c.out); !st.ok()) {
    return fail_target(m, c, st.error().message);
  }
  at::deactivate();  // every page is in: checks take the fast path from now on
  m.state = abi::kMigRunning;
  wipe_keys(m);
  return abi::kEcallOk;
}

int32_t mig_make_abort(Context& m, Call& c) {
  std::lock_guard lk(m.mu);
  uint32_t s = m.state;
  if (m.role != wire::Role::kTarget || (s != abi::kMigKeyed && s != abi::kMigImporting &&
                                        s != abi::kMigLive && s != abi::kMigFailed)) {
    return fail(c, abi::kEcallRefused,
                std::string("MigMakeAbort: no abort possible (enclave is ") + state_name(s) +
                    "; a committed target never aborts)");
  }
  Key32 tok = token_plaintext(m, "constmig-abort");
  if (auto st = seal_record(m, c.slot, wire::FrameType::kAbort, tok, c.out); !st.ok()) {
    return fail(c, st.error());
  }
  m.state = abi::kMigFailed;
  return abi::kEcallOk;
}

int32_t mig_go_live(Context& m, Call& c) {
  std::lock_guard lk(m.mu);
  if (int32_t rc; already_failed(m, c, &rc)) return rc;
  if (m.role != wire::Role::kTarget || m.state != abi::kMigImporting ||
      m.mode != wire::Mode::kConstMig || !m.small_state_done || !m.host_state_done) {
    return fail(c, abi::kEcallRefused,
                std::string("MigGoLive: needs a ConstMig target that imported its small and host "
                            "state (enclave is ") +
                    state_name(m.state) + ")");
  }
  uint8_t tracker = c.in.empty() ? 0 : c.in[0];
  if (c.in.size() > 1 || tracker > 1) {
    return fail(c, abi::kEcallBadInput, "MigGoLive: input is [u8 tracker (0 or 1)]");
  }
  if (tracker == 1) {
    // The Access Tracker: the enclave's own bitmap guards the heap, whatever the host maps.
    if (!at::instrumented()) {
      return fail_target(m, c,
                         "this enclave image was not compiled with the Access Tracker pass "
                         "(constmig_add_enclave ... TRACKER access): use --tracker fault or uffd, "
                         "or rebuild the app");
    }
    // The flag may go 0 -> 1 only while no app code runs in this instance: instrumented code
    // runs a loop entered with the flag clear unchecked to its end (loop versioning) and checks
    // hoisted before a loop (docs/access_tracker.md). app_enter admits no app ECALL in IMPORTING;
    // refused entries bump the count only for an instant, so it is re-read a while.
    int64_t inflight = g_app_inflight.load();
    for (int i = 0; i < (1 << 16) && inflight != 0; ++i) {
      __builtin_ia32_pause();
      inflight = g_app_inflight.load();
    }
    if (inflight != 0) {
      return fail(c, abi::kEcallRefused,
                  "MigGoLive: " + std::to_string(inflight) +
                      " app ECALLs are running in this target: the host must hold app ECALLs "
                      "until the target is live");
    }
    static_assert(sizeof(std::atomic<uint64_t>) == sizeof(uint64_t));
    at::activate(boot_page().heap_base, m.pages * abi::kPageSize,
                 reinterpret_cast<const uint64_t*>(m.restored_words.get()));
  }
  m.state = abi::kMigLive;
  return abi::kEcallOk;
}

// ---- live-mode recovery (docs/format.md "Recovery") -----------------------------------------
//
// After a lost connection in the heap stream the source stays FROZEN and the target LIVE; the
// hosts connect again and the two enclaves of the same migration move to fresh keys and a
// greater epoch: a new X25519 exchange whose RESUME messages are MACed with a key derived from
// the current keys (only these two enclaves hold them: no new quote needed). The target then
// reports, sealed under the new keys, which pages it has; the source exports again exactly the
// pages it had claimed that never arrived. Frames of an older epoch no longer open.

Key32 resume_mac(const Context& m, ByteView body, wire::Role from) {
  std::array<uint8_t, 64> ikm{};
  std::memcpy(ikm.data(), m.k_s2t.data(), 32);
  std::memcpy(ikm.data() + 32, m.k_t2s.data(), 32);
  const char* info = from == wire::Role::kSource ? "constmig v1 resume mac source"
                                                 : "constmig v1 resume mac target";
  Key32 mac{};
  std::vector<uint8_t> salt(m.mig_id.begin(), m.mig_id.end());
  salt.insert(salt.end(), body.begin(), body.end());
  Status st = crypto::hkdf_sha256(ikm, salt, as_bytes_view(info), mac);
  crypto::wipe(ikm);
  if (!st.ok()) mac.fill(0);
  return mac;
}

// New keys for the epoch: HKDF over the new shared secret, salted with the current keys and both
// RESUME bodies (source's first). Switches keys and epoch; caller holds m.mu and keys_mu.
Status switch_keys(Context& m, const crypto::X25519KeyPair& own, ByteView peer_pub,
                   ByteView src_body, ByteView tgt_body, uint32_t epoch) {
  if (peer_pub.size() != 32) return make_error(Errc::kSecurity, "RESUME: bad key");
  std::array<uint8_t, 32> pk{};
  std::memcpy(pk.data(), peer_pub.data(), 32);
  CM_ASSIGN_OR_RETURN(auto shared, crypto::x25519_shared(own, pk));
  std::vector<uint8_t> salt;
  salt.insert(salt.end(), m.k_s2t.begin(), m.k_s2t.end());
  salt.insert(salt.end(), m.k_t2s.begin(), m.k_t2s.end());
  salt.insert(salt.end(), src_body.begin(), src_body.end());
  salt.insert(salt.end(), tgt_body.begin(), tgt_body.end());
  Key32 sh = crypto::sha256(salt);
  crypto::wipe(salt);
  std::array<uint8_t, 64> okm{};
  static const char kInfo[] = "constmig v1 resume keys";
  Status st = crypto::hkdf_sha256(shared, sh, as_bytes_view(kInfo), okm);
  crypto::wipe(shared);
  if (!st.ok()) return st;
  std::memcpy(m.k_s2t.data(), okm.data(), 32);
  std::memcpy(m.k_t2s.data(), okm.data() + 32, 32);
  crypto::wipe(okm);
  reset_aeads(m);
  m.nonce_send = 0;  // a new key: counters start again
  m.epoch = epoch;
  return ok_status();
}

// Source: FROZEN in a live migration. out: RESUME payload proposing a new epoch.
int32_t mig_resume_hello(Context& m, Call& c) {
  std::lock_guard lk(m.mu);
  if (m.role != wire::Role::kSource || m.state != abi::kMigFrozen ||
      m.mode != wire::Mode::kConstMig || !c.in.empty()) {
    return fail(c, abi::kEcallRefused,
                "MigResumeHello: only a frozen live-migration source recovers a connection");
  }
  if (m.resume_proposed >= wire::kMaxEpoch) {
    return fail(c, abi::kEcallRefused, "MigResumeHello: too many recoveries of this migration");
  }
  auto kp = crypto::x25519_generate();
  if (!kp.ok()) return fail(c, kp.error());
  wire::Resume r;
  r.role = wire::Role::kSource;
  r.mig_id = m.mig_id;
  r.epoch = std::max(m.resume_proposed, m.epoch) + 1;
  r.x25519_public = kp->pub;
  if (auto st = crypto::random_bytes(r.nonce); !st.ok()) return fail(c, st.error());
  m.resume_own = wire::resume_mac_input(r);
  r.mac = resume_mac(m, m.resume_own, wire::Role::kSource);
  m.resume_proposed = r.epoch;
  m.resume_kp = std::move(kp).value();
  if (auto st = wire::encode_resume(r, c.out); !st.ok()) return fail(c, st.error());
  return abi::kEcallOk;
}

// Target: LIVE. in: the source's RESUME. Switches to the new epoch's keys. out: u32 n, our
// RESUME payload (n bytes), RESUME_STATE payload (sealed under the new keys: u64 pages, bitmap).
int32_t mig_resume_accept(Context& m, Call& c) {
  std::lock_guard lk(m.mu);
  if (int32_t rc; already_failed(m, c, &rc)) return rc;
  if (m.role != wire::Role::kTarget || m.state != abi::kMigLive) {
    return fail(c, abi::kEcallRefused,
                std::string("MigResumeAccept: needs a live target (enclave is ") +
                    state_name(m.state) + ")");
  }
  auto peer = wire::decode_resume(c.in);
  if (!peer.ok()) return fail(c, abi::kEcallBadInput, peer.error().message);
  std::vector<uint8_t> peer_body = wire::resume_mac_input(*peer);
  // Refusals here do not fail the target: a stale or forged RESUME must not end the migration.
  if (peer->role != wire::Role::kSource || !ct_equal(peer->mig_id, m.mig_id)) {
    return fail(c, abi::kEcallBadInput, "RESUME is not from this migration's source");
  }
  if (!ct_equal(peer->mac, resume_mac(m, peer_body, wire::Role::kSource))) {
    return fail(c, abi::kEcallBadInput,
                "RESUME failed authentication (not from the enclave this migration started with)");
  }
  if (peer->epoch <= m.epoch) {
    return fail(c, abi::kEcallBadInput,
                "RESUME for epoch " + std::to_string(peer->epoch) + ", but epoch " +
                    std::to_string(m.epoch) + " is already in use (a replayed RESUME)");
  }
  auto kp = crypto::x25519_generate();
  if (!kp.ok()) return fail(c, kp.error());
  wire::Resume r;
  r.role = wire::Role::kTarget;
  r.mig_id = m.mig_id;
  r.epoch = peer->epoch;
  r.x25519_public = kp->pub;
  if (auto st = crypto::random_bytes(r.nonce); !st.ok()) return fail(c, st.error());
  std::vector<uint8_t> own_body = wire::resume_mac_input(r);
  r.mac = resume_mac(m, own_body, wire::Role::kTarget);
  std::vector<uint8_t> own;
  if (auto st = wire::encode_resume(r, own); !st.ok()) return fail(c, st.error());
  std::unique_lock keys(m.keys_mu);  // no page import runs while the keys change
  if (auto st = switch_keys(m, *kp, peer->x25519_public, peer_body, own_body, r.epoch); !st.ok()) {
    return fail_target(m, c, "recovery key exchange: " + st.error().message);
  }
  std::vector<uint8_t> pt(8 + (m.pages + 7) / 8, 0);
  std::memcpy(pt.data(), &m.pages, 8);
  for (uint64_t i = 0; i < m.pages; ++i) {
    if (m.page_bits[i].load() & 1) pt[8 + i / 8] |= static_cast<uint8_t>(1u << (i % 8));
  }
  ByteWriter w(c.out);
  w.u32(static_cast<uint32_t>(own.size()));
  w.bytes(own);
  if (auto st = seal_record(m, c.slot, wire::FrameType::kResumeState, pt, c.out); !st.ok()) {
    return fail_target(m, c, st.error().message);
  }
  return abi::kEcallOk;
}

// Source: in u32 n, the target's RESUME, RESUME_STATE payload. Switches to the new epoch and
// releases every page it had claimed that the target does not have. out: u64 pages to resend.
int32_t mig_resume_confirm(Context& m, Call& c) {
  std::lock_guard lk(m.mu);
  if (m.role != wire::Role::kSource || m.state != abi::kMigFrozen || !m.resume_kp) {
    return fail(c, abi::kEcallRefused, "MigResumeConfirm: no recovery in progress");
  }
  ByteReader r(c.in);
  uint32_t n = r.u32();
  ByteView resume = r.bytes(n == wire::kResumeSize ? n : 0);
  ByteView state = r.bytes(r.ok() ? r.remaining() : 0);
  if (!r.ok() || n != wire::kResumeSize) {
    return fail(c, abi::kEcallBadInput, "MigResumeConfirm: expected u32 n, RESUME, RESUME_STATE");
  }
  auto peer = wire::decode_resume(resume);
  if (!peer.ok()) return fail(c, abi::kEcallBadInput, peer.error().message);
  std::vector<uint8_t> peer_body = wire::resume_mac_input(*peer);
  if (peer->role != wire::Role::kTarget || !ct_equal(peer->mig_id, m.mig_id) ||
      peer->epoch != m.resume_proposed ||
      !ct_equal(peer->mac, resume_mac(m, peer_body, wire::Role::kTarget))) {
    return fail(c, abi::kEcallBadInput,
                "the target's RESUME failed authentication or answers another attempt");
  }
  std::unique_lock keys(m.keys_mu);  // no page export runs while the keys change
  // Keep the current keys until the target's state opened under the new ones.
  Key32 old_s2t = m.k_s2t, old_t2s = m.k_t2s;
  uint32_t old_epoch = m.epoch;
  auto restore_old = [&] {
    m.k_s2t = old_s2t;
    m.k_t2s = old_t2s;
    m.epoch = old_epoch;
    reset_aeads(m);
  };
  if (auto st =
          switch_keys(m, *m.resume_kp, peer->x25519_public, m.resume_own, peer_body, peer->epoch);
      !st.ok()) {
    restore_old();
    return fail(c, st.error());
  }
  auto pt = open_record(m, c.slot, wire::FrameType::kResumeState, state);
  if (!pt.ok() || pt->size() < 8) {
    restore_old();
    return fail(c, abi::kEcallBadInput,
                "the target's RESUME_STATE failed authentication: " +
                    (pt.ok() ? std::string("too short") : pt.error().message));
  }
  uint64_t pages = 0;
  std::memcpy(&pages, pt->data(), 8);
  if (pages != m.pages || pt->size() != 8 + (pages + 7) / 8) {
    restore_old();
    return fail(c, abi::kEcallBadInput, "the target's page bitmap does not match the heap layout");
  }
  const uint8_t* have = pt->data() + 8;
  for (uint64_t i = 0; i < m.pages; ++i) {
    bool has = (have[i / 8] >> (i % 8)) & 1;
    if (has && !(m.page_bits[i].load() & 1)) {
      restore_old();
      return fail(c, abi::kEcallBadInput,
                  "the target reports page " + std::to_string(i) + ", which was never sent");
    }
  }
  uint64_t resend = 0;
  for (uint64_t i = 0; i < m.pages; ++i) {
    if (!((have[i / 8] >> (i % 8)) & 1) && (m.page_bits[i].load() & 1)) {
      m.page_bits[i].store(0);  // claimed, sealed, lost on the way: export it again
      ++resend;
    }
  }
  m.pages_done -= std::min<uint64_t>(m.pages_done, resend);
  crypto::wipe(old_s2t);
  crypto::wipe(old_t2s);
  m.resume_kp.reset();
  ByteWriter w(c.out);
  w.u64(resend);
  return abi::kEcallOk;
}

int32_t mig_status(Context& m, Call& c) {
  ByteWriter w(c.out);
  w.u32(m.state);
  w.u32(static_cast<uint32_t>(m.role));
  w.bytes(m.mig_id);
  w.u64(m.pages);
  w.u64(m.pages_done);
  return abi::kEcallOk;
}

}  // namespace

void app_exit() {
  g_app_inflight.fetch_sub(1);
}

bool app_enter(const char** why) {
  g_app_inflight.fetch_add(1);  // seq_cst: pairs with the freeze's store-then-load
  uint32_t s = abi::kMigRunning;
  bool source = true;
  {
    std::lock_guard lk(g_ctx_mu);
    if (g_ctx == nullptr) return true;
    s = g_ctx->state;
    source = g_ctx->role == wire::Role::kSource;
  }
  if (s == abi::kMigRunning || (source && (s == abi::kMigHandshake || s == abi::kMigKeyed)) ||
      (!source && s == abi::kMigLive)) {
    return true;
  }
  g_app_inflight.fetch_sub(1);
  if (why) {
    switch (s) {
      case abi::kMigFrozen:
        *why = "enclave is frozen for migration";
        break;
      case abi::kMigDead:
        *why = "enclave migrated away (committed): it never runs again";
        break;
      case abi::kMigFailed:
        *why = "enclave refused the incoming migration state: it never runs the app";
        break;
      default:
        *why = "enclave is receiving a migration";
    }
  }
  return false;
}

int32_t dispatch(uint32_t slot, uint32_t id, const uint8_t* in, size_t in_len, uint8_t* out,
                 size_t out_cap, size_t* out_len) {
  InstanceAllocScope scope;
  std::string err;
  std::vector<uint8_t> result;
  int32_t st = abi::kEcallOk;
  try {
    std::vector<uint8_t> in_copy(in, in + in_len);  // [in]: one read of host memory
    Context& m = ctx();
    Call c{slot, ByteView(in_copy.data(), in_copy.size()), result, err};
    switch (id) {
      case abi::kEcallMigHello:
        st = mig_hello(m, c);
        break;
      case abi::kEcallMigPeer:
        st = mig_peer(m, c);
        break;
      case abi::kEcallMigConfirm:
        st = mig_confirm(m, c);
        break;
      case abi::kEcallMigFreeze:
        st = mig_freeze(m, c);
        break;
      case abi::kEcallMigSealHostState:
        st = mig_seal_host_state(m, c);
        break;
      case abi::kEcallMigExportPages:
        st = mig_export_pages(m, c);
        break;
      case abi::kEcallMigManifest:
        st = mig_manifest(m, c);
        break;
      case abi::kEcallMigImportSmall:
        st = mig_import_small(m, c);
        break;
      case abi::kEcallMigOpenHostState:
        st = mig_open_host_state(m, c);
        break;
      case abi::kEcallMigImportPages:
        st = mig_import_pages(m, c);
        break;
      case abi::kEcallMigFinish:
        st = mig_finish(m, c);
        break;
      case abi::kEcallMigMakeAbort:
        st = mig_make_abort(m, c);
        break;
      case abi::kEcallMigCommit:
        st = mig_commit(m, c);
        break;
      case abi::kEcallMigAbort:
        st = mig_abort(m, c);
        break;
      case abi::kEcallMigForceResume:
        st = mig_force_resume(m, c);
        break;
      case abi::kEcallMigReset:
        st = mig_reset(m, c);
        break;
      case abi::kEcallMigStatus:
        st = mig_status(m, c);
        break;
      case abi::kEcallMigGoLive:
        st = mig_go_live(m, c);
        break;
      case abi::kEcallMigResumeHello:
        st = mig_resume_hello(m, c);
        break;
      case abi::kEcallMigResumeAccept:
        st = mig_resume_accept(m, c);
        break;
      case abi::kEcallMigResumeConfirm:
        st = mig_resume_confirm(m, c);
        break;
      default:
        st = abi::kEcallUnknownId;
        err = "unknown migration ECALL";
    }
    crypto::wipe(in_copy);
  } catch (const std::bad_alloc&) {
    st = abi::kEcallOutOfMemory;
    err = "enclave instance arena exhausted during migration";
  } catch (const std::exception& e) {
    st = abi::kEcallInternal;
    err = std::string("exception in migration: ") + e.what();
  }
  if (st == abi::kEcallOk) return deliver_output(result, slot, out, out_cap, out_len);
  size_t n = err.size() + 1 <= out_cap ? err.size() : (out_cap ? out_cap - 1 : 0);
  if (out_cap) {
    std::memcpy(out, err.data(), n);
    out[n] = 0;
  }
  *out_len = out_cap ? n + 1 : 0;
  return st;
}

}  // namespace constmig::trusted::mig
