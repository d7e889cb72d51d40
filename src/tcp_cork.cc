// setCork(fd, on) / getCork(fd): setsockopt/getsockopt(IPPROTO_TCP, TCP_CORK).
// Callable from any JS thread; the syscalls do not block. Off Linux both are
// no-ops (getCork reports false), matching Danga::Socket's non-Linux tcp_cork.
#include "tcp_cork.h"

#include <cerrno>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "native_util.h"

#if defined(__linux__) && defined(TCP_CORK)
#define DANGA_HAVE_TCP_CORK 1
#else
#define DANGA_HAVE_TCP_CORK 0
#endif

namespace danga {
namespace {

Napi::Value SetCork(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0);
  if (!info[1].IsBoolean()) throw Napi::TypeError::New(env, "on must be a boolean");
  bool on = info[1].As<Napi::Boolean>().Value();
#if DANGA_HAVE_TCP_CORK
  int value = on ? 1 : 0;
  if (setsockopt(fd, IPPROTO_TCP, TCP_CORK, &value, sizeof(value)) != 0) {
    throw ErrnoError(env, errno, "setsockopt");
  }
#else
  (void)fd;
  (void)on;
#endif
  return env.Undefined();
}

Napi::Value GetCork(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0);
#if DANGA_HAVE_TCP_CORK
  int value = 0;
  socklen_t len = sizeof(value);
  if (getsockopt(fd, IPPROTO_TCP, TCP_CORK, &value, &len) != 0) {
    throw ErrnoError(env, errno, "getsockopt");
  }
  return Napi::Boolean::New(env, value != 0);
#else
  (void)fd;
  return Napi::Boolean::New(env, false);
#endif
}

}  // namespace

void InitTcpCork(Napi::Env env, Napi::Object exports) {
  exports.Set("setCork", Napi::Function::New(env, SetCork, "setCork"));
  exports.Set("getCork", Napi::Function::New(env, GetCork, "getCork"));
  exports.Set("hasTcpCork", Napi::Boolean::New(env, DANGA_HAVE_TCP_CORK != 0));
}

}  // namespace danga
