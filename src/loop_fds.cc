#include "loop_fds.h"

#include <uv.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <string>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "alarm_watcher.h"

namespace danga {
namespace {

void CollectFd(uv_handle_t* handle, void* arg) {
  uv_os_fd_t fd;
  if (uv_fileno(handle, &fd) == 0 && fd >= 0) static_cast<std::vector<int>*>(arg)->push_back(fd);
}

Napi::Value NodeOwnedFds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<int> fds = OwnedFds(env);
  Napi::Array result = Napi::Array::New(env, fds.size());
  for (uint32_t i = 0; i < result.Length(); ++i) result.Set(i, Napi::Number::New(env, fds[i]));
  return result;
}

// parseSockaddr(buf) -> ['inet' | 'inet6', address, port] | ['unix', path, 0] | undefined
Napi::Value ParseSockaddr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray()) throw Napi::TypeError::New(env, "expected a Uint8Array");
  Napi::Uint8Array bytes = info[0].As<Napi::Uint8Array>();
  size_t len = bytes.ByteLength();
  sockaddr_storage ss;
  if (len < offsetof(sockaddr, sa_data) || len > sizeof(ss)) return env.Undefined();
  std::memset(&ss, 0, sizeof(ss));
  std::memcpy(&ss, bytes.Data(), len);
  Napi::Array result = Napi::Array::New(env, 3);
  char text[INET6_ADDRSTRLEN];
  switch (ss.ss_family) {
    case AF_INET: {
      if (len != sizeof(sockaddr_in)) return env.Undefined();
      auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
      if (inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text)) == nullptr) return env.Undefined();
      result.Set(0u, "inet");
      result.Set(1u, text);
      result.Set(2u, Napi::Number::New(env, ntohs(sin->sin_port)));
      return result;
    }
    case AF_INET6: {
      if (len != sizeof(sockaddr_in6)) return env.Undefined();
      auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
      if (inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text)) == nullptr) {
        return env.Undefined();
      }
      result.Set(0u, "inet6");
      result.Set(1u, text);
      result.Set(2u, Napi::Number::New(env, ntohs(sin6->sin6_port)));
      return result;
    }
    case AF_UNIX: {
      auto* unix_addr = reinterpret_cast<sockaddr_un*>(&ss);
      size_t max = len - offsetof(sockaddr_un, sun_path);
      if (max == 0) return env.Undefined();
      std::string path(unix_addr->sun_path, strnlen(unix_addr->sun_path, max));
      if (path.empty()) return env.Undefined();  // abstract or unnamed sockets
      result.Set(0u, "unix");
      result.Set(1u, path);
      result.Set(2u, Napi::Number::New(env, 0));
      return result;
    }
    default:
      return env.Undefined();
  }
}

}  // namespace

std::vector<int> OwnedFds(napi_env env) {
  std::vector<int> fds;
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) == napi_ok && loop != nullptr) {
    uv_walk(loop, CollectFd, &fds);
    int backend = uv_backend_fd(loop);
    if (backend >= 0) fds.push_back(backend);
  }
  for (int fd : alarm::WatcherFds()) fds.push_back(fd);
  std::sort(fds.begin(), fds.end());
  fds.erase(std::unique(fds.begin(), fds.end()), fds.end());
  return fds;
}

void InitLoopFds(Napi::Env env, Napi::Object exports) {
  exports.Set("nodeOwnedFds", Napi::Function::New(env, NodeOwnedFds, "nodeOwnedFds"));
  exports.Set("parseSockaddr", Napi::Function::New(env, ParseSockaddr, "parseSockaddr"));
}

}  // namespace danga
