import * as net from 'node:net';
import { constants as osConstants } from 'node:os';
import { POLLERR, POLLHUP, POLLIN, POLLOUT, kNotify, kOwner } from '../internal';
import {
  EAGAIN,
  SHARED,
  SHARED_BIG,
  maxRead,
  adoptFd,
  errnoError,
  kBytesIn,
  kBytesOut,
  fdToNetSocket,
  kRelease,
  kDestroy,
  nativeEpoll,
  setTarget,
  type NativeSocket,
  type NativeTarget,
} from '../native-socket';
import type { NativeEpoll } from '../native';
import { CHANNEL_EAGAIN, type Channel, type ChannelAddress } from './channel';

/**
 * Channels of the `native` backend: a real non-blocking descriptor in the addon's epoll set.
 * Readiness is what epoll last reported (level-triggered: it reports again every turn while the
 * condition holds), minus what a read or write has since shown to be gone (EAGAIN, or a short
 * read/write). Interest follows the object's watches, so an unwatched descriptor costs nothing
 * and an unread peer is held back by the kernel (TCP flow control), not by our memory.
 */

const E = osConstants.errno;

let binding: NativeEpoll | undefined;
/** The addon's backend (loaded: a channel exists only once `nativeEpoll()` succeeded). */
function ep(): NativeEpoll {
  return (binding ??= nativeEpoll());
}
const EMPTY = Buffer.alloc(0);
const SHARED_AB = SHARED.buffer;
const BIG_AB = SHARED_BIG.buffer;
const SMALL = SHARED.length;
const ERR_BITS = POLLERR | POLLHUP;
const ADD = 1;
const MOD = 3;

/** True if `buf` is a `readView` result (a view of the shared read buffer): copy before keeping. */
export function isSharedView(buf: Buffer): boolean {
  return buf.buffer === SHARED_AB || buf.buffer === BIG_AB;
}

interface Notifiable {
  [kNotify](): void;
}

function toAddress(r: ReturnType<NativeEpoll['name']>): ChannelAddress | undefined {
  if (typeof r === 'number' || r[0] === 0) return undefined;
  return { ip: r[1], port: r[2], v6: r[0] === 6 };
}

/**
 * NativeStreamChannel#bits above the POLL* readiness bits: the interest wanted (bits 8-15), EOF
 * (16), queued for the next interest flush (17), in the epoll set (18), the error came from
 * SO_ERROR and reads may still drain (19), and the interest the epoll set has (bits 20-27).
 */
const INTEREST_SHIFT = 8;
const APPLIED_SHIFT = 20;
const REV_MASK = 0xff;
/** Buffers per writev(2) (the addon's iovec array). */
const WRITEV_MAX = 64;
const EOF_BIT = 1 << 16;
const QUEUED_BIT = 1 << 17;
const ADDED_BIT = 1 << 18;
const SO_ERROR_BIT = 1 << 19;

/**
 * Interest changes are applied once per loop iteration, all in one addon call (`ctlv`): an
 * object that starts and stops watching writability within one iteration, or is accepted and
 * starts reading, costs one `epoll_ctl` or none. Nothing waits on epoll before the flush: the
 * set is read only when libuv polls, and the flush runs as a microtask, after the iteration (or
 * whatever callback changed the interest) and before libuv's next poll.
 */
const CTL_BATCH = 512;
const ctlList = new Int32Array(3 * CTL_BATCH);
const ctlChannels: NativeStreamChannel[] = [];
let ctlQueue: NativeStreamChannel[] = [];
let ctlScheduled = false;

function queueCtl(ch: NativeStreamChannel): void {
  ctlQueue.push(ch);
  if (!ctlScheduled) {
    ctlScheduled = true;
    queueMicrotask(flushInterest);
  }
}

