// malloc/free/new/delete inside the enclave image, served by the ConstMigLib heap.
//
// TRUSTED code. The image is linked with -Bsymbolic and a static libstdc++, so every call to
// these names from inside the image (the app, libstdc++, libgcc) binds here, never to the host
// libc. The loader refuses images that still import an allocation function from the host.
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>

#include "trusted/enclave_runtime.h"

using constmig::trusted::route_aligned;
using constmig::trusted::route_free;
using constmig::trusted::route_malloc;
using constmig::trusted::route_realloc;
using constmig::trusted::route_usable_size;

// Not exported: cmake/enclave.version keeps every symbol but the entry points local.
#define CM_EXPORT_LOCAL extern "C"

CM_EXPORT_LOCAL void* malloc(size_t n) {
  return route_malloc(n);
}
CM_EXPORT_LOCAL void free(void* p) {
  route_free(p);
}
CM_EXPORT_LOCAL void* calloc(size_t n, size_t sz) {
  if (!constmig::trusted::instance_alloc_active()) return constmig::trusted::heap().calloc(n, sz);
  if (sz != 0 && n > SIZE_MAX / sz) return nullptr;
  void* p = route_malloc(n * sz);
  if (p != nullptr) std::memset(p, 0, n * sz);
  return p;
}
CM_EXPORT_LOCAL void* realloc(void* p, size_t n) {
  return route_realloc(p, n);
}
CM_EXPORT_LOCAL void* aligned_alloc(size_t align, size_t n) {
  return route_aligned(align, n);
}
CM_EXPORT_LOCAL void* memalign(size_t align, size_t n) {
  return route_aligned(align, n);
}
CM_EXPORT_LOCAL int posix_memalign(void** out, size_t align, size_t n) {
  if (align < sizeof(void*) || (align & (align - 1)) != 0) return EINVAL;
  void* p = route_aligned(align, n);
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}
CM_EXPORT_LOCAL void* valloc(size_t n) {
  return route_aligned(4096, n);
}
CM_EXPORT_LOCAL size_t malloc_usable_size(void* p) {
  return p ? route_usable_size(p) : 0;
}

namespace {
void* new_or_throw(size_t n) {
  void* p = route_malloc(n ? n : 1);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
void* new_aligned_or_throw(size_t n, std::align_val_t a) {
  void* p = route_aligned(static_cast<size_t>(a), n ? n : 1);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
}  // namespace

#define CM_NEW_VIS

CM_NEW_VIS void* operator new(size_t n) {
  return new_or_throw(n);
}
CM_NEW_VIS void* operator new[](size_t n) {
  return new_or_throw(n);
}
CM_NEW_VIS void* operator new(size_t n, const std::nothrow_t&) noexcept {
  return route_malloc(n ? n : 1);
}
CM_NEW_VIS void* operator new[](size_t n, const std::nothrow_t&) noexcept {
  return route_malloc(n ? n : 1);
}
CM_NEW_VIS void* operator new(size_t n, std::align_val_t a) {
  return new_aligned_or_throw(n, a);
}
CM_NEW_VIS void* operator new[](size_t n, std::align_val_t a) {
  return new_aligned_or_throw(n, a);
}
CM_NEW_VIS void* operator new(size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return route_aligned(static_cast<size_t>(a), n ? n : 1);
}
CM_NEW_VIS void* operator new[](size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return route_aligned(static_cast<size_t>(a), n ? n : 1);
}
CM_NEW_VIS void operator delete(void* p) noexcept {
  route_free(p);
}
CM_NEW_VIS void operator delete[](void* p) noexcept {
  route_free(p);
}
CM_NEW_VIS void operator delete(void* p, size_t) noexcept {
  route_free(p);
}
CM_NEW_VIS void operator delete[](void* p, size_t) noexcept {
  route_free(p);
}
CM_NEW_VIS void operator delete(void* p, const std::nothrow_t&) noexcept {
  route_free(p);
}
CM_NEW_VIS void operator delete[](void* p, const std::nothrow_t&) noexcept {
  route_free(p);
}
CM_NEW_VIS void operator delete(void* p, std::align_val_t) noexcept {
  route_free(p);
}
CM_NEW_VIS void operator delete[](void* p, std::align_val_t) noexcept {
  route_free(p);
}
CM_NEW_VIS void operator delete(void* p, size_t, std::align_val_t) noexcept {
  route_free(p);
}
CM_NEW_VIS void operator delete[](void* p, size_t, std::align_val_t) noexcept {
  route_free(p);
}
CM_NEW_VIS void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  route_free(p);
}
CM_NEW_VIS void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  route_free(p);
}
