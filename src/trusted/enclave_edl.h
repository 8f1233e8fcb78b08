// Trusted half of the EDL glue. An app declares its ECALLs and OCALLs ONCE, in an X-macro
// list shared by both sides, e.g. apps/kvstore/kvstore_edl.h:
//
//   #define KVSTORE_EDL(ECALL, OCALL)
//     ECALL(kv_batch, "run a batch of commands")
//     OCALL(kv_note, "tell the host something")
// (one macro, continued with backslashes)
//
// In ONE trusted .cpp file the app writes  CONSTMIG_ENCLAVE(kvstore, KVSTORE_EDL)  and defines
//   int32_t ecall_<name>(constmig::trusted::EcallIo&)   for every ECALL (a missing one fails to
// link), and gets   int32_t ocall_<name>(ByteView in, std::vector<uint8_t>& out, size_t max)
// stubs for every OCALL. The host half is src/platform/host_edl.h.
#pragma once

#include "trusted/enclave_runtime.h"

#define CONSTMIG_EDL_SKIP_(name, doc)
#define CONSTMIG_EDL_T_DECL_(name, doc) int32_t ecall_##name(::constmig::trusted::EcallIo& io);
#define CONSTMIG_EDL_T_NAME_(name, doc) #name,
#define CONSTMIG_EDL_T_PTR_(name, doc) &ecall_##name,
#define CONSTMIG_EDL_T_OID_(name, doc) kOcallId_##name,
#define CONSTMIG_EDL_T_OSTUB_(name, doc)                                                           \
  [[maybe_unused]] static int32_t ocall_##name(::constmig::ByteView in, std::vector<uint8_t>& out, \
                                               size_t max_out) {                                   \
    return ::constmig::trusted::ocall(                                                             \
        static_cast<uint32_t>(::constmig::trusted::kFirstAppOcall) + kOcallId_##name, in, out,     \
        max_out);                                                                                  \
  }

#define CONSTMIG_ENCLAVE(app, EDL)                                               \
  EDL(CONSTMIG_EDL_T_DECL_, CONSTMIG_EDL_SKIP_)                                  \
  enum : uint32_t { EDL(CONSTMIG_EDL_SKIP_, CONSTMIG_EDL_T_OID_) kOcallCount_ }; \
  EDL(CONSTMIG_EDL_SKIP_, CONSTMIG_EDL_T_OSTUB_)                                 \
  namespace {                                                                    \
  const char* const kConstmigEcallNames[] = {                                    \
      EDL(CONSTMIG_EDL_T_NAME_, CONSTMIG_EDL_SKIP_) nullptr};                    \
  const char* const kConstmigOcallNames[] = {                                    \
      EDL(CONSTMIG_EDL_SKIP_, CONSTMIG_EDL_T_NAME_) nullptr};                    \
  const ::constmig::trusted::EcallHandler kConstmigHandlers[] = {                \
      EDL(CONSTMIG_EDL_T_PTR_, CONSTMIG_EDL_SKIP_) nullptr};                     \
  const ::constmig::trusted::AppTable kConstmigAppTable = {                      \
      #app,                                                                      \
      static_cast<uint32_t>(sizeof(kConstmigEcallNames) / sizeof(char*) - 1),    \
      kConstmigEcallNames,                                                       \
      kConstmigHandlers,                                                         \
      static_cast<uint32_t>(kOcallCount_),                                       \
      kConstmigOcallNames};                                                      \
  }                                                                              \
  namespace constmig::trusted {                                                  \
  const AppTable& app_table() {                                                  \
    return kConstmigAppTable;                                                    \
  }                                                                              \
  }

namespace constmig::trusted {
// Defined by CONSTMIG_ENCLAVE in the app.
const AppTable& app_table();
}  // namespace constmig::trusted
