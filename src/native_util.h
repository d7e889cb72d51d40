// Small helpers shared by the addon's entry points: errno-style errors and argument checks.
#ifndef DANGA_SOCKET_NATIVE_UTIL_H_
#define DANGA_SOCKET_NATIVE_UTIL_H_

#include <napi.h>

namespace danga {

// An Error shaped like Node's system errors: message "<syscall>: <strerror>",
// `code` = errno name ('EBADF'), `errno` = negative errno (libuv/Node convention),
// `syscall`. `err` is a positive errno value.
Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall);

// The same for a libuv status code (negative).
Napi::Error UvError(Napi::Env env, int uv_status, const char* syscall);

// Argument `i` as a non-negative int32 descriptor; throws TypeError/RangeError otherwise.
int FdArg(const Napi::CallbackInfo& info, size_t i);

// Argument `i` as an int32; throws TypeError otherwise.
int Int32Arg(const Napi::CallbackInfo& info, size_t i, const char* name);

// Writes one diagnostic line to stderr with write(2); usable from any thread
// (but not between fork and exec).
void LogLine(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace danga

#endif  // DANGA_SOCKET_NATIVE_UTIL_H_
