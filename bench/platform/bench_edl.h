#pragma once
#define BENCH_EDL(ECALL, OCALL)                    \
  ECALL(nop, "returns at once")                    \
  ECALL(echo, "copies its input to its output")    \
  OCALL(host_nop, "an OCALL that returns at once") \
  ECALL(ocall_roundtrip, "makes one OCALL")
