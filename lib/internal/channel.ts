/**
 * The descriptor a `DangaSocket` talks to: one object per wrapped socket, chosen once at
 * construction. The `node` backend emulates it on a `net.Socket` / `net.Server`
 * (`StreamChannel`, `ServerChannel`); the `native` backend is a real OS descriptor owned by the
 * addon (`NativeStreamChannel`, `NativeListenChannel`). All members are called on the JS thread.
 *
 * Every member exists on every channel, so the read and write paths never test a channel's
 * class: a listener's `read()` says EOF-less "nothing" and a stream's `accept()` says null.
 */

/** `write()` result for "the descriptor would block" (nothing written). */
export const CHANNEL_EAGAIN = -1;

/** An address of one end of a connection. */
export interface ChannelAddress {
  readonly ip: string;
  readonly port: number;
  readonly v6: boolean;
}

export interface Channel {
  /** The wrapped handle (`net.Socket`, `net.Server` or `NativeSocket`), also during a pending close. */
  readonly sock: object;
  /** The OS error seen on the descriptor (reset, refused connect, EBADF, ...), or null. */
  readonly error: Error | null;
  /** True once the peer's EOF has been read (or is known to be next). */
  readonly eof: boolean;
  /** Bytes received but not handed out yet (0 where the kernel holds them). */
  readonly pendingBytes: number;

  /** Level conditions now, before interest filtering: POLLIN | POLLOUT | POLLERR | POLLHUP bits. */
  readiness(): number;
  /** The object's read/write interest changed (a real descriptor changes its epoll interest). */
  interest(read: boolean, write: boolean): void;
  /** One read of at most `n` bytes (an owned Buffer): empty = EAGAIN, null = EOF or error. */
  read(n: number): Buffer | null;
  /** As `read`, but the Buffer may be a view of memory reused by the next read. */
  readView(n: number): Buffer | null;
  /**
   * Write `buf[off, off+len)`: bytes the descriptor took now, or `CHANNEL_EAGAIN`.
   * @throws an errno-style error (`code` 'EPIPE', 'ECONNRESET', 'EBADF', ...).
   */
  write(buf: Buffer, off: number, len: number): number;
  /**
   * Write the head of a write queue: `items[0]` from byte `first`, then the Buffers after it up
   * to the first function, as far as the descriptor takes them in one call (`writev(2)` on the
   * native backend, at most 64 Buffers; the node backend writes `items[0]` only). Bytes taken,
   * or `CHANNEL_EAGAIN`. Throws as `write`.
   */
  writev(items: readonly (Buffer | (() => void))[], first: number): number;
  /** A listener's next connection (net.Socket or NativeSocket), or null (also for streams). */
  accept(): object | null;
  /** The OS descriptor, where there is one. */
  osFd(): number | undefined;
  /** The peer's address, or undefined (listener, Unix socket, not connected). */
  remote(): ChannelAddress | undefined;
  /** Our bound address, or undefined. */
  local(): ChannelAddress | undefined;
  /** Really close the descriptor (deferred-close phase or Reset only). */
  destroy(): void;
  /** Stop serving the object and give the handle back, unread bytes (pushback first) put back. */
  detach(pushback: readonly Buffer[]): object;
}
