// Emulated SGX platform with real enclave images: loading at the fixed base, ECALLs, secret
// memory, measurement, quotes, refusals. Each test runs in its own process (ctest), since an
// image stays mapped at its base for the life of a process.
#include <gtest/gtest.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "pagecounter/pagecounter_edl.h"
#include "platform/host_edl.h"
#include "platform/host_elf.h"

CONSTMIG_HOST_EDL(pc, PAGECOUNTER_EDL)

using namespace constmig;
using namespace constmig::platform;

namespace {

uint64_t u64_at(const std::vector<uint8_t>& b, size_t i) {
  uint64_t x = 0;
  EXPECT_GE(b.size(), (i + 1) * 8);
  if (b.size() >= (i + 1) * 8) std::memcpy(&x, b.data() + i * 8, 8);
  return x;
}

struct Loaded {
  std::unique_ptr<Platform> platform;
  std::unique_ptr<Enclave> enclave;
};

Loaded load_pagecounter(uint64_t heap = 64ull << 20, uint32_t slots = 4) {
  Loaded l;
  auto p = Platform::create_emulated({});
  EXPECT_TRUE(p.ok()) << (p.ok() ? "" : p.error().message);
  l.platform = std::move(p).value();
  EnclaveConfig cfg;
  cfg.image_path = PAGECOUNTER_IMAGE;
  cfg.heap_limit = heap;
  cfg.thread_slots = slots;
  cfg.expected_ecalls = pc::ecall_names();
  cfg.ocalls = pc::ocall_table(nullptr);
  auto e = l.platform->create_enclave(cfg);
  EXPECT_TRUE(e.ok()) << (e.ok() ? "" : e.error().message);
  if (e.ok()) l.enclave = std::move(e).value();
  return l;
}

// In a child process, try to read `len` bytes at `addr` of `pid` with process_vm_readv.
// Returns the child's verdict: 0 = read succeeded, 1 = failed, 2 = child error.
int child_reads(pid_t pid, uintptr_t addr, size_t len) {
  pid_t c = fork();
  if (c == 0) {
    std::vector<char> buf(len);
    iovec local{buf.data(), len};
    iovec remote{reinterpret_cast<void*>(addr), len};
    ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
    _exit(n == static_cast<ssize_t>(len) ? 0 : 1);
  }
  int st = 0;
  waitpid(c, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 2;
}

}  // namespace

TEST(Platform, LoadsAtFixedBaseAndRunsTheOracle) {
  auto l = load_pagecounter();
  ASSERT_TRUE(l.enclave);
  EXPECT_EQ(l.enclave->app_name(), "pagecounter");
  const auto& r = l.enclave->ranges();
  EXPECT_EQ(r.image_base, 0x200000000000ull);
  EXPECT_EQ(r.heap_base, r.image_base + constmig::abi::kHeapOffset);
  EXPECT_LT(r.globals_begin, r.globals_end);
  auto init = pc::pc_init(*l.enclave, u64s({8}));
  ASSERT_TRUE(init.ok()) << init.error().message;
  EXPECT_EQ(u64_at(*init, 0), 8u * 256);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(pc::pc_step(*l.enclave).ok());
  ASSERT_TRUE(pc::pc_touch(*l.enclave, u64s({42, 1000})).ok());
  auto chk = pc::pc_check(*l.enclave);
  ASSERT_TRUE(chk.ok()) << chk.error().message;
  EXPECT_EQ(u64_at(*chk, 0), 3u);
  EXPECT_EQ(u64_at(*chk, 1), 8u * 256);
  EXPECT_EQ(u64_at(*chk, 2), 1000u);
  auto hs = l.enclave->heap_stats();
  ASSERT_TRUE(hs.ok());
  EXPECT_GE(hs->in_use, 8ull << 20);
  EXPECT_LE(hs->top, 64ull << 20);
}

TEST(Platform, OracleDetectsCorruptedPage) {
  // The oracle must be able to fail: corrupt one page through the platform's view of the heap
  // (the emulation cannot stop this process itself, see docs/security.md) and check again.
  auto l = load_pagecounter();
  ASSERT_TRUE(pc::pc_init(*l.enclave, u64s({2})).ok());
  ASSERT_TRUE(pc::pc_step(*l.enclave).ok());
  ASSERT_TRUE(pc::pc_check(*l.enclave).ok());
  // Find a page header in the heap and bump its round.
  auto* heap = reinterpret_cast<uint8_t*>(l.enclave->ranges().heap_base);
  bool hit = false;
  for (uint64_t off = 0; off < (8ull << 20) && !hit; off += 4096) {
    uint64_t idx;
    std::memcpy(&idx, heap + off, 8);
    if ((idx ^ pagecounter::kSalt) == 5) {
      uint64_t round;
      std::memcpy(&round, heap + off + 8, 8);
      round += 1;
      std::memcpy(heap + off + 8, &round, 8);
      hit = true;
    }
  }
  ASSERT_TRUE(hit);
  auto chk = pc::pc_check(*l.enclave);
  ASSERT_FALSE(chk.ok());
  EXPECT_NE(chk.error().message.find("page 5"), std::string::npos) << chk.error().message;
}

TEST(Platform, EnclaveMemoryIsUnreadableFromAnotherProcess) {
  auto l = load_pagecounter();
  ASSERT_TRUE(pc::pc_init(*l.enclave, u64s({1})).ok());
  const auto& r = l.enclave->ranges();
  // Control: ordinary memory of this process IS readable by the child (the test can fail).
  static char ordinary[4096] = "ordinary host memory";
  EXPECT_EQ(child_reads(getpid(), reinterpret_cast<uintptr_t>(ordinary), sizeof ordinary), 0);
  // Heap pages in use and the image's globals live in memfd_secret memory.
  EXPECT_EQ(child_reads(getpid(), r.heap_base, 4096), 1);
  EXPECT_EQ(child_reads(getpid(), r.globals_begin, 64), 1);
}

TEST(Platform, ThreadSlotsBoundConcurrentEcalls) {
  auto l = load_pagecounter(64ull << 20, 2);
  ASSERT_TRUE(pc::pc_init(*l.enclave, u64s({4})).ok());
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; ++t) {
    ts.emplace_back([&, t] {
      for (int k = 0; k < 20; ++k) {
        auto r = pc::pc_touch(*l.enclave, u64s({static_cast<uint64_t>(t * 100 + k), 500}));
        EXPECT_TRUE(r.ok());
      }
    });
  }
  for (auto& t : ts) t.join();
  auto chk = pc::pc_check(*l.enclave);
  ASSERT_TRUE(chk.ok()) << chk.error().message;
  EXPECT_EQ(u64_at(*chk, 2), 8u * 20 * 500);
}

