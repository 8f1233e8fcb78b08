// constmig-image-check IMAGE...: run the emulated platform loader's static checks on enclave
// images (ELF format, fixed base, size, entry points, forbidden imports) and print their
// measurement. Exit status 1 names the first problem. Used after every enclave link.
#include <cstdio>
#include <cstring>

#include "platform/host_enclave.h"

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
    std::printf(
        "usage: constmig-image-check IMAGE...\n"
        "Checks enclave images the way the EMULATED SGX platform loader will (format, fixed\n"
        "base, size, entry points, no allocation/I/O imports from the host libc) and prints\n"
        "each image's measurement (MRENCLAVE analogue, for 8 thread slots).\n");
    return argc < 2 ? 2 : 0;
  }
  int rc = 0;
  for (int i = 1; i < argc; ++i) {
    auto m = constmig::platform::check_image(argv[i], 8);
    if (!m.ok()) {
      std::fprintf(stderr, "constmig-image-check: %s\n", m.error().message.c_str());
      rc = 1;
      continue;
    }
    std::printf("%s: ok, measurement %s\n", argv[i], constmig::platform::to_hex(*m).c_str());
  }
  return rc;
}
