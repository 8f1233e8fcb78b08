// In-enclave cryptography over OpenSSL 3 EVP. See enclave_crypto.h.
//
// TRUSTED code: the standard library, src/common and OpenSSL's headers only. OpenSSL's errors are
// turned into Status messages and its per-thread error queue is cleared after every failure, so
// a failed verification does not leave state behind for the next ECALL on that thread.
#include "trusted/crypto/enclave_crypto.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <string>

#include "trusted/enclave_runtime.h"

namespace constmig::trusted::crypto {
namespace {

// The most bytes handed to one EVP call (its lengths are int).
constexpr size_t kMaxEvpChunk = size_t{1} << 30;
// OpenSSL 3.0's HKDF keeps `info` in a fixed 1024-byte buffer (HKDF_MAXBUF).
constexpr size_t kMaxHkdfInfo = 1024;

// "what failed: OpenSSL's reason", and the thread's error queue emptied.
std::string openssl_error(const char* what) {
  std::string msg = what;
  unsigned long e = ERR_peek_last_error();
  if (e != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    msg += " (";
    msg += buf;
    msg += ")";
  }
  ERR_clear_error();
  return msg;
}

Error ossl_fail(Errc code, const char* what) {
  return make_error(code, openssl_error(what));
}

struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* c) const { EVP_PKEY_CTX_free(c); }
};
struct KdfCtxFree {
  void operator()(EVP_KDF_CTX* c) const { EVP_KDF_CTX_free(c); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, EvpPkeyDeleter>;

// Algorithms fetched once from the default provider (fetching takes a global lock and a
// lookup). They live on the enclave heap and are never freed.
const EVP_MD* md_sha256() {
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return md;
}
const EVP_CIPHER* cipher_aes256gcm() {
  static EVP_CIPHER* c = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  return c;
}
EVP_KDF* kdf_hkdf() {
  static EVP_KDF* k = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  return k;
}

[[noreturn]] void fatal(const char* what) {
  log(std::string("constmig crypto: fatal: ") + openssl_error(what));
  std::abort();
}

}  // namespace

void EvpPkeyDeleter::operator()(evp_pkey_st* k) const {
  EVP_PKEY_free(k);
}

namespace {
// OpenSSL's globals live in the per-instance .cm_instance section (never migrated), so its
// allocations must live in per-instance memory too: otherwise a migration target's OpenSSL
// would point into heap pages that the import overwrites.
void* ossl_malloc(size_t n, const char*, int) {
  return constmig::trusted::instance_heap().malloc(n ? n : 1);
}
void* ossl_realloc(void* p, size_t n, const char*, int) {
  if (p == nullptr) return constmig::trusted::instance_heap().malloc(n ? n : 1);
  return constmig::trusted::route_realloc(p, n ? n : 1);
}
void ossl_free(void* p, const char*, int) {
  constmig::trusted::route_free(p);
}
}  // namespace

Status init() {
  // Before OpenSSL's first allocation (the function-local static below runs once, first).
  static const bool mem_ok = CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free) == 1;
  // Thread-safe one-time initialisation (function-local static). No config file, no atexit
  // handler in the host: the enclave's OpenSSL is never cleaned up (the image stays mapped).
  // Error strings are loaded so that failures read as words, not numbers.
  static const bool ok = OPENSSL_init_crypto(OPENSSL_INIT_NO_LOAD_CONFIG | OPENSSL_INIT_NO_ATEXIT |
                                                 OPENSSL_INIT_LOAD_CRYPTO_STRINGS,
                                             nullptr) == 1 &&
                         md_sha256() != nullptr && cipher_aes256gcm() != nullptr &&
                         kdf_hkdf() != nullptr;
  if (!mem_ok) {
    return make_error(Errc::kInternal,
                      "OpenSSL allocated before the enclave installed its memory functions: "
                      "call constmig::trusted::crypto::init() before any other OpenSSL use");
  }
  if (!ok) {
    return make_error(Errc::kInternal,
                      "OpenSSL failed to initialise inside the enclave (default provider, "
                      "SHA-256, AES-256-GCM or HKDF unavailable): the image's crypto is unusable");
  }
  return ok_status();
}

