import * as dns from 'node:dns';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { DangaSocket } from './danga-socket';
import { DangaSocketError, describe, invalidArg } from './errors';
import { loop } from './event-loop';
import { kOwner } from './internal';
import { pickBackend } from './internal/backend';
import { NativeSocket, listenNative } from './native-socket';
import {
  PROXY_HEADER_TIMEOUT_MS,
  ProxyHeaderReader,
  presentPeer,
} from './internal/proxy-header-reader';
import type { ProxyAddress } from './internal/proxy-protocol';
import { checkReusePort, listenWith } from './internal/reuse-port';
import { makeServerTls, wrapServerSocket, type ServerTls } from './internal/tls';

/** Where and how to listen. Default host `127.0.0.1`; `path` listens on a Unix socket. */
export interface ListenOptions {
  port?: number | undefined;
  host?: string | undefined;
  path?: string | undefined;
  backlog?: number | undefined;
  /**
   * Serve TLS: each accepted connection reaches `onAccept` as a server-side `tls.TLSSocket`
   * with its handshake in progress (the object reads decrypted bytes only). A failed handshake
   * closes that connection's object with reason `'tls_error'` and is reported with context kind
   * `'tls'`. `handshakeTimeout` defaults to 120 000 ms, as on `tls.Server`.
   */
  tls?: tls.TlsOptions | undefined;
  /**
   * Set `SO_REUSEPORT` before binding (Linux), so several processes (or listeners) can listen
   * on one port and the kernel spreads new connections over them. Not with `path`. Node 20
   * needs the addon for it (`DS_ERR_NATIVE_UNAVAILABLE` without); Node ≥ 22.12 does it itself.
   */
  reusePort?: boolean | undefined;
  /**
   * Each connection must (`true`) or may (`'optional'`) start with a PROXY protocol v1 or v2
   * header, as HAProxy (`send-proxy`, `send-proxy-v2`) and nginx send. The header is read
   * before `onAccept` runs, and the socket then reports the original client as its remote
   * address (so `peerIpString()` does). A missing (when required), malformed, oversized or late
   * header closes only that connection, reported with context kind `'proxy_protocol'`.
   */
  proxyProtocol?: boolean | 'optional' | undefined;
  /** With `proxyProtocol`: how long a connection may take to send its header. Default 10 000. */
  proxyHeaderTimeoutMs?: number | undefined;
  /**
   * `'node'` (`onAccept` gets `net.Socket`s) or `'native'` (the addon's listening descriptor,
   * `accept4` in batches; `onAccept` gets `NativeSocket`s). Default: `DangaSocket.DefaultBackend`.
   */
  backend?: 'node' | 'native' | undefined;
}

/** Called with each accepted socket (paused, half-open allowed), typically `s => new Client(s)`. */
export type AcceptCallback = {
  // Method syntax: a callback typed for one backend's sockets is accepted (bivariance).
  bivarianceHack(sock: net.Socket | NativeSocket): void;
}['bivarianceHack'];

/**
 * What `onAccept` receives for listen options `O`: `NativeSocket` with `backend: 'native'`,
 * else `net.Socket` (typed so even when `DangaSocket.DefaultBackend` is `'native'`, which hands
 * out NativeSockets: both wrap the same way, `new Client(sock)`).
 */
export type AcceptedSocket<O> = O extends { backend: 'native' } ? NativeSocket : net.Socket;

/**
 * A listening socket on the loop. Its `eventRead` accepts every pending connection and hands
 * each to `onAccept`; a throwing `onAccept` destroys only that connection.
 */
export class Listener extends DangaSocket {
  private readonly onAccept: AcceptCallback;
  /** Set by `listen({ tls })`: accepted sockets are wrapped before `onAccept` sees them. */
  private serverTls: ServerTls | null = null;
  /** Set by `listen({ proxyProtocol })`: headers are read before TLS and `onAccept`. */
  private proxy: ProxyHeaderReader | null = null;

  /**
   * Wrap a listening (or about to listen) `net.Server`; watches read at once. A `tls.Server`
   * hands out its `tls.TLSSocket`s once their handshake is done (never the plaintext socket);
   * its failed handshakes (`'tlsClientError'`) are reported with context kind `'tls'`.
   * @throws DangaSocketError `DS_ERR_INVALID_ARG` for a non-server or a non-function callback.
   */
  constructor(server: NativeSocket, onAccept: (sock: NativeSocket) => void);
  constructor(server: net.Server, onAccept: (sock: net.Socket) => void);
  constructor(server: net.Server | NativeSocket, onAccept: AcceptCallback);
  constructor(
    server: net.Server | NativeSocket,
    onAccept: AcceptCallback | ((sock: NativeSocket) => void) | ((sock: net.Socket) => void),
  ) {
    // The base class also takes a net.Socket, which would make a listener that never accepts.
    if (!(server instanceof net.Server) && !(server instanceof NativeSocket && server.isListener)) {
      throw invalidArg(`Listener expects a net.Server, got ${describe(server)}`);
    }
    if (typeof onAccept !== 'function') {
      throw invalidArg(`Listener expects an accept callback, got ${describe(onAccept)}`);
    }
    super(server);
    this.onAccept = onAccept;
    if (server instanceof tls.Server) {
      server.on('tlsClientError', (err: Error) => {
        if (!this.closed) loop.report(err, { kind: 'tls', object: this });
      });
    }
    this.watchRead(true);
  }

