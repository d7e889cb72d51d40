// A listening socket bound with SO_REUSEPORT, for Node versions whose net.Server cannot set it.
#ifndef DANGA_SOCKET_REUSE_PORT_H_
#define DANGA_SOCKET_REUSE_PORT_H_

#include <napi.h>

namespace danga {

// Adds bindReusePort and hasReusePort to `exports`.
void InitReusePort(Napi::Env env, Napi::Object exports);

}  // namespace danga

#endif  // DANGA_SOCKET_REUSE_PORT_H_
