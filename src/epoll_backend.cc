// The native backend (Linux): non-blocking descriptors owned by the addon and
// one private level-triggered epoll set, watched by a single uv_poll_t on the
// epoll descriptor. When libuv reports that descriptor readable, OnPoll drains
// epoll_wait(..., 0) once (up to kMaxEvents) into a shared Int32Array of
// (fd, mask) pairs and makes ONE JS call per loop turn.
//
// Every function here must be called on the JS thread that loaded the addon;
// state is per environment (function data), so workers each get their own set.
// Hot-path functions return a count or -errno instead of throwing: JS builds
// the errno-style error only when it needs one. The epoll set only ever holds
// descriptors this file created (socket/accept4), recorded with their inode,
// so a descriptor closed (or reused) under us yields EBADF, never a libuv abort.
#include "epoll_backend.h"

#if defined(__linux__)

#include <uv.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "native_util.h"

namespace danga {
namespace {

constexpr int kMaxEvents = 1000;
// Danga mask bits (as fd_poll.h), plus a marker for a peer's shutdown.
constexpr int kIn = 1, kOut = 4, kErr = 8, kHup = 16, kRdhup = 32;

struct Backend {
  napi_env env = nullptr;
  int epfd = -1;
  uv_poll_t* poll = nullptr;  // freed by its close callback
  bool poll_started = false;
  int refs = 0;
  Napi::FunctionReference callback;
  Napi::ObjectReference ready_ref;
  int32_t* ready = nullptr;  // (fd, mask) pairs
  size_t ready_pairs = 0;
  Napi::ObjectReference buf_ref;
  uint8_t* buf = nullptr;  // the shared read buffer (reads of up to buf_len bytes)
  size_t buf_len = 0;
  Napi::ObjectReference big_ref;
  uint8_t* big = nullptr;  // the one for larger reads (optional)
  size_t big_len = 0;
  std::unique_ptr<Napi::AsyncContext> async_context;
  // Inode of every descriptor we own, by fd (0: not ours).
  std::vector<uint64_t> owned;
};

Backend* B(const Napi::CallbackInfo& info) { return static_cast<Backend*>(info.Data()); }

inline int I32(const Napi::CallbackInfo& info, size_t i) {
  int32_t v = 0;
  napi_get_value_int32(info.Env(), info[i], &v);
  return v;
}

inline Napi::Value Num(const Napi::CallbackInfo& info, double v) {
  return Napi::Number::New(info.Env(), v);
}

inline Napi::Value Neg(const Napi::CallbackInfo& info, int err) { return Num(info, -err); }

bool Own(Backend* b, int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return false;
  if (static_cast<size_t>(fd) >= b->owned.size()) b->owned.resize(fd + 1024, 0);
  b->owned[fd] = static_cast<uint64_t>(st.st_ino) | (uint64_t{1} << 63);
  return true;
}

bool IsOwned(Backend* b, int fd) {
  return fd >= 0 && static_cast<size_t>(fd) < b->owned.size() && b->owned[fd] != 0;
}

// True if `fd` is still the descriptor we created (not closed and reused under us).
bool SameFile(Backend* b, int fd) {
  if (!IsOwned(b, fd)) return false;
  struct stat st;
  if (fstat(fd, &st) != 0) return false;
  return (static_cast<uint64_t>(st.st_ino) | (uint64_t{1} << 63)) == b->owned[fd];
}

void Forget(Backend* b, int fd) {
  if (IsOwned(b, fd)) b->owned[fd] = 0;
}

void OnPoll(uv_poll_t* handle, int status, int /*events*/) {
  Backend* b = static_cast<Backend*>(handle->data);
  if (status < 0 || b->ready == nullptr) return;
  struct epoll_event evs[kMaxEvents];
  int max = static_cast<int>(std::min<size_t>(kMaxEvents, b->ready_pairs));
  int n;
  do {
    n = epoll_wait(b->epfd, evs, max, 0);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return;
  for (int i = 0; i < n; i++) {
    uint32_t e = evs[i].events;
    int m = 0;
    if (e & EPOLLIN) m |= kIn;
    if (e & EPOLLRDHUP) m |= kIn | kRdhup;
    if (e & EPOLLOUT) m |= kOut;
    if (e & EPOLLERR) m |= kErr;
    if (e & EPOLLHUP) m |= kHup;
    b->ready[2 * i] = evs[i].data.fd;
    b->ready[2 * i + 1] = m;
  }
  Napi::Env env(b->env);
  Napi::HandleScope scope(env);
  try {
    b->callback.MakeCallback(env.Global(), {Napi::Number::New(env, n)}, *b->async_context);
  } catch (const Napi::Error& error) {
    napi_fatal_exception(env, error.Value());
  }
}

void ApplyRef(Backend* b) {
  if (b->poll == nullptr) return;
  uv_handle_t* h = reinterpret_cast<uv_handle_t*>(b->poll);
  if (b->refs > 0) {
    uv_ref(h);
  } else {
    uv_unref(h);
  }
}

// init(callback(count), ready: Int32Array, readBuffer: Buffer, bigReadBuffer?: Buffer): start
// reporting. A read of more than readBuffer's length lands in bigReadBuffer. -> the largest read.

Napi::Value Init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Backend* b = B(info);
  if (!info[0].IsFunction() || !info[1].IsTypedArray() || !info[2].IsBuffer()) {
    throw Napi::TypeError::New(env, "init(callback, Int32Array, Buffer)");
  }
  Napi::TypedArray ta = info[1].As<Napi::TypedArray>();
  if (ta.TypedArrayType() != napi_int32_array) throw Napi::TypeError::New(env, "ready must be an Int32Array");
  Napi::Int32Array ready = info[1].As<Napi::Int32Array>();
  Napi::Buffer<uint8_t> buf = info[2].As<Napi::Buffer<uint8_t>>();
  b->callback = Napi::Persistent(info[0].As<Napi::Function>());
  b->ready_ref = Napi::Persistent(ready.As<Napi::Object>());
  b->ready = ready.Data();
  b->ready_pairs = ready.ElementLength() / 2;
  b->buf_ref = Napi::Persistent(buf.As<Napi::Object>());
  b->buf = buf.Data();
  b->buf_len = buf.Length();
  if (info.Length() > 3 && info[3].IsBuffer()) {
    Napi::Buffer<uint8_t> big = info[3].As<Napi::Buffer<uint8_t>>();
    b->big_ref = Napi::Persistent(big.As<Napi::Object>());
    b->big = big.Data();
    b->big_len = big.Length();
  }
  if (!b->async_context) b->async_context = std::make_unique<Napi::AsyncContext>(env, "DangaEpoll");
  if (b->poll == nullptr) {
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
      throw Napi::Error::New(env, "no libuv loop for this environment");
    }
    b->poll = new uv_poll_t;
    int rc = uv_poll_init(loop, b->poll, b->epfd);
    if (rc != 0) {
      delete b->poll;
      b->poll = nullptr;
      throw UvError(env, rc, "uv_poll_init");
    }
    b->poll->data = b;
    rc = uv_poll_start(b->poll, UV_READABLE, OnPoll);
    if (rc != 0) throw UvError(env, rc, "uv_poll_start");
    ApplyRef(b);
  }
  return Napi::Number::New(env, static_cast<double>(std::max(b->buf_len, b->big_len)));
}

// ref(delta): the poll keeps the process alive while the count is positive.
Napi::Value Ref(const Napi::CallbackInfo& info) {
  Backend* b = B(info);
  b->refs += I32(info, 0);
  if (b->refs < 0) b->refs = 0;
  ApplyRef(b);
  return info.Env().Undefined();
}

// read(fd, n) -> bytes read (0 = EOF) or -errno: into the shared buffer, or into the big one
// when n is larger than the shared buffer.
Napi::Value Read(const Napi::CallbackInfo& info) {
  Backend* b = B(info);
  int fd = I32(info, 0);
  size_t n = static_cast<size_t>(std::max(0, I32(info, 1)));
  uint8_t* dst = b->buf;
  if (n > b->buf_len) {
    if (b->big != nullptr) {
      dst = b->big;
      if (n > b->big_len) n = b->big_len;
    } else {
      n = b->buf_len;
    }
  }
  ssize_t r;
  do {
    r = read(fd, dst, n);
  } while (r < 0 && errno == EINTR);
  return r >= 0 ? Num(info, static_cast<double>(r)) : Neg(info, errno);
}

bool BytesArg(const Napi::CallbackInfo& info, size_t i, uint8_t** data, size_t* len) {
  napi_typedarray_type type;
  size_t length = 0;
  void* p = nullptr;
  napi_value ab;
  size_t offset = 0;
  if (napi_get_typedarray_info(info.Env(), info[i], &type, &length, &p, &ab, &offset) != napi_ok ||
      type != napi_uint8_array) {
    return false;
  }
  *data = static_cast<uint8_t*>(p);
  *len = length;
  return true;
}

// write(fd, buf, off, len) -> bytes the kernel took, or -errno (-EAGAIN: none).
Napi::Value Write(const Napi::CallbackInfo& info) {
  int fd = I32(info, 0);
  uint8_t* data;
  size_t blen;
  if (!BytesArg(info, 1, &data, &blen)) return Neg(info, EINVAL);
  int off = I32(info, 2), len = I32(info, 3);
  if (off < 0 || len < 0 || static_cast<size_t>(off) + static_cast<size_t>(len) > blen) {
    return Neg(info, EINVAL);
  }
  ssize_t r;
  do {
    r = send(fd, data + off, len, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (r < 0 && errno == EINTR);
  if (r < 0 && errno == ENOTSOCK) {
    do {
      r = write(fd, data + off, len);
    } while (r < 0 && errno == EINTR);
  }
  return r >= 0 ? Num(info, static_cast<double>(r)) : Neg(info, errno);
}

// writev(fd, buffers[], firstOffset) -> bytes the kernel took, or -errno.
Napi::Value Writev(const Napi::CallbackInfo& info) {
  int fd = I32(info, 0);
  if (!info[1].IsArray()) return Neg(info, EINVAL);
  Napi::Array arr = info[1].As<Napi::Array>();
  int first = I32(info, 2);
  uint32_t count = std::min<uint32_t>(arr.Length(), 64);
  struct iovec iov[64];
  int k = 0;
  for (uint32_t i = 0; i < count; i++) {
    Napi::Value v = arr[i];
    uint8_t* data;
    size_t len = 0;
    napi_typedarray_type type;
    void* p = nullptr;
    napi_value ab;
    size_t offset = 0;
    if (napi_get_typedarray_info(info.Env(), v, &type, &len, &p, &ab, &offset) != napi_ok ||
        type != napi_uint8_array) {
      break;  // a function marker or a non-buffer: stop the batch here
    }
    data = static_cast<uint8_t*>(p);
    size_t skip = (i == 0 && first > 0) ? static_cast<size_t>(first) : 0;
    if (skip > len) return Neg(info, EINVAL);
    iov[k].iov_base = data + skip;
    iov[k].iov_len = len - skip;
    k++;
  }
  if (k == 0) return Num(info, 0);
  struct msghdr msg;
  std::memset(&msg, 0, sizeof(msg));
  msg.msg_iov = iov;
  msg.msg_iovlen = k;
  ssize_t r;
  do {
    r = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (r < 0 && errno == EINTR);
  return r >= 0 ? Num(info, static_cast<double>(r)) : Neg(info, errno);
}

// accept(listenFd, out: Int32Array) -> how many descriptors were accepted into
// `out` (accept4, non-blocking, close-on-exec), or -errno if the first failed.
Napi::Value Accept(const Napi::CallbackInfo& info) {
  Backend* b = B(info);
  int lfd = I32(info, 0);
  if (!info[1].IsTypedArray()) return Neg(info, EINVAL);
  Napi::Int32Array out = info[1].As<Napi::Int32Array>();
  int32_t* p = out.Data();
  size_t cap = out.ElementLength();
  size_t n = 0;
  while (n < cap) {
    int fd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR) continue;
      if (errno == ECONNABORTED) continue;
      if (n == 0) return Neg(info, errno);
      break;  // the next call reports it
    }
    if (!Own(b, fd)) {
      close(fd);
      continue;
    }
    p[n++] = fd;
  }
  return Num(info, static_cast<double>(n));
}

int FamilyOf(int f) { return f == 6 ? AF_INET6 : f == 0 ? AF_UNIX : AF_INET; }

// socket(family: 4 | 6 | 0 (unix)) -> fd or -errno.
Napi::Value Socket(const Napi::CallbackInfo& info) {
  Backend* b = B(info);
  int fd = socket(FamilyOf(I32(info, 0)), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Neg(info, errno);
  if (!Own(b, fd)) {
    int err = errno;
    close(fd);
    return Neg(info, err);
  }
  return Num(info, fd);
}

// Builds a sockaddr from (host, port) or a unix path (port < 0). False: bad address.
bool MakeAddr(const Napi::CallbackInfo& info, size_t i, sockaddr_storage* ss, socklen_t* len) {
  if (!info[i].IsString()) return false;
  std::string host = info[i].As<Napi::String>().Utf8Value();
  int port = I32(info, i + 1);
  std::memset(ss, 0, sizeof(*ss));
  if (port < 0) {
    auto* un = reinterpret_cast<sockaddr_un*>(ss);
    if (host.size() >= sizeof(un->sun_path)) return false;
    un->sun_family = AF_UNIX;
    std::memcpy(un->sun_path, host.c_str(), host.size() + 1);
    *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + host.size() + 1);
    return true;
  }
  auto* v4 = reinterpret_cast<sockaddr_in*>(ss);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    *len = sizeof(*v4);
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(ss);
  std::string h = host;
  size_t pct = h.find('%');
  if (pct != std::string::npos) h = h.substr(0, pct);  // scope ids are not supported
  if (inet_pton(AF_INET6, h.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    *len = sizeof(*v6);
    return true;
  }
  return false;
}

// bind(fd, host, port) / connect(fd, host, port) (port -1: host is a unix path) -> 0 or -errno.
Napi::Value Bind(const Napi::CallbackInfo& info) {
  sockaddr_storage ss;
  socklen_t len;
  if (!MakeAddr(info, 1, &ss, &len)) return Neg(info, EINVAL);
  return bind(I32(info, 0), reinterpret_cast<sockaddr*>(&ss), len) == 0 ? Num(info, 0) : Neg(info, errno);
}

Napi::Value Connect(const Napi::CallbackInfo& info) {
  sockaddr_storage ss;
  socklen_t len;
  if (!MakeAddr(info, 1, &ss, &len)) return Neg(info, EINVAL);
  int r;
  do {
    r = connect(I32(info, 0), reinterpret_cast<sockaddr*>(&ss), len);
  } while (r < 0 && errno == EINTR);
  return r == 0 ? Num(info, 0) : Neg(info, errno);
}

Napi::Value Listen(const Napi::CallbackInfo& info) {
  return listen(I32(info, 0), I32(info, 1)) == 0 ? Num(info, 0) : Neg(info, errno);
}

// ctl(fd, mask): set the epoll interest (1 IN (with RDHUP), 4 OUT); ERR and HUP are
// always reported. The first call adds the descriptor. -> 0 or -errno.
Napi::Value Ctl(const Napi::CallbackInfo& info) {
  Backend* b = B(info);
  int fd = I32(info, 0);
  int mask = I32(info, 1);
  int op = I32(info, 2);  // 1 add, 2 delete, 3 modify
  if (!IsOwned(b, fd)) return Neg(info, EBADF);
  struct epoll_event ev;
  std::memset(&ev, 0, sizeof(ev));
  if (mask & kIn) ev.events |= EPOLLIN | EPOLLRDHUP;
  if (mask & kOut) ev.events |= EPOLLOUT;
  ev.data.fd = fd;
  int r = epoll_ctl(b->epfd, op == 1 ? EPOLL_CTL_ADD : op == 2 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD, fd,
                    &ev);
  if (r != 0 && op != 1 && errno == ENOENT) return Neg(info, EBADF);  // closed under us
  return r == 0 ? Num(info, 0) : Neg(info, errno);
}

// ctlv(list: Int32Array, count): the interest changes of one loop iteration in one call.
// Entry i is (fd, mask, op) at list[3i..3i+2]; its result (0 or -errno, as ctl) replaces op.
// -> count done, or -EINVAL for a bad list.
Napi::Value Ctlv(const Napi::CallbackInfo& info) {
  Backend* b = B(info);
  if (!info[0].IsTypedArray()) return Neg(info, EINVAL);
  Napi::TypedArray ta = info[0].As<Napi::TypedArray>();
  if (ta.TypedArrayType() != napi_int32_array) return Neg(info, EINVAL);
  Napi::Int32Array list = info[0].As<Napi::Int32Array>();
  int32_t* p = list.Data();
  int count = I32(info, 1);
  if (count < 0 || static_cast<size_t>(count) * 3 > list.ElementLength()) return Neg(info, EINVAL);
  for (int i = 0; i < count; i++) {
    int32_t* e = p + 3 * i;
    int fd = e[0], mask = e[1], op = e[2];
    if (!IsOwned(b, fd)) {
      e[2] = -EBADF;
      continue;
    }
    struct epoll_event ev;
    std::memset(&ev, 0, sizeof(ev));
    if (mask & kIn) ev.events |= EPOLLIN | EPOLLRDHUP;
    if (mask & kOut) ev.events |= EPOLLOUT;
    ev.data.fd = fd;
    int r = epoll_ctl(b->epfd, op == 1 ? EPOLL_CTL_ADD : op == 2 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD,
                      fd, &ev);
    if (r == 0) {
      e[2] = 0;
    } else {
      e[2] = (op != 1 && errno == ENOENT) ? -EBADF : -errno;  // ENOENT: closed under us
    }
  }
  return Num(info, count);
}

// close(fd): leave the epoll set and close(2), only if `fd` is still ours. -> 0 or -errno.
Napi::Value Close(const Napi::CallbackInfo& info) {
  Backend* b = B(info);
  int fd = I32(info, 0);
  if (!SameFile(b, fd)) {
    Forget(b, fd);
    return Neg(info, EBADF);
  }
  Forget(b, fd);
  epoll_ctl(b->epfd, EPOLL_CTL_DEL, fd, nullptr);
  // close(2) on Linux releases the descriptor even when it reports EINTR.
  return close(fd) == 0 || errno == EINTR ? Num(info, 0) : Neg(info, errno);
}

// release(fd): leave the epoll set and stop owning `fd` (it goes to Node). -> 0 or -errno.
Napi::Value Release(const Napi::CallbackInfo& info) {
  Backend* b = B(info);
  int fd = I32(info, 0);
  if (!SameFile(b, fd)) {
    Forget(b, fd);
    return Neg(info, EBADF);
  }
  Forget(b, fd);
  epoll_ctl(b->epfd, EPOLL_CTL_DEL, fd, nullptr);
  return Num(info, 0);
}

// owns(fd) -> whether the addon owns `fd` (tests, diagnostics).
Napi::Value Owns(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), SameFile(B(info), I32(info, 0)));
}

// setInt(fd, level, name, value) -> 0 or -errno.
Napi::Value SetInt(const Napi::CallbackInfo& info) {
  int v = I32(info, 3);
  return setsockopt(I32(info, 0), I32(info, 1), I32(info, 2), &v, sizeof(v)) == 0 ? Num(info, 0)
                                                                                  : Neg(info, errno);
}

// getInt(fd, level, name) -> value (>= 0) or -errno.
Napi::Value GetInt(const Napi::CallbackInfo& info) {
  int v = 0;
  socklen_t len = sizeof(v);
  if (getsockopt(I32(info, 0), I32(info, 1), I32(info, 2), &v, &len) != 0) return Neg(info, errno);
  return Num(info, v);
}

// soError(fd) -> the pending socket error (0: none), or -errno if getsockopt failed.
Napi::Value SoError(const Napi::CallbackInfo& info) {
  int v = 0;
  socklen_t len = sizeof(v);
  if (getsockopt(I32(info, 0), SOL_SOCKET, SO_ERROR, &v, &len) != 0) return Neg(info, errno);
  return Num(info, v);
}

// name(fd, peer) -> [family (4, 6, 0 unix), address or path, port] or -errno.
Napi::Value Name(const Napi::CallbackInfo& info) {
  int fd = I32(info, 0);
  bool peer = info[1].ToBoolean().Value();
  sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  int r = peer ? getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len)
               : getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  if (r != 0) return Neg(info, errno);
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env, 3);
  char text[INET6_ADDRSTRLEN] = {0};
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, text, sizeof(text));
    out[0u] = Num(info, 4);
    out[1u] = Napi::String::New(env, text);
    out[2u] = Num(info, ntohs(a->sin_port));
  } else if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof(text));
    out[0u] = Num(info, 6);
    out[1u] = Napi::String::New(env, text);
    out[2u] = Num(info, ntohs(a->sin6_port));
  } else if (ss.ss_family == AF_UNIX) {
    auto* a = reinterpret_cast<sockaddr_un*>(&ss);
    size_t n = len > offsetof(sockaddr_un, sun_path) ? len - offsetof(sockaddr_un, sun_path) : 0;
    std::string path(a->sun_path, strnlen(a->sun_path, n));
    out[0u] = Num(info, 0);
    out[1u] = Napi::String::New(env, path);
    out[2u] = Num(info, 0);
  } else {
    return Neg(info, EAFNOSUPPORT);
  }
  return out;
}