Status random_bytes(MutableByteView out) {
  CM_TRY(init());
  while (!out.empty()) {
    size_t n = out.size() < kMaxEvpChunk ? out.size() : kMaxEvpChunk;
    if (RAND_bytes(out.data(), static_cast<int>(n)) != 1) {
      return ossl_fail(Errc::kInternal,
                       "the enclave's random generator failed (RDSEED/RDRAND gave no entropy)");
    }
    out = out.subspan(n);
  }
  return ok_status();
}

Status reseed_rng() {
  CM_TRY(init());
  EVP_RAND_CTX* primary = RAND_get0_primary(nullptr);
  if (primary == nullptr || EVP_RAND_reseed(primary, 1, nullptr, 0, nullptr, 0) != 1)
    return ossl_fail(Errc::kInternal, "reseeding the enclave's random generator failed");
  return ok_status();
}

void wipe(MutableByteView b) {
  if (!b.empty()) OPENSSL_cleanse(b.data(), b.size());
}

std::array<uint8_t, 32> sha256(ByteView data) {
  if (!init().ok()) fatal("OpenSSL initialisation failed");
  std::array<uint8_t, 32> out{};
  unsigned int len = 0;
  // EVP_Digest can only fail on allocation failure: an enclave without heap cannot continue.
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, md_sha256(), nullptr) != 1 ||
      len != out.size()) {
    fatal("SHA-256 failed");
  }
  return out;
}

Status hkdf_sha256(ByteView ikm, ByteView salt, ByteView info, MutableByteView out) {
  CM_TRY(init());
  if (out.empty() || out.size() > 255 * 32) {
    return make_error(Errc::kInvalidArgument, "HKDF-SHA256 output must be 1..8160 bytes, not " +
                                                  std::to_string(out.size()));
  }
  if (info.size() > kMaxHkdfInfo) {
    return make_error(Errc::kInvalidArgument,
                      "HKDF info is " + std::to_string(info.size()) + " bytes, more than " +
                          std::to_string(kMaxHkdfInfo) + " (hash long contexts first)");
  }
  std::unique_ptr<EVP_KDF_CTX, KdfCtxFree> ctx(EVP_KDF_CTX_new(kdf_hkdf()));
  if (!ctx) return ossl_fail(Errc::kResourceExhausted, "HKDF context allocation failed");
  char digest[] = "SHA256";
  OSSL_PARAM params[5];
  size_t n = 0;
  params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
  // OpenSSL copies the octet strings; it does not write through these pointers.
  params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
                                                  const_cast<uint8_t*>(ikm.data()), ikm.size());
  if (!salt.empty()) {
    params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
                                                    const_cast<uint8_t*>(salt.data()), salt.size());
  }
  if (!info.empty()) {
    params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
                                                    const_cast<uint8_t*>(info.data()), info.size());
  }
  params[n] = OSSL_PARAM_construct_end();
  if (EVP_KDF_derive(ctx.get(), out.data(), out.size(), params) != 1) {
    wipe(out);
    return ossl_fail(Errc::kInternal, "HKDF-SHA256 derivation failed");
  }
  return ok_status();
}

Status ed25519_verify(std::span<const uint8_t, 32> pubkey_raw, ByteView msg,
                      std::span<const uint8_t, 64> sig) {
  CM_TRY(init());
  PkeyPtr key(EVP_PKEY_new_raw_public_key_ex(nullptr, "ED25519", nullptr, pubkey_raw.data(),
                                             pubkey_raw.size()));
  if (!key) return ossl_fail(Errc::kInvalidArgument, "not a valid Ed25519 public key");
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> md(EVP_MD_CTX_new());
  if (!md || EVP_DigestVerifyInit_ex(md.get(), nullptr, nullptr, nullptr, nullptr, key.get(),
                                     nullptr) != 1) {
    return ossl_fail(Errc::kInternal, "Ed25519 verification could not be set up");
  }
  int r = EVP_DigestVerify(md.get(), sig.data(), sig.size(), msg.data(), msg.size());
  if (r != 1) {
    ERR_clear_error();
    return make_error(Errc::kSecurity,
                      "Ed25519 signature does not verify under the given public key: the signed "
                      "bytes, the signature or the key were altered (or belong to someone else)");
  }
  return ok_status();
}