TEST(Platform, HeapLimitGivesCleanOutOfMemory) {
  auto l = load_pagecounter(32ull << 20);
  auto r = pc::pc_init(*l.enclave, u64s({64}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::kResourceExhausted) << r.error().message;
  EXPECT_NE(r.error().message.find("too small"), std::string::npos) << r.error().message;
  // The enclave keeps working.
  EXPECT_TRUE(pc::pc_init(*l.enclave, u64s({8})).ok());
}

TEST(Platform, BadEcallInputIsRejected) {
  auto l = load_pagecounter();
  auto r = pc::pc_init(*l.enclave, u64s({1, 2}));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("pc_init"), std::string::npos) << r.error().message;
  auto u = l.enclave->call(1000, {});
  ASSERT_FALSE(u.ok());
  EXPECT_NE(u.error().message.find("unknown ECALL"), std::string::npos) << u.error().message;
}

TEST(Platform, SmallOutputBufferDoesNotRerunTheEcall) {
  auto l = load_pagecounter();
  ASSERT_TRUE(pc::pc_init(*l.enclave, u64s({1})).ok());
  std::vector<uint8_t> tiny(4);
  auto r = l.enclave->ecall(static_cast<uint32_t>(pc::Ecall::pc_step), {}, tiny);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("needs 8 bytes"), std::string::npos) << r.error().message;
  // call() grows the buffer with the kept output: exactly one more step happens.
  auto s = pc::pc_step(*l.enclave);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(u64_at(*s, 0), 2u);
}

