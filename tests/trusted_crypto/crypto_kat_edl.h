// crypto_kat: a test enclave that runs OpenSSL (constmig_trusted_crypto) INSIDE the enclave image
// and reports what it saw. ECALLs and OCALLs are declared once, here, for both sides.
#pragma once

#include <cstddef>
#include <cstdint>

#define CRYPTO_KAT_EDL(ECALL, OCALL)                                                             \
  ECALL(kat_run, "out: u32 n, then n x (str32 name, u8 passed, str32 detail)")                   \
  ECALL(aead_roundtrip,                                                                          \
        "in: u32 bytes (1..1 MiB); out: u8 roundtrip ok, u32 n, then n x (str32 case, "          \
        "u8 rejected as kSecurity with the output wiped)")                                       \
  ECALL(x25519_agree,                                                                            \
        "out: u8 both sides derive the same secret, u8 a third key gives another secret, "       \
        "u8 low-order peer keys (0, 1) are refused")                                             \
  ECALL(random_distinct,                                                                         \
        "out: 2 x 32 bytes from two random_bytes calls, with a reseed_rng() between them")       \
  ECALL(verify_quote,                                                                            \
        "in: 32-byte raw Ed25519 platform public key, then an encoded quote (208 bytes); "       \
        "verifies the signature over the signed prefix; error if it does not verify")            \
  ECALL(aead_bench, "in: u32 records of 4 KiB; out: u64 seal_ns, u64 open_ns (untrusted clock)") \
  ECALL(shims_run,                                                                               \
        "checks of the in-image libc shims that do real work (thread-specific data, gmtime_r, "  \
        "qsort, strdup); out: same report format as kat_run")

namespace crypto_kat {
// Layout of an encoded quote (src/platform/host_quote.h; the host test static_asserts these):
// the Ed25519 signature covers bytes [0, kQuoteSignedSize) and is the last 64 bytes.
inline constexpr size_t kQuoteSize = 208;
inline constexpr size_t kQuoteSignedSize = 144;
inline constexpr uint32_t kMaxRoundtripBytes = 1u << 20;
inline constexpr uint32_t kMaxBenchRecords = 1u << 20;
inline constexpr size_t kRecordSize = 4096;
}  // namespace crypto_kat
