import * as net from 'node:net';
import { types } from 'node:util';
import { DangaSocket, type WriteData } from './danga-socket';
import { DangaSocketError, describe, errnoOf, invalidArg } from './errors';
import { StreamReader } from './internal/stream-reader';
import { NativeSocket } from './native-socket';

/**
 * Consume a prefix of `buffer`: return how many bytes were handled (0 = wait for more).
 * `eof` is true once the peer has finished sending.
 */
export type OnReadCallback = (buffer: Buffer, eof: boolean, stream: StreamSocket) => number;

/** Options of `new StreamSocket(sock, options)`. Every callback may also be a subclass override. */
export interface StreamSocketOptions {
  /**
   * The read handler (see `StreamSocket#onRead`). Without it (and without a subclass override)
   * the bytes wait for `lines()`, `readExactly()` and `readUntil()`.
   */
  onRead?: OnReadCallback | undefined;
  /** After the final `onRead(…, true)` calls (see `StreamSocket#onReadEof`). */
  onReadEof?: ((stream: StreamSocket) => void) | undefined;
  /** The socket failed before EOF; the stream closes after this returns. */
  onReadError?: ((err: Error, stream: StreamSocket) => void) | undefined;
  /** A write failed (EPIPE, ECONNRESET, …); the stream closes after this returns. */
  onWriteError?: ((err: Error, stream: StreamSocket) => void) | undefined;
  /** Replaces the default pause when the read buffer reaches `readHighWatermark`. */
  onReadHighWatermark?: ((bufferedBytes: number, stream: StreamSocket) => void) | undefined;
  /** Replaces the default resume when the read buffer drops below `readLowWatermark`. */
  onReadLowWatermark?: ((bufferedBytes: number, stream: StreamSocket) => void) | undefined;
  /** The write queue reached `writeHighWatermark`. */
  onWriteHighWatermark?: ((queuedBytes: number, stream: StreamSocket) => void) | undefined;
  /** After `onWriteHighWatermark`, the write queue drained below `writeLowWatermark`. */
  onWritable?: ((queuedBytes: number, stream: StreamSocket) => void) | undefined;
  /** The write queue drained to empty after having been non-empty. */
  onOutgoingEmpty?: ((stream: StreamSocket) => void) | undefined;
  /** Bytes read from the socket per read readiness (integer >= 1; default 8192). */
  readLen?: number | undefined;
  /** Pause reading once this many bytes are buffered unconsumed (set with the low mark). */
  readHighWatermark?: number | undefined;
  /** Resume reading once the buffer drops below this (0 <= low <= high). */
  readLowWatermark?: number | undefined;
  /** Signal `onWriteHighWatermark` at this many queued bytes (set with the low mark). */
  writeHighWatermark?: number | undefined;
  /** Signal `onWritable` once the queue drops below this (0 <= low <= high). */
  writeLowWatermark?: number | undefined;
  /** Close (after flushing) once the read side hit EOF and `onReadEof` ran. Default true. */
  closeOnReadEof?: boolean | undefined;
}

const EMPTY = Buffer.alloc(0);
const DEFAULT_READ_LEN = 8192;
/** Default read high-water mark of a stream without onRead (low: half of it). */
const CONSUMER_READ_HIGH = 64 * 1024;
/** Default longest line (or `readUntil` record) before the stream closes. */
const DEFAULT_MAX_LINE = 64 * 1024;

/** The `maxLength` of `lines()` / `readUntil()` options. */
function checkMaxLength(what: string, options: unknown): number {
  if (options === undefined) return DEFAULT_MAX_LINE;
  if (typeof options !== 'object' || options === null) {
    throw invalidArg(`${what} expects an options object, got ${describe(options)}`);
  }
  const max: unknown = (options as { maxLength?: unknown }).maxLength;
  if (max === undefined) return DEFAULT_MAX_LINE;
  if (typeof max !== 'number' || !Number.isSafeInteger(max) || max < 1) {
    throw invalidArg(`${what} maxLength must be an integer >= 1, got ${describe(max)}`);
  }
  return max;
}

