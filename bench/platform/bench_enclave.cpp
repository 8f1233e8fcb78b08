// Benchmark enclave (TRUSTED): trivial ECALLs to measure the platform's transition cost.
#include "bench_edl.h"
#include "trusted/enclave_edl.h"

CONSTMIG_ENCLAVE(bench, BENCH_EDL)

int32_t ecall_nop(constmig::trusted::EcallIo&) {
  return 0;
}
int32_t ecall_echo(constmig::trusted::EcallIo& io) {
  io.out.assign(io.in.begin(), io.in.end());
  return 0;
}
int32_t ecall_ocall_roundtrip(constmig::trusted::EcallIo&) {
  std::vector<uint8_t> out;
  return ocall_host_nop({}, out, 0);
}