// shutdown(fd, how: 0 rd, 1 wr, 2 both) -> 0 or -errno.
Napi::Value Shutdown(const Napi::CallbackInfo& info) {
  return shutdown(I32(info, 0), I32(info, 1)) == 0 ? Num(info, 0) : Neg(info, errno);
}

void OnEnvCleanup(void* arg) {
  Backend* b = static_cast<Backend*>(arg);
  if (b->poll != nullptr) {
    uv_poll_t* p = b->poll;
    b->poll = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(p), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
  }
  if (b->epfd >= 0) close(b->epfd);
  b->callback.Reset();
  b->ready_ref.Reset();
  b->buf_ref.Reset();
  b->big_ref.Reset();
  b->async_context.reset();
  delete b;
}

}  // namespace

void InitEpollBackend(Napi::Env env, Napi::Object exports) {
  int epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) {
    exports.Set("epoll", env.Undefined());
    return;
  }
  auto* b = new Backend();
  b->env = env;
  b->epfd = epfd;
  if (napi_add_env_cleanup_hook(env, OnEnvCleanup, b) != napi_ok) {
    close(epfd);
    delete b;
    exports.Set("epoll", env.Undefined());
    return;
  }
  Napi::Object o = Napi::Object::New(env);
  auto fn = [&](const char* name, Napi::Value (*f)(const Napi::CallbackInfo&)) {
    o.Set(name, Napi::Function::New(env, f, name, b));
  };
  fn("init", Init);
  fn("ref", Ref);
  fn("read", Read);
  fn("write", Write);
  fn("writev", Writev);
  fn("accept", Accept);
  fn("socket", Socket);
  fn("bind", Bind);
  fn("connect", Connect);
  fn("listen", Listen);
  fn("ctl", Ctl);
  fn("ctlv", Ctlv);
  fn("close", Close);
  fn("release", Release);
  fn("owns", Owns);
  fn("setInt", SetInt);
  fn("getInt", GetInt);
  fn("soError", SoError);
  fn("name", Name);
  fn("shutdown", Shutdown);
  Napi::Object k = Napi::Object::New(env);
  k.Set("SOL_SOCKET", Napi::Number::New(env, SOL_SOCKET));
  k.Set("SO_REUSEADDR", Napi::Number::New(env, SO_REUSEADDR));
  k.Set("SO_REUSEPORT", Napi::Number::New(env, SO_REUSEPORT));
  k.Set("SO_KEEPALIVE", Napi::Number::New(env, SO_KEEPALIVE));
  k.Set("SO_SNDBUF", Napi::Number::New(env, SO_SNDBUF));
  k.Set("SO_RCVBUF", Napi::Number::New(env, SO_RCVBUF));
  k.Set("IPPROTO_TCP", Napi::Number::New(env, IPPROTO_TCP));
  k.Set("TCP_NODELAY", Napi::Number::New(env, TCP_NODELAY));
  k.Set("TCP_CORK", Napi::Number::New(env, TCP_CORK));
  k.Set("TCP_KEEPIDLE", Napi::Number::New(env, TCP_KEEPIDLE));
  o.Set("constants", k);
  exports.Set("epoll", o);
}

}  // namespace danga

#else  // !__linux__

namespace danga {
void InitEpollBackend(Napi::Env env, Napi::Object exports) { exports.Set("epoll", env.Undefined()); }
}  // namespace danga

#endif
