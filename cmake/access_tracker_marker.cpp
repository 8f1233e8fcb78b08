// Linked into every image built with constmig_add_enclave(... TRACKER access): tells the
// trusted runtime (src/trusted/access) that the image's code went through the Access Tracker
// pass, so `--tracker access` may rely on its checks.
#include <cstdint>

extern "C" __attribute__((visibility("hidden"))) const uint8_t __constmig_at_instrumented = 1;
