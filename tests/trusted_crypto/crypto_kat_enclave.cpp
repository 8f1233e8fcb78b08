// crypto_kat enclave (TRUSTED): known-answer tests and property checks of the in-enclave crypto,
// run inside the enclave image. See crypto_kat_edl.h.
// <pthread.h> is included only to test the POSIX semantics of the image's own
// thread-specific-data functions (src/trusted/crypto/enclave_libc_shims.cpp).
#include <pthread.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "crypto_kat_edl.h"
#include "trusted/crypto/enclave_crypto.h"
#include "trusted/enclave_edl.h"

CONSTMIG_ENCLAVE(crypto_kat, CRYPTO_KAT_EDL)

using constmig::ByteReader;
using constmig::ByteView;
using constmig::ByteWriter;
using constmig::Errc;
using constmig::MutableByteView;
using constmig::trusted::EcallIo;
namespace abi = constmig::abi;
namespace cr = constmig::trusted::crypto;

namespace {

std::vector<uint8_t> unhex(std::string_view h) {
  auto nib = [](char c) -> uint8_t {
    if (c >= '0' && c <= '9') return static_cast<uint8_t>(c - '0');
    return static_cast<uint8_t>(c - 'a' + 10);
  };
  std::vector<uint8_t> out(h.size() / 2);
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = static_cast<uint8_t>(nib(h[2 * i]) << 4 | nib(h[2 * i + 1]));
  return out;
}

std::string hex(ByteView b) {
  static const char* kDigits = "0123456789abcdef";
  std::string s;
  for (uint8_t x : b) {
    s += kDigits[x >> 4];
    s += kDigits[x & 15];
  }
  return s;
}

template <size_t N>
std::array<uint8_t, N> arr(std::string_view h) {
  std::array<uint8_t, N> a{};
  auto v = unhex(h);
  std::memcpy(a.data(), v.data(), v.size() < N ? v.size() : N);
  return a;
}

struct Report {
  struct Item {
    std::string name;
    bool passed;
    std::string detail;
  };
  std::vector<Item> items;

