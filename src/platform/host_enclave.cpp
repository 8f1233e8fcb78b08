// Emulated SGX platform: enclave creation and ECALL/OCALL plumbing.
//
// UNTRUSTED code. Loading an image (the order matters):
//  1. read the image file, parse it, check its base, size, imports and entry points;
//  2. copy it into a sealed memfd and measure THOSE bytes (no window to swap the file);
//  3. reserve the boot page (ordinary memory) and the heap (memfd_secret) at their fixed
//     offsets, write the boot page: the image's static constructors may call malloc during
//     dlopen, so the heap must be reachable before the image is;
//  4. dlopen the memfd (glibc places it at its linked base; verify l_addr == 0);
//  5. move the image's writable segments (.data/.bss, and the RELRO part, re-protected
//     read-only) into memfd_secret memory, so enclave globals are as hidden as the heap.
#include "platform/host_enclave.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <chrono>
#include <fstream>
#include <iterator>
#include <mutex>
#include <sstream>
#include <thread>

#include "platform/host_elf.h"

namespace constmig::platform {
namespace {

constexpr uint64_t kMaxImageFileSize = 512ull << 20;

std::string hex_addr(uint64_t a) {
  char b[32];
  std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(a));
  return b;
}

std::string errno_str(int e) {
  return std::strerror(e);
}

std::string runtime_ecall_name(uint32_t id) {
  static const char* const kMig[] = {
      "MigHello",        "MigPeer",      "MigConfirm",     "MigFreeze",        "MigSealHostState",
      "MigExportPages",  "MigManifest",  "MigImportSmall", "MigOpenHostState", "MigImportPages",
      "MigFinish",       "MigMakeAbort", "MigCommit",      "MigAbort",         "MigForceResume",
      "MigReset",        "MigStatus",    "MigGoLive",      "MigResumeHello",   "MigResumeAccept",
      "MigResumeConfirm"};
  static_assert(std::size(kMig) == abi::kEcallMigLast - abi::kEcallMigFirst + 1,
                "a name for every migration ECALL");
  if (id >= abi::kEcallMigFirst && id <= abi::kEcallMigLast) return kMig[id - abi::kEcallMigFirst];
  switch (id) {
    case abi::kEcallFetchPending:
      return "FetchPending";
    case abi::kEcallHeapStats:
      return "HeapStats";
    case abi::kEcallSelfCheck:
      return "SelfCheck";
    case abi::kEcallLayout:
      return "Layout";
    case abi::kEcallPrefault:
      return "Prefault";
    default:
      return "#" + std::to_string(id);
  }
}

Result<std::vector<uint8_t>> read_file(const std::string& path, uint64_t limit) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return make_error(Errc::kNotFound,
                      "cannot open enclave image '" + path + "': " + errno_str(errno));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return make_error(Errc::kInvalidArgument, "enclave image '" + path + "' is not a file");
  }
  if (static_cast<uint64_t>(st.st_size) > limit) {
    ::close(fd);
    return make_error(Errc::kFormat, "enclave image '" + path + "' is larger than " +
                                         std::to_string(limit >> 20) + " MiB");
  }
  std::vector<uint8_t> data(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::read(fd, data.data() + done, data.size() - done);
    if (n <= 0) {
      int e = errno;
      ::close(fd);
      return make_error(Errc::kIo, "reading enclave image '" + path +
                                       "': " + (n == 0 ? std::string("short read") : errno_str(e)));
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return data;
}

struct CheckedImage {
  std::vector<uint8_t> bytes;
  ElfImageInfo info;
};

Result<CheckedImage> load_and_check(const std::string& path) {
  CheckedImage img;
  CM_ASSIGN_OR_RETURN(img.bytes, read_file(path, kMaxImageFileSize));
  auto info = parse_elf_image(img.bytes);
  if (!info.ok()) {
    return make_error(info.error().code,
                      "'" + path + "' is not a valid enclave image: " + info.error().message);
  }
  img.info = std::move(info).value();
  if (img.info.base == 0 || img.info.base % abi::kPageSize != 0) {
    return make_error(Errc::kFormat,
                      "'" + path +
                          "' is not linked at a fixed base address; build it with "
                          "constmig_add_enclave() (which passes -Wl,-Ttext-segment)");
  }
  if (img.info.span > abi::kImageMaxSize) {
    return make_error(Errc::kFormat, "enclave image '" + path + "' spans " +
                                         std::to_string(img.info.span >> 20) +
                                         " MiB; the limit is " +
                                         std::to_string(abi::kImageMaxSize >> 20) + " MiB");
  }
  if (img.info.base + abi::kEnclaveSpan > (1ull << 47)) {
    return make_error(Errc::kFormat, "enclave base " + hex_addr(img.info.base) +
                                         " leaves no room for the enclave heap below 128 TiB");
  }
  for (const char* sym : {CONSTMIG_ECALL_SYMBOL, CONSTMIG_INFO_SYMBOL}) {
    bool found = false;
    for (const auto& e : img.info.exports) found = found || e == sym;
    if (!found) {
      return make_error(Errc::kFormat, "enclave image '" + path + "' does not export '" + sym +
                                           "': link it with constmig_trusted_runtime");
    }
  }
  auto imports = check_enclave_imports(img.info);
  if (!imports.ok()) {
    return make_error(Errc::kSecurity,
                      "refusing to load '" + path + "': " + imports.error().message);
  }
  return img;
}

int32_t ocall_dispatch(void* ctx, uint32_t id, const uint8_t* in, size_t in_len, uint8_t* out,
                       size_t out_cap, size_t* out_len);

class EmulatedEnclave final : public Enclave {
 public:
  ~EmulatedEnclave() override {
    // The image stays mapped (glibc may not unload it); the heap and boot page go. One
    // enclave per image base per process: a later create() at the same base fails cleanly.
    if (heap_ != MAP_FAILED && heap_ != nullptr) munmap(heap_, abi::kHeapMaxReserve);
    if (window_ != MAP_FAILED && window_ != nullptr) munmap(window_, abi::kHeapMaxReserve);
    if (scratch_ != MAP_FAILED && scratch_ != nullptr) munmap(scratch_, abi::kScratchSize);
    if (heap_fd_ >= 0) ::close(heap_fd_);
    if (boot_ != MAP_FAILED && boot_ != nullptr) munmap(boot_, abi::kBootSize);
    if (image_fd_ >= 0) ::close(image_fd_);
  }

  static Result<std::unique_ptr<EmulatedEnclave>> create(const EnclaveConfig& cfg,
                                                         const PlatformKey* key) {
    if (cfg.thread_slots == 0 || cfg.thread_slots > abi::kMaxThreadSlots) {
      return make_error(Errc::kInvalidArgument,
                        "thread slots must be 1.." + std::to_string(abi::kMaxThreadSlots));
    }
    if (cfg.heap_limit < abi::kHeapMinSize || cfg.heap_limit > abi::kHeapMaxReserve) {
      return make_error(Errc::kInvalidArgument,
                        "enclave heap limit must be between " +
                            std::to_string(abi::kHeapMinSize >> 20) + " MiB and " +
                            std::to_string(abi::kHeapMaxReserve >> 30) + " GiB");
    }
    CM_ASSIGN_OR_RETURN(CheckedImage img, load_and_check(cfg.image_path));
    std::unique_ptr<EmulatedEnclave> e(new EmulatedEnclave());
    e->cfg_ = cfg;
    e->key_ = key;
    e->slot_free_.assign(cfg.thread_slots, true);
    CM_ASSIGN_OR_RETURN(e->measurement_, measure_image(img.bytes, img.info, cfg.thread_slots));
    CM_TRY(e->map_memory(img.info.base));
    CM_TRY(e->load_image(img));
    CM_TRY(e->check_entry_points());
    return e;
  }

  Result<size_t> ecall(uint32_t id, ByteView in, MutableByteView out) override {
    GateGuard gate(*this, id);
    uint32_t slot = acquire_slot();
    size_t len = 0;
    int32_t st = ecall_fn_(slot, id, in.data(), in.size(), out.data(), out.size(), &len);
    release_slot(slot);
    if (st == abi::kEcallOk) return len;
    return status_error(st, id, out, len);
  }

  Result<std::vector<uint8_t>> call(uint32_t id, ByteView in, size_t initial_out) override {
    GateGuard gate(*this, id);
    std::vector<uint8_t> out(initial_out < 256 ? 256 : initial_out);
    uint32_t slot = acquire_slot();
    size_t len = 0;
    int32_t st = ecall_fn_(slot, id, in.data(), in.size(), out.data(), out.size(), &len);
    if (st == abi::kEcallOutTooSmall) {
      // The enclave kept the output for this slot: fetch it without re-running the ECALL.
      out.resize(len);
      st = ecall_fn_(slot, abi::kEcallFetchPending, nullptr, 0, out.data(), out.size(), &len);
    }
    release_slot(slot);
    if (st != abi::kEcallOk) return status_error(st, id, out, len);
    out.resize(len);
    return out;
  }

  const Measurement& measurement() const override { return measurement_; }
  const EnclaveRanges& ranges() const override { return ranges_; }
  std::string app_name() const override { return app_name_; }

  Result<HeapStats> heap_stats() override {
    CM_ASSIGN_OR_RETURN(auto out, call(abi::kEcallHeapStats, {}, 64));
    ByteReader r(out);
    HeapStats s;
    s.top = r.u64();
    s.limit = r.u64();
    s.in_use = r.u64();
    s.live_allocations = r.u64();
    s.total_allocations = r.u64();
    if (!r.ok()) return make_error(Errc::kInternal, "malformed heap stats from enclave");
    return s;
  }

  Result<Quote> quote(std::span<const uint8_t, 64> report_data) override {
    if (key_ == nullptr) return make_error(Errc::kState, "this platform has no signing key");
    return key_->sign_quote(measurement_, report_data);
  }

  Status hold_app_ecalls(std::chrono::milliseconds timeout) override {
    std::unique_lock lk(gate_mu_);
    if (!held_) {
      held_ = true;
      hold_started_ns_ = realtime_ns();
    }
    if (!gate_cv_.wait_for(lk, timeout, [&] { return inflight_ == 0; })) {
      return make_error(Errc::kTimeout,
                        std::to_string(inflight_) + " ECALLs still running after " +
                            std::to_string(timeout.count()) +
                            " ms; new ECALLs stay held (release or retry the stop phase)");
    }
    return ok_status();
  }
  void release_app_ecalls() override {
    {
      std::lock_guard lk(gate_mu_);
      held_ = false;
      first_served_ns_ = 0;
      await_first_ = true;
    }
    gate_cv_.notify_all();
  }
  bool app_ecalls_held() const override {
    std::lock_guard lk(gate_mu_);
    return held_;
  }
  uint64_t hold_started_ns() const override {
    std::lock_guard lk(gate_mu_);
    return hold_started_ns_;
  }
  uint64_t first_served_after_release_ns() const override {
    std::lock_guard lk(gate_mu_);
    return first_served_ns_;
  }

  void set_page_fetcher(PageFetcher fetcher) override {
    auto f = fetcher ? std::make_shared<const PageFetcher>(std::move(fetcher)) : nullptr;
    std::lock_guard lk(fetcher_mu_);
    fetcher_ = std::move(f);
  }

  Status use_anonymous_heap() override {
    if (ranges_.heap_anonymous) return ok_status();
    if (!app_ecalls_held()) {
      return make_error(Errc::kState, "use_anonymous_heap: app ECALLs must be held");
    }
    void* p = mmap(reinterpret_cast<void*>(ranges_.heap_base), abi::kHeapMaxReserve,
                   PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED) {
      return make_error(Errc::kResourceExhausted,
                        "cannot replace the enclave heap by anonymous memory: " + errno_str(errno));
    }
    ranges_.heap_anonymous = true;
    return ok_status();
  }

  int32_t dispatch_ocall(uint32_t id, const uint8_t* in, size_t in_len, uint8_t* out,
                         size_t out_cap, size_t* out_len) {
    *out_len = 0;
    ByteView input(in, in_len);
    switch (id) {
      case abi::kOcallLog: {
        std::string_view msg = as_string_view(input);
        if (cfg_.log_sink) {
          cfg_.log_sink(msg);
        } else {
          std::fprintf(stderr, "[enclave %s] %.*s\n", app_name_.c_str(),
                       static_cast<int>(msg.size()), msg.data());
        }
        return abi::kEcallOk;
      }
      case abi::kOcallTimeNs: {
        if (out_cap < 8) return abi::kEcallOutTooSmall;
        timespec ts{};
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t t = static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
        std::memcpy(out, &t, 8);
        *out_len = 8;
        return abi::kEcallOk;
      }
      case abi::kOcallFetchPages: {
        if (in_len != 12) return abi::kEcallBadInput;
        uint64_t first;
        uint32_t count;
        std::memcpy(&first, in, 8);
        std::memcpy(&count, in + 8, 4);
        if (count == 0 || count > 256) return abi::kEcallBadInput;
        std::shared_ptr<const PageFetcher> f;
        {
          std::lock_guard lk(fetcher_mu_);
          f = fetcher_;
        }
        if (!f || !*f) return abi::kEcallRefused;
        return (*f)(first, count);
      }
      default:
        break;
    }
    if (id < abi::kFirstAppOcall || id - abi::kFirstAppOcall >= cfg_.ocalls.count) {
      return abi::kEcallUnknownId;
    }
    std::vector<uint8_t> result;
    OcallIo io{input, result, out_cap};
    int32_t st = cfg_.ocalls.handlers[id - abi::kFirstAppOcall](cfg_.ocalls.app_ctx, io);
    if (st != abi::kEcallOk) return st;
    if (result.size() > out_cap) return abi::kEcallOutTooSmall;
    if (!result.empty()) std::memcpy(out, result.data(), result.size());
    *out_len = result.size();
    return abi::kEcallOk;
  }

 private:
  EmulatedEnclave() = default;

  // Holds app ECALLs at entry while the gate is closed; counts those in flight.
  struct GateGuard {
    GateGuard(EmulatedEnclave& e, uint32_t id) : e_(e), app_(id < abi::kFirstRuntimeEcall) {
      if (!app_) return;
      std::unique_lock lk(e_.gate_mu_);
      e_.gate_cv_.wait(lk, [&] { return !e_.held_; });
      ++e_.inflight_;
    }
    ~GateGuard() {
      if (!app_) return;
      {
        std::lock_guard lk(e_.gate_mu_);
        --e_.inflight_;
        if (e_.await_first_) {
          e_.await_first_ = false;
          e_.first_served_ns_ = realtime_ns();
        }
      }
      e_.gate_cv_.notify_all();
    }
    EmulatedEnclave& e_;
    bool app_;
  };

  Error status_error(int32_t st, uint32_t id, MutableByteView out, size_t len) {
    std::string msg;
    if (len > 0 && len <= out.size()) {
      msg.assign(reinterpret_cast<const char*>(out.data()), len);
      while (!msg.empty() && msg.back() == '\0') msg.pop_back();
    }
    std::string name = id < ecall_names_.size() ? ecall_names_[id] : runtime_ecall_name(id);
    Errc code = Errc::kInternal;
    switch (st) {
      case abi::kEcallUnknownId:
        code = Errc::kInvalidArgument;
        break;
      case abi::kEcallBadInput:
        code = Errc::kInvalidArgument;
        break;
      case abi::kEcallOutTooSmall:
        code = Errc::kInvalidArgument;
        msg = "output needs " + std::to_string(len) + " bytes; use Enclave::call()";
        break;
      case abi::kEcallOutOfMemory:
        code = Errc::kResourceExhausted;
        break;
      case abi::kEcallAppError:
        code = Errc::kInvalidArgument;
        break;
      case abi::kEcallRefused:
        code = Errc::kState;
        break;
      default:
        break;
    }
    return make_error(code, "ECALL " + app_name_ + "." + name + " failed: " + msg);
  }

  uint32_t acquire_slot() {
    std::unique_lock lk(slot_mu_);
    slot_cv_.wait(lk, [&] { return free_count() > 0; });
    for (uint32_t i = 0; i < slot_free_.size(); ++i) {
      if (slot_free_[i]) {
        slot_free_[i] = false;
        return i;
      }
    }
    std::abort();  // unreachable: free_count() > 0
  }
  void release_slot(uint32_t s) {
    {
      std::lock_guard lk(slot_mu_);
      slot_free_[s] = true;
    }
    slot_cv_.notify_one();
  }
  size_t free_count() const {
    size_t n = 0;
    for (bool b : slot_free_) n += b;
    return n;
  }

  Status map_memory(uint64_t base) {
    ranges_.image_base = base;
    void* boot_addr = reinterpret_cast<void*>(base + abi::kBootOffset);
    boot_ = mmap(boot_addr, abi::kBootSize, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (boot_ == MAP_FAILED) {
      int e = errno;
      return make_error(e == EEXIST ? Errc::kState : Errc::kResourceExhausted,
                        "cannot reserve the enclave boot page at " +
                            hex_addr(base + abi::kBootOffset) + ": " + errno_str(e) +
                            (e == EEXIST ? " (an enclave with this base already exists in this "
                                           "process; use one process per enclave)"
                                         : ""));
    }
    heap_fd_ = static_cast<int>(syscall(SYS_memfd_secret, O_CLOEXEC));
    if (heap_fd_ < 0) {
      int e = errno;
      return make_error(Errc::kPermission,
                        "memfd_secret() failed: " + errno_str(e) +
                            ". The emulated enclave keeps its memory in secret memory; it needs "
                            "Linux >= 5.14 (on 5.14-6.4 boot with secretmem.enable=1)");
    }
    if (ftruncate(heap_fd_, static_cast<off_t>(abi::kHeapMaxReserve)) != 0) {
      return make_error(Errc::kResourceExhausted, "cannot size enclave heap: " + errno_str(errno));
    }
    ranges_.heap_base = base + abi::kHeapOffset;
    ranges_.heap_reserve = abi::kHeapMaxReserve;
    heap_ =
        mmap(reinterpret_cast<void*>(ranges_.heap_base), abi::kHeapMaxReserve,
             PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED_NOREPLACE | MAP_NORESERVE, heap_fd_, 0);
    if (heap_ == MAP_FAILED) {
      int e = errno;
      std::string hint;
      if (e == EAGAIN || e == EPERM || e == ENOMEM) {
        hint =
            " (secret memory is locked memory: run as root or raise RLIMIT_MEMLOCK, "
            "e.g. `ulimit -l unlimited`)";
      } else if (e == EEXIST) {
        hint = " (the address range is already in use in this process)";
      }
      return make_error(Errc::kResourceExhausted,
                        "cannot map the enclave heap (" +
                            std::to_string(abi::kHeapMaxReserve >> 30) + " GiB reserve) at " +
                            hex_addr(ranges_.heap_base) + ": " + errno_str(e) + hint);
    }
    // The restore window: the same secret file again, read-write (live-migration restores).
    ranges_.restore_base = base + abi::kRestoreOffset;
    ranges_.heap_fd = heap_fd_;
    window_ =
        mmap(reinterpret_cast<void*>(ranges_.restore_base), abi::kHeapMaxReserve,
             PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED_NOREPLACE | MAP_NORESERVE, heap_fd_, 0);
    if (window_ == MAP_FAILED) {
      return make_error(Errc::kResourceExhausted, "cannot map the enclave restore window at " +
                                                      hex_addr(ranges_.restore_base) + ": " +
                                                      errno_str(errno));
    }
    // Per-instance scratch: secret, never migrated.
    int sfd = static_cast<int>(syscall(SYS_memfd_secret, O_CLOEXEC));
    if (sfd < 0)
      return make_error(Errc::kPermission, "memfd_secret (scratch): " + errno_str(errno));
    if (ftruncate(sfd, static_cast<off_t>(abi::kScratchSize)) != 0) {
      ::close(sfd);
      return make_error(Errc::kResourceExhausted,
                        "cannot size enclave scratch: " + errno_str(errno));
    }
    scratch_ =
        mmap(reinterpret_cast<void*>(base + abi::kScratchOffset), abi::kScratchSize,
             PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED_NOREPLACE | MAP_NORESERVE, sfd, 0);
    ::close(sfd);
    if (scratch_ == MAP_FAILED) {
      return make_error(Errc::kResourceExhausted, "cannot map the enclave scratch area at " +
                                                      hex_addr(base + abi::kScratchOffset) + ": " +
                                                      errno_str(errno));
    }
    auto* bp = static_cast<abi::BootPage*>(boot_);
    *bp = abi::BootPage{};
    bp->magic = abi::kBootMagic;
    bp->abi_version = abi::kAbiVersion;
    bp->thread_slots = cfg_.thread_slots;
    bp->image_base = base;
    bp->heap_base = ranges_.heap_base;
    bp->heap_limit = cfg_.heap_limit;
    bp->ocall = &ocall_dispatch;
    bp->ocall_ctx = this;
    bp->scratch_base = base + abi::kScratchOffset;
    bp->scratch_size = abi::kScratchSize;
    std::memcpy(bp->measurement, measurement_.data(), sizeof bp->measurement);
    return ok_status();
  }

  Status load_image(const CheckedImage& img) {
    image_fd_ = memfd_create("constmig-enclave-image", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (image_fd_ < 0) return make_error(Errc::kIo, "memfd_create: " + errno_str(errno));
    size_t done = 0;
    while (done < img.bytes.size()) {
      ssize_t n = ::write(image_fd_, img.bytes.data() + done, img.bytes.size() - done);
      if (n <= 0) return make_error(Errc::kIo, "writing image memfd: " + errno_str(errno));
      done += static_cast<size_t>(n);
    }
    // F_SEAL_WRITE fails with EBUSY while a page of the file still has an extra reference; the
    // pages just written can hold one for a moment (per-CPU LRU batches the kernel drains only
    // on the calling CPU). Seen under load in CI: try again for a while before giving up.
    int sealed = -1;
    for (int attempt = 0; attempt < 50; ++attempt) {
      sealed =
          fcntl(image_fd_, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
      if (sealed == 0 || errno != EBUSY) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (sealed != 0) return make_error(Errc::kIo, "sealing image memfd: " + errno_str(errno));
    std::string path = "/proc/self/fd/" + std::to_string(image_fd_);
    dl_ = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (dl_ == nullptr) {
      const char* err = dlerror();
      return make_error(Errc::kFormat, "the loader refused enclave image '" + cfg_.image_path +
                                           "': " + (err ? err : "unknown error"));
    }
    link_map* lm = nullptr;
    if (dlinfo(dl_, RTLD_DI_LINKMAP, &lm) != 0 || lm == nullptr) {
      return make_error(Errc::kInternal, "dlinfo failed for the enclave image");
    }
    if (lm->l_addr != 0) {
      return make_error(Errc::kState,
                        "enclave image was not placed at its linked base " +
                            hex_addr(img.info.base) +
                            " (the range is taken in this process, "
                            "maybe by another enclave); migrated pointers would be invalid");
    }
    return move_writable_segments(img.info);
  }

  // Move every writable PT_LOAD range into memfd_secret memory, keeping contents and the
  // protection of the RELRO part.
  Status move_writable_segments(const ElfImageInfo& info) {
    const uint64_t pg = abi::kPageSize;
    for (const ElfSegment& s : info.loads) {
      if (!(s.flags & PF_W)) continue;
      uint64_t begin = s.vaddr & ~(pg - 1);
      uint64_t end = (s.vaddr + s.memsz + pg - 1) & ~(pg - 1);
      uint64_t len = end - begin;
      int fd = static_cast<int>(syscall(SYS_memfd_secret, O_CLOEXEC));
      if (fd < 0) return make_error(Errc::kPermission, "memfd_secret: " + errno_str(errno));
      if (ftruncate(fd, static_cast<off_t>(len)) != 0) {
        ::close(fd);
        return make_error(Errc::kResourceExhausted, "sizing secret data: " + errno_str(errno));
      }
      void* tmp = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      if (tmp == MAP_FAILED) {
        int e = errno;
        ::close(fd);
        return make_error(Errc::kResourceExhausted, "mapping secret data: " + errno_str(e));
      }
      // Make RELRO readable-writable is not needed: we only read the current contents.
      std::memcpy(tmp, reinterpret_cast<void*>(begin), len);
      void* at = mmap(reinterpret_cast<void*>(begin), len, PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_FIXED, fd, 0);
      munmap(tmp, len);
      ::close(fd);
      if (at == MAP_FAILED) {
        return make_error(Errc::kInternal, "remapping enclave data into secret memory failed: " +
                                               errno_str(errno) + " (image is now unusable)");
      }
      uint64_t data_begin = begin;
      if (info.relro && info.relro->vaddr >= begin && info.relro->vaddr < end) {
        uint64_t rb = info.relro->vaddr & ~(pg - 1);
        uint64_t re = (info.relro->vaddr + info.relro->memsz) & ~(pg - 1);  // glibc rounds down
        if (re > rb && mprotect(reinterpret_cast<void*>(rb), re - rb, PROT_READ) != 0) {
          return make_error(Errc::kInternal, "re-protecting RELRO: " + errno_str(errno));
        }
        if (re > data_begin) data_begin = re;
      }
      if (ranges_.globals_begin == 0 || data_begin < ranges_.globals_begin) {
        ranges_.globals_begin = data_begin;
      }
      if (end > ranges_.globals_end) ranges_.globals_end = end;
    }
    return ok_status();
  }

  Status check_entry_points() {
    ecall_fn_ = reinterpret_cast<constmig_enclave_ecall_fn>(dlsym(dl_, CONSTMIG_ECALL_SYMBOL));
    auto info_fn = reinterpret_cast<constmig_enclave_info_fn>(dlsym(dl_, CONSTMIG_INFO_SYMBOL));
    if (ecall_fn_ == nullptr || info_fn == nullptr) {
      return make_error(Errc::kFormat, "enclave image lacks its entry points");
    }
    const abi::EnclaveInfo* info = info_fn();
    if (info == nullptr || info->abi_version != abi::kAbiVersion) {
      return make_error(Errc::kFormat,
                        "enclave image was built for another ABI version; "
                        "rebuild it with this constmig");
    }
    app_name_ = info->app_name ? info->app_name : "?";
    for (uint32_t i = 0; i < info->ecall_count; ++i)
      ecall_names_.emplace_back(info->ecall_names[i]);
    if (!cfg_.expected_ecalls.empty() && cfg_.expected_ecalls != ecall_names_) {
      std::string have, want;
      for (auto& n : ecall_names_) have += (have.empty() ? "" : ",") + n;
      for (auto& n : cfg_.expected_ecalls) want += (want.empty() ? "" : ",") + n;
      return make_error(Errc::kFormat, "enclave image '" + cfg_.image_path + "' has ECALLs [" +
                                           have + "] but the host expects [" + want +
                                           "]: build both from the same EDL list");
    }
    if (info->ocall_count != cfg_.ocalls.count) {
      return make_error(Errc::kFormat, "enclave image declares " +
                                           std::to_string(info->ocall_count) +
                                           " app OCALLs but the host provides " +
                                           std::to_string(cfg_.ocalls.count));
    }
    return ok_status();
  }

  EnclaveConfig cfg_;
  const PlatformKey* key_ = nullptr;
  Measurement measurement_{};
  EnclaveRanges ranges_;
  std::string app_name_;
  std::vector<std::string> ecall_names_;
  void* boot_ = nullptr;
  void* heap_ = nullptr;
  void* window_ = nullptr;
  void* scratch_ = nullptr;
  int heap_fd_ = -1;
  int image_fd_ = -1;
  void* dl_ = nullptr;
  constmig_enclave_ecall_fn ecall_fn_ = nullptr;
  std::mutex fetcher_mu_;
  std::shared_ptr<const PageFetcher> fetcher_;  // Access Tracker fetches (set_page_fetcher)
  mutable std::mutex gate_mu_;
  std::condition_variable gate_cv_;
  bool held_ = false;
  bool await_first_ = false;
  uint64_t inflight_ = 0;
  uint64_t hold_started_ns_ = 0;
  uint64_t first_served_ns_ = 0;
  std::mutex slot_mu_;
  std::condition_variable slot_cv_;
  std::vector<bool> slot_free_;
};

int32_t ocall_dispatch(void* ctx, uint32_t id, const uint8_t* in, size_t in_len, uint8_t* out,
                       size_t out_cap, size_t* out_len) {
  return static_cast<EmulatedEnclave*>(ctx)->dispatch_ocall(id, in, in_len, out, out_cap, out_len);
}

class EmulatedPlatform final : public Platform {
 public:
  EmulatedPlatform(PlatformKey key, TrustStore trust)
      : key_(std::move(key)), trust_(std::move(trust)) {}
  std::string_view backend() const override { return "emulated"; }
  Result<std::unique_ptr<Enclave>> create_enclave(const EnclaveConfig& cfg) override {
    CM_ASSIGN_OR_RETURN(auto e, EmulatedEnclave::create(cfg, &key_));
    return std::unique_ptr<Enclave>(std::move(e));
  }
  const TrustStore& trust_store() const override { return trust_; }
  const PlatformKey& key() const override { return key_; }

 private:
  PlatformKey key_;
  TrustStore trust_;
};

}  // namespace

uint64_t realtime_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

std::string default_state_dir() {
  if (const char* h = std::getenv("CONSTMIG_HOME"); h && *h) return h;
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.constmig";
  return ".constmig";
}

Result<std::unique_ptr<Platform>> Platform::create_emulated(const PlatformOptions& opts) {
  Result<PlatformKey> key =
      opts.key_path.empty() ? PlatformKey::generate() : PlatformKey::load_or_create(opts.key_path);
  if (!key.ok()) return key.take_error();
  TrustStore trust;
  if (!opts.trust_store_path.empty()) {
    CM_ASSIGN_OR_RETURN(trust, TrustStore::load(opts.trust_store_path));
  } else {
    CM_TRY(trust.add_public_key_pem(key->public_key_pem()));
  }
  return std::unique_ptr<Platform>(new EmulatedPlatform(std::move(key).value(), std::move(trust)));
}

Result<Measurement> check_image(const std::string& image_path, uint32_t thread_slots) {
  CM_ASSIGN_OR_RETURN(CheckedImage img, load_and_check(image_path));
  return measure_image(img.bytes, img.info, thread_slots);
}

}  // namespace constmig::platform