TEST(Platform, SecondEnclaveAtSameBaseIsRefused) {
  auto l = load_pagecounter();
  EnclaveConfig cfg;
  cfg.image_path = PAGECOUNTER_IMAGE;
  auto e2 = l.platform->create_enclave(cfg);
  ASSERT_FALSE(e2.ok());
  EXPECT_NE(e2.error().message.find("already"), std::string::npos) << e2.error().message;
}

TEST(Platform, MismatchedEdlIsRefused) {
  auto p = Platform::create_emulated({});
  ASSERT_TRUE(p.ok());
  EnclaveConfig cfg;
  cfg.image_path = PAGECOUNTER_IMAGE;
  cfg.expected_ecalls = {"pc_init", "pc_step"};
  auto e = (*p)->create_enclave(cfg);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message.find("same EDL"), std::string::npos) << e.error().message;
}

TEST(Platform, ForbiddenImportIsRefusedByName) {
  auto p = Platform::create_emulated({});
  ASSERT_TRUE(p.ok());
  EnclaveConfig cfg;
  cfg.image_path = BAD_IMPORT_IMAGE;
  auto e = (*p)->create_enclave(cfg);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().code, Errc::kSecurity);
  EXPECT_NE(e.error().message.find("'popen'"), std::string::npos) << e.error().message;
  auto c = check_image(BAD_IMPORT_IMAGE, 8);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("'popen'"), std::string::npos) << c.error().message;
}

TEST(Platform, MeasurementTracksEveryLoadedByte) {
  namespace fs = std::filesystem;
  auto base = check_image(PAGECOUNTER_IMAGE, 8);
  ASSERT_TRUE(base.ok()) << base.error().message;
  auto again = check_image(PAGECOUNTER_IMAGE, 8);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*base, *again);
  auto slots = check_image(PAGECOUNTER_IMAGE, 9);
  ASSERT_TRUE(slots.ok());
  EXPECT_NE(*base, *slots);

  // Flip one byte of a string literal (in a loaded, read-only segment) in a copy.
  std::ifstream in(PAGECOUNTER_IMAGE, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), {});
  std::string needle = "pagecounter check failed";
  auto it = std::search(bytes.begin(), bytes.end(), needle.begin(), needle.end());
  ASSERT_NE(it, bytes.end());
  *it = 'P';
  fs::path tmp = fs::temp_directory_path() / ("cm_measure_" + std::to_string(getpid()) + ".so");
  std::ofstream(tmp, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  auto changed = check_image(tmp.string(), 8);
  fs::remove(tmp);
  ASSERT_TRUE(changed.ok()) << changed.error().message;
  EXPECT_NE(*base, *changed);
}

TEST(Platform, QuotesBindMeasurementAndPlatform) {
  auto l = load_pagecounter();
  std::array<uint8_t, 64> rd{};
  rd[0] = 7;
  auto q = l.enclave->quote(rd);
  ASSERT_TRUE(q.ok()) << q.error().message;
  EXPECT_TRUE(l.platform->trust_store().verify(*q, l.enclave->measurement()).ok());
  // Another platform (another key) does not trust this one.
  auto other = Platform::create_emulated({});
  ASSERT_TRUE(other.ok());
  auto v = (*other)->trust_store().verify(*q, l.enclave->measurement());
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.error().code, Errc::kSecurity);
  // Another measurement is refused.
  Measurement m = l.enclave->measurement();
  m[0] ^= 1;
  EXPECT_FALSE(l.platform->trust_store().verify(*q, m).ok());
}

TEST(Platform, MissingImageGivesClearError) {
  auto p = Platform::create_emulated({});
  ASSERT_TRUE(p.ok());
  EnclaveConfig cfg;
  cfg.image_path = "/nonexistent/app.enclave.so";
  auto e = (*p)->create_enclave(cfg);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().code, Errc::kNotFound);
  EXPECT_NE(e.error().message.find("/nonexistent/app.enclave.so"), std::string::npos);
}