namespace {
Result<X25519KeyPair> pair_from_pkey(PkeyPtr pkey) {
  X25519KeyPair kp;
  size_t len = kp.pub.size();
  if (EVP_PKEY_get_raw_public_key(pkey.get(), kp.pub.data(), &len) != 1 || len != kp.pub.size())
    return ossl_fail(Errc::kInternal, "X25519 public key extraction failed");
  kp.priv = std::move(pkey);
  return kp;
}
}  // namespace

Result<X25519KeyPair> x25519_generate() {
  CM_TRY(init());
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(
      EVP_PKEY_CTX_new_from_name(nullptr, "X25519", nullptr));
  EVP_PKEY* raw = nullptr;
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 || EVP_PKEY_generate(ctx.get(), &raw) != 1)
    return ossl_fail(Errc::kInternal, "X25519 key generation failed");
  return pair_from_pkey(PkeyPtr(raw));
}

Result<X25519KeyPair> x25519_from_private(std::span<const uint8_t, 32> priv_raw) {
  CM_TRY(init());
  PkeyPtr pkey(EVP_PKEY_new_raw_private_key_ex(nullptr, "X25519", nullptr, priv_raw.data(),
                                               priv_raw.size()));
  if (!pkey) return ossl_fail(Errc::kInvalidArgument, "not a valid X25519 private key");
  return pair_from_pkey(std::move(pkey));
}

Result<std::array<uint8_t, 32>> x25519_shared(const X25519KeyPair& own,
                                              std::span<const uint8_t, 32> peer_pub) {
  CM_TRY(init());
  if (!own.priv) return make_error(Errc::kInvalidArgument, "X25519 key pair has no private key");
  PkeyPtr peer(
      EVP_PKEY_new_raw_public_key_ex(nullptr, "X25519", nullptr, peer_pub.data(), peer_pub.size()));
  if (!peer) return ossl_fail(Errc::kSecurity, "the peer's X25519 public key is malformed");
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(
      EVP_PKEY_CTX_new_from_pkey(nullptr, own.priv.get(), nullptr));
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1)
    return ossl_fail(Errc::kInternal, "X25519 key agreement could not be set up");
  if (EVP_PKEY_derive_set_peer_ex(ctx.get(), peer.get(), 1) != 1)
    return ossl_fail(Errc::kSecurity, "the peer's X25519 public key was refused");
  std::array<uint8_t, 32> secret{};
  size_t len = secret.size();
  int r = EVP_PKEY_derive(ctx.get(), secret.data(), &len);
  // OpenSSL already fails on an all-zero result; check again rather than rely on it.
  static constexpr std::array<uint8_t, 32> kZero{};
  if (r != 1 || len != secret.size() ||
      CRYPTO_memcmp(secret.data(), kZero.data(), secret.size()) == 0) {
    wipe(secret);
    return ossl_fail(Errc::kSecurity,
                     "X25519 key agreement refused: the peer's public key is a low-order point "
                     "(the shared secret would be all zero), so the peer is not honest");
  }
  return secret;
}

// ---- Aead -------------------------------------------------------------------------------------

struct Aead::State {
  EVP_CIPHER_CTX* ctx = nullptr;
  std::array<uint8_t, kKeySize> key{};  // kept for clone(); wiped with the state
  ~State() {
    EVP_CIPHER_CTX_free(ctx);  // OpenSSL cleanses its GCM key schedule
    OPENSSL_cleanse(key.data(), key.size());
  }
};

Aead::Aead(std::unique_ptr<State> s) : s_(std::move(s)) {}
Aead::Aead(Aead&&) noexcept = default;
Aead& Aead::operator=(Aead&&) noexcept = default;
Aead::~Aead() = default;

