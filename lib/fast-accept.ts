import * as dc from 'node:diagnostics_channel';
import * as net from 'node:net';

/**
 * Accepted sockets that read into one shared buffer (`net.Socket`'s documented `onread`
 * option) instead of Node allocating a 64 KiB buffer per read and emitting 'data'. Node's
 * `net.Server` has no option for it, so a listener's accept callback is replaced by one that
 * builds the socket as `net.Server` does (Node 20's `onconnection`: the server's
 * `allowHalfOpen`, `pauseOnConnect`, `highWaterMark`, `noDelay` and `keepAlive`, the
 * connection count, the `net.server.socket` diagnostics channel), plus `onread`. Anything
 * else (an accept error, `maxConnections` and its 'drop' event, a `blockList`, a handle
 * without the expected shape) goes to Node's own code.
 *
 * The bytes land in `deliver(socket, copy)` — the stream channel's rx queue. A socket that
 * no channel owns (an `onAccept` that keeps the raw socket, or after `stealSocket()`) gets
 * them through `socket.push()`, so it emits 'data' like any other socket.
 */

/** Takes each chunk read: false stops reading (flow control), undefined means "not mine". */
type Deliver = (sock: net.Socket, chunk: Buffer) => boolean | undefined;

const SHARED = Buffer.allocUnsafe(64 * 1024);
/** Marks sockets created here (a property, not a WeakSet entry: less memory per socket). */
const kOnread = Symbol('danga.onread');
const serverSocketChannel = dc.channel('net.server.socket');
let deliver: Deliver | null = null;

/** The stream channel's sink for onread sockets it owns. */
export function setDeliver(fn: Deliver): void {
  deliver = fn;
}

/** True if `sock` reads through `onread` (no 'data' events unless nobody owns it). */
export function isOnreadSocket(sock: net.Socket): boolean {
  return (sock as { [kOnread]?: boolean })[kOnread] === true;
}

// `this` is the socket (Node calls the callback as its method).
function onRead(this: net.Socket, nread: number, buf: Buffer): boolean {
  const copy = Buffer.allocUnsafe(nread);
  buf.copy(copy, 0, 0, nread);
  const taken = deliver === null ? undefined : deliver(this, copy);
  return taken ?? this.push(copy);
}

interface AcceptHandle {
  onconnection?: unknown;
}

/** The `net.Server` fields Node 20's `onconnection` reads (set by its constructor). */
interface ServerFields {
  _connections: number;
  allowHalfOpen?: boolean;
  pauseOnConnect?: boolean;
  highWaterMark?: unknown;
  noDelay?: boolean;
  keepAlive?: boolean;
  keepAliveInitialDelay?: unknown;
  blockList?: unknown;
}

/** Make `server` create its accepted sockets with a shared `onread` buffer. Idempotent. */
export function useFastAccept(server: net.Server): void {
  const handle = (server as unknown as { _handle?: AcceptHandle | null })._handle;
  if (handle === null || handle === undefined || typeof handle.onconnection !== 'function') return;
  const original = handle.onconnection as (this: unknown, err: number, client: unknown) => void;
  if ((original as { fast?: boolean }).fast === true) return;
  const s = server as net.Server & ServerFields;
  const fast = function (this: unknown, err: number, client: unknown): void {
    if (
      err ||
      server.maxConnections ||
      typeof client !== 'object' ||
      client === null ||
      (s.blockList !== undefined && s.blockList !== null)
    ) {
      original.call(this, err, client);
      return;
    }
    const hwm = typeof s.highWaterMark === 'number' ? s.highWaterMark : undefined;
    const opts = {
      handle: client,
      allowHalfOpen: s.allowHalfOpen === true,
      pauseOnCreate: s.pauseOnConnect === true,
      readable: true,
      writable: true,
      readableHighWaterMark: hwm,
      writableHighWaterMark: hwm,
      onread: { buffer: SHARED, callback: onRead },
    };
    const socket = new net.Socket(opts);
    (socket as { [kOnread]?: boolean })[kOnread] = true;
    // The public equivalents of what onconnection does with the server's options.
    if (s.noDelay === true) socket.setNoDelay(true);
    if (s.keepAlive === true) {
      const delayS = typeof s.keepAliveInitialDelay === 'number' ? s.keepAliveInitialDelay : 0;
      socket.setKeepAlive(true, delayS * 1000);
    }
    s._connections++;
    (socket as unknown as { server: net.Server; _server: net.Server }).server = server;
    (socket as unknown as { _server: net.Server })._server = server;
    server.emit('connection', socket);
    if (serverSocketChannel.hasSubscribers) serverSocketChannel.publish({ socket });
  };
  (fast as { fast?: boolean }).fast = true;
  handle.onconnection = fast;
}
