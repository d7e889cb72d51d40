/**
 * One connection to the management console: an object in the loop like any other. Its first
 * bytes decide the protocol: `GET ` or `HEAD ` is HTTP/1.1 (one request, then close), anything
 * else the line protocol. Every limit here keeps a misbehaving client from costing more than
 * a few KiB of memory or affecting anyone else; replies never repeat what the client sent, so
 * a token typed in the wrong place is never echoed.
 */
import { randomBytes } from 'node:crypto';
import type * as net from 'node:net';
import { DangaSocket, type Timer } from '../danga-socket';
import { statusPage, statusPagePolicy } from './status-page';

/** Longest command line; a longer one is answered with an error and skipped. */
export const MAX_LINE_BYTES = 4096;
/** Longest HTTP request head (request line and headers). */
export const MAX_HTTP_HEAD_BYTES = 8192;
/** A client whose unread replies exceed this when its next command arrives is dropped. */
export const MAX_BACKLOG_BYTES = 1024 * 1024;
/** How long a finished connection may take to read its last reply before it is closed. */
const FINISH_TIMEOUT_S = 10;
const READ_BYTES = 16 * 1024;
const EMPTY = Buffer.alloc(0);
const HTTP_REQUEST_LINE = /^[A-Z]{3,10} \S+ HTTP\/\d/;

/** A command's expected failure (bad arguments, unknown id): shown as `ERROR: message`. */
export class CommandError extends Error {}

/** What a connection needs from its console. */
export interface ConsoleHost {
  /** True when commands and `/stats.json` require the token. */
  readonly needsAuth: boolean;
  /** Constant-time comparison with the console's token. */
  tokenMatches(candidate: string): boolean;
  /** Run an authenticated command (name lower-cased): the reply body. */
  run(name: string, args: string[]): string | Promise<string>;
  /** The body of `GET /stats.json`. */
  statsJson(): string;
  /** Whether an HTTP `Host` header may reach this console (DNS-rebinding guard). */
  hostAllowed(host: string | undefined): boolean;
  /** The connection closed. */
  forget(conn: ConsoleConnection): void;
}

type Mode = 'unknown' | 'line' | 'http' | 'done';
/** A queued command line; null stands for a line that was too long. */
type QueuedLine = string | null;

function oneLine(text: string): string {
  const first = text.split('\n', 1)[0] ?? '';
  return first.length > 200 ? `${first.slice(0, 200)}…` : first;
}

/** Body lines, dot-stuffed (a line starting with "." gets another), then the "." terminator. */
function framed(body: string): string {
  let out = '';
  if (body !== '') {
    const text = body.endsWith('\n') ? body.slice(0, -1) : body;
    for (const line of text.split('\n')) out += (line.startsWith('.') ? `.${line}` : line) + '\n';
  }
  return out + '.\n';
}

function hostHeaderName(value: string): string {
  const v = value.trim().toLowerCase();
  if (v.startsWith('[')) {
    const end = v.indexOf(']');
    return end > 0 ? v.slice(1, end) : v;
  }
  const colon = v.indexOf(':');
  return colon >= 0 ? v.slice(0, colon) : v;
}

export { hostHeaderName };

/** A management-console session (line protocol or one HTTP request). */
export class ConsoleConnection extends DangaSocket {
  private mode: Mode = 'unknown';
  private pending: Buffer = EMPTY;
  private partial: Buffer[] = [];
  private partialLen = 0;
  private discarding = false;
  private readonly queue: QueuedLine[] = [];
  private busy = false;
  private eofSeen = false;
  private authed = false;
  private firstLine = true;
  private finishTimer: Timer | null = null;

  constructor(
    sock: net.Socket,
    private readonly host: ConsoleHost,
  ) {
    super(sock);
    this.watchRead(true);
  }

  override eventRead(): void {
    const chunk = this.read(READ_BYTES);
    if (chunk === null) {
      this.eofSeen = true;
      this.watchRead(false);
      if (this.mode === 'line' && this.partialLen > 0 && !this.discarding) {
        this.queue.push(this.takePartial()); // a last line without a newline still counts
      }
      if (this.mode === 'line') this.drain();
      else this.finish('eof');
      return;
    }
    if (chunk.length === 0) return;
    switch (this.mode) {
      case 'unknown':
        this.detect(chunk);
        break;
      case 'line':
        this.feedLines(chunk);
        break;
      case 'http':
        this.feedHttp(chunk);
        break;
      case 'done':
        break; // keep reading so that closing sends FIN, not RST over unread input
    }
  }

  override eventErr(): void {
    this.close('error');
  }

  override eventHup(): void {
    this.close('hup');
  }

  override close(reason?: string): void {
    if (!this.closed) {
      this.finishTimer?.cancel();
      this.finishTimer = null;
      this.host.forget(this);
    }
    super.close(reason);
  }

  // ---- protocol detection --------------------------------------------------------------

