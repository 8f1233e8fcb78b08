/* Test enclave image that imports malloc from the host libc: the import check must refuse
 * it and name 'malloc'. Never loaded by the tests. */
#include <stdlib.h>
#include <string.h>

__attribute__((visibility("default"))) void* malloc_image_dup(const void* src, size_t n) {
  void* p = malloc(n);
  if (p) memcpy(p, src, n);
  return p;
}
