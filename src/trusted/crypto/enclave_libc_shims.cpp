// In-image definitions of the libc functions that OpenSSL's static libcrypto.a needs and an
// enclave must not import from the host (the SGX-SSL approach).
//
// TRUSTED code. Linked into enclave images only (constmig_trusted_crypto). The image is linked
// with -Bsymbolic and statically against libcrypto.a, so every reference to the names below
// from inside the image binds here at link time; the image then no longer imports them, and
// constmig-image-check / the loader (src/platform/host_elf.cpp) refuse it if it still does.
//
// Rules for this file:
//   * OS headers are included only for the TYPES in these signatures (FILE, sockaddr, stat,
//     ucontext_t, ...). Nothing here calls the host for I/O, memory, processes or time, except
//     the runtime's own OCALLs (untrusted time, log), which are named where used.
//   * Each group says why it is safe: the only callers in libcrypto are either served here
//     for real (randomness, thread-specific data, strdup, gmtime_r, ...) or are code paths the
//     enclave never takes (files, sockets, engines, async jobs, the secure heap, the UI), which
//     fail cleanly with -1/ENOSYS or NULL instead of reaching the host.
//   * Imports that stay (pure functions and locks on enclave memory: mem*/str*, sscanf,
//     pthread_rwlock_*/pthread_once/pthread_self, __ctype_*, __errno_location, __*_chk for
//     memcpy/memset, and fputs/fwrite/fputc on stderr) are on the import allowlist in
//     src/platform/host_elf.cpp with their reasons.
#include <cpuid.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <immintrin.h>
#include <linux/futex.h>
#include <netdb.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/select.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <termios.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "trusted/enclave_runtime.h"

namespace {

int fail(int err) {
  errno = err;
  return -1;
}

// ---- CPU randomness ------------------------------------------------------------------------
// RDSEED (the CPU's conditioned entropy source) when the CPU has it, else RDRAND (its DRBG,
// continuously reseeded from that source; what SGX's sgx_read_rand uses). CPUID is asked on every
// call rather than cached: enclave globals migrate, and the target CPU decides what it has. A CPU
// without RDRAND cannot give an enclave trusted randomness: the enclave aborts; it never falls
// back to the host's randomness.

bool cpu_has_rdrand() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(1, &a, &b, &c, &d) != 0 && (c & bit_RDRND) != 0;
}
bool cpu_has_rdseed() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid_count(7, 0, &a, &b, &c, &d) != 0 && (b & bit_RDSEED) != 0;
}

__attribute__((target("rdrnd"))) bool rdrand64(unsigned long long* v) {
  // Intel's guidance: RDRAND fails only transiently; 10 retries make failure a hardware fault.
  for (int i = 0; i < 10; ++i) {
    if (_rdrand64_step(v) != 0) return true;
  }
  return false;
}

__attribute__((target("rdseed"))) bool rdseed64(unsigned long long* v) {
  // RDSEED may run dry under load; back off briefly, then let the caller use RDRAND.
  for (int i = 0; i < 64; ++i) {
    if (_rdseed64_step(v) != 0) return true;
    _mm_pause();
  }
  return false;
}

[[noreturn]] void no_rdrand() {
  constmig::trusted::log(
      "constmig enclave: this CPU has no RDRAND instruction, so the enclave has no trusted "
      "source of randomness; refusing to continue (run on a CPU with RDRAND)");
  std::abort();
}

bool cpu_random_fill(void* buf, size_t len) {
  if (!cpu_has_rdrand()) no_rdrand();
  const bool seed = cpu_has_rdseed();
  auto* out = static_cast<unsigned char*>(buf);
  while (len > 0) {
    unsigned long long v = 0;
    if (!(seed && rdseed64(&v)) && !rdrand64(&v)) return false;
    size_t n = len < sizeof v ? len : sizeof v;
    std::memcpy(out, &v, n);
    v = 0;
    out += n;
    len -= n;
  }
  return true;
}

// ---- Output to stderr ----------------------------------------------------------------------
// OpenSSL writes to stderr only for fatal diagnostics (OPENSSL_die's "assertion failed" line,
// engine/UI errors). Those lines go to the runtime's log OCALL (no key material is ever in
// them); any other stream is refused: files and terminals are not reachable from the enclave.

