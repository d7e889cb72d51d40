// SocketAlarm: IO::SocketAlarm for Node. A native watcher thread notices that
// a socket's peer went away and acts (signal, shutdown, fork/exec, ...) even
// while the JS thread is blocked in synchronous work.
import * as net from 'node:net';
import * as os from 'node:os';
import { DangaSocketError, describe, errnoOf, invalidArg } from './errors';
import { osFd } from './internal/node-internals';
import { requireNative } from './native';
import type { NativeActionSpec, NativeAlarm, NativeBinding } from './native';

/** The peer shut down its sending side, or the socket hung up or errored (POLLRDHUP/POLLHUP/POLLERR). */
export const EVENT_SHUT = 0x01;
/** A non-consuming peek reads 0 bytes (cannot be waited for while unread data is pending). */
export const EVENT_EOF = 0x02;
/** The watched descriptor number was closed or reused by this process (checked every 500 ms). */
export const EVENT_CLOSE = 0x04;
/** Data is readable (POLLIN). */
export const EVENT_IN = 0x08;
/** Priority / out-of-band data is readable (POLLPRI). */
export const EVENT_PRI = 0x10;

const EVENT_ALL = EVENT_SHUT | EVENT_EOF | EVENT_CLOSE | EVENT_IN | EVENT_PRI;
const EVENT_NAMES: readonly [number, string][] = [
  [EVENT_SHUT, 'SHUT'],
  [EVENT_EOF, 'EOF'],
  [EVENT_CLOSE, 'CLOSE'],
  [EVENT_IN, 'IN'],
  [EVENT_PRI, 'PRI'],
];

/** A signal by name (`'SIGTERM'`) or number. */
export type SignalSpec = NodeJS.Signals | number;

/**
 * A peer address to match with getpeername(): `{ address, port }` (IP literal),
 * `{ path }` (Unix socket), or raw `struct sockaddr` bytes (sockaddr_in,
 * sockaddr_in6 or sockaddr_un).
 */
export type PeerAddress =
  Uint8Array | { readonly address: string; readonly port: number } | { readonly path: string };

/** Target of `close`: a descriptor Node does not own, or every descriptor connected to a peer. */
export type CloseTarget = number | PeerAddress;

/** Target of `shut_r`/`shut_w`/`shut_rw`: a descriptor, a socket, or every descriptor connected to a peer. */
export type ShutdownTarget = number | net.Socket | PeerAddress;

/** One entry of a SocketAlarm's action list, run in order by the watcher thread. */
export type SocketAlarmAction =
  | readonly ['sig']
  | readonly ['sig', SignalSpec]
  | readonly ['kill', SignalSpec, number]
  | readonly ['kill_children']
  | readonly ['kill_children', SignalSpec]
  | readonly ['close', CloseTarget, ...CloseTarget[]]
  | readonly ['shut_r' | 'shut_w' | 'shut_rw', ShutdownTarget, ...ShutdownTarget[]]
  | readonly ['run' | 'exec', string, ...string[]]
  | readonly ['sleep', number];

/** A peer address after validation. */
export type NormalizedPeer =
  | { readonly family: 'inet' | 'inet6'; readonly address: string; readonly port: number }
  | { readonly family: 'unix'; readonly path: string };

/** An action after validation: one target each, signals as numbers, `sig` as `kill` of this process. */
export type NormalizedAction =
  | readonly ['kill', number, number]
  | readonly ['kill_children', number]
  | readonly ['close' | 'shut_r' | 'shut_w' | 'shut_rw', number | NormalizedPeer]
  | readonly ['run' | 'exec', string, ...string[]]
  | readonly ['sleep', number];

/** Options of `new SocketAlarm(...)`. */
export interface SocketAlarmOptions {
  /** The socket to watch: a connected `net.Socket` (TLS too) or an open socket descriptor. */
  socket: net.Socket | number;
  /** `EVENT_*` mask; default `EVENT_SHUT` (`EVENT_SHUT | EVENT_EOF` without POLLRDHUP). */
  events?: number | undefined;
  /** Actions run in order when the alarm fires; default (also for `[]`) `[['sig', 'SIGALRM']]`. */
  actions?: readonly SocketAlarmAction[] | undefined;
}

const SHUT_HOW = { shut_r: 0, shut_w: 1, shut_rw: 2 } as const;
const SHUT_NAME = { shut_r: 'SHUT_RD', shut_w: 'SHUT_WR', shut_rw: 'SHUT_RDWR' } as const;
const MAX_SIGNAL = 64;

let warnedNoRdhup = false;

