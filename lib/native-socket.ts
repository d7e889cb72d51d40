import * as net from 'node:net';
import { constants as osConstants } from 'node:os';
import { getSystemErrorName } from 'node:util';
import { DangaSocketError, describe, invalidArg } from './errors';
import { kOwner } from './internal';
import { nativeBinding, requireNative, type NativeEpoll } from './native';

/**
 * `NativeSocket`: an OS descriptor owned by the addon's native backend (Linux), and the one
 * private level-triggered epoll set that polls every such descriptor. The addon drains the set
 * once per libuv turn and makes one JS call with every ready (fd, mask) pair; each pair goes to
 * the descriptor's target (its channel, or a pending connect). JS-thread only.
 */

const E = osConstants.errno;
export const EAGAIN = E.EAGAIN;

/** Something that wants the readiness of one descriptor. */
export interface NativeTarget {
  onEvents(mask: number): void;
}

let epollBinding: NativeEpoll | undefined;
let unavailable: Error | undefined;
/** By descriptor: who gets its readiness (a dense array: descriptors are small integers). */
const targets: (NativeTarget | undefined)[] = [];
const ready = new Int32Array(2000);
/**
 * The read buffers: `read(2)` lands in one of them, then JS copies out (or hands out a view).
 * Reads of up to 64 KiB (nearly all) use SHARED, larger ones SHARED_BIG (up to 1 MiB). SHARED
 * stays below malloc's mmap threshold (128 KiB), so it comes from the heap: measured here, the
 * kernel's copies into and out of a buffer in an mmap'd region of its own cost about 40 % more
 * system time per 16 KiB echo (docs/benchmarks.md).
 */
export const SHARED = Buffer.allocUnsafeSlow(64 * 1024);
export const SHARED_BIG = Buffer.allocUnsafeSlow(1024 * 1024);
/** The largest read the addon does (SHARED's size with an addon that has no big buffer). */
export let maxRead = SHARED.length;

let afterReady: () => void = () => {};

/** Run `fn` after each batch of readiness has reached its targets (the loop's fast wake-up). */
export function setAfterReady(fn: () => void): void {
  afterReady = fn;
}

function onReady(count: number): void {
  for (let i = 0; i < count; i++) {
    const t = targets[ready[2 * i] as number];
    // A target's handler must not throw (channels only record state and notify the loop).
    if (t !== undefined) t.onEvents(ready[2 * i + 1] as number);
  }
  afterReady();
}

/** The addon's backend, or undefined (no addon, not Linux, or an addon built without it). */
export function nativeEpollOrUndefined(): NativeEpoll | undefined {
  if (epollBinding !== undefined) return epollBinding;
  if (unavailable !== undefined) return undefined;
  const b = nativeBinding();
  if (b?.epoll === undefined) {
    unavailable = new Error(
      b === undefined
        ? 'the addon did not load'
        : 'the addon has no epoll backend (not Linux, or a stale build)',
    );
    return undefined;
  }
  maxRead = b.epoll.init(onReady, ready, SHARED, SHARED_BIG) ?? SHARED.length;
  epollBinding = b.epoll;
  return epollBinding;
}

/**
 * The native backend, or a `DS_ERR_NATIVE_UNAVAILABLE` error saying how to get it.
 * @throws DangaSocketError `DS_ERR_NATIVE_UNAVAILABLE`
 */
export function nativeEpoll(feature = "backend: 'native'"): NativeEpoll {
  const ep = nativeEpollOrUndefined();
  if (ep !== undefined) return ep;
  requireNative(feature); // throws with the load error and build instructions
  throw new DangaSocketError(
    'DS_ERR_NATIVE_UNAVAILABLE',
    `${feature} needs the native backend (Linux epoll): ${unavailable?.message ?? 'unavailable'}. ` +
      'Rebuild the addon with `npm rebuild danga-socket`.',
    { cause: unavailable },
  );
}

/** Route `fd`'s readiness to `t` (undefined: nobody). */
export function setTarget(fd: number, t: NativeTarget | undefined): void {
  targets[fd] = t;
}

/** An errno-style error as Node makes them: `code`, negative `errno`, `syscall`. */
export function errnoError(neg: number, syscall: string, extra?: string): Error {
  let code: string;
  try {
    code = getSystemErrorName(neg);
  } catch {
    code = `E${-neg}`;
  }
  const err = new Error(`${syscall} ${code}${extra !== undefined ? ` ${extra}` : ''}`);
  return Object.assign(err, { code, errno: neg, syscall });
}

