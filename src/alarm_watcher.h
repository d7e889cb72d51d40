// The process-wide SocketAlarm watcher thread and its registry of alarms.
//
// One thread per process (created by the first start(), stopped and joined
// when the last environment that loaded the addon is cleaned up) polls every
// armed alarm's descriptor and runs the triggered alarm's action list itself,
// so the actions happen while JS threads are blocked. It runs with every
// signal blocked. All State fields below the mutex line are guarded by the
// registry mutex; actions run while holding it, so cancel() returning means
// no action of that alarm will run afterwards.
#ifndef DANGA_SOCKET_ALARM_WATCHER_H_
#define DANGA_SOCKET_ALARM_WATCHER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <sys/types.h>

namespace danga {
namespace alarm {

// Event bits (IO::SocketAlarm values).
constexpr int kEventShut = 0x01;
constexpr int kEventEof = 0x02;
constexpr int kEventClose = 0x04;
constexpr int kEventIn = 0x08;
constexpr int kEventPri = 0x10;
constexpr int kEventAll = 0x1f;

// Opcodes of the encoded action list passed from JS (lib/socket-alarm.ts).
enum class Op : int {
  kKill = 1,          // [1, signal, pid]
  kKillChildren = 2,  // [2, signal]
  kClose = 3,         // [3, fd]
  kShutdown = 4,      // [4, how (0 RD, 1 WR, 2 RDWR), fd]
  kClosePeer = 5,     // [5, family, address | path, port]
  kShutdownPeer = 6,  // [6, how, family, address | path, port]
  kRun = 7,           // [7, ...argv]
  kExec = 8,          // [8, ...argv]
  kSleep = 9,         // [9, seconds]
};

struct PeerAddr {
  int family = 0;  // AF_INET, AF_INET6 or AF_UNIX
  unsigned char addr[16] = {};
  uint16_t port = 0;  // host order
  std::string path;
};

struct Action {
  Op op = Op::kKill;
  int signal = 0;
  pid_t pid = 0;
  int fd = -1;
  int how = 0;  // SHUT_RD / SHUT_WR / SHUT_RDWR
  PeerAddr peer;
  std::vector<std::string> argv;
  double seconds = 0;
};

struct State {
  // Immutable after construction.
  int fd = -1;
  dev_t dev = 0;
  ino_t ino = 0;
  int events = 0;
  std::vector<Action> actions;
  std::string path_env;               // PATH snapshot for run/exec
  std::vector<std::string> env_snapshot;  // environment for run/exec
  const void* env_tag = nullptr;      // environment that created the alarm

  // ---- guarded by the registry mutex ----
  int cur_action = -1;  // -1 idle, k running/sleeping in action k, size() finished
  bool active = false;  // on the watch list
  bool unwaitable = false;  // EOF cannot be waited for: unread data is pending
  bool hup_seen = false;    // HUP/ERR reported without firing: stop polling, recheck at 500 ms
  bool sleeping = false;
  int64_t wake_ns = 0;
  uint64_t generation = 0;
  std::vector<int> protected_fds;  // never closed by a peer-address close
};

// Puts the alarm on the watch list (re-arming a finished one). Returns false if
// it was already on it. Starts the thread on first use; on failure returns
// false and sets *error. Call from a JS thread.
bool Start(const std::shared_ptr<State>& state, std::vector<int> protected_fds,
           std::string* error);

// Takes the alarm off the watch list; true if it was on it. Blocks while an
// action is running. Call from a JS thread.
bool Cancel(const std::shared_ptr<State>& state);

// cur_action read under the mutex (blocks while an action is running).
int CurAction(const std::shared_ptr<State>& state);

// Environment bookkeeping: the thread is stopped and joined when the last
// attached environment detaches. DetachEnv also cancels that environment's alarms.
void AttachEnv();
void DetachEnv(const void* env_tag);

// The watcher's own descriptors (wake pipe), which `close` actions must not target.
std::vector<int> WatcherFds();

// True when poll() can report a peer shutdown (POLLRDHUP).
bool HaveRdhup();

}  // namespace alarm
}  // namespace danga

#endif  // DANGA_SOCKET_ALARM_WATCHER_H_