TEST(Platform, EnclaveReportsWhatMigratesAndWhatDoesNot) {
  auto l = load_pagecounter();
  ASSERT_TRUE(pc::pc_init(*l.enclave, u64s({1})).ok());
  auto raw = l.enclave->call(constmig::abi::kEcallLayout, {});
  ASSERT_TRUE(raw.ok()) << raw.error().message;
  ASSERT_EQ(raw->size(), sizeof(constmig::abi::EnclaveLayout));
  constmig::abi::EnclaveLayout lay;
  std::memcpy(&lay, raw->data(), sizeof lay);
  const auto& r = l.enclave->ranges();
  // Globals start where RELRO ends (page aligned) and stop before the per-instance section.
  EXPECT_EQ(lay.globals_begin % 4096, 0u);
  EXPECT_EQ(lay.globals_begin, r.globals_begin);
  EXPECT_LT(lay.globals_begin, lay.globals_end);
  EXPECT_LE(lay.globals_end, lay.instance_begin);
  EXPECT_LT(lay.instance_begin, lay.instance_end);
  EXPECT_LE(lay.instance_end, r.globals_end);
  EXPECT_EQ(lay.scratch_base, r.image_base + constmig::abi::kScratchOffset);
  EXPECT_EQ(lay.heap_base, r.heap_base);
  EXPECT_GE(lay.heap_top, 1u << 20);
  // An app ECALL that changes app state changes bytes inside the migrated globals range
  // (pagecounter's round counter) and none in the per-instance range.
  auto snap = [](uint64_t b, uint64_t e) {
    return std::vector<uint8_t>(reinterpret_cast<uint8_t*>(b), reinterpret_cast<uint8_t*>(e));
  };
  auto g0 = snap(lay.globals_begin, lay.globals_end);
  auto i0 = snap(lay.instance_begin, lay.instance_end);
  ASSERT_TRUE(pc::pc_step(*l.enclave).ok());
  EXPECT_NE(g0, snap(lay.globals_begin, lay.globals_end));
  EXPECT_EQ(i0, snap(lay.instance_begin, lay.instance_end));
  // The scratch area is secret memory too.
  reinterpret_cast<volatile uint8_t*>(lay.scratch_base)[0] = 1;
  EXPECT_EQ(child_reads(getpid(), lay.scratch_base, 64), 1);
}

TEST(Platform, RestoreWindowIsTheHeapsSecretMemoryAgain) {
  auto l = load_pagecounter();
  ASSERT_TRUE(pc::pc_init(*l.enclave, u64s({1})).ok());
  const auto& r = l.enclave->ranges();
  EXPECT_EQ(r.restore_base, r.image_base + constmig::abi::kRestoreOffset);
  EXPECT_GE(r.heap_fd, 0);
  EXPECT_FALSE(r.heap_anonymous);
  // Same bytes through both views, both ways.
  auto* heap = reinterpret_cast<volatile uint8_t*>(r.heap_base);
  auto* win = reinterpret_cast<volatile uint8_t*>(r.restore_base);
  uint8_t before = heap[12345];
  win[12345] = static_cast<uint8_t>(before + 1);
  EXPECT_EQ(heap[12345], static_cast<uint8_t>(before + 1));
  heap[12345] = before;
  EXPECT_EQ(win[12345], before);
  // Secret like the heap: another process cannot read it.
  EXPECT_EQ(child_reads(getpid(), r.restore_base, 64), 1);
}

TEST(Platform, AnonymousHeapOnlyWhileAppEcallsAreHeld) {
  auto l = load_pagecounter();
  ASSERT_TRUE(pc::pc_init(*l.enclave, u64s({1})).ok());
  auto st = l.enclave->use_anonymous_heap();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("held"), std::string::npos) << st.error().message;
  ASSERT_TRUE(l.enclave->hold_app_ecalls(std::chrono::milliseconds(1000)).ok());
  const auto& r = l.enclave->ranges();
  reinterpret_cast<volatile uint8_t*>(r.restore_base)[0] = 0x5a;  // in the secret file
  ASSERT_TRUE(l.enclave->use_anonymous_heap().ok());
  EXPECT_TRUE(r.heap_anonymous);
  // The heap view is fresh anonymous memory now (readable by this process's peers: not secret);
  // the window still maps the secret file.
  EXPECT_EQ(reinterpret_cast<volatile uint8_t*>(r.heap_base)[0], 0);
  EXPECT_EQ(reinterpret_cast<volatile uint8_t*>(r.restore_base)[0], 0x5a);
  EXPECT_EQ(child_reads(getpid(), r.heap_base, 64), 0);
  EXPECT_TRUE(l.enclave->use_anonymous_heap().ok());  // idempotent
}
