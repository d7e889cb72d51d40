// Poll: a uv_poll_t on a raw descriptor, reporting Danga readiness masks to JS.
#ifndef DANGA_SOCKET_FD_POLL_H_
#define DANGA_SOCKET_FD_POLL_H_

#include <napi.h>
#include <uv.h>

#include <memory>

#include <sys/types.h>

namespace danga {

// Danga::Socket / epoll mask bits used for readiness reports.
constexpr int kMaskIn = 1;
constexpr int kMaskPri = 2;
constexpr int kMaskOut = 4;
constexpr int kMaskErr = 8;
constexpr int kMaskHup = 16;

// JS: new Poll(fd, cb(mask)). Lives on the loop of the JS thread that created
// it; every method must be called from that thread. The callback runs on that
// thread, level-triggered, once per loop iteration while the condition holds.
class FdPoll : public Napi::ObjectWrap<FdPoll> {
 public:
  static Napi::Function Define(Napi::Env env);

  explicit FdPoll(const Napi::CallbackInfo& info);
  ~FdPoll() override;

 private:
  // The uv handle outlives this wrapper until its close callback has run.
  struct Core {
    uv_poll_t handle;
    FdPoll* owner = nullptr;
    napi_async_cleanup_hook_handle cleanup_hook = nullptr;
    bool closing = false;
  };

  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Stop(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value RefHandle(const Napi::CallbackInfo& info);
  Napi::Value UnrefHandle(const Napi::CallbackInfo& info);
  Napi::Value HasRef(const Napi::CallbackInfo& info);
  Napi::Value GetFd(const Napi::CallbackInfo& info);
  Napi::Value IsActive(const Napi::CallbackInfo& info);

  static void OnPoll(uv_poll_t* handle, int status, int events);
  static void OnClosed(uv_handle_t* handle);
  static void OnEnvCleanup(napi_async_cleanup_hook_handle hook, void* arg);
  static void BeginClose(Core* core);

  void Dispatch(int mask, bool stopped_by_libuv);
  void SetActive(bool active);

  Core* core_ = nullptr;
  Napi::FunctionReference callback_;
  std::unique_ptr<Napi::AsyncContext> async_context_;
  int fd_ = -1;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  // While started, the wrapper holds a strong reference to itself so that a
  // poll the user dropped keeps reporting (like a net.Socket does).
  bool active_ = false;
};

}  // namespace danga

#endif  // DANGA_SOCKET_FD_POLL_H_