function isList(value: unknown): value is readonly unknown[] {
  return Array.isArray(value);
}

function isFdNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= 0x7fffffff;
}

function socketFd(sock: net.Socket, where: string): number {
  if (sock.destroyed) throw invalidArg(`${where}: the socket is destroyed`);
  const fd = osFd(sock);
  if (fd === undefined || !isFdNumber(fd)) {
    throw invalidArg(
      `${where}: the socket has no OS descriptor (not connected yet, or not a Unix platform)`,
    );
  }
  return fd;
}

function parseSignal(value: unknown, where: string): number {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= MAX_SIGNAL) {
    return value;
  }
  if (typeof value === 'string' && /^SIG[A-Z0-9]+$/.test(value)) {
    const signal: unknown = Reflect.get(os.constants.signals, value);
    if (typeof signal === 'number') return signal;
  }
  throw invalidArg(
    `${where}: signal must be a name such as 'SIGTERM' or a number 1-${MAX_SIGNAL}, got ${describe(value)}`,
  );
}

function parsePeer(value: unknown, binding: NativeBinding, where: string): NormalizedPeer {
  if (value instanceof Uint8Array) {
    const parsed = binding.parseSockaddr(value);
    if (parsed === undefined) {
      throw invalidArg(
        `${where}: ${value.length} bytes are not a sockaddr_in, sockaddr_in6 or sockaddr_un`,
      );
    }
    const [family, address, port] = parsed;
    return family === 'unix' ? { family, path: address } : { family, address, port };
  }
  if (typeof value === 'object' && value !== null && !(value instanceof net.Socket)) {
    const pathValue: unknown = Reflect.get(value, 'path');
    if (pathValue !== undefined) {
      if (
        typeof pathValue !== 'string' ||
        pathValue.length === 0 ||
        Buffer.byteLength(pathValue) > 107 ||
        pathValue.includes('\0')
      ) {
        throw invalidArg(
          `${where}: path must be a non-empty Unix socket path, got ${describe(pathValue)}`,
        );
      }
      return { family: 'unix', path: pathValue };
    }
    const address: unknown = Reflect.get(value, 'address');
    const port: unknown = Reflect.get(value, 'port');
    const version = typeof address === 'string' ? net.isIP(address) : 0;
    if (typeof address !== 'string' || version === 0) {
      throw invalidArg(`${where}: address must be an IP literal, got ${describe(address)}`);
    }
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
      throw invalidArg(`${where}: port must be an integer 1-65535, got ${describe(port)}`);
    }
    return { family: version === 6 ? 'inet6' : 'inet', address, port };
  }
  throw invalidArg(
    `${where}: expected a descriptor, a peer address or raw sockaddr bytes, got ${describe(value)}`,
  );
}

function parseTarget(
  command: 'close' | 'shut_r' | 'shut_w' | 'shut_rw',
  value: unknown,
  binding: NativeBinding,
  where: string,
): number | NormalizedPeer {
  if (value instanceof net.Socket) {
    if (command === 'close') {
      throw invalidArg(
        `${where}: 'close' cannot target a net.Socket: libuv owns its descriptor and closing it ` +
          "behind Node's back can abort the process. Use ['shut_rw', socket] instead.",
      );
    }
    return socketFd(value, where);
  }
  if (typeof value === 'number') {
    if (!isFdNumber(value)) {
      throw invalidArg(
        `${where}: a descriptor must be a non-negative integer, got ${describe(value)}`,
      );
    }
    if (command === 'close' && binding.nodeOwnedFds().includes(value)) {
      throw invalidArg(
        `${where}: 'close' cannot target fd ${value}: a Node handle owns it, and closing it behind ` +
          `libuv's back can abort the process. Use ['shut_rw', ${value}] instead.`,
      );
    }
    // The native backend's descriptors (NativeSockets, native listeners) are ours as libuv's are
    // Node's: closed under them, their objects would read and write whatever reuses the number.
    if (command === 'close' && binding.epoll?.owns(value) === true) {
      throw invalidArg(
        `${where}: 'close' cannot target fd ${value}: the native backend owns it (a NativeSocket ` +
          `or native listener), and closing it behind the backend's back lets its objects use ` +
          `whatever reuses the number. Use ['shut_rw', ${value}] instead.`,
      );
    }
    return value;
  }
  return parsePeer(value, binding, where);
}

