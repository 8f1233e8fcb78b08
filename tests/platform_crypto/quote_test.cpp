// Emulated quotes, platform keys and the trust store.

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>

#include <cstring>
#include <string>
#include <vector>

#include "platform/host_quote.h"
#include "test_util.h"

namespace constmig::platform {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;
using testing::write_file;

Measurement meas(uint8_t fill) {
  Measurement m;
  m.fill(fill);
  return m;
}
std::array<uint8_t, 64> rdata(uint8_t seed) {
  std::array<uint8_t, 64> r;
  for (size_t i = 0; i < r.size(); ++i) r[i] = static_cast<uint8_t>(seed + i);
  return r;
}

PlatformKey new_key() {
  auto k = PlatformKey::generate();
  EXPECT_TRUE(k.ok()) << k.error().message;
  return std::move(k).value();
}

TrustStore store_with(const PlatformKey& k) {
  TrustStore s;
  Status st = s.add_public_key_pem(k.public_key_pem());
  EXPECT_TRUE(st.ok()) << st.error().message;
  return s;
}

unsigned file_mode(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0);
  return st.st_mode & 07777;
}

TEST(QuoteEncoding, RoundTripAndLayout) {
  PlatformKey key = new_key();
  auto rd = rdata(7);
  auto q = key.sign_quote(meas(0xab), rd);
  ASSERT_TRUE(q.ok()) << q.error().message;
  std::vector<uint8_t> enc = encode_quote(*q);
  ASSERT_EQ(enc.size(), kQuoteSize);
  EXPECT_EQ(enc.size(), 208u);
  EXPECT_EQ(std::memcmp(enc.data(), "CMQUOTE\0", 8), 0);
  EXPECT_EQ(enc[8], 1);
  EXPECT_EQ(enc[9], 0);
  EXPECT_EQ(enc[12], 192);
  EXPECT_EQ(enc[16], 0xab);
  EXPECT_EQ(enc[48], 7);
  EXPECT_EQ(std::memcmp(enc.data() + 112, key.key_id().data(), 32), 0);
  auto d = decode_quote(enc);
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_EQ(d->measurement, q->measurement);
  EXPECT_EQ(d->report_data, q->report_data);
  EXPECT_EQ(d->platform_key_id, q->platform_key_id);
  EXPECT_EQ(d->signature, q->signature);
  EXPECT_EQ(encode_quote(*d), enc);
}

TEST(QuoteEncoding, DecodeRejectsBadMagicVersionFlagsAndLength) {
  PlatformKey key = new_key();
  auto rd = rdata(1);
  auto q = key.sign_quote(meas(1), rd);
  ASSERT_TRUE(q.ok());
  const std::vector<uint8_t> good = encode_quote(*q);
  auto expect_bad = [](const std::vector<uint8_t>& b, const std::string& needle) {
    auto r = decode_quote(b);
    ASSERT_FALSE(r.ok()) << needle;
    EXPECT_EQ(r.error().code, Errc::kFormat);
    EXPECT_NE(r.error().message.find(needle), std::string::npos) << r.error().message;
  };
  {
    auto b = good;
    b[0] = 'X';
    expect_bad(b, "magic");
  }
  expect_bad({}, "magic");
  {
    auto b = good;
    b[8] = 2;
    expect_bad(b, "version 2");
  }
  {
    auto b = good;
    b[10] = 1;
    expect_bad(b, "flags");
  }
  {
    auto b = good;
    b[12] = 191;
    expect_bad(b, "body length of 191");
  }
  expect_bad(std::vector<uint8_t>(good.begin(), good.end() - 1), "207 bytes");
  {
    auto b = good;
    b.push_back(0);
    expect_bad(b, "209 bytes");
  }
  expect_bad(std::vector<uint8_t>(good.begin(), good.begin() + 12), "truncated");
}

