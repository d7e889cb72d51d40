// bindReusePort(ip, port) -> fd: socket(2) + SO_REUSEADDR + SO_REUSEPORT + bind(2), not yet
// listening. Node 20's net.Server has no reusePort option and sets socket options only after
// bind, too late for SO_REUSEPORT; the caller hands the descriptor to `server.listen({ fd })`,
// which owns (and closes) it from then on. `ip` must be a numeric IPv4 or IPv6 address.
// JS thread only; the syscalls do not block. Throws an errno-style Error on failure.
#include "reuse_port.h"

#include <cerrno>
#include <cstring>
#include <string>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "native_util.h"

#if defined(SO_REUSEPORT)
#define DANGA_HAVE_REUSEPORT 1
#else
#define DANGA_HAVE_REUSEPORT 0
#endif

namespace danga {
namespace {

Napi::Value BindReusePort(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw Napi::TypeError::New(env, "ip must be a string");
  std::string ip = info[0].As<Napi::String>().Utf8Value();
  int port = Int32Arg(info, 1, "port");
  if (port < 0 || port > 65535) throw Napi::RangeError::New(env, "port must be 0..65535");
#if DANGA_HAVE_REUSEPORT
  sockaddr_storage ss;
  std::memset(&ss, 0, sizeof(ss));
  socklen_t len;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, ip.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    len = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, ip.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    len = sizeof(sockaddr_in6);
  } else {
    throw Napi::TypeError::New(env, "ip must be a numeric IPv4 or IPv6 address");
  }
  int fd = socket(ss.ss_family, SOCK_STREAM, 0);
  if (fd < 0) throw ErrnoError(env, errno, "socket");
  // Close-on-exec as libuv's own sockets: a worker's children must not inherit the port.
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  int one = 1;
  const char* failed = nullptr;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) {
    failed = "setsockopt";
  } else if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
    failed = "setsockopt";
  } else if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    failed = "bind";
  }
  if (failed != nullptr) {
    int err = errno;
    close(fd);
    throw ErrnoError(env, err, failed);
  }
  return Napi::Number::New(env, fd);
#else
  (void)port;
  throw ErrnoError(env, ENOPROTOOPT, "setsockopt");
#endif
}

}  // namespace

void InitReusePort(Napi::Env env, Napi::Object exports) {
  exports.Set("bindReusePort", Napi::Function::New(env, BindReusePort, "bindReusePort"));
  exports.Set("hasReusePort", Napi::Boolean::New(env, DANGA_HAVE_REUSEPORT != 0));
}

}  // namespace danga
