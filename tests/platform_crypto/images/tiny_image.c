/* Test enclave image: imports only memcpy (plus the weak crtstuff symbols every shared
 * object carries). Never loaded by the tests, only parsed and measured. */
#include <stddef.h>
#include <string.h>

int tiny_image_counter = 42;

__attribute__((visibility("default"))) void tiny_image_copy(void* dst, const void* src, size_t n) {
  memcpy(dst, src, n);
  tiny_image_counter++;
}
