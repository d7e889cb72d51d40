/**
 * `connect()`: open a client socket with IO::Async::Connector semantics (ordered attempts,
 * per-attempt `onFail`, local binding, `connect` > `bind` > `socket` error precedence), plus
 * timeouts, abort and an opt-in RFC 8305 happy-eyeballs race that also works with local binding.
 */
import * as dns from 'node:dns';
import * as net from 'node:net';
import type * as tls from 'node:tls';
import { DangaSocketError, describe, errnoOf, invalidArg } from './errors';
import { pickBackend } from './internal/backend';
import { clientHandshake } from './internal/tls';
import { NativeConnectAttempt, type NativeSocket } from './native-socket';

/** A TCP peer or local address. `host` is an IP literal; nothing is resolved. */
export interface TcpAddress {
  /** IPv4 or IPv6 literal (`'127.0.0.1'`, `'::1'`, `'fe80::1%eth0'`). */
  readonly host: string;
  /** Port number, 0–65535. */
  readonly port: number;
  /** Must match `host` when given. */
  readonly family?: 4 | 6 | undefined;
}

/** A Unix-domain socket address. */
export interface UnixAddress {
  /** Filesystem path (or Linux abstract name starting with `\0`). */
  readonly path: string;
}

/** Something `connect()` can dial without resolving a name. */
export type Address = TcpAddress | UnixAddress;

/** The system call an attempt failed in, in increasing order of significance. */
export type ConnectSyscall = 'socket' | 'bind' | 'connect';

/** What `onFail` receives for every failed attempt. Plain data: never a live socket. */
export interface ConnectFailure {
  /** `'bind'` for a local-binding failure, `'socket'` when no socket could be created. */
  readonly syscall: ConnectSyscall;
  /** The address the failed call used: the local address for `'bind'`, the peer otherwise. */
  readonly address: Address;
  /** The peer this attempt dialled. */
  readonly peer: Address;
  /** The local address this attempt bound (or tried to bind), if any. */
  readonly local?: TcpAddress;
  /** The OS error, or a `DangaSocketError` (`DS_ERR_TIMEOUT`, `DS_ERR_ABORTED`) for attempts we ended. */
  readonly error: Error;
}

/** One answer of a resolver. `family` may be `4`/`6` or `'IPv4'`/`'IPv6'`. */
export interface LookupResult {
  readonly address: string;
  readonly family: number | string;
}

/** Callback of a {@link LookupFunction}: an array (`all: true`) or, leniently, one address. */
export type LookupCallback = (
  err: NodeJS.ErrnoException | null,
  addresses: readonly LookupResult[] | string,
  family?: number,
) => void;

/**
 * A resolver with the shape of `dns.lookup` (called with `all: true`). A function that returns
 * a promise of the addresses (the `dns.promises.lookup` shape) is accepted as well.
 */
export type LookupFunction = (
  hostname: string,
  options: dns.LookupAllOptions,
  callback: LookupCallback,
) => unknown;

/** {@link ConnectOptions} for `backend: 'native'`: `onConnected` gets the `NativeSocket`. */
export type NativeConnectOptions = Omit<ConnectOptions, 'backend' | 'onConnected' | 'tls'> & {
  readonly backend: 'native';
  readonly onConnected?: ((sock: NativeSocket) => void) | undefined;
};

/** Anything with a bound address, such as a listening `net.Server`. */
export interface PeerLike {
  address(): net.AddressInfo | string | null;
}

