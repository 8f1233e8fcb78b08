// UNTRUSTED (host side). Enclave measurement: the MRENCLAVE analogue.
//
// EMULATED SGX PLATFORM. On real SGX the measurement is computed by the CPU while the enclave is
// built: ECREATE records the enclave's size and attributes, every EADD records a page's offset and
// permissions (SECINFO), every EEXTEND folds 256 bytes of page content into a SHA-256 state, and
// EINIT seals the result into MRENCLAVE, which only the CPU can report. A host cannot lie about it.
//
// Here the (untrusted) platform computes the measurement in software over exactly what the loader
// maps and how it lays out the enclave: a domain-separation tag, the enclave ABI version, the
// layout constants of common/enclave_abi.h, the number of thread slots (TCS analogue), and for
// each PT_LOAD in order its address, sizes, permissions and file bytes (the zero-filled tail up to
// memsz is implied by memsz). Two hosts running the same image with the same layout get the same
// measurement; any change to code or initialised data, layout or slot count changes it. A host
// that wants to lie can: the emulation trusts the platform (docs/security.md).
//
// Encoding hashed (all integers little-endian):
//   u32 len, "constmig-mrenclave-v1"  (len = 21)
//   u32 abi::kAbiVersion
//   u64 abi::kImageMaxSize, u64 abi::kBootOffset, u64 abi::kHeapOffset, u64 abi::kHeapMaxReserve
//   u32 thread_slots
//   u64 base, u64 span
//   u8 has_relro, [u64 relro vaddr, u64 relro memsz]   (RELRO pages become read-only: a
//                                                       permission, like SECINFO)
//   u32 number of PT_LOADs, then for each PT_LOAD in order:
//     u64 vaddr, u64 memsz, u32 flags, u64 filesz, filesz bytes of the file at p_offset
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "common/bytes.h"
#include "common/quote_format.h"
#include "common/result.h"
#include "platform/host_elf.h"

namespace constmig::platform {

using Measurement = quote::Measurement;

// Lower-case hex of the bytes.
std::string to_hex(ByteView bytes);

// SHA-256 (OpenSSL EVP). Fails only if OpenSSL does (Errc::kInternal).
Result<Measurement> sha256(ByteView data);

// The enclave measurement of `file`, whose parsed form is `info` (from parse_elf_image(file)).
// thread_slots must be in [1, abi::kMaxThreadSlots] (Errc::kInvalidArgument). A segment whose
// file bytes lie outside `file` gives Errc::kFormat (info does not describe this file).
Result<Measurement> measure_image(ByteView file, const ElfImageInfo& info, uint32_t thread_slots);

}  // namespace constmig::platform