void log_to_host(const char* fmt, va_list ap) {
  char buf[1024];
  int n = std::vsnprintf(buf, sizeof buf, fmt, ap);
  if (n <= 0) return;
  size_t len = static_cast<size_t>(n) < sizeof buf ? static_cast<size_t>(n) : sizeof buf - 1;
  while (len > 0 && buf[len - 1] == '\n') --len;
  constmig::trusted::log(std::string("openssl: ") + std::string(buf, len));
}

// ---- Thread-specific data --------------------------------------------------------------------
// OpenSSL keeps per-thread state (its error queue, per-thread DRBGs) under pthread keys. Host
// keys would put host-process handles into enclave globals: after migration the restored key ids
// would name the TARGET process's keys, possibly another library's. So keys are implemented
// here: the key table lives in enclave globals (it migrates together with OpenSSL's key ids);
// the values live in a thread_local array (host TLS, per thread, never migrated, which is the
// right scope: threads do not migrate). Each key creation gets a fresh generation number, seeded
// from the CPU per enclave instance, and a value counts only if it was stored under the key's
// current generation. A key deleted and re-created therefore reads NULL in every thread (POSIX),
// and after a restore the target's threads read NULL for the restored keys instead of pointers
// into the heap that was just replaced.
//
// Destructors are recorded but never run: a host thread may exit after its enclave was destroyed
// (heap unmapped), and running OpenSSL's per-thread cleanup then would crash the host. The cost
// is a small leak of per-thread OpenSSL state (error queue, two DRBGs: a few KiB) per host thread
// that used crypto and exited.

constexpr unsigned kMaxKeys = 128;

struct KeySlot {
  std::atomic<uint64_t> gen{0};  // 0: free
  void (*dtor)(void*) = nullptr;
};
KeySlot g_keys[kMaxKeys];
std::atomic<uint64_t> g_key_gen{0};  // last generation handed out (0: not yet seeded)
pthread_mutex_t g_key_mu = PTHREAD_MUTEX_INITIALIZER;

struct TsdValue {
  uint64_t gen;
  void* value;
};
thread_local TsdValue t_tsd[kMaxKeys];

uint64_t next_key_generation() {  // called with g_key_mu held
  uint64_t g = g_key_gen.load(std::memory_order_relaxed);
  if (g == 0) {
    unsigned long long seed = 0;
    if (!cpu_random_fill(&seed, sizeof seed)) seed = __builtin_ia32_rdtsc();
    g = seed & ~(uint64_t{1} << 63);  // keep headroom: generations only count up
  }
  ++g;
  if (g == 0) g = 1;
  g_key_gen.store(g, std::memory_order_relaxed);
  return g;
}

// ---- Calendar arithmetic for gmtime_r --------------------------------------------------------
// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's civil_from_days).
void civil_from_days(int64_t z, int64_t* y, unsigned* m, unsigned* d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = static_cast<int64_t>(yoe) + era * 400 + (*m <= 2 ? 1 : 0);
}

}  // namespace

