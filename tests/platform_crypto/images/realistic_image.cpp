// Test enclave image built the way DESIGN.md §6 describes (static libstdc++/libgcc,
// -Bsymbolic, gc-sections, a version script exporting only the ECALL symbols) and using the
// parts of the C++ library an enclave app typically uses: strings, hash maps, exceptions.
// It brings its own malloc family (a bump allocator standing in for the ConstMigLib heap), so
// libstdc++'s operator new binds to it and nothing allocates from the host. Never loaded by
// the tests: it shows that the import allowlist accepts what such an image really imports.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <unordered_map>

namespace {
alignas(64) unsigned char g_arena[1 << 20];
size_t g_used = 0;
void* bump(size_t n, size_t align) {
  size_t at = (g_used + align - 1) & ~(align - 1);
  if (at + n > sizeof(g_arena)) return nullptr;
  g_used = at + n;
  return g_arena + at;
}
std::unordered_map<std::string, std::string>& table() {
  static std::unordered_map<std::string, std::string> t;
  return t;
}
}  // namespace

extern "C" {
void* malloc(size_t n) {
  return bump(n ? n : 1, 16);
}
void free(void*) {}
void* calloc(size_t a, size_t b) {
  if (b && a > SIZE_MAX / b) return nullptr;
  void* p = malloc(a * b);
  if (p) std::memset(p, 0, a * b);
  return p;
}
void* realloc(void* old, size_t n) {
  void* p = malloc(n);
  if (p && old) std::memcpy(p, old, n);  // test stand-in: may over-read the old block
  return p;
}
void* aligned_alloc(size_t align, size_t n) {
  return bump(n ? n : 1, align < 16 ? 16 : align);
}
void* memalign(size_t align, size_t n) {
  return aligned_alloc(align, n);
}
int posix_memalign(void** out, size_t align, size_t n) {
  *out = aligned_alloc(align, n);
  return *out ? 0 : 12;
}

int32_t constmig_enclave_ecall(uint32_t, uint32_t id, const uint8_t* in, size_t in_len,
                               uint8_t* out, size_t out_cap, size_t* out_len) {
  try {
    std::string key(reinterpret_cast<const char*>(in), in_len);
    if (id == 0) {
      table()[key] = key + key;
      *out_len = 0;
      return 0;
    }
    const std::string& v = table().at(key);  // throws std::out_of_range
    if (v.size() > out_cap) throw std::length_error("out too small");
    std::memcpy(out, v.data(), v.size());
    *out_len = v.size();
    return 0;
  } catch (const std::exception& e) {
    size_t n = std::strlen(e.what());
    if (n >= out_cap) n = out_cap ? out_cap - 1 : 0;
    if (out_cap) {
      std::memcpy(out, e.what(), n);
      out[n] = 0;
    }
    return 5;
  }
}
const void* constmig_enclave_info() {
  return nullptr;
}
}
