import * as dc from 'node:diagnostics_channel';
import * as net from 'node:net';
import { DangaSocket, Listener } from '../lib';
import { isOnreadSocket } from '../lib/fast-accept';
import {
  installFastAccept,
  isFastAcceptOn,
  setFastAccept,
  simulateShapeMismatch,
} from '../lib/internal/node-internals';
import { Echo, Quiet, runUntil, sleep } from './helpers';

const NODE_MAJOR = Number(process.versions.node.split('.')[0]);
/** Node 21+ (nodejs/node#48276) limits any non-null maxConnections; Node 20 a truthy one. */
const ZERO_MAX_DROPS_ALL = NODE_MAJOR >= 21;

/** Node 22+ servers take a `blockList` (@types/node 20 does not know it). */
type ServerOptions = net.ServerOpts & { blockList?: net.BlockList };

interface Mode {
  name: string;
  /** Plain accepted sockets read through the shared onread buffer. */
  onread: boolean;
  enter(): void;
}

const MODES: Mode[] = [
  { name: 'fast path', onread: true, enter: () => setFastAccept(true) },
  { name: 'DANGA_FAST_ACCEPT=0', onread: false, enter: () => setFastAccept(false) },
  {
    name: 'shape mismatch',
    onread: false,
    enter: () => {
      setFastAccept(true);
      simulateShapeMismatch(true);
    },
  },
];

const initiallyOn = isFastAcceptOn();
afterEach(() => {
  DangaSocket.Reset();
  setFastAccept(initiallyOn);
  simulateShapeMismatch(false);
  jest.restoreAllMocks();
});

/** A server as `Listener.listen` makes it (plus `options`), listening and wrapped. */
async function wrapServer(
  options: ServerOptions,
  onAccept: (s: net.Socket) => void,
): Promise<{ port: number; server: net.Server; listener: Listener }> {
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true, ...options });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const listener = new Listener(server, onAccept);
  return { port: (server.address() as net.AddressInfo).port, server, listener };
}

function connect(port: number): net.Socket {
  const c = net.connect({ port, host: '127.0.0.1' });
  c.on('error', () => {});
  return c;
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

/** Resolves once `sock` is closed (true if it had been accepted and then closed by the peer). */
function closed(sock: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    if (sock.destroyed) resolve();
    else sock.once('close', () => resolve());
  });
}

function connections(server: net.Server): Promise<number> {
  return new Promise((resolve, reject) =>
    server.getConnections((err, n) => (err ? reject(err) : resolve(n))),
  );
}

