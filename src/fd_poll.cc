#include "fd_poll.h"

#include <cerrno>

#include <sys/stat.h>

#include "native_util.h"

namespace danga {

Napi::Function FdPoll::Define(Napi::Env env) {
  return DefineClass(env, "Poll",
                     {
                         InstanceMethod<&FdPoll::Start>("start"),
                         InstanceMethod<&FdPoll::Stop>("stop"),
                         InstanceMethod<&FdPoll::Close>("close"),
                         InstanceMethod<&FdPoll::RefHandle>("ref"),
                         InstanceMethod<&FdPoll::UnrefHandle>("unref"),
                         InstanceMethod<&FdPoll::HasRef>("hasRef"),
                         InstanceAccessor<&FdPoll::GetFd>("fd"),
                         InstanceAccessor<&FdPoll::IsActive>("active"),
                     });
}

FdPoll::FdPoll(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FdPoll>(info) {
  Napi::Env env = info.Env();
  fd_ = FdArg(info, 0);
  if (!info[1].IsFunction()) throw Napi::TypeError::New(env, "callback must be a function");

  // Remember the descriptor's identity: start() refuses a closed or reused
  // number, because libuv aborts when epoll_ctl fails on a stale descriptor.
  struct stat st;
  if (fstat(fd_, &st) != 0) throw ErrnoError(env, errno, "fstat");
  dev_ = st.st_dev;
  ino_ = st.st_ino;

  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
    throw Napi::Error::New(env, "no libuv loop for this environment");
  }
  auto core = std::make_unique<Core>();
  // uv_poll_init switches the descriptor to non-blocking mode and fails with
  // EEXIST when this loop already watches it (e.g. a net.Socket's descriptor).
  int rc = uv_poll_init(loop, &core->handle, fd_);
  if (rc != 0) throw UvError(env, rc, "uv_poll_init");
  core->handle.data = core.get();
  core->owner = this;
  if (napi_add_async_cleanup_hook(env, OnEnvCleanup, core.get(), &core->cleanup_hook) != napi_ok) {
    core->cleanup_hook = nullptr;
  }
  core_ = core.release();

  callback_ = Napi::Persistent(info[1].As<Napi::Function>());
  async_context_ = std::make_unique<Napi::AsyncContext>(env, "DangaFdPoll", info.This().As<Napi::Object>());
}

FdPoll::~FdPoll() {
  // Runs as the GC finalizer: only possible once the poll is inactive.
  if (core_ != nullptr) {
    core_->owner = nullptr;
    BeginClose(core_);
    core_ = nullptr;
  }
}

void FdPoll::SetActive(bool active) {
  if (active == active_) return;
  active_ = active;
  if (active) {
    Ref();
  } else {
    Unref();
  }
}

Napi::Value FdPoll::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int mask = Int32Arg(info, 0, "events");
  if (core_ == nullptr || core_->closing) throw ErrnoError(env, EBADF, "uv_poll_start");
  struct stat st;
  if (fstat(fd_, &st) != 0 || st.st_dev != dev_ || st.st_ino != ino_) {
    throw ErrnoError(env, EBADF, "uv_poll_start");
  }
  int events = 0;
  if (mask & kMaskIn) events |= UV_READABLE;
  if (mask & kMaskPri) events |= UV_PRIORITIZED;
  if (mask & kMaskOut) events |= UV_WRITABLE;
  if (mask & kMaskHup) events |= UV_DISCONNECT;
  if (events == 0) {
    uv_poll_stop(&core_->handle);
    SetActive(false);
    return env.Undefined();
  }
  int rc = uv_poll_start(&core_->handle, events, OnPoll);
  if (rc != 0) throw UvError(env, rc, "uv_poll_start");
  SetActive(true);
  return env.Undefined();
}

Napi::Value FdPoll::Stop(const Napi::CallbackInfo& info) {
  if (core_ != nullptr && !core_->closing) uv_poll_stop(&core_->handle);
  SetActive(false);
  return info.Env().Undefined();
}

Napi::Value FdPoll::Close(const Napi::CallbackInfo& info) {
  if (core_ != nullptr) {
    core_->owner = nullptr;
    BeginClose(core_);
    core_ = nullptr;
  }
  SetActive(false);
  callback_.Reset();
  return info.Env().Undefined();
}

Napi::Value FdPoll::RefHandle(const Napi::CallbackInfo& info) {
  if (core_ != nullptr && !core_->closing) uv_ref(reinterpret_cast<uv_handle_t*>(&core_->handle));
  return info.Env().Undefined();
}

Napi::Value FdPoll::UnrefHandle(const Napi::CallbackInfo& info) {
  if (core_ != nullptr && !core_->closing) uv_unref(reinterpret_cast<uv_handle_t*>(&core_->handle));
  return info.Env().Undefined();
}

Napi::Value FdPoll::HasRef(const Napi::CallbackInfo& info) {
  bool has = core_ != nullptr && !core_->closing &&
             uv_has_ref(reinterpret_cast<uv_handle_t*>(&core_->handle)) != 0;
  return Napi::Boolean::New(info.Env(), has);
}

Napi::Value FdPoll::GetFd(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), fd_);
}

Napi::Value FdPoll::IsActive(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), active_);
}

void FdPoll::BeginClose(Core* core) {
  if (core->closing) return;
  core->closing = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&core->handle), OnClosed);
}

void FdPoll::OnClosed(uv_handle_t* handle) {
  Core* core = static_cast<Core*>(handle->data);
  if (core->owner != nullptr) core->owner->core_ = nullptr;
  if (core->cleanup_hook != nullptr) napi_remove_async_cleanup_hook(core->cleanup_hook);
  delete core;
}

void FdPoll::OnEnvCleanup(napi_async_cleanup_hook_handle /*hook*/, void* arg) {
  // The environment is going away (process exit or worker termination): close
  // the handle; OnClosed removes this hook, which lets teardown continue.
  Core* core = static_cast<Core*>(arg);
  if (core->owner != nullptr) {
    core->owner->core_ = nullptr;
    core->owner = nullptr;
  }
  BeginClose(core);
}

void FdPoll::OnPoll(uv_poll_t* handle, int status, int events) {
  Core* core = static_cast<Core*>(handle->data);
  if (core->closing || core->owner == nullptr) return;
  int mask = 0;
  if (status < 0) {
    mask = kMaskErr;
  } else {
    if (events & UV_READABLE) mask |= kMaskIn;
    if (events & UV_PRIORITIZED) mask |= kMaskPri;
    if (events & UV_WRITABLE) mask |= kMaskOut;
    if (events & UV_DISCONNECT) mask |= kMaskHup;
  }
  // On POLLERR libuv stops the handle itself before calling us.
  core->owner->Dispatch(mask, status < 0);
}

void FdPoll::Dispatch(int mask, bool stopped_by_libuv) {
  Napi::Env env = Env();
  Napi::HandleScope scope(env);
  Napi::Object self = Value();  // keeps the wrapper alive during the call
  if (stopped_by_libuv) SetActive(false);
  if (callback_.IsEmpty()) return;
  Napi::Function callback = callback_.Value();
  try {
    callback.MakeCallback(self, {Napi::Number::New(env, mask)}, *async_context_);
  } catch (const Napi::Error& error) {
    // Same path as an exception thrown from any other event callback.
    napi_fatal_exception(env, error.Value());
  }
}

}  // namespace danga
