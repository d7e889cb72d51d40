// Descriptors that Node (libuv) or this addon own, and sockaddr parsing.
#ifndef DANGA_SOCKET_LOOP_FDS_H_
#define DANGA_SOCKET_LOOP_FDS_H_

#include <napi.h>

#include <vector>

namespace danga {

// Every descriptor held by a handle of `env`'s libuv loop (sockets, pipes,
// TTYs, polls), the loop's backend (epoll) descriptor, and the alarm watcher's
// wake pipe. Must be called on `env`'s JS thread.
std::vector<int> OwnedFds(napi_env env);

// Adds nodeOwnedFds() and parseSockaddr(buf) to `exports`.
void InitLoopFds(Napi::Env env, Napi::Object exports);

}  // namespace danga

#endif  // DANGA_SOCKET_LOOP_FDS_H_