function parseArgv(args: readonly unknown[], where: string): [string, ...string[]] {
  const argv: string[] = [];
  for (const arg of args) {
    if (typeof arg !== 'string' || arg.includes('\0')) {
      throw invalidArg(`${where}: arguments must be strings without NUL, got ${describe(arg)}`);
    }
    argv.push(arg);
  }
  const [command, ...rest] = argv;
  if (command === undefined || command === '') {
    throw invalidArg(`${where}: a command (argv[0]) is required`);
  }
  return [command, ...rest];
}

function normalizeActions(value: unknown, binding: NativeBinding): NormalizedAction[] {
  if (value === undefined || (isList(value) && value.length === 0)) {
    return [['kill', os.constants.signals.SIGALRM, process.pid]];
  }
  if (!isList(value)) {
    throw invalidArg(`SocketAlarm: actions must be an array of actions, got ${describe(value)}`);
  }
  const out: NormalizedAction[] = [];
  value.forEach((spec: unknown, index) => {
    const where = `SocketAlarm: actions[${index}]`;
    if (!isList(spec) || typeof spec[0] !== 'string') {
      throw invalidArg(
        `${where} must be an array starting with a command name, got ${describe(spec)}`,
      );
    }
    const [command, ...args] = spec;
    const arity = (min: number, max: number): void => {
      if (args.length < min || args.length > max) {
        const expected = min === max ? `${min}` : `${min}-${max}`;
        throw invalidArg(
          `${where}: '${command}' takes ${expected} argument(s), got ${args.length}`,
        );
      }
    };
    switch (command) {
      case 'sig':
        arity(0, 1);
        out.push([
          'kill',
          args.length === 0 ? os.constants.signals.SIGALRM : parseSignal(args[0], where),
          process.pid,
        ]);
        break;
      case 'kill': {
        arity(2, 2);
        const pid = args[1];
        if (
          typeof pid !== 'number' ||
          !Number.isInteger(pid) ||
          pid === 0 ||
          pid === -1 ||
          Math.abs(pid) > 0x7fffffff
        ) {
          throw invalidArg(
            `${where}: pid must be an integer other than 0 and -1 (negative: a process group), got ${describe(pid)}`,
          );
        }
        out.push(['kill', parseSignal(args[0], where), pid]);
        break;
      }
      case 'kill_children':
        arity(0, 1);
        out.push([
          'kill_children',
          args.length === 0 ? os.constants.signals.SIGTERM : parseSignal(args[0], where),
        ]);
        break;
      case 'close':
      case 'shut_r':
      case 'shut_w':
      case 'shut_rw':
        arity(1, Infinity);
        for (const target of args)
          out.push([command, parseTarget(command, target, binding, where)]);
        break;
      case 'run':
      case 'exec':
        arity(1, Infinity);
        out.push([command, ...parseArgv(args, where)]);
        break;
      case 'sleep': {
        arity(1, 1);
        const seconds = args[0];
        if (
          typeof seconds !== 'number' ||
          !Number.isFinite(seconds) ||
          seconds < 0 ||
          seconds > 1e9
        ) {
          throw invalidArg(
            `${where}: sleep takes a finite number of seconds >= 0, got ${describe(seconds)}`,
          );
        }
        out.push(['sleep', seconds]);
        break;
      }
      default:
        throw invalidArg(
          `${where}: unknown command ${JSON.stringify(command)} ` +
            '(sig, kill, kill_children, close, shut_r, shut_w, shut_rw, run, exec, sleep)',
        );
    }
  });
  return out;
}

function peerSpec(peer: NormalizedPeer): (string | number)[] {
  return peer.family === 'unix' ? ['unix', peer.path, 0] : [peer.family, peer.address, peer.port];
}

// Opcodes match `Op` in src/alarm_watcher.h.
function encodeAction(action: NormalizedAction): NativeActionSpec {
  switch (action[0]) {
    case 'kill':
      return [1, action[1], action[2]];
    case 'kill_children':
      return [2, action[1]];
    case 'close':
    case 'shut_r':
    case 'shut_w':
    case 'shut_rw': {
      const [command, target] = action;
      if (typeof target === 'number') {
        return command === 'close' ? [3, target] : [4, SHUT_HOW[command], target];
      }
      return command === 'close'
        ? [5, ...peerSpec(target)]
        : [6, SHUT_HOW[command], ...peerSpec(target)];
    }
    case 'run':
      return [7, ...action.slice(1)];
    case 'exec':
      return [8, ...action.slice(1)];
    case 'sleep':
      return [9, action[1]];
  }
}

function describePeer(peer: NormalizedPeer): string {
  if (peer.family === 'unix') return `unix ${peer.path}`;
  return peer.family === 'inet6'
    ? `inet6 [${peer.address}]:${peer.port}`
    : `inet ${peer.address}:${peer.port}`;
}