extern "C" {

// ---- Randomness: getentropy / getrandom / syscall(SYS_getrandom) -----------------------------
// OpenSSL's seed source calls getentropy() (weak reference), then syscall(SYS_getrandom). Both are
// served from the CPU. Unlike glibc's, this getentropy accepts more than 256 bytes: OpenSSL asks
// for whatever its entropy pool needs (bounded by 2^14 bytes).
int getentropy(void* buffer, size_t length) {
  if (length > 0 && buffer == nullptr) return fail(EFAULT);
  return cpu_random_fill(buffer, length) ? 0 : fail(EIO);
}

ssize_t getrandom(void* buffer, size_t length, unsigned int flags) {
  if ((flags & ~static_cast<unsigned>(GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE)) != 0)
    return fail(EINVAL);
  if (length > 0 && buffer == nullptr) return fail(EFAULT);
  if (length > static_cast<size_t>(SSIZE_MAX)) length = SSIZE_MAX;
  return cpu_random_fill(buffer, length) ? static_cast<ssize_t>(length) : fail(EIO);
}

// ---- Raw system calls --------------------------------------------------------------------------
// An enclave makes no system calls. getrandom is served from the CPU (above). futex, should any
// code in the image reach it (libstdc++'s atomic waits), is emulated without the kernel: WAIT
// yields once and reports a spurious wake-up (callers re-check their condition, as futex users
// must), WAKE wakes nobody because nobody sleeps in the kernel. Everything else: ENOSYS.
long syscall(long number, ...) noexcept {
  va_list ap;
  va_start(ap, number);
  long ret = -1;
  if (number == SYS_getrandom) {
    void* buf = va_arg(ap, void*);
    size_t len = va_arg(ap, size_t);
    unsigned flags = va_arg(ap, unsigned);
    ret = getrandom(buf, len, flags);
  } else if (number == SYS_futex) {
    auto* uaddr = va_arg(ap, int*);
    int op = va_arg(ap, int) & ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
    int val = va_arg(ap, int);
    if (op == FUTEX_WAIT || op == FUTEX_WAIT_BITSET) {
      if (__atomic_load_n(uaddr, __ATOMIC_SEQ_CST) != val) {
        ret = fail(EAGAIN);
      } else {
        sched_yield();
        ret = 0;
      }
    } else if (op == FUTEX_WAKE || op == FUTEX_WAKE_BITSET) {
      ret = 0;
    } else {
      ret = fail(ENOSYS);
    }
  } else {
    ret = fail(ENOSYS);
  }
  va_end(ap);
  return ret;
}

// ---- Time ---------------------------------------------------------------------------------------
// An enclave has no trusted clock. OpenSSL reads the time for DRBG nonces and its reseed-interval
// check (and for certificate validity, which the enclave does not use). Every clock here is the
// host's CLOCK_MONOTONIC through the runtime's UNTRUSTED time OCALL (untrusted_time_ns): it is
// NOT wall-clock time (time() is seconds since the host booted) and the host may lie. A lying
// host can only delay time-based reseeds; the DRBG also reseeds by output count and takes its
// entropy from the CPU. Unknown clock ids fail with EINVAL.
int clock_gettime(clockid_t clk, struct timespec* ts) noexcept {
  switch (clk) {
    case CLOCK_REALTIME:
    case CLOCK_MONOTONIC:
    case CLOCK_MONOTONIC_RAW:
    case CLOCK_REALTIME_COARSE:
    case CLOCK_MONOTONIC_COARSE:
    case CLOCK_BOOTTIME:
      break;
    default:
      return fail(EINVAL);
  }
  uint64_t ns = constmig::trusted::untrusted_time_ns();
  ts->tv_sec = static_cast<time_t>(ns / 1000000000u);
  ts->tv_nsec = static_cast<long>(ns % 1000000000u);
  return 0;
}

int gettimeofday(struct timeval* tv, void* /*tz*/) noexcept {
  uint64_t ns = constmig::trusted::untrusted_time_ns();
  tv->tv_sec = static_cast<time_t>(ns / 1000000000u);
  tv->tv_usec = static_cast<suseconds_t>((ns % 1000000000u) / 1000u);
  return 0;
}

time_t time(time_t* out) noexcept {
  auto t = static_cast<time_t>(constmig::trusted::untrusted_time_ns() / 1000000000u);
  if (out != nullptr) *out = t;
  return t;
}

// gmtime_r is pure arithmetic here (glibc's may read the host's time-zone files on first use).
struct tm* gmtime_r(const time_t* t, struct tm* out) noexcept {
  if (t == nullptr || out == nullptr) return nullptr;
  int64_t s = *t;
  int64_t days = s / 86400;
  int64_t rem = s % 86400;
  if (rem < 0) {
    rem += 86400;
    --days;
  }
  int64_t y = 0;
  unsigned m = 0, d = 0;
  civil_from_days(days, &y, &m, &d);
  if (y - 1900 > INT32_MAX || y - 1900 < INT32_MIN) {
    errno = EOVERFLOW;
    return nullptr;
  }
  static const int kCumDays[12] = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  std::memset(out, 0, sizeof *out);
  out->tm_sec = static_cast<int>(rem % 60);
  out->tm_min = static_cast<int>((rem / 60) % 60);
  out->tm_hour = static_cast<int>(rem / 3600);
  out->tm_mday = static_cast<int>(d);
  out->tm_mon = static_cast<int>(m) - 1;
  out->tm_year = static_cast<int>(y - 1900);
  out->tm_yday = kCumDays[m - 1] + static_cast<int>(d) - 1 + (leap && m > 2 ? 1 : 0);
  out->tm_wday = static_cast<int>(((days % 7) + 11) % 7);  // 1970-01-01 was a Thursday (4)
  out->tm_isdst = 0;
  out->tm_gmtoff = 0;
  out->tm_zone = "GMT";
  return out;
}

// Sleeping would block in the host; only BIO_wait (sockets) sleeps. Nothing is slept.
unsigned int sleep(unsigned int seconds) {
  return seconds;
}
int usleep(useconds_t /*usec*/) {
  return fail(ENOSYS);
}

// ---- Host state ---------------------------------------------------------------------------------
// The environment, process identity and system configuration belong to the untrusted host and
// do not migrate. getenv → NULL: OpenSSL falls back to its defaults (no OPENSSL_CONF,
// OPENSSL_ia32cap, OPENSSL_MODULES). getpid is a constant: OpenSSL uses it as DRBG nonce material
// and for fork detection; after migration call crypto::reseed_rng() instead.
char* getenv(const char* /*name*/) noexcept {
  return nullptr;
}
char* secure_getenv(const char* /*name*/) noexcept {
  return nullptr;
}
pid_t getpid() noexcept {
  return 1;
}
long sysconf(int name) noexcept {
  if (name == _SC_PAGESIZE) return 4096;  // the enclave ABI's page size
  errno = EINVAL;
  return -1;
}
int uname(struct utsname* /*buf*/) noexcept {
  return fail(ENOSYS);
}

// strtok keeps its position in a static in the host libc; this one keeps it per thread in the
// image and lets the (pure, allowed) strtok_r do the work.
char* strtok(char* s, const char* delim) noexcept {
  static thread_local char* save = nullptr;
  return strtok_r(s, delim, &save);
}

// XSI strerror_r: the host's message tables are locale state; a number is enough in enclave logs.
int __xpg_strerror_r(int errnum, char* buf, size_t buflen) noexcept {
  if (buf == nullptr || buflen == 0) return ERANGE;
  int n = std::snprintf(buf, buflen, "errno %d", errnum);
  return n >= 0 && static_cast<size_t>(n) < buflen ? 0 : ERANGE;
}

// ---- Sorting ------------------------------------------------------------------------------------
// OpenSSL sorts its stacks with qsort. glibc's qsort takes a temporary buffer from the HOST
// allocator (and asks sysconf for the machine's memory) once the array exceeds 1 KiB, so it is
// defined here as an in-place heapsort: no allocation, O(n log n), not stable (qsort never is
// required to be).
void qsort(void* base, size_t n, size_t size, int (*cmp)(const void*, const void*)) {
  if (n < 2 || size == 0) return;
  auto* b = static_cast<unsigned char*>(base);
  auto at = [&](size_t i) { return b + i * size; };
  auto swap = [&](size_t i, size_t j) {
    unsigned char* x = at(i);
    unsigned char* y = at(j);
    for (size_t k = 0; k < size; ++k) {
      unsigned char t = x[k];
      x[k] = y[k];
      y[k] = t;
    }
  };
  auto sift_down = [&](size_t root, size_t end) {
    for (;;) {
      size_t child = 2 * root + 1;
      if (child >= end) return;
      if (child + 1 < end && cmp(at(child), at(child + 1)) < 0) ++child;
      if (cmp(at(root), at(child)) >= 0) return;
      swap(root, child);
      root = child;
    }
  };
  for (size_t i = n / 2; i-- > 0;) sift_down(i, n);
  for (size_t end = n - 1; end > 0; --end) {
    swap(0, end);
    sift_down(0, end);
  }
}

// ---- Allocation ---------------------------------------------------------------------------------
// strdup/strndup allocate: here they allocate from the enclave heap (malloc binds to the
// ConstMigLib allocator inside the image).
char* strdup(const char* s) noexcept {
  size_t n = std::strlen(s) + 1;
  auto* p = static_cast<char*>(std::malloc(n));
  if (p != nullptr) std::memcpy(p, s, n);
  return p;
}
char* strndup(const char* s, size_t max) noexcept {
  size_t n = strnlen(s, max);
  auto* p = static_cast<char*>(std::malloc(n + 1));
  if (p == nullptr) return nullptr;
  std::memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

// ---- Thread-specific data (see the comment at the top of the file) ------------------------------
int pthread_key_create(pthread_key_t* key, void (*destructor)(void*)) noexcept {
  pthread_mutex_lock(&g_key_mu);
  int rc = EAGAIN;
  for (unsigned i = 0; i < kMaxKeys; ++i) {
    if (g_keys[i].gen.load(std::memory_order_relaxed) == 0) {
      g_keys[i].dtor = destructor;
      g_keys[i].gen.store(next_key_generation(), std::memory_order_release);
      *key = i;
      rc = 0;
      break;
    }
  }
  pthread_mutex_unlock(&g_key_mu);
  return rc;
}

int pthread_key_delete(pthread_key_t key) noexcept {
  if (key >= kMaxKeys) return EINVAL;
  pthread_mutex_lock(&g_key_mu);
  int rc = EINVAL;
  if (g_keys[key].gen.load(std::memory_order_relaxed) != 0) {
    g_keys[key].gen.store(0, std::memory_order_release);
    g_keys[key].dtor = nullptr;
    rc = 0;
  }
  pthread_mutex_unlock(&g_key_mu);
  return rc;
}

void* pthread_getspecific(pthread_key_t key) noexcept {
  if (key >= kMaxKeys) return nullptr;
  uint64_t gen = g_keys[key].gen.load(std::memory_order_acquire);
  const TsdValue& v = t_tsd[key];
  return gen != 0 && v.gen == gen ? v.value : nullptr;
}

int pthread_setspecific(pthread_key_t key, const void* value) noexcept {
  if (key >= kMaxKeys) return EINVAL;
  uint64_t gen = g_keys[key].gen.load(std::memory_order_acquire);
  if (gen == 0) return EINVAL;
  t_tsd[key] = TsdValue{gen, const_cast<void*>(value)};
  return 0;
}

// ---- Files and terminals ------------------------------------------------------------------------
// Reached only by BIO files, PEM/config loading, the password UI and /dev/random seeding, none
// of which the enclave uses (OpenSSL is initialised without a config file; entropy comes from
// getentropy above). Opening fails, so no FILE* or descriptor ever exists; operations on one fail.
// `stdin` is defined (NULL) so the UI's reference to the host's stdin binds here.
FILE* stdin = nullptr;

int open(const char* /*path*/, int /*flags*/, ...) {
  return fail(ENOSYS);
}
ssize_t read(int /*fd*/, void* /*buf*/, size_t /*n*/) {
  return fail(EBADF);
}
ssize_t write(int /*fd*/, const void* /*buf*/, size_t /*n*/) {
  return fail(EBADF);
}
int close(int /*fd*/) {
  return fail(EBADF);
}
int fcntl(int /*fd*/, int /*cmd*/, ...) {
  return fail(EBADF);
}
int ioctl(int /*fd*/, unsigned long /*request*/, ...) noexcept {
  return fail(EBADF);
}
int stat(const char* /*path*/, struct stat* /*st*/) noexcept {
  return fail(ENOSYS);
}
int fstat(int /*fd*/, struct stat* /*st*/) noexcept {
  return fail(EBADF);
}
DIR* opendir(const char* /*path*/) {
  errno = ENOSYS;
  return nullptr;
}
struct dirent* readdir(DIR* /*dir*/) {
  errno = EBADF;
  return nullptr;
}
int closedir(DIR* /*dir*/) {
  return fail(EBADF);
}

FILE* fopen(const char* /*path*/, const char* /*mode*/) {
  errno = ENOSYS;
  return nullptr;
}
FILE* fopen64(const char* /*path*/, const char* /*mode*/) {
  errno = ENOSYS;
  return nullptr;
}
int fclose(FILE* /*f*/) {  // never closes the host's stderr
  errno = EBADF;
  return EOF;
}
int fflush(FILE* f) {
  if (f == stderr) return 0;  // unbuffered
  errno = EBADF;
  return EOF;
}
char* fgets(char* /*s*/, int /*n*/, FILE* /*f*/) {
  errno = EBADF;
  return nullptr;
}
size_t fread(void* /*p*/, size_t /*size*/, size_t /*n*/, FILE* /*f*/) {
  errno = EBADF;
  return 0;
}
int fseek(FILE* /*f*/, long /*off*/, int /*whence*/) {
  return fail(ESPIPE);
}
long ftell(FILE* /*f*/) {
  return fail(ESPIPE);
}
int fileno(FILE* /*f*/) noexcept {
  return fail(EBADF);
}
int feof(FILE* /*f*/) noexcept {
  return 0;
}
int ferror(FILE* /*f*/) noexcept {
  return 0;
}
int tcgetattr(int /*fd*/, struct termios* /*t*/) noexcept {
  return fail(ENOTTY);
}
int tcsetattr(int /*fd*/, int /*act*/, const struct termios* /*t*/) noexcept {
  return fail(ENOTTY);
}

int __vfprintf_chk(FILE* f, int /*flag*/, const char* fmt, va_list ap) {
  if (f != stderr) return fail(EBADF);
  log_to_host(fmt, ap);
  return 0;
}
int __fprintf_chk(FILE* f, int flag, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int r = __vfprintf_chk(f, flag, fmt, ap);
  va_end(ap);
  return r;
}
void perror(const char* s) {
  int err = errno;
  constmig::trusted::log(std::string("openssl: ") + (s != nullptr ? s : "") + ": errno " +
                         std::to_string(err));
}

// ---- Network ------------------------------------------------------------------------------------
// BIO sockets, connect/accept BIOs and the HTTP client are never used inside the enclave: the
// host owns the network (the migration channel is host code carrying sealed data).
int socket(int /*domain*/, int /*type*/, int /*protocol*/) noexcept {
  return fail(ENOSYS);
}
int bind(int /*fd*/, const struct sockaddr* /*a*/, socklen_t /*len*/) noexcept {
  return fail(EBADF);
}
int connect(int /*fd*/, const struct sockaddr* /*a*/, socklen_t /*len*/) {
  return fail(EBADF);
}
int listen(int /*fd*/, int /*backlog*/) noexcept {
  return fail(EBADF);
}
int accept(int /*fd*/, struct sockaddr* /*a*/, socklen_t* /*len*/) {
  return fail(EBADF);
}
int shutdown(int /*fd*/, int /*how*/) noexcept {
  return fail(EBADF);
}
int getsockname(int /*fd*/, struct sockaddr* /*a*/, socklen_t* /*len*/) noexcept {
  return fail(EBADF);
}
int getsockopt(int /*fd*/, int /*lvl*/, int /*opt*/, void* /*v*/, socklen_t* /*len*/) noexcept {
  return fail(EBADF);
}
int setsockopt(int /*fd*/, int /*lvl*/, int /*opt*/, const void* /*v*/,
               socklen_t /*len*/) noexcept {
  return fail(EBADF);
}
ssize_t sendmsg(int /*fd*/, const struct msghdr* /*m*/, int /*flags*/) {
  return fail(EBADF);
}
ssize_t recvmsg(int /*fd*/, struct msghdr* /*m*/, int /*flags*/) {
  return fail(EBADF);
}
int select(int /*n*/, fd_set* /*r*/, fd_set* /*w*/, fd_set* /*e*/, struct timeval* /*t*/) {
  return fail(ENOSYS);
}
// _FORTIFY_SOURCE's FD_SET/FD_ISSET index check: pure arithmetic, done here.
long __fdelt_chk(long d) {
  if (d < 0 || d >= FD_SETSIZE) std::abort();
  return d / __NFDBITS;
}
int getaddrinfo(const char* /*node*/, const char* /*service*/, const struct addrinfo* /*hints*/,
                struct addrinfo** res) {
  if (res != nullptr) *res = nullptr;
  errno = ENOSYS;
  return EAI_SYSTEM;
}
void freeaddrinfo(struct addrinfo* /*res*/) noexcept {}  // getaddrinfo never allocates one
const char* gai_strerror(int /*code*/) noexcept {
  return "name resolution is not available inside an enclave";
}
int getnameinfo(const struct sockaddr* /*sa*/, socklen_t /*salen*/, char* /*host*/,
                socklen_t /*hostlen*/, char* /*serv*/, socklen_t /*servlen*/, int /*flags*/) {
  errno = ENOSYS;
  return EAI_SYSTEM;
}
struct hostent* gethostbyname(const char* /*name*/) {
  return nullptr;
}

// ---- Dynamic loading ----------------------------------------------------------------------------
// Engines and provider modules would load code from the host's disk into the enclave, which
// would change what runs without changing the measurement. Every load fails.
void* dlopen(const char* /*file*/, int /*mode*/) noexcept {
  return nullptr;
}
void* dlsym(void* /*handle*/, const char* /*name*/) noexcept {
  return nullptr;
}
int dlclose(void* /*handle*/) noexcept {
  return -1;
}
char* dlerror() noexcept {
  static char msg[] = "dynamic loading is disabled inside an enclave";
  return msg;
}
int dladdr(const void* /*addr*/, Dl_info* /*info*/) noexcept {
  return 0;
}

// ---- Processes, signals and user contexts -------------------------------------------------------
// Signal handlers are installed only by the password UI; the context functions only by
// ASYNC jobs (async engines), whose first step, getcontext, fails, so no fibre is ever created
// and _setjmp/_longjmp/setcontext/makecontext are unreachable (they abort if reached).
sighandler_t signal(int /*sig*/, sighandler_t /*handler*/) noexcept {
  errno = ENOSYS;
  return SIG_ERR;
}
int sigaction(int /*sig*/, const struct sigaction* /*act*/, struct sigaction* /*old*/) noexcept {
  return fail(ENOSYS);
}
int getcontext(ucontext_t* /*ucp*/) noexcept {
  return fail(ENOSYS);
}
int setcontext(const ucontext_t* /*ucp*/) noexcept {
  std::abort();
}
void makecontext(ucontext_t* /*ucp*/, void (* /*func*/)(), int /*argc*/, ...) noexcept {
  std::abort();
}
int _setjmp(struct __jmp_buf_tag* /*env*/) noexcept {
  return 0;
}
void _longjmp(struct __jmp_buf_tag* /*env*/, int /*val*/) noexcept {
  std::abort();
}

// ---- Memory mapping and shared memory
// ------------------------------------------------------------ The enclave range belongs to the
// platform; memory comes from the ConstMigLib heap. Only OpenSSL's secure heap
// (CRYPTO_secure_malloc_init, never called) and the /dev/random seeded-flag check (never reached:
// getentropy succeeds) map memory; both fail cleanly.
void* mmap(void* /*addr*/, size_t /*len*/, int /*prot*/, int /*flags*/, int /*fd*/,
           off_t /*off*/) noexcept {
  errno = ENOSYS;
  return MAP_FAILED;
}
int munmap(void* /*addr*/, size_t /*len*/) noexcept {
  return fail(ENOSYS);
}
int mprotect(void* /*addr*/, size_t /*len*/, int /*prot*/) noexcept {
  return fail(ENOSYS);
}
int madvise(void* /*addr*/, size_t /*len*/, int /*advice*/) noexcept {
  return fail(ENOSYS);
}
int mlock(const void* /*addr*/, size_t /*len*/) noexcept {
  return fail(ENOSYS);
}
int shmget(key_t /*key*/, size_t /*size*/, int /*flags*/) noexcept {
  return fail(ENOSYS);
}
void* shmat(int /*id*/, const void* /*addr*/, int /*flags*/) noexcept {
  errno = ENOSYS;
  return reinterpret_cast<void*>(-1);
}
int shmdt(const void* /*addr*/) noexcept {
  return fail(ENOSYS);
}

}  // extern "C"
