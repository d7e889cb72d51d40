// What the kernel reports for a descriptor right now (a poll(2) with no wait).
#ifndef DANGA_SOCKET_FD_STATE_H_
#define DANGA_SOCKET_FD_STATE_H_

#include <napi.h>

namespace danga {

// Adds pollNow(fd) to `exports`.
void InitFdState(Napi::Env env, Napi::Object exports);

}  // namespace danga

#endif  // DANGA_SOCKET_FD_STATE_H_
