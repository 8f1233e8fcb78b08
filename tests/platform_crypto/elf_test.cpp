// Enclave image parsing and the import policy, on real shared objects and on hostile inputs.

#include <elf.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "platform/host_elf.h"
#include "platform/host_measure.h"
#include "test_util.h"

namespace constmig::platform {
namespace {

using testing::read_file;

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}
bool imports(const ElfImageInfo& info, const std::string& s) {
  return std::any_of(info.imports.begin(), info.imports.end(),
                     [&](const ElfSymbol& x) { return x.name == s; });
}

// ---- Direct access to ELF structures of a (valid) test image, for targeted corruption. ----
struct RawElf {
  std::vector<uint8_t>& b;
  Elf64_Ehdr eh() const {
    Elf64_Ehdr e;
    std::memcpy(&e, b.data(), sizeof e);
    return e;
  }
  void set_eh(const Elf64_Ehdr& e) { std::memcpy(b.data(), &e, sizeof e); }
  size_t ph_off(size_t i) const { return eh().e_phoff + i * sizeof(Elf64_Phdr); }
  Elf64_Phdr ph(size_t i) const {
    Elf64_Phdr p;
    std::memcpy(&p, b.data() + ph_off(i), sizeof p);
    return p;
  }
  void set_ph(size_t i, const Elf64_Phdr& p) { std::memcpy(b.data() + ph_off(i), &p, sizeof p); }
  int find_ph(uint32_t type, int nth = 0) const {
    for (size_t i = 0; i < eh().e_phnum; ++i) {
      if (ph(i).p_type == type && nth-- == 0) return static_cast<int>(i);
    }
    return -1;
  }
  uint64_t vaddr_to_off(uint64_t va) const {
    for (size_t i = 0; i < eh().e_phnum; ++i) {
      Elf64_Phdr p = ph(i);
      if (p.p_type == PT_LOAD && va >= p.p_vaddr && va < p.p_vaddr + p.p_filesz)
        return p.p_offset + (va - p.p_vaddr);
    }
    ADD_FAILURE() << "vaddr not mapped";
    return 0;
  }
  // File offset of the dynamic entry with `tag` (or -1).
  long dyn_entry(int64_t tag) const {
    Elf64_Phdr d = ph(find_ph(PT_DYNAMIC));
    uint64_t off = vaddr_to_off(d.p_vaddr);
    for (uint64_t i = 0; i < d.p_filesz / sizeof(Elf64_Dyn); ++i) {
      Elf64_Dyn e;
      std::memcpy(&e, b.data() + off + i * sizeof e, sizeof e);
      if (e.d_tag == tag) return static_cast<long>(off + i * sizeof e);
      if (e.d_tag == DT_NULL) break;
    }
    return -1;
  }
  uint64_t dyn_value(int64_t tag) const {
    Elf64_Dyn e;
    std::memcpy(&e, b.data() + dyn_entry(tag), sizeof e);
    return e.d_un.d_val;
  }
  void set_dyn_value(int64_t tag, uint64_t v) {
    long at = dyn_entry(tag);
    ASSERT_GE(at, 0);
    std::memcpy(b.data() + at + 8, &v, 8);
  }
};

class ElfTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tiny_ = read_file(TINY_IMAGE_PATH);
    ASSERT_GT(tiny_.size(), sizeof(Elf64_Ehdr));
  }
  void expect_format_error(const std::vector<uint8_t>& bytes, const std::string& needle) {
    auto r = parse_elf_image(bytes);
    ASSERT_FALSE(r.ok()) << "expected an error mentioning: " << needle;
    EXPECT_EQ(r.error().code, Errc::kFormat) << r.error().message;
    EXPECT_NE(r.error().message.find(needle), std::string::npos) << r.error().message;
  }
  std::vector<uint8_t> tiny_;
};

