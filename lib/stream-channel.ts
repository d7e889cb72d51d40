import type * as net from 'node:net';
import { isOnreadSocket, setDeliver } from './fast-accept';
import type { Channel, ChannelAddress } from './internal/channel';
import { isUnixSocket, osFd, unsentBytes } from './internal/node-internals';
import { kernelReportsHup } from './native';
import { POLLERR, POLLHUP, POLLIN, POLLOUT, kNotify } from './internal';

/**
 * Emulates a non-blocking, level-triggered descriptor on top of a `net.Socket`
 * (reference §8.2–§8.4). Node reads on its own and pushes chunks; we keep them in an rx
 * queue (bounded: the socket is paused above `RX_HIGH_WATER`, which closes the TCP window)
 * and serve `sysread` from it. Writes are handed to libuv at once; what libuv could not write
 * synchronously is "in flight" and makes the descriptor unwritable until its callback.
 */

/** Bytes buffered from the kernel before we stop reading (TCP flow control takes over). */
export const RX_HIGH_WATER = 256 * 1024;

/** `syswrite` result for EAGAIN. */
export const EAGAIN = -1;

const EMPTY = Buffer.alloc(0);

interface Notifiable {
  /** Something about this descriptor's readiness may have changed. */
  [kNotify](): void;
}

const kChannel = Symbol('danga.channel');
type ChannelSocket = net.Socket & { [kChannel]?: StreamChannel | undefined };

// Module-level listeners (one set for all sockets): `this` is the socket.
function onData(this: ChannelSocket, chunk: Buffer): void {
  const ch = this[kChannel];
  if (ch === undefined) return;
  ch.push(chunk);
  if (ch.rxBytes >= RX_HIGH_WATER && !ch.rxPaused) {
    ch.rxPaused = true;
    this.pause();
  }
}
// Chunks of sockets that read through `onread` (already copied out of the shared buffer).
// Returns false to stop reading at the high-water mark; undefined: no channel, push instead.
setDeliver((sock, chunk) => {
  const ch = (sock as ChannelSocket)[kChannel];
  if (ch === undefined) return undefined;
  ch.push(chunk);
  if (ch.rxBytes >= RX_HIGH_WATER) {
    ch.rxPaused = true;
    return false;
  }
  return true;
});
function onEnd(this: ChannelSocket): void {
  const ch = this[kChannel];
  if (ch === undefined) return;
  ch.eof = true;
  // Reference §5: a Unix socket whose peer is gone (not just shut for writing) is IN|HUP. libuv
  // stops polling after EOF, so ask the kernel once, here. TCP peers' FIN is never a HUP.
  if (isUnixSocket(this)) {
    const fd = osFd(this);
    if (fd !== undefined && kernelReportsHup(fd)) ch.peerGone = true;
  }
  ch.owner[kNotify]();
}
function onError(this: ChannelSocket, err: Error): void {
  const ch = this[kChannel];
  if (ch === undefined) return;
  if (ch.error === null) ch.error = err;
  ch.owner[kNotify]();
}
function onClose(this: ChannelSocket): void {
  const ch = this[kChannel];
  if (ch === undefined) return;
  ch.gone = true;
  ch.owner[kNotify]();
}
function onConnect(this: ChannelSocket): void {
  this[kChannel]?.owner[kNotify]();
}

export class StreamChannel implements Channel {
  /**
   * Unread chunks: the oldest in `rxHead`, any later ones in `rxMore`. Usually one chunk waits
   * per iteration, so most sockets never allocate the array, and a read/deliver cycle leaves
   * no garbage behind in old space (an array shifted and pushed per message reallocates).
   */
  private rxHead: Buffer | null = null;
  private rxMore: Buffer[] | null = null;
  rxBytes = 0;
  rxPaused = false;
  eof = false;
  error: Error | null = null;
  /** The socket was closed under us (destroyed by someone else, or after an error). */
  gone = false;
  /** At EOF the kernel reported a hang-up: the peer is gone, both directions are shut. */
  peerGone = false;
  /** A partial write's remainder is still owned by libuv: unwritable until it is done. */
  private inflight = false;
  /** After a partial write: bytes libuv still owns of that submission. */
  private inflightLen = 0;

  constructor(
    readonly sock: net.Socket,
    readonly owner: Notifiable,
  ) {
    const s = sock as ChannelSocket;
    s[kChannel] = this;
    // Node must never end our side on its own: Danga has no half-close.
    (sock as unknown as { allowHalfOpen: boolean }).allowHalfOpen = true;
    if (!isOnreadSocket(sock)) {
      sock.on('data', onData);
    } else if (sock.readableLength > 0) {
      // Bytes put back into a stolen socket wait in its stream buffer: take them first.
      let chunk: unknown;
      while ((chunk = sock.read()) !== null) {
        if (Buffer.isBuffer(chunk)) this.push(chunk);
      }
    }
    sock.on('end', onEnd);
    sock.on('error', onError);
    sock.on('close', onClose);
    if (sock.connecting) sock.once('connect', onConnect);
    if (sock.destroyed) this.gone = true;
    if (sock.readableEnded) this.eof = true;
    // Accepted sockets arrive paused (pauseOnConnect); read eagerly up to the high-water mark.
    sock.resume();
  }

  /** Queue a chunk read from the socket; the owner hears of it when nothing was waiting. */
  push(chunk: Buffer): void {
    if (this.rxHead === null) {
      this.rxHead = chunk;
    } else if (this.rxMore === null) {
      this.rxMore = [chunk];
    } else {
      this.rxMore.push(chunk);
    }
    const was = this.rxBytes;
    this.rxBytes = was + chunk.length;
    // Bytes already waiting made this descriptor readable then: its readiness is unchanged.
    if (was === 0) this.owner[kNotify]();
  }