/** Options of `StreamSocket#lines()` and `StreamSocket#readUntil()`. */
export interface LineOptions {
  /** Longest line (bytes, without the terminator) before the stream closes; default 64 KiB. */
  maxLength?: number | undefined;
}
const WRITE_FAILURES = new Set(['EPIPE', 'ECONNRESET', 'write_error']);
const CALLBACK_OPTIONS = [
  'onRead',
  'onReadEof',
  'onReadError',
  'onWriteError',
  'onReadHighWatermark',
  'onReadLowWatermark',
  'onWriteHighWatermark',
  'onWritable',
  'onOutgoingEmpty',
] as const;

function isWriteData(v: unknown): boolean {
  return (
    v === undefined || typeof v === 'string' || typeof v === 'function' || v instanceof Uint8Array
  );
}

function checkCount(name: string, v: unknown, min: number): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
    throw invalidArg(`StreamSocket ${name} must be an integer >= ${min}, got ${describe(v)}`);
  }
  return v;
}

function checkMarks(
  side: 'read' | 'write',
  high: unknown,
  low: unknown,
): [number, number] | undefined {
  const h = checkCount(`${side}HighWatermark`, high, 1);
  const l = checkCount(`${side}LowWatermark`, low, 0);
  if (h === undefined && l === undefined) return undefined;
  if (h === undefined || l === undefined || l > h) {
    throw invalidArg(
      `StreamSocket ${side}HighWatermark and ${side}LowWatermark go together, with low <= high`,
    );
  }
  return [h, l];
}

function checkStreamOptions(options: unknown): StreamSocketOptions {
  if (typeof options !== 'object' || options === null) {
    throw invalidArg(`StreamSocket expects an options object, got ${describe(options)}`);
  }
  const o = options as Record<string, unknown>;
  for (const key of CALLBACK_OPTIONS) {
    if (o[key] !== undefined && typeof o[key] !== 'function') {
      throw invalidArg(`StreamSocket ${key} must be a function, got ${describe(o[key])}`);
    }
  }
  if (o.closeOnReadEof !== undefined && typeof o.closeOnReadEof !== 'boolean') {
    throw invalidArg(
      `StreamSocket closeOnReadEof must be a boolean, got ${describe(o.closeOnReadEof)}`,
    );
  }
  checkCount('readLen', o.readLen, 1);
  checkMarks('read', o.readHighWatermark, o.readLowWatermark);
  checkMarks('write', o.writeHighWatermark, o.writeLowWatermark);
  return o;
}

/**
 * A buffered byte stream on the Danga loop, in the style of IO::Async::Stream.
 *
 * Read side, per read readiness: read up to `readLen` bytes, append them to the read buffer,
 * then call `onRead(buffer, false)`; while it returns n > 0, drop those n bytes and call it
 * again if bytes remain; 0 means "wait for more". Then, if the buffer reached
 * `readHighWatermark`, `onReadHighWatermark` (default: pause reading); after a call that drops
 * it below `readLowWatermark`, `onReadLowWatermark` (default: resume). At EOF: `onRead(buffer,
 * true)` until it returns 0 — with an empty buffer it is called exactly once and its return
 * ignored, so a handler that always claims progress cannot spin — then `onReadEof`, then (if
 * `closeOnReadEof`, the default) `closeWhenEmpty('eof')`: unlike IO::Async, writes queued
 * before or during EOF handling still reach the peer. EOF is reported once.
 *
 * Write side: `write()` is Danga's queue; `writeHighWatermark` / `writeLowWatermark` give
 * `onWriteHighWatermark` and then `onWritable` (edge-triggered, like Node's `'drain'`);
 * `onOutgoingEmpty` when the queue empties. A failed write calls `onWriteError`, then closes.
 *
 * Close reasons added by this class: `eof`, `read_error` (and `ECONNRESET`), `error`, `hup`.
 * Overriding `eventRead`/`eventWrite`/`eventErr`/`eventHup`/`close` requires calling `super`.
 */
