// UNTRUSTED (host side). Enclave image parsing and the enclave import policy. See host_elf.h.
//
// Parsing rules. The file is hostile input. Every structure is copied out with memcpy after a
// bounds check (no casts into the buffer, no alignment assumptions); every `offset + size` is
// computed with overflow checks; tables of unknown length (GNU hash chains, strings) are walked
// only inside the bytes that back them. Dynamic-section pointers are virtual addresses, as the
// dynamic linker sees them, and are translated through the PT_LOAD table to file bytes: a table
// that is not backed by file bytes of one PT_LOAD is malformed.

#include "platform/host_elf.h"

#include <elf.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <type_traits>
#include <unordered_set>

#include "common/enclave_abi.h"

namespace constmig::platform {
namespace {

constexpr uint64_t kPage = abi::kPageSize;
constexpr uint64_t kUserTop = 1ull << 47;     // x86-64 user address space (4-level paging)
constexpr uint64_t kMaxSymbols = 1ull << 20;  // far above any real image (~10^3 dynamic symbols)

Error bad(const std::string& what) {
  return make_error(Errc::kFormat,
                    "malformed enclave image: " + what +
                        ". The file is truncated, corrupt or not an enclave image: rebuild it "
                        "(constmig_add_enclave) and check that the right file is used");
}

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// [off, off + len) lies inside a buffer of `size` bytes.
bool in_range(uint64_t off, uint64_t len, uint64_t size) {
  return off <= size && len <= size - off;
}

template <typename T>
T load_at(ByteView b, uint64_t off) {  // caller has checked in_range(off, sizeof(T), b.size())
  static_assert(std::is_trivially_copyable_v<T>);
  T v;
  std::memcpy(&v, b.data() + off, sizeof(T));
  return v;
}

// Virtual address -> file bytes, through the PT_LOAD table (only the file-backed part).
class AddressMap {
 public:
  AddressMap(ByteView file, const std::vector<ElfSegment>& loads) : file_(file), loads_(loads) {}

  // Bytes [vaddr, vaddr + len), if one segment's file-backed part holds all of them.
  std::optional<ByteView> map(uint64_t vaddr, uint64_t len) const {
    for (const ElfSegment& s : loads_) {
      if (vaddr < s.vaddr) continue;
      uint64_t rel = vaddr - s.vaddr;
      if (!in_range(rel, len, s.filesz)) continue;
      return file_.subspan(s.offset + rel, len);  // offset + filesz checked at parse time
    }
    return std::nullopt;
  }
  // Bytes from vaddr to the end of the file-backed part of its segment (for tables of unknown
  // length); nullopt if vaddr is not file-backed.
  std::optional<ByteView> map_to_end(uint64_t vaddr) const {
    for (const ElfSegment& s : loads_) {
      if (vaddr < s.vaddr || vaddr - s.vaddr >= s.filesz) continue;
      uint64_t rel = vaddr - s.vaddr;
      return file_.subspan(s.offset + rel, s.filesz - rel);
    }
    return std::nullopt;
  }

 private:
  ByteView file_;
  const std::vector<ElfSegment>& loads_;
};

struct DynInfo {
  std::vector<uint64_t> needed;  // string-table offsets
  std::optional<uint64_t> strtab, strsz, symtab, syment, hash, gnu_hash;
  std::optional<uint64_t> rela, relasz, relaent, rel, relsz, relent, jmprel, pltrelsz, pltrel;
};

Result<DynInfo> read_dynamic(const AddressMap& am, const ElfSegment& dyn) {
  constexpr uint64_t kEnt = sizeof(Elf64_Dyn);
  if (dyn.filesz < kEnt)
    return bad("PT_DYNAMIC is " + std::to_string(dyn.filesz) + " bytes, too small for one entry");
  uint64_t count = dyn.filesz / kEnt;
  auto bytes = am.map(dyn.vaddr, count * kEnt);
  if (!bytes) {
    return bad("PT_DYNAMIC at " + hex(dyn.vaddr) + " (" + std::to_string(dyn.filesz) +
               " bytes) is not inside the file-backed part of a PT_LOAD segment");
  }
  DynInfo d;
  auto set = [&](std::optional<uint64_t>& slot, const char* tag, uint64_t v) -> Status {
    if (slot) return bad(std::string("the dynamic section has two ") + tag + " entries");
    slot = v;
    return ok_status();
  };
  for (uint64_t i = 0; i < count; ++i) {
    auto e = load_at<Elf64_Dyn>(*bytes, i * kEnt);
    uint64_t v = e.d_un.d_val;
    switch (e.d_tag) {
      case DT_NULL:
        return d;
      case DT_NEEDED:
        d.needed.push_back(v);
        break;
      case DT_STRTAB:
        CM_TRY(set(d.strtab, "DT_STRTAB", v));
        break;
      case DT_STRSZ:
        CM_TRY(set(d.strsz, "DT_STRSZ", v));
        break;
      case DT_SYMTAB:
        CM_TRY(set(d.symtab, "DT_SYMTAB", v));
        break;
      case DT_SYMENT:
        CM_TRY(set(d.syment, "DT_SYMENT", v));
        break;
      case DT_HASH:
        CM_TRY(set(d.hash, "DT_HASH", v));
        break;
      case DT_GNU_HASH:
        CM_TRY(set(d.gnu_hash, "DT_GNU_HASH", v));
        break;
      case DT_RELA:
        CM_TRY(set(d.rela, "DT_RELA", v));
        break;
      case DT_RELASZ:
        CM_TRY(set(d.relasz, "DT_RELASZ", v));
        break;
      case DT_RELAENT:
        CM_TRY(set(d.relaent, "DT_RELAENT", v));
        break;
      case DT_REL:
        CM_TRY(set(d.rel, "DT_REL", v));
        break;
      case DT_RELSZ:
        CM_TRY(set(d.relsz, "DT_RELSZ", v));
        break;
      case DT_RELENT:
        CM_TRY(set(d.relent, "DT_RELENT", v));
        break;
      case DT_JMPREL:
        CM_TRY(set(d.jmprel, "DT_JMPREL", v));
        break;
      case DT_PLTRELSZ:
        CM_TRY(set(d.pltrelsz, "DT_PLTRELSZ", v));
        break;
      case DT_PLTREL:
        CM_TRY(set(d.pltrel, "DT_PLTREL", v));
        break;
      default:
        break;
    }
  }
  return bad("the dynamic section has no DT_NULL terminator within its " + std::to_string(count) +
             " entries");
}

// The dynamic string table, with checked lookups.
class StringTable {
 public:
  explicit StringTable(ByteView b) : b_(b) {}
  Result<std::string> get(uint64_t off, const char* what) const {
    if (off >= b_.size()) {
      return bad(std::string(what) + " name offset " + std::to_string(off) +
                 " is outside the dynamic string table (" + std::to_string(b_.size()) + " bytes)");
    }
    const void* nul = std::memchr(b_.data() + off, 0, b_.size() - off);
    if (!nul) {
      return bad(std::string(what) + " name at offset " + std::to_string(off) +
                 " runs past the end of the dynamic string table (no NUL terminator)");
    }
    auto* start = reinterpret_cast<const char*>(b_.data() + off);
    return std::string(start, static_cast<const char*>(nul) - start);
  }

