#include "alarm_watcher.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "native_util.h"

namespace danga {
namespace alarm {
namespace {

constexpr int kDefaultTimeoutMs = 10000;
// Cadence for conditions poll() cannot wait for: EVENT_CLOSE, unwaitable EOF,
// and descriptors that report HUP/ERR nobody asked for (which would spin poll).
constexpr int kRecheckMs = 500;

struct Registry {
  std::mutex life_mu;  // serialises starting/stopping the thread; taken before mu
  std::mutex mu;       // guards everything below and State's mutable fields
  std::vector<std::shared_ptr<State>> alarms;
  int env_count = 0;
  bool running = false;  // guarded by life_mu
  bool stop = false;
  pthread_t thread{};
  int wake_r = -1;
  int wake_w = -1;
};

// Deliberately never destroyed: at exit() the thread may still be running
// while static destructors run.
Registry& Reg() {
  static Registry* registry = new Registry();
  return *registry;
}

int64_t MonoNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

void Wake(Registry& r) {
  if (r.wake_w < 0) return;
  char c = 'r';
  // EAGAIN means a wake-up is already pending.
  ssize_t ignored = write(r.wake_w, &c, 1);
  (void)ignored;
}

void DrainWake(Registry& r) {
  char buf[64];
  while (read(r.wake_r, buf, sizeof(buf)) > 0) {
  }
}

bool SameFile(const State& s) {
  struct stat st;
  return fstat(s.fd, &st) == 0 && st.st_dev == s.dev && st.st_ino == s.ino;
}

short PollEvents(const State& s) {
  short ev = 0;
#ifdef POLLRDHUP
  if (s.events & kEventShut) ev |= POLLRDHUP;
#endif
  if ((s.events & kEventEof) && !s.unwaitable) ev |= POLLIN;
  if (s.events & kEventIn) ev |= POLLIN;
  if (s.events & kEventPri) ev |= POLLPRI;
  return ev;
}

// The trigger test; flags are OR-ed (the Perl original assigns them).
bool Fires(State& s, short rev) {
  short shut = POLLHUP | POLLERR;
#ifdef POLLRDHUP
  shut |= POLLRDHUP;
#endif
  if ((s.events & kEventShut) && (rev & shut)) return true;
  if ((s.events & kEventIn) && (rev & POLLIN)) return true;
  if ((s.events & kEventPri) && (rev & POLLPRI)) return true;
  if ((s.events & kEventEof) && ((rev & POLLIN) || s.unwaitable)) {
    char buf[128];
    ssize_t n = recv(s.fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) return true;
    // Unread data hides the EOF from a peek: fall back to periodic peeks.
    s.unwaitable = n > 0;
  }
  if (rev & (POLLHUP | POLLERR)) s.hup_seen = true;
  return false;
}

void Retire(State& s) {
  s.cur_action = static_cast<int>(s.actions.size());
  s.active = false;
  s.sleeping = false;
}

bool IsNumber(const char* text) {
  if (*text == '\0') return false;
  for (; *text != '\0'; ++text) {
    if (*text < '0' || *text > '9') return false;
  }
  return true;
}

std::string ReadSmallFile(const std::string& path, bool* ok) {
  std::string text;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  *ok = fd >= 0;
  if (fd < 0) return text;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) text.append(buf, static_cast<size_t>(n));
  close(fd);
  return text;
}

// Every descriptor open in the process.
std::vector<int> OpenFds() {
  std::vector<int> fds;
  if (DIR* dir = opendir("/proc/self/fd")) {
    int own = dirfd(dir);
    while (dirent* entry = readdir(dir)) {
      if (!IsNumber(entry->d_name)) continue;
      int fd = std::atoi(entry->d_name);
      if (fd != own) fds.push_back(fd);
    }
    closedir(dir);
    return fds;
  }
  rlimit rl;
  long max = 1024;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    max = static_cast<long>(std::min<rlim_t>(rl.rlim_cur, 65536));
  }
  for (int fd = 0; fd < max; ++fd) {
    if (fcntl(fd, F_GETFD) != -1) fds.push_back(fd);
  }
  return fds;
}

bool PeerMatches(int fd, const PeerAddr& peer) {
  sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  std::memset(&ss, 0, sizeof(ss));
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return false;
  if (ss.ss_family != peer.family) return false;
  switch (ss.ss_family) {
    case AF_INET: {
      auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
      return ntohs(sin->sin_port) == peer.port && std::memcmp(&sin->sin_addr, peer.addr, 4) == 0;
    }
    case AF_INET6: {
      auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
      return ntohs(sin6->sin6_port) == peer.port &&
             std::memcmp(&sin6->sin6_addr, peer.addr, 16) == 0;
    }
    case AF_UNIX: {
      auto* unix_addr = reinterpret_cast<sockaddr_un*>(&ss);
      size_t max = len > offsetof(sockaddr_un, sun_path) ? len - offsetof(sockaddr_un, sun_path) : 0;
      return std::string(unix_addr->sun_path, strnlen(unix_addr->sun_path, max)) == peer.path;
    }
    default:
      return false;
  }
}

// Direct children of this process: the union of /proc/self/task/*/children,
// or a scan of /proc/*/stat for our pid as ppid where those files are missing.
std::vector<pid_t> DirectChildren() {
  std::vector<pid_t> kids;
  bool have_lists = false;
  if (DIR* tasks = opendir("/proc/self/task")) {
    while (dirent* entry = readdir(tasks)) {
      if (!IsNumber(entry->d_name)) continue;
      bool ok = false;
      std::string text =
          ReadSmallFile(std::string("/proc/self/task/") + entry->d_name + "/children", &ok);
      if (!ok) continue;
      have_lists = true;
      const char* p = text.c_str();
      char* end = nullptr;
      for (long pid = std::strtol(p, &end, 10); end != p; pid = std::strtol(p, &end, 10)) {
        if (pid > 0) kids.push_back(static_cast<pid_t>(pid));
        p = end;
      }
    }
    closedir(tasks);
  }
  if (!have_lists) {
    pid_t self = getpid();
    if (DIR* proc = opendir("/proc")) {
      while (dirent* entry = readdir(proc)) {
        if (!IsNumber(entry->d_name)) continue;
        bool ok = false;
        std::string stat = ReadSmallFile(std::string("/proc/") + entry->d_name + "/stat", &ok);
        size_t paren = stat.rfind(')');  // comm may contain spaces and parentheses
        if (!ok || paren == std::string::npos) continue;
        char state = 0;
        int ppid = 0;
        if (std::sscanf(stat.c_str() + paren + 1, " %c %d", &state, &ppid) == 2 && ppid == self) {
          kids.push_back(static_cast<pid_t>(std::atoi(entry->d_name)));
        }
      }
      closedir(proc);
    }
  }
  std::sort(kids.begin(), kids.end());
  kids.erase(std::unique(kids.begin(), kids.end()), kids.end());
  return kids;
}

std::string ResolveExecutable(const std::string& file, const std::string& path_env) {
  if (file.find('/') != std::string::npos) return file;
  const std::string dirs = path_env.empty() ? "/usr/local/bin:/usr/bin:/bin" : path_env;
  size_t start = 0;
  while (true) {
    size_t colon = dirs.find(':', start);
    std::string dir = dirs.substr(start, colon == std::string::npos ? colon : colon - start);
    std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + file;
    struct stat st;
    if (access(candidate.c_str(), X_OK) == 0 && stat(candidate.c_str(), &st) == 0 &&
        S_ISREG(st.st_mode)) {
      return candidate;
    }
    if (colon == std::string::npos) return std::string();
    start = colon + 1;
  }
}

// Restores default signal dispositions (all, or only ignored ones) and
// unblocks every signal: the watcher thread runs with all signals blocked and
// Node ignores SIGPIPE, neither of which a new program should inherit.
// Async-signal-safe.
void ResetSignals(bool all) {
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    struct sigaction current;
    if (!all && (sigaction(sig, nullptr, &current) != 0 || current.sa_handler != SIG_IGN)) continue;
    struct sigaction dfl;
    std::memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, nullptr);
  }
  sigset_t none;
  sigemptyset(&none);
  pthread_sigmask(SIG_SETMASK, &none, nullptr);
}