/** Options of {@link connect}. Give exactly one target: `host`, `addrs`, `addr`, `path` or `peer`. */
export interface ConnectOptions {
  /** Name or IP literal to resolve with `lookup`; needs `port` or `service`. */
  readonly host?: string | undefined;
  /** Port for `host`, 0–65535. */
  readonly port?: number | undefined;
  /** Port for `host` as a number, a digit string or a well-known name (`'http'`, `'ssh'`, …). */
  readonly service?: string | number | undefined;
  /** Explicit addresses, tried in this order (not filtered by `family`). */
  readonly addrs?: readonly Address[] | undefined;
  /** One explicit address. */
  readonly addr?: Address | undefined;
  /** Unix-domain socket path. */
  readonly path?: string | undefined;
  /** Dial the address a listening server (or `Listener`) is bound to; handy in tests. */
  readonly peer?: PeerLike | undefined;
  /** Address family hint for `host` and `localHost` (0 = any). */
  readonly family?: 0 | 4 | 6 | undefined;
  /** Local address to bind: an IP literal or a name resolved with `lookup`. */
  readonly localHost?: string | undefined;
  /** Local port to bind, 0–65535 (IO::Async silently ignored this; here it is honoured). */
  readonly localPort?: number | undefined;
  /** Resolver; default `dns.lookup`. IP literals are never passed to it. */
  readonly lookup?: LookupFunction | undefined;
  /** Aborting rejects with `DS_ERR_ABORTED` and destroys every attempt in flight. */
  readonly signal?: AbortSignal | undefined;
  /** Limit for the whole operation (resolving included), in ms; `DS_ERR_TIMEOUT`. */
  readonly timeoutMs?: number | undefined;
  /** Limit for each connection attempt, in ms; a timed-out attempt counts as a failed `connect`. */
  readonly attemptTimeoutMs?: number | undefined;
  /** Limit for each name resolution, in ms (IO::Async's resolver default); default 10 000. */
  readonly resolveTimeoutMs?: number | undefined;
  /** Race the addresses per RFC 8305 instead of trying them strictly one after another. */
  readonly happyEyeballs?: boolean | undefined;
  /** Happy eyeballs: delay before the next attempt starts, in ms; default 250. */
  readonly happyEyeballsDelayMs?: number | undefined;
  /** Called with the connected socket just before the promise resolves. */
  readonly onConnected?: ((sock: net.Socket) => void) | undefined;
  /**
   * `'native'`: the attempts are the addon's non-blocking `connect(2)`s and the promise resolves
   * a `NativeSocket` (Linux; `DS_ERR_NATIVE_UNAVAILABLE` without the addon). Default `'node'`:
   * `connect()` itself ignores `DangaSocket.DefaultBackend` (its result type depends on this
   * option); `connectDanga()` honours it.
   */
  readonly backend?: 'node' | 'native' | undefined;
  /** Called with the final error (not a resolve error, unless `onResolveError` is absent). */
  readonly onConnectError?: ((err: DangaSocketError) => void) | undefined;
  /** Called with the real resolver error (IO::Async passed the string `'getaddrinfo'`). */
  readonly onResolveError?: ((err: ResolveError) => void) | undefined;
  /** Called once per failed attempt, including attempts ended by a timeout, abort or a faster winner. */
  readonly onFail?: ((failure: ConnectFailure) => void) | undefined;
  /**
   * Run a TLS handshake on the connected socket (`tls.connect` options; the `socket` is ours):
   * the promise resolves with the `tls.TLSSocket` once the handshake is done, and rejects with
   * `DS_ERR_TLS` if it fails. For a `host` name, `servername` (SNI) and the identity check
   * default to it. `timeoutMs` and `signal` cover the handshake too; `onConnected` gets the
   * TLS socket.
   */
  readonly tls?: tls.ConnectionOptions | undefined;
}

/** `DS_ERR_RESOLVE`: a name (peer or local) or a service name could not be resolved. */
export class ResolveError extends DangaSocketError {
  /** The resolver's own code, e.g. `ENOTFOUND`, `EAI_AGAIN`, `ETIMEOUT`, `EAI_SERVICE`. */
  readonly resolverCode: string;
  /** The name that failed. */
  readonly hostname: string;
  /** Always `'getaddrinfo'`, as in Node's DNS errors. */
  readonly syscall = 'getaddrinfo';

  constructor(
    hostname: string,
    resolverCode: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super('DS_ERR_RESOLVE', message, options);
    this.hostname = hostname;
    this.resolverCode = resolverCode;
  }
}

/**
 * `DS_ERR_CONNECT`: every attempt failed. `which` is the most significant kind of failure seen
 * (`connect` > `bind` > `socket`) and `cause` the **last** error of that kind.
 */
export class ConnectError extends DangaSocketError {
  /** Every attempt's error, in the order they failed. */
  readonly errors: readonly Error[];
  /** The most significant failure kind seen. */
  readonly which: ConnectSyscall;

  constructor(which: ConnectSyscall, errors: readonly Error[], message: string, cause: Error) {
    super('DS_ERR_CONNECT', message, { cause });
    this.which = which;
    this.errors = errors;
  }
}

const DEFAULT_RESOLVE_TIMEOUT_MS = 10_000;
const DEFAULT_HAPPY_EYEBALLS_DELAY_MS = 250;
const MAX_TIMER_MS = 2 ** 31 - 1;

// Node has no getservbyname(); a small table covers the names people actually type.
const SERVICES: Readonly<Record<string, number>> = {
  echo: 7,
  discard: 9,
  daytime: 13,
  ftp: 21,
  ssh: 22,
  telnet: 23,
  smtp: 25,
  domain: 53,
  gopher: 70,
  finger: 79,
  http: 80,
  www: 80,
  pop3: 110,
  nntp: 119,
  ntp: 123,
  imap: 143,
  imap2: 143,
  ldap: 389,
  https: 443,
  submission: 587,
  ldaps: 636,
  imaps: 993,
  pop3s: 995,
  mysql: 3306,
  postgresql: 5432,
  redis: 6379,
  memcache: 11211,
};

type Family = 4 | 6;
type PairFamily = Family | 'unix';

interface LocalSpec {
  /** IP literal, or undefined for the wildcard of the pair's family. */
  readonly host: string | undefined;
  readonly port: number;
  readonly family: 0 | Family;
}

interface Pair {
  readonly peer: Address;
  readonly local: LocalSpec | undefined;
  readonly family: PairFamily;
}