  private detect(chunk: Buffer): void {
    const head = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    const start = head.toString('latin1', 0, 5);
    if (start.startsWith('GET ') || start.startsWith('HEAD ')) {
      this.mode = 'http';
    } else if (head.length < 5 && ('GET '.startsWith(start) || 'HEAD '.startsWith(start))) {
      this.pending = head; // could still become "GET " or "HEAD "
      return;
    } else {
      this.mode = 'line';
    }
    this.pending = EMPTY;
    if (this.mode === 'http') this.feedHttp(head);
    else this.feedLines(head);
  }

  // ---- line protocol -------------------------------------------------------------------

  private takePartial(): string {
    const line = Buffer.concat(this.partial, this.partialLen).toString('utf8');
    this.partial = [];
    this.partialLen = 0;
    return line;
  }

  private feedLines(chunk: Buffer): void {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(10, start);
      if (nl === -1) break;
      const len = nl - start;
      if (this.discarding) {
        this.discarding = false; // the end of the overlong line: its error is already queued
      } else if (this.partialLen + len > MAX_LINE_BYTES) {
        this.partial = [];
        this.partialLen = 0;
        this.queue.push(null);
      } else {
        this.partial.push(chunk.subarray(start, nl));
        this.partialLen += len;
        this.queue.push(this.takePartial());
      }
      start = nl + 1;
    }
    const rest = chunk.length - start;
    if (rest > 0 && !this.discarding) {
      if (this.partialLen + rest > MAX_LINE_BYTES) {
        // Skip the rest of this line as it arrives; memory stays bounded by MAX_LINE_BYTES.
        this.partial = [];
        this.partialLen = 0;
        this.discarding = true;
        this.queue.push(null);
      } else {
        this.partial.push(chunk.subarray(start));
        this.partialLen += rest;
      }
    }
    this.drain();
  }

  /** Run queued lines in order; an asynchronous command holds the rest until it settles. */
  private drain(): void {
    while (!this.busy && this.queue.length > 0 && this.mode === 'line' && !this.closed) {
      if (this.writeBufSize > MAX_BACKLOG_BYTES) {
        // It sends commands but does not read the replies: drop it, not our memory.
        this.close('console_backlog');
        return;
      }
      this.handle(this.queue.shift() as QueuedLine);
    }
    if (!this.busy && this.queue.length === 0 && this.eofSeen && this.mode === 'line') {
      this.finish('eof');
    }
  }

  private handle(item: QueuedLine): void {
    if (item === null) {
      this.replyError(`line too long (limit ${MAX_LINE_BYTES} bytes)`);
      return;
    }
    const line = item.trim();
    if (line === '') return;
    if (this.firstLine) {
      this.firstLine = false;
      if (HTTP_REQUEST_LINE.test(line)) {
        // An HTTP method other than GET/HEAD (a browser's cross-site POST, say): never let
        // its body run as commands.
        this.respond(405, 'Method Not Allowed', 'text/plain', 'only GET and HEAD\n', false, [
          'Allow: GET, HEAD',
        ]);
        return;
      }
    }
    if (/^host:/i.test(line)) {
      this.close('cross_protocol'); // an HTTP header line: a browser is talking to us
      return;
    }
    const words = line.split(/\s+/);
    const name = (words[0] ?? '').toLowerCase();
    const args = words.slice(1);
    if (name === 'quit') {
      this.write('bye\n');
      this.finish('quit');
      return;
    }
    if (name === 'auth') {
      this.auth(args);
      return;
    }
    if (this.host.needsAuth && !this.authed) {
      this.replyError('authentication required: auth <token>');
      return;
    }
    this.runCommand(name, args);
  }

  private auth(args: string[]): void {
    if (!this.host.needsAuth) {
      this.reply('OK no token needed here');
      return;
    }
    const candidate = args.length === 1 ? (args[0] as string) : '';
    if (candidate !== '' && this.host.tokenMatches(candidate)) {
      this.authed = true;
      this.reply('OK authenticated');
      return;
    }
    // One guess per connection; the reply never repeats what was sent.
    this.replyError('authentication failed');
    this.finish('auth_failed');
  }

  private runCommand(name: string, args: string[]): void {
    let result: string | Promise<string>;
    try {
      result = this.host.run(name, args);
    } catch (err) {
      this.replyFailure(name, err);
      return;
    }
    if (typeof result === 'string') {
      this.reply(result);
      return;
    }
    if (!(result instanceof Promise)) {
      this.replyError(`${name} did not return a string`);
      return;
    }
    this.busy = true;
    this.watchRead(false); // TCP flow control holds further commands meanwhile
    result
      .then(
        (text: unknown) => {
          if (typeof text === 'string') this.reply(text);
          else this.replyError(`${name} did not return a string`);
        },
        (err: unknown) => {
          this.replyFailure(name, err);
        },
      )
      .finally(() => {
        this.busy = false;
        if (this.closed) return;
        if (!this.eofSeen && this.mode === 'line') this.watchRead(true);
        this.drain();
      })
      .catch(() => {
        // drain() only writes and closes this connection; nothing can reach here but a bug.
      });
  }

  private reply(body: string): void {
    if (!this.closed) this.write(framed(body));
  }

  private replyError(message: string): void {
    if (!this.closed) this.write(`ERROR: ${message}\n.\n`);
  }

  private replyFailure(name: string, err: unknown): void {
    if (err instanceof CommandError) {
      this.replyError(err.message);
      return;
    }
    const message = err instanceof Error ? err.message : String(err);
    this.replyError(`${name} failed: ${oneLine(message)}`);
  }

  /** Stop taking commands; close once the replies are flushed (or after a grace period). */
  private finish(reason: string): void {
    if (this.mode === 'done' || this.closed) return;
    this.mode = 'done';
    this.queue.length = 0;
    this.partial = [];
    this.partialLen = 0;
    this.pending = EMPTY;
    this.write(() => this.close(reason));
    if (!this.closed) {
      this.finishTimer = DangaSocket.AddTimer(FINISH_TIMEOUT_S, () =>
        this.close('console_timeout'),
      );
    }
  }

  // ---- HTTP ----------------------------------------------------------------------------

  private feedHttp(chunk: Buffer): void {
    const buf = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    let end = buf.indexOf('\r\n\r\n');
    if (end === -1) end = buf.indexOf('\n\n');
    if (end === -1) {
      if (buf.length > MAX_HTTP_HEAD_BYTES) {
        this.respond(431, 'Request Header Fields Too Large', 'text/plain', 'head too large\n');
      } else {
        this.pending = Buffer.from(buf); // copy: read() buffers may be views we must not pin
      }
      return;
    }
    if (end > MAX_HTTP_HEAD_BYTES) {
      this.respond(431, 'Request Header Fields Too Large', 'text/plain', 'head too large\n');
      return;
    }
    this.pending = EMPTY;
    this.serveHttp(buf.toString('latin1', 0, end));
  }

  private serveHttp(head: string): void {
    const lines = head.split(/\r?\n/);
    const m = /^(GET|HEAD) (\S+) HTTP\/1\.[01]$/.exec(lines[0] ?? '');
    if (m === null) {
      this.respond(400, 'Bad Request', 'text/plain', 'bad request\n');
      return;
    }
    const isHead = m[1] === 'HEAD';
    const target = m[2] as string;
    let hostHeader: string | undefined;
    let authorization: string | undefined;
    for (let i = 1; i < lines.length; i++) {
      const l = lines[i] as string;
      const colon = l.indexOf(':');
      if (colon <= 0) continue;
      const name = l.slice(0, colon).trim().toLowerCase();
      if (name === 'host') hostHeader = l.slice(colon + 1).trim();
      else if (name === 'authorization') authorization = l.slice(colon + 1).trim();
    }
    if (!this.host.hostAllowed(hostHeader)) {
      this.respond(
        403,
        'Forbidden',
        'text/plain',
        'this console answers loopback names only\n',
        isHead,
      );
      return;
    }
    const path = target.split('?', 1)[0];
    if (path === '/') {
      // The page holds no data (it polls /stats.json), so it needs no token itself.
      const nonce = randomBytes(16).toString('base64');
      this.respond(200, 'OK', 'text/html; charset=utf-8', statusPage(nonce), isHead, [
        `Content-Security-Policy: ${statusPagePolicy(nonce)}`,
        'Referrer-Policy: no-referrer',
      ]);
      return;
    }
    if (path === '/stats.json') {
      if (this.host.needsAuth && !this.bearerMatches(authorization)) {
        this.respond(
          401,
          'Unauthorized',
          'application/json',
          '{"error":"unauthorized"}\n',
          isHead,
          ['WWW-Authenticate: Bearer realm="danga-socket console"'],
        );
        return;
      }
      this.respond(200, 'OK', 'application/json', this.host.statsJson(), isHead);
      return;
    }
    this.respond(404, 'Not Found', 'text/plain', 'not found\n', isHead);
  }

  private bearerMatches(authorization: string | undefined): boolean {
    if (authorization === undefined) return false;
    const m = /^Bearer\s+(\S+)$/i.exec(authorization);
    return m !== null && this.host.tokenMatches(m[1] as string);
  }

  private respond(
    status: number,
    reason: string,
    type: string,
    body: string,
    isHead = false,
    extra: string[] = [],
  ): void {
    const bytes = Buffer.from(body, 'utf8');
    const head = [
      `HTTP/1.1 ${status} ${reason}`,
      `Content-Type: ${type}`,
      `Content-Length: ${bytes.length}`,
      'Cache-Control: no-store',
      'X-Content-Type-Options: nosniff',
      'Connection: close',
      ...extra,
    ];
    this.write(head.join('\r\n') + '\r\n\r\n');
    if (!isHead) this.write(bytes);
    this.finish('http_done');
  }
}
