/**
 * TLS plumbing for `Listener.listen({ tls })` and `connect({ tls })`: server-side wrapping of
 * accepted sockets (handshake still in progress, so an object exists to close on failure) and
 * the client handshake after a connect. TLS objects always run on the `node` backend.
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import { DangaSocketError, describe, invalidArg } from '../errors';
import { loop } from '../event-loop';
import { kOwner } from '../internal';

/** The server side of `Listener.listen({ tls })`, built once per listener. */
export interface ServerTls {
  readonly secureContext: tls.SecureContext;
  readonly options: tls.TlsOptions;
  readonly requestCert: boolean;
  readonly rejectUnauthorized: boolean;
  readonly handshakeTimeoutMs: number;
}

/** As `tls.Server`'s default: a handshake not finished in 2 minutes fails. */
const DEFAULT_HANDSHAKE_TIMEOUT_MS = 120_000;

/**
 * Check `tls.TlsOptions` and build the secure context once (bad key material fails here).
 * @throws DangaSocketError `DS_ERR_INVALID_ARG`, with Node's error as `cause`.
 */
export function makeServerTls(options: unknown, where: string): ServerTls {
  if (typeof options !== 'object' || options === null) {
    throw invalidArg(`${where}: tls must be a tls.TlsOptions object, got ${describe(options)}`);
  }
  const o = options as tls.TlsOptions;
  let secureContext: tls.SecureContext;
  try {
    secureContext = o.secureContext ?? tls.createSecureContext(o);
  } catch (err) {
    throw new DangaSocketError(
      'DS_ERR_INVALID_ARG',
      `${where}: tls options rejected: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
  const t = o.handshakeTimeout;
  if (t !== undefined && (typeof t !== 'number' || !Number.isFinite(t) || t < 0)) {
    throw invalidArg(`${where}: tls.handshakeTimeout must be ms >= 0, got ${describe(t)}`);
  }
  const requestCert = o.requestCert === true;
  return {
    secureContext,
    options: o,
    requestCert,
    // tls.Server's default: reject unauthorised clients when a certificate is requested.
    rejectUnauthorized: o.rejectUnauthorized !== false,
    handshakeTimeoutMs: t ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
  };
}

/** The TLSSocket fields (Node internals, stable since 0.12) that `tls.Server` itself uses. */
interface ServerSocketInternals {
  authorized: boolean;
  authorizationError: Error | string | null;
  ssl?: { verifyError?: () => (Error & { code?: string }) | null } | null;
  _releaseControl?: () => boolean;
}

const kSecure = Symbol('danga.tlsSecure');
const kFailed = Symbol('danga.tlsFailed');
type Tracked = tls.TLSSocket & { [kSecure]?: boolean; [kFailed]?: boolean };

// Module-level listeners: `this` is the TLS socket.
function onSecure(this: Tracked): void {
  this[kSecure] = true;
  const s = this as unknown as ServerSocketInternals;
  const opts = (this as unknown as { [kOpts]?: ServerTls })[kOpts];
  if (opts?.requestCert === true) {
    // What tls.Server does on 'secure': OpenSSL accepts any client certificate and Node decides.
    const verifyError = s.ssl?.verifyError?.() ?? null;
    if (verifyError !== null) {
      s.authorizationError = verifyError.code ?? verifyError;
      if (opts.rejectUnauthorized) {
        fail(this, verifyError);
        return;
      }
    } else {
      s.authorized = true;
    }
  }
  // From now on TLS errors are ordinary socket errors ('error', then eventErr), as on tls.Server.
  s._releaseControl?.();
}

/** Every TLS error passes through `_tlsError` (handshake failures and its timeout included). */
function onTlsError(this: Tracked, err: Error): void {
  if (this[kSecure] === true) {
    if (!this.destroyed) this.destroy(err);
    return;
  }
  fail(this, err);
}

/** A handshake failure: close the owning object with `'tls_error'`, report kind `'tls'`. */
function fail(sock: Tracked, err: Error): void {
  if (sock[kFailed] === true) return;
  sock[kFailed] = true;
  const owner = (sock as { [kOwner]?: import('../danga-socket').DangaSocket })[kOwner];
  if (owner !== undefined && !owner.closed) owner.close('tls_error');
  if (!sock.destroyed) sock.destroy();
  loop.report(err, owner === undefined ? { kind: 'tls' } : { kind: 'tls', object: owner });
}

const kOpts = Symbol('danga.tlsOptions');

/**
 * Wrap an accepted plaintext socket as the server side of a TLS connection. The handshake
 * runs while the caller's object already owns the returned socket.
 */
export function wrapServerSocket(raw: net.Socket, cfg: ServerTls): tls.TLSSocket {
  const o = cfg.options;
  const opts: tls.TLSSocketOptions = {
    isServer: true,
    secureContext: cfg.secureContext,
    requestCert: cfg.requestCert,
    rejectUnauthorized: cfg.rejectUnauthorized,
  };
  if (o.ALPNProtocols !== undefined) opts.ALPNProtocols = o.ALPNProtocols;
  if (o.SNICallback !== undefined) opts.SNICallback = o.SNICallback;
  const extra = opts as Record<string, unknown>;
  const more = o as Record<string, unknown>;
  for (const k of ['ALPNCallback', 'pskCallback', 'pskIdentityHint', 'enableTrace']) {
    if (more[k] !== undefined) extra[k] = more[k];
  }
  // Node arms (and clears on 'secure') its own handshake timer from this option.
  if (cfg.handshakeTimeoutMs > 0) extra.handshakeTimeout = cfg.handshakeTimeoutMs;
  const sock = new tls.TLSSocket(raw, opts) as Tracked & { [kOpts]?: ServerTls };
  sock[kOpts] = cfg;
  sock.on('secure', onSecure);
  sock.on('_tlsError', onTlsError);
  return sock;
}

/**
 * Run the client handshake on a connected socket; resolves once it is done.
 * Rejects with `DS_ERR_TLS` (the TLS error as `cause`), `DS_ERR_TIMEOUT` past `deadlineMs`
 * (epoch ms) or `DS_ERR_ABORTED` through `signal`; the socket is destroyed then.
 */
export function clientHandshake(
  raw: net.Socket,
  options: tls.ConnectionOptions,
  identityHost: string | undefined,
  deadlineMs: number | undefined,
  signal: AbortSignal | undefined,
): Promise<tls.TLSSocket> {
  const opts: tls.ConnectionOptions = { ...options, socket: raw };
  if (identityHost !== undefined) {
    // As tls.connect({ host }) does: the name goes to SNI (never an IP) and the identity check.
    if (opts.host === undefined) opts.host = identityHost;
    if (opts.servername === undefined && !isIpLiteral(identityHost)) {
      opts.servername = identityHost;
    }
  }
  return new Promise<tls.TLSSocket>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    let sock: tls.TLSSocket;
    const done = (err: Error | null): void => {
      if (timer !== undefined) clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      sock.removeListener('secureConnect', onOk);
      sock.removeListener('error', onErr);
      if (err === null) {
        resolve(sock);
        return;
      }
      sock.destroy();
      reject(err);
    };
    const onOk = (): void => done(null);
    const onErr = (err: Error): void =>
      done(
        new DangaSocketError('DS_ERR_TLS', `TLS handshake failed: ${err.message}`, { cause: err }),
      );
    const onAbort = (): void =>
      done(
        new DangaSocketError('DS_ERR_ABORTED', 'connect was aborted', {
          cause: signal?.reason,
        }),
      );
    try {
      sock = tls.connect(opts);
    } catch (err) {
      raw.destroy();
      reject(
        new DangaSocketError(
          'DS_ERR_INVALID_ARG',
          `connect: tls options rejected: ${err instanceof Error ? err.message : String(err)}`,
          { cause: err },
        ),
      );
      return;
    }
    sock.once('secureConnect', onOk);
    sock.once('error', onErr);
    if (signal !== undefined) {
      if (signal.aborted) {
        onAbort();
        return;
      }
      signal.addEventListener('abort', onAbort, { once: true });
    }
    if (deadlineMs !== undefined) {
      const ms = Math.max(0, deadlineMs - Date.now());
      timer = setTimeout(
        () =>
          done(
            new DangaSocketError(
              'DS_ERR_TIMEOUT',
              'connect: TLS handshake did not complete in time',
            ),
          ),
        ms,
      );
    }
  });
}

function isIpLiteral(host: string): boolean {
  return net.isIP(host) !== 0;
}
