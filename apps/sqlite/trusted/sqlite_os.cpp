// The operating-system layer of the SQLite amalgamation inside the enclave (TRUSTED), built with
// SQLITE_OS_OTHER=1: SQLite has no unix VFS here, so it opens no file, maps nothing and makes no
// system call of its own. The workload's database is ":memory:" (its pages live in SQLite's
// page cache, i.e. the enclave heap through malloc) and temporary storage is memory too
// (SQLITE_TEMP_STORE=3), so the VFS below is only what sqlite3_open() insists on finding:
//   * xOpen refuses every file (SQLITE_CANTOPEN): a database file cannot be opened by mistake;
//   * xRandomness: getentropy() (in an enclave image the libc shim's RDSEED/RDRAND, never the
//     host's randomness);
//   * xCurrentTime*: the wall clock (in an enclave image the runtime's untrusted-time OCALL;
//     only date('now') and friends read it, the workload does not);
//   * xSleep returns at once (SQLite only sleeps in busy handlers, which one connection never
//     needs).
// Also compiled into host unit tests, where the same calls go to glibc.
//
// It also defines the four string functions SQLite calls that the Access Tracker's checked
// wrappers do not cover (sqlite3.c is compiled with -Dstrchr=constmig_sqlite_strchr, ...):
// compiled in this library, they are instrumented with the rest of SQLite in the _at variant,
// so a string on a heap page that has not arrived yet is fetched before it is scanned.
#include <sys/random.h>

#include <chrono>
#include <cstdint>
#include <cstring>

#include "sqlite3.h"

namespace {

constexpr char kVfsName[] = "constmig-memory";

int vfs_open(sqlite3_vfs*, sqlite3_filename, sqlite3_file* f, int, int* out_flags) {
  f->pMethods = nullptr;  // nothing to close
  if (out_flags != nullptr) *out_flags = 0;
  return SQLITE_CANTOPEN;
}
int vfs_delete(sqlite3_vfs*, const char*, int) {
  return SQLITE_IOERR_DELETE;
}
int vfs_access(sqlite3_vfs*, const char*, int, int* out) {
  *out = 0;  // no file exists
  return SQLITE_OK;
}
int vfs_full_pathname(sqlite3_vfs*, const char* name, int n_out, char* out) {
  if (n_out <= 0) return SQLITE_CANTOPEN;
  size_t n = std::strlen(name);
  if (n >= static_cast<size_t>(n_out)) return SQLITE_CANTOPEN;
  std::memcpy(out, name, n + 1);
  return SQLITE_OK;
}
int vfs_randomness(sqlite3_vfs*, int n, char* out) {
  int done = 0;
  while (done < n) {
    size_t chunk = static_cast<size_t>(n - done) < 256 ? static_cast<size_t>(n - done) : 256;
    if (getentropy(out + done, chunk) != 0) break;
    done += static_cast<int>(chunk);
  }
  if (done < n) std::memset(out + done, 0, static_cast<size_t>(n - done));
  return done;
}
int vfs_sleep(sqlite3_vfs*, int microseconds) {
  return microseconds;
}
int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
// Julian day number times 86400000 (SQLite's unit), from the Unix epoch.
constexpr int64_t kUnixEpochJdMs = 210866760000000LL;
int vfs_current_time_int64(sqlite3_vfs*, sqlite3_int64* t) {
  *t = kUnixEpochJdMs + unix_ms();
  return SQLITE_OK;
}
int vfs_current_time(sqlite3_vfs* v, double* t) {
  sqlite3_int64 ms = 0;
  vfs_current_time_int64(v, &ms);
  *t = static_cast<double>(ms) / 86400000.0;
  return SQLITE_OK;
}
int vfs_get_last_error(sqlite3_vfs*, int, char*) {
  return 0;
}

sqlite3_vfs g_vfs = {
    2,           // iVersion (xCurrentTimeInt64)
    0,           // szOsFile: no file is ever opened
    512,         // mxPathname
    nullptr,     // pNext
    kVfsName,    // zName
    nullptr,     // pAppData
    vfs_open,    // xOpen
    vfs_delete,  // xDelete
    vfs_access,  // xAccess
    vfs_full_pathname,
    nullptr,  // xDlOpen: SQLITE_OMIT_LOAD_EXTENSION, never called
    nullptr,  // xDlError
    nullptr,  // xDlSym
    nullptr,  // xDlClose
    vfs_randomness,
    vfs_sleep,
    vfs_current_time,
    vfs_get_last_error,
    vfs_current_time_int64,
    nullptr,  // xSetSystemCall
    nullptr,  // xGetSystemCall
    nullptr,  // xNextSystemCall
};

}  // namespace

extern "C" {

int sqlite3_os_init(void) {
  return sqlite3_vfs_register(&g_vfs, 1);
}
int sqlite3_os_end(void) {
  return SQLITE_OK;
}

char* constmig_sqlite_strchr(const char* s, int c) {
  const char ch = static_cast<char>(c);
  for (;; ++s) {
    if (*s == ch) return const_cast<char*>(s);
    if (*s == '\0') return nullptr;
  }
}
char* constmig_sqlite_strrchr(const char* s, int c) {
  const char ch = static_cast<char>(c);
  const char* last = nullptr;
  for (;; ++s) {
    if (*s == ch) last = s;
    if (*s == '\0') return const_cast<char*>(last);
  }
}
size_t constmig_sqlite_strspn(const char* s, const char* accept) {
  size_t n = 0;
  for (; s[n] != '\0'; ++n) {
    const char* a = accept;
    while (*a != '\0' && *a != s[n]) ++a;
    if (*a == '\0') break;
  }
  return n;
}
size_t constmig_sqlite_strcspn(const char* s, const char* reject) {
  size_t n = 0;
  for (; s[n] != '\0'; ++n) {
    const char* r = reject;
    while (*r != '\0' && *r != s[n]) ++r;
    if (*r != '\0') break;
  }
  return n;
}

}  // extern "C"
