// The native backend: descriptors owned by the addon, polled by one private
// level-triggered epoll set (Linux). See epoll_backend.cc.
#ifndef DANGA_SOCKET_EPOLL_BACKEND_H_
#define DANGA_SOCKET_EPOLL_BACKEND_H_

#include <napi.h>

namespace danga {

// Adds `epoll` (an object of functions, or undefined off Linux) to `exports`.
void InitEpollBackend(Napi::Env env, Napi::Object exports);

}  // namespace danga

#endif  // DANGA_SOCKET_EPOLL_BACKEND_H_
