// In-enclave cryptography for ConstMigLib: OpenSSL 3 EVP running INSIDE the enclave image.
//
// TRUSTED code. The migration protocol (DESIGN.md §2) needs keys that never leave the enclave:
// the X25519 handshake key, the HKDF-derived directional keys and the AES-256-GCM page keys.
// This module is the only place enclave code touches OpenSSL: a small API over EVP, Result/
// Status errors, no OpenSSL types in this header. Every primitive is OpenSSL's (the project rule:
// never write a primitive yourself); this file only wires them together.
//
// How OpenSSL gets into the image: Debian's static libcrypto.a is linked into the enclave image
// (target constmig_trusted_crypto, src/trusted/crypto/CMakeLists.txt). The libc functions it
// imports that an enclave must not take from the host (randomness, time, files, sockets,
// dynamic loading, thread-specific data, ...) are defined inside the image by
// enclave_libc_shims.cpp; randomness comes from the CPU (RDSEED/RDRAND), like SGX's
// sgx_read_rand. The library is initialised with OPENSSL_INIT_NO_LOAD_CONFIG |
// OPENSSL_INIT_NO_ATEXIT: no openssl.cnf is read from the host and nothing is registered with the
// host's atexit.
//
// Where secrets live: key material is kept in OpenSSL objects on the enclave heap (memfd_secret
// memory), never in these small handle objects, which may sit on a host thread's stack. OpenSSL
// and the functions returning std::array (x25519_shared) do put transient secrets on the stack,
// which is host memory in the emulation (docs/security.md, "Stacks ... are host memory").
//
// Thread safety: the free functions are thread-safe. An Aead (and an X25519KeyPair during
// x25519_shared) must not be used by two threads at once: give each worker its own (Aead::clone).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "common/bytes.h"
#include "common/result.h"

struct evp_pkey_st;        // OpenSSL's EVP_PKEY
struct evp_cipher_ctx_st;  // OpenSSL's EVP_CIPHER_CTX

namespace constmig::trusted::crypto {

// Initialises OpenSSL inside the enclave once (idempotent, thread-safe). Every function below
// calls it; calling it early only moves the one-time cost.
Status init();

// CSPRNG: OpenSSL's DRBG (CTR-DRBG, AES-256), seeded from the CPU's RDSEED/RDRAND.
Status random_bytes(MutableByteView out);

// Forces the DRBG hierarchy to reseed from the CPU before its next output (prediction
// resistance on the primary DRBG; per-thread DRBGs follow their parent's reseed). Call it after
// enclave memory has been restored from another instance (migration, abort-and-resume): the
// DRBG state travelled with the heap and must not produce the same stream twice.
Status reseed_rng();

// Overwrites `b` with zeros in a way the compiler cannot elide (OPENSSL_cleanse).
void wipe(MutableByteView b);

std::array<uint8_t, 32> sha256(ByteView data);

// RFC 5869 HKDF with SHA-256 (extract then expand). `out` is 1..255*32 bytes; `info` at most
// 1024 bytes (OpenSSL 3.0's limit). An empty salt means the RFC's default (32 zero bytes).
Status hkdf_sha256(ByteView ikm, ByteView salt, ByteView info, MutableByteView out);

// Pure Ed25519 (RFC 8032) verification. Errc::kSecurity if the signature does not verify,
// Errc::kInvalidArgument if the public key is not a valid encoding.
Status ed25519_verify(std::span<const uint8_t, 32> pubkey_raw, ByteView msg,
                      std::span<const uint8_t, 64> sig);

struct EvpPkeyDeleter {
  void operator()(evp_pkey_st* k) const;  // EVP_PKEY_free: OpenSSL cleanses the private key
};

// An X25519 key pair. The private key stays inside an OpenSSL EVP_PKEY on the enclave heap and
// is wiped when the pair is destroyed. Move-only.
struct X25519KeyPair {
  std::array<uint8_t, 32> pub{};
  std::unique_ptr<evp_pkey_st, EvpPkeyDeleter> priv;
};

Result<X25519KeyPair> x25519_generate();
// A pair from a known private key (RFC 7748 test vectors; not for production keys).
Result<X25519KeyPair> x25519_from_private(std::span<const uint8_t, 32> priv_raw);
// The shared secret with `peer_pub`. Errc::kSecurity if the peer key is a low-order point (the
// secret would be all zero, RFC 7748 §6.1): such a peer is refused, never used.
Result<std::array<uint8_t, 32>> x25519_shared(const X25519KeyPair& own,
                                              std::span<const uint8_t, 32> peer_pub);

// AES-256-GCM with a 96-bit nonce and a 128-bit tag. One EVP_CIPHER_CTX per object with the key
// schedule expanded once, so sealing a 4 KiB page costs a nonce change, not a key setup. The
// caller guarantees nonces never repeat under one key (the protocol uses counters). Not
// thread-safe: one Aead per thread (clone()). The key copy and OpenSSL's key schedule live on
// the enclave heap and are wiped on destruction.
class Aead {
 public:
  static constexpr size_t kKeySize = 32;
  static constexpr size_t kNonceSize = 12;
  static constexpr size_t kTagSize = 16;

  static Result<Aead> create(std::span<const uint8_t, kKeySize> key);
  // Another Aead with the same key and its own context (for another thread).
  Result<Aead> clone() const;

  // Encrypts `plaintext` into `out` (plaintext.size() bytes; may equal plaintext.data()).
  Status seal(std::span<const uint8_t, kNonceSize> nonce, ByteView aad, ByteView plaintext,
              uint8_t* out, std::span<uint8_t, kTagSize> tag);
  // Decrypts and verifies. On a bad tag: Errc::kSecurity and `out` is zeroed (unauthenticated
  // plaintext is never released).
  Status open(std::span<const uint8_t, kNonceSize> nonce, ByteView aad, ByteView ciphertext,
              uint8_t* out, std::span<const uint8_t, kTagSize> tag);

  Aead(Aead&&) noexcept;
  Aead& operator=(Aead&&) noexcept;
  Aead(const Aead&) = delete;
  Aead& operator=(const Aead&) = delete;
  ~Aead();

 private:
  struct State;
  explicit Aead(std::unique_ptr<State> s);
  std::unique_ptr<State> s_;
};

}  // namespace constmig::trusted::crypto