TEST_F(ElfTest, ParsesTinyImage) {
  auto r = parse_elf_image(tiny_);
  ASSERT_TRUE(r.ok()) << r.error().message;
  const ElfImageInfo& info = *r;
  EXPECT_EQ(info.base, 0x300000000000ull);
  ASSERT_FALSE(info.loads.empty());
  EXPECT_EQ(info.loads.front().vaddr & ~0xfffull, info.base);
  for (size_t i = 1; i < info.loads.size(); ++i) {
    EXPECT_GE(info.loads[i].vaddr, info.loads[i - 1].vaddr + info.loads[i - 1].memsz);
  }
  EXPECT_EQ(info.span % 4096, 0u);
  EXPECT_GE(info.base + info.span, info.loads.back().vaddr + info.loads.back().memsz);
  EXPECT_LE(info.span, 1ull << 20);
  bool has_exec = std::any_of(info.loads.begin(), info.loads.end(),
                              [](const ElfSegment& s) { return s.flags & PF_X; });
  bool has_write = std::any_of(info.loads.begin(), info.loads.end(),
                               [](const ElfSegment& s) { return s.flags & PF_W; });
  EXPECT_TRUE(has_exec);
  EXPECT_TRUE(has_write);
  EXPECT_TRUE(info.relro.has_value());
  EXPECT_TRUE(imports(info, "memcpy"));
  EXPECT_TRUE(contains(info.exports, "tiny_image_copy"));
  EXPECT_TRUE(contains(info.exports, "tiny_image_counter"));
  EXPECT_TRUE(contains(info.needed, "libc.so.6"));
  for (const ElfSymbol& s : info.imports) {
    EXPECT_FALSE(s.name.empty());
    if (s.name == "__gmon_start__") {
      EXPECT_TRUE(s.weak);
    }
    if (s.name == "memcpy") {
      EXPECT_FALSE(s.weak);
    }
  }
}

TEST_F(ElfTest, ImageImportingOnlyMemcpyPasses) {
  auto r = parse_elf_image(tiny_);
  ASSERT_TRUE(r.ok()) << r.error().message;
  Status s = check_enclave_imports(*r);
  EXPECT_TRUE(s.ok()) << s.error().message;
}

TEST_F(ElfTest, ImageImportingMallocIsRefusedByName) {
  auto bytes = read_file(MALLOC_IMAGE_PATH);
  auto r = parse_elf_image(bytes);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->base, 0x310000000000ull);
  ASSERT_TRUE(imports(*r, "malloc"));
  Status s = check_enclave_imports(*r);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, Errc::kSecurity);
  EXPECT_NE(s.error().message.find("imports 'malloc' (allocation)"), std::string::npos)
      << s.error().message;
  EXPECT_NE(s.error().message.find("ConstMigLib heap"), std::string::npos) << s.error().message;

  // Allocation can never be allowed explicitly: host memory would not migrate.
  std::vector<std::string> extra = {"malloc"};
  Status s2 = check_enclave_imports(*r, extra);
  ASSERT_FALSE(s2.ok());
  EXPECT_NE(s2.error().message.find("can never be allowed"), std::string::npos)
      << s2.error().message;
}

// An image built the way DESIGN.md §6 describes, using strings, hash maps and exceptions.
// Everything it imports is on the allowlist except libstdc++'s futex syscall() for
// function-local statics, which the policy reports with its cause.
TEST_F(ElfTest, CxxImageImportsOnlyAllowlistedSymbolsExceptSyscall) {
  auto bytes = read_file(CXX_IMAGE_PATH);
  auto r = parse_elf_image(bytes);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->base, 0x320000000000ull);
  std::vector<std::string> exports = r->exports;
  std::sort(exports.begin(), exports.end());
  EXPECT_EQ(exports, (std::vector<std::string>{"constmig_enclave_ecall", "constmig_enclave_info"}));
  std::string names;
  for (const ElfSymbol& s : r->imports) names += s.name + " ";
  RecordProperty("cxx_image_imports", names);
  EXPECT_FALSE(imports(*r, "malloc")) << names;
  EXPECT_FALSE(imports(*r, "_Znwm")) << names;

  Status s = check_enclave_imports(*r);
  if (imports(*r, "syscall")) {
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.error().message.find("imports 'syscall' (raw system call)"), std::string::npos)
        << s.error().message;
    EXPECT_NE(s.error().message.find("SYS_futex"), std::string::npos) << s.error().message;
    EXPECT_EQ(s.error().message.find("other refused"), std::string::npos) << s.error().message;
    std::vector<std::string> extra = {"syscall"};
    Status s2 = check_enclave_imports(*r, extra);
    EXPECT_TRUE(s2.ok()) << s2.error().message;
  } else {
    EXPECT_TRUE(s.ok()) << s.error().message;
  }
}

