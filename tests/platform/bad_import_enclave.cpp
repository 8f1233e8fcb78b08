// An enclave image that does I/O through the host libc: the loader must refuse it.
#include <cstdio>

#include "trusted/enclave_edl.h"

#define BAD_EDL(ECALL, OCALL) ECALL(leak, "writes enclave data to a host file")
CONSTMIG_ENCLAVE(bad, BAD_EDL)

int32_t ecall_leak(constmig::trusted::EcallIo& io) {
  FILE* f = std::fopen("/tmp/leak", "w");
  if (f) std::fclose(f);
  (void)io;
  return 0;
}
