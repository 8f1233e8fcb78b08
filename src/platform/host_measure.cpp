// UNTRUSTED (host side). Enclave measurement. See host_measure.h for what is hashed and why.

#include "platform/host_measure.h"

#include <openssl/err.h>
#include <openssl/evp.h>

#include <memory>
#include <string_view>
#include <vector>

#include "common/enclave_abi.h"

namespace constmig::platform {
namespace {

constexpr std::string_view kTag = "constmig-mrenclave-v1";

struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

Error openssl_error(const char* what) {
  unsigned long e = ERR_get_error();
  char buf[256] = "no OpenSSL error queued";
  if (e != 0) ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return make_error(Errc::kInternal, std::string(what) + " failed in OpenSSL (" + buf +
                                         "): check the OpenSSL 3 installation; this is not "
                                         "caused by the input");
}

// Incremental SHA-256.
class Sha256 {
 public:
  Status init() {
    ctx_.reset(EVP_MD_CTX_new());
    if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) != 1) {
      return openssl_error("SHA-256 init");
    }
    return ok_status();
  }
  Status update(ByteView b) {
    if (!b.empty() && EVP_DigestUpdate(ctx_.get(), b.data(), b.size()) != 1) {
      return openssl_error("SHA-256 update");
    }
    return ok_status();
  }
  Result<Measurement> finish() {
    Measurement m{};
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(ctx_.get(), m.data(), &len) != 1 || len != m.size()) {
      return openssl_error("SHA-256 final");
    }
    return m;
  }

 private:
  MdCtx ctx_;
};

}  // namespace

std::string to_hex(ByteView bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s;
  s.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    s.push_back(kDigits[b >> 4]);
    s.push_back(kDigits[b & 15]);
  }
  return s;
}

Result<Measurement> sha256(ByteView data) {
  Sha256 h;
  CM_TRY(h.init());
  CM_TRY(h.update(data));
  return h.finish();
}

Result<Measurement> measure_image(ByteView file, const ElfImageInfo& info, uint32_t thread_slots) {
  if (thread_slots == 0 || thread_slots > abi::kMaxThreadSlots) {
    return make_error(Errc::kInvalidArgument, "thread slot count " + std::to_string(thread_slots) +
                                                  " is out of range: use 1.." +
                                                  std::to_string(abi::kMaxThreadSlots));
  }
  std::vector<uint8_t> header;
  ByteWriter w(header);
  w.u32(static_cast<uint32_t>(kTag.size()));
  w.bytes(as_bytes_view(kTag));
  w.u32(abi::kAbiVersion);
  w.u64(abi::kImageMaxSize);
  w.u64(abi::kBootOffset);
  w.u64(abi::kHeapOffset);
  w.u64(abi::kHeapMaxReserve);
  w.u32(thread_slots);
  w.u64(info.base);
  w.u64(info.span);
  w.u8(info.relro ? 1 : 0);
  if (info.relro) {
    w.u64(info.relro->vaddr);
    w.u64(info.relro->memsz);
  }
  w.u32(static_cast<uint32_t>(info.loads.size()));

  Sha256 h;
  CM_TRY(h.init());
  CM_TRY(h.update(header));
  for (size_t i = 0; i < info.loads.size(); ++i) {
    const ElfSegment& s = info.loads[i];
    if (s.offset > file.size() || s.filesz > file.size() - s.offset) {
      return make_error(Errc::kFormat,
                        "cannot measure the enclave image: PT_LOAD " + std::to_string(i) +
                            " (file bytes [" + std::to_string(s.offset) + ", +" +
                            std::to_string(s.filesz) + ")) lies outside the " +
                            std::to_string(file.size()) +
                            "-byte file; the parsed image info does not belong to this file "
                            "(parse and measure the same bytes)");
    }
    std::vector<uint8_t> seg;
    ByteWriter sw(seg);
    sw.u64(s.vaddr);
    sw.u64(s.memsz);
    sw.u32(s.flags);
    sw.u64(s.filesz);
    CM_TRY(h.update(seg));
    CM_TRY(h.update(file.subspan(s.offset, s.filesz)));
  }
  return h.finish();
}

}  // namespace constmig::platform
