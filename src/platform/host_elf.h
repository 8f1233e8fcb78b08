// UNTRUSTED (host side). Enclave image inspection: parse an enclave image (an ELF64 x86-64
// shared object) from bytes, and check what it imports from the host.
//
// EMULATED SGX PLATFORM. On real SGX the untrusted loader (the SDK's urts, Gramine's
// host_main) also parses the enclave ELF, but the CPU then copies each page into the EPC with
// EADD and folds its content and permissions into MRENCLAVE (EEXTEND), so a lying parser can only
// produce an enclave with a different measurement. There, an enclave image is fully
// self-contained: it has no dynamic imports at all (the SDK links a trusted libc), and the
// signing tool refuses images that still import anything.
//
// Here the image is placed by glibc's dlopen at its fixed link address and its remaining
// imports are bound to the HOST's libc. check_enclave_imports() therefore enforces an import
// policy: only pure, allocation-free, I/O-free libc functions (and the few symbols libstdc++ and
// the unwinder need) may be imported. It is a correctness and hygiene check that catches an
// app's own malloc/open/socket/time calls (whose memory or state would not migrate) with a
// message naming the symbol. It is NOT a security boundary: a hostile image can issue system
// calls without importing anything. What makes an image trustworthy is its measurement
// (host_measure.h), checked by the peer through a quote (host_quote.h).
//
// parse_elf_image() treats the file as hostile input: every offset, size, count and string
// index is checked before use; malformed input gives Errc::kFormat, never a crash or an
// out-of-bounds read. Imports are read the way the dynamic linker reads them (PT_DYNAMIC,
// DT_SYMTAB/DT_STRTAB, symbol count from the hash tables and the relocations), so stripped or
// falsified section headers cannot hide an import: section headers are never read.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/bytes.h"
#include "common/result.h"

namespace constmig::platform {

struct ElfSegment {
  uint64_t vaddr = 0;  // link-time virtual address (the image is loaded at its link address)
  uint64_t memsz = 0;
  uint64_t filesz = 0;
  uint64_t offset = 0;  // file offset of the first filesz bytes
  uint32_t flags = 0;   // PF_R | PF_W | PF_X
};

struct ElfSymbol {
  std::string name;
  bool weak = false;  // STB_WEAK: the image tolerates its absence
};

struct ElfImageInfo {
  // Lowest PT_LOAD p_vaddr rounded down to 4 KiB: the image's fixed load address. Never 0:
  // enclave images are linked at a fixed base (-Wl,-Ttext-segment=<base>).
  uint64_t base = 0;
  // Page-rounded end of the highest PT_LOAD minus base (at most abi::kImageMaxSize).
  uint64_t span = 0;
  std::vector<ElfSegment> loads;     // PT_LOAD, ascending vaddr, non-overlapping
  std::optional<ElfSegment> relro;   // PT_GNU_RELRO, inside [base, base + span)
  std::vector<ElfSymbol> imports;    // undefined dynamic symbols (null symbol excluded)
  std::vector<std::string> exports;  // defined global/weak dynamic symbols
  std::vector<std::string> needed;   // DT_NEEDED
};

// Parses an enclave image. Errors: Errc::kFormat for anything malformed or not an enclave image
// (not ELF64/x86-64/ET_DYN, no PT_LOAD, base 0, larger than abi::kImageMaxSize, ...).
Result<ElfImageInfo> parse_elf_image(ByteView file);

// Checks the image's imports against the enclave import policy (the table in host_elf.cpp:
// every allowed and forbidden symbol or prefix with its reason). Refused: forbidden symbols
// (allocation, memory mapping, I/O & files, network, processes & loading, raw system calls,
// threads, time, randomness, host state) and anything not on the allowlist.
//
// `extra_allowed` names symbols an image may import in addition (exact names). It can allow a
// symbol that is not on the allowlist or a forbidden one of the overridable categories, but
// never an allocation or memory-mapping symbol: memory obtained from the host would silently
// not migrate.
//
// The error (Errc::kSecurity: the image is refused by policy) names the first refused symbol in
// symbol-table order, its category and what to do, then how many others were refused (and the
// first few of them).
Status check_enclave_imports(const ElfImageInfo& info,
                             std::span<const std::string> extra_allowed = {});

}  // namespace constmig::platform