 private:
  ByteView b_;
};

// Number of .dynsym entries per DT_GNU_HASH (index of the last hashed symbol + 1).
Result<uint64_t> gnu_hash_count(const AddressMap& am, uint64_t vaddr) {
  auto b = am.map_to_end(vaddr);
  if (!b || b->size() < 16)
    return bad("DT_GNU_HASH at " + hex(vaddr) + " is not backed by file bytes");
  uint64_t nbuckets = load_at<uint32_t>(*b, 0);
  uint64_t symoffset = load_at<uint32_t>(*b, 4);
  uint64_t bloom_size = load_at<uint32_t>(*b, 8);
  // All three are < 2^32, so these products and sums cannot overflow 64 bits.
  uint64_t buckets_off = 16 + bloom_size * 8;
  uint64_t chains_off = buckets_off + nbuckets * 4;
  if (chains_off > b->size()) {
    return bad("DT_GNU_HASH declares " + std::to_string(nbuckets) + " buckets and a " +
               std::to_string(bloom_size) + "-word bloom filter, more than the segment holds");
  }
  uint64_t max_bucket = 0;
  for (uint64_t i = 0; i < nbuckets; ++i) {
    max_bucket = std::max<uint64_t>(max_bucket, load_at<uint32_t>(*b, buckets_off + i * 4));
  }
  if (max_bucket == 0) return symoffset;  // no hashed symbols
  if (max_bucket < symoffset) {
    return bad("DT_GNU_HASH bucket points at symbol " + std::to_string(max_bucket) +
               ", below its symoffset " + std::to_string(symoffset));
  }
  // Walk the last chain to its end marker (low bit set), inside the mapped bytes only.
  for (uint64_t idx = max_bucket;; ++idx) {
    uint64_t pos = chains_off + (idx - symoffset) * 4;  // idx - symoffset < b->size(): no overflow
    if (!in_range(pos, 4, b->size()))
      return bad("a DT_GNU_HASH chain runs past the end of its segment");
    if (load_at<uint32_t>(*b, pos) & 1u) return idx + 1;
  }
}

// Highest symbol index referenced by a relocation table, +1 (0 if none).
Result<uint64_t> reloc_symbol_bound(const AddressMap& am, std::optional<uint64_t> addr,
                                    std::optional<uint64_t> size, uint64_t entsize,
                                    const char* what) {
  if (!addr && !size) return uint64_t{0};
  if (!addr || !size) return bad(std::string(what) + " table is missing its address or its size");
  if (*size % entsize != 0) {
    return bad(std::string(what) + " table size " + std::to_string(*size) +
               " is not a multiple of its entry size " + std::to_string(entsize));
  }
  auto b = am.map(*addr, *size);
  if (!b)
    return bad(std::string(what) + " table at " + hex(*addr) + " is not backed by file bytes");
  uint64_t bound = 0;
  // r_info is at offset 8 in both Elf64_Rel and Elf64_Rela.
  for (uint64_t off = 0; off < *size; off += entsize) {
    uint64_t sym = ELF64_R_SYM(load_at<uint64_t>(*b, off + 8));
    bound = std::max(bound, sym + 1);
  }
  return bound;
}

Status parse_dynamic_symbols(const AddressMap& am, const ElfSegment& dyn_seg, ElfImageInfo& info) {
  CM_ASSIGN_OR_RETURN(DynInfo d, read_dynamic(am, dyn_seg));
  if (!d.strtab || !d.strsz) return bad("the dynamic section lacks DT_STRTAB or DT_STRSZ");
  auto strbytes = am.map(*d.strtab, *d.strsz);
  if (!strbytes) {
    return bad("the dynamic string table (" + hex(*d.strtab) + ", " + std::to_string(*d.strsz) +
               " bytes) is not backed by file bytes of one PT_LOAD segment");
  }
  StringTable strtab(*strbytes);
  for (uint64_t off : d.needed) {
    CM_ASSIGN_OR_RETURN(std::string name, strtab.get(off, "DT_NEEDED"));
    info.needed.push_back(std::move(name));
  }
  if (!d.symtab) return ok_status();  // no dynamic symbols at all
  if (d.syment && *d.syment != sizeof(Elf64_Sym)) {
    return bad("DT_SYMENT is " + std::to_string(*d.syment) + ", expected " +
               std::to_string(sizeof(Elf64_Sym)));
  }
  if (!d.hash && !d.gnu_hash) return bad("the dynamic section has neither DT_GNU_HASH nor DT_HASH");

  // Symbol count, as large as anything the dynamic linker could index: the hash tables and every
  // relocation's symbol index.
  uint64_t count = 0;
  if (d.hash) {
    auto h = am.map(*d.hash, 8);
    if (!h) return bad("DT_HASH at " + hex(*d.hash) + " is not backed by file bytes");
    count = std::max<uint64_t>(count, load_at<uint32_t>(*h, 4));  // nchain
  }
  if (d.gnu_hash) {
    CM_ASSIGN_OR_RETURN(uint64_t n, gnu_hash_count(am, *d.gnu_hash));
    count = std::max(count, n);
  }
  if (d.relaent && *d.relaent != sizeof(Elf64_Rela)) return bad("DT_RELAENT is not 24");
  if (d.relent && *d.relent != sizeof(Elf64_Rel)) return bad("DT_RELENT is not 16");
  CM_ASSIGN_OR_RETURN(uint64_t r1,
                      reloc_symbol_bound(am, d.rela, d.relasz, sizeof(Elf64_Rela), "DT_RELA"));
  CM_ASSIGN_OR_RETURN(uint64_t r2,
                      reloc_symbol_bound(am, d.rel, d.relsz, sizeof(Elf64_Rel), "DT_REL"));
  uint64_t r3 = 0;
  if (d.jmprel || d.pltrelsz) {
    if (!d.pltrel || (*d.pltrel != DT_RELA && *d.pltrel != DT_REL)) {
      return bad("DT_JMPREL is present but DT_PLTREL is missing or neither DT_RELA nor DT_REL");
    }
    uint64_t ent = *d.pltrel == DT_RELA ? sizeof(Elf64_Rela) : sizeof(Elf64_Rel);
    CM_ASSIGN_OR_RETURN(r3, reloc_symbol_bound(am, d.jmprel, d.pltrelsz, ent, "DT_JMPREL"));
  }
  count = std::max({count, r1, r2, r3});
  if (count > kMaxSymbols) {
    return bad("the dynamic symbol table would hold " + std::to_string(count) + " symbols (limit " +
               std::to_string(kMaxSymbols) + ")");
  }
  auto symbytes = am.map(*d.symtab, count * sizeof(Elf64_Sym));
  if (!symbytes) {
    return bad("the dynamic symbol table (" + std::to_string(count) + " entries at " +
               hex(*d.symtab) + ") is not backed by file bytes of one PT_LOAD segment");
  }
  for (uint64_t i = 1; i < count; ++i) {  // entry 0 is the null symbol
    auto s = load_at<Elf64_Sym>(*symbytes, i * sizeof(Elf64_Sym));
    unsigned bind = ELF64_ST_BIND(s.st_info);
    unsigned type = ELF64_ST_TYPE(s.st_info);
    unsigned vis = ELF64_ST_VISIBILITY(s.st_other);
    CM_ASSIGN_OR_RETURN(std::string name, strtab.get(s.st_name, "dynamic symbol"));
    if (name.empty()) continue;
    if (s.st_shndx == SHN_UNDEF) {
      if (bind == STB_GLOBAL || bind == STB_WEAK)
        info.imports.push_back({std::move(name), bind == STB_WEAK});
    } else if ((bind == STB_GLOBAL || bind == STB_WEAK || bind == STB_GNU_UNIQUE) &&
               type != STT_SECTION && type != STT_FILE &&
               (vis == STV_DEFAULT || vis == STV_PROTECTED)) {
      info.exports.push_back(std::move(name));
    }
  }
  return ok_status();
}

}  // namespace

Result<ElfImageInfo> parse_elf_image(ByteView file) {
  const uint64_t fsize = file.size();
  if (fsize < SELFMAG || std::memcmp(file.data(), ELFMAG, SELFMAG) != 0) {
    return make_error(Errc::kFormat,
                      "not an ELF file (bad magic): an enclave image is an ELF64 "
                      "shared object built by constmig_add_enclave; check the path");
  }
  if (fsize < sizeof(Elf64_Ehdr)) {
    return bad("the file is " + std::to_string(fsize) + " bytes, shorter than an ELF64 header");
  }
  auto eh = load_at<Elf64_Ehdr>(file, 0);
  if (eh.e_ident[EI_CLASS] != ELFCLASS64) return bad("not a 64-bit ELF file (EI_CLASS)");
  if (eh.e_ident[EI_DATA] != ELFDATA2LSB) return bad("not a little-endian ELF file (EI_DATA)");
  if (eh.e_ident[EI_VERSION] != EV_CURRENT || eh.e_version != EV_CURRENT)
    return bad("unknown ELF version");
  if (eh.e_machine != EM_X86_64)
    return bad("not an x86-64 ELF file (e_machine " + std::to_string(eh.e_machine) + ")");
  if (eh.e_type != ET_DYN) {
    return bad("not a shared object (e_type " + std::to_string(eh.e_type) +
               "): enclave images are shared objects linked at a fixed base");
  }
  if (eh.e_phentsize != sizeof(Elf64_Phdr)) {
    return bad("program header entry size is " + std::to_string(eh.e_phentsize) + ", expected " +
               std::to_string(sizeof(Elf64_Phdr)));
  }
  if (eh.e_phnum == 0) return bad("the file has no program headers");
  if (eh.e_phnum == PN_XNUM)
    return bad("extended program header numbering (PN_XNUM) is not supported");
  const uint64_t ph_bytes = uint64_t{eh.e_phnum} * sizeof(Elf64_Phdr);
  if (!in_range(eh.e_phoff, ph_bytes, fsize)) {
    return bad(std::to_string(eh.e_phnum) + " program headers at offset " +
               std::to_string(eh.e_phoff) + " do not fit in the " + std::to_string(fsize) +
               "-byte file");
  }

  ElfImageInfo info;
  std::optional<ElfSegment> dynamic;
  for (uint64_t i = 0; i < eh.e_phnum; ++i) {
    auto ph = load_at<Elf64_Phdr>(file, eh.e_phoff + i * sizeof(Elf64_Phdr));
    if (ph.p_type != PT_LOAD && ph.p_type != PT_DYNAMIC && ph.p_type != PT_GNU_RELRO) continue;
    ElfSegment seg{ph.p_vaddr, ph.p_memsz, ph.p_filesz, ph.p_offset,
                   ph.p_flags & (PF_R | PF_W | PF_X)};
    const std::string where = "program header " + std::to_string(i);
    uint64_t end = 0;
    if (__builtin_add_overflow(ph.p_vaddr, ph.p_memsz, &end) || end > kUserTop) {
      return bad(where + " ends past the user address space (vaddr " + hex(ph.p_vaddr) +
                 ", memsz " + hex(ph.p_memsz) + ")");
    }
    if (ph.p_type == PT_LOAD) {
      if (ph.p_memsz == 0) return bad(where + " is an empty PT_LOAD");
      if (ph.p_filesz > ph.p_memsz) return bad(where + " has p_filesz > p_memsz");
      if (!in_range(ph.p_offset, ph.p_filesz, fsize)) {
        return bad(where + " (PT_LOAD) file range [" + std::to_string(ph.p_offset) + ", +" +
                   std::to_string(ph.p_filesz) + ") is past the end of the " +
                   std::to_string(fsize) + "-byte file");
      }
      if (ph.p_align > 1 && (ph.p_align & (ph.p_align - 1)) != 0)
        return bad(where + " has a p_align that is not a power of two");
      if ((ph.p_vaddr - ph.p_offset) % kPage != 0) {
        return bad(where +
                   " (PT_LOAD) has vaddr and file offset that differ modulo the page size, so it "
                   "cannot be mapped");
      }
      if (!info.loads.empty()) {
        const ElfSegment& prev = info.loads.back();
        if (ph.p_vaddr < prev.vaddr + prev.memsz) {
          return bad(
              where + " (PT_LOAD at " + hex(ph.p_vaddr) +
              ") overlaps or precedes the previous PT_LOAD: loads must be sorted and disjoint");
        }
      }
      info.loads.push_back(seg);
    } else if (ph.p_type == PT_DYNAMIC) {
      if (dynamic) return bad("the file has two PT_DYNAMIC headers");
      dynamic = seg;
    } else {  // PT_GNU_RELRO
      if (info.relro) return bad("the file has two PT_GNU_RELRO headers");
      info.relro = seg;
    }
  }
  if (info.loads.empty()) return bad("the file has no PT_LOAD segment");

  info.base = info.loads.front().vaddr & ~(kPage - 1);
  if (info.base == 0) {
    return make_error(Errc::kFormat,
                      "the enclave image is linked at address 0 (an ordinary position-independent "
                      "shared object): enclave images need a fixed base so that pointers survive "
                      "migration; build it with constmig_add_enclave (it links with "
                      "-Wl,-Ttext-segment=<base>)");
  }
  const ElfSegment& last = info.loads.back();
  const uint64_t end = (last.vaddr + last.memsz + kPage - 1) & ~(kPage - 1);  // < 2^47: no overflow
  info.span = end - info.base;
  if (info.span > abi::kImageMaxSize) {
    return make_error(
        Errc::kFormat,
        "the enclave image spans " + std::to_string(info.span >> 20) +
            " MiB of address space, more than the " + std::to_string(abi::kImageMaxSize >> 20) +
            " MiB the enclave layout reserves for it (the boot page follows at a "
            "fixed offset): make the image smaller (large arrays belong on the heap)");
  }
  if (info.relro &&
      (info.relro->vaddr < info.base || info.relro->vaddr + info.relro->memsz > end)) {
    return bad("PT_GNU_RELRO lies outside the loaded image");
  }
  if (!dynamic) {
    return bad(
        "the file has no PT_DYNAMIC header: the dynamic linker cannot load it as a shared object");
  }
  AddressMap am(file, info.loads);
  CM_TRY(parse_dynamic_symbols(am, *dynamic, info));
  return info;
}

// ---------------------------------------------------------------------------------------------
// The enclave import policy.
//
// An enclave image should need nothing from the host. What the tables below allow is what an
// image built by constmig_add_enclave (static libstdc++/libgcc, its own malloc via -Bsymbolic,
// gc-sections) still imports, plus pure libc functions an app may reasonably call: they touch
// only memory passed to them and keep no state in the host. Forbidden symbols are listed by
// category so the error can say why and what to do; anything on neither list is refused too.
// Forbidden entries are checked first, so "mem"/"str" prefixes cannot let memalign/strdup in.

namespace {

enum class Match { kExact, kPrefix, kMath /* exact, or with an f / l suffix */ };

struct AllowRule {
  const char* pattern;
  Match match;
  const char* reason;
};

// clang-format off
constexpr AllowRule kAllowed[] = {
  // Pure memory and string functions (exceptions such as strdup, memalign, strtok are forbidden
  // below and checked first).
  {"mem", Match::kPrefix, "pure memory function (memcpy, memset, memcmp, memchr, ...)"},
  {"str", Match::kPrefix, "pure string function (strlen, strcmp, strtol, ...)"},
  {"stpcpy", Match::kExact, "pure string function"},
  {"stpncpy", Match::kExact, "pure string function"},
  {"wmem", Match::kPrefix, "pure wide-memory function"},
  {"wcs", Match::kPrefix, "pure wide-string function"},
  {"bzero", Match::kExact, "pure memory function"},
  {"explicit_bzero", Match::kExact, "pure memory function (key wiping)"},
  {"bcmp", Match::kExact, "pure memory function"},
  {"__mem", Match::kPrefix, "_FORTIFY_SOURCE checked memory function (__memcpy_chk, ...)"},
  {"__str", Match::kPrefix, "_FORTIFY_SOURCE checked string function (__strcpy_chk, ...)"},
  {"__stpcpy_chk", Match::kExact, "_FORTIFY_SOURCE checked string function"},
  {"__explicit_bzero_chk", Match::kExact, "_FORTIFY_SOURCE checked memory function"},
  {"__isoc23_strto", Match::kPrefix, "C23 spelling of strtol and friends (pure parsing)"},
  // Formatting and parsing into caller buffers.
  {"sprintf", Match::kExact,
   "formats into a caller buffer (also used by libstdc++'s terminate handler)"},
  {"snprintf", Match::kExact, "formats into a caller buffer"},
  {"vsprintf", Match::kExact, "formats into a caller buffer"},
  {"vsnprintf", Match::kExact, "formats into a caller buffer"},
  {"__sprintf_chk", Match::kExact, "_FORTIFY_SOURCE sprintf"},
  {"__snprintf_chk", Match::kExact, "_FORTIFY_SOURCE snprintf"},
  {"__vsprintf_chk", Match::kExact, "_FORTIFY_SOURCE vsprintf"},
  {"__vsnprintf_chk", Match::kExact, "_FORTIFY_SOURCE vsnprintf"},
  {"sscanf", Match::kExact, "parses a caller buffer"},
  {"__isoc99_sscanf", Match::kExact, "parses a caller buffer"},
  {"__isoc23_sscanf", Match::kExact, "parses a caller buffer"},
  {"atoi", Match::kExact, "pure parsing"},
  {"atol", Match::kExact, "pure parsing"},
  {"atoll", Match::kExact, "pure parsing"},
  {"atof", Match::kExact, "pure parsing"},
  // Algorithms and arithmetic.
  {"qsort", Match::kExact, "sorts caller memory"},
  {"qsort_r", Match::kExact, "sorts caller memory"},
  {"bsearch", Match::kExact, "searches caller memory"},
  {"abs", Match::kExact, "arithmetic"},
  {"labs", Match::kExact, "arithmetic"},
  {"llabs", Match::kExact, "arithmetic"},
  {"div", Match::kExact, "arithmetic"},
  {"ldiv", Match::kExact, "arithmetic"},
  {"lldiv", Match::kExact, "arithmetic"},
  // Math (each also with its float `f` and long double `l` variant).
  {"sqrt", Match::kMath, "math"}, {"cbrt", Match::kMath, "math"}, {"hypot", Match::kMath, "math"},
  {"exp", Match::kMath, "math"}, {"exp2", Match::kMath, "math"}, {"exp10", Match::kMath, "math"},
  {"expm1", Match::kMath, "math"}, {"log", Match::kMath, "math"}, {"log2", Match::kMath, "math"},
  {"log10", Match::kMath, "math"}, {"log1p", Match::kMath, "math"}, {"logb", Match::kMath, "math"},
  {"ilogb", Match::kMath, "math"}, {"pow", Match::kMath, "math"}, {"floor", Match::kMath, "math"},
  {"ceil", Match::kMath, "math"}, {"trunc", Match::kMath, "math"}, {"round", Match::kMath, "math"},
  {"lround", Match::kMath, "math"}, {"llround", Match::kMath, "math"},
  {"rint", Match::kMath, "math"},
  {"lrint", Match::kMath, "math"}, {"llrint", Match::kMath, "math"},
  {"nearbyint", Match::kMath, "math"},
  {"fabs", Match::kMath, "math"}, {"fmod", Match::kMath, "math"},
  {"remainder", Match::kMath, "math"},
  {"remquo", Match::kMath, "math"}, {"fmin", Match::kMath, "math"}, {"fmax", Match::kMath, "math"},
  {"fdim", Match::kMath, "math"}, {"fma", Match::kMath, "math"}, {"frexp", Match::kMath, "math"},
  {"ldexp", Match::kMath, "math"}, {"modf", Match::kMath, "math"}, {"scalbn", Match::kMath, "math"},
  {"scalbln", Match::kMath, "math"}, {"copysign", Match::kMath, "math"},
  {"nextafter", Match::kMath, "math"},
  {"nan", Match::kMath, "math"}, {"sin", Match::kMath, "math"}, {"cos", Match::kMath, "math"},
  {"tan", Match::kMath, "math"}, {"sincos", Match::kMath, "math"}, {"asin", Match::kMath, "math"},
  {"acos", Match::kMath, "math"}, {"atan", Match::kMath, "math"}, {"atan2", Match::kMath, "math"},
  {"sinh", Match::kMath, "math"}, {"cosh", Match::kMath, "math"}, {"tanh", Match::kMath, "math"},
  {"asinh", Match::kMath, "math"}, {"acosh", Match::kMath, "math"}, {"atanh", Match::kMath, "math"},
  {"erf", Match::kMath, "math"}, {"erfc", Match::kMath, "math"}, {"tgamma", Match::kMath, "math"},
  {"lgamma", Match::kMath, "math"},
  {"__isnan", Match::kMath, "math classification"},
  {"__isinf", Match::kMath, "math classification"},
  {"__finite", Match::kMath, "math classification"},
  {"__fpclassify", Match::kMath, "math classification"},
  {"__signbit", Match::kMath, "math classification"},
  // Character classification: the tables live in the host libc's locale data, read-only.
  {"__ctype_b_loc", Match::kExact, "character classification table (read-only host data)"},
  {"__ctype_tolower_loc", Match::kExact, "character case table (read-only host data)"},
  {"__ctype_toupper_loc", Match::kExact, "character case table (read-only host data)"},
  {"tolower", Match::kExact, "character case"}, {"toupper", Match::kExact, "character case"},
  {"isalnum", Match::kExact, "character class"}, {"isalpha", Match::kExact, "character class"},
  {"isdigit", Match::kExact, "character class"}, {"isxdigit", Match::kExact, "character class"},
  {"isspace", Match::kExact, "character class"}, {"isupper", Match::kExact, "character class"},
  {"islower", Match::kExact, "character class"}, {"isprint", Match::kExact, "character class"},
  {"ispunct", Match::kExact, "character class"}, {"iscntrl", Match::kExact, "character class"},
  {"isgraph", Match::kExact, "character class"}, {"isblank", Match::kExact, "character class"},
  {"__errno_location", Match::kExact, "errno (thread-local in the host thread, not migrated)"},
  // Locks and thread-specific data on objects in enclave memory. Migration quiesces ECALLs, so
  // no lock is held when enclave memory moves.
  {"pthread_mutex_", Match::kPrefix, "mutex on enclave memory"},
  {"pthread_mutexattr_", Match::kPrefix, "mutex attributes"},
  {"pthread_cond_", Match::kPrefix, "condition variable on enclave memory"},
  {"pthread_condattr_", Match::kPrefix, "condition variable attributes"},
  {"pthread_rwlock_", Match::kPrefix, "rwlock on enclave memory"},
  {"pthread_rwlockattr_", Match::kPrefix, "rwlock attributes"},
  {"pthread_spin_", Match::kPrefix, "spinlock on enclave memory"},
  {"pthread_once", Match::kExact, "one-time initialisation (libstdc++, std::call_once)"},
  {"pthread_key_create", Match::kExact,
   "thread-specific data key (libstdc++ exception globals; per host thread, not migrated)"},
  {"__pthread_key_create", Match::kExact, "libstdc++'s weak probe for pthread_key_create"},
  {"pthread_key_delete", Match::kExact, "thread-specific data key"},
  {"pthread_getspecific", Match::kExact, "thread-specific data (per host thread, not migrated)"},
  {"pthread_setspecific", Match::kExact, "thread-specific data (per host thread, not migrated)"},
  {"pthread_self", Match::kExact, "thread identity for std::mutex/std::thread::id"},
  {"pthread_equal", Match::kExact, "thread identity comparison"},
  {"sched_yield", Match::kExact, "spin-wait back-off"},
  {"__libc_single_threaded", Match::kExact, "libstdc++ reads it to skip atomics (read-only)"},
  // Runtime support the compiler, libstdc++ and libgcc emit.
  {"__tls_get_addr", Match::kExact, "thread_local access (lives in host threads, not migrated)"},
  {"abort", Match::kExact, "fatal error (std::terminate)"},
  {"__assert_fail", Match::kExact, "failed assert()"},
  {"__stack_chk_fail", Match::kExact, "stack protector failure"},
  {"_dl_find_object", Match::kExact, "unwinder: finds the image's EH frames"},
  {"dl_iterate_phdr", Match::kExact, "unwinder: finds the image's EH frames (older glibc)"},
  {"__register_frame_info", Match::kExact, "weak crtstuff hook for EH frame registration"},
  {"__deregister_frame_info", Match::kExact, "weak crtstuff hook for EH frame registration"},
  {"__cxa_atexit", Match::kExact, "registers the image's static destructors (run at dlclose)"},
  {"__cxa_finalize", Match::kExact, "runs the image's static destructors at dlclose"},
  {"__cxa_thread_atexit_impl", Match::kExact, "thread_local destructors"},
  {"__gmon_start__", Match::kExact, "weak profiling hook from crti (never defined)"},
  {"_ITM_", Match::kPrefix, "weak transactional-memory hooks from crtstuff (never defined)"},
  // libstdc++'s verbose terminate handler writes the uncaught exception's type to stderr.
  {"fputs", Match::kExact, "libstdc++ verbose terminate handler (stderr only)"},
  {"fputc", Match::kExact, "libstdc++ verbose terminate handler (stderr only)"},
  {"fwrite", Match::kExact, "libstdc++ verbose terminate handler (stderr only)"},
  {"stderr", Match::kExact, "libstdc++ verbose terminate handler"},
  {"gettext", Match::kExact, "libstdc++ message translation (read-only)"},
  {"dcgettext", Match::kExact, "libstdc++ message translation (read-only)"},
  {"dgettext", Match::kExact, "libstdc++ message translation (read-only)"},
};

enum class Category {
  kAllocation, kMapping, kIo, kNetwork, kProcess, kSyscall, kThreads, kTime, kRandom, kHostState,
};

struct CategoryInfo {
  const char* name;
  const char* advice;
  bool overridable;  // may extra_allowed allow it?
};

const CategoryInfo& category_info(Category c) {
  static const CategoryInfo kInfo[] = {
    {"allocation",
     "enclave code must allocate from the ConstMigLib heap (constmig_add_enclave links the "
     "allocator shims with -Wl,-Bsymbolic so malloc/free/operator new resolve inside the image); "
     "memory from the host allocator lies outside the enclave and would not migrate", false},
    {"memory mapping",
     "the enclave address range belongs to the platform: take memory from the ConstMigLib "
     "heap", false},
    {"I/O & files",
     "an enclave cannot do file or terminal I/O: pass data in and out through ECALL arguments, or "
     "declare an OCALL and let the host do it", true},
    {"network",
     "the host owns the network: declare an OCALL for it and protect what crosses it", true},
    {"processes & loading",
     "an enclave cannot start processes, handle signals, exit the host or load code: ask the host "
     "through an OCALL", true},
    {"raw system call",
     "enclave code must not make system calls. If it comes from libstdc++ (__cxa_guard_acquire "
     "waits for a function-local static with syscall(SYS_futex)), the enclave runtime must define "
     "syscall() inside the image, or the image's build must allow 'syscall' explicitly", true},
    {"threads",
     "ECALLs run on the host's thread slots (TCS analogue): an enclave cannot create, join or "
     "cancel threads", true},
    {"time",
     "an enclave has no trusted clock: ask the host through an OCALL and treat the answer as "
     "untrusted", true},
    {"randomness",
     "take randomness from inside the enclave (RDRAND, like SGX's sgx_read_rand): the host's is "
     "untrusted, and libc's PRNG state lives in the host and does not migrate", true},
    {"host state",
     "its state lives in the host process (environment, identity, locale, static buffers), so "
     "it is neither trusted nor migrated: pass what you need in through an ECALL", true},
  };
  return kInfo[static_cast<int>(c)];
}

struct ForbidRule {
  const char* pattern;
  Match match;
  Category category;
};

using C = Category;
constexpr ForbidRule kForbidden[] = {
  // Allocation.
  {"malloc", Match::kExact, C::kAllocation}, {"calloc", Match::kExact, C::kAllocation},
  {"realloc", Match::kExact, C::kAllocation}, {"reallocarray", Match::kExact, C::kAllocation},
  {"free", Match::kExact, C::kAllocation}, {"cfree", Match::kExact, C::kAllocation},
  {"aligned_alloc", Match::kExact, C::kAllocation},
  {"posix_memalign", Match::kExact, C::kAllocation},
  {"memalign", Match::kExact, C::kAllocation}, {"valloc", Match::kExact, C::kAllocation},
  {"pvalloc", Match::kExact, C::kAllocation}, {"malloc_usable_size", Match::kExact, C::kAllocation},
  {"malloc_trim", Match::kExact, C::kAllocation}, {"mallopt", Match::kExact, C::kAllocation},
  {"mallinfo", Match::kExact, C::kAllocation}, {"mallinfo2", Match::kExact, C::kAllocation},
  {"__libc_malloc", Match::kExact, C::kAllocation},
  {"__libc_calloc", Match::kExact, C::kAllocation},
  {"__libc_realloc", Match::kExact, C::kAllocation}, {"__libc_free", Match::kExact, C::kAllocation},
  {"__libc_memalign", Match::kExact, C::kAllocation},
  {"strdup", Match::kExact, C::kAllocation}, {"strndup", Match::kExact, C::kAllocation},
  {"__strdup", Match::kExact, C::kAllocation}, {"__strndup", Match::kExact, C::kAllocation},
  {"wcsdup", Match::kExact, C::kAllocation},
  {"asprintf", Match::kExact, C::kAllocation}, {"vasprintf", Match::kExact, C::kAllocation},
  {"__asprintf", Match::kExact, C::kAllocation}, {"__asprintf_chk", Match::kExact, C::kAllocation},
  {"__vasprintf_chk", Match::kExact, C::kAllocation},
  {"getline", Match::kExact, C::kAllocation}, {"getdelim", Match::kExact, C::kAllocation},
  {"__getdelim", Match::kExact, C::kAllocation},
  {"open_memstream", Match::kExact, C::kAllocation},
  {"open_wmemstream", Match::kExact, C::kAllocation},
  // operator new / delete, every mangling (_Znwm, _ZnwmRKSt9nothrow_t, _ZdlPvm, ...).
  {"_Znw", Match::kPrefix, C::kAllocation}, {"_Zna", Match::kPrefix, C::kAllocation},
  {"_Zdl", Match::kPrefix, C::kAllocation}, {"_Zda", Match::kPrefix, C::kAllocation},
  // Memory mapping.
  {"mmap", Match::kExact, C::kMapping}, {"mmap64", Match::kExact, C::kMapping},
  {"munmap", Match::kExact, C::kMapping}, {"mprotect", Match::kExact, C::kMapping},
  {"pkey_mprotect", Match::kExact, C::kMapping}, {"mremap", Match::kExact, C::kMapping},
  {"madvise", Match::kExact, C::kMapping}, {"posix_madvise", Match::kExact, C::kMapping},
  {"brk", Match::kExact, C::kMapping}, {"sbrk", Match::kExact, C::kMapping},
  {"__sbrk", Match::kExact, C::kMapping}, {"mlock", Match::kExact, C::kMapping},
  {"mlock2", Match::kExact, C::kMapping}, {"munlock", Match::kExact, C::kMapping},
  {"mlockall", Match::kExact, C::kMapping}, {"munlockall", Match::kExact, C::kMapping},
  {"msync", Match::kExact, C::kMapping}, {"mincore", Match::kExact, C::kMapping},
  {"memfd_create", Match::kExact, C::kMapping}, {"remap_file_pages", Match::kExact, C::kMapping},
  {"shm_open", Match::kExact, C::kMapping}, {"shm_unlink", Match::kExact, C::kMapping},
  {"shmget", Match::kExact, C::kMapping}, {"shmat", Match::kExact, C::kMapping},
  {"shmdt", Match::kExact, C::kMapping}, {"shmctl", Match::kExact, C::kMapping},
  // I/O & files. (fputs/fputc/fwrite/stderr stay allowed for libstdc++'s terminate handler.)
  {"open", Match::kExact, C::kIo}, {"open64", Match::kExact, C::kIo},
  {"openat", Match::kExact, C::kIo}, {"openat64", Match::kExact, C::kIo},
  {"__open_2", Match::kExact, C::kIo}, {"__open64_2", Match::kExact, C::kIo},
  {"__openat_2", Match::kExact, C::kIo}, {"__openat64_2", Match::kExact, C::kIo},
  {"creat", Match::kExact, C::kIo}, {"creat64", Match::kExact, C::kIo},
  {"read", Match::kExact, C::kIo}, {"__read_chk", Match::kExact, C::kIo},
  {"write", Match::kExact, C::kIo}, {"pread", Match::kExact, C::kIo},
  {"pread64", Match::kExact, C::kIo}, {"__pread_chk", Match::kExact, C::kIo},
  {"__pread64_chk", Match::kExact, C::kIo}, {"pwrite", Match::kExact, C::kIo},
  {"pwrite64", Match::kExact, C::kIo}, {"readv", Match::kExact, C::kIo},
  {"writev", Match::kExact, C::kIo}, {"preadv", Match::kExact, C::kIo},
  {"pwritev", Match::kExact, C::kIo}, {"preadv2", Match::kExact, C::kIo},
  {"pwritev2", Match::kExact, C::kIo}, {"close", Match::kExact, C::kIo},
  {"close_range", Match::kExact, C::kIo}, {"lseek", Match::kExact, C::kIo},
  {"lseek64", Match::kExact, C::kIo}, {"ioctl", Match::kExact, C::kIo},
  {"fcntl", Match::kExact, C::kIo}, {"fcntl64", Match::kExact, C::kIo},
  {"dup", Match::kExact, C::kIo}, {"dup2", Match::kExact, C::kIo}, {"dup3", Match::kExact, C::kIo},
  {"pipe", Match::kExact, C::kIo}, {"pipe2", Match::kExact, C::kIo},
  {"fsync", Match::kExact, C::kIo}, {"fdatasync", Match::kExact, C::kIo},
  {"sync", Match::kExact, C::kIo},
  {"ftruncate", Match::kExact, C::kIo}, {"ftruncate64", Match::kExact, C::kIo},
  {"truncate", Match::kExact, C::kIo}, {"stat", Match::kExact, C::kIo},
  {"stat64", Match::kExact, C::kIo},
  {"fstat", Match::kExact, C::kIo}, {"fstat64", Match::kExact, C::kIo},
  {"lstat", Match::kExact, C::kIo},
  {"lstat64", Match::kExact, C::kIo}, {"fstatat", Match::kExact, C::kIo},
  {"fstatat64", Match::kExact, C::kIo}, {"statx", Match::kExact, C::kIo},
  {"__xstat", Match::kPrefix, C::kIo}, {"__fxstat", Match::kPrefix, C::kIo},
  {"__lxstat", Match::kPrefix, C::kIo},
  {"access", Match::kExact, C::kIo}, {"faccessat", Match::kExact, C::kIo},
  {"unlink", Match::kExact, C::kIo}, {"unlinkat", Match::kExact, C::kIo},
  {"rename", Match::kExact, C::kIo}, {"renameat", Match::kExact, C::kIo},
  {"renameat2", Match::kExact, C::kIo}, {"mkdir", Match::kExact, C::kIo},
  {"mkdirat", Match::kExact, C::kIo}, {"rmdir", Match::kExact, C::kIo},
  {"chdir", Match::kExact, C::kIo}, {"fchdir", Match::kExact, C::kIo},
  {"getcwd", Match::kExact, C::kIo},
  {"chmod", Match::kExact, C::kIo}, {"fchmod", Match::kExact, C::kIo},
  {"chown", Match::kExact, C::kIo},
  {"fchown", Match::kExact, C::kIo}, {"link", Match::kExact, C::kIo},
  {"symlink", Match::kExact, C::kIo},
  {"readlink", Match::kExact, C::kIo}, {"readlinkat", Match::kExact, C::kIo},
  {"opendir", Match::kExact, C::kIo}, {"fdopendir", Match::kExact, C::kIo},
  {"readdir", Match::kExact, C::kIo}, {"readdir64", Match::kExact, C::kIo},
  {"closedir", Match::kExact, C::kIo}, {"scandir", Match::kExact, C::kIo},
  {"realpath", Match::kExact, C::kIo}, {"canonicalize_file_name", Match::kExact, C::kIo},
  {"tmpfile", Match::kExact, C::kIo}, {"mkstemp", Match::kExact, C::kIo},
  {"mkostemp", Match::kExact, C::kIo}, {"tmpnam", Match::kExact, C::kIo},
  {"tempnam", Match::kExact, C::kIo},
  {"fopen", Match::kExact, C::kIo}, {"fopen64", Match::kExact, C::kIo},
  {"fdopen", Match::kExact, C::kIo},
  {"freopen", Match::kExact, C::kIo}, {"freopen64", Match::kExact, C::kIo},
  {"fclose", Match::kExact, C::kIo}, {"fflush", Match::kExact, C::kIo},
  {"fflush_unlocked", Match::kExact, C::kIo}, {"fread", Match::kExact, C::kIo},
  {"fread_unlocked", Match::kExact, C::kIo}, {"__fread_chk", Match::kExact, C::kIo},
  {"fgets", Match::kExact, C::kIo}, {"__fgets_chk", Match::kExact, C::kIo},
  {"fgetc", Match::kExact, C::kIo}, {"getc", Match::kExact, C::kIo},
  {"getc_unlocked", Match::kExact, C::kIo},
  {"getchar", Match::kExact, C::kIo}, {"ungetc", Match::kExact, C::kIo},
  {"fscanf", Match::kExact, C::kIo}, {"__isoc99_fscanf", Match::kExact, C::kIo},
  {"scanf", Match::kExact, C::kIo}, {"__isoc99_scanf", Match::kExact, C::kIo},
  {"printf", Match::kExact, C::kIo}, {"__printf_chk", Match::kExact, C::kIo},
  {"vprintf", Match::kExact, C::kIo}, {"__vprintf_chk", Match::kExact, C::kIo},
  {"fprintf", Match::kExact, C::kIo}, {"__fprintf_chk", Match::kExact, C::kIo},
  {"vfprintf", Match::kExact, C::kIo}, {"__vfprintf_chk", Match::kExact, C::kIo},
  {"dprintf", Match::kExact, C::kIo}, {"__dprintf_chk", Match::kExact, C::kIo},
  {"vdprintf", Match::kExact, C::kIo}, {"puts", Match::kExact, C::kIo},
  {"putchar", Match::kExact, C::kIo}, {"putc", Match::kExact, C::kIo},
  {"putc_unlocked", Match::kExact, C::kIo},
  {"fputs_unlocked", Match::kExact, C::kIo}, {"fwrite_unlocked", Match::kExact, C::kIo},
  {"perror", Match::kExact, C::kIo}, {"setvbuf", Match::kExact, C::kIo},
  {"setbuf", Match::kExact, C::kIo},
  {"fseek", Match::kExact, C::kIo}, {"fseeko", Match::kExact, C::kIo},
  {"ftell", Match::kExact, C::kIo},
  {"ftello", Match::kExact, C::kIo}, {"rewind", Match::kExact, C::kIo},
  {"fileno", Match::kExact, C::kIo},
  {"feof", Match::kExact, C::kIo}, {"ferror", Match::kExact, C::kIo},
  {"clearerr", Match::kExact, C::kIo},
  {"stdout", Match::kExact, C::kIo}, {"stdin", Match::kExact, C::kIo},
  {"isatty", Match::kExact, C::kIo},
  {"ttyname", Match::kExact, C::kIo}, {"inotify_", Match::kPrefix, C::kIo},
  // Network (and readiness polling, which only makes sense on host file descriptors).
  {"socket", Match::kExact, C::kNetwork}, {"socketpair", Match::kExact, C::kNetwork},
  {"connect", Match::kExact, C::kNetwork}, {"bind", Match::kExact, C::kNetwork},
  {"listen", Match::kExact, C::kNetwork}, {"accept", Match::kExact, C::kNetwork},
  {"accept4", Match::kExact, C::kNetwork}, {"send", Match::kExact, C::kNetwork},
  {"sendto", Match::kExact, C::kNetwork}, {"sendmsg", Match::kExact, C::kNetwork},
  {"sendmmsg", Match::kExact, C::kNetwork}, {"recv", Match::kExact, C::kNetwork},
  {"recvfrom", Match::kExact, C::kNetwork}, {"recvmsg", Match::kExact, C::kNetwork},
  {"recvmmsg", Match::kExact, C::kNetwork}, {"shutdown", Match::kExact, C::kNetwork},
  {"getsockopt", Match::kExact, C::kNetwork}, {"setsockopt", Match::kExact, C::kNetwork},
  {"getsockname", Match::kExact, C::kNetwork}, {"getpeername", Match::kExact, C::kNetwork},
  {"getaddrinfo", Match::kExact, C::kNetwork}, {"freeaddrinfo", Match::kExact, C::kNetwork},
  {"getnameinfo", Match::kExact, C::kNetwork}, {"gethostbyname", Match::kPrefix, C::kNetwork},
  {"gethostbyaddr", Match::kPrefix, C::kNetwork}, {"poll", Match::kExact, C::kNetwork},
  {"ppoll", Match::kExact, C::kNetwork}, {"__poll_chk", Match::kExact, C::kNetwork},
  {"select", Match::kExact, C::kNetwork}, {"pselect", Match::kExact, C::kNetwork},
  {"epoll_", Match::kPrefix, C::kNetwork},
  // Processes, signals, exiting, dynamic loading.
  {"fork", Match::kExact, C::kProcess}, {"vfork", Match::kExact, C::kProcess},
  {"_Fork", Match::kExact, C::kProcess}, {"clone", Match::kExact, C::kProcess},
  {"clone3", Match::kExact, C::kProcess}, {"exec", Match::kPrefix, C::kProcess},
  {"fexecve", Match::kExact, C::kProcess}, {"posix_spawn", Match::kPrefix, C::kProcess},
  {"system", Match::kExact, C::kProcess}, {"popen", Match::kExact, C::kProcess},
  {"pclose", Match::kExact, C::kProcess}, {"wait", Match::kExact, C::kProcess},
  {"waitpid", Match::kExact, C::kProcess}, {"wait3", Match::kExact, C::kProcess},
  {"wait4", Match::kExact, C::kProcess}, {"waitid", Match::kExact, C::kProcess},
  {"kill", Match::kExact, C::kProcess}, {"killpg", Match::kExact, C::kProcess},
  {"tgkill", Match::kExact, C::kProcess}, {"raise", Match::kExact, C::kProcess},
  {"signal", Match::kExact, C::kProcess}, {"sigaction", Match::kExact, C::kProcess},
  {"sigprocmask", Match::kExact, C::kProcess}, {"pthread_sigmask", Match::kExact, C::kProcess},
  {"sigaltstack", Match::kExact, C::kProcess}, {"exit", Match::kExact, C::kProcess},
  {"_exit", Match::kExact, C::kProcess}, {"_Exit", Match::kExact, C::kProcess},
  {"quick_exit", Match::kExact, C::kProcess}, {"at_quick_exit", Match::kExact, C::kProcess},
  {"dlopen", Match::kExact, C::kProcess}, {"dlmopen", Match::kExact, C::kProcess},
  {"dlsym", Match::kExact, C::kProcess}, {"dlvsym", Match::kExact, C::kProcess},
  {"dlclose", Match::kExact, C::kProcess}, {"dladdr", Match::kPrefix, C::kProcess},
  {"dlinfo", Match::kExact, C::kProcess}, {"dlerror", Match::kExact, C::kProcess},
  {"ptrace", Match::kExact, C::kProcess}, {"prctl", Match::kExact, C::kProcess},
  {"setuid", Match::kExact, C::kProcess}, {"setgid", Match::kExact, C::kProcess},
  {"seteuid", Match::kExact, C::kProcess}, {"setegid", Match::kExact, C::kProcess},
  {"setresuid", Match::kExact, C::kProcess}, {"setresgid", Match::kExact, C::kProcess},
  {"setsid", Match::kExact, C::kProcess}, {"daemon", Match::kExact, C::kProcess},
  {"chroot", Match::kExact, C::kProcess}, {"setrlimit", Match::kExact, C::kProcess},
  {"prlimit", Match::kExact, C::kProcess}, {"prlimit64", Match::kExact, C::kProcess},
  {"sched_setaffinity", Match::kExact, C::kProcess},
  {"sched_setscheduler", Match::kExact, C::kProcess},
  {"mount", Match::kExact, C::kProcess}, {"umount", Match::kExact, C::kProcess},
  {"reboot", Match::kExact, C::kProcess},
  // Raw system calls.
  {"syscall", Match::kExact, C::kSyscall},
  // Threads.
  {"pthread_create", Match::kExact, C::kThreads}, {"pthread_join", Match::kExact, C::kThreads},
  {"pthread_tryjoin_np", Match::kExact, C::kThreads},
  {"pthread_timedjoin_np", Match::kExact, C::kThreads},
  {"pthread_detach", Match::kExact, C::kThreads}, {"pthread_exit", Match::kExact, C::kThreads},
  {"pthread_kill", Match::kExact, C::kThreads}, {"pthread_cancel", Match::kExact, C::kThreads},
  {"thrd_", Match::kPrefix, C::kThreads},
  // Time.
  {"time", Match::kExact, C::kTime}, {"clock_gettime", Match::kExact, C::kTime},
  {"__clock_gettime", Match::kExact, C::kTime}, {"clock_getres", Match::kExact, C::kTime},
  {"gettimeofday", Match::kExact, C::kTime}, {"clock", Match::kExact, C::kTime},
  {"times", Match::kExact, C::kTime}, {"ftime", Match::kExact, C::kTime},
  {"localtime", Match::kExact, C::kTime}, {"localtime_r", Match::kExact, C::kTime},
  {"gmtime", Match::kExact, C::kTime}, {"mktime", Match::kExact, C::kTime},
  {"tzset", Match::kExact, C::kTime}, {"nanosleep", Match::kExact, C::kTime},
  {"clock_nanosleep", Match::kExact, C::kTime}, {"sleep", Match::kExact, C::kTime},
  {"usleep", Match::kExact, C::kTime}, {"alarm", Match::kExact, C::kTime},
  {"setitimer", Match::kExact, C::kTime}, {"getitimer", Match::kExact, C::kTime},
  {"timer_", Match::kPrefix, C::kTime}, {"timerfd_", Match::kPrefix, C::kTime},
  // Randomness.
  {"getrandom", Match::kExact, C::kRandom}, {"__getrandom", Match::kPrefix, C::kRandom},
  {"getentropy", Match::kExact, C::kRandom}, {"arc4random", Match::kPrefix, C::kRandom},
  {"rand", Match::kExact, C::kRandom}, {"rand_r", Match::kExact, C::kRandom},
  {"srand", Match::kExact, C::kRandom}, {"random", Match::kExact, C::kRandom},
  {"srandom", Match::kExact, C::kRandom}, {"random_r", Match::kExact, C::kRandom},
  {"srandom_r", Match::kExact, C::kRandom}, {"initstate", Match::kExact, C::kRandom},
  {"setstate", Match::kExact, C::kRandom}, {"drand48", Match::kExact, C::kRandom},
  {"erand48", Match::kExact, C::kRandom}, {"lrand48", Match::kExact, C::kRandom},
  {"nrand48", Match::kExact, C::kRandom}, {"mrand48", Match::kExact, C::kRandom},
  {"jrand48", Match::kExact, C::kRandom}, {"srand48", Match::kExact, C::kRandom},
  {"seed48", Match::kExact, C::kRandom}, {"lcong48", Match::kExact, C::kRandom},
  // Host state.
  {"getenv", Match::kExact, C::kHostState}, {"secure_getenv", Match::kExact, C::kHostState},
  {"setenv", Match::kExact, C::kHostState}, {"unsetenv", Match::kExact, C::kHostState},
  {"putenv", Match::kExact, C::kHostState}, {"clearenv", Match::kExact, C::kHostState},
  {"environ", Match::kExact, C::kHostState}, {"__environ", Match::kExact, C::kHostState},
  {"getpid", Match::kExact, C::kHostState}, {"getppid", Match::kExact, C::kHostState},
  {"gettid", Match::kExact, C::kHostState}, {"getuid", Match::kExact, C::kHostState},
  {"geteuid", Match::kExact, C::kHostState}, {"getgid", Match::kExact, C::kHostState},
  {"getegid", Match::kExact, C::kHostState}, {"gethostname", Match::kExact, C::kHostState},
  {"uname", Match::kExact, C::kHostState}, {"sysconf", Match::kExact, C::kHostState},
  {"get_nprocs", Match::kExact, C::kHostState}, {"get_nprocs_conf", Match::kExact, C::kHostState},
  {"sysinfo", Match::kExact, C::kHostState}, {"setlocale", Match::kExact, C::kHostState},
  {"newlocale", Match::kExact, C::kHostState}, {"uselocale", Match::kExact, C::kHostState},
  {"freelocale", Match::kExact, C::kHostState}, {"localeconv", Match::kExact, C::kHostState},
  {"nl_langinfo", Match::kExact, C::kHostState}, {"strtok", Match::kExact, C::kHostState},
  {"getpwnam", Match::kPrefix, C::kHostState}, {"getpwuid", Match::kPrefix, C::kHostState},
  {"getgrnam", Match::kPrefix, C::kHostState}, {"getlogin", Match::kPrefix, C::kHostState},
};
// clang-format on

bool matches(std::string_view name, std::string_view pattern, Match m) {
  switch (m) {
    case Match::kExact:
      return name == pattern;
    case Match::kPrefix:
      return name.size() >= pattern.size() && name.compare(0, pattern.size(), pattern) == 0;
    case Match::kMath:
      if (name == pattern) return true;
      return name.size() == pattern.size() + 1 && name.compare(0, pattern.size(), pattern) == 0 &&
             (name.back() == 'f' || name.back() == 'l');
  }
  return false;
}

const ForbidRule* find_forbidden(std::string_view name) {
  for (const ForbidRule& r : kForbidden) {
    if (matches(name, r.pattern, r.match)) return &r;
  }
  return nullptr;
}

bool on_allowlist(std::string_view name) {
  for (const AllowRule& r : kAllowed) {
    if (matches(name, r.pattern, r.match)) return true;
  }
  return false;
}

struct Refusal {
  std::string name;
  std::string category;  // short form for the list of others
  std::string detail;    // full sentence for the first one
};

}  // namespace

Status check_enclave_imports(const ElfImageInfo& info, std::span<const std::string> extra_allowed) {
  std::unordered_set<std::string_view> extra(extra_allowed.begin(), extra_allowed.end());
  std::vector<Refusal> refused;
  for (const ElfSymbol& sym : info.imports) {
    const std::string& n = sym.name;
    if (const ForbidRule* r = find_forbidden(n)) {
      const CategoryInfo& ci = category_info(r->category);
      bool in_extra = extra.count(n) != 0;
      if (in_extra && ci.overridable) continue;
      std::string detail = ci.advice;
      if (in_extra)
        detail += std::string(" ('") + n + "' is in the extra allowed imports, but " + ci.name +
                  " imports can never be allowed)";
      refused.push_back({n, ci.name, std::move(detail)});
      continue;
    }
    if (extra.count(n) != 0 || on_allowlist(n)) continue;
    std::string detail =
        "enclave images may import only pure libc functions (memory/string, math, locks) and the "
        "few symbols libstdc++ needs; if '" +
        n +
        "' allocates nothing, does no I/O and keeps no "
        "state in the host, allow it explicitly (extra allowed imports), otherwise implement it "
        "inside the image";
    if (n.rfind("_Z", 0) == 0) {
      detail +=
          "; it is a C++ library symbol: link the C++ runtime into the image "
          "(-static-libstdc++ -static-libgcc, as constmig_add_enclave does)";
    }
    refused.push_back({n, "not on the enclave import allowlist", std::move(detail)});
  }
  if (refused.empty()) return ok_status();

  const Refusal& first = refused.front();
  std::string msg = "enclave image imports '" + first.name + "' (" + first.category +
                    ") from the host: " + first.detail + ".";
  if (refused.size() > 1) {
    constexpr size_t kListed = 8;
    msg += " " + std::to_string(refused.size() - 1) + " other refused import" +
           (refused.size() > 2 ? "s" : "") + ": ";
    for (size_t i = 1; i < refused.size() && i <= kListed; ++i) {
      if (i > 1) msg += ", ";
      msg += "'" + refused[i].name + "' (" + refused[i].category + ")";
    }
    if (refused.size() - 1 > kListed)
      msg += " and " + std::to_string(refused.size() - 1 - kListed) + " more";
    msg += ".";
  }
  return make_error(Errc::kSecurity, std::move(msg));
}

}  // namespace constmig::platform
