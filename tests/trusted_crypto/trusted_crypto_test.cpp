// OpenSSL inside an enclave image (constmig_trusted_crypto), on the emulated platform: known
// answers, AEAD tamper detection, X25519 agreement, randomness, Ed25519 verification of a real
// platform quote, and the image's remaining imports. Each test runs in its own process (ctest),
// since an image stays mapped at its base for the life of a process.
#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "crypto_kat_edl.h"
#include "platform/host_edl.h"
#include "platform/host_elf.h"
#include "platform/host_quote.h"

CONSTMIG_HOST_EDL(kat, CRYPTO_KAT_EDL)

using namespace constmig;
using namespace constmig::platform;

static_assert(crypto_kat::kQuoteSize == kQuoteSize);
static_assert(crypto_kat::kQuoteSignedSize == kQuoteSignedSize);

namespace {

struct Loaded {
  std::unique_ptr<Platform> platform;
  std::unique_ptr<Enclave> enclave;
};

Loaded load(uint32_t slots = 4) {
  Loaded l;
  auto p = Platform::create_emulated({});
  EXPECT_TRUE(p.ok()) << (p.ok() ? "" : p.error().message);
  if (!p.ok()) return l;
  l.platform = std::move(p).value();
  EnclaveConfig cfg;
  cfg.image_path = CRYPTO_KAT_IMAGE;
  cfg.heap_limit = 64ull << 20;
  cfg.thread_slots = slots;
  cfg.expected_ecalls = kat::ecall_names();
  cfg.ocalls = kat::ocall_table(nullptr);
  auto e = l.platform->create_enclave(cfg);
  EXPECT_TRUE(e.ok()) << (e.ok() ? "" : e.error().message);
  if (e.ok()) l.enclave = std::move(e).value();
  return l;
}

std::vector<uint8_t> u32_bytes(uint32_t v) {
  std::vector<uint8_t> out;
  ByteWriter(out).u32(v);
  return out;
}

Result<std::vector<uint8_t>> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return make_error(Errc::kNotFound, "cannot read " + path);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

// The platform's raw 32-byte Ed25519 public key, from its PEM (host OpenSSL).
std::array<uint8_t, 32> raw_public_key(const PlatformKey& key) {
  std::array<uint8_t, 32> raw{};
  std::string pem = key.public_key_pem();
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* pk = bio ? PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr) : nullptr;
  size_t len = raw.size();
  EXPECT_TRUE(pk != nullptr && EVP_PKEY_get_raw_public_key(pk, raw.data(), &len) == 1 &&
              len == raw.size());
  EVP_PKEY_free(pk);
  BIO_free(bio);
  return raw;
}

}  // namespace

TEST(TrustedCrypto, ImagePassesTheImportCheckAndTheShimsAreInEffect) {
  auto m = check_image(CRYPTO_KAT_IMAGE, 4);
  ASSERT_TRUE(m.ok()) << m.error().message;

  auto bytes = read_file(CRYPTO_KAT_IMAGE);
  ASSERT_TRUE(bytes.ok()) << bytes.error().message;
  auto info = parse_elf_image(*bytes);
  ASSERT_TRUE(info.ok()) << info.error().message;
  std::set<std::string> imports;
  std::string listed;
  for (const ElfSymbol& s : info->imports) {
    imports.insert(s.name);
    listed += " " + s.name;
  }
  std::printf("crypto_kat_enclave: %zu bytes, %zu imports:%s\n", bytes->size(), imports.size(),
              listed.c_str());
  // Served inside the image (enclave_libc_shims.cpp), never by the host.
  for (const char* name :
       {"getentropy", "getrandom", "syscall", "time", "clock_gettime", "gettimeofday", "getenv",
        "secure_getenv", "getpid", "strdup", "pthread_key_create", "pthread_getspecific",
        "pthread_setspecific", "gmtime_r", "fopen", "socket", "dlopen", "mmap", "malloc"}) {
    EXPECT_EQ(imports.count(name), 0u) << "the image imports '" << name << "' from the host";
  }
}