/** What Node's own server does with one connection under `options` and `maxConnections`. */
async function nodeAccepts(options: ServerOptions, maxConnections?: number): Promise<boolean> {
  const server = net.createServer(options);
  if (maxConnections !== undefined) server.maxConnections = maxConnections;
  let accepted = false;
  server.on('connection', (s) => {
    accepted = true;
    s.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const c = connect((server.address() as net.AddressInfo).port);
  await closed(c);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return accepted;
}

describe.each(MODES)('Listener accepted sockets ($name)', (mode) => {
  beforeEach(() => mode.enter());

  it('carry bytes both ways, every byte in order', async () => {
    let sock: net.Socket | null = null;
    const { port } = await wrapServer({}, (s) => {
      sock = s;
      new Echo(s);
    });
    const c = connect(port);
    const payload = Buffer.alloc(3 * 1024 * 1024);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 7 + (i >> 12)) & 0xff;
    const got: Buffer[] = [];
    let n = 0;
    c.on('data', (d: Buffer) => {
      got.push(d);
      n += d.length;
    });
    c.write(payload);
    await runUntil(() => n >= payload.length, 20000);
    expect(Buffer.concat(got).equals(payload)).toBe(true);
    expect(sock !== null && isOnreadSocket(sock)).toBe(mode.onread);
    c.destroy();
  });

  it('give a raw socket kept by onAccept ordinary data events', async () => {
    const raw: net.Socket[] = [];
    const { port } = await wrapServer({}, (s) => raw.push(s));
    const c = connect(port);
    c.write('plain');
    await runUntil(() => raw.length === 1);
    const s = raw[0] as net.Socket;
    await expect(collect(s, 5)).resolves.toBe('plain');
    s.destroy();
    c.destroy();
  });

  it('keep bytes that arrive before the object exists when the server does not pause', async () => {
    const socks: net.Socket[] = [];
    const { port } = await wrapServer({ pauseOnConnect: false }, (s) => socks.push(s));
    const c = connect(port);
    c.write('early');
    await runUntil(() => socks.length === 1);
    await sleep(50); // the bytes reach the unowned socket before anyone wraps it
    let got = '';
    class R extends Quiet {
      override eventRead(): void {
        const b = this.read(100);
        if (b) got += b.toString();
      }
    }
    new R(socks[0] as net.Socket).watchRead(true);
    c.write('+late');
    await runUntil(() => got === 'early+late');
    expect(got).toBe('early+late');
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
    const { port } = await wrapServer({}, (s) => new Thief(s).watchRead(true));
    const c = connect(port);
    c.write('abcdefgh');
    await runUntil(() => stolen !== null);
    const s = stolen as unknown as net.Socket;
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

  it("drop connections over maxConnections with Node's 'drop' event and its addresses", async () => {
    const accepted: net.Socket[] = [];
    const { port, server } = await wrapServer({}, (s) => {
      accepted.push(s);
      new Quiet(s);
    });
    server.maxConnections = 1;
    const dropped: unknown[] = [];
    server.on('drop', (d) => dropped.push(d));
    const a = connect(port);
    await runUntil(() => accepted.length === 1);
    const b = connect(port);
    await new Promise<void>((resolve) => b.once('connect', resolve));
    const bPort = b.localPort;
    await runUntil(() => dropped.length === 1);
    await closed(b);
    expect(accepted).toHaveLength(1);
    expect({ ...(dropped[0] as object) }).toEqual({
      localAddress: '127.0.0.1',
      localPort: port,
      localFamily: 'IPv4',
      remoteAddress: '127.0.0.1',
      remotePort: bPort,
      remoteFamily: 'IPv4',
    });
    expect(isOnreadSocket(accepted[0] as net.Socket)).toBe(mode.onread);
    a.destroy();
  });

  it(`treat maxConnections 0 as Node ${NODE_MAJOR} does (${ZERO_MAX_DROPS_ALL ? 'drop all' : 'no limit'})`, async () => {
    expect(await nodeAccepts({}, 0)).toBe(!ZERO_MAX_DROPS_ALL);
    const accepted: net.Socket[] = [];
    const { port, server } = await wrapServer({}, (s) => {
      accepted.push(s);
      new Quiet(s);
    });
    server.maxConnections = 0;
    let drops = 0;
    server.on('drop', () => drops++);
    const c = connect(port);
    await runUntil(() => accepted.length + drops > 0);
    expect(accepted).toHaveLength(ZERO_MAX_DROPS_ALL ? 0 : 1);
    expect(drops).toBe(ZERO_MAX_DROPS_ALL ? 1 : 0);
    c.destroy();
  });

  it("apply the server's blockList exactly where Node does", async () => {
    const blockList = new net.BlockList();
    blockList.addAddress('127.0.0.1');
    // Node 20 has no server blockList option (it is ignored); later Nodes close the connection.
    const nodeBlocks = !(await nodeAccepts({ blockList }));
    expect(nodeBlocks).toBe(
      (net.createServer({ blockList } as ServerOptions) as { blockList?: unknown }).blockList !==
        undefined,
    );
    const accepted: net.Socket[] = [];
    const { port } = await wrapServer({ blockList }, (s) => accepted.push(s));
    const c = connect(port);
    if (nodeBlocks) {
      await runUntil(() => c.destroyed);
      await runUntil(() => true);
      expect(accepted).toHaveLength(0);
    } else {
      await runUntil(() => accepted.length === 1);
      expect(c.destroyed).toBe(false);
    }
    c.destroy();
  });

  it('serve an address the blockList does not block', async () => {
    const blockList = new net.BlockList();
    blockList.addAddress('10.1.2.3');
    const { port } = await wrapServer({ blockList }, (s) => new Echo(s));
    const c = connect(port);
    c.write('through');
    let echoed = '';
    void collect(c, 7).then((d) => (echoed = d));
    await runUntil(() => echoed !== '');
    expect(echoed).toBe('through');
    c.destroy();
  });

  it('count accepted sockets in getConnections until their objects close', async () => {
    const objs: Quiet[] = [];
    const { port, server } = await wrapServer({}, (s) => objs.push(new Quiet(s)));
    const clients = [connect(port), connect(port), connect(port)];
    await runUntil(() => objs.length === 3);
    expect(await connections(server)).toBe(3);
    const first = (objs[0] as Quiet).sock() as net.Socket;
    (objs[0] as Quiet).close('done');
    await runUntil(() => true);
    await closed(first);
    expect(await connections(server)).toBe(2);
    for (const c of clients) c.destroy();
  });

  it("emit the server's close only after its accepted sockets close", async () => {
    const objs: Quiet[] = [];
    const { port, server, listener } = await wrapServer({}, (s) => objs.push(new Quiet(s)));
    const clients = [connect(port), connect(port)];
    await runUntil(() => objs.length === 2);
    let serverClosed = false;
    server.on('close', () => (serverClosed = true));
    listener.close('stop');
    await runUntil(() => true);
    await sleep(50);
    expect(server.listening).toBe(false);
    expect(serverClosed).toBe(false);
    (objs[0] as Quiet).close('done');
    await runUntil(() => true);
    await sleep(50);
    expect(serverClosed).toBe(false);
    (objs[1] as Quiet).close('done');
    await runUntil(() => serverClosed);
    expect(serverClosed).toBe(true);
    for (const c of clients) c.destroy();
  });

  it('apply noDelay, keepAlive and highWaterMark, and publish net.server.socket', async () => {
    const published: unknown[] = [];
    const onPublish = (msg: unknown): void => {
      published.push((msg as { socket: unknown }).socket);
    };
    dc.subscribe('net.server.socket', onPublish);
    let accepted: net.Socket | null = null;
    try {
      const { port, server } = await wrapServer(
        { noDelay: true, keepAlive: true, keepAliveInitialDelay: 3000, highWaterMark: 4096 },
        (s) => {
          accepted = s;
          new Quiet(s);
        },
      );
      // Node sets TCP_NODELAY and SO_KEEPALIVE on the accepted handle (a TCPWrap, like this one).
      const tcp = Object.getPrototypeOf(
        (server as unknown as { _handle: object })._handle,
      ) as Record<'setNoDelay' | 'setKeepAlive', (...args: unknown[]) => unknown>;
      const noDelay = jest.spyOn(tcp, 'setNoDelay');
      const keepAlive = jest.spyOn(tcp, 'setKeepAlive');
      const c = connect(port);
      await runUntil(() => accepted !== null);
      const s = accepted as unknown as net.Socket;
      const handle = (s as unknown as { _handle: object })._handle;
      expect(isOnreadSocket(s)).toBe(mode.onread);
      expect(noDelay.mock.calls[noDelay.mock.contexts.indexOf(handle)]).toEqual([true]);
      expect(keepAlive.mock.calls[keepAlive.mock.contexts.indexOf(handle)]).toEqual([true, 3]);
      expect(s.writableHighWaterMark).toBe(4096);
      expect(s.readableHighWaterMark).toBe(4096);
      expect(published).toContain(s);
      c.destroy();
    } finally {
      dc.unsubscribe('net.server.socket', onPublish);
    }
  });
});

/** A socket's own fields in order, symbols by description; objects by their class. */
function stateOf(sock: net.Socket): [string, unknown][] {
  const skip = new Set(['async_id_symbol', 'kBuffer', 'kBufferCb']);
  const out: [string, unknown][] = [];
  const add = (prefix: string, obj: object): void => {
    for (const key of Reflect.ownKeys(obj)) {
      const name = typeof key === 'symbol' ? `@${key.description ?? ''}` : key;
      if (skip.has(name.slice(1)) || name.startsWith('@danga.')) continue;
      const v: unknown = Reflect.get(obj, key);
      const shown =
        typeof v === 'object' && v !== null
          ? `[${v.constructor?.name ?? 'null-proto'}]`
          : typeof v === 'function'
            ? `[fn ${v.name}]`
            : v;
      out.push([prefix + name, shown]);
    }
  };
  add('', sock);
  add('_readableState.', (sock as unknown as { _readableState: object })._readableState);
  add('_writableState.', (sock as unknown as { _writableState: object })._writableState);
  return out;
}

describe('the fast path', () => {
  it.each<[string, net.ServerOpts]>([
    ['defaults', {}],
    ['Listener options', { allowHalfOpen: true, pauseOnConnect: true }],
    [
      'every option onconnection reads',
      {
        allowHalfOpen: true,
        pauseOnConnect: true,
        noDelay: true,
        keepAlive: true,
        keepAliveInitialDelay: 2500,
        highWaterMark: 1000,
      },
    ],
  ])("builds the socket Node's own accept builds (%s)", async (_name, options) => {
    setFastAccept(true);
    const states: [string, unknown][][] = [];
    for (const fast of [false, true]) {
      const server = net.createServer(options);
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      if (fast) {
        expect(
          installFastAccept(server, { buffer: Buffer.alloc(64), callback: () => true }, () => {}),
        ).toBe(true);
      }
      const got = new Promise<[string, unknown][]>((resolve) =>
        server.once('connection', (s: net.Socket) => {
          resolve(stateOf(s));
          s.destroy();
        }),
      );
      const c = connect((server.address() as net.AddressInfo).port);
      states.push(await got);
      c.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    expect(states[1]).toEqual(states[0]);
  });
});