function describeAction(action: NormalizedAction): string {
  switch (action[0]) {
    case 'kill':
      return `kill sig=${action[1]} pid=${action[2]}`;
    case 'kill_children':
      return `kill_children sig=${action[1]}`;
    case 'sleep':
      return `sleep ${action[1].toFixed(3)}s`;
    case 'run':
    case 'exec': {
      const argv = action
        .slice(1)
        .map((arg) => `'${arg}'`)
        .join(',');
      return action[0] === 'run' ? `fork,fork,exec(${argv})` : `exec(${argv})`;
    }
    case 'close':
    case 'shut_r':
    case 'shut_w':
    case 'shut_rw': {
      const [command, target] = action;
      const verb = command === 'close' ? 'close' : `shutdown ${SHUT_NAME[command]}`;
      return typeof target === 'number'
        ? `${verb} ${target}`
        : `${verb} peername ${describePeer(target)}`;
    }
  }
}

/**
 * Watches a socket from a native background thread and, when the chosen event
 * happens (by default: the peer went away), runs a precompiled action list from
 * that thread — while the JS thread may be blocked in synchronous work.
 *
 * Threads: construct and call every member on the JS thread (main or worker)
 * that created the alarm. `start`, `cancel` and `curAction` take the watcher's
 * lock and may briefly block while an action runs; once `cancel()` returns no
 * further action of this alarm runs. Each start fires at most once. A JS signal
 * handler for a `sig` action runs only when the JS thread is free again; a
 * signal without a handler whose default is to terminate ends the process at once.
 *
 * An armed alarm keeps working when its object is no longer referenced; it is
 * cancelled when its `net.Socket` emits `'close'`, when you call `cancel()` or
 * dispose it, and when its thread's environment shuts down.
 */
export class SocketAlarm {
  /** The watched descriptor. */
  readonly fd: number;
  /** The `EVENT_*` mask in use. */
  readonly events: number;
  /** The validated action list (`sig` shown as `kill` of this process; one target per entry). */
  readonly actions: readonly NormalizedAction[];
  readonly #native: NativeAlarm;
  readonly #socket: net.Socket | undefined;
  #listening = false;
  readonly #onSocketClose = (): void => {
    this.#listening = false;
    this.cancel();
  };

  /**
   * Builds the alarm (not started; see {@link SocketAlarm.start} and {@link socketAlarm}).
   * @throws DangaSocketError `DS_ERR_INVALID_ARG` for any bad option: not an open
   *   socket, an unknown event bit, a malformed action, an unknown signal, or a
   *   `close` action on a descriptor Node owns (use `shut_rw`);
   *   `DS_ERR_NATIVE_UNAVAILABLE` when the addon is not built.
   */
  constructor(options: SocketAlarmOptions) {
    const binding = requireNative('SocketAlarm');
    if (typeof options !== 'object' || options === null) {
      throw invalidArg(`SocketAlarm: options must be an object, got ${describe(options)}`);
    }
    const { socket, events, actions } = options;
    if (socket instanceof net.Socket) {
      this.fd = socketFd(socket, 'SocketAlarm');
      this.#socket = socket;
    } else if (isFdNumber(socket)) {
      this.fd = socket;
      this.#socket = undefined;
    } else {
      throw invalidArg(
        `SocketAlarm: socket must be a net.Socket or a descriptor number, got ${describe(socket)}`,
      );
    }
    this.events = normalizeEvents(events, binding);
    this.actions = normalizeActions(actions, binding);
    try {
      this.#native = new binding.Alarm(this.fd, this.events, this.actions.map(encodeAction));
    } catch (err) {
      const code = errnoOf(err);
      const message =
        code === 'ENOTSOCK' || code === 'EBADF'
          ? `SocketAlarm: fd ${this.fd} is not an open socket (${code})`
          : `SocketAlarm: the addon refused the alarm: ${err instanceof Error ? err.message : String(err)}`;
      throw new DangaSocketError('DS_ERR_INVALID_ARG', message, { cause: err });
    }
  }

  /** Number of entries in {@link SocketAlarm.actions}. */
  get actionCount(): number {
    return this.actions.length;
  }

  /**
   * -1 before the alarm fires; k while action k runs or sleeps; `actionCount`
   * once finished. An alarm whose descriptor was closed or reused (without
   * `EVENT_CLOSE`) retires silently and also reads as finished.
   */
  get curAction(): number {
    return this.#native.curAction();
  }

  /** True once the alarm fired (`curAction >= 0`). May change right after you read it. */
  get triggered(): boolean {
    return this.curAction >= 0;
  }

  /** True once every action ran (`curAction >= actionCount`). */
  get finished(): boolean {
    return this.curAction >= this.actions.length;
  }

  /**
   * Arms the alarm. A finished alarm is re-armed (`curAction` back to -1).
   * @returns true if this changed anything; false if it was already armed or
   *   its `net.Socket` is already destroyed.
   * @throws DangaSocketError `DS_ERR_SYSCALL` if the watcher thread cannot be started.
   */
  start(): boolean {
    if (this.#socket?.destroyed === true) return false;
    let changed: boolean;
    try {
      changed = this.#native.start();
    } catch (err) {
      throw new DangaSocketError(
        'DS_ERR_SYSCALL',
        'SocketAlarm.start: the watcher thread could not be started',
        {
          cause: err,
        },
      );
    }
    if (this.#socket !== undefined && !this.#listening) {
      this.#socket.once('close', this.#onSocketClose);
      this.#listening = true;
    }
    return changed;
  }

  /**
   * Disarms the alarm, waiting for a running action to end. `curAction` keeps its value.
   * @returns true if the alarm was armed (or part-way through its actions);
   *   false if it was never started, already cancelled, or finished.
   */
  cancel(): boolean {
    const wasArmed = this.#native.cancel();
    if (this.#listening && this.#socket !== undefined) {
      this.#socket.off('close', this.#onSocketClose);
      this.#listening = false;
    }
    return wasArmed;
  }

  /** Same as `cancel()`, for `using alarm = socketAlarm(...)`. */
  [Symbol.dispose](): void {
    this.cancel();
  }

  /**
   * IO::SocketAlarm's description: `watch fd: N`, `event mask:` with every set
   * bit's name, `actions:`, then one line per action; every line ends in `\n`.
   */
  toString(): string {
    const mask = EVENT_NAMES.filter(([bit]) => (this.events & bit) !== 0)
      .map(([, name]) => ` ${name}`)
      .join('');
    const lines = [`watch fd: ${this.fd}`, `event mask:${mask}`, 'actions:'];
    this.actions.forEach((action, index) => {
      lines.push(`${String(index).padStart(4)}: ${describeAction(action)}`);
    });
    return `${lines.join('\n')}\n`;
  }
}