TEST(QuoteVerify, AcceptsAValidQuote) {
  PlatformKey key = new_key();
  TrustStore store = store_with(key);
  EXPECT_EQ(store.size(), 1u);
  EXPECT_TRUE(store.contains(key.key_id()));
  auto rd = rdata(3);
  auto q = key.sign_quote(meas(9), rd);
  ASSERT_TRUE(q.ok());
  Status s = store.verify(*q, meas(9));
  EXPECT_TRUE(s.ok()) << s.error().message;
  // And after a trip over the wire.
  auto d = decode_quote(encode_quote(*q));
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(store.verify(*d, meas(9)).ok());
}

TEST(QuoteVerify, RejectsUntrustedPlatform) {
  PlatformKey trusted = new_key();
  PlatformKey stranger = new_key();
  TrustStore store = store_with(trusted);
  auto rd = rdata(3);
  auto q = stranger.sign_quote(meas(9), rd);
  ASSERT_TRUE(q.ok());
  Status s = store.verify(*q, meas(9));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, Errc::kSecurity);
  std::string id8 = to_hex(stranger.key_id()).substr(0, 8);
  EXPECT_NE(s.error().message.find("quote signed by platform " + id8), std::string::npos)
      << s.error().message;
  EXPECT_NE(s.error().message.find("not in the trust store"), std::string::npos)
      << s.error().message;
  EXPECT_NE(s.error().message.find("export-key"), std::string::npos) << s.error().message;
  // An empty store trusts nobody.
  TrustStore empty;
  EXPECT_FALSE(empty.verify(*q, meas(9)).ok());
}

TEST(QuoteVerify, RejectsModifiedQuotes) {
  PlatformKey key = new_key();
  TrustStore store = store_with(key);
  auto rd = rdata(3);
  auto q = key.sign_quote(meas(9), rd);
  ASSERT_TRUE(q.ok());
  auto expect_bad_sig = [&](const Quote& bad) {
    Status s = store.verify(bad, bad.measurement);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error().code, Errc::kSecurity);
    EXPECT_NE(s.error().message.find("does not verify"), std::string::npos) << s.error().message;
  };
  for (size_t i : {size_t{0}, size_t{31}, size_t{63}}) {
    Quote bad = *q;
    bad.report_data[i] ^= 1;
    expect_bad_sig(bad);
  }
  {
    Quote bad = *q;
    bad.measurement[5] ^= 0x80;
    expect_bad_sig(bad);
  }
  {
    Quote bad = *q;
    bad.signature[0] ^= 1;
    expect_bad_sig(bad);
  }
  {
    Quote bad = *q;
    bad.signature.fill(0);
    expect_bad_sig(bad);
  }
}

TEST(QuoteVerify, RejectsAnotherMeasurementWithItsOwnMessage) {
  PlatformKey key = new_key();
  TrustStore store = store_with(key);
  auto rd = rdata(3);
  auto q = key.sign_quote(meas(0x11), rd);
  ASSERT_TRUE(q.ok());
  Status s = store.verify(*q, meas(0x22));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, Errc::kSecurity);
  const std::string& m = s.error().message;
  EXPECT_NE(m.find("peer enclave measurement " + to_hex(meas(0x11)) + " differs from ours " +
                   to_hex(meas(0x22))),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("same enclave image"), std::string::npos) << m;
  EXPECT_EQ(m.find("does not verify"), std::string::npos) << m;
}

TEST(PlatformKeyFiles, SaveLoadRoundTrip) {
  TempDir dir;
  PlatformKey key = new_key();
  fs::path path = dir.path() / "platform.pem";
  Status s = key.save(path.string());
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(file_mode(path), 0600u);
  auto loaded = PlatformKey::load(path.string());
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_EQ(loaded->key_id(), key.key_id());
  EXPECT_EQ(loaded->public_key_pem(), key.public_key_pem());
  EXPECT_EQ(key.public_key_pem().rfind("-----BEGIN PUBLIC KEY-----", 0), 0u);
  // A quote from the loaded key verifies against the original's public key.
  TrustStore store = store_with(key);
  auto rd = rdata(5);
  auto q = loaded->sign_quote(meas(4), rd);
  ASSERT_TRUE(q.ok());
  EXPECT_TRUE(store.verify(*q, meas(4)).ok());
  // save() replaces an existing file.
  PlatformKey other = new_key();
  ASSERT_TRUE(other.save(path.string()).ok());
  auto reloaded = PlatformKey::load(path.string());
  ASSERT_TRUE(reloaded.ok());
  EXPECT_EQ(reloaded->key_id(), other.key_id());
  // No temporary files left behind.
  size_t files = 0;
  for (auto& e : fs::directory_iterator(dir.path())) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1u);
}