// ---- The policy table, on synthetic import lists. ----

Status check(std::vector<std::string> names, std::vector<std::string> extra = {}) {
  ElfImageInfo info;
  for (auto& n : names) info.imports.push_back({n, false});
  return check_enclave_imports(info, extra);
}

void expect_refused(const std::string& name, const std::string& category) {
  Status s = check({"memcpy", name});
  ASSERT_FALSE(s.ok()) << name;
  EXPECT_NE(s.error().message.find("imports '" + name + "' (" + category + ")"), std::string::npos)
      << s.error().message;
}

TEST(ImportPolicy, AllowsWhatEnclaveImagesNeed) {
  for (const char* n : {"memcpy",
                        "memmove",
                        "memset",
                        "memcmp",
                        "memchr",
                        "strlen",
                        "strcmp",
                        "strncmp",
                        "strtoull",
                        "bzero",
                        "bcmp",
                        "__memcpy_chk",
                        "pthread_mutex_lock",
                        "pthread_mutex_unlock",
                        "pthread_once",
                        "__pthread_key_create",
                        "pthread_getspecific",
                        "pthread_setspecific",
                        "pthread_cond_wait",
                        "sched_yield",
                        "__tls_get_addr",
                        "abort",
                        "__assert_fail",
                        "__stack_chk_fail",
                        "_dl_find_object",
                        "dl_iterate_phdr",
                        "__cxa_finalize",
                        "__cxa_atexit",
                        "__cxa_thread_atexit_impl",
                        "__gmon_start__",
                        "_ITM_registerTMCloneTable",
                        "fputs",
                        "fwrite",
                        "fputc",
                        "stderr",
                        "sprintf",
                        "snprintf",
                        "gettext",
                        "dcgettext",
                        "sqrt",
                        "sqrtf",
                        "expl",
                        "pow",
                        "floor",
                        "ceil",
                        "fabs",
                        "qsort",
                        "bsearch",
                        "strtol",
                        "strtod",
                        "__errno_location",
                        "__ctype_b_loc",
                        "__ctype_tolower_loc",
                        "__ctype_toupper_loc",
                        "__libc_single_threaded"}) {
    Status s = check({n});
    EXPECT_TRUE(s.ok()) << n << ": " << s.error().message;
  }
}

TEST(ImportPolicy, RefusesForbiddenSymbolsWithTheirCategory) {
  for (const char* n : {"malloc",
                        "calloc",
                        "realloc",
                        "free",
                        "aligned_alloc",
                        "posix_memalign",
                        "memalign",
                        "valloc",
                        "pvalloc",
                        "malloc_usable_size",
                        "strdup",
                        "strndup",
                        "asprintf",
                        "_Znwm",
                        "_Znam",
                        "_ZnwmRKSt9nothrow_t",
                        "_ZnwmSt11align_val_t",
                        "_ZdlPv",
                        "_ZdlPvm",
                        "_ZdaPv"}) {
    expect_refused(n, "allocation");
  }
  for (const char* n : {"mmap", "munmap", "mprotect", "brk", "sbrk", "madvise", "mremap"})
    expect_refused(n, "memory mapping");
  for (const char* n : {"open", "openat", "read", "write", "pread", "pwrite", "close", "fopen",
                        "fread", "printf", "fprintf", "puts", "ioctl"}) {
    expect_refused(n, "I/O & files");
  }
  for (const char* n :
       {"socket", "connect", "bind", "listen", "accept", "send", "sendto", "recv", "recvmsg"}) {
    expect_refused(n, "network");
  }
  for (const char* n :
       {"fork", "execve", "execvp", "system", "popen", "kill", "exit", "dlopen", "dlsym"}) {
    expect_refused(n, "processes & loading");
  }
  expect_refused("syscall", "raw system call");
  expect_refused("pthread_create", "threads");
  for (const char* n : {"clock_gettime", "gettimeofday", "time"}) expect_refused(n, "time");
  for (const char* n : {"getrandom", "rand", "random"}) expect_refused(n, "randomness");
  for (const char* n : {"getenv", "strtok"}) expect_refused(n, "host state");
  expect_refused("frobnicate", "not on the enclave import allowlist");
}