// Checks a kat_run/shims_run report: every item passed. Returns the number of items.
static uint32_t expect_report_passes(const std::vector<uint8_t>& out, const char* what) {
  ByteReader r(out);
  uint32_t n = r.u32();
  uint32_t passed = 0;
  for (uint32_t i = 0; i < n; ++i) {
    std::string name(r.str32(1 << 12));
    bool ok = r.u8() == 1;
    std::string detail(r.str32(1 << 12));
    if (!r.ok()) {
      ADD_FAILURE() << "malformed " << what << " report";
      return n;
    }
    EXPECT_TRUE(ok) << name << ": " << detail;
    passed += ok ? 1 : 0;
  }
  EXPECT_TRUE(r.at_end());
  std::printf("%u/%u %s passed inside the enclave\n", passed, n, what);
  return n;
}

TEST(TrustedCrypto, KnownAnswerTestsPassInsideTheEnclave) {
  auto l = load();
  ASSERT_TRUE(l.enclave);
  auto out = kat::kat_run(*l.enclave);
  ASSERT_TRUE(out.ok()) << out.error().message;
  EXPECT_GE(expect_report_passes(*out, "known-answer tests"), 15u);
}

TEST(TrustedCrypto, LibcShimsThatDoRealWorkBehaveLikeLibc) {
  auto l = load();
  ASSERT_TRUE(l.enclave);
  auto out = kat::shims_run(*l.enclave);
  ASSERT_TRUE(out.ok()) << out.error().message;
  EXPECT_GE(expect_report_passes(*out, "libc shim checks"), 10u);
}

TEST(TrustedCrypto, AeadRoundTripsAndRejectsEveryTamperedInput) {
  auto l = load();
  ASSERT_TRUE(l.enclave);
  for (uint32_t size : {1u, 4096u, 65537u}) {
    auto out = kat::aead_roundtrip(*l.enclave, u32_bytes(size));
    ASSERT_TRUE(out.ok()) << out.error().message;
    ByteReader r(*out);
    EXPECT_EQ(r.u8(), 1) << "seal/open round trip failed for " << size << " bytes";
    uint32_t cases = r.u32();
    EXPECT_EQ(cases, 5u);
    for (uint32_t i = 0; i < cases; ++i) {
      std::string name(r.str32(256));
      EXPECT_EQ(r.u8(), 1) << name << " (" << size << " bytes) was not rejected as kSecurity "
                           << "with the output wiped";
    }
    EXPECT_TRUE(r.at_end());
  }
  // Bad input is refused before anything is allocated.
  EXPECT_FALSE(kat::aead_roundtrip(*l.enclave, u32_bytes(0)).ok());
  EXPECT_FALSE(kat::aead_roundtrip(*l.enclave, u32_bytes(crypto_kat::kMaxRoundtripBytes + 1)).ok());
}

TEST(TrustedCrypto, X25519BothSidesDeriveTheSameSecretAndLowOrderPeersAreRefused) {
  auto l = load();
  ASSERT_TRUE(l.enclave);
  auto out = kat::x25519_agree(*l.enclave);
  ASSERT_TRUE(out.ok()) << out.error().message;
  ASSERT_EQ(out->size(), 3u);
  EXPECT_EQ((*out)[0], 1) << "the two sides derived different secrets";
  EXPECT_EQ((*out)[1], 1) << "a third key pair gave the same secret";
  EXPECT_EQ((*out)[2], 1) << "a low-order peer public key was accepted";
}

TEST(TrustedCrypto, RandomOutputsDiffer) {
  auto l = load();
  ASSERT_TRUE(l.enclave);
  std::set<std::vector<uint8_t>> seen;
  for (int i = 0; i < 4; ++i) {
    auto out = kat::random_distinct(*l.enclave);
    ASSERT_TRUE(out.ok()) << out.error().message;
    ASSERT_EQ(out->size(), 64u);
    std::vector<uint8_t> x(out->begin(), out->begin() + 32), y(out->begin() + 32, out->end());
    EXPECT_NE(x, y);
    EXPECT_NE(x, std::vector<uint8_t>(32, 0));
    EXPECT_TRUE(seen.insert(x).second);
    EXPECT_TRUE(seen.insert(y).second);
  }
}

