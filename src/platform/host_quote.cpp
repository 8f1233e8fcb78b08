// UNTRUSTED (host side). Emulated quotes, the platform key and the trust store. See host_quote.h.

#include "platform/host_quote.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <system_error>

namespace constmig::platform {

using quote::write_signed_part;

void EvpPkeyFree::operator()(evp_pkey_st* k) const {
  EVP_PKEY_free(k);
}

namespace {

namespace fs = std::filesystem;

constexpr size_t kMaxKeyFileSize = 64 << 10;   // a PEM Ed25519 key is ~120 bytes
constexpr size_t kMaxTrustFileSize = 1 << 20;  // thousands of public keys

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

std::string openssl_reason() {
  unsigned long e = ERR_get_error();
  char buf[256] = "no OpenSSL error queued";
  if (e != 0) ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

Error openssl_error(const std::string& what) {
  return make_error(Errc::kInternal, what + " failed in OpenSSL (" + openssl_reason() +
                                         "): check the OpenSSL 3 installation");
}

std::string errno_text(int err) {
  return std::error_code(err, std::generic_category()).message();
}

std::string short_id(const PlatformKeyId& id) {
  return to_hex(ByteView(id.data(), 4));
}

enum class Access { kAny, kOwnerOnly };

// Reads a small regular file whole; `limit` guards against being pointed at something huge.
// kOwnerOnly refuses a file that group or others may access (checked on the open descriptor).
Result<std::string> read_small_file(const std::string& path, size_t limit, const char* what,
                                    Access access = Access::kAny) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT && access == Access::kOwnerOnly) {
      return make_error(Errc::kNotFound,
                        std::string(what) + " " + path +
                            " does not exist: create it (PlatformKey::load_or_create, done by the "
                            "platform on first use) or fix the path");
    }
    Errc code = err == ENOENT ? Errc::kNotFound : err == EACCES ? Errc::kPermission : Errc::kIo;
    return make_error(code,
                      std::string("cannot open ") + what + " " + path + ": " + errno_text(err));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return make_error(Errc::kInvalidArgument,
                      std::string(what) + " " + path + " is not a regular file");
  }
  if (access == Access::kOwnerOnly && (st.st_mode & 077) != 0) {
    ::close(fd);
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return make_error(Errc::kPermission, std::string(what) + " " + path + " has mode " + mode +
                                             ": a private key must be accessible by its owner "
                                             "only; run chmod 600 " +
                                             path);
  }
  std::string out;
  out.reserve(4096);
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return make_error(Errc::kIo,
                        std::string("cannot read ") + what + " " + path + ": " + errno_text(err));
    }
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > limit) {
      ::close(fd);
      OPENSSL_cleanse(buf, sizeof buf);
      return make_error(Errc::kFormat, std::string(what) + " " + path + " is larger than " +
                                           std::to_string(limit) +
                                           " bytes: it is not a PEM key file");
    }
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  OPENSSL_cleanse(buf, sizeof buf);
  return out;
}

void cleanse(std::string& s) {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

// mkdir -p with mode 0700 for the directories it creates.
Status make_parent_dirs(const std::string& path) {
  fs::path parent = fs::path(path).parent_path();
  if (parent.empty()) return ok_status();
  fs::path cur;
  for (const fs::path& part : parent) {
    cur /= part;
    if (::mkdir(cur.c_str(), 0700) != 0 && errno != EEXIST) {
      int err = errno;
      return make_error(
          err == EACCES ? Errc::kPermission : Errc::kIo,
          "cannot create directory " + cur.string() + " for the platform key: " + errno_text(err));
    }
  }
  return ok_status();
}

enum class Publish { kReplace, kNoReplace };

// Writes `data` to a fresh 0600 temporary file next to `path`, fsyncs it and publishes it as
// `path` (rename, or link which fails with EEXIST rather than replace). Errc::kState if
// kNoReplace and `path` exists.
Status write_private_file(const std::string& path, std::string_view data, Publish how) {
  CM_TRY(make_parent_dirs(path));
  std::string tmp = path + ".tmp.XXXXXX";
  int fd = ::mkstemp(tmp.data());  // creates with mode 0600
  if (fd < 0) {
    int err = errno;
    return make_error(err == EACCES ? Errc::kPermission : Errc::kIo,
                      "cannot create a file next to " + path + ": " + errno_text(err));
  }
  auto fail = [&](const std::string& what) {
    int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return make_error(Errc::kIo, what + " " + path + ": " + errno_text(err));
  };
  if (::fchmod(fd, 0600) != 0) return fail("cannot set mode 0600 on");
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail("cannot write");
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) return fail("cannot sync");
  if (::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return make_error(Errc::kIo, "cannot write " + path + ": " + errno_text(err));
  }
  if (how == Publish::kReplace) {
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
      int err = errno;
      ::unlink(tmp.c_str());
      return make_error(Errc::kIo, "cannot rename the new key to " + path + ": " + errno_text(err));
    }
  } else {
    int rc = ::link(tmp.c_str(), path.c_str());
    int err = errno;
    ::unlink(tmp.c_str());
    if (rc != 0 && err == EEXIST) return make_error(Errc::kState, path + " already exists");
    if (rc != 0) return make_error(Errc::kIo, "cannot create " + path + ": " + errno_text(err));
  }
  // Make the directory entry durable too (best effort).
  fs::path dir = fs::path(path).parent_path();
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
  return ok_status();
}

