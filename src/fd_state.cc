// pollNow(fd): one poll(2) with a zero timeout, for the node backend to learn what epoll would
// report on a descriptor libuv owns without touching libuv's own registration (Danga's HUP on
// a Unix socket whose peer is gone). Returns the mask in the library's bits (1 IN, 2 PRI,
// 4 OUT, 8 ERR, 16 HUP; 0 if nothing is ready) or -errno. Callable from any JS thread.
#include "fd_state.h"

#include <cerrno>

#include <poll.h>

#include "native_util.h"

namespace danga {
namespace {

Napi::Value PollNow(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0);
  struct pollfd p = {fd, POLLIN | POLLPRI | POLLOUT, 0};
  int n;
  do {
    n = poll(&p, 1, 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Napi::Number::New(env, -errno);
  if (p.revents & POLLNVAL) return Napi::Number::New(env, -EBADF);
  int mask = 0;
  if (p.revents & POLLIN) mask |= 1;
  if (p.revents & POLLPRI) mask |= 2;
  if (p.revents & POLLOUT) mask |= 4;
  if (p.revents & POLLERR) mask |= 8;
  if (p.revents & POLLHUP) mask |= 16;
  return Napi::Number::New(env, mask);
}

}  // namespace

void InitFdState(Napi::Env env, Napi::Object exports) {
  exports.Set("pollNow", Napi::Function::New(env, PollNow, "pollNow"));
}

}  // namespace danga