// stdin from /dev/null; stdout and stderr shared with this process. Node marks
// its stdio descriptors close-on-exec, so clear that flag. Async-signal-safe.
void PrepareStdio() {
  int devnull = open("/dev/null", O_RDONLY);
  if (devnull >= 0 && devnull != STDIN_FILENO) {
    dup2(devnull, STDIN_FILENO);
    close(devnull);
  }
  for (int fd : {STDOUT_FILENO, STDERR_FILENO}) {
    int flags = fcntl(fd, F_GETFD);
    if (flags >= 0 && (flags & FD_CLOEXEC) != 0) fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC);
  }
}

void WriteStderr(const char* text) {
  ssize_t ignored = write(STDERR_FILENO, text, std::strlen(text));
  (void)ignored;
}

struct ExecPlan {
  std::string path;
  std::vector<char*> argv;
  std::vector<char*> envp;
};

// Everything execve needs, built before fork(): after fork in a threaded
// process only async-signal-safe calls are allowed.
bool PrepareExec(const State& s, const Action& act, ExecPlan* plan) {
  plan->path = ResolveExecutable(act.argv.front(), s.path_env);
  if (plan->path.empty()) {
    LogLine("danga-socket SocketAlarm: %s: command not found", act.argv.front().c_str());
    return false;
  }
  for (const std::string& arg : act.argv) plan->argv.push_back(const_cast<char*>(arg.c_str()));
  plan->argv.push_back(nullptr);
  for (const std::string& var : s.env_snapshot) plan->envp.push_back(const_cast<char*>(var.c_str()));
  plan->envp.push_back(nullptr);
  return true;
}