Result<PlatformKeyId> key_id_of(evp_pkey_st* pkey) {
  std::array<uint8_t, 32> raw{};
  size_t len = raw.size();
  if (EVP_PKEY_get_raw_public_key(pkey, raw.data(), &len) != 1 || len != raw.size()) {
    return openssl_error("reading the Ed25519 public key");
  }
  return sha256(raw);
}

// Unencrypted PKCS#8 PEM of the private key. The BIO's buffer is cleared when freed.
Result<std::string> private_key_pem(evp_pkey_st* pkey) {
  BioPtr bio(BIO_new(BIO_s_secmem()));
  if (!bio ||
      PEM_write_bio_PrivateKey(bio.get(), pkey, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return openssl_error("encoding the platform key");
  }
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  if (n <= 0 || !data) return openssl_error("encoding the platform key");
  return std::string(data, static_cast<size_t>(n));
}

// Refuses to prompt for a passphrase: encrypted keys are not supported.
int no_password(char*, int, int, void*) {
  return -1;
}

bool is_ed25519(evp_pkey_st* k) {
  return EVP_PKEY_is_a(k, "ED25519") == 1;
}

std::string format_origin(const std::string& origin) {
  return origin.empty() ? "" : origin + ": ";
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Quote encoding.

// ---------------------------------------------------------------------------------------------
// PlatformKey.

Result<PlatformKey> PlatformKey::from_pkey(EvpPkeyPtr pkey) {
  CM_ASSIGN_OR_RETURN(PlatformKeyId id, key_id_of(pkey.get()));
  return PlatformKey(std::move(pkey), id);
}

Result<PlatformKey> PlatformKey::generate() {
  EvpPkeyPtr pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  if (!pkey) return openssl_error("generating an Ed25519 platform key");
  return from_pkey(std::move(pkey));
}

Result<PlatformKey> PlatformKey::load(const std::string& pem_path) {
  CM_ASSIGN_OR_RETURN(std::string pem, read_small_file(pem_path, kMaxKeyFileSize, "platform key",
                                                       Access::kOwnerOnly));
  if (pem.find("ENCRYPTED PRIVATE KEY") != std::string::npos) {
    cleanse(pem);
    return make_error(Errc::kFormat, "platform key " + pem_path +
                                         " is encrypted: store it unencrypted (mode 0600) or "
                                         "generate a new one");
  }
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) {
    cleanse(pem);
    return openssl_error("reading the platform key");
  }
  EvpPkeyPtr pkey(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_password, nullptr));
  bio.reset();
  cleanse(pem);
  if (!pkey) {
    std::string why = openssl_reason();
    return make_error(Errc::kFormat, "platform key " + pem_path +
                                         " is not a PEM (PKCS#8) private key (" + why +
                                         "): restore the right file or generate a new key");
  }
  if (!is_ed25519(pkey.get())) {
    return make_error(Errc::kFormat, "platform key " + pem_path + " is a " +
                                         std::string(EVP_PKEY_get0_type_name(pkey.get())
                                                         ? EVP_PKEY_get0_type_name(pkey.get())
                                                         : "non-Ed25519") +
                                         " key; platform keys are Ed25519: generate a new one");
  }
  return from_pkey(std::move(pkey));
}