TEST(TrustedCrypto, ConcurrentEcallsUsePerThreadStateSafely) {
  // Several host threads use OpenSSL inside the enclave at once: per-thread DRBGs and error
  // queues live under the image's own thread-specific-data keys.
  auto l = load(4);
  ASSERT_TRUE(l.enclave);
  std::vector<std::thread> threads;
  std::vector<std::vector<std::vector<uint8_t>>> outs(4);
  std::vector<int> failures(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        auto r = kat::random_distinct(*l.enclave);
        if (!r.ok()) {
          ++failures[t];
          continue;
        }
        outs[t].push_back(*r);
        auto a = kat::aead_roundtrip(*l.enclave, u32_bytes(4096));
        if (!a.ok() || (*a)[0] != 1) ++failures[t];
      }
    });
  }
  for (auto& th : threads) th.join();
  std::set<std::vector<uint8_t>> all;
  for (int t = 0; t < 4; ++t) {
    EXPECT_EQ(failures[t], 0) << "thread " << t;
    for (auto& o : outs[t]) EXPECT_TRUE(all.insert(o).second) << "repeated random output";
  }
}

TEST(TrustedCrypto, EnclaveVerifiesAPlatformQuoteSignatureAndRejectsAFlippedByte) {
  auto l = load();
  ASSERT_TRUE(l.enclave);
  std::array<uint8_t, 64> report_data{};
  for (size_t i = 0; i < report_data.size(); ++i) report_data[i] = static_cast<uint8_t>(i * 7);
  auto q = l.platform->key().sign_quote(l.enclave->measurement(), report_data);
  ASSERT_TRUE(q.ok()) << q.error().message;
  std::vector<uint8_t> quote = encode_quote(*q);
  ASSERT_EQ(quote.size(), kQuoteSize);
  auto pub = raw_public_key(l.platform->key());

  auto input = [&](const std::vector<uint8_t>& qb, const std::array<uint8_t, 32>& k) {
    std::vector<uint8_t> in(k.begin(), k.end());
    in.insert(in.end(), qb.begin(), qb.end());
    return in;
  };
  auto good = kat::verify_quote(*l.enclave, input(quote, pub));
  EXPECT_TRUE(good.ok()) << good.error().message;

  // One flipped byte in the signed part (the measurement), in the signature, or in the key.
  for (size_t pos : {size_t{20}, size_t{60}, kQuoteSignedSize + 5}) {
    auto bad = quote;
    bad[pos] ^= 0x01;
    auto r = kat::verify_quote(*l.enclave, input(bad, pub));
    EXPECT_FALSE(r.ok()) << "a quote with byte " << pos << " flipped was accepted";
  }
  auto other_key = pub;
  other_key[3] ^= 0x40;
  EXPECT_FALSE(kat::verify_quote(*l.enclave, input(quote, other_key)).ok());
}

TEST(TrustedCrypto, AeadThroughputFor4KiBRecords) {
  auto l = load();
  ASSERT_TRUE(l.enclave);
  constexpr uint32_t kRecords = 32768;                 // 128 MiB each way
  (void)kat::aead_bench(*l.enclave, u32_bytes(1024));  // warm up
  auto out = kat::aead_bench(*l.enclave, u32_bytes(kRecords));
  ASSERT_TRUE(out.ok()) << out.error().message;
  ByteReader r(*out);
  uint64_t seal_ns = r.u64(), open_ns = r.u64();
  ASSERT_TRUE(r.ok());
  double bytes = double(kRecords) * crypto_kat::kRecordSize;
  std::printf(
      "AES-256-GCM inside the enclave, 4 KiB records, one thread: seal %.2f GB/s, "
      "open %.2f GB/s\n",
      seal_ns ? bytes / double(seal_ns) : 0.0, open_ns ? bytes / double(open_ns) : 0.0);
}