/**
 * As `errnoError`, for a syscall on an address (bind, connect): with Node's `address` and
 * `port` fields (no port for a Unix path) and the address in the message, as `net` reports.
 */
export function errnoErrorAt(neg: number, syscall: string, address: string, port?: number): Error {
  const where = port === undefined ? address : `${address}:${port}`;
  const err = errnoError(neg, syscall, where);
  return Object.assign(err, port === undefined ? { address } : { address, port });
}

const kCreate = Symbol('danga.nativeCreate');
/** The listening NativeSockets. */
const listeners = new WeakSet<object>();
/** NativeSocket internals: close now / stop owning (hand to Node). */
export const kDestroy = Symbol('danga.nativeDestroy');
export const kRelease = Symbol('danga.nativeRelease');
/** NativeSocket byte counters, kept by its channel. */
export const kBytesIn = Symbol('danga.nativeBytesIn');
export const kBytesOut = Symbol('danga.nativeBytesOut');

/** Address family of a `name()` result, as `net` spells it. */
function familyName(f: number): string | undefined {
  return f === 4 ? 'IPv4' : f === 6 ? 'IPv6' : undefined;
}

/**
 * An OS socket descriptor owned by the native backend (Linux): what `Listener.listen({ backend:
 * 'native' })` hands to `onAccept` and `connect({ backend: 'native' })` resolves. Wrap it with
 * `new MyObject(nativeSocket)`, give it to Node with `toNetSocket()` (TLS, streams), or
 * `destroy()` it; an unwrapped NativeSocket that is dropped keeps its descriptor open.
 * Addresses are read from the kernel on each access. JS thread only.
 */
export class NativeSocket {
  /** @internal -1 once destroyed or handed to Node */
  private _fd: number;
  /** @internal a listening socket (kept aside: one field less on every connection) */
  get isListener(): boolean {
    return listeners.has(this);
  }
  /** @internal the object that wraps it */
  [kOwner]: object | undefined = undefined;
  /** @internal bytes read / written through the native backend */
  [kBytesIn] = 0;
  /** @internal */
  [kBytesOut] = 0;

  /** Not public: NativeSockets come from `Listener.listen`, `connect` and `accept`. */
  constructor(token: symbol, fd: number, listener: boolean) {
    if (token !== kCreate) {
      throw invalidArg('NativeSocket is created by Listener.listen or connect, not directly');
    }
    this._fd = fd;
    if (listener) listeners.add(this);
  }

  /** @internal */
  static [kCreate](fd: number, listener: boolean): NativeSocket {
    return new NativeSocket(kCreate, fd, listener);
  }

  /** The OS descriptor; -1 once destroyed or handed to Node. */
  get fd(): number {
    return this._fd;
  }

  /** Always true, as on the `net.Socket`s the library wraps: nothing ends our side but us. */
  get allowHalfOpen(): true {
    return true;
  }

  /** Bytes received on this socket so far (as `net.Socket#bytesRead`). */
  get bytesRead(): number {
    return this[kBytesIn];
  }

  /** Bytes the kernel took for sending so far (as `net.Socket#bytesWritten`). */
  get bytesWritten(): number {
    return this[kBytesOut];
  }

  /** True once destroyed or handed to Node. */
  get destroyed(): boolean {
    return this._fd < 0;
  }

  private name(peer: boolean): [number, string, number] | undefined {
    if (this._fd < 0) return undefined;
    const r = nativeEpoll().name(this._fd, peer);
    return typeof r === 'number' ? undefined : r;
  }

  /** The peer's IP address (undefined for a listener, a Unix socket, or once closed). */
  get remoteAddress(): string | undefined {
    const n = this.name(true);
    return n !== undefined && n[0] !== 0 ? n[1] : undefined;
  }

  /** The peer's port. */
  get remotePort(): number | undefined {
    const n = this.name(true);
    return n !== undefined && n[0] !== 0 ? n[2] : undefined;
  }

  /** `'IPv4'` or `'IPv6'`. */
  get remoteFamily(): string | undefined {
    const n = this.name(true);
    return n !== undefined ? familyName(n[0]) : undefined;
  }

  /** Our bound IP address (or the Unix path). */
  get localAddress(): string | undefined {
    return this.name(false)?.[1];
  }