Result<PlatformKey> PlatformKey::load_or_create(const std::string& pem_path) {
  struct stat st {};
  if (::stat(pem_path.c_str(), &st) == 0) return load(pem_path);
  if (errno != ENOENT) {
    int err = errno;
    return make_error(Errc::kIo, "cannot stat platform key " + pem_path + ": " + errno_text(err));
  }
  CM_ASSIGN_OR_RETURN(PlatformKey key, generate());
  CM_ASSIGN_OR_RETURN(std::string pem, private_key_pem(key.pkey_.get()));
  Status st_write = write_private_file(pem_path, pem, Publish::kNoReplace);
  cleanse(pem);
  if (!st_write.ok()) {
    if (st_write.error().code == Errc::kState)
      return load(pem_path);  // someone else created it first
    return Error(st_write.take_error());
  }
  return key;
}

Status PlatformKey::save(const std::string& pem_path) const {
  CM_ASSIGN_OR_RETURN(std::string pem, private_key_pem(pkey_.get()));
  Status s = write_private_file(pem_path, pem, Publish::kReplace);
  cleanse(pem);
  return s;
}

std::string PlatformKey::public_key_pem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), pkey_.get()) != 1) {
    ERR_clear_error();
    return {};
  }
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

Result<Quote> PlatformKey::sign_quote(const Measurement& measurement,
                                      std::span<const uint8_t, 64> report_data) const {
  Quote q;
  q.measurement = measurement;
  std::copy(report_data.begin(), report_data.end(), q.report_data.begin());
  q.platform_key_id = key_id_;
  std::vector<uint8_t> tbs;
  tbs.reserve(kQuoteSignedSize);
  write_signed_part(q, tbs);
  MdCtxPtr ctx(EVP_MD_CTX_new());
  size_t sig_len = q.signature.size();
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, pkey_.get()) != 1 ||
      EVP_DigestSign(ctx.get(), q.signature.data(), &sig_len, tbs.data(), tbs.size()) != 1 ||
      sig_len != q.signature.size()) {
    return openssl_error("signing a quote");
  }
  return q;
}

// ---------------------------------------------------------------------------------------------
// TrustStore.

Status TrustStore::add_pem(std::string_view pem, const std::string& origin) {
  if (pem.size() > kMaxTrustFileSize) {
    return make_error(Errc::kFormat, format_origin(origin) + "is " + std::to_string(pem.size()) +
                                         " bytes, more than " + std::to_string(kMaxTrustFileSize) +
                                         ": it is not a set of PEM public keys");
  }
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return openssl_error("reading a trust store key");
  std::vector<std::pair<PlatformKeyId, EvpPkeyPtr>> found;
  for (;;) {
    char* name = nullptr;
    char* header = nullptr;
    unsigned char* data = nullptr;
    long len = 0;
    if (PEM_read_bio(bio.get(), &name, &header, &data, &len) != 1) {
      unsigned long e = ERR_peek_last_error();
      bool eof = ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
      std::string why = openssl_reason();
      if (eof) break;
      return make_error(Errc::kFormat,
                        format_origin(origin) + "malformed PEM block after " +
                            std::to_string(found.size()) + " key(s) (" + why +
                            "): re-export the key (`constmig platform --export-key`)");
    }
    std::string block_name = name ? name : "";
    OPENSSL_free(name);
    OPENSSL_free(header);
    struct DataFree {
      unsigned char* p;
      ~DataFree() { OPENSSL_free(p); }
    } data_guard{data};
    if (block_name.find("PRIVATE KEY") != std::string::npos) {
      return make_error(
          Errc::kFormat,
          format_origin(origin) +
              "holds a PRIVATE key: a trust store holds public keys "
              "only. Delete it from the trust store (a platform's private key must never "
              "leave its host) and add the output of `constmig platform --export-key`");
    }
    if (block_name != "PUBLIC KEY") {
      return make_error(Errc::kFormat, format_origin(origin) + "holds a PEM block \"" + block_name +
                                           "\": a trust store accepts only \"PUBLIC KEY\" blocks "
                                           "(Ed25519, from `constmig platform --export-key`)");
    }
    const unsigned char* p = data;
    EvpPkeyPtr pkey(d2i_PUBKEY(nullptr, &p, len));
    if (!pkey || p != data + len) {
      std::string why = openssl_reason();
      return make_error(Errc::kFormat, format_origin(origin) +
                                           "a PUBLIC KEY block does not decode (" + why +
                                           "): re-export the key");
    }
    if (!is_ed25519(pkey.get())) {
      const char* t = EVP_PKEY_get0_type_name(pkey.get());
      return make_error(Errc::kFormat, format_origin(origin) + "holds a " +
                                           std::string(t ? t : "non-Ed25519") +
                                           " public key; platform keys are Ed25519");
    }
    CM_ASSIGN_OR_RETURN(PlatformKeyId id, key_id_of(pkey.get()));
    found.emplace_back(id, std::move(pkey));
  }
  if (found.empty()) {
    return make_error(Errc::kFormat, format_origin(origin) +
                                         "holds no PEM public key: add the output of `constmig "
                                         "platform --export-key` from each trusted host");
  }
  for (auto& [id, pkey] : found) keys_.try_emplace(id, std::move(pkey));
  return ok_status();
}