interface Attempt {
  readonly pair: Pair;
  sock: net.Socket | NativeConnectAttempt | undefined;
  timer: NodeJS.Timeout | undefined;
  done: boolean;
}

type Target =
  | { readonly kind: 'host'; readonly host: string; readonly service: string | number }
  | { readonly kind: 'addrs'; readonly addrs: readonly Address[] };

interface Checked {
  readonly target: Target;
  readonly family: 0 | Family;
  readonly localHost: string | undefined;
  readonly localPort: number | undefined;
  readonly lookup: LookupFunction;
  readonly signal: AbortSignal | undefined;
  readonly timeoutMs: number | undefined;
  readonly attemptTimeoutMs: number | undefined;
  readonly resolveTimeoutMs: number;
  readonly happyEyeballs: boolean;
  readonly happyEyeballsDelayMs: number;
  readonly onConnected: ((sock: net.Socket) => void) | undefined;
  readonly native: boolean;
  readonly onConnectError: ((err: DangaSocketError) => void) | undefined;
  readonly onResolveError: ((err: ResolveError) => void) | undefined;
  readonly onFail: ((failure: ConnectFailure) => void) | undefined;
  readonly tls: tls.ConnectionOptions | undefined;
}

/**
 * Connect to a peer, trying each resolved or given address **strictly in order** (or, with
 * `happyEyeballs`, racing them per RFC 8305) until one connects.
 *
 * The socket is created with `allowHalfOpen: true` (what `DangaSocket` requires), and is handed
 * over with none of our listeners left on it. Failed, timed-out and losing attempts are
 * destroyed. Callbacks are never called before `connect()` has returned.
 *
 * The promise settles in every case, callbacks or not. When the failure was delivered to
 * `onConnectError`/`onResolveError`, the rejection is marked handled, so callback-only callers
 * get no unhandled-rejection warning. If a callback throws, the operation stops (sockets
 * destroyed) and the promise rejects with that exception, unhandled unless awaited.
 *
 * @param options - exactly one target, plus the options in {@link ConnectOptions}.
 * @returns the connected socket.
 * @throws `DS_ERR_INVALID_ARG` synchronously for bad options. Rejects with `DS_ERR_RESOLVE`
 *   ({@link ResolveError}), `DS_ERR_CONNECT` ({@link ConnectError}), `DS_ERR_NO_ADDRESS` (no usable
 *   address, e.g. `addrs: []` or only family-mismatched local/peer pairs), `DS_ERR_TIMEOUT`
 *   (`timeoutMs`) or `DS_ERR_ABORTED` (`signal`).
 */
export function connect(options: NativeConnectOptions): Promise<NativeSocket>;
export function connect(options: ConnectOptions): Promise<net.Socket>;
export function connect(
  options: ConnectOptions | NativeConnectOptions,
): Promise<net.Socket | NativeSocket> {
  const checked = checkOptions(options);
  if (checked.tls !== undefined) return connectTls(checked, checked.tls);
  const op = new ConnectOperation(checked);
  op.start();
  return op.promise;
}

/** `connect({ tls })`: the TCP operation (without `onConnected`), then the handshake. */
function connectTls(checked: Checked, tlsOptions: tls.ConnectionOptions): Promise<net.Socket> {
  const deadline = checked.timeoutMs === undefined ? undefined : Date.now() + checked.timeoutMs;
  const { target, onConnected, onConnectError, onResolveError, signal } = checked;
  // A failure delivered to a callback leaves no unhandled rejection, as without tls.
  const delivered = (err: unknown): boolean =>
    (err instanceof ResolveError && onResolveError !== undefined) ||
    (err instanceof DangaSocketError && onConnectError !== undefined);
  const run = async (): Promise<net.Socket> => {
    const op = new ConnectOperation({ ...checked, onConnected: undefined });
    op.start();
    let raw: net.Socket;
    try {
      raw = await op.promise;
    } catch (err) {
      if (delivered(err)) void result.catch(noop);
      throw err;
    }
    const identity = target.kind === 'host' ? target.host : raw.remoteAddress;
    let sock: net.Socket;
    try {
      sock = await clientHandshake(raw, tlsOptions, identity, deadline, signal);
    } catch (err) {
      if (err instanceof DangaSocketError && onConnectError !== undefined) {
        onConnectError(err);
        void result.catch(noop);
      }
      throw err;
    }
    try {
      onConnected?.(sock);
    } catch (err) {
      sock.destroy();
      throw err;
    }
    return sock;
  };
  const result = run();
  return result;
}

// ---------------------------------------------------------------------------------------------
// Argument checking

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

function checkPort(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 65535) {
    throw invalidArg(`${what} must be an integer port 0-65535, got ${describe(value)}`);
  }
  return value;
}

function checkMs(value: unknown, what: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw invalidArg(`${what} must be a finite number of milliseconds > 0, got ${describe(value)}`);
  }
  return Math.min(value, MAX_TIMER_MS);
}