TEST(PlatformKeyFiles, LoadErrors) {
  TempDir dir;
  auto missing = PlatformKey::load((dir.path() / "nope.pem").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, Errc::kNotFound);

  PlatformKey key = new_key();
  fs::path path = dir.path() / "k.pem";
  ASSERT_TRUE(key.save(path.string()).ok());
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  auto open = PlatformKey::load(path.string());
  ASSERT_FALSE(open.ok());
  EXPECT_EQ(open.error().code, Errc::kPermission);
  EXPECT_NE(open.error().message.find("chmod 600"), std::string::npos) << open.error().message;

  fs::path garbage = dir.path() / "garbage.pem";
  write_file(garbage, "not a key\n");
  ASSERT_EQ(::chmod(garbage.c_str(), 0600), 0);
  auto g = PlatformKey::load(garbage.string());
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.error().code, Errc::kFormat);

  fs::path pub = dir.path() / "pub.pem";
  write_file(pub, key.public_key_pem());
  ASSERT_EQ(::chmod(pub.c_str(), 0600), 0);
  auto p = PlatformKey::load(pub.string());
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, Errc::kFormat);
}

TEST(PlatformKeyFiles, LoadOrCreateCreatesOnceWithPrivateModes) {
  TempDir dir;
  fs::path path = dir.path() / "a" / "b" / "platform.pem";
  auto k1 = PlatformKey::load_or_create(path.string());
  ASSERT_TRUE(k1.ok()) << k1.error().message;
  EXPECT_EQ(file_mode(path), 0600u);
  EXPECT_EQ(file_mode(dir.path() / "a" / "b"), 0700u);
  auto k2 = PlatformKey::load_or_create(path.string());
  ASSERT_TRUE(k2.ok()) << k2.error().message;
  EXPECT_EQ(k1->key_id(), k2->key_id());
}

TEST(PlatformKeyFiles, MovedKeyStillSigns) {
  PlatformKey a = new_key();
  auto id = a.key_id();
  PlatformKey b = std::move(a);
  TrustStore store = store_with(b);
  auto rd = rdata(0);
  auto q = b.sign_quote(meas(1), rd);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->platform_key_id, id);
  EXPECT_TRUE(store.verify(*q, meas(1)).ok());
}

TEST(TrustStoreFiles, DirectoryWithTwoKeys) {
  TempDir dir;
  PlatformKey k1 = new_key();
  PlatformKey k2 = new_key();
  PlatformKey k3 = new_key();
  write_file(dir.path() / "host1.pem", k1.public_key_pem());
  write_file(dir.path() / "host2.pem", k2.public_key_pem());
  write_file(dir.path() / "README.txt", "not a key, ignored (not *.pem)\n");
  auto store = TrustStore::load(dir.path().string());
  ASSERT_TRUE(store.ok()) << store.error().message;
  EXPECT_EQ(store->size(), 2u);
  auto rd = rdata(2);
  for (const PlatformKey* k : {&k1, &k2}) {
    auto q = k->sign_quote(meas(3), rd);
    ASSERT_TRUE(q.ok());
    EXPECT_TRUE(store->verify(*q, meas(3)).ok());
  }
  auto q3 = k3.sign_quote(meas(3), rd);
  ASSERT_TRUE(q3.ok());
  Status s = store->verify(*q3, meas(3));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find(dir.path().string()), std::string::npos) << s.error().message;
}