Result<Aead> Aead::create(std::span<const uint8_t, kKeySize> key) {
  CM_TRY(init());
  auto s = std::make_unique<State>();
  std::memcpy(s->key.data(), key.data(), kKeySize);
  s->ctx = EVP_CIPHER_CTX_new();
  // Expand the key once; each message then only sets its nonce (and direction).
  if (s->ctx == nullptr ||
      EVP_CipherInit_ex(s->ctx, cipher_aes256gcm(), nullptr, s->key.data(), nullptr, 1) != 1) {
    return ossl_fail(Errc::kInternal, "AES-256-GCM context setup failed");
  }
  return Aead(std::move(s));
}

Result<Aead> Aead::clone() const {
  if (!s_) return make_error(Errc::kState, "Aead used after being moved from");
  return create(s_->key);
}

namespace {
// Feeds `in` (AAD when out == nullptr) to the context in int-sized chunks.
bool update_all(EVP_CIPHER_CTX* ctx, ByteView in, uint8_t* out) {
  size_t done = 0;
  while (done < in.size()) {
    size_t n = in.size() - done < kMaxEvpChunk ? in.size() - done : kMaxEvpChunk;
    int got = 0;
    if (EVP_CipherUpdate(ctx, out ? out + done : nullptr, &got, in.data() + done,
                         static_cast<int>(n)) != 1) {
      return false;
    }
    if (out != nullptr && static_cast<size_t>(got) != n) return false;  // GCM is a stream mode
    done += n;
  }
  return true;
}
}  // namespace

Status Aead::seal(std::span<const uint8_t, kNonceSize> nonce, ByteView aad, ByteView plaintext,
                  uint8_t* out, std::span<uint8_t, kTagSize> tag) {
  if (!s_) return make_error(Errc::kState, "Aead used after being moved from");
  if (out == nullptr && !plaintext.empty())
    return make_error(Errc::kInvalidArgument, "AES-GCM seal: null output buffer");
  EVP_CIPHER_CTX* c = s_->ctx;
  int fin = 0;
  uint8_t dummy[16];
  if (EVP_CipherInit_ex(c, nullptr, nullptr, nullptr, nonce.data(), 1) != 1 ||
      !update_all(c, aad, nullptr) || !update_all(c, plaintext, out) ||
      EVP_CipherFinal_ex(c, dummy, &fin) != 1 ||
      EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, static_cast<int>(kTagSize), tag.data()) != 1) {
    if (out != nullptr && !plaintext.empty()) wipe(MutableByteView(out, plaintext.size()));
    return ossl_fail(Errc::kInternal, "AES-256-GCM seal failed");
  }
  return ok_status();
}

Status Aead::open(std::span<const uint8_t, kNonceSize> nonce, ByteView aad, ByteView ciphertext,
                  uint8_t* out, std::span<const uint8_t, kTagSize> tag) {
  if (!s_) return make_error(Errc::kState, "Aead used after being moved from");
  if (out == nullptr && !ciphertext.empty())
    return make_error(Errc::kInvalidArgument, "AES-GCM open: null output buffer");
  EVP_CIPHER_CTX* c = s_->ctx;
  uint8_t tag_copy[kTagSize];  // EVP_CTRL_AEAD_SET_TAG takes a non-const pointer
  std::memcpy(tag_copy, tag.data(), kTagSize);
  if (EVP_CipherInit_ex(c, nullptr, nullptr, nullptr, nonce.data(), 0) != 1 ||
      !update_all(c, aad, nullptr) || !update_all(c, ciphertext, out) ||
      EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, static_cast<int>(kTagSize), tag_copy) != 1) {
    if (out != nullptr && !ciphertext.empty()) wipe(MutableByteView(out, ciphertext.size()));
    return ossl_fail(Errc::kInternal, "AES-256-GCM open failed");
  }
  int fin = 0;
  uint8_t dummy[16];
  if (EVP_CipherFinal_ex(c, dummy, &fin) != 1) {
    if (out != nullptr && !ciphertext.empty()) wipe(MutableByteView(out, ciphertext.size()));
    ERR_clear_error();
    return make_error(Errc::kSecurity,
                      "AES-256-GCM authentication failed: the ciphertext, tag, associated data or "
                      "nonce was altered, or the wrong key was used; the data was discarded");
  }
  return ok_status();
}

}  // namespace constmig::trusted::crypto