function checkFunction<F>(value: unknown, what: string): F | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'function') {
    throw invalidArg(`${what} must be a function, got ${describe(value)}`);
  }
  return value as F;
}

function checkAddress(value: unknown, what: string): Address {
  if (!isRecord(value))
    throw invalidArg(`${what} must be an address object, got ${describe(value)}`);
  if ('path' in value && value.path !== undefined) {
    if (typeof value.path !== 'string' || value.path === '') {
      throw invalidArg(`${what}.path must be a non-empty string, got ${describe(value.path)}`);
    }
    if (value.host !== undefined || value.port !== undefined) {
      throw invalidArg(`${what} must have either path or host and port, not both`);
    }
    return { path: value.path };
  }
  const { host, port, family } = value;
  if (typeof host !== 'string' || net.isIP(host) === 0) {
    throw invalidArg(
      `${what}.host must be an IP literal (nothing is resolved), got ${describe(host)}`,
    );
  }
  const p = checkPort(port, `${what}.port`);
  const actual = net.isIP(host) === 6 ? 6 : 4;
  if (family !== undefined && family !== actual) {
    throw invalidArg(`${what}.family ${describe(family)} does not match host ${host}`);
  }
  return { host, port: p, family: actual };
}

function peerAddress(peer: unknown): Address {
  if (!isRecord(peer) || typeof peer.address !== 'function') {
    throw invalidArg(
      `peer must have an address() method (a listening server), got ${describe(peer)}`,
    );
  }
  const addr: unknown = (peer as unknown as PeerLike).address();
  if (typeof addr === 'string' && addr !== '') return { path: addr };
  if (isRecord(addr) && typeof addr.address === 'string' && typeof addr.port === 'number') {
    // A server on the unspecified address is reached through loopback of the same family.
    const host =
      addr.address === '0.0.0.0' ? '127.0.0.1' : addr.address === '::' ? '::1' : addr.address;
    return checkAddress({ host, port: addr.port }, 'peer.address()');
  }
  throw invalidArg('peer is not bound to an address (is it listening?)');
}

function checkOptions(options: unknown): Checked {
  if (!isRecord(options))
    throw invalidArg(`connect() options must be an object, got ${describe(options)}`);
  const o = options;
  const modes = (['host', 'addrs', 'addr', 'path', 'peer'] as const).filter(
    (k) => o[k] !== undefined,
  );
  if (modes.length !== 1) {
    throw invalidArg(
      modes.length === 0
        ? 'connect() needs a target: host (with port or service), addrs, addr, path or peer'
        : `connect() takes exactly one target, got ${modes.join(' and ')}`,
    );
  }
  let target: Target;
  switch (modes[0]) {
    case 'host': {
      if (typeof o.host !== 'string' || o.host === '') {
        throw invalidArg(`host must be a non-empty string, got ${describe(o.host)}`);
      }
      if ((o.port === undefined) === (o.service === undefined)) {
        throw invalidArg('host needs exactly one of port or service');
      }
      let service: string | number;
      if (o.port !== undefined) service = checkPort(o.port, 'port');
      else if (typeof o.service === 'number') service = checkPort(o.service, 'service');
      else if (typeof o.service === 'string' && o.service !== '') service = o.service;
      else throw invalidArg(`service must be a port number or a name, got ${describe(o.service)}`);
      target = { kind: 'host', host: o.host, service };
      break;
    }
    case 'addrs': {
      if (!Array.isArray(o.addrs))
        throw invalidArg(`addrs must be an array, got ${describe(o.addrs)}`);
      const list: unknown[] = o.addrs;
      target = { kind: 'addrs', addrs: list.map((a, i) => checkAddress(a, `addrs[${i}]`)) };
      break;
    }
    case 'addr':
      target = { kind: 'addrs', addrs: [checkAddress(o.addr, 'addr')] };
      break;
    case 'path':
      target = { kind: 'addrs', addrs: [checkAddress({ path: o.path }, 'path')] };
      break;
    default:
      target = { kind: 'addrs', addrs: [peerAddress(o.peer)] };
  }
  if (modes[0] !== 'host' && (o.port !== undefined || o.service !== undefined)) {
    throw invalidArg('port and service only go with host');
  }

  const family = o.family ?? 0;
  if (family !== 0 && family !== 4 && family !== 6) {
    throw invalidArg(`family must be 0, 4 or 6, got ${describe(o.family)}`);
  }
  let localHost: string | undefined;
  if (o.localHost !== undefined) {
    if (typeof o.localHost !== 'string' || o.localHost === '') {
      throw invalidArg(`localHost must be a non-empty string, got ${describe(o.localHost)}`);
    }
    localHost = o.localHost;
  }
  const localPort = o.localPort === undefined ? undefined : checkPort(o.localPort, 'localPort');
  if (modes[0] === 'path' && (localHost !== undefined || localPort !== undefined)) {
    throw invalidArg('localHost/localPort cannot be used with a Unix path');
  }
  const signal = o.signal;
  if (
    signal !== undefined &&
    !(
      isRecord(signal) &&
      typeof signal.aborted === 'boolean' &&
      typeof signal.addEventListener === 'function'
    )
  ) {
    throw invalidArg(`signal must be an AbortSignal, got ${describe(signal)}`);
  }
  if (o.happyEyeballs !== undefined && typeof o.happyEyeballs !== 'boolean') {
    throw invalidArg(`happyEyeballs must be a boolean, got ${describe(o.happyEyeballs)}`);
  }
  return {
    target,
    family,
    localHost,
    localPort,
    lookup: checkFunction<LookupFunction>(o.lookup, 'lookup') ?? dns.lookup,
    signal: signal as AbortSignal | undefined,
    timeoutMs: checkMs(o.timeoutMs, 'timeoutMs'),
    attemptTimeoutMs: checkMs(o.attemptTimeoutMs, 'attemptTimeoutMs'),
    resolveTimeoutMs: checkMs(o.resolveTimeoutMs, 'resolveTimeoutMs') ?? DEFAULT_RESOLVE_TIMEOUT_MS,
    happyEyeballs: o.happyEyeballs === true,
    happyEyeballsDelayMs:
      checkMs(o.happyEyeballsDelayMs, 'happyEyeballsDelayMs') ?? DEFAULT_HAPPY_EYEBALLS_DELAY_MS,
    onConnected: checkFunction(o.onConnected, 'onConnected'),
    onConnectError: checkFunction(o.onConnectError, 'onConnectError'),
    onResolveError: checkFunction(o.onResolveError, 'onResolveError'),
    onFail: checkFunction(o.onFail, 'onFail'),
    tls: checkTlsOptions(o.tls),
    native: checkConnectBackend(o.backend, o.tls),
  };
}