export class StreamSocket extends DangaSocket {
  /** Bytes read per read readiness. */
  readonly readLen: number;
  /** Whether a read EOF closes the stream (after flushing). */
  readonly closeOnReadEof: boolean;
  private readonly opts: StreamSocketOptions;
  private readonly readHigh: number;
  private readonly readLow: number;
  private readonly writeHigh: number;
  private readonly writeLow: number;
  // The read buffer is rStore[rStart, rEnd). Bytes handed to onRead are never overwritten:
  // appends go past rEnd, and growing copies into a new store.
  private rStore: Buffer = EMPTY;
  private rStart = 0;
  private rEnd = 0;
  private rOwned = false;
  private draining = false;
  private aboveReadHigh = false;
  private eofSeen = false;
  private writeDepth = 0;
  private writeBlocked = false;
  private hadQueue = false;
  private writeFailed = false;
  private closingWhenEmpty = false;
  private closeWhenEmptyReason: string | undefined = undefined;
  /** Set when made without onRead: serves lines(), readExactly() and readUntil(). */
  private readonly reader: StreamReader | null;
  /** EOF handling (onReadEof) ran; the close waits for a consumer to see the EOF too. */
  private eofHandled = false;

  /**
   * Wrap a connected (or connecting) socket, or a connected `NativeSocket`, and start reading
   * at once.
   * @throws DangaSocketError `DS_ERR_INVALID_ARG` for a bad option or a handle that is not a
   *   `net.Socket` or a connected `NativeSocket`; see `DangaSocket` for wrapping errors.
   */
  constructor(sock: net.Socket | NativeSocket, options: StreamSocketOptions = {}) {
    const o = checkStreamOptions(options);
    const consumers =
      o.onRead === undefined && new.target.prototype.onRead === StreamSocket.prototype.onRead;
    if (!(sock instanceof net.Socket) && !(sock instanceof NativeSocket && !sock.isListener)) {
      throw invalidArg(
        `StreamSocket expects a net.Socket or a connected NativeSocket, got ${describe(sock)}`,
      );
    }
    super(sock);
    this.opts = o;
    this.readLen = o.readLen ?? DEFAULT_READ_LEN;
    this.closeOnReadEof = o.closeOnReadEof ?? true;
    // Without onRead, unconsumed bytes must stay bounded: pause at 64 KiB by default.
    this.readHigh = o.readHighWatermark ?? (consumers ? CONSUMER_READ_HIGH : Infinity);
    this.readLow = o.readLowWatermark ?? (consumers ? CONSUMER_READ_HIGH / 2 : 0);
    this.reader = consumers ? new StreamReader(this.readerHost()) : null;
    // Reset() and stealSocket() bypass close(): end waiting consumers then too.
    if (consumers) void this.whenClosed().then(() => this.reader?.end());
    this.writeHigh = o.writeHighWatermark ?? Infinity;
    this.writeLow = o.writeLowWatermark ?? 0;
    this.watchRead(true);
  }

  // ---- hooks (override, or pass as options) --------------------------------------------

  /**
   * Consume a prefix of `buffer` and return its length (an integer 0..buffer.length; 0 =
   * wait for more data). The buffer stays valid after the call. Throwing, or returning
   * anything else, closes the stream (`handler_error`; a bad count is `DS_ERR_INVALID_ARG`).
   */
  onRead(buffer: Buffer, eof: boolean): number {
    const fn = this.opts.onRead;
    if (fn === undefined) {
      if (this.reader !== null) return this.reader.onRead(buffer, eof);
      throw new DangaSocketError('DS_ERR_UNHANDLED_EVENT', `no onRead for ${this.asString()}`);
    }
    return fn(buffer, eof, this);
  }

  /** The peer finished sending; runs once, after the final `onRead(…, true)` calls. */
  onReadEof(): void {
    this.opts.onReadEof?.(this);
  }

  /** The socket failed while the read side was open. The stream closes after this. */
  onReadError(err: Error): void {
    this.opts.onReadError?.(err, this);
  }

  /** A write failed (`err.code` EPIPE, ECONNRESET, …). The stream closes after this. */
  onWriteError(err: Error): void {
    this.opts.onWriteError?.(err, this);
  }

  /** The read buffer reached `readHighWatermark` (edge). Default: `watchRead(false)`. */
  onReadHighWatermark(bufferedBytes: number): void {
    const fn = this.opts.onReadHighWatermark;
    if (fn !== undefined) fn(bufferedBytes, this);
    else this.watchRead(false);
  }

