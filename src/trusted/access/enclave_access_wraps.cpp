// Access Tracker: checked wrappers for library functions that read or write memory through
// pointers but are not compiled with the pass (TRUSTED; never compiled with the pass).
//
// The pass instruments what the image's own code does. Library code is not compiled by us:
// the host libc's mem*/str* functions the image imports, and libstdc++'s prebuilt
// std::_Hash_bytes (what std::hash<std::string> calls). An image built with TRACKER access is
// linked with --wrap for each of them (cmake/ConstmigEnclave.cmake), so every call, from the
// app, from libstdc++.a or from OpenSSL, first makes sure the heap pages it will touch are
// restored. With no migration pending each wrapper costs one load and one branch.
#include <cstddef>
#include <cstdint>

extern "C" {
extern uint8_t __constmig_at_active;
void __constmig_at_fetch(const void* addr, uint64_t len);

void* __real_memcpy(void* d, const void* s, size_t n);
void* __real_memmove(void* d, const void* s, size_t n);
void* __real_memset(void* d, int c, size_t n);
int __real_memcmp(const void* a, const void* b, size_t n);
int __real_bcmp(const void* a, const void* b, size_t n);
const void* __real_memchr(const void* p, int c, size_t n);
size_t __real_strlen(const char* s);
int __real_strcmp(const char* a, const char* b);
int __real_strncmp(const char* a, const char* b, size_t n);
size_t __real__ZSt11_Hash_bytesPKvmm(const void* p, size_t len, size_t seed);
}

namespace {

inline bool active() {
  return __atomic_load_n(&__constmig_at_active, __ATOMIC_ACQUIRE) != 0;
}

// Restores the pages of a NUL-terminated string, page by page, reading at most `max` bytes:
// a page is fetched before it is scanned for the terminator.
void fetch_cstr(const char* s, size_t max) {
  while (max > 0) {
    size_t to_page_end = 4096 - (reinterpret_cast<uintptr_t>(s) & 4095);
    size_t chunk = to_page_end < max ? to_page_end : max;
    __constmig_at_fetch(s, chunk);
    if (__real_memchr(s, 0, chunk) != nullptr) return;
    s += chunk;
    max -= chunk;
  }
}

}  // namespace

extern "C" {

void* __wrap_memcpy(void* d, const void* s, size_t n) {
  if (active()) {
    __constmig_at_fetch(s, n);
    __constmig_at_fetch(d, n);
  }
  return __real_memcpy(d, s, n);
}

void* __wrap_memmove(void* d, const void* s, size_t n) {
  if (active()) {
    __constmig_at_fetch(s, n);
    __constmig_at_fetch(d, n);
  }
  return __real_memmove(d, s, n);
}

void* __wrap_memset(void* d, int c, size_t n) {
  if (active()) __constmig_at_fetch(d, n);
  return __real_memset(d, c, n);
}

int __wrap_memcmp(const void* a, const void* b, size_t n) {
  if (active()) {
    __constmig_at_fetch(a, n);
    __constmig_at_fetch(b, n);
  }
  return __real_memcmp(a, b, n);
}

int __wrap_bcmp(const void* a, const void* b, size_t n) {
  if (active()) {
    __constmig_at_fetch(a, n);
    __constmig_at_fetch(b, n);
  }
  return __real_bcmp(a, b, n);
}

const void* __wrap_memchr(const void* p, int c, size_t n) {
  if (active()) __constmig_at_fetch(p, n);
  return __real_memchr(p, c, n);
}

size_t __wrap_strlen(const char* s) {
  if (active()) fetch_cstr(s, SIZE_MAX);
  return __real_strlen(s);
}

int __wrap_strcmp(const char* a, const char* b) {
  if (active()) {
    fetch_cstr(a, SIZE_MAX);
    fetch_cstr(b, SIZE_MAX);
  }
  return __real_strcmp(a, b);
}

int __wrap_strncmp(const char* a, const char* b, size_t n) {
  if (active()) {
    fetch_cstr(a, n);
    fetch_cstr(b, n);
  }
  return __real_strncmp(a, b, n);
}

// std::_Hash_bytes(const void*, size_t, size_t): libstdc++'s murmur hash behind
// std::hash<std::string>.
size_t __wrap__ZSt11_Hash_bytesPKvmm(const void* p, size_t len, size_t seed) {
  if (active()) __constmig_at_fetch(p, len);
  return __real__ZSt11_Hash_bytesPKvmm(p, len, seed);
}

}  // extern "C"
