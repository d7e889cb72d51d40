import * as net from 'node:net';
import { DangaSocket, DangaSocketError, Listener } from '../lib';
import { nodeHasReusePort } from '../lib/internal/reuse-port';
import { nativeBinding } from '../lib/native';
import { caught, Echo, runUntil } from './helpers';
import { NATIVE_OFF } from './native-mode';

afterEach(() => DangaSocket.Reset());

/** Node 20 sets SO_REUSEPORT through the addon; without it the option must say so. */
const CAN_REUSE_PORT = nodeHasReusePort() || !NATIVE_OFF;

function portOf(l: Listener): number {
  return (l.address() as net.AddressInfo).port;
}

/** Connect, send one byte, wait for its echo, close: one connection the server really served. */
function oneRoundTrip(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = net.connect({ port, host: '127.0.0.1' }, () => c.write('x'));
    c.once('data', () => {
      c.destroy();
      resolve();
    });
    c.once('error', reject);
  });
}

describe('Listener.listen({ reusePort })', () => {
  it('knows which Node versions take reusePort themselves', () => {
    expect(nodeHasReusePort('20.20.2')).toBe(false);
    expect(nodeHasReusePort('22.11.0')).toBe(false);
    expect(nodeHasReusePort('22.12.0')).toBe(true);
    expect(nodeHasReusePort('24.21.0')).toBe(true);
    expect(nodeHasReusePort('26.12.1')).toBe(true);
  });

  it('rejects a non-boolean reusePort and reusePort with a Unix path', () => {
    const bad = caught(() => Listener.listen({ reusePort: 'yes' as never }, () => {}));
    expect(bad.code).toBe('DS_ERR_INVALID_ARG');
    const unix = caught(() => Listener.listen({ path: '/tmp/x.sock', reusePort: true }, () => {}));
    expect(unix.code).toBe('DS_ERR_INVALID_ARG');
  });

  if (!CAN_REUSE_PORT) {
    it(`throws DS_ERR_NATIVE_UNAVAILABLE on Node ${process.versions.node} without the addon`, () => {
      expect(nativeBinding()).toBeUndefined();
      const err = caught(() => Listener.listen({ port: 0, reusePort: true }, () => {}));
      expect(err.code).toBe('DS_ERR_NATIVE_UNAVAILABLE');
    });
    return;
  }

  it('lets two listeners share one port, and the kernel gives connections to both', async () => {
    let na = 0;
    let nb = 0;
    const a = await Listener.listen({ port: 0, reusePort: true }, (s) => {
      na++;
      new Echo(s);
    });
    const port = portOf(a);
    const b = await Listener.listen({ port, reusePort: true }, (s) => {
      nb++;
      new Echo(s);
    });
    expect(portOf(b)).toBe(port);
    // The kernel hashes each connection's 4-tuple: 64 connections all landing on one of two
    // listeners has probability 2^-63.
    let done = 0;
    const loop = runUntil(() => done === 64, 20000);
    for (let i = 0; i < 64; i++) {
      await Promise.race([oneRoundTrip(port).then(() => done++), loop]);
    }
    await loop;
    expect(na + nb).toBe(64);
    expect(na).toBeGreaterThan(0);
    expect(nb).toBeGreaterThan(0);
  });

  it('listens with a host name and a backlog', async () => {
    const l = await Listener.listen(
      { host: 'localhost', port: 0, backlog: 16, reusePort: true },
      (s) => new Echo(s),
    );
    const addr = l.address() as net.AddressInfo;
    expect(['127.0.0.1', '::1']).toContain(addr.address);
  });

  it('still refuses a port held by a listener without reusePort (DS_ERR_LISTEN)', async () => {
    const plain = await Listener.listen({ port: 0 }, (s) => new Echo(s));
    const err = await Listener.listen({ port: portOf(plain), reusePort: true }, () => {}).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(DangaSocketError);
    expect((err as DangaSocketError).code).toBe('DS_ERR_LISTEN');
    expect(((err as DangaSocketError).cause as { code?: unknown }).code).toBe('EADDRINUSE');
  });
});
