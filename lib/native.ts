// The only module that loads the native addon (binding.gyp, src/*.cc). A load
// failure is cached and turned into DS_ERR_NATIVE_UNAVAILABLE by requireNative();
// nothing else in the library depends on the addon being present.
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { DangaSocketError, describe, errnoOf, invalidArg } from './errors';

/** Readiness mask bit: readable (EPOLLIN). */
export const POLL_IN = 1;
/** Readiness mask bit: priority data (EPOLLPRI). */
export const POLL_PRI = 2;
/** Readiness mask bit: writable (EPOLLOUT). */
export const POLL_OUT = 4;
/** Readiness mask bit: error (EPOLLERR). Always reported; libuv stops the poll after it. */
export const POLL_ERR = 8;
/** Readiness mask bit: hang-up or peer shutdown (EPOLLHUP / EPOLLRDHUP). */
export const POLL_HUP = 16;

const POLL_ALL = POLL_IN | POLL_PRI | POLL_OUT | POLL_ERR | POLL_HUP;

/**
 * A libuv `uv_poll_t` on a raw descriptor (src/fd_poll.cc). Every member must be
 * used on the JS thread that created it; the callback runs on that thread.
 */
export interface NativePoll {
  readonly fd: number;
  /** True between `start()` and `stop()`/`close()` (or an error report). */
  readonly active: boolean;
  start(events: number): void;
  stop(): void;
  close(): void;
  ref(): void;
  unref(): void;
  hasRef(): boolean;
}

/** The native half of a SocketAlarm (src/socket_alarm.cc); JS-thread only. */
export interface NativeAlarm {
  start(): boolean;
  cancel(): boolean;
  curAction(): number;
}

/** One encoded action, see `Op` in src/alarm_watcher.h. */
export type NativeActionSpec = readonly (string | number)[];

/** A peer address as `parseSockaddr` reports it: family, address or path, port (0 for unix). */
export type NativeSockaddr = [family: 'inet' | 'inet6' | 'unix', address: string, port: number];

/**
 * The native backend's syscalls (src/epoll_backend.cc); JS-thread only. Hot-path functions
 * return a count or `-errno` instead of throwing. Masks: 1 IN, 4 OUT, 8 ERR, 16 HUP, 32 RDHUP.
 */
export interface NativeEpoll {
  /** Start reporting: `callback(count)` once per loop turn, (fd, mask) pairs in `ready`. */
  /**
   * Reads of up to `readBuffer.length` bytes land in `readBuffer`, larger ones in
   * `bigReadBuffer`. Returns the largest read (undefined from addons without `bigReadBuffer`:
   * then reads stop at `readBuffer.length`).
   */
  init(
    callback: (count: number) => void,
    ready: Int32Array,
    readBuffer: Buffer,
    bigReadBuffer: Buffer,
  ): number | undefined;
  /** Adjust how many things keep the process alive through the epoll poll. */
  ref(delta: number): void;
  read(fd: number, n: number): number;
  write(fd: number, buf: Uint8Array, off: number, len: number): number;
  writev(fd: number, bufs: readonly unknown[], firstOffset: number): number;
  accept(fd: number, out: Int32Array): number;
  socket(family: 0 | 4 | 6): number;
  bind(fd: number, host: string, port: number): number;
  connect(fd: number, host: string, port: number): number;
  listen(fd: number, backlog: number): number;
  /** op 1: add, 2: delete, 3: modify. */
  ctl(fd: number, mask: number, op: 1 | 2 | 3): number;
  /**
   * Many `ctl`s in one call: entry i is (fd, mask, op) at `list[3i..3i+2]`, and its result
   * (0 or -errno) replaces op. Absent from addons built before it (then `ctl` one by one).
   */
  ctlv?: (list: Int32Array, count: number) => number;
  close(fd: number): number;
  release(fd: number): number;
  owns(fd: number): boolean;
  setInt(fd: number, level: number, name: number, value: number): number;
  getInt(fd: number, level: number, name: number): number;
  soError(fd: number): number;
  name(fd: number, peer: boolean): [family: 0 | 4 | 6, address: string, port: number] | number;
  shutdown(fd: number, how: 0 | 1 | 2): number;
  readonly constants: Readonly<Record<string, number>>;
}