void DoRun(const State& s, const Action& act) {
  ExecPlan plan;
  if (!PrepareExec(s, act, &plan)) return;
  pid_t child = fork();
  if (child < 0) {
    LogLine("danga-socket SocketAlarm: fork: %s", std::strerror(errno));
    return;
  }
  if (child == 0) {
    // Double fork: the grandchild is re-parented to init, so nobody has to reap it.
    pid_t grandchild = fork();
    if (grandchild != 0) _exit(grandchild < 0 ? 1 : 0);
    ResetSignals(true);
    PrepareStdio();
    execve(plan.path.c_str(), plan.argv.data(), plan.envp.data());
    WriteStderr("danga-socket SocketAlarm: run: execve failed\n");
    _exit(127);
  }
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
}

[[noreturn]] void DoExec(const State& s, const Action& act) {
  ExecPlan plan;
  if (PrepareExec(s, act, &plan)) {
    ResetSignals(false);
    PrepareStdio();
    execve(plan.path.c_str(), plan.argv.data(), plan.envp.data());
    LogLine("danga-socket SocketAlarm: exec %s: %s", plan.path.c_str(), std::strerror(errno));
  }
  _exit(1);
}

const char* HowName(int how) {
  return how == SHUT_RD ? "SHUT_RD" : how == SHUT_WR ? "SHUT_WR" : "SHUT_RDWR";
}

void DoFdAction(const Action& act, int fd) {
  if (act.op == Op::kClose || act.op == Op::kClosePeer) {
    if (close(fd) != 0) LogLine("danga-socket SocketAlarm: close(%d): %s", fd, std::strerror(errno));
  } else if (shutdown(fd, act.how) != 0) {
    LogLine("danga-socket SocketAlarm: shutdown(%d, %s): %s", fd, HowName(act.how),
            std::strerror(errno));
  }
}

void Execute(State& s, const Action& act) {
  switch (act.op) {
    case Op::kKill:
      if (kill(act.pid, act.signal) != 0) {
        LogLine("danga-socket SocketAlarm: kill(%d, %d): %s", static_cast<int>(act.pid), act.signal,
                std::strerror(errno));
      }
      break;
    case Op::kKillChildren:
      for (pid_t pid : DirectChildren()) kill(pid, act.signal);  // ESRCH: it just exited
      break;
    case Op::kClose:
    case Op::kShutdown:
      DoFdAction(act, act.fd);
      break;
    case Op::kClosePeer:
    case Op::kShutdownPeer:
      for (int fd : OpenFds()) {
        if (act.op == Op::kClosePeer &&
            std::find(s.protected_fds.begin(), s.protected_fds.end(), fd) != s.protected_fds.end()) {
          continue;  // owned by Node: closing it under libuv can abort the process
        }
        if (PeerMatches(fd, act.peer)) DoFdAction(act, fd);
      }
      break;
    case Op::kRun:
      DoRun(s, act);
      break;
    case Op::kExec:
      DoExec(s, act);
    case Op::kSleep:
      break;  // handled by RunActions
  }
}

