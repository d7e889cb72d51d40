import * as net from 'node:net';
import { DangaSocketError, describe, errnoOf, invalidArg } from './errors';
import {
  defaultErrorHandler,
  loop,
  nowSeconds,
  type ErrorHandler,
  type OtherFdCallback,
  type PostLoopCallback,
  type ProfilingRow,
} from './event-loop';
import {
  POLLERR,
  POLLHUP,
  POLLIN,
  POLLOUT,
  kCreatedS,
  kCandidate,
  kEvents,
  kFinish,
  kHandle,
  kNotify,
  kOwner,
  kPushback,
  kResetClose,
  kWatchingRead,
} from './internal';
import {
  checkBackend,
  getDefaultBackend,
  setDefaultBackend,
  type Backend,
} from './internal/backend';
import { CHANNEL_EAGAIN, type Channel, type ChannelAddress } from './internal/channel';
import { NativeListenChannel, NativeStreamChannel, isSharedView } from './internal/native-channel';
import { NativeSocket } from './native-socket';
import { ServerChannel } from './server-channel';
import { sprintf } from './sprintf';
import { StreamChannel } from './stream-channel';
import { Timer } from './timer';
import { Deadlines, kActivity } from './internal/deadlines';
import { nativeCork, nativeOtherFds } from './native-hooks';

/** What `write()` accepts: bytes, a UTF-8 string, a callback to run in order, or nothing (flush). */
export type WriteData = Buffer | Uint8Array | string | (() => void) | undefined;

/**
 * Replaces the socket write for data items: write `length` bytes of `buf` from `offset`,
 * return how many were written (may be fewer), or throw an errno-style error
 * (`code` 'EAGAIN' means "try later").
 */
export type WriterFunc = (buf: Buffer, length: number, offset: number) => number;

/** Largest single read, as Danga::Socket (1 MiB). */
const MAX_READ = 1024 * 1024;

let nextId = 100000;
/** DangaSocket #flags bits. */
const F_CLOSED = 1;
const F_WATCH_READ = 2;
const F_WATCH_WRITE = 4;
const F_WRITE_SET_WATCH = 8;
const F_CORKED = 16;
const F_CANDIDATE = 32;
/** Wraps a `net.Server` (fixed at construction; `[kFinish]` keeps a server's owner mark). */
const F_SERVER = 64;

/** DangaSocket state that few objects use, in one object made on first use. */
interface Rare {
  writerFunc: WriterFunc | null;
  deadlines: Deadlines | null;
  closedWait: ClosedWait | null;
  peer: ChannelAddress | undefined;
}

/** `whenClosed()`: the promise, and its resolver until the handle is gone. */
interface ClosedWait {
  readonly promise: Promise<string | undefined>;
  resolve: ((reason: string | undefined) => void) | null;
}

/**
 * A creation time as a small integer (a Smi, not a boxed double: 16 bytes less per object):
 * centiseconds since the module loaded. `createdSeconds()` turns it back into epoch seconds.
 */
const CREATED_BASE_S = Math.floor(nowSeconds());
function createdStamp(): number {
  return Math.round((nowSeconds() - CREATED_BASE_S) * 100);
}

/** @internal epoch seconds of `obj[kCreatedS]` */
export function createdSeconds(stamp: number): number {
  return CREATED_BASE_S + stamp / 100;
}

/** Shared empty sentinels, replaced by a real array on first use (never pushed to). */
const NO_PUSHBACK: Buffer[] = [];
const NO_QUEUE: (Buffer | (() => void))[] = [];
/** A handle with our back-reference (a property, not a WeakMap entry: less memory). */
type Owned = { [kOwner]?: DangaSocket | undefined };

/** Accept errors are reported at most once per this many ms (an EMFILE storm is one report). */
const ACCEPT_ERROR_REPORT_MS = 1000;

/** A listener's link to the loop, with its accept-error rate limit. */
class Notifier {
  private lastAcceptReport = 0;
  private suppressed = 0;
  constructor(readonly obj: DangaSocket) {}
  notify(): void {
    if (!this.obj.closed) loop.markReady(this.obj);
  }
  acceptError(err: Error): void {
    // libuv keeps listening on EMFILE (its reserve-descriptor trick sheds the connection),
    // so the listener recovers by itself once descriptors free up; report, don't close.
    const now = nowSeconds() * 1000; // monotonic, and fake timers drive it in tests
    if (now - this.lastAcceptReport < ACCEPT_ERROR_REPORT_MS) {
      this.suppressed++;
      return;
    }
    if (this.suppressed > 0) err.message += ` (${this.suppressed} more accept errors suppressed)`;
    this.lastAcceptReport = now;
    this.suppressed = 0;
    loop.report(err, { kind: 'accept', object: this.obj });
  }
}

/** Options of `DangaSocket.EventLoop()`. */
export interface EventLoopOptions {
  /** Aborting it ends the loop at the end of the current iteration and resolves the promise. */
  signal?: AbortSignal | undefined;
}

/** Duck-typed: an AbortSignal from another realm (vm contexts, jest) fails `instanceof`. */
function isAbortSignal(v: unknown): v is AbortSignal {
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof (v as AbortSignal).aborted === 'boolean' &&
    typeof (v as AbortSignal).addEventListener === 'function'
  );
}

