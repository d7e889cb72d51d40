import * as net from 'node:net';
import { DangaSocket, DangaSocketError } from '../lib';

/** A connected TCP pair on loopback: `server` is the accepted side (paused, half-open allowed). */
export async function tcpPair(): Promise<{
  server: net.Socket;
  client: net.Socket;
  close(): void;
}> {
  const srv = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as net.AddressInfo).port;
  const accepted = new Promise<net.Socket>((resolve) => srv.once('connection', resolve));
  const client = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  await new Promise<void>((resolve) => client.once('connect', resolve));
  const server = await accepted;
  srv.close();
  return {
    server,
    client,
    close() {
      server.destroy();
      client.destroy();
    },
  };
}

/**
 * Run the loop until `done()` is true or `maxMs` passed (a PLC checks after each iteration).
 * Resolves with the number of iterations.
 */
export async function runUntil(
  done: () => boolean,
  maxMs = 5000,
  loopTimeoutMs = 20,
): Promise<number> {
  const deadline = Date.now() + maxMs;
  let n = 0;
  DangaSocket.SetLoopTimeout(loopTimeoutMs);
  DangaSocket.SetPostLoopCallback(() => {
    n++;
    return !done() && Date.now() < deadline;
  });
  await DangaSocket.EventLoop();
  return n;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A free TCP port on 127.0.0.1 with nothing listening (bound then released). */
export async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

/** A DangaSocket that ignores every event (for tests that only need an object). */
export class Quiet extends DangaSocket {
  override eventRead(): void {}
  override eventErr(): void {}
  override eventHup(): void {}
}

/** Echo everything; close on EOF, error or hang-up. */
export class Echo extends DangaSocket {
  constructor(sock: net.Socket) {
    super(sock);
    this.watchRead(true);
  }
  override eventRead(): void {
    const buf = this.read(65536);
    if (buf === null) this.close('eof');
    else if (buf.length > 0) this.write(buf);
  }
  override eventErr(): void {
    this.close('err');
  }
  override eventHup(): void {
    this.close('hup');
  }
}

/** The DangaSocketError `fn` throws (fails the test if it throws nothing or something else). */
export function caught(fn: () => unknown): DangaSocketError {
  try {
    fn();
  } catch (err) {
    if (err instanceof DangaSocketError) return err;
    throw err;
  }
  throw new Error('expected a DangaSocketError, nothing was thrown');
}

/** The OS descriptor of a socket. */
export function fdOf(sock: net.Socket): number {
  const handle: unknown = Reflect.get(sock, '_handle');
  const fd: unknown =
    typeof handle === 'object' && handle !== null ? Reflect.get(handle, 'fd') : undefined;
  if (typeof fd !== 'number') throw new Error('socket has no fd');
  return fd;
}