  /** After a high mark, the buffer dropped below `readLowWatermark`. Default: resume reading. */
  onReadLowWatermark(bufferedBytes: number): void {
    const fn = this.opts.onReadLowWatermark;
    if (fn !== undefined) fn(bufferedBytes, this);
    else if (!this.eofSeen) this.watchRead(true);
  }

  /** The write queue reached `writeHighWatermark` (edge); `canWrite` is now false. */
  onWriteHighWatermark(queuedBytes: number): void {
    this.opts.onWriteHighWatermark?.(queuedBytes, this);
  }

  /** After a high mark, the write queue drained below `writeLowWatermark`; `canWrite` again. */
  onWritable(queuedBytes: number): void {
    this.opts.onWritable?.(queuedBytes, this);
  }

  /** The write queue drained to empty after having been non-empty. */
  onOutgoingEmpty(): void {
    this.opts.onOutgoingEmpty?.(this);
  }

  // ---- state ---------------------------------------------------------------------------

  /** Bytes read but not yet consumed by `onRead`. */
  get readBufSize(): number {
    return this.rEnd - this.rStart;
  }

  /** True once EOF was seen on the read side. */
  get isReadEof(): boolean {
    return this.eofSeen;
  }

  /** False between `onWriteHighWatermark` and `onWritable`. */
  get canWrite(): boolean {
    return !this.writeBlocked;
  }

  /** True after `closeWhenEmpty()` until the stream closes. */
  get isClosing(): boolean {
    return this.closingWhenEmpty && !this.closed;
  }

  /**
   * Run `onRead` again over the buffered bytes now (e.g. once a slow consumer has room), with
   * the same return rules and low-watermark check. No-op from inside `onRead`.
   */
  retryRead(): void {
    if (this.closed) return;
    this.drain(this.eofSeen);
  }

  // ---- Danga hooks ---------------------------------------------------------------------

  override eventRead(): void {
    if (this.eofSeen) {
      this.watchRead(false);
      return;
    }
    const chunk = this.read(this.readLen);
    if (chunk === null) {
      this.readEnded();
      return;
    }
    if (chunk.length === 0) return;
    this.append(chunk);
    this.drain(false);
    const len = this.rEnd - this.rStart;
    // A waiting consumer (a long line, readExactly(n) past the mark) needs more: keep reading.
    if (!this.closed && !this.aboveReadHigh && len >= this.readHigh && !this.consumerWaits()) {
      this.aboveReadHigh = true;
      this.onReadHighWatermark(len);
    }
  }

  override eventErr(): void {
    if (this.closed) return;
    const err = this.failureError('error');
    if (this.eofSeen) this.onWriteError(err);
    else this.onReadError(err);
    this.close(errnoOf(err) === 'ECONNRESET' ? 'ECONNRESET' : 'error');
  }

  override eventHup(): void {
    this.close('hup');
  }

  // ---- writing and closing -------------------------------------------------------------

  /**
   * Danga's `write` (see `DangaSocket#write`), plus the write watermarks and
   * `onOutgoingEmpty`. After `closeWhenEmpty()` new data is dropped (returns true, as on a
   * closed object).
   */
  override write(data?: WriteData): boolean {
    if (this.closingWhenEmpty && data !== undefined && isWriteData(data) && !this.closed) {
      return true;
    }
    let done: boolean;
    this.writeDepth++;
    try {
      done = super.write(data);
    } finally {
      this.writeDepth--;
    }
    if (this.writeDepth === 0 && !this.closed) this.afterWrite();
    return done;
  }

  /**
   * Flush the write queue, then close with `reason` (at once if it is empty). Order: queued
   * write callbacks, `onOutgoingEmpty`, the close. Writes after this are dropped.
   */
  closeWhenEmpty(reason?: string): void {
    if (reason !== undefined && typeof reason !== 'string') {
      throw invalidArg(`closeWhenEmpty expects a string reason, got ${describe(reason)}`);
    }
    // Already closing: the first reason stays, as with close().
    if (this.closed || this.closingWhenEmpty) return;
    if (this.writeBufSize === 0) {
      this.close(reason);
      return;
    }
    this.closingWhenEmpty = true;
    this.closeWhenEmptyReason = reason;
  }

