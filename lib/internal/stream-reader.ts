/**
 * The pull-style consumers of a `StreamSocket` made without `onRead`: `lines()`,
 * `readExactly(n)` and `readUntil(delimiter)`. One request waits at a time; the stream's
 * `onRead` hands it the buffered bytes and it takes a prefix once the request can be met.
 *
 * Bytes never reach a consumer half-decoded: a line is cut at `\n` in bytes and decoded whole,
 * so a UTF-8 character split across reads comes out right. The delimiter search resumes where
 * the last one stopped, so a long line arriving a byte at a time costs O(length), not O(length²).
 */
import { DangaSocketError, invalidArg } from '../errors';

/** What the reader needs from its stream. */
export interface ReaderHost {
  close(reason?: string): void;
  /** Offer the buffered bytes to `onRead` now, and lift a read pause while a request waits. */
  pump(): void;
  /** A consumer has seen the EOF: the stream may close (`closeOnReadEof`). */
  eofDelivered(): void;
}

const NEWLINE = Buffer.from('\n');
const CR = 0x0d;

const enum Kind {
  Exact,
  Until,
  Line,
}

type Request =
  | { kind: Kind.Exact; n: number; resolve(b: Buffer): void; reject(e: Error): void }
  | {
      kind: Kind.Until;
      delim: Buffer;
      max: number;
      resolve(b: Buffer): void;
      reject(e: Error): void;
    }
  | { kind: Kind.Line; max: number; resolve(r: IteratorResult<string, undefined>): void };

const DONE: IteratorResult<string, undefined> = { value: undefined, done: true };

function closedError(message: string): DangaSocketError {
  return new DangaSocketError('DS_ERR_CLOSED', message);
}

export class StreamReader {
  private req: Request | null = null;
  private linesActive = false;
  /** Bytes at the buffer's start already searched for the request's delimiter. */
  private scanned = 0;
  private ended = false;
  private sawEof = false;

  constructor(private readonly host: ReaderHost) {}

  /** A request waits for bytes (the stream must keep reading past its high-water mark). */
  get pending(): boolean {
    return this.req !== null;
  }

  /** True once a consumer has seen the EOF. */
  get eofSeen(): boolean {
    return this.sawEof;
  }

  /** @throws DangaSocketError `DS_ERR_INVALID_ARG` while another consumer is in use. */
  private claim(what: string): void {
    if (this.req !== null || this.linesActive) {
      throw invalidArg(`${what}: another consumer of this stream is in use (one at a time)`);
    }
  }

  lines(max: number): AsyncIterableIterator<string, undefined, undefined> {
    this.claim('lines()');
    let finished = this.ended;
    if (!finished) this.linesActive = true;
    const finish = (): void => {
      if (finished) return;
      finished = true;
      this.linesActive = false;
      if (this.req?.kind === Kind.Line) {
        const r = this.req;
        this.req = null;
        r.resolve(DONE);
      }
    };
    const it: AsyncIterableIterator<string, undefined, undefined> = {
      next: () => {
        if (finished || this.ended) {
          finish();
          return Promise.resolve(DONE);
        }
        if (this.req !== null) {
          return Promise.reject(invalidArg('lines(): next() called while a line is awaited'));
        }
        return new Promise<IteratorResult<string, undefined>>((resolve) => {
          this.req = {
            kind: Kind.Line,
            max,
            resolve: (r) => {
              if (r.done === true) finish();
              resolve(r);
            },
          };
          this.scanned = 0;
          this.host.pump();
        });
      },
      return: () => {
        finish();
        return Promise.resolve(DONE);
      },
      [Symbol.asyncIterator]: () => it,
    };
    return it;
  }

  readExactly(n: number): Promise<Buffer> {
    this.claim('readExactly()');
    if (this.ended) return Promise.reject(closedError('readExactly(): the stream is closed'));
    if (n === 0) return Promise.resolve(Buffer.alloc(0));
    return new Promise<Buffer>((resolve, reject) => {
      this.req = { kind: Kind.Exact, n, resolve, reject };
      this.scanned = 0;
      this.host.pump();
    });
  }

  readUntil(delim: Buffer, max: number): Promise<Buffer> {
    this.claim('readUntil()');
    if (this.ended) return Promise.reject(closedError('readUntil(): the stream is closed'));
    return new Promise<Buffer>((resolve, reject) => {
      this.req = { kind: Kind.Until, delim, max, resolve, reject };
      this.scanned = 0;
      this.host.pump();
    });
  }

  /** The stream's `onRead` in consumer mode: the bytes the waiting request took (0 = wait). */
  onRead(buffer: Buffer, eof: boolean): number {
    const r = this.req;
    if (r === null) return 0;
    if (r.kind === Kind.Exact) {
      if (buffer.length >= r.n) {
        this.req = null;
        r.resolve(buffer.subarray(0, r.n));
        return r.n;
      }
      if (eof) {
        this.req = null;
        r.reject(closedError(`readExactly(${r.n}): EOF after ${buffer.length} bytes`));
        this.eof();
      }
      return 0;
    }
    const delim = r.kind === Kind.Line ? NEWLINE : r.delim;
    const at = buffer.indexOf(delim, this.scanned);
    if (at >= 0) {
      const contentEnd = r.kind === Kind.Line && at > 0 && buffer[at - 1] === CR ? at - 1 : at;
      if (contentEnd > r.max) return this.tooLong();
      const end = at + delim.length;
      this.req = null;
      this.scanned = 0;
      if (r.kind === Kind.Line) {
        r.resolve({ value: buffer.toString('utf8', 0, contentEnd), done: false });
      } else r.resolve(buffer.subarray(0, end));
      return end;
    }
    this.scanned = Math.max(0, buffer.length - delim.length + 1);
    // Content seen so far, less what may yet be part of the terminator.
    const partial =
      r.kind === Kind.Line
        ? buffer.length - (buffer[buffer.length - 1] === CR ? 1 : 0)
        : buffer.length - delim.length + 1;
    if (partial > r.max) return this.tooLong();
    if (!eof) return 0;
    this.req = null;
    this.scanned = 0;
    if (r.kind === Kind.Line && buffer.length > 0) {
      r.resolve({ value: buffer.toString('utf8'), done: false }); // the last line, no newline
      return buffer.length;
    }
    if (r.kind === Kind.Line) r.resolve(DONE);
    else r.reject(closedError('readUntil(): EOF before the delimiter'));
    this.eof();
    return 0;
  }

  /** The stream closed: end the waiting request and every later one. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.linesActive = false;
    const r = this.req;
    this.req = null;
    if (r === null) return;
    if (r.kind === Kind.Line) r.resolve(DONE);
    else r.reject(closedError('the stream closed before the read completed'));
  }

  private eof(): void {
    this.sawEof = true;
    this.host.eofDelivered();
  }

  private tooLong(): number {
    this.host.close('line_too_long'); // ends the request through end()
    return 0;
  }
}