function checkConnectBackend(backend: unknown, tlsOptions: unknown): boolean {
  if (backend === undefined) return false;
  const native = pickBackend(backend, 'connect') === 'native';
  if (native && tlsOptions !== undefined) {
    throw invalidArg("connect: tls needs backend 'node' (or NativeSocket.toNetSocket())");
  }
  return native;
}

function checkTlsOptions(value: unknown): tls.ConnectionOptions | undefined {
  if (value === undefined) return undefined;
  if (!isRecord(value)) {
    throw invalidArg(`tls must be a tls.ConnectionOptions object, got ${describe(value)}`);
  }
  if (value.socket !== undefined) throw invalidArg('tls.socket is not allowed: connect() makes it');
  return value;
}

// ---------------------------------------------------------------------------------------------
// Helpers

function toError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return isRecord(value) && typeof value.then === 'function';
}

function familyOf(value: unknown): Family | undefined {
  if (value === 4 || value === 'IPv4') return 4;
  if (value === 6 || value === 'IPv6') return 6;
  return undefined;
}

/** `ip:port`, `[v6]:port` or the path, for messages. */
export function formatAddress(address: Address): string {
  if ('path' in address) return address.path;
  return net.isIPv6(address.host)
    ? `[${address.host}]:${address.port}`
    : `${address.host}:${address.port}`;
}

function syscallOf(err: unknown): ConnectSyscall {
  const syscall = isRecord(err) ? err.syscall : undefined;
  return syscall === 'bind' || syscall === 'socket' ? syscall : 'connect';
}

function pairFamily(address: Address): PairFamily {
  return 'path' in address ? 'unix' : net.isIPv6(address.host) ? 6 : 4;
}

function localAddressOf(local: LocalSpec, family: Family): TcpAddress {
  return { host: local.host ?? (family === 6 ? '::' : '0.0.0.0'), port: local.port, family };
}

/**
 * IO::Async's pairing: local addresses are the outer loop, peers the inner one, and a pair is
 * skipped when both sides have a family and they differ.
 */
function orderedPairs(peers: readonly Address[], locals: readonly LocalSpec[] | undefined): Pair[] {
  if (locals === undefined)
    return peers.map((peer) => ({ peer, local: undefined, family: pairFamily(peer) }));
  const pairs: Pair[] = [];
  for (const local of locals) {
    for (const peer of peers) {
      const family = pairFamily(peer);
      if (family === 'unix' || (local.family !== 0 && local.family !== family)) continue;
      pairs.push({ peer, local, family });
    }
  }
  return pairs;
}

/**
 * RFC 8305 order: peers in resolver order, each bound to the local address(es) of its family,
 * then families interleaved starting with the family of the first address returned.
 */
function happyEyeballsPairs(
  peers: readonly Address[],
  locals: readonly LocalSpec[] | undefined,
): Pair[] {
  const byFamily = new Map<PairFamily, Pair[]>();
  for (const peer of peers) {
    const family = pairFamily(peer);
    const matching =
      locals === undefined
        ? [undefined]
        : family === 'unix'
          ? []
          : locals.filter((l) => l.family === 0 || l.family === family);
    for (const local of matching) {
      const list = byFamily.get(family) ?? [];
      list.push({ peer, local, family });
      byFamily.set(family, list);
    }
  }
  const queues = [...byFamily.values()];
  const pairs: Pair[] = [];
  for (let i = 0; queues.some((q) => i < q.length); i++) {
    for (const q of queues) {
      const pair = q[i];
      if (pair !== undefined) pairs.push(pair);
    }
  }
  return pairs;
}