  void expect_hex(const std::string& name, ByteView got, std::string_view want) {
    std::string g = hex(got);
    items.push_back({name, g == want, g == want ? "" : "got " + g + ", want " + std::string(want)});
  }
  void expect_ok(const std::string& name, const constmig::Status& s) {
    items.push_back({name, s.ok(), s.ok() ? "" : s.error().message});
  }
  void expect_code(const std::string& name, const constmig::Status& s, Errc want) {
    bool pass = !s.ok() && s.error().code == want;
    items.push_back({name, pass,
                     pass     ? ""
                     : s.ok() ? "accepted, expected a refusal"
                              : s.error().message});
  }
};

void kat_sha256(Report& r) {
  r.expect_hex("sha256 'abc' (FIPS 180-2)", cr::sha256(constmig::as_bytes_view("abc")),
               "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  r.expect_hex("sha256 '' (FIPS 180-2)", cr::sha256({}),
               "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

void kat_hkdf(Report& r) {
  std::vector<uint8_t> okm(42);
  auto s = cr::hkdf_sha256(unhex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"),
                           unhex("000102030405060708090a0b0c"), unhex("f0f1f2f3f4f5f6f7f8f9"), okm);
  if (!s.ok()) return r.expect_ok("hkdf-sha256 RFC 5869 test case 1", s);
  r.expect_hex("hkdf-sha256 RFC 5869 test case 1", okm,
               "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185"
               "865");
}

void kat_gcm_case(Report& r, const std::string& name, std::string_view key_h, std::string_view iv_h,
                  std::string_view aad_h, std::string_view pt_h, std::string_view ct_h,
                  std::string_view tag_h) {
  auto key = arr<32>(key_h);
  auto iv = arr<12>(iv_h);
  auto aad = unhex(aad_h);
  auto pt = unhex(pt_h);
  auto aead = cr::Aead::create(key);
  if (!aead.ok()) return r.expect_ok(name + " setup", aead.error());
  std::vector<uint8_t> ct(pt.size());
  std::array<uint8_t, 16> tag{};
  auto s = aead->seal(iv, aad, pt, ct.data(), tag);
  if (!s.ok()) return r.expect_ok(name + " seal", s);
  r.expect_hex(name + " ciphertext", ct, ct_h);
  r.expect_hex(name + " tag", tag, tag_h);
  std::vector<uint8_t> back(ct.size());
  auto o = aead->open(iv, aad, ct, back.data(), tag);
  r.expect_ok(name + " open", o);
  if (o.ok()) r.expect_hex(name + " decrypts", back, pt_h);
}

void kat_gcm(Report& r) {
  // McGrew & Viega, "The Galois/Counter Mode of Operation", test case 16 (AES-256, with AAD).
  kat_gcm_case(r, "aes-256-gcm McGrew-Viega #16",
               "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
               "cafebabefacedbaddecaf888", "feedfacedeadbeeffeedfacedeadbeefabaddad2",
               "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532f"
               "cf0e2449a6b525b16aedf5aa0de657ba637b39",
               "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7"
               "b08b1056828838c5f61e6393ba7a0abcc9f662",
               "76fc6ece0f4e1768cddf8853bb2d551b");
  // Test case 14 (AES-256, zero key, zero IV, one zero block).
  kat_gcm_case(r, "aes-256-gcm McGrew-Viega #14",
               "0000000000000000000000000000000000000000000000000000000000000000",
               "000000000000000000000000", "", "00000000000000000000000000000000",
               "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919");
}

void kat_x25519(Report& r) {
  // RFC 7748 §5.2, first scalar-multiplication vector.
  {
    auto k = cr::x25519_from_private(
        arr<32>("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4"));
    auto u = arr<32>("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c");
    if (!k.ok()) return r.expect_ok("x25519 RFC 7748 §5.2", k.error());
    auto s = cr::x25519_shared(*k, u);
    if (!s.ok()) return r.expect_ok("x25519 RFC 7748 §5.2", s.error());
    r.expect_hex("x25519 RFC 7748 §5.2", *s,
                 "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552");
  }
  // RFC 7748 §6.1 Diffie-Hellman.
  auto a = cr::x25519_from_private(
      arr<32>("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"));
  auto b = cr::x25519_from_private(
      arr<32>("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"));
  if (!a.ok() || !b.ok())
    return r.expect_ok("x25519 RFC 7748 §6.1 keys", !a.ok() ? a.error() : b.error());
  r.expect_hex("x25519 RFC 7748 §6.1 Alice public", a->pub,
               "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
  r.expect_hex("x25519 RFC 7748 §6.1 Bob public", b->pub,
               "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
  auto ka = cr::x25519_shared(*a, b->pub);
  auto kb = cr::x25519_shared(*b, a->pub);
  if (!ka.ok() || !kb.ok())
    return r.expect_ok("x25519 RFC 7748 §6.1 shared", !ka.ok() ? ka.error() : kb.error());
  r.expect_hex("x25519 RFC 7748 §6.1 shared (Alice)", *ka,
               "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
  r.expect_hex("x25519 RFC 7748 §6.1 shared (Bob)", *kb,
               "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
}

void kat_ed25519(Report& r) {
  // RFC 8032 §7.1 TEST 1 (empty message) and TEST 2 (one byte).
  auto pub1 = arr<32>("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
  auto sig1 = arr<64>(
      "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e3970"
      "1cf9b46bd25bf5f0595bbe24655141438e7a100b");
  r.expect_ok("ed25519 RFC 8032 test 1 verifies", cr::ed25519_verify(pub1, {}, sig1));
  auto bad = sig1;
  bad[0] ^= 1;
  r.expect_code("ed25519 RFC 8032 test 1, flipped signature bit refused",
                cr::ed25519_verify(pub1, {}, bad), Errc::kSecurity);
  const uint8_t one = 0x72;
  r.expect_code("ed25519 RFC 8032 test 1, other message refused",
                cr::ed25519_verify(pub1, ByteView(&one, 1), sig1), Errc::kSecurity);
  auto pub2 = arr<32>("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c");
  auto sig2 = arr<64>(
      "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613"
      "d0f11d8c387b2eaeb4302aeeb00d291612bb0c00");
  r.expect_ok("ed25519 RFC 8032 test 2 verifies",
              cr::ed25519_verify(pub2, ByteView(&one, 1), sig2));
}

int32_t app_error(EcallIo& io, const constmig::Error& e) {
  io.error = e.message;
  return abi::kEcallAppError;
}

bool all_zero(ByteView b) {
  for (uint8_t x : b)
    if (x != 0) return false;
  return true;
}

}  // namespace

namespace {
void write_report(EcallIo& io, const Report& r) {
  ByteWriter w(io.out);
  w.u32(static_cast<uint32_t>(r.items.size()));
  for (const auto& it : r.items) {
    w.str32(it.name);
    w.u8(it.passed ? 1 : 0);
    w.str32(it.detail);
  }
}
}  // namespace

int32_t ecall_kat_run(EcallIo& io) {
  Report r;
  kat_sha256(r);
  kat_hkdf(r);
  kat_gcm(r);
  kat_x25519(r);
  kat_ed25519(r);
  write_report(io, r);
  return abi::kEcallOk;
}

int32_t ecall_aead_roundtrip(EcallIo& io) {
  ByteReader rd(io.in);
  uint32_t n = rd.u32();
  if (!rd.at_end() || n == 0 || n > crypto_kat::kMaxRoundtripBytes) {
    io.error = "aead_roundtrip expects one u32: 1..1 MiB of data";
    return abi::kEcallBadInput;
  }
  std::array<uint8_t, 32> key{};
  std::array<uint8_t, 12> nonce{};
  std::array<uint8_t, 16> tag{};
  std::vector<uint8_t> aad(37), pt(n), ct(n), back(n);
  for (MutableByteView b :
       {MutableByteView(key), MutableByteView(nonce), MutableByteView(aad), MutableByteView(pt)}) {
    if (auto s = cr::random_bytes(b); !s.ok()) return app_error(io, s.error());
  }
  auto aead = cr::Aead::create(key);
  if (!aead.ok()) return app_error(io, aead.error());
  if (auto s = aead->seal(nonce, aad, pt, ct.data(), tag); !s.ok()) return app_error(io, s.error());
  bool roundtrip = aead->open(nonce, aad, ct, back.data(), tag).ok() && back == pt && ct != pt;

  // Each case alters one input by one bit; open must refuse it and wipe its output.
  struct Case {
    const char* name;
    int what;  // 0 ciphertext, 1 tag, 2 aad, 3 nonce, 4 other key
  };
  const Case cases[] = {{"ciphertext bit flip", 0},
                        {"tag bit flip", 1},
                        {"aad bit flip", 2},
                        {"nonce bit flip", 3},
                        {"other key", 4}};
  ByteWriter w(io.out);
  w.u8(roundtrip ? 1 : 0);
  w.u32(static_cast<uint32_t>(std::size(cases)));
  for (const Case& c : cases) {
    auto ct2 = ct;
    auto tag2 = tag;
    auto aad2 = aad;
    auto nonce2 = nonce;
    auto* opener = &*aead;
    constmig::Result<cr::Aead> other = constmig::make_error(Errc::kInternal, "unused");
    switch (c.what) {
      case 0:
        ct2[n / 2] ^= 0x10;
        break;
      case 1:
        tag2[15] ^= 0x01;
        break;
      case 2:
        aad2[0] ^= 0x80;
        break;
      case 3:
        nonce2[11] ^= 0x01;
        break;
      default: {
        auto key2 = key;
        key2[31] ^= 0x01;
        other = cr::Aead::create(key2);
        if (!other.ok()) return app_error(io, other.error());
        opener = &*other;
      }
    }
    std::fill(back.begin(), back.end(), 0xAA);
    auto s = opener->open(nonce2, aad2, ct2, back.data(), tag2);
    bool rejected = !s.ok() && s.error().code == Errc::kSecurity && all_zero(back);
    w.str32(c.name);
    w.u8(rejected ? 1 : 0);
  }
  cr::wipe(key);
  return abi::kEcallOk;
}

int32_t ecall_x25519_agree(EcallIo& io) {
  auto a = cr::x25519_generate();
  auto b = cr::x25519_generate();
  auto c = cr::x25519_generate();
  if (!a.ok() || !b.ok() || !c.ok())
    return app_error(io, !a.ok() ? a.error() : !b.ok() ? b.error() : c.error());
  auto ab = cr::x25519_shared(*a, b->pub);
  auto ba = cr::x25519_shared(*b, a->pub);
  auto ac = cr::x25519_shared(*a, c->pub);
  if (!ab.ok() || !ba.ok() || !ac.ok())
    return app_error(io, !ab.ok() ? ab.error() : !ba.ok() ? ba.error() : ac.error());
  bool same = *ab == *ba && !all_zero(*ab) && a->pub != b->pub;
  bool differs = *ac != *ab;
  // Low-order points: u = 0 and u = 1 give an all-zero secret (RFC 7748 §6.1).
  std::array<uint8_t, 32> zero{}, one{};
  one[0] = 1;
  auto z = cr::x25519_shared(*a, zero);
  auto o = cr::x25519_shared(*a, one);
  bool refused =
      !z.ok() && z.error().code == Errc::kSecurity && !o.ok() && o.error().code == Errc::kSecurity;
  ByteWriter w(io.out);
  w.u8(same ? 1 : 0);
  w.u8(differs ? 1 : 0);
  w.u8(refused ? 1 : 0);
  return abi::kEcallOk;
}

int32_t ecall_random_distinct(EcallIo& io) {
  std::array<uint8_t, 32> x{}, y{};
  if (auto s = cr::random_bytes(x); !s.ok()) return app_error(io, s.error());
  if (auto s = cr::reseed_rng(); !s.ok()) return app_error(io, s.error());
  if (auto s = cr::random_bytes(y); !s.ok()) return app_error(io, s.error());
  io.out.insert(io.out.end(), x.begin(), x.end());
  io.out.insert(io.out.end(), y.begin(), y.end());
  return abi::kEcallOk;
}

int32_t ecall_verify_quote(EcallIo& io) {
  if (io.in.size() != 32 + crypto_kat::kQuoteSize) {
    io.error = "verify_quote expects a 32-byte public key and a " +
               std::to_string(crypto_kat::kQuoteSize) + "-byte quote";
    return abi::kEcallBadInput;
  }
  std::span<const uint8_t, 32> pub(io.in.data(), 32);
  ByteView quote = io.in.subspan(32);
  std::span<const uint8_t, 64> sig(quote.data() + crypto_kat::kQuoteSignedSize, 64);
  auto s = cr::ed25519_verify(pub, quote.first(crypto_kat::kQuoteSignedSize), sig);
  if (!s.ok()) return app_error(io, s.error());
  return abi::kEcallOk;
}

int32_t ecall_aead_bench(EcallIo& io) {
  ByteReader rd(io.in);
  uint32_t records = rd.u32();
  if (!rd.at_end() || records == 0 || records > crypto_kat::kMaxBenchRecords) {
    io.error = "aead_bench expects one u32: 1..2^20 records";
    return abi::kEcallBadInput;
  }
  constexpr size_t kRec = crypto_kat::kRecordSize;
  constexpr size_t kRing = 64;  // sealed records the open loop cycles through
  std::array<uint8_t, 32> key{};
  std::vector<uint8_t> pt(kRec), out(kRec), ring(kRing * kRec), tags(kRing * 16);
  if (auto s = cr::random_bytes(key); !s.ok()) return app_error(io, s.error());
  if (auto s = cr::random_bytes(pt); !s.ok()) return app_error(io, s.error());
  auto aead = cr::Aead::create(key);
  if (!aead.ok()) return app_error(io, aead.error());
  auto nonce_for = [](uint64_t i) {
    std::array<uint8_t, 12> n{};
    std::memcpy(n.data() + 4, &i, 8);  // counter nonce, as the protocol uses
    return n;
  };
  uint8_t aad[24] = {};
  for (size_t i = 0; i < kRing; ++i) {
    auto s = aead->seal(nonce_for(i), aad, pt, ring.data() + i * kRec,
                        std::span<uint8_t, 16>(tags.data() + i * 16, 16));
    if (!s.ok()) return app_error(io, s.error());
  }
  std::array<uint8_t, 16> tag{};
  uint64_t t0 = constmig::trusted::untrusted_time_ns();
  for (uint32_t i = 0; i < records; ++i) {
    auto s = aead->seal(nonce_for(kRing + i), aad, pt, out.data(), tag);
    if (!s.ok()) return app_error(io, s.error());
  }
  uint64_t t1 = constmig::trusted::untrusted_time_ns();
  for (uint32_t i = 0; i < records; ++i) {
    size_t k = i % kRing;
    auto s = aead->open(nonce_for(k), aad, ByteView(ring.data() + k * kRec, kRec), out.data(),
                        std::span<const uint8_t, 16>(tags.data() + k * 16, 16));
    if (!s.ok()) return app_error(io, s.error());
  }
  uint64_t t2 = constmig::trusted::untrusted_time_ns();
  ByteWriter w(io.out);
  w.u64(t1 - t0);
  w.u64(t2 - t1);
  return abi::kEcallOk;
}

namespace {
void check(Report& r, const std::string& name, bool ok, const std::string& detail = "") {
  r.items.push_back({name, ok, ok ? "" : detail});
}

void check_tsd(Report& r) {
  int marker = 0;
  pthread_key_t k1{};
  check(r, "pthread_key_create", pthread_key_create(&k1, nullptr) == 0);
  check(r, "a new key reads NULL", pthread_getspecific(k1) == nullptr);
  check(r, "set then get",
        pthread_setspecific(k1, &marker) == 0 && pthread_getspecific(k1) == &marker);
  check(r, "pthread_key_delete", pthread_key_delete(k1) == 0);
  check(r, "set on a deleted key is EINVAL", pthread_setspecific(k1, &marker) == EINVAL);
  pthread_key_t k2{};
  check(r, "re-create", pthread_key_create(&k2, nullptr) == 0);
  // The slot is reused, but the value stored under the old key must not show through (POSIX).
  check(r, "a re-created key reads NULL", pthread_getspecific(k2) == nullptr,
        k1 == k2 ? "stale value from the deleted key in the same slot" : "stale value");
  check(r, "delete re-created key", pthread_key_delete(k2) == 0);
}

void check_gmtime(Report& r) {
  struct Want {
    time_t t;
    int year, mon, mday, hour, min, sec, wday, yday;
  };
  const Want wants[] = {
      {0, 70, 0, 1, 0, 0, 0, 4, 0},                   // 1970-01-01 Thu
      {951782400, 100, 1, 29, 0, 0, 0, 2, 59},        // 2000-02-29 Tue
      {1700000000, 123, 10, 14, 22, 13, 20, 2, 317},  // 2023-11-14 22:13:20 Tue
      {-1, 69, 11, 31, 23, 59, 59, 3, 364},           // 1969-12-31 23:59:59 Wed
      {4107542400, 200, 2, 1, 0, 0, 0, 1, 59},        // 2100-03-01 Mon (2100 is not leap)
  };
  for (const Want& w : wants) {
    struct tm tm {};
    bool ok = gmtime_r(&w.t, &tm) == &tm && tm.tm_year == w.year && tm.tm_mon == w.mon &&
              tm.tm_mday == w.mday && tm.tm_hour == w.hour && tm.tm_min == w.min &&
              tm.tm_sec == w.sec && tm.tm_wday == w.wday && tm.tm_yday == w.yday;
    check(r, "gmtime_r " + std::to_string(static_cast<long long>(w.t)), ok,
          "got " + std::to_string(tm.tm_year + 1900) + "-" + std::to_string(tm.tm_mon + 1) + "-" +
              std::to_string(tm.tm_mday) + " " + std::to_string(tm.tm_hour) + ":" +
              std::to_string(tm.tm_min) + ":" + std::to_string(tm.tm_sec) + " wday " +
              std::to_string(tm.tm_wday) + " yday " + std::to_string(tm.tm_yday));
  }
}

void check_qsort(Report& r) {
  std::vector<uint32_t> v(5000);
  uint64_t s = 88172645463325252ull;
  for (auto& x : v) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    x = static_cast<uint32_t>(s % 1000);  // many duplicates
  }
  auto sorted = v;
  std::sort(sorted.begin(), sorted.end());
  std::qsort(v.data(), v.size(), sizeof(uint32_t), [](const void* a, const void* b) {
    uint32_t x = *static_cast<const uint32_t*>(a), y = *static_cast<const uint32_t*>(b);
    return x < y ? -1 : x > y ? 1 : 0;
  });
  check(r, "qsort 5000 u32 with duplicates", v == sorted);
  struct Rec {
    char name[13];
  };
  Rec recs[3] = {{"pear"}, {"apple"}, {"fig"}};
  std::qsort(recs, 3, sizeof(Rec), [](const void* a, const void* b) {
    return std::strcmp(static_cast<const Rec*>(a)->name, static_cast<const Rec*>(b)->name);
  });
  check(r, "qsort 13-byte records",
        std::strcmp(recs[0].name, "apple") == 0 && std::strcmp(recs[1].name, "fig") == 0 &&
            std::strcmp(recs[2].name, "pear") == 0);
}

void check_strdup(Report& r) {
  char* a = strdup("enclave");
  char* b = strndup("enclave heap", 7);
  check(r, "strdup/strndup",
        a != nullptr && b != nullptr && std::strcmp(a, "enclave") == 0 &&
            std::strcmp(b, "enclave") == 0);
  std::free(a);
  std::free(b);
}
}  // namespace

int32_t ecall_shims_run(EcallIo& io) {
  Report r;
  check_tsd(r);
  check_gmtime(r);
  check_qsort(r);
  check_strdup(r);
  write_report(io, r);
  return abi::kEcallOk;
}
