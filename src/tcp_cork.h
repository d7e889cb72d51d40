// TCP_CORK get/set on a raw descriptor.
#ifndef DANGA_SOCKET_TCP_CORK_H_
#define DANGA_SOCKET_TCP_CORK_H_

#include <napi.h>

namespace danga {

// Adds setCork, getCork and hasTcpCork to `exports`.
void InitTcpCork(Napi::Env env, Napi::Object exports);

}  // namespace danga

#endif  // DANGA_SOCKET_TCP_CORK_H_