  /** Our bound port. */
  get localPort(): number | undefined {
    const n = this.name(false);
    return n !== undefined && n[0] !== 0 ? n[2] : undefined;
  }

  /** `'IPv4'`, `'IPv6'` or undefined (Unix). */
  get localFamily(): string | undefined {
    const n = this.name(false);
    return n !== undefined ? familyName(n[0]) : undefined;
  }

  /** setsockopt; a refusal throws, except `EOPNOTSUPP` on a Unix socket when `unixOk`. */
  private setOpt(level: string, name: string, value: number, what: string, unixOk = false): void {
    const ep = nativeEpoll();
    const k = ep.constants;
    const rc = ep.setInt(this._fd, k[level] ?? -1, k[name] ?? -1, value);
    if (rc < 0 && !(unixOk && rc === -E.EOPNOTSUPP && this.localFamily === undefined)) {
      const cause = errnoError(rc, 'setsockopt', what);
      throw new DangaSocketError('DS_ERR_SYSCALL', `setsockopt(${what}): ${cause.message}`, {
        cause,
      });
    }
  }

  /**
   * TCP_NODELAY on or off (default on). Ignored on Unix sockets and once closed.
   * @throws DangaSocketError `DS_ERR_INVALID_ARG`, `DS_ERR_SYSCALL`.
   */
  setNoDelay(on = true): this {
    if (typeof on !== 'boolean')
      throw invalidArg(`setNoDelay expects a boolean, got ${describe(on)}`);
    // Straight to setsockopt (an accepted socket's hot path): only a refusal pays for the
    // getsockname that tells a Unix socket (nothing to set) from a real failure.
    if (this._fd >= 0) this.setOpt('IPPROTO_TCP', 'TCP_NODELAY', on ? 1 : 0, 'TCP_NODELAY', true);
    return this;
  }

  /**
   * SO_KEEPALIVE on or off; `initialDelayMs` > 0 sets TCP_KEEPIDLE (rounded up to seconds).
   * @throws DangaSocketError `DS_ERR_INVALID_ARG`, `DS_ERR_SYSCALL`.
   */
  setKeepAlive(on = false, initialDelayMs = 0): this {
    if (typeof on !== 'boolean') {
      throw invalidArg(`setKeepAlive expects a boolean, got ${describe(on)}`);
    }
    if (
      typeof initialDelayMs !== 'number' ||
      !Number.isFinite(initialDelayMs) ||
      initialDelayMs < 0
    ) {
      throw invalidArg(
        `setKeepAlive: initialDelayMs must be >= 0, got ${describe(initialDelayMs)}`,
      );
    }
    if (this._fd < 0 || this.localFamily === undefined) return this;
    this.setOpt('SOL_SOCKET', 'SO_KEEPALIVE', on ? 1 : 0, 'SO_KEEPALIVE');
    if (on && initialDelayMs > 0) {
      this.setOpt('IPPROTO_TCP', 'TCP_KEEPIDLE', Math.ceil(initialDelayMs / 1000), 'TCP_KEEPIDLE');
    }
    return this;
  }

  /**
   * Half-close: `shutdown(fd, SHUT_WR)`, our FIN (as `net.Socket#end()` without data). The peer
   * reads EOF; reading goes on. Bytes still in a wrapping object's write queue are not sent
   * after it. Ignored once closed or reset.
   * @throws DangaSocketError `DS_ERR_INVALID_ARG` on a listener; `DS_ERR_SYSCALL` if it fails.
   */
  end(): this {
    if (this.isListener) throw invalidArg('NativeSocket.end: a listening socket has no FIN');
    if (this._fd < 0) return this;
    const rc = nativeEpoll().shutdown(this._fd, 1);
    // ENOTCONN: the connection is already gone (reset); its object sees that on its own.
    if (rc < 0 && rc !== -E.ENOTCONN) {
      const cause = errnoError(rc, 'shutdown');
      throw new DangaSocketError('DS_ERR_SYSCALL', `shutdown(SHUT_WR): ${cause.message}`, {
        cause,
      });
    }
    return this;
  }