/** The functions the addon exports. */
export interface NativeBinding {
  /** True where `setCork` really sets TCP_CORK (Linux); elsewhere it is a no-op. */
  readonly hasTcpCork: boolean;
  /** True where poll() reports a peer shutdown (POLLRDHUP). */
  readonly hasRdhup: boolean;
  /** setsockopt(IPPROTO_TCP, TCP_CORK); throws an errno-style Error (`code`, `errno`, `syscall`). */
  setCork(fd: number, on: boolean): void;
  /** getsockopt(IPPROTO_TCP, TCP_CORK); false where unsupported. */
  getCork(fd: number): boolean;
  /** Descriptors owned by this thread's libuv loop and by the addon itself. */
  nodeOwnedFds(): number[];
  /** Decodes raw `struct sockaddr` bytes; undefined for unsupported families or sizes. */
  parseSockaddr(bytes: Uint8Array): NativeSockaddr | undefined;
  /**
   * One poll(2) with no wait: the mask (1 IN, 2 PRI, 4 OUT, 8 ERR, 16 HUP) or -errno. Absent
   * from addons built before it existed.
   */
  readonly pollNow?: ((fd: number) => number) | undefined;
  /** The native backend; undefined off Linux or in an addon built before it existed. */
  readonly epoll?: NativeEpoll | undefined;
  readonly Poll: new (fd: number, callback: (mask: number) => void) => NativePoll;
  readonly Alarm: new (
    fd: number,
    events: number,
    actions: readonly NativeActionSpec[],
  ) => NativeAlarm;
}

const ADDON_FILE = 'danga_socket.node';

type LoadResult =
  { binding: NativeBinding; error?: undefined } | { binding?: undefined; error: Error };

let loaded: LoadResult | undefined;
let addonPathOverride: string | undefined;

/** The package root: the nearest directory above this file with a package.json (lib/ or dist/lib/). */
function packageRoot(): string {
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) return path.join(__dirname, '..');
    dir = parent;
  }
}

/**
 * The file node-gyp-build picks for `root`: a local build (build/Release) first, else the
 * Node-API prebuild shipped in prebuilds/<platform>-<arch>/ that fits this platform.
 */
function nodeGypBuildPath(root: string): string | undefined {
  try {
    const load: unknown = createRequire(__filename)('node-gyp-build');
    const resolve: unknown =
      typeof load === 'function' ? (load as { path?: unknown }).path : undefined;
    if (typeof resolve !== 'function') return undefined;
    const file: unknown = (resolve as (dir: string) => unknown)(root);
    return typeof file === 'string' ? file : undefined;
  } catch {
    return undefined; // none fits (or node-gyp-build is missing): the other candidates remain
  }
}

function candidateFiles(): string[] {
  if (addonPathOverride !== undefined) return [addonPathOverride];
  const root = packageRoot();
  const files = [
    path.join(root, 'build', 'Release', ADDON_FILE),
    path.join(root, 'build', 'Debug', ADDON_FILE),
  ];
  const picked = nodeGypBuildPath(root);
  if (picked !== undefined && !files.includes(picked)) files.push(picked);
  return files;
}

function isBinding(value: unknown): value is NativeBinding {
  if (typeof value !== 'object' || value === null) return false;
  const functions = ['setCork', 'getCork', 'nodeOwnedFds', 'parseSockaddr', 'Poll', 'Alarm'];
  return (
    functions.every((name) => typeof Reflect.get(value, name) === 'function') &&
    typeof Reflect.get(value, 'hasTcpCork') === 'boolean' &&
    typeof Reflect.get(value, 'hasRdhup') === 'boolean'
  );
}

/** `DANGA_NO_NATIVE=1` (any value but empty or `0`): behave as if the addon were not built. */
function disabledByEnv(): boolean {
  const v = process.env['DANGA_NO_NATIVE'];
  return v !== undefined && v !== '' && v !== '0';
}

function load(): LoadResult {
  if (disabledByEnv()) {
    return { error: new Error('the addon is turned off by DANGA_NO_NATIVE') };
  }
  const files = candidateFiles();
  for (const file of files) {
    if (!fs.existsSync(file)) continue;
    try {
      const mod: { exports: unknown } = { exports: {} };
      process.dlopen(mod, file);
      if (isBinding(mod.exports)) return { binding: mod.exports };
      return { error: new Error(`${file} does not export the expected functions (stale build?)`) };
    } catch (err) {
      return { error: err instanceof Error ? err : new Error(String(err)) };
    }
  }
  return { error: new Error(`addon not found (looked for ${files.join(', ')})`) };
}

