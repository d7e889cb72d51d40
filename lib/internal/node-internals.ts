import { channel } from 'node:diagnostics_channel';
import type * as net from 'node:net';
// Named imports: a namespace import compiles to an object of getters, one call per use.
import { Server, Socket } from 'node:net';

/**
 * The one module that touches Node's private `net` fields; everything else uses public API.
 *
 * - `unsentBytes(sock)`: what libuv has not written yet (`_handle.writeQueueSize`).
 * - `osFd(sock | server)`: the descriptor (`_handle.fd`).
 * - `installFastAccept(server, onread, created)`: accepted sockets read into one shared buffer
 *   (the public `onread` option), which `net.Server` has no option for; we replace the listen
 *   handle's `onconnection` and build the socket exactly as Node's own does.
 *
 * Shapes are checked before use: the `net.Server` and `Socket#_destroy` fields at load, Node's
 * `onconnection` source on the first install (cached per function), the handle fields' types
 * on each call. A mismatch falls back to public API: `writableLength`, no descriptor, Node's
 * own accept with 'data' events. `DANGA_FAST_ACCEPT=0` (read once, at load) turns fast accept
 * off.
 */

/** A stream or listen handle (libuv `TCPWrap`, `PipeWrap`, `TLSWrap`, a cluster handle). */
interface Handle {
  writeQueueSize?: unknown;
  fd?: unknown;
  onconnection?: unknown;
}

/** Node's accept callback, called with the listen handle as `this`. */
type OnConnection = (this: unknown, err: number, clientHandle: unknown) => void;

/** The accepted socket's libuv handle, as Node's `onconnection` uses it. */
interface ClientHandle {
  setNoDelay?: (on: boolean) => unknown;
  setKeepAlive?: (on: boolean, delayS: number) => unknown;
}

/** The `net.Server` fields Node's `onconnection` reads (its constructor sets them). */
interface ServerFields {
  _handle: Handle | null;
  _connections: number;
  maxConnections?: number | null;
  blockList?: unknown;
  allowHalfOpen?: boolean;
  pauseOnConnect?: boolean;
  highWaterMark?: unknown;
  noDelay?: boolean;
  keepAlive?: boolean;
  /** Seconds (the constructor divides the option by 1000). */
  keepAliveInitialDelay?: unknown;
}

interface SocketFields {
  _handle: Handle | null;
  server: net.Server | null;
  _server: net.Server | null;
}

/** `DANGA_FAST_ACCEPT=0` turns the fast accept path off (any other value, or none: on). */
let fastAcceptOn = process.env['DANGA_FAST_ACCEPT'] !== '0';
/** Tests: behave as if every private field had an unexpected shape. */
let mismatchSimulated = false;

/** Whether listeners created from now on try the fast accept path. */
export function isFastAcceptOn(): boolean {
  return fastAcceptOn;
}

/** @internal Tests: turn fast accept on or off for listeners created from now on. */
export function setFastAccept(on: boolean): void {
  fastAcceptOn = on;
}

/** @internal Tests: pretend Node's private fields all have an unexpected shape (or stop). */
export function simulateShapeMismatch(on: boolean): void {
  mismatchSimulated = on;
}

function has(obj: object, key: string): boolean {
  return key in obj;
}

function sourceOf(fn: unknown): string {
  return typeof fn === 'function' ? Function.prototype.toString.call(fn) : '';
}

/**
 * Why the `net.Server` and socket fields are not what this module expects, or null.
 * `server` is a fresh `net.Server`; `socketProto` is `net.Socket.prototype`.
 */
export function netShapeProblem(server: object, socketProto: object): string | null {
  const s = server as Partial<ServerFields>;
  if (!has(server, '_handle') || s._handle !== null) return 'net.Server has no _handle field';
  if (s._connections !== 0) return 'net.Server has no _connections count';
  if (typeof (server as { _emitCloseIfDrained?: unknown })._emitCloseIfDrained !== 'function') {
    return 'net.Server has no _emitCloseIfDrained';
  }
  if (!has(socketProto, '_handle')) return 'net.Socket has no _handle field';
  // A socket whose `_server` we set must be counted out when destroyed, as Node's are.
  const destroy = sourceOf((socketProto as { _destroy?: unknown })._destroy);
  if (!/this\._server\._connections--/.test(destroy) || !destroy.includes('_emitCloseIfDrained')) {
    return 'net.Socket#_destroy does not count connections out of _server';
  }
  return null;
}