  /**
   * Close the descriptor now. For a socket an open object wraps, use the object's `close()`
   * instead (this throws). Idempotent.
   * @throws DangaSocketError `DS_ERR_INVALID_ARG` while an open DangaSocket wraps it.
   */
  destroy(): void {
    this.checkUnwrapped('destroy');
    // A closed object's deferred close releases it at the end of the iteration.
    if (this[kOwner] !== undefined) return;
    this[kDestroy]();
  }

  /** @internal close(2) through the addon (deferred-close phase, Reset, unwrapped destroy). */
  [kDestroy](): void {
    const fd = this._fd;
    if (fd < 0) return;
    this._fd = -1;
    targets[fd] = undefined;
    nativeEpoll().close(fd);
  }

  /** @internal stop owning the descriptor and return it (the caller hands it to Node). */
  [kRelease](): number {
    const fd = this._fd;
    this._fd = -1;
    if (fd >= 0) {
      targets[fd] = undefined;
      nativeEpoll().release(fd);
    }
    return fd;
  }

  private checkUnwrapped(what: string): void {
    const owner = this[kOwner] as { closed?: boolean } | undefined;
    if (owner !== undefined && owner.closed === false) {
      throw invalidArg(
        `NativeSocket.${what}: an open DangaSocket wraps it (use its close() or stealSocket())`,
      );
    }
  }

  /**
   * Hand the descriptor to Node: a `net.Socket` on the same connection (e.g. for TLS). The
   * NativeSocket is consumed (`fd` becomes -1).
   * @throws DangaSocketError `DS_ERR_INVALID_ARG` if destroyed, a listener, or wrapped by an open object.
   */
  toNetSocket(): net.Socket {
    this.checkUnwrapped('toNetSocket');
    if (this.isListener)
      throw invalidArg('toNetSocket: a listening socket cannot become a net.Socket');
    if (this._fd < 0)
      throw invalidArg('toNetSocket: the NativeSocket was destroyed or already handed over');
    return fdToNetSocket(this[kRelease](), false);
  }
}

/** A `net.Socket` on `fd` (which Node now owns); `paused` as an accepted socket is. */
export function fdToNetSocket(fd: number, paused: boolean): net.Socket {
  const opts = { fd, allowHalfOpen: true, readable: true, writable: true, pauseOnCreate: paused };
  return new net.Socket(opts);
}

/** Wrap a descriptor the addon created and owns. */
export function adoptFd(fd: number, listener: boolean): NativeSocket {
  return NativeSocket[kCreate](fd, listener);
}

/** Family code for the addon from an IP literal (0 = Unix path). */
function familyOf(host: string): 4 | 6 {
  return net.isIPv6(host) ? 6 : 4;
}

/** Options of a native listening socket. */
export interface NativeListenSpec {
  host?: string | undefined;
  port?: number | undefined;
  path?: string | undefined;
  backlog?: number | undefined;
  reusePort?: boolean | undefined;
}

/**
 * A listening NativeSocket (SO_REUSEADDR; `reusePort` sets SO_REUSEPORT). `host` must be an IP
 * literal here (resolved by the caller).
 * @throws an errno-style error from socket/bind/listen.
 */
export function listenNative(spec: NativeListenSpec): NativeSocket {
  const ep = nativeEpoll();
  const k = ep.constants;
  const unix = spec.path !== undefined;
  const host = spec.path ?? spec.host ?? '127.0.0.1';
  const fd = ep.socket(unix ? 0 : familyOf(host));
  if (fd < 0) throw errnoError(fd, 'socket');
  const fail = (rc: number, syscall: string): never => {
    ep.close(fd);
    throw errnoErrorAt(rc, syscall, host, unix ? undefined : (spec.port ?? 0));
  };
  if (!unix) {
    let rc = ep.setInt(fd, k.SOL_SOCKET ?? 1, k.SO_REUSEADDR ?? 2, 1);
    if (rc < 0) fail(rc, 'setsockopt');
    if (spec.reusePort === true) {
      rc = ep.setInt(fd, k.SOL_SOCKET ?? 1, k.SO_REUSEPORT ?? 15, 1);
      if (rc < 0) fail(rc, 'setsockopt');
    }
  }
  let rc = ep.bind(fd, host, unix ? -1 : (spec.port ?? 0));
  if (rc < 0) fail(rc, 'bind');
  // As Node: no backlog, or 0, means 511.
  rc = ep.listen(fd, spec.backlog || 511);
  if (rc < 0) fail(rc, 'listen');
  return adoptFd(fd, true);
}