  /** Drop the oldest chunk. */
  private shift(): void {
    const more = this.rxMore;
    if (more === null) {
      this.rxHead = null;
      return;
    }
    this.rxHead = more.shift() ?? null;
    if (more.length === 0) this.rxMore = null;
  }

  /** Level conditions now, before interest filtering. */
  readiness(): number {
    if (this.error !== null) return POLLIN | POLLOUT | POLLERR | POLLHUP;
    let r = 0;
    if (this.rxBytes > 0 || this.eof || this.gone) r |= POLLIN;
    if (this.gone) return r | POLLHUP;
    if (this.peerGone) r |= POLLHUP;
    if (!this.sock.connecting && !this.inflight) r |= POLLOUT;
    return r;
  }

  /** Emulated sysread: up to `n` bytes; empty = EAGAIN; null = EOF or error. */
  read(n: number): Buffer | null {
    if (this.rxBytes === 0) {
      return this.eof || this.error !== null || this.gone ? null : EMPTY;
    }
    const first = this.rxHead as Buffer;
    let out: Buffer;
    if (first.length > n) {
      out = first.subarray(0, n);
      this.rxHead = first.subarray(n);
    } else if (first.length === n || this.rxMore === null) {
      out = first;
      this.shift();
    } else {
      const want = Math.min(n, this.rxBytes);
      out = Buffer.allocUnsafe(want);
      let off = 0;
      while (off < want) {
        const c = this.rxHead as Buffer;
        const take = Math.min(c.length, want - off);
        c.copy(out, off, 0, take);
        off += take;
        if (take === c.length) this.shift();
        else this.rxHead = c.subarray(take);
      }
    }
    this.rxBytes -= out.length;
    if (this.rxPaused && this.rxBytes < RX_HIGH_WATER) {
      this.rxPaused = false;
      this.sock.resume();
    }
    return out;
  }

  /**
   * Emulated syswrite of `buf[off, off+len)`: bytes accepted now, or `EAGAIN`.
   * Throws the socket's error (EPIPE, ECONNRESET, ...) if one is known.
   */
  write(buf: Buffer, off: number, len: number): number {
    if (this.error !== null) throw this.error;
    const sock = this.sock;
    if (sock.connecting) return EAGAIN;
    if (this.inflight) return EAGAIN;
    if (this.inflightLen > 0) {
      // The remainder of a partial write has reached the kernel since; report it written.
      const done = this.inflightLen;
      this.inflightLen = 0;
      if (len === done) return len;
    }
    if (this.gone || sock.destroyed || sock.writableEnded) {
      throw Object.assign(new Error('write EPIPE'), { code: 'EPIPE', syscall: 'write' });
    }
    // No callback: a full write needs none, and a failed one also emits 'error'.
    sock.write(off === 0 && len === buf.length ? buf : buf.subarray(off, off + len));
    // 'error' may have been emitted synchronously by write().
    const late = this.error as Error | null;
    if (late !== null) throw late;
    // What libuv could not write synchronously.
    const queued = unsentBytes(sock);
    if (queued <= 0) return len;
    this.inflight = true;
    this.inflightLen = Math.min(queued, len);
    // An empty write queued behind the partial one completes right after it: our wake-up.
    sock.write(EMPTY, () => {
      this.inflight = false;
      this.owner[kNotify]();
    });
    return len - this.inflightLen;
  }

  /** The node backend writes the queue's head only (Node's own queue does the batching). */
  writev(items: readonly (Buffer | (() => void))[], first: number): number {
    const head = items[0] as Buffer;
    return this.write(head, first, head.length - first);
  }

  /** Bytes received but not read yet. */
  get pending(): number {
    return this.rxBytes;
  }

  /** The OS descriptor, where Node exposes one. */
  osFd(): number | undefined {
    return osFd(this.sock);
  }

  /** Really close the socket (end of iteration). Our error listener stays attached. */
  destroy(): void {
    this.sock.destroy();
  }

  get pendingBytes(): number {
    return this.rxBytes;
  }

  /** Node reads into its own buffers: a view is the same owned chunk. */
  readView(n: number): Buffer | null {
    return this.read(n);
  }

  /** Interest is the object's business here: libuv reads eagerly up to `RX_HIGH_WATER`. */
  interest(): void {}

  /** A stream accepts nothing. */
  accept(): null {
    return null;
  }

  remote(): ChannelAddress | undefined {
    const s = this.sock;
    const ip = s.remoteAddress;
    const port = s.remotePort;
    if (ip === undefined || port === undefined) return undefined;
    return { ip, port, v6: s.remoteFamily === 'IPv6' };
  }

  local(): ChannelAddress | undefined {
    const s = this.sock;
    const ip = s.localAddress;
    const port = s.localPort;
    if (ip === undefined || port === undefined) return undefined;
    return { ip, port, v6: s.localFamily === 'IPv6' };
  }

  /** Give the socket back, paused, with unread bytes (pushback first) put back into it. */
  detach(pushback: readonly Buffer[]): net.Socket {
    const s = this.sock as ChannelSocket;
    s.removeListener('data', onData);
    s.removeListener('end', onEnd);
    s.removeListener('error', onError);
    s.removeListener('close', onClose);
    s.removeListener('connect', onConnect);
    // Assigned, not deleted: a deleted property would put the socket in dictionary mode.
    s[kChannel] = undefined;
    s.pause();
    const unread = [...pushback];
    if (this.rxHead !== null) unread.push(this.rxHead);
    if (this.rxMore !== null) unread.push(...this.rxMore);
    this.rxHead = this.rxMore = null;
    this.rxBytes = 0;
    if (unread.length > 0) s.unshift(Buffer.concat(unread));
    return s;
  }
}