/**
 * The addon, loaded on first use; `undefined` if it is not built or failed to
 * load (the failure is cached, so this stays cheap). JS-thread only.
 */
export function nativeBinding(): NativeBinding | undefined {
  loaded ??= load();
  return loaded.binding;
}

/**
 * The addon, or a `DangaSocketError` explaining how to build it.
 * @param feature - what needs the addon, for the message (e.g. `'SocketAlarm'`).
 * @throws DangaSocketError `DS_ERR_NATIVE_UNAVAILABLE` (the load error is the `cause`).
 */
export function requireNative(feature: string): NativeBinding {
  loaded ??= load();
  if (loaded.error === undefined) return loaded.binding;
  throw new DangaSocketError(
    'DS_ERR_NATIVE_UNAVAILABLE',
    `${feature} needs the danga-socket native addon, which is not available: ` +
      `${loaded.error.message}. Build it with \`npm rebuild danga-socket\` ` +
      '(or `npx node-gyp rebuild` in the package directory; python3, make and a C++17 compiler are needed).',
    { cause: loaded.error },
  );
}

/**
 * Internal, for tests: load the addon from `file` instead (or from the default
 * location again with `undefined`), forgetting the cached result. A library
 * that was already loaded stays loaded in the process.
 */
export function _setAddonPathForTesting(file: string | undefined): void {
  addonPathOverride = file;
  loaded = undefined;
}

function checkFd(fd: unknown, where: string): asserts fd is number {
  if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff) {
    throw invalidArg(`${where}: fd must be a non-negative integer, got ${describe(fd)}`);
  }
}

function syscallError(message: string, err: unknown): DangaSocketError {
  const code = errnoOf(err);
  return new DangaSocketError('DS_ERR_SYSCALL', code ? `${message}: ${code}` : message, {
    cause: err,
  });
}

/**
 * Sets or clears `TCP_CORK` on a socket descriptor. JS thread only; never blocks.
 * @returns `true` when the option was really set; `false` when it could not be
 *   (no addon, or not Linux), in which case callers keep a flag only.
 * @throws DangaSocketError `DS_ERR_INVALID_ARG` for a bad fd or flag;
 *   `DS_ERR_SYSCALL` when setsockopt fails, with the errno error (`code`
 *   `'EBADF'`, `'ENOTSOCK'`, `'ENOPROTOOPT'`, `'EOPNOTSUPP'`, ...) as `cause`.
 */
export function setTcpCork(fd: number, on: boolean): boolean {
  checkFd(fd, 'setTcpCork');
  if (typeof on !== 'boolean') {
    throw invalidArg(`setTcpCork: on must be a boolean, got ${describe(on)}`);
  }
  const binding = nativeBinding();
  if (binding === undefined || !binding.hasTcpCork) return false;
  try {
    binding.setCork(fd, on);
  } catch (err) {
    throw syscallError(`setsockopt(TCP_CORK, ${on ? 1 : 0}) on fd ${fd} failed`, err);
  }
  return true;
}

/**
 * Reads `TCP_CORK` (diagnostics and tests). JS thread only.
 * @returns false where TCP_CORK does not exist.
 * @throws DangaSocketError `DS_ERR_INVALID_ARG`, `DS_ERR_NATIVE_UNAVAILABLE`, `DS_ERR_SYSCALL`.
 */
export function getTcpCork(fd: number): boolean {
  checkFd(fd, 'getTcpCork');
  const binding = requireNative('getTcpCork');
  try {
    return binding.getCork(fd);
  } catch (err) {
    throw syscallError(`getsockopt(TCP_CORK) on fd ${fd} failed`, err);
  }
}

/**
 * Level-triggered readiness reports for a raw descriptor that no Node handle
 * owns (a pipe, a FIFO, a native library's socket), on the creating thread's
 * libuv loop. All members must be called on that thread; the callback runs
 * there, once per loop iteration while the condition holds, so it must consume
 * the descriptor (or `stop()`). libuv switches the descriptor to non-blocking
 * mode. Close the poll before closing the descriptor.
 */
export class FdPoll {
  readonly #poll: NativePoll;
  #closed = false;

  /** Use {@link createFdPoll}. */
  constructor(poll: NativePoll) {
    this.#poll = poll;
  }