  /** Danga's `close`; a close caused by a failed write first calls `onWriteError`. */
  override close(reason?: string): void {
    if (
      !this.closed &&
      this.writeDepth > 0 &&
      !this.writeFailed &&
      reason !== undefined &&
      WRITE_FAILURES.has(reason)
    ) {
      this.writeFailed = true;
      this.onWriteError(this.failureError(reason));
    }
    super.close(reason);
    if (this.closed) this.reader?.end();
  }

  // ---- pull consumers (a stream made without onRead) ----------------------------------

  /**
   * The received lines as UTF-8 strings, for `for await`. A line ends at `\n`; the `\n` and a
   * `\r` before it are dropped; a last line without `\n` comes at EOF. A line longer than
   * `maxLength` bytes (default 64 KiB) closes the stream with reason `'line_too_long'`. The
   * iterator ends when the stream closes or a consumer sees the EOF; leaving the loop early
   * (`break`) keeps the unread bytes for the next consumer.
   * @throws DangaSocketError `DS_ERR_INVALID_ARG` for a stream with an `onRead`, while another
   *   consumer is in use, or for a bad `maxLength`.
   */
  lines(options?: LineOptions): AsyncIterableIterator<string, undefined, undefined> {
    const max = checkMaxLength('lines()', options);
    return this.consumer('lines()').lines(max);
  }

