#include "native_util.h"

#include <uv.h>

#include <cerrno>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <string>

#include <unistd.h>

namespace danga {

Napi::Error UvError(Napi::Env env, int uv_status, const char* syscall) {
  std::string message = std::string(syscall) + ": " + uv_strerror(uv_status);
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, uv_err_name(uv_status)));
  error.Set("errno", Napi::Number::New(env, uv_status));
  error.Set("syscall", Napi::String::New(env, syscall));
  return error;
}

Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall) {
  // On Unix libuv's status codes are the negated errno values.
  Napi::Error error = UvError(env, -err, syscall);
  // Linux has ENOTSUP == EOPNOTSUPP and libuv names it ENOTSUP; socket option
  // callers (Danga's tcp_cork) test for the socket name.
  if (err == EOPNOTSUPP) error.Set("code", Napi::String::New(env, "EOPNOTSUPP"));
  return error;
}

int FdArg(const Napi::CallbackInfo& info, size_t i) {
  Napi::Value value = info[i];
  if (!value.IsNumber()) {
    throw Napi::TypeError::New(info.Env(), "fd must be a number");
  }
  double d = value.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d != std::floor(d) || d < 0 || d > 2147483647.0) {
    throw Napi::RangeError::New(info.Env(), "fd must be a non-negative int32");
  }
  return static_cast<int>(d);
}

int Int32Arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value value = info[i];
  if (!value.IsNumber()) {
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a number");
  }
  double d = value.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d != std::floor(d) || d < -2147483648.0 || d > 2147483647.0) {
    throw Napi::RangeError::New(info.Env(), std::string(name) + " must be an int32");
  }
  return static_cast<int>(d);
}

void LogLine(const char* fmt, ...) {
  char buf[512];
  std::va_list ap;
  va_start(ap, fmt);
  int n = std::vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  size_t len = static_cast<size_t>(n) < sizeof(buf) - 1 ? static_cast<size_t>(n) : sizeof(buf) - 2;
  buf[len++] = '\n';
  ssize_t ignored = write(STDERR_FILENO, buf, len);
  (void)ignored;
}

}  // namespace danga