TEST(ImportPolicy, NamesTheFirstOffenderAndCountsTheOthers) {
  Status s = check({"memcpy", "malloc", "strlen", "free", "open", "frobnicate"});
  ASSERT_FALSE(s.ok());
  const std::string& m = s.error().message;
  EXPECT_EQ(m.rfind("enclave image imports 'malloc' (allocation) from the host", 0), 0u) << m;
  EXPECT_NE(m.find("3 other refused imports: 'free' (allocation), 'open' (I/O & files), "
                   "'frobnicate' (not on "
                   "the enclave import allowlist)"),
            std::string::npos)
      << m;
}

TEST(ImportPolicy, ExtraAllowedOverridesUnknownAndOverridableCategories) {
  EXPECT_FALSE(check({"frobnicate"}).ok());
  EXPECT_TRUE(check({"frobnicate"}, {"frobnicate"}).ok());
  EXPECT_TRUE(check({"clock_gettime"}, {"clock_gettime"}).ok());
  EXPECT_FALSE(check({"mmap"}, {"mmap"}).ok());
  EXPECT_FALSE(check({"_Znwm"}, {"_Znwm"}).ok());
}

TEST(ImportPolicy, CxxLibrarySymbolGetsAStaticLinkHint) {
  Status s = check({"_ZNSt6vectorIiSaIiEE9push_backERKi"});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("-static-libstdc++"), std::string::npos) << s.error().message;
}

// ---- Hostile inputs. ----

TEST_F(ElfTest, RejectsTruncatedAndEmptyInputs) {
  expect_format_error({}, "not an ELF file");
  expect_format_error({0x7f, 'E', 'L'}, "not an ELF file");
  std::vector<uint8_t> hdr_only(tiny_.begin(), tiny_.begin() + 40);
  expect_format_error(hdr_only, "shorter than an ELF64 header");
  std::vector<uint8_t> ph_cut(tiny_.begin(), tiny_.begin() + 100);
  expect_format_error(ph_cut, "do not fit");
}

TEST_F(ElfTest, EveryTruncationFailsCleanlyOrParses) {
  auto full = parse_elf_image(tiny_);
  ASSERT_TRUE(full.ok());
  uint64_t needed = 0;
  for (const ElfSegment& s : full->loads) needed = std::max(needed, s.offset + s.filesz);
  for (size_t len = 0; len < tiny_.size(); ++len) {
    // A copy of exactly len bytes, so ASan sees any read past the end.
    std::vector<uint8_t> cut(tiny_.begin(), tiny_.begin() + static_cast<long>(len));
    auto r = parse_elf_image(cut);
    if (len < needed) {
      ASSERT_FALSE(r.ok()) << "truncated to " << len;
      ASSERT_EQ(r.error().code, Errc::kFormat);
    }
  }
}

