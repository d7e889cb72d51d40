/**
 * `connectDanga()`: connect with {@link connect} and construct a `DangaSocket` subclass on the
 * connected socket, so the object never sees a half-made connection.
 *
 * The classic Danga idiom does the opposite and also works: construct the object on the
 * *connecting* socket (`net.connect({ host, port, allowHalfOpen: true })`), call
 * `watchWrite(true)`, and treat the first `eventWrite` as "connected" (a refused connect gives
 * `eventWrite`, `eventErr` and `eventHup` instead). That needs the loop running and gives you one
 * address, no timeouts and no per-attempt reports; `connectDanga` gives you all of
 * `connect()`'s options and hands over an object that is already connected.
 */
import type * as net from 'node:net';
import { connect, type ConnectOptions } from './connector';
import { DangaSocket } from './danga-socket';
import { describe, invalidArg } from './errors';
import { getDefaultBackend } from './internal/backend';

/** A `DangaSocket` subclass whose constructor takes the socket first, then `args`. */
export type DangaSocketClass<T extends DangaSocket, A extends unknown[]> = new (
  sock: net.Socket,
  ...args: A
) => T;

/** {@link ConnectOptions} without `onConnected`: the promise delivers the constructed object. */
export type ConnectDangaOptions = Omit<ConnectOptions, 'onConnected'>;

/**
 * Connect (all of `connect()`'s targets and options: ordered attempts, local binding, happy
 * eyeballs, timeouts, abort, `onFail`) and resolve with `new Class(socket, ...args)`.
 *
 * The object is constructed as soon as the socket is connected, even when the loop is not
 * running; its hooks fire once `DangaSocket.EventLoop()` runs. If the constructor throws, the
 * socket is destroyed and the promise rejects with that exception.
 *
 * The result can serve directly as the connection of a `PersistentConnection`
 * (`connect: (addr) => connectDanga(MyClient, { addr })`); note that a `DangaSocket` is only
 * really closed (and `whenClosed()` resolves) while the loop runs.
 *
 * @param Class - a subclass of `DangaSocket`; called as `new Class(socket, ...args)`.
 * @param options - as for `connect()`, except `onConnected`.
 * @param args - extra constructor arguments.
 * @returns the constructed object, wrapping a connected socket (`allowHalfOpen: true`).
 * @throws `DS_ERR_INVALID_ARG` synchronously if `Class` is not a `DangaSocket` subclass, if
 *   `onConnected` is given, or for any option `connect()` refuses. Rejects with whatever
 *   `connect()` rejects with (`DS_ERR_CONNECT`, `DS_ERR_RESOLVE`, `DS_ERR_NO_ADDRESS`,
 *   `DS_ERR_TIMEOUT`, `DS_ERR_ABORTED`).
 */
export function connectDanga<T extends DangaSocket, A extends unknown[]>(
  Class: DangaSocketClass<T, A>,
  options: ConnectDangaOptions,
  ...args: A
): Promise<T> {
  if (typeof Class !== 'function' || !(Class.prototype instanceof DangaSocket)) {
    throw invalidArg(`connectDanga expects a DangaSocket subclass, got ${describe(Class)}`);
  }
  if (
    typeof options === 'object' &&
    options !== null &&
    (options as { onConnected?: unknown }).onConnected !== undefined
  ) {
    throw invalidArg(
      'connectDanga delivers the object through its promise; onConnected is not accepted',
    );
  }
  // Wrapping hides the socket's type, so connectDanga follows DangaSocket.DefaultBackend.
  const backend = options.backend ?? getDefaultBackend();
  return connect({ ...options, backend } as ConnectDangaOptions).then((sock) => {
    try {
      return new Class(sock, ...args);
    } catch (err) {
      abandon(sock);
      throw err;
    }
  });
}

/**
 * A subclass constructor that throws after `super()` leaves a registered object behind: close
 * it (the loop then really closes the socket), and destroy the socket in any case.
 */
function abandon(sock: net.Socket): void {
  for (const obj of DangaSocket.DescriptorMap().values()) {
    if (obj.sock() === sock && !obj.closed) obj.close('handler_error');
  }
  sock.destroy();
}