/** Apply every queued interest change (a microtask queued by the first change). */
function flushInterest(): void {
  ctlScheduled = false;
  const queue = ctlQueue;
  if (queue.length === 0) return;
  ctlQueue = [];
  const b = ep();
  let n = 0;
  for (let i = 0; i < queue.length; i++) {
    if ((queue[i] as NativeStreamChannel).stageCtl(ctlList, n)) {
      ctlChannels[n++] = queue[i] as NativeStreamChannel;
      if (n === CTL_BATCH) {
        applyCtl(b, n);
        n = 0;
      }
    }
  }
  if (n > 0) applyCtl(b, n);
}

function applyCtl(b: NativeEpoll, n: number): void {
  if (b.ctlv !== undefined) b.ctlv(ctlList, n);
  else {
    for (let i = 0; i < n; i++) {
      const fd = ctlList[3 * i] as number;
      ctlList[3 * i + 2] = b.ctl(fd, ctlList[3 * i + 1] as number, ctlList[3 * i + 2] as 1 | 3);
    }
  }
  for (let i = 0; i < n; i++) {
    const ch = ctlChannels[i] as NativeStreamChannel;
    ctlChannels[i] = undefined as unknown as NativeStreamChannel;
    const rc = ctlList[3 * i + 2] as number;
    if (rc < 0) ch.ctlFailed(rc);
  }
}
/** At most this many unread bytes are dropped at close (about what node's queue holds). */
const DRAIN_MAX = 256 * 1024;

/** The object that wraps `sock` (set right after its channel is made). */
function ownerOf(sock: NativeSocket): Notifiable | undefined {
  return sock[kOwner] as Notifiable | undefined;
}

/**
 * A connected native socket. Three fields (the handle, one integer of state, the error): this
 * object exists once per connection, so every field counts (see docs/backends.md on memory).
 * The descriptor is `sock.fd` (-1 once closed or handed over), and the object to notify is the
 * handle's owner.
 */
export class NativeStreamChannel implements Channel, NativeTarget {
  /**
   * Bits 0-7: epoll's last report (Danga bits), less what reads/writes showed to be gone;
   * bits 8-15: the interest in the epoll set (POLLIN | POLLOUT, shifted); bit 16: EOF read.
   */
  private bits = 0;
  error: Error | null = null;

  constructor(readonly sock: NativeSocket) {
    setTarget(sock.fd, this);
    // Into the epoll set at the next interest flush, with the interest it has by then.
    this.bits = QUEUED_BIT;
    queueCtl(this);
  }

  /**
   * Write this channel's pending epoll change as entry `i` of `list`; false if there is none
   * (closed, failed, or the set already has the interest wanted).
   */
  stageCtl(list: Int32Array, i: number): boolean {
    const bits = (this.bits &= ~QUEUED_BIT);
    const fd = this.sock.fd;
    if (fd < 0 || this.error !== null) return false;
    const want = (bits >> INTEREST_SHIFT) & REV_MASK;
    const added = (bits & ADDED_BIT) !== 0;
    if (added && want === ((bits >> APPLIED_SHIFT) & REV_MASK)) return false;
    list[3 * i] = fd;
    list[3 * i + 1] = want;
    list[3 * i + 2] = added ? MOD : ADD;
    this.bits = (bits & ~(REV_MASK << APPLIED_SHIFT)) | (want << APPLIED_SHIFT) | ADDED_BIT;
    return true;
  }

  /** The flush's epoll_ctl for this channel failed (`neg` = -errno). */
  ctlFailed(neg: number): void {
    if (this.sock.fd >= 0) this.fail(neg, 'epoll_ctl');
  }

  get eof(): boolean {
    return (this.bits & EOF_BIT) !== 0;
  }

  get pendingBytes(): number {
    return 0;
  }

  onEvents(mask: number): void {
    if ((mask & POLLERR) !== 0 && this.error === null) this.takeSoError();
    this.bits = (this.bits & ~REV_MASK) | mask | (this.bits & ERR_BITS);
    ownerOf(this.sock)?.[kNotify]();
  }