TEST_F(ElfTest, RejectsBadIdentAndHeaderFields) {
  {
    auto b = tiny_;
    b[1] = 'X';
    expect_format_error(b, "bad magic");
  }
  {
    auto b = tiny_;
    b[EI_CLASS] = ELFCLASS32;
    expect_format_error(b, "64-bit");
  }
  {
    auto b = tiny_;
    b[EI_DATA] = ELFDATA2MSB;
    expect_format_error(b, "little-endian");
  }
  {
    auto b = tiny_;
    RawElf e{b};
    auto h = e.eh();
    h.e_machine = EM_AARCH64;
    e.set_eh(h);
    expect_format_error(b, "x86-64");
  }
  {
    auto b = tiny_;
    RawElf e{b};
    auto h = e.eh();
    h.e_type = ET_EXEC;
    e.set_eh(h);
    expect_format_error(b, "not a shared object");
  }
  {
    auto b = tiny_;
    RawElf e{b};
    auto h = e.eh();
    h.e_phentsize = 32;
    e.set_eh(h);
    expect_format_error(b, "entry size");
  }
}

TEST_F(ElfTest, RejectsHugeOrMisplacedProgramHeaderTables) {
  for (uint16_t phnum : {uint16_t{0xffff}, uint16_t{0xfffe}, uint16_t{4000}}) {
    auto b = tiny_;
    RawElf e{b};
    auto h = e.eh();
    h.e_phnum = phnum;
    e.set_eh(h);
    auto r = parse_elf_image(b);
    ASSERT_FALSE(r.ok()) << phnum;
    EXPECT_EQ(r.error().code, Errc::kFormat);
  }
  for (uint64_t phoff : {uint64_t{1} << 62, ~uint64_t{0}, uint64_t{0} + 1000000}) {
    auto b = tiny_;
    RawElf e{b};
    auto h = e.eh();
    h.e_phoff = phoff;
    e.set_eh(h);
    expect_format_error(b, "do not fit");
  }
  {
    auto b = tiny_;
    RawElf e{b};
    auto h = e.eh();
    h.e_phnum = 0;
    e.set_eh(h);
    expect_format_error(b, "no program headers");
  }
}

TEST_F(ElfTest, RejectsBadLoadSegments) {
  RawElf probe{tiny_};
  int first = probe.find_ph(PT_LOAD, 0);
  int second = probe.find_ph(PT_LOAD, 1);
  ASSERT_GE(first, 0);
  ASSERT_GE(second, 0);
  {
    auto b = tiny_;
    RawElf e{b};
    auto p = e.ph(second);
    p.p_offset = b.size() + 4096;
    e.set_ph(second, p);
    expect_format_error(b, "past the end");
  }
  {
    auto b = tiny_;
    RawElf e{b};
    auto p = e.ph(second);
    p.p_offset = ~uint64_t{0} - 10;
    e.set_ph(second, p);
    auto r = parse_elf_image(b);
    ASSERT_FALSE(r.ok());
  }
  {
    auto b = tiny_;
    RawElf e{b};
    auto p = e.ph(second);
    p.p_filesz = p.p_memsz + 1;
    e.set_ph(second, p);
    expect_format_error(b, "p_filesz > p_memsz");
  }
  {
    auto b = tiny_;
    RawElf e{b};
    auto p = e.ph(second);
    p.p_memsz = ~uint64_t{0} - 5;
    e.set_ph(second, p);
    expect_format_error(b, "user address space");
  }
  {  // loads out of order
    auto b = tiny_;
    RawElf e{b};
    auto p1 = e.ph(first);
    auto p2 = e.ph(second);
    e.set_ph(first, p2);
    e.set_ph(second, p1);
    expect_format_error(b, "sorted");
  }
  {  // vaddr/offset misaligned
    auto b = tiny_;
    RawElf e{b};
    auto p = e.ph(second);
    p.p_vaddr += 8;
    e.set_ph(second, p);
    expect_format_error(b, "modulo the page size");
  }
  {  // linked at 0
    auto b = tiny_;
    RawElf e{b};
    auto p = e.ph(first);
    p.p_vaddr = 0;
    e.set_ph(first, p);
    auto r = parse_elf_image(b);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message.find("linked at address 0"), std::string::npos)
        << r.error().message;
    EXPECT_NE(r.error().message.find("-Ttext-segment"), std::string::npos) << r.error().message;
  }
  {  // larger than the image reservation
    auto b = tiny_;
    RawElf e{b};
    int last = e.find_ph(PT_LOAD, 3) >= 0 ? e.find_ph(PT_LOAD, 3) : second;
    auto p = e.ph(last);
    p.p_memsz = 300ull << 20;
    e.set_ph(last, p);
    expect_format_error(b, "MiB the enclave layout reserves");
  }
  {  // no PT_LOAD at all
    auto b = tiny_;
    RawElf e{b};
    for (int i = 0; i < e.eh().e_phnum; ++i) {
      auto p = e.ph(i);
      if (p.p_type == PT_LOAD) {
        p.p_type = PT_NOTE;
        e.set_ph(i, p);
      }
    }
    expect_format_error(b, "no PT_LOAD");
  }
}

