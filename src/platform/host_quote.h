// UNTRUSTED (host side). Emulated quotes: signed statements "an enclave with this measurement, on
// this platform, said report_data", the per-platform signing key, and the trust store of platform
// public keys that verifies them.
//
// EMULATED SGX PLATFORM. On real SGX an enclave calls EREPORT to get a report (MRENCLAVE,
// attributes, 64 bytes of report data) MAC'd with a CPU key; the Quoting Enclave checks it and
// signs a quote with an attestation key that Intel's provisioning certified (EPID, or ECDSA/DCAP
// with a PCK certificate chain up to Intel's root CA). A verifier checks the certificate chain and
// TCB status (PCS collateral, QvE/QVL), never trusting the host. A real SGX backend would produce
// and check those quotes here instead, behind the same interface.
//
// Here the platform itself (a host process) holds an Ed25519 key (PlatformKey) and signs quotes
// over whatever measurement and report data it is given: the host is trusted to be honest about
// which enclave asked. The trust store (a directory of platform public keys) stands in for Intel's
// root of trust. What this cannot guarantee (the key is readable by the host and root; a
// malicious host can sign anything) is written in docs/security.md.
//
// The quote's wire layout and codec are shared with the enclave side: src/common/quote_format.h.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.h"
#include "common/quote_format.h"
#include "common/result.h"
#include "platform/host_measure.h"

struct evp_pkey_st;  // OpenSSL's EVP_PKEY

namespace constmig::platform {

using PlatformKeyId = quote::PlatformKeyId;

using quote::decode_quote;
using quote::encode_quote;
using quote::kQuoteHeaderSize;
using quote::kQuoteMagic;
using quote::kQuoteSignedSize;
using quote::kQuoteSize;
using quote::kQuoteVersion;
using quote::Quote;

struct EvpPkeyFree {
  void operator()(evp_pkey_st* k) const;
};
using EvpPkeyPtr = std::unique_ptr<evp_pkey_st, EvpPkeyFree>;

// The per-platform signing key (stand-in for Intel's provisioning/attestation key). Ed25519.
class PlatformKey {
 public:
  static Result<PlatformKey> generate();
  // Reads an unencrypted PKCS#8 PEM Ed25519 private key. Refuses a file that group or others can
  // access (Errc::kPermission), like ssh does for private keys.
  static Result<PlatformKey> load(const std::string& pem_path);
  // Loads the key, or if the file does not exist generates one and writes it with mode 0600
  // (creating missing parent directories with mode 0700). Safe against a concurrent creator:
  // the file is published without replacing, and the loser loads the winner's key.
  static Result<PlatformKey> load_or_create(const std::string& pem_path);
  // Writes the private key (PKCS#8 PEM, mode 0600) atomically, replacing an existing file.
  Status save(const std::string& pem_path) const;
  // SubjectPublicKeyInfo PEM ("-----BEGIN PUBLIC KEY-----"), what a trust store holds.
  std::string public_key_pem() const;
  PlatformKeyId key_id() const { return key_id_; }
  Result<Quote> sign_quote(const Measurement& measurement,
                           std::span<const uint8_t, 64> report_data) const;

  PlatformKey(PlatformKey&&) noexcept = default;
  PlatformKey& operator=(PlatformKey&&) noexcept = default;
  PlatformKey(const PlatformKey&) = delete;
  PlatformKey& operator=(const PlatformKey&) = delete;
  ~PlatformKey() = default;

 private:
  PlatformKey(EvpPkeyPtr pkey, const PlatformKeyId& id) : pkey_(std::move(pkey)), key_id_(id) {}
  static Result<PlatformKey> from_pkey(EvpPkeyPtr pkey);
  EvpPkeyPtr pkey_;
  PlatformKeyId key_id_{};
};

// Trusted platform public keys (stand-in for the attestation root of trust).
class TrustStore {
 public:
  TrustStore() = default;  // empty: trusts nobody
  // `path` is a directory whose *.pem files each hold one or more Ed25519 public keys, or a single
  // PEM file with one or more keys. Errc::kNotFound if the path does not exist or holds no key;
  // Errc::kFormat for a file that is not a PEM public key (a private key is refused: it must
  // never be copied to another host).
  static Result<TrustStore> load(const std::string& path);
  // Adds every "PUBLIC KEY" block of `pem` (all or nothing). Duplicates are ignored.
  Status add_public_key_pem(std::string_view pem);
  size_t size() const { return keys_.size(); }
  bool contains(const PlatformKeyId& id) const { return keys_.count(id) != 0; }
  // The raw 32-byte Ed25519 public keys, for enclaves that verify quotes themselves.
  std::vector<std::array<uint8_t, 32>> raw_public_keys() const;
  // Checks, in this order, each failure with its own message (Errc::kSecurity): the platform key
  // is in this store; the signature is valid; the measurement equals `expected`.
  Status verify(const Quote& quote, const Measurement& expected) const;

  TrustStore(TrustStore&&) noexcept = default;
  TrustStore& operator=(TrustStore&&) noexcept = default;
  TrustStore(const TrustStore&) = delete;
  TrustStore& operator=(const TrustStore&) = delete;
  ~TrustStore() = default;

 private:
  Status add_pem(std::string_view pem, const std::string& origin);
  std::map<PlatformKeyId, EvpPkeyPtr> keys_;
  std::string source_ = "(in-memory trust store)";
};

}  // namespace constmig::platform