  /**
   * Resolves with the next `n` bytes (a Buffer that is never overwritten).
   * @returns rejects with `DS_ERR_CLOSED` if the stream closes, or reaches EOF, first.
   * @throws DangaSocketError `DS_ERR_INVALID_ARG` for a stream with an `onRead`, while another
   *   consumer is in use, or unless `n` is an integer >= 0.
   */
  readExactly(n: number): Promise<Buffer> {
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
      throw invalidArg(`readExactly expects a byte count >= 0, got ${describe(n)}`);
    }
    return this.consumer('readExactly()').readExactly(n);
  }

  /**
   * Resolves with the bytes up to and including the next `delimiter` (a string is UTF-8). More
   * than `maxLength` bytes (default 64 KiB) before it close the stream (`'line_too_long'`).
   * @returns rejects with `DS_ERR_CLOSED` if the stream closes, or reaches EOF, first.
   * @throws DangaSocketError `DS_ERR_INVALID_ARG` for a stream with an `onRead`, while another
   *   consumer is in use, for an empty or non-byte delimiter or a bad `maxLength`.
   */
  readUntil(delimiter: string | Uint8Array, options?: LineOptions): Promise<Buffer> {
    let delim: Buffer;
    if (typeof delimiter === 'string') delim = Buffer.from(delimiter, 'utf8');
    else if (delimiter instanceof Uint8Array) delim = Buffer.from(delimiter);
    else throw invalidArg(`readUntil expects a string or bytes, got ${describe(delimiter)}`);
    if (delim.length === 0) throw invalidArg('readUntil expects a non-empty delimiter');
    const max = checkMaxLength('readUntil()', options);
    return this.consumer('readUntil()').readUntil(delim, max);
  }

  private consumer(what: string): StreamReader {
    if (this.reader === null) {
      throw invalidArg(
        `${what} needs a StreamSocket made without onRead (this one has its own reader)`,
      );
    }
    return this.reader;
  }

  private consumerWaits(): boolean {
    return this.reader !== null && this.reader.pending;
  }

  private readerHost(): ConstructorParameters<typeof StreamReader>[0] {
    return {
      close: (reason?: string): void => this.close(reason),
      pump: (): void => {
        if (this.closed) return;
        this.drain(this.eofSeen);
        // A request still waits while reading is paused at the high mark: resume for it.
        if (!this.closed && this.aboveReadHigh && this.consumerWaits() && !this.eofSeen) {
          this.aboveReadHigh = false;
          this.onReadLowWatermark(this.readBufSize);
        }
      },
      eofDelivered: (): void => {
        if (this.eofHandled) this.closeAtEof();
      },
    };
  }

  private closeAtEof(): void {
    if (!this.closed && this.closeOnReadEof && !this.closingWhenEmpty) this.closeWhenEmpty('eof');
  }

  // ---- internals -----------------------------------------------------------------------

  private afterWrite(): void {
    const size = this.writeBufSize;
    if (!this.writeBlocked && size >= this.writeHigh) {
      this.writeBlocked = true;
      this.onWriteHighWatermark(size);
    } else if (this.writeBlocked && size < this.writeLow) {
      this.writeBlocked = false;
      this.onWritable(size);
    }
    if (this.closed) return;
    if (size > 0) {
      this.hadQueue = true;
      return;
    }
    if (this.hadQueue) {
      this.hadQueue = false;
      this.onOutgoingEmpty();
    }
    if (this.closingWhenEmpty && !this.closed && this.writeBufSize === 0) {
      this.close(this.closeWhenEmptyReason);
    }
  }

  private append(chunk: Buffer): void {
    const live = this.rEnd - this.rStart;
    if (live === 0) {
      // Zero copy: the chunk itself becomes the buffer (not ours to write into).
      this.rStore = chunk;
      this.rStart = 0;
      this.rEnd = chunk.length;
      this.rOwned = false;
      return;
    }
    if (this.rOwned && this.rEnd + chunk.length <= this.rStore.length) {
      chunk.copy(this.rStore, this.rEnd);
      this.rEnd += chunk.length;
      return;
    }
    // Grow into a new store (doubling), so bytes already handed to onRead stay untouched.
    const store = Buffer.allocUnsafe(Math.max(2 * (live + chunk.length), this.readLen));
    this.rStore.copy(store, 0, this.rStart, this.rEnd);
    chunk.copy(store, live);
    this.rStore = store;
    this.rStart = 0;
    this.rEnd = live + chunk.length;
    this.rOwned = true;
  }

  /** The onRead return loop (class comment). */
  private drain(eof: boolean): void {
    if (this.draining) return;
    this.draining = true;
    try {
      for (;;) {
        if (this.closed) return;
        const len = this.rEnd - this.rStart;
        if (len === 0 && !eof) return;
        const n: unknown = this.onRead(this.rStore.subarray(this.rStart, this.rEnd), eof);
        if (len === 0) return; // EOF with nothing buffered: called once, return ignored
        if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > len) {
          throw invalidArg(`onRead must return the bytes consumed (0..${len}), got ${describe(n)}`);
        }
        if (n === 0 || this.closed) return;
        this.rStart += n;
        if (this.rStart === this.rEnd) {
          this.rStore = EMPTY;
          this.rStart = this.rEnd = 0;
        }
        const left = this.rEnd - this.rStart;
        if (this.aboveReadHigh && left < this.readLow) {
          this.aboveReadHigh = false;
          this.onReadLowWatermark(left);
        }
      }
    } finally {
      this.draining = false;
    }
  }

  private readEnded(): void {
    const sock = this.sock();
    // A native descriptor's read says null for EOF and for an error; only an error sets osError.
    const ended =
      sock instanceof net.Socket ? sock.readableEnded : sock !== null && this.osError === undefined;
    if (ended) {
      this.eofSeen = true;
      // Level-triggered EOF would re-fire every iteration (IO::Async does); report it once.
      this.watchRead(false);
      this.drain(true);
      if (this.closed) return;
      this.onReadEof();
      this.eofHandled = true;
      // Consumers: close only once one has seen the EOF (its last lines may still need replies).
      if (this.reader === null || this.reader.eofSeen) this.closeAtEof();
      return;
    }
    const err = this.failureError('read_error');
    this.onReadError(err);
    this.close(errnoOf(err) === 'ECONNRESET' ? 'ECONNRESET' : 'read_error');
  }

  /** The socket's own error if one is known, else an errno-style error with `code`. */
  private failureError(code: string): Error {
    const known = this.osError;
    if (known !== undefined) return known;
    const sock = this.sock();
    const errored: unknown = sock instanceof net.Socket ? sock.errored : null;
    // isNativeError, not instanceof: the error may come from another realm (vm contexts).
    if (types.isNativeError(errored)) return errored;
    return Object.assign(new Error(`socket ${code}`), { code });
  }
}