  /** The watched descriptor. */
  get fd(): number {
    return this.#poll.fd;
  }

  /** True while started (an error report, mask `POLL_ERR`, stops it). */
  get active(): boolean {
    return !this.#closed && this.#poll.active;
  }

  /** True after `close()`. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Starts (or changes) the watch. `POLL_ERR` is always reported; `POLL_HUP`
   * only when requested.
   * @param events - mask of `POLL_IN | POLL_PRI | POLL_OUT | POLL_HUP` (default `POLL_IN`).
   * @throws DangaSocketError `DS_ERR_INVALID_ARG` for a bad mask, `DS_ERR_CLOSED`
   *   after `close()`, `DS_ERR_SYSCALL` (`cause.code` `'EBADF'` when the
   *   descriptor was closed or reused since the poll was created).
   */
  start(events: number = POLL_IN): void {
    if (typeof events !== 'number' || !Number.isInteger(events) || (events & ~POLL_ALL) !== 0) {
      throw invalidArg(
        `FdPoll.start: events must be a mask of POLL_* bits, got ${describe(events)}`,
      );
    }
    if (this.#closed) {
      throw new DangaSocketError(
        'DS_ERR_CLOSED',
        `FdPoll.start: the poll on fd ${this.fd} is closed`,
      );
    }
    try {
      this.#poll.start(events);
    } catch (err) {
      throw syscallError(`FdPoll.start: polling fd ${this.fd} failed`, err);
    }
  }

  /** Stops reporting; `start()` resumes. Idempotent, also after `close()`. */
  stop(): void {
    if (!this.#closed) this.#poll.stop();
  }

  /** Releases the libuv handle (the descriptor stays open). Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#poll.close();
  }

  /** Lets an active poll keep the process alive (the default). */
  ref(): this {
    if (!this.#closed) this.#poll.ref();
    return this;
  }

  /** An active poll no longer keeps the process alive on its own. */
  unref(): this {
    if (!this.#closed) this.#poll.unref();
    return this;
  }

  /** Whether the poll counts towards keeping the process alive. */
  hasRef(): boolean {
    return !this.#closed && this.#poll.hasRef();
  }
}

/**
 * Creates an {@link FdPoll} on the calling thread's loop (not started yet).
 * @param fd - a descriptor that no Node handle watches.
 * @param callback - called with the readiness mask (`POLL_*` bits) on this thread.
 * @throws DangaSocketError `DS_ERR_INVALID_ARG` for bad arguments or a
 *   descriptor that cannot be polled (`cause.code`: `'EBADF'` not open,
 *   `'EEXIST'` already watched by this loop, e.g. a net.Socket's descriptor,
 *   `'EPERM'` a regular file); `DS_ERR_NATIVE_UNAVAILABLE` without the addon.
 */
export function createFdPoll(fd: number, callback: (mask: number) => void): FdPoll {
  checkFd(fd, 'createFdPoll');
  if (typeof callback !== 'function') {
    throw invalidArg(`createFdPoll: callback must be a function, got ${describe(callback)}`);
  }
  const binding = requireNative('OtherFds (createFdPoll)');
  let poll: NativePoll;
  try {
    poll = new binding.Poll(fd, callback);
  } catch (err) {
    const code = errnoOf(err);
    const why =
      code === 'EEXIST'
        ? 'it is already watched by this event loop (a Node handle or another poll owns it)'
        : code === 'EBADF'
          ? 'it is not an open descriptor'
          : code === 'EPERM'
            ? 'epoll cannot watch it (a regular file?)'
            : `the poll could not be created (${code ?? 'unknown error'})`;
    throw new DangaSocketError('DS_ERR_INVALID_ARG', `createFdPoll: cannot poll fd ${fd}: ${why}`, {
      cause: err,
    });
  }
  return new FdPoll(poll);
}

/**
 * Whether the kernel reports a hang-up (POLLHUP: both directions shut, e.g. a Unix socket whose
 * peer is gone) on `fd` now. False where the addon cannot say (not loaded, older build).
 */
export function kernelReportsHup(fd: number): boolean {
  const pollNow = nativeBinding()?.pollNow;
  if (typeof pollNow !== 'function') return false;
  const mask = pollNow(fd);
  return mask > 0 && (mask & POLL_HUP) !== 0;
}
