// Host half of the EDL glue (see src/trusted/enclave_edl.h for the trusted half).
//
// UNTRUSTED code. In a host .cpp:  CONSTMIG_HOST_EDL(kvstore_edl, KVSTORE_EDL)  yields
//   namespace kvstore_edl {
//     enum class Ecall : uint32_t { kv_batch, ... };
//     std::vector<std::string> ecall_names();                 // for EnclaveConfig
//     Result<std::vector<uint8_t>> kv_batch(Enclave&, ByteView in);   // one stub per ECALL
//     int32_t ocall_<name>(void* app_ctx, OcallIo&);           // YOU define one per OCALL
//     OcallTable ocall_table(void* app_ctx);                   // for EnclaveConfig
//   }
#pragma once

#include <string>
#include <vector>

#include "platform/host_enclave.h"

#define CONSTMIG_EDL_H_SKIP_(name, doc)
#define CONSTMIG_EDL_H_ID_(name, doc) name,
#define CONSTMIG_EDL_H_NAME_(name, doc) #name,
#define CONSTMIG_EDL_H_STUB_(name, doc)                                                  \
  inline ::constmig::Result<std::vector<uint8_t>> name(::constmig::platform::Enclave& e, \
                                                       ::constmig::ByteView in = {}) {   \
    return e.call(static_cast<uint32_t>(Ecall::name), in);                               \
  }
#define CONSTMIG_EDL_H_ODECL_(name, doc) \
  int32_t ocall_##name(void* app_ctx, ::constmig::platform::OcallIo& io);
#define CONSTMIG_EDL_H_OPTR_(name, doc) &ocall_##name,

#define CONSTMIG_HOST_EDL(ns, EDL)                                                                \
  namespace ns {                                                                                  \
  enum class Ecall : uint32_t { EDL(CONSTMIG_EDL_H_ID_, CONSTMIG_EDL_H_SKIP_) kCount };           \
  inline std::vector<std::string> ecall_names() {                                                 \
    return {EDL(CONSTMIG_EDL_H_NAME_, CONSTMIG_EDL_H_SKIP_)};                                     \
  }                                                                                               \
  EDL(CONSTMIG_EDL_H_STUB_, CONSTMIG_EDL_H_SKIP_)                                                 \
  EDL(CONSTMIG_EDL_H_SKIP_, CONSTMIG_EDL_H_ODECL_)                                                \
  inline ::constmig::platform::OcallTable ocall_table(void* app_ctx) {                            \
    static const char* const names[] = {EDL(CONSTMIG_EDL_H_SKIP_, CONSTMIG_EDL_H_NAME_) nullptr}; \
    static const ::constmig::platform::OcallHandler handlers[] = {                                \
        EDL(CONSTMIG_EDL_H_SKIP_, CONSTMIG_EDL_H_OPTR_) nullptr};                                 \
    return {names, handlers, static_cast<uint32_t>(sizeof(names) / sizeof(char*) - 1), app_ctx};  \
  }                                                                                               \
  }
