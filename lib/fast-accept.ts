import type * as net from 'node:net';
import { installFastAccept } from './internal/node-internals';

/**
 * Accepted sockets that read into one shared buffer (`net.Socket`'s documented `onread`
 * option) instead of Node allocating a 64 KiB buffer per read and emitting 'data'. The socket
 * is built by `installFastAccept` (lib/internal/node-internals.ts), exactly as the running
 * Node's own accept builds it, plus `onread`; Node keeps every other case (`maxConnections`,
 * `blockList`, accept errors) and the whole accept when its fields look different or
 * `DANGA_FAST_ACCEPT=0`.
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
let deliver: Deliver | null = null;

/** The stream channel's sink for onread sockets it owns. */
export function setDeliver(fn: Deliver): void {
  deliver = fn;
}

/** True if `sock` reads through `onread` (no 'data' events unless nobody owns it). */
export function isOnreadSocket(sock: net.Socket): boolean {
  return (sock as { [kOnread]?: boolean })[kOnread] === true;
}

/**
 * Reads under 4 KiB are copied into a shared 8 KiB slab, larger ones into a buffer of their
 * own: Node 20's `allocUnsafe` pooling, on every Node. Node 24+ pools up to 32 KiB in 64 KiB
 * slabs, where one chunk kept (unread bytes, a pending write) holds 64 KiB.
 */
const SLAB_SIZE = 8 * 1024;
let slab = Buffer.allocUnsafeSlow(SLAB_SIZE);
let slabUsed = 0;

/** @internal A copy of `src[0, n)` (exported for its spec). */
export function copyOut(src: Buffer, n: number): Buffer {
  let out: Buffer;
  if (n >= SLAB_SIZE >>> 1) {
    out = Buffer.allocUnsafeSlow(n);
  } else {
    if (n > SLAB_SIZE - slabUsed) {
      slab = Buffer.allocUnsafeSlow(SLAB_SIZE);
      slabUsed = 0;
    }
    out = slab.subarray(slabUsed, slabUsed + n);
    slabUsed = (slabUsed + n + 7) & ~7; // 8-byte aligned, as Node's pool
  }
  src.copy(out, 0, 0, n);
  return out;
}

// `this` is the socket (Node calls the callback as its method).
// `buf` is always SHARED.
function onRead(this: net.Socket, nread: number): boolean {
  const copy = copyOut(SHARED, nread);
  const taken = deliver === null ? undefined : deliver(this, copy);
  return taken ?? this.push(copy);
}

function markOnread(sock: net.Socket): void {
  (sock as { [kOnread]?: boolean })[kOnread] = true;
}

const ONREAD: net.OnReadOpts = { buffer: SHARED, callback: onRead };

/**
 * Make `server` (listening) create its accepted sockets with the shared `onread` buffer.
 * @returns false where Node's own accept stays in charge (see `installFastAccept`).
 */
export function useFastAccept(server: net.Server): boolean {
  return installFastAccept(server, ONREAD, markOnread);
}
