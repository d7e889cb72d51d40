import type * as net from 'node:net';
import { DangaSocket } from '../danga-socket';
import { DangaSocketError } from '../errors';
import { loop } from '../event-loop';
import { ProxyHeaderParser, type ProxyAddress } from './proxy-protocol';

/**
 * `Listener.listen({ proxyProtocol })`: each accepted socket's PROXY header is read here,
 * before any object wraps the socket, so it works for every DangaSocket subclass and for a
 * raw `onAccept`. The socket flows into the parser; once the header is complete it is paused,
 * the payload that followed is put back with `unshift`, and the socket goes to `deliver`,
 * reporting the original client as its `remoteAddress`/`remotePort`/`remoteFamily`. A bad,
 * missing or late header is reported (kind `'proxy_protocol'`) and closes only that connection
 * (`refuse`: the listener closes the object `onAccept` makes with reason `'proxy_protocol'`).
 */

/** Default for `proxyHeaderTimeoutMs`: generous for a proxy on a LAN, short for a slowloris. */
export const PROXY_HEADER_TIMEOUT_MS = 10_000;
/** At most one `'proxy_protocol'` report per listener per this many ms (a flood is one line). */
const REPORT_EVERY_MS = 1000;

export interface ProxyHeaderOptions {
  /** `'optional'`: a connection that does not start with a signature is passed on unchanged. */
  readonly optional: boolean;
  readonly timeoutMs: number;
}

/** Sockets still waiting for their header, destroyed by `DangaSocket.Reset()`. */
const waiting = new Set<HeaderRead>();
loop.resetHooks.push(() => {
  for (const r of [...waiting]) r.abandon();
});

/** Make `sock` report `peer` as its remote end (own properties shadow net.Socket's getters). */
export function presentPeer(sock: net.Socket, peer: ProxyAddress): void {
  Object.defineProperties(sock, {
    remoteAddress: { value: peer.address, configurable: true, enumerable: true },
    remotePort: { value: peer.port, configurable: true, enumerable: true },
    remoteFamily: { value: peer.family, configurable: true, enumerable: true },
  });
}

/** One listener's header reading: start one read per accepted socket. */
export class ProxyHeaderReader {
  private lastReportMs = -Infinity;
  private suppressed = 0;

  constructor(
    readonly options: ProxyHeaderOptions,
    /** The listener, for reports. */
    private readonly owner: DangaSocket,
    /** Called with the socket (paused, payload put back) and the client, if the header named one. */
    readonly deliver: (sock: net.Socket, source: ProxyAddress | undefined) => void,
    /**
     * Called with the (paused) socket of a connection whose header failed, after the report:
     * it must close that connection with reason `'proxy_protocol'`.
     */
    readonly refuse: (sock: net.Socket) => void,
  ) {}

  read(sock: net.Socket): void {
    new HeaderRead(sock, this);
  }

  /** Destroy every socket of this listener still waiting for its header. */
  abandonAll(): void {
    for (const r of [...waiting]) if (r.reader === this) r.abandon();
  }

  fail(sock: net.Socket, why: string): void {
    const now = Date.now();
    if (now - this.lastReportMs < REPORT_EVERY_MS) {
      this.suppressed++;
      return;
    }
    const more = this.suppressed > 0 ? ` (${this.suppressed} more suppressed)` : '';
    this.lastReportMs = now;
    this.suppressed = 0;
    const from = `${sock.remoteAddress ?? '?'}:${sock.remotePort ?? '?'}`;
    const err = new DangaSocketError(
      'DS_ERR_PROXY_PROTOCOL',
      `PROXY protocol from ${from}: ${why}; connection closed${more}`,
    );
    loop.report(err, { kind: 'proxy_protocol', object: this.owner });
  }
}

// Module-level listeners: `this` is the socket, its read state a property.
const kRead = Symbol('danga.proxyHeaderRead');
type ReadingSocket = net.Socket & { [kRead]?: HeaderRead };

function onData(this: ReadingSocket, chunk: Buffer): void {
  this[kRead]?.data(chunk);
}
function onEnd(this: ReadingSocket): void {
  this[kRead]?.end();
}
function onGone(this: ReadingSocket): void {
  // Reset or error before the header: nothing to hand over, nothing to report.
  this[kRead]?.abandon();
}

class HeaderRead {
  private readonly parser: ProxyHeaderParser;
  private readonly timer: { cancel(): void };

  constructor(
    private readonly sock: ReadingSocket,
    readonly reader: ProxyHeaderReader,
  ) {
    this.parser = new ProxyHeaderParser(reader.options.optional);
    sock[kRead] = this;
    waiting.add(this);
    sock.on('data', onData);
    sock.on('end', onEnd);
    sock.on('error', onGone);
    sock.on('close', onGone);
    // A loop timer (fake time in tests); it fires only while the loop runs, as accepting does.
    this.timer = DangaSocket.AddTimer(reader.options.timeoutMs / 1000, () => this.timeout());
    sock.resume();
  }

  data(chunk: Buffer): void {
    const r = this.parser.push(chunk);
    if (r.state === 'done') this.handOver(r.rest, r.header.source);
    else if (r.state === 'none') this.handOver(r.rest, undefined);
    else if (r.state === 'error') this.reject(r.reason);
  }

  end(): void {
    const r = this.parser.end();
    // Optional and silent until EOF: the object sees the EOF itself.
    if (r.state === 'none') this.handOver(r.rest, undefined);
    else if (r.state === 'error') this.reject(r.reason);
  }

  private timeout(): void {
    if (this.reader.options.optional && !this.parser.committed && this.parser.bytesSeen === 0) {
      // Optional and silent: maybe a protocol where the server speaks first.
      this.handOver(Buffer.alloc(0), undefined);
      return;
    }
    this.reject(
      `no complete header within ${this.reader.options.timeoutMs} ms (${this.parser.bytesSeen} bytes)`,
    );
  }

  private detach(): void {
    const s = this.sock;
    s.removeListener('data', onData);
    s.removeListener('end', onEnd);
    s.removeListener('error', onGone);
    s.removeListener('close', onGone);
    delete s[kRead];
    waiting.delete(this);
    this.timer.cancel();
  }

  private handOver(rest: Buffer, source: ProxyAddress | undefined): void {
    this.detach();
    const s = this.sock;
    // Paused inside its 'data' handler, the stream emits nothing more until its new owner reads.
    s.pause();
    if (rest.length > 0) s.unshift(rest);
    this.reader.deliver(s, source);
  }

  private reject(why: string): void {
    this.detach();
    this.sock.pause();
    // Reported first: a destroyed socket no longer knows its peer's address.
    this.reader.fail(this.sock, why);
    this.reader.refuse(this.sock);
  }

  abandon(): void {
    this.detach();
    this.sock.destroy();
  }
}