Status TrustStore::add_public_key_pem(std::string_view pem) {
  return add_pem(pem, "public key PEM");
}

Result<TrustStore> TrustStore::load(const std::string& path) {
  TrustStore store;
  store.source_ = path;
  std::error_code ec;
  fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) {
    return make_error(Errc::kNotFound,
                      "trust store " + path +
                          " does not exist: create a directory holding the *.pem "
                          "public key of every trusted platform (`constmig platform "
                          "--export-key` on each host)");
  }
  std::vector<std::string> files;
  if (fs::is_directory(st)) {
    for (fs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
      const fs::path& p = it->path();
      std::error_code ec2;
      if (p.extension() == ".pem" && fs::is_regular_file(it->status(ec2)) && !ec2)
        files.push_back(p.string());
    }
    if (ec)
      return make_error(Errc::kIo,
                        "cannot list trust store directory " + path + ": " + ec.message());
    std::sort(files.begin(), files.end());
    if (files.empty()) {
      return make_error(Errc::kNotFound, "trust store directory " + path +
                                             " holds no *.pem file: add the public key of every "
                                             "trusted platform (`constmig platform --export-key`)");
    }
  } else {
    files.push_back(path);
  }
  for (const std::string& f : files) {
    CM_ASSIGN_OR_RETURN(std::string pem, read_small_file(f, kMaxTrustFileSize, "trust store file"));
    CM_TRY(store.add_pem(pem, "trust store file " + f));
  }
  return store;
}

std::vector<std::array<uint8_t, 32>> TrustStore::raw_public_keys() const {
  std::vector<std::array<uint8_t, 32>> out;
  for (const auto& [id, key] : keys_) {
    std::array<uint8_t, 32> raw{};
    size_t len = raw.size();
    if (EVP_PKEY_get_raw_public_key(key.get(), raw.data(), &len) == 1 && len == raw.size()) {
      out.push_back(raw);
    }
  }
  return out;
}

Status TrustStore::verify(const Quote& quote, const Measurement& expected) const {
  auto it = keys_.find(quote.platform_key_id);
  if (it == keys_.end()) {
    return make_error(Errc::kSecurity,
                      "quote signed by platform " + short_id(quote.platform_key_id) +
                          "\u2026 which is not in the trust store " + source_ +
                          ": add its public key (`constmig platform --export-key`) to "
                          "trust it");
  }
  std::vector<uint8_t> tbs;
  tbs.reserve(kQuoteSignedSize);
  write_signed_part(quote, tbs);
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, it->second.get()) != 1) {
    return openssl_error("verifying a quote");
  }
  int rc = EVP_DigestVerify(ctx.get(), quote.signature.data(), quote.signature.size(), tbs.data(),
                            tbs.size());
  ERR_clear_error();
  if (rc != 1) {
    return make_error(Errc::kSecurity,
                      "quote signature from platform " + short_id(quote.platform_key_id) +
                          "\u2026 does not verify: the quote was altered in transit "
                          "or forged; do not trust this peer");
  }
  if (quote.measurement != expected) {
    return make_error(Errc::kSecurity, "peer enclave measurement " + to_hex(quote.measurement) +
                                           " differs from ours " + to_hex(expected) +
                                           ": both hosts must run the same enclave image (with the "
                                           "same thread-slot count)");
  }
  return ok_status();
}

}  // namespace constmig::platform
