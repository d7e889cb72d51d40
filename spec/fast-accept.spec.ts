import * as dc from 'node:diagnostics_channel';
import * as net from 'node:net';
import { DangaSocket, Listener } from '../lib';
import { isOnreadSocket } from '../lib/fast-accept';
import { Quiet, runUntil } from './helpers';

afterEach(() => DangaSocket.Reset());

async function listenWith(onAccept: (s: net.Socket) => void): Promise<number> {
  const l = await Listener.listen({ port: 0 }, onAccept);
  return (l.address() as net.AddressInfo).port;
}

function collect(sock: net.Socket, bytes: number): Promise<string> {
  return new Promise((resolve) => {
    let acc = '';
    sock.on('data', (d: Buffer) => {
      acc += d.toString();
      if (acc.length >= bytes) resolve(acc);
    });
    sock.resume();
  });
}

describe('Listener accepted sockets (shared onread buffer)', () => {
  it('read through onread and still deliver every byte to the object', async () => {
    let server: net.Socket | null = null;
    let got = '';
    class R extends Quiet {
      override eventRead(): void {
        const b = this.read(100000);
        if (b) got += b.toString();
      }
    }
    const port = await listenWith((s) => {
      server = s;
      new R(s).watchRead(true);
    });
    const c = net.connect({ port, host: '127.0.0.1' });
    const payload = 'x'.repeat(200000) + 'end';
    c.write(payload);
    await runUntil(() => got.length === payload.length);
    expect(server !== null && isOnreadSocket(server)).toBe(true);
    expect(got).toBe(payload);
    c.destroy();
  });

  it('give a raw socket kept by onAccept ordinary data events', async () => {
    const raw: net.Socket[] = [];
    const port = await listenWith((s) => raw.push(s));
    const c = net.connect({ port, host: '127.0.0.1' });
    c.write('plain');
    await runUntil(() => raw.length === 1);
    const s = raw[0] as net.Socket;
    await expect(collect(s, 5)).resolves.toBe('plain');
    s.destroy();
    c.destroy();
  });

  it('keep unread bytes across stealSocket, for plain use and for a new object', async () => {
    let stolen: net.Socket | null = null;
    class Thief extends Quiet {
      override eventRead(): void {
        const b = this.read(3);
        if (b !== null && b.length === 3) stolen = this.stealSocket() as net.Socket;
      }
    }
    const port = await listenWith((s) => new Thief(s).watchRead(true));
    const c = net.connect({ port, host: '127.0.0.1' });
    c.write('abcdefgh');
    await runUntil(() => stolen !== null);
    const s = stolen as unknown as net.Socket;
    // A new object on the stolen socket sees the bytes the thief did not read, then new ones.
    let got = '';
    class Again extends Quiet {
      override eventRead(): void {
        const b = this.read(100);
        if (b) got += b.toString();
      }
    }
    new Again(s).watchRead(true);
    c.write('ij');
    await runUntil(() => got === 'defghij');
    expect(got).toBe('defghij');
    c.destroy();
  });
});

describe('Listener accepted sockets keep the server options Node applies', () => {
  afterEach(() => jest.restoreAllMocks());

  async function wrapServer(
    options: net.ServerOpts,
    onAccept: (s: net.Socket) => void,
  ): Promise<{ port: number; server: net.Server }> {
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true, ...options });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    new Listener(server, onAccept);
    return { port: (server.address() as net.AddressInfo).port, server };
  }

  it('apply noDelay, keepAlive and highWaterMark, and publish net.server.socket', async () => {
    const noDelay = jest.spyOn(net.Socket.prototype, 'setNoDelay');
    const keepAlive = jest.spyOn(net.Socket.prototype, 'setKeepAlive');
    const published: unknown[] = [];
    const onPublish = (msg: unknown): void => {
      published.push((msg as { socket: unknown }).socket);
    };
    dc.subscribe('net.server.socket', onPublish);
    let accepted: net.Socket | null = null;
    try {
      const { port } = await wrapServer(
        { noDelay: true, keepAlive: true, keepAliveInitialDelay: 3000, highWaterMark: 4096 },
        (s) => {
          accepted = s;
          new Quiet(s);
        },
      );
      const c = net.connect({ port, host: '127.0.0.1' });
      await runUntil(() => accepted !== null);
      const s = accepted as unknown as net.Socket;
      expect(isOnreadSocket(s)).toBe(true);
      expect(noDelay.mock.contexts).toContain(s);
      expect(keepAlive.mock.calls[keepAlive.mock.contexts.indexOf(s)]).toEqual([true, 3000]);
      expect(s.writableHighWaterMark).toBe(4096);
      expect(published).toContain(s);
      c.destroy();
    } finally {
      dc.unsubscribe('net.server.socket', onPublish);
    }
  });

  it("leave maxConnections to Node: the extra connection is dropped with a 'drop' event", async () => {
    const accepted: net.Socket[] = [];
    const { port, server } = await wrapServer({}, (s) => {
      accepted.push(s);
      new Quiet(s);
    });
    server.maxConnections = 1;
    const dropped: unknown[] = [];
    server.on('drop', (d) => dropped.push(d));
    const a = net.connect({ port, host: '127.0.0.1' });
    await runUntil(() => accepted.length === 1);
    const b = net.connect({ port, host: '127.0.0.1' });
    await runUntil(() => dropped.length === 1);
    expect(accepted).toHaveLength(1);
    a.destroy();
    b.destroy();
  });
});