function checkBool(name: string, v: unknown): asserts v is boolean {
  if (typeof v !== 'boolean') throw invalidArg(`${name} expects a boolean, got ${describe(v)}`);
}

function checkCallback(name: string, v: unknown): void {
  if (v !== null && typeof v !== 'function') {
    throw invalidArg(`${name} expects a function or null, got ${describe(v)}`);
  }
}

/**
 * The Danga::Socket base class: wrap one socket, override the hooks, run the one loop.
 *
 * Hook order within one loop iteration, for one object: `eventRead`, `eventWrite`,
 * `eventErr`, `eventHup` — each skipped once the object is closed. Readiness is
 * level-triggered: while read (or write) is watched and data/EOF (or writability) is pending,
 * the hook fires every iteration. `eventErr`/`eventHup` are always delivered.
 */
export abstract class DangaSocket {
  /** The descriptor-map key: unique in the process, never reused. */
  readonly id: number;
  /** @internal when the object was made (`createdStamp()`): the console's age column */
  readonly [kCreatedS]: number = createdStamp();
  /** @internal pushed-back chunks, read first */
  [kPushback]: Buffer[] = NO_PUSHBACK;
  /** @internal the wrapped handle, until it is really closed or stolen (the channel's) */
  get [kHandle](): net.Socket | net.Server | NativeSocket | null {
    return this.finished === null
      ? (this.channel.sock as net.Socket | net.Server | NativeSocket)
      : null;
  }

  private readonly channel: Channel;
  /** The object's booleans, one small integer (memory per idle connection): F_* bits. */
  #flags = 0;
  private _closeReason: string | undefined = undefined;
  private wq: (Buffer | (() => void))[] = NO_QUEUE;
  private wOffset = 0;
  private wSize = 0;
  private finished: string | undefined | null = null;
  /** @internal reads that returned bytes + writes the kernel took bytes from (idle timeout) */
  [kActivity] = 0;
  /** What few objects use, made on first use (memory per idle connection). */
  #rare: Rare | null = null;

