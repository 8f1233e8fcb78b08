// Result<T>: the one status type used across module boundaries, on both sides of the trust
// boundary. An Error carries a code and a message written for the person who has to act on it
// ("what happened, and what to do"). Invariants are assertions, not Results.
#pragma once

#include <cassert>
#include <cstdint>
#include <string>
#include <utility>
#include <variant>

namespace constmig {

enum class Errc : int32_t {
  kOk = 0,
  kInvalidArgument = 1,    // caller passed something wrong (bad flag, bad size)
  kNotFound = 2,           // a file, key or peer that should exist does not
  kPermission = 3,         // the OS refused (limits, capabilities)
  kResourceExhausted = 4,  // out of memory, slots, address space
  kFormat = 5,             // malformed input: bad magic, version, length, encoding
  kSecurity = 6,           // verification failed: signature, measurement, tag, replay
  kState = 7,              // operation not allowed in the current state
  kIo = 8,                 // a system call or network operation failed
  kInternal = 9,           // a bug: please report
  kTimeout = 10,
};

const char* errc_name(Errc c);

struct Error {
  Errc code = Errc::kInternal;
  std::string message;
};

inline Error make_error(Errc code, std::string msg) {
  return Error{code, std::move(msg)};
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Error err) : v_(std::move(err)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & {
    assert(ok());
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(ok());
    return std::get<0>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }

  const Error& error() const {
    assert(!ok());
    return std::get<1>(v_);
  }
  Error&& take_error() {
    assert(!ok());
    return std::get<1>(std::move(v_));
  }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error err) : err_(std::move(err)), ok_(false) {}  // NOLINT(google-explicit-constructor)
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const {
    assert(!ok_);
    return err_;
  }
  Error&& take_error() {
    assert(!ok_);
    return std::move(err_);
  }

 private:
  Error err_;
  bool ok_ = true;
};

using Status = Result<void>;

inline Status ok_status() {
  return Status();
}

inline const char* errc_name(Errc c) {
  switch (c) {
    case Errc::kOk:
      return "ok";
    case Errc::kInvalidArgument:
      return "invalid-argument";
    case Errc::kNotFound:
      return "not-found";
    case Errc::kPermission:
      return "permission";
    case Errc::kResourceExhausted:
      return "resource-exhausted";
    case Errc::kFormat:
      return "format";
    case Errc::kSecurity:
      return "security";
    case Errc::kState:
      return "state";
    case Errc::kIo:
      return "io";
    case Errc::kInternal:
      return "internal";
    case Errc::kTimeout:
      return "timeout";
  }
  return "unknown";
}

}  // namespace constmig

// Propagate an error from an expression returning Result/Status.
#define CONSTMIG_CONCAT_INNER(a, b) a##b
#define CONSTMIG_CONCAT(a, b) CONSTMIG_CONCAT_INNER(a, b)
#define CM_TRY(expr)                                               \
  do {                                                             \
    auto&& _cm_r = (expr);                                         \
    if (!_cm_r.ok()) return ::constmig::Error(_cm_r.take_error()); \
  } while (0)
#define CM_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr)             \
  auto tmp = (expr);                                         \
  if (!tmp.ok()) return ::constmig::Error(tmp.take_error()); \
  lhs = std::move(tmp).value()
#define CM_ASSIGN_OR_RETURN(lhs, expr) \
  CM_ASSIGN_OR_RETURN_IMPL(CONSTMIG_CONCAT(_cm_tmp_, __LINE__), lhs, expr)
