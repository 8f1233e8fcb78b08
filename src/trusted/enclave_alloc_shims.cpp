// malloc/free/new/delete inside the enclave image, served by the ConstMigLib heap.
//
// TRUSTED code. The image is linked with -Bsymbolic and a static libstdc++, so every call to
// these names from inside the image (the app, libstdc++, libgcc) binds here, never to the host
// libc. The loader refuses images that still import an allocation function from the host.
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <new>

#include "trusted/enclave_runtime.h"

using constmig::trusted::heap;

// Not exported: cmake/enclave.version keeps every symbol but the entry points local.
#define CM_EXPORT_LOCAL extern "C"

CM_EXPORT_LOCAL void* malloc(size_t n) { return heap().malloc(n); }
CM_EXPORT_LOCAL void free(void* p) { heap().free(p); }
CM_EXPORT_LOCAL void* calloc(size_t n, size_t sz) { return heap().calloc(n, sz); }
CM_EXPORT_LOCAL void* realloc(void* p, size_t n) { return heap().realloc(p, n); }
CM_EXPORT_LOCAL void* aligned_alloc(size_t align, size_t n) {
  return heap().aligned_alloc(align, n);
}
CM_EXPORT_LOCAL void* memalign(size_t align, size_t n) { return heap().aligned_alloc(align, n); }
CM_EXPORT_LOCAL int posix_memalign(void** out, size_t align, size_t n) {
  if (align < sizeof(void*) || (align & (align - 1)) != 0) return EINVAL;
  void* p = heap().aligned_alloc(align, n);
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}
CM_EXPORT_LOCAL void* valloc(size_t n) { return heap().aligned_alloc(4096, n); }
CM_EXPORT_LOCAL size_t malloc_usable_size(void* p) { return p ? heap().usable_size(p) : 0; }

namespace {
void* new_or_throw(size_t n) {
  void* p = heap().malloc(n ? n : 1);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
void* new_aligned_or_throw(size_t n, std::align_val_t a) {
  void* p = heap().aligned_alloc(static_cast<size_t>(a), n ? n : 1);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
}  // namespace

#define CM_NEW_VIS

CM_NEW_VIS void* operator new(size_t n) { return new_or_throw(n); }
CM_NEW_VIS void* operator new[](size_t n) { return new_or_throw(n); }
CM_NEW_VIS void* operator new(size_t n, const std::nothrow_t&) noexcept {
  return heap().malloc(n ? n : 1);
}
CM_NEW_VIS void* operator new[](size_t n, const std::nothrow_t&) noexcept {
  return heap().malloc(n ? n : 1);
}
CM_NEW_VIS void* operator new(size_t n, std::align_val_t a) { return new_aligned_or_throw(n, a); }
CM_NEW_VIS void* operator new[](size_t n, std::align_val_t a) {
  return new_aligned_or_throw(n, a);
}
CM_NEW_VIS void* operator new(size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return heap().aligned_alloc(static_cast<size_t>(a), n ? n : 1);
}
CM_NEW_VIS void* operator new[](size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return heap().aligned_alloc(static_cast<size_t>(a), n ? n : 1);
}
CM_NEW_VIS void operator delete(void* p) noexcept { heap().free(p); }
CM_NEW_VIS void operator delete[](void* p) noexcept { heap().free(p); }
CM_NEW_VIS void operator delete(void* p, size_t) noexcept { heap().free(p); }
CM_NEW_VIS void operator delete[](void* p, size_t) noexcept { heap().free(p); }
CM_NEW_VIS void operator delete(void* p, const std::nothrow_t&) noexcept { heap().free(p); }
CM_NEW_VIS void operator delete[](void* p, const std::nothrow_t&) noexcept { heap().free(p); }
CM_NEW_VIS void operator delete(void* p, std::align_val_t) noexcept { heap().free(p); }
CM_NEW_VIS void operator delete[](void* p, std::align_val_t) noexcept { heap().free(p); }
CM_NEW_VIS void operator delete(void* p, size_t, std::align_val_t) noexcept { heap().free(p); }
CM_NEW_VIS void operator delete[](void* p, size_t, std::align_val_t) noexcept { heap().free(p); }
CM_NEW_VIS void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  heap().free(p);
}
CM_NEW_VIS void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  heap().free(p);
}