  private get writerFunc(): WriterFunc | null {
    return this.#rare === null ? null : this.#rare.writerFunc;
  }
  private set writerFunc(fn: WriterFunc | null) {
    this.#rareState().writerFunc = fn;
  }
  private get deadlines(): Deadlines | null {
    return this.#rare === null ? null : this.#rare.deadlines;
  }
  private set deadlines(d: Deadlines | null) {
    this.#rareState().deadlines = d;
  }
  /** `whenClosed()`'s promise and its resolver. */
  get #closedWait(): ClosedWait | null {
    return this.#rare === null ? null : this.#rare.closedWait;
  }
  set #closedWait(w: ClosedWait | null) {
    this.#rareState().closedWait = w;
  }
  /** The peer's address, read from the channel once. */
  get #peer(): ChannelAddress | undefined {
    return this.#rare === null ? undefined : this.#rare.peer;
  }
  set #peer(p: ChannelAddress | undefined) {
    if (p !== undefined || this.#rare !== null) this.#rareState().peer = p;
  }
  #rareState(): Rare {
    return (this.#rare ??= {
      writerFunc: null,
      deadlines: null,
      closedWait: null,
      peer: undefined,
    });
  }

  /** @internal read interest */
  get [kWatchingRead](): boolean {
    return (this.#flags & F_WATCH_READ) !== 0;
  }
  set [kWatchingRead](on: boolean) {
    this.#flags = on ? this.#flags | F_WATCH_READ : this.#flags & ~F_WATCH_READ;
  }
  private get _closed(): boolean {
    return (this.#flags & F_CLOSED) !== 0;
  }
  private set _closed(on: boolean) {
    this.#flags = on ? this.#flags | F_CLOSED : this.#flags & ~F_CLOSED;
  }
  private get watchingWrite(): boolean {
    return (this.#flags & F_WATCH_WRITE) !== 0;
  }
  private set watchingWrite(on: boolean) {
    this.#flags = on ? this.#flags | F_WATCH_WRITE : this.#flags & ~F_WATCH_WRITE;
  }
  /** True if write() (not the user) turned write-watching on, so it may turn it off. */
  private get writeSetWatch(): boolean {
    return (this.#flags & F_WRITE_SET_WATCH) !== 0;
  }
  private set writeSetWatch(on: boolean) {
    this.#flags = on ? this.#flags | F_WRITE_SET_WATCH : this.#flags & ~F_WRITE_SET_WATCH;
  }
  /** @internal in the loop's candidate list (see Loop.markReady) */
  get [kCandidate](): boolean {
    return (this.#flags & F_CANDIDATE) !== 0;
  }
  set [kCandidate](on: boolean) {
    this.#flags = on ? this.#flags | F_CANDIDATE : this.#flags & ~F_CANDIDATE;
  }
  private get corked(): boolean {
    return (this.#flags & F_CORKED) !== 0;
  }
  private set corked(on: boolean) {
    this.#flags = on ? this.#flags | F_CORKED : this.#flags & ~F_CORKED;
  }

  /**
   * Wrap `sock` (a socket in any state, or a server) and register in the descriptor map.
   * The object owns the socket from now on.
   * @throws DangaSocketError `DS_ERR_INVALID_ARG` for a non-socket, a destroyed socket or one
   *   whose object was closed; `DS_ERR_ALREADY_WRAPPED` if an open object wraps it.
   */
  constructor(sock: net.Socket | net.Server | NativeSocket) {
    // Each prototype walk once (the accept path runs this per connection); the likelier
    // class first: a net.Socket's walk to NativeSocket would cross its whole chain.
    const stream = sock instanceof net.Socket;
    const native = !stream && sock instanceof NativeSocket;
    const server = !native && !stream && sock instanceof net.Server;
    if (!native && !stream && !server) {
      throw invalidArg(
        `DangaSocket expects a net.Socket, net.Server or NativeSocket, got ${describe(sock)}`,
      );
    }
    const owner = (sock as Owned)[kOwner];
    if (owner !== undefined) {
      if (!owner.closed) {
        throw new DangaSocketError(
          'DS_ERR_ALREADY_WRAPPED',
          `socket is already wrapped by ${owner.asString()}`,
        );
      }
      throw invalidArg(`socket belonged to an object that was closed (${owner.asString()})`);
    }
    if ((stream || native) && sock.destroyed) {
      throw invalidArg('cannot wrap a destroyed socket');
    }
    this.id = nextId++;
    this.channel = native
      ? sock.isListener
        ? new NativeListenChannel(sock, new Notifier(this))
        : new NativeStreamChannel(sock)
      : server
        ? new ServerChannel(sock, new Notifier(this))
        : new StreamChannel(sock as net.Socket, this);
    (sock as Owned)[kOwner] = this;
    if (server) this.#flags |= F_SERVER;
    loop.register(this);
    // Wrapped from outside the loop (a promise, a Node callback): PLCs see it at once.
    loop.wake();
  }

  // ---- hooks ---------------------------------------------------------------------------

  /**
   * Readable (data, EOF or error pending) while read is watched. Every subclass implements it
   * (a JavaScript subclass that does not gets the base's `DS_ERR_UNHANDLED_EVENT` at run time).
   */
  abstract eventRead(): void;

  /** Writable while write is watched. The default flushes the write queue. */
  eventWrite(): void {
    this.write(undefined);
  }

  /** An error on the socket (always delivered). Every subclass implements it. */
  abstract eventErr(): void;

  /** Hang-up (always delivered). Every subclass implements it. */
  abstract eventHup(): void;

  /** A write was partial. The default turns write-watching on (and write() turns it off again). */
  onIncompleteWrite(): void {
    if (!this.watchingWrite) this.writeSetWatch = true;
    this.setWatchWrite(true);
  }

  // ---- reading -------------------------------------------------------------------------

  /**
   * Read up to `n` bytes (at most 1 MiB): pushed-back data first, one chunk per call.
   * @returns the bytes; an empty Buffer if nothing is available now; `null` on EOF, error,
   *   closed object or `n <= 0`.
   * @throws DangaSocketError `DS_ERR_INVALID_ARG` if `n` is not a number.
   */
  read(n: number): Buffer | null {
    if (typeof n !== 'number' || Number.isNaN(n)) {
      throw invalidArg(`read expects a byte count, got ${describe(n)}`);
    }
    n = Math.floor(n);
    if (this._closed || n <= 0) return null;
    const pb = this[kPushback];
    if (pb.length > 0) return this.readPushback(pb, n);
    const buf = this.channel.read(n < MAX_READ ? n : MAX_READ);
    if (buf !== null && buf.length !== 0) this[kActivity]++;
    return buf;
  }

  /**
   * As `read(n)`, but the Buffer may be a view into memory the library reuses: valid until the
   * next read on any object or until the hook returns, whichever is first. Copy what you keep.
   * `write()` of such a view copies whatever the kernel did not take before queueing it.
   * @throws DangaSocketError `DS_ERR_INVALID_ARG` if `n` is not a number.
   */
  readView(n: number): Buffer | null {
    if (typeof n !== 'number' || Number.isNaN(n)) {
      throw invalidArg(`readView expects a byte count, got ${describe(n)}`);
    }
    n = Math.floor(n);
    if (this._closed || n <= 0) return null;
    const pb = this[kPushback];
    if (pb.length > 0) return this.readPushback(pb, n);
    const buf = this.channel.readView(n < MAX_READ ? n : MAX_READ);
    if (buf !== null && buf.length !== 0) this[kActivity]++;
    return buf;
  }

  private readPushback(pb: Buffer[], n: number): Buffer {
    const first = pb[0] as Buffer;
    if (first.length <= n) {
      pb.shift();
      if (pb.length === 0) loop.pushbackSet.delete(this);
      return first;
    }
    pb[0] = first.subarray(n);
    return first.subarray(0, n);
  }

  /** Put bytes back to be read first (FIFO); `eventRead` runs again this iteration. */
  pushBackRead(data: Buffer | string): void {
    let buf: Buffer;
    if (typeof data === 'string') buf = Buffer.from(data, 'utf8');
    else if (Buffer.isBuffer(data)) buf = data;
    else throw invalidArg(`pushBackRead expects a Buffer or string, got ${describe(data)}`);
    if (this[kPushback] === NO_PUSHBACK) this[kPushback] = [];
    this[kPushback].push(buf);
    if (!this._closed) loop.pushbackSet.add(this);
  }

  /** Watch for readability (level-triggered). Off also stops reading from the kernel once our buffer is full. */
  watchRead(on: boolean): void {
    checkBool('watchRead', on);
    if (this._closed || this[kWatchingRead] === on) return;
    this[kWatchingRead] = on;
    this.channel.interest(on, this.watchingWrite);
    if (on) loop.markReady(this);
  }

  /** Watch for writability (level-triggered). The user now owns write-watching. */
  watchWrite(on: boolean): void {
    checkBool('watchWrite', on);
    if (this._closed) return;
    if (on) this.writeSetWatch = false;
    this.setWatchWrite(on);
  }

  private setWatchWrite(on: boolean): void {
    if (this._closed || this.watchingWrite === on) return;
    this.watchingWrite = on;
    this.channel.interest(this[kWatchingRead], on);
    if (on) loop.markReady(this);
  }

  // ---- writing -------------------------------------------------------------------------

  /**
   * Queue `data` and write as much as the kernel takes now (Danga semantics). A function
   * runs once every byte queued before it has been handed to the kernel; `undefined` flushes.
   * @returns true only when nothing remains queued in user space (always true once closed).
   * @throws DangaSocketError `DS_ERR_INVALID_ARG` for any other argument type.
   */
  write(data?: WriteData): boolean {
    let item: Buffer | (() => void) | undefined;
    if (data === undefined) item = undefined;
    else if (Buffer.isBuffer(data) || typeof data === 'function') item = data;
    else if (typeof data === 'string') item = Buffer.from(data, 'utf8');
    else if (data instanceof Uint8Array)
      item = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    else
      throw invalidArg(
        `write expects a Buffer, string, function or undefined, got ${describe(data)}`,
      );
    if (this._closed) return true;
    if (item !== undefined && this.wSize > 0) {
      if (typeof item !== 'function' && isSharedView(item)) item = Buffer.from(item);
      this.#queue().push(item);
      this.wSize += typeof item === 'function' ? 1 : item.length;
      return false;
    }
    let bypass = item !== undefined;
    for (;;) {
      const cur = bypass ? item : this.wq[0];
      if (cur === undefined) return true;
      if (typeof cur === 'function') {
        if (!bypass) {
          this.wq.shift();
          this.wSize -= 1;
        }
        bypass = false;
        cur();
        if (this._closed) return true;
        continue;
      }
      if (
        !bypass &&
        this.writerFunc === null &&
        this.wq.length > 1 &&
        typeof this.wq[1] !== 'function'
      ) {
        // Two or more Buffers queued: one writev(2) for as many as the kernel takes.
        if (this.#writeQueueHead()) return false;
        continue;
      }
      const toWrite = cur.length - this.wOffset;
      let written: number;
      try {
        written =
          this.writerFunc !== null
            ? this.callWriter(cur, toWrite)
            : this.channel.write(cur, this.wOffset, toWrite);
      } catch (err) {
        if (!this.#writeWouldBlock(err)) return false;
        written = CHANNEL_EAGAIN;
      }
      if (written === CHANNEL_EAGAIN) {
        if (bypass) {
          // A readView() result is overwritten by the next read: queue a copy.
          const own = isSharedView(cur) ? Buffer.from(cur) : cur;
          this.#queue().push(own);
          this.wSize += own.length;
        }
        this.#awaitWritable();
        return false;
      }
      if (written > 0) this[kActivity]++;
      if (written < toWrite) {
        if (bypass && isSharedView(cur)) {
          // Copy only what the kernel refused (wOffset is 0 on the bypass path).
          const rest = Buffer.from(cur.subarray(written));
          this.#queue().push(rest);
          this.wSize += rest.length;
          this.onIncompleteWrite();
          return false;
        }
        if (bypass) {
          this.#queue().push(cur);
          this.wSize += cur.length;
        }
        this.wOffset += written;
        this.wSize -= written;
        this.onIncompleteWrite();
        return false;
      }
      this.wOffset = 0;
      if (this.writeSetWatch) {
        this.setWatchWrite(false);
        this.writeSetWatch = false;
      }
      if (bypass) return true;
      this.wSize -= written;
      this.wq.shift();
    }
  }

  /**
   * One `writev` of the queue's leading Buffers; drops what was taken. Returns true when
   * `write` must stop (would block, partial write, or closed on an error).
   */
  #writeQueueHead(): boolean {
    const q = this.wq;
    let written: number;
    try {
      written = this.channel.writev(q, this.wOffset);
    } catch (err) {
      if (!this.#writeWouldBlock(err)) return true;
      written = CHANNEL_EAGAIN;
    }
    if (written === CHANNEL_EAGAIN) {
      this.#awaitWritable();
      return true;
    }
    if (written > 0) this[kActivity]++;
    for (;;) {
      const head = q[0];
      if (typeof head !== 'object') break;
      const rest = head.length - this.wOffset;
      if (written < rest) {
        this.wOffset += written;
        this.wSize -= written;
        this.onIncompleteWrite();
        return true;
      }
      written -= rest;
      this.wSize -= rest;
      this.wOffset = 0;
      q.shift();
      if (written === 0) break;
    }
    if (this.writeSetWatch) {
      this.setWatchWrite(false);
      this.writeSetWatch = false;
    }
    return false;
  }

  /**
   * A write threw: true if it only would have blocked; otherwise the object is closed with
   * `'EPIPE'`, `'ECONNRESET'` or `'write_error'` and this returns false.
   */
  #writeWouldBlock(err: unknown): boolean {
    const code = errnoOf(err);
    if (code === 'EAGAIN' || code === 'EWOULDBLOCK') return true;
    this.close(code === 'EPIPE' ? 'EPIPE' : code === 'ECONNRESET' ? 'ECONNRESET' : 'write_error');
    return false;
  }

  /** The kernel refused bytes: watch for writability (and remember we turned it on). */
  #awaitWritable(): void {
    if (!this.watchingWrite) this.writeSetWatch = true;
    this.setWatchWrite(true);
  }

  /** The write queue, allocated on first use (most objects never queue: memory per idle object). */
  #queue(): (Buffer | (() => void))[] {
    if (this.wq === NO_QUEUE) this.wq = [];
    return this.wq;
  }

  private callWriter(buf: Buffer, toWrite: number): number {
    const written = (this.writerFunc as WriterFunc)(buf, toWrite, this.wOffset);
    if (!Number.isInteger(written) || written < 0 || written > toWrite) {
      throw Object.assign(new Error(`writer returned ${String(written)}`), { code: 'EINVAL' });
    }
    return written;
  }

  /** Bytes still queued in user space (each queued function counts 1). */
  get writeBufSize(): number {
    return this.wSize;
  }

  /** Replace the socket write for data items (see `WriterFunc`), or restore it with null. */
  setWriterFunc(fn: WriterFunc | null): void {
    checkCallback('setWriterFunc', fn);
    this.writerFunc = fn;
  }

  /**
   * Set TCP_CORK (real `setsockopt` on Linux through the native addon; a recorded flag
   * elsewhere). Unsupported sockets (Unix) are ignored; a dead descriptor closes the object
   * with reason `tcp_cork_failed`.
   */
  tcpCork(on: boolean): void {
    checkBool('tcpCork', on);
    if (this._closed || on === this.corked) return;
    this.#applyCork(on);
  }

  /**
   * The setsockopt of `tcpCork`, also run by close/steal after `closed` is set (reference
   * §4.4 step 3): there, the `close('tcp_cork_failed')` a dead descriptor asks for returns at
   * once and the first reason stays.
   */
  #applyCork(on: boolean): void {
    const fd = this.channel.osFd();
    if (fd !== undefined) {
      try {
        nativeCork(fd, on);
      } catch (err) {
        const code = errnoOf(err);
        if (code === 'ENOPROTOOPT' || code === 'EOPNOTSUPP') return;
        if (code === 'EBADF' || code === 'ENOTSOCK') {
          process.emitWarning(`setsockopt: ${(err as Error).message}`);
          this.close('tcp_cork_failed');
          return;
        }
        throw new DangaSocketError('DS_ERR_SYSCALL', `setsockopt(TCP_CORK): ${String(err)}`, {
          cause: err,
        });
      }
    }
    this.corked = on;
  }

  /** Whether TCP_CORK is on (as last applied by `tcpCork`). */
  get isCorked(): boolean {
    return this.corked;
  }

  // ---- closing -------------------------------------------------------------------------

  /**
   * Close: drop the write queue (queued functions never run) and, at the end of the current
   * loop iteration, really close the OS socket and leave the descriptor map. Idempotent.
   */
  close(reason?: string): void {
    if (reason !== undefined && typeof reason !== 'string') {
      throw invalidArg(`close expects a string reason, got ${describe(reason)}`);
    }
    if (this._closed) return;
    this._closeReason = reason;
    this.detachCommon();
    loop.deferClose(this, this.channel);
  }

  /** Steps shared by close and steal (reference §4.4, 1–6). */
  private detachCommon(): void {
    this._closed = true;
    if (this.corked) {
      try {
        this.#applyCork(false);
      } catch {
        // The socket is going away; a failed uncork changes nothing.
      }
    }
    this.wq = NO_QUEUE;
    this.watchingWrite = false;
    this[kWatchingRead] = false;
  }

  /** The OS error seen on the socket (reset, refused connect, ...), if any. */
  get osError(): Error | undefined {
    return this.channel.error ?? undefined;
  }

  /** True once `close()` or `stealSocket()` ran. */
  get closed(): boolean {
    return this._closed;
  }

  /** The reason given to `close()`. */
  get closeReason(): string | undefined {
    return this._closeReason;
  }

  /**
   * Resolves with the close reason once the OS socket is really closed, with `'stolen'`
   * after `stealSocket()`, or with `'reset'` after `Reset()`.
   */
  whenClosed(): Promise<string | undefined> {
    if (this.#closedWait === null) {
      if (this.finished !== null) {
        this.#closedWait = { promise: Promise.resolve(this.finished), resolve: null };
      } else {
        let resolve: ClosedWait['resolve'] = null;
        const promise = new Promise<string | undefined>((r) => (resolve = r));
        this.#closedWait = { promise, resolve };
      }
    }
    return this.#closedWait.promise;
  }

  /** @internal the handle is gone */
  [kFinish](reason: string | undefined): void {
    if (this.finished !== null) return;
    this.finished = reason;
    const sock = this.channel.sock;
    // A closed server keeps its mark, so the constructor refuses to wrap it again (a closed
    // net.Socket is destroyed, which it refuses anyway; a stolen handle was unmarked by steal).
    if ((this.#flags & F_SERVER) === 0) (sock as Owned)[kOwner] = undefined;
    const wait = this.#closedWait;
    if (wait !== null && wait.resolve !== null) {
      wait.resolve(reason);
      wait.resolve = null;
    }
  }

  /** @internal close and destroy now (Reset, or a close() override that failed) */
  [kResetClose](reason: string, now: boolean): void {
    if (!this._closed) {
      this._closeReason = reason;
      this.detachCommon();
      if (!now) {
        loop.deferClose(this, this.channel);
        return;
      }
    }
    if (now) {
      this.channel.destroy();
      this[kFinish]('reset');
    }
  }

  /**
   * Detach and return the still-open socket, paused, with unread bytes put back into it.
   * On the native backend, a `net.Socket` (or, for a listener, a `net.Server`) made from the
   * descriptor. The map entry goes at the end of the iteration. Returns null if already closed.
   */
  stealSocket(): net.Socket | net.Server | null {
    if (this._closed) return null;
    this.detachCommon();
    this._closeReason = 'stolen';
    const sock = this.channel.detach(this[kPushback]) as net.Socket | net.Server;
    this[kPushback] = NO_PUSHBACK;
    (sock as Owned)[kOwner] = undefined;
    loop.deferClose(this, null);
    return sock;
  }

  /** The wrapped socket, or null after close/steal. */
  sock(): net.Socket | net.Server | NativeSocket | null {
    return this._closed ? null : (this.channel.sock as net.Socket | net.Server | NativeSocket);
  }

  /** The OS descriptor where Node exposes one (diagnostics only; may be reused after close). */
  osFd(): number | undefined {
    return this._closed ? undefined : this.channel.osFd();
  }

  // ---- loop internals ------------------------------------------------------------------

  /** @internal the channel saw data, EOF, an error, a connect or a finished write */
  [kNotify](): void {
    if (!this._closed) loop.markReady(this);
  }

  /** @internal events to dispatch now */
  [kEvents](): number {
    const r = this.channel.readiness();
    return (
      (r & (POLLERR | POLLHUP)) |
      (this[kWatchingRead] ? r & POLLIN : 0) |
      (this.watchingWrite ? r & POLLOUT : 0)
    );
  }

  /** @internal for Listener */
  protected acceptOne(): net.Socket | NativeSocket | null {
    return this._closed ? null : (this.channel.accept() as net.Socket | NativeSocket | null);
  }

  // ---- strings and diagnostics ---------------------------------------------------------

  /** The peer's address (read once, then kept), or undefined. */
  private peerInfo(): ChannelAddress | undefined {
    if (this._closed) return undefined;
    if (this.#peer === undefined) this.#peer = this.channel.remote();
    return this.#peer;
  }

  /** The peer's IP, or undefined (closed, not connected, listener, Unix socket). */
  peerIpString(): string | undefined {
    return this.peerInfo()?.ip;
  }

  /** `ip:port` or `[v6]:port` of the peer, or undefined. */
  peerAddrString(): string | undefined {
    const p = this.peerInfo();
    if (p === undefined) return undefined;
    return p.v6 ? `[${p.ip}]:${p.port}` : `${p.ip}:${p.port}`;
  }

  private localInfo(): ChannelAddress | undefined {
    return this._closed ? undefined : this.channel.local();
  }

  /** Our local IP, or undefined. */
  localIpString(): string | undefined {
    return this.localInfo()?.ip;
  }

  /** Our `ip:port` or `[v6]:port`, or undefined. */
  localAddrString(): string | undefined {
    const l = this.localInfo();
    if (l === undefined) return undefined;
    return l.v6 ? `[${l.ip}]:${l.port}` : `${l.ip}:${l.port}`;
  }

  /** `Class(RW): open to ip:port` while open, `Class(): closed` once closed. */
  asString(): string {
    const cls = this.constructor.name;
    if (this._closed) return `${cls}(): closed`;
    const peer = this.peerAddrString();
    return (
      `${cls}(${this[kWatchingRead] ? 'R' : ''}${this.watchingWrite ? 'W' : ''}): open` +
      (peer !== undefined ? ` to ${peer}` : '')
    );
  }

  toString(): string {
    return this.asString();
  }

  /** `DebugMsg` for this object. */
  debugMsg(fmt: string, ...args: unknown[]): void {
    DangaSocket.DebugMsg(fmt, ...args);
  }

  /**
   * Write `ERROR: msg`, this object and a stack trace to stderr.
   * @throws DangaSocketError `DS_ERR_INVALID_ARG` if `msg` is not a string.
   */
  dumpError(msg: string): void {
    if (typeof msg !== 'string') {
      throw invalidArg(`dumpError expects a message string, got ${describe(msg)}`);
    }
    const lines = [`ERROR: ${msg}`, `\t${this.constructor.name} = ${this.asString()}`];
    const stack = new Error().stack ?? '';
    for (const frame of stack.split('\n').slice(2)) lines.push(`\t${frame.trim()}`);
    process.stderr.write(lines.join('\n') + '\n');
  }

  /** Set (or clear with null) this object's post-loop callback; removed when it closes. */
  setPostLoopCallback(cb: PostLoopCallback | null): void {
    checkCallback('setPostLoopCallback', cb);
    if (cb === null) loop.plcMap.delete(this);
    else if (!this._closed) loop.plcMap.set(this, cb);
  }

  // ---- deadlines (lib/internal/deadlines.ts) ------------------------------------------

  /**
   * Stop reading, then close once every byte queued so far has been handed to the kernel
   * (reason `'flushed'`; at once on an empty queue), or after `timeoutS` seconds with reason
   * `'flush_timeout'` (a peer that stopped reading cannot hold the object open). Data written
   * afterwards is dropped. A second call can only bring the deadline forward.
   * @throws DangaSocketError `DS_ERR_INVALID_ARG` unless `timeoutS` is a finite number >= 0.
   */
  closeAfterFlush(timeoutS: number): void {
    if (typeof timeoutS !== 'number' || !Number.isFinite(timeoutS) || timeoutS < 0) {
      throw invalidArg(`closeAfterFlush expects seconds >= 0, got ${describe(timeoutS)}`);
    }
    if (this._closed) return;
    (this.deadlines ??= new Deadlines(this)).closeAfterFlush(timeoutS);
  }

  /**
   * Close with reason `'idle_timeout'` once no byte was read (`read`/`readView` returned
   * data) or written (the kernel took data) for `seconds` (fractional); `null` turns it off, a new
   * call restarts it. Checked lazily, a quarter period at a time: the close comes between
   * `seconds` and 1.25 × `seconds` after the last byte.
   * @throws DangaSocketError `DS_ERR_INVALID_ARG` unless `seconds` is null or a finite number > 0.
   */
  setIdleTimeout(seconds: number | null): void {
    if (
      seconds !== null &&
      (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds <= 0)
    ) {
      throw invalidArg(`setIdleTimeout expects seconds > 0 or null, got ${describe(seconds)}`);
    }
    if (this._closed) return;
    if (seconds === null && this.deadlines === null) return;
    (this.deadlines ??= new Deadlines(this)).setIdleTimeout(seconds);
  }

  // ---- statics: the process-wide loop --------------------------------------------------

  /**
   * Run loop iterations until a post-loop callback returns a falsy value, or until
   * `options.signal` aborts: then the current iteration finishes (a waiting loop wakes at
   * once) and the promise resolves. An already-aborted signal resolves at once, running nothing.
   * @throws DangaSocketError `DS_ERR_INVALID_ARG` for options that are not an object or a
   *   `signal` that is not an AbortSignal.
   * @throws (rejects) DangaSocketError `DS_ERR_LOOP_RUNNING` if already running; rejects
   *   with whatever the error handler threw.
   */
  static EventLoop(options?: EventLoopOptions): Promise<void> {
    if (options === undefined) return loop.run();
    if (typeof options !== 'object' || options === null) {
      throw invalidArg(`EventLoop expects an options object, got ${describe(options)}`);
    }
    const signal: unknown = options.signal;
    if (signal !== undefined && !isAbortSignal(signal)) {
      throw invalidArg(`EventLoop signal must be an AbortSignal, got ${describe(signal)}`);
    }
    return loop.run(signal);
  }

  /** Set (or clear with null) the global post-loop callback (runs after per-object ones). */
  static SetPostLoopCallback(cb: PostLoopCallback | null): void {
    checkCallback('SetPostLoopCallback', cb);
    loop.globalPlc = cb;
  }

  /** -1 (default): wait for events or the next timer; 0: never wait; N: wake at least every N ms. */
  static SetLoopTimeout(ms: number): number {
    if (typeof ms !== 'number' || !Number.isFinite(ms)) {
      throw invalidArg(`SetLoopTimeout expects milliseconds, got ${describe(ms)}`);
    }
    loop.loopTimeout = ms < 0 ? -1 : ms;
    loop.wake();
    return loop.loopTimeout;
  }

  /**
   * Run `cb(now)` once after `seconds` (fractional, may be 0 or negative); `now` is epoch
   * seconds. Equal fire times run in the order added.
   * @throws DangaSocketError `DS_ERR_INVALID_ARG` for a non-finite delay or a non-function.
   */
  static AddTimer(seconds: number, cb: (now: number) => void): Timer {
    if (typeof seconds !== 'number' || !Number.isFinite(seconds)) {
      throw invalidArg(`AddTimer expects seconds, got ${describe(seconds)}`);
    }
    if (typeof cb !== 'function')
      throw invalidArg(`AddTimer expects a function, got ${describe(cb)}`);
    const fireTime = nowSeconds() + seconds;
    const t = loop.timers.add(fireTime, cb);
    loop.timerAdded(fireTime);
    return t;
  }

  /** The live descriptor map: id → object (identity stable across Reset). */
  static DescriptorMap(): Map<number, DangaSocket> {
    return loop.map;
  }

  /** Objects in the descriptor map (including ones closed this iteration). */
  static WatchedSockets(): number {
    return loop.map.size;
  }

  /** Handles waiting for their deferred close at the end of the iteration. */
  static ToClose(): readonly (net.Socket | net.Server | NativeSocket)[] {
    return loop.pendingCloseHandles() as (net.Socket | net.Server | NativeSocket)[];
  }

  /**
   * The backend `Listener.listen` and `connectDanga` use when no `backend` option is given:
   * `'node'` (net.Socket) or `'native'` (NativeSocket, Linux). Initialised from
   * `DANGA_BACKEND=node|native` (an unavailable native backend falls back to node with one
   * warning), else `'node'`.
   * @throws DangaSocketError `DS_ERR_INVALID_ARG` for another value,
   *   `DS_ERR_NATIVE_UNAVAILABLE` when setting `'native'` without the addon.
   */
  static get DefaultBackend(): Backend {
    return getDefaultBackend();
  }

  static set DefaultBackend(value: Backend) {
    setDefaultBackend(checkBackend(value, 'DefaultBackend'));
  }

  /** libuv uses epoll on Linux. */
  static HaveEpoll(): boolean {
    return process.platform === 'linux';
  }

  /**
   * Destroy every wrapped socket, listener and pending close (their objects end closed,
   * `whenClosed()` → 'reset'), clear all loop state in place, restore the default error
   * handler and resolve a running `EventLoop()`.
   */
  static Reset(): void {
    loop.reset();
  }

  /** Write `>>> ` + Perl-style sprintf + newline to stderr. */
  static DebugMsg(fmt: string, ...args: unknown[]): void {
    if (typeof fmt !== 'string')
      throw invalidArg(`DebugMsg expects a format string, got ${describe(fmt)}`);
    process.stderr.write('>>> ' + sprintf(fmt.replace(/\n$/, ''), args) + '\n');
  }

  /** Turn profiling on (data emptied). Returns true. */
  static EnableProfiling(): boolean {
    for (const k of Object.keys(loop.profile)) delete loop.profile[k];
    loop.profiling = true;
    return true;
  }

  /** Turn profiling off, keeping the data. */
  static DisableProfiling(): void {
    loop.profiling = false;
  }

  /** Live profiling data: `"<Class>-read|write|err|hup"` → `[userSeconds, systemSeconds, calls]`. */
  static ProfilingData(): Record<string, ProfilingRow> {
    return loop.profile;
  }

  /** Receive errors thrown by hooks, timers and post-loop callbacks (null: the default). */
  static setErrorHandler(fn: ErrorHandler | null): void {
    checkCallback('setErrorHandler', fn);
    loop.errorHandler = fn ?? defaultErrorHandler;
  }

  /**
   * Replace the raw-descriptor map (fd → `cb(mask)`), or with no argument return a copy.
   * Needs the native addon (`DS_ERR_NATIVE_UNAVAILABLE` otherwise).
   */
  static OtherFds(
    map?: Map<number, OtherFdCallback> | Record<number, OtherFdCallback>,
  ): Map<number, OtherFdCallback> {
    if (map !== undefined) nativeOtherFds(normaliseFds(map), true);
    return new Map(loop.otherFds);
  }

  /** Merge into the raw-descriptor map (a new callback wins). */
  static AddOtherFds(
    map: Map<number, OtherFdCallback> | Record<number, OtherFdCallback>,
  ): Map<number, OtherFdCallback> {
    nativeOtherFds(normaliseFds(map), false);
    return new Map(loop.otherFds);
  }
}

function normaliseFds(map: unknown): Map<number, OtherFdCallback> {
  if (typeof map !== 'object' || map === null) {
    throw invalidArg(`OtherFds expects a Map or object of fd → callback, got ${describe(map)}`);
  }
  const entries: [unknown, unknown][] =
    map instanceof Map ? [...(map as Map<unknown, unknown>)] : Object.entries(map);
  const out = new Map<number, OtherFdCallback>();
  for (const [k, v] of entries) {
    const fd = typeof k === 'string' ? Number(k) : k;
    if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0) {
      throw invalidArg(`OtherFds: ${describe(k)} is not a descriptor`);
    }
    if (typeof v !== 'function')
      throw invalidArg(`OtherFds: callback for fd ${fd} is ${describe(v)}`);
    out.set(fd, v as OtherFdCallback);
  }
  return out;
}

// The abstract hooks still exist at run time: a JavaScript subclass (no compiler to demand
// them) that leaves one out gets DS_ERR_UNHANDLED_EVENT, which closes only that object.
for (const hook of ['eventRead', 'eventErr', 'eventHup'] as const) {
  Object.defineProperty(DangaSocket.prototype, hook, {
    value: function unhandledEvent(this: DangaSocket): void {
      throw new DangaSocketError(
        'DS_ERR_UNHANDLED_EVENT',
        `Base class ${hook} called for ${this.asString()}`,
      );
    },
    writable: true,
    configurable: true,
  });
}

export type {
  ErrorHandler,
  ErrorContext,
  OtherFdCallback,
  PostLoopCallback,
  ProfilingRow,
} from './event-loop';
export { Timer };