function normalizeEvents(events: unknown, binding: NativeBinding): number {
  if (events === undefined) return binding.hasRdhup ? EVENT_SHUT : EVENT_SHUT | EVENT_EOF;
  if (
    typeof events !== 'number' ||
    !Number.isInteger(events) ||
    events <= 0 ||
    (events & ~EVENT_ALL) !== 0
  ) {
    throw invalidArg(
      `SocketAlarm: events must be a non-empty mask of EVENT_* bits (1-${EVENT_ALL}), got ${describe(events)}`,
    );
  }
  if (!binding.hasRdhup && (events & EVENT_SHUT) !== 0 && (events & EVENT_EOF) === 0) {
    if (!warnedNoRdhup) {
      warnedNoRdhup = true;
      process.emitWarning(
        'SocketAlarm: this platform has no POLLRDHUP; EVENT_SHUT also uses EVENT_EOF',
        'DangaSocketWarning',
      );
    }
    return events | EVENT_EOF;
  }
  return events;
}

/**
 * Builds and starts a {@link SocketAlarm}: `socketAlarm(req.socket)` signals
 * SIGALRM to this process when the client disconnects. The second argument may
 * be the action list when no event mask is given. JS thread only.
 * @throws DangaSocketError as {@link SocketAlarm} and {@link SocketAlarm.start}.
 */
export function socketAlarm(
  socket: net.Socket | number,
  events?: number,
  actions?: readonly SocketAlarmAction[],
): SocketAlarm;
export function socketAlarm(
  socket: net.Socket | number,
  actions: readonly SocketAlarmAction[],
): SocketAlarm;
export function socketAlarm(
  socket: net.Socket | number,
  eventsOrActions?: number | readonly SocketAlarmAction[],
  actions?: readonly SocketAlarmAction[],
): SocketAlarm {
  if (isList(eventsOrActions) && actions !== undefined) {
    throw invalidArg('socketAlarm: pass the actions either second or third, not both');
  }
  const alarm = isList(eventsOrActions)
    ? new SocketAlarm({ socket, actions: eventsOrActions })
    : new SocketAlarm({ socket, events: eventsOrActions, actions });
  alarm.start();
  return alarm;
}