/**
 * One outgoing non-blocking `connect(2)`, shaped like a connecting `net.Socket` for the
 * Connector: emits `'connect'` (then `socket` is the connected NativeSocket) or `'error'`
 * (an errno-style error with `syscall` 'socket', 'bind' or 'connect'). `destroy()` abandons it.
 * While pending it keeps the process alive, as a connecting net.Socket does.
 */
export class NativeConnectAttempt implements NativeTarget {
  private fd = -1;
  private done = false;
  private listeners: { connect: (() => void)[]; error: ((err: Error) => void)[] } = {
    connect: [],
    error: [],
  };
  socket: NativeSocket | undefined = undefined;

  constructor(
    readonly peer: { host: string; port: number } | { path: string },
    readonly local: { host?: string | undefined; port?: number | undefined } | undefined,
  ) {
    const ep = nativeEpoll();
    ep.ref(1);
    // Report on the next tick: listeners attach after construction, as with net.connect.
    process.nextTick(() => this.begin(ep));
  }

  on(event: 'connect' | 'error', fn: ((err: Error) => void) | (() => void)): this {
    (this.listeners[event] as unknown[]).push(fn);
    return this;
  }

  once(event: 'connect' | 'error', fn: ((err: Error) => void) | (() => void)): this {
    return this.on(event, fn);
  }

  removeAllListeners(event?: 'connect' | 'error'): this {
    if (event === undefined || event === 'connect') this.listeners.connect = [];
    if (event === undefined || event === 'error') this.listeners.error = [];
    return this;
  }

  private begin(ep: NativeEpoll): void {
    if (this.done) return;
    const peer = this.peer;
    const unix = 'path' in peer;
    const host = unix ? peer.path : peer.host;
    const fd = ep.socket(unix ? 0 : familyOf(host));
    if (fd < 0) return this.fail(errnoError(fd, 'socket'));
    this.fd = fd;
    const local = this.local;
    if (!unix && local !== undefined && (local.host !== undefined || (local.port ?? 0) !== 0)) {
      const lhost = local.host ?? (familyOf(host) === 6 ? '::' : '0.0.0.0');
      const rc = ep.bind(fd, lhost, local.port ?? 0);
      if (rc < 0) return this.fail(errnoErrorAt(rc, 'bind', lhost, local.port ?? 0));
    }
    const rc = ep.connect(fd, host, unix ? -1 : peer.port);
    if (rc === 0) {
      this.succeed();
      return;
    }
    if (rc !== -E.EINPROGRESS && rc !== -E.EAGAIN) {
      return this.fail(errnoErrorAt(rc, 'connect', host, unix ? undefined : peer.port));
    }
    targets[fd] = this;
    const add = ep.ctl(fd, 4, 1);
    if (add < 0) this.fail(errnoError(add, 'epoll_ctl'));
  }

  /** Writable (or an error): the connect finished; SO_ERROR says how. */
  onEvents(): void {
    if (this.done || this.fd < 0) return;
    const ep = nativeEpoll();
    const soErr = ep.soError(this.fd);
    if (soErr !== 0) {
      const peer = this.peer;
      const neg = soErr < 0 ? soErr : -soErr;
      this.fail(
        'path' in peer
          ? errnoErrorAt(neg, 'connect', peer.path)
          : errnoErrorAt(neg, 'connect', peer.host, peer.port),
      );
      return;
    }
    // Connected: out of the set until an object wraps it (its channel adds it again).
    ep.ctl(this.fd, 0, 2);
    this.succeed();
  }

  private succeed(): void {
    this.finish();
    const fd = this.fd;
    targets[fd] = undefined;
    this.fd = -1;
    this.socket = adoptFd(fd, false);
    for (const fn of this.listeners.connect) fn();
  }

  private fail(err: Error): void {
    this.destroyFd();
    this.finish();
    for (const fn of this.listeners.error) fn(err);
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    nativeEpoll().ref(-1);
  }

  private destroyFd(): void {
    if (this.fd < 0) return;
    targets[this.fd] = undefined;
    nativeEpoll().close(this.fd);
    this.fd = -1;
  }

  /** Abandon the attempt (closes its descriptor; a connected socket not yet wrapped too). */
  destroy(): void {
    this.destroyFd();
    this.finish();
    if (this.socket !== undefined && this.socket[kOwner] === undefined) this.socket[kDestroy]();
  }
}