  /**
   * EPOLLERR: record the socket's pending error (getsockopt SO_ERROR) as the failed read, or
   * after our EOF the failed write, would have: eventErr then sees the real errno (a reset
   * after the peer's FIN is EPIPE, before it ECONNRESET). Reading SO_ERROR clears it, and the
   * kernel's next read gives the bytes still queued, then 0: sysread lets them drain first.
   */
  private takeSoError(): void {
    const fd = this.sock.fd;
    if (fd < 0) return;
    const r = ep().soError(fd);
    if (r === 0) return;
    const eof = (this.bits & EOF_BIT) !== 0;
    this.error = r > 0 ? errnoError(-r, eof ? 'write' : 'read') : errnoError(r, 'getsockopt');
    if (r > 0 && !eof) this.bits |= SO_ERROR_BIT;
  }

  private fail(neg: number, syscall: string): Error {
    const err = errnoError(neg, syscall);
    if (this.error === null) this.error = err;
    this.bits |= ERR_BITS;
    ownerOf(this.sock)?.[kNotify]();
    return err;
  }

  readiness(): number {
    return this.error !== null ? POLLIN | POLLOUT | ERR_BITS : this.bits & REV_MASK;
  }

  interest(read: boolean, write: boolean): void {
    const m = (read ? POLLIN : 0) | (write ? POLLOUT : 0);
    const bits = this.bits;
    if (m === ((bits >> INTEREST_SHIFT) & REV_MASK) || this.error !== null || this.sock.fd < 0) {
      return;
    }
    this.bits = (bits & ~(REV_MASK << INTEREST_SHIFT)) | (m << INTEREST_SHIFT);
    if ((bits & QUEUED_BIT) === 0) {
      this.bits |= QUEUED_BIT;
      queueCtl(this);
    }
  }

  /**
   * One read(2) of `n` bytes at most (n <= maxRead) into SHARED (n <= 64 KiB) or SHARED_BIG.
   * Returns the count, or null.
   */
  private sysread(n: number): number | null {
    const bits = this.bits;
    if ((bits & EOF_BIT) !== 0 || (this.error !== null && (bits & SO_ERROR_BIT) === 0)) {
      return null;
    }
    const r = ep().read(this.sock.fd, n);
    if (r > 0) {
      this.sock[kBytesIn] += r;
      if (r < n) this.bits &= ~POLLIN;
      return r;
    }
    if ((bits & SO_ERROR_BIT) !== 0) {
      // Drained: the read that SO_ERROR pre-empted fails now, with the error taken.
      this.bits &= ~SO_ERROR_BIT;
      return null;
    }
    if (r === 0) {
      // EOF stays readable (level-triggered): eventRead keeps firing until the object acts.
      this.bits |= EOF_BIT;
      return null;
    }
    if (r === -EAGAIN) {
      this.bits &= ~POLLIN;
      return 0;
    }
    this.fail(r, 'read');
    return null;
  }

  read(n: number): Buffer | null {
    const m = n < maxRead ? n : maxRead;
    const r = this.sysread(m);
    if (r === null) return null;
    if (r === 0) return EMPTY;
    // Below 4 KiB allocUnsafe slices Node's pool: the cheap way to hand out an owned Buffer.
    const out = Buffer.allocUnsafe(r);
    (m <= SMALL ? SHARED : SHARED_BIG).copy(out, 0, 0, r);
    return out;
  }

  readView(n: number): Buffer | null {
    const m = n < maxRead ? n : maxRead;
    const r = this.sysread(m);
    if (r === null) return null;
    return r === 0 ? EMPTY : (m <= SMALL ? SHARED : SHARED_BIG).subarray(0, r);
  }

  write(buf: Buffer, off: number, len: number): number {
    if (this.error !== null) throw this.error;
    return this.sent(ep().write(this.sock.fd, buf, off, len), len, 'write');
  }

  /** A write(2)/writev(2) result `r` for `offered` bytes: the count, or CHANNEL_EAGAIN. */
  private sent(r: number, offered: number, syscall: string): number {
    if (r >= 0) {
      this.sock[kBytesOut] += r;
      if (r < offered) this.bits &= ~POLLOUT;
      return r;
    }
    if (r === -EAGAIN) {
      this.bits &= ~POLLOUT;
      return CHANNEL_EAGAIN;
    }
    throw this.fail(r, syscall);
  }

