// JS class Alarm: the native half of lib/socket-alarm.ts.
#ifndef DANGA_SOCKET_SOCKET_ALARM_H_
#define DANGA_SOCKET_SOCKET_ALARM_H_

#include <napi.h>

#include <memory>

#include "alarm_watcher.h"

namespace danga {

// JS: new Alarm(fd, events, encodedActions). Arguments are validated again
// here, but the friendly checks and error codes live in lib/socket-alarm.ts.
// All methods must be called from the JS thread that created the alarm; they
// take the watcher's mutex and may block while an action is running.
// Dropping the JS object does not cancel an armed alarm: the watcher keeps its
// state until it finishes, is cancelled, or its environment is cleaned up.
class SocketAlarmWrap : public Napi::ObjectWrap<SocketAlarmWrap> {
 public:
  // `env_tag` identifies the environment for DetachEnv.
  static Napi::Function Define(Napi::Env env, const void* env_tag);

  explicit SocketAlarmWrap(const Napi::CallbackInfo& info);

 private:
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Cancel(const Napi::CallbackInfo& info);
  Napi::Value CurAction(const Napi::CallbackInfo& info);

  std::shared_ptr<alarm::State> state_;
  bool closes_by_peer_ = false;
};

}  // namespace danga

#endif  // DANGA_SOCKET_SOCKET_ALARM_H_