// Runs the action list from cur_action until it ends or a sleep is pending.
void RunActions(State& s) {
  const int count = static_cast<int>(s.actions.size());
  while (s.cur_action < count) {
    const Action& act = s.actions[static_cast<size_t>(s.cur_action)];
    if (act.op == Op::kSleep) {
      int64_t now = MonoNs();
      if (!s.sleeping) {
        s.sleeping = true;
        s.wake_ns = now + static_cast<int64_t>(act.seconds * 1e9);
      }
      if (now < s.wake_ns) return;
      s.sleeping = false;
    } else {
      Execute(s, act);
    }
    ++s.cur_action;
  }
  s.active = false;  // finished
}

void* ThreadMain(void* arg) {
  Registry& r = *static_cast<Registry*>(arg);
  struct Entry {
    std::shared_ptr<State> alarm;
    uint64_t generation;
    int slot;  // index into pfds, or -1 when not polled
  };
  std::vector<pollfd> pfds;
  std::vector<Entry> entries;
  std::unordered_map<int, int> slot_of_fd;
  std::unique_lock<std::mutex> lock(r.mu);
  while (!r.stop) {
    pfds.clear();
    entries.clear();
    slot_of_fd.clear();
    pfds.push_back(pollfd{r.wake_r, POLLIN, 0});
    int64_t timeout = kDefaultTimeoutMs;
    const int64_t now = MonoNs();
    r.alarms.erase(std::remove_if(r.alarms.begin(), r.alarms.end(),
                                  [](const std::shared_ptr<State>& a) { return !a->active; }),
                   r.alarms.end());
    for (const std::shared_ptr<State>& alarm : r.alarms) {
      State& s = *alarm;
      if (s.cur_action >= 0) {  // part-way through its actions: only a sleep can pause them
        int64_t ms = s.sleeping ? (s.wake_ns - now + 999999) / 1000000 : 0;
        timeout = std::min(timeout, std::max<int64_t>(ms, 0));
        entries.push_back(Entry{alarm, s.generation, -1});
        continue;
      }
      if ((s.events & kEventClose) || s.unwaitable || s.hup_seen) {
        timeout = std::min<int64_t>(timeout, kRecheckMs);
      }
      int slot = -1;
      if (!s.hup_seen) {
        auto found = slot_of_fd.find(s.fd);
        if (found == slot_of_fd.end()) {
          slot = static_cast<int>(pfds.size());
          slot_of_fd.emplace(s.fd, slot);
          pfds.push_back(pollfd{s.fd, 0, 0});
        } else {
          slot = found->second;
        }
        pfds[static_cast<size_t>(slot)].events |= PollEvents(s);
      }
      entries.push_back(Entry{alarm, s.generation, slot});
    }

    lock.unlock();
    int n = poll(pfds.data(), static_cast<nfds_t>(pfds.size()), static_cast<int>(timeout));
    int poll_errno = errno;
    lock.lock();
    if (r.stop) break;
    if (n < 0) {
      if (poll_errno != EINTR) {
        LogLine("danga-socket SocketAlarm: poll: %s", std::strerror(poll_errno));
        lock.unlock();
        usleep(100000);
        lock.lock();
      }
      continue;
    }
    // Evaluate even after a wake-up: every entry is re-validated below, and
    // skipping would let a steady stream of start()/cancel() starve alarms.
    if (pfds[0].revents & POLLIN) DrainWake(r);

    for (Entry& entry : entries) {
      State& s = *entry.alarm;
      if (!s.active || s.generation != entry.generation) continue;  // cancelled or re-armed
      if (s.cur_action >= 0) {
        RunActions(s);
        continue;
      }
      short rev = entry.slot >= 0 ? pfds[static_cast<size_t>(entry.slot)].revents : 0;
      if (!SameFile(s)) {  // descriptor closed or its number reused
        if (s.events & kEventClose) {
          s.cur_action = 0;
          RunActions(s);
        } else {
          Retire(s);
        }
        continue;
      }
      if (!Fires(s, rev)) continue;
      if (!SameFile(s) && !(s.events & kEventClose)) {
        Retire(s);
        continue;
      }
      s.cur_action = 0;
      RunActions(s);
    }
  }
  return nullptr;
}

