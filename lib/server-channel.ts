import type * as net from 'node:net';
import * as tls from 'node:tls';
import { useFastAccept } from './fast-accept';
import { CHANNEL_EAGAIN, type Channel, type ChannelAddress } from './internal/channel';
import { osFd } from './internal/node-internals';
import { POLLERR, POLLHUP, POLLIN } from './internal';

/**
 * Emulates a listening descriptor on top of a `net.Server`: `'connection'` queues the
 * accepted socket (IN readiness), `accept()` takes one (null = EAGAIN). libuv accepts
 * eagerly, so the kernel backlog is not what limits pending connections here.
 */

interface Notifiable {
  notify(): void;
  /** A transient accept error (EMFILE, ENFILE, ...): the server keeps listening. */
  acceptError(err: Error): void;
}

const kChannel = Symbol('danga.serverChannel');
type ChannelServer = net.Server & { [kChannel]?: ServerChannel };

// Accept failures libuv reports through 'error' while the server keeps listening.
const TRANSIENT_ACCEPT = new Set(['EMFILE', 'ENFILE', 'ENOBUFS', 'ENOMEM', 'ECONNABORTED']);

function onConnection(this: ChannelServer, sock: net.Socket): void {
  const ch = this[kChannel];
  if (ch === undefined) {
    sock.destroy();
    return;
  }
  ch.pending.push(sock);
  ch.owner.notify();
}
function onError(this: ChannelServer, err: Error): void {
  const ch = this[kChannel];
  if (ch === undefined) return;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && TRANSIENT_ACCEPT.has(code)) {
    ch.owner.acceptError(err);
    return;
  }
  if (ch.error === null) ch.error = err;
  ch.owner.notify();
}
function onClose(this: ChannelServer): void {
  const ch = this[kChannel];
  if (ch === undefined) return;
  ch.gone = true;
  ch.owner.notify();
}

export class ServerChannel implements Channel {
  pending: net.Socket[] = [];
  error: Error | null = null;
  gone = false;
  private readonly event: 'connection' | 'secureConnection';

  constructor(
    readonly sock: net.Server,
    readonly owner: Notifiable,
  ) {
    (sock as ChannelServer)[kChannel] = this;
    // A tls.Server's 'connection' socket is the plaintext one it is about to wrap: take its
    // TLS sockets, once their handshake is done, instead.
    this.event = sock instanceof tls.Server ? 'secureConnection' : 'connection';
    sock.on(this.event, onConnection);
    sock.on('error', onError);
    sock.on('close', onClose);
    if (sock.listening) useFastAccept(sock);
    else sock.once('listening', () => useFastAccept(sock));
  }

  readiness(): number {
    if (this.error !== null) return POLLIN | POLLERR | POLLHUP;
    if (this.gone) return POLLIN | POLLHUP;
    return this.pending.length > 0 ? POLLIN : 0;
  }

  accept(): net.Socket | null {
    return this.pending.shift() ?? null;
  }

  get pendingBytes(): number {
    return 0;
  }

  /** A listener is never at EOF and has no bytes: reads say "nothing now", writes would block. */
  readonly eof = false;
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
  interest(): void {}
  remote(): ChannelAddress | undefined {
    return undefined;
  }
  local(): ChannelAddress | undefined {
    const a = this.sock.address();
    if (a === null || typeof a === 'string') return undefined;
    return { ip: a.address, port: a.port, v6: a.family === 'IPv6' };
  }

  osFd(): number | undefined {
    return osFd(this.sock);
  }

  destroy(): void {
    for (const s of this.pending) s.destroy();
    this.pending = [];
    this.sock.close();
  }

  detach(): net.Server {
    const s = this.sock as ChannelServer;
    s.removeListener(this.event, onConnection);
    s.removeListener('error', onError);
    s.removeListener('close', onClose);
    delete s[kChannel];
    // Connections accepted but not taken yet go back to the server's new owner.
    for (const p of this.pending) s.emit(this.event, p);
    this.pending = [];
    return s;
  }
}