TEST_F(ElfTest, RejectsBadDynamicSection) {
  RawElf probe{tiny_};
  ASSERT_GE(probe.find_ph(PT_DYNAMIC), 0);
  {
    auto b = tiny_;
    RawElf e{b};
    auto p = e.ph(e.find_ph(PT_DYNAMIC));
    p.p_type = PT_NOTE;
    e.set_ph(e.find_ph(PT_DYNAMIC), p);
    expect_format_error(b, "no PT_DYNAMIC");
  }
  {
    auto b = tiny_;
    RawElf e{b};
    int i = e.find_ph(PT_DYNAMIC);
    auto p = e.ph(i);
    p.p_vaddr = 0x100;  // not inside any PT_LOAD
    e.set_ph(i, p);
    expect_format_error(b, "PT_DYNAMIC");
  }
  {
    auto b = tiny_;
    RawElf{b}.set_dyn_value(DT_STRSZ, 1ull << 40);
    expect_format_error(b, "dynamic string table");
  }
  {
    auto b = tiny_;
    RawElf{b}.set_dyn_value(DT_STRTAB, 0x10);
    expect_format_error(b, "dynamic string table");
  }
  {
    auto b = tiny_;
    RawElf{b}.set_dyn_value(DT_SYMTAB, 0x300000000000ull + (1ull << 30));
    expect_format_error(b, "dynamic symbol table");
  }
  {
    auto b = tiny_;
    RawElf{b}.set_dyn_value(DT_NEEDED, 1u << 30);
    expect_format_error(b, "DT_NEEDED name offset");
  }
  {  // a symbol name pointing outside the string table
    auto b = tiny_;
    RawElf e{b};
    uint64_t symtab = e.vaddr_to_off(e.dyn_value(DT_SYMTAB));
    uint32_t huge = 0x7fffffff;
    std::memcpy(b.data() + symtab + sizeof(Elf64_Sym) * 3, &huge, 4);
    expect_format_error(b, "dynamic symbol name offset");
  }
  {  // a name that runs off the end of the string table: cut DT_STRSZ inside the last name read
    auto b = tiny_;
    RawElf e{b};
    auto info = parse_elf_image(tiny_);
    ASSERT_TRUE(info.ok());
    size_t nsyms = 1 + info->imports.size() + info->exports.size();  // all of tiny's dynsym
    uint64_t symtab = e.vaddr_to_off(e.dyn_value(DT_SYMTAB));
    uint64_t max_off = e.dyn_value(DT_NEEDED);
    for (size_t i = 1; i < nsyms; ++i) {
      uint32_t name;
      std::memcpy(&name, b.data() + symtab + i * sizeof(Elf64_Sym), 4);
      max_off = std::max<uint64_t>(max_off, name);
    }
    e.set_dyn_value(DT_STRSZ, max_off + 2);
    auto r = parse_elf_image(b);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message.find("NUL"), std::string::npos) << r.error().message;
  }
  {  // a relocation referencing a symbol far past the table
    auto b = tiny_;
    RawElf e{b};
    uint64_t rela = e.vaddr_to_off(e.dyn_value(DT_RELA));
    uint64_t info = (uint64_t{0x7fffffff} << 32) | R_X86_64_GLOB_DAT;
    std::memcpy(b.data() + rela + 8, &info, 8);
    expect_format_error(b, "symbol");
  }
  {  // GNU hash with an absurd bucket count
    auto b = tiny_;
    RawElf e{b};
    uint64_t gh = e.vaddr_to_off(e.dyn_value(DT_GNU_HASH));
    uint32_t huge = 0xffffffff;
    std::memcpy(b.data() + gh, &huge, 4);
    expect_format_error(b, "DT_GNU_HASH");
  }
  {  // no terminator: every entry becomes DT_DEBUG
    auto b = tiny_;
    RawElf e{b};
    auto d = e.ph(e.find_ph(PT_DYNAMIC));
    uint64_t off = e.vaddr_to_off(d.p_vaddr);
    for (uint64_t i = 0; i < d.p_filesz / sizeof(Elf64_Dyn); ++i) {
      int64_t tag = DT_DEBUG;
      std::memcpy(b.data() + off + i * sizeof(Elf64_Dyn), &tag, 8);
    }
    expect_format_error(b, "DT_NULL");
  }
}