bool MakeWakePipe(int* read_end, int* write_end) {
  int fds[2];
  if (pipe(fds) != 0) return false;
  for (int fd : fds) {
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
  *read_end = fds[0];
  *write_end = fds[1];
  return true;
}

// Called with life_mu held and mu not held.
bool StartThread(Registry& r, std::string* error) {
  int read_end = -1;
  int write_end = -1;
  if (!MakeWakePipe(&read_end, &write_end)) {
    *error = std::string("pipe: ") + std::strerror(errno);
    return false;
  }
  {
    std::lock_guard<std::mutex> lock(r.mu);
    r.wake_r = read_end;
    r.wake_w = write_end;
    r.stop = false;
  }
  // The thread inherits a full signal mask, so process-directed signals
  // (including the ones our own `sig` actions send) land on other threads.
  sigset_t all;
  sigset_t old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = pthread_create(&r.thread, nullptr, ThreadMain, &r);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (rc != 0) {
    std::lock_guard<std::mutex> lock(r.mu);
    close(r.wake_r);
    close(r.wake_w);
    r.wake_r = r.wake_w = -1;
    *error = std::string("pthread_create: ") + std::strerror(rc);
    return false;
  }
  r.running = true;
  return true;
}

}  // namespace

bool Start(const std::shared_ptr<State>& state, std::vector<int> protected_fds,
           std::string* error) {
  Registry& r = Reg();
  std::lock_guard<std::mutex> life(r.life_mu);
  if (!r.running && !StartThread(r, error)) return false;
  std::lock_guard<std::mutex> lock(r.mu);
  if (state->active) return false;
  state->active = true;
  state->cur_action = -1;
  state->unwaitable = false;
  state->hup_seen = false;
  state->sleeping = false;
  state->generation++;
  state->protected_fds = std::move(protected_fds);
  if (std::find(r.alarms.begin(), r.alarms.end(), state) == r.alarms.end()) {
    r.alarms.push_back(state);
  }
  Wake(r);
  return true;
}

bool Cancel(const std::shared_ptr<State>& state) {
  Registry& r = Reg();
  std::lock_guard<std::mutex> lock(r.mu);
  bool was_active = state->active;
  state->active = false;
  state->sleeping = false;
  if (was_active) {
    r.alarms.erase(std::remove(r.alarms.begin(), r.alarms.end(), state), r.alarms.end());
    Wake(r);
  }
  return was_active;
}

int CurAction(const std::shared_ptr<State>& state) {
  std::lock_guard<std::mutex> lock(Reg().mu);
  return state->cur_action;
}

void AttachEnv() {
  std::lock_guard<std::mutex> lock(Reg().mu);
  Reg().env_count++;
}

void DetachEnv(const void* env_tag) {
  Registry& r = Reg();
  std::lock_guard<std::mutex> life(r.life_mu);
  bool join = false;
  {
    std::lock_guard<std::mutex> lock(r.mu);
    for (const std::shared_ptr<State>& alarm : r.alarms) {
      if (alarm->env_tag == env_tag) {
        alarm->active = false;
        alarm->sleeping = false;
      }
    }
    if (r.env_count > 0) r.env_count--;
    if (r.env_count == 0 && r.running) {
      r.stop = true;
      join = true;
    }
    Wake(r);
  }
  if (!join) return;
  pthread_join(r.thread, nullptr);
  std::lock_guard<std::mutex> lock(r.mu);
  close(r.wake_r);
  close(r.wake_w);
  r.wake_r = r.wake_w = -1;
  r.alarms.clear();
  r.running = false;
  r.stop = false;
}

std::vector<int> WatcherFds() {
  std::lock_guard<std::mutex> lock(Reg().mu);
  std::vector<int> fds;
  if (Reg().wake_r >= 0) fds.push_back(Reg().wake_r);
  if (Reg().wake_w >= 0) fds.push_back(Reg().wake_w);
  return fds;
}

bool HaveRdhup() {
#ifdef POLLRDHUP
  return true;
#else
  return false;
#endif
}

}  // namespace alarm
}  // namespace danga
