#include "socket_alarm.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include <arpa/inet.h>
#include <signal.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "loop_fds.h"
#include "native_util.h"

extern char** environ;

namespace danga {
namespace {

using alarm::Action;
using alarm::Op;

double NumberAt(Napi::Env env, const Napi::Array& list, uint32_t i) {
  Napi::Value value = list.Get(i);
  if (!value.IsNumber()) throw Napi::TypeError::New(env, "action element must be a number");
  double d = value.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) throw Napi::RangeError::New(env, "action element must be finite");
  return d;
}

int IntAt(Napi::Env env, const Napi::Array& list, uint32_t i, double min, double max) {
  double d = NumberAt(env, list, i);
  if (d != std::floor(d) || d < min || d > max) {
    throw Napi::RangeError::New(env, "action element out of range");
  }
  return static_cast<int>(d);
}

std::string StringAt(Napi::Env env, const Napi::Array& list, uint32_t i) {
  Napi::Value value = list.Get(i);
  if (!value.IsString()) throw Napi::TypeError::New(env, "action element must be a string");
  std::string text = value.As<Napi::String>().Utf8Value();
  if (text.find('\0') != std::string::npos) {
    throw Napi::TypeError::New(env, "action strings must not contain NUL");
  }
  return text;
}

int HowAt(Napi::Env env, const Napi::Array& list, uint32_t i) {
  switch (IntAt(env, list, i, 0, 2)) {
    case 0:
      return SHUT_RD;
    case 1:
      return SHUT_WR;
    default:
      return SHUT_RDWR;
  }
}

alarm::PeerAddr PeerAt(Napi::Env env, const Napi::Array& list, uint32_t i) {
  alarm::PeerAddr peer;
  std::string family = StringAt(env, list, i);
  std::string address = StringAt(env, list, i + 1);
  if (family == "unix") {
    if (address.empty() || address.size() >= sizeof(sockaddr_un::sun_path)) {
      throw Napi::RangeError::New(env, "bad unix socket path");
    }
    peer.family = AF_UNIX;
    peer.path = address;
    return peer;
  }
  peer.port = static_cast<uint16_t>(IntAt(env, list, i + 2, 1, 65535));
  if (family == "inet") {
    peer.family = AF_INET;
  } else if (family == "inet6") {
    peer.family = AF_INET6;
  } else {
    throw Napi::TypeError::New(env, "peer family must be inet, inet6 or unix");
  }
  if (inet_pton(peer.family, address.c_str(), peer.addr) != 1) {
    throw Napi::TypeError::New(env, "bad peer address");
  }
  return peer;
}

Action ParseAction(Napi::Env env, const Napi::Value& value) {
  if (!value.IsArray()) throw Napi::TypeError::New(env, "each action must be an array");
  Napi::Array list = value.As<Napi::Array>();
  const uint32_t length = list.Length();
  if (length == 0) throw Napi::TypeError::New(env, "empty action");
  Action action;
  action.op = static_cast<Op>(IntAt(env, list, 0, 1, 9));
  auto expect = [&](uint32_t n) {
    if (length != n) throw Napi::TypeError::New(env, "wrong number of action elements");
  };
  switch (action.op) {
    case Op::kKill:
      expect(3);
      action.signal = IntAt(env, list, 1, 1, NSIG - 1);
      action.pid = static_cast<pid_t>(IntAt(env, list, 2, -2147483647.0, 2147483647.0));
      break;
    case Op::kKillChildren:
      expect(2);
      action.signal = IntAt(env, list, 1, 1, NSIG - 1);
      break;
    case Op::kClose:
      expect(2);
      action.fd = IntAt(env, list, 1, 0, 2147483647.0);
      break;
    case Op::kShutdown:
      expect(3);
      action.how = HowAt(env, list, 1);
      action.fd = IntAt(env, list, 2, 0, 2147483647.0);
      break;
    case Op::kClosePeer:
      expect(4);
      action.peer = PeerAt(env, list, 1);
      break;
    case Op::kShutdownPeer:
      expect(5);
      action.how = HowAt(env, list, 1);
      action.peer = PeerAt(env, list, 2);
      break;
    case Op::kRun:
    case Op::kExec:
      if (length < 2) throw Napi::TypeError::New(env, "run/exec need a command");
      for (uint32_t i = 1; i < length; ++i) action.argv.push_back(StringAt(env, list, i));
      if (action.argv.front().empty()) throw Napi::TypeError::New(env, "empty command");
      break;
    case Op::kSleep:
      expect(2);
      action.seconds = NumberAt(env, list, 1);
      if (action.seconds < 0 || action.seconds > 1e9) {
        throw Napi::RangeError::New(env, "sleep seconds out of range");
      }
      break;
  }
  return action;
}

}  // namespace

Napi::Function SocketAlarmWrap::Define(Napi::Env env, const void* env_tag) {
  return DefineClass(env, "Alarm",
                     {
                         InstanceMethod<&SocketAlarmWrap::Start>("start"),
                         InstanceMethod<&SocketAlarmWrap::Cancel>("cancel"),
                         InstanceMethod<&SocketAlarmWrap::CurAction>("curAction"),
                     },
                     const_cast<void*>(env_tag));
}

SocketAlarmWrap::SocketAlarmWrap(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<SocketAlarmWrap>(info) {
  Napi::Env env = info.Env();
  auto state = std::make_shared<alarm::State>();
  state->fd = FdArg(info, 0);
  state->events = Int32Arg(info, 1, "events");
  if (state->events <= 0 || (state->events & ~alarm::kEventAll) != 0) {
    throw Napi::RangeError::New(env, "bad event mask");
  }
  if (!info[2].IsArray()) throw Napi::TypeError::New(env, "actions must be an array");
  Napi::Array actions = info[2].As<Napi::Array>();
  bool needs_exec = false;
  for (uint32_t i = 0; i < actions.Length(); ++i) {
    state->actions.push_back(ParseAction(env, actions.Get(i)));
    Op op = state->actions.back().op;
    needs_exec = needs_exec || op == Op::kRun || op == Op::kExec;
    closes_by_peer_ = closes_by_peer_ || op == Op::kClosePeer;
  }

  struct stat st;
  if (fstat(state->fd, &st) != 0) throw ErrnoError(env, errno, "fstat");
  if (!S_ISSOCK(st.st_mode)) throw ErrnoError(env, ENOTSOCK, "fstat");
  state->dev = st.st_dev;
  state->ino = st.st_ino;
  state->env_tag = info.Data();

  if (needs_exec) {
    // Snapshot on this thread; the watcher must not read a changing environment.
    const char* path = std::getenv("PATH");
    state->path_env = path != nullptr ? path : "";
    for (char** var = environ; var != nullptr && *var != nullptr; ++var) {
      state->env_snapshot.emplace_back(*var);
    }
  }
  state_ = std::move(state);
}

Napi::Value SocketAlarmWrap::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<int> protected_fds;
  if (closes_by_peer_) protected_fds = OwnedFds(env);
  std::string error;
  bool changed = alarm::Start(state_, std::move(protected_fds), &error);
  if (!error.empty()) throw Napi::Error::New(env, "cannot start the SocketAlarm thread: " + error);
  return Napi::Boolean::New(env, changed);
}

Napi::Value SocketAlarmWrap::Cancel(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), alarm::Cancel(state_));
}

Napi::Value SocketAlarmWrap::CurAction(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), alarm::CurAction(state_));
}

}  // namespace danga
