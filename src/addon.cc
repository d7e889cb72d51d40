// Entry point of the danga_socket addon (loaded only by lib/native.ts).
#include <napi.h>

#include "alarm_watcher.h"
#include "epoll_backend.h"
#include "fd_poll.h"
#include "fd_state.h"
#include "loop_fds.h"
#include "reuse_port.h"
#include "socket_alarm.h"
#include "tcp_cork.h"

namespace danga {
namespace {

// One tag per loaded instance of the addon (one per environment/context), so
// the cleanup hook cancels exactly the alarms that environment created.
struct EnvTag {
  int unused = 0;
};

void OnEnvCleanup(void* arg) {
  EnvTag* tag = static_cast<EnvTag*>(arg);
  alarm::DetachEnv(tag);
  delete tag;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* tag = new EnvTag();
  alarm::AttachEnv();
  if (napi_add_env_cleanup_hook(env, OnEnvCleanup, tag) != napi_ok) {
    alarm::DetachEnv(tag);
    delete tag;
    throw Napi::Error::New(env, "napi_add_env_cleanup_hook failed");
  }
  InitTcpCork(env, exports);
  InitLoopFds(env, exports);
  InitReusePort(env, exports);
  InitEpollBackend(env, exports);
  InitFdState(env, exports);
  exports.Set("Poll", FdPoll::Define(env));
  exports.Set("Alarm", SocketAlarmWrap::Define(env, tag));
  exports.Set("hasRdhup", Napi::Boolean::New(env, alarm::HaveRdhup()));
  return exports;
}

}  // namespace
}  // namespace danga

static Napi::Object InitDangaSocket(Napi::Env env, Napi::Object exports) {
  return danga::Init(env, exports);
}

NODE_API_MODULE(danga_socket, InitDangaSocket)