// Random bit flips, concentrated on the parts the parser reads. Nothing may crash or read out of
// bounds (the ASan build checks that); whatever parses must also survive the import check and
// measurement.
void fuzz_image(const std::vector<uint8_t>& image, int iterations, uint32_t seed) {
  std::mt19937 rng(seed);
  auto parsed = parse_elf_image(image);
  ASSERT_TRUE(parsed.ok());
  uint64_t hot_end =
      std::min<uint64_t>(image.size(), parsed->loads.front().filesz);  // headers + dyn tables
  std::vector<uint8_t> pristine = image;
  RawElf raw{pristine};
  auto d = raw.ph(raw.find_ph(PT_DYNAMIC));
  uint64_t dyn_off = raw.vaddr_to_off(d.p_vaddr);
  int ok = 0;
  for (int it = 0; it < iterations; ++it) {
    std::vector<uint8_t> b = image;
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) {
      uint64_t pos;
      switch (rng() % 4) {
        case 0:
          pos = rng() % 64 + 0;
          break;  // ELF header
        case 1:
          pos = rng() % std::max<uint64_t>(hot_end, 1);
          break;  // phdrs, dynsym, hash, relocs
        case 2:
          pos = dyn_off + rng() % std::max<uint64_t>(d.p_filesz, 1);
          break;  // dynamic section
        default:
          pos = rng() % b.size();
          break;
      }
      pos %= b.size();
      b[pos] ^= static_cast<uint8_t>(1u << (rng() % 8));
    }
    if (rng() % 8 == 0) {  // sometimes also truncate (a fresh buffer, so ASan sees overreads)
      b = std::vector<uint8_t>(b.begin(), b.begin() + static_cast<long>(rng() % b.size()));
    }
    auto r = parse_elf_image(b);
    if (!r.ok()) {
      ASSERT_FALSE(r.error().message.empty());
      continue;
    }
    ++ok;
    for (const ElfSegment& s : r->loads) ASSERT_LE(s.offset + s.filesz, b.size());
    (void)check_enclave_imports(*r);
    auto m = measure_image(b, *r, 1);
    ASSERT_TRUE(m.ok()) << m.error().message;
  }
  ::testing::Test::RecordProperty("parsed_ok", ok);
}

TEST_F(ElfTest, RandomBitFlipsNeverCrash) {
  fuzz_image(tiny_, 4000, 12345);
}

TEST(ElfFuzz, RandomBitFlipsOnCxxImageNeverCrash) {
  fuzz_image(read_file(CXX_IMAGE_PATH), 2000, 777);
}

}  // namespace
}  // namespace constmig::platform