TEST(TrustStoreFiles, SingleFileWithSeveralKeysAndDuplicates) {
  TempDir dir;
  PlatformKey k1 = new_key();
  PlatformKey k2 = new_key();
  fs::path f = dir.path() / "trusted.pem";
  write_file(f, k1.public_key_pem() + k2.public_key_pem() + k1.public_key_pem());
  auto store = TrustStore::load(f.string());
  ASSERT_TRUE(store.ok()) << store.error().message;
  EXPECT_EQ(store->size(), 2u);
  EXPECT_TRUE(store->contains(k1.key_id()));
  EXPECT_TRUE(store->contains(k2.key_id()));
}

// PEM (private, public) of a P-256 key: a valid key of the wrong type.
std::pair<std::string, std::string> ec_key_pems() {
  EVP_PKEY* k = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  EXPECT_NE(k, nullptr);
  auto to_string = [](BIO* b) {
    char* data = nullptr;
    long n = BIO_get_mem_data(b, &data);
    std::string s(data, static_cast<size_t>(n));
    BIO_free(b);
    return s;
  };
  BIO* priv = BIO_new(BIO_s_mem());
  BIO* pub = BIO_new(BIO_s_mem());
  EXPECT_EQ(PEM_write_bio_PrivateKey(priv, k, nullptr, nullptr, 0, nullptr, nullptr), 1);
  EXPECT_EQ(PEM_write_bio_PUBKEY(pub, k), 1);
  EVP_PKEY_free(k);
  return {to_string(priv), to_string(pub)};
}

TEST(KeyTypes, NonEd25519KeysAreRefused) {
  auto [priv, pub] = ec_key_pems();
  TempDir dir;
  fs::path path = dir.path() / "ec.pem";
  write_file(path, priv);
  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
  auto k = PlatformKey::load(path.string());
  ASSERT_FALSE(k.ok());
  EXPECT_EQ(k.error().code, Errc::kFormat);
  EXPECT_NE(k.error().message.find("Ed25519"), std::string::npos) << k.error().message;
  TrustStore s;
  Status st = s.add_public_key_pem(pub);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("Ed25519"), std::string::npos) << st.error().message;
  EXPECT_EQ(s.size(), 0u);
}

TEST(TrustStoreFiles, LoadErrors) {
  TempDir dir;
  auto missing = TrustStore::load((dir.path() / "nope").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, Errc::kNotFound);

  auto empty = TrustStore::load(dir.path().string());
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().code, Errc::kNotFound);
  EXPECT_NE(empty.error().message.find("no *.pem"), std::string::npos) << empty.error().message;

  PlatformKey k = new_key();
  fs::path priv = dir.path() / "oops.pem";
  ASSERT_TRUE(k.save(priv.string()).ok());
  auto p = TrustStore::load(dir.path().string());
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, Errc::kFormat);
  EXPECT_NE(p.error().message.find("PRIVATE key"), std::string::npos) << p.error().message;
  EXPECT_NE(p.error().message.find("oops.pem"), std::string::npos) << p.error().message;
  fs::remove(priv);

  write_file(dir.path() / "junk.pem", "hello\n");
  auto j = TrustStore::load(dir.path().string());
  ASSERT_FALSE(j.ok());
  EXPECT_EQ(j.error().code, Errc::kFormat);
  EXPECT_NE(j.error().message.find("no PEM public key"), std::string::npos) << j.error().message;

  TrustStore s;
  Status bad = s.add_public_key_pem("-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, Errc::kFormat);
  EXPECT_EQ(s.size(), 0u);
  // All or nothing: a good key followed by a bad block adds nothing.
  Status mixed = s.add_public_key_pem(
      k.public_key_pem() + "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
  ASSERT_FALSE(mixed.ok());
  EXPECT_EQ(s.size(), 0u);
}

}  // namespace
}  // namespace constmig::platform