  /**
   * Create a server (`allowHalfOpen`, `pauseOnConnect`), listen, and wrap it.
   * @throws DangaSocketError `DS_ERR_INVALID_ARG` (synchronously) for bad options; the promise
   *   rejects with `DS_ERR_LISTEN`, the OS error as `cause`, if listening fails.
   */
  static listen<O extends ListenOptions>(
    options: O,
    onAccept: (sock: AcceptedSocket<O>) => void,
  ): Promise<Listener> {
    // Bad arguments throw at call time (as `net.connect` and our `connect()` do).
    checkListenOptions(options);
    if (options.reusePort === true) checkReusePort();
    if (typeof onAccept !== 'function') {
      throw invalidArg(`listen expects an accept callback, got ${describe(onAccept)}`);
    }
    // The process default (DangaSocket.DefaultBackend) applies where the native backend
    // serves the options: a TLS or PROXY-protocol listener without `backend` stays on node.
    const needsNode =
      options.tls !== undefined ||
      (options.proxyProtocol !== undefined && options.proxyProtocol !== false);
    const backend =
      options.backend === undefined && needsNode ? 'node' : pickBackend(options.backend, 'listen');
    if (backend === 'native') {
      if (options.tls !== undefined) {
        throw invalidArg("listen: tls needs backend 'node' (or NativeSocket.toNetSocket())");
      }
      if (options.proxyProtocol !== undefined && options.proxyProtocol !== false) {
        throw invalidArg("listen: proxyProtocol needs backend 'node' for now");
      }
      return listenNativeBackend(options, onAccept);
    }
    const serverTls = options.tls === undefined ? null : makeServerTls(options.tls, 'listen');
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
    const listenArgs: net.ListenOptions =
      options.path !== undefined
        ? { path: options.path }
        : { port: options.port ?? 0, host: options.host ?? '127.0.0.1' };
    if (options.backlog !== undefined) listenArgs.backlog = options.backlog;
    return new Promise<Listener>((resolve, reject) => {
      const onError = (err: Error): void => {
        server.close();
        const where = options.path ?? `${listenArgs.host ?? ''}:${listenArgs.port ?? ''}`;
        reject(
          new DangaSocketError('DS_ERR_LISTEN', `listen ${where}: ${err.message}`, { cause: err }),
        );
      };
      server.once('error', onError);
      listenWith(server, listenArgs, options.reusePort === true, () => {
        server.removeListener('error', onError);
        try {
          const l = new Listener(server, onAccept);
          l.serverTls = serverTls;
          if (options.proxyProtocol === true || options.proxyProtocol === 'optional') {
            const proxyOptions = {
              optional: options.proxyProtocol === 'optional',
              timeoutMs: options.proxyHeaderTimeoutMs ?? PROXY_HEADER_TIMEOUT_MS,
            };
            l.proxy = new ProxyHeaderReader(
              proxyOptions,
              l,
              (s, src) => l.deliverProxied(s, src),
              (s) => l.refuseProxied(s),
            );
          }
          resolve(l);
        } catch (err) {
          server.close();
          reject(err instanceof Error ? err : new Error(String(err)));
        }
      });
    });
  }

  /** Take one pending connection (a `tls.TLSSocket` with `listen({ tls })`), or null if none is waiting. */
  accept(): net.Socket | NativeSocket | null {
    const s = this.acceptOne();
    return s === null || this.serverTls === null || s instanceof NativeSocket
      ? s
      : wrapServerSocket(s, this.serverTls);
  }

  /** The bound address (as `net.Server#address()`), or null once closed. */
  address(): net.AddressInfo | string | null {
    const s = this.sock();
    if (s instanceof NativeSocket) {
      const address = s.localAddress;
      const family = s.localFamily;
      if (address === undefined) return null;
      if (family === undefined) return address; // a Unix path, as net.Server reports it
      return { address, family, port: s.localPort ?? 0 };
    }
    return s instanceof net.Server ? s.address() : null;
  }

  override eventRead(): void {
    if (this.proxy !== null) {
      // The PROXY header comes first; deliverProxied does the rest once it is in.
      for (let raw = this.acceptOne(); raw !== null; raw = this.acceptOne()) {
        if (raw instanceof net.Socket) this.proxy.read(raw);
      }
      return;
    }
    let s: net.Socket | NativeSocket | null;
    while ((s = this.accept()) !== null) this.offer(s);
  }

  /**
   * Hand an accepted socket to `onAccept`. If it throws, only that connection goes: the object
   * it made is closed with `'handler_error'` (its deferred close destroys the socket, on either
   * backend), else the socket is destroyed; the error is reported. Returns false then.
   */
  private offer(s: net.Socket | NativeSocket): boolean {
    try {
      this.onAccept(s);
      return true;
    } catch (err) {
      const owner = ownerOf(s);
      if (owner !== undefined && !owner.closed) owner.close('handler_error');
      else s.destroy(); // a no-op while a closed object's deferred close owns the descriptor
      loop.report(err, { kind: 'accept', object: this });
      return false;
    }
  }

