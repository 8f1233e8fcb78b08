// An enclave image that runs a host program through the host libc: the loader must refuse it.
// (fopen/write are shadowed inside every image by failing stubs, see
// src/trusted/crypto/enclave_libc_shims.cpp; popen/unlink are not.)
#include <unistd.h>
#include <cstdio>

#include "trusted/enclave_edl.h"

#define BAD_EDL(ECALL, OCALL) ECALL(leak, "hands enclave data to a host program")
CONSTMIG_ENCLAVE(bad, BAD_EDL)

int32_t ecall_leak(constmig::trusted::EcallIo& io) {
  FILE* f = popen("cat > /tmp/leak", "w");
  if (f) pclose(f);
  unlink("/tmp/leak");
  (void)io;
  return 0;
}