function noop(): void {}

/** Destroy a socket we gave up on; late errors must not become uncaught exceptions. */
function discard(sock: net.Socket | NativeConnectAttempt | undefined): void {
  if (sock === undefined) return;
  sock.removeAllListeners('connect');
  sock.removeAllListeners('error');
  sock.on('error', noop);
  sock.destroy();
}

// ---------------------------------------------------------------------------------------------
// The operation

class ConnectOperation {
  readonly promise: Promise<net.Socket>;
  private resolvePromise: (sock: net.Socket) => void = noop;
  private rejectPromise: (err: unknown) => void = noop;
  private settled = false;
  private readonly inFlight = new Set<Attempt>();
  private pending: Pair[] = [];
  private readonly errors: Error[] = [];
  private readonly lastByKind = new Map<ConnectSyscall, Error>();
  private readonly cleanups = new Set<() => void>();
  private heTimer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: Checked) {
    this.promise = new Promise<net.Socket>((resolve, reject) => {
      this.resolvePromise = resolve;
      this.rejectPromise = reject;
    });
  }

  start(): void {
    const { signal, timeoutMs } = this.opts;
    if (signal !== undefined && !signal.aborted) {
      const onAbort = (): void => this.abort();
      signal.addEventListener('abort', onAbort, { once: true });
      this.cleanups.add(() => signal.removeEventListener('abort', onAbort));
    }
    if (timeoutMs !== undefined) {
      const timer = setTimeout(() => this.timeout(), timeoutMs);
      this.cleanups.add(() => clearTimeout(timer));
    }
    // A microtask, not nextTick: callbacks must never run inside connect(), and fake timers
    // (which patch nextTick) must not stall the operation.
    void Promise.resolve().then(() => this.run());
  }

  private run(): void {
    if (this.settled) return;
    if (this.opts.signal?.aborted === true) {
      this.abort();
      return;
    }
    const { target, localHost, localPort } = this.opts;
    const peers: Promise<Address[]> =
      target.kind === 'host'
        ? Promise.all([
            this.resolveHost(target.host),
            this.resolveService(target.host, target.service),
          ]).then(([hosts, port]) => hosts.map((h) => ({ host: h.host, port, family: h.family })))
        : Promise.resolve([...target.addrs]);
    let locals: Promise<LocalSpec[] | undefined> = Promise.resolve(undefined);
    if (localHost !== undefined) {
      locals = this.resolveHost(localHost).then((hosts) =>
        hosts.map((h) => ({ host: h.host, port: localPort ?? 0, family: h.family })),
      );
    } else if (localPort !== undefined) {
      locals = Promise.resolve([{ host: undefined, port: localPort, family: 0 }]);
    }
    // Both must succeed (IO::Async's needs_all); the first failure wins.
    Promise.all([peers, locals]).then(
      ([p, l]) => this.begin(p, l),
      (err: unknown) => this.fail(toError(err)),
    );
  }

  private resolveService(host: string, service: string | number): Promise<number> {
    if (typeof service === 'number') return Promise.resolve(service);
    if (/^\d+$/.test(service)) {
      const port = Number(service);
      if (port <= 65535) return Promise.resolve(port);
    }
    const known = SERVICES[service.toLowerCase()];
    if (known !== undefined) return Promise.resolve(known);
    return Promise.reject(
      new ResolveError(
        host,
        'EAI_SERVICE',
        `resolve ${host}: unknown service ${JSON.stringify(service)}`,
      ),
    );
  }

  /** IP literals bypass the resolver (IO::Async's numeric fast path); names go to `lookup`. */
  private resolveHost(host: string): Promise<Array<{ host: string; family: Family }>> {
    const wanted = this.opts.family;
    const keep = (
      list: Array<{ host: string; family: Family }>,
    ): Array<{ host: string; family: Family }> =>
      wanted === 0 ? list : list.filter((a) => a.family === wanted);
    const literal = net.isIP(host);
    if (literal !== 0) return Promise.resolve(keep([{ host, family: literal === 6 ? 6 : 4 }]));

    return new Promise((resolve, reject) => {
      let done = false;
      const finish = (err: unknown, result?: unknown, fam?: unknown): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.cleanups.delete(cancel);
        if (err !== null && err !== undefined) {
          const code = errnoOf(err) ?? 'EAI_FAIL';
          reject(
            new ResolveError(host, code, `resolve ${host}: ${toError(err).message}`, {
              cause: err,
            }),
          );
          return;
        }
        const raw: unknown[] = Array.isArray(result)
          ? (result as unknown[])
          : typeof result === 'string'
            ? [{ address: result, family: fam }]
            : [];
        const list: Array<{ host: string; family: Family }> = [];
        for (const entry of raw) {
          if (!isRecord(entry) || typeof entry.address !== 'string') continue;
          const ip = net.isIP(entry.address);
          if (ip === 0) continue;
          list.push({ host: entry.address, family: familyOf(entry.family) ?? (ip === 6 ? 6 : 4) });
        }
        resolve(keep(list));
      };
      const timer = setTimeout(() => {
        const err = new ResolveError(
          host,
          'ETIMEOUT',
          `resolve ${host}: no answer within ${this.opts.resolveTimeoutMs} ms`,
        );
        done = true;
        this.cleanups.delete(cancel);
        reject(err);
      }, this.opts.resolveTimeoutMs);
      // getaddrinfo cannot be cancelled; once we stop caring, late answers are ignored.
      const cancel = (): void => {
        done = true;
        clearTimeout(timer);
      };
      this.cleanups.add(cancel);
      try {
        const returned = this.opts.lookup(
          host,
          { all: true, family: wanted },
          (err, addresses, family) => finish(err, addresses, family),
        );
        if (isThenable(returned)) {
          returned.then(
            (value) => finish(null, value),
            (err: unknown) => finish(err ?? new Error('lookup failed')),
          );
        }
      } catch (err) {
        finish(err ?? new Error('lookup failed'));
      }
    });
  }

  private begin(peers: readonly Address[], locals: readonly LocalSpec[] | undefined): void {
    if (this.settled) return;
    const pairs = this.opts.happyEyeballs
      ? happyEyeballsPairs(peers, locals)
      : orderedPairs(peers, locals);
    if (pairs.length === 0) {
      const why =
        peers.length === 0
          ? 'the address list is empty'
          : 'no local address has the family of any peer address';
      this.fail(
        new DangaSocketError('DS_ERR_NO_ADDRESS', `connect: no usable address pairs (${why})`),
      );
      return;
    }
    this.pending = pairs;
    this.next();
  }

  /** Start the next attempt; in happy-eyeballs mode also arm the delay for the one after. */
  private next(): void {
    if (this.settled) return;
    if (this.heTimer !== undefined) {
      clearTimeout(this.heTimer);
      this.heTimer = undefined;
    }
    const pair = this.pending.shift();
    if (pair === undefined) return;
    if (this.opts.happyEyeballs && this.pending.length > 0) {
      // RFC 8305 §5: the next attempt starts after the delay even if this one is still pending.
      this.heTimer = setTimeout(() => {
        this.heTimer = undefined;
        this.next();
      }, this.opts.happyEyeballsDelayMs);
    }
    this.launch(pair);
  }

  private launch(pair: Pair): void {
    const attempt: Attempt = { pair, sock: undefined, timer: undefined, done: false };
    this.inFlight.add(attempt);
    const { peer, local, family } = pair;
    let sock: net.Socket | NativeConnectAttempt;
    try {
      if (this.opts.native) {
        sock = new NativeConnectAttempt(peer, local);
      } else if ('path' in peer) {
        sock = net.connect({ path: peer.path, allowHalfOpen: true });
      } else {
        const o: net.TcpNetConnectOpts = { host: peer.host, port: peer.port, allowHalfOpen: true };
        if (family !== 'unix') o.family = family;
        if (local?.host !== undefined) o.localAddress = local.host;
        if (local !== undefined && local.port !== 0) o.localPort = local.port;
        // A bare localPort still binds: Node uses the wildcard address of the peer's family.
        sock = net.connect(o);
      }
    } catch (err) {
      // Node never reports socket(2) itself; a synchronous refusal is the closest thing to it.
      this.attemptFailed(attempt, 'socket', toError(err));
      return;
    }
    attempt.sock = sock;
    sock.on('error', (err) => this.attemptFailed(attempt, syscallOf(err), err));
    sock.once('connect', () => this.attemptSucceeded(attempt));
    const ms = this.opts.attemptTimeoutMs;
    if (ms !== undefined) {
      attempt.timer = setTimeout(() => {
        const err = new DangaSocketError(
          'DS_ERR_TIMEOUT',
          `connect to ${formatAddress(peer)} did not complete within ${ms} ms`,
        );
        this.attemptFailed(attempt, 'connect', err);
      }, ms);
    }
  }

  /** Mark an attempt finished and release its timer and (unless it won) its socket. */
  private retire(attempt: Attempt, keepSocket: boolean): void {
    attempt.done = true;
    this.inFlight.delete(attempt);
    if (attempt.timer !== undefined) clearTimeout(attempt.timer);
    attempt.timer = undefined;
    if (!keepSocket) discard(attempt.sock);
  }

  private failure(attempt: Attempt, syscall: ConnectSyscall, error: Error): ConnectFailure {
    const { peer, local, family } = attempt.pair;
    const localAddr =
      local !== undefined && family !== 'unix' ? localAddressOf(local, family) : undefined;
    const address = syscall === 'bind' && localAddr !== undefined ? localAddr : peer;
    return localAddr === undefined
      ? { syscall, address, peer, error }
      : { syscall, address, peer, local: localAddr, error };
  }

  /** Run a user callback; a throw stops the whole operation. */
  private call<A>(fn: ((arg: A) => void) | undefined, arg: A): boolean {
    if (fn === undefined) return true;
    try {
      fn(arg);
      return true;
    } catch (err) {
      this.settle();
      this.rejectPromise(err);
      return false;
    }
  }

  private attemptFailed(attempt: Attempt, syscall: ConnectSyscall, error: Error): void {
    if (attempt.done || this.settled) return;
    this.retire(attempt, false);
    this.errors.push(error);
    this.lastByKind.set(syscall, error);
    if (!this.call(this.opts.onFail, this.failure(attempt, syscall, error))) return;
    if (this.settled) return;
    if (this.pending.length > 0) {
      this.next(); // a failure frees the way: the next address starts now, not after the delay
    } else if (this.inFlight.size === 0) {
      this.fail(this.connectError());
    }
  }

  private connectError(): ConnectError {
    const which: ConnectSyscall = this.lastByKind.has('connect')
      ? 'connect'
      : this.lastByKind.has('bind')
        ? 'bind'
        : 'socket';
    const cause = this.lastByKind.get(which) ?? new Error('no attempt was made');
    const n = this.errors.length;
    return new ConnectError(
      which,
      [...this.errors],
      `${which}: ${cause.message} (${n} attempt${n === 1 ? '' : 's'} failed)`,
      cause,
    );
  }

  private attemptSucceeded(attempt: Attempt): void {
    if (attempt.done || this.settled) return;
    const sock = attempt.sock;
    if (sock === undefined) return;
    this.retire(attempt, true);
    sock.removeAllListeners('error');
    sock.removeAllListeners('connect');
    // Losers of a happy-eyeballs race: destroyed, and reported like any other failed attempt.
    for (const loser of [...this.inFlight]) {
      this.retire(loser, false);
      const err = new DangaSocketError(
        'DS_ERR_ABORTED',
        `attempt to ${formatAddress(loser.pair.peer)} abandoned: ${formatAddress(attempt.pair.peer)} connected first`,
      );
      if (!this.call(this.opts.onFail, this.failure(loser, 'connect', err))) {
        discard(sock);
        return;
      }
    }
    this.pending = [];
    this.settle();
    // A native attempt hands over its connected NativeSocket (typed by connect()'s overloads).
    const result = (sock instanceof NativeConnectAttempt ? sock.socket : sock) as net.Socket;
    try {
      this.opts.onConnected?.(result);
    } catch (err) {
      discard(sock);
      this.rejectPromise(err);
      return;
    }
    this.resolvePromise(result);
  }

  /** Stop everything: timers, abort listener, in-flight attempts (reported via `onFail` if `reportAs`). */
  private settle(reportAs?: DangaSocketError): void {
    if (this.settled) return;
    this.settled = true;
    for (const cleanup of this.cleanups) cleanup();
    this.cleanups.clear();
    if (this.heTimer !== undefined) clearTimeout(this.heTimer);
    this.heTimer = undefined;
    this.pending = [];
    const inFlight = [...this.inFlight];
    for (const attempt of inFlight) this.retire(attempt, false);
    if (reportAs === undefined || this.opts.onFail === undefined) return;
    for (const attempt of inFlight) {
      try {
        this.opts.onFail(this.failure(attempt, 'connect', reportAs));
      } catch {
        // The operation already failed with reportAs; a throwing onFail cannot change that.
      }
    }
  }

  private timeout(): void {
    if (this.settled) return;
    const ms = this.opts.timeoutMs ?? 0;
    const last = this.errors[this.errors.length - 1];
    const err = new DangaSocketError(
      'DS_ERR_TIMEOUT',
      `connect did not complete within ${ms} ms`,
      last === undefined ? undefined : { cause: last },
    );
    this.fail(err, err);
  }

  private abort(): void {
    if (this.settled) return;
    const err = new DangaSocketError('DS_ERR_ABORTED', 'connect was aborted', {
      cause: this.opts.signal?.reason,
    });
    this.fail(err, err);
  }

  private fail(err: Error, reportInFlightAs?: DangaSocketError): void {
    if (this.settled) return;
    this.settle(reportInFlightAs);
    const { onResolveError, onConnectError } = this.opts;
    let deliver: (() => void) | undefined;
    if (err instanceof ResolveError && onResolveError !== undefined)
      deliver = () => onResolveError(err);
    else if (err instanceof DangaSocketError && onConnectError !== undefined)
      deliver = () => onConnectError(err);
    if (deliver === undefined) {
      this.rejectPromise(err);
      return;
    }
    try {
      deliver();
    } catch (thrown) {
      this.rejectPromise(thrown);
      return;
    }
    // Delivered to a callback: callback-only callers must not see an unhandled rejection.
    this.promise.catch(noop);
    this.rejectPromise(err);
  }
}