  /** After its PROXY header: TLS (if asked), the original client as the peer, then `onAccept`. */
  private deliverProxied(raw: net.Socket, source: ProxyAddress | undefined): void {
    if (this.closed) {
      raw.destroy();
      return;
    }
    const s = this.serverTls === null ? raw : wrapServerSocket(raw, this.serverTls);
    if (source !== undefined) presentPeer(s, source);
    this.offer(s);
  }

  /**
   * A connection whose PROXY header failed (already reported): it closes with reason
   * `'proxy_protocol'`. Its object is made as for any connection (`onAccept`, real peer, no
   * byte to read) and closed at once, so the reason is where every close reason is. Under
   * TLS, no handshake is started for it: the socket is destroyed without `onAccept`.
   */
  private refuseProxied(raw: net.Socket): void {
    if (this.closed || this.serverTls !== null) {
      raw.destroy();
      return;
    }
    if (!this.offer(raw)) return;
    const owner = ownerOf(raw);
    if (owner === undefined) raw.destroy();
    else if (!owner.closed) owner.close('proxy_protocol');
  }

  /** A listener error: report it to the error handler and stop listening. */
  override eventErr(): void {
    const err = this.osError;
    this.close('listen_error');
    if (err !== undefined) loop.report(err, { kind: 'accept', object: this });
  }

  override eventHup(): void {
    this.close('listen_closed');
  }
}

/** The largest backlog: listen(2) takes an int (the kernel then caps it at somaxconn). */
const MAX_INT = 2 ** 31 - 1;

/** The object wrapping an accepted socket, if `onAccept` made one. */
function ownerOf(s: net.Socket | NativeSocket): DangaSocket | undefined {
  return (s as { [kOwner]?: DangaSocket | undefined })[kOwner];
}

/** `listen({ backend: 'native' })`: resolve the host, then socket/bind/listen through the addon. */
async function listenNativeBackend(
  options: ListenOptions,
  onAccept: AcceptCallback,
): Promise<Listener> {
  let host = options.host ?? '127.0.0.1';
  const where = options.path ?? `${host}:${options.port ?? 0}`;
  try {
    if (options.path === undefined && net.isIP(host) === 0) {
      host = (await dns.promises.lookup(host)).address;
    }
    const ns = listenNative({
      host,
      port: options.port,
      path: options.path,
      backlog: options.backlog,
      reusePort: options.reusePort,
    });
    try {
      return new Listener(ns, onAccept);
    } catch (err) {
      ns.destroy();
      throw err;
    }
  } catch (err) {
    if (err instanceof DangaSocketError) throw err;
    const e = err instanceof Error ? err : new Error(String(err));
    throw new DangaSocketError('DS_ERR_LISTEN', `listen ${where}: ${e.message}`, { cause: e });
  }
}

function checkListenOptions(options: unknown): asserts options is ListenOptions {
  if (typeof options !== 'object' || options === null) {
    throw invalidArg(`listen expects an options object, got ${describe(options)}`);
  }
  const o = options as Record<string, unknown>;
  if (
    o.port !== undefined &&
    (!Number.isInteger(o.port) || (o.port as number) < 0 || (o.port as number) > 65535)
  ) {
    throw invalidArg(`listen: port must be an integer 0..65535, got ${describe(o.port)}`);
  }
  if (o.host !== undefined && typeof o.host !== 'string') {
    throw invalidArg(`listen: host must be a string, got ${describe(o.host)}`);
  }
  if (o.path !== undefined && (typeof o.path !== 'string' || o.path === '')) {
    throw invalidArg(`listen: path must be a non-empty string, got ${describe(o.path)}`);
  }
  if (
    o.backlog !== undefined &&
    (!Number.isInteger(o.backlog) || (o.backlog as number) < 0 || (o.backlog as number) > MAX_INT)
  ) {
    throw invalidArg(
      `listen: backlog must be an integer 0..${MAX_INT} (0: the default, 511), got ` +
        describe(o.backlog),
    );
  }
  if (o.reusePort !== undefined && typeof o.reusePort !== 'boolean') {
    throw invalidArg(`listen: reusePort must be a boolean, got ${describe(o.reusePort)}`);
  }
  if (
    o.proxyProtocol !== undefined &&
    typeof o.proxyProtocol !== 'boolean' &&
    o.proxyProtocol !== 'optional'
  ) {
    throw invalidArg(
      `listen: proxyProtocol must be true, false or 'optional', got ${describe(o.proxyProtocol)}`,
    );
  }
  const t = o.proxyHeaderTimeoutMs;
  if (t !== undefined && (typeof t !== 'number' || !(t > 0) || t > 2 ** 31 - 1)) {
    throw invalidArg(`listen: proxyHeaderTimeoutMs must be a positive number, got ${describe(t)}`);
  }
  if (o.reusePort === true && o.path !== undefined) {
    throw invalidArg('listen: reusePort applies to TCP ports, not to a Unix socket path');
  }
}