  writev(items: readonly (Buffer | (() => void))[], first: number): number {
    if (this.error !== null) throw this.error;
    // What the addon will offer: the Buffers up to the first function, at most WRITEV_MAX.
    let offered = -first;
    for (let i = 0; i < items.length && i < WRITEV_MAX; i++) {
      const b = items[i];
      if (typeof b === 'function') break;
      offered += (b as Buffer).length;
    }
    return this.sent(ep().writev(this.sock.fd, items, first), offered, 'writev');
  }

  accept(): null {
    return null;
  }

  osFd(): number | undefined {
    const fd = this.sock.fd;
    return fd >= 0 ? fd : undefined;
  }

  remote(): ChannelAddress | undefined {
    const fd = this.sock.fd;
    return fd < 0 ? undefined : toAddress(ep().name(fd, true));
  }

  local(): ChannelAddress | undefined {
    const fd = this.sock.fd;
    return fd < 0 ? undefined : toAddress(ep().name(fd, false));
  }

  /**
   * Close the descriptor. Bytes the peer sent that nobody read are read and dropped first:
   * close(2) with unread bytes sends a reset, where the node backend (which had read them into
   * its queue) sends a FIN, and the peer must see the same end on both.
   */
  destroy(): void {
    const fd = this.sock.fd;
    if (fd >= 0 && (this.bits & EOF_BIT) === 0 && this.error === null) {
      for (let dropped = 0; dropped < DRAIN_MAX;) {
        const r = ep().read(fd, SHARED.length);
        if (r <= 0) break;
        dropped += r;
      }
    }
    this.sock[kDestroy]();
  }

  detach(pushback: readonly Buffer[]): net.Socket {
    const s = fdToNetSocket(this.sock[kRelease](), true);
    if (pushback.length > 0) s.unshift(Buffer.concat(pushback));
    return s;
  }
}

/** A listener's link to its object (the base class's Notifier). */
interface ListenerNotifiable {
  notify(): void;
  acceptError(err: Error): void;
}

/** Accept errors that mean "out of resources": back off instead of spinning. */
const RESOURCE = new Set([-E.EMFILE, -E.ENFILE, -E.ENOBUFS, -E.ENOMEM]);
const BACKOFF_START_MS = 100;
const BACKOFF_MAX_MS = 1000;
const ACCEPT_BATCH = 64;

/** A listening native socket: `accept()` takes descriptors accepted in batches by `accept4`. */
export class NativeListenChannel implements Channel, NativeTarget {
  private readonly ep: NativeEpoll;
  private readonly fd: number;
  private rev = 0;
  private mask = 0;
  private readonly batch = new Int32Array(ACCEPT_BATCH);
  private head = 0;
  private count = 0;
  private backoffMs = 0;
  private backoffTimer: NodeJS.Timeout | null = null;
  /** One report per back-off episode (until an accept succeeds again). */
  private reported = false;
  readonly eof = false;
  error: Error | null = null;

  constructor(
    readonly sock: NativeSocket,
    private readonly owner: ListenerNotifiable,
  ) {
    this.ep = nativeEpoll();
    this.fd = sock.fd;
    setTarget(this.fd, this);
    const rc = this.ep.ctl(this.fd, 0, ADD);
    if (rc < 0) this.fail(rc, 'epoll_ctl');
  }

  get pendingBytes(): number {
    return 0;
  }

  onEvents(mask: number): void {
    this.rev = mask | (this.rev & ERR_BITS);
    this.owner.notify();
  }

  private fail(neg: number, syscall: string): void {
    if (this.error === null) this.error = errnoError(neg, syscall);
    this.rev |= ERR_BITS;
    this.owner.notify();
  }

  readiness(): number {
    if (this.error !== null) return POLLIN | ERR_BITS;
    return this.head < this.count ? this.rev | POLLIN : this.rev;
  }

  interest(read: boolean): void {
    const m = read ? POLLIN : 0;
    if (m === this.mask || this.error !== null || this.sock.fd < 0) return;
    this.mask = m;
    if (this.backoffTimer !== null) return; // applied when the back-off ends
    const rc = this.ep.ctl(this.fd, m, MOD);
    if (rc < 0) this.fail(rc, 'epoll_ctl');
  }