/** Server fields Node's `onconnection` may read; all but `blockList` (Node 22+) must appear. */
const SERVER_READS = [
  '_connections',
  'allowHalfOpen',
  'emit',
  'highWaterMark',
  'keepAlive',
  'keepAliveInitialDelay',
  'maxConnections',
  'noDelay',
  'pauseOnConnect',
];
const OPTIONAL_SERVER_READS = ['blockList'];
/** The `new Socket({...})` options it passes: we pass the same ones. */
const SOCKET_OPTIONS = [
  'allowHalfOpen',
  'handle',
  'pauseOnCreate',
  'readable',
  'readableHighWaterMark',
  'writable',
  'writableHighWaterMark',
];
const SOCKET_FIELD_WRITES = ['_server', 'server'];
const SOCKET_SYMBOL_WRITES = ['kSetKeepAlive', 'kSetKeepAliveInitialDelay', 'kSetNoDelay'];
const CLIENT_HANDLE_USES = ['close', 'getpeername', 'getsockname', 'setKeepAlive', 'setNoDelay'];

function namesIn(src: string, re: RegExp): string[] {
  return [...new Set([...src.matchAll(re)].map((m) => m[1] ?? ''))].sort();
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * Why `fn` is not the `onconnection` our fast path reproduces, or null. Node 20, 22, 24 and 26
 * pass: the fast path sets every field theirs sets, from the same server fields. A Node that
 * reads another server field or passes another socket option fails, and keeps its own accept.
 */
export function onconnectionShapeProblem(fn: unknown): string | null {
  const src = sourceOf(fn);
  if (!/^function onconnection\s*\(err, clientHandle\)/.test(src)) {
    return 'onconnection source is not available';
  }
  const reads = namesIn(src, /\bself\.([\w$]+)/g);
  const unknown = reads.filter(
    (r) => !SERVER_READS.includes(r) && !OPTIONAL_SERVER_READS.includes(r),
  );
  if (unknown.length > 0) return `onconnection reads server fields ${unknown.join(', ')}`;
  const missing = SERVER_READS.filter((r) => !reads.includes(r));
  if (missing.length > 0) return `onconnection no longer reads ${missing.join(', ')}`;
  const opts = /new Socket\(\{([^}]*)\}\)/.exec(src);
  const keys = opts === null ? [] : namesIn(opts[1] ?? '', /([\w$]+)\s*:/g);
  if (!sameList(keys, SOCKET_OPTIONS)) return `onconnection passes socket options ${keys.join()}`;
  const writes = namesIn(src, /\bsocket\.([\w$]+)\s*=[^=]/g);
  if (!sameList(writes, SOCKET_FIELD_WRITES)) return `onconnection sets ${writes.join()}`;
  const symbols = namesIn(src, /\bsocket\[([\w$]+)\]\s*=[^=]/g);
  if (symbols.some((s) => !SOCKET_SYMBOL_WRITES.includes(s))) {
    return `onconnection sets ${symbols.join()}`;
  }
  if (/\bsocket\.[\w$]+\(/.test(src)) return 'onconnection calls socket methods';
  const uses = namesIn(src, /\bclientHandle\.([\w$]+)/g);
  if (uses.some((u) => !CLIENT_HANDLE_USES.includes(u))) {
    return `onconnection uses clientHandle.${uses.join(', clientHandle.')}`;
  }
  if (!src.includes('self._connections++') || !src.includes("self.emit('connection', socket)")) {
    return 'onconnection does not count and emit the connection as expected';
  }
  return null;
}

/** On our replacement `onconnection`: Node's, which it delegates to. */
const kOriginal = Symbol('danga.originalOnconnection');
const serverSocketChannel = channel('net.server.socket');

const loadProblem = netShapeProblem(new Server(), Socket.prototype);
/** Verdicts on `onconnection` functions seen so far (one per Node, plus test doubles). */
const verdicts = new WeakMap<object, string | null>();

/** Why the fast accept path is off, or null if `installFastAccept` may use it. */
export function fastAcceptProblem(server?: net.Server): string | null {
  if (!fastAcceptOn) return 'turned off (DANGA_FAST_ACCEPT=0)';
  if (mismatchSimulated) return 'shape mismatch simulated';
  if (loadProblem !== null) return loadProblem;
  if (server === undefined) return null;
  const handle = (server as unknown as ServerFields)._handle;
  if (typeof handle !== 'object' || handle === null) return 'the server is not listening';
  const current = handle.onconnection;
  if (typeof current !== 'function') return 'the listen handle has no onconnection';
  const fn: object = (current as { [kOriginal]?: OnConnection })[kOriginal] ?? current;
  let verdict = verdicts.get(fn);
  if (verdict === undefined) {
    verdict = onconnectionShapeProblem(fn);
    verdicts.set(fn, verdict);
  }
  return verdict;
}

/**
 * Make `server` (listening) create its plain accepted sockets with `onread`; `created` sees
 * each before its 'connection' event. Everything that is not the plain case goes to Node's own
 * `onconnection`: an accept error, a connection `maxConnections` may refuse (whatever the
 * running Node makes of the value), a server with a `blockList`. Idempotent.
 * @returns false if the fast path is off or the shapes differ: Node's accept stays.
 */
export function installFastAccept(
  server: net.Server,
  onread: net.OnReadOpts,
  created: (sock: net.Socket) => void,
): boolean {
  if (fastAcceptProblem(server) !== null) return false;
  const s = server as unknown as ServerFields;
  const handle = s._handle as Handle;
  const current = handle.onconnection as OnConnection & { [kOriginal]?: OnConnection };
  if (current[kOriginal] !== undefined) return true;
  const original = current;
  const fast = function onconnection(this: unknown, err: number, clientHandle: unknown): void {
    const max = s.maxConnections;
    // Node 20 limits only a truthy maxConnections, 21+ any non-null one (0 drops all): a
    // connection either rule might drop is Node's to handle, with its 'drop' event.
    if (
      err ||
      typeof clientHandle !== 'object' ||
      clientHandle === null ||
      (max !== null && max !== undefined && s._connections >= max) ||
      (s.blockList !== null && s.blockList !== undefined)
    ) {
      original.call(this, err, clientHandle);
      return;
    }
    const ch = clientHandle as ClientHandle;
    const noDelay = s.noDelay === true && typeof ch.setNoDelay === 'function';
    const keepAlive = s.keepAlive === true && typeof ch.setKeepAlive === 'function';
    const delayS = typeof s.keepAliveInitialDelay === 'number' ? s.keepAliveInitialDelay : 0;
    // Node's options, plus onread; noDelay/keepAlive set the socket's flags as Node does.
    const opts = {
      handle: clientHandle,
      allowHalfOpen: s.allowHalfOpen,
      pauseOnCreate: s.pauseOnConnect,
      readable: true,
      writable: true,
      readableHighWaterMark: s.highWaterMark,
      writableHighWaterMark: s.highWaterMark,
      onread,
      noDelay,
      keepAlive,
      keepAliveInitialDelay: keepAlive ? delayS * 1000 : undefined,
    };
    const socket = new Socket(opts);
    created(socket);
    if (noDelay) ch.setNoDelay?.(true);
    if (keepAlive) ch.setKeepAlive?.(true, delayS);
    s._connections++;
    const fields = socket as unknown as SocketFields;
    fields.server = server;
    fields._server = server;
    server.emit('connection', socket);
    if (serverSocketChannel.hasSubscribers) serverSocketChannel.publish({ socket });
  } as OnConnection & { [kOriginal]?: OnConnection };
  fast[kOriginal] = original;
  handle.onconnection = fast;
  return true;
}

/** The socket's handle, or null (not connected yet, destroyed, or a shape we don't know). */
function handleOf(obj: net.Socket | net.Server): Handle | null {
  if (mismatchSimulated || loadProblem !== null) return null;
  const h = (obj as unknown as { _handle?: unknown })._handle;
  return typeof h === 'object' && h !== null ? h : null;
}

/**
 * Bytes of this socket's writes that libuv has not handed to the kernel yet. Where the handle
 * does not count them (no such field, or 0 while the stream still holds bytes: a `TLSWrap` on
 * Node 22+ reports 0 while its write is pending), the stream's `writableLength`, which also
 * counts bytes in flight, so a write looks unfinished until its callback: slower, never
 * wrong, and Node's buffers never grow behind our back.
 */
export function unsentBytes(sock: net.Socket): number {
  const q = handleOf(sock)?.writeQueueSize;
  return typeof q === 'number' && q > 0 ? q : sock.writableLength;
}

/** The OS descriptor of a socket or listening server, where Node exposes one. */
export function osFd(obj: net.Socket | net.Server): number | undefined {
  const fd = handleOf(obj)?.fd;
  return typeof fd === 'number' && Number.isInteger(fd) && fd >= 0 ? fd : undefined;
}

/** The last handle class `isUnixSocket` saw, and whether it is libuv's `Pipe`. */
let lastClass: unknown;
let lastIsPipe = false;

/**
 * True if the socket is a Unix domain socket (libuv `Pipe` handle). False when unknown: no
 * handle, or a shape we don't know. A server's sockets share one class: one load and one
 * comparison each.
 */
export function isUnixSocket(sock: net.Socket): boolean {
  const h = handleOf(sock) as { constructor?: unknown } | null;
  if (h === null) return false;
  const ctor = h.constructor;
  if (ctor !== lastClass) {
    lastClass = ctor;
    lastIsPipe = typeof ctor === 'function' && ctor.name === 'Pipe';
  }
  return lastIsPipe;
}
