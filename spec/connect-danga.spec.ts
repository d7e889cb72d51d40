import * as net from 'node:net';
import { connectDanga } from '../lib/connect-danga';
import { DangaSocket } from '../lib/danga-socket';
import { PersistentConnection } from '../lib/persistent-connection';

afterEach(() => DangaSocket.Reset());

/** Run the loop in the background until `stop()` (or Reset). */
function startLoop(): { stop(): Promise<void> } {
  let running = true;
  DangaSocket.SetLoopTimeout(20);
  DangaSocket.SetPostLoopCallback(() => running);
  const done = DangaSocket.EventLoop();
  return {
    stop: async () => {
      running = false;
      await done;
    },
  };
}

async function eventually(check: () => boolean, ms = 10_000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** An echo server (plain Node) on 127.0.0.1. */
function echoServer(port = 0): Promise<{ port: number; stop(): Promise<void> }> {
  const clients = new Set<net.Socket>();
  const server = net.createServer((s) => {
    clients.add(s);
    s.on('close', () => clients.delete(s));
    s.on('error', () => {});
    s.pipe(s);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host: '127.0.0.1' }, () => {
      resolve({
        port: (server.address() as net.AddressInfo).port,
        stop: () =>
          new Promise<void>((done) => {
            for (const c of clients) c.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}

async function refusedPort(): Promise<number> {
  const s = await echoServer();
  await s.stop();
  return s.port;
}

/** A line client: collects what it reads, closes on EOF or error. */
class LineClient extends DangaSocket {
  received = '';
  constructor(
    sock: net.Socket,
    readonly label: string,
  ) {
    super(sock);
    this.watchRead(true);
  }
  override eventRead(): void {
    const buf = this.read(4096);
    if (buf === null) {
      this.close('eof');
      return;
    }
    this.received += buf.toString();
  }
  override eventErr(): void {
    this.close('error');
  }
  override eventHup(): void {
    this.close('hup');
  }
}

describe('connectDanga()', () => {
  it('resolves with the subclass constructed on the connected socket, extra arguments passed', async () => {
    const server = await echoServer();
    const loop = startLoop();
    try {
      const client = await connectDanga(
        LineClient,
        { host: '127.0.0.1', port: server.port },
        'one',
      );
      expect(client).toBeInstanceOf(LineClient);
      expect(client.label).toBe('one');
      const sock = client.sock() as net.Socket;
      expect(sock.remotePort).toBe(server.port);
      expect(sock.allowHalfOpen).toBe(true);
      client.write('hello\n');
      await eventually(() => client.received === 'hello\n');
      client.close('done');
      await expect(client.whenClosed()).resolves.toBe('done');
    } finally {
      await loop.stop();
      await server.stop();
    }
  });

  it('rejects like connect() and constructs nothing when every address fails', async () => {
    const port = await refusedPort();
    const before = DangaSocket.DescriptorMap().size;
    await expect(connectDanga(LineClient, { host: '127.0.0.1', port }, 'x')).rejects.toMatchObject({
      code: 'DS_ERR_CONNECT',
      which: 'connect',
    });
    expect(DangaSocket.DescriptorMap().size).toBe(before);
  });

  it('throws DS_ERR_INVALID_ARG for a class that is not a DangaSocket, or an onConnected option', () => {
    class NotDanga {
      constructor(readonly sock: net.Socket) {}
    }
    expect(() =>
      connectDanga(NotDanga as unknown as typeof LineClient, { host: '127.0.0.1', port: 1 }, 'x'),
    ).toThrow(expect.objectContaining({ code: 'DS_ERR_INVALID_ARG' }) as Error);
    expect(() =>
      connectDanga(
        LineClient,
        { host: '127.0.0.1', port: 1, onConnected: () => {} } as Parameters<typeof connectDanga>[1],
        'x',
      ),
    ).toThrow(expect.objectContaining({ code: 'DS_ERR_INVALID_ARG' }) as Error);
  });

  it('closes the half-made object and rejects when the constructor throws after super()', async () => {
    const server = await echoServer();
    const loop = startLoop();
    try {
      const boom = new Error('ctor failed');
      class Exploding extends LineClient {
        constructor(sock: net.Socket) {
          super(sock, 'boom');
          throw boom;
        }
      }
      await expect(connectDanga(Exploding, { host: '127.0.0.1', port: server.port })).rejects.toBe(
        boom,
      );
      await eventually(() => DangaSocket.DescriptorMap().size === 0);
    } finally {
      await loop.stop();
      await server.stop();
    }
  });
});

describe('the Danga connect idiom (construct on the connecting socket)', () => {
  class Dialer extends DangaSocket {
    readonly seen: string[] = [];
    constructor(sock: net.Socket) {
      super(sock);
      this.watchWrite(true);
    }
    override eventRead(): void {
      this.seen.push('read'); // read is never watched
    }
    override eventWrite(): void {
      this.seen.push('write');
      this.watchWrite(false);
    }
    override eventErr(): void {
      this.seen.push('err');
    }
    override eventHup(): void {
      this.seen.push('hup');
      this.close('hup');
    }
  }

  it('delivers eventWrite once connected', async () => {
    const server = await echoServer();
    const loop = startLoop();
    try {
      const d = new Dialer(
        net.connect({ host: '127.0.0.1', port: server.port, allowHalfOpen: true }),
      );
      await eventually(() => d.seen.length > 0);
      expect(d.seen).toEqual(['write']);
      d.close('done');
    } finally {
      await loop.stop();
      await server.stop();
    }
  });

  it('delivers eventWrite, eventErr and eventHup when the connect is refused', async () => {
    const port = await refusedPort();
    const loop = startLoop();
    try {
      const d = new Dialer(net.connect({ host: '127.0.0.1', port, allowHalfOpen: true }));
      await eventually(() => d.closed);
      expect(d.seen).toEqual(['write', 'err', 'hup']);
    } finally {
      await loop.stop();
    }
  });
});

describe('DangaSocket as the connection of a PersistentConnection', () => {
  it('needs no adapter: reconnects after the server restarts and close() closes it', async () => {
    let server = await echoServer();
    const port = server.port;
    const loop = startLoop();
    const events: string[] = [];
    const pc = new PersistentConnection<LineClient, number>({
      serverName: 'echo',
      retryDelayMs: 200,
      getAddress: () => port,
      connect: (p) => connectDanga(LineClient, { host: '127.0.0.1', port: p }, 'pc'),
      onEvent: (e) => {
        events.push(e.type);
      },
    });
    try {
      const first = await pc.connected();
      first.write('ping\n');
      await eventually(() => first.received === 'ping\n');
      await server.stop(); // the client sees EOF and closes itself
      await expect(first.whenClosed()).resolves.toBe('eof');
      await eventually(() => events.includes('failed_to_connect'));
      server = await echoServer(port);
      const second = await pc.connected();
      expect(second).not.toBe(first);
      second.write('again\n');
      await eventually(() => second.received === 'again\n');
      await pc.close();
      expect(second.closed).toBe(true);
      expect(events.slice(-2)).toEqual(['connected', 'disconnected']);
    } finally {
      await pc.close();
      await loop.stop();
      await server.stop();
    }
  });
});