  read(): Buffer | null {
    return null;
  }

  readView(): Buffer | null {
    return null;
  }

  write(): number {
    return CHANNEL_EAGAIN;
  }

  writev(): number {
    return CHANNEL_EAGAIN;
  }

  accept(): NativeSocket | null {
    if (this.head < this.count) return adoptFd(this.batch[this.head++] as number, false);
    if (this.backoffTimer !== null || this.error !== null || this.sock.fd < 0) return null;
    const r = this.ep.accept(this.fd, this.batch);
    if (r > 0) {
      this.head = 1;
      this.count = r;
      this.backoffMs = 0;
      this.reported = false;
      return adoptFd(this.batch[0] as number, false);
    }
    this.head = this.count = 0;
    if (r === -EAGAIN || r === -E.ECONNABORTED || r === -E.EINTR) {
      this.rev &= ~POLLIN;
      return null;
    }
    if (RESOURCE.has(r)) {
      this.backOff(r);
      return null;
    }
    this.fail(r, 'accept');
    return null;
  }

  /** Out of descriptors (or memory): stop polling for a while (100 ms doubling to 1 s). */
  private backOff(neg: number): void {
    this.backoffMs =
      this.backoffMs === 0 ? BACKOFF_START_MS : Math.min(this.backoffMs * 2, BACKOFF_MAX_MS);
    this.rev &= ~POLLIN;
    this.ep.ctl(this.fd, 0, MOD);
    this.backoffTimer = setTimeout(this.resume, this.backoffMs);
    this.backoffTimer.unref();
    if (!this.reported) {
      this.reported = true;
      const err = errnoError(neg, 'accept');
      err.message += ` (not accepting for ${this.backoffMs} ms, then retrying)`;
      this.owner.acceptError(err);
    }
  }

  private readonly resume = (): void => {
    this.backoffTimer = null;
    if (this.sock.fd < 0 || this.error !== null) return;
    const rc = this.ep.ctl(this.fd, this.mask, MOD);
    if (rc < 0) {
      this.fail(rc, 'epoll_ctl');
      return;
    }
    // Try at once: the connections waited in the backlog meanwhile.
    this.rev |= POLLIN;
    this.owner.notify();
  };

  osFd(): number | undefined {
    const fd = this.sock.fd;
    return fd >= 0 ? fd : undefined;
  }

  remote(): undefined {
    return undefined;
  }

  local(): ChannelAddress | undefined {
    return this.sock.fd < 0 ? undefined : toAddress(this.ep.name(this.fd, false));
  }

  private dropBatch(): void {
    while (this.head < this.count) adoptFd(this.batch[this.head++] as number, false)[kDestroy]();
  }

  destroy(): void {
    if (this.backoffTimer !== null) clearTimeout(this.backoffTimer);
    this.backoffTimer = null;
    this.dropBatch();
    this.sock[kDestroy]();
  }

  /**
   * Hand the listening descriptor to Node: a `net.Server` listening on it, made as the node
   * backend's Listener makes its server (half-open allowed, accepted sockets paused). The
   * descriptor leaves our epoll set and is no longer ours (Node closes it). Connections accepted
   * but not taken yet are emitted as `'connection'` once the caller can listen (next tick).
   */
  detach(): net.Server {
    if (this.backoffTimer !== null) clearTimeout(this.backoffTimer);
    this.backoffTimer = null;
    const accepted: number[] = [];
    while (this.head < this.count) {
      accepted.push(adoptFd(this.batch[this.head++] as number, false)[kRelease]());
    }
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
    const fd = this.sock[kRelease]();
    if (fd >= 0) server.listen({ fd }); // (-1 would make listen() pick a port of its own)
    if (accepted.length > 0) {
      process.nextTick(() => {
        for (const fd of accepted) server.emit('connection', fdToNetSocket(fd, true));
      });
    }
    return server;
  }
}
